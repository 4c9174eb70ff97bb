//! The broker side of a connection driven with no socket and simulated time, quinn-proto
//! style: a scripted client encodes packets with `weir-mqtt`'s codec, [`Pair`] feeds them to
//! the connection at a chosen instant, plays the server's part for the work it asks for (as
//! the shard would, minus the log), and decodes what the connection wrote.

use std::sync::{Arc, Mutex};

use weir_mqtt::{
    Connect, Packet, PacketDecoder, PacketId, Properties, ProtocolVersion, PubResponse, Publish,
    QoS, ReasonCode, RetainHandling, SessionLimits, Subscribe, Subscription, SubscriptionOptions,
    Will,
};

use super::{
    DeliveryEdge, Ended, MessagePool, MqttConnection, MqttSettings, MqttWork, Now, Offer, Shares,
    Stored,
};
use crate::acl::{AclRules, AclSource};
use crate::auth::{AllowAll, Authenticator, CertificateIdentity, Verdict};
use crate::log_store::{EmptyStore, PartitionId};
use crate::mqtt_kafka::{LogMessage, SessionRecord, StoredSubscription};

const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;
/// The wall clock at simulated time 0.
const EPOCH_MS: i64 = 1_800_000_000_000;
const P0: PartitionId = PartitionId(7);
/// How long a refused CONNECT waits for its CONNACK.
const REFUSAL_DELAY_MS: u64 = 1000;

/// Knows one user, `alice` with password `secret`; anonymous clients are not allowed.
#[derive(Debug)]
struct OneUser;

impl Authenticator for OneUser {
    fn authenticate(&self, username: Option<&str>, password: Option<&[u8]>) -> Verdict {
        match (username, password) {
            (None, _) => Verdict::NotAuthorized,
            (Some("alice"), Some(b"secret")) => Verdict::User("alice".into()),
            _ => Verdict::BadCredentials,
        }
    }

    fn scram_credential(
        &self,
        _: &str,
        _: crate::auth::scram::ScramMechanism,
    ) -> Option<crate::auth::scram::ScramCredential> {
        None
    }

    fn nonce(&self) -> String {
        "nonce".into()
    }
}

/// A connection, the client's view of it, and simulated time.
struct Pair {
    conn: MqttConnection,
    version: ProtocolVersion,
    /// Simulated milliseconds since the start.
    at_ms: u64,
    /// What the connection wrote and the client has not read yet.
    out: Vec<u8>,
    /// Work the connection asked for and the test has not taken yet.
    work: Vec<MqttWork>,
    /// Input the connection has not consumed.
    held: Vec<u8>,
    /// How the connection ended, once it has.
    ended: Option<Ended>,
    /// What the simulated shard has stored and not offered yet.
    edge: Arc<TestEdge>,
}

/// The shard's delivery edge as a test sets it.
#[derive(Default)]
struct TestEdge(Mutex<Vec<(PartitionId, i64)>>);

impl DeliveryEdge for TestEdge {
    fn not_offered(&self) -> Vec<(PartitionId, i64)> {
        self.0.lock().unwrap().clone()
    }
}

impl Pair {
    fn new(version: ProtocolVersion, limits: SessionLimits) -> Pair {
        Pair::with_auth(version, limits, Arc::new(AllowAll))
    }

    fn with_auth(
        version: ProtocolVersion,
        limits: SessionLimits,
        auth: Arc<dyn Authenticator>,
    ) -> Pair {
        Pair::with_access(version, limits, auth, Arc::new(crate::acl::NoAcl))
    }

    /// A connection under the access-control list `rules`, anonymous clients let in.
    fn with_acl(version: ProtocolVersion, rules: &str) -> Pair {
        let rules = Arc::new(AclRules::parse(rules).expect("test rules parse"));
        let acl = Arc::new(FixedAcl(rules));
        Pair::with_access(version, SessionLimits::default(), Arc::new(AllowAll), acl)
    }

    fn with_access(
        version: ProtocolVersion,
        limits: SessionLimits,
        auth: Arc<dyn Authenticator>,
        acl: Arc<dyn AclSource>,
    ) -> Pair {
        let settings = Arc::new(MqttSettings {
            limits,
            store: Arc::new(EmptyStore),
            auto_create_partitions: 1,
            topics_max: 100,
            retained_messages_max: 100,
            sessions_max: 100,
            session_expiry_max_s: 3600,
            subscribe_deny: vec!["secret/#".into()],
            acl,
            kafka_topic_rules: Vec::new(),
            batch_decompressed_bytes_max: 1 << 20,
            auth,
            refused_connect_delay_ms: REFUSAL_DELAY_MS,
        });
        let edge = Arc::new(TestEdge::default());
        Pair {
            conn: MqttConnection::new(settings, edge.clone(), 1, now_at(0)),
            edge,
            version,
            at_ms: 0,
            out: Vec::new(),
            work: Vec::new(),
            held: Vec::new(),
            ended: None,
        }
    }

    fn now(&self) -> Now {
        now_at(self.at_ms)
    }

    /// Moves simulated time on by `ms`.
    fn advance(&mut self, ms: u64) {
        self.at_ms += ms;
    }

    /// The client sends `packets`; the connection reads what it can now.
    fn send(&mut self, packets: &[Packet]) {
        for packet in packets {
            packet
                .encode(self.version, &mut self.held)
                .expect("test packets encode");
        }
        self.drive();
    }

    /// Feeds the connection the input it has not consumed.
    fn drive(&mut self) {
        let input = std::mem::take(&mut self.held);
        let now = self.now();
        match self.conn.on_bytes(
            input.as_slice(),
            now,
            (&mut self.out, &mut self.work),
            &mut MessagePool::default(),
        ) {
            Ok(used) => self.held = input[used..].to_vec(),
            Err(ended) => self.ended = Some(ended),
        }
    }

    /// Lets time-driven work run (keep alive); false once the connection is over.
    fn tick(&mut self) -> bool {
        let now = self.now();
        self.conn.tick(now, &mut self.out, &mut self.work)
    }

    /// The packets the connection wrote since the last call.
    fn received(&mut self) -> Vec<Packet> {
        let decoder = PacketDecoder::new(1 << 20);
        let mut packets = Vec::new();
        let mut at = 0;
        while at < self.out.len() {
            let (packet, used) = decoder
                .decode(&self.out[at..], self.version)
                .expect("the connection writes valid packets")
                .expect("the connection writes whole packets");
            packets.push(packet);
            at += used;
        }
        self.out.clear();
        packets
    }

    fn take_work(&mut self) -> Vec<MqttWork> {
        std::mem::take(&mut self.work)
    }

    /// CONNECT with `connect`, answered with `stored` as the server would after looking the
    /// client id up (no other connection has it); returns the CONNACK.
    fn connect(&mut self, connect: Connect, stored: Option<SessionRecord>) -> Packet {
        self.send(&[Packet::Connect(Box::new(connect))]);
        let work = self.take_work();
        assert!(
            matches!(&work[..], [MqttWork::Connect { .. }]),
            "a CONNECT asks the server to look the client id up: {work:?}"
        );
        assert!(self.conn.saturated(), "not read while the CONNECT waits");
        assert!(
            self.received().is_empty(),
            "no CONNACK before the server answers"
        );
        let now = self.now();
        assert!(
            self.conn
                .resume(Ok(stored), now, &mut self.out, &mut self.work)
        );
        let mut packets = self.received();
        assert_eq!(packets.len(), 1, "{packets:?}");
        packets.remove(0)
    }

    /// The server stored the message of `token` at `offset`.
    fn stored(&mut self, token: u64, offset: i64) {
        let now = self.now();
        let stored = Stored::plain(ReasonCode::SUCCESS, Some((P0, offset)));
        assert!(
            self.conn
                .stored(token, &stored, now, &mut self.out, &mut self.work)
        );
    }

    /// Offers the log's message at `offset` as live delivery.
    fn offer(&mut self, message: &LogMessage, offset: i64) -> Offer {
        let now = self.now();
        let shares = Shares::default();
        (self.conn).offer(
            message,
            P0,
            offset,
            now.wall_ms,
            true,
            false,
            &shares,
            &mut self.out,
        )
    }
}

fn now_at(ms: u64) -> Now {
    Now {
        monotonic_ms: ms,
        wall_ms: EPOCH_MS + ms as i64,
    }
}

fn pid(n: u16) -> PacketId {
    PacketId::new(n).expect("test packet ids are non-zero")
}

fn connect_packet(version: ProtocolVersion, client_id: &str) -> Connect {
    Connect {
        protocol_version: version,
        clean_start: true,
        keep_alive: 0,
        client_id: client_id.to_owned(),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    }
}

/// A persistent session: MQTT 5 with a session expiry interval.
fn persistent(client_id: &str, expiry_s: u32) -> Connect {
    let mut connect = connect_packet(V5, client_id);
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(expiry_s);
    connect
}

fn publish(qos: QoS, id: Option<u16>, topic: &str, payload: &[u8]) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.to_owned(),
        packet_id: id.map(pid),
        properties: Properties::default(),
        payload: payload.to_vec(),
    })
}

fn subscribe(id: u16, filter: &str, qos: QoS) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: pid(id),
        properties: Properties::default(),
        subscriptions: vec![Subscription {
            filter: filter.to_owned(),
            options: options(qos),
        }],
    })
}

fn options(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        no_local: false,
        retain_as_published: false,
        retain_handling: RetainHandling::SendAtSubscribe,
    }
}

fn log_message(topic: &str, qos: QoS, payload: &[u8]) -> LogMessage {
    LogMessage {
        topic: topic.to_owned(),
        payload: payload.to_vec(),
        qos,
        retain: false,
        properties: Properties::default(),
        timestamp_ms: EPOCH_MS,
    }
}

fn response(packet: Packet) -> PubResponse {
    match packet {
        Packet::PubAck(r) | Packet::PubRec(r) | Packet::PubRel(r) | Packet::PubComp(r) => r,
        other => panic!("expected an acknowledgement, got {other:?}"),
    }
}

/// The message a Store work item carries, with its token and duplicate-check key.
fn store_of(work: MqttWork) -> (u64, LogMessage, Option<(String, u16)>) {
    match work {
        MqttWork::Store {
            token,
            message,
            dedup,
        } => (token, *message, dedup.map(|d| (d.owner, d.id))),
        other => panic!("expected a store, got {other:?}"),
    }
}

#[test]
fn a_connect_is_answered_once_the_server_has_looked_the_client_up() {
    let mut pair = Pair::new(V4, SessionLimits::default());
    let Packet::ConnAck(ack) = pair.connect(connect_packet(V4, "c1"), None) else {
        panic!("expected a CONNACK");
    };
    assert!(!ack.session_present);
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    assert!(pair.conn.connected());
    assert_eq!(pair.conn.client_id(), "c1");
    assert!(!pair.conn.saturated());
}

#[test]
fn a_qos_1_publish_is_acknowledged_only_once_stored_with_the_time_it_arrived() {
    let mut pair = Pair::new(V4, SessionLimits::default());
    pair.connect(connect_packet(V4, "c1"), None);
    pair.advance(1_500);
    pair.send(&[publish(QoS::AtLeastOnce, Some(3), "sensors/a", b"21.5")]);
    let mut work = pair.take_work();
    assert_eq!(work.len(), 1, "{work:?}");
    let (token, message, dedup) = store_of(work.remove(0));
    assert_eq!(token, 3);
    assert_eq!(
        message.timestamp_ms,
        EPOCH_MS + 1_500,
        "the wall clock it was given"
    );
    assert_eq!(
        (message.topic.as_str(), &message.payload[..]),
        ("sensors/a", &b"21.5"[..])
    );
    assert_eq!(dedup, None, "QoS 1 carries no duplicate-check key");
    assert!(
        pair.received().is_empty(),
        "no PUBACK before the store completes"
    );
    pair.advance(4);
    pair.stored(token, 40);
    let ack = response(pair.received().remove(0));
    assert_eq!(ack.packet_id, pid(3));
}

#[test]
fn a_qos_2_publish_is_stored_once_with_its_key_and_completed_after_the_release() {
    let mut pair = Pair::new(V5, SessionLimits::default());
    pair.connect(connect_packet(V5, "c2"), None);
    pair.send(&[publish(QoS::ExactlyOnce, Some(9), "plant/line1", b"on")]);
    let (token, _, dedup) = store_of(pair.take_work().remove(0));
    assert_eq!(
        dedup,
        Some(("c2".to_owned(), 9)),
        "the key the log keeps until PUBREL"
    );
    pair.stored(token, 11);
    let Packet::PubRec(rec) = pair.received().remove(0) else {
        panic!("expected PUBREC");
    };
    assert_eq!(rec.packet_id, pid(9));
    pair.send(&[Packet::PubRel(PubResponse::new(pid(9)))]);
    let work = pair.take_work();
    assert!(
        matches!(&work[..], [MqttWork::Release { client_id, id: Some(9) }] if client_id == "c2"),
        "{work:?}"
    );
    assert!(
        pair.received().is_empty(),
        "no PUBCOMP before the key is gone"
    );
    pair.conn.released(9, &mut pair.out);
    let Packet::PubComp(comp) = pair.received().remove(0) else {
        panic!("expected PUBCOMP");
    };
    assert_eq!(comp.packet_id, pid(9));
}

/// A record stored (and acknowledged to its producer) while the connection was not
/// subscribed is not delivered to a subscription made afterwards, even when the shard offers
/// it only then; a subscription replaced by a new SUBSCRIBE keeps getting what it would have.
#[test]
fn a_new_subscription_takes_only_records_stored_after_it() {
    let mut pair = Pair::new(V5, SessionLimits::default());
    pair.connect(connect_packet(V5, "sub"), None);
    let before = log_message("un/t", QoS::AtLeastOnce, b"while-unsubscribed");
    let after = log_message("un/t", QoS::AtLeastOnce, b"after");
    *pair.edge.0.lock().unwrap() = vec![(P0, 6), (PartitionId(99), 3)];
    pair.send(&[subscribe(1, "un/t", QoS::AtLeastOnce)]);
    pair.received();
    assert_eq!(pair.offer(&before, 5), Offer::Skipped);
    assert_eq!(pair.offer(&after, 6), Offer::Taken);
    pair.received();

    *pair.edge.0.lock().unwrap() = vec![(P0, 9)];
    pair.send(&[subscribe(2, "un/t", QoS::AtLeastOnce)]);
    pair.received();
    assert_eq!(
        pair.offer(&before, 7),
        Offer::Taken,
        "a replaced subscription goes on"
    );
}

#[test]
fn qos_1_and_2_deliveries_wait_for_the_clients_acknowledgements() {
    let mut pair = Pair::new(V5, SessionLimits::default());
    pair.connect(connect_packet(V5, "sub"), None);
    pair.send(&[subscribe(1, "sensors/#", QoS::ExactlyOnce)]);
    assert!(matches!(pair.received()[..], [Packet::SubAck(_)]));
    assert!(matches!(pair.take_work()[..], [MqttWork::Subscribed]));
    let one = log_message("sensors/a", QoS::AtLeastOnce, b"1");
    let two = log_message("sensors/b", QoS::ExactlyOnce, b"2");
    assert_eq!(pair.offer(&one, 5), Offer::Taken);
    assert_eq!(pair.offer(&two, 6), Offer::Taken);
    let sent = pair.received();
    let ids: Vec<(QoS, PacketId)> = (sent.iter())
        .map(|p| match p {
            Packet::Publish(p) => (p.qos, p.packet_id.expect("QoS 1 and 2 carry an id")),
            other => panic!("expected PUBLISH, got {other:?}"),
        })
        .collect();
    assert_eq!((ids[0].0, ids[1].0), (QoS::AtLeastOnce, QoS::ExactlyOnce));
    pair.send(&[Packet::PubAck(PubResponse::new(ids[0].1))]);
    pair.send(&[Packet::PubRec(PubResponse::new(ids[1].1))]);
    let Packet::PubRel(rel) = pair.received().remove(0) else {
        panic!("expected PUBREL");
    };
    assert_eq!(rel.packet_id, ids[1].1);
    pair.send(&[Packet::PubComp(PubResponse::new(ids[1].1))]);
    assert!(pair.received().is_empty(), "the exchange is over");
    assert!(
        pair.take_work().is_empty(),
        "nothing is behind, nothing to read again"
    );
    pair.conn.finish(pair.now(), &mut pair.work);
    assert!(
        pair.take_work().is_empty(),
        "a clean session stores nothing"
    );
}

#[test]
fn a_persistent_session_is_saved_with_its_first_unacknowledged_offset() {
    let mut pair = Pair::new(V5, SessionLimits::default());
    pair.connect(persistent("keeper", 600), None);
    let work = pair.take_work();
    assert!(
        matches!(&work[..], [MqttWork::Save(s)] if s.client_id == "keeper"),
        "{work:?}"
    );
    pair.send(&[subscribe(1, "sensors/#", QoS::AtLeastOnce)]);
    pair.received();
    pair.take_work();
    assert_eq!(
        pair.offer(&log_message("sensors/a", QoS::AtLeastOnce, b"1"), 20),
        Offer::Taken
    );
    assert_eq!(
        pair.offer(&log_message("sensors/a", QoS::AtLeastOnce, b"2"), 21),
        Offer::Taken
    );
    let sent = pair.received();
    let Packet::Publish(first) = &sent[0] else {
        panic!("expected PUBLISH");
    };
    pair.send(&[Packet::PubAck(PubResponse::new(
        first.packet_id.expect("QoS 1"),
    ))]);
    pair.conn.finish(pair.now(), &mut pair.work);
    let work = pair.take_work();
    let [MqttWork::Save(snapshot)] = &work[..] else {
        panic!("expected the session saved: {work:?}");
    };
    assert_eq!(snapshot.expiry_interval_s, 600);
    assert_eq!(
        snapshot.pending.get(&P0),
        Some(&21),
        "offset 20 was acknowledged"
    );
    assert_eq!(snapshot.subscriptions[0].filter, "sensors/#");
}

#[test]
fn a_resumed_session_catches_up_on_its_backlog_before_live_delivery() {
    let mut pair = Pair::new(V5, SessionLimits::default());
    let record = SessionRecord {
        expiry_interval_s: 600,
        stored_at_ms: EPOCH_MS - 60_000,
        subscriptions: vec![StoredSubscription {
            filter: "sensors/#".into(),
            options: options(QoS::AtLeastOnce),
            identifier: None,
        }],
        cursors: vec![(P0, 42)],
        // 42 and 43 went to the connection before; 44 never did.
        sent: vec![(P0, 44)],
        released: Vec::new(),
    };
    let Packet::ConnAck(ack) = pair.connect(persistent("back", 600), Some(record)) else {
        panic!("expected a CONNACK");
    };
    assert!(ack.session_present);
    let work = pair.take_work();
    assert!(
        work.iter().any(|w| matches!(w, MqttWork::Subscribed)),
        "{work:?}"
    );
    assert!(
        work.iter().any(|w| matches!(w, MqttWork::Behind)),
        "{work:?}"
    );
    assert_eq!(pair.conn.behind(), [(P0, 42)]);
    // Live delivery skips the partition while the backlog is read from the log.
    assert!(!pair.conn.takes_live(P0, 50));
    let backlog = log_message("sensors/a", QoS::AtLeastOnce, b"old");
    let now = pair.now();
    pair.out.clear();
    for offset in 42..=44 {
        let offered = (pair.conn).offer(
            &backlog,
            P0,
            offset,
            now.wall_ms,
            true,
            true,
            &Shares::default(),
            &mut pair.out,
        );
        assert_eq!(offered, Offer::Taken);
    }
    // Sent again with DUP=1 (MQTT 3.1.1 section 4.4), the never-sent one with DUP=0.
    let dups: Vec<bool> = (pair.received().into_iter())
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p.dup),
            _ => None,
        })
        .collect();
    assert_eq!(dups, [true, true, false]);
    let sent: Vec<_> = pair.conn.snapshot().sent.into_iter().collect();
    assert_eq!(
        sent,
        [(P0, 45)],
        "what the session stores for the next connection"
    );
    pair.conn.advance(P0, 50, true);
    assert!(pair.conn.behind().is_empty());
    assert!(
        !pair.conn.takes_live(P0, 49),
        "what the backlog delivered is not sent again"
    );
    assert!(pair.conn.takes_live(P0, 50));
}

#[test]
fn keep_alive_expires_after_one_and_a_half_intervals_and_the_will_is_published() {
    let mut pair = Pair::new(V4, SessionLimits::default());
    let mut connect = connect_packet(V4, "sleepy");
    connect.keep_alive = 10;
    connect.will = Some(Will {
        topic: "status/sleepy".into(),
        payload: b"offline".to_vec(),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: Properties::default(),
    });
    pair.connect(connect, None);
    assert!(pair.conn.has_timer());
    pair.advance(14_900);
    assert!(pair.tick(), "still within 1.5 x keep alive");
    pair.advance(200);
    assert!(!pair.tick(), "15.1 s without a packet ends the session");
    let mut work = pair.take_work();
    assert_eq!(work.len(), 1, "{work:?}");
    let (token, will, _) = store_of(work.remove(0));
    assert_eq!(token, 0, "a will is acknowledged to nobody");
    assert_eq!((will.topic.as_str(), will.retain), ("status/sleepy", true));
    assert_eq!(
        will.timestamp_ms,
        EPOCH_MS + 15_100,
        "stamped when the session ended"
    );
}

#[test]
fn a_will_with_a_delay_waits_and_a_clean_disconnect_drops_it() {
    let mut pair = Pair::new(V5, SessionLimits::default());
    let mut connect = persistent("delayed", 600);
    let properties = Properties {
        will_delay_interval: Some(30),
        ..Properties::default()
    };
    connect.will = Some(Will {
        topic: "status/delayed".into(),
        payload: b"gone".to_vec(),
        qos: QoS::AtMostOnce,
        retain: false,
        properties,
    });
    pair.connect(connect, None);
    pair.take_work();
    pair.advance(2_000);
    pair.conn.finish(pair.now(), &mut pair.work);
    let work = pair.take_work();
    let due = work.iter().find_map(|w| match w {
        MqttWork::DelayWill {
            client_id, due_ms, ..
        } if client_id == "delayed" => Some(*due_ms),
        _ => None,
    });
    assert_eq!(due, Some(EPOCH_MS + 2_000 + 30_000), "{work:?}");

    let mut clean = Pair::new(V4, SessionLimits::default());
    let mut connect = connect_packet(V4, "polite");
    connect.will = Some(Will {
        topic: "status/polite".into(),
        payload: b"gone".to_vec(),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Properties::default(),
    });
    clean.connect(connect, None);
    clean.send(&[Packet::Disconnect(weir_mqtt::Disconnect::new(
        ReasonCode::SUCCESS,
    ))]);
    assert_eq!(clean.ended, Some(Ended::Goodbye));
    let work = clean.take_work();
    assert!(
        !work.iter().any(|w| matches!(w, MqttWork::Store { .. })),
        "{work:?}"
    );
}

#[test]
fn a_takeover_disconnects_with_0x8e_and_saves_the_session_first() {
    let mut pair = Pair::new(V5, SessionLimits::default());
    pair.connect(persistent("twin", 600), None);
    pair.take_work();
    pair.send(&[subscribe(1, "cmd/twin", QoS::AtLeastOnce)]);
    pair.received();
    pair.take_work();
    pair.conn
        .taken_over(pair.now(), &mut pair.out, &mut pair.work);
    let sent = pair.received();
    assert!(
        matches!(&sent[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::SESSION_TAKEN_OVER),
        "{sent:?}"
    );
    let work = pair.take_work();
    assert!(
        matches!(&work[..], [MqttWork::Save(s)] if s.subscriptions.len() == 1),
        "{work:?}"
    );
}

#[test]
fn denied_filters_are_refused_and_qos_0_without_room_is_dropped() {
    let mut pair = Pair::new(V5, SessionLimits::default());
    pair.connect(connect_packet(V5, "nosy"), None);
    pair.send(&[subscribe(1, "secret/keys", QoS::AtMostOnce)]);
    let Packet::SubAck(ack) = pair.received().remove(0) else {
        panic!("expected SUBACK");
    };
    assert_eq!(ack.reason_codes, [ReasonCode::UNSPECIFIED_ERROR]);
    pair.send(&[subscribe(2, "news/#", QoS::AtMostOnce)]);
    pair.received();
    let news = log_message("news/today", QoS::AtMostOnce, b"x");
    let now = pair.now();
    let no_room = (pair.conn).offer(
        &news,
        P0,
        1,
        now.wall_ms,
        false,
        false,
        &Shares::default(),
        &mut pair.out,
    );
    assert_eq!(no_room, Offer::Dropped, "counted by the server as dropped");
    assert_eq!(pair.offer(&news, 2), Offer::Taken);
}

/// A CONNECT with a wrong password, an unknown user or no credentials (anonymous clients not
/// allowed) gets its CONNACK failure code only after the delay, reads nothing meanwhile, asks
/// the server for nothing (no takeover, no session), and the connection ends; the right
/// password connects as that user.
#[test]
fn a_refused_connect_is_answered_after_the_delay_and_asks_for_nothing() {
    /// Version, user name, password, the CONNACK code expected.
    type Case = (
        ProtocolVersion,
        Option<&'static str>,
        Option<&'static [u8]>,
        u8,
    );
    let cases: [Case; 5] = [
        (V5, Some("alice"), Some(b"wrong"), 0x86),
        (V4, Some("bob"), Some(b"secret"), 4),
        (V4, Some("alice"), None, 4),
        (V5, None, None, 0x87),
        (V4, None, None, 5),
    ];
    for (version, username, password, code) in cases {
        let mut pair = Pair::with_auth(version, SessionLimits::default(), Arc::new(OneUser));
        let mut connect = connect_packet(version, "guesser");
        connect.username = username.map(str::to_owned);
        connect.password = password.map(<[u8]>::to_vec);
        pair.send(&[Packet::Connect(Box::new(connect))]);
        assert!(
            pair.take_work().is_empty(),
            "{username:?}: no work for a refused CONNECT"
        );
        assert!(pair.received().is_empty(), "no answer before the delay");
        assert!(pair.conn.saturated(), "nothing more is read meanwhile");
        assert!(pair.conn.has_timer());
        pair.advance(REFUSAL_DELAY_MS - 1);
        assert!(pair.tick(), "still waiting");
        assert!(pair.received().is_empty());
        pair.advance(1);
        assert!(!pair.tick(), "the connection ends with its answer");
        match &pair.received()[..] {
            [Packet::ConnAck(ack)] => assert_eq!(ack.reason_code, ReasonCode(code), "{username:?}"),
            other => panic!("{username:?}: {other:?}"),
        }
        assert!(!pair.conn.connected());
        assert_eq!(pair.conn.user(), None);
        assert!(pair.take_work().is_empty());
    }
    let mut pair = Pair::with_auth(V5, SessionLimits::default(), Arc::new(OneUser));
    let mut connect = connect_packet(V5, "alice-device");
    connect.username = Some("alice".into());
    connect.password = Some(b"secret".to_vec());
    match pair.connect(connect, None) {
        Packet::ConnAck(ack) => assert_eq!(ack.reason_code, ReasonCode::SUCCESS),
        other => panic!("{other:?}"),
    }
    assert_eq!(pair.conn.user(), Some("alice"));
}

/// With the TLS certificate's identity standing as the user name, the CONNECT's user name and
/// password are not looked at; a certificate that names no user is refused (0x87, 3.1.1: 5)
/// after the delay.
#[test]
fn a_certificate_identity_stands_for_the_credentials() {
    let mut pair = Pair::with_auth(V4, SessionLimits::default(), Arc::new(OneUser));
    pair.conn
        .set_certificate_identity(CertificateIdentity::User("sensor-7".into()));
    let mut connect = connect_packet(V4, "sensor-7");
    connect.username = Some("alice".into());
    connect.password = Some(b"wrong".to_vec());
    match pair.connect(connect, None) {
        Packet::ConnAck(ack) => assert_eq!(ack.reason_code, ReasonCode::SUCCESS),
        other => panic!("{other:?}"),
    }
    assert_eq!(pair.conn.user(), Some("sensor-7"));
    for (version, code) in [(V5, 0x87), (V4, 5)] {
        let mut pair = Pair::with_auth(version, SessionLimits::default(), Arc::new(OneUser));
        let refused = CertificateIdentity::Refused("the CN is not UTF-8".into());
        pair.conn.set_certificate_identity(refused);
        let mut connect = connect_packet(version, "guesser");
        connect.username = Some("alice".into());
        connect.password = Some(b"secret".to_vec());
        pair.send(&[Packet::Connect(Box::new(connect))]);
        assert!(pair.take_work().is_empty());
        assert!(pair.received().is_empty(), "no answer before the delay");
        pair.advance(REFUSAL_DELAY_MS);
        assert!(!pair.tick(), "the connection ends with its answer");
        match &pair.received()[..] {
            [Packet::ConnAck(ack)] => assert_eq!(ack.reason_code, ReasonCode(code)),
            other => panic!("{other:?}"),
        }
        assert_eq!(pair.conn.user(), None);
    }
}

/// An access-control list that never changes.
#[derive(Debug)]
struct FixedAcl(Arc<AclRules>);

impl AclSource for FixedAcl {
    fn current(&self) -> Option<Arc<AclRules>> {
        Some(self.0.clone())
    }
}

const ACL: &str = "topic readwrite open/#\ntopic read feed/#\ntopic deny feed/private/#\n";

/// Under an ACL: a denied publish is not stored (MQTT 5: 0x87; 3.1.1: acknowledged and
/// dropped) and counted; a subscription beyond what the list grants is refused; a message of
/// a denied topic inside a granted filter is not delivered.
#[test]
fn the_acl_decides_publishes_subscriptions_and_deliveries() {
    for (version, acknowledged) in [(V5, ReasonCode::NOT_AUTHORIZED), (V4, ReasonCode::SUCCESS)] {
        let mut pair = Pair::with_acl(version, ACL);
        pair.connect(connect_packet(version, "reader"), None);
        pair.send(&[publish(QoS::AtLeastOnce, Some(1), "feed/a", b"no")]);
        assert!(pair.take_work().is_empty(), "{version:?}: nothing stored");
        assert_eq!(
            response(pair.received().remove(0)).reason_code,
            acknowledged
        );
        assert_eq!(pair.conn.take_denied(), 1);
        pair.send(&[publish(QoS::AtLeastOnce, Some(2), "open/a", b"yes")]);
        let work = pair.take_work();
        assert!(
            matches!(&work[..], [MqttWork::Store { token: 2, .. }]),
            "{work:?}"
        );
        // A SUBSCRIBE waits for the publishes before it to be stored.
        pair.send(&[subscribe(3, "feed/#", QoS::AtMostOnce)]);
        assert!(pair.received().is_empty(), "{version:?}: held");
        pair.stored(2, 40);
        pair.drive();
        let got = pair.received();
        assert!(
            matches!(&got[..], [Packet::PubAck(_), Packet::SubAck(_)]),
            "{version:?}: {got:?}"
        );
        for (id, filter, granted) in [(4, "#", false), (5, "open/+", true)] {
            pair.send(&[subscribe(id, filter, QoS::AtMostOnce)]);
            let Packet::SubAck(ack) = pair.received().remove(0) else {
                panic!("expected SUBACK");
            };
            assert_eq!(
                ack.reason_codes[0].is_error(),
                !granted,
                "{version:?} {filter}"
            );
        }
        let private = log_message("feed/private/x", QoS::AtMostOnce, b"p");
        assert_eq!(
            pair.offer(&private, 1),
            Offer::Skipped,
            "denied inside feed/#"
        );
        let public = log_message("feed/x", QoS::AtMostOnce, b"f");
        assert_eq!(pair.offer(&public, 2), Offer::Taken);
    }
}

/// A will to a topic the list does not let the client write refuses the CONNECT (0x87,
/// 3.1.1: 5), after the delay; nothing is asked of the server.
#[test]
fn a_will_the_acl_refuses_refuses_the_connect() {
    for (version, code) in [(V5, 0x87), (V4, 5)] {
        let mut pair = Pair::with_acl(version, ACL);
        let mut connect = connect_packet(version, "dying");
        connect.will = Some(Will {
            topic: "feed/last".into(),
            payload: b"gone".to_vec(),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Properties::default(),
        });
        pair.send(&[Packet::Connect(Box::new(connect))]);
        assert!(pair.take_work().is_empty());
        pair.advance(REFUSAL_DELAY_MS);
        assert!(!pair.tick());
        match &pair.received()[..] {
            [Packet::ConnAck(ack)] => assert_eq!(ack.reason_code, ReasonCode(code)),
            other => panic!("{other:?}"),
        }
    }
}

/// A SUBSCRIBE read behind a publish waits for the publish to be stored; behind a publish
/// that is refused (nothing to store) it is answered at once, in the same read.
#[test]
fn a_subscribe_behind_publishes_waits_only_for_what_is_stored() {
    let mut pair = Pair::with_acl(V5, ACL);
    pair.connect(connect_packet(V5, "orderly"), None);
    pair.send(&[
        publish(QoS::AtMostOnce, None, "feed/a", b"denied"),
        subscribe(1, "open/#", QoS::AtMostOnce),
    ]);
    let work = pair.take_work();
    assert!(
        !work.iter().any(|w| matches!(w, MqttWork::Store { .. })),
        "nothing stored: {work:?}"
    );
    let got = pair.received();
    assert!(matches!(&got[..], [Packet::SubAck(_)]), "{got:?}");
    pair.send(&[
        publish(QoS::AtMostOnce, None, "open/a", b"kept"),
        subscribe(2, "open/b", QoS::AtMostOnce),
    ]);
    assert!(pair.received().is_empty(), "the SUBSCRIBE waits");
    pair.stored(0, 41);
    pair.drive();
    let got = pair.received();
    assert!(matches!(&got[..], [Packet::SubAck(_)]), "{got:?}");
}
