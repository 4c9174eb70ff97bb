//! Property tests: random valid packets round-trip in every version, and no input, random or
//! mutated from a valid packet, panics the decoder; whatever it accepts re-encodes to a packet
//! that decodes to the same value.

use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;

use super::*;
use crate::properties::{Context, allowed};

fn text() -> impl Strategy<Value = String> {
    "[^\u{0}]{0,8}"
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..16)
}

fn topic_name() -> impl Strategy<Value = String> {
    "[^\u{0}+#]{1,12}"
}

fn topic_filter() -> impl Strategy<Value = String> {
    let level = prop_oneof![Just("+".to_owned()), "[a-z$ü ]{0,4}"];
    (of("[a-z]{1,4}"), vec(level, 1..4), any::<bool>()).prop_map(|(share, levels, multi)| {
        let mut filter = levels.join("/");
        if multi {
            filter.push_str("/#");
        }
        if filter.is_empty() {
            // One empty level is the empty filter, which is invalid.
            filter.push('/');
        }
        match share {
            Some(name) => format!("$share/{name}/{filter}"),
            None => filter,
        }
    })
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn packet_id() -> impl Strategy<Value = PacketId> {
    (1..=u16::MAX).prop_map(pid)
}

/// Any valid value for every property; [`restrict`] then keeps what a context allows.
fn properties() -> impl Strategy<Value = Properties> {
    let a = (
        of(any::<bool>()),
        of(any::<u32>()),
        of(text()),
        of(text()),
        of(bytes()),
        vec(1..=VARIABLE_BYTE_INTEGER_MAX, 0..3),
        of(any::<u32>()),
        of(text()),
        of(any::<u16>()),
        of(text()),
        of(bytes()),
        of(any::<bool>()),
    );
    let b = (
        of(any::<u32>()),
        of(any::<bool>()),
        of(text()),
        of(text()),
        of(text()),
        of(1..=u16::MAX),
        of(any::<u16>()),
        of(1..=u16::MAX),
        of(prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce)]),
        of(any::<bool>()),
        vec((text(), text()), 0..3),
        of(1..=u32::MAX),
    );
    let c = (of(any::<bool>()), of(any::<bool>()), of(any::<bool>()));
    (a, b, c).prop_map(|(a, b, c)| Properties {
        payload_format_indicator: a.0,
        message_expiry_interval: a.1,
        content_type: a.2,
        response_topic: a.3,
        correlation_data: a.4,
        subscription_identifiers: a.5,
        session_expiry_interval: a.6,
        assigned_client_identifier: a.7,
        server_keep_alive: a.8,
        authentication_method: a.9,
        authentication_data: a.10,
        request_problem_information: a.11,
        will_delay_interval: b.0,
        request_response_information: b.1,
        response_information: b.2,
        server_reference: b.3,
        reason_string: b.4,
        receive_maximum: b.5,
        topic_alias_maximum: b.6,
        topic_alias: b.7,
        maximum_qos: b.8,
        retain_available: b.9,
        user_properties: b.10,
        maximum_packet_size: b.11,
        wildcard_subscription_available: c.0,
        subscription_identifier_available: c.1,
        shared_subscription_available: c.2,
    })
}

/// Clears every property `ctx` may not carry (all of them before MQTT 5).
fn restrict(mut p: Properties, ctx: Context, v5: bool) -> Properties {
    use crate::properties::id::*;
    if !v5 {
        return Properties::default();
    }
    fn keep<T>(slot: &mut Option<T>, id: u8, ctx: Context) {
        if !allowed(id, ctx) {
            *slot = None;
        }
    }
    keep(
        &mut p.payload_format_indicator,
        PAYLOAD_FORMAT_INDICATOR,
        ctx,
    );
    keep(&mut p.message_expiry_interval, MESSAGE_EXPIRY_INTERVAL, ctx);
    keep(&mut p.content_type, CONTENT_TYPE, ctx);
    keep(&mut p.response_topic, RESPONSE_TOPIC, ctx);
    keep(&mut p.correlation_data, CORRELATION_DATA, ctx);
    if !allowed(SUBSCRIPTION_IDENTIFIER, ctx) {
        p.subscription_identifiers.clear();
    }
    if ctx == Context::Packet(PacketType::Subscribe) {
        p.subscription_identifiers.truncate(1);
    }
    keep(&mut p.session_expiry_interval, SESSION_EXPIRY_INTERVAL, ctx);
    keep(
        &mut p.assigned_client_identifier,
        ASSIGNED_CLIENT_IDENTIFIER,
        ctx,
    );
    keep(&mut p.server_keep_alive, SERVER_KEEP_ALIVE, ctx);
    keep(&mut p.authentication_method, AUTHENTICATION_METHOD, ctx);
    keep(&mut p.authentication_data, AUTHENTICATION_DATA, ctx);
    keep(
        &mut p.request_problem_information,
        REQUEST_PROBLEM_INFORMATION,
        ctx,
    );
    keep(&mut p.will_delay_interval, WILL_DELAY_INTERVAL, ctx);
    keep(
        &mut p.request_response_information,
        REQUEST_RESPONSE_INFORMATION,
        ctx,
    );
    keep(&mut p.response_information, RESPONSE_INFORMATION, ctx);
    keep(&mut p.server_reference, SERVER_REFERENCE, ctx);
    keep(&mut p.reason_string, REASON_STRING, ctx);
    keep(&mut p.receive_maximum, RECEIVE_MAXIMUM, ctx);
    keep(&mut p.topic_alias_maximum, TOPIC_ALIAS_MAXIMUM, ctx);
    keep(&mut p.topic_alias, TOPIC_ALIAS, ctx);
    keep(&mut p.maximum_qos, MAXIMUM_QOS, ctx);
    keep(&mut p.retain_available, RETAIN_AVAILABLE, ctx);
    if !allowed(USER_PROPERTY, ctx) {
        p.user_properties.clear();
    }
    keep(&mut p.maximum_packet_size, MAXIMUM_PACKET_SIZE, ctx);
    keep(
        &mut p.wildcard_subscription_available,
        WILDCARD_SUBSCRIPTION_AVAILABLE,
        ctx,
    );
    keep(
        &mut p.subscription_identifier_available,
        SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        ctx,
    );
    keep(
        &mut p.shared_subscription_available,
        SHARED_SUBSCRIPTION_AVAILABLE,
        ctx,
    );
    p
}

fn props_for(t: PacketType, v5: bool) -> impl Strategy<Value = Properties> {
    properties().prop_map(move |p| restrict(p, Context::Packet(t), v5))
}

/// A reason code valid for `t` on this version (only success where 3.1.x has none).
fn reason_code(t: PacketType, version: ProtocolVersion) -> impl Strategy<Value = ReasonCode> {
    let v5 = version.is_v5();
    let has_codes = v5 || matches!(t, PacketType::ConnAck | PacketType::SubAck);
    let codes: Vec<ReasonCode> = (0..=255u8)
        .map(ReasonCode)
        .filter(|&c| {
            if has_codes {
                crate::reason::allowed(t, c, v5)
            } else {
                c == ReasonCode::SUCCESS
            }
        })
        .collect();
    proptest::sample::select(codes)
}

fn pub_response(t: PacketType, version: ProtocolVersion) -> impl Strategy<Value = PubResponse> {
    (
        packet_id(),
        reason_code(t, version),
        props_for(t, version.is_v5()),
    )
        .prop_map(|(packet_id, reason_code, properties)| PubResponse {
            packet_id,
            reason_code,
            properties,
        })
}

fn connect(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let v5 = version.is_v5();
    let will = (topic_name(), bytes(), qos(), any::<bool>(), properties()).prop_map(
        move |(topic, payload, qos, retain, p)| Will {
            topic,
            payload,
            qos,
            retain,
            properties: restrict(p, Context::Will, v5),
        },
    );
    (
        any::<bool>(),
        any::<u16>(),
        text(),
        of(will),
        of(text()),
        of(bytes()),
        props_for(PacketType::Connect, v5),
    )
        .prop_map(
            move |(
                clean_start,
                keep_alive,
                client_id,
                will,
                mut username,
                password,
                properties,
            )| {
                if !v5 && password.is_some() && username.is_none() {
                    username = Some(String::new());
                }
                Packet::Connect(Box::new(Connect {
                    protocol_version: version,
                    clean_start,
                    keep_alive,
                    client_id,
                    will,
                    username,
                    password,
                    properties,
                }))
            },
        )
}

fn subscription(v5: bool) -> impl Strategy<Value = Subscription> {
    let retain_handling = prop_oneof![
        Just(RetainHandling::SendAtSubscribe),
        Just(RetainHandling::SendAtSubscribeIfNew),
        Just(RetainHandling::DoNotSend)
    ];
    (
        topic_filter(),
        qos(),
        any::<bool>(),
        any::<bool>(),
        retain_handling,
    )
        .prop_map(
            move |(filter, qos, no_local, retain_as_published, retain_handling)| {
                let options = if v5 {
                    SubscriptionOptions {
                        qos,
                        // No Local is a protocol error on shared subscriptions.
                        no_local: no_local && !filter.starts_with("$share/"),
                        retain_as_published,
                        retain_handling,
                    }
                } else {
                    SubscriptionOptions::qos(qos)
                };
                Subscription { filter, options }
            },
        )
}

/// Any valid packet for `version`.
fn packet(version: ProtocolVersion) -> BoxedStrategy<Packet> {
    use PacketType as T;
    let v5 = version.is_v5();
    let publish = (
        any::<bool>(),
        qos(),
        any::<bool>(),
        topic_name(),
        packet_id(),
        props_for(T::Publish, v5),
        vec(any::<u8>(), 0..64),
    )
        .prop_map(|(dup, qos, retain, topic, id, properties, payload)| {
            let at_most_once = qos == QoS::AtMostOnce;
            Packet::Publish(Publish {
                dup: dup && !at_most_once,
                qos,
                retain,
                topic,
                packet_id: (!at_most_once).then_some(id),
                properties,
                payload,
            })
        });
    let connack = (
        any::<bool>(),
        reason_code(T::ConnAck, version),
        props_for(T::ConnAck, v5),
    )
        .prop_map(|(session_present, reason_code, properties)| {
            Packet::ConnAck(ConnAck {
                session_present: session_present && reason_code == ReasonCode::SUCCESS,
                reason_code,
                properties,
            })
        });
    let subscribe = (
        packet_id(),
        props_for(T::Subscribe, v5),
        vec(subscription(v5), 1..4),
    )
        .prop_map(|(packet_id, properties, subscriptions)| {
            Packet::Subscribe(Subscribe {
                packet_id,
                properties,
                subscriptions,
            })
        });
    let suback = (
        packet_id(),
        props_for(T::SubAck, v5),
        vec(reason_code(T::SubAck, version), 1..4),
    )
        .prop_map(|(packet_id, properties, reason_codes)| {
            Packet::SubAck(SubAck {
                packet_id,
                properties,
                reason_codes,
            })
        });
    let unsubscribe = (
        packet_id(),
        props_for(T::Unsubscribe, v5),
        vec(topic_filter(), 1..4),
    )
        .prop_map(|(packet_id, properties, filters)| {
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                properties,
                filters,
            })
        });
    let unsuback = (
        packet_id(),
        props_for(T::UnsubAck, v5),
        vec(reason_code(T::UnsubAck, version), 1..4),
    )
        .prop_map(move |(packet_id, properties, codes)| {
            Packet::UnsubAck(UnsubAck {
                packet_id,
                properties,
                reason_codes: if v5 { codes } else { vec![] },
            })
        });
    let disconnect = (
        reason_code(T::Disconnect, version),
        props_for(T::Disconnect, v5),
    )
        .prop_map(|(reason_code, properties)| {
            Packet::Disconnect(Disconnect {
                reason_code,
                properties,
            })
        });
    let mut strategies = vec![
        connect(version).boxed(),
        connack.boxed(),
        publish.boxed(),
        pub_response(T::PubAck, version)
            .prop_map(Packet::PubAck)
            .boxed(),
        pub_response(T::PubRec, version)
            .prop_map(Packet::PubRec)
            .boxed(),
        pub_response(T::PubRel, version)
            .prop_map(Packet::PubRel)
            .boxed(),
        pub_response(T::PubComp, version)
            .prop_map(Packet::PubComp)
            .boxed(),
        subscribe.boxed(),
        suback.boxed(),
        unsubscribe.boxed(),
        unsuback.boxed(),
        Just(Packet::PingReq).boxed(),
        Just(Packet::PingResp).boxed(),
        disconnect.boxed(),
    ];
    if v5 {
        let auth = (reason_code(T::Auth, version), props_for(T::Auth, v5)).prop_map(
            |(reason_code, properties)| {
                Packet::Auth(Auth {
                    reason_code,
                    properties,
                })
            },
        );
        strategies.push(auth.boxed());
    }
    proptest::strategy::Union::new(strategies).boxed()
}

fn version() -> impl Strategy<Value = ProtocolVersion> {
    proptest::sample::select(VERSIONS.to_vec())
}

/// Decodes `bytes` with a small limit; must not panic. When a packet is accepted, it must
/// re-encode to a canonical form that decodes to the same value.
fn decode_never_panics(bytes: &[u8], version: ProtocolVersion) {
    let decoder = PacketDecoder::new(4096);
    match decoder.decode(bytes, version) {
        Ok(Some((packet, used))) => {
            assert!(used <= bytes.len());
            // The canonical form may differ from the input (a minimal remaining length, the
            // short form of an acknowledgement, properties in identifier order) but is a
            // fixed point.
            let encoded = encode(&packet, version);
            assert_eq!(decode(&encoded, version), Ok(packet));
        }
        Ok(None) => {
            // Only a prefix of a possible packet: at most the declared length is missing.
            if let Ok(Some(len)) = decoder.packet_len(bytes, version) {
                assert!(len > bytes.len());
            }
        }
        Err(e) => {
            // Every error maps to a reason code the server can send.
            assert!(e.reason_code().is_error());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_valid_packets_round_trip(
        (version, packet) in version().prop_flat_map(|v| (Just(v), packet(v)))
    ) {
        let bytes = assert_round_trip(&packet, version);
        // Followed by another packet, the first still decodes alone.
        let mut stream = bytes.clone();
        Packet::PingReq.encode(version, &mut stream).unwrap();
        let (first, used) = DECODER.decode(&stream, version).unwrap().unwrap();
        prop_assert_eq!((first, used), (packet, bytes.len()));
    }

    #[test]
    fn random_bytes_never_panic_the_decoder(
        bytes in vec(any::<u8>(), 0..256),
        version in version(),
    ) {
        decode_never_panics(&bytes, version);
    }

    /// Random bytes rarely get past the fixed header; a valid packet with a few bytes
    /// changed reaches every field decoder.
    #[test]
    fn mutated_valid_packets_never_panic_the_decoder(
        (version, packet) in version().prop_flat_map(|v| (Just(v), packet(v))),
        edits in vec((any::<proptest::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<proptest::sample::Index>(),
    ) {
        let mut bytes = encode(&packet, version);
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        decode_never_panics(&bytes, version);
        decode_never_panics(&bytes[..cut.index(bytes.len() + 1)], version);
    }
}
