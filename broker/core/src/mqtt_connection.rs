//! The broker side of one MQTT connection, sans-IO: what the broker does with a
//! [`ServerSession`]'s actions, on top of `weir-mqtt`'s session (which stays the protocol's
//! state machine). [`MqttConnection`] takes bytes, the time ([`Now`]: the monotonic
//! milliseconds for keep-alive and timeouts, the wall clock for record timestamps and message
//! expiry) and the results of the work it asked for, and returns output bytes and typed work
//! ([`MqttWork`]) for the server: store a message, take a client id over, load or save a
//! session, join or leave a shared subscription, publish a will later. It reads no clock and
//! does no I/O; the server owns the sockets, the log's writer and the cross-shard tables.
//!
//! - **Publish**: every PUBLISH (QoS 0 too) and every will becomes [`MqttWork::Store`] with
//!   its wall-clock timestamp; PUBACK and PUBREC are written only when the store's outcome
//!   comes back ([`MqttConnection::stored`]), i.e. after the covering sync. A QoS 2 publish
//!   carries a duplicate-check key (client id, packet identifier) that the log keeps until the
//!   client's PUBREL ([`MqttWork::Release`]); PUBCOMP goes out once the key is durably gone
//!   ([`MqttConnection::released`]). The connection is not read while its CONNECT waits for
//!   an answer or its publishes waiting for the log reach the receive maximum (or
//!   [`STORES_IN_FLIGHT_MAX`]).
//! - **Delivery follows the log**: the server offers each new record to the connection
//!   ([`MqttConnection::offer`]); a QoS 1 or 2 message it has no room for is not copied
//!   anywhere: the connection falls behind on the partition and catches up from the log as
//!   acknowledgements and its socket make room ([`MqttConnection::behind`],
//!   [`MqttConnection::advance`]). QoS 0 messages without room are dropped and counted.
//! - **Persistent sessions** (MQTT 5 Session Expiry Interval > 0, or 3.1.x Clean Session 0)
//!   are saved when they connect, subscribe or unsubscribe, and when their connection ends
//!   ([`SessionSnapshot`]): subscriptions and, per partition, the first offset the client
//!   has not acknowledged; the next connection resumes from that cursor
//!   ([`MqttConnection::resume`]).
//! - **Shared subscriptions** `$share/{group}/{filter}`: each message goes to one member,
//!   chosen from its partition and offset among the members every shard knows ([`Shares`]).
//! - **Wills** are published when a connection ends without a normal DISCONNECT, after their
//!   Will Delay Interval (or when the session ends, if sooner) unless the client comes back.
//!
//! The parts: `subscriptions.rs` (a connection's subscriptions and the shared-subscription
//! members), `actions.rs` (the session's actions: connect, publish, subscribe, unsubscribe,
//! release, disconnect), `delivery.rs` (offering the log's messages, catching up).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use weir_mqtt::{Action, ReasonCode, ServerSession, SessionLimits, Will, topic};

use crate::acl::{Access, AclSource, Client as AclClient};
use crate::auth::{Authenticator, CertificateIdentity};
use crate::log_store::{DedupKey, LogStore, PartitionId};
use crate::mqtt_kafka::{self as mapping, LogMessage, SessionRecord, StoredSubscription};

mod actions;
mod delivery;
mod pool;
mod subscriptions;

pub use pool::MessagePool;
pub use subscriptions::Shares;
use subscriptions::Sub;

/// The time an event happens at, as the server's clock read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Milliseconds on the process's monotonic clock: keep-alive and connect deadlines.
    pub monotonic_ms: u64,
    /// Milliseconds since the Unix epoch: record timestamps and message expiry.
    pub wall_ms: i64,
}

/// Publishes of one connection waiting for the log before it stops being read.
pub const STORES_IN_FLIGHT_MAX: usize = 64;
/// Own publishes a connection with No Local subscriptions remembers (a publish of its own
/// older than that is delivered to it after all).
const OWN_MESSAGES_MAX: usize = 1024;
/// How long a connection remembers the retained messages a SUBSCRIBE sent, so their records,
/// still on their way through the shard's delivery (which runs milliseconds behind the
/// commit), are not delivered again.
const RETAINED_SENT_KEPT_MS: i64 = 10_000;

/// A payload's hash, to recognise a retained message already sent on SUBSCRIBE (the same
/// hash in every process: `DefaultHasher::new` has fixed keys).
fn payload_hash(payload: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    payload.hash(&mut hasher);
    hasher.finish()
}

/// What every MQTT connection shares.
#[derive(Debug)]
pub struct MqttSettings {
    /// The session limits of every connection.
    pub limits: SessionLimits,
    /// The log, for retained messages and delivery reads.
    pub store: Arc<dyn LogStore>,
    /// Partitions of a Kafka topic a publish creates.
    pub auto_create_partitions: u32,
    /// Topics there may be before a publish to a new first level is refused.
    pub topics_max: u32,
    /// Topics with a retained message at most.
    pub retained_messages_max: u64,
    /// Persistent sessions stored at most.
    pub sessions_max: u64,
    /// Longest a session outlives its connection, seconds (3.1.x persistent sessions get it).
    pub session_expiry_max_s: u32,
    /// Subscriptions to filters these match are refused (SUBACK 0x80 on every version).
    pub subscribe_deny: Vec<String>,
    /// `(filter, kafka topic)`: the first filter matching an MQTT topic names the Kafka topic
    /// its messages are stored in; without one, its first level does.
    pub kafka_topic_rules: Vec<(String, String)>,
    /// Most bytes a stored compressed batch may inflate to when read for delivery.
    pub batch_decompressed_bytes_max: usize,
    /// Checks the user name and password of every CONNECT.
    pub auth: Arc<dyn Authenticator>,
    /// How long a refused CONNECT waits for its CONNACK, milliseconds: a client guessing
    /// passwords pays for each guess, the broker holds only the connection meanwhile.
    pub refused_connect_delay_ms: u64,
    /// Who may publish and subscribe to what (`auth.acl_file`), read anew for every check.
    pub acl: Arc<dyn AclSource>,
}

/// A persistent session's state as its connection knows it; the shard adds its delivery
/// positions and stores it.
#[derive(Debug)]
pub struct SessionSnapshot {
    pub client_id: String,
    pub expiry_interval_s: u32,
    pub subscriptions: Vec<StoredSubscription>,
    /// Per partition, the first offset the client has not acknowledged (or not been sent,
    /// while catching up).
    pub pending: HashMap<PartitionId, i64>,
    /// Per partition, the offset below which QoS 1 and 2 messages were sent.
    pub sent: HashMap<PartitionId, i64>,
    /// Outbound QoS 2 exchanges waiting for the client's PUBCOMP (packet identifiers).
    pub released: Vec<u16>,
}

/// Work for the shard that a connection's session asked for.
#[derive(Debug)]
pub enum MqttWork {
    /// Store a message; `token` is its packet identifier (0: nothing to acknowledge); a
    /// QoS 2 publish carries its duplicate-check key.
    Store {
        token: u64,
        message: Box<LogMessage>,
        dedup: Option<Box<DedupKey>>,
    },
    /// Publish a will at `due_ms` (wall clock) unless a connection with `client_id` comes
    /// first.
    DelayWill {
        client_id: String,
        due_ms: i64,
        message: Box<LogMessage>,
    },
    /// Forget the duplicate-check key of QoS 2 publish `id` of `client_id` (or, with `None`,
    /// all of them), then complete the exchange (`id`) with PUBCOMP.
    Release { client_id: String, id: Option<u16> },
    /// A CONNECT to answer: take the client id over from another connection if one has it,
    /// then load its session.
    Connect {
        client_id: String,
        clean_start: bool,
    },
    /// Load the stored session of `client_id` (with clean start: delete it) and answer the
    /// CONNECT.
    Load {
        client_id: String,
        clean_start: bool,
    },
    /// Store the session (the connection goes on; or it ended, with `last`).
    Save(Box<SessionSnapshot>),
    /// The connection has subscriptions now.
    Subscribed,
    /// The connection has no subscription left.
    Unsubscribed,
    /// The connection has partitions to catch up on from the log.
    Behind,
    /// Connection `member` joins the shared subscription `filter` (as subscribed).
    ShareJoin { filter: String, member: u64 },
    /// Connection `member` leaves the shared subscription `filter`.
    ShareLeave { filter: String, member: u64 },
}

/// Why an MQTT session ended while reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The client broke the protocol.
    Violation,
    /// The client said DISCONNECT.
    Goodbye,
}

/// The MQTT side of one connection.
pub struct MqttConnection {
    session: ServerSession,
    /// Unique among the process's connections; names it in shared subscriptions.
    conn_id: u64,
    settings: Arc<MqttSettings>,
    actions: Vec<Action>,
    /// The shard's pool, lent for the read being handled (empty otherwise).
    pool: MessagePool,
    client_id: String,
    /// Seconds the session outlives the connection; 0: it ends with it.
    expiry_interval_s: u32,
    subs: Vec<Sub>,
    will: Option<Will>,
    /// Publishes handed to the log whose outcome has not come back.
    pub stores_in_flight: usize,
    /// Publishes handed to the log, and outcomes come back, since the connection began (the
    /// log answers a connection's publishes in order): a subscription made while some were
    /// in flight leaves those out ([`Sub::skip`]).
    publishes_handed: u64,
    publishes_answered: u64,
    /// The latest [`Sub::own_before`]: no subscription skips a publish answered after it.
    skip_own_until: u64,
    /// Where each unacknowledged QoS 1 or 2 delivery came from, by tag (a hash map keeps
    /// its room as deliveries come and go).
    unacked: HashMap<u64, (PartitionId, i64)>,
    /// Per partition, the offset below which QoS 1 and 2 messages went to a connection of
    /// this session (this one or, resumed, earlier ones): sent again, they carry DUP=1.
    sent: HashMap<PartitionId, i64>,
    next_tag: u64,
    /// Partitions whose messages this connection reads from the log itself (resumed
    /// backlog, or live messages that did not fit its queue): the next offset to read. Live
    /// delivery skips them until it catches up.
    behind: BTreeMap<PartitionId, i64>,
    /// Per partition, offsets below this were delivered while catching up.
    floor: HashMap<PartitionId, i64>,
    /// The connection sent QoS 2 publishes (their duplicate-check keys go with a session
    /// that ends).
    used_qos2: bool,
    /// Where this connection's latest publishes were stored, while it has No Local
    /// subscriptions: at most [`OWN_MESSAGES_MAX`].
    own: VecDeque<(PartitionId, i64)>,
    /// Retained messages sent on SUBSCRIBE, by topic: their timestamps and payload hashes.
    /// The shard's delivery may not have passed their records yet; that record, or an older
    /// retained one of the topic, is not delivered again. Forgotten at
    /// `retained_sent_until_ms`.
    retained_sent: HashMap<String, (i64, u64)>,
    retained_sent_until_ms: i64,
    /// The CONNECT was accepted (only then do a will and a session outlive the connection).
    accepted: bool,
    /// The connection ended and its will and session were handed over.
    finished: bool,
    /// A record of this session may be in the store (it was loaded or saved): when the
    /// session ends with the connection it must be overwritten as expired.
    stored: bool,
    /// A CONNECT waiting for another connection with its client id to go: the id and its
    /// clean start flag.
    connecting: Option<(String, bool)>,
    /// The wall-clock time of the event being handled (every entry point takes [`Now`]):
    /// the timestamp of the records it makes.
    wall_ms: i64,
    /// Where the shard's delivery stands, for new subscriptions.
    edge: Arc<dyn DeliveryEdge>,
    /// The user its CONNECT authenticated as (`None`: anonymous).
    user: Option<String>,
    /// What the client's TLS certificate says it is, when that stands for its credentials.
    certificate: Option<CertificateIdentity>,
    /// Publishes the ACL refused since [`MqttConnection::take_denied`] was last called.
    denied: u64,
    /// A refused CONNECT: its CONNACK code, written at this monotonic time (ms).
    refusal: Option<(ReasonCode, u64)>,
    /// The monotonic time of the event being handled, milliseconds.
    monotonic_ms: u64,
}

impl std::fmt::Debug for MqttConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttConnection")
            .field("client_id", &self.client_id)
            .field("conn_id", &self.conn_id)
            .field("subscriptions", &self.subs.len())
            .finish_non_exhaustive()
    }
}

/// Where the shard's delivery stands against the log, for a new subscription: it takes the
/// records stored after it was made, and the shard may not have offered its connections
/// every record stored (and acknowledged) before.
pub trait DeliveryEdge: Send + Sync {
    /// Per partition with records stored but not offered yet: the offset after the last.
    fn not_offered(&self) -> Vec<(PartitionId, i64)>;
}

/// The result of offering one message to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Not for this connection, or expired.
    Skipped,
    /// A QoS 0 message without room: dropped for this connection (the server counts it).
    Dropped,
    /// Written or queued.
    Taken,
    /// A QoS 1 or 2 message that does not fit the queue: read it from the log later.
    Full,
}

impl MqttConnection {
    pub fn new(
        settings: Arc<MqttSettings>,
        edge: Arc<dyn DeliveryEdge>,
        seed: u64,
        now: Now,
    ) -> MqttConnection {
        MqttConnection {
            session: ServerSession::new(settings.limits.clone(), seed, now.monotonic_ms),
            conn_id: seed,
            settings,
            actions: Vec::new(),
            pool: MessagePool::default(),
            client_id: String::new(),
            expiry_interval_s: 0,
            subs: Vec::new(),
            will: None,
            stores_in_flight: 0,
            publishes_handed: 0,
            publishes_answered: 0,
            skip_own_until: 0,
            sent: HashMap::new(),
            unacked: HashMap::new(),
            next_tag: 1,
            behind: BTreeMap::new(),
            floor: HashMap::new(),
            own: VecDeque::new(),
            retained_sent: HashMap::new(),
            retained_sent_until_ms: 0,
            used_qos2: false,
            accepted: false,
            finished: false,
            stored: false,
            connecting: None,
            wall_ms: now.wall_ms,
            edge,
            user: None,
            certificate: None,
            denied: 0,
            refusal: None,
            monotonic_ms: now.monotonic_ms,
        }
    }

    /// The client identifier (empty before CONNECT).
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Whether the CONNECT was accepted.
    pub fn connected(&self) -> bool {
        self.session.is_connected()
    }

    /// Whether the connection should not be read: its CONNECT waits for an answer, or its
    /// publishes waiting for the log reach [`STORES_IN_FLIGHT_MAX`] or the receive maximum
    /// (where a 3.1.x session starts holding input). What was read meanwhile stays in the
    /// connection's buffer, so it holds at most one read more than the session consumed.
    pub fn saturated(&self) -> bool {
        let receive_maximum = usize::from(self.settings.limits.receive_maximum);
        self.connecting.is_some()
            || self.refusal.is_some()
            || self.stores_in_flight >= STORES_IN_FLIGHT_MAX.min(receive_maximum)
    }

    /// The keep-alive or connect deadline, or a refused CONNECT waiting for its answer.
    pub fn has_timer(&self) -> bool {
        self.refusal.is_some() || self.session.next_timeout_ms().is_some()
    }

    /// Lets the identity of the client's TLS certificate stand for the CONNECT's credentials
    /// (told once the TLS handshake is done, before the CONNECT is read).
    pub fn set_certificate_identity(&mut self, identity: CertificateIdentity) {
        self.certificate = Some(identity);
    }

    /// Publishes the ACL refused since the last call (the server counts them).
    pub fn take_denied(&mut self) -> u64 {
        std::mem::take(&mut self.denied)
    }

    /// Whether the ACL lets this client `access` the topic named `name` (always, without
    /// an ACL).
    pub(crate) fn may(&self, access: Access, name: &str) -> bool {
        let Some(acl) = self.settings.acl.current() else {
            return true;
        };
        acl.allows(self.acl_client(), access, name)
    }

    /// Whether the ACL lets this client subscribe to `filter` (a shared subscription's inner
    /// filter).
    pub(crate) fn may_subscribe(&self, filter: &str) -> bool {
        let Some(acl) = self.settings.acl.current() else {
            return true;
        };
        acl.allows_subscription(self.acl_client(), filter)
    }

    /// Who this client is to the ACL.
    fn acl_client(&self) -> AclClient<'_> {
        AclClient {
            user: self.user.as_deref(),
            client_id: &self.client_id,
        }
    }

    /// The user the CONNECT authenticated as; `None` before, or for an anonymous client.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// Runs the session over `input`; returns the bytes consumed, or how the session ended
    /// (the connection is then closing).
    ///
    /// `pool` is the shard's: publishes are decoded into its buffers and boxes. A SUBSCRIBE
    /// behind publishes of this read waits until they are stored (the shard feeds held input
    /// again once they are answered); if none of them went to storage (all refused), it is
    /// read at once.
    pub fn on_bytes(
        &mut self,
        input: &[u8],
        now: Now,
        (out, work): (&mut Vec<u8>, &mut Vec<MqttWork>),
        pool: &mut MessagePool,
    ) -> Result<usize, Ended> {
        self.wall_ms = now.wall_ms;
        self.monotonic_ms = now.monotonic_ms;
        std::mem::swap(&mut self.pool, pool);
        let mut used = 0;
        let result = loop {
            (self.session).set_publishes_storing(self.stores_in_flight > 0);
            let result = (self.session).on_bytes_reusing(
                &input[used..],
                now.monotonic_ms,
                (out, &mut self.actions),
                &mut self.pool.spares,
            );
            self.handle_actions(out, work);
            match result {
                Ok(n) if self.session.holding_subscribe() && self.stores_in_flight == 0 => {
                    used += n;
                }
                Ok(n) => break Ok(used + n),
                Err(e) => break Err(e),
            }
        };
        std::mem::swap(&mut self.pool, pool);
        if let Err(e) = &result {
            tracing::debug!(client = %self.client_id, "closing an MQTT connection: {e}");
        }
        match result {
            Err(_) => Err(Ended::Violation),
            Ok(_) if self.session.is_closed() => Err(Ended::Goodbye),
            Ok(used) => Ok(used),
        }
    }

    /// Checks keep alive, and answers a refused CONNECT once its delay is over; false once
    /// the session is over.
    pub fn tick(&mut self, now: Now, out: &mut Vec<u8>, work: &mut Vec<MqttWork>) -> bool {
        self.wall_ms = now.wall_ms;
        self.monotonic_ms = now.monotonic_ms;
        if let Some((reason, at)) = self.refusal
            && now.monotonic_ms >= at
        {
            self.refusal = None;
            self.session.refuse(reason, out);
            return false;
        }
        self.session.tick(now.monotonic_ms, &mut self.actions);
        self.handle_actions(out, work);
        !self.session.is_closed()
    }

    /// A publish's outcome came back from the log: the code for its acknowledgement, and
    /// where it was stored.
    pub fn stored(
        &mut self,
        token: u64,
        stored: &Stored,
        now: Now,
        out: &mut Vec<u8>,
        work: &mut Vec<MqttWork>,
    ) -> bool {
        self.wall_ms = now.wall_ms;
        self.stores_in_flight = self.stores_in_flight.saturating_sub(1);
        self.publishes_answered += 1;
        // A subscription made after this publish was read leaves it out, wherever it landed
        // (only subscriptions made while publishes were in flight have any to leave out).
        if self.publishes_answered <= self.skip_own_until {
            for sub in &mut self.subs {
                if self.publishes_answered <= sub.own_before {
                    sub.skip.extend(stored.at.iter().copied());
                }
            }
        }
        // For No Local subscriptions: this connection's own messages, until they come by.
        if self.subs.iter().any(|s| s.options.no_local) {
            for &at in &stored.at {
                if self.own.len() == OWN_MESSAGES_MAX {
                    self.own.pop_front();
                }
                self.own.push_back(at);
            }
        }
        if let Some(id) = packet_id(token) {
            let v5 = self.session.protocol_version() == weir_mqtt::ProtocolVersion::V5;
            let reason = if stored.refused_by_plugin && !v5 {
                ReasonCode::SUCCESS
            } else {
                stored.reason
            };
            self.session.published_because(
                id,
                reason,
                stored.reason_string.clone(),
                out,
                &mut self.actions,
            );
            self.handle_actions(out, work);
        }
        !self.session.is_closed()
    }

    /// The answer to the CONNECT: the stored session to resume (with a cursor for every
    /// partition), none, or a CONNACK failure code. False if the connection is over.
    pub fn resume(
        &mut self,
        loaded: Result<Option<SessionRecord>, ReasonCode>,
        now: Now,
        out: &mut Vec<u8>,
        work: &mut Vec<MqttWork>,
    ) -> bool {
        self.wall_ms = now.wall_ms;
        self.connecting = None;
        let record = match loaded {
            Ok(record) => record,
            Err(code) => {
                self.session.refuse(code, out);
                return false;
            }
        };
        self.session.accept(record.is_some(), now.monotonic_ms, out);
        self.stored = record.is_some();
        if let Some(record) = record {
            // QoS 2 exchanges an earlier connection left at PUBREL go on (MQTT 4.4).
            self.session.resend_releases(&record.released, out);
            self.subs = record
                .subscriptions
                .into_iter()
                .map(|s| Sub::new(s.filter, s.options, s.identifier))
                .collect();
            for sub in self.subs.iter().filter(|s| s.group.is_some()) {
                work.push(MqttWork::ShareJoin {
                    filter: sub.full.clone(),
                    member: self.conn_id,
                });
            }
            self.sent = record.sent.into_iter().collect();
            if !self.subs.is_empty() {
                self.behind = record.cursors.into_iter().collect();
                work.push(MqttWork::Subscribed);
                work.push(MqttWork::Behind);
            }
        }
        self.accepted = true;
        // A session that outlives its connection is stored from its start, so that it is
        // there (session present) also after a crash of the broker.
        if self.expiry_interval_s > 0 {
            self.save(work);
        }
        true
    }

    /// The exchange of QoS 2 publish `id` is over: PUBCOMP.
    pub fn released(&mut self, id: u64, out: &mut Vec<u8>) {
        if let Some(id) = packet_id(id) {
            self.session.completed(id, ReasonCode::SUCCESS, out);
        }
    }

    /// The connection that had this client id before is gone (its session stored): load
    /// ours.
    pub fn taken_over_from(&mut self, work: &mut Vec<MqttWork>) {
        if let Some((client_id, clean_start)) = self.connecting.clone() {
            work.push(MqttWork::Load {
                client_id,
                clean_start,
            });
        }
    }

    /// The connection is taken over by a new one with the same client id: MQTT 5 gets
    /// DISCONNECT 0x8E; the will and the session go as when the connection ends.
    pub fn taken_over(&mut self, now: Now, out: &mut Vec<u8>, work: &mut Vec<MqttWork>) {
        if self.session.is_connected() {
            self.session.disconnect(ReasonCode::SESSION_TAKEN_OVER, out);
        }
        self.finish(now, work);
    }

    /// The connection ends (end of input, an I/O error, a timeout, shutdown, a takeover):
    /// its will if it still has one, and its session if it outlives the connection. Once.
    pub fn finish(&mut self, now: Now, work: &mut Vec<MqttWork>) {
        self.wall_ms = now.wall_ms;
        self.end(work);
    }

    /// [`MqttConnection::finish`] at the time of the event being handled.
    fn end(&mut self, work: &mut Vec<MqttWork>) {
        if std::mem::replace(&mut self.finished, true) || !self.accepted {
            return;
        }
        for sub in self.subs.iter().filter(|s| s.group.is_some()) {
            work.push(MqttWork::ShareLeave {
                filter: sub.full.clone(),
                member: self.conn_id,
            });
        }
        if let Some(will) = self.will.take() {
            // A will waits for its delay, or until the session ends if that is sooner.
            let delay_s = will
                .properties
                .will_delay_interval
                .unwrap_or(0)
                .min(self.expiry_interval_s);
            match will_message(will, self.wall_ms) {
                MqttWork::Store { message, .. } if delay_s > 0 => {
                    work.push(MqttWork::DelayWill {
                        client_id: self.client_id.clone(),
                        due_ms: message.timestamp_ms + i64::from(delay_s) * 1000,
                        message,
                    });
                }
                now => work.push(now),
            }
        }
        if (self.expiry_interval_s > 0 || self.stored) && !self.client_id.is_empty() {
            // A session whose expiry is now 0 (a DISCONNECT said so, or it was resumed with
            // none) is saved expired: the next CONNECT finds none, and its QoS 2 state goes.
            self.save(work);
        } else if self.used_qos2 {
            // The session ends with the connection: so do its QoS 2 exchanges.
            work.push(MqttWork::Release {
                client_id: self.client_id.clone(),
                id: None,
            });
        }
    }

    /// Stores the session as it is now.
    fn save(&mut self, work: &mut Vec<MqttWork>) {
        self.stored = true;
        work.push(MqttWork::Save(Box::new(self.snapshot())));
    }

    fn snapshot(&self) -> SessionSnapshot {
        let mut pending: HashMap<PartitionId, i64> =
            self.behind.iter().map(|(p, o)| (*p, *o)).collect();
        for &(partition, offset) in self.unacked.values() {
            let at = pending.entry(partition).or_insert(offset);
            *at = (*at).min(offset);
        }
        SessionSnapshot {
            client_id: self.client_id.clone(),
            expiry_interval_s: self.expiry_interval_s,
            subscriptions: self.subs.iter().map(Sub::stored).collect(),
            pending,
            sent: self.sent.clone(),
            released: self.session.awaiting_pubcomp(),
        }
    }
}

fn packet_id(token: u64) -> Option<weir_mqtt::PacketId> {
    u16::try_from(token)
        .ok()
        .and_then(std::num::NonZeroU16::new)
}

/// The message a will becomes.
fn will_message(will: Will, wall_ms: i64) -> MqttWork {
    let mut properties = will.properties;
    properties.will_delay_interval = None;
    MqttWork::Store {
        token: 0,
        dedup: None,
        message: Box::new(LogMessage {
            topic: will.topic,
            payload: will.payload,
            qos: will.qos,
            retain: will.retain,
            properties,
            timestamp_ms: wall_ms,
        }),
    }
}

/// The outcome of storing a message.
#[derive(Debug)]
pub struct Stored {
    /// The code for its acknowledgement.
    pub reason: ReasonCode,
    /// A reason string for an MQTT 5 acknowledgement.
    pub reason_string: Option<String>,
    /// A plugin refused it: a 3.1.x client (which has no negative acknowledgement) is
    /// acknowledged and the message dropped, as brokers do with denied publishes.
    pub refused_by_plugin: bool,
    /// Where its records were stored.
    pub at: Vec<(PartitionId, i64)>,
}

impl Stored {
    /// Stored at `at`, or failed with `reason` (then `at` is empty).
    pub fn plain(reason: ReasonCode, at: Option<(PartitionId, i64)>) -> Stored {
        Stored {
            reason,
            reason_string: None,
            refused_by_plugin: false,
            at: at.into_iter().collect(),
        }
    }
}

/// The Kafka topic messages of MQTT topic `mqtt_topic` are stored in: the first
/// `mqtt.kafka_topic_rules` rule that matches, else the default mapping.
pub fn kafka_topic_for<'a>(settings: &'a MqttSettings, mqtt_topic: &'a str) -> Cow<'a, str> {
    settings
        .kafka_topic_rules
        .iter()
        .find(|(filter, _)| topic::matches(filter, mqtt_topic))
        .map_or_else(
            || mapping::kafka_topic_of(mqtt_topic),
            |(_, t)| Cow::Borrowed(t),
        )
}

#[cfg(test)]
mod tests;
