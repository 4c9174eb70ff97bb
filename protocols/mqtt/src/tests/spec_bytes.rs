//! Hand-written packets following the layouts in the MQTT 3.1.1 and 5.0 specifications,
//! decoded byte for byte and re-encoded to the same bytes.

use super::*;

/// Decodes `bytes`, compares with `expected` and checks that encoding gives `bytes` back.
fn assert_exact(bytes: &[u8], version: ProtocolVersion, expected: Packet) {
    assert_eq!(decode(bytes, version), Ok(expected.clone()));
    assert_eq!(encode(&expected, version), bytes);
}

#[test]
fn connect_from_a_typical_3_1_1_client() {
    // Section 3.1: protocol name, level 4, flags (clean session), keep alive 60, client id.
    let bytes = [
        0x10, 0x14, // CONNECT, remaining length 20
        0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name
        0x04, // level 4
        0x02, // clean session
        0x00, 0x3C, // keep alive 60
        0x00, 0x08, b'c', b'l', b'i', b'e', b'n', b't', b'-', b'1',
    ];
    assert_exact(
        &bytes,
        V3,
        Packet::Connect(Box::new(Connect {
            protocol_version: V4,
            clean_start: true,
            keep_alive: 60,
            client_id: "client-1".into(),
            will: None,
            username: None,
            password: None,
            properties: Properties::default(),
        })),
    );
}

#[test]
fn connect_3_1_1_with_will_user_name_and_password() {
    let bytes = [
        0x10, 0x25, // remaining length 37
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, //
        0xEE, // user name, password, will retain, will QoS 1, will, clean session
        0x00, 0x0A, // keep alive 10
        0x00, 0x01, b'c', // client id
        0x00, 0x05, b'w', b'i', b'l', b'l', b's', // will topic
        0x00, 0x03, b'b', b'y', b'e', // will payload
        0x00, 0x05, b'a', b'l', b'i', b'c', b'e', // user name
        0x00, 0x03, 0x01, 0x02, 0x03, // password
    ];
    assert_exact(
        &bytes,
        V4,
        Packet::Connect(Box::new(Connect {
            protocol_version: V4,
            clean_start: true,
            keep_alive: 10,
            client_id: "c".into(),
            will: Some(Will {
                topic: "wills".into(),
                payload: b"bye".to_vec(),
                qos: QoS::AtLeastOnce,
                retain: true,
                properties: Properties::default(),
            }),
            username: Some("alice".into()),
            password: Some(vec![1, 2, 3]),
            properties: Properties::default(),
        })),
    );
}

#[test]
fn connect_mqtt_3_1_uses_mqisdp_level_3() {
    let bytes = [
        0x10, 0x0F, 0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', 0x03, 0x02, 0x00, 0x0A, 0x00,
        0x01, b'c',
    ];
    let packet = decode(&bytes, V4).unwrap();
    let Packet::Connect(c) = &packet else {
        panic!("{packet:?}")
    };
    assert_eq!(c.protocol_version, V3);
    assert_eq!(encode(&packet, V4), bytes);
}

#[test]
fn connect_mqtt_5_with_properties_and_will_properties() {
    let bytes = [
        0x10, 0x28, // remaining length 40
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, //
        0x06, // will, clean start
        0x00, 0x1E, // keep alive 30
        0x08, // property length 8
        0x11, 0x00, 0x00, 0x0E, 0x10, // session expiry 3600
        0x21, 0x00, 0x0A, // receive maximum 10
        0x00, 0x02, b'i', b'd', // client id
        0x07, // will property length 7
        0x01, 0x01, // payload is UTF-8
        0x18, 0x00, 0x00, 0x00, 0x05, // will delay 5
        0x00, 0x03, b'a', b'/', b'b', // will topic
        0x00, 0x02, b'g', b'o', // will payload
    ];
    assert_exact(
        &bytes,
        V4,
        Packet::Connect(Box::new(Connect {
            protocol_version: V5,
            clean_start: true,
            keep_alive: 30,
            client_id: "id".into(),
            will: Some(Will {
                topic: "a/b".into(),
                payload: b"go".to_vec(),
                qos: QoS::AtMostOnce,
                retain: false,
                properties: Properties {
                    payload_format_indicator: Some(true),
                    will_delay_interval: Some(5),
                    ..Properties::default()
                },
            }),
            username: None,
            password: None,
            properties: Properties {
                session_expiry_interval: Some(3600),
                receive_maximum: Some(10),
                ..Properties::default()
            },
        })),
    );
}

#[test]
fn connack_3_1_1_and_5_with_properties() {
    assert_exact(
        &[0x20, 0x02, 0x01, 0x00],
        V4,
        Packet::ConnAck(ConnAck {
            session_present: true,
            reason_code: ReasonCode::SUCCESS,
            properties: Properties::default(),
        }),
    );
    assert_exact(
        &[0x20, 0x02, 0x00, 0x05],
        V4,
        Packet::ConnAck(ConnAck {
            session_present: false,
            reason_code: ReasonCode(5),
            properties: Properties::default(),
        }),
    );
    let bytes = [
        0x20, 0x16, // remaining length 22
        0x00, 0x00, // no session, success
        0x13, // property length 19
        0x12, 0x00, 0x03, b'a', b'b', b'c', // assigned client identifier
        0x1F, 0x00, 0x02, b'o', b'k', // reason string
        0x21, 0x00, 0x0A, // receive maximum 10
        0x22, 0x00, 0x05, // topic alias maximum 5
        0x24, 0x01, // maximum QoS 1
    ];
    assert_exact(
        &bytes,
        V5,
        Packet::ConnAck(ConnAck {
            session_present: false,
            reason_code: ReasonCode::SUCCESS,
            properties: Properties {
                assigned_client_identifier: Some("abc".into()),
                reason_string: Some("ok".into()),
                receive_maximum: Some(10),
                topic_alias_maximum: Some(5),
                maximum_qos: Some(QoS::AtLeastOnce),
                ..Properties::default()
            },
        }),
    );
}

#[test]
fn publish_qos_1_with_packet_id() {
    let publish = |properties| {
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "a/b".into(),
            packet_id: Some(pid(10)),
            properties,
            payload: b"hi".to_vec(),
        })
    };
    let v4 = [
        0x32, 0x09, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0A, b'h', b'i',
    ];
    assert_exact(&v4, V4, publish(Properties::default()));
    let v5 = [
        0x32, 0x0A, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0A, 0x00, b'h', b'i',
    ];
    assert_exact(&v5, V5, publish(Properties::default()));
    // Retained QoS 0 has no packet identifier; DUP and QoS 2 set the flags.
    assert_exact(
        &[0x31, 0x04, 0x00, 0x01, b't', b'!'],
        V4,
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: true,
            topic: "t".into(),
            packet_id: None,
            properties: Properties::default(),
            payload: b"!".to_vec(),
        }),
    );
    assert_exact(
        &[0x3C, 0x05, 0x00, 0x01, b't', 0x12, 0x34],
        V4,
        Packet::Publish(Publish {
            dup: true,
            qos: QoS::ExactlyOnce,
            retain: false,
            topic: "t".into(),
            packet_id: Some(pid(0x1234)),
            properties: Properties::default(),
            payload: vec![],
        }),
    );
}

#[test]
fn publish_acknowledgements_in_both_versions() {
    for (first, make) in [
        (0x40, Packet::PubAck as fn(PubResponse) -> Packet),
        (0x50, Packet::PubRec),
        (0x62, Packet::PubRel),
        (0x70, Packet::PubComp),
    ] {
        let short = [first, 0x02, 0x00, 0x07];
        assert_exact(&short, V4, make(PubResponse::new(pid(7))));
        assert_exact(&short, V5, make(PubResponse::new(pid(7))));
    }
    assert_exact(
        &[0x40, 0x03, 0x00, 0x01, 0x10],
        V5,
        Packet::PubAck(PubResponse {
            packet_id: pid(1),
            reason_code: ReasonCode::NO_MATCHING_SUBSCRIBERS,
            properties: Properties::default(),
        }),
    );
    assert_exact(
        &[0x70, 0x08, 0x00, 0x01, 0x92, 0x04, 0x1F, 0x00, 0x01, b'?'],
        V5,
        Packet::PubComp(PubResponse {
            packet_id: pid(1),
            reason_code: ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
            properties: Properties {
                reason_string: Some("?".into()),
                ..Properties::default()
            },
        }),
    );
}

#[test]
fn subscribe_and_suback() {
    assert_exact(
        &[0x82, 0x08, 0x00, 0x01, 0x00, 0x03, b'a', b'/', b'#', 0x01],
        V4,
        Packet::Subscribe(Subscribe {
            packet_id: pid(1),
            properties: Properties::default(),
            subscriptions: vec![Subscription {
                filter: "a/#".into(),
                options: SubscriptionOptions::qos(QoS::AtLeastOnce),
            }],
        }),
    );
    // MQTT 5: subscription identifier 5; options QoS 1, no local, retain as published,
    // retain handling 2.
    assert_exact(
        &[
            0x82, 0x09, 0x00, 0x02, 0x02, 0x0B, 0x05, 0x00, 0x01, b'x', 0x2D,
        ],
        V5,
        Packet::Subscribe(Subscribe {
            packet_id: pid(2),
            properties: Properties {
                subscription_identifiers: vec![5],
                ..Properties::default()
            },
            subscriptions: vec![Subscription {
                filter: "x".into(),
                options: SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: RetainHandling::DoNotSend,
                },
            }],
        }),
    );
    assert_exact(
        &[0x90, 0x04, 0x00, 0x01, 0x01, 0x80],
        V4,
        Packet::SubAck(SubAck {
            packet_id: pid(1),
            properties: Properties::default(),
            reason_codes: vec![ReasonCode::GRANTED_QOS_1, ReasonCode::UNSPECIFIED_ERROR],
        }),
    );
    assert_exact(
        &[0x90, 0x04, 0x00, 0x01, 0x00, 0xA2],
        V5,
        Packet::SubAck(SubAck {
            packet_id: pid(1),
            properties: Properties::default(),
            reason_codes: vec![ReasonCode::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED],
        }),
    );
}

#[test]
fn unsubscribe_and_unsuback() {
    assert_exact(
        &[0xA2, 0x07, 0x00, 0x03, 0x00, 0x03, b'a', b'/', b'+'],
        V4,
        Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(3),
            properties: Properties::default(),
            filters: vec!["a/+".into()],
        }),
    );
    assert_exact(
        &[0xB0, 0x02, 0x00, 0x03],
        V4,
        Packet::UnsubAck(UnsubAck {
            packet_id: pid(3),
            properties: Properties::default(),
            reason_codes: vec![],
        }),
    );
    assert_exact(
        &[0xB0, 0x05, 0x00, 0x03, 0x00, 0x00, 0x11],
        V5,
        Packet::UnsubAck(UnsubAck {
            packet_id: pid(3),
            properties: Properties::default(),
            reason_codes: vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED],
        }),
    );
}

#[test]
fn ping_disconnect_and_auth() {
    assert_exact(&[0xC0, 0x00], V4, Packet::PingReq);
    assert_exact(&[0xD0, 0x00], V5, Packet::PingResp);
    assert_exact(
        &[0xE0, 0x00],
        V4,
        Packet::Disconnect(Disconnect::new(ReasonCode::SUCCESS)),
    );
    assert_exact(
        &[0xE0, 0x00],
        V5,
        Packet::Disconnect(Disconnect::new(ReasonCode::SUCCESS)),
    );
    assert_exact(
        &[0xE0, 0x01, 0x8B],
        V5,
        Packet::Disconnect(Disconnect::new(ReasonCode::SERVER_SHUTTING_DOWN)),
    );
    assert_exact(
        &[0xF0, 0x00],
        V5,
        Packet::Auth(Auth {
            reason_code: ReasonCode::SUCCESS,
            properties: Properties::default(),
        }),
    );
    assert_exact(
        &[
            0xF0, 0x0A, 0x18, 0x08, 0x15, 0x00, 0x02, b'g', b's', 0x16, 0x00, 0x00,
        ],
        V5,
        Packet::Auth(Auth {
            reason_code: ReasonCode::CONTINUE_AUTHENTICATION,
            properties: Properties {
                authentication_method: Some("gs".into()),
                authentication_data: Some(vec![]),
                ..Properties::default()
            },
        }),
    );
}

/// MQTT 3.1 sets DUP on a PUBREL sent again (Mosquitto's `03-publish-c2b-disconnect-qos2`
/// sends 0x6A); 3.1.1 and 5 fix PUBREL's flags at 0b0010.
#[test]
fn a_pubrel_with_dup_is_mqtt_3_1_only() {
    let resent = [0x6A, 0x02, 0x00, 0x07];
    assert_eq!(
        DECODER.decode(&resent, V3),
        Ok(Some((Packet::PubRel(PubResponse::new(pid(7))), 4)))
    );
    for version in [V4, V5] {
        assert!(DECODER.decode(&resent, version).is_err(), "{version:?}");
    }
}
