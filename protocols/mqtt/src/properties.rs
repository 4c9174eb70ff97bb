//! MQTT 5 properties (section 2.2.2).
//!
//! All packets share one [`Properties`] struct with a field per property; which fields a packet
//! may carry is checked when decoding (a property not allowed there is a Malformed Packet,
//! section 2.2.2.2) and when encoding. Properties that may appear once are refused the second
//! time (Protocol Error); User Property repeats freely, Subscription Identifier repeats in
//! PUBLISH only. Encoding writes properties in identifier order, which is the canonical form:
//! the relative order of user properties is kept, as the specification requires.

use crate::error::{DecodeError, EncodeError};
use crate::kind::{PacketType, QoS};
use crate::wire::{self, Counter, Reader, Sink};

/// Property identifiers (section 2.2.2.2, table 2-4).
pub mod id {
    /// Payload Format Indicator (byte).
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    /// Message Expiry Interval (four byte integer).
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    /// Content Type (UTF-8 string).
    pub const CONTENT_TYPE: u8 = 0x03;
    /// Response Topic (UTF-8 string).
    pub const RESPONSE_TOPIC: u8 = 0x08;
    /// Correlation Data (binary data).
    pub const CORRELATION_DATA: u8 = 0x09;
    /// Subscription Identifier (variable byte integer).
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    /// Session Expiry Interval (four byte integer).
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    /// Assigned Client Identifier (UTF-8 string).
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    /// Server Keep Alive (two byte integer).
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    /// Authentication Method (UTF-8 string).
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    /// Authentication Data (binary data).
    pub const AUTHENTICATION_DATA: u8 = 0x16;
    /// Request Problem Information (byte).
    pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    /// Will Delay Interval (four byte integer).
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    /// Request Response Information (byte).
    pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    /// Response Information (UTF-8 string).
    pub const RESPONSE_INFORMATION: u8 = 0x1A;
    /// Server Reference (UTF-8 string).
    pub const SERVER_REFERENCE: u8 = 0x1C;
    /// Reason String (UTF-8 string).
    pub const REASON_STRING: u8 = 0x1F;
    /// Receive Maximum (two byte integer).
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    /// Topic Alias Maximum (two byte integer).
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    /// Topic Alias (two byte integer).
    pub const TOPIC_ALIAS: u8 = 0x23;
    /// Maximum QoS (byte).
    pub const MAXIMUM_QOS: u8 = 0x24;
    /// Retain Available (byte).
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    /// User Property (UTF-8 string pair).
    pub const USER_PROPERTY: u8 = 0x26;
    /// Maximum Packet Size (four byte integer).
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    /// Wildcard Subscription Available (byte).
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    /// Subscription Identifier Available (byte).
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    /// Shared Subscription Available (byte).
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
}

use id::*;

/// The properties of one packet or will; every field is absent (or empty) by default, and a
/// 3.1.x packet always has the default. Byte properties that hold 0 or 1 are `bool`s.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    /// 0x01, PUBLISH and will: `true` when the payload is UTF-8.
    pub payload_format_indicator: Option<bool>,
    /// 0x02, PUBLISH and will, seconds.
    pub message_expiry_interval: Option<u32>,
    /// 0x03, PUBLISH and will.
    pub content_type: Option<String>,
    /// 0x08, PUBLISH and will.
    pub response_topic: Option<String>,
    /// 0x09, PUBLISH and will.
    pub correlation_data: Option<Vec<u8>>,
    /// 0x0B, PUBLISH (any number) and SUBSCRIBE (at most one); each 1..=268,435,455.
    pub subscription_identifiers: Vec<u32>,
    /// 0x11, CONNECT, CONNACK and DISCONNECT, seconds.
    pub session_expiry_interval: Option<u32>,
    /// 0x12, CONNACK.
    pub assigned_client_identifier: Option<String>,
    /// 0x13, CONNACK, seconds.
    pub server_keep_alive: Option<u16>,
    /// 0x15, CONNECT, CONNACK and AUTH.
    pub authentication_method: Option<String>,
    /// 0x16, CONNECT, CONNACK and AUTH.
    pub authentication_data: Option<Vec<u8>>,
    /// 0x17, CONNECT.
    pub request_problem_information: Option<bool>,
    /// 0x18, will, seconds.
    pub will_delay_interval: Option<u32>,
    /// 0x19, CONNECT.
    pub request_response_information: Option<bool>,
    /// 0x1A, CONNACK.
    pub response_information: Option<String>,
    /// 0x1C, CONNACK and DISCONNECT.
    pub server_reference: Option<String>,
    /// 0x1F, CONNACK, the four PUBLISH acknowledgements, SUBACK, UNSUBACK, DISCONNECT, AUTH.
    pub reason_string: Option<String>,
    /// 0x21, CONNECT and CONNACK; never 0.
    pub receive_maximum: Option<u16>,
    /// 0x22, CONNECT and CONNACK.
    pub topic_alias_maximum: Option<u16>,
    /// 0x23, PUBLISH; never 0.
    pub topic_alias: Option<u16>,
    /// 0x24, CONNACK; QoS 0 or 1.
    pub maximum_qos: Option<QoS>,
    /// 0x25, CONNACK.
    pub retain_available: Option<bool>,
    /// 0x26, every packet that has properties, and will; order kept.
    pub user_properties: Vec<(String, String)>,
    /// 0x27, CONNECT and CONNACK, bytes; never 0.
    pub maximum_packet_size: Option<u32>,
    /// 0x28, CONNACK.
    pub wildcard_subscription_available: Option<bool>,
    /// 0x29, CONNACK.
    pub subscription_identifier_available: Option<bool>,
    /// 0x2A, CONNACK.
    pub shared_subscription_available: Option<bool>,
}

/// Where a property list sits: in a packet, or in the will inside CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Context {
    Packet(PacketType),
    Will,
}

impl Context {
    fn name(self) -> &'static str {
        match self {
            Context::Packet(t) => t.name(),
            Context::Will => "will properties",
        }
    }
}

impl Properties {
    /// Whether no property is set.
    pub fn is_empty(&self) -> bool {
        *self == Properties::default()
    }

    /// Reads a property length and the properties it covers.
    pub(crate) fn decode(r: &mut Reader<'_>, ctx: Context) -> Result<Properties, DecodeError> {
        let len = r.variable_byte_integer("property length")?;
        // The length is checked against the bytes present before anything is read.
        let bytes = r.take(len as usize, "property length")?;
        let mut r = Reader::new(bytes);
        let mut p = Properties::default();
        while !r.is_empty() {
            let raw = r.variable_byte_integer("property identifier")?;
            let id = u8::try_from(raw)
                .ok()
                .filter(|id| known(*id))
                .ok_or(DecodeError::UnknownProperty(raw))?;
            if !allowed(id, ctx) {
                return Err(DecodeError::PropertyNotAllowed {
                    id,
                    context: ctx.name(),
                });
            }
            let r = &mut r;
            match id {
                PAYLOAD_FORMAT_INDICATOR => set(&mut p.payload_format_indicator, id, flag(r, id)?)?,
                MESSAGE_EXPIRY_INTERVAL => {
                    set(&mut p.message_expiry_interval, id, r.u32("property")?)?
                }
                CONTENT_TYPE => set(&mut p.content_type, id, r.string("content type")?)?,
                RESPONSE_TOPIC => set(&mut p.response_topic, id, r.string("response topic")?)?,
                CORRELATION_DATA => set(
                    &mut p.correlation_data,
                    id,
                    r.binary("correlation data")?.to_vec(),
                )?,
                SUBSCRIPTION_IDENTIFIER => {
                    let value = r.variable_byte_integer("subscription identifier")?;
                    if value == 0 {
                        return Err(DecodeError::InvalidPropertyValue { id, value });
                    }
                    if ctx != Context::Packet(PacketType::Publish)
                        && !p.subscription_identifiers.is_empty()
                    {
                        return Err(DecodeError::DuplicateProperty(id));
                    }
                    p.subscription_identifiers.push(value);
                }
                SESSION_EXPIRY_INTERVAL => {
                    set(&mut p.session_expiry_interval, id, r.u32("property")?)?
                }
                ASSIGNED_CLIENT_IDENTIFIER => set(
                    &mut p.assigned_client_identifier,
                    id,
                    r.string("assigned client identifier")?,
                )?,
                SERVER_KEEP_ALIVE => set(&mut p.server_keep_alive, id, r.u16("property")?)?,
                AUTHENTICATION_METHOD => set(
                    &mut p.authentication_method,
                    id,
                    r.string("authentication method")?,
                )?,
                AUTHENTICATION_DATA => set(
                    &mut p.authentication_data,
                    id,
                    r.binary("authentication data")?.to_vec(),
                )?,
                REQUEST_PROBLEM_INFORMATION => {
                    set(&mut p.request_problem_information, id, flag(r, id)?)?
                }
                WILL_DELAY_INTERVAL => set(&mut p.will_delay_interval, id, r.u32("property")?)?,
                REQUEST_RESPONSE_INFORMATION => {
                    set(&mut p.request_response_information, id, flag(r, id)?)?
                }
                RESPONSE_INFORMATION => set(
                    &mut p.response_information,
                    id,
                    r.string("response information")?,
                )?,
                SERVER_REFERENCE => {
                    set(&mut p.server_reference, id, r.string("server reference")?)?
                }
                REASON_STRING => set(&mut p.reason_string, id, r.string("reason string")?)?,
                RECEIVE_MAXIMUM => set(&mut p.receive_maximum, id, non_zero_u16(r, id)?)?,
                TOPIC_ALIAS_MAXIMUM => set(&mut p.topic_alias_maximum, id, r.u16("property")?)?,
                TOPIC_ALIAS => set(&mut p.topic_alias, id, non_zero_u16(r, id)?)?,
                MAXIMUM_QOS => {
                    let qos = match r.u8("property")? {
                        0 => QoS::AtMostOnce,
                        1 => QoS::AtLeastOnce,
                        value => {
                            return Err(DecodeError::InvalidPropertyValue {
                                id,
                                value: value.into(),
                            });
                        }
                    };
                    set(&mut p.maximum_qos, id, qos)?
                }
                RETAIN_AVAILABLE => set(&mut p.retain_available, id, flag(r, id)?)?,
                USER_PROPERTY => {
                    let key = r.string("user property name")?;
                    let value = r.string("user property value")?;
                    p.user_properties.push((key, value));
                }
                MAXIMUM_PACKET_SIZE => {
                    let value = r.u32("property")?;
                    if value == 0 {
                        return Err(DecodeError::InvalidPropertyValue { id, value });
                    }
                    set(&mut p.maximum_packet_size, id, value)?
                }
                WILDCARD_SUBSCRIPTION_AVAILABLE => {
                    set(&mut p.wildcard_subscription_available, id, flag(r, id)?)?
                }
                SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
                    set(&mut p.subscription_identifier_available, id, flag(r, id)?)?
                }
                SHARED_SUBSCRIPTION_AVAILABLE => {
                    set(&mut p.shared_subscription_available, id, flag(r, id)?)?
                }
                _ => return Err(DecodeError::UnknownProperty(raw)),
            }
        }
        Ok(p)
    }

    /// Writes the property length and the properties, in identifier order.
    pub(crate) fn encode(&self, out: &mut impl Sink, ctx: Context) -> Result<(), EncodeError> {
        let mut counter = Counter::default();
        self.write(&mut counter, ctx)?;
        wire::put_variable_byte_integer(out, counter.0, "property length")?;
        self.write(out, ctx)
    }

    fn write(&self, out: &mut impl Sink, ctx: Context) -> Result<(), EncodeError> {
        if let Some(v) = self.payload_format_indicator {
            head(out, PAYLOAD_FORMAT_INDICATOR, ctx)?;
            wire::put_u8(out, v.into());
        }
        if let Some(v) = self.message_expiry_interval {
            head(out, MESSAGE_EXPIRY_INTERVAL, ctx)?;
            wire::put_u32(out, v);
        }
        if let Some(v) = &self.content_type {
            head(out, CONTENT_TYPE, ctx)?;
            wire::put_str(out, v, "content type")?;
        }
        if let Some(v) = &self.response_topic {
            head(out, RESPONSE_TOPIC, ctx)?;
            wire::put_str(out, v, "response topic")?;
        }
        if let Some(v) = &self.correlation_data {
            head(out, CORRELATION_DATA, ctx)?;
            wire::put_binary(out, v, "correlation data")?;
        }
        for &v in &self.subscription_identifiers {
            head(out, SUBSCRIPTION_IDENTIFIER, ctx)?;
            wire::put_variable_byte_integer(out, v as usize, "subscription identifier")?;
        }
        if let Some(v) = self.session_expiry_interval {
            head(out, SESSION_EXPIRY_INTERVAL, ctx)?;
            wire::put_u32(out, v);
        }
        if let Some(v) = &self.assigned_client_identifier {
            head(out, ASSIGNED_CLIENT_IDENTIFIER, ctx)?;
            wire::put_str(out, v, "assigned client identifier")?;
        }
        if let Some(v) = self.server_keep_alive {
            head(out, SERVER_KEEP_ALIVE, ctx)?;
            wire::put_u16(out, v);
        }
        if let Some(v) = &self.authentication_method {
            head(out, AUTHENTICATION_METHOD, ctx)?;
            wire::put_str(out, v, "authentication method")?;
        }
        if let Some(v) = &self.authentication_data {
            head(out, AUTHENTICATION_DATA, ctx)?;
            wire::put_binary(out, v, "authentication data")?;
        }
        if let Some(v) = self.request_problem_information {
            head(out, REQUEST_PROBLEM_INFORMATION, ctx)?;
            wire::put_u8(out, v.into());
        }
        if let Some(v) = self.will_delay_interval {
            head(out, WILL_DELAY_INTERVAL, ctx)?;
            wire::put_u32(out, v);
        }
        if let Some(v) = self.request_response_information {
            head(out, REQUEST_RESPONSE_INFORMATION, ctx)?;
            wire::put_u8(out, v.into());
        }
        if let Some(v) = &self.response_information {
            head(out, RESPONSE_INFORMATION, ctx)?;
            wire::put_str(out, v, "response information")?;
        }
        if let Some(v) = &self.server_reference {
            head(out, SERVER_REFERENCE, ctx)?;
            wire::put_str(out, v, "server reference")?;
        }
        if let Some(v) = &self.reason_string {
            head(out, REASON_STRING, ctx)?;
            wire::put_str(out, v, "reason string")?;
        }
        if let Some(v) = self.receive_maximum {
            head(out, RECEIVE_MAXIMUM, ctx)?;
            wire::put_u16(out, v);
        }
        if let Some(v) = self.topic_alias_maximum {
            head(out, TOPIC_ALIAS_MAXIMUM, ctx)?;
            wire::put_u16(out, v);
        }
        if let Some(v) = self.topic_alias {
            head(out, TOPIC_ALIAS, ctx)?;
            wire::put_u16(out, v);
        }
        if let Some(v) = self.maximum_qos {
            head(out, MAXIMUM_QOS, ctx)?;
            wire::put_u8(out, v as u8);
        }
        if let Some(v) = self.retain_available {
            head(out, RETAIN_AVAILABLE, ctx)?;
            wire::put_u8(out, v.into());
        }
        for (key, value) in &self.user_properties {
            head(out, USER_PROPERTY, ctx)?;
            wire::put_str(out, key, "user property name")?;
            wire::put_str(out, value, "user property value")?;
        }
        if let Some(v) = self.maximum_packet_size {
            head(out, MAXIMUM_PACKET_SIZE, ctx)?;
            wire::put_u32(out, v);
        }
        if let Some(v) = self.wildcard_subscription_available {
            head(out, WILDCARD_SUBSCRIPTION_AVAILABLE, ctx)?;
            wire::put_u8(out, v.into());
        }
        if let Some(v) = self.subscription_identifier_available {
            head(out, SUBSCRIPTION_IDENTIFIER_AVAILABLE, ctx)?;
            wire::put_u8(out, v.into());
        }
        if let Some(v) = self.shared_subscription_available {
            head(out, SHARED_SUBSCRIPTION_AVAILABLE, ctx)?;
            wire::put_u8(out, v.into());
        }
        Ok(())
    }
}

/// Checks that `ctx` may carry property `id` and writes the identifier (one byte: every
/// identifier is below 128, so its variable byte integer is the byte itself).
fn head(out: &mut impl Sink, id: u8, ctx: Context) -> Result<(), EncodeError> {
    if !allowed(id, ctx) {
        return Err(EncodeError::PropertyNotAllowed {
            id,
            context: ctx.name(),
        });
    }
    wire::put_u8(out, id);
    Ok(())
}

fn set<T>(slot: &mut Option<T>, id: u8, value: T) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::DuplicateProperty(id));
    }
    *slot = Some(value);
    Ok(())
}

fn flag(r: &mut Reader<'_>, id: u8) -> Result<bool, DecodeError> {
    match r.u8("property")? {
        0 => Ok(false),
        1 => Ok(true),
        value => Err(DecodeError::InvalidPropertyValue {
            id,
            value: value.into(),
        }),
    }
}

fn non_zero_u16(r: &mut Reader<'_>, id: u8) -> Result<u16, DecodeError> {
    match r.u16("property")? {
        0 => Err(DecodeError::InvalidPropertyValue { id, value: 0 }),
        value => Ok(value),
    }
}

fn known(id: u8) -> bool {
    matches!(
        id,
        0x01..=0x03
            | 0x08
            | 0x09
            | 0x0B
            | 0x11..=0x13
            | 0x15..=0x1A
            | 0x1C
            | 0x1F
            | 0x21..=0x2A
    )
}

/// Table 2-4: which packets (and the will) may carry property `id`.
pub(crate) fn allowed(id: u8, ctx: Context) -> bool {
    use PacketType::*;
    let will = ctx == Context::Will;
    let in_packets = |packets: &[PacketType]| match ctx {
        Context::Packet(t) => packets.contains(&t),
        Context::Will => false,
    };
    match id {
        PAYLOAD_FORMAT_INDICATOR
        | MESSAGE_EXPIRY_INTERVAL
        | CONTENT_TYPE
        | RESPONSE_TOPIC
        | CORRELATION_DATA => will || in_packets(&[Publish]),
        SUBSCRIPTION_IDENTIFIER => in_packets(&[Publish, Subscribe]),
        SESSION_EXPIRY_INTERVAL => in_packets(&[Connect, ConnAck, Disconnect]),
        ASSIGNED_CLIENT_IDENTIFIER
        | SERVER_KEEP_ALIVE
        | RESPONSE_INFORMATION
        | MAXIMUM_QOS
        | RETAIN_AVAILABLE
        | WILDCARD_SUBSCRIPTION_AVAILABLE
        | SUBSCRIPTION_IDENTIFIER_AVAILABLE
        | SHARED_SUBSCRIPTION_AVAILABLE => in_packets(&[ConnAck]),
        AUTHENTICATION_METHOD | AUTHENTICATION_DATA => in_packets(&[Connect, ConnAck, Auth]),
        REQUEST_PROBLEM_INFORMATION | REQUEST_RESPONSE_INFORMATION => in_packets(&[Connect]),
        WILL_DELAY_INTERVAL => will,
        SERVER_REFERENCE => in_packets(&[ConnAck, Disconnect]),
        REASON_STRING => in_packets(&[
            ConnAck, PubAck, PubRec, PubRel, PubComp, SubAck, UnsubAck, Disconnect, Auth,
        ]),
        RECEIVE_MAXIMUM | TOPIC_ALIAS_MAXIMUM | MAXIMUM_PACKET_SIZE => {
            in_packets(&[Connect, ConnAck])
        }
        TOPIC_ALIAS => in_packets(&[Publish]),
        USER_PROPERTY => will || !in_packets(&[PingReq, PingResp]),
        _ => false,
    }
}
