//! Round trips, partial input and the encoder's own checks.

use super::*;

#[test]
fn every_packet_round_trips_in_mqtt_3_1() {
    for packet in samples(V3) {
        assert_round_trip(&packet, V3);
    }
}

#[test]
fn every_packet_round_trips_in_mqtt_3_1_1() {
    for packet in samples(V4) {
        assert_round_trip(&packet, V4);
    }
}

#[test]
fn every_packet_round_trips_in_mqtt_5_with_every_property() {
    for packet in samples(V5) {
        assert_round_trip(&packet, V5);
    }
}

/// The samples the round trips use really cover every packet type, and every MQTT 5
/// property identifier.
#[test]
fn samples_cover_every_packet_type_and_property() {
    let mut types: Vec<u8> = samples(V5).iter().map(|p| p.packet_type() as u8).collect();
    types.sort_unstable();
    types.dedup();
    assert_eq!(types, (1..=15).collect::<Vec<u8>>());
    let mut v4_types: Vec<u8> = samples(V4).iter().map(|p| p.packet_type() as u8).collect();
    v4_types.sort_unstable();
    v4_types.dedup();
    assert_eq!(v4_types, (1..=14).collect::<Vec<u8>>());

    // Every property identifier is set in some sample (the round trips then prove each one).
    let mut seen = std::collections::BTreeSet::new();
    for packet in samples(V5) {
        let properties = match &packet {
            Packet::Connect(c) => {
                if let Some(w) = &c.will {
                    collect_ids(&w.properties, &mut seen);
                }
                &c.properties
            }
            Packet::ConnAck(c) => &c.properties,
            Packet::Publish(p) => &p.properties,
            Packet::PubAck(r) | Packet::PubRec(r) | Packet::PubRel(r) | Packet::PubComp(r) => {
                &r.properties
            }
            Packet::Subscribe(s) => &s.properties,
            Packet::SubAck(s) => &s.properties,
            Packet::Unsubscribe(u) => &u.properties,
            Packet::UnsubAck(u) => &u.properties,
            Packet::Disconnect(d) => &d.properties,
            Packet::Auth(a) => &a.properties,
            Packet::PingReq | Packet::PingResp => continue,
        };
        collect_ids(properties, &mut seen);
    }
    let all: Vec<u8> = [
        0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x11, 0x12, 0x13, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1A,
        0x1C, 0x1F, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2A,
    ]
    .to_vec();
    assert_eq!(all.len(), 27, "MQTT 5 defines 27 properties");
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), all);
}

/// Adds the identifiers of the properties set in `p` to `seen`.
fn collect_ids(p: &Properties, seen: &mut std::collections::BTreeSet<u8>) {
    use crate::properties::id::*;
    let checks: [(u8, bool); 27] = [
        (
            PAYLOAD_FORMAT_INDICATOR,
            p.payload_format_indicator.is_some(),
        ),
        (MESSAGE_EXPIRY_INTERVAL, p.message_expiry_interval.is_some()),
        (CONTENT_TYPE, p.content_type.is_some()),
        (RESPONSE_TOPIC, p.response_topic.is_some()),
        (CORRELATION_DATA, p.correlation_data.is_some()),
        (
            SUBSCRIPTION_IDENTIFIER,
            !p.subscription_identifiers.is_empty(),
        ),
        (SESSION_EXPIRY_INTERVAL, p.session_expiry_interval.is_some()),
        (
            ASSIGNED_CLIENT_IDENTIFIER,
            p.assigned_client_identifier.is_some(),
        ),
        (SERVER_KEEP_ALIVE, p.server_keep_alive.is_some()),
        (AUTHENTICATION_METHOD, p.authentication_method.is_some()),
        (AUTHENTICATION_DATA, p.authentication_data.is_some()),
        (
            REQUEST_PROBLEM_INFORMATION,
            p.request_problem_information.is_some(),
        ),
        (WILL_DELAY_INTERVAL, p.will_delay_interval.is_some()),
        (
            REQUEST_RESPONSE_INFORMATION,
            p.request_response_information.is_some(),
        ),
        (RESPONSE_INFORMATION, p.response_information.is_some()),
        (SERVER_REFERENCE, p.server_reference.is_some()),
        (REASON_STRING, p.reason_string.is_some()),
        (RECEIVE_MAXIMUM, p.receive_maximum.is_some()),
        (TOPIC_ALIAS_MAXIMUM, p.topic_alias_maximum.is_some()),
        (TOPIC_ALIAS, p.topic_alias.is_some()),
        (MAXIMUM_QOS, p.maximum_qos.is_some()),
        (RETAIN_AVAILABLE, p.retain_available.is_some()),
        (USER_PROPERTY, !p.user_properties.is_empty()),
        (MAXIMUM_PACKET_SIZE, p.maximum_packet_size.is_some()),
        (
            WILDCARD_SUBSCRIPTION_AVAILABLE,
            p.wildcard_subscription_available.is_some(),
        ),
        (
            SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            p.subscription_identifier_available.is_some(),
        ),
        (
            SHARED_SUBSCRIPTION_AVAILABLE,
            p.shared_subscription_available.is_some(),
        ),
    ];
    seen.extend(checks.iter().filter(|(_, set)| *set).map(|(id, _)| *id));
}

#[test]
fn back_to_back_packets_decode_one_by_one() {
    for version in VERSIONS {
        let packets = samples(version);
        let mut stream = Vec::new();
        let mut lengths = Vec::new();
        for p in &packets {
            lengths.push(p.encode(version, &mut stream).unwrap());
        }
        let mut offset = 0;
        for (expected, len) in packets.iter().zip(&lengths) {
            let (packet, used) = DECODER.decode(&stream[offset..], version).unwrap().unwrap();
            assert_eq!((&packet, used), (expected, *len));
            assert_eq!(
                DECODER.packet_len(&stream[offset..], version),
                Ok(Some(*len))
            );
            offset += used;
        }
        assert_eq!(offset, stream.len());
        assert_eq!(DECODER.decode(&stream[offset..], version), Ok(None));

        // A stream cut in the middle of the third packet yields two, then asks for more.
        let cut = lengths[0] + lengths[1] + lengths[2] / 2;
        let (_, a) = DECODER.decode(&stream[..cut], version).unwrap().unwrap();
        let (_, b) = DECODER.decode(&stream[a..cut], version).unwrap().unwrap();
        assert_eq!(DECODER.decode(&stream[a + b..cut], version), Ok(None));
    }
}

#[test]
fn every_prefix_of_every_packet_needs_more_bytes() {
    // Also checked inside every round trip; here explicitly, including the fixed header alone.
    for version in VERSIONS {
        for packet in samples(version) {
            let bytes = encode(&packet, version);
            for cut in 0..bytes.len() {
                assert_eq!(DECODER.decode(&bytes[..cut], version), Ok(None), "{cut}");
            }
            assert!(DECODER.decode(&bytes, version).unwrap().is_some());
        }
    }
}

#[test]
fn non_canonical_input_re_encodes_canonically() {
    // MQTT 5 PUBACK spelling out a success code and an empty property list: 4 bytes in,
    // the 2-byte short form out.
    let long = [0x40, 0x04, 0x00, 0x01, 0x00, 0x00];
    let packet = decode(&long, V5).unwrap();
    assert_eq!(packet, Packet::PubAck(PubResponse::new(pid(1))));
    assert_eq!(encode(&packet, V5), [0x40, 0x02, 0x00, 0x01]);

    // Properties out of identifier order come back in order; user properties keep theirs.
    let shuffled = [
        0xE0, 0x15, 0x80, 0x13, //
        0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'2', // user property k=2
        0x11, 0x00, 0x00, 0x00, 0x05, // session expiry 5
        0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'1', // user property k=1
    ];
    let packet = decode(&shuffled, V5).unwrap();
    let Packet::Disconnect(d) = &packet else {
        panic!("{packet:?}")
    };
    assert_eq!(d.reason_code, ReasonCode::UNSPECIFIED_ERROR);
    assert_eq!(d.properties.session_expiry_interval, Some(5));
    assert_eq!(
        d.properties.user_properties,
        [("k".into(), "2".into()), ("k".into(), "1".into())]
    );
    let canonical = [
        0xE0, 0x15, 0x80, 0x13, //
        0x11, 0x00, 0x00, 0x00, 0x05, //
        0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'2', //
        0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'1',
    ];
    assert_eq!(encode(&packet, V5), canonical);

    // DISCONNECT with only a reason code (remaining length 1).
    assert_eq!(
        decode(&[0xE0, 0x01, 0x8E], V5),
        Ok(Packet::Disconnect(Disconnect::new(
            ReasonCode::SESSION_TAKEN_OVER
        )))
    );
}

#[test]
fn encode_appends_and_leaves_the_buffer_alone_on_error() {
    let mut out = vec![0xAB];
    let n = Packet::PingReq.encode(V4, &mut out).unwrap();
    assert_eq!((n, out.as_slice()), (2, &[0xAB, 0xC0, 0x00][..]));

    let bad = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "x".repeat(70_000),
        packet_id: None,
        properties: Properties::default(),
        payload: vec![],
    });
    assert_eq!(
        bad.encode(V4, &mut out),
        Err(EncodeError::FieldTooLong {
            what: "topic name",
            len: 70_000
        })
    );
    assert_eq!(out, [0xAB, 0xC0, 0x00]);
}

#[test]
fn encoder_refuses_what_the_version_or_packet_cannot_carry() {
    let with_reason_string = Properties {
        reason_string: Some("no".into()),
        ..Properties::default()
    };
    let cases: Vec<(Packet, ProtocolVersion, EncodeError)> = vec![
        (
            Packet::PubAck(PubResponse {
                packet_id: pid(1),
                reason_code: ReasonCode::SUCCESS,
                properties: with_reason_string.clone(),
            }),
            V4,
            EncodeError::NeedsV5("properties"),
        ),
        (
            Packet::PubAck(PubResponse {
                packet_id: pid(1),
                reason_code: ReasonCode::NOT_AUTHORIZED,
                properties: Properties::default(),
            }),
            V4,
            EncodeError::NeedsV5("a reason code"),
        ),
        (
            Packet::Auth(Auth {
                reason_code: ReasonCode::SUCCESS,
                properties: Properties::default(),
            }),
            V4,
            EncodeError::NeedsV5("AUTH"),
        ),
        (
            Packet::Publish(Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: false,
                topic: "t".into(),
                packet_id: None,
                properties: Properties::default(),
                payload: vec![],
            }),
            V5,
            EncodeError::PacketIdMismatch,
        ),
        (
            Packet::Publish(Publish {
                dup: false,
                qos: QoS::AtMostOnce,
                retain: false,
                topic: "t".into(),
                packet_id: None,
                properties: with_reason_string,
                payload: vec![],
            }),
            V5,
            EncodeError::PropertyNotAllowed {
                id: 0x1F,
                context: "PUBLISH",
            },
        ),
        (
            Packet::ConnAck(ConnAck {
                session_present: false,
                reason_code: ReasonCode::NOT_AUTHORIZED,
                properties: Properties::default(),
            }),
            V4,
            EncodeError::InvalidReasonCode {
                packet: PacketType::ConnAck,
                code: 0x87,
            },
        ),
        (
            Packet::Subscribe(Subscribe {
                packet_id: pid(1),
                properties: Properties::default(),
                subscriptions: vec![],
            }),
            V5,
            EncodeError::Empty(PacketType::Subscribe),
        ),
        (
            Packet::Subscribe(Subscribe {
                packet_id: pid(1),
                properties: Properties::default(),
                subscriptions: vec![Subscription {
                    filter: "a".into(),
                    options: SubscriptionOptions {
                        no_local: true,
                        ..SubscriptionOptions::qos(QoS::AtMostOnce)
                    },
                }],
            }),
            V4,
            EncodeError::NeedsV5("subscription options"),
        ),
        (
            Packet::UnsubAck(UnsubAck {
                packet_id: pid(1),
                properties: Properties::default(),
                reason_codes: vec![ReasonCode::SUCCESS],
            }),
            V4,
            EncodeError::NeedsV5("UNSUBACK reason codes"),
        ),
        (
            Packet::Connect(Box::new(Connect {
                protocol_version: V4,
                clean_start: true,
                keep_alive: 0,
                client_id: "c".into(),
                will: None,
                username: None,
                password: Some(vec![1]),
                properties: Properties::default(),
            })),
            V4,
            EncodeError::NeedsV5("a password without a user name"),
        ),
    ];
    for (packet, version, expected) in cases {
        let mut out = Vec::new();
        assert_eq!(
            packet.encode(version, &mut out),
            Err(expected),
            "{packet:?}"
        );
        assert!(out.is_empty());
    }
}

#[test]
fn a_v5_password_without_user_name_is_fine() {
    let packet = Packet::Connect(Box::new(Connect {
        protocol_version: V5,
        clean_start: true,
        keep_alive: 10,
        client_id: "c".into(),
        will: None,
        username: None,
        password: Some(b"token".to_vec()),
        properties: Properties::default(),
    }));
    assert_round_trip(&packet, V5);
}

#[test]
fn v4_reason_code_helpers_map_to_return_codes() {
    assert_eq!(ReasonCode::SUCCESS.to_v4_connack(), ReasonCode(0));
    assert_eq!(
        ReasonCode::UNSUPPORTED_PROTOCOL_VERSION.to_v4_connack(),
        ReasonCode(1)
    );
    assert_eq!(
        ReasonCode::CLIENT_IDENTIFIER_NOT_VALID.to_v4_connack(),
        ReasonCode(2)
    );
    assert_eq!(ReasonCode::SERVER_BUSY.to_v4_connack(), ReasonCode(3));
    assert_eq!(
        ReasonCode::BAD_USER_NAME_OR_PASSWORD.to_v4_connack(),
        ReasonCode(4)
    );
    assert_eq!(ReasonCode::NOT_AUTHORIZED.to_v4_connack(), ReasonCode(5));
    assert_eq!(ReasonCode::GRANTED_QOS_2.to_v4_suback(), ReasonCode(2));
    assert_eq!(ReasonCode::QUOTA_EXCEEDED.to_v4_suback(), ReasonCode(0x80));
    assert!(ReasonCode::UNSPECIFIED_ERROR.is_error());
    assert!(!ReasonCode::NO_MATCHING_SUBSCRIBERS.is_error());
}
