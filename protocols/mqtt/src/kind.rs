//! What names a packet and its delivery, below every other file of the crate: the protocol
//! version, the packet type and the quality of service. How they are read from the wire is in
//! `decoder.rs` (the first byte) and `error.rs` (a QoS byte).

/// The protocol version of a connection, chosen by its CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtocolVersion {
    /// MQTT 3.1: protocol name "MQIsdp", level 3; encoded like 3.1.1.
    V3_1,
    /// MQTT 3.1.1: protocol name "MQTT", level 4.
    V3_1_1,
    /// MQTT 5.0: protocol name "MQTT", level 5.
    V5,
}

impl ProtocolVersion {
    /// The protocol level byte in CONNECT.
    pub fn level(self) -> u8 {
        match self {
            ProtocolVersion::V3_1 => 3,
            ProtocolVersion::V3_1_1 => 4,
            ProtocolVersion::V5 => 5,
        }
    }

    /// The protocol name in CONNECT.
    pub fn protocol_name(self) -> &'static str {
        match self {
            ProtocolVersion::V3_1 => "MQIsdp",
            ProtocolVersion::V3_1_1 | ProtocolVersion::V5 => "MQTT",
        }
    }

    /// Whether this is MQTT 5 (properties, reason codes, AUTH).
    pub fn is_v5(self) -> bool {
        self == ProtocolVersion::V5
    }
}

/// A quality of service level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum QoS {
    /// QoS 0.
    AtMostOnce = 0,
    /// QoS 1.
    AtLeastOnce = 1,
    /// QoS 2.
    ExactlyOnce = 2,
}

/// The packet type, the high four bits of the first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    /// CONNECT, client to server.
    Connect = 1,
    /// CONNACK, server to client.
    ConnAck = 2,
    /// PUBLISH, both ways.
    Publish = 3,
    /// PUBACK, both ways.
    PubAck = 4,
    /// PUBREC, both ways.
    PubRec = 5,
    /// PUBREL, both ways.
    PubRel = 6,
    /// PUBCOMP, both ways.
    PubComp = 7,
    /// SUBSCRIBE, client to server.
    Subscribe = 8,
    /// SUBACK, server to client.
    SubAck = 9,
    /// UNSUBSCRIBE, client to server.
    Unsubscribe = 10,
    /// UNSUBACK, server to client.
    UnsubAck = 11,
    /// PINGREQ, client to server.
    PingReq = 12,
    /// PINGRESP, server to client.
    PingResp = 13,
    /// DISCONNECT, both ways (server to client in MQTT 5 only).
    Disconnect = 14,
    /// AUTH, both ways, MQTT 5 only.
    Auth = 15,
}

impl PacketType {
    /// The name the specification uses.
    pub fn name(self) -> &'static str {
        match self {
            PacketType::Connect => "CONNECT",
            PacketType::ConnAck => "CONNACK",
            PacketType::Publish => "PUBLISH",
            PacketType::PubAck => "PUBACK",
            PacketType::PubRec => "PUBREC",
            PacketType::PubRel => "PUBREL",
            PacketType::PubComp => "PUBCOMP",
            PacketType::Subscribe => "SUBSCRIBE",
            PacketType::SubAck => "SUBACK",
            PacketType::Unsubscribe => "UNSUBSCRIBE",
            PacketType::UnsubAck => "UNSUBACK",
            PacketType::PingReq => "PINGREQ",
            PacketType::PingResp => "PINGRESP",
            PacketType::Disconnect => "DISCONNECT",
            PacketType::Auth => "AUTH",
        }
    }
}
