//! The server session driven by a scripted client: packets built as values, encoded with
//! [`Packet::encode`], fed as bytes with simulated time; what the session writes is decoded
//! back into packets and compared.

use proptest::collection::vec;
use proptest::prelude::*;

use super::*;

/// A session and everything it has produced so far.
struct Harness {
    session: ServerSession,
    version: ProtocolVersion,
    out: Vec<u8>,
    actions: Vec<Action>,
    /// Bytes fed but not consumed.
    held: Vec<u8>,
}

impl Harness {
    fn new(version: ProtocolVersion, limits: SessionLimits) -> Harness {
        Harness {
            session: ServerSession::new(limits, 7, 0),
            version,
            out: Vec::new(),
            actions: Vec::new(),
            held: Vec::new(),
        }
    }

    /// Feeds the held bytes followed by `bytes`; what is not consumed stays held.
    fn feed(&mut self, bytes: &[u8], now_ms: u64) -> Result<usize, SessionError> {
        self.held.extend_from_slice(bytes);
        let input = std::mem::take(&mut self.held);
        let result = self
            .session
            .on_bytes(&input, now_ms, &mut self.out, &mut self.actions);
        let used = *result.as_ref().unwrap_or(&0);
        self.held = input[used..].to_vec();
        result
    }

    fn send(&mut self, packets: &[Packet], now_ms: u64) -> Result<usize, SessionError> {
        let mut bytes = Vec::new();
        for p in packets {
            p.encode(self.version, &mut bytes)
                .expect("test packets encode");
        }
        self.feed(&bytes, now_ms)
    }

    /// The packets the session wrote since the last call.
    fn sent(&mut self) -> Vec<Packet> {
        let decoder = PacketDecoder::new(PACKET_SIZE_BYTES_LIMIT);
        let mut packets = Vec::new();
        let mut at = 0;
        while at < self.out.len() {
            let (p, used) = decoder
                .decode(&self.out[at..], self.version)
                .expect("the session writes valid packets")
                .expect("the session writes whole packets");
            packets.push(p);
            at += used;
        }
        self.out.clear();
        packets
    }

    fn actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    fn published(&mut self, id: u16, reason: ReasonCode) {
        self.session
            .published(pid(id), reason, &mut self.out, &mut self.actions);
    }
}

fn connect_packet(version: ProtocolVersion, client_id: &str, keep_alive: u16) -> Connect {
    Connect {
        protocol_version: version,
        clean_start: true,
        keep_alive,
        client_id: client_id.to_owned(),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    }
}

/// A session that has accepted a CONNECT from `connect` at time 0.
fn connected_with(connect: Connect, limits: SessionLimits) -> Harness {
    let mut h = Harness::new(connect.protocol_version, limits);
    h.send(&[Packet::Connect(Box::new(connect))], 0)
        .expect("valid CONNECT");
    assert!(matches!(h.actions()[..], [Action::Connect(_)]));
    h.session.accept(false, 0, &mut h.out);
    assert!(matches!(h.sent()[..], [Packet::ConnAck(_)]));
    h
}

fn connected(version: ProtocolVersion) -> Harness {
    connected_with(connect_packet(version, "c1", 0), SessionLimits::default())
}

fn publish(qos: QoS, id: Option<u16>, topic: &str) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.to_owned(),
        packet_id: id.map(pid),
        properties: Properties::default(),
        payload: b"hello".to_vec(),
    }
}

fn message(qos: QoS, payload_len: usize) -> Message {
    Message {
        topic: "t/1".to_owned(),
        payload: vec![7; payload_len],
        qos,
        retain: false,
        properties: Properties::default(),
        dup: false,
    }
}

fn response(id: u16, code: u8) -> PubResponse {
    PubResponse {
        packet_id: pid(id),
        reason_code: ReasonCode(code),
        properties: Properties::default(),
    }
}

fn connack(packet: &Packet) -> &ConnAck {
    match packet {
        Packet::ConnAck(c) => c,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

fn disconnect_code(h: &mut Harness) -> ReasonCode {
    match &h.sent()[..] {
        [Packet::Disconnect(d)] => d.reason_code,
        other => panic!("expected one DISCONNECT, got {other:?}"),
    }
}

fn close_reason(actions: &[Action]) -> (ReasonCode, bool) {
    match actions.last() {
        Some(Action::Close {
            reason,
            will_applies,
        }) => (*reason, *will_applies),
        other => panic!("expected Close, got {other:?}"),
    }
}

#[test]
fn connect_is_reported_and_accepted_in_every_version() {
    for version in VERSIONS {
        let mut connect = connect_packet(version, "sensor-1", 30);
        connect.clean_start = false;
        connect.username = Some("u".to_owned());
        connect.password = Some(b"p".to_vec());
        let mut h = Harness::new(version, SessionLimits::default());
        h.send(&[Packet::Connect(Box::new(connect))], 5)
            .expect("ok");
        assert!(h.sent().is_empty(), "nothing before the broker answers");
        let Some(Action::Connect(request)) = h.actions().pop() else {
            panic!("no Connect action");
        };
        assert_eq!(request.client_id, "sensor-1");
        assert!(!request.client_id_assigned);
        assert!(!request.clean_start);
        assert_eq!(request.keep_alive_s, 30);
        assert_eq!(request.username.as_deref(), Some("u"));
        assert_eq!(request.password.as_deref(), Some(&b"p"[..]));
        assert_eq!(request.protocol_version, version);
        h.session.accept(true, 5, &mut h.out);
        let sent = h.sent();
        let ack = connack(&sent[0]);
        // MQTT 3.1's CONNACK has no Session Present flag.
        assert_eq!(ack.session_present, version != V3);
        assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
        assert!(h.session.is_connected());
        assert_eq!(ack.properties.is_empty(), !version.is_v5());
    }
}

#[test]
fn v5_connack_announces_the_server_limits_and_connect_values_surface() {
    let mut connect = connect_packet(V5, "c", 0);
    connect.properties.session_expiry_interval = Some(300);
    connect.will = Some(Will {
        topic: "w".to_owned(),
        payload: b"gone".to_vec(),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: Properties::default(),
    });
    let limits = SessionLimits {
        receive_maximum: 5,
        topic_alias_max: 3,
        packet_size_bytes_max: 4096,
        ..SessionLimits::default()
    };
    let mut h = Harness::new(V5, limits);
    h.send(&[Packet::Connect(Box::new(connect.clone()))], 0)
        .expect("ok");
    let Some(Action::Connect(request)) = h.actions().pop() else {
        panic!("no Connect action");
    };
    assert_eq!(request.session_expiry_interval_s, Some(300));
    assert_eq!(request.will, connect.will);
    h.session.accept(false, 0, &mut h.out);
    let sent = h.sent();
    let p = &connack(&sent[0]).properties;
    assert_eq!(p.receive_maximum, Some(5));
    assert_eq!(p.topic_alias_maximum, Some(3));
    assert_eq!(p.maximum_packet_size, Some(4096));
    assert_eq!(p.assigned_client_identifier, None);
}

#[test]
fn refused_connect_gets_the_code_of_its_version_and_closes() {
    for (version, expected) in [(V5, 0x86), (V4, 4), (V3, 4)] {
        let mut h = Harness::new(version, SessionLimits::default());
        h.send(
            &[Packet::Connect(Box::new(connect_packet(version, "c", 0)))],
            0,
        )
        .expect("ok");
        h.session
            .refuse(ReasonCode::BAD_USER_NAME_OR_PASSWORD, &mut h.out);
        let sent = h.sent();
        assert_eq!(connack(&sent[0]).reason_code, ReasonCode(expected));
        assert!(h.session.is_closed());
        assert_eq!(
            h.send(&[Packet::PingReq], 1),
            Ok(0),
            "closed: nothing consumed"
        );
        assert!(h.sent().is_empty());
    }
}

#[test]
fn empty_client_id_gets_an_assigned_id_in_v5() {
    let mut ids = Vec::new();
    for seed in [1, 2] {
        let mut h = Harness {
            session: ServerSession::new(SessionLimits::default(), seed, 0),
            ..Harness::new(V5, SessionLimits::default())
        };
        h.send(&[Packet::Connect(Box::new(connect_packet(V5, "", 0)))], 0)
            .expect("ok");
        let Some(Action::Connect(request)) = h.actions().pop() else {
            panic!("no Connect action");
        };
        assert!(request.client_id_assigned);
        assert!(request.client_id.starts_with("weir-"));
        h.session.accept(false, 0, &mut h.out);
        let sent = h.sent();
        assert_eq!(
            connack(&sent[0])
                .properties
                .assigned_client_identifier
                .as_ref(),
            Some(&request.client_id)
        );
        ids.push(request.client_id);
    }
    assert_ne!(ids[0], ids[1], "distinct seeds, distinct identifiers");
}

#[test]
fn empty_client_id_in_v311_needs_clean_session() {
    // Clean session 1: accepted with a generated identifier the client is not told.
    let mut h = Harness::new(V4, SessionLimits::default());
    h.send(&[Packet::Connect(Box::new(connect_packet(V4, "", 0)))], 0)
        .expect("ok");
    let Some(Action::Connect(request)) = h.actions().pop() else {
        panic!("no Connect action");
    };
    assert!(request.client_id_assigned);
    // Clean session 0: return code 2, identifier rejected, without asking the broker.
    let mut h = Harness::new(V4, SessionLimits::default());
    let mut connect = connect_packet(V4, "", 0);
    connect.clean_start = false;
    let err = h
        .send(&[Packet::Connect(Box::new(connect))], 0)
        .unwrap_err();
    assert_eq!(err.reason_code(), ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
    assert_eq!(connack(&h.sent()[0]).reason_code, ReasonCode(2));
    assert_eq!(
        close_reason(&h.actions()),
        (ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, false)
    );
    assert!(h.session.is_closed());
}

#[test]
fn over_long_client_id_is_refused() {
    let limits = SessionLimits {
        client_id_bytes_max: 8,
        ..SessionLimits::default()
    };
    for (version, code) in [(V5, 0x85), (V4, 2)] {
        let mut h = Harness::new(version, limits.clone());
        let connect = connect_packet(version, "123456789", 0);
        assert!(h.send(&[Packet::Connect(Box::new(connect))], 0).is_err());
        assert_eq!(connack(&h.sent()[0]).reason_code, ReasonCode(code));
        assert!(!h.actions().iter().any(|a| matches!(a, Action::Connect(_))));
        // Exactly at the limit is fine.
        let mut h = Harness::new(version, limits.clone());
        let connect = connect_packet(version, "12345678", 0);
        assert!(h.send(&[Packet::Connect(Box::new(connect))], 0).is_ok());
    }
}

#[test]
fn second_connect_is_a_protocol_error() {
    for version in [V5, V4] {
        let mut h = connected(version);
        let again = Packet::Connect(Box::new(connect_packet(version, "c1", 0)));
        let err = h.send(&[again], 1).unwrap_err();
        assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
        if version.is_v5() {
            assert_eq!(disconnect_code(&mut h), ReasonCode::PROTOCOL_ERROR);
        } else {
            assert!(h.sent().is_empty(), "3.1.1 closes without a packet");
        }
        assert_eq!(
            close_reason(&h.actions()),
            (ReasonCode::PROTOCOL_ERROR, true)
        );
        assert_eq!(h.send(&[Packet::PingReq], 2), Ok(0));
    }
}

#[test]
fn first_packet_other_than_connect_closes_silently() {
    let mut h = Harness::new(V4, SessionLimits::default());
    let err = h.send(&[Packet::PingReq], 0).unwrap_err();
    assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
    assert!(h.sent().is_empty());
    assert_eq!(
        close_reason(&h.actions()),
        (ReasonCode::PROTOCOL_ERROR, false)
    );
    assert!(h.session.is_closed());
}

#[test]
fn broken_connect_is_answered_in_its_version() {
    // Unknown protocol level: 3.1.1 CONNACK return code 1.
    let mut h = Harness::new(V4, SessionLimits::default());
    let mut bytes = encode(&Packet::Connect(Box::new(connect_packet(V4, "c", 0))), V4);
    bytes[8] = 9; // the protocol level
    assert!(h.feed(&bytes, 0).is_err());
    assert_eq!(connack(&h.sent()[0]).reason_code, ReasonCode(1));
    // An MQTT 5 CONNECT with a reserved flag set: CONNACK 0x81.
    h = Harness::new(V5, SessionLimits::default());
    let mut bytes = encode(&Packet::Connect(Box::new(connect_packet(V5, "c", 0))), V5);
    bytes[9] |= 0x01; // reserved connect flag
    let err = h.feed(&bytes, 0).unwrap_err();
    assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
    assert_eq!(
        connack(&h.sent()[0]).reason_code,
        ReasonCode::MALFORMED_PACKET
    );
}

#[test]
fn packets_are_held_until_the_connect_is_answered() {
    let mut h = Harness::new(V5, SessionLimits::default());
    let connect = Packet::Connect(Box::new(connect_packet(V5, "c", 0)));
    let connect_len = encode(&connect, V5).len();
    let used = h
        .send(
            &[
                connect,
                Packet::PingReq,
                Packet::Publish(publish(QoS::AtMostOnce, None, "a")),
            ],
            0,
        )
        .expect("ok");
    assert_eq!(used, connect_len, "only the CONNECT is consumed");
    assert_eq!(h.actions().len(), 1);
    // Offering the bytes again changes nothing while the broker has not answered.
    assert_eq!(h.feed(&[], 1), Ok(0));
    h.session.accept(false, 2, &mut h.out);
    assert!(matches!(h.sent()[..], [Packet::ConnAck(_)]));
    assert!(h.feed(&[], 3).expect("ok") > 0);
    assert_eq!(h.sent(), vec![Packet::PingResp]);
    assert!(matches!(h.actions()[..], [Action::Publish(_)]));
    assert!(h.held.is_empty());
}

#[test]
fn keep_alive_closes_after_one_and_a_half_periods_of_silence() {
    let mut h = connected_with(connect_packet(V5, "c", 10), SessionLimits::default());
    // Connected at 0; silence allowed for 15 s.
    h.session.tick(15_000, &mut h.actions);
    assert!(h.actions().is_empty());
    h.send(&[Packet::PingReq], 14_000).expect("ok");
    assert_eq!(h.sent(), vec![Packet::PingResp]);
    assert_eq!(h.session.next_timeout_ms(), Some(29_000));
    h.session.tick(29_000, &mut h.actions);
    assert!(h.actions().is_empty(), "the PINGREQ restarted the timer");
    h.session.tick(29_001, &mut h.actions);
    assert_eq!(
        close_reason(&h.actions()),
        (ReasonCode::KEEP_ALIVE_TIMEOUT, true)
    );
    assert!(h.sent().is_empty(), "a server sends no DISCONNECT 0x8D");
    assert!(h.session.is_closed());
}

#[test]
fn keep_alive_zero_never_times_out_but_connect_must_arrive() {
    let mut h = connected(V4);
    assert_eq!(h.session.next_timeout_ms(), None);
    h.session.tick(u64::MAX, &mut h.actions);
    assert!(h.actions().is_empty());
    assert!(h.session.is_connected());
    let mut h = Harness::new(V4, SessionLimits::default());
    h.session.tick(10_000, &mut h.actions);
    assert!(h.actions().is_empty());
    h.session.tick(10_001, &mut h.actions);
    assert_eq!(
        close_reason(&h.actions()),
        (ReasonCode::KEEP_ALIVE_TIMEOUT, false)
    );
}

#[test]
fn qos0_publish_is_reported_without_an_ack() {
    for version in VERSIONS {
        let mut h = connected(version);
        let p = publish(QoS::AtMostOnce, None, "a/b");
        h.send(&[Packet::Publish(p.clone())], 1).expect("ok");
        assert_eq!(h.actions(), vec![Action::Publish(p)]);
        assert!(h.sent().is_empty());
    }
}

#[test]
fn qos1_puback_waits_for_published() {
    for version in VERSIONS {
        let mut h = connected(version);
        let p = publish(QoS::AtLeastOnce, Some(3), "a");
        h.send(&[Packet::Publish(p.clone())], 1).expect("ok");
        assert_eq!(h.actions(), vec![Action::Publish(p)]);
        assert!(h.sent().is_empty(), "no PUBACK before the record is stored");
        assert_eq!(h.session.inbound_inflight(), 1);
        h.published(3, ReasonCode::SUCCESS);
        assert_eq!(h.sent(), vec![Packet::PubAck(PubResponse::new(pid(3)))]);
        assert_eq!(h.session.inbound_inflight(), 0);
    }
}

#[test]
fn qos1_storage_failure_is_a_negative_puback_in_v5_and_a_close_in_v311() {
    let mut h = connected(V5);
    h.send(
        &[Packet::Publish(publish(QoS::AtLeastOnce, Some(3), "a"))],
        1,
    )
    .expect("ok");
    h.published(3, ReasonCode::QUOTA_EXCEEDED);
    assert_eq!(h.sent(), vec![Packet::PubAck(response(3, 0x97))]);
    assert!(h.session.is_connected());

    let mut h = connected(V4);
    h.send(
        &[Packet::Publish(publish(QoS::AtLeastOnce, Some(3), "a"))],
        1,
    )
    .expect("ok");
    h.actions();
    h.published(3, ReasonCode::QUOTA_EXCEEDED);
    assert!(h.sent().is_empty());
    assert_eq!(
        close_reason(&h.actions()),
        (ReasonCode::QUOTA_EXCEEDED, true)
    );
    assert!(h.session.is_closed());
}

#[test]
fn qos2_is_published_exactly_once() {
    for version in [V5, V4] {
        let mut h = connected(version);
        let p = publish(QoS::ExactlyOnce, Some(9), "a");
        let dup = Publish {
            dup: true,
            ..p.clone()
        };
        h.send(&[Packet::Publish(p.clone())], 1).expect("ok");
        assert_eq!(h.actions(), vec![Action::Publish(p.clone())]);
        // Retransmitted before the record is stored: neither reported nor answered yet.
        h.send(&[Packet::Publish(dup.clone())], 2).expect("ok");
        assert!(h.actions().is_empty());
        assert!(h.sent().is_empty());
        h.published(9, ReasonCode::SUCCESS);
        // Each copy gets its PUBREC once the first is stored (MQTT 4.3.3).
        let pubrec = Packet::PubRec(PubResponse::new(pid(9)));
        assert_eq!(h.sent(), vec![pubrec.clone(), pubrec]);
        // Retransmitted after PUBREC: PUBREC again, still not reported.
        h.send(&[Packet::Publish(dup)], 3).expect("ok");
        assert!(h.actions().is_empty());
        assert_eq!(h.sent(), vec![Packet::PubRec(PubResponse::new(pid(9)))]);
        assert_eq!(h.session.inbound_inflight(), 1);
        h.send(&[Packet::PubRel(PubResponse::new(pid(9)))], 4)
            .expect("ok");
        // PUBCOMP waits for the broker to forget the identifier; a repeated PUBREL meanwhile
        // is not reported twice.
        assert_eq!(h.actions(), vec![Action::Released { packet_id: pid(9) }]);
        assert!(h.sent().is_empty());
        h.send(&[Packet::PubRel(PubResponse::new(pid(9)))], 4)
            .expect("ok");
        assert!(h.actions().is_empty());
        h.session.completed(pid(9), ReasonCode::SUCCESS, &mut h.out);
        assert_eq!(h.sent(), vec![Packet::PubComp(PubResponse::new(pid(9)))]);
        assert_eq!(h.session.inbound_inflight(), 0);
        // The identifier is free again: a new message with it is a new message.
        h.send(&[Packet::Publish(p.clone())], 5).expect("ok");
        assert_eq!(h.actions(), vec![Action::Publish(p)]);
    }
}

/// A PUBREL for an identifier this connection never saw is reported too (a resumed
/// session's exchange): the broker answers it, 0x92 if it did not know it either (MQTT 5;
/// 3.1.1 has only success).
#[test]
fn pubrel_for_an_unknown_id_is_reported_and_answered_as_the_broker_says() {
    let mut h = connected(V5);
    h.send(&[Packet::PubRel(PubResponse::new(pid(44)))], 1)
        .expect("ok");
    assert_eq!(h.actions(), vec![Action::Released { packet_id: pid(44) }]);
    let not_found = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
    h.session.completed(pid(44), not_found, &mut h.out);
    assert_eq!(h.sent(), vec![Packet::PubComp(response(44, 0x92))]);
    let mut h = connected(V4);
    h.send(&[Packet::PubRel(PubResponse::new(pid(44)))], 1)
        .expect("ok");
    h.actions();
    h.session.completed(pid(44), not_found, &mut h.out);
    assert_eq!(h.sent(), vec![Packet::PubComp(PubResponse::new(pid(44)))]);
}

#[test]
fn pubrel_before_pubrec_is_a_protocol_error() {
    let mut h = connected(V5);
    let p = publish(QoS::ExactlyOnce, Some(2), "a");
    let err = h
        .send(
            &[Packet::Publish(p), Packet::PubRel(PubResponse::new(pid(2)))],
            1,
        )
        .unwrap_err();
    assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
}

#[test]
fn exceeding_the_receive_maximum_disconnects_v5_with_0x93() {
    let limits = SessionLimits {
        receive_maximum: 2,
        ..SessionLimits::default()
    };
    let mut h = connected_with(connect_packet(V5, "c", 0), limits);
    let packets: Vec<Packet> = (1..=3)
        .map(|i| Packet::Publish(publish(QoS::AtLeastOnce, Some(i), "a")))
        .collect();
    h.send(&packets[..2], 1).expect("two fit");
    let err = h.send(&packets[2..], 2).unwrap_err();
    assert_eq!(err.reason_code(), ReasonCode::RECEIVE_MAXIMUM_EXCEEDED);
    assert_eq!(
        disconnect_code(&mut h),
        ReasonCode::RECEIVE_MAXIMUM_EXCEEDED
    );
    assert_eq!(h.actions().len(), 3, "two publishes, then Close");
}

#[test]
fn v311_input_waits_while_the_receive_maximum_is_used_up() {
    let limits = SessionLimits {
        receive_maximum: 1,
        ..SessionLimits::default()
    };
    let mut h = connected_with(connect_packet(V4, "c", 0), limits);
    let first = Packet::Publish(publish(QoS::AtLeastOnce, Some(1), "a"));
    let first_len = encode(&first, V4).len();
    let second = Packet::Publish(publish(QoS::ExactlyOnce, Some(2), "a"));
    assert_eq!(h.send(&[first, second], 1), Ok(first_len));
    assert_eq!(h.actions().len(), 1);
    h.published(1, ReasonCode::SUCCESS);
    h.sent();
    h.feed(&[], 2).expect("ok");
    assert_eq!(h.actions().len(), 1, "the second comes once a slot is free");
    assert!(h.held.is_empty());
}

/// A QoS 2 publish waiting for its PUBREL does not hold input on 3.1.x: the PUBREL may sit
/// behind the next PUBLISH, and holding that PUBLISH would wait forever.
#[test]
fn v311_a_pubrel_behind_a_publish_is_not_held_back() {
    let limits = SessionLimits {
        receive_maximum: 1,
        ..SessionLimits::default()
    };
    let mut h = connected_with(connect_packet(V4, "c", 0), limits);
    h.send(
        &[Packet::Publish(publish(QoS::ExactlyOnce, Some(1), "a"))],
        1,
    )
    .expect("ok");
    h.actions();
    h.published(1, ReasonCode::SUCCESS);
    assert!(matches!(h.sent()[..], [Packet::PubRec(_)]));
    let next = Packet::Publish(publish(QoS::ExactlyOnce, Some(2), "a"));
    let release = Packet::PubRel(PubResponse::new(pid(1)));
    h.send(&[next, release], 2).expect("ok");
    assert!(h.held.is_empty(), "both taken");
    let actions = h.actions();
    assert!(
        matches!(actions[..], [Action::Publish(_), Action::Released { .. }]),
        "{actions:?}"
    );
    h.session.completed(pid(1), ReasonCode::SUCCESS, &mut h.out);
    assert!(matches!(h.sent()[..], [Packet::PubComp(_)]));
    // Now one publish waits for the broker: the next one waits, and so does what follows.
    let third = Packet::Publish(publish(QoS::AtLeastOnce, Some(3), "a"));
    h.send(&[third], 3).expect("ok");
    assert!(!h.held.is_empty());
    h.published(2, ReasonCode::SUCCESS);
    h.feed(&[], 4).expect("ok");
    assert!(h.held.is_empty());
}

#[test]
fn topic_aliases_are_set_used_and_checked() {
    let limits = SessionLimits {
        topic_alias_max: 2,
        ..SessionLimits::default()
    };
    let mut h = connected_with(connect_packet(V5, "c", 0), limits.clone());
    let mut set = publish(QoS::AtMostOnce, None, "long/topic/name");
    set.properties.topic_alias = Some(2);
    let mut use_it = publish(QoS::AtMostOnce, None, "");
    use_it.properties.topic_alias = Some(2);
    h.send(&[Packet::Publish(set), Packet::Publish(use_it)], 1)
        .expect("ok");
    for action in h.actions() {
        let Action::Publish(p) = action else {
            panic!("expected Publish");
        };
        assert_eq!(p.topic, "long/topic/name");
        assert_eq!(p.properties.topic_alias, None, "the alias is resolved away");
    }
    // Alias above the maximum: 0x94.
    let mut over = publish(QoS::AtMostOnce, None, "x");
    over.properties.topic_alias = Some(3);
    assert!(h.send(&[Packet::Publish(over)], 2).is_err());
    assert_eq!(disconnect_code(&mut h), ReasonCode::TOPIC_ALIAS_INVALID);
    // Alias never set: Protocol Error.
    let mut h = connected_with(connect_packet(V5, "c", 0), limits.clone());
    let mut unknown = publish(QoS::AtMostOnce, None, "");
    unknown.properties.topic_alias = Some(1);
    assert!(h.send(&[Packet::Publish(unknown)], 1).is_err());
    assert_eq!(disconnect_code(&mut h), ReasonCode::PROTOCOL_ERROR);
    // Alias 0 (the encoder refuses to write it, so patch the bytes): 0x94.
    let mut h = connected_with(connect_packet(V5, "c", 0), limits);
    let mut zero = publish(QoS::AtMostOnce, None, "x");
    zero.properties.topic_alias = Some(1);
    let mut bytes = encode(&Packet::Publish(zero), V5);
    let at = bytes.len() - b"hello".len() - 1;
    assert_eq!(bytes[at - 2..=at], [0x23, 0, 1]);
    bytes[at] = 0;
    assert!(h.feed(&bytes, 1).is_err());
    assert_eq!(disconnect_code(&mut h), ReasonCode::TOPIC_ALIAS_INVALID);
}

#[test]
fn publish_properties_reach_the_broker() {
    let mut h = connected(V5);
    let mut p = publish(QoS::AtLeastOnce, Some(1), "a");
    p.retain = true;
    p.properties = Properties {
        payload_format_indicator: Some(true),
        message_expiry_interval: Some(60),
        content_type: Some("text/plain".to_owned()),
        response_topic: Some("reply".to_owned()),
        correlation_data: Some(vec![1, 2]),
        user_properties: vec![("k".to_owned(), "v".to_owned())],
        ..Properties::default()
    };
    h.send(&[Packet::Publish(p.clone())], 1).expect("ok");
    assert_eq!(h.actions(), vec![Action::Publish(p)]);
    // A payload that breaks its UTF-8 promise: 0x99.
    let mut bad = publish(QoS::AtMostOnce, None, "a");
    bad.payload = vec![0xFF];
    bad.properties.payload_format_indicator = Some(true);
    assert!(h.send(&[Packet::Publish(bad)], 2).is_err());
    assert_eq!(disconnect_code(&mut h), ReasonCode::PAYLOAD_FORMAT_INVALID);
}

#[test]
fn subscribe_and_unsubscribe_are_acknowledged_when_the_broker_answers() {
    let subscribe = Subscribe {
        packet_id: pid(5),
        properties: Properties::default(),
        subscriptions: vec![
            Subscription {
                filter: "a/+".to_owned(),
                options: SubscriptionOptions::qos(QoS::AtLeastOnce),
            },
            Subscription {
                filter: "b/#".to_owned(),
                options: SubscriptionOptions::qos(QoS::ExactlyOnce),
            },
        ],
    };
    let unsubscribe = Unsubscribe {
        packet_id: pid(6),
        properties: Properties::default(),
        filters: vec!["a/+".to_owned()],
    };
    for version in [V5, V4] {
        let mut h = connected(version);
        h.send(
            &[
                Packet::Subscribe(subscribe.clone()),
                Packet::Unsubscribe(unsubscribe.clone()),
            ],
            1,
        )
        .expect("ok");
        assert_eq!(
            h.actions(),
            vec![
                Action::Subscribe(subscribe.clone()),
                Action::Unsubscribe(unsubscribe.clone())
            ]
        );
        assert!(h.sent().is_empty());
        let codes = [ReasonCode::GRANTED_QOS_1, ReasonCode::NOT_AUTHORIZED];
        h.session.subscribed(pid(5), &codes, &mut h.out);
        h.session
            .unsubscribed(pid(6), &[ReasonCode::NO_SUBSCRIPTION_EXISTED], &mut h.out);
        let (suback, unsuback) = if version.is_v5() {
            (codes.to_vec(), vec![ReasonCode::NO_SUBSCRIPTION_EXISTED])
        } else {
            (vec![ReasonCode(1), ReasonCode(0x80)], vec![])
        };
        assert_eq!(
            h.sent(),
            vec![
                Packet::SubAck(SubAck {
                    packet_id: pid(5),
                    properties: Properties::default(),
                    reason_codes: suback,
                }),
                Packet::UnsubAck(UnsubAck {
                    packet_id: pid(6),
                    properties: Properties::default(),
                    reason_codes: unsuback,
                }),
            ]
        );
    }
}

#[test]
fn outbound_qos1_respects_the_client_receive_maximum_and_the_queue_bound() {
    let mut connect = connect_packet(V5, "c", 0);
    connect.properties.receive_maximum = Some(2);
    let one = Packet::Publish(publish_for(&message(QoS::AtLeastOnce, 100), 1)).encoded_len(V5);
    let size = one.expect("encodes");
    let limits = SessionLimits {
        outbound_queue_bytes_max: 2 * size,
        ..SessionLimits::default()
    };
    let mut h = connected_with(connect, limits);
    let m = message(QoS::AtLeastOnce, 100);
    let deliver = |h: &mut Harness| h.session.deliver(m.clone(), &mut h.out);
    assert_eq!(deliver(&mut h), Ok(Delivery::Sent(Some(pid(1)))));
    assert_eq!(deliver(&mut h), Ok(Delivery::Sent(Some(pid(2)))));
    assert_eq!(h.sent().len(), 2);
    assert_eq!(deliver(&mut h), Ok(Delivery::Queued));
    assert_eq!(deliver(&mut h), Ok(Delivery::Queued));
    assert_eq!(deliver(&mut h), Err(DeliverError::QueueFull));
    assert_eq!(h.session.queued_bytes(), 2 * size);
    assert!(h.sent().is_empty());
    // QoS 0 is not held back by the window.
    assert_eq!(
        h.session.deliver(message(QoS::AtMostOnce, 1), &mut h.out),
        Ok(Delivery::Sent(None))
    );
    h.sent();
    // Each PUBACK frees a slot for the next queued message, under the next identifier.
    h.send(&[Packet::PubAck(PubResponse::new(pid(1)))], 1)
        .expect("ok");
    assert_eq!(
        h.sent(),
        vec![Packet::Publish(publish_for(&m, 3))],
        "queued message goes out"
    );
    assert_eq!(h.session.outbound_inflight(), 2);
    assert_eq!(h.session.queued_bytes(), size);
}

/// Tags follow each outbound message: `Delivered` comes at PUBACK (QoS 1) and PUBREC
/// (QoS 2), and the tags not delivered yet, written or queued, are listed.
#[test]
fn outbound_tags_are_reported_when_acknowledged_and_listed_until_then() {
    let mut connect = connect_packet(V4, "c", 0);
    connect.properties = Properties::default();
    let mut h = connected_with(connect, SessionLimits::default());
    let q1 = message(QoS::AtLeastOnce, 10);
    let q2 = message(QoS::ExactlyOnce, 10);
    assert_eq!(
        h.session.deliver_tagged(q1.borrowed(), 11, &mut h.out),
        Ok(Delivery::Sent(Some(pid(1))))
    );
    assert_eq!(
        h.session.deliver_tagged(q2.borrowed(), 22, &mut h.out),
        Ok(Delivery::Sent(Some(pid(2))))
    );
    h.sent();
    let mut tags = h.session.unacknowledged_tags();
    tags.sort();
    assert_eq!(tags, [11, 22]);
    h.send(&[Packet::PubRec(PubResponse::new(pid(2)))], 1)
        .expect("ok");
    assert_eq!(h.actions(), vec![Action::Delivered { tag: 22 }]);
    assert_eq!(h.session.unacknowledged_tags(), [11]);
    // A repeated PUBREC is answered again but reports nothing twice.
    h.send(&[Packet::PubRec(PubResponse::new(pid(2)))], 2)
        .expect("ok");
    assert!(h.actions().is_empty());
    h.send(
        &[
            Packet::PubAck(PubResponse::new(pid(1))),
            Packet::PubComp(PubResponse::new(pid(2))),
        ],
        3,
    )
    .expect("ok");
    assert_eq!(h.actions(), vec![Action::Delivered { tag: 11 }]);
    assert!(h.session.unacknowledged_tags().is_empty());
}

fn publish_for(m: &Message, id: u16) -> Publish {
    Publish {
        dup: false,
        qos: m.qos,
        retain: m.retain,
        topic: m.topic.clone(),
        packet_id: (m.qos != QoS::AtMostOnce).then(|| pid(id)),
        properties: m.properties.clone(),
        payload: m.payload.clone(),
    }
}

#[test]
fn outbound_qos2_walks_pubrec_pubrel_pubcomp() {
    let mut connect = connect_packet(V5, "c", 0);
    connect.properties.receive_maximum = Some(1);
    let mut h = connected_with(connect, SessionLimits::default());
    let m = message(QoS::ExactlyOnce, 3);
    assert_eq!(
        h.session.deliver(m.clone(), &mut h.out),
        Ok(Delivery::Sent(Some(pid(1))))
    );
    assert_eq!(
        h.session.deliver(m.clone(), &mut h.out),
        Ok(Delivery::Queued)
    );
    h.sent();
    h.send(&[Packet::PubRec(PubResponse::new(pid(1)))], 1)
        .expect("ok");
    assert_eq!(h.sent(), vec![Packet::PubRel(PubResponse::new(pid(1)))]);
    assert_eq!(h.session.outbound_inflight(), 1, "held until PUBCOMP");
    h.send(&[Packet::PubComp(PubResponse::new(pid(1)))], 2)
        .expect("ok");
    assert_eq!(h.sent(), vec![Packet::Publish(publish_for(&m, 2))]);
    // A failed PUBREC ends the exchange without PUBREL.
    h.send(&[Packet::PubRec(response(2, 0x80))], 3).expect("ok");
    assert!(h.sent().is_empty());
    assert_eq!(h.session.outbound_inflight(), 0);
    // PUBREC for an identifier not in flight: PUBREL 0x92.
    h.send(&[Packet::PubRec(PubResponse::new(pid(77)))], 4)
        .expect("ok");
    assert_eq!(h.sent(), vec![Packet::PubRel(response(77, 0x92))]);
}

#[test]
fn packet_ids_are_reused_after_ack_and_skip_those_in_flight() {
    let mut h = connected(V4);
    let m = message(QoS::AtLeastOnce, 0);
    // Identifier 1 stays unacknowledged; all others cycle through.
    assert_eq!(
        h.session.deliver(m.clone(), &mut h.out),
        Ok(Delivery::Sent(Some(pid(1))))
    );
    let mut ack = Vec::new();
    for id in 2..=u16::MAX {
        assert_eq!(
            h.session.deliver(m.clone(), &mut h.out),
            Ok(Delivery::Sent(Some(pid(id))))
        );
        ack.clear();
        Packet::PubAck(PubResponse::new(pid(id)))
            .encode(V4, &mut ack)
            .expect("encodes");
        h.feed(&ack, 1).expect("ok");
        h.out.clear();
    }
    assert_eq!(
        h.session.deliver(m.clone(), &mut h.out),
        Ok(Delivery::Sent(Some(pid(2)))),
        "wraps around, skipping 1"
    );
    assert_eq!(h.session.outbound_inflight(), 2);
}

#[test]
fn puback_for_an_unknown_id_is_a_protocol_error_in_v5_only() {
    let mut h = connected(V5);
    assert!(
        h.send(&[Packet::PubAck(PubResponse::new(pid(3)))], 1)
            .is_err()
    );
    assert_eq!(disconnect_code(&mut h), ReasonCode::PROTOCOL_ERROR);
    let mut h = connected(V4);
    assert!(
        h.send(&[Packet::PubAck(PubResponse::new(pid(3)))], 1)
            .is_ok()
    );
    assert!(h.session.is_connected());
}

#[test]
fn messages_over_the_client_maximum_packet_size_are_discarded() {
    let mut connect = connect_packet(V5, "c", 0);
    connect.properties.maximum_packet_size = Some(64);
    let mut h = connected_with(connect, SessionLimits::default());
    let fits = message(QoS::AtLeastOnce, 64 - 2 - 2 - 3 - 2 - 1);
    assert_eq!(
        Packet::Publish(publish_for(&fits, 1)).encoded_len(V5),
        Ok(64)
    );
    assert_eq!(
        h.session.deliver(fits, &mut h.out),
        Ok(Delivery::Sent(Some(pid(1))))
    );
    h.sent();
    let too_big = message(QoS::AtMostOnce, 60);
    assert_eq!(
        h.session.deliver(too_big, &mut h.out),
        Ok(Delivery::Discarded)
    );
    assert!(h.sent().is_empty());
    assert_eq!(h.session.discarded_too_large(), 1);
    assert_eq!(h.session.outbound_inflight(), 1);
}

#[test]
fn deliver_refuses_before_accept_and_invalid_messages() {
    let mut h = Harness::new(V4, SessionLimits::default());
    assert_eq!(
        h.session.deliver(message(QoS::AtMostOnce, 1), &mut h.out),
        Err(DeliverError::NotConnected)
    );
    let mut h = connected(V4);
    let mut m = message(QoS::AtMostOnce, 1);
    m.properties.content_type = Some("x".to_owned());
    assert!(matches!(
        h.session.deliver(m, &mut h.out),
        Err(DeliverError::Invalid(_))
    ));
}

#[test]
fn will_is_kept_or_discarded_by_how_the_connection_ends() {
    let cases = [
        (V5, ReasonCode::SUCCESS, false),
        (V5, ReasonCode::DISCONNECT_WITH_WILL, true),
        (V5, ReasonCode::UNSPECIFIED_ERROR, true),
        (V4, ReasonCode::SUCCESS, false),
    ];
    for (version, code, publish_will) in cases {
        let mut h = connected(version);
        h.send(&[Packet::Disconnect(Disconnect::new(code))], 1)
            .expect("ok");
        assert_eq!(
            h.actions(),
            vec![Action::Disconnected {
                publish_will,
                session_expiry_interval_s: None
            }]
        );
        assert!(h.session.is_closed());
        assert!(h.sent().is_empty());
    }
    // Closing for an error applies the will.
    let mut h = connected(V4);
    assert!(h.feed(&[0x00, 0x00], 1).is_err());
    assert_eq!(
        close_reason(&h.actions()),
        (ReasonCode::MALFORMED_PACKET, true)
    );
    // A DISCONNECT may not set a session expiry when the CONNECT set none.
    let mut h = connected(V5);
    let mut d = Disconnect::new(ReasonCode::SUCCESS);
    d.properties.session_expiry_interval = Some(10);
    assert!(h.send(&[Packet::Disconnect(d.clone())], 1).is_err());
    assert_eq!(disconnect_code(&mut h), ReasonCode::PROTOCOL_ERROR);
    let mut connect = connect_packet(V5, "c", 0);
    connect.properties.session_expiry_interval = Some(5);
    let mut h = connected_with(connect, SessionLimits::default());
    h.send(&[Packet::Disconnect(d)], 1).expect("ok");
    assert_eq!(
        h.actions(),
        vec![Action::Disconnected {
            publish_will: false,
            session_expiry_interval_s: Some(10)
        }]
    );
}

#[test]
fn pingreq_gets_pingresp_and_client_only_packets_are_refused() {
    let mut h = connected(V5);
    h.send(&[Packet::PingReq, Packet::PingReq], 1).expect("ok");
    assert_eq!(h.sent(), vec![Packet::PingResp, Packet::PingResp]);
    assert!(h.send(&[Packet::PingResp], 2).is_err());
    assert_eq!(disconnect_code(&mut h), ReasonCode::PROTOCOL_ERROR);
}

#[test]
fn server_disconnect_writes_a_reason_in_v5() {
    let mut h = connected(V5);
    h.session
        .disconnect(ReasonCode::SESSION_TAKEN_OVER, &mut h.out);
    assert_eq!(disconnect_code(&mut h), ReasonCode::SESSION_TAKEN_OVER);
    assert!(h.session.is_closed());
}

/// Input for the hostile-client test: valid packets that exercise state, and raw bytes.
fn chunk(version: ProtocolVersion) -> impl Strategy<Value = Vec<u8>> {
    let id = 1..=6u16;
    let packet = prop_oneof![
        (0..=2u8, id.clone(), 0..4u16, any::<bool>()).prop_map(move |(qos, id, alias, dup)| {
            let qos = QoS::try_from(qos).expect("0..=2");
            let mut p = publish(qos, (qos != QoS::AtMostOnce).then_some(id), "t");
            p.dup = dup && qos != QoS::AtMostOnce;
            if version.is_v5() && alias > 0 {
                p.properties.topic_alias = Some(alias);
                if alias == 3 {
                    p.topic.clear();
                }
            }
            Packet::Publish(p)
        }),
        id.clone()
            .prop_map(|id| Packet::PubRel(PubResponse::new(pid(id)))),
        id.clone()
            .prop_map(|id| Packet::PubAck(PubResponse::new(pid(id)))),
        id.clone()
            .prop_map(|id| Packet::PubRec(PubResponse::new(pid(id)))),
        id.clone()
            .prop_map(|id| Packet::PubComp(PubResponse::new(pid(id)))),
        id.clone().prop_map(|id| Packet::Subscribe(Subscribe {
            packet_id: pid(id),
            properties: Properties::default(),
            subscriptions: vec![Subscription {
                filter: "a/#".to_owned(),
                options: SubscriptionOptions::qos(QoS::AtLeastOnce),
            }],
        })),
        id.prop_map(|id| Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(id),
            properties: Properties::default(),
            filters: vec!["a/#".to_owned()],
        })),
        Just(Packet::PingReq),
    ];
    prop_oneof![
        4 => packet.prop_map(move |p| encode(&p, version)),
        1 => vec(any::<u8>(), 0..64),
    ]
}

fn hostile_input() -> impl Strategy<Value = (ProtocolVersion, Vec<Vec<u8>>, Vec<bool>)> {
    prop_oneof![Just(V4), Just(V5)].prop_flat_map(|version| {
        (
            Just(version),
            vec(chunk(version), 0..40),
            vec(any::<bool>(), 40),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// After a valid CONNECT, any input (valid packets in any order, random bytes, split
    /// anywhere) never panics the session, the broker answering every action at once or
    /// later, and the session's memory stays within its limits.
    #[test]
    fn hostile_client_never_panics_or_grows_beyond_limits(
        (version, chunks, answer_now) in hostile_input()
    ) {
        let limits = SessionLimits {
            receive_maximum: 3,
            topic_alias_max: 2,
            outbound_queue_bytes_max: 200,
            packet_size_bytes_max: 256,
            ..SessionLimits::default()
        };
        let mut connect = connect_packet(version, "c", 5);
        if version.is_v5() {
            connect.properties.receive_maximum = Some(2);
        }
        let mut h = connected_with(connect, limits);
        let mut waiting = Vec::new();
        let mut now = 0;
        for (i, bytes) in chunks.iter().enumerate() {
            now += 100;
            // Split each chunk in two to exercise partial input.
            let (a, b) = bytes.split_at(bytes.len() / 2);
            for part in [a, b] {
                let before = h.held.len() + part.len();
                match h.feed(part, now) {
                    Ok(used) => prop_assert!(used <= before),
                    Err(_) => prop_assert!(h.session.is_closed()),
                }
            }
            waiting.extend(h.actions());
            if answer_now[i % answer_now.len()] {
                for action in waiting.drain(..) {
                    match action {
                        Action::Publish(Publish { packet_id: Some(id), .. }) => h.session.published(id, ReasonCode::SUCCESS, &mut h.out, &mut h.actions),
                        Action::Subscribe(s) => h.session.subscribed(s.packet_id, &[ReasonCode::GRANTED_QOS_1], &mut h.out),
                        Action::Unsubscribe(u) => h.session.unsubscribed(u.packet_id, &[ReasonCode::SUCCESS], &mut h.out),
                        Action::Released { packet_id } => h.session.completed(packet_id, ReasonCode::SUCCESS, &mut h.out),
                        _ => {}
                    }
                }
                let _ = h.session.deliver(message(QoS::ExactlyOnce, 20), &mut h.out);
                let _ = h.session.deliver(message(QoS::AtLeastOnce, 20), &mut h.out);
            }
            h.session.tick(now, &mut h.actions);
            // The session writes only valid packets.
            h.sent();
            // The broker never has more publishes to store than the receive maximum.
            let storing = waiting
                .iter()
                .filter(|a| matches!(a, Action::Publish(Publish { packet_id: Some(_), .. })))
                .count();
            prop_assert!(storing <= 3);
            let window = if version.is_v5() { 2 } else { usize::from(u16::MAX) };
            prop_assert!(h.session.outbound_inflight() <= window);
            prop_assert!(h.session.queued_bytes() <= 200);
            // What is held is at most one incomplete packet within the size limit, or input
            // waiting for a slot; it never includes bytes of a refused packet.
            if h.session.is_closed() {
                prop_assert_eq!(h.feed(&[1, 2, 3], now), Ok(0));
                break;
            }
        }
    }
}

/// Outbound topic aliases: a client announcing a Topic Alias Maximum gets aliases for the
/// topics sent to it, at most that many (and at most the server's own limit), the oldest
/// reassigned when they run out; a 3.1.1 client and a client without the property get none.
#[test]
fn outbound_topic_aliases_are_assigned_reused_and_bounded() {
    let mut connect = connect_packet(V5, "c", 0);
    connect.properties.topic_alias_maximum = Some(2);
    let mut h = connected_with(connect, SessionLimits::default());
    let on = |topic: &str| Message {
        topic: topic.to_owned(),
        ..message(QoS::AtMostOnce, 1)
    };
    for topic in ["a", "b", "a", "c", "a", "c"] {
        h.session.deliver(on(topic), &mut h.out).expect("sent");
    }
    let sent: Vec<(String, Option<u16>)> = h
        .sent()
        .into_iter()
        .map(|p| match p {
            Packet::Publish(p) => (p.topic, p.properties.topic_alias),
            other => panic!("{other:?}"),
        })
        .collect();
    let expected = [
        ("a", 1),
        ("b", 2),
        ("", 1),
        ("c", 1), // both in use: the oldest, 1, now means c
        ("a", 2),
        ("", 1),
    ];
    let expected: Vec<(String, Option<u16>)> = expected
        .iter()
        .map(|(t, a)| ((*t).to_owned(), Some(*a)))
        .collect();
    assert_eq!(sent, expected);
    // The server's own limit caps what the client asks for.
    let mut connect = connect_packet(V5, "c", 0);
    connect.properties.topic_alias_maximum = Some(100);
    let limits = SessionLimits {
        topic_alias_max: 1,
        ..SessionLimits::default()
    };
    let mut h = connected_with(connect, limits);
    for topic in ["a", "b"] {
        h.session.deliver(on(topic), &mut h.out).expect("sent");
    }
    let aliases: Vec<Option<u16>> = h
        .sent()
        .into_iter()
        .map(|p| match p {
            Packet::Publish(p) => p.properties.topic_alias,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(aliases, [Some(1), Some(1)]);
    for version in [V4, V5] {
        let mut h = connected(version);
        h.session.deliver(on("a"), &mut h.out).expect("sent");
        h.session.deliver(on("a"), &mut h.out).expect("sent");
        for p in h.sent() {
            assert!(
                matches!(p, Packet::Publish(p) if p.topic == "a" && p.properties.topic_alias.is_none())
            );
        }
    }
}

mod rules;
