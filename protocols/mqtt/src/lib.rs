//! MQTT 3.1, 3.1.1 and 5.0 packets for Weir, without I/O: bytes in, [`Packet`] values out, and
//! back into a caller's buffer.
//!
//! - [`PacketDecoder`] finds the next packet at the start of a receive buffer: `Ok(None)` means
//!   "need more bytes", which is a normal state. It checks the first byte (type and reserved
//!   flags) as soon as it arrives and the whole packet size against a configured maximum as
//!   soon as the remaining length is complete (at most 5 bytes), before the body is buffered.
//! - [`Packet`] and its parts ([`Connect`], [`Publish`], [`Subscribe`], ...) are owned values;
//!   [`Packet::encode`] appends one to a `Vec<u8>` and computes the remaining length.
//!   The protocol version of the connection ([`ProtocolVersion`]) is an input to decoding and
//!   encoding every packet but CONNECT, which names its own.
//! - [`Properties`] holds MQTT 5 properties, checked per packet type; [`properties::id`]
//!   names their identifiers. [`topic`] has the topic name and filter rules.
//! - [`DecodeError`] says what the peer got wrong and maps to the MQTT 5 [`ReasonCode`] to
//!   close the connection with ([`DecodeError::reason_code`]); [`EncodeError`] says what the
//!   caller built wrong.
//!
//! What decoding checks: every length (remaining length, strings, binary data, property
//! length) against the bytes actually present, so no count from the wire sizes an allocation
//! beyond the packet; variable byte integers of at most 4 bytes; strings are UTF-8 without
//! U+0000; reserved flag bits in the fixed header, CONNECT, CONNACK and subscription options;
//! QoS 3; packet identifier 0; protocol name and level; topic names without wildcards and
//! well-formed topic filters (including `$share/`); at least one filter in SUBSCRIBE and
//! UNSUBSCRIBE; reason codes valid for their packet; properties allowed for their packet, not
//! repeated (except User Property, and Subscription Identifier in PUBLISH) and within their
//! value ranges; no bytes after the last field.
//!
//! What is left to the session state machine above: the order of packets (CONNECT first and
//! once), topic alias mapping, receive maximum and inflight windows, client identifier rules,
//! the payload format indicator's UTF-8 promise.
//!
//! [`ServerSession`] is that state machine for the server side of one connection, also without
//! I/O or a clock: bytes and `now_ms` in, packets appended to the caller's buffer and
//! [`Action`]s for the broker out; acknowledgements wait for the broker's answers. Its limits
//! are [`SessionLimits`].
//!
//! Invariant: decoding allocates only copies of bytes present in the packet (strings, binary
//! data, the payload) and vectors growing one present element at a time; a test counts the
//! allocations. Decoded values are owned rather than borrowed from the receive buffer, so a
//! session can keep them after the buffer moves on; the cost is one copy of each payload.
//!
//! [`websocket`] is the WebSocket layer MQTT over WebSocket runs on: the HTTP upgrade and
//! the frames, also without I/O.
//!
//! MQTT 3.1 ("MQIsdp", level 3) is accepted and encoded exactly like 3.1.1 apart from the
//! protocol name and level in CONNECT, the client identifier a CONNECT must carry, and
//! CONNACK's first byte (reserved in 3.1: no Session Present flag).

mod decoder;
mod error;
mod kind;
mod packet;
pub mod properties;
mod reason;
mod session;
mod spares;
pub mod topic;
pub mod websocket;
mod wire;

pub use decoder::{PACKET_SIZE_BYTES_LIMIT, PacketDecoder};
pub use error::{DecodeError, EncodeError};
pub use kind::{PacketType, ProtocolVersion, QoS};
pub use packet::{
    Auth, ConnAck, Connect, Disconnect, Packet, PacketId, PubResponse, Publish, PublishRef,
    RetainHandling, SubAck, Subscribe, Subscription, SubscriptionOptions, UnsubAck, Unsubscribe,
    Will,
};
pub use properties::Properties;
pub use reason::ReasonCode;
pub use session::{
    Action, ConnectRequest, DeliverError, Delivery, Message, MessageRef, ServerSession,
    SessionError, SessionLimits,
};
pub use spares::Spares;
pub use wire::VARIABLE_BYTE_INTEGER_MAX;

#[cfg(test)]
mod tests;
