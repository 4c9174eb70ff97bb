//! One Kafka client connection as a state machine: bytes in, response frames out, and
//! operations handed to the broker whose results come back later.
//!
//! [`KafkaSession::on_bytes`] takes whatever the connection has received and answers every
//! complete request in it; an incomplete request waits for more bytes. A request that needs
//! the store's writer (Produce, Metadata's topic creation, the topic admin requests, offset
//! commits and fetches, InitProducerId's durable id) becomes a [`KafkaOp`] the caller runs on
//! the log's writer thread; [`KafkaSession::complete`] takes its result. Kafka answers in
//! request order on a connection, so answers behind a pending operation wait in the session
//! (at most [`ANSWERS_QUEUED_MAX`]; past that no more requests are read) and go out when it
//! completes. The server owns the socket and the buffers; this type owns no I/O.
//!
//! Implemented: exactly the APIs and versions in [`IMPLEMENTED`] (what ApiVersions
//! advertises): Produce v0-v11 (answered once the batches are durable; no answer for acks
//! 0), Fetch, ListOffsets, Metadata (with topic auto-creation, a switch and a topic-count
//! limit in [`KafkaSettings`]), consumer groups (membership in [`coordinator`], whose
//! requests the caller routes to the group coordinator as [`KafkaOp::Group`]; committed
//! offsets in [`groups`]), topic administration
//! ([`admin`]) and InitProducerId (idempotent producers; transactional ids are refused with
//! `INVALID_REQUEST`). Every other API key or version closes the connection (Apache Kafka
//! does the same for requests it cannot parse), and the error names the API so the log says
//! what a client wanted.

use std::collections::VecDeque;

use std::sync::Arc;
use weir_kafka::api_versions;
use weir_kafka::cluster;
use weir_kafka::frame::{FrameDecoder, FrameError, write_frame};
use weir_kafka::header;

use weir_kafka::create_partitions;
use weir_kafka::create_topics;
use weir_kafka::delete_records;
use weir_kafka::delete_topics;
use weir_kafka::describe_configs;
use weir_kafka::fetch;
use weir_kafka::find_coordinator;
use weir_kafka::init_producer_id;
use weir_kafka::membership;
use weir_kafka::metadata;
use weir_kafka::offsets;
use weir_kafka::produce;
use weir_kafka::wire::WireError;

use crate::log_store::{
    CheckedBatch, LogStore, PartitionId, StoreError, TopicConfig, partition_at,
};

pub mod admin;
pub mod coordinator;
pub mod groups;

use coordinator::{GroupAnswer, GroupOp};

/// The APIs and versions this broker implements (what ApiVersions advertises).
pub use weir_kafka::api_versions::IMPLEMENTED;

/// Answers a connection may have waiting behind a pending operation. Past it, no further
/// request is read from the connection until the operation completes.
pub const ANSWERS_QUEUED_MAX: usize = 64;

/// Room reserved in a Fetch answer beyond its record bytes, for its headers and per-partition
/// fields (more only costs a reallocation).
const FETCH_ANSWER_OVERHEAD_BYTES: usize = 4096;

/// Error code for a request Weir refuses as malformed or unsupported in its content.
const INVALID_REQUEST: i16 = 42;
/// The first record at or after time `at` from the batch starting at `offset` on (the log's
/// time index names the first batch that may hold one): its timestamp and offset.
fn record_at_or_after(
    store: &dyn LogStore,
    pid: PartitionId,
    offset: i64,
    at: i64,
    decompressed_bytes_max: usize,
) -> Result<Option<(i64, i64)>, StoreError> {
    // A batch whose records all precede `at` may come first (its running maximum raised the
    // index); the next ones are read until a record qualifies.
    let mut next = offset;
    loop {
        let mut found = None;
        let mut after = None;
        let summary = store.read(pid, next, 1, &mut |batch| {
            if found.is_some() || after.is_some() {
                return;
            }
            found = weir_kafka::record_batch::first_at_or_after(batch, at, decompressed_bytes_max);
            after = weir_kafka::record_batch::BatchHeader::parse(batch)
                .ok()
                .map(|h| h.next_offset());
        })?;
        if let Some((offset, timestamp)) = found {
            return Ok(Some((timestamp, offset)));
        }
        match after {
            Some(after) if after > next && after < summary.state.high_watermark => next = after,
            _ => return Ok(None),
        }
    }
}

/// The longest a Fetch waits for data, whatever the client asks.
const FETCH_WAIT_MAX_MS: u64 = 30_000;

/// A Fetch answer waiting for data or its deadline.
#[derive(Debug)]
struct WaitingFetch {
    token: u64,
    correlation_id: i32,
    version: i16,
    deadline_ms: u64,
    request: fetch::FetchRequest,
}

/// Error code for acks other than -1, 0 and 1.
const INVALID_REQUIRED_ACKS: i16 = 21;
/// Retriable error code for a producer id that could not be allocated now.
const COORDINATOR_NOT_AVAILABLE: i16 = 15;

/// The cluster id Metadata reports (Weir is a single node).
const CLUSTER_ID: &str = "weir";

/// The smallest request: a v0 header (api key, version, correlation id).
const REQUEST_BYTES_MIN: usize = 8;

/// What every Kafka connection of the broker shares: limits, what Metadata says, and the log
/// that Fetch and ListOffsets read (short read transactions, on the connection's shard).
#[derive(Clone)]
pub struct KafkaSettings {
    /// The log.
    pub store: Arc<dyn LogStore>,
    /// Largest request.
    pub request_bytes_max: usize,
    /// Host clients are told to connect to.
    pub advertised_host: String,
    /// Port clients are told to connect to.
    pub advertised_port: i32,
    /// Create a topic a client names in Metadata if it does not exist.
    pub auto_create_topics: bool,
    /// Partitions of an auto-created topic.
    pub auto_create_partitions: u32,
    /// Auto-creation stops once this many topics exist.
    pub topics_max: u32,
    /// Most record bytes in one Fetch answer, whatever the client asks (Kafka's
    /// `fetch.max.bytes`); the first batch of the first partition with data is sent whole.
    pub fetch_bytes_max: usize,
    /// Most bytes the records of one compressed batch may inflate to.
    pub batch_decompressed_bytes_max: usize,
}

impl std::fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSettings")
            .field("advertised_host", &self.advertised_host)
            .field("advertised_port", &self.advertised_port)
            .field("auto_create_topics", &self.auto_create_topics)
            .finish_non_exhaustive()
    }
}

/// Durable work, or work that must see the store's latest state, that a session asks the
/// broker to run on the log's writer thread (see [`run_op`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KafkaOp {
    /// Allocate a new idempotent-producer id.
    AllocateProducerId,
    /// Append record batches; answered (unless `acks` is 0) once they are durable. Topics
    /// are resolved, and created like Metadata's, on the writer thread; the appends then go
    /// through group commit.
    Produce {
        /// 0: no answer; 1 or -1: answer once durable.
        acks: i16,
        /// The data.
        topics: Vec<ProduceTopic>,
        /// Whether missing topics may be created.
        create_missing: bool,
        /// Partitions of a created topic.
        partitions: u32,
        /// Creation stops at this many topics.
        topics_max: u32,
        /// Messages plugins routed to other topics.
        routed: Vec<RoutedMessage>,
    },
    /// Create (or only check) topics.
    CreateTopics {
        /// What the client asked for.
        request: create_topics::Request,
        /// What the broker fills in.
        defaults: admin::CreateDefaults,
    },
    /// Delete topics and their data.
    DeleteTopics {
        /// The topics, in request order.
        targets: Vec<delete_topics::Target>,
    },
    /// Add partitions to topics.
    CreatePartitions(create_partitions::Request),
    /// Move partitions' log start: per topic, (partition index, offset).
    DeleteRecords(delete_records::Request),
    /// Describe resources' settings.
    DescribeConfigs(Vec<describe_configs::Resource>),
    /// Store a consumer group's committed offsets (the coordinator has checked them).
    CommitOffsets(offsets::CommitRequest),
    /// Delete groups' committed offsets: each group with `None`, or the error the
    /// coordinator gave it.
    DeleteGroups(Vec<(String, Option<i16>)>),
    /// A request for the group coordinator (not for the writer thread).
    Group(GroupOp),
    /// Read consumer groups' committed offsets.
    FetchOffsets(Vec<offsets::FetchGroup>),
    /// Describe `topics` (every topic when `None`), creating missing ones when
    /// `create_missing`, with `partitions` partitions, while fewer than `topics_max` exist.
    Metadata {
        /// The topics named.
        topics: Option<Vec<String>>,
        /// Topics asked for by id: none is known.
        topic_ids: Vec<[u8; 16]>,
        /// Whether missing topics may be created.
        create_missing: bool,
        /// Partitions of a created topic.
        partitions: u32,
        /// Creation stops at this many topics.
        topics_max: u32,
    },
}

/// The data of a Produce request for one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceTopic {
    /// Topic name.
    pub name: String,
    /// Partition index and its records, checked on the connection's shard.
    pub partitions: Vec<(i32, ProduceRecords)>,
}

/// The records a Produce request carries for one partition, as the connection's shard found
/// them. Checking is done there, where it runs in parallel on every shard, so the log's single
/// writer thread only stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProduceRecords {
    /// RecordBatch v2 batches, each one checked whole: framing, CRC32C, record count, every
    /// record (decompressed within `batch_decompressed_bytes_max` if compressed).
    Batches(Vec<CheckedBatch>),
    /// A legacy message set (magic 0 or 1), up-converted on the writer thread, which has the
    /// wall clock that v0 messages need for their timestamps.
    Legacy(Vec<u8>),
    /// No records, or a batch that failed its checks: answered CORRUPT_MESSAGE, nothing of
    /// the partition is stored.
    Corrupt,
    /// A plugin refused records: answered with `code` (and, from Produce v8, the message and
    /// each refused record's index), nothing of the partition is stored.
    Refused {
        /// The Kafka error code.
        code: i16,
        /// Why, for the client.
        message: String,
        /// The refused records: index in the partition's batches, and why.
        record_errors: Vec<(i32, String)>,
    },
    /// Plugins left nothing to store in this partition (dropped, or routed elsewhere): answered
    /// success with base offset -1 once anything routed from it is durable.
    Nothing,
}

/// A message a plugin sent somewhere other than the partition the client produced to: stored
/// with the request, and its outcome counted in the answer of partition `partition` of topic
/// `topic` (indexes in the request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedMessage {
    /// Index of the topic in the request.
    pub topic: usize,
    /// Index of the partition in that topic's entry.
    pub partition: usize,
    /// The message, in its new topic (partitioned by key).
    pub message: crate::plugin::Message,
}

/// The result of a [`KafkaOp`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KafkaOpResult {
    /// Per topic and partition: where the batches landed, or why not.
    Produced(Vec<produce::TopicResponse>),
    /// A new producer id, or why there is none.
    ProducerId(Result<i64, StoreError>),
    /// The topics described, each with its own error code, or why none could be read.
    Topics(Result<Vec<metadata::Topic>, StoreError>),
    /// Per topic asked to be created: the outcome.
    Created(Vec<create_topics::TopicResult>),
    /// Per topic asked to be deleted: the error code.
    Deleted(Vec<(delete_topics::Target, i16)>),
    /// Per topic asked to grow: name, error code, message.
    Grown(Vec<(String, i16, Option<String>)>),
    /// Per partition asked: the new log start or the error.
    RecordsDeleted(Vec<(String, Vec<delete_records::PartitionResult>)>),
    /// Per resource asked: its settings or the error.
    Configs(Vec<describe_configs::ResourceResult>),
    /// Per topic and partition: the commit's error code.
    OffsetsCommitted(Vec<(String, Vec<(i32, i16)>)>),
    /// Per group: its committed offsets.
    OffsetsFetched(Vec<offsets::FetchedGroup>),
    /// The coordinator's answer.
    Group(GroupAnswer),
}

impl KafkaOp {
    /// The result of this operation when the store could not run it: every part fails with
    /// a storage error.
    pub fn failed(self, error: StoreError) -> KafkaOpResult {
        match self {
            KafkaOp::AllocateProducerId => KafkaOpResult::ProducerId(Err(error)),
            KafkaOp::Metadata { .. } => KafkaOpResult::Topics(Err(error)),
            KafkaOp::Produce { topics, .. } => KafkaOpResult::Produced(
                topics
                    .iter()
                    .map(|t| produce_failed(t, STORAGE_ERROR))
                    .collect(),
            ),
            KafkaOp::CreateTopics { request, .. } => KafkaOpResult::Created(
                request
                    .topics
                    .iter()
                    .map(|t| admin::failure(&t.name, STORAGE_ERROR, error.to_string()))
                    .collect(),
            ),
            KafkaOp::DeleteTopics { targets } => {
                KafkaOpResult::Deleted(targets.into_iter().map(|t| (t, STORAGE_ERROR)).collect())
            }
            KafkaOp::CreatePartitions(request) => KafkaOpResult::Grown(
                request
                    .topics
                    .into_iter()
                    .map(|t| (t.name, STORAGE_ERROR, Some(error.to_string())))
                    .collect(),
            ),
            KafkaOp::DeleteRecords(topics) => KafkaOpResult::RecordsDeleted(
                topics
                    .into_iter()
                    .map(|(name, partitions)| {
                        let failed = |(index, _)| delete_records::PartitionResult {
                            index,
                            low_watermark: -1,
                            error_code: STORAGE_ERROR,
                        };
                        (name, partitions.into_iter().map(failed).collect())
                    })
                    .collect(),
            ),
            KafkaOp::CommitOffsets(request) => {
                groups::commit_refused(request, groups::COORDINATOR_NOT_AVAILABLE)
            }
            KafkaOp::DeleteGroups(targets) => KafkaOpResult::Group(GroupAnswer::Deleted(
                (targets.into_iter())
                    .map(|(group, _)| (group, groups::COORDINATOR_NOT_AVAILABLE))
                    .collect(),
            )),
            KafkaOp::Group(op) => op.failed(groups::COORDINATOR_NOT_AVAILABLE),
            KafkaOp::FetchOffsets(asked) => KafkaOpResult::OffsetsFetched(
                asked
                    .into_iter()
                    .map(|group| groups::fetch_failed(group, groups::COORDINATOR_NOT_AVAILABLE))
                    .collect(),
            ),
            KafkaOp::DescribeConfigs(resources) => KafkaOpResult::Configs(
                resources
                    .into_iter()
                    .map(|r| describe_configs::ResourceResult {
                        error_code: STORAGE_ERROR,
                        error_message: Some(error.to_string()),
                        resource_type: r.resource_type,
                        name: r.name,
                        entries: Vec::new(),
                    })
                    .collect(),
            ),
        }
    }
}

/// Runs an operation that needs only the store, on the log's writer thread, in order with
/// appends. Produce needs the writer itself and is run by the server (with [`resolve`]); here
/// it can only fail.
pub fn run_op(op: KafkaOp, store: &dyn LogStore) -> KafkaOpResult {
    match op {
        KafkaOp::AllocateProducerId => KafkaOpResult::ProducerId(store.allocate_producer_id()),
        KafkaOp::Metadata {
            topics,
            topic_ids,
            create_missing,
            partitions,
            topics_max,
        } => KafkaOpResult::Topics(
            describe(store, topics, create_missing, partitions, topics_max).map(|mut found| {
                found.extend(topic_ids.into_iter().map(|topic_id| metadata::Topic {
                    error_code: metadata::UNKNOWN_TOPIC_ID,
                    name: None,
                    topic_id,
                    partitions: 0,
                }));
                found
            }),
        ),
        KafkaOp::CreateTopics { request, defaults } => {
            KafkaOpResult::Created(admin::create_topics(store, request, defaults))
        }
        KafkaOp::DeleteTopics { targets } => {
            KafkaOpResult::Deleted(admin::delete_topics(store, targets))
        }
        KafkaOp::CreatePartitions(request) => {
            KafkaOpResult::Grown(admin::create_partitions(store, request))
        }
        KafkaOp::DeleteRecords(topics) => {
            KafkaOpResult::RecordsDeleted(admin::delete_records(store, topics))
        }
        KafkaOp::DescribeConfigs(resources) => {
            KafkaOpResult::Configs(admin::describe_configs(store, resources))
        }
        KafkaOp::CommitOffsets(request) => {
            KafkaOpResult::OffsetsCommitted(groups::commit_offsets(store, request))
        }
        KafkaOp::FetchOffsets(asked) => {
            KafkaOpResult::OffsetsFetched(groups::fetch_offsets(store, asked))
        }
        KafkaOp::DeleteGroups(targets) => {
            KafkaOpResult::Group(GroupAnswer::Deleted(groups::delete_groups(store, targets)))
        }
        KafkaOp::Group(op) => op.failed(groups::COORDINATOR_NOT_AVAILABLE),
        produce @ KafkaOp::Produce { .. } => {
            produce.failed(StoreError::Fatal("produce runs through the writer".into()))
        }
    }
}

/// The body of a request whose API and version [`IMPLEMENTED`] lists, once its header (of
/// version `header_version(api_version)`) parses; any other version closes the connection.
fn request_body(
    frame: &[u8],
    start: header::HeaderStart,
    header_version: fn(i16) -> u8,
) -> Result<&[u8], KafkaError> {
    let listed = IMPLEMENTED.iter().any(|range| {
        range.api_key == start.api_key && (range.min..=range.max).contains(&start.api_version)
    });
    if !listed {
        return Err(KafkaError::NotImplemented {
            api_key: start.api_key,
            api_version: start.api_version,
        });
    }
    let (_, body) = header::RequestHeader::parse(frame, header_version(start.api_version))?;
    Ok(body)
}

/// Writes the coordinator's answer to a request of `version`.
fn write_group_answer(body: &mut Vec<u8>, correlation_id: i32, version: i16, answer: GroupAnswer) {
    match answer {
        GroupAnswer::Joined(joined) => {
            membership::write_join_response(body, correlation_id, version, &joined)
        }
        GroupAnswer::Synced(synced) => {
            membership::write_sync_response(body, correlation_id, version, &synced)
        }
        GroupAnswer::Heartbeat(code) => {
            membership::write_heartbeat_response(body, correlation_id, version, code)
        }
        GroupAnswer::Left(code, members) => {
            membership::write_leave_response(body, correlation_id, version, code, &members)
        }
        GroupAnswer::Described(groups) => {
            membership::write_describe_response(body, correlation_id, version, &groups)
        }
        GroupAnswer::Listed(code, groups) => {
            membership::write_list_response(body, correlation_id, version, code, &groups)
        }
        GroupAnswer::Deleted(results) => {
            membership::write_delete_response(body, correlation_id, version, &results)
        }
    }
}

/// Checks the records a Produce request carries for one partition (see [`ProduceRecords`]);
/// a compressed batch may inflate to at most `cap` bytes.
fn check_produce_records(records: Option<&[u8]>, cap: usize) -> ProduceRecords {
    use weir_kafka::record_batch;
    let Some(records) = records.filter(|r| !r.is_empty()) else {
        return ProduceRecords::Corrupt;
    };
    if !record_batch::is_v2(records) {
        return ProduceRecords::Legacy(records.to_vec());
    }
    let batches: Result<Vec<CheckedBatch>, _> = record_batch::split(records)
        .map(|batch| {
            let batch = batch?;
            match CheckedBatch::decompressing(batch.to_vec(), cap) {
                // As Kafka does, a create-time batch is stored with its true maxTimestamp (the
                // time index and retention rely on it) rather than refused.
                Err(record_batch::BatchError::BadMaxTimestamp { actual, .. }) => {
                    let mut fixed = batch.to_vec();
                    record_batch::set_max_timestamp(&mut fixed, actual);
                    CheckedBatch::decompressing(fixed, cap)
                }
                checked => checked,
            }
        })
        .collect();
    batches.map_or(ProduceRecords::Corrupt, ProduceRecords::Batches)
}

/// Kafka's error code for a storage failure.
pub const STORAGE_ERROR: i16 = metadata::KAFKA_STORAGE_ERROR;

/// The answer for a topic none of whose partitions was written.
pub fn produce_failed(topic: &ProduceTopic, error_code: i16) -> produce::TopicResponse {
    produce::TopicResponse {
        name: topic.name.clone(),
        partitions: topic
            .partitions
            .iter()
            .map(|(index, _)| produce::PartitionResponse {
                index: *index,
                error_code,
                base_offset: -1,
                log_start_offset: -1,
                error_message: None,
                record_errors: Vec::new(),
            })
            .collect(),
    }
}

/// Finds each named topic's partitions, creating missing topics like Metadata does; a topic
/// that cannot be had gets the Kafka error code that says why.
pub fn resolve(
    store: &dyn LogStore,
    names: &[String],
    create_missing: bool,
    partitions: u32,
    topics_max: u32,
) -> Result<Vec<Result<Vec<PartitionId>, i16>>, StoreError> {
    // Counting topics reads them all: only a creation needs it.
    let mut count = None;
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        if let Some(topic) = store.topic(name)? {
            out.push(Ok(topic.partitions));
            continue;
        }
        let count = match count {
            Some(ref mut count) => count,
            None => count.insert(store.topics()?.len()),
        };
        if !create_missing || *count >= topics_max as usize {
            out.push(Err(metadata::UNKNOWN_TOPIC_OR_PARTITION));
            continue;
        }
        match store.create_topic(name, partitions, TopicConfig::default()) {
            Ok(topic) => {
                *count += 1;
                out.push(Ok(topic.partitions));
            }
            Err(StoreError::InvalidArgument(_)) => out.push(Err(metadata::INVALID_TOPIC_EXCEPTION)),
            Err(StoreError::Full(_)) => out.push(Err(STORAGE_ERROR)),
            Err(other) => return Err(other),
        }
    }
    Ok(out)
}

fn describe(
    store: &dyn LogStore,
    names: Option<Vec<String>>,
    create_missing: bool,
    partitions: u32,
    topics_max: u32,
) -> Result<Vec<metadata::Topic>, StoreError> {
    let existing = store.topics()?;
    let found = |name: String, count: usize| metadata::Topic {
        error_code: 0,
        name: Some(name),
        topic_id: [0; 16],
        partitions: count as u32,
    };
    let Some(names) = names else {
        return Ok(existing
            .into_iter()
            .map(|t| found(t.name, t.partitions.len()))
            .collect());
    };
    let mut count = existing.len();
    let mut out = Vec::with_capacity(names.len().min(existing.len() + 16));
    for name in names {
        if let Some(topic) = existing.iter().find(|t| t.name == name) {
            out.push(found(name, topic.partitions.len()));
            continue;
        }
        let failed = |error_code| metadata::Topic {
            error_code,
            name: Some(name.clone()),
            topic_id: [0; 16],
            partitions: 0,
        };
        if !create_missing || count >= topics_max as usize {
            out.push(failed(metadata::UNKNOWN_TOPIC_OR_PARTITION));
            continue;
        }
        match store.create_topic(&name, partitions, TopicConfig::default()) {
            Ok(topic) => {
                count += 1;
                out.push(found(name, topic.partitions.len()));
            }
            Err(StoreError::InvalidArgument(_)) => {
                out.push(failed(metadata::INVALID_TOPIC_EXCEPTION))
            }
            Err(StoreError::Full(_)) => out.push(failed(metadata::KAFKA_STORAGE_ERROR)),
            Err(other) => return Err(other),
        }
    }
    Ok(out)
}

/// Why a connection must close. Each names what the client sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KafkaError {
    /// The size prefix is invalid or over the limit.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The request header or body is malformed.
    #[error("malformed request: {0}")]
    Malformed(#[from] WireError),
    /// An API this broker does not implement, or a version outside its range.
    #[error("API key {api_key} version {api_version} is not implemented by this broker")]
    NotImplemented {
        /// The API key.
        api_key: i16,
        /// The version asked for.
        api_version: i16,
    },
}

/// An answer in request order: ready bytes, or a slot waiting for an operation.
#[derive(Debug)]
struct Queued {
    /// The operation this answer waits for, if any.
    waiting: Option<u64>,
    correlation_id: i32,
    api_version: i16,
    /// The whole frame once ready.
    frame: Vec<u8>,
}

/// Per-connection protocol state.
#[derive(Debug)]
pub struct KafkaSession {
    settings: Arc<KafkaSettings>,
    /// The client's address as DescribeGroups shows it (`/ip`).
    client_host: String,
    /// Fetches waiting for data (`min_bytes`) or their deadline.
    waiting_fetches: Vec<WaitingFetch>,
    /// Operations handed out and not completed (answered or not: acks 0 counts too).
    ops_in_flight: usize,
    /// Bytes of ready answers queued behind a pending one.
    queued_bytes: usize,
    decoder: FrameDecoder,
    requests: u64,
    next_token: u64,
    queued: VecDeque<Queued>,
}

impl KafkaSession {
    /// A session with the broker's Kafka settings, for a client at `client_host` (shown by
    /// DescribeGroups).
    pub fn new(settings: Arc<KafkaSettings>, client_host: String) -> KafkaSession {
        KafkaSession {
            client_host,
            decoder: FrameDecoder::new(REQUEST_BYTES_MIN, settings.request_bytes_max),
            settings,
            waiting_fetches: Vec::new(),
            ops_in_flight: 0,
            queued_bytes: 0,
            requests: 0,
            next_token: 0,
            queued: VecDeque::new(),
        }
    }

    /// Requests answered or accepted for an answer so far.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// True while the session takes no more requests until operations complete: the queue
    /// of answers behind pending operations, or the operations in flight, are at
    /// [`ANSWERS_QUEUED_MAX`]. The connection should not be read meanwhile.
    pub fn saturated(&self) -> bool {
        self.queued.len() >= ANSWERS_QUEUED_MAX || self.ops_in_flight >= ANSWERS_QUEUED_MAX
    }

    /// True while an operation's result is awaited.
    pub fn waiting(&self) -> bool {
        !self.queued.is_empty()
    }

    /// Takes complete requests at the start of `input`, appending answers to `out` (in
    /// request order) and operations to `ops`, until `out` holds `out_limit` bytes, the
    /// queue of answers behind a pending operation is full, or no complete request is left.
    /// Returns the bytes consumed; the rest waits. An error means the connection must be
    /// closed (answers already in `out` may still be sent).
    pub fn on_bytes(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        out_limit: usize,
        ops: &mut Vec<(u64, KafkaOp)>,
        now_ms: u64,
    ) -> Result<usize, KafkaError> {
        let mut used = 0;
        while out.len() + self.queued_bytes < out_limit
            && self.queued.len() < ANSWERS_QUEUED_MAX
            && self.ops_in_flight < ANSWERS_QUEUED_MAX
            && let Some((frame, len)) = self.decoder.decode(&input[used..])?
        {
            self.handle(frame, out, ops, now_ms)?;
            self.requests += 1;
            used += len;
        }
        Ok(used)
    }

    /// Takes the result of operation `token`, and writes to `out` every answer that no
    /// longer waits.
    pub fn complete(&mut self, token: u64, result: KafkaOpResult, out: &mut Vec<u8>) {
        self.ops_in_flight = self.ops_in_flight.saturating_sub(1);
        let Some(slot) = self.queued.iter().find(|q| q.waiting == Some(token)) else {
            return;
        };
        let (correlation_id, version) = (slot.correlation_id, slot.api_version);
        let mut frame = Vec::new();
        write_frame(&mut frame, |body| match result {
            KafkaOpResult::ProducerId(result) => {
                let (error, id, epoch) = match result {
                    Ok(id) => (0, id, 0),
                    Err(_) => (COORDINATOR_NOT_AVAILABLE, -1, -1),
                };
                init_producer_id::write_response(body, correlation_id, version, error, id, epoch)
            }
            KafkaOpResult::Produced(topics) => {
                produce::write_response(body, correlation_id, version, &topics)
            }
            KafkaOpResult::Created(topics) => {
                create_topics::write_response(body, correlation_id, version, &topics)
            }
            KafkaOpResult::Deleted(results) => {
                delete_topics::write_response(body, correlation_id, version, &results)
            }
            KafkaOpResult::Grown(results) => {
                create_partitions::write_response(body, correlation_id, version, &results)
            }
            KafkaOpResult::RecordsDeleted(topics) => {
                delete_records::write_response(body, correlation_id, version, &topics)
            }
            KafkaOpResult::Configs(results) => {
                describe_configs::write_response(body, correlation_id, version, &results)
            }
            KafkaOpResult::OffsetsCommitted(topics) => {
                offsets::write_commit_response(body, correlation_id, version, &topics)
            }
            KafkaOpResult::OffsetsFetched(fetched) => {
                offsets::write_fetch_response(body, correlation_id, version, &fetched)
            }
            KafkaOpResult::Group(answer) => {
                write_group_answer(body, correlation_id, version, answer)
            }
            KafkaOpResult::Topics(result) => {
                // A store that cannot be read answers with no topics; the client retries.
                let topics = result.unwrap_or_default();
                let broker = metadata::Broker {
                    node_id: 0,
                    host: &self.settings.advertised_host,
                    port: self.settings.advertised_port,
                };
                metadata::write_response(body, correlation_id, version, broker, CLUSTER_ID, &topics)
            }
        });
        self.fill(token, frame, out);
    }

    /// Answers waiting fetches that now have enough data or reached their deadline.
    pub fn tick(&mut self, now_ms: u64, out: &mut Vec<u8>) {
        let mut index = 0;
        while index < self.waiting_fetches.len() {
            let waiting = &self.waiting_fetches[index];
            let (topics, bytes, any_error) = self.read(&waiting.request);
            let min = usize::try_from(waiting.request.min_bytes).unwrap_or(0);
            if bytes >= min || any_error || now_ms >= waiting.deadline_ms {
                let waiting = self.waiting_fetches.swap_remove(index);
                let mut frame = Vec::new();
                write_frame(&mut frame, |body| {
                    fetch::write_fetch_response(
                        body,
                        waiting.correlation_id,
                        waiting.version,
                        &topics,
                    )
                });
                self.fill(waiting.token, frame, out);
            } else {
                index += 1;
            }
        }
    }

    /// True while a fetch waits for data or its deadline.
    pub fn has_waiting_fetch(&self) -> bool {
        !self.waiting_fetches.is_empty()
    }

    /// Puts `frame` in the slot waiting for `token` and writes out every answer no longer
    /// waiting, in order.
    fn fill(&mut self, token: u64, frame: Vec<u8>, out: &mut Vec<u8>) {
        if let Some(slot) = self.queued.iter_mut().find(|q| q.waiting == Some(token)) {
            self.queued_bytes += frame.len();
            slot.frame = frame;
            slot.waiting = None;
        }
        while self.queued.front().is_some_and(|q| q.waiting.is_none()) {
            if let Some(ready) = self.queued.pop_front() {
                self.queued_bytes = self.queued_bytes.saturating_sub(ready.frame.len());
                out.extend_from_slice(&ready.frame);
            }
        }
    }

    /// Reads what `request` asks for; returns the answer and its record bytes.
    /// Reads what `request` asks for; returns the answer, its record bytes, and whether a
    /// partition has an error (Kafka answers at once then). Only the first partition that has
    /// data may go past the byte budgets (with its first batch, so a reader always makes
    /// progress); a later batch that does not fit is left for the next fetch.
    fn read(&self, request: &fetch::FetchRequest) -> (Vec<fetch::FetchedTopic>, usize, bool) {
        let store = &*self.settings.store;
        let cap = self.settings.fetch_bytes_max;
        let mut budget = usize::try_from(request.max_bytes).unwrap_or(0).min(cap);
        let mut total = 0usize;
        let mut any_error = false;
        let mut topics = Vec::with_capacity(request.topics.len());
        for topic in &request.topics {
            let pids = store
                .topic(&topic.name)
                .ok()
                .flatten()
                .map(|t| t.partitions);
            let mut partitions = Vec::with_capacity(topic.partitions.len());
            for wanted in &topic.partitions {
                let mut answer = fetch::FetchedPartition {
                    index: wanted.index,
                    error_code: 0,
                    high_watermark: -1,
                    log_start_offset: -1,
                    records: Vec::new(),
                };
                let pid = pids.as_ref().and_then(|p| partition_at(p, wanted.index));
                let Some(pid) = pid else {
                    answer.error_code = metadata::UNKNOWN_TOPIC_OR_PARTITION;
                    any_error = true;
                    partitions.push(answer);
                    continue;
                };
                let limit = usize::try_from(wanted.max_bytes)
                    .unwrap_or(0)
                    .min(cap)
                    .min(budget);
                let first = total == 0;
                let records = &mut answer.records;
                let outcome = store.read(pid, wanted.fetch_offset, limit, &mut |batch| {
                    records.extend_from_slice(batch)
                });
                match outcome {
                    Ok(summary) => {
                        answer.high_watermark = summary.state.high_watermark;
                        answer.log_start_offset = summary.state.log_start_offset;
                    }
                    Err(StoreError::OffsetOutOfRange {
                        log_start_offset,
                        high_watermark,
                        ..
                    }) => {
                        answer.error_code = fetch::OFFSET_OUT_OF_RANGE;
                        answer.high_watermark = high_watermark;
                        answer.log_start_offset = log_start_offset;
                        any_error = true;
                    }
                    Err(_) => {
                        answer.error_code = STORAGE_ERROR;
                        any_error = true;
                    }
                }
                if !first && answer.records.len() > limit {
                    // Only the first partition with data may exceed the budget.
                    answer.records.clear();
                }
                total += answer.records.len();
                budget = budget.saturating_sub(answer.records.len());
                partitions.push(answer);
            }
            topics.push(fetch::FetchedTopic {
                name: topic.name.clone(),
                partitions,
            });
        }
        (topics, total, any_error)
    }

    fn fetch(
        &mut self,
        frame: &[u8],
        start: header::HeaderStart,
        out: &mut Vec<u8>,
        now_ms: u64,
    ) -> Result<(), KafkaError> {
        let body = request_body(frame, start, |_| 1)?;
        let request = fetch::parse_fetch(body, start.api_version)?;
        let (topics, bytes, any_error) = self.read(&request);
        let enough = bytes >= usize::try_from(request.min_bytes).unwrap_or(0);
        if enough || any_error || request.max_wait_ms <= 0 {
            // The records are most of the answer: room for them at once, not by doubling.
            if self.queued.is_empty() {
                out.reserve(bytes + FETCH_ANSWER_OVERHEAD_BYTES);
            }
            self.answer_now(out, |body| {
                fetch::write_fetch_response(body, start.correlation_id, start.api_version, &topics)
            });
            return Ok(());
        }
        // Not enough data yet: the answer waits in order, and `tick` answers it when data
        // arrives or the client's wait is over (capped at FETCH_WAIT_MAX_MS).
        let token = self.next_token;
        self.next_token += 1;
        self.queued.push_back(Queued {
            waiting: Some(token),
            correlation_id: start.correlation_id,
            api_version: start.api_version,
            frame: Vec::new(),
        });
        let wait = u64::try_from(request.max_wait_ms)
            .unwrap_or(0)
            .min(FETCH_WAIT_MAX_MS);
        self.waiting_fetches.push(WaitingFetch {
            token,
            correlation_id: start.correlation_id,
            version: start.api_version,
            deadline_ms: now_ms + wait,
            request,
        });
        Ok(())
    }

    fn list_offsets(
        &mut self,
        frame: &[u8],
        start: header::HeaderStart,
        out: &mut Vec<u8>,
    ) -> Result<(), KafkaError> {
        let body = request_body(frame, start, |_| 1)?;
        let queries = fetch::parse_list_offsets(body, start.api_version)?;
        let store = &*self.settings.store;
        let answers: Vec<(String, Vec<fetch::OffsetAnswer>)> = queries
            .into_iter()
            .map(|(name, queries)| {
                let pids = store.topic(&name).ok().flatten().map(|t| t.partitions);
                let answers = queries
                    .iter()
                    .map(|q| {
                        let pid = pids.as_ref().and_then(|p| partition_at(p, q.index));
                        let Some(pid) = pid else {
                            return (q.index, metadata::UNKNOWN_TOPIC_OR_PARTITION, -1, -1);
                        };
                        let found = match q.timestamp {
                            -1 => store.partition(pid).map(|s| Some((-1, s.high_watermark))),
                            -2 => store.partition(pid).map(|s| Some((-1, s.log_start_offset))),
                            ts => store.offset_for_timestamp(pid, ts).and_then(|found| {
                                // Refined to the first record at or after `ts`, with its own
                                // timestamp.
                                let cap = self.settings.batch_decompressed_bytes_max;
                                match found {
                                    Some(offset) => record_at_or_after(store, pid, offset, ts, cap),
                                    None => Ok(None),
                                }
                            }),
                        };
                        match found {
                            Ok(Some((timestamp, offset))) => (q.index, 0, timestamp, offset),
                            Ok(None) => (q.index, 0, -1, -1),
                            Err(_) => (q.index, STORAGE_ERROR, -1, -1),
                        }
                    })
                    .collect();
                (name, answers)
            })
            .collect();
        self.answer_now(out, |body| {
            fetch::write_list_offsets_response(
                body,
                start.correlation_id,
                start.api_version,
                &answers,
            )
        });
        Ok(())
    }

    /// OffsetForLeaderEpoch: every partition has had leader epoch 0 since it was created, so
    /// epoch 0 ends at the high watermark and no other epoch exists.
    fn leader_epochs(
        &mut self,
        frame: &[u8],
        start: header::HeaderStart,
        out: &mut Vec<u8>,
    ) -> Result<(), KafkaError> {
        const UNKNOWN_LEADER_EPOCH: i16 = 74;
        let body = request_body(frame, start, cluster::epoch_header_version)?;
        let asked = cluster::parse_epochs(body, start.api_version)?;
        let store = &*self.settings.store;
        let answers: Vec<(String, Vec<cluster::EpochAnswer>)> = asked
            .into_iter()
            .map(|(name, queries)| {
                let pids = store.topic(&name).ok().flatten().map(|t| t.partitions);
                let answers = queries
                    .into_iter()
                    .map(|(index, current, epoch)| {
                        let pid = pids.as_ref().and_then(|p| partition_at(p, index));
                        let Some(pid) = pid else {
                            return (index, metadata::UNKNOWN_TOPIC_OR_PARTITION, -1, -1);
                        };
                        if current > 0 {
                            return (index, UNKNOWN_LEADER_EPOCH, -1, -1);
                        }
                        match (epoch, store.partition(pid)) {
                            (_, Err(_)) => (index, STORAGE_ERROR, -1, -1),
                            (0, Ok(state)) => (index, 0, 0, state.high_watermark),
                            (_, Ok(_)) => (index, 0, -1, -1),
                        }
                    })
                    .collect();
                (name, answers)
            })
            .collect();
        self.answer_now(out, |body| {
            cluster::write_epochs_response(body, start.correlation_id, start.api_version, &answers)
        });
        Ok(())
    }

    /// The operation a request that only needs the store (on the writer thread) asks for, or
    /// `None` for the other requests.
    fn store_op(
        &self,
        frame: &[u8],
        start: header::HeaderStart,
    ) -> Result<Option<KafkaOp>, KafkaError> {
        fn parsed<T>(
            frame: &[u8],
            start: header::HeaderStart,
            header_version: fn(i16) -> u8,
            parse: fn(&[u8], i16) -> Result<T, WireError>,
        ) -> Result<T, KafkaError> {
            let body = request_body(frame, start, header_version)?;
            Ok(parse(body, start.api_version)?)
        }
        let op = match start.api_key {
            create_topics::API_KEY => KafkaOp::CreateTopics {
                request: parsed(
                    frame,
                    start,
                    create_topics::request_header_version,
                    create_topics::parse_request,
                )?,
                defaults: admin::CreateDefaults {
                    partitions: self.settings.auto_create_partitions,
                    topics_max: self.settings.topics_max,
                },
            },
            delete_topics::API_KEY => KafkaOp::DeleteTopics {
                targets: parsed(
                    frame,
                    start,
                    delete_topics::request_header_version,
                    delete_topics::parse_request,
                )?,
            },
            create_partitions::API_KEY => KafkaOp::CreatePartitions(parsed(
                frame,
                start,
                create_partitions::request_header_version,
                create_partitions::parse_request,
            )?),
            delete_records::API_KEY => KafkaOp::DeleteRecords(parsed(
                frame,
                start,
                delete_records::request_header_version,
                delete_records::parse_request,
            )?),
            describe_configs::API_KEY => KafkaOp::DescribeConfigs(parsed(
                frame,
                start,
                describe_configs::request_header_version,
                describe_configs::parse_request,
            )?),
            offsets::COMMIT_KEY => KafkaOp::Group(GroupOp::Commit(parsed(
                frame,
                start,
                offsets::commit_header_version,
                offsets::parse_commit,
            )?)),
            offsets::FETCH_KEY => KafkaOp::FetchOffsets(parsed(
                frame,
                start,
                offsets::fetch_header_version,
                offsets::parse_fetch,
            )?),
            membership::JOIN_KEY => {
                let header_version =
                    |v| membership::request_header_version(membership::JOIN_KEY, v);
                let request = parsed(frame, start, header_version, membership::parse_join)?;
                let (header, _) =
                    header::RequestHeader::parse(frame, header_version(start.api_version))?;
                KafkaOp::Group(GroupOp::Join {
                    request,
                    client_id: header.client_id.unwrap_or_default().to_owned(),
                    client_host: self.client_host.clone(),
                })
            }
            membership::SYNC_KEY => KafkaOp::Group(GroupOp::Sync(parsed(
                frame,
                start,
                |v| membership::request_header_version(membership::SYNC_KEY, v),
                membership::parse_sync,
            )?)),
            membership::HEARTBEAT_KEY => KafkaOp::Group(GroupOp::Heartbeat(parsed(
                frame,
                start,
                |v| membership::request_header_version(membership::HEARTBEAT_KEY, v),
                membership::parse_heartbeat,
            )?)),
            membership::LEAVE_KEY => KafkaOp::Group(GroupOp::Leave(parsed(
                frame,
                start,
                |v| membership::request_header_version(membership::LEAVE_KEY, v),
                membership::parse_leave,
            )?)),
            membership::DESCRIBE_KEY => {
                let (groups, _operations) = parsed(
                    frame,
                    start,
                    |v| membership::request_header_version(membership::DESCRIBE_KEY, v),
                    membership::parse_describe,
                )?;
                KafkaOp::Group(GroupOp::Describe(groups))
            }
            membership::LIST_KEY => KafkaOp::Group(GroupOp::List(parsed(
                frame,
                start,
                |v| membership::request_header_version(membership::LIST_KEY, v),
                membership::parse_list,
            )?)),
            membership::DELETE_KEY => KafkaOp::Group(GroupOp::Delete(parsed(
                frame,
                start,
                |v| membership::request_header_version(membership::DELETE_KEY, v),
                membership::parse_delete,
            )?)),
            _ => return Ok(None),
        };
        Ok(Some(op))
    }

    fn handle(
        &mut self,
        frame: &[u8],
        out: &mut Vec<u8>,
        ops: &mut Vec<(u64, KafkaOp)>,
        now_ms: u64,
    ) -> Result<(), KafkaError> {
        let start = header::peek(frame)?;
        if let Some(op) = self.store_op(frame, start)? {
            self.defer(start, op, ops);
            return Ok(());
        }
        match start.api_key {
            api_versions::API_KEY => {
                // Parse the whole header so a malformed one is refused; the body (client
                // software name and version in v3+) is not needed to answer.
                let header_version = api_versions::request_header_version(start.api_version);
                header::RequestHeader::parse(frame, header_version)?;
                self.answer_now(out, |body| {
                    api_versions::write_response(
                        body,
                        start.correlation_id,
                        start.api_version,
                        IMPLEMENTED,
                    )
                });
                Ok(())
            }
            init_producer_id::API_KEY => {
                let body = request_body(frame, start, init_producer_id::request_header_version)?;
                let request = init_producer_id::parse_request(body, start.api_version)?;
                if request.transactional_id.is_some() {
                    self.answer_now(out, |body| {
                        init_producer_id::write_response(
                            body,
                            start.correlation_id,
                            start.api_version,
                            INVALID_REQUEST,
                            -1,
                            -1,
                        )
                    });
                    return Ok(());
                }
                self.defer(start, KafkaOp::AllocateProducerId, ops);
                Ok(())
            }
            find_coordinator::API_KEY => {
                let body = request_body(frame, start, find_coordinator::request_header_version)?;
                let request = find_coordinator::parse_request(body, start.api_version)?;
                let host = self.settings.advertised_host.clone();
                let port = self.settings.advertised_port;
                let transactions = "transactions are not supported";
                let coordinators: Vec<_> = request
                    .keys
                    .iter()
                    .map(|key| match request.key_type {
                        find_coordinator::KEY_TYPE_GROUP => find_coordinator::Coordinator {
                            key,
                            error_code: 0,
                            error_message: None,
                            node: (0, &host, port),
                        },
                        find_coordinator::KEY_TYPE_TRANSACTION => find_coordinator::Coordinator {
                            key,
                            error_code: groups::COORDINATOR_NOT_AVAILABLE,
                            error_message: Some(transactions),
                            node: (-1, "", -1),
                        },
                        _ => find_coordinator::Coordinator {
                            key,
                            error_code: INVALID_REQUEST,
                            error_message: Some("unknown coordinator key type"),
                            node: (-1, "", -1),
                        },
                    })
                    .collect();
                self.answer_now(out, |body| {
                    find_coordinator::write_response(
                        body,
                        start.correlation_id,
                        start.api_version,
                        &coordinators,
                    )
                });
                Ok(())
            }
            cluster::DESCRIBE_KEY => {
                let body = request_body(frame, start, cluster::describe_header_version)?;
                let endpoint_type = cluster::parse_describe(body, start.api_version)?;
                let settings = self.settings.clone();
                let node = cluster::Node {
                    id: 0,
                    host: &settings.advertised_host,
                    port: settings.advertised_port,
                };
                self.answer_now(out, |body| {
                    cluster::write_describe_response(
                        body,
                        start.correlation_id,
                        start.api_version,
                        endpoint_type,
                        CLUSTER_ID,
                        node,
                    )
                });
                Ok(())
            }
            cluster::EPOCH_KEY => self.leader_epochs(frame, start, out),
            produce::API_KEY => self.produce(frame, start, out, ops),
            fetch::FETCH_KEY => self.fetch(frame, start, out, now_ms),
            fetch::LIST_OFFSETS_KEY => self.list_offsets(frame, start, out),
            metadata::API_KEY => {
                let body = request_body(frame, start, metadata::request_header_version)?;
                let request = metadata::parse_request(body, start.api_version)?;
                let op = KafkaOp::Metadata {
                    topics: request.topics,
                    topic_ids: request.topic_ids,
                    create_missing: request.allow_auto_topic_creation
                        && self.settings.auto_create_topics,
                    partitions: self.settings.auto_create_partitions,
                    topics_max: self.settings.topics_max,
                };
                self.defer(start, op, ops);
                Ok(())
            }
            _ => Err(KafkaError::NotImplemented {
                api_key: start.api_key,
                api_version: start.api_version,
            }),
        }
    }

    fn produce(
        &mut self,
        frame: &[u8],
        start: header::HeaderStart,
        out: &mut Vec<u8>,
        ops: &mut Vec<(u64, KafkaOp)>,
    ) -> Result<(), KafkaError> {
        let body = request_body(frame, start, produce::request_header_version)?;
        let request = produce::parse_request(body, start.api_version)?;
        // Every batch is checked here, on the connection's shard (compressed ones
        // decompressed), so the log's writer thread never inflates or walks records; a
        // partition with a bad batch is sent on as corrupt and answered CORRUPT_MESSAGE.
        let cap = self.settings.batch_decompressed_bytes_max;
        let topics: Vec<ProduceTopic> = request
            .topics
            .iter()
            .map(|t| ProduceTopic {
                name: t.name.to_owned(),
                partitions: t
                    .partitions
                    .iter()
                    .map(|p| (p.index, check_produce_records(p.records, cap)))
                    .collect(),
            })
            .collect();
        // Transactions are not supported; acks must be -1, 0 or 1.
        let refused = if request.transactional_id.is_some() {
            Some(INVALID_REQUEST)
        } else if !matches!(request.acks, -1..=1) {
            Some(INVALID_REQUIRED_ACKS)
        } else {
            None
        };
        if let Some(error) = refused {
            if request.acks == 0 {
                // A client that asked for no answer gets none, refused or not.
                return Ok(());
            }
            let answers: Vec<_> = topics.iter().map(|t| produce_failed(t, error)).collect();
            self.answer_now(out, |body| {
                produce::write_response(body, start.correlation_id, start.api_version, &answers)
            });
            return Ok(());
        }
        let op = KafkaOp::Produce {
            acks: request.acks,
            topics,
            create_missing: self.settings.auto_create_topics,
            partitions: self.settings.auto_create_partitions,
            topics_max: self.settings.topics_max,
            routed: Vec::new(),
        };
        if request.acks == 0 {
            // No answer: the operation runs and its result goes nowhere.
            let token = self.next_token;
            self.next_token += 1;
            ops.push((token, op));
            self.ops_in_flight += 1;
        } else {
            self.defer(start, op, ops);
        }
        Ok(())
    }

    /// Queues an answer slot that waits for `op`.
    fn defer(&mut self, start: header::HeaderStart, op: KafkaOp, ops: &mut Vec<(u64, KafkaOp)>) {
        let token = self.next_token;
        self.next_token += 1;
        self.queued.push_back(Queued {
            waiting: Some(token),
            correlation_id: start.correlation_id,
            api_version: start.api_version,
            frame: Vec::new(),
        });
        ops.push((token, op));
        self.ops_in_flight += 1;
    }

    /// Writes an answer to `out`, or queues it behind an answer that waits.
    fn answer_now(&mut self, out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
        if self.queued.is_empty() {
            write_frame(out, body);
        } else {
            let mut frame = Vec::new();
            write_frame(&mut frame, body);
            self.queued_bytes += frame.len();
            self.queued.push_back(Queued {
                waiting: None,
                correlation_id: 0,
                api_version: 0,
                frame,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log_store::EmptyStore;

    fn settings() -> Arc<KafkaSettings> {
        Arc::new(KafkaSettings {
            store: Arc::new(EmptyStore),
            request_bytes_max: 1 << 20,
            advertised_host: "localhost".into(),
            advertised_port: 9092,
            auto_create_topics: true,
            auto_create_partitions: 1,
            topics_max: 10,
            fetch_bytes_max: 1 << 20,
            batch_decompressed_bytes_max: 1 << 20,
        })
    }

    fn request(api_key: i16, version: i16, correlation: i32) -> Vec<u8> {
        let mut out = Vec::new();
        write_frame(&mut out, |b| {
            b.extend_from_slice(&api_key.to_be_bytes());
            b.extend_from_slice(&version.to_be_bytes());
            b.extend_from_slice(&correlation.to_be_bytes());
            b.extend_from_slice(&[0, 4]);
            b.extend_from_slice(b"test");
            if version >= 3 {
                b.extend_from_slice(&[0, 5, b'w', b'e', b'i', b'r', 4, b'0', b'.', b'0', 0]);
            }
        });
        out
    }

    /// InitProducerId v0: header v1, then a null transactional id and a timeout.
    fn init_producer_id(correlation: i32, transactional: bool) -> Vec<u8> {
        let mut out = Vec::new();
        write_frame(&mut out, |b| {
            b.extend_from_slice(&22i16.to_be_bytes());
            b.extend_from_slice(&0i16.to_be_bytes());
            b.extend_from_slice(&correlation.to_be_bytes());
            b.extend_from_slice(&[0, 4]);
            b.extend_from_slice(b"test");
            if transactional {
                b.extend_from_slice(&[0, 2, b't', b'x']);
            } else {
                b.extend_from_slice(&(-1i16).to_be_bytes());
            }
            b.extend_from_slice(&60_000i32.to_be_bytes());
        });
        out
    }

    /// Correlation ids of the frames in `out`, in order.
    fn correlations(out: &[u8]) -> Vec<i32> {
        let mut ids = Vec::new();
        let mut at = 0;
        while at + 8 <= out.len() {
            let len = u32::from_be_bytes(out[at..at + 4].try_into().unwrap()) as usize;
            ids.push(i32::from_be_bytes(out[at + 4..at + 8].try_into().unwrap()));
            at += 4 + len;
        }
        ids
    }

    fn run(session: &mut KafkaSession, input: &[u8], out: &mut Vec<u8>) -> Vec<(u64, KafkaOp)> {
        let mut ops = Vec::new();
        let used = session
            .on_bytes(input, out, usize::MAX, &mut ops, 0)
            .unwrap();
        assert_eq!(used, input.len());
        ops
    }

    #[test]
    fn pipelined_requests_are_answered_in_order_and_partial_ones_wait() {
        let mut session = KafkaSession::new(settings(), String::new());
        let mut input = request(18, 0, 1);
        input.extend(request(18, 3, 2));
        let partial = request(18, 1, 3);
        input.extend_from_slice(&partial[..5]);
        let mut out = Vec::new();
        let mut ops = Vec::new();
        let used = session
            .on_bytes(&input, &mut out, usize::MAX, &mut ops, 0)
            .unwrap();
        assert_eq!(used, input.len() - 5);
        assert_eq!(session.requests(), 2);
        assert_eq!(correlations(&out), [1, 2]);
        assert!(ops.is_empty());
    }

    #[test]
    fn answers_behind_an_operation_wait_for_it_in_order() {
        let mut session = KafkaSession::new(settings(), String::new());
        let mut input = request(18, 0, 1);
        input.extend(init_producer_id(2, false));
        input.extend(request(18, 0, 3));
        input.extend(init_producer_id(4, false));
        input.extend(request(18, 0, 5));
        let mut out = Vec::new();
        let ops = run(&mut session, &input, &mut out);
        assert_eq!(
            correlations(&out),
            [1],
            "only the answer before the first operation"
        );
        assert_eq!(ops.len(), 2);
        // The second operation finishing first releases nothing.
        session.complete(ops[1].0, KafkaOpResult::ProducerId(Ok(8)), &mut out);
        assert_eq!(correlations(&out), [1]);
        session.complete(ops[0].0, KafkaOpResult::ProducerId(Ok(7)), &mut out);
        assert_eq!(correlations(&out), [1, 2, 3, 4, 5]);
        assert!(!session.waiting());
        // Answer 2 carries producer id 7, epoch 0, no error.
        let second = 4 + u32::from_be_bytes(out[0..4].try_into().unwrap()) as usize;
        assert_eq!(&out[second + 8..second + 8 + 4], &[0, 0, 0, 0], "throttle");
        assert_eq!(&out[second + 12..second + 14], &[0, 0], "error code");
        assert_eq!(&out[second + 14..second + 22], &7i64.to_be_bytes());
    }

    #[test]
    fn commits_go_to_known_partitions_of_valid_groups() {
        let commit = |group: &str, generation_id, member: &str| offsets::CommitRequest {
            group_id: group.into(),
            generation_id,
            member_id: member.into(),
            topics: vec![(
                "t".into(),
                vec![offsets::CommitPartition {
                    index: 0,
                    offset: 1,
                    leader_epoch: -1,
                    metadata: String::new(),
                }],
            )],
        };
        // Membership is the coordinator's to check: here only the group id and the
        // partitions matter.
        let code = |request| groups::commit_offsets(&EmptyStore, request)[0].1[0].1;
        let long = "g".repeat(crate::log_store::GROUP_ID_BYTES_MAX + 1);
        assert_eq!(code(commit(&long, -1, "")), groups::INVALID_GROUP_ID);
        let unknown = metadata::UNKNOWN_TOPIC_OR_PARTITION;
        assert_eq!(code(commit("g", -1, "m")), unknown);
        assert_eq!(code(commit("", -1, "")), unknown);
        // v0/v1 answers have no group error field: it is repeated on each partition asked.
        let asked = vec![(long, Some(vec![("t".to_owned(), vec![0, 1])]))];
        let fetched = groups::fetch_offsets(&EmptyStore, asked);
        assert_eq!(fetched[0].error_code, groups::INVALID_GROUP_ID);
        let codes: Vec<_> = fetched[0].topics[0]
            .1
            .iter()
            .map(|p| p.error_code)
            .collect();
        assert_eq!(codes, [groups::INVALID_GROUP_ID; 2]);
    }

    #[test]
    fn group_requests_go_to_the_coordinator_with_the_client_and_come_back_answered() {
        // DescribeGroups v0 (header v1, client id "test"): one group.
        let mut describe = Vec::new();
        write_frame(&mut describe, |b| {
            b.extend_from_slice(&membership::DESCRIBE_KEY.to_be_bytes());
            b.extend_from_slice(&0i16.to_be_bytes());
            b.extend_from_slice(&7i32.to_be_bytes());
            b.extend_from_slice(&[0, 4]);
            b.extend_from_slice(b"test");
            b.extend_from_slice(&[0, 0, 0, 1, 0, 1, b'g']);
        });
        // JoinGroup v0: group "g", session 6 s, no member id, "consumer", one protocol.
        let mut join = Vec::new();
        write_frame(&mut join, |b| {
            b.extend_from_slice(&membership::JOIN_KEY.to_be_bytes());
            b.extend_from_slice(&0i16.to_be_bytes());
            b.extend_from_slice(&8i32.to_be_bytes());
            b.extend_from_slice(&[0, 4]);
            b.extend_from_slice(b"test");
            b.extend_from_slice(&[0, 1, b'g', 0, 0, 0x17, 0x70, 0, 0, 0, 8]);
            b.extend_from_slice(b"consumer");
            b.extend_from_slice(&[0, 0, 0, 1, 0, 1, b'r', 0, 0, 0, 0]);
        });
        let mut session = KafkaSession::new(settings(), "/10.0.0.7".into());
        let mut out = Vec::new();
        let ops = run(&mut session, &[describe, join].concat(), &mut out);
        assert!(out.is_empty(), "both wait for the coordinator");
        let [
            (first, KafkaOp::Group(GroupOp::Describe(groups))),
            (second, joined),
        ] = &ops[..]
        else {
            panic!("expected two group operations, got {ops:?}");
        };
        assert_eq!(groups, &["g"]);
        let KafkaOp::Group(GroupOp::Join {
            request,
            client_id,
            client_host,
        }) = joined
        else {
            panic!("expected a join, got {joined:?}");
        };
        assert_eq!(
            (request.session_timeout_ms, request.protocols.len()),
            (6000, 1)
        );
        assert_eq!(
            (client_id.as_str(), client_host.as_str()),
            ("test", "/10.0.0.7")
        );
        let answer =
            membership::JoinResponse::failed(coordinator::REBALANCE_IN_PROGRESS, "m".into());
        session.complete(
            *second,
            KafkaOpResult::Group(GroupAnswer::Joined(answer)),
            &mut out,
        );
        assert!(out.is_empty(), "answers keep request order");
        let described = GroupAnswer::Described(Vec::new());
        session.complete(*first, KafkaOpResult::Group(described), &mut out);
        assert_eq!(correlations(&out), [7, 8]);
        let second_frame = 4 + u32::from_be_bytes(out[0..4].try_into().unwrap()) as usize;
        assert_eq!(
            &out[second_frame + 8..second_frame + 10],
            &coordinator::REBALANCE_IN_PROGRESS.to_be_bytes()
        );
    }

    #[test]
    fn the_advertised_table_is_in_key_order_without_repeats() {
        assert!(IMPLEMENTED.windows(2).all(|w| w[0].api_key < w[1].api_key));
    }

    #[test]
    fn topics_asked_for_by_id_are_unknown_and_come_after_named_ones() {
        let op = KafkaOp::Metadata {
            topics: Some(vec!["missing".into()]),
            topic_ids: vec![[9; 16]],
            create_missing: false,
            partitions: 1,
            topics_max: 10,
        };
        let KafkaOpResult::Topics(Ok(topics)) = run_op(op, &EmptyStore) else {
            panic!("metadata answers with topics");
        };
        let codes: Vec<_> = topics
            .iter()
            .map(|t| (t.error_code, t.name.as_deref(), t.topic_id))
            .collect();
        assert_eq!(
            codes,
            [
                (
                    metadata::UNKNOWN_TOPIC_OR_PARTITION,
                    Some("missing"),
                    [0; 16]
                ),
                (metadata::UNKNOWN_TOPIC_ID, None, [9; 16]),
            ]
        );
    }

    #[test]
    fn transactional_ids_and_failed_allocations_get_error_codes() {
        let mut session = KafkaSession::new(settings(), String::new());
        let mut out = Vec::new();
        let ops = run(&mut session, &init_producer_id(1, true), &mut out);
        assert!(ops.is_empty());
        assert_eq!(&out[12..14], &INVALID_REQUEST.to_be_bytes());
        out.clear();
        let ops = run(&mut session, &init_producer_id(2, false), &mut out);
        let failed = KafkaOpResult::ProducerId(Err(StoreError::Full("disk".into())));
        session.complete(ops[0].0, failed, &mut out);
        assert_eq!(&out[12..14], &COORDINATOR_NOT_AVAILABLE.to_be_bytes());
    }

    #[test]
    fn the_queue_behind_an_operation_is_bounded() {
        let mut session = KafkaSession::new(settings(), String::new());
        let mut input = init_producer_id(0, false);
        for i in 1..200 {
            input.extend(request(18, 0, i));
        }
        let (mut out, mut ops) = (Vec::new(), Vec::new());
        let used = session
            .on_bytes(&input, &mut out, usize::MAX, &mut ops, 0)
            .unwrap();
        assert!(used < input.len());
        assert_eq!(session.requests() as usize, ANSWERS_QUEUED_MAX);
    }

    #[test]
    fn the_output_limit_holds_requests_back() {
        let mut session = KafkaSession::new(settings(), String::new());
        let one = request(18, 0, 1);
        let input: Vec<u8> = (0..10).flat_map(|_| one.clone()).collect();
        let (mut out, mut ops) = (Vec::new(), Vec::new());
        let used = session.on_bytes(&input, &mut out, 1, &mut ops, 0).unwrap();
        assert_eq!((used, session.requests()), (one.len(), 1));
    }

    #[test]
    fn unimplemented_apis_and_bad_frames_close_the_connection() {
        let mut session = KafkaSession::new(settings(), String::new());
        let (mut out, mut ops) = (Vec::new(), Vec::new());
        assert_eq!(
            session.on_bytes(&request(1, 12, 1), &mut out, usize::MAX, &mut ops, 0),
            Err(KafkaError::NotImplemented {
                api_key: 1,
                api_version: 12
            })
        );
        let huge = (i32::MAX).to_be_bytes();
        assert!(matches!(
            session.on_bytes(&huge, &mut out, usize::MAX, &mut ops, 0),
            Err(KafkaError::Frame(FrameError::TooLarge { .. }))
        ));
        let mut bad = Vec::new();
        write_frame(&mut bad, |b| {
            b.extend_from_slice(&[0, 18, 0, 1, 0, 0, 0, 1, 0x7f, 0x7f])
        });
        assert!(matches!(
            session.on_bytes(&bad, &mut out, usize::MAX, &mut ops, 0),
            Err(KafkaError::Malformed(_))
        ));
        let mut v9 = init_producer_id(1, false);
        v9[6..8].copy_from_slice(&9i16.to_be_bytes());
        assert!(matches!(
            session.on_bytes(&v9, &mut out, usize::MAX, &mut ops, 0),
            Err(KafkaError::NotImplemented { api_key: 22, .. })
        ));
    }
}
