//! Tests of the whole codec: byte-exact packets from the specification's layouts, round trips,
//! partial input, hostile input and property tests.

mod alloc;
mod hostile;
mod prop;
mod round_trip;
mod session;
mod spec_bytes;

use crate::*;

const V3: ProtocolVersion = ProtocolVersion::V3_1;
const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;
const VERSIONS: [ProtocolVersion; 3] = [V3, V4, V5];

/// The limit used by most tests.
const DECODER: PacketDecoder = PacketDecoder::new(64 * 1024);

fn pid(n: u16) -> PacketId {
    PacketId::new(n).expect("test packet ids are non-zero")
}

/// Decodes `bytes`, which must hold exactly one packet.
fn decode(bytes: &[u8], version: ProtocolVersion) -> Result<Packet, DecodeError> {
    let (packet, used) = DECODER
        .decode(bytes, version)?
        .expect("test packets are complete");
    assert_eq!(used, bytes.len(), "consumed bytes");
    Ok(packet)
}

/// Decodes a packet that is expected to be refused; a complete packet is required.
fn decode_err(bytes: &[u8], version: ProtocolVersion) -> DecodeError {
    match DECODER.decode(bytes, version) {
        Err(e) => e,
        Ok(other) => panic!("expected an error for {bytes:02x?}, got {other:?}"),
    }
}

fn encode(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut out = Vec::new();
    let n = packet
        .encode(version, &mut out)
        .expect("test packets encode");
    assert_eq!(n, out.len());
    assert_eq!(packet.encoded_len(version), Ok(n));
    out
}

/// Checks that `packet` survives encode then decode, that re-encoding the decoded packet
/// gives the same bytes, and that every prefix of the bytes asks for more.
fn assert_round_trip(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let bytes = encode(packet, version);
    let decoded = decode(&bytes, version).unwrap_or_else(|e| panic!("{packet:?}: {e}"));
    assert_eq!(&decoded, packet, "decode(encode(p)) for {version:?}");
    assert_eq!(encode(&decoded, version), bytes, "canonical bytes");
    for cut in 0..bytes.len() {
        assert_eq!(
            DECODER.decode(&bytes[..cut], version),
            Ok(None),
            "prefix of {cut} bytes of {packet:?}"
        );
    }
    bytes
}

/// Properties using every property a packet of `ctx` may carry, so every property type
/// (byte, two and four byte integers, variable byte integer, string, string pair, binary)
/// is exercised.
fn rich_properties(packet_type: Option<PacketType>) -> Properties {
    use PacketType::*;
    let user_properties = vec![
        ("region".to_owned(), "eu".to_owned()),
        ("region".to_owned(), "us".to_owned()),
        ("".to_owned(), "ü€😀".to_owned()),
    ];
    match packet_type {
        // The will.
        None => Properties {
            payload_format_indicator: Some(true),
            message_expiry_interval: Some(3600),
            content_type: Some("text/plain".to_owned()),
            response_topic: Some("replies/1".to_owned()),
            correlation_data: Some(vec![0, 1, 2, 255]),
            will_delay_interval: Some(30),
            user_properties,
            ..Properties::default()
        },
        Some(Connect) => Properties {
            session_expiry_interval: Some(u32::MAX),
            authentication_method: Some("SCRAM-SHA-256".to_owned()),
            authentication_data: Some(b"client-first".to_vec()),
            request_problem_information: Some(false),
            request_response_information: Some(true),
            receive_maximum: Some(20),
            topic_alias_maximum: Some(10),
            maximum_packet_size: Some(1 << 20),
            user_properties,
            ..Properties::default()
        },
        Some(ConnAck) => Properties {
            session_expiry_interval: Some(0),
            assigned_client_identifier: Some("auto-123".to_owned()),
            server_keep_alive: Some(120),
            authentication_method: Some("SCRAM-SHA-256".to_owned()),
            authentication_data: Some(vec![]),
            response_information: Some("resp/".to_owned()),
            server_reference: Some("other.example:1883".to_owned()),
            reason_string: Some("welcome".to_owned()),
            receive_maximum: Some(u16::MAX),
            topic_alias_maximum: Some(0),
            maximum_qos: Some(QoS::AtLeastOnce),
            retain_available: Some(false),
            maximum_packet_size: Some(u32::MAX),
            wildcard_subscription_available: Some(true),
            subscription_identifier_available: Some(false),
            shared_subscription_available: Some(true),
            user_properties,
            ..Properties::default()
        },
        Some(Publish) => Properties {
            payload_format_indicator: Some(false),
            message_expiry_interval: Some(0),
            content_type: Some("application/json".to_owned()),
            response_topic: Some("r".to_owned()),
            correlation_data: Some(vec![9; 300]),
            // One, two, three and four byte variable byte integers.
            subscription_identifiers: vec![1, 128, 16_384, VARIABLE_BYTE_INTEGER_MAX],
            topic_alias: Some(7),
            user_properties,
            ..Properties::default()
        },
        Some(Subscribe) => Properties {
            subscription_identifiers: vec![2_097_152],
            user_properties,
            ..Properties::default()
        },
        Some(Unsubscribe) => Properties {
            user_properties,
            ..Properties::default()
        },
        Some(Disconnect) => Properties {
            session_expiry_interval: Some(60),
            server_reference: Some("elsewhere".to_owned()),
            reason_string: Some("bye".to_owned()),
            user_properties,
            ..Properties::default()
        },
        Some(Auth) => Properties {
            authentication_method: Some("KERBEROS".to_owned()),
            authentication_data: Some(vec![0xAA; 40]),
            reason_string: Some("continue".to_owned()),
            user_properties,
            ..Properties::default()
        },
        Some(_) => Properties {
            reason_string: Some("done".to_owned()),
            user_properties,
            ..Properties::default()
        },
    }
}

/// At least one packet of every type valid on `version`, richest where MQTT 5 allows.
fn samples(version: ProtocolVersion) -> Vec<Packet> {
    let v5 = version.is_v5();
    let props = |t: Option<PacketType>| {
        if v5 {
            rich_properties(t)
        } else {
            Properties::default()
        }
    };
    let code = |c: u8| {
        if v5 {
            ReasonCode(c)
        } else {
            ReasonCode::SUCCESS
        }
    };
    let mut packets = vec![
        Packet::Connect(Box::new(Connect {
            protocol_version: version,
            clean_start: true,
            keep_alive: 60,
            client_id: "sensor-17".to_owned(),
            will: None,
            username: None,
            password: None,
            properties: Properties::default(),
        })),
        Packet::Connect(Box::new(Connect {
            protocol_version: version,
            clean_start: false,
            keep_alive: 0,
            client_id: String::new(),
            will: Some(Will {
                topic: "devices/17/status".to_owned(),
                payload: b"offline".to_vec(),
                qos: QoS::ExactlyOnce,
                retain: true,
                properties: props(None),
            }),
            username: Some("alice".to_owned()),
            password: Some(vec![0, 159, 146, 150]),
            properties: props(Some(PacketType::Connect)),
        })),
        Packet::ConnAck(ConnAck {
            session_present: true,
            reason_code: ReasonCode::SUCCESS,
            properties: props(Some(PacketType::ConnAck)),
        }),
        Packet::ConnAck(ConnAck {
            session_present: false,
            reason_code: if v5 {
                ReasonCode::BAD_USER_NAME_OR_PASSWORD
            } else {
                ReasonCode(4)
            },
            properties: Properties::default(),
        }),
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: "a".to_owned(),
            packet_id: None,
            properties: Properties::default(),
            payload: vec![],
        }),
        Packet::Publish(Publish {
            dup: true,
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: "factory/line-2/temperature".to_owned(),
            packet_id: Some(pid(0xFFFF)),
            properties: props(Some(PacketType::Publish)),
            payload: vec![0x5A; 200],
        }),
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::ExactlyOnce,
            retain: false,
            topic: "$SYS/ü".to_owned(),
            packet_id: Some(pid(1)),
            properties: Properties::default(),
            payload: b"{\"t\":21.5}".to_vec(),
        }),
        Packet::PubAck(PubResponse::new(pid(1))),
        Packet::PubAck(PubResponse {
            packet_id: pid(2),
            reason_code: code(0x10),
            properties: Properties::default(),
        }),
        Packet::PubRec(PubResponse {
            packet_id: pid(3),
            reason_code: code(0x97),
            properties: props(Some(PacketType::PubRec)),
        }),
        Packet::PubRel(PubResponse {
            packet_id: pid(4),
            reason_code: ReasonCode::SUCCESS,
            properties: props(Some(PacketType::PubRel)),
        }),
        Packet::PubComp(PubResponse {
            packet_id: pid(5),
            reason_code: code(0x92),
            properties: props(Some(PacketType::PubComp)),
        }),
        Packet::Subscribe(Subscribe {
            packet_id: pid(6),
            properties: props(Some(PacketType::Subscribe)),
            subscriptions: vec![
                Subscription {
                    filter: "a/+/c".to_owned(),
                    options: SubscriptionOptions::qos(QoS::AtLeastOnce),
                },
                Subscription {
                    filter: "#".to_owned(),
                    options: SubscriptionOptions::qos(QoS::ExactlyOnce),
                },
                Subscription {
                    filter: "$share/workers/jobs/#".to_owned(),
                    options: SubscriptionOptions::qos(QoS::AtMostOnce),
                },
            ],
        }),
        Packet::SubAck(SubAck {
            packet_id: pid(6),
            properties: props(Some(PacketType::SubAck)),
            reason_codes: vec![
                ReasonCode::GRANTED_QOS_1,
                ReasonCode::GRANTED_QOS_2,
                ReasonCode::SUCCESS,
                ReasonCode::UNSPECIFIED_ERROR,
            ],
        }),
        Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(7),
            properties: props(Some(PacketType::Unsubscribe)),
            filters: vec!["a/+/c".to_owned(), "#".to_owned()],
        }),
        Packet::UnsubAck(UnsubAck {
            packet_id: pid(7),
            properties: props(Some(PacketType::UnsubAck)),
            reason_codes: if v5 {
                vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED]
            } else {
                vec![]
            },
        }),
        Packet::PingReq,
        Packet::PingResp,
        Packet::Disconnect(Disconnect::new(ReasonCode::SUCCESS)),
    ];
    if v5 {
        packets.extend([
            Packet::Subscribe(Subscribe {
                packet_id: pid(8),
                properties: Properties::default(),
                subscriptions: vec![Subscription {
                    filter: "x/y".to_owned(),
                    options: SubscriptionOptions {
                        qos: QoS::AtLeastOnce,
                        no_local: true,
                        retain_as_published: true,
                        retain_handling: RetainHandling::DoNotSend,
                    },
                }],
            }),
            Packet::Publish(Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: false,
                topic: String::new(),
                packet_id: Some(pid(9)),
                properties: Properties {
                    topic_alias: Some(3),
                    ..Properties::default()
                },
                payload: vec![1],
            }),
            Packet::Disconnect(Disconnect::new(ReasonCode::SESSION_TAKEN_OVER)),
            Packet::Disconnect(Disconnect {
                reason_code: ReasonCode::DISCONNECT_WITH_WILL,
                properties: rich_properties(Some(PacketType::Disconnect)),
            }),
            Packet::Auth(Auth {
                reason_code: ReasonCode::SUCCESS,
                properties: Properties::default(),
            }),
            Packet::Auth(Auth {
                reason_code: ReasonCode::CONTINUE_AUTHENTICATION,
                properties: Properties::default(),
            }),
            Packet::Auth(Auth {
                reason_code: ReasonCode::RE_AUTHENTICATE,
                properties: rich_properties(Some(PacketType::Auth)),
            }),
        ]);
    }
    packets
}
