//! The MQTT front on a shard: what the broker does with a [`ServerSession`]'s actions, how a
//! publish reaches the log, and how the log reaches subscribers.
//!
//! - **Publish**: every PUBLISH (QoS 0 too) and every will becomes one record batch
//!   ([`weir_core::mqtt_kafka::message_batch`]) in the Kafka topic its first level names, created
//!   when missing (within `kafka.topics_max`, with `kafka.auto_create_partitions_count`
//!   partitions), in the partition its MQTT topic hashes to. It goes through the writer's group
//!   commit like a Kafka produce; PUBACK and PUBREC are written only when the append's
//!   completion comes back through the shard's inbox, i.e. after the covering sync.
//!   `mqtt.kafka_topic_rules` can name another Kafka topic for matching MQTT topics. A QoS 2
//!   publish carries a duplicate-check key (client id, packet identifier) that the log keeps,
//!   in the append's own transaction, until the client's PUBREL: a retry on a later
//!   connection, also after a crash, is not stored twice; PUBCOMP goes out once the key is
//!   durably gone. A retained publish also replaces (or, with an empty payload, clears) the
//!   topic's retained message in the log's `mqtt_retained` table, durably, before its record
//!   is appended. A connection is not read while its CONNECT waits for an answer or its
//!   publishes waiting for the log reach the receive maximum (or [`STORES_IN_FLIGHT_MAX`]).
//! - **Delivery follows the log**: no publish is handed from connection to connection. The
//!   writer tells every shard which partitions grew ([`AppendFeed`]); a shard with
//!   subscribers reads the new batches (short read transactions on the shard), turns each
//!   record into an MQTT message ([`weir_core::mqtt_kafka::message_from_record`]), records Kafka
//!   clients produced included, and offers it to its own subscribers. So delivery needs no
//!   shard-to-shard messages, and a message reaches subscribers only once it is durable.
//! - **Nothing acknowledged is dropped at delivery**: a QoS 1 or 2 message a subscriber has
//!   no room for (its queue of `mqtt.outbound_queue_bytes_max` waiting for the client's
//!   receive maximum, or its unsent bytes at `server.write_buffer_bytes_max`) is not copied
//!   anywhere: that subscriber falls behind on the partition and reads it from the log
//!   itself, from that offset, as acknowledgements and its socket make room, then rejoins live
//!   delivery. QoS 0 messages beyond the write buffer are dropped for that subscriber and
//!   counted (`weir_mqtt_messages_dropped_total`).
//! - **Persistent sessions** (MQTT 5 Session Expiry Interval > 0, or 3.1.x Clean Session 0)
//!   are stored in the log's `mqtt_sessions` table when they connect, subscribe or
//!   unsubscribe, and when their connection ends ([`SessionRecord`]): subscriptions and, per partition, the first offset
//!   the client has not acknowledged. Their offline backlog is that cursor, not a copy: the
//!   next connection catches up from it like a subscriber that fell behind (QoS 1 and 2
//!   messages; QoS 0 ones are not kept for offline sessions). A CONNECT with a client id that
//!   is connected takes it over: the old connection is closed (MQTT 5: DISCONNECT 0x8E) and
//!   stores its session first, then the new one loads it.
//! - **ShardsShared subscriptions** `$share/{group}/{filter}`: each message goes to one member,
//!   chosen from its partition and offset among the members every shard knows
//!   ([`ShareTable`]).
//! - **Wills** are published when a connection ends without a normal DISCONNECT, after their
//!   Will Delay Interval (or when the session ends, if sooner) unless the client comes back;
//!   delayed wills still waiting at shutdown are published then.
//!
//! Not built yet: a takeover race of
//! three connections with one client id at once (the latest may load the session before the
//! first has stored it); resending a PUBREL after a reconnection (an outbound QoS 2 message
//! whose PUBREC came is complete for the broker).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use weir_core::log_store::{
    Append, CheckedBatch, DedupKey, LogStore, PartitionId, RETAINED_TOPIC_BYTES_MAX, StoreError,
    TopicConfig,
};
use weir_core::mqtt_kafka::{self as mapping, LogMessage, SessionRecord, StoredSubscription};
use weir_kafka::record_batch::BatchHeader;
use weir_mqtt::{
    Action, DeliverError, Delivery, Message, Properties, ProtocolVersion, QoS, ReasonCode,
    RetainHandling, ServerSession, SessionLimits, Subscribe, SubscriptionOptions, Unsubscribe,
    Will, topic,
};

use super::ShardMetrics;
use crate::writer::{AppendFailure, WriterHandle};

/// Publishes of one connection waiting for the log before it stops being read.
pub(super) const STORES_IN_FLIGHT_MAX: usize = 64;
/// Own publishes a connection with No Local subscriptions remembers (a publish of its own
/// older than that is delivered to it after all).
const OWN_MESSAGES_MAX: usize = 1024;
/// How long a connection remembers the retained messages a SUBSCRIBE sent, so their records,
/// still on their way through the shard's delivery (which runs milliseconds behind the
/// commit), are not delivered again.
const RETAINED_SENT_KEPT_MS: i64 = 10_000;
fn payload_hash(payload: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    payload.hash(&mut hasher);
    hasher.finish()
}

/// Bytes of batches read per partition in one delivery pass; more is read in the next pass.
const DELIVERY_READ_BYTES: usize = 1024 * 1024;

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
    /// Subscriptions to filters these match are refused (SUBACK 0x87, 3.1.x: 0x80).
    pub subscribe_deny: Vec<String>,
    /// `(filter, kafka topic)`: the first filter matching an MQTT topic names the Kafka topic
    /// its messages are stored in; without one, its first level does.
    pub kafka_topic_rules: Vec<(String, String)>,
    /// Most bytes a stored compressed batch may inflate to when read for delivery.
    pub batch_decompressed_bytes_max: usize,
}

/// One subscription of a connection.
#[derive(Debug, Clone)]
struct Sub {
    /// The filter as subscribed, `$share/{group}/` included.
    full: String,
    /// The filter messages are matched against.
    filter: String,
    /// The share group of a shared subscription.
    group: Option<String>,
    options: SubscriptionOptions,
    identifier: Option<u32>,
}

impl Sub {
    fn new(full: String, options: SubscriptionOptions, identifier: Option<u32>) -> Sub {
        let (group, filter) = match topic::split_shared(&full) {
            Some((group, filter)) => (Some(group.to_owned()), filter.to_owned()),
            None => (None, full.clone()),
        };
        Sub {
            full,
            filter,
            group,
            options,
            identifier,
        }
    }

    fn stored(&self) -> StoredSubscription {
        StoredSubscription {
            filter: self.full.clone(),
            options: self.options,
            identifier: self.identifier,
        }
    }
}

/// The members of every shared subscription (`$share/{group}/{filter}`), by the filter as
/// subscribed: connection ids in ascending order, the same on every shard. Each message goes
/// to one member, chosen from its partition and offset, so every shard picks the same one
/// without talking to the others.
#[derive(Debug, Clone, Default)]
pub(super) struct Shares(HashMap<String, Vec<u64>>);

impl Shares {
    /// Adds `member` to the shared subscription `full`.
    pub(super) fn join(&mut self, full: &str, member: u64) {
        let members = self.0.entry(full.to_owned()).or_default();
        if let Err(at) = members.binary_search(&member) {
            members.insert(at, member);
        }
    }

    /// Removes `member` from the shared subscription `full`.
    pub(super) fn leave(&mut self, full: &str, member: u64) {
        if let Some(members) = self.0.get_mut(full) {
            members.retain(|m| *m != member);
            if members.is_empty() {
                self.0.remove(full);
            }
        }
    }

    /// The member that gets the message at `offset` of `partition`.
    fn chosen(&self, full: &str, partition: PartitionId, offset: i64) -> Option<u64> {
        let members = self.0.get(full)?;
        // A multiplicative mix, so consecutive offsets of one partition go round the members.
        let mixed = (offset as u64).wrapping_add(u64::from(partition.0).wrapping_mul(0x9E37_79B9));
        members
            .get((mixed % members.len() as u64) as usize)
            .copied()
    }
}

/// A persistent session's state as its connection knows it; the shard adds its delivery
/// positions and stores it.
#[derive(Debug)]
pub(super) struct SessionSnapshot {
    pub(super) client_id: String,
    pub(super) expiry_interval_s: u32,
    pub(super) subscriptions: Vec<StoredSubscription>,
    /// Per partition, the first offset the client has not acknowledged (or not been sent,
    /// while catching up).
    pub(super) pending: HashMap<PartitionId, i64>,
}

/// Work for the shard that a connection's session asked for.
#[derive(Debug)]
pub(super) enum MqttWork {
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
pub(super) enum Ended {
    /// The client broke the protocol.
    Violation,
    /// The client said DISCONNECT.
    Goodbye,
}

/// The MQTT side of one connection.
pub(super) struct MqttConn {
    session: ServerSession,
    /// Unique among the process's connections; names it in shared subscriptions.
    conn_id: u64,
    settings: Arc<MqttSettings>,
    actions: Vec<Action>,
    client_id: String,
    /// Seconds the session outlives the connection; 0: it ends with it.
    expiry_interval_s: u32,
    subs: Vec<Sub>,
    will: Option<Will>,
    /// Publishes handed to the log whose outcome has not come back.
    pub(super) stores_in_flight: usize,
    /// Where each unacknowledged QoS 1 or 2 delivery came from, by tag.
    unacked: BTreeMap<u64, (PartitionId, i64)>,
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
    /// A CONNECT waiting for another connection with its client id to go: the id and its
    /// clean start flag.
    connecting: Option<(String, bool)>,
}

/// The result of offering one message to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Offer {
    /// Not for this connection, expired, or QoS 0 without room.
    Skipped,
    /// Written or queued.
    Taken,
    /// A QoS 1 or 2 message that does not fit the queue: read it from the log later.
    Full,
}

impl MqttConn {
    pub(super) fn new(settings: Arc<MqttSettings>, seed: u64, now_ms: u64) -> MqttConn {
        MqttConn {
            session: ServerSession::new(settings.limits.clone(), seed, now_ms),
            conn_id: seed,
            settings,
            actions: Vec::new(),
            client_id: String::new(),
            expiry_interval_s: 0,
            subs: Vec::new(),
            will: None,
            stores_in_flight: 0,
            unacked: BTreeMap::new(),
            next_tag: 1,
            behind: BTreeMap::new(),
            floor: HashMap::new(),
            own: VecDeque::new(),
            retained_sent: HashMap::new(),
            retained_sent_until_ms: 0,
            used_qos2: false,
            accepted: false,
            finished: false,
            connecting: None,
        }
    }

    /// The client identifier (empty before CONNECT).
    pub(super) fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Whether the CONNECT was accepted.
    pub(super) fn connected(&self) -> bool {
        self.session.is_connected()
    }

    /// Whether the connection should not be read: its CONNECT waits for an answer, or its
    /// publishes waiting for the log reach [`STORES_IN_FLIGHT_MAX`] or the receive maximum
    /// (where a 3.1.x session starts holding input). What was read meanwhile stays in the
    /// connection's buffer, so it holds at most one read more than the session consumed.
    pub(super) fn saturated(&self) -> bool {
        let receive_maximum = usize::from(self.settings.limits.receive_maximum);
        self.connecting.is_some()
            || self.stores_in_flight >= STORES_IN_FLIGHT_MAX.min(receive_maximum)
    }

    /// The keep-alive or connect deadline, if any.
    pub(super) fn has_timer(&self) -> bool {
        self.session.next_timeout_ms().is_some()
    }

    /// Runs the session over `input`; returns the bytes consumed, or how the session ended
    /// (the connection is then closing).
    pub(super) fn on_bytes(
        &mut self,
        input: &[u8],
        now_ms: u64,
        out: &mut Vec<u8>,
        work: &mut Vec<MqttWork>,
    ) -> Result<usize, Ended> {
        let result = self.session.on_bytes(input, now_ms, out, &mut self.actions);
        if let Err(e) = &result {
            tracing::debug!(client = %self.client_id, "closing an MQTT connection: {e}");
        }
        self.handle_actions(out, work);
        match result {
            Err(_) => Err(Ended::Violation),
            Ok(_) if self.session.is_closed() => Err(Ended::Goodbye),
            Ok(used) => Ok(used),
        }
    }

    /// Checks keep alive; false once the session is over.
    pub(super) fn tick(
        &mut self,
        now_ms: u64,
        out: &mut Vec<u8>,
        work: &mut Vec<MqttWork>,
    ) -> bool {
        self.session.tick(now_ms, &mut self.actions);
        self.handle_actions(out, work);
        !self.session.is_closed()
    }

    /// A publish's outcome came back from the log: the code for its acknowledgement, and
    /// where it was stored.
    pub(super) fn stored(
        &mut self,
        token: u64,
        stored: Stored,
        out: &mut Vec<u8>,
        work: &mut Vec<MqttWork>,
    ) -> bool {
        self.stores_in_flight = self.stores_in_flight.saturating_sub(1);
        // For No Local subscriptions: this connection's own messages, until they come by.
        if self.subs.iter().any(|s| s.options.no_local) {
            for at in stored.at {
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
                stored.reason_string,
                out,
                &mut self.actions,
            );
            self.handle_actions(out, work);
        }
        !self.session.is_closed()
    }

    /// The answer to the CONNECT: the stored session to resume (with a cursor for every
    /// partition), none, or a CONNACK failure code. False if the connection is over.
    pub(super) fn resume(
        &mut self,
        loaded: Result<Option<SessionRecord>, ReasonCode>,
        now_ms: u64,
        out: &mut Vec<u8>,
        work: &mut Vec<MqttWork>,
    ) -> bool {
        self.connecting = None;
        let record = match loaded {
            Ok(record) => record,
            Err(code) => {
                self.session.refuse(code, out);
                return false;
            }
        };
        self.session.accept(record.is_some(), now_ms, out);
        if let Some(record) = record {
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
            work.push(MqttWork::Save(Box::new(self.snapshot())));
        }
        true
    }

    /// The exchange of QoS 2 publish `id` is over: PUBCOMP.
    pub(super) fn released(&mut self, id: u64, out: &mut Vec<u8>) {
        if let Some(id) = packet_id(id) {
            self.session.completed(id, ReasonCode::SUCCESS, out);
        }
    }

    /// The connection that had this client id before is gone (its session stored): load
    /// ours.
    pub(super) fn taken_over_from(&mut self, work: &mut Vec<MqttWork>) {
        if let Some((client_id, clean_start)) = self.connecting.clone() {
            work.push(MqttWork::Load {
                client_id,
                clean_start,
            });
        }
    }

    /// The connection is taken over by a new one with the same client id: MQTT 5 gets
    /// DISCONNECT 0x8E; the will and the session go as when the connection ends.
    pub(super) fn taken_over(&mut self, out: &mut Vec<u8>, work: &mut Vec<MqttWork>) {
        if self.session.is_connected() {
            self.session.disconnect(ReasonCode::SESSION_TAKEN_OVER, out);
        }
        self.finish(work);
    }

    /// The connection ends (end of input, an I/O error, a timeout, shutdown, a takeover):
    /// its will if it still has one, and its session if it outlives the connection. Once.
    pub(super) fn finish(&mut self, work: &mut Vec<MqttWork>) {
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
            match will_message(will) {
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
        if self.expiry_interval_s > 0 && !self.client_id.is_empty() {
            work.push(MqttWork::Save(Box::new(self.snapshot())));
        } else if self.used_qos2 {
            // The session ends with the connection: so do its QoS 2 exchanges.
            work.push(MqttWork::Release {
                client_id: self.client_id.clone(),
                id: None,
            });
        }
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
        }
    }

    /// Handles what the session asked for.
    fn handle_actions(&mut self, out: &mut Vec<u8>, work: &mut Vec<MqttWork>) {
        for action in std::mem::take(&mut self.actions) {
            match action {
                Action::Connect(request) => {
                    self.client_id = request.client_id.clone();
                    self.will = request.will;
                    let asked = if request.protocol_version.is_v5() {
                        request.session_expiry_interval_s.unwrap_or(0)
                    } else if request.clean_start {
                        0
                    } else {
                        u32::MAX
                    };
                    self.expiry_interval_s = asked.min(self.settings.session_expiry_max_s);
                    self.connecting = Some((request.client_id.clone(), request.clean_start));
                    work.push(MqttWork::Connect {
                        client_id: request.client_id,
                        clean_start: request.clean_start,
                    });
                }
                Action::Publish(publish) => {
                    let token = publish.packet_id.map_or(0, |id| u64::from(id.get()));
                    if publish.retain && publish.topic.len() > RETAINED_TOPIC_BYTES_MAX {
                        self.refuse_publish(token, ReasonCode::QUOTA_EXCEEDED, out);
                        continue;
                    }
                    let mut properties = publish.properties;
                    properties.topic_alias = None;
                    properties.subscription_identifiers.clear();
                    self.stores_in_flight += 1;
                    // A QoS 2 publish is stored at most once, also when the client sends it
                    // again on a later connection (it did not see the PUBREC) or after a
                    // restart: the log keeps its key until the client's PUBREL.
                    let dedup = (publish.qos == QoS::ExactlyOnce)
                        .then_some(publish.packet_id)
                        .flatten()
                        .map(|id| {
                            Box::new(DedupKey {
                                owner: self.client_id.clone(),
                                id: id.get(),
                            })
                        });
                    self.used_qos2 |= dedup.is_some();
                    work.push(MqttWork::Store {
                        token,
                        dedup,
                        message: Box::new(LogMessage {
                            topic: publish.topic,
                            payload: publish.payload,
                            qos: publish.qos,
                            retain: publish.retain,
                            properties,
                            timestamp_ms: crate::clock::wall_ms(),
                        }),
                    });
                }
                Action::Subscribe(subscribe) => self.subscribe(subscribe, out, work),
                Action::Unsubscribe(unsubscribe) => self.unsubscribe(unsubscribe, out, work),
                Action::Released { packet_id } => work.push(MqttWork::Release {
                    client_id: self.client_id.clone(),
                    id: Some(packet_id.get()),
                }),
                Action::Delivered { tag } => {
                    self.unacked.remove(&tag);
                    if !self.behind.is_empty() {
                        work.push(MqttWork::Behind);
                    }
                }
                Action::Disconnected {
                    publish_will,
                    session_expiry_interval_s,
                } => {
                    if let Some(expiry) = session_expiry_interval_s {
                        self.expiry_interval_s = expiry.min(self.settings.session_expiry_max_s);
                    }
                    if !publish_will {
                        self.will = None;
                    }
                    self.finish(work);
                }
                Action::Close { reason, .. } => {
                    tracing::debug!(client = %self.client_id, ?reason, "MQTT connection closed by its session");
                    self.finish(work);
                }
            }
        }
    }

    /// Answers a publish that will not be stored.
    fn refuse_publish(&mut self, token: u64, reason: ReasonCode, out: &mut Vec<u8>) {
        if let Some(id) = packet_id(token) {
            self.session.published(id, reason, out, &mut self.actions);
        }
    }

    fn subscribe(&mut self, subscribe: Subscribe, out: &mut Vec<u8>, work: &mut Vec<MqttWork>) {
        let had_any = !self.subs.is_empty();
        let identifier = subscribe
            .properties
            .subscription_identifiers
            .first()
            .copied();
        let mut codes = Vec::with_capacity(subscribe.subscriptions.len());
        let mut retained_for = Vec::new();
        for subscription in subscribe.subscriptions {
            let sub = Sub::new(subscription.filter, subscription.options, identifier);
            if self
                .settings
                .subscribe_deny
                .iter()
                .any(|deny| topic::matches(deny, &sub.filter))
            {
                codes.push(ReasonCode::NOT_AUTHORIZED);
                continue;
            }
            let options = sub.options;
            if sub.group.is_some() {
                work.push(MqttWork::ShareJoin {
                    filter: sub.full.clone(),
                    member: self.conn_id,
                });
            }
            let existed = match self.subs.iter_mut().find(|s| s.full == sub.full) {
                Some(old) => {
                    *old = sub.clone();
                    true
                }
                None => {
                    self.subs.push(sub.clone());
                    false
                }
            };
            codes.push(ReasonCode(options.qos as u8));
            // Retained messages are not sent for shared subscriptions (MQTT 5 section 4.8.2).
            let send_retained = sub.group.is_none()
                && match options.retain_handling {
                    RetainHandling::SendAtSubscribe => true,
                    RetainHandling::SendAtSubscribeIfNew => !existed,
                    RetainHandling::DoNotSend => false,
                };
            if send_retained {
                retained_for.push(sub);
            }
        }
        self.session.subscribed(subscribe.packet_id, &codes, out);
        if !had_any && !self.subs.is_empty() {
            work.push(MqttWork::Subscribed);
        }
        if self.expiry_interval_s > 0 {
            work.push(MqttWork::Save(Box::new(self.snapshot())));
        }
        if !retained_for.is_empty() {
            self.send_retained(&retained_for, out);
        }
    }

    /// Sends the retained messages `subs` match, as MQTT requires after a SUBACK.
    fn send_retained(&mut self, subs: &[Sub], out: &mut Vec<u8>) {
        let mut found = Vec::new();
        let scan = self.settings.store.retained(&mut |topic, bytes| {
            if subs.iter().any(|s| topic::matches(&s.filter, topic)) {
                found.extend(mapping::batch_messages(
                    &mapping::kafka_topic(topic),
                    bytes,
                    usize::MAX,
                ));
            }
        });
        if let Err(e) = scan {
            tracing::warn!("cannot read retained messages: {e}");
        }
        let now = crate::clock::wall_ms();
        for (_, message) in found {
            let matching: Vec<&Sub> = subs
                .iter()
                .filter(|s| topic::matches(&s.filter, &message.topic))
                .collect();
            // Retained messages keep their retain flag whatever the subscription says. They
            // are not tracked for redelivery (a new subscription gets them again), and one that
            // does not fit the queue is not sent.
            if let Ok(true) = self.deliver_to(&message, &matching, true, now, out, None) {
                self.retained_sent.insert(
                    message.topic.clone(),
                    (message.timestamp_ms, payload_hash(&message.payload)),
                );
                self.retained_sent_until_ms = now + RETAINED_SENT_KEPT_MS;
            }
        }
    }

    fn unsubscribe(
        &mut self,
        unsubscribe: Unsubscribe,
        out: &mut Vec<u8>,
        work: &mut Vec<MqttWork>,
    ) {
        let had_any = !self.subs.is_empty();
        let codes: Vec<ReasonCode> = unsubscribe
            .filters
            .iter()
            .map(
                |filter| match self.subs.iter().position(|s| &s.full == filter) {
                    Some(at) => {
                        let sub = self.subs.remove(at);
                        if sub.group.is_some() {
                            work.push(MqttWork::ShareLeave {
                                filter: sub.full,
                                member: self.conn_id,
                            });
                        }
                        ReasonCode::SUCCESS
                    }
                    None => ReasonCode::NO_SUBSCRIPTION_EXISTED,
                },
            )
            .collect();
        self.session
            .unsubscribed(unsubscribe.packet_id, &codes, out);
        if had_any && self.subs.is_empty() {
            work.push(MqttWork::Unsubscribed);
        }
        if self.expiry_interval_s > 0 {
            work.push(MqttWork::Save(Box::new(self.snapshot())));
        }
    }

    /// Whether live delivery of `partition` at `offset` is this connection's: not while it
    /// catches up on the partition, nor what it already got while catching up.
    pub(super) fn takes_live(&self, partition: PartitionId, offset: i64) -> bool {
        !self.behind.contains_key(&partition)
            && self
                .floor
                .get(&partition)
                .is_none_or(|floor| offset >= *floor)
    }

    /// Offers the message at `offset` of `partition`. `room` is false when the connection's
    /// unsent bytes are at their limit; `backlog` is true while catching up (QoS 0 messages
    /// are not delivered from the backlog).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn offer(
        &mut self,
        message: &LogMessage,
        partition: PartitionId,
        offset: i64,
        now_wall_ms: i64,
        room: bool,
        backlog: bool,
        shares: &Shares,
        out: &mut Vec<u8>,
        metrics: &ShardMetrics,
    ) -> Offer {
        if !self.session.is_connected() {
            return Offer::Skipped;
        }
        if message.retain && !self.retained_sent.is_empty() {
            if now_wall_ms > self.retained_sent_until_ms {
                self.retained_sent = HashMap::new();
            } else if self.retained_sent.get(&message.topic).is_some_and(|sent| {
                message.timestamp_ms < sent.0
                    || (message.timestamp_ms, payload_hash(&message.payload)) == *sent
            }) {
                // Published before the SUBSCRIBE, and sent with it as the retained message.
                return Offer::Skipped;
            }
        }
        let subs = std::mem::take(&mut self.subs);
        let me = self.conn_id;
        let own = match self.own.iter().position(|at| *at == (partition, offset)) {
            Some(i) => self.own.remove(i).is_some(),
            None => false,
        };
        let matching: Vec<&Sub> = subs
            .iter()
            .filter(|s| topic::matches(&s.filter, &message.topic))
            .filter(|s| s.group.is_none() || shares.chosen(&s.full, partition, offset) == Some(me))
            .filter(|s| !(own && s.options.no_local))
            .collect();
        let granted = matching.iter().map(|s| s.options.qos).max();
        let offer = match granted.map(|g| g.min(message.qos)) {
            None => Offer::Skipped,
            Some(QoS::AtMostOnce) if backlog || !room => {
                if !backlog {
                    metrics.mqtt_dropped.fetch_add(1, Ordering::Relaxed);
                }
                Offer::Skipped
            }
            // A client that does not read gets no more than the write buffer: the rest waits
            // in the log.
            Some(_) if !room => Offer::Full,
            Some(_) => {
                let rap = matching.iter().any(|s| s.options.retain_as_published);
                let retain = rap && message.retain;
                let tag = self.next_tag;
                match self.deliver_to(message, &matching, retain, now_wall_ms, out, Some(tag)) {
                    Ok(true) => {
                        metrics.mqtt_delivered.fetch_add(1, Ordering::Relaxed);
                        if message.qos != QoS::AtMostOnce && granted != Some(QoS::AtMostOnce) {
                            self.next_tag += 1;
                            self.unacked.insert(tag, (partition, offset));
                        }
                        Offer::Taken
                    }
                    Ok(false) => Offer::Skipped,
                    Err(()) => Offer::Full,
                }
            }
        };
        self.subs = subs;
        offer
    }

    /// Delivers `message` once at the highest QoS among `matching`, with their subscription
    /// identifiers; `tag` tracks a QoS 1 or 2 delivery. Ok(false): nothing to send (expired,
    /// discarded); Err: the queue is full.
    fn deliver_to(
        &mut self,
        message: &LogMessage,
        matching: &[&Sub],
        retain: bool,
        now_wall_ms: i64,
        out: &mut Vec<u8>,
        tag: Option<u64>,
    ) -> Result<bool, ()> {
        let Some(granted) = matching.iter().map(|s| s.options.qos).max() else {
            return Ok(false);
        };
        let expiry = message.expiry_left_s(now_wall_ms);
        if expiry == Some(0) {
            return Ok(false);
        }
        let properties = if self.session.protocol_version() == ProtocolVersion::V5 {
            let mut p = message.properties.clone();
            p.message_expiry_interval = expiry;
            p.subscription_identifiers = matching.iter().filter_map(|s| s.identifier).collect();
            p
        } else {
            Properties::default()
        };
        let outgoing = Message {
            topic: message.topic.clone(),
            payload: message.payload.clone(),
            qos: granted.min(message.qos),
            retain,
            properties,
        };
        match self.session.deliver_tagged(outgoing, tag.unwrap_or(0), out) {
            Ok(Delivery::Sent(_) | Delivery::Queued) => Ok(true),
            Ok(Delivery::Discarded) | Err(DeliverError::NotConnected) => Ok(false),
            Err(DeliverError::QueueFull) => Err(()),
            Err(DeliverError::Invalid(e)) => {
                tracing::debug!(topic = %message.topic, "message not deliverable: {e}");
                Ok(false)
            }
        }
    }

    /// Partitions this connection catches up on, with the next offset to read.
    pub(super) fn behind(&self) -> Vec<(PartitionId, i64)> {
        self.behind.iter().map(|(p, o)| (*p, *o)).collect()
    }

    /// Live delivery of `partition` hit the queue limit at `offset`: read it from there.
    pub(super) fn fall_behind(&mut self, partition: PartitionId, offset: i64) {
        self.behind.entry(partition).or_insert(offset);
    }

    /// Catching up on `partition` reached `next`; `caught_up` when live delivery takes over.
    pub(super) fn advance(&mut self, partition: PartitionId, next: i64, caught_up: bool) {
        if caught_up {
            self.behind.remove(&partition);
            self.floor.insert(partition, next);
        } else {
            self.behind.insert(partition, next);
        }
    }
}

fn packet_id(token: u64) -> Option<weir_mqtt::PacketId> {
    u16::try_from(token)
        .ok()
        .and_then(std::num::NonZeroU16::new)
}

/// The message a will becomes.
fn will_message(will: Will) -> MqttWork {
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
            timestamp_ms: crate::clock::wall_ms(),
        }),
    }
}

/// The outcome of storing a message.
#[derive(Debug)]
pub(super) struct Stored {
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
pub(super) fn kafka_topic_for(settings: &MqttSettings, mqtt_topic: &str) -> String {
    settings
        .kafka_topic_rules
        .iter()
        .find(|(filter, _)| topic::matches(filter, mqtt_topic))
        .map_or_else(|| mapping::kafka_topic(mqtt_topic), |(_, t)| t.clone())
}

/// Told the outcome of storing a message.
pub(super) type StoreDone = Box<dyn FnOnce(Stored) + Send>;

/// Stores `message` on the writer thread: the retained message first (if it has the retain
/// flag), then its record through group commit; `done` gets the reason code for its
/// acknowledgement once the record is durable (or failed).
pub(super) fn store(
    settings: &Arc<MqttSettings>,
    writer: &WriterHandle,
    message: LogMessage,
    dedup: Option<Box<DedupKey>>,
    done: StoreDone,
) {
    let settings = settings.clone();
    let writer_again = writer.clone();
    writer.run(Box::new(move |store| {
        let Some(store) = store else {
            done(Stored::plain(ReasonCode::UNSPECIFIED_ERROR, None));
            return;
        };
        let batch = mapping::message_batch(&message);
        if message.retain {
            let retained = (!message.payload.is_empty()).then_some(batch.as_slice());
            if let Err(e) =
                store.set_retained(&message.topic, retained, settings.retained_messages_max)
            {
                tracing::debug!(topic = %message.topic, "retained message not stored: {e}");
                done(Stored::plain(store_error_code(&e), None));
                return;
            }
        }
        let name = kafka_topic_for(&settings, &message.topic);
        let partitions = match topic_partitions(store, &settings, &name) {
            Ok(partitions) => partitions,
            Err(code) => {
                done(Stored::plain(code, None));
                return;
            }
        };
        let index = mapping::partition_for_key(message.topic.as_bytes(), partitions.len());
        let Some(&partition) = partitions.get(index) else {
            done(Stored::plain(ReasonCode::UNSPECIFIED_ERROR, None));
            return;
        };
        let batch = match CheckedBatch::new(batch) {
            Ok(batch) => batch,
            Err(e) => {
                tracing::error!("an MQTT message made an invalid batch: {e}");
                done(Stored::plain(
                    ReasonCode::IMPLEMENTATION_SPECIFIC_ERROR,
                    None,
                ));
                return;
            }
        };
        let completion: crate::writer::Completion = Box::new(move |result| match result {
            Ok(appended) => done(Stored::plain(
                ReasonCode::SUCCESS,
                Some((partition, appended.base_offset)),
            )),
            Err(AppendFailure::Store(e)) => done(Stored::plain(store_error_code(&e), None)),
            Err(e) => {
                tracing::debug!("MQTT publish not stored: {e}");
                done(Stored::plain(ReasonCode::UNSPECIFIED_ERROR, None))
            }
        });
        if let Err(busy) = writer_again.submit(
            Append {
                partition,
                batch,
                dedup,
            },
            completion,
        ) {
            (busy.done)(Err(AppendFailure::Store(StoreError::Full(
                "the append queue is full (storage.append_queue_bytes_max)".into(),
            ))));
        }
    }));
}

/// Loads (or, with `clean_start`, deletes) the stored session of `client_id` on the writer
/// thread, after any store of it submitted before; `done` gets the session to resume, with a
/// cursor for every partition (partitions created after it was stored start at their
/// beginning), or the CONNACK code to refuse with.
pub(super) fn load_session(
    writer: &WriterHandle,
    client_id: String,
    clean_start: bool,
    done: Box<dyn FnOnce(Result<Option<SessionRecord>, ReasonCode>) + Send>,
) {
    writer.run(Box::new(move |store| {
        let Some(store) = store else {
            done(Err(ReasonCode::SERVER_UNAVAILABLE));
            return;
        };
        let result = (|| -> Result<Option<SessionRecord>, StoreError> {
            if clean_start {
                store.put_mqtt_session(&client_id, None, 0)?;
                store.release_dedup(&client_id, None)?;
                return Ok(None);
            }
            let Some(bytes) = store.mqtt_session(&client_id)? else {
                return Ok(None);
            };
            let record = SessionRecord::decode(&bytes);
            let now = crate::clock::wall_ms();
            let Some(mut record) = record.filter(|r| !r.expired(now)) else {
                store.put_mqtt_session(&client_id, None, 0)?;
                store.release_dedup(&client_id, None)?;
                return Ok(None);
            };
            let known: HashMap<PartitionId, i64> = record.cursors.iter().copied().collect();
            record.cursors = store
                .topics()?
                .iter()
                .flat_map(|t| t.partitions.iter().copied())
                .map(|p| (p, known.get(&p).copied().unwrap_or(0)))
                .collect();
            Ok(Some(record))
        })();
        done(result.map_err(|e| {
            tracing::warn!(client = %client_id, "cannot load the MQTT session: {e}");
            ReasonCode::SERVER_UNAVAILABLE
        }));
    }));
}

/// Stores `record` as the session of `client_id` on the writer thread.
pub(super) fn save_session(
    settings: &MqttSettings,
    writer: &WriterHandle,
    client_id: String,
    record: SessionRecord,
) {
    let sessions_max = settings.sessions_max;
    writer.run(Box::new(move |store| {
        let Some(store) = store else {
            tracing::warn!(client = %client_id, "MQTT session not stored: the log writer has stopped");
            return;
        };
        if let Err(e) = store.put_mqtt_session(&client_id, Some(&record.encode()), sessions_max) {
            tracing::warn!(client = %client_id, "MQTT session not stored: {e}");
        }
    }));
}

/// The partitions of Kafka topic `name`, created if missing.
fn topic_partitions(
    store: &dyn LogStore,
    settings: &MqttSettings,
    name: &str,
) -> Result<Vec<PartitionId>, ReasonCode> {
    match store.topic(name) {
        Ok(Some(topic)) => return Ok(topic.partitions),
        Ok(None) => {}
        Err(e) => return Err(store_error_code(&e)),
    }
    let count = store.topics().map_err(|e| store_error_code(&e))?.len();
    if count >= settings.topics_max as usize {
        tracing::debug!(
            topic = name,
            "MQTT publish refused: kafka.topics_max reached"
        );
        return Err(ReasonCode::QUOTA_EXCEEDED);
    }
    match store.create_topic(
        name,
        settings.auto_create_partitions,
        TopicConfig::default(),
    ) {
        Ok(topic) => Ok(topic.partitions),
        Err(StoreError::InvalidArgument(why)) => {
            tracing::debug!(topic = name, "MQTT publish refused: {why}");
            Err(ReasonCode::TOPIC_NAME_INVALID)
        }
        Err(e) => Err(store_error_code(&e)),
    }
}

fn store_error_code(error: &StoreError) -> ReasonCode {
    match error {
        StoreError::Full(_) => ReasonCode::QUOTA_EXCEEDED,
        StoreError::InvalidArgument(_) => ReasonCode::TOPIC_NAME_INVALID,
        _ => ReasonCode::UNSPECIFIED_ERROR,
    }
}

/// What the writer tells a shard: partitions that grew, with the first and last offset
/// made durable since the shard last looked. Its size is bounded by the number of partitions;
/// the lock is taken once per commit by the writer and once per delivery pass by the shard,
/// never per message.
#[derive(Debug, Default)]
pub(super) struct AppendFeed {
    grown: Mutex<HashMap<PartitionId, (i64, i64)>>,
}

impl AppendFeed {
    /// Records appends `(partition, base offset, last offset)`.
    pub(super) fn push(&self, appended: &[(PartitionId, i64, i64)]) {
        let mut grown = self.grown.lock().unwrap_or_else(|e| e.into_inner());
        for &(partition, first, last) in appended {
            let entry = grown.entry(partition).or_insert((first, last));
            entry.0 = entry.0.min(first);
            entry.1 = entry.1.max(last);
        }
    }

    fn take(&self) -> HashMap<PartitionId, (i64, i64)> {
        std::mem::take(&mut *self.grown.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The shared-subscription members every shard reads: copied on write under a lock taken on
/// SUBSCRIBE, UNSUBSCRIBE and disconnection only; each shard takes a new snapshot once per
/// delivery pass when the version moved, never per message.
#[derive(Debug, Default)]
pub(super) struct ShareTable {
    current: Mutex<Arc<Shares>>,
    version: std::sync::atomic::AtomicU64,
}

impl ShareTable {
    /// Applies `change` to the members.
    pub(super) fn update(&self, change: impl FnOnce(&mut Shares)) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        change(Arc::make_mut(&mut current));
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    /// Replaces `snapshot` if the members changed since it was taken.
    fn refresh(&self, snapshot: &mut (u64, Arc<Shares>)) {
        let version = self.version.load(Ordering::Acquire);
        if version != snapshot.0 {
            let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
            *snapshot = (self.version.load(Ordering::Acquire), current.clone());
        }
    }
}

/// Wills waiting for their delay, by client id, with when they are due (wall clock, ms).
/// Taken on disconnection, CONNECT and in timeout sweeps while any wait.
#[derive(Debug, Default)]
pub(super) struct DelayedWills {
    wills: Mutex<HashMap<String, (i64, Box<LogMessage>)>>,
    waiting: std::sync::atomic::AtomicUsize,
}

impl DelayedWills {
    /// Holds `message` until `due_ms`.
    pub(super) fn hold(&self, client_id: String, due_ms: i64, message: Box<LogMessage>) {
        let mut wills = self.wills.lock().unwrap_or_else(|e| e.into_inner());
        wills.insert(client_id, (due_ms, message));
        self.waiting.store(wills.len(), Ordering::Release);
    }

    /// A connection with `client_id` came: its will is not published.
    pub(super) fn cancel(&self, client_id: &str) {
        if self.waiting.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut wills = self.wills.lock().unwrap_or_else(|e| e.into_inner());
        wills.remove(client_id);
        self.waiting.store(wills.len(), Ordering::Release);
    }

    /// The wills due at `now_ms`, removed.
    pub(super) fn due(&self, now_ms: i64) -> Vec<LogMessage> {
        if self.waiting.load(Ordering::Acquire) == 0 {
            return Vec::new();
        }
        let mut wills = self.wills.lock().unwrap_or_else(|e| e.into_inner());
        let due: Vec<String> = wills
            .iter()
            .filter(|(_, (at, _))| *at <= now_ms)
            .map(|(id, _)| id.clone())
            .collect();
        let out = due
            .iter()
            .filter_map(|id| wills.remove(id))
            .map(|(_, m)| *m)
            .collect();
        self.waiting.store(wills.len(), Ordering::Release);
        out
    }
}

/// Deletes stored sessions that have expired, with their QoS 2 state, on the writer thread.
pub(super) fn expire_sessions(writer: &WriterHandle) {
    writer.run(Box::new(|store| {
        let Some(store) = store else {
            return;
        };
        let now = crate::clock::wall_ms();
        let mut expired = Vec::new();
        let visited = store.mqtt_sessions(&mut |client_id, bytes| {
            if SessionRecord::decode(bytes).is_none_or(|r| r.expired(now)) {
                expired.push(client_id.to_owned());
            }
        });
        if let Err(e) = visited {
            tracing::warn!("cannot list MQTT sessions: {e}");
            return;
        }
        for client_id in expired {
            let deleted = store
                .put_mqtt_session(&client_id, None, 0)
                .and_then(|()| store.release_dedup(&client_id, None));
            match deleted {
                Ok(()) => tracing::debug!(client = %client_id, "MQTT session expired"),
                Err(e) => {
                    tracing::warn!(client = %client_id, "expired MQTT session not deleted: {e}")
                }
            }
        }
    }));
}

/// Where every shard's tail starts: each partition's Kafka topic and its end, read once
/// before the shards run (nothing is in flight then).
#[derive(Debug, Default)]
pub(super) struct TailStart {
    names: HashMap<PartitionId, String>,
    ends: HashMap<PartitionId, i64>,
}

impl TailStart {
    pub(super) fn read(store: &dyn LogStore) -> TailStart {
        let names = partition_names(store).unwrap_or_default();
        let mut ends = HashMap::with_capacity(names.len());
        for &partition in names.keys() {
            match store.partition(partition) {
                Ok(state) => {
                    ends.insert(partition, state.high_watermark);
                }
                Err(e) => tracing::warn!(?partition, "cannot read the partition's end: {e}"),
            }
        }
        TailStart { names, ends }
    }
}

/// The Kafka topic of every partition.
fn partition_names(store: &dyn LogStore) -> Option<HashMap<PartitionId, String>> {
    match store.topics() {
        Ok(topics) => Some(
            topics
                .into_iter()
                .flat_map(|t| {
                    let name = t.name;
                    t.partitions.into_iter().map(move |p| (p, name.clone()))
                })
                .collect(),
        ),
        Err(e) => {
            tracing::warn!("cannot list topics for MQTT delivery: {e}");
            None
        }
    }
}

/// Access to the [`super::conn::Conn`] in a loop's connection slot.
pub(super) trait HasConn {
    fn conn_mut(&mut self) -> &mut super::conn::Conn;
}

/// A shard's delivery state: which of its connections subscribe, and how far the shard has
/// followed each partition.
///
/// Every partition has a cursor from the shard's start: the partitions' ends then (nothing
/// is in flight before the shards run), moved past every append the writer reports as
/// durable, whether or not anyone subscribes. So a partition without a cursor was created
/// later and has had nothing durable yet, and a cursor is exactly "everything before it has
/// been offered to the shard's live subscribers": what a disconnecting persistent session
/// stores and what a connection catching up on the backlog reads up to.
pub(super) struct MqttTail {
    feed: Arc<AppendFeed>,
    share_table: Arc<ShareTable>,
    /// The shared-subscription members as of this delivery pass, with their version.
    shares: (u64, Arc<Shares>),
    /// Next offset to deliver live, per partition.
    cursors: HashMap<PartitionId, i64>,
    /// Kafka topic of each partition.
    names: HashMap<PartitionId, String>,
    subscribers: BTreeSet<usize>,
    /// Connections with partitions to catch up on.
    lagging: BTreeSet<usize>,
}

impl MqttTail {
    /// A shard's tail, starting at `start` (read once for every shard, before they run).
    pub(super) fn new(
        feed: Arc<AppendFeed>,
        share_table: Arc<ShareTable>,
        start: &TailStart,
    ) -> MqttTail {
        MqttTail {
            feed,
            share_table,
            shares: (u64::MAX, Arc::default()),
            cursors: start.ends.clone(),
            names: start.names.clone(),
            subscribers: BTreeSet::new(),
            lagging: BTreeSet::new(),
        }
    }

    fn refresh_names(&mut self, store: &dyn LogStore) {
        if let Some(names) = partition_names(store) {
            self.names = names;
        }
    }

    /// Applies what a connection's session reported.
    pub(super) fn note(&mut self, slot: usize, work: &MqttWork) {
        match work {
            MqttWork::Subscribed => {
                self.subscribers.insert(slot);
            }
            MqttWork::Unsubscribed => {
                self.subscribers.remove(&slot);
            }
            MqttWork::Behind => {
                self.lagging.insert(slot);
            }
            _ => {}
        }
    }

    /// Whether connections wait to catch up (the loop retries them in its timeout sweep, for
    /// those waiting for their client to read).
    pub(super) fn has_lagging(&self) -> bool {
        !self.lagging.is_empty()
    }

    /// Forgets a closed connection.
    pub(super) fn remove(&mut self, slot: usize) {
        self.subscribers.remove(&slot);
        self.lagging.remove(&slot);
    }

    /// The session to store for `snapshot`: its cursor per partition is the first offset
    /// it has not acknowledged, or where the shard's live delivery is.
    pub(super) fn record(&self, snapshot: &SessionSnapshot, now_wall_ms: i64) -> SessionRecord {
        let mut cursors: HashMap<PartitionId, i64> = self.cursors.clone();
        for (&partition, &pending) in &snapshot.pending {
            let at = cursors.entry(partition).or_insert(pending);
            *at = (*at).min(pending);
        }
        let mut cursors: Vec<(PartitionId, i64)> = cursors.into_iter().collect();
        cursors.sort_unstable();
        SessionRecord {
            expiry_interval_s: snapshot.expiry_interval_s,
            stored_at_ms: now_wall_ms,
            subscriptions: snapshot.subscriptions.clone(),
            cursors,
        }
    }

    /// Reads what the log gained and offers it to this shard's subscribers, then lets
    /// lagging connections catch up. Returns the slots written to with the bytes added, and
    /// whether more is left to read (the caller wakes itself for another pass).
    pub(super) fn deliver<S: HasConn>(
        &mut self,
        store: &dyn LogStore,
        limits: (usize, usize),
        conns: &mut [Option<S>],
        metrics: &ShardMetrics,
    ) -> (Vec<(usize, u64)>, bool) {
        let (decompressed_bytes_max, write_buffer_bytes_max) = limits;
        let mut touched: HashMap<usize, u64> = HashMap::new();
        let mut more = false;
        let now = crate::clock::wall_ms();
        self.share_table.refresh(&mut self.shares);
        let grown = self.feed.take();
        for (partition, (first, last)) in grown {
            let cursor = *self.cursors.entry(partition).or_insert(first);
            if self.subscribers.is_empty() {
                self.cursors.insert(partition, cursor.max(last + 1));
                continue;
            }
            // Everything up to `last` is read now, in budget-sized steps.
            let mut at = cursor;
            while at <= last {
                let Some((next, messages)) =
                    self.read(store, partition, at, decompressed_bytes_max)
                else {
                    break;
                };
                // Batches committed after `last` may not be durable yet: they come with
                // their own report.
                for (offset, message) in messages.iter().filter(|(o, _)| *o <= last) {
                    for &slot in &self.subscribers {
                        let Some(conn) = conns.get_mut(slot).and_then(Option::as_mut) else {
                            continue;
                        };
                        let conn = conn.conn_mut();
                        let Some(mqtt) = conn.mqtt() else { continue };
                        if !mqtt.takes_live(partition, *offset) {
                            continue;
                        }
                        let (offer, added) = conn.offer_mqtt(
                            message,
                            (partition, *offset),
                            now,
                            write_buffer_bytes_max,
                            false,
                            &self.shares.1,
                            metrics,
                        );
                        if added > 0 {
                            *touched.entry(slot).or_default() += added;
                        }
                        if offer == Offer::Full
                            && let Some(mqtt) = conn.mqtt()
                        {
                            mqtt.fall_behind(partition, *offset);
                            self.lagging.insert(slot);
                        }
                    }
                }
                at = next.min(last + 1);
            }
            self.cursors.insert(partition, at.max(cursor));
        }
        for slot in self.lagging.clone() {
            let Some(conn) = conns.get_mut(slot).and_then(Option::as_mut) else {
                self.lagging.remove(&slot);
                continue;
            };
            let conn = conn.conn_mut();
            let (added, left) = self.catch_up(store, conn, limits, now, metrics);
            if added > 0 {
                *touched.entry(slot).or_default() += added;
            }
            match left {
                CatchUp::Done => {
                    self.lagging.remove(&slot);
                }
                CatchUp::More => more = true,
                CatchUp::Full => {}
            }
        }
        (touched.into_iter().collect(), more)
    }

    /// Reads one budget of batches of `partition` from `at`: the offset after them and
    /// their messages (from `at` on). `None` if the read failed or found nothing.
    fn read(
        &mut self,
        store: &dyn LogStore,
        partition: PartitionId,
        at: i64,
        decompressed_bytes_max: usize,
    ) -> Option<(i64, Vec<(i64, LogMessage)>)> {
        if !self.names.contains_key(&partition) {
            self.refresh_names(store);
        }
        let name = self.names.get(&partition)?;
        let mut next = at;
        let mut messages = Vec::new();
        let read = store.read(partition, at, DELIVERY_READ_BYTES, &mut |batch| {
            if let Ok(header) = BatchHeader::parse(batch) {
                next = next.max(header.next_offset());
            }
            messages.extend(
                mapping::batch_messages(name, batch, decompressed_bytes_max)
                    .into_iter()
                    .filter(|(offset, _)| *offset >= at),
            );
        });
        match read {
            Ok(_) if next > at => Some((next, messages)),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(?partition, "cannot read records for MQTT subscribers: {e}");
                None
            }
        }
    }

    /// Lets one connection read its backlog up to the shard's live cursors, one budget per
    /// partition: the bytes written, and whether it is done, has more, or is full.
    fn catch_up(
        &mut self,
        store: &dyn LogStore,
        conn: &mut super::conn::Conn,
        limits: (usize, usize),
        now: i64,
        metrics: &ShardMetrics,
    ) -> (u64, CatchUp) {
        let (decompressed_bytes_max, write_buffer_bytes_max) = limits;
        let Some(mqtt) = conn.mqtt() else {
            return (0, CatchUp::Done);
        };
        if !mqtt.connected() {
            return (0, CatchUp::Full);
        }
        let mut added_total = 0;
        let mut state = CatchUp::Done;
        for (partition, next) in mqtt.behind() {
            // A partition the shard has no cursor for has had nothing durable yet.
            let target = self.cursors.get(&partition).copied().unwrap_or(0);
            if next >= target {
                if let Some(mqtt) = conn.mqtt() {
                    mqtt.advance(partition, next, true);
                }
                continue;
            }
            let Some((end, messages)) = self.read(store, partition, next, decompressed_bytes_max)
            else {
                // Nothing readable (deleted by retention, or the topic is gone): live delivery
                // takes over from the shard's cursor.
                if let Some(mqtt) = conn.mqtt() {
                    mqtt.advance(partition, target, true);
                }
                continue;
            };
            let mut full_at = None;
            for (offset, message) in messages.iter().filter(|(o, _)| *o < target) {
                let (offer, added) = conn.offer_mqtt(
                    message,
                    (partition, *offset),
                    now,
                    write_buffer_bytes_max,
                    true,
                    &self.shares.1,
                    metrics,
                );
                added_total += added;
                if offer == Offer::Full {
                    full_at = Some(*offset);
                    break;
                }
            }
            let Some(mqtt) = conn.mqtt() else {
                break;
            };
            match full_at {
                Some(offset) => {
                    mqtt.advance(partition, offset, false);
                    state = CatchUp::Full;
                    break;
                }
                None => {
                    let reached = end.min(target);
                    mqtt.advance(partition, reached, reached >= target);
                    if reached < target {
                        state = CatchUp::More;
                    }
                }
            }
        }
        (added_total, state)
    }
}

/// Where a connection's catching up stands after a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CatchUp {
    /// Every partition reached live delivery.
    Done,
    /// Budgets ran out: another pass continues.
    More,
    /// Its queue is full: it continues when the client acknowledges.
    Full,
}
