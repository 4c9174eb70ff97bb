//! MQTT 5 reason codes, and which of them each packet may carry.
//!
//! A reason code is kept as its byte rather than as a Rust enum because the same byte has
//! different names in different packets (0x00 is Success, Normal Disconnection and Granted
//! QoS 0), and because MQTT 3.1.1 CONNACK and SUBACK use their own small sets of codes.

use crate::kind::PacketType;

/// A reason code byte (MQTT 5 section 2.4); values of 0x80 and above are failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReasonCode(pub u8);

impl ReasonCode {
    /// Success, Normal Disconnection, Granted QoS 0.
    pub const SUCCESS: ReasonCode = ReasonCode(0x00);
    /// Granted QoS 1 (SUBACK).
    pub const GRANTED_QOS_1: ReasonCode = ReasonCode(0x01);
    /// Granted QoS 2 (SUBACK).
    pub const GRANTED_QOS_2: ReasonCode = ReasonCode(0x02);
    /// Disconnect with Will Message (DISCONNECT).
    pub const DISCONNECT_WITH_WILL: ReasonCode = ReasonCode(0x04);
    /// No matching subscribers (PUBACK, PUBREC).
    pub const NO_MATCHING_SUBSCRIBERS: ReasonCode = ReasonCode(0x10);
    /// No subscription existed (UNSUBACK).
    pub const NO_SUBSCRIPTION_EXISTED: ReasonCode = ReasonCode(0x11);
    /// Continue authentication (AUTH).
    pub const CONTINUE_AUTHENTICATION: ReasonCode = ReasonCode(0x18);
    /// Re-authenticate (AUTH).
    pub const RE_AUTHENTICATE: ReasonCode = ReasonCode(0x19);
    /// Unspecified error.
    pub const UNSPECIFIED_ERROR: ReasonCode = ReasonCode(0x80);
    /// Malformed Packet.
    pub const MALFORMED_PACKET: ReasonCode = ReasonCode(0x81);
    /// Protocol Error.
    pub const PROTOCOL_ERROR: ReasonCode = ReasonCode(0x82);
    /// Implementation specific error.
    pub const IMPLEMENTATION_SPECIFIC_ERROR: ReasonCode = ReasonCode(0x83);
    /// Unsupported Protocol Version (CONNACK).
    pub const UNSUPPORTED_PROTOCOL_VERSION: ReasonCode = ReasonCode(0x84);
    /// Client Identifier not valid (CONNACK).
    pub const CLIENT_IDENTIFIER_NOT_VALID: ReasonCode = ReasonCode(0x85);
    /// Bad User Name or Password (CONNACK).
    pub const BAD_USER_NAME_OR_PASSWORD: ReasonCode = ReasonCode(0x86);
    /// Not authorized.
    pub const NOT_AUTHORIZED: ReasonCode = ReasonCode(0x87);
    /// Server unavailable (CONNACK).
    pub const SERVER_UNAVAILABLE: ReasonCode = ReasonCode(0x88);
    /// Server busy.
    pub const SERVER_BUSY: ReasonCode = ReasonCode(0x89);
    /// Banned (CONNACK).
    pub const BANNED: ReasonCode = ReasonCode(0x8A);
    /// Server shutting down (DISCONNECT).
    pub const SERVER_SHUTTING_DOWN: ReasonCode = ReasonCode(0x8B);
    /// Bad authentication method.
    pub const BAD_AUTHENTICATION_METHOD: ReasonCode = ReasonCode(0x8C);
    /// Keep Alive timeout (DISCONNECT).
    pub const KEEP_ALIVE_TIMEOUT: ReasonCode = ReasonCode(0x8D);
    /// Session taken over (DISCONNECT).
    pub const SESSION_TAKEN_OVER: ReasonCode = ReasonCode(0x8E);
    /// Topic Filter invalid.
    pub const TOPIC_FILTER_INVALID: ReasonCode = ReasonCode(0x8F);
    /// Topic Name invalid.
    pub const TOPIC_NAME_INVALID: ReasonCode = ReasonCode(0x90);
    /// Packet Identifier in use.
    pub const PACKET_IDENTIFIER_IN_USE: ReasonCode = ReasonCode(0x91);
    /// Packet Identifier not found (PUBREL, PUBCOMP).
    pub const PACKET_IDENTIFIER_NOT_FOUND: ReasonCode = ReasonCode(0x92);
    /// Receive Maximum exceeded (DISCONNECT).
    pub const RECEIVE_MAXIMUM_EXCEEDED: ReasonCode = ReasonCode(0x93);
    /// Topic Alias invalid (DISCONNECT).
    pub const TOPIC_ALIAS_INVALID: ReasonCode = ReasonCode(0x94);
    /// Packet too large.
    pub const PACKET_TOO_LARGE: ReasonCode = ReasonCode(0x95);
    /// Message rate too high (DISCONNECT).
    pub const MESSAGE_RATE_TOO_HIGH: ReasonCode = ReasonCode(0x96);
    /// Quota exceeded.
    pub const QUOTA_EXCEEDED: ReasonCode = ReasonCode(0x97);
    /// Administrative action (DISCONNECT).
    pub const ADMINISTRATIVE_ACTION: ReasonCode = ReasonCode(0x98);
    /// Payload format invalid.
    pub const PAYLOAD_FORMAT_INVALID: ReasonCode = ReasonCode(0x99);
    /// Retain not supported.
    pub const RETAIN_NOT_SUPPORTED: ReasonCode = ReasonCode(0x9A);
    /// QoS not supported.
    pub const QOS_NOT_SUPPORTED: ReasonCode = ReasonCode(0x9B);
    /// Use another server.
    pub const USE_ANOTHER_SERVER: ReasonCode = ReasonCode(0x9C);
    /// Server moved.
    pub const SERVER_MOVED: ReasonCode = ReasonCode(0x9D);
    /// Shared Subscriptions not supported.
    pub const SHARED_SUBSCRIPTIONS_NOT_SUPPORTED: ReasonCode = ReasonCode(0x9E);
    /// Connection rate exceeded.
    pub const CONNECTION_RATE_EXCEEDED: ReasonCode = ReasonCode(0x9F);
    /// Maximum connect time (DISCONNECT).
    pub const MAXIMUM_CONNECT_TIME: ReasonCode = ReasonCode(0xA0);
    /// Subscription Identifiers not supported.
    pub const SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED: ReasonCode = ReasonCode(0xA1);
    /// Wildcard Subscriptions not supported.
    pub const WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED: ReasonCode = ReasonCode(0xA2);

    /// Whether this code reports a failure (0x80 and above).
    pub fn is_error(self) -> bool {
        self.0 >= 0x80
    }

    /// The MQTT 3.1.1 CONNACK return code closest to this MQTT 5 CONNACK reason code, for a
    /// server that refuses a 3.1.1 client: 0 accepted, 1 unacceptable protocol version,
    /// 2 identifier rejected, 3 server unavailable, 4 bad user name or password,
    /// 5 not authorized.
    pub fn to_v4_connack(self) -> ReasonCode {
        ReasonCode(match self.0 {
            0x00 => 0,
            0x84 => 1,
            0x85 => 2,
            0x86 => 4,
            0x87 | 0x8A | 0x8C => 5,
            _ => 3,
        })
    }

    /// The MQTT 3.1.1 SUBACK return code for this MQTT 5 one: granted QoS 0, 1 and 2 stay,
    /// every failure becomes 0x80.
    pub fn to_v4_suback(self) -> ReasonCode {
        if self.0 <= 2 { self } else { ReasonCode(0x80) }
    }
}

const CONNACK_V5: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];
const CONNACK_V4: &[u8] = &[0, 1, 2, 3, 4, 5];
const PUBACK_PUBREC: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
const PUBREL_PUBCOMP: &[u8] = &[0x00, 0x92];
const SUBACK_V5: &[u8] = &[
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
];
const SUBACK_V4: &[u8] = &[0x00, 0x01, 0x02, 0x80];
const UNSUBACK: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
const DISCONNECT: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
    0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];
const AUTH: &[u8] = &[0x00, 0x18, 0x19];

/// Whether `packet` may carry `code` (MQTT 5 tables 3-1, 3-4 ... 3-9, or the 3.1.1 return
/// codes when `v5` is false).
pub(crate) fn allowed(packet: PacketType, code: ReasonCode, v5: bool) -> bool {
    let table = match (packet, v5) {
        (PacketType::ConnAck, true) => CONNACK_V5,
        (PacketType::ConnAck, false) => CONNACK_V4,
        (PacketType::PubAck | PacketType::PubRec, _) => PUBACK_PUBREC,
        (PacketType::PubRel | PacketType::PubComp, _) => PUBREL_PUBCOMP,
        (PacketType::SubAck, true) => SUBACK_V5,
        (PacketType::SubAck, false) => SUBACK_V4,
        (PacketType::UnsubAck, _) => UNSUBACK,
        (PacketType::Disconnect, _) => DISCONNECT,
        (PacketType::Auth, _) => AUTH,
        _ => &[],
    };
    table.contains(&code.0)
}
