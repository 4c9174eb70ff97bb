//! The MQTT front's shard side: storing what connections publish (through the log's writer),
//! loading and saving persistent sessions, the tables every shard shares (client ids' shared
//! subscriptions, delayed wills), and delivery that follows the log. The broker side of one
//! connection, sans-IO, is [`weir_core::mqtt_connection`]; this file owns what needs the
//! writer, the store's reads on the shard, and the clock's readings it hands down.
//!
//! - **Publish**: the messages a connection asks to store in one read become record batches
//!   (consecutive plain publishes to one partition share one, [`PublishRun`]; a retained or
//!   QoS 2 publish, or one whose topic is new, gets its own,
//!   [`weir_core::mqtt_kafka::message_batch`]) in the Kafka topic its first level names,
//!   created when missing (within `kafka.topics_max`, with `kafka.auto_create_partitions_count`
//!   partitions), in the partition its MQTT topic hashes to, through the writer's group commit
//!   like a Kafka produce. `mqtt.kafka_topic_rules` can name another Kafka topic for matching
//!   MQTT topics. A retained publish also replaces (or, with an empty payload, clears) the
//!   topic's retained message in the log's `mqtt_retained` table, durably, before its record
//!   is appended.
//! - **Delivery follows the log**: no publish is handed from connection to connection. The
//!   writer tells every shard which partitions grew ([`AppendFeed`]); a shard with
//!   subscribers reads the new batches (short read transactions on the shard), turns each
//!   record into an MQTT message ([`weir_core::mqtt_kafka::fill_message`]), records
//!   Kafka clients produced included, and offers it to its own subscribers. So delivery needs
//!   no shard-to-shard messages, and a message reaches subscribers only once it is durable. A
//!   subscriber that fell behind reads the partition from the log itself ([`MqttTail`]).
//! - **Persistent sessions** are stored in the log's `mqtt_sessions` table ([`save_session`],
//!   [`load_session`]); a CONNECT with a client id that is connected takes it over: the old
//!   connection is closed and stores its session first, then the new one loads it; with
//!   several racing for one id, the newest loads once every earlier one has let go
//!   ([`super::client_ids`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use weir_core::log_store::{CheckedBatch, DedupKey, LogStore, PartitionId};
use weir_core::mqtt_connection::{
    DeliveryEdge, MqttSettings, MqttWork, Offer, SessionSnapshot, Shares, Stored,
};
use weir_core::mqtt_kafka::{self as mapping, LogMessage, MessageBuffer, SessionRecord};
use weir_kafka::record_batch::{BatchBuilder, BatchHeader};
use weir_mqtt::ReasonCode;

use super::inbox::StoredRun;
use super::settings::{ServerConfig, ShardMetrics};
use super::topic_table::TopicTable;
use crate::writer::{Creation, MqttPublish, Retained, StoreDone, Work};

/// Bytes of records a [`PublishRun`] gathers before it goes to the writer.
const RUN_BYTES_MAX: usize = 256 * 1024;

/// Bytes of batches read per partition in one delivery pass; more is read in the next pass.
const DELIVERY_READ_BYTES: usize = 1024 * 1024;

/// Stores `message`: its record batch is built here, on the shard, and the writer stores it
/// (the retained message first, if it has the retain flag, then the record through group
/// commit, in the partition its MQTT topic hashes to); `done` gets the reason code for its
/// acknowledgement once the record is durable (or failed).
pub(super) fn publish(
    config: &ServerConfig,
    (topics, kafka_topic): (&mut TopicTable, String),
    message: LogMessage,
    dedup: Option<Box<DedupKey>>,
    done: StoreDone,
) {
    let settings = &config.mqtt;
    let batch = match CheckedBatch::new(mapping::message_batch(&message)) {
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
    let retained = match (message.retain, message.payload.is_empty()) {
        (false, _) => Retained::Unchanged,
        (true, false) => Retained::Replace,
        (true, true) => Retained::Clear,
    };
    // The partition the MQTT topic hashes to, when the Kafka topic exists: the writer then
    // only stores; otherwise it creates the topic first.
    let partition = topics
        .partitions(&*config.store, &kafka_topic)
        .and_then(|p| {
            p.get(mapping::partition_for_key(
                message.topic.as_bytes(),
                p.len(),
            ))
        })
        .copied();
    let publish = MqttPublish {
        kafka_topic,
        partition,
        topic: message.topic,
        retained,
        batch,
        dedup,
        creation: creation(settings),
        retained_messages_max: settings.retained_messages_max,
    };
    config
        .writer
        .work(Work::MqttPublish(Box::new(publish), done));
}

/// Plain publishes of one connection's read bound for one partition, made into one record
/// batch: one work item for the writer, one append, one answer for them all (their offsets
/// follow the batch's base offset, in order). A publish joins a run when it has no retain
/// flag, no QoS 2 duplicate-check key and no plugin binding, and its Kafka topic exists.
pub(super) struct PublishRun {
    kafka_topic: String,
    partition: PartitionId,
    builder: BatchBuilder,
    tokens: Vec<u64>,
}

impl PublishRun {
    /// The partition `message` (of Kafka topic `kafka_topic`) would join a run in, if it
    /// can join one (see [`PublishRun`]; the caller checks the plugin binding).
    pub(super) fn partition_for(
        config: &ServerConfig,
        topics: &mut TopicTable,
        kafka_topic: &str,
        message: &LogMessage,
        dedup: bool,
    ) -> Option<PartitionId> {
        if dedup || message.retain {
            return None;
        }
        let partitions = topics.partitions(&*config.store, kafka_topic)?;
        let index = mapping::partition_for_key(message.topic.as_bytes(), partitions.len());
        partitions.get(index).copied()
    }

    pub(super) fn new(kafka_topic: String, partition: PartitionId) -> PublishRun {
        PublishRun {
            kafka_topic,
            partition,
            builder: BatchBuilder::with_capacity(4096),
            // A run's QoS 1 and 2 publishes are at most the receive maximum.
            tokens: Vec::with_capacity(64),
        }
    }

    pub(super) fn partition(&self) -> PartitionId {
        self.partition
    }

    /// Whether the run's batch reached [`RUN_BYTES_MAX`].
    pub(super) fn is_full(&self) -> bool {
        self.builder.encoded_len() >= RUN_BYTES_MAX
    }

    /// Adds the publish answered by `token`.
    pub(super) fn push(&mut self, token: u64, message: &LogMessage) {
        mapping::push_message(&mut self.builder, message);
        self.tokens.push(token);
    }

    /// Hands the run to the writer; `reply` gets its outcome once durable (or failed).
    pub(super) fn submit(
        self,
        config: &ServerConfig,
        reply: impl FnOnce(Box<StoredRun>) + Send + 'static,
    ) {
        let tokens = self.tokens;
        let batch = match CheckedBatch::new(self.builder.finish()) {
            Ok(batch) => batch,
            Err(e) => {
                tracing::error!("MQTT messages made an invalid batch: {e}");
                let stored = Stored::plain(ReasonCode::IMPLEMENTATION_SPECIFIC_ERROR, None);
                reply(Box::new(StoredRun { tokens, stored }));
                return;
            }
        };
        let publish = MqttPublish {
            kafka_topic: self.kafka_topic,
            partition: Some(self.partition),
            // Only for a retained message or a topic to find: neither here.
            topic: String::new(),
            retained: Retained::Unchanged,
            batch,
            dedup: None,
            creation: creation(&config.mqtt),
            retained_messages_max: config.mqtt.retained_messages_max,
        };
        let done: StoreDone = Box::new(move |stored| reply(Box::new(StoredRun { tokens, stored })));
        config
            .writer
            .work(Work::MqttPublish(Box::new(publish), done));
    }
}

/// How a Kafka topic an MQTT message names is created when missing: with
/// `kafka.auto_create_partitions_count` partitions, while fewer than `kafka.topics_max` exist.
pub(super) fn creation(settings: &MqttSettings) -> Creation {
    Creation {
        create_missing: true,
        partitions: settings.auto_create_partitions,
        topics_max: settings.topics_max,
    }
}

/// What the writer tells a shard: partitions that grew, with the first and last offset
/// made durable since the shard last looked. Its size is bounded by the number of partitions;
/// the lock is taken twice per commit by the writer and once per delivery pass by the shard,
/// never per message.
#[derive(Debug, Default)]
pub(super) struct AppendFeed {
    state: Mutex<FeedState>,
}

#[derive(Debug, Default)]
struct FeedState {
    /// Durable, their producers not answered yet: the last offset per partition. The shard
    /// does not deliver them yet (a producer with a No Local subscription learns where its
    /// record went first), but a new subscription knows they came before it.
    held: HashMap<PartitionId, i64>,
    /// Durable and answered, not taken by the shard yet: first and last offset.
    grown: HashMap<PartitionId, (i64, i64)>,
}

impl AppendFeed {
    /// Records appends `(partition, base offset, last offset)` made durable, before their
    /// producers are answered.
    pub(super) fn hold(&self, appended: &[(PartitionId, i64, i64)]) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for &(partition, _, last) in appended {
            let held = state.held.entry(partition).or_insert(last);
            *held = (*held).max(last);
        }
    }

    /// Records appends `(partition, base offset, last offset)` whose producers are answered:
    /// the shard delivers them.
    pub(super) fn push(&self, appended: &[(PartitionId, i64, i64)]) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for &(partition, first, last) in appended {
            if state.held.get(&partition).is_some_and(|held| *held <= last) {
                state.held.remove(&partition);
            }
            let entry = state.grown.entry(partition).or_insert((first, last));
            entry.0 = entry.0.min(first);
            entry.1 = entry.1.max(last);
        }
    }

    fn take(&self) -> HashMap<PartitionId, (i64, i64)> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut state.grown)
    }
}

/// What the writer reported and the shard has not taken yet is exactly what is stored and
/// not offered (the shard offers everything it takes in the same pass).
impl DeliveryEdge for AppendFeed {
    fn not_offered(&self) -> Vec<(PartitionId, i64)> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut ends: HashMap<PartitionId, i64> = state.held.clone();
        for (&partition, &(_, last)) in &state.grown {
            let end = ends.entry(partition).or_insert(last);
            *end = (*end).max(last);
        }
        ends.into_iter().map(|(p, last)| (p, last + 1)).collect()
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
    /// The messages of the last read, buffers kept for the next.
    messages: MessageBuffer,
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
            messages: MessageBuffer::default(),
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
        let mut sent: Vec<(PartitionId, i64)> = snapshot.sent.clone().into_iter().collect();
        sent.sort_unstable();
        SessionRecord {
            expiry_interval_s: snapshot.expiry_interval_s,
            stored_at_ms: now_wall_ms,
            subscriptions: snapshot.subscriptions.clone(),
            cursors,
            sent,
            released: snapshot.released.clone(),
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
            let mut messages = std::mem::take(&mut self.messages);
            while at <= last {
                let read = (partition, at);
                let Some(next) = self.read(store, read, decompressed_bytes_max, &mut messages)
                else {
                    break;
                };
                // Batches committed after `last` may not be durable yet: they come with
                // their own report; a batch's records before `at` were delivered.
                let live = messages.messages().iter();
                for (offset, message) in live.filter(|(o, _)| (at..=last).contains(o)) {
                    let at = (partition, *offset);
                    let offered = (now, write_buffer_bytes_max, metrics);
                    self.offer_live(conns, (at, message), offered, &mut touched);
                }
                at = next.min(last + 1);
            }
            self.messages = messages;
            self.cursors.insert(partition, at.max(cursor));
        }
        let more = self.serve_lagging(store, conns, (limits, now, metrics), &mut touched);
        // What the offers left unsealed (over TLS or WebSocket) is sealed once, here: every
        // connection offered to is in `touched`.
        for (&slot, added) in &mut touched {
            if let Some(conn) = conns.get_mut(slot).and_then(Option::as_mut) {
                *added += conn.conn_mut().seal_deliveries();
            }
        }
        (touched.into_iter().collect(), more)
    }

    /// Offers the message at `at` to every subscriber that takes it live; one that is full
    /// falls behind and reads the log itself from there. Counts the bytes added per slot in
    /// `touched`, where every connection that took a message is (its bytes may still be
    /// unsealed).
    fn offer_live<S: HasConn>(
        &mut self,
        conns: &mut [Option<S>],
        (at, message): ((PartitionId, i64), &LogMessage),
        (now, write_buffer_bytes_max, metrics): (i64, usize, &ShardMetrics),
        touched: &mut HashMap<usize, u64>,
    ) {
        for &slot in &self.subscribers {
            let Some(conn) = conns.get_mut(slot).and_then(Option::as_mut) else {
                continue;
            };
            let conn = conn.conn_mut();
            let Some(mqtt) = conn.mqtt() else { continue };
            if !mqtt.takes_live(at.0, at.1) {
                continue;
            }
            let (offer, added) = conn.offer_mqtt(
                message,
                at,
                now,
                write_buffer_bytes_max,
                false,
                &self.shares.1,
                metrics,
            );
            if added > 0 || offer == Offer::Taken {
                *touched.entry(slot).or_default() += added;
            }
            if offer == Offer::Full
                && let Some(mqtt) = conn.mqtt()
            {
                mqtt.fall_behind(at.0, at.1);
                self.lagging.insert(slot);
            }
        }
    }

    /// Lets each lagging connection catch up one step; true if any has more to read.
    fn serve_lagging<S: HasConn>(
        &mut self,
        store: &dyn LogStore,
        conns: &mut [Option<S>],
        (limits, now, metrics): ((usize, usize), i64, &ShardMetrics),
        touched: &mut HashMap<usize, u64>,
    ) -> bool {
        let mut more = false;
        for slot in self.lagging.clone() {
            let Some(conn) = conns.get_mut(slot).and_then(Option::as_mut) else {
                self.lagging.remove(&slot);
                continue;
            };
            let conn = conn.conn_mut();
            let (added, left) = self.catch_up(store, conn, limits, now, metrics);
            // Noted even with no bytes added yet: what it took may wait unsealed.
            *touched.entry(slot).or_default() += added;
            match left {
                CatchUp::Done => {
                    self.lagging.remove(&slot);
                }
                CatchUp::More => more = true,
                CatchUp::Full => {}
            }
        }
        more
    }

    /// Reads one budget of batches of `partition` from `at`: the offset after them and
    /// their messages (from `at` on). `None` if the read failed or found nothing.
    /// The messages go to `messages` (cleared first; the caller gives it back to
    /// `self.messages` to keep its buffers).
    fn read(
        &mut self,
        store: &dyn LogStore,
        (partition, at): (PartitionId, i64),
        decompressed_bytes_max: usize,
        messages: &mut MessageBuffer,
    ) -> Option<i64> {
        if !self.names.contains_key(&partition) {
            self.refresh_names(store);
        }
        let name = self.names.get(&partition)?;
        let mut next = at;
        messages.clear();
        let read = store.read(partition, at, DELIVERY_READ_BYTES, &mut |batch| {
            if let Ok(header) = BatchHeader::parse(batch) {
                next = next.max(header.next_offset());
            }
            messages.read_batch(name, batch, decompressed_bytes_max);
        });
        match read {
            Ok(_) if next > at => Some(next),
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
            let mut messages = std::mem::take(&mut self.messages);
            let read = (partition, next);
            let Some(end) = self.read(store, read, decompressed_bytes_max, &mut messages) else {
                self.messages = messages;
                // Nothing readable (deleted by retention, or the topic is gone): live delivery
                // takes over from the shard's cursor.
                if let Some(mqtt) = conn.mqtt() {
                    mqtt.advance(partition, target, true);
                }
                continue;
            };
            let backlog = (messages.messages().iter()).filter(|(o, _)| (next..target).contains(o));
            let offered = (now, write_buffer_bytes_max, metrics);
            let (added, full_at) = self.offer_backlog(conn, partition, backlog, offered);
            self.messages = messages;
            added_total += added;
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

    /// Offers `backlog` (messages of `partition`) to a connection catching up, until it is
    /// full: the bytes added, and the offset it was full at.
    fn offer_backlog<'m>(
        &self,
        conn: &mut super::conn::Conn,
        partition: PartitionId,
        backlog: impl Iterator<Item = &'m (i64, LogMessage)>,
        (now, write_buffer_bytes_max, metrics): (i64, usize, &ShardMetrics),
    ) -> (u64, Option<i64>) {
        let mut added_total = 0;
        for (offset, message) in backlog {
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
                return (added_total, Some(*offset));
            }
        }
        (added_total, None)
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
