//! The MQTT front against the real `weir` process: rumqttc (MQTT 3.1.1 and 5) as the client,
//! rdkafka and kcat on the Kafka side of the same log, and raw sockets for hostile input.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rumqttc::{Event, LastWill, MqttOptions, Packet, QoS};
use weir_mqtt::{Connect, Packet as MqttPacket, Properties, ProtocolVersion, Will};
use weir_tests::{WAIT, Weir};

/// An MQTT 3.1.1 client whose connection runs on its own thread; its events arrive on a
/// channel, and the thread ends (without reconnecting) at the first connection error.
pub(crate) struct Client {
    pub(crate) client: rumqttc::Client,
    events: Receiver<Result<Event, String>>,
}

impl Client {
    pub(crate) fn connect(
        addr: SocketAddr,
        id: &str,
        setup: impl FnOnce(&mut MqttOptions),
    ) -> Client {
        Client::connect_checked(addr, id, setup, |_| {})
    }

    /// [`Client::connect`], with `check` run on the CONNACK.
    fn connect_checked(
        addr: SocketAddr,
        id: &str,
        setup: impl FnOnce(&mut MqttOptions),
        check: impl FnOnce(&rumqttc::ConnAck),
    ) -> Client {
        let mut options = MqttOptions::new(id, addr.ip().to_string(), addr.port());
        options.set_keep_alive(Duration::from_secs(30));
        options.set_inflight(100);
        setup(&mut options);
        let (client, mut connection) = rumqttc::Client::new(options, 1000);
        let (tx, events) = channel();
        std::thread::spawn(move || {
            for event in connection.iter() {
                let failed = event.is_err();
                if tx.send(event.map_err(|e| e.to_string())).is_err() || failed {
                    break;
                }
            }
        });
        let client = Client { client, events };
        match client.wait_for("CONNACK", |p| matches!(p, Packet::ConnAck(_))) {
            Packet::ConnAck(ack) => check(&ack),
            _ => unreachable!(),
        }
        client
    }

    /// Waits for an incoming packet `want` accepts, skipping others; panics on an error or
    /// after [`WAIT`].
    pub(crate) fn wait_for<T>(&self, what: &str, mut want: impl FnMut(&Packet) -> T) -> Packet
    where
        T: Into<bool>,
    {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Ok(Event::Incoming(packet))) => {
                    if want(&packet).into() {
                        return packet;
                    }
                }
                Ok(Ok(Event::Outgoing(_))) => {}
                Ok(Err(e)) => panic!("connection failed while waiting for {what}: {e}"),
                Err(RecvTimeoutError::Timeout) => panic!("no {what} within {WAIT:?}"),
                Err(RecvTimeoutError::Disconnected) => panic!("connection ended before {what}"),
            }
        }
    }

    /// The next `count` application messages.
    pub(crate) fn publishes(&self, count: usize) -> Vec<rumqttc::Publish> {
        (0..count)
            .map(|i| {
                match self.wait_for(&format!("publish {i} of {count}"), |p| {
                    matches!(p, Packet::Publish(_))
                }) {
                    Packet::Publish(p) => p,
                    _ => unreachable!(),
                }
            })
            .collect()
    }

    /// Whether an application message arrives within `within` (for checks that nothing
    /// does; other packets are skipped).
    pub(crate) fn publish_within(&self, within: Duration) -> Option<rumqttc::Publish> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) => return Some(p),
                Ok(Ok(_)) => {}
                Ok(Err(_)) | Err(_) => return None,
            }
        }
    }

    pub(crate) fn subscribe(&self, filter: &str, qos: QoS) {
        self.client.subscribe(filter, qos).expect("queued");
        self.wait_for("SUBACK", |p| matches!(p, Packet::SubAck(_)));
    }
}

/// Publishes at QoS 0, 1 and 2 reach a wildcard subscriber complete, byte for byte and in
/// order per topic; each publish is one record in the Kafka topic its first level names,
/// keyed by the MQTT topic, with its QoS (and retain flag) in headers.
#[test]
fn rumqttc_publishes_at_every_qos_reach_a_subscriber_in_order_and_the_log() {
    let mut weir = Weir::builder().start().unwrap();
    let addr = weir.mqtt_addr().unwrap();
    let subscriber = Client::connect(addr, "sub-1", |_| {});
    subscriber.subscribe("plant/#", QoS::ExactlyOnce);
    let publisher = Client::connect(addr, "pub-1", |_| {});
    let per_qos = 50;
    for i in 0..per_qos {
        for (qos, topic) in [
            (QoS::AtMostOnce, "plant/line1/q0"),
            (QoS::AtLeastOnce, "plant/line1/q1"),
            (QoS::ExactlyOnce, "plant/line2/q2"),
        ] {
            let payload = format!("{topic}:{i}:\u{0}\u{ff}").into_bytes();
            publisher
                .client
                .publish(topic, qos, false, payload)
                .expect("queued");
        }
    }
    let mut acks = 0;
    let mut completes = 0;
    while acks < per_qos || completes < per_qos {
        match publisher.wait_for("PUBACK or PUBCOMP", |p| {
            matches!(p, Packet::PubAck(_) | Packet::PubComp(_))
        }) {
            Packet::PubAck(_) => acks += 1,
            _ => completes += 1,
        }
    }
    let received = subscriber.publishes(3 * per_qos);
    let mut by_topic: HashMap<String, Vec<(Vec<u8>, QoS)>> = HashMap::new();
    for p in received {
        by_topic
            .entry(p.topic.clone())
            .or_default()
            .push((p.payload.to_vec(), p.qos));
    }
    for (qos, topic) in [
        (QoS::AtMostOnce, "plant/line1/q0"),
        (QoS::AtLeastOnce, "plant/line1/q1"),
        (QoS::ExactlyOnce, "plant/line2/q2"),
    ] {
        let expected: Vec<(Vec<u8>, QoS)> = (0..per_qos)
            .map(|i| (format!("{topic}:{i}:\u{0}\u{ff}").into_bytes(), qos))
            .collect();
        assert_eq!(by_topic[topic], expected, "{topic}");
    }
    // The Kafka side: every publish is a record of topic `plant`.
    publisher
        .client
        .publish("plant/line3", QoS::AtLeastOnce, true, "kept")
        .unwrap();
    publisher.wait_for("PUBACK", |p| matches!(p, Packet::PubAck(_)));
    weir.signal(libc::SIGTERM).unwrap();
    weir.wait_exit().unwrap();
    // One record per publish (a read's plain publishes to one partition share a batch).
    let batches = weir_tests::stored_batches(weir.cwd(), "plant");
    let records: usize = (batches.iter())
        .map(|b| weir_kafka::record_batch::records(b).count())
        .sum();
    assert_eq!(records, 3 * per_qos + 1);
    let mut seen_keys = HashMap::new();
    for batch in &batches {
        for record in weir_kafka::record_batch::records(batch) {
            let key = String::from_utf8(record.key.unwrap().to_vec()).unwrap();
            let headers: Vec<(String, Vec<u8>)> = record
                .headers()
                .map(|(k, v)| (String::from_utf8(k.to_vec()).unwrap(), v.unwrap().to_vec()))
                .collect();
            *seen_keys.entry(key.clone()).or_insert(0) += 1;
            let qos = match key.as_str() {
                "plant/line1/q0" => b"0",
                "plant/line1/q1" | "plant/line3" => b"1",
                _ => b"2",
            };
            let mut expected = vec![("mqtt.qos".to_owned(), qos.to_vec())];
            if key == "plant/line3" {
                expected.push(("mqtt.retain".to_owned(), b"1".to_vec()));
            }
            assert_eq!(headers, expected, "{key}");
        }
    }
    assert_eq!(seen_keys["plant/line1/q0"], per_qos);
    assert_eq!(seen_keys["plant/line3"], 1);
}

/// A retained message is sent to later subscribers with the retain flag, replaced by the next
/// retained publish, survives a restart, and an empty retained publish clears it.
#[test]
fn retained_messages_are_replaced_survive_a_restart_and_are_cleared() {
    let mut weir = Weir::builder().start().unwrap();
    let addr = weir.mqtt_addr().unwrap();
    let publisher = Client::connect(addr, "pub", |_| {});
    for value in ["20.0", "21.5"] {
        publisher
            .client
            .publish("home/kitchen/temp", QoS::AtLeastOnce, true, value)
            .unwrap();
        publisher.wait_for("PUBACK", |p| matches!(p, Packet::PubAck(_)));
    }
    publisher
        .client
        .publish("home/hall/temp", QoS::AtMostOnce, true, "19.0")
        .unwrap();
    publisher
        .client
        .publish("office/temp", QoS::AtLeastOnce, true, "23.0")
        .unwrap();
    publisher.wait_for("PUBACK", |p| matches!(p, Packet::PubAck(_)));
    // The QoS 0 publish was sent before the QoS 1 one and is stored in order with it.
    let later = Client::connect(addr, "later", |_| {});
    later.subscribe("home/+/temp", QoS::AtLeastOnce);
    let mut got: Vec<(String, String, bool)> = later
        .publishes(2)
        .into_iter()
        .map(|p| {
            let value = String::from_utf8(p.payload.to_vec()).unwrap();
            (p.topic, value, p.retain)
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("home/hall/temp".into(), "19.0".into(), true),
            ("home/kitchen/temp".into(), "21.5".into(), true),
        ]
    );
    assert!(later.publish_within(Duration::from_millis(300)).is_none());

    // After a restart the retained messages are still there.
    drop((publisher, later));
    let addr = restart(&mut weir);
    let publisher = Client::connect(addr, "pub", |_| {});
    publisher
        .client
        .publish("home/hall/temp", QoS::AtLeastOnce, true, "")
        .unwrap();
    publisher.wait_for("PUBACK", |p| matches!(p, Packet::PubAck(_)));
    let after = Client::connect(addr, "after", |_| {});
    after.subscribe("home/#", QoS::AtMostOnce);
    let p = &after.publishes(1)[0];
    assert_eq!(
        (p.topic.as_str(), &p.payload[..], p.retain),
        ("home/kitchen/temp", &b"21.5"[..], true)
    );
    // The cleared topic sends nothing; a live message arrives without the retain flag.
    publisher
        .client
        .publish("home/kitchen/temp", QoS::AtLeastOnce, true, "22.0")
        .unwrap();
    let p = &after.publishes(1)[0];
    assert_eq!((&p.payload[..], p.retain), (&b"22.0"[..], false));
}

/// Restarts the broker on the same ports and data; returns the MQTT address.
fn restart(weir: &mut Weir) -> SocketAddr {
    let mqtt = weir.mqtt_addr().expect("mqtt listener");
    let kafka = weir.kafka_addr().expect("kafka listener");
    weir.signal(libc::SIGTERM).expect("signal");
    let status = weir.wait_exit().expect("weir exits");
    assert_eq!(status.code(), Some(0));
    weir.start_again(&[
        ("WEIR_MQTT_LISTEN", mqtt.to_string()),
        ("WEIR_KAFKA_LISTEN", kafka.to_string()),
    ])
    .expect("weir restarts");
    weir.mqtt_addr().expect("mqtt listener")
}

/// A client that vanishes without DISCONNECT has its will published; one that says
/// DISCONNECT does not.
#[test]
fn a_will_is_published_when_a_client_vanishes_and_not_after_disconnect() {
    let mut weir = Weir::builder().start().unwrap();
    let addr = weir.mqtt_addr().unwrap();
    let watcher = Client::connect(addr, "watcher", |_| {});
    watcher.subscribe("status/#", QoS::AtLeastOnce);
    let will = |id: &str| LastWill::new(format!("status/{id}"), "gone", QoS::AtLeastOnce, false);
    let polite = Client::connect(addr, "polite", |o| {
        o.set_last_will(will("polite"));
    });
    polite.client.disconnect().unwrap();
    // rumqttc sends DISCONNECT and its thread ends.
    while polite.events.recv_timeout(WAIT).is_ok_and(|e| e.is_ok()) {}
    // Raw socket with a will, closed abruptly.
    let mut raw = TcpStream::connect(addr).unwrap();
    raw.write_all(&connect_packet_v4(
        "rude",
        Some(("status/rude", b"gone")),
        30,
    ))
    .unwrap();
    let mut connack = [0u8; 4];
    raw.read_exact(&mut connack).unwrap();
    assert_eq!(connack, [0x20, 2, 0, 0]);
    drop(raw);
    let p = &watcher.publishes(1)[0];
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("status/rude", &b"gone"[..])
    );
    assert!(watcher.publish_within(Duration::from_millis(300)).is_none());
}

/// The bytes of a CONNECT, encoded with the project's codec: `version`, `client_id`, Clean
/// Start, keep alive, CONNECT properties (MQTT 5), and an optional QoS 1 will (topic, payload,
/// will properties).
fn connect_packet(
    version: ProtocolVersion,
    client_id: &str,
    clean_start: bool,
    keep_alive: u16,
    properties: Properties,
    will: Option<(&str, &[u8], Properties)>,
) -> Vec<u8> {
    let will = will.map(|(topic, payload, properties)| Will {
        topic: topic.to_owned(),
        payload: payload.to_vec(),
        qos: weir_mqtt::QoS::AtLeastOnce,
        retain: false,
        properties,
    });
    let mut bytes = Vec::new();
    MqttPacket::Connect(Box::new(Connect {
        protocol_version: version,
        clean_start,
        keep_alive,
        client_id: client_id.to_owned(),
        will,
        username: None,
        password: None,
        properties,
    }))
    .encode(version, &mut bytes)
    .expect("a valid CONNECT");
    bytes
}

/// An MQTT 3.1.1 clean-session CONNECT for `client_id` with an optional QoS 1 will and keep
/// alive.
fn connect_packet_v4(client_id: &str, will: Option<(&str, &[u8])>, keep_alive_s: u16) -> Vec<u8> {
    let will = will.map(|(topic, payload)| (topic, payload, Properties::default()));
    connect_packet(
        ProtocolVersion::V3_1_1,
        client_id,
        true,
        keep_alive_s,
        Properties::default(),
        will,
    )
}

/// An MQTT 5 clean-start CONNECT with an empty client id and no properties.
fn connect_packet_v5_anonymous() -> Vec<u8> {
    connect_packet(
        ProtocolVersion::V5,
        "",
        true,
        0,
        Properties::default(),
        None,
    )
}

/// Bad input closes only its own connection, as MQTT requires, and allocates nothing for a
/// hostile length: a packet before CONNECT, a second CONNECT, a server-only packet, a
/// remaining length of 256 MB, a wildcard in a PUBLISH topic. An MQTT 5 client sending a
/// packet over the maximum size gets DISCONNECT 0x95 first. Other clients are unaffected.
#[test]
fn bad_packets_close_only_their_connection_with_the_reason_code() {
    let mut weir = Weir::builder().start().unwrap();
    let addr = weir.mqtt_addr().unwrap();
    let bystander = Client::connect(addr, "bystander", |_| {});
    bystander.subscribe("ok/#", QoS::AtLeastOnce);
    let closes = |bytes: Vec<u8>, what: &str| {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(&bytes).unwrap();
        let mut got = Vec::new();
        // Read until the broker closes.
        let _ = s.read_to_end(&mut got);
        (what.to_owned(), got)
    };
    let connected = |rest: &[u8]| {
        let mut bytes = connect_packet_v4("bad", None, 0);
        bytes.extend_from_slice(rest);
        bytes
    };
    let publish_wildcard = {
        let topic = b"ok/+";
        let mut p = vec![0x30, (2 + topic.len() + 1) as u8, 0, topic.len() as u8];
        p.extend_from_slice(topic);
        p.push(b'x');
        p
    };
    let cases = vec![
        closes(vec![0xC0, 0], "PINGREQ before CONNECT"),
        closes(
            connected(&connect_packet_v4("again", None, 0)),
            "second CONNECT",
        ),
        closes(connected(&[0x20, 2, 0, 0]), "CONNACK from a client"),
        closes(
            connected(&[0x30, 0xff, 0xff, 0xff, 0x7f]),
            "256 MB remaining length",
        ),
        closes(
            connected(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01]),
            "5-byte remaining length",
        ),
        closes(connected(&publish_wildcard), "wildcard PUBLISH topic"),
    ];
    for (what, got) in &cases {
        // Whatever was answered, it was at most the CONNACK: no PUBACK, no data.
        assert!(
            got.is_empty() || got == &[0x20, 2, 0, 0],
            "{what}: got {got:02x?}"
        );
    }
    // MQTT 5: over the 1 MiB maximum packet size gets DISCONNECT 0x95 before the close.
    let mut v5 = connect_packet_v5_anonymous();
    v5.extend_from_slice(&[0x30, 0x80, 0x80, 0x80, 0x01]); // 2 MiB remaining length
    let (_, got) = closes(v5, "v5 oversized");
    let disconnect = got.windows(3).any(|w| w[0] == 0xE0 && w[2] == 0x95);
    assert!(disconnect, "DISCONNECT 0x95 expected, got {got:02x?}");
    assert!(weir.rss_bytes().unwrap() < 256 << 20);
    // The bystander still works.
    let publisher = Client::connect(addr, "after", |_| {});
    publisher
        .client
        .publish("ok/1", QoS::AtLeastOnce, false, "fine")
        .unwrap();
    assert_eq!(&bystander.publishes(1)[0].payload[..], b"fine");
}

/// With the disk "full" (a reserve larger than the free space), a QoS 1 publish is not
/// acknowledged: MQTT 5 gets PUBACK 0x97 Quota exceeded, and MQTT 3.1.1, which has no
/// negative acknowledgement, has its connection closed. Nothing reaches subscribers.
#[test]
fn a_publish_the_log_cannot_store_is_never_acknowledged() {
    let mut weir = Weir::builder()
        .env("WEIR_STORAGE_DISK_RESERVE_BYTES", (1u64 << 62).to_string())
        .start()
        .unwrap();
    let addr = weir.mqtt_addr().unwrap();
    let watcher = Client::connect(addr, "watcher", |_| {});
    watcher.subscribe("#", QoS::AtLeastOnce);
    // MQTT 5 by hand: CONNECT, then PUBLISH QoS 1 id 7.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(&connect_packet_v5_anonymous()).unwrap();
    let mut head = [0u8; 2];
    s.read_exact(&mut head).unwrap();
    let mut connack = vec![0u8; head[1] as usize];
    s.read_exact(&mut connack).unwrap();
    assert_eq!((head[0], connack[1]), (0x20, 0), "CONNACK success");
    s.write_all(&[0x32, 8, 0, 3, b'a', b'/', b'b', 0, 7, 0])
        .unwrap();
    let mut puback = [0u8; 5];
    s.read_exact(&mut puback).unwrap();
    assert_eq!(puback[..4], [0x40, 3, 0, 7]);
    assert_eq!(puback[4], 0x97, "PUBACK reason");
    // MQTT 3.1.1: the connection is closed without a PUBACK.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut bytes = connect_packet_v4("v4", None, 0);
    bytes.extend_from_slice(&[0x32, 7, 0, 3, b'a', b'/', b'b', 0, 7]);
    s.write_all(&bytes).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert_eq!(got, [0x20, 2, 0, 0], "only the CONNACK");
    assert!(watcher.publish_within(Duration::from_millis(300)).is_none());
}

/// Kafka bootstrap for rdkafka clients.
pub(crate) fn bootstrap(weir: &mut Weir) -> String {
    weir.kafka_addr().expect("kafka listener").to_string()
}

/// 10,000 MQTT publishes on 50 topics are read by an rdkafka consumer group: each record is
/// keyed by its MQTT topic, carries its QoS in a header, one MQTT topic stays in one
/// partition, and each topic's records are in publish order.
#[test]
fn ten_thousand_mqtt_publishes_on_fifty_topics_reach_a_kafka_consumer_group_in_order() {
    let mut weir = Weir::builder()
        .env("WEIR_KAFKA_AUTO_CREATE_PARTITIONS_COUNT", "4")
        .env("WEIR_KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
        .start()
        .unwrap();
    let addr = weir.mqtt_addr().unwrap();
    let publisher = Client::connect(addr, "fleet-gateway", |_| {});
    let (topics, per_topic) = (50, 200);
    for seq in 0..per_topic {
        for device in 0..topics {
            let topic = format!("fleet/device{device}/temp");
            publisher
                .client
                .publish(topic, QoS::AtLeastOnce, false, format!("{seq}"))
                .unwrap();
        }
    }
    for i in 0..topics * per_topic {
        publisher.wait_for(&format!("PUBACK {i}"), |p| matches!(p, Packet::PubAck(_)));
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap(&mut weir))
        .set("group.id", "analytics")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    consumer.subscribe(&["fleet"]).unwrap();
    let mut by_key: HashMap<String, (i32, Vec<u32>)> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut count = 0;
    while count < topics * per_topic && Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.unwrap();
        let key = String::from_utf8(message.key().unwrap().to_vec()).unwrap();
        let headers = message.headers().unwrap();
        let qos = headers.iter().find(|h| h.key == "mqtt.qos").unwrap();
        assert_eq!(qos.value, Some(&b"1"[..]));
        let seq: u32 = std::str::from_utf8(message.payload().unwrap())
            .unwrap()
            .parse()
            .unwrap();
        let entry = by_key
            .entry(key)
            .or_insert_with(|| (message.partition(), Vec::new()));
        assert_eq!(
            entry.0,
            message.partition(),
            "one MQTT topic, one partition"
        );
        entry.1.push(seq);
        count += 1;
    }
    assert_eq!(count, topics * per_topic);
    assert_eq!(by_key.len(), topics);
    let partitions: std::collections::HashSet<i32> = by_key.values().map(|v| v.0).collect();
    assert!(partitions.len() > 1, "50 keys spread over the 4 partitions");
    for (key, (_, seqs)) in &by_key {
        assert_eq!(*seqs, (0..per_topic as u32).collect::<Vec<_>>(), "{key}");
    }
}

/// Records produced with rdkafka reach MQTT subscribers: under `<topic>/<key>` by default,
/// under the topic their `mqtt.topic` header names, with other headers as MQTT 5 user
/// properties, at QoS 1.
#[test]
fn records_produced_with_rdkafka_reach_mqtt_subscribers() {
    let mut weir = Weir::builder().start().unwrap();
    let addr = weir.mqtt_addr().unwrap();
    let subscriber = Client::connect(addr, "ops", |_| {});
    subscriber.subscribe("orders/#", QoS::AtLeastOnce);
    subscriber.subscribe("devices/+/cmd", QoS::ExactlyOnce);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap(&mut weir))
        .create()
        .unwrap();
    let headers = rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
        key: "mqtt.topic",
        value: Some("devices/7/cmd"),
    });
    for (key, value) in [("order-1", "a"), ("order-2", "b")] {
        producer
            .send(BaseRecord::to("orders").key(key).payload(value))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer
        .send(
            BaseRecord::to("orders")
                .key("k")
                .payload("reboot")
                .headers(headers),
        )
        .map_err(|(e, _)| e)
        .unwrap();
    producer.flush(WAIT).unwrap();
    let got: Vec<(String, String, QoS)> = subscriber
        .publishes(3)
        .into_iter()
        .map(|p| {
            (
                p.topic,
                String::from_utf8(p.payload.to_vec()).unwrap(),
                p.qos,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("orders/order-1".into(), "a".into(), QoS::AtLeastOnce),
            ("orders/order-2".into(), "b".into(), QoS::AtLeastOnce),
            ("devices/7/cmd".into(), "reboot".into(), QoS::AtLeastOnce),
        ]
    );
}

/// A persistent session (3.1.1, Clean Session 0) keeps its subscription and gets every QoS 1
/// message published while it was away, across a broker restart, in order; its backlog is a
/// cursor into the log. Then a clean session drops it.
#[test]
fn a_persistent_session_gets_its_qos1_backlog_after_a_broker_restart() {
    let mut weir = Weir::builder().start().unwrap();
    let addr = weir.mqtt_addr().unwrap();
    let persistent = |o: &mut MqttOptions| {
        o.set_clean_session(false);
    };
    let field = Client::connect(addr, "field-unit-1", persistent);
    field.subscribe("alerts/#", QoS::AtLeastOnce);
    field.client.disconnect().unwrap();
    while field.events.recv_timeout(WAIT).is_ok_and(|e| e.is_ok()) {}
    let publish = |addr, from: u32, to: u32| {
        let publisher = Client::connect(addr, "hq", |_| {});
        for i in from..to {
            publisher
                .client
                .publish("alerts/flood", QoS::AtLeastOnce, false, i.to_string())
                .unwrap();
        }
        for _ in from..to {
            publisher.wait_for("PUBACK", |p| matches!(p, Packet::PubAck(_)));
        }
    };
    publish(addr, 0, 100);
    let addr = restart(&mut weir);
    publish(addr, 100, 150);
    let field = Client::connect_expecting(addr, "field-unit-1", persistent, true);
    let got: Vec<String> = field
        .publishes(150)
        .into_iter()
        .map(|p| String::from_utf8(p.payload.to_vec()).unwrap())
        .collect();
    let expected: Vec<String> = (0..150).map(|i| i.to_string()).collect();
    assert_eq!(got, expected);
    // Live messages keep coming on the resumed subscription.
    publish(addr, 150, 151);
    assert_eq!(&field.publishes(1)[0].payload[..], b"150");
    drop(field);
    // A clean session ends the stored one: no session present, no subscription.
    let clean = Client::connect_expecting(addr, "field-unit-1", |_| {}, false);
    publish(addr, 151, 152);
    assert!(clean.publish_within(Duration::from_millis(500)).is_none());
}

impl Client {
    /// [`Client::connect`], checking the CONNACK's session-present flag.
    fn connect_expecting(
        addr: SocketAddr,
        id: &str,
        setup: impl FnOnce(&mut MqttOptions),
        session_present: bool,
    ) -> Client {
        Client::connect_checked(addr, id, setup, |ack| {
            assert_eq!(ack.session_present, session_present, "{id}");
        })
    }
}

/// A second connection with the same client id takes the session over: the first is
/// closed (MQTT 5: DISCONNECT 0x8E Session taken over) and the second resumes the session.
#[test]
fn a_second_connection_with_the_same_client_id_takes_the_session_over() {
    let mut weir = Weir::builder().start().unwrap();
    let addr = weir.mqtt_addr().unwrap();
    // MQTT 5, Session Expiry Interval 300 s.
    let connect_v5 = |id: &str| {
        let properties = Properties {
            session_expiry_interval: Some(300),
            ..Properties::default()
        };
        connect_packet(ProtocolVersion::V5, id, false, 0, properties, None)
    };
    let mut first = TcpStream::connect(addr).unwrap();
    first.set_read_timeout(Some(WAIT)).unwrap();
    first.write_all(&connect_v5("twin")).unwrap();
    let connack = read_packet(&mut first);
    assert_eq!(
        &connack[..4],
        [0x20, connack[1], 0, 0],
        "accepted, no session"
    );
    // SUBSCRIBE id 1 to `twin/#` QoS 1.
    let mut subscribe = vec![0x82, 12, 0, 1, 0, 0, 6];
    subscribe.extend_from_slice(b"twin/#");
    subscribe.push(1);
    first.write_all(&subscribe[..]).unwrap();
    let suback = read_packet(&mut first);
    assert_eq!(suback[0], 0x90);
    let mut second = TcpStream::connect(addr).unwrap();
    second.set_read_timeout(Some(WAIT)).unwrap();
    second.write_all(&connect_v5("twin")).unwrap();
    let disconnect = read_packet(&mut first);
    assert_eq!(
        (disconnect[0], disconnect[2]),
        (0xE0, 0x8E),
        "{disconnect:02x?}"
    );
    let mut rest = Vec::new();
    let _ = first.read_to_end(&mut rest);
    let connack = read_packet(&mut second);
    assert_eq!(
        (connack[0], connack[2], connack[3]),
        (0x20, 1, 0),
        "session present"
    );
    // The subscription came along.
    let publisher = Client::connect(addr, "pub", |_| {});
    publisher
        .client
        .publish("twin/x", QoS::AtLeastOnce, false, "hi")
        .unwrap();
    let publish = read_packet(&mut second);
    assert_eq!(publish[0] & 0xF0, 0x30);
    assert!(publish.ends_with(b"hi"));
}

/// Reads one MQTT packet (fixed header included) from `stream`.
fn read_packet(stream: &mut TcpStream) -> Vec<u8> {
    let mut packet = vec![0u8; 1];
    stream.read_exact(&mut packet).expect("a packet");
    let mut length = 0usize;
    for shift in 0..4 {
        let mut byte = [0u8];
        stream.read_exact(&mut byte).expect("remaining length");
        packet.push(byte[0]);
        length |= usize::from(byte[0] & 0x7f) << (7 * shift);
        if byte[0] & 0x80 == 0 {
            break;
        }
    }
    let start = packet.len();
    packet.resize(start + length, 0);
    stream
        .read_exact(&mut packet[start..])
        .expect("packet body");
    packet
}

/// Hostile input from past broker CVEs: one QoS 2 packet id published 5,000 times without a
/// PUBREL. Each gets its PUBREC and the message is stored once (MQTT 4.3.3: no duplicate
/// onward until the PUBREL); the PUBREL completes it and the connection goes on.
#[test]
fn one_qos2_id_repeated_without_pubrel_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut weir = Weir::builder().cwd(dir.path()).start().unwrap();
    let mut stream = TcpStream::connect(weir.mqtt_addr().unwrap()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
        .write_all(&connect_packet_v4("repeater", None, 0))
        .unwrap();
    assert_eq!(read_packet(&mut stream), [0x20, 2, 0, 0]);
    let topic = b"hostile/qos2";
    let mut publish = vec![0x34, (2 + topic.len() + 2 + 4) as u8, 0, topic.len() as u8];
    publish.extend_from_slice(topic);
    publish.extend_from_slice(&[0, 7]);
    publish.extend_from_slice(b"once");
    let burst: Vec<u8> = publish.repeat(5000);
    stream.write_all(&burst).unwrap();
    for n in 0..5000 {
        assert_eq!(read_packet(&mut stream), [0x50, 2, 0, 7], "PUBREC {n}");
    }
    stream.write_all(&[0x62, 2, 0, 7]).unwrap();
    assert_eq!(read_packet(&mut stream), [0x70, 2, 0, 7], "PUBCOMP");
    weir.signal(libc::SIGTERM).unwrap();
    assert_eq!(weir.wait_exit().unwrap().code(), Some(0));
    assert_eq!(
        weir_tests::stored_values(dir.path(), "hostile"),
        [b"once".to_vec()]
    );
}

/// A QoS 1 subscriber that stops reading its socket costs the broker at most its write
/// buffer: the messages it has no room for wait in the log, and once it reads again it gets
/// every one of them, in order (none dropped), acknowledging as it goes.
#[test]
fn a_subscriber_that_stops_reading_gets_everything_later_and_costs_bounded_memory() {
    use weir_mqtt::{Packet as P, PacketDecoder, ProtocolVersion, PubResponse};
    let mut weir = Weir::builder()
        .env(
            "WEIR_SERVER_WRITE_BUFFER_BYTES_MAX",
            (1u32 << 20).to_string(),
        )
        .start()
        .unwrap();
    let addr = weir.mqtt_addr().unwrap();
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.set_read_timeout(Some(WAIT)).unwrap();
    slow.write_all(&connect_packet_v4("slow", None, 0)).unwrap();
    assert_eq!(read_packet(&mut slow), [0x20, 2, 0, 0]);
    // SUBSCRIBE, packet id 1, `bg/#` at QoS 1.
    slow.write_all(&[0x82, 9, 0, 1, 0, 4, b'b', b'g', b'/', b'#', 1])
        .unwrap();
    assert_eq!(read_packet(&mut slow), [0x90, 3, 0, 1, 1]);
    let idle_rss = weir.rss_anon_bytes().unwrap();
    // 400 messages of 64 KiB: 25 MiB, 25 times the write buffer.
    let (count, size) = (400usize, 64 * 1024);
    let publisher = Client::connect(addr, "bulk", |o| {
        o.set_max_packet_size(1 << 20, 1 << 20);
    });
    for i in 0..count {
        let mut payload = vec![(i % 251) as u8; size];
        payload[..8].copy_from_slice(&(i as u64).to_be_bytes());
        publisher
            .client
            .publish("bg/data", QoS::AtLeastOnce, false, payload)
            .unwrap();
    }
    for _ in 0..count {
        publisher.wait_for("PUBACK", |p| matches!(p, Packet::PubAck(_)));
    }
    let grown = weir.rss_anon_bytes().unwrap().saturating_sub(idle_rss);
    assert!(
        grown < 16 << 20,
        "anonymous memory grew by {grown} bytes for a non-reading subscriber"
    );
    // Now read everything, acknowledging each message.
    let decoder = PacketDecoder::new(1 << 20);
    let mut buffer = Vec::new();
    let mut got = Vec::new();
    let mut chunk = vec![0u8; 256 * 1024];
    while got.len() < count {
        let n = slow.read(&mut chunk).expect("data keeps coming");
        assert!(n > 0, "connection closed after {} messages", got.len());
        buffer.extend_from_slice(&chunk[..n]);
        while let Some((packet, used)) = decoder
            .decode(&buffer, ProtocolVersion::V3_1_1)
            .expect("valid packets")
        {
            buffer.drain(..used);
            if let P::Publish(p) = packet {
                let mut ack = Vec::new();
                P::PubAck(PubResponse::new(p.packet_id.unwrap()))
                    .encode(ProtocolVersion::V3_1_1, &mut ack)
                    .unwrap();
                slow.write_all(&ack).unwrap();
                assert_eq!(p.payload.len(), size);
                got.push(u64::from_be_bytes(p.payload[..8].try_into().unwrap()));
            }
        }
    }
    assert_eq!(got, (0..count as u64).collect::<Vec<_>>());
}

/// A shared subscription spreads messages over its members: each message reaches exactly
/// one of three workers (on whichever shards they landed), every worker gets a share, a plain
/// subscriber still gets everything, and when a worker leaves the others take all of it.
#[test]
fn a_shared_subscription_balances_messages_over_three_clients() {
    let mut weir = Weir::builder().start().unwrap();
    let addr = weir.mqtt_addr().unwrap();
    let workers: Vec<Client> = (0..3)
        .map(|i| {
            let worker = Client::connect(addr, &format!("worker-{i}"), |_| {});
            worker.subscribe("$share/workers/jobs/#", QoS::AtLeastOnce);
            worker
        })
        .collect();
    let observer = Client::connect(addr, "observer", |_| {});
    observer.subscribe("jobs/#", QoS::AtLeastOnce);
    let publisher = Client::connect(addr, "dispatcher", |_| {});
    let publish = |from: usize, to: usize| {
        for i in from..to {
            let topic = format!("jobs/queue{}", i % 3);
            publisher
                .client
                .publish(topic, QoS::AtLeastOnce, false, i.to_string())
                .unwrap();
        }
        for _ in from..to {
            publisher.wait_for("PUBACK", |p| matches!(p, Packet::PubAck(_)));
        }
    };
    let collect = |clients: &[&Client], total: usize| {
        let mut per_client = vec![Vec::new(); clients.len()];
        let deadline = Instant::now() + WAIT;
        while per_client.iter().map(Vec::len).sum::<usize>() < total && Instant::now() < deadline {
            // Each client in turn, waiting a little for its next event.
            for (i, client) in clients.iter().enumerate() {
                while let Ok(Ok(event)) = client.events.recv_timeout(Duration::from_millis(5)) {
                    if let Event::Incoming(Packet::Publish(p)) = event {
                        let n: usize = std::str::from_utf8(&p.payload).unwrap().parse().unwrap();
                        per_client[i].push(n);
                    }
                }
            }
        }
        per_client
    };
    publish(0, 300);
    let everything = observer.publishes(300);
    assert_eq!(everything.len(), 300);
    let shares = collect(&workers.iter().collect::<Vec<_>>(), 300);
    let mut all: Vec<usize> = shares.iter().flatten().copied().collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..300).collect::<Vec<_>>(),
        "each message exactly once"
    );
    for (i, share) in shares.iter().enumerate() {
        assert!(share.len() >= 40, "worker {i} got {} of 300", share.len());
    }
    // Nothing more arrives late (no duplicates).
    assert!(
        workers
            .iter()
            .all(|w| w.publish_within(Duration::from_millis(200)).is_none())
    );
    let mut workers = workers;
    let leaving = workers.remove(0);
    leaving.client.disconnect().unwrap();
    while leaving.events.recv_timeout(WAIT).is_ok_and(|e| e.is_ok()) {}
    publish(300, 400);
    let shares = collect(&workers.iter().collect::<Vec<_>>(), 100);
    let mut all: Vec<usize> = shares.iter().flatten().copied().collect();
    all.sort_unstable();
    assert_eq!(all, (300..400).collect::<Vec<_>>());
    assert!(shares.iter().all(|s| !s.is_empty()));
}

/// QoS 2 is exactly once into the log across client retries: a publish whose PUBREC the
/// client never saw is sent again on the next connection and not stored twice, also when the
/// broker was killed (SIGKILL) in between; once the exchange completes (PUBCOMP) the packet
/// identifier is free for a new message.
#[test]
fn qos2_is_stored_exactly_once_across_a_dropped_connection_and_a_broker_kill() {
    let mut weir = Weir::builder().start().unwrap();
    let addr = weir.mqtt_addr().unwrap();
    let kafka = weir.kafka_addr().unwrap();
    // MQTT 3.1.1, Clean Session 0, client id "meter".
    let connect = |addr: SocketAddr, present: u8| {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let packet = connect_packet(
            ProtocolVersion::V3_1_1,
            "meter",
            false,
            0,
            Properties::default(),
            None,
        );
        s.write_all(&packet).unwrap();
        assert_eq!(read_packet(&mut s), [0x20, 2, present, 0]);
        s
    };
    let publish = |id: u8, dup: bool, payload: &[u8]| {
        let topic = b"meters/m1";
        let mut p = vec![0x34 | if dup { 0x08 } else { 0 }];
        p.push((2 + topic.len() + 2 + payload.len()) as u8);
        p.extend_from_slice(&[0, topic.len() as u8]);
        p.extend_from_slice(topic);
        p.extend_from_slice(&[0, id]);
        p.extend_from_slice(payload);
        p
    };
    // Stored, PUBREC lost with the connection; sent again (DUP) on the next one.
    let mut s = connect(addr, 0);
    s.write_all(&publish(5, false, b"reading-1")).unwrap();
    assert_eq!(read_packet(&mut s), [0x50, 2, 0, 5]);
    drop(s);
    let mut s = connect(addr, 1);
    s.write_all(&publish(5, true, b"reading-1")).unwrap();
    assert_eq!(read_packet(&mut s), [0x50, 2, 0, 5]);
    s.write_all(&[0x62, 2, 0, 5]).unwrap();
    assert_eq!(read_packet(&mut s), [0x70, 2, 0, 5]);
    // Stored, then the broker is killed before the client saw the PUBREC.
    s.write_all(&publish(6, false, b"reading-2")).unwrap();
    assert_eq!(read_packet(&mut s), [0x50, 2, 0, 6]);
    drop(s);
    weir.signal(libc::SIGKILL).unwrap();
    weir.wait_exit().unwrap();
    weir.start_again(&[
        ("WEIR_MQTT_LISTEN", addr.to_string()),
        ("WEIR_KAFKA_LISTEN", kafka.to_string()),
    ])
    .unwrap();
    // The session stored when the first connection ended is there (the broker did not see
    // the second one end).
    let mut s = connect(addr, 1);
    s.write_all(&publish(6, true, b"reading-2")).unwrap();
    assert_eq!(read_packet(&mut s), [0x50, 2, 0, 6]);
    s.write_all(&[0x62, 2, 0, 6]).unwrap();
    assert_eq!(read_packet(&mut s), [0x70, 2, 0, 6]);
    // After PUBCOMP, identifier 5 is a new message.
    s.write_all(&publish(5, false, b"reading-3")).unwrap();
    assert_eq!(read_packet(&mut s), [0x50, 2, 0, 5]);
    s.write_all(&[0x62, 2, 0, 5]).unwrap();
    assert_eq!(read_packet(&mut s), [0x70, 2, 0, 5]);
    drop(s);
    weir.signal(libc::SIGTERM).unwrap();
    weir.wait_exit().unwrap();
    let payloads: Vec<Vec<u8>> = weir_tests::stored_values(weir.cwd(), "meters");
    assert_eq!(
        payloads,
        [&b"reading-1"[..], b"reading-2", b"reading-3"].map(<[u8]>::to_vec)
    );
}

/// An MQTT 5 will with a Will Delay Interval waits: a reconnection of the session within the
/// delay cancels it; a client that does not come back has it published after the delay.
#[test]
fn a_delayed_will_is_cancelled_by_a_reconnection_and_published_otherwise() {
    let mut weir = Weir::builder().start().unwrap();
    let addr = weir.mqtt_addr().unwrap();
    let watcher = Client::connect(addr, "watcher", |_| {});
    watcher.subscribe("status/#", QoS::AtLeastOnce);
    // CONNECT v5: will QoS 1, Session Expiry 60 s, Will Delay 2 s, client id "pump".
    let connect = || {
        let properties = Properties {
            session_expiry_interval: Some(60),
            ..Properties::default()
        };
        let will_properties = Properties {
            will_delay_interval: Some(2),
            ..Properties::default()
        };
        let will = Some(("status/pump", &b"lost"[..], will_properties));
        let packet = connect_packet(ProtocolVersion::V5, "pump", false, 0, properties, will);
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(&packet).unwrap();
        assert_eq!(read_packet(&mut s)[0], 0x20);
        s
    };
    drop(connect());
    // Back well within the delay: no will.
    let again = connect();
    assert!(watcher.publish_within(Duration::from_secs(3)).is_none());
    let gone = Instant::now();
    drop(again);
    let will = watcher.publishes(1).remove(0);
    assert_eq!(
        (will.topic.as_str(), &will.payload[..]),
        ("status/pump", &b"lost"[..])
    );
    assert!(
        gone.elapsed() >= Duration::from_secs(2),
        "published after the delay"
    );
}

/// MQTT over WebSocket: the upgrade is answered with subprotocol `mqtt`, MQTT packets travel
/// in binary frames both ways (a CONNECT split over two frames, a PING between them), and a
/// message published over TCP reaches the WebSocket subscriber.
#[test]
fn mqtt_over_websocket_carries_packets_in_binary_frames() {
    let mut weir = Weir::builder().start().unwrap();
    let ws_addr = weir.mqtt_websocket_addr().unwrap();
    let mut s = TcpStream::connect(ws_addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(
        b"GET /mqtt HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
          Sec-WebSocket-Protocol: mqtt\r\n\r\n",
    )
    .unwrap();
    let mut answer = Vec::new();
    while !answer.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        s.read_exact(&mut byte).unwrap();
        answer.push(byte[0]);
    }
    let answer = String::from_utf8(answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 101 "), "{answer}");
    assert!(answer.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    assert!(answer.contains("Sec-WebSocket-Protocol: mqtt"));
    let frame = |opcode: u8, payload: &[u8]| {
        let mask = [1u8, 2, 3, 4];
        let mut f = vec![0x80 | opcode, 0x80 | payload.len() as u8];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    };
    let read_frame = |s: &mut TcpStream| {
        let mut head = [0u8; 2];
        s.read_exact(&mut head).unwrap();
        assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
        let mut payload = vec![0u8; usize::from(head[1] & 0x7f)];
        s.read_exact(&mut payload).unwrap();
        (head[0], payload)
    };
    let connect = connect_packet_v4("ws-client", None, 30);
    let (first, second) = connect.split_at(5);
    s.write_all(&frame(0x2, first)).unwrap();
    s.write_all(&frame(0x9, b"ping")).unwrap();
    s.write_all(&frame(0x2, second)).unwrap();
    assert_eq!(read_frame(&mut s), (0x8A, b"ping".to_vec()));
    assert_eq!(read_frame(&mut s), (0x82, vec![0x20, 2, 0, 0]));
    s.write_all(&frame(
        0x2,
        &[0x82, 9, 0, 1, 0, 4, b'w', b's', b'/', b'#', 1],
    ))
    .unwrap();
    assert_eq!(read_frame(&mut s), (0x82, vec![0x90, 3, 0, 1, 1]));
    let publisher = Client::connect(weir.mqtt_addr().unwrap(), "tcp", |_| {});
    publisher
        .client
        .publish("ws/x", QoS::AtMostOnce, false, "over ws")
        .unwrap();
    let (opcode, publish) = read_frame(&mut s);
    assert_eq!(opcode, 0x82);
    assert_eq!(publish[0], 0x30);
    assert!(publish.ends_with(b"ws/xover ws"), "{publish:?}");
    // A text frame is refused: close frame 1002, then the connection ends.
    s.write_all(&frame(0x1, b"{}")).unwrap();
    assert_eq!(read_frame(&mut s), (0x88, vec![0x03, 0xEA]));
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
}

/// MQTT 5 No Local: a client does not get its own publishes on a No Local subscription, but
/// does get everyone else's; and a silent client is closed after 1.5 times its keep alive,
/// its will published.
#[test]
fn no_local_skips_own_messages_and_keep_alive_closes_a_silent_client() {
    let mut weir = Weir::builder().start().unwrap();
    let addr = weir.mqtt_addr().unwrap();
    // CONNECT v5, keep alive 1 s, client id "self", a will on `gone/self`.
    let will = Some(("gone/self", &b"bye"[..], Properties::default()));
    let connect = connect_packet(
        ProtocolVersion::V5,
        "self",
        true,
        1,
        Properties::default(),
        will,
    );
    let mut me = TcpStream::connect(addr).unwrap();
    me.set_read_timeout(Some(WAIT)).unwrap();
    me.write_all(&connect).unwrap();
    assert_eq!(read_packet(&mut me)[0], 0x20);
    // SUBSCRIBE id 1: `nl/#`, QoS 1 with No Local.
    me.write_all(&[0x82, 10, 0, 1, 0, 0, 4, b'n', b'l', b'/', b'#', 0x05])
        .unwrap();
    assert_eq!(read_packet(&mut me), [0x90, 4, 0, 1, 0, 1]);
    // Our own QoS 1 publish: acknowledged, not delivered back.
    me.write_all(&[0x32, 9, 0, 4, b'n', b'l', b'/', b'a', 0, 2, 0])
        .unwrap();
    assert_eq!(read_packet(&mut me), [0x40, 2, 0, 2]);
    let watcher = Client::connect(addr, "watcher", |_| {});
    watcher.subscribe("gone/#", QoS::AtLeastOnce);
    let other = Client::connect(addr, "other", |_| {});
    other
        .client
        .publish("nl/b", QoS::AtLeastOnce, false, "theirs")
        .unwrap();
    let delivered = read_packet(&mut me);
    assert_eq!(delivered[0] & 0xF0, 0x30);
    assert!(
        delivered.ends_with(b"theirs"),
        "{delivered:?}: only the other client's"
    );
    // Now silent: closed after 1.5 s without a packet, and the will goes out.
    let will = watcher.publishes(1).remove(0);
    assert_eq!(
        (will.topic.as_str(), &will.payload[..]),
        ("gone/self", &b"bye"[..])
    );
    let mut rest = Vec::new();
    let _ = me.read_to_end(&mut rest);
}

/// `mqtt.kafka_topic_rules` names the Kafka topic of matching MQTT topics (first rule wins);
/// other topics keep the first-level default; subscribers see the MQTT topics either way.
#[test]
fn kafka_topic_rules_choose_where_mqtt_topics_are_stored() {
    let mut weir = Weir::builder()
        .env(
            "WEIR_MQTT_KAFKA_TOPIC_RULES",
            "plant/+/temp=temperatures, plant/#=plant-other",
        )
        .start()
        .unwrap();
    let addr = weir.mqtt_addr().unwrap();
    let subscriber = Client::connect(addr, "s", |_| {});
    subscriber.subscribe("#", QoS::AtLeastOnce);
    let publisher = Client::connect(addr, "p", |_| {});
    for topic in ["plant/l1/temp", "plant/l1/speed", "yard/gate"] {
        publisher
            .client
            .publish(topic, QoS::AtLeastOnce, false, topic)
            .unwrap();
        publisher.wait_for("PUBACK", |p| matches!(p, Packet::PubAck(_)));
    }
    let topics: Vec<String> = subscriber
        .publishes(3)
        .into_iter()
        .map(|p| p.topic)
        .collect();
    assert_eq!(topics, ["plant/l1/temp", "plant/l1/speed", "yard/gate"]);
    weir.signal(libc::SIGTERM).unwrap();
    weir.wait_exit().unwrap();
    for (kafka_topic, key) in [
        ("temperatures", "plant/l1/temp"),
        ("plant-other", "plant/l1/speed"),
        ("yard", "yard/gate"),
    ] {
        let keys = weir_tests::stored_keys(weir.cwd(), kafka_topic);
        assert_eq!(keys, [key.as_bytes().to_vec()], "{kafka_topic}");
    }
}

/// A Kafka topic deleted (DeleteTopics) while MQTT publishes go to it is created again by the
/// next publish: each shard's table of topics follows the log's topics, so the publish after
/// the deletion is stored in the new topic, not sent to a partition that is gone.
#[test]
fn a_kafka_topic_deleted_under_mqtt_publishes_is_created_again() {
    let mut weir = Weir::builder().start().unwrap();
    let addr = weir.mqtt_addr().unwrap();
    let publisher = Client::connect(addr, "p", |_| {});
    let publish = |topic: &str| {
        publisher
            .client
            .publish(topic, QoS::AtLeastOnce, false, topic)
            .unwrap();
        publisher.wait_for("PUBACK", |p| matches!(p, Packet::PubAck(_)));
    };
    // The first publish creates the topic; the second finds it in its shard's table.
    publish("gone/created");
    publish("gone/known");
    // DeleteTopics v1: topics ["gone"], timeout 5000 ms.
    let mut body = Vec::new();
    body.extend_from_slice(&20i16.to_be_bytes());
    body.extend_from_slice(&1i16.to_be_bytes());
    body.extend_from_slice(&7i32.to_be_bytes());
    body.extend_from_slice(&4i16.to_be_bytes());
    body.extend_from_slice(b"test");
    body.extend_from_slice(&1i32.to_be_bytes());
    body.extend_from_slice(&4i16.to_be_bytes());
    body.extend_from_slice(b"gone");
    body.extend_from_slice(&5000i32.to_be_bytes());
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    let mut kafka = TcpStream::connect(weir.kafka_addr().unwrap()).unwrap();
    kafka.set_read_timeout(Some(WAIT)).unwrap();
    kafka.write_all(&frame).unwrap();
    let answer = weir_tests::read_frame(&mut kafka).unwrap();
    // correlation id, throttle time, one result: "gone" and error code 0.
    let mut expected = 7i32.to_be_bytes().to_vec();
    expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1, 0, 4]);
    expected.extend_from_slice(b"gone");
    expected.extend_from_slice(&[0, 0]);
    assert_eq!(answer, expected);
    publish("gone/after");
    weir.signal(libc::SIGTERM).unwrap();
    weir.wait_exit().unwrap();
    let keys: Vec<Vec<u8>> = weir_tests::stored_keys(weir.cwd(), "gone");
    assert_eq!(keys, [b"gone/after".to_vec()]);
}

/// rumqttc publishing 300 QoS 2 messages over a persistent session while the broker is
/// killed (SIGKILL) and restarted on the same port: rumqttc reconnects, the session is
/// present, it sends again what was not complete (PUBLISH with DUP, or PUBREL), and the log
/// holds every message exactly once, in order.
#[test]
fn rumqttc_qos2_across_a_broker_kill_is_stored_exactly_once() {
    let mut weir = Weir::builder().start().unwrap();
    let addr = weir.mqtt_addr().unwrap();
    let kafka = weir.kafka_addr().unwrap();
    let mut options = MqttOptions::new("q2-producer", addr.ip().to_string(), addr.port());
    options.set_keep_alive(Duration::from_secs(5));
    options.set_clean_session(false);
    // More in flight than the test publishes, so packet ids never wrap: rumqttc 0.25.1
    // re-sends QoS 2 publishes after a reconnection in packet-id order, not in the order
    // sent (its `clean` starts after the last PUBACK, which QoS 2 never moves), and forgets
    // a publish held back for a packet-id collision; with wrapping ids either shows up as
    // the client's reordering or loss, not the broker's.
    options.set_inflight(1000);
    let (client, mut connection) = rumqttc::Client::new(options, 1000);
    let (tx, completions) = channel();
    std::thread::spawn(move || {
        // Unlike `Client`, keep polling after errors: rumqttc reconnects on the next poll.
        for event in connection.iter() {
            let sent = match event {
                Ok(Event::Incoming(Packet::PubComp(_))) => tx.send(Ok(())),
                Ok(Event::Incoming(Packet::ConnAck(ack))) => tx.send(Err(ack.session_present)),
                Ok(_) => Ok(()),
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(50));
                    Ok(())
                }
            };
            if sent.is_err() {
                break;
            }
        }
    });
    let total = 300;
    for i in 0..total {
        client
            .publish("q2/readings", QoS::ExactlyOnce, false, format!("{i:04}"))
            .unwrap();
    }
    let mut complete = 0;
    let mut reconnected_with_session = false;
    let mut killed = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    while complete < total {
        let left = deadline.saturating_duration_since(Instant::now());
        match completions.recv_timeout(left) {
            Ok(Ok(())) => complete += 1,
            Ok(Err(session_present)) => reconnected_with_session |= killed && session_present,
            Err(_) => panic!("{complete} of {total} QoS 2 publishes completed"),
        }
        if complete == total / 3 && !killed {
            killed = true;
            weir.signal(libc::SIGKILL).unwrap();
            weir.wait_exit().unwrap();
            weir.start_again(&[
                ("WEIR_MQTT_LISTEN", addr.to_string()),
                ("WEIR_KAFKA_LISTEN", kafka.to_string()),
            ])
            .unwrap();
        }
    }
    assert!(
        reconnected_with_session,
        "the session was present after the kill"
    );
    drop(client);
    weir.signal(libc::SIGTERM).unwrap();
    weir.wait_exit().unwrap();
    let stored: Vec<String> = weir_tests::stored_values(weir.cwd(), "q2")
        .into_iter()
        .map(|v| String::from_utf8(v).unwrap())
        .collect();
    let expected: Vec<String> = (0..total).map(|i| format!("{i:04}")).collect();
    if let Some(at) = (0..stored.len().max(total)).find(|&i| stored.get(i) != expected.get(i)) {
        let from = at.saturating_sub(3);
        panic!(
            "each message once, in order: {} stored, the first difference at {at}: {:?}",
            stored.len(),
            &stored[from.min(stored.len())..(at + 25).min(stored.len())]
        );
    }
}

/// `mqtt.subscribe_deny` refuses subscriptions its filters match (3.1.1 SUBACK 0x80) and
/// grants the rest; deliveries are counted on /metrics.
#[test]
fn denied_filters_are_refused_in_suback_and_deliveries_are_counted() {
    let mut weir = Weir::builder()
        .env("WEIR_MQTT_SUBSCRIBE_DENY", "secret/#")
        .start()
        .unwrap();
    let addr = weir.mqtt_addr().unwrap();
    let client = Client::connect(addr, "curious", |_| {});
    client
        .client
        .subscribe_many([
            rumqttc::SubscribeFilter::new("secret/+".into(), QoS::AtLeastOnce),
            rumqttc::SubscribeFilter::new("public/#".into(), QoS::AtLeastOnce),
        ])
        .unwrap();
    let Packet::SubAck(suback) = client.wait_for("SUBACK", |p| matches!(p, Packet::SubAck(_)))
    else {
        unreachable!()
    };
    assert_eq!(
        suback.return_codes,
        [
            rumqttc::SubscribeReasonCode::Failure,
            rumqttc::SubscribeReasonCode::Success(QoS::AtLeastOnce)
        ]
    );
    client
        .client
        .publish("public/news", QoS::AtLeastOnce, false, "hi")
        .unwrap();
    assert_eq!(&client.publishes(1)[0].payload[..], b"hi");
    client
        .client
        .publish("secret/plans", QoS::AtLeastOnce, false, "x")
        .unwrap();
    assert!(client.publish_within(Duration::from_millis(300)).is_none());
    assert!(weir.metric("weir_mqtt_messages_delivered_total").unwrap() >= 1);
}

/// The session limits' outcomes: beyond `mqtt.sessions_max` a persistent session is not
/// stored (its next connection starts without one), and `mqtt.session_expiry_max_s` caps
/// how long a session outlives its connection (3.1.1 persistent sessions included).
#[test]
fn session_count_and_expiry_limits_have_their_documented_outcomes() {
    let mut weir = Weir::builder()
        .env("WEIR_MQTT_SESSIONS_MAX", "1")
        .env("WEIR_MQTT_SESSION_EXPIRY_MAX_S", "2")
        .start()
        .unwrap();
    let addr = weir.mqtt_addr().unwrap();
    let persistent = |o: &mut MqttOptions| {
        o.set_clean_session(false);
    };
    let visit = |id: &str, present: bool| {
        let client = Client::connect_expecting(addr, id, persistent, present);
        client.client.disconnect().unwrap();
        while client.events.recv_timeout(WAIT).is_ok_and(|e| e.is_ok()) {}
    };
    visit("first", false);
    visit("second", false);
    // One session fits: the first's is stored, the second's is not.
    visit("first", true);
    visit("second", false);
    // Past the 2 s cap the first's session has expired (time passing is the behaviour).
    let stored_at = Instant::now();
    while stored_at.elapsed() < Duration::from_millis(2100) {
        std::thread::park_timeout(Duration::from_millis(2100) - stored_at.elapsed());
    }
    visit("first", false);
    // The refusal is logged with the limit's name.
    let line = weir.wait_for_log("MQTT session not stored").unwrap();
    assert!(line.contains("mqtt.sessions_max"), "{line}");
}
