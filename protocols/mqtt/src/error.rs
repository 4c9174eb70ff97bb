//! Why a packet could not be decoded or encoded.
//!
//! Every decode failure is the peer's fault and closes the connection; [`DecodeError::reason_code`]
//! names the MQTT 5 reason code to put in the DISCONNECT (or CONNACK, for a bad CONNECT) sent
//! before closing. A 3.1.1 connection is closed without a packet, except that an unsupported
//! protocol version in CONNECT is answered with CONNACK return code 1
//! ([`ReasonCode::to_v4_connack`]).

use crate::kind::{PacketType, QoS};
use crate::reason::ReasonCode;

/// A packet from the peer is broken; the connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The whole packet (fixed header included) is larger than the configured maximum.
    #[error("packet of {size} bytes exceeds the limit of {max} bytes (mqtt.packet_size_bytes_max)")]
    PacketTooLarge {
        /// Declared size of the whole packet, fixed header included.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A variable byte integer (the remaining length, a property length, a property identifier
    /// or a subscription identifier) has a continuation bit on its fourth byte.
    #[error("variable byte integer longer than 4 bytes in {0}")]
    MalformedVariableByteInteger(&'static str),
    /// Packet type 0, or 15 (AUTH) outside MQTT 5.
    #[error("packet type {0} is reserved")]
    ReservedPacketType(u8),
    /// The low four bits of the fixed header are not what the packet type requires.
    #[error("fixed header flags {flags:#06b} are invalid for {packet:?}")]
    InvalidFixedHeaderFlags {
        /// The packet.
        packet: PacketType,
        /// The flags received.
        flags: u8,
    },
    /// A QoS of 3, in a PUBLISH, a will or a subscription.
    #[error("QoS 3 is not a QoS level")]
    InvalidQoS,
    /// A field or length runs past the end of the packet's remaining length.
    #[error("{0} runs past the end of the packet")]
    Truncated(&'static str),
    /// Bytes left over after the last field of a packet.
    #[error("{0} unexpected bytes after the end of {1:?}")]
    TrailingBytes(usize, PacketType),
    /// A string that is not valid UTF-8.
    #[error("{0} is not valid UTF-8")]
    InvalidUtf8(&'static str),
    /// A string containing U+0000, which MQTT forbids.
    #[error("{0} contains the null character")]
    NullCharacter(&'static str),
    /// A packet identifier of 0 where one is required.
    #[error("packet identifier 0 in {0:?}")]
    ZeroPacketId(PacketType),
    /// CONNECT names a protocol other than "MQTT" (levels 4 and 5) or "MQIsdp" (level 3).
    #[error("unsupported protocol {name:?} level {level}")]
    UnsupportedProtocol {
        /// The protocol name sent.
        name: String,
        /// The protocol level sent.
        level: u8,
    },
    /// Reserved or contradictory CONNECT flags (reserved bit set, will QoS or retain without a
    /// will, a password without a user name in 3.1.1).
    #[error("invalid CONNECT flags {0:#010b}")]
    InvalidConnectFlags(u8),
    /// CONNACK acknowledge flags with a reserved bit set.
    #[error("invalid CONNACK flags {0:#010b}")]
    InvalidConnAckFlags(u8),
    /// A PUBLISH topic name that is empty (without a topic alias) or holds a wildcard.
    #[error("invalid topic name {0:?}")]
    InvalidTopicName(String),
    /// A topic filter that is empty or misuses `#`, `+` or `$share/`.
    #[error("invalid topic filter {0:?}")]
    InvalidTopicFilter(String),
    /// SUBSCRIBE or UNSUBSCRIBE without any topic filter.
    #[error("{0:?} without any topic filter")]
    NoTopicFilters(PacketType),
    /// SUBACK or UNSUBACK (MQTT 5) without any reason code.
    #[error("{0:?} without any reason code")]
    NoReasonCodes(PacketType),
    /// Subscription options with a reserved bit set.
    #[error("subscription options {0:#010b} have reserved bits set")]
    InvalidSubscriptionOptions(u8),
    /// Subscription options with Retain Handling 3.
    #[error("retain handling 3 is not allowed")]
    InvalidRetainHandling,
    /// No Local on a shared subscription.
    #[error("no local set on shared subscription {0:?}")]
    NoLocalOnSharedSubscription(String),
    /// A reason code the packet may not carry.
    #[error("reason code {code:#04x} is not valid in {packet:?}")]
    InvalidReasonCode {
        /// The packet.
        packet: PacketType,
        /// The code received.
        code: u8,
    },
    /// CONNACK with Session Present set and a failure reason code.
    #[error("session present with failure reason code {0:#04x}")]
    SessionPresentOnFailure(u8),
    /// A property identifier that MQTT 5 does not define.
    #[error("unknown property identifier {0:#04x}")]
    UnknownProperty(u32),
    /// A property that exists but is not allowed in this packet.
    #[error("property {id:#04x} is not allowed in {context}")]
    PropertyNotAllowed {
        /// The property identifier.
        id: u8,
        /// The packet (or "will properties").
        context: &'static str,
    },
    /// A property that may appear once appears twice.
    #[error("property {0:#04x} appears more than once")]
    DuplicateProperty(u8),
    /// A property with a value its definition forbids (0 for Receive Maximum, 2 for a
    /// boolean, ...).
    #[error("property {id:#04x} has invalid value {value}")]
    InvalidPropertyValue {
        /// The property identifier.
        id: u8,
        /// The value received.
        value: u32,
    },
}

impl DecodeError {
    /// The MQTT 5 reason code to send in the DISCONNECT (or the CONNACK, when the broken
    /// packet is the CONNECT) that closes the connection.
    pub fn reason_code(&self) -> ReasonCode {
        use DecodeError::*;
        match self {
            PacketTooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            UnsupportedProtocol { .. } => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            InvalidTopicName(_) => ReasonCode::TOPIC_NAME_INVALID,
            InvalidTopicFilter(_) => ReasonCode::TOPIC_FILTER_INVALID,
            // The specification calls each of these a Protocol Error rather than malformed.
            NoTopicFilters(_)
            | InvalidRetainHandling
            | NoLocalOnSharedSubscription(_)
            | SessionPresentOnFailure(_)
            | DuplicateProperty(_)
            | InvalidPropertyValue { .. } => ReasonCode::PROTOCOL_ERROR,
            MalformedVariableByteInteger(_)
            | ReservedPacketType(_)
            | InvalidFixedHeaderFlags { .. }
            | InvalidQoS
            | Truncated(_)
            | TrailingBytes(..)
            | InvalidUtf8(_)
            | NullCharacter(_)
            | ZeroPacketId(_)
            | InvalidConnectFlags(_)
            | InvalidConnAckFlags(_)
            | NoReasonCodes(_)
            | InvalidSubscriptionOptions(_)
            | InvalidReasonCode { .. }
            | UnknownProperty(_)
            | PropertyNotAllowed { .. } => ReasonCode::MALFORMED_PACKET,
        }
    }
}

/// A packet cannot be put on the wire as it stands; the caller built it wrong for the
/// connection's protocol version or beyond a wire limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A string or binary field longer than 65,535 bytes.
    #[error("{what} of {len} bytes exceeds 65535 bytes")]
    FieldTooLong {
        /// The field.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// A remaining length, property length or subscription identifier above 268,435,455.
    #[error("{what} of {value} exceeds the variable byte integer maximum 268435455")]
    VariableByteIntegerTooLarge {
        /// The field.
        what: &'static str,
        /// Its value.
        value: usize,
    },
    /// Something only MQTT 5 can carry (properties, a reason code other than success, AUTH)
    /// on a 3.1.x connection.
    #[error("{0} needs MQTT 5")]
    NeedsV5(&'static str),
    /// A property set on a packet that may not carry it.
    #[error("property {id:#04x} is not allowed in {context}")]
    PropertyNotAllowed {
        /// The property identifier.
        id: u8,
        /// The packet (or "will properties").
        context: &'static str,
    },
    /// A PUBLISH whose packet identifier does not match its QoS (none for QoS 0, one
    /// otherwise).
    #[error("PUBLISH packet identifier does not match its QoS")]
    PacketIdMismatch,
    /// A reason code the packet may not carry on this protocol version (an MQTT 5 code in a
    /// 3.1.1 CONNACK, for instance: see [`ReasonCode::to_v4_connack`]).
    #[error("reason code {code:#04x} is not valid in {packet:?}")]
    InvalidReasonCode {
        /// The packet.
        packet: PacketType,
        /// The code.
        code: u8,
    },
    /// SUBSCRIBE or UNSUBSCRIBE without filters, SUBACK or UNSUBACK (MQTT 5) without codes.
    #[error("{0:?} needs at least one entry")]
    Empty(PacketType),
}

impl TryFrom<u8> for QoS {
    type Error = DecodeError;

    fn try_from(value: u8) -> Result<QoS, DecodeError> {
        match value {
            0 => Ok(QoS::AtMostOnce),
            1 => Ok(QoS::AtLeastOnce),
            2 => Ok(QoS::ExactlyOnce),
            _ => Err(DecodeError::InvalidQoS),
        }
    }
}
