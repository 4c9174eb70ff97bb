//! The partitioned log as the rest of the broker sees it.
//!
//! A [`LogStore`] keeps, per partition, a sequence of Kafka RecordBatch v2 batches with
//! contiguous offsets. Appends come in groups: one group is one durable transaction, so a
//! group-commit writer can pay for one fsync per group rather than per batch. Reads hand out
//! stored batch bytes unchanged.
//!
//! Invariants every implementation keeps:
//! - offsets within a partition are strictly increasing and contiguous: a batch appended with
//!   n records gets `[high_watermark, high_watermark + n)` and moves the high watermark by n;
//! - a group is durable once the `append` that wrote it returned and then either a later
//!   `append` that stored at least one batch or a `sync` returned (a store may make it durable
//!   sooner; LMDB syncs a commit's data at once and its meta page with the next commit, which
//!   halves the syncs under load). Whoever acknowledges to clients follows this rule: the
//!   server's group-commit writer does;
//! - if `append` returns an error, nothing of the group is visible, then or after a restart;
//! - a batch is validated (length, magic, CRC32C, record count) before it is stored.

use weir_kafka::record_batch::{BatchError, BatchHeader};

/// A partition's identity inside the store: assigned at topic creation, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionId(pub u32);

/// Most partitions one topic may have.
pub const TOPIC_PARTITIONS_MAX: u32 = 10_000;

/// Kafka's topic name rules, which every store enforces: 1 to 249 characters from
/// `[a-zA-Z0-9._-]`, not `.` or `..`. The error says so.
pub fn check_topic_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "topic name `{name}` must be 1 to 249 characters of a-z, A-Z, 0-9, `.`, `_`, `-`, \
             and not `.` or `..`"
        ))
    }
}

/// Longest consumer-group id, in bytes.
pub const GROUP_ID_BYTES_MAX: usize = 255;
/// Longest metadata string committed with an offset, in bytes (Kafka's
/// `offset.metadata.max.bytes` default).
pub const OFFSET_METADATA_BYTES_MAX: usize = 4096;

/// An offset a consumer group committed for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The next offset the group will read.
    pub offset: i64,
    /// The leader epoch the consumer saw (-1: not known).
    pub leader_epoch: i32,
    /// Whatever the client stored with it.
    pub metadata: String,
}

/// Per-topic settings. `-1` means unlimited, as in Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicConfig {
    /// Delete batches whose newest record is older than this (milliseconds).
    pub retention_ms: i64,
    /// Delete the oldest batches while a partition holds more than this (bytes).
    pub retention_bytes: i64,
}

impl Default for TopicConfig {
    /// Kafka's defaults: seven days, no size limit.
    fn default() -> Self {
        TopicConfig {
            retention_ms: 7 * 24 * 60 * 60 * 1000,
            retention_bytes: -1,
        }
    }
}

/// A topic and its partitions, in partition-index order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// The topic name.
    pub name: String,
    /// Partition `i` of the topic is `partitions[i]`.
    pub partitions: Vec<PartitionId>,
    /// Its settings.
    pub config: TopicConfig,
}

/// The id of partition `index` among a topic's `partitions` (Kafka indexes are `i32`; a
/// negative or missing one is `None`).
pub fn partition_at(partitions: &[PartitionId], index: i32) -> Option<PartitionId> {
    partitions.get(usize::try_from(index).ok()?).copied()
}

/// Where a partition's log starts and ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartitionState {
    /// The first offset that can be read.
    pub log_start_offset: i64,
    /// The offset the next record will get (Kafka's high watermark on a single node).
    pub high_watermark: i64,
    /// Bytes of batches stored.
    pub size_bytes: u64,
}

/// One batch to append.
#[derive(Debug, Clone)]
pub struct Append {
    /// Target partition.
    pub partition: PartitionId,
    /// One RecordBatch v2, checked. Its base offset is overwritten with the assigned one.
    pub batch: CheckedBatch,
    /// A key that makes the append happen at most once (an MQTT QoS 2 publish: the client id
    /// and packet identifier): while the store holds the key, an append with it is not
    /// written again and gets the offsets the first one got. Kept until
    /// [`LogStore::release_dedup`].
    pub dedup: Option<Box<DedupKey>>,
}

/// A key for [`Append::dedup`]: an owner (an MQTT client id, at most
/// [`RETAINED_TOPIC_BYTES_MAX`] bytes) and a 16-bit identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DedupKey {
    /// Whose key it is.
    pub owner: String,
    /// The identifier (an MQTT packet identifier).
    pub id: u16,
}

/// A RecordBatch v2 checked whole when it was made: length, magic, CRC32C, codec bits, record
/// count, maxTimestamp and every record's framing (of a compressed batch too, decompressed
/// within a limit, when made with [`CheckedBatch::decompressing`]). A store appends only
/// these, so the check runs on the thread that makes the batch (a connection's shard, in
/// parallel with the others) and never inside the store's single write transaction, and a
/// batch that was not checked cannot reach the log. The bytes cannot change afterwards except
/// for the base offset, which the CRC does not cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedBatch {
    bytes: Vec<u8>,
    header: BatchHeader,
}

impl CheckedBatch {
    /// Checks `bytes` (the records of an uncompressed batch; a compressed batch's header and
    /// CRC only).
    pub fn new(bytes: Vec<u8>) -> Result<CheckedBatch, BatchError> {
        let header = weir_kafka::record_batch::validate(&bytes)?;
        Ok(CheckedBatch { bytes, header })
    }

    /// Checks `bytes` and, if compressed, its records, decompressing at most
    /// `decompressed_bytes_max` bytes.
    pub fn decompressing(
        bytes: Vec<u8>,
        decompressed_bytes_max: usize,
    ) -> Result<CheckedBatch, BatchError> {
        let header = weir_kafka::record_batch::validate_all(&bytes, decompressed_bytes_max)?;
        Ok(CheckedBatch { bytes, header })
    }

    /// Its header, as checked (with the base offset last set).
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// Sets the base offset (outside the CRC).
    pub fn set_base_offset(&mut self, base_offset: i64) {
        weir_kafka::record_batch::set_base_offset(&mut self.bytes, base_offset);
        self.header.base_offset = base_offset;
    }

    /// Its bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

impl std::ops::Deref for CheckedBatch {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Where an appended batch landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Offset of its first record.
    pub base_offset: i64,
    /// Offset of its last record.
    pub last_offset: i64,
    /// The partition's log start offset after the append.
    pub log_start_offset: i64,
}

/// Why one batch of a group was not appended. The rest of the group is unaffected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// No such partition (Kafka: UNKNOWN_TOPIC_OR_PARTITION).
    #[error("unknown partition {0:?}")]
    UnknownPartition(PartitionId),
    /// An idempotent producer's batch does not follow its last one on the partition
    /// (Kafka: OUT_OF_ORDER_SEQUENCE_NUMBER).
    #[error("out of order sequence: expected {expected}, got {got}")]
    OutOfOrderSequence {
        /// The sequence the next batch must start with.
        expected: i32,
        /// The sequence it started with.
        got: i32,
    },
    /// An idempotent producer's epoch is older than one already seen on the partition
    /// (Kafka: INVALID_PRODUCER_EPOCH): a newer instance of the producer has fenced it.
    #[error("producer epoch {epoch} is older than the current {current}")]
    ProducerFenced {
        /// The batch's epoch.
        epoch: i16,
        /// The newest epoch seen.
        current: i16,
    },
    /// The owner of a dedup key is longer than [`RETAINED_TOPIC_BYTES_MAX`] bytes.
    #[error("dedup key owner longer than {RETAINED_TOPIC_BYTES_MAX} bytes")]
    DedupKeyTooLong,
}

/// A failure of the store as a whole, or of an administrative request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The map or the disk is full. Nothing of the request was written; retry once space is
    /// freed (retention, deleted records or topics, a larger map). Kafka: KAFKA_STORAGE_ERROR;
    /// MQTT: 0x97 quota exceeded.
    #[error("storage full: {0}")]
    Full(String),
    /// A commit or sync failed: acknowledged data can no longer be promised. The process must
    /// stop completing writes and exit.
    #[error("fatal storage failure: {0}")]
    Fatal(String),
    /// Stored data fails its checks.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// No such topic.
    #[error("unknown topic `{0}`")]
    UnknownTopic(String),
    /// No such partition.
    #[error("unknown partition {0:?}")]
    UnknownPartition(PartitionId),
    /// The topic exists already.
    #[error("topic `{0}` already exists")]
    TopicExists(String),
    /// The offset is before the log start or after the high watermark.
    #[error("offset {offset} is outside [{log_start_offset}, {high_watermark}]")]
    OffsetOutOfRange {
        /// The offset asked for.
        offset: i64,
        /// The partition's log start.
        log_start_offset: i64,
        /// The partition's high watermark.
        high_watermark: i64,
    },
    /// A request argument is invalid (names the argument).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// What a read returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReadSummary {
    /// Batches handed to the visitor.
    pub batches: usize,
    /// Their total size.
    pub bytes: usize,
    /// The partition's state when the read ran.
    pub state: PartitionState,
}

/// What a retention pass deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionReport {
    /// Batches deleted.
    pub batches: u64,
    /// Bytes freed.
    pub bytes: u64,
}

/// The storage contract. Every method may be called from any thread; implementations
/// serialise writers internally.
pub trait LogStore: Send + Sync + std::fmt::Debug {
    /// Appends every batch in `appends` in one transaction, in order. Returns one result per
    /// append, in the same order. An `Err` means nothing was written. The group is durable
    /// after the next successful `append` or a `sync` (see the module's invariants).
    /// Batches of idempotent producers (a producer id and a base sequence) are checked
    /// against the producer's earlier batches on the partition, in the same transaction: a
    /// retry of one of its last 5 batches is not written again and gets the offsets the
    /// original got; a gap in its sequences or an older epoch is refused.
    fn append(
        &self,
        appends: &mut [Append],
    ) -> Result<Vec<Result<Appended, AppendError>>, StoreError>;

    /// Hands `visit` the stored batches of `partition` from the one holding `offset` on, until
    /// the next batch would take the total past `max_bytes`. The first batch is always handed
    /// over whole, even if larger than `max_bytes`, so a reader always makes progress (Kafka's
    /// rule). `offset == high_watermark` reads nothing.
    fn read(
        &self,
        partition: PartitionId,
        offset: i64,
        max_bytes: usize,
        visit: &mut dyn FnMut(&[u8]),
    ) -> Result<ReadSummary, StoreError>;

    /// The partition's start, end and size.
    fn partition(&self, partition: PartitionId) -> Result<PartitionState, StoreError>;

    /// Creates a topic with `partitions` partitions.
    fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        config: TopicConfig,
    ) -> Result<TopicInfo, StoreError>;

    /// Adds partitions to a topic so it has `total` (Kafka's CreatePartitions).
    fn add_partitions(&self, name: &str, total: u32) -> Result<TopicInfo, StoreError>;

    /// Changes a topic's settings.
    fn set_topic_config(&self, name: &str, config: TopicConfig) -> Result<(), StoreError>;

    /// Deletes a topic and frees its data.
    fn delete_topic(&self, name: &str) -> Result<(), StoreError>;

    /// One topic, if it exists.
    fn topic(&self, name: &str) -> Result<Option<TopicInfo>, StoreError>;

    /// Every topic, by name.
    fn topics(&self) -> Result<Vec<TopicInfo>, StoreError>;

    /// A number that changes each time a topic is created, given partitions or deleted, once
    /// the change is committed: a reader holding a table of topics' partitions knows from it
    /// when the table may be stale.
    fn topics_version(&self) -> u64;

    /// Moves the log start to `offset` (Kafka's DeleteRecords), deleting whole batches that
    /// end before it. `offset` may be inside a batch; `-1` means the high watermark. Returns
    /// the new log start.
    fn delete_records(&self, partition: PartitionId, offset: i64) -> Result<i64, StoreError>;

    /// The base offset of the first batch holding a record with a timestamp at or after
    /// `timestamp_ms`, or `None` if there is none (Kafka's ListOffsets by time, to batch
    /// granularity).
    fn offset_for_timestamp(
        &self,
        partition: PartitionId,
        timestamp_ms: i64,
    ) -> Result<Option<i64>, StoreError>;

    /// Applies every topic's retention at time `now_ms`, deleting whole batches from the log
    /// start.
    fn enforce_retention(&self, now_ms: i64) -> Result<RetentionReport, StoreError>;

    /// Allocates a new idempotent-producer id, durably: no id is ever handed out twice, also
    /// across restarts (Kafka's InitProducerId).
    fn allocate_producer_id(&self) -> Result<i64, StoreError>;

    /// Stores the offsets consumer group `group` commits, all in one durable transaction
    /// (Kafka's OffsetCommit). A group id longer than [`GROUP_ID_BYTES_MAX`] or metadata
    /// longer than [`OFFSET_METADATA_BYTES_MAX`] is refused with `InvalidArgument`.
    fn commit_offsets(
        &self,
        group: &str,
        offsets: &[(PartitionId, CommittedOffset)],
    ) -> Result<(), StoreError>;

    /// Every offset `group` has committed, by partition id in ascending order (Kafka's
    /// OffsetFetch). Offsets of deleted partitions are not returned.
    fn committed_offsets(
        &self,
        group: &str,
    ) -> Result<Vec<(PartitionId, CommittedOffset)>, StoreError>;

    /// The groups that have committed offsets, in key order (groups of equal length sort
    /// together). ListGroups and DescribeGroups report them as empty groups.
    fn offset_groups(&self) -> Result<Vec<String>, StoreError>;

    /// Deletes every offset `group` has committed (Kafka's DeleteGroups), durably; returns
    /// whether it had any.
    fn delete_group_offsets(&self, group: &str) -> Result<bool, StoreError>;

    /// Makes every committed transaction durable. The group-commit writer calls it when it
    /// has nothing more to commit; in relaxed durability the server calls it on a timer.
    fn sync(&self) -> Result<(), StoreError>;

    /// Stores `message` (opaque bytes; the MQTT front stores a one-record batch) as the
    /// retained message of MQTT topic `topic`, replacing any earlier one, or deletes it when
    /// `message` is `None`; durable when it returns. A topic longer than
    /// [`RETAINED_TOPIC_BYTES_MAX`] is refused with `InvalidArgument`, and a new topic when
    /// `topics_max` topics already have one with `Full`.
    fn set_retained(
        &self,
        topic: &str,
        message: Option<&[u8]>,
        topics_max: u64,
    ) -> Result<(), StoreError>;

    /// Hands `visit` every retained message with its topic, in topic byte order.
    fn retained(&self, visit: &mut dyn FnMut(&str, &[u8])) -> Result<(), StoreError>;

    /// Stores the persistent MQTT session of `client_id` (opaque bytes; the MQTT front
    /// stores a `weir_core::mqtt_kafka::SessionRecord`), or deletes it with `None`; durable when it
    /// returns. A client id longer than [`RETAINED_TOPIC_BYTES_MAX`] is refused with
    /// `InvalidArgument`, and a new session when `sessions_max` are stored with `Full`.
    fn put_mqtt_session(
        &self,
        client_id: &str,
        session: Option<&[u8]>,
        sessions_max: u64,
    ) -> Result<(), StoreError>;

    /// The stored session of `client_id`, if any.
    fn mqtt_session(&self, client_id: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Hands `visit` every stored session with its client id.
    fn mqtt_sessions(&self, visit: &mut dyn FnMut(&str, &[u8])) -> Result<(), StoreError>;

    /// Forgets dedup keys (see [`Append::dedup`]), durably: `owner`'s key `id`, or with `None`
    /// every key of `owner`. Later appends with them are written again.
    fn release_dedup(&self, owner: &str, id: Option<u16>) -> Result<(), StoreError>;
}

/// Longest MQTT topic a retained message can be kept for, in bytes (LMDB's key size limit is
/// 511 bytes).
pub const RETAINED_TOPIC_BYTES_MAX: usize = 480;

/// A store that holds nothing: it has no topics, partitions or offsets; writes that name a
/// topic or partition fail as unknown, the others succeed and keep nothing. For tests and
/// fuzzing of what sits above the log (sessions, the coordinator).
#[derive(Debug)]
pub struct EmptyStore;

impl LogStore for EmptyStore {
    fn append(&self, _: &mut [Append]) -> Result<Vec<Result<Appended, AppendError>>, StoreError> {
        Ok(Vec::new())
    }
    fn read(
        &self,
        p: PartitionId,
        _: i64,
        _: usize,
        _: &mut dyn FnMut(&[u8]),
    ) -> Result<ReadSummary, StoreError> {
        Err(StoreError::UnknownPartition(p))
    }
    fn partition(&self, p: PartitionId) -> Result<PartitionState, StoreError> {
        Err(StoreError::UnknownPartition(p))
    }
    fn create_topic(&self, n: &str, _: u32, _: TopicConfig) -> Result<TopicInfo, StoreError> {
        Err(StoreError::UnknownTopic(n.into()))
    }
    fn add_partitions(&self, n: &str, _: u32) -> Result<TopicInfo, StoreError> {
        Err(StoreError::UnknownTopic(n.into()))
    }
    fn set_topic_config(&self, n: &str, _: TopicConfig) -> Result<(), StoreError> {
        Err(StoreError::UnknownTopic(n.into()))
    }
    fn delete_topic(&self, n: &str) -> Result<(), StoreError> {
        Err(StoreError::UnknownTopic(n.into()))
    }
    fn topic(&self, _: &str) -> Result<Option<TopicInfo>, StoreError> {
        Ok(None)
    }
    fn topics(&self) -> Result<Vec<TopicInfo>, StoreError> {
        Ok(Vec::new())
    }
    fn topics_version(&self) -> u64 {
        0
    }
    fn delete_records(&self, p: PartitionId, _: i64) -> Result<i64, StoreError> {
        Err(StoreError::UnknownPartition(p))
    }
    fn offset_for_timestamp(&self, p: PartitionId, _: i64) -> Result<Option<i64>, StoreError> {
        Err(StoreError::UnknownPartition(p))
    }
    fn enforce_retention(&self, _: i64) -> Result<RetentionReport, StoreError> {
        Ok(Default::default())
    }
    fn allocate_producer_id(&self) -> Result<i64, StoreError> {
        Ok(0)
    }
    fn commit_offsets(
        &self,
        _: &str,
        _: &[(PartitionId, CommittedOffset)],
    ) -> Result<(), StoreError> {
        Ok(())
    }
    fn committed_offsets(
        &self,
        _: &str,
    ) -> Result<Vec<(PartitionId, CommittedOffset)>, StoreError> {
        Ok(Vec::new())
    }
    fn offset_groups(&self) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }
    fn delete_group_offsets(&self, _: &str) -> Result<bool, StoreError> {
        Ok(false)
    }
    fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }
    fn set_retained(&self, _: &str, _: Option<&[u8]>, _: u64) -> Result<(), StoreError> {
        Ok(())
    }
    fn retained(&self, _: &mut dyn FnMut(&str, &[u8])) -> Result<(), StoreError> {
        Ok(())
    }
    fn put_mqtt_session(&self, _: &str, _: Option<&[u8]>, _: u64) -> Result<(), StoreError> {
        Ok(())
    }
    fn mqtt_session(&self, _: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(None)
    }
    fn mqtt_sessions(&self, _: &mut dyn FnMut(&str, &[u8])) -> Result<(), StoreError> {
        Ok(())
    }
    fn release_dedup(&self, _: &str, _: Option<u16>) -> Result<(), StoreError> {
        Ok(())
    }
}
