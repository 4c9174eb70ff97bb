//! The server side of one MQTT connection as a state machine without I/O: bytes and the time
//! go in, packets to send (appended to a buffer the caller owns) and [`Action`]s for the broker
//! come out. The caller owns the socket, the clock and the storage.
//!
//! [`ServerSession`] walks through four states: waiting for CONNECT, waiting for the broker's
//! answer to it ([`ServerSession::accept`] or [`ServerSession::refuse`]), connected, closed.
//! Whatever the broker must decide (authenticate, store a publish, add a subscription) leaves
//! as an [`Action`], and the session writes the acknowledgement only when the broker calls back
//! ([`ServerSession::published`], [`ServerSession::subscribed`], ...). So a PUBACK or PUBREC
//! never goes out before the broker says the message is stored.
//!
//! Holding input: [`ServerSession::on_bytes`] returns how many bytes it consumed and leaves the
//! rest with the caller, who offers them again later. It stops after a CONNECT until the broker
//! answers it, and on 3.1.x, which cannot announce a receive maximum, before a QoS 1 or 2
//! PUBLISH that would make more than [`SessionLimits::receive_maximum`] publishes wait for the
//! broker, until [`ServerSession::published`] frees a slot (a QoS 2 publish waiting for the
//! client's PUBREL does not count: that PUBREL may be behind the held bytes). After either call the caller must offer the held
//! bytes again. An MQTT 5 client exceeding the receive maximum it was told is disconnected
//! with 0x93 instead, as the specification requires.
//!
//! Closing: a protocol violation writes the goodbye the version allows (MQTT 5: DISCONNECT
//! with the reason code, or CONNACK with it before the connection is accepted; 3.1.x: nothing,
//! except CONNACK return codes for a refused CONNECT), pushes [`Action::Close`] and returns the
//! [`SessionError`]. A closed session consumes no more bytes and writes nothing more.
//!
//! Bounded memory: the session holds at most [`SessionLimits::receive_maximum`] inbound packet
//! identifiers waiting for the broker (and the identifiers of QoS 2 exchanges waiting for the
//! client's PUBREL, at most 65,535), [`SessionLimits::topic_alias_max`] topic aliases each way
//! (inbound ones each a topic name from one packet, so within
//! [`SessionLimits::packet_size_bytes_max`]; outbound ones at most the client's Topic Alias
//! Maximum too), the client's receive maximum of
//! outbound packet identifiers (no payloads: an outbound message is not kept once written,
//! see [`ServerSession::deliver`]), [`SessionLimits::outbound_queue_bytes_max`] of queued
//! outbound messages and one entry per SUBSCRIBE or UNSUBSCRIBE waiting for the broker (at
//! most 65,535 packet identifiers). The session never reads the clock: every method that
//! needs the time takes `now_ms`, milliseconds on any monotonic clock the caller chooses.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::decoder::PacketDecoder;
use crate::error::{DecodeError, EncodeError};
use crate::kind::{PacketType, ProtocolVersion, QoS};
use crate::packet::{
    ConnAck, Connect, Disconnect, Packet, PacketId, PubResponse, Publish, PublishRef, SubAck,
    Subscribe, UnsubAck, Unsubscribe, Will,
};
use crate::properties::Properties;
use crate::properties::id::TOPIC_ALIAS;
use crate::reason;
use crate::reason::ReasonCode;
use crate::spares::Spares;

mod connect;
mod inbound;

/// The limits of one session. Each has a default and a documented outcome when reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionLimits {
    /// Largest packet accepted from the client, in bytes, fixed header included (default
    /// 1 MiB). A larger packet closes the connection with 0x95 (MQTT 5: sent in a DISCONNECT,
    /// or a CONNACK for a CONNECT); MQTT 5 clients are told in CONNACK (Maximum Packet Size).
    pub packet_size_bytes_max: usize,
    /// The server's Receive Maximum: QoS 1 and 2 publishes from the client not yet fully
    /// acknowledged (default 32, at least 1). MQTT 5 clients are told in CONNACK and one
    /// exceeding it is disconnected with 0x93; on 3.1.x the session stops reading instead.
    pub receive_maximum: u16,
    /// Topic aliases the client may set (default 16; 0 turns them off). Told in CONNACK
    /// (Topic Alias Maximum); an alias of 0 or above it disconnects with 0x94.
    pub topic_alias_max: u16,
    /// Bytes of outbound messages (counted as their encoded PUBLISH size) waiting for a slot in
    /// the client's receive maximum (default 1 MiB). [`ServerSession::deliver`] refuses a
    /// message that would go over it with [`DeliverError::QueueFull`].
    pub outbound_queue_bytes_max: usize,
    /// Longest client identifier accepted, in bytes (default 256). A longer one is refused
    /// with CONNACK 0x85 (3.1.x: return code 2).
    pub client_id_bytes_max: usize,
    /// Time from [`ServerSession::new`] to a complete CONNECT (default 10,000 ms). When it
    /// passes, [`ServerSession::tick`] closes the connection with [`Action::Close`].
    pub connect_timeout_ms: u64,
    /// Longest keep alive a client may ask for, seconds (default 65,535: no cap; Mosquitto's
    /// `max_keepalive`). Below 65,535, an MQTT 5 client asking for more, or for 0 (none), is
    /// held to this value and told so in CONNACK (Server Keep Alive); a 3.1.x client, which
    /// cannot be told, is refused with return code 2 (identifier rejected), as Mosquitto does.
    pub keep_alive_max_s: u16,
    /// Most levels (`/`-separated parts) in a topic name or filter (default 200, Mosquitto's
    /// limit): a PUBLISH to a topic with more closes the connection with 0x90 (Topic Name
    /// invalid); the broker refuses such a subscription (SUBACK 0x8F, 3.1.x: 0x80).
    pub topic_levels_max: usize,
}

impl Default for SessionLimits {
    fn default() -> SessionLimits {
        SessionLimits {
            packet_size_bytes_max: 1024 * 1024,
            receive_maximum: 32,
            topic_alias_max: 16,
            outbound_queue_bytes_max: 1024 * 1024,
            client_id_bytes_max: 256,
            connect_timeout_ms: 10_000,
            keep_alive_max_s: u16::MAX,
            topic_levels_max: 200,
        }
    }
}

/// Something the broker must do for the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A client asks to connect: authenticate it, find or create its session, then call
    /// [`ServerSession::accept`] or [`ServerSession::refuse`]. Input is held until then.
    Connect(Box<ConnectRequest>),
    /// An application message from the client. The topic alias, if any, is resolved and
    /// removed; every other property is kept. For QoS 1 and 2 the broker calls
    /// [`ServerSession::published`] with `packet_id` once the message is stored; a QoS 2
    /// retransmission is not reported twice.
    Publish(Publish),
    /// Add subscriptions, then call [`ServerSession::subscribed`] with one code per entry.
    Subscribe(Subscribe),
    /// Remove subscriptions, then call [`ServerSession::unsubscribed`] with one code per
    /// filter.
    Unsubscribe(Unsubscribe),
    /// An outbound QoS 1 or 2 message needs no redelivery any more: its PUBACK (QoS 1) or
    /// PUBREC (QoS 2) came. `tag` is what the broker gave [`ServerSession::deliver_tagged`].
    Delivered {
        /// The message's tag.
        tag: u64,
    },
    /// The client released the QoS 2 publish `packet_id` (PUBREL): the broker forgets the
    /// identifier (its duplicate check), then calls [`ServerSession::completed`], which
    /// writes PUBCOMP. Also reported for an identifier this connection never saw (a resumed
    /// session's exchange from an earlier connection).
    Released {
        /// The packet identifier.
        packet_id: PacketId,
    },
    /// The client said goodbye with DISCONNECT; the connection is over.
    Disconnected {
        /// Whether the will must still be published: a DISCONNECT with any reason code but
        /// 0x00 (MQTT 5: 0x04 "with will" or an error) keeps it, 0x00 and every 3.1.x
        /// DISCONNECT discard it.
        publish_will: bool,
        /// The new Session Expiry Interval, seconds, if the DISCONNECT carries one (MQTT 5).
        session_expiry_interval_s: Option<u32>,
    },
    /// The session closed the connection: a protocol violation, a keep alive or connect
    /// timeout. The caller closes the socket after writing what is in `out`.
    Close {
        /// Why, as an MQTT 5 reason code (also for 3.1.x connections, for the log).
        reason: ReasonCode,
        /// Whether the will must be published: true once the connection was accepted.
        will_applies: bool,
    },
}

/// A CONNECT for the broker to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    /// The client's protocol version.
    pub protocol_version: ProtocolVersion,
    /// The client identifier; generated by the session when the client sent an empty one.
    pub client_id: String,
    /// Whether `client_id` was generated (see [`ServerSession::new`]); MQTT 5 clients learn it
    /// from CONNACK (Assigned Client Identifier).
    pub client_id_assigned: bool,
    /// Clean Start (MQTT 5) or Clean Session (3.1.x).
    pub clean_start: bool,
    /// Keep alive, seconds; 0 turns it off. The session enforces it.
    pub keep_alive_s: u16,
    /// Session Expiry Interval, seconds (MQTT 5); absent means 0. On 3.1.x the session lasts
    /// forever unless `clean_start`.
    pub session_expiry_interval_s: Option<u32>,
    /// The will message.
    pub will: Option<Will>,
    /// The user name.
    pub username: Option<String>,
    /// The password.
    pub password: Option<Vec<u8>>,
    /// Every CONNECT property (MQTT 5), for authentication and the broker's own limits.
    pub properties: Properties,
}

/// An application message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Topic name, non-empty.
    pub topic: String,
    /// Payload.
    pub payload: Vec<u8>,
    /// QoS, already reduced to the subscription's maximum by the broker.
    pub qos: QoS,
    /// Retain flag as it should be sent.
    pub retain: bool,
    /// PUBLISH properties (MQTT 5; must be empty on 3.1.x). Never a topic alias.
    pub properties: Properties,
    /// Sent before, to an earlier connection of the session (QoS 1 and 2): the PUBLISH
    /// carries DUP=1.
    pub dup: bool,
}

impl Message {
    /// The same message over borrowed parts.
    pub fn borrowed(&self) -> MessageRef<'_> {
        MessageRef {
            topic: &self.topic,
            payload: &self.payload,
            qos: self.qos,
            retain: self.retain,
            properties: &self.properties,
            dup: self.dup,
        }
    }
}

/// An application message for the client over borrowed parts: what the broker delivers
/// from a record it reads, copied only into the output (or into the session's queue when
/// the client's Receive Maximum makes it wait). Fields as in [`Message`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct MessageRef<'a> {
    pub topic: &'a str,
    pub payload: &'a [u8],
    pub qos: QoS,
    pub retain: bool,
    pub properties: &'a Properties,
    pub dup: bool,
}

impl MessageRef<'_> {
    /// An owned copy.
    pub fn to_message(&self) -> Message {
        Message {
            topic: self.topic.to_owned(),
            payload: self.payload.to_vec(),
            qos: self.qos,
            retain: self.retain,
            properties: self.properties.clone(),
            dup: self.dup,
        }
    }
}

/// What [`ServerSession::deliver`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Written to `out`, with this packet identifier for QoS 1 and 2.
    Sent(Option<PacketId>),
    /// Waiting for a slot in the client's receive maximum.
    Queued,
    /// Larger than the client's Maximum Packet Size, so dropped as MQTT 5 section 3.1.2.11.4
    /// requires; counted in [`ServerSession::discarded_too_large`].
    Discarded,
}

/// Why [`ServerSession::deliver`] did not take a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliverError {
    /// Queueing it would exceed [`SessionLimits::outbound_queue_bytes_max`]. The broker
    /// decides: drop it, or keep its place in the log and retry after acknowledgements.
    #[error("outbound queue full (mqtt.outbound_queue_bytes_max)")]
    QueueFull,
    /// The session is not connected (not yet accepted, or closed).
    #[error("session not connected")]
    NotConnected,
    /// The message cannot be encoded on this connection (properties on 3.1.x, a field too
    /// long): the broker built it wrong.
    #[error("message cannot be encoded: {0}")]
    Invalid(EncodeError),
}

/// The client broke the protocol; the session has closed the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// A packet could not be decoded.
    #[error("malformed packet from client: {0}")]
    Decode(#[from] DecodeError),
    /// A well-formed packet at the wrong time or with the wrong content.
    #[error("protocol violation by client: {what}")]
    Protocol {
        /// The MQTT 5 reason code sent (or that would be sent on MQTT 5).
        reason: ReasonCode,
        /// What the client did.
        what: &'static str,
    },
}

impl SessionError {
    /// The MQTT 5 reason code for the CONNACK or DISCONNECT that closes the connection.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            // A topic alias of 0 is refused by the decoder as an invalid property value, but
            // the specification names its own code for it (section 3.3.2.3.4).
            SessionError::Decode(DecodeError::InvalidPropertyValue { id, .. })
                if *id == TOPIC_ALIAS =>
            {
                ReasonCode::TOPIC_ALIAS_INVALID
            }
            SessionError::Decode(e) => e.reason_code(),
            SessionError::Protocol { reason, .. } => *reason,
        }
    }
}

/// The server side of one MQTT connection; see the module documentation.
#[derive(Debug)]
pub struct ServerSession {
    limits: SessionLimits,
    decoder: PacketDecoder,
    seed: u64,
    state: State,
    /// 3.1.1 until the CONNECT names the real version.
    version: ProtocolVersion,
    clean_start: bool,
    keep_alive_s: u16,
    /// The keep alive the server holds an MQTT 5 client to instead of the one it asked for
    /// ([`SessionLimits::keep_alive_max_s`]), for the CONNACK.
    server_keep_alive: Option<u16>,
    last_packet_ms: u64,
    connect_deadline_ms: u64,
    /// The CONNECT's Session Expiry Interval was absent or 0 (a DISCONNECT may not raise it).
    session_expiry_zero: bool,
    /// Set when the session generated the client identifier, for the CONNACK.
    assigned_client_id: Option<String>,
    /// The client's Receive Maximum: outbound QoS 1 and 2 messages in flight.
    client_receive_maximum: u16,
    /// The client's Maximum Packet Size, bytes.
    client_packet_size_max: usize,
    /// Inbound QoS 1 and 2 packet identifiers not yet released. (Hash maps keep their room
    /// as entries come and go, so a steady flow of publishes allocates nothing here.)
    inbound: HashMap<u16, Inbound>,
    /// Copies of a publish that came again while the broker stored the first: each is owed
    /// its own acknowledgement once the first is stored (a count, so a flood costs nothing).
    copies: HashMap<u16, u32>,
    /// Topic alias `n` is at index `n - 1`; grows up to `topic_alias_max`.
    aliases: Vec<Option<String>>,
    /// The client's Topic Alias Maximum (MQTT 5), for the messages the server sends.
    client_topic_alias_max: u16,
    /// The client's Request Problem Information (MQTT 5; default true): whether a reason
    /// string may go on acknowledgements.
    problem_information: bool,
    /// Topic names of the server's aliases: alias `n` is at index `n - 1`.
    out_aliases: Vec<String>,
    /// The alias index reassigned next once all are used.
    next_alias_victim: usize,
    /// Outbound QoS 1 and 2 packet identifiers waiting for the client.
    /// With each, the broker's tag.
    outbound: HashMap<u16, (Outbound, u64)>,
    next_packet_id: u16,
    /// The broker has publishes of this connection on their way to storage
    /// ([`ServerSession::set_publishes_storing`]): a SUBSCRIBE waits for them.
    publishes_storing: bool,
    /// The last [`ServerSession::on_bytes`] stopped at a SUBSCRIBE for `publishes_storing`.
    held_subscribe: bool,
    /// Messages waiting for a slot, with their encoded size and tag.
    queue: VecDeque<(Message, usize, u64)>,
    queue_bytes: usize,
    /// SUBSCRIBE (`true`) or UNSUBSCRIBE (`false`) waiting for the broker, with their entry
    /// count.
    pending: BTreeMap<u16, (bool, usize)>,
    discarded_too_large: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitingConnect,
    AwaitingAnswer,
    Connected,
    Closed,
}

/// Where an inbound QoS 1 or 2 publish stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inbound {
    /// Reported to the broker, waiting for [`ServerSession::published`].
    Qos1Storing,
    /// Reported to the broker, waiting for [`ServerSession::published`].
    Qos2Storing,
    /// PUBREC sent, waiting for PUBREL.
    Qos2Stored,
    /// PUBREL came and was reported, waiting for [`ServerSession::completed`].
    Qos2Releasing,
}

/// Which acknowledgement an outbound QoS 1 or 2 publish waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outbound {
    /// QoS 1, waiting for PUBACK.
    Qos1Sent,
    /// QoS 2, waiting for PUBREC.
    Qos2Sent,
    /// QoS 2, PUBREL sent, waiting for PUBCOMP.
    Qos2Released,
}

impl ServerSession {
    /// A session for a connection accepted at `now_ms`. `seed` makes the client identifier
    /// generated for a client that sends an empty one (`weir-` and 16 hex digits, a bijective
    /// mix of the seed): give each connection a distinct seed (a connection counter with the
    /// shard number, or a random number) and the identifiers are distinct.
    pub fn new(limits: SessionLimits, seed: u64, now_ms: u64) -> ServerSession {
        assert!(limits.receive_maximum >= 1, "receive_maximum must be >= 1");
        let decoder = PacketDecoder::new(limits.packet_size_bytes_max);
        ServerSession {
            connect_deadline_ms: now_ms.saturating_add(limits.connect_timeout_ms),
            limits,
            decoder,
            seed,
            state: State::AwaitingConnect,
            version: ProtocolVersion::V3_1_1,
            clean_start: true,
            keep_alive_s: 0,
            server_keep_alive: None,
            last_packet_ms: now_ms,
            session_expiry_zero: true,
            assigned_client_id: None,
            client_topic_alias_max: 0,
            problem_information: true,
            out_aliases: Vec::new(),
            next_alias_victim: 0,
            client_receive_maximum: u16::MAX,
            client_packet_size_max: usize::MAX,
            inbound: HashMap::new(),
            copies: HashMap::new(),
            aliases: Vec::new(),
            outbound: HashMap::new(),
            next_packet_id: 1,
            publishes_storing: false,
            held_subscribe: false,
            queue: VecDeque::new(),
            queue_bytes: 0,
            pending: BTreeMap::new(),
            discarded_too_large: 0,
        }
    }

    /// Decodes and handles the complete packets at the start of `input` and returns how many
    /// bytes it consumed; the caller keeps the rest and offers it again with more bytes (see
    /// the module documentation for when input is held). Packets to send are appended to
    /// `out`, work for the broker to `actions`.
    ///
    /// On a protocol violation the goodbye is appended to `out`, [`Action::Close`] to
    /// `actions`, and the error returned; from then on nothing is consumed.
    pub fn on_bytes(
        &mut self,
        input: &[u8],
        now_ms: u64,
        out: &mut Vec<u8>,
        actions: &mut Vec<Action>,
    ) -> Result<usize, SessionError> {
        self.on_bytes_reusing(input, now_ms, (out, actions), &mut Spares::default())
    }

    /// [`ServerSession::on_bytes`], with the publishes' topics and payloads decoded into
    /// buffers from `spares`.
    pub fn on_bytes_reusing(
        &mut self,
        input: &[u8],
        now_ms: u64,
        (out, actions): (&mut Vec<u8>, &mut Vec<Action>),
        spares: &mut Spares,
    ) -> Result<usize, SessionError> {
        let mut consumed = 0;
        self.held_subscribe = false;
        while matches!(self.state, State::AwaitingConnect | State::Connected) {
            let rest = &input[consumed..];
            let packet = match self.decoder.decode_reusing(rest, self.version, spares) {
                Ok(None) => break,
                Ok(Some((packet, used))) => {
                    if self.must_hold(&packet) {
                        self.held_subscribe = matches!(packet, Packet::Subscribe(_));
                        break;
                    }
                    if matches!(packet, Packet::Publish(_)) {
                        // Until the broker says otherwise, this publish is being stored.
                        self.publishes_storing = true;
                    }
                    consumed += used;
                    self.last_packet_ms = now_ms;
                    packet
                }
                Err(e) => {
                    let err = SessionError::Decode(e);
                    if self.state == State::AwaitingConnect {
                        self.refuse_broken_connect(&err, rest, out);
                    }
                    self.fail(&err, out, actions);
                    return Err(err);
                }
            };
            let handled = if self.state == State::AwaitingConnect {
                self.on_connect(packet, out, actions)
            } else {
                self.on_packet(packet, out, actions)
            };
            if let Err(err) = handled {
                self.fail(&err, out, actions);
                return Err(err);
            }
        }
        Ok(consumed)
    }

    /// Checks the timers: the connect timeout before CONNECT, and keep alive once connected
    /// (no packet for one and a half times the keep alive closes the connection; a keep alive
    /// of 0 never does). A timeout pushes [`Action::Close`] with 0x8D Keep Alive timeout; no
    /// packet is written, since a server does not send DISCONNECT 0x8D.
    pub fn tick(&mut self, now_ms: u64, actions: &mut Vec<Action>) {
        let Some(deadline) = self.next_timeout_ms() else {
            return;
        };
        if now_ms > deadline {
            let will_applies = self.state == State::Connected;
            self.state = State::Closed;
            actions.push(Action::Close {
                reason: ReasonCode::KEEP_ALIVE_TIMEOUT,
                will_applies,
            });
        }
    }

    /// The time after which [`ServerSession::tick`] closes the connection unless a packet
    /// arrives, if any: for the caller's timer wheel.
    pub fn next_timeout_ms(&self) -> Option<u64> {
        match self.state {
            State::AwaitingConnect => Some(self.connect_deadline_ms),
            State::Connected if self.keep_alive_s > 0 => Some(
                self.last_packet_ms
                    .saturating_add(u64::from(self.keep_alive_s) * 1500),
            ),
            _ => None,
        }
    }

    /// Accepts the CONNECT reported in [`Action::Connect`]: writes CONNACK (MQTT 5 with the
    /// server's limits and any assigned client identifier) and starts keep alive at `now_ms`.
    /// `session_present` must be false when the client asked for a clean start. The caller
    /// then offers the held input again. Unacknowledged messages of a resumed session are the
    /// caller's to deliver again with [`ServerSession::deliver`] (they get new packet
    /// identifiers).
    pub fn accept(&mut self, session_present: bool, now_ms: u64, out: &mut Vec<u8>) {
        assert_eq!(
            self.state,
            State::AwaitingAnswer,
            "accept without a CONNECT to answer"
        );
        assert!(
            !(session_present && self.clean_start),
            "session present after a clean start"
        );
        let mut properties = Properties::default();
        if self.version.is_v5() {
            properties.assigned_client_identifier = self.assigned_client_id.clone();
            properties.server_keep_alive = self.server_keep_alive;
            if self.limits.receive_maximum != u16::MAX {
                properties.receive_maximum = Some(self.limits.receive_maximum);
            }
            if self.limits.topic_alias_max > 0 {
                properties.topic_alias_maximum = Some(self.limits.topic_alias_max);
            }
            if let Ok(max) = u32::try_from(self.limits.packet_size_bytes_max) {
                properties.maximum_packet_size = Some(max);
            }
        }
        self.send(
            &Packet::ConnAck(ConnAck {
                // MQTT 3.1's CONNACK has no Session Present flag: the byte is reserved.
                session_present: session_present && self.version != ProtocolVersion::V3_1,
                reason_code: ReasonCode::SUCCESS,
                properties,
            }),
            out,
        );
        self.state = State::Connected;
        self.last_packet_ms = now_ms;
    }

    /// Refuses the CONNECT reported in [`Action::Connect`] with an MQTT 5 CONNACK failure code
    /// (mapped to the nearest 3.1.x return code on 3.1.x) and closes the session.
    pub fn refuse(&mut self, reason: ReasonCode, out: &mut Vec<u8>) {
        assert_eq!(
            self.state,
            State::AwaitingAnswer,
            "refuse without a CONNECT to answer"
        );
        assert!(
            reason.is_error() && reason::allowed(PacketType::ConnAck, reason, true),
            "{reason:?} is not a CONNACK failure code"
        );
        self.write_connack_failure(reason, out);
        self.state = State::Closed;
    }

    /// The broker stored (or failed to store) the QoS 1 or 2 publish `packet_id`: writes its
    /// PUBACK or PUBREC with `reason` (success, 0x10 no matching subscribers, or a failure).
    /// On 3.1.x, which has no negative acknowledgement, a failure closes the connection
    /// ([`Action::Close`]). Ignored once the session is closed.
    pub fn published(
        &mut self,
        packet_id: PacketId,
        reason: ReasonCode,
        out: &mut Vec<u8>,
        actions: &mut Vec<Action>,
    ) {
        self.published_because(packet_id, reason, None, out, actions);
    }

    /// As [`published`](Self::published), with a reason string for an MQTT 5 client that
    /// did not turn Request Problem Information off (dropped if the packet would exceed the
    /// client's Maximum Packet Size).
    pub fn published_because(
        &mut self,
        packet_id: PacketId,
        reason: ReasonCode,
        reason_string: Option<String>,
        out: &mut Vec<u8>,
        actions: &mut Vec<Action>,
    ) {
        if self.state == State::Closed {
            return;
        }
        assert!(
            reason::allowed(PacketType::PubAck, reason, true),
            "{reason:?} is not a PUBACK code"
        );
        let id = packet_id.get();
        let state = self.inbound.get(&id).copied();
        assert!(
            matches!(state, Some(Inbound::Qos1Storing | Inbound::Qos2Storing)),
            "published({id}) without a publish waiting for it"
        );
        if reason.is_error() && !self.version.is_v5() {
            self.state = State::Closed;
            actions.push(Action::Close {
                reason,
                will_applies: true,
            });
            return;
        }
        let mut properties = Properties::default();
        if self.version.is_v5() && self.problem_information {
            // Dropped by `send` if it makes the packet too large for the client.
            properties.reason_string = reason_string;
        }
        let response = PubResponse {
            packet_id,
            reason_code: if self.version.is_v5() {
                reason
            } else {
                ReasonCode::SUCCESS
            },
            properties,
        };
        let copies = 1 + self.copies.remove(&id).unwrap_or(0);
        let packet = if state == Some(Inbound::Qos1Storing) {
            self.inbound.remove(&id);
            Packet::PubAck(response)
        } else {
            // A failed PUBREC ends the exchange (MQTT 5 section 4.3.3); success waits for PUBREL.
            if reason.is_error() {
                self.inbound.remove(&id);
            } else {
                self.inbound.insert(id, Inbound::Qos2Stored);
            }
            Packet::PubRec(response)
        };
        for _ in 0..copies {
            self.send(&packet, out);
        }
    }

    /// The broker finished the QoS 2 exchange `packet_id` reported in [`Action::Released`]:
    /// writes PUBCOMP with `reason` (MQTT 5: success, or 0x92 if the broker did not know the
    /// identifier; 3.1.x: always success). Ignored once the session is closed.
    pub fn completed(&mut self, packet_id: PacketId, reason: ReasonCode, out: &mut Vec<u8>) {
        if self.state == State::Closed {
            return;
        }
        let id = packet_id.get();
        assert_eq!(
            self.inbound.get(&id),
            Some(&Inbound::Qos2Releasing),
            "completed({id}) without a PUBREL waiting for it"
        );
        assert!(
            reason::allowed(PacketType::PubComp, reason, true),
            "{reason:?} is not a PUBCOMP code"
        );
        self.inbound.remove(&id);
        let mut comp = PubResponse::new(packet_id);
        if self.version.is_v5() {
            comp.reason_code = reason;
        }
        self.send(&Packet::PubComp(comp), out);
    }

    /// The broker handled the SUBSCRIBE `packet_id`: writes SUBACK with one code per
    /// subscription, in order (MQTT 5 codes; mapped to 0, 1, 2 or 0x80 on 3.1.x). Ignored once
    /// the session is closed.
    pub fn subscribed(
        &mut self,
        packet_id: PacketId,
        reason_codes: &[ReasonCode],
        out: &mut Vec<u8>,
    ) {
        if self.state == State::Closed {
            return;
        }
        self.take_pending(packet_id, true, reason_codes);
        let reason_codes = reason_codes
            .iter()
            .map(|&code| {
                assert!(
                    reason::allowed(PacketType::SubAck, code, true),
                    "{code:?} is not a SUBACK code"
                );
                if self.version.is_v5() {
                    code
                } else {
                    code.to_v4_suback()
                }
            })
            .collect();
        self.send(
            &Packet::SubAck(SubAck {
                packet_id,
                properties: Properties::default(),
                reason_codes,
            }),
            out,
        );
    }

    /// The broker handled the UNSUBSCRIBE `packet_id`: writes UNSUBACK, with one code per
    /// filter on MQTT 5 (3.1.x UNSUBACK has none, so the codes are dropped). Ignored once the
    /// session is closed.
    pub fn unsubscribed(
        &mut self,
        packet_id: PacketId,
        reason_codes: &[ReasonCode],
        out: &mut Vec<u8>,
    ) {
        if self.state == State::Closed {
            return;
        }
        self.take_pending(packet_id, false, reason_codes);
        let reason_codes = if self.version.is_v5() {
            for &code in reason_codes {
                assert!(
                    reason::allowed(PacketType::UnsubAck, code, true),
                    "{code:?} is not an UNSUBACK code"
                );
            }
            reason_codes.to_vec()
        } else {
            Vec::new()
        };
        self.send(
            &Packet::UnsubAck(UnsubAck {
                packet_id,
                properties: Properties::default(),
                reason_codes,
            }),
            out,
        );
    }

    /// Sends an application message to the client. QoS 0 is written at once. QoS 1 and 2 take
    /// the next free packet identifier and a slot of the client's Receive Maximum (65,535
    /// unless its CONNECT said less); without a free slot they wait, in order, in a queue
    /// bounded by [`SessionLimits::outbound_queue_bytes_max`], and go out as the client
    /// acknowledges earlier ones. A message larger than the client's Maximum Packet Size is
    /// discarded, as MQTT 5 requires.
    ///
    /// The session keeps no copy of a message once written: if the connection drops before the
    /// client acknowledges it, the broker delivers it again (from its log cursor) on the next
    /// connection. QoS 0 bytes go straight into `out`, which the caller bounds by stopping
    /// delivery while its socket buffer is full.
    pub fn deliver(
        &mut self,
        message: Message,
        out: &mut Vec<u8>,
    ) -> Result<Delivery, DeliverError> {
        self.deliver_tagged(message.borrowed(), 0, out)
    }

    /// [`ServerSession::deliver`] with a `tag` the broker chooses: [`Action::Delivered`]
    /// reports it once the client has acknowledged a QoS 1 or 2 message (PUBACK, or PUBREC
    /// for QoS 2), and [`ServerSession::unacknowledged_tags`] lists those still waiting, so
    /// the broker knows where to deliver from again on the next connection.
    pub fn deliver_tagged(
        &mut self,
        message: MessageRef<'_>,
        tag: u64,
        out: &mut Vec<u8>,
    ) -> Result<Delivery, DeliverError> {
        if self.state != State::Connected {
            return Err(DeliverError::NotConnected);
        }
        debug_assert!(message.properties.topic_alias.is_none());
        // The size with a placeholder identifier; the real one takes the same two bytes.
        let size = publish_ref(&message, PacketId::MIN)
            .encoded_len(self.version)
            .map_err(DeliverError::Invalid)?;
        if size > self.client_packet_size_max {
            self.discarded_too_large += 1;
            return Ok(Delivery::Discarded);
        }
        if message.qos == QoS::AtMostOnce {
            self.write_publish(&message, PacketId::MIN, out);
            return Ok(Delivery::Sent(None));
        }
        if self.queue.is_empty() && self.outbound_has_room() {
            return Ok(Delivery::Sent(Some(self.send_inflight(&message, tag, out))));
        }
        if self.queue_bytes + size > self.limits.outbound_queue_bytes_max {
            return Err(DeliverError::QueueFull);
        }
        self.queue_bytes += size;
        self.queue.push_back((message.to_message(), size, tag));
        Ok(Delivery::Queued)
    }

    /// Closes the connection on the server's initiative (session taken over, shutting down,
    /// administrative action): MQTT 5 gets a DISCONNECT with `reason`, 3.1.x nothing.
    /// Publishing the will is the broker's decision. Before the CONNECT is answered, use
    /// [`ServerSession::refuse`].
    pub fn disconnect(&mut self, reason: ReasonCode, out: &mut Vec<u8>) {
        assert!(
            reason::allowed(PacketType::Disconnect, reason, true),
            "{reason:?} is not a DISCONNECT code"
        );
        if self.state == State::Connected && self.version.is_v5() {
            self.send(&Packet::Disconnect(Disconnect::new(reason)), out);
        }
        self.state = State::Closed;
    }

    /// Whether the connection is over; the caller closes the socket once `out` is written.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether the CONNECT was accepted and the connection is not closed.
    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    /// The protocol version (3.1.1 until a CONNECT arrives).
    pub fn protocol_version(&self) -> ProtocolVersion {
        self.version
    }

    /// Inbound QoS 1 and 2 publishes not yet fully acknowledged.
    pub fn inbound_inflight(&self) -> usize {
        self.inbound.len()
    }

    /// Outbound QoS 1 and 2 publishes written and not yet acknowledged by the client.
    pub fn outbound_inflight(&self) -> usize {
        self.outbound.len()
    }

    /// Tags of the outbound messages the client has not acknowledged yet (written and waiting
    /// for PUBACK or PUBREC, or queued), in no particular order.
    pub fn unacknowledged_tags(&self) -> Vec<u64> {
        let mut tags: Vec<u64> = self
            .outbound
            .values()
            .filter(|(state, _)| *state != Outbound::Qos2Released)
            .map(|(_, tag)| *tag)
            .collect();
        tags.extend(self.queue.iter().map(|(_, _, tag)| *tag));
        tags
    }

    /// Bytes of outbound messages waiting for a slot.
    pub fn queued_bytes(&self) -> usize {
        self.queue_bytes
    }

    /// Packet identifiers of outbound QoS 2 messages whose PUBREL went and whose PUBCOMP has
    /// not come: a session that outlives the connection keeps them, and its next connection
    /// sends the PUBREL again ([`ServerSession::resend_releases`]).
    pub fn awaiting_pubcomp(&self) -> Vec<u16> {
        let mut ids: Vec<u16> = (self.outbound.iter())
            .filter(|(_, (state, _))| *state == Outbound::Qos2Released)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Sends PUBREL again for the QoS 2 exchanges `ids` of a resumed session (MQTT 4.4), each
    /// holding an outbound slot until its PUBCOMP. Call right after [`ServerSession::accept`].
    pub fn resend_releases(&mut self, ids: &[u16], out: &mut Vec<u8>) {
        for id in ids.iter().filter_map(|id| PacketId::new(*id)) {
            if self
                .outbound
                .insert(id.get(), (Outbound::Qos2Released, 0))
                .is_none()
            {
                self.send(&Packet::PubRel(PubResponse::new(id)), out);
            }
        }
    }

    /// Messages discarded because they exceeded the client's Maximum Packet Size.
    pub fn discarded_too_large(&self) -> u64 {
        self.discarded_too_large
    }

    /// Whether `packet` must stay in the caller's buffer: a new QoS 1 or 2 publish on 3.1.x
    /// while the receive maximum is used up.
    /// Tells the session whether the broker is still storing publishes of this connection.
    /// While it is, a SUBSCRIBE is held: the client sees its publishes and subscriptions take
    /// effect in the order it sent them (a retained message it published before subscribing is
    /// stored, and sent as retained, before the subscription is made; a live copy of it never
    /// reaches the new subscription). The broker calls it before each [`ServerSession::on_bytes`]
    /// and feeds held input again once its stores are answered.
    pub fn set_publishes_storing(&mut self, storing: bool) {
        self.publishes_storing = storing;
    }

    /// Whether the last [`ServerSession::on_bytes`] stopped at a SUBSCRIBE because publishes
    /// were being stored.
    pub fn holding_subscribe(&self) -> bool {
        self.held_subscribe
    }

    fn must_hold(&self, packet: &Packet) -> bool {
        if matches!(packet, Packet::Subscribe(_)) {
            return self.state == State::Connected && self.publishes_storing;
        }
        let Packet::Publish(Publish {
            packet_id: Some(id),
            ..
        }) = packet
        else {
            return false;
        };
        // Only publishes waiting for the broker count: one waiting for the client's PUBREL
        // must not hold input, or a PUBREL behind the held PUBLISH could never free it.
        let storing = self
            .inbound
            .values()
            .filter(|state| matches!(state, Inbound::Qos1Storing | Inbound::Qos2Storing))
            .count();
        self.state == State::Connected
            && !self.version.is_v5()
            && !self.inbound.contains_key(&id.get())
            && storing >= usize::from(self.limits.receive_maximum)
    }

    fn add_pending(
        &mut self,
        packet_id: PacketId,
        subscribe: bool,
        count: usize,
    ) -> Result<(), SessionError> {
        if self.pending.contains_key(&packet_id.get()) {
            return Err(protocol(
                ReasonCode::PROTOCOL_ERROR,
                "packet identifier of a SUBSCRIBE or UNSUBSCRIBE still in use",
            ));
        }
        self.pending.insert(packet_id.get(), (subscribe, count));
        Ok(())
    }

    fn take_pending(&mut self, packet_id: PacketId, subscribe: bool, codes: &[ReasonCode]) {
        let entry = self.pending.remove(&packet_id.get());
        let what = if subscribe {
            "SUBSCRIBE"
        } else {
            "UNSUBSCRIBE"
        };
        assert_eq!(
            entry,
            Some((subscribe, codes.len())),
            "answer to {what} {packet_id} must match a waiting one, one code per entry"
        );
    }

    fn outbound_has_room(&self) -> bool {
        self.outbound.len() < usize::from(self.client_receive_maximum)
    }

    /// Writes a QoS 1 or 2 message under the next free packet identifier.
    fn send_inflight(&mut self, message: &MessageRef<'_>, tag: u64, out: &mut Vec<u8>) -> PacketId {
        debug_assert!(self.outbound_has_room());
        // A free identifier exists: at most 65,535 are in flight, and fewer while there is room.
        let packet_id = loop {
            let candidate = self.next_packet_id;
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            let free = PacketId::new(candidate).filter(|id| !self.outbound.contains_key(&id.get()));
            if let Some(id) = free {
                break id;
            }
        };
        let state = if message.qos == QoS::ExactlyOnce {
            Outbound::Qos2Sent
        } else {
            Outbound::Qos1Sent
        };
        self.outbound.insert(packet_id.get(), (state, tag));
        self.write_publish(message, packet_id, out);
        packet_id
    }

    /// Writes a PUBLISH for `message`, with a topic alias when the client takes them (MQTT 5
    /// Topic Alias Maximum in its CONNECT): a topic sent before under an alias goes as the
    /// alias alone; a new one takes the next alias, or once all are used the oldest one's,
    /// and is sent with its name. At most `min(client's maximum, topic_alias_max)` aliases,
    /// so the names kept are bounded by this session's own limit.
    fn write_publish(&mut self, message: &MessageRef<'_>, packet_id: PacketId, out: &mut Vec<u8>) {
        let mut publish = publish_ref(message, packet_id);
        let aliased;
        let aliases = self.client_topic_alias_max.min(self.limits.topic_alias_max);
        if aliases > 0 && self.version.is_v5() {
            match self.out_aliases.iter().position(|t| *t == message.topic) {
                Some(i) => {
                    publish.topic = "";
                    aliased = with_alias(message.properties, i);
                    publish.properties = &aliased;
                }
                None => {
                    let slot = if self.out_aliases.len() < usize::from(aliases) {
                        self.out_aliases.push(message.topic.to_owned());
                        self.out_aliases.len() - 1
                    } else {
                        let slot = self.next_alias_victim % self.out_aliases.len();
                        self.next_alias_victim = slot + 1;
                        let name = &mut self.out_aliases[slot];
                        name.clear();
                        name.push_str(message.topic);
                        slot
                    };
                    aliased = with_alias(message.properties, slot);
                    publish.properties = &aliased;
                }
            }
        }
        // The size was checked against the client's Maximum Packet Size before.
        if let Err(e) = publish.encode(self.version, out) {
            panic!("session built an unencodable {publish:?}: {e}");
        }
    }

    /// Frees an outbound slot and fills free slots from the queue.
    fn release(&mut self, id: u16, out: &mut Vec<u8>) {
        self.outbound.remove(&id);
        while self.outbound_has_room() {
            let Some((message, size, tag)) = self.queue.pop_front() else {
                break;
            };
            self.queue_bytes -= size;
            self.send_inflight(&message.borrowed(), tag, out);
        }
    }

    /// Appends a packet the session built. The session builds only packets valid for the
    /// connection's version (caller-supplied codes and messages are checked before), so a
    /// failure here is a bug in this module.
    /// Writes `packet`; nothing larger than the client's Maximum Packet Size goes (MQTT 5
    /// section 3.1.2.11.4): a packet over it is sent without its properties (a reason string,
    /// user properties; a CONNACK keeps only its code), or not at all if it still does not
    /// fit. PUBLISH sizes are checked before (see [`ServerSession::deliver_tagged`]).
    fn send(&self, packet: &Packet, out: &mut Vec<u8>) {
        let start = out.len();
        if let Err(e) = packet.encode(self.version, out) {
            panic!("session built an unencodable {packet:?}: {e}");
        }
        if out.len() - start <= self.client_packet_size_max {
            return;
        }
        out.truncate(start);
        let mut lean = packet.clone();
        match &mut lean {
            Packet::ConnAck(ConnAck { properties, .. })
            | Packet::SubAck(SubAck { properties, .. })
            | Packet::UnsubAck(UnsubAck { properties, .. }) => *properties = Properties::default(),
            Packet::PubAck(r) | Packet::PubRec(r) | Packet::PubRel(r) | Packet::PubComp(r) => {
                r.properties = Properties::default();
            }
            Packet::Disconnect(d) => d.properties = Properties::default(),
            _ => {}
        }
        if (lean.encoded_len(self.version)).is_ok_and(|n| n <= self.client_packet_size_max) {
            self.send(&lean, out);
        }
    }

    /// Closes the session for `err`: an MQTT 5 DISCONNECT once connected, then the action.
    fn fail(&mut self, err: &SessionError, out: &mut Vec<u8>, actions: &mut Vec<Action>) {
        let reason = err.reason_code();
        let connected = self.state == State::Connected;
        if connected && self.version.is_v5() {
            let reason = if reason::allowed(PacketType::Disconnect, reason, true) {
                reason
            } else {
                ReasonCode::PROTOCOL_ERROR
            };
            self.send(&Packet::Disconnect(Disconnect::new(reason)), out);
        }
        self.state = State::Closed;
        actions.push(Action::Close {
            reason,
            will_applies: connected,
        });
    }
}

fn protocol(reason: ReasonCode, what: &'static str) -> SessionError {
    SessionError::Protocol { reason, what }
}

fn publish_ref<'a>(message: &MessageRef<'a>, packet_id: PacketId) -> PublishRef<'a> {
    PublishRef {
        dup: message.dup && message.qos != QoS::AtMostOnce,
        qos: message.qos,
        retain: message.retain,
        topic: message.topic,
        packet_id: (message.qos != QoS::AtMostOnce).then_some(packet_id),
        properties: message.properties,
        payload: message.payload,
    }
}

/// `properties` with topic alias `slot + 1`.
fn with_alias(properties: &Properties, slot: usize) -> Properties {
    Properties {
        topic_alias: u16::try_from(slot + 1).ok(),
        ..properties.clone()
    }
}
