//! Everything the writer thread does besides appending what it is handed: one variant per
//! kind of work, each carried out in one place (`dispatch.rs`), in order with the appends
//! submitted around it. The shards and the group coordinator build these; the writer stores.
//!
//! - [`Work::Kafka`]: a Kafka operation that reads or changes the log (Produce, topics,
//!   partitions, records, configs, committed offsets, producer ids, Metadata's creations);
//!   Produce finds (or creates) its topics, then appends every batch through group commit.
//! - [`Work::Outputs`]: the messages an ingest plugin made, each in the topic it names.
//! - [`Work::MqttPublish`]: an MQTT publish, its batch already built on the shard.
//! - [`Work::LoadSession`], [`Work::SaveSession`], [`Work::ExpireSessions`],
//!   [`Work::ReleaseQos2`]: MQTT persistent sessions and QoS 2 state.
//!
//! Topics are found or created in one way for every front: [`weir_core::kafka::resolve`].
//! Which handler each work goes to is in `dispatch.rs`.

use weir_core::kafka::{KafkaOp, KafkaOpResult};
use weir_core::log_store::{CheckedBatch, DedupKey, PartitionId, StoreError};
use weir_core::mqtt_connection::Stored;
use weir_core::mqtt_kafka::SessionRecord;
use weir_core::plugin::Message;
use weir_mqtt::ReasonCode;

use super::group_commit::AppendFailure;

/// Told a Kafka operation's result.
pub type KafkaDone = Box<dyn FnOnce(KafkaOpResult) + Send>;
/// Told the outcome of storing an MQTT message.
pub type StoreDone = Box<dyn FnOnce(Stored) + Send>;
/// Told the session to resume, or the CONNACK code to refuse with.
pub type SessionDone = Box<dyn FnOnce(Result<Option<SessionRecord>, ReasonCode>) + Send>;
/// Told that a QoS 2 key is durably gone.
pub type ReleasedDone = Box<dyn FnOnce() + Send>;

/// What an MQTT publish does to its topic's retained message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retained {
    /// Not a retained publish.
    Unchanged,
    /// Its record becomes the retained message.
    Replace,
    /// A retained publish with an empty payload: the retained message goes.
    Clear,
}

/// How topics that do not exist are handled.
#[derive(Debug, Clone, Copy)]
pub struct Creation {
    /// Create them (else: UNKNOWN_TOPIC_OR_PARTITION).
    pub create_missing: bool,
    /// Partitions of a created topic.
    pub partitions: u32,
    /// Creation stops at this many topics.
    pub topics_max: u32,
}

/// Why messages were not stored.
#[derive(Debug)]
pub enum OutputFailure {
    /// A topic could not be had: its Kafka error code.
    Topic(i16),
    /// The retained message could not be stored.
    Retained(StoreError),
    /// An append failed.
    Append(AppendFailure),
}

/// Told where the messages were stored, or why not.
pub type OutputsDone = Box<dyn FnOnce(Result<Vec<(PartitionId, i64)>, OutputFailure>) + Send>;

/// An MQTT publish made into a record batch on its shard.
#[derive(Debug)]
pub struct MqttPublish {
    /// The MQTT topic (the record's key, and the retained message's name).
    pub topic: String,
    /// What it does to the topic's retained message.
    pub retained: Retained,
    /// The Kafka topic its record goes to.
    pub kafka_topic: String,
    /// The topic's partition the MQTT topic hashes to, as the shard found it; `None`: the
    /// topic is not in the log yet, the writer finds or creates it.
    pub partition: Option<PartitionId>,
    /// Its record.
    pub batch: CheckedBatch,
    /// The QoS 2 duplicate-check key stored with it.
    pub dedup: Option<Box<DedupKey>>,
    /// How a missing Kafka topic is created.
    pub creation: Creation,
    /// `mqtt.retained_messages_max`.
    pub retained_messages_max: u64,
}

/// The writer thread's work besides appends.
pub enum Work {
    /// A Kafka operation for the log (not a group coordinator's).
    Kafka { op: KafkaOp, done: KafkaDone },
    /// A Kafka Produce (`op`), with the partitions of its topics as the shard found them,
    /// in the order of its topics (`None`: the writer finds or creates the topic).
    Produce {
        op: KafkaOp,
        known: Vec<Option<Vec<PartitionId>>>,
        done: KafkaDone,
    },
    /// Messages an ingest plugin made: each stored in its topic by key, `dedup` with the
    /// first; `retained`: the MQTT topic whose retained message the first becomes, and the
    /// limit of retained messages.
    Outputs {
        messages: Vec<Message>,
        creation: Creation,
        dedup: Option<Box<DedupKey>>,
        retained: Option<(String, u64)>,
        done: OutputsDone,
    },
    /// An MQTT publish.
    MqttPublish(Box<MqttPublish>, StoreDone),
    /// Load (with `clean_start`: delete) a client's stored session.
    LoadSession {
        client_id: String,
        clean_start: bool,
        done: SessionDone,
    },
    /// Store a client's session, within `sessions_max` sessions.
    SaveSession {
        client_id: String,
        record: SessionRecord,
        sessions_max: u64,
    },
    /// Delete sessions that have expired.
    ExpireSessions,
    /// Delete a client's QoS 2 key of packet `id` (every one of its keys with `None`).
    ReleaseQos2 {
        client_id: String,
        id: Option<u16>,
        done: ReleasedDone,
    },
}

impl std::fmt::Debug for Work {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            Work::Kafka { .. } => "Kafka",
            Work::Produce { .. } => "Produce",
            Work::Outputs { .. } => "Outputs",
            Work::MqttPublish(..) => "MqttPublish",
            Work::LoadSession { .. } => "LoadSession",
            Work::SaveSession { .. } => "SaveSession",
            Work::ExpireSessions => "ExpireSessions",
            Work::ReleaseQos2 { .. } => "ReleaseQos2",
        };
        f.write_str(kind)
    }
}
