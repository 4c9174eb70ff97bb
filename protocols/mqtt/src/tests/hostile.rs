//! Broken and hostile input: each case is refused with the error (and reason code) that says
//! what is wrong, never with a panic, never by waiting for or allocating what a length claims.

use super::*;

/// Asserts `bytes` is refused with `expected` and the reason code `code`.
fn refused(bytes: &[u8], version: ProtocolVersion, expected: DecodeError, code: ReasonCode) {
    let err = decode_err(bytes, version);
    assert_eq!(err, expected, "{bytes:02x?}");
    assert_eq!(err.reason_code(), code, "{err}");
}

const MALFORMED: ReasonCode = ReasonCode::MALFORMED_PACKET;
const PROTOCOL: ReasonCode = ReasonCode::PROTOCOL_ERROR;

#[test]
fn huge_remaining_length_is_too_large_from_the_first_five_bytes() {
    let small = PacketDecoder::new(1024);
    let header = [0x30, 0xFF, 0xFF, 0xFF, 0x7F]; // PUBLISH, 268,435,455 bytes to come
    let err = small.decode(&header, V4).unwrap_err();
    assert_eq!(
        err,
        DecodeError::PacketTooLarge {
            size: 268_435_460,
            max: 1024
        }
    );
    assert_eq!(err.reason_code(), ReasonCode::PACKET_TOO_LARGE);
    assert_eq!(small.packet_len(&header, V4), Err(err));
    // The limit counts the whole packet: 1024 bytes fit, 1025 do not.
    let fits = [0x30, 0xFD, 0x07]; // remaining length 1021, 3 bytes of header
    assert_eq!(small.decode(&fits, V4), Ok(None));
    assert_eq!(small.packet_len(&fits, V4), Ok(Some(1024)));
    assert_eq!(
        small.decode(&[0x30, 0xFE, 0x07], V4),
        Err(DecodeError::PacketTooLarge {
            size: 1025,
            max: 1024
        })
    );
}

#[test]
fn five_byte_remaining_length_is_malformed() {
    refused(
        &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
        V4,
        DecodeError::MalformedVariableByteInteger("remaining length"),
        MALFORMED,
    );
    // Known as soon as the fourth length byte carries a continuation bit.
    refused(
        &[0xC0, 0x80, 0x80, 0x80, 0x80],
        V5,
        DecodeError::MalformedVariableByteInteger("remaining length"),
        MALFORMED,
    );
}

#[test]
fn string_length_beyond_the_packet_is_malformed_without_allocating_it() {
    // A 10-byte PUBLISH whose topic claims 65,535 bytes: the reader compares the length with
    // the 6 bytes present and fails before any copy, so nothing near 64 KiB is allocated.
    let bytes = [0x30, 0x08, 0xFF, 0xFF, b'a', b'b', b'c', b'd', b'e', b'f'];
    refused(&bytes, V4, DecodeError::Truncated("topic name"), MALFORMED);
    // Same for binary data (will payload) and a user name in CONNECT.
    let connect = [
        0x10, 0x0F, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x80, 0x00, 0x00, 0x00, 0x00, 0xFF,
        0xFF, 0x00,
    ];
    refused(&connect, V4, DecodeError::Truncated("user name"), MALFORMED);
}

#[test]
fn property_length_beyond_the_packet_is_malformed() {
    // PUBLISH QoS 0 "a", property length 10 with 1 byte left.
    refused(
        &[0x30, 0x05, 0x00, 0x01, b'a', 0x0A, 0x01],
        V5,
        DecodeError::Truncated("property length"),
        MALFORMED,
    );
    // A property value running past the property length (but within the packet).
    refused(
        &[0x30, 0x08, 0x00, 0x01, b'a', 0x02, 0x02, 0x00, 0x00, 0x00],
        V5,
        DecodeError::Truncated("property"),
        MALFORMED,
    );
    // A five-byte property length.
    refused(
        &[0x30, 0x08, 0x00, 0x01, b'a', 0x80, 0x80, 0x80, 0x80, 0x01],
        V5,
        DecodeError::MalformedVariableByteInteger("property length"),
        MALFORMED,
    );
}

#[test]
fn duplicate_properties_are_a_protocol_error() {
    // PUBACK with two reason strings.
    refused(
        &[
            0x40, 0x0C, 0x00, 0x01, 0x80, 0x08, 0x1F, 0x00, 0x01, b'a', 0x1F, 0x00, 0x01, b'b',
        ],
        V5,
        DecodeError::DuplicateProperty(0x1F),
        PROTOCOL,
    );
    // CONNECT with two session expiry intervals.
    let mut connect = vec![
        0x10, 0x17, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x02, 0x00, 0x00, 0x0A,
    ];
    connect.extend([0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2, 0x00, 0x00]);
    refused(&connect, V5, DecodeError::DuplicateProperty(0x11), PROTOCOL);
    // Two subscription identifiers in SUBSCRIBE.
    refused(
        &[
            0x82, 0x0A, 0x00, 0x01, 0x04, 0x0B, 0x01, 0x0B, 0x02, 0x00, 0x01, b'x', 0x00,
        ],
        V5,
        DecodeError::DuplicateProperty(0x0B),
        PROTOCOL,
    );
}

#[test]
fn user_properties_and_publish_subscription_identifiers_may_repeat() {
    let bytes = [
        0x30, 0x15, 0x00, 0x01, b't', // topic
        0x10, // property length 16
        0x0B, 0x01, 0x0B, 0x02, // two subscription identifiers
        0x26, 0x00, 0x01, b'k', 0x00, 0x00, // k=""
        0x26, 0x00, 0x01, b'k', 0x00, 0x00, // k="" again
        b'p',
    ];
    let packet = decode(&bytes, V5).unwrap();
    let Packet::Publish(p) = &packet else {
        panic!("{packet:?}")
    };
    assert_eq!(p.properties.subscription_identifiers, [1, 2]);
    assert_eq!(p.properties.user_properties.len(), 2);
    assert_eq!(p.payload, b"p");
    assert_eq!(encode(&packet, V5), bytes);
}

#[test]
fn properties_not_allowed_in_the_packet_are_refused() {
    // Session expiry interval in PUBLISH.
    refused(
        &[
            0x30, 0x0A, 0x00, 0x01, b'a', 0x05, 0x11, 0x00, 0x00, 0x00, 0x01, b'x',
        ],
        V5,
        DecodeError::PropertyNotAllowed {
            id: 0x11,
            context: "PUBLISH",
        },
        MALFORMED,
    );
    // Topic alias in PUBACK.
    refused(
        &[0x40, 0x07, 0x00, 0x01, 0x00, 0x03, 0x23, 0x00, 0x01],
        V5,
        DecodeError::PropertyNotAllowed {
            id: 0x23,
            context: "PUBACK",
        },
        MALFORMED,
    );
    // Will delay interval in CONNECT's own properties, session expiry in the will's.
    let mut connect = vec![
        0x10, 0x12, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x02, 0x00, 0x00,
    ];
    connect.extend([0x05, 0x18, 0, 0, 0, 1, 0x00, 0x00]);
    refused(
        &connect,
        V5,
        DecodeError::PropertyNotAllowed {
            id: 0x18,
            context: "CONNECT",
        },
        MALFORMED,
    );
    let mut will = vec![
        0x10, 0x18, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    will.extend([0x05, 0x11, 0, 0, 0, 1, 0x00, 0x01, b't', 0x00, 0x00]);
    refused(
        &will,
        V5,
        DecodeError::PropertyNotAllowed {
            id: 0x11,
            context: "will properties",
        },
        MALFORMED,
    );
    // An identifier MQTT 5 does not define.
    refused(
        &[0x40, 0x06, 0x00, 0x01, 0x00, 0x02, 0x05, 0x00],
        V5,
        DecodeError::UnknownProperty(0x05),
        MALFORMED,
    );
}

#[test]
fn property_values_out_of_range_are_a_protocol_error() {
    let connect = |prop: &[u8]| {
        let mut bytes = vec![
            0x10, 0, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x02, 0x00, 0x00,
        ];
        bytes.push(prop.len() as u8);
        bytes.extend(prop);
        bytes.extend([0x00, 0x00]);
        bytes[1] = (bytes.len() - 2) as u8;
        bytes
    };
    for (prop, id, value) in [
        (&[0x21, 0x00, 0x00][..], 0x21, 0), // receive maximum 0
        (&[0x27, 0, 0, 0, 0][..], 0x27, 0), // maximum packet size 0
        (&[0x17, 0x02][..], 0x17, 2),       // request problem information 2
        (&[0x19, 0xFF][..], 0x19, 255),     // request response information 255
    ] {
        refused(
            &connect(prop),
            V5,
            DecodeError::InvalidPropertyValue { id, value },
            PROTOCOL,
        );
    }
    // Topic alias 0 and subscription identifier 0 in PUBLISH; maximum QoS 2 in CONNACK.
    refused(
        &[0x30, 0x07, 0x00, 0x01, b'a', 0x03, 0x23, 0x00, 0x00],
        V5,
        DecodeError::InvalidPropertyValue { id: 0x23, value: 0 },
        PROTOCOL,
    );
    refused(
        &[0x30, 0x06, 0x00, 0x01, b'a', 0x02, 0x0B, 0x00],
        V5,
        DecodeError::InvalidPropertyValue { id: 0x0B, value: 0 },
        PROTOCOL,
    );
    refused(
        &[0x20, 0x05, 0x00, 0x00, 0x02, 0x24, 0x02],
        V5,
        DecodeError::InvalidPropertyValue { id: 0x24, value: 2 },
        PROTOCOL,
    );
}

#[test]
fn wildcards_and_empty_names_in_publish_topics_are_refused() {
    for topic in ["a/+", "#", "a/b#"] {
        let mut bytes = vec![0x30, (2 + topic.len()) as u8, 0x00, topic.len() as u8];
        bytes.extend(topic.as_bytes());
        refused(
            &bytes,
            V4,
            DecodeError::InvalidTopicName(topic.into()),
            ReasonCode::TOPIC_NAME_INVALID,
        );
    }
    // Empty topic: invalid on 3.1.1, and on 5 without a topic alias.
    refused(
        &[0x30, 0x02, 0x00, 0x00],
        V4,
        DecodeError::InvalidTopicName(String::new()),
        ReasonCode::TOPIC_NAME_INVALID,
    );
    refused(
        &[0x30, 0x03, 0x00, 0x00, 0x00],
        V5,
        DecodeError::InvalidTopicName(String::new()),
        ReasonCode::TOPIC_NAME_INVALID,
    );
    // A will topic with a wildcard.
    let will = [
        0x10, 0x12, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x02, b'a', b'#', 0x00, 0x00,
    ];
    refused(
        &will,
        V4,
        DecodeError::InvalidTopicName("a#".into()),
        ReasonCode::TOPIC_NAME_INVALID,
    );
}

#[test]
fn malformed_topic_filters_are_refused() {
    for filter in ["a/#/b", "a+", "", "$share/g"] {
        let mut sub = vec![0x82, (5 + filter.len()) as u8, 0x00, 0x01, 0x00];
        sub.push(filter.len() as u8);
        sub.extend(filter.as_bytes());
        sub.push(0x00);
        refused(
            &sub,
            V4,
            DecodeError::InvalidTopicFilter(filter.into()),
            ReasonCode::TOPIC_FILTER_INVALID,
        );
        let mut unsub = vec![0xA2, (4 + filter.len()) as u8, 0x00, 0x01, 0x00];
        unsub.push(filter.len() as u8);
        unsub.extend(filter.as_bytes());
        refused(
            &unsub,
            V4,
            DecodeError::InvalidTopicFilter(filter.into()),
            ReasonCode::TOPIC_FILTER_INVALID,
        );
    }
}

#[test]
fn bad_fixed_header_flags_are_refused_from_the_first_byte() {
    use PacketType::*;
    for (byte, packet) in [
        (0x11, Connect),
        (0x28, ConnAck),
        (0x38, Publish), // DUP with QoS 0
        (0x41, PubAck),
        (0x52, PubRec),
        (0x60, PubRel),
        (0x63, PubRel),
        (0x72, PubComp),
        (0x80, Subscribe),
        (0x8A, Subscribe),
        (0x92, SubAck),
        (0xA0, Unsubscribe),
        (0xB2, UnsubAck),
        (0xC1, PingReq),
        (0xD4, PingResp),
        (0xE2, Disconnect),
        (0xF1, Auth),
    ] {
        refused(
            &[byte],
            V5,
            DecodeError::InvalidFixedHeaderFlags {
                packet,
                flags: byte & 0x0F,
            },
            MALFORMED,
        );
    }
    refused(&[0x00], V5, DecodeError::ReservedPacketType(0), MALFORMED);
    refused(&[0x0F], V4, DecodeError::ReservedPacketType(0), MALFORMED);
    // AUTH does not exist before MQTT 5.
    refused(
        &[0xF0, 0x00],
        V4,
        DecodeError::ReservedPacketType(15),
        MALFORMED,
    );
    refused(
        &[0xF0, 0x00],
        V3,
        DecodeError::ReservedPacketType(15),
        MALFORMED,
    );
}

#[test]
fn qos_3_is_malformed_everywhere() {
    refused(&[0x36], V4, DecodeError::InvalidQoS, MALFORMED);
    refused(&[0x3F], V5, DecodeError::InvalidQoS, MALFORMED);
    // Will QoS 3 in CONNECT.
    let connect = [
        0x10, 0x0C, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x1C, 0x00, 0x00, 0x00, 0x00,
    ];
    refused(&connect, V4, DecodeError::InvalidQoS, MALFORMED);
    // Subscription options QoS 3.
    refused(
        &[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x03],
        V4,
        DecodeError::InvalidQoS,
        MALFORMED,
    );
}

#[test]
fn invalid_utf8_and_the_null_character_are_refused() {
    refused(
        &[0x30, 0x04, 0x00, 0x02, 0xC3, 0x28],
        V4,
        DecodeError::InvalidUtf8("topic name"),
        MALFORMED,
    );
    // An encoded surrogate (U+D800) is not UTF-8.
    refused(
        &[0x30, 0x05, 0x00, 0x03, 0xED, 0xA0, 0x80],
        V4,
        DecodeError::InvalidUtf8("topic name"),
        MALFORMED,
    );
    refused(
        &[0x30, 0x05, 0x00, 0x03, b'a', 0x00, b'b'],
        V4,
        DecodeError::NullCharacter("topic name"),
        MALFORMED,
    );
    // In a client identifier, a user property and a reason string.
    let connect = [
        0x10, 0x0D, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x00, 0x00, 0x01, 0xFF,
    ];
    refused(
        &connect,
        V4,
        DecodeError::InvalidUtf8("client identifier"),
        MALFORMED,
    );
    refused(
        &[0xE0, 0x08, 0x00, 0x06, 0x26, 0x00, 0x00, 0x00, 0x01, 0x00],
        V5,
        DecodeError::NullCharacter("user property value"),
        MALFORMED,
    );
    refused(
        &[0x40, 0x08, 0x00, 0x01, 0x80, 0x04, 0x1F, 0x00, 0x01, 0x80],
        V5,
        DecodeError::InvalidUtf8("reason string"),
        MALFORMED,
    );
}

#[test]
fn packet_id_zero_is_malformed_where_one_is_required() {
    use PacketType::*;
    for (bytes, packet) in [
        (&[0x32, 0x05, 0x00, 0x01, b'a', 0x00, 0x00][..], Publish),
        (&[0x40, 0x02, 0x00, 0x00][..], PubAck),
        (&[0x50, 0x02, 0x00, 0x00][..], PubRec),
        (&[0x62, 0x02, 0x00, 0x00][..], PubRel),
        (&[0x70, 0x02, 0x00, 0x00][..], PubComp),
        (
            &[0x82, 0x06, 0x00, 0x00, 0x00, 0x01, b'a', 0x00][..],
            Subscribe,
        ),
        (&[0x90, 0x03, 0x00, 0x00, 0x00][..], SubAck),
        (&[0xA2, 0x05, 0x00, 0x00, 0x00, 0x01, b'a'][..], Unsubscribe),
        (&[0xB0, 0x02, 0x00, 0x00][..], UnsubAck),
    ] {
        refused(bytes, V4, DecodeError::ZeroPacketId(packet), MALFORMED);
    }
}

#[test]
fn subscribe_and_unsubscribe_need_a_filter() {
    refused(
        &[0x82, 0x02, 0x00, 0x01],
        V4,
        DecodeError::NoTopicFilters(PacketType::Subscribe),
        PROTOCOL,
    );
    refused(
        &[0x82, 0x03, 0x00, 0x01, 0x00],
        V5,
        DecodeError::NoTopicFilters(PacketType::Subscribe),
        PROTOCOL,
    );
    refused(
        &[0xA2, 0x02, 0x00, 0x01],
        V4,
        DecodeError::NoTopicFilters(PacketType::Unsubscribe),
        PROTOCOL,
    );
    refused(
        &[0x90, 0x02, 0x00, 0x01],
        V4,
        DecodeError::NoReasonCodes(PacketType::SubAck),
        MALFORMED,
    );
    refused(
        &[0xB0, 0x03, 0x00, 0x01, 0x00],
        V5,
        DecodeError::NoReasonCodes(PacketType::UnsubAck),
        MALFORMED,
    );
}

#[test]
fn subscription_options_reserved_bits_and_retain_handling_3() {
    let sub = |options: u8, version: ProtocolVersion| {
        let mut bytes = vec![0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', options];
        if version.is_v5() {
            bytes[1] += 1;
            bytes.insert(4, 0x00);
        }
        bytes
    };
    // No local is a reserved bit in 3.1.1.
    refused(
        &sub(0x04, V4),
        V4,
        DecodeError::InvalidSubscriptionOptions(0x04),
        MALFORMED,
    );
    refused(
        &sub(0x41, V5),
        V5,
        DecodeError::InvalidSubscriptionOptions(0x41),
        MALFORMED,
    );
    refused(
        &sub(0x30, V5),
        V5,
        DecodeError::InvalidRetainHandling,
        PROTOCOL,
    );
    // No local on a shared subscription.
    let mut shared = vec![0x82, 0x10, 0x00, 0x01, 0x00, 0x00, 0x0A];
    shared.extend(b"$share/g/a");
    shared.push(0x04);
    refused(
        &shared,
        V5,
        DecodeError::NoLocalOnSharedSubscription("$share/g/a".into()),
        PROTOCOL,
    );
}

#[test]
fn connect_protocol_name_level_and_flags_are_checked() {
    let connect = |name: &[u8], level: u8, flags: u8| {
        let mut bytes = vec![0x10, 0, 0x00, name.len() as u8];
        bytes.extend(name);
        bytes.extend([level, flags, 0x00, 0x00]);
        if level == 5 {
            bytes.push(0x00);
        }
        bytes.extend([0x00, 0x00]);
        bytes[1] = (bytes.len() - 2) as u8;
        bytes
    };
    assert!(decode(&connect(b"MQTT", 4, 0x02), V4).is_ok());
    for (name, level) in [
        (&b"MQTT"[..], 3),
        (&b"MQTT"[..], 6),
        (&b"MQIsdp"[..], 4),
        (&b"MQTX"[..], 4),
        (&b"mqtt"[..], 5),
    ] {
        refused(
            &connect(name, level, 0x02),
            V4,
            DecodeError::UnsupportedProtocol {
                name: String::from_utf8(name.to_vec()).unwrap(),
                level,
            },
            ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
        );
    }
    for flags in [
        0x03, // reserved bit
        0x0A, // will QoS without will
        0x22, // will retain without will
        0x42, // 3.1.1 password without user name
    ] {
        refused(
            &connect(b"MQTT", 4, flags),
            V4,
            DecodeError::InvalidConnectFlags(flags),
            MALFORMED,
        );
    }
}

#[test]
fn connack_flags_and_codes_are_checked() {
    refused(
        &[0x20, 0x02, 0x02, 0x00],
        V4,
        DecodeError::InvalidConnAckFlags(0x02),
        MALFORMED,
    );
    refused(
        &[0x20, 0x02, 0x00, 0x06],
        V4,
        DecodeError::InvalidReasonCode {
            packet: PacketType::ConnAck,
            code: 6,
        },
        MALFORMED,
    );
    refused(
        &[0x20, 0x03, 0x00, 0x01, 0x00],
        V5,
        DecodeError::InvalidReasonCode {
            packet: PacketType::ConnAck,
            code: 1,
        },
        MALFORMED,
    );
    refused(
        &[0x20, 0x03, 0x01, 0x87, 0x00],
        V5,
        DecodeError::SessionPresentOnFailure(0x87),
        PROTOCOL,
    );
    // MQTT 5 CONNACK needs its property length.
    refused(
        &[0x20, 0x02, 0x00, 0x00],
        V5,
        DecodeError::Truncated("property length"),
        MALFORMED,
    );
}

#[test]
fn reason_codes_invalid_for_the_packet_are_refused() {
    use PacketType::*;
    for (bytes, packet, code) in [
        (&[0x40, 0x03, 0x00, 0x01, 0x92][..], PubAck, 0x92),
        (&[0x62, 0x03, 0x00, 0x01, 0x10][..], PubRel, 0x10),
        (&[0x90, 0x04, 0x00, 0x01, 0x00, 0x03][..], SubAck, 0x03),
        (&[0xB0, 0x04, 0x00, 0x01, 0x00, 0x01][..], UnsubAck, 0x01),
        (&[0xE0, 0x01, 0x01][..], Disconnect, 0x01),
        (&[0xF0, 0x02, 0x87, 0x00][..], Auth, 0x87),
    ] {
        refused(
            bytes,
            V5,
            DecodeError::InvalidReasonCode { packet, code },
            MALFORMED,
        );
    }
    // 3.1.1 SUBACK has only 0, 1, 2 and 0x80.
    refused(
        &[0x90, 0x03, 0x00, 0x01, 0x87],
        V4,
        DecodeError::InvalidReasonCode {
            packet: SubAck,
            code: 0x87,
        },
        MALFORMED,
    );
}

#[test]
fn bytes_after_the_last_field_are_malformed() {
    use PacketType::*;
    for (bytes, version, n, packet) in [
        (&[0xC0, 0x01, 0x00][..], V4, 1, PingReq),
        (&[0xE0, 0x01, 0x00][..], V4, 1, Disconnect),
        (&[0x40, 0x03, 0x00, 0x01, 0x00][..], V4, 1, PubAck),
        (&[0xB0, 0x03, 0x00, 0x01, 0x00][..], V4, 1, UnsubAck),
        (&[0x20, 0x03, 0x00, 0x00, 0x00][..], V4, 1, ConnAck),
        (
            &[
                0x10, 0x0F, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x00, 0x00, 0x00,
                0xAA, 0xBB, 0xCC,
            ][..],
            V4,
            3,
            Connect,
        ),
    ] {
        refused(
            bytes,
            version,
            DecodeError::TrailingBytes(n, packet),
            MALFORMED,
        );
    }
}

#[test]
fn a_decode_error_maps_to_the_reason_code_the_server_sends() {
    let cases = [
        (
            DecodeError::PacketTooLarge { size: 2, max: 1 },
            ReasonCode(0x95),
        ),
        (DecodeError::Truncated("x"), ReasonCode(0x81)),
        (DecodeError::DuplicateProperty(1), ReasonCode(0x82)),
        (
            DecodeError::UnsupportedProtocol {
                name: "MQTT".into(),
                level: 9,
            },
            ReasonCode(0x84),
        ),
        (DecodeError::InvalidTopicName("#".into()), ReasonCode(0x90)),
        (
            DecodeError::InvalidTopicFilter("a#".into()),
            ReasonCode(0x8F),
        ),
    ];
    for (err, code) in cases {
        assert_eq!(err.reason_code(), code, "{err}");
        // Every code a decode error maps to is one DISCONNECT may carry, or CONNACK for 0x84.
        let packet = if code == ReasonCode(0x84) {
            PacketType::ConnAck
        } else {
            PacketType::Disconnect
        };
        assert!(crate::reason::allowed(packet, code, true), "{code:?}");
    }
    // The error message names the configuration key of the limit.
    assert!(
        DecodeError::PacketTooLarge { size: 2, max: 1 }
            .to_string()
            .contains("packet_size_bytes_max")
    );
}
