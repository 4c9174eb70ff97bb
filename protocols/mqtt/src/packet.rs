//! The control packets of MQTT 3.1, 3.1.1 and 5.0 as Rust values, and their bodies' encoding.
//!
//! [`Packet::encode`] appends a whole packet to a caller's buffer; decoding goes through
//! [`crate::PacketDecoder`], which finds the packet boundary and checks the size limit first.

use std::num::NonZeroU16;

use crate::error::{DecodeError, EncodeError};
use crate::kind::{PacketType, ProtocolVersion, QoS};
use crate::properties::{Context, Properties};
use crate::reason;
use crate::reason::ReasonCode;
use crate::spares::Spares;
use crate::topic::{is_shared_filter, is_valid_topic_filter, is_valid_topic_name};
use crate::wire::{self, Counter, Reader, Sink};

/// A packet identifier; MQTT forbids 0 wherever one is required.
pub type PacketId = NonZeroU16;

/// One control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// CONNECT.
    Connect(Box<Connect>),
    /// CONNACK.
    ConnAck(ConnAck),
    /// PUBLISH.
    Publish(Publish),
    /// PUBACK (QoS 1 acknowledgement).
    PubAck(PubResponse),
    /// PUBREC (QoS 2, first step).
    PubRec(PubResponse),
    /// PUBREL (QoS 2, second step).
    PubRel(PubResponse),
    /// PUBCOMP (QoS 2, last step).
    PubComp(PubResponse),
    /// SUBSCRIBE.
    Subscribe(Subscribe),
    /// SUBACK.
    SubAck(SubAck),
    /// UNSUBSCRIBE.
    Unsubscribe(Unsubscribe),
    /// UNSUBACK.
    UnsubAck(UnsubAck),
    /// PINGREQ.
    PingReq,
    /// PINGRESP.
    PingResp,
    /// DISCONNECT.
    Disconnect(Disconnect),
    /// AUTH (MQTT 5 only).
    Auth(Auth),
}

/// CONNECT: the first packet of a connection; it carries the protocol version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// The protocol name and level sent.
    pub protocol_version: ProtocolVersion,
    /// Clean Session (3.1.x) or Clean Start (5).
    pub clean_start: bool,
    /// Keep alive, seconds; 0 turns keep alive off.
    pub keep_alive: u16,
    /// The client identifier; may be empty.
    pub client_id: String,
    /// The will message, if any.
    pub will: Option<Will>,
    /// The user name, if any.
    pub username: Option<String>,
    /// The password, if any (a 3.1.x password needs a user name).
    pub password: Option<Vec<u8>>,
    /// CONNECT properties (MQTT 5).
    pub properties: Properties,
}

/// The will message of a CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// Topic name, non-empty and without wildcards.
    pub topic: String,
    /// Payload.
    pub payload: Vec<u8>,
    /// QoS.
    pub qos: QoS,
    /// Retain flag.
    pub retain: bool,
    /// Will properties (MQTT 5).
    pub properties: Properties,
}

/// CONNACK: the answer to CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    /// Whether the server resumed a session; false with any failure code.
    pub session_present: bool,
    /// MQTT 5 reason code, or the 3.1.x return code 0..=5 on a 3.1.x connection.
    pub reason_code: ReasonCode,
    /// CONNACK properties (MQTT 5).
    pub properties: Properties,
}

/// PUBLISH: an application message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// A re-delivery of an earlier attempt; only with QoS 1 or 2.
    pub dup: bool,
    /// QoS.
    pub qos: QoS,
    /// Retain flag.
    pub retain: bool,
    /// Topic name without wildcards; empty only with a topic alias (MQTT 5).
    pub topic: String,
    /// Present exactly when QoS is 1 or 2.
    pub packet_id: Option<PacketId>,
    /// PUBLISH properties (MQTT 5).
    pub properties: Properties,
    /// Payload, the rest of the packet.
    pub payload: Vec<u8>,
}

impl Publish {
    /// The same PUBLISH over borrowed parts.
    pub fn borrowed(&self) -> PublishRef<'_> {
        PublishRef {
            dup: self.dup,
            qos: self.qos,
            retain: self.retain,
            topic: &self.topic,
            packet_id: self.packet_id,
            properties: &self.properties,
            payload: &self.payload,
        }
    }
}

/// A PUBLISH over borrowed parts, encoded without copying its topic, properties or payload
/// anywhere but the output (a broker's deliveries). Fields as in [`Publish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct PublishRef<'a> {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    pub topic: &'a str,
    pub packet_id: Option<PacketId>,
    pub properties: &'a Properties,
    pub payload: &'a [u8],
}

impl PublishRef<'_> {
    /// Appends the whole PUBLISH to `out`, as [`Packet::encode`] does.
    pub fn encode(
        &self,
        version: ProtocolVersion,
        out: &mut Vec<u8>,
    ) -> Result<usize, EncodeError> {
        let remaining = self.remaining_len(version)?;
        let start = out.len();
        let flags = u8::from(self.dup) << 3 | (self.qos as u8) << 1 | u8::from(self.retain);
        out.push((PacketType::Publish as u8) << 4 | flags);
        let written = wire::put_variable_byte_integer(out, remaining, "remaining length")
            .and_then(|()| self.write_body(version.is_v5(), out));
        if let Err(e) = written {
            out.truncate(start);
            return Err(e);
        }
        Ok(out.len() - start)
    }

    /// The number of bytes [`PublishRef::encode`] would write.
    pub fn encoded_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        let remaining = self.remaining_len(version)?;
        Ok(1 + wire::variable_byte_integer_len(remaining) + remaining)
    }

    fn remaining_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        let mut counter = Counter::default();
        self.write_body(version.is_v5(), &mut counter)?;
        if counter.0 > wire::VARIABLE_BYTE_INTEGER_MAX as usize {
            return Err(EncodeError::VariableByteIntegerTooLarge {
                what: "remaining length",
                value: counter.0,
            });
        }
        Ok(counter.0)
    }

    fn write_body(&self, v5: bool, out: &mut impl Sink) -> Result<(), EncodeError> {
        if (self.qos == QoS::AtMostOnce) != self.packet_id.is_none() {
            return Err(EncodeError::PacketIdMismatch);
        }
        wire::put_str(out, self.topic, "topic name")?;
        if let Some(id) = self.packet_id {
            wire::put_u16(out, id.get());
        }
        put_properties(out, self.properties, PacketType::Publish, v5)?;
        out.put(self.payload);
        Ok(())
    }
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubResponse {
    /// The packet identifier of the PUBLISH being answered.
    pub packet_id: PacketId,
    /// Reason code (MQTT 5; always success on 3.1.x).
    pub reason_code: ReasonCode,
    /// Properties (MQTT 5).
    pub properties: Properties,
}

impl PubResponse {
    /// A success response for `packet_id`.
    pub fn new(packet_id: PacketId) -> PubResponse {
        PubResponse {
            packet_id,
            reason_code: ReasonCode::SUCCESS,
            properties: Properties::default(),
        }
    }
}

/// SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Packet identifier.
    pub packet_id: PacketId,
    /// SUBSCRIBE properties (MQTT 5): subscription identifier, user properties.
    pub properties: Properties,
    /// At least one filter with its options.
    pub subscriptions: Vec<Subscription>,
}

/// One topic filter of a SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// A well-formed topic filter, possibly `$share/{name}/{filter}`.
    pub filter: String,
    /// Options.
    pub options: SubscriptionOptions,
}

/// Subscription options (section 3.8.3.1); on 3.1.x only the QoS exists and the rest must
/// stay at their defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionOptions {
    /// Maximum QoS.
    pub qos: QoS,
    /// Do not send the client its own publications (not allowed on shared subscriptions).
    pub no_local: bool,
    /// Keep the retain flag of forwarded messages.
    pub retain_as_published: bool,
    /// When to send retained messages.
    pub retain_handling: RetainHandling,
}

impl SubscriptionOptions {
    /// The 3.1.x options for `qos`.
    pub fn qos(qos: QoS) -> SubscriptionOptions {
        SubscriptionOptions {
            qos,
            no_local: false,
            retain_as_published: false,
            retain_handling: RetainHandling::SendAtSubscribe,
        }
    }

    fn decode(byte: u8, version: ProtocolVersion) -> Result<SubscriptionOptions, DecodeError> {
        let reserved = if version.is_v5() { 0xC0 } else { 0xFC };
        if byte & reserved != 0 {
            return Err(DecodeError::InvalidSubscriptionOptions(byte));
        }
        let retain_handling = match (byte >> 4) & 0x03 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendAtSubscribeIfNew,
            2 => RetainHandling::DoNotSend,
            _ => return Err(DecodeError::InvalidRetainHandling),
        };
        Ok(SubscriptionOptions {
            qos: QoS::try_from(byte & 0x03)?,
            no_local: byte & 0x04 != 0,
            retain_as_published: byte & 0x08 != 0,
            retain_handling,
        })
    }

    fn to_byte(self) -> u8 {
        self.qos as u8
            | u8::from(self.no_local) << 2
            | u8::from(self.retain_as_published) << 3
            | (self.retain_handling as u8) << 4
    }
}

/// Retain Handling (MQTT 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RetainHandling {
    /// 0: send retained messages at subscribe time.
    SendAtSubscribe = 0,
    /// 1: send them only if the subscription did not exist.
    SendAtSubscribeIfNew = 1,
    /// 2: do not send them.
    DoNotSend = 2,
}

/// SUBACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    /// Packet identifier of the SUBSCRIBE.
    pub packet_id: PacketId,
    /// SUBACK properties (MQTT 5).
    pub properties: Properties,
    /// One code per filter, in order; on 3.1.x only 0, 1, 2 and 0x80.
    pub reason_codes: Vec<ReasonCode>,
}

/// UNSUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Packet identifier.
    pub packet_id: PacketId,
    /// UNSUBSCRIBE properties (MQTT 5): user properties.
    pub properties: Properties,
    /// At least one well-formed topic filter.
    pub filters: Vec<String>,
}

/// UNSUBACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    /// Packet identifier of the UNSUBSCRIBE.
    pub packet_id: PacketId,
    /// UNSUBACK properties (MQTT 5).
    pub properties: Properties,
    /// One code per filter on MQTT 5 (at least one); empty on 3.1.x, which has no codes.
    pub reason_codes: Vec<ReasonCode>,
}

/// DISCONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    /// Reason code (MQTT 5; success on 3.1.x).
    pub reason_code: ReasonCode,
    /// DISCONNECT properties (MQTT 5).
    pub properties: Properties,
}

impl Disconnect {
    /// A DISCONNECT with `reason_code` and no properties.
    pub fn new(reason_code: ReasonCode) -> Disconnect {
        Disconnect {
            reason_code,
            properties: Properties::default(),
        }
    }
}

/// AUTH (MQTT 5 only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// Success, Continue authentication or Re-authenticate.
    pub reason_code: ReasonCode,
    /// AUTH properties: authentication method and data, reason string, user properties.
    pub properties: Properties,
}

impl Packet {
    /// The packet's type.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::PubRec(_) => PacketType::PubRec,
            Packet::PubRel(_) => PacketType::PubRel,
            Packet::PubComp(_) => PacketType::PubComp,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubAck(_) => PacketType::UnsubAck,
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            Packet::Disconnect(_) => PacketType::Disconnect,
            Packet::Auth(_) => PacketType::Auth,
        }
    }

    /// Appends the whole packet (fixed header, variable header, payload) to `out` and returns
    /// the number of bytes written. `version` is the connection's protocol version; a CONNECT
    /// uses its own [`Connect::protocol_version`] instead. On error nothing is appended.
    pub fn encode(
        &self,
        version: ProtocolVersion,
        out: &mut Vec<u8>,
    ) -> Result<usize, EncodeError> {
        let remaining = self.remaining_len(version)?;
        let start = out.len();
        out.push(self.first_byte());
        let written = wire::put_variable_byte_integer(out, remaining, "remaining length")
            .and_then(|()| self.write_body(version, out));
        if let Err(e) = written {
            out.truncate(start);
            return Err(e);
        }
        let len = out.len() - start;
        debug_assert_eq!(
            len,
            1 + wire::variable_byte_integer_len(remaining) + remaining
        );
        Ok(len)
    }

    /// The number of bytes [`Packet::encode`] would write, to compare with a peer's Maximum
    /// Packet Size before sending.
    pub fn encoded_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        let remaining = self.remaining_len(version)?;
        Ok(1 + wire::variable_byte_integer_len(remaining) + remaining)
    }

    fn remaining_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        let mut counter = Counter::default();
        self.write_body(version, &mut counter)?;
        if counter.0 > wire::VARIABLE_BYTE_INTEGER_MAX as usize {
            return Err(EncodeError::VariableByteIntegerTooLarge {
                what: "remaining length",
                value: counter.0,
            });
        }
        Ok(counter.0)
    }

    fn first_byte(&self) -> u8 {
        let flags = match self {
            Packet::Publish(p) => u8::from(p.dup) << 3 | (p.qos as u8) << 1 | u8::from(p.retain),
            Packet::PubRel(_) | Packet::Subscribe(_) | Packet::Unsubscribe(_) => 0b0010,
            _ => 0,
        };
        (self.packet_type() as u8) << 4 | flags
    }

    /// Decodes the body (everything after the remaining length) of a packet whose first byte
    /// has been checked by [`PacketType::from_first_byte`]. The whole body must be consumed.
    pub(crate) fn decode_body(
        packet_type: PacketType,
        flags: u8,
        body: &[u8],
        (version, spares): (ProtocolVersion, &mut Spares),
    ) -> Result<Packet, DecodeError> {
        let mut r = Reader::new(body);
        let r = &mut r;
        let v5 = version.is_v5();
        let packet = match packet_type {
            PacketType::Connect => Packet::Connect(Box::new(decode_connect(r)?)),
            PacketType::ConnAck => {
                let ack_flags = r.u8("acknowledge flags")?;
                if ack_flags & 0xFE != 0 {
                    return Err(DecodeError::InvalidConnAckFlags(ack_flags));
                }
                let reason_code = reason_code(r, packet_type, v5)?;
                let session_present = ack_flags & 0x01 != 0;
                if session_present && reason_code != ReasonCode::SUCCESS {
                    return Err(DecodeError::SessionPresentOnFailure(reason_code.0));
                }
                Packet::ConnAck(ConnAck {
                    session_present,
                    reason_code,
                    properties: properties(r, packet_type, v5)?,
                })
            }
            PacketType::Publish => Packet::Publish(decode_publish(flags, r, v5, spares)?),
            PacketType::PubAck => Packet::PubAck(decode_pub_response(r, packet_type, v5)?),
            PacketType::PubRec => Packet::PubRec(decode_pub_response(r, packet_type, v5)?),
            PacketType::PubRel => Packet::PubRel(decode_pub_response(r, packet_type, v5)?),
            PacketType::PubComp => Packet::PubComp(decode_pub_response(r, packet_type, v5)?),
            PacketType::Subscribe => {
                let packet_id = packet_id(r, packet_type)?;
                let properties = properties(r, packet_type, v5)?;
                let mut subscriptions = Vec::new();
                while !r.is_empty() {
                    let filter = topic_filter(r)?;
                    let options =
                        SubscriptionOptions::decode(r.u8("subscription options")?, version)?;
                    if options.no_local && is_shared_filter(&filter) {
                        return Err(DecodeError::NoLocalOnSharedSubscription(filter));
                    }
                    subscriptions.push(Subscription { filter, options });
                }
                if subscriptions.is_empty() {
                    return Err(DecodeError::NoTopicFilters(packet_type));
                }
                Packet::Subscribe(Subscribe {
                    packet_id,
                    properties,
                    subscriptions,
                })
            }
            PacketType::SubAck => {
                let packet_id = packet_id(r, packet_type)?;
                let properties = properties(r, packet_type, v5)?;
                let reason_codes = reason_codes(r, packet_type, v5)?;
                Packet::SubAck(SubAck {
                    packet_id,
                    properties,
                    reason_codes,
                })
            }
            PacketType::Unsubscribe => {
                let packet_id = packet_id(r, packet_type)?;
                let properties = properties(r, packet_type, v5)?;
                let mut filters = Vec::new();
                while !r.is_empty() {
                    filters.push(topic_filter(r)?);
                }
                if filters.is_empty() {
                    return Err(DecodeError::NoTopicFilters(packet_type));
                }
                Packet::Unsubscribe(Unsubscribe {
                    packet_id,
                    properties,
                    filters,
                })
            }
            PacketType::UnsubAck => {
                let packet_id = packet_id(r, packet_type)?;
                let properties = properties(r, packet_type, v5)?;
                // 3.1.x UNSUBACK has no payload; trailing bytes are caught below.
                let reason_codes = if v5 {
                    reason_codes(r, packet_type, v5)?
                } else {
                    Vec::new()
                };
                Packet::UnsubAck(UnsubAck {
                    packet_id,
                    properties,
                    reason_codes,
                })
            }
            PacketType::PingReq => Packet::PingReq,
            PacketType::PingResp => Packet::PingResp,
            PacketType::Disconnect => {
                let (reason_code, properties) = optional_tail(r, packet_type, v5)?;
                Packet::Disconnect(Disconnect {
                    reason_code,
                    properties,
                })
            }
            PacketType::Auth => {
                let (reason_code, properties) = optional_tail(r, packet_type, v5)?;
                Packet::Auth(Auth {
                    reason_code,
                    properties,
                })
            }
        };
        if !r.is_empty() {
            return Err(DecodeError::TrailingBytes(r.len(), packet_type));
        }
        Ok(packet)
    }

    fn write_body(&self, version: ProtocolVersion, out: &mut impl Sink) -> Result<(), EncodeError> {
        let v5 = version.is_v5();
        let packet_type = self.packet_type();
        match self {
            Packet::Connect(c) => write_connect(c, out),
            Packet::ConnAck(c) => {
                check_reason_code(packet_type, c.reason_code, v5)?;
                wire::put_u8(out, c.session_present.into());
                wire::put_u8(out, c.reason_code.0);
                put_properties(out, &c.properties, packet_type, v5)
            }
            Packet::Publish(p) => p.borrowed().write_body(v5, out),
            Packet::PubAck(r) | Packet::PubRec(r) | Packet::PubRel(r) | Packet::PubComp(r) => {
                wire::put_u16(out, r.packet_id.get());
                put_optional_tail(out, r.reason_code, &r.properties, packet_type, v5, true)
            }
            Packet::Subscribe(s) => {
                if s.subscriptions.is_empty() {
                    return Err(EncodeError::Empty(packet_type));
                }
                wire::put_u16(out, s.packet_id.get());
                put_properties(out, &s.properties, packet_type, v5)?;
                for sub in &s.subscriptions {
                    if !v5 && sub.options != SubscriptionOptions::qos(sub.options.qos) {
                        return Err(EncodeError::NeedsV5("subscription options"));
                    }
                    wire::put_str(out, &sub.filter, "topic filter")?;
                    wire::put_u8(out, sub.options.to_byte());
                }
                Ok(())
            }
            Packet::SubAck(s) => {
                if s.reason_codes.is_empty() {
                    return Err(EncodeError::Empty(packet_type));
                }
                wire::put_u16(out, s.packet_id.get());
                put_properties(out, &s.properties, packet_type, v5)?;
                for &code in &s.reason_codes {
                    check_reason_code(packet_type, code, v5)?;
                    wire::put_u8(out, code.0);
                }
                Ok(())
            }
            Packet::Unsubscribe(u) => {
                if u.filters.is_empty() {
                    return Err(EncodeError::Empty(packet_type));
                }
                wire::put_u16(out, u.packet_id.get());
                put_properties(out, &u.properties, packet_type, v5)?;
                for filter in &u.filters {
                    wire::put_str(out, filter, "topic filter")?;
                }
                Ok(())
            }
            Packet::UnsubAck(u) => {
                wire::put_u16(out, u.packet_id.get());
                put_properties(out, &u.properties, packet_type, v5)?;
                if !v5 {
                    if !u.reason_codes.is_empty() {
                        return Err(EncodeError::NeedsV5("UNSUBACK reason codes"));
                    }
                    return Ok(());
                }
                if u.reason_codes.is_empty() {
                    return Err(EncodeError::Empty(packet_type));
                }
                for &code in &u.reason_codes {
                    check_reason_code(packet_type, code, v5)?;
                    wire::put_u8(out, code.0);
                }
                Ok(())
            }
            Packet::PingReq | Packet::PingResp => Ok(()),
            Packet::Disconnect(d) => {
                put_optional_tail(out, d.reason_code, &d.properties, packet_type, v5, true)
            }
            Packet::Auth(a) => {
                if !v5 {
                    return Err(EncodeError::NeedsV5("AUTH"));
                }
                put_optional_tail(out, a.reason_code, &a.properties, packet_type, v5, false)
            }
        }
    }
}

fn decode_connect(r: &mut Reader<'_>) -> Result<Connect, DecodeError> {
    let name = r.str("protocol name")?;
    let level = r.u8("protocol level")?;
    let protocol_version = match (name, level) {
        ("MQTT", 4) => ProtocolVersion::V3_1_1,
        ("MQTT", 5) => ProtocolVersion::V5,
        ("MQIsdp", 3) => ProtocolVersion::V3_1,
        _ => {
            return Err(DecodeError::UnsupportedProtocol {
                name: name.to_owned(),
                level,
            });
        }
    };
    let v5 = protocol_version.is_v5();
    let flags = r.u8("connect flags")?;
    let will_flag = flags & 0x04 != 0;
    let will_qos = (flags >> 3) & 0x03;
    let will_retain = flags & 0x20 != 0;
    let password_flag = flags & 0x40 != 0;
    let username_flag = flags & 0x80 != 0;
    let reserved = flags & 0x01 != 0;
    let will_bits_without_will = !will_flag && (will_qos != 0 || will_retain);
    // 3.1.x requires a user name with a password; MQTT 5 allows a password alone.
    let password_alone = !v5 && password_flag && !username_flag;
    if reserved || will_bits_without_will || password_alone {
        return Err(DecodeError::InvalidConnectFlags(flags));
    }
    let will_qos = QoS::try_from(will_qos)?;
    let keep_alive = r.u16("keep alive")?;
    let properties = properties(r, PacketType::Connect, v5)?;
    let client_id = r.string("client identifier")?;
    let will = if will_flag {
        let properties = if v5 {
            Properties::decode(r, Context::Will)?
        } else {
            Properties::default()
        };
        let topic = r.string("will topic")?;
        if topic.is_empty() || !is_valid_topic_name(&topic) {
            return Err(DecodeError::InvalidTopicName(topic));
        }
        let payload = r.binary("will payload")?.to_vec();
        Some(Will {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            properties,
        })
    } else {
        None
    };
    let username = if username_flag {
        Some(r.string("user name")?)
    } else {
        None
    };
    let password = if password_flag {
        Some(r.binary("password")?.to_vec())
    } else {
        None
    };
    Ok(Connect {
        protocol_version,
        clean_start: flags & 0x02 != 0,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    })
}

fn write_connect(c: &Connect, out: &mut impl Sink) -> Result<(), EncodeError> {
    let version = c.protocol_version;
    let v5 = version.is_v5();
    if !v5 && c.password.is_some() && c.username.is_none() {
        return Err(EncodeError::NeedsV5("a password without a user name"));
    }
    wire::put_str(out, version.protocol_name(), "protocol name")?;
    wire::put_u8(out, version.level());
    let mut flags = u8::from(c.clean_start) << 1;
    if let Some(will) = &c.will {
        flags |= 0x04 | (will.qos as u8) << 3 | u8::from(will.retain) << 5;
    }
    flags |= u8::from(c.password.is_some()) << 6 | u8::from(c.username.is_some()) << 7;
    wire::put_u8(out, flags);
    wire::put_u16(out, c.keep_alive);
    put_properties(out, &c.properties, PacketType::Connect, v5)?;
    wire::put_str(out, &c.client_id, "client identifier")?;
    if let Some(will) = &c.will {
        if v5 {
            will.properties.encode(out, Context::Will)?;
        } else if !will.properties.is_empty() {
            return Err(EncodeError::NeedsV5("will properties"));
        }
        wire::put_str(out, &will.topic, "will topic")?;
        wire::put_binary(out, &will.payload, "will payload")?;
    }
    if let Some(username) = &c.username {
        wire::put_str(out, username, "user name")?;
    }
    if let Some(password) = &c.password {
        wire::put_binary(out, password, "password")?;
    }
    Ok(())
}

fn decode_publish(
    flags: u8,
    r: &mut Reader<'_>,
    v5: bool,
    spares: &mut Spares,
) -> Result<Publish, DecodeError> {
    let qos = QoS::try_from((flags >> 1) & 0x03)?;
    let topic = r.str("topic name")?;
    if !is_valid_topic_name(topic) {
        return Err(DecodeError::InvalidTopicName(topic.to_owned()));
    }
    let packet_id = match qos {
        QoS::AtMostOnce => None,
        QoS::AtLeastOnce | QoS::ExactlyOnce => Some(packet_id(r, PacketType::Publish)?),
    };
    let properties = properties(r, PacketType::Publish, v5)?;
    // An empty topic name is how MQTT 5 says "use the topic alias" (section 3.3.2.3.4).
    if topic.is_empty() && properties.topic_alias.is_none() {
        return Err(DecodeError::InvalidTopicName(String::new()));
    }
    Ok(Publish {
        dup: flags & 0x08 != 0,
        qos,
        retain: flags & 0x01 != 0,
        topic: spares.topic(topic),
        packet_id,
        properties,
        payload: spares.payload(r.rest()),
    })
}

/// PUBACK, PUBREC, PUBREL, PUBCOMP: on MQTT 5 the reason code may be left out when it is
/// success and the properties when there are none (section 3.4.2.1).
fn decode_pub_response(
    r: &mut Reader<'_>,
    packet_type: PacketType,
    v5: bool,
) -> Result<PubResponse, DecodeError> {
    let packet_id = packet_id(r, packet_type)?;
    let (reason_code, properties) = optional_tail(r, packet_type, v5)?;
    Ok(PubResponse {
        packet_id,
        reason_code,
        properties,
    })
}

/// An optional reason code, then optional properties (MQTT 5 only): PUBACK family,
/// DISCONNECT and AUTH.
fn optional_tail(
    r: &mut Reader<'_>,
    packet_type: PacketType,
    v5: bool,
) -> Result<(ReasonCode, Properties), DecodeError> {
    if !v5 || r.is_empty() {
        return Ok((ReasonCode::SUCCESS, Properties::default()));
    }
    let code = reason_code(r, packet_type, v5)?;
    let properties = if r.is_empty() {
        Properties::default()
    } else {
        Properties::decode(r, Context::Packet(packet_type))?
    };
    Ok((code, properties))
}

/// Writes the shortest form of an optional reason code and properties. `code_alone` says
/// whether the packet may end after the reason code (not AUTH).
fn put_optional_tail(
    out: &mut impl Sink,
    code: ReasonCode,
    properties: &Properties,
    packet_type: PacketType,
    v5: bool,
    code_alone: bool,
) -> Result<(), EncodeError> {
    if !v5 {
        if code != ReasonCode::SUCCESS {
            return Err(EncodeError::NeedsV5("a reason code"));
        }
        if !properties.is_empty() {
            return Err(EncodeError::NeedsV5("properties"));
        }
        return Ok(());
    }
    check_reason_code(packet_type, code, v5)?;
    if code == ReasonCode::SUCCESS && properties.is_empty() {
        return Ok(());
    }
    wire::put_u8(out, code.0);
    if properties.is_empty() && code_alone {
        return Ok(());
    }
    properties.encode(out, Context::Packet(packet_type))
}

fn packet_id(r: &mut Reader<'_>, packet_type: PacketType) -> Result<PacketId, DecodeError> {
    NonZeroU16::new(r.u16("packet identifier")?).ok_or(DecodeError::ZeroPacketId(packet_type))
}

fn properties(
    r: &mut Reader<'_>,
    packet_type: PacketType,
    v5: bool,
) -> Result<Properties, DecodeError> {
    if v5 {
        Properties::decode(r, Context::Packet(packet_type))
    } else {
        Ok(Properties::default())
    }
}

fn put_properties(
    out: &mut impl Sink,
    properties: &Properties,
    packet_type: PacketType,
    v5: bool,
) -> Result<(), EncodeError> {
    if v5 {
        properties.encode(out, Context::Packet(packet_type))
    } else if properties.is_empty() {
        Ok(())
    } else {
        Err(EncodeError::NeedsV5("properties"))
    }
}

fn reason_code(
    r: &mut Reader<'_>,
    packet_type: PacketType,
    v5: bool,
) -> Result<ReasonCode, DecodeError> {
    let code = ReasonCode(r.u8("reason code")?);
    if !reason::allowed(packet_type, code, v5) {
        return Err(DecodeError::InvalidReasonCode {
            packet: packet_type,
            code: code.0,
        });
    }
    Ok(code)
}

/// The SUBACK or MQTT 5 UNSUBACK payload: one code per byte, at least one.
fn reason_codes(
    r: &mut Reader<'_>,
    packet_type: PacketType,
    v5: bool,
) -> Result<Vec<ReasonCode>, DecodeError> {
    let mut codes = Vec::new();
    while !r.is_empty() {
        codes.push(reason_code(r, packet_type, v5)?);
    }
    if codes.is_empty() {
        return Err(DecodeError::NoReasonCodes(packet_type));
    }
    Ok(codes)
}

fn check_reason_code(
    packet_type: PacketType,
    code: ReasonCode,
    v5: bool,
) -> Result<(), EncodeError> {
    if reason::allowed(packet_type, code, v5) {
        Ok(())
    } else {
        Err(EncodeError::InvalidReasonCode {
            packet: packet_type,
            code: code.0,
        })
    }
}

fn topic_filter(r: &mut Reader<'_>) -> Result<String, DecodeError> {
    let filter = r.string("topic filter")?;
    if !is_valid_topic_filter(&filter) {
        return Err(DecodeError::InvalidTopicFilter(filter));
    }
    Ok(filter)
}
