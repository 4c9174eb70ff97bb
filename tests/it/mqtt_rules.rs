//! MQTT rules a conforming broker keeps, each against the real process over a raw socket
//! with packets from the project's codec (the cases Mosquitto's broker tests and the Paho
//! interoperability suite check): MQTT 3.1's client identifier and CONNACK, an authentication
//! method Weir does not offer, publishes to `$SYS` and `$share/` topics, and
//! acknowledgements of the wrong type.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use weir_mqtt::{
    Connect, Packet, PacketDecoder, PacketId, Properties, ProtocolVersion, PubResponse, Publish,
    QoS, ReasonCode, Subscribe, Subscription, SubscriptionOptions,
};
use weir_tests::{WAIT, Weir, closed_by_peer};

/// A client speaking `version` over a raw socket.
struct Raw {
    stream: TcpStream,
    version: ProtocolVersion,
    buf: Vec<u8>,
}

impl Raw {
    fn open(addr: SocketAddr, version: ProtocolVersion) -> Raw {
        let stream = TcpStream::connect(addr).expect("the broker accepts");
        stream.set_read_timeout(Some(WAIT)).expect("a read timeout");
        Raw {
            stream,
            version,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, packet: Packet) {
        let mut bytes = Vec::new();
        (packet.encode(self.version, &mut bytes)).expect("test packets encode");
        self.stream.write_all(&bytes).expect("the packet is sent");
    }

    /// The next packet, or `None` once the broker closed the connection.
    fn next(&mut self) -> Option<Packet> {
        let decoder = PacketDecoder::new(1 << 20);
        loop {
            if let Some((packet, used)) =
                (decoder.decode(&self.buf, self.version)).expect("the broker sends valid packets")
            {
                self.buf.drain(..used);
                return Some(packet);
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Sends a CONNECT without reading the answer.
    fn send_connect(&mut self, client_id: &str, clean_start: bool, properties: Properties) {
        self.send(Packet::Connect(Box::new(Connect {
            protocol_version: self.version,
            clean_start,
            keep_alive: 0,
            client_id: client_id.to_owned(),
            will: None,
            username: None,
            password: None,
            properties,
        })));
    }

    /// Sends a CONNECT; the raw bytes of the answer's first four (a CONNACK's fixed header,
    /// flags and code).
    fn connect(&mut self, client_id: &str, clean_start: bool, properties: Properties) -> [u8; 4] {
        self.send_connect(client_id, clean_start, properties);
        let mut head = [0u8; 4];
        self.stream.read_exact(&mut head).expect("a CONNACK");
        if self.version == ProtocolVersion::V5 {
            // The properties after the reason code.
            let mut rest = vec![0u8; usize::from(head[1]) - 2];
            self.stream.read_exact(&mut rest).expect("its properties");
        }
        head
    }
}

fn publish(qos: QoS, id: Option<u16>, topic: &str) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.to_owned(),
        packet_id: id.and_then(PacketId::new),
        properties: Properties::default(),
        payload: b"x".to_vec(),
    })
}

/// A SUBSCRIBE (packet identifier 1) to `filters`, each at `qos`.
fn subscribe(filters: &[&str], qos: QoS) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: id(1),
        subscriptions: (filters.iter())
            .map(|filter| Subscription {
                filter: (*filter).to_owned(),
                options: SubscriptionOptions::qos(qos),
            })
            .collect(),
        properties: Properties::default(),
    })
}

/// A client of `version` connected as `client_id` (with Clean Start `clean`) and subscribed
/// to `filters` at `qos`.
fn subscriber(
    addr: SocketAddr,
    version: ProtocolVersion,
    (client_id, clean): (&str, bool),
    filters: &[&str],
    qos: QoS,
) -> Raw {
    let mut raw = Raw::open(addr, version);
    raw.connect(client_id, clean, Properties::default());
    raw.send(subscribe(filters, qos));
    let suback = raw.next();
    assert!(matches!(suback, Some(Packet::SubAck(_))), "{suback:?}");
    raw
}

fn id(n: u16) -> PacketId {
    PacketId::new(n).expect("non-zero")
}

/// MQTT 3.1: a CONNECT without a client identifier is refused with return code 2; a resumed
/// session's CONNACK carries no Session Present flag (the byte is reserved in 3.1), where
/// 3.1.1's does.
#[test]
fn mqtt_3_1_needs_a_client_id_and_its_connack_has_no_session_present_flag() {
    let mut weir = Weir::builder().start().unwrap();
    let addr = weir.mqtt_addr().unwrap();
    let mut raw = Raw::open(addr, ProtocolVersion::V3_1);
    assert_eq!(
        raw.connect("", true, Properties::default()),
        [0x20, 2, 0, 2]
    );
    assert!(closed_by_peer(&mut raw.stream));
    for (version, present) in [(ProtocolVersion::V3_1, 0), (ProtocolVersion::V3_1_1, 1)] {
        let client = format!("keeper-{version:?}");
        let mut first = Raw::open(addr, version);
        assert_eq!(
            first.connect(&client, false, Properties::default()),
            [0x20, 2, 0, 0]
        );
        first.send(Packet::Disconnect(weir_mqtt::Disconnect::new(
            ReasonCode::SUCCESS,
        )));
        assert!(closed_by_peer(&mut first.stream));
        let mut again = Raw::open(addr, version);
        let connack = again.connect(&client, false, Properties::default());
        assert_eq!(connack, [0x20, 2, present, 0], "{version:?}");
    }
}

/// An MQTT 5 CONNECT naming an Authentication Method gets CONNACK 0x8C (Bad authentication
/// method): Weir offers no enhanced authentication.
#[test]
fn an_authentication_method_gets_connack_0x8c() {
    let mut weir = Weir::builder().start().unwrap();
    let mut raw = Raw::open(weir.mqtt_addr().unwrap(), ProtocolVersion::V5);
    let properties = Properties {
        authentication_method: Some("SCRAM-SHA-1".into()),
        ..Properties::default()
    };
    let connack = raw.connect("auth", true, properties);
    assert_eq!(connack[3], 0x8C, "{connack:02x?}");
    assert!(closed_by_peer(&mut raw.stream));
}

/// `$SYS` is the broker's: a QoS 1 publish there gets PUBACK 0x87 (MQTT 5) and reaches no
/// one, not even a `$SYS/#` subscriber; a publish to `$share/g/t` closes the connection with
/// DISCONNECT 0x90 (Topic Name invalid).
#[test]
fn publishes_to_sys_are_refused_and_to_share_topics_close_the_connection() {
    let mut weir = Weir::builder().start().unwrap();
    let addr = weir.mqtt_addr().unwrap();
    let mut watcher = subscriber(
        addr,
        ProtocolVersion::V5,
        ("watcher", true),
        &["$SYS/#", "plain/#"],
        QoS::AtMostOnce,
    );

    let mut raw = Raw::open(addr, ProtocolVersion::V5);
    raw.connect("sys", true, Properties::default());
    raw.send(publish(QoS::AtLeastOnce, Some(1), "$SYS/broker/uptime"));
    let puback = raw.next();
    assert!(
        matches!(&puback, Some(Packet::PubAck(ack)) if ack.reason_code == ReasonCode::NOT_AUTHORIZED),
        "{puback:?}"
    );
    // The watcher hears the next plain publish and nothing before it.
    raw.send(publish(QoS::AtMostOnce, None, "plain/after"));
    let heard = watcher.next();
    assert!(
        matches!(&heard, Some(Packet::Publish(p)) if p.topic == "plain/after"),
        "{heard:?}"
    );
    raw.send(publish(QoS::AtLeastOnce, Some(2), "$share/g/t"));
    let goodbye = raw.next();
    assert!(
        matches!(&goodbye, Some(Packet::Disconnect(d)) if d.reason_code == ReasonCode::TOPIC_NAME_INVALID),
        "{goodbye:?}"
    );
    assert!(raw.next().is_none(), "then the connection closes");
}

/// A subscriber answering a QoS 1 delivery with PUBCOMP (an acknowledgement of the wrong
/// type) is disconnected with 0x82 (Protocol Error), MQTT 5; on 3.1.1 the connection closes.
#[test]
fn an_acknowledgement_of_the_wrong_type_closes_the_connection() {
    let mut weir = Weir::builder().start().unwrap();
    let addr = weir.mqtt_addr().unwrap();
    for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
        let mut sub = subscriber(
            addr,
            version,
            (&format!("acker-{version:?}"), true),
            &["acks/t"],
            QoS::AtLeastOnce,
        );
        let mut publisher = Raw::open(addr, version);
        publisher.connect(&format!("pub-{version:?}"), true, Properties::default());
        publisher.send(publish(QoS::AtLeastOnce, Some(1), "acks/t"));
        assert!(matches!(publisher.next(), Some(Packet::PubAck(_))));
        let Some(Packet::Publish(delivered)) = sub.next() else {
            panic!("the subscriber gets the message");
        };
        let packet_id = delivered.packet_id.expect("QoS 1");
        sub.send(Packet::PubComp(PubResponse::new(packet_id)));
        let goodbye = sub.next();
        if version == ProtocolVersion::V5 {
            assert!(
                matches!(&goodbye, Some(Packet::Disconnect(d)) if d.reason_code == ReasonCode::PROTOCOL_ERROR),
                "{goodbye:?}"
            );
            assert!(sub.next().is_none());
        } else {
            assert!(goodbye.is_none(), "{goodbye:?}");
        }
    }
}

/// A subscriber whose Maximum Packet Size (MQTT 5) a QoS 1 message exceeds does not get that
/// message (it is dropped for that subscriber, as the specification says), and does get the
/// small one published after it.
#[test]
fn after_a_message_too_large_for_the_subscriber_the_next_one_arrives() {
    let mut weir = Weir::builder().start().unwrap();
    let addr = weir.mqtt_addr().unwrap();
    for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let mut sub = Raw::open(addr, ProtocolVersion::V5);
        let small_packets = Properties {
            maximum_packet_size: Some(100),
            ..Properties::default()
        };
        sub.connect(&format!("small-{qos:?}"), true, small_packets);
        sub.send(subscribe(&["sizes/#"], qos));
        assert!(matches!(sub.next(), Some(Packet::SubAck(_))));
        let mut publisher = Raw::open(addr, ProtocolVersion::V5);
        publisher.connect(&format!("sizer-{qos:?}"), true, Properties::default());
        for (n, size) in [(1, 500), (2, 10)] {
            let Packet::Publish(mut p) = publish(QoS::AtLeastOnce, Some(n), "sizes/t") else {
                unreachable!()
            };
            p.payload = vec![b'z'; size];
            publisher.send(Packet::Publish(p));
            assert!(matches!(publisher.next(), Some(Packet::PubAck(_))));
        }
        let got = sub.next();
        assert!(
            matches!(&got, Some(Packet::Publish(p)) if p.payload.len() == 10),
            "{qos:?}: {got:?}"
        );
    }
}

/// An MQTT 5 session with an expiry ends when a DISCONNECT sets Session Expiry 0: the next
/// CONNECT without clean start finds no session (Session Present 0). Without that DISCONNECT
/// property the session is found again.
#[test]
fn a_disconnect_with_session_expiry_0_ends_the_session() {
    let mut weir = Weir::builder().start().unwrap();
    let addr = weir.mqtt_addr().unwrap();
    let lasting = Properties {
        session_expiry_interval: Some(300),
        ..Properties::default()
    };
    for (ending, present) in [(Some(0), 0), (None, 1)] {
        let client = format!("ending-{ending:?}");
        let mut first = Raw::open(addr, ProtocolVersion::V5);
        assert_eq!(first.connect(&client, false, lasting.clone())[2], 0);
        let mut goodbye = weir_mqtt::Disconnect::new(ReasonCode::SUCCESS);
        goodbye.properties.session_expiry_interval = ending;
        first.send(Packet::Disconnect(goodbye));
        assert!(closed_by_peer(&mut first.stream));
        let mut again = Raw::open(addr, ProtocolVersion::V5);
        let connack = again.connect(&client, false, lasting.clone());
        assert_eq!(
            connack[2], present,
            "after a DISCONNECT with expiry {ending:?}"
        );
    }
}

/// A client that publishes and then subscribes to the same topic in one write (the publish
/// still on its way to the log when the SUBSCRIBE is read) does not get its earlier message
/// through the new subscription; what it publishes after the SUBACK it does get.
#[test]
fn a_new_subscription_gets_only_what_is_published_after_it() {
    let mut weir = Weir::builder().start().unwrap();
    let addr = weir.mqtt_addr().unwrap();
    for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
        let mut raw = Raw::open(addr, version);
        raw.connect(&format!("early-{version:?}"), true, Properties::default());
        let mut bytes = Vec::new();
        let Packet::Publish(mut before) = publish(QoS::AtLeastOnce, Some(1), "early/t") else {
            unreachable!()
        };
        before.payload = b"before".to_vec();
        for packet in [
            Packet::Publish(before),
            subscribe(&["early/t"], QoS::AtLeastOnce),
        ] {
            (packet.encode(version, &mut bytes)).expect("encodes");
        }
        raw.stream.write_all(&bytes).unwrap();
        let mut acks = Vec::new();
        while acks.len() < 2 {
            match raw.next() {
                Some(Packet::PubAck(_)) => acks.push("puback"),
                Some(Packet::SubAck(_)) => acks.push("suback"),
                other => panic!("{version:?}: only the two acknowledgements, got {other:?}"),
            }
        }
        let Packet::Publish(mut after) = publish(QoS::AtLeastOnce, Some(3), "early/t") else {
            unreachable!()
        };
        after.payload = b"after".to_vec();
        raw.send(Packet::Publish(after));
        // The PUBACK and the delivery of "after", in either order; never "before".
        let mut delivered = Vec::new();
        while delivered.is_empty() {
            match raw.next() {
                Some(Packet::PubAck(_)) => {}
                Some(Packet::Publish(p)) => delivered.push(p.payload),
                other => panic!("{version:?}: {other:?}"),
            }
        }
        assert_eq!(delivered, [b"after".to_vec()], "{version:?}");
    }
}

/// Mosquitto's `02-subpub-qos0-send-retain`: three retained QoS 0 publishes, each written
/// on its own, then SUBSCRIBEs on the same connection with each Retain Handling: Never (2)
/// gets nothing, If New (1) gets the retained message the first time only, Always (0) every
/// time; never the earlier publishes as live messages.
#[test]
fn retain_handling_after_retained_qos0_publishes_on_the_same_connection() {
    let mut weir = Weir::builder().start().unwrap();
    let addr = weir.mqtt_addr().unwrap();
    let mut raw = Raw::open(addr, ProtocolVersion::V5);
    raw.connect("send-retain", true, Properties::default());
    for topic in ["subpub/always", "subpub/new", "subpub/never"] {
        let Packet::Publish(mut retained) = publish(QoS::AtMostOnce, None, topic) else {
            unreachable!()
        };
        retained.retain = true;
        raw.send(Packet::Publish(retained));
    }
    let with = |filter: &str, handling: weir_mqtt::RetainHandling| {
        let mut options = SubscriptionOptions::qos(QoS::AtMostOnce);
        options.retain_handling = handling;
        Packet::Subscribe(Subscribe {
            packet_id: id(7),
            subscriptions: vec![Subscription {
                filter: filter.to_owned(),
                options,
            }],
            properties: Properties::default(),
        })
    };
    use weir_mqtt::RetainHandling::{DoNotSend, SendAtSubscribe, SendAtSubscribeIfNew};
    let steps = [
        ("subpub/never", DoNotSend, false),
        ("subpub/never", DoNotSend, false),
        ("subpub/new", SendAtSubscribeIfNew, true),
        ("subpub/new", SendAtSubscribeIfNew, false),
        ("subpub/always", SendAtSubscribe, true),
        ("subpub/always", SendAtSubscribe, true),
    ];
    for (filter, handling, retained) in steps {
        raw.send(with(filter, handling));
        let suback = raw.next();
        assert!(
            matches!(suback, Some(Packet::SubAck(_))),
            "{filter}: {suback:?}"
        );
        if retained {
            let got = raw.next();
            assert!(
                matches!(&got, Some(Packet::Publish(p)) if p.topic == filter && p.retain),
                "{filter} {handling:?}: the retained message, got {got:?}"
            );
        }
    }
    // Nothing else came: a ping is answered next.
    raw.send(Packet::PingReq);
    let next = raw.next();
    assert!(matches!(next, Some(Packet::PingResp)), "{next:?}");
}

/// `mqtt.topic_levels_max` (here 3): a subscription with more levels gets SUBACK 0x8F (Topic
/// Filter invalid) while its neighbour in the same SUBSCRIBE is granted; a PUBLISH to a topic
/// with more levels closes the connection with DISCONNECT 0x90.
#[test]
fn topics_with_more_levels_than_the_limit_are_refused() {
    let mut weir = Weir::builder()
        .env("WEIR_MQTT_TOPIC_LEVELS_MAX", "3")
        .start()
        .unwrap();
    let mut raw = Raw::open(weir.mqtt_addr().unwrap(), ProtocolVersion::V5);
    raw.connect("levels", true, Properties::default());
    raw.send(subscribe(&["a/b/+", "a/b/c/#"], QoS::AtMostOnce));
    let suback = raw.next();
    assert!(
        matches!(&suback, Some(Packet::SubAck(s)) if s.reason_codes == [ReasonCode(0), ReasonCode::TOPIC_FILTER_INVALID]),
        "{suback:?}"
    );
    raw.send(publish(QoS::AtMostOnce, None, "a/b/c/d"));
    let goodbye = raw.next();
    assert!(
        matches!(&goodbye, Some(Packet::Disconnect(d)) if d.reason_code == ReasonCode::TOPIC_NAME_INVALID),
        "{goodbye:?}"
    );
}

/// Weir's rule for a takeover (where Mosquitto differs for 3.1.1): the connection taken over
/// ended without DISCONNECT, so its will is published, also when both connections keep the
/// session (MQTT 3.1.1 section 3.1.2.5; MQTT 5 section 3.1.4 says so for takeovers too, after
/// the Will Delay Interval, which 3.1.1 cannot set).
#[test]
fn a_taken_over_connection_publishes_its_will() {
    let mut weir = Weir::builder().start().unwrap();
    let addr = weir.mqtt_addr().unwrap();
    let mut watcher = subscriber(
        addr,
        ProtocolVersion::V3_1_1,
        ("will-watcher", true),
        &["wills/#"],
        QoS::AtLeastOnce,
    );
    let connect = |raw: &mut Raw| {
        raw.send(Packet::Connect(Box::new(Connect {
            protocol_version: ProtocolVersion::V3_1_1,
            clean_start: false,
            keep_alive: 0,
            client_id: "twin".to_owned(),
            will: Some(weir_mqtt::Will {
                topic: "wills/twin".to_owned(),
                payload: b"first is gone".to_vec(),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: Properties::default(),
            }),
            username: None,
            password: None,
            properties: Properties::default(),
        })));
        let connack = raw.next();
        assert!(matches!(connack, Some(Packet::ConnAck(_))), "{connack:?}");
    };
    let mut first = Raw::open(addr, ProtocolVersion::V3_1_1);
    connect(&mut first);
    let mut second = Raw::open(addr, ProtocolVersion::V3_1_1);
    connect(&mut second);
    assert!(first.next().is_none(), "the first connection is closed");
    let will = watcher.next();
    assert!(
        matches!(&will, Some(Packet::Publish(p)) if p.payload == b"first is gone"),
        "{will:?}"
    );
}

/// Three connections race for one client id: the first holds it with a subscription in a
/// persistent session, the second and third connect at once. Whichever of the two the broker
/// takes last resumes the session (the subscription included, so a message published during
/// the race arrives); the first gets DISCONNECT 0x8E; the other ends closed, having at most
/// been accepted and taken over in turn. Before the id's takeovers were counted, the third
/// could load the session before the first had stored it, and start empty.
#[test]
fn three_connections_racing_for_one_client_id_leave_one_with_the_session() {
    let mut weir = Weir::builder().start().unwrap();
    let addr = weir.mqtt_addr().unwrap();
    let mut publisher = Raw::open(addr, ProtocolVersion::V5);
    publisher.connect("race-publisher", true, Properties::default());
    let expiry = || Properties {
        session_expiry_interval: Some(300),
        ..Properties::default()
    };
    for round in 0..8u16 {
        let client_id = format!("racer-{round}");
        let topic = format!("race/{round}");
        let mut first = Raw::open(addr, ProtocolVersion::V5);
        assert_eq!(first.connect(&client_id, false, expiry())[2..], [0, 0]);
        first.send(subscribe(&[topic.as_str()], QoS::AtLeastOnce));
        assert!(matches!(first.next(), Some(Packet::SubAck(_))));
        let racers = [(); 2].map(|()| {
            let mut raw = Raw::open(addr, ProtocolVersion::V5);
            raw.send_connect(&client_id, false, expiry());
            raw
        });
        // Each racer reads until it gets the message or is closed.
        let readers = racers.map(|mut raw| {
            std::thread::spawn(move || {
                let mut got = Vec::new();
                while let Some(packet) = raw.next() {
                    let done = matches!(packet, Packet::Publish(_));
                    got.push(packet);
                    if done {
                        break;
                    }
                }
                (raw, got)
            })
        });
        publisher.send(publish(QoS::AtLeastOnce, Some(round + 1), &topic));
        assert!(matches!(publisher.next(), Some(Packet::PubAck(_))));
        let taken = first.next();
        assert!(
            matches!(&taken, Some(Packet::Disconnect(d)) if d.reason_code == ReasonCode::SESSION_TAKEN_OVER),
            "{taken:?}"
        );
        assert!(first.next().is_none(), "the first connection is closed");
        // A racer that got the message may still have been taken over after it (the winner
        // then gets it again): a ping tells the open one from the closed one.
        let mut open = 0;
        for reader in readers {
            let (mut raw, mut got) = reader.join().expect("the reader ends");
            if matches!(got.last(), Some(Packet::Publish(_))) {
                raw.send(Packet::PingReq);
                while let Some(packet) = raw.next() {
                    let pong = matches!(packet, Packet::PingResp);
                    got.push(packet);
                    if pong {
                        break;
                    }
                }
            }
            if matches!(got.last(), Some(Packet::PingResp)) {
                open += 1;
                assert!(
                    matches!(&got[..], [Packet::ConnAck(ack), Packet::Publish(p), Packet::PingResp]
                        if ack.session_present && ack.reason_code == ReasonCode::SUCCESS && p.topic == topic),
                    "round {round}: the last connection resumes the session and gets the message: {got:?}"
                );
                continue;
            }
            assert!(
                got.iter().all(|p| match p {
                    Packet::ConnAck(ack) => ack.reason_code == ReasonCode::SUCCESS,
                    Packet::Disconnect(d) => d.reason_code == ReasonCode::SESSION_TAKEN_OVER,
                    Packet::Publish(p) => p.topic == topic,
                    _ => false,
                }),
                "round {round}: the other connection is closed: {got:?}"
            );
        }
        assert_eq!(open, 1, "round {round}: one racer keeps the session");
    }
}

/// Weir's rule for MQTT 5's 0x10 (No matching subscribers, which a server MAY send): never.
/// Every publish is stored in the log, where Kafka consumers read it whether or not an MQTT
/// client subscribes, so a QoS 1 or 2 publish nobody subscribes to is acknowledged 0x00,
/// and an rdkafka consumer reads it.
#[test]
fn a_publish_no_mqtt_client_subscribes_to_is_acknowledged_0x00_and_read_by_kafka() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Message};
    let mut weir = Weir::builder().start().unwrap();
    let addr = weir.mqtt_addr().unwrap();
    let mut publisher = Raw::open(addr, ProtocolVersion::V5);
    publisher.connect("lonely-publisher", true, Properties::default());
    publisher.send(publish(QoS::AtLeastOnce, Some(1), "lonely/one"));
    let puback = publisher.next();
    assert!(
        matches!(&puback, Some(Packet::PubAck(a)) if a.reason_code == ReasonCode::SUCCESS),
        "{puback:?}"
    );
    publisher.send(publish(QoS::ExactlyOnce, Some(2), "lonely/two"));
    let pubrec = publisher.next();
    assert!(
        matches!(&pubrec, Some(Packet::PubRec(a)) if a.reason_code == ReasonCode::SUCCESS),
        "{pubrec:?}"
    );
    publisher.send(Packet::PubRel(PubResponse::new(id(2))));
    assert!(matches!(publisher.next(), Some(Packet::PubComp(_))));
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", weir.kafka_addr().unwrap().to_string())
        .set("group.id", "lonely-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&["lonely"]).unwrap();
    let mut keys = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    while keys.len() < 2 && std::time::Instant::now() < deadline {
        if let Some(message) = consumer.poll(std::time::Duration::from_millis(200)) {
            let message = message.unwrap();
            keys.push(String::from_utf8(message.key().unwrap().to_vec()).unwrap());
        }
    }
    keys.sort();
    assert_eq!(keys, ["lonely/one", "lonely/two"]);
}

/// A QoS 1 message sent to a persistent session and not acknowledged is sent again when the
/// session resumes, with DUP=1 (MQTT 3.1.1 section 4.4); a message the session never got
/// comes with DUP=0.
#[test]
fn a_message_sent_again_to_a_resumed_session_carries_dup() {
    let mut weir = Weir::builder().start().unwrap();
    let addr = weir.mqtt_addr().unwrap();
    let mut first = subscriber(
        addr,
        ProtocolVersion::V3_1_1,
        ("forgetful", false),
        &["again/#"],
        QoS::AtLeastOnce,
    );
    let mut publisher = Raw::open(addr, ProtocolVersion::V3_1_1);
    publisher.connect("again-pub", true, Properties::default());
    publisher.send(publish(QoS::AtLeastOnce, Some(1), "again/one"));
    assert!(matches!(publisher.next(), Some(Packet::PubAck(_))));
    let Some(Packet::Publish(got)) = first.next() else {
        panic!("the subscriber gets the message");
    };
    assert!(!got.dup, "the first time: DUP=0");
    // Gone without acknowledging it; another message arrives meanwhile.
    first.send(Packet::Disconnect(weir_mqtt::Disconnect::new(
        ReasonCode::SUCCESS,
    )));
    assert!(closed_by_peer(&mut first.stream));
    publisher.send(publish(QoS::AtLeastOnce, Some(2), "again/two"));
    assert!(matches!(publisher.next(), Some(Packet::PubAck(_))));
    let mut again = Raw::open(addr, ProtocolVersion::V3_1_1);
    let connack = again.connect("forgetful", false, Properties::default());
    assert_eq!(connack, [0x20, 2, 1, 0], "session present");
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match again.next() {
            Some(Packet::Publish(p)) => seen.push((p.topic, p.dup)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        seen,
        [
            ("again/one".to_owned(), true),
            ("again/two".to_owned(), false)
        ]
    );
}

/// A QoS 2 delivery whose PUBREL went but whose PUBCOMP did not come before the subscriber
/// disconnected gets its PUBREL again, with the same packet identifier, when the persistent
/// session resumes (MQTT 4.4); the PUBCOMP then completes it.
#[test]
fn a_pubrel_left_waiting_is_sent_again_when_the_session_resumes() {
    let mut weir = Weir::builder().start().unwrap();
    let addr = weir.mqtt_addr().unwrap();
    let mut first = subscriber(
        addr,
        ProtocolVersion::V3_1_1,
        ("qos2-keeper", false),
        &["exactly/#"],
        QoS::ExactlyOnce,
    );
    let mut publisher = Raw::open(addr, ProtocolVersion::V3_1_1);
    publisher.connect("exactly-pub", true, Properties::default());
    publisher.send(publish(QoS::ExactlyOnce, Some(1), "exactly/once"));
    assert!(matches!(publisher.next(), Some(Packet::PubRec(_))));
    publisher.send(Packet::PubRel(PubResponse::new(id(1))));
    assert!(matches!(publisher.next(), Some(Packet::PubComp(_))));
    let Some(Packet::Publish(got)) = first.next() else {
        panic!("the subscriber gets the message");
    };
    assert_eq!(got.qos, QoS::ExactlyOnce);
    let packet_id = got.packet_id.expect("QoS 2");
    first.send(Packet::PubRec(PubResponse::new(packet_id)));
    let pubrel = first.next();
    assert!(matches!(pubrel, Some(Packet::PubRel(_))), "{pubrel:?}");
    first.send(Packet::Disconnect(weir_mqtt::Disconnect::new(
        ReasonCode::SUCCESS,
    )));
    assert!(closed_by_peer(&mut first.stream));

    let mut again = Raw::open(addr, ProtocolVersion::V3_1_1);
    assert_eq!(
        again.connect("qos2-keeper", false, Properties::default())[2],
        1
    );
    let resent = again.next();
    assert!(
        matches!(&resent, Some(Packet::PubRel(r)) if r.packet_id == packet_id),
        "{resent:?}"
    );
    again.send(Packet::PubComp(PubResponse::new(packet_id)));
    again.send(Packet::PingReq);
    assert_eq!(
        again.next(),
        Some(Packet::PingResp),
        "the PUBCOMP was expected"
    );
}

/// Writes a QoS 0 PUBLISH to `big/t` with a payload of `payload` bytes: the fixed header and
/// the first MiB in one write (so the broker's first read leaves bytes unread), the rest in
/// 64 KiB writes. Returns the bytes written, or the error that stopped the writing.
fn write_big_publish(mut stream: TcpStream, payload: usize) -> std::io::Result<usize> {
    let topic = b"big/t";
    let mut first = vec![0x30];
    let mut remaining = 2 + topic.len() + payload;
    loop {
        let byte = (remaining % 128) as u8;
        remaining /= 128;
        first.push(if remaining > 0 { byte | 0x80 } else { byte });
        if remaining == 0 {
            break;
        }
    }
    first.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    first.extend_from_slice(topic);
    let head = (1 << 20).min(payload);
    first.resize(first.len() + head, b'x');
    stream.write_all(&first)?;
    let chunk = [b'x'; 64 * 1024];
    let mut left = payload - head;
    while left > 0 {
        let n = left.min(chunk.len());
        stream.write_all(&chunk[..n])?;
        left -= n;
    }
    Ok(first.len() + payload - head)
}

/// The lingering close: a client still sending a PUBLISH larger than
/// `mqtt.packet_size_bytes_max` (8 MiB announced and sent against the 1 MiB default, more than
/// the socket buffers hold, from a writer thread) reads the broker's DISCONNECT 0x95 (Packet
/// too large; MQTT 3.1.1 has none) and then the end of the stream, not a connection reset; the
/// broker reads and drops the rest of the packet, so every byte of it is written. The
/// connection stops being counted once the client closes (MQTT 5), or once the broker's
/// bounded linger ends when the client does not close (3.1.1).
#[test]
fn a_client_still_sending_an_oversized_packet_reads_the_answer_then_the_end() {
    let mut weir = Weir::builder().start().unwrap();
    let addr = weir.mqtt_addr().unwrap();
    let open_before = weir.metric("weir_connections_open").unwrap();
    for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
        let mut raw = Raw::open(addr, version);
        raw.connect(&format!("big-{version:?}"), true, Properties::default());
        let stream = raw.stream.try_clone().expect("a second handle");
        let writer = std::thread::spawn(move || write_big_publish(stream, 8 << 20));
        if version == ProtocolVersion::V5 {
            let goodbye = raw.next();
            assert!(
                matches!(&goodbye, Some(Packet::Disconnect(d)) if d.reason_code == ReasonCode(0x95)),
                "{goodbye:?}"
            );
        }
        let mut rest = [0u8; 64];
        let end = raw.stream.read(&mut rest);
        assert!(
            matches!(end, Ok(0)),
            "{version:?}: the end of the stream after the answer, not {end:?}"
        );
        let written = writer.join().expect("the writer thread");
        assert!(
            matches!(written, Ok(n) if n > 8 << 20),
            "{version:?}: the broker reads the rest of the packet: {written:?}"
        );
        if version == ProtocolVersion::V5 {
            drop(raw);
        }
        (weir.wait_for_metric("weir_connections_open", |n| n == open_before))
            .expect("the connection is closed");
    }
}

/// Paho's interoperability suite, `test_subscribe_failure` of `client_test.py` (3.1.1) and
/// `client_test5.py` (5.0), byte for byte as its client packs the packets, against a broker
/// with `test/nosubscribe` in `mqtt.subscribe_deny`: CONNECT as `myclientid` (clean, keep
/// alive 0, MQTT 5 without properties), then a SUBSCRIBE (packet identifier 2, a new client's
/// first) to `test/nosubscribe` alone at QoS 2 (MQTT 5: options byte 0x02, no properties). The
/// suite expects the SUBACK's one code to be 0x80, in 5.0 too ("Unspecified error"): its
/// MQTT 5 SUBACK decoder asserts every code is 0, 1, 2 or 0x80, so 0x87 kills the client's
/// receiver thread and the test finds no SUBACK at all. A neighbour in the same SUBSCRIBE
/// (which the suite does not try) is still granted.
#[test]
fn paho_subscribe_failure_gets_suback_0x80() {
    let mut weir = Weir::builder()
        .env("WEIR_MQTT_SUBSCRIBE_DENY", "test/nosubscribe")
        .start()
        .unwrap();
    let addr = weir.mqtt_addr().unwrap();
    let client_id = b"\x00\x0amyclientid";
    let filter = b"\x00\x10test/nosubscribe";
    let v311_connect = [
        b"\x10\x16\x00\x04MQTT\x04\x02\x00\x00".as_slice(),
        client_id,
    ]
    .concat();
    let v5_connect = [
        b"\x10\x17\x00\x04MQTT\x05\x02\x00\x00\x00".as_slice(),
        client_id,
    ]
    .concat();
    let v311_subscribe = [b"\x82\x15\x00\x02".as_slice(), filter, b"\x02"].concat();
    let v5_subscribe = [b"\x82\x16\x00\x02\x00".as_slice(), filter, b"\x02"].concat();
    let cases = [
        (
            ProtocolVersion::V3_1_1,
            v311_connect,
            v311_subscribe,
            &b"\x90\x03\x00\x02\x80"[..],
        ),
        (
            ProtocolVersion::V5,
            v5_connect,
            v5_subscribe,
            &b"\x90\x04\x00\x02\x00\x80"[..],
        ),
    ];
    for (version, connect, subscribe, suback) in cases {
        let mut raw = Raw::open(addr, version);
        raw.stream.write_all(&connect).unwrap();
        let connack = raw.next();
        assert!(
            matches!(&connack, Some(Packet::ConnAck(c)) if c.reason_code == ReasonCode::SUCCESS),
            "{version:?}: {connack:?}"
        );
        raw.stream.write_all(&subscribe).unwrap();
        let mut got = vec![0u8; suback.len()];
        raw.stream.read_exact(&mut got).expect("a SUBACK");
        assert_eq!(got, suback, "{version:?}: the SUBACK, byte for byte");
        raw.send(subscribe_with(
            &["test/nosubscribe", "TopicA"],
            QoS::ExactlyOnce,
            3,
        ));
        let mixed = raw.next();
        assert!(
            matches!(&mixed, Some(Packet::SubAck(s)) if s.reason_codes == [ReasonCode(0x80), ReasonCode(2)]),
            "{version:?}: {mixed:?}"
        );
    }
}

/// A SUBSCRIBE (packet identifier `packet_id`) to `filters`, each at `qos`.
fn subscribe_with(filters: &[&str], qos: QoS, packet_id: u16) -> Packet {
    let Packet::Subscribe(mut subscribe) = subscribe(filters, qos) else {
        unreachable!()
    };
    subscribe.packet_id = id(packet_id);
    Packet::Subscribe(subscribe)
}
