//! What a Kafka session hands to the broker and what comes back: [`KafkaOp`] and
//! [`KafkaOpResult`], the group coordinator's [`GroupOp`] and [`GroupAnswer`] among them.
//! Only data and the answers a refused operation gets: `operations.rs` runs them,
//! `coordinator.rs` answers the group requests.

use weir_kafka::membership::{
    DescribedGroup, HeartbeatRequest, JoinRequest, JoinResponse, LeaveRequest, ListedGroup,
    SyncRequest, SyncResponse,
};
use weir_kafka::offsets::{self, CommitRequest};
use weir_kafka::{
    create_partitions, create_topics, delete_records, delete_topics, describe_configs, metadata,
    produce,
};

use super::admin;
use crate::log_store::{CheckedBatch, StoreError};

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

/// Changes a deferred operation's result before it is answered: adds the refused items
/// back, or leaves out what the client may not see.
pub(super) struct Amend(Box<dyn FnOnce(&mut KafkaOpResult) + Send>);

impl Amend {
    pub(super) fn new(amend: impl FnOnce(&mut KafkaOpResult) + Send + 'static) -> Option<Amend> {
        Some(Amend(Box::new(amend)))
    }

    /// Applies the change to `result`.
    pub(super) fn apply(self, result: &mut KafkaOpResult) {
        (self.0)(result);
    }
}

impl std::fmt::Debug for Amend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Amend")
    }
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

/// A group request from a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupOp {
    /// JoinGroup, with the client id and address DescribeGroups reports.
    Join {
        /// The request.
        request: JoinRequest,
        /// The client's id (request header).
        client_id: String,
        /// The client's address.
        client_host: String,
    },
    /// SyncGroup.
    Sync(SyncRequest),
    /// Heartbeat.
    Heartbeat(HeartbeatRequest),
    /// LeaveGroup.
    Leave(LeaveRequest),
    /// DescribeGroups: the groups.
    Describe(Vec<String>),
    /// ListGroups: the states asked for (empty: all).
    List(Vec<String>),
    /// DeleteGroups: the groups.
    Delete(Vec<String>),
    /// OffsetCommit: checked against membership here, stored by the log's writer.
    Commit(CommitRequest),
}

/// The answer to a [`GroupOp`] other than a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupAnswer {
    /// JoinGroup.
    Joined(JoinResponse),
    /// SyncGroup.
    Synced(SyncResponse),
    /// Heartbeat: the error code.
    Heartbeat(i16),
    /// LeaveGroup: the top-level error and each member's (id, instance id, error).
    Left(i16, Vec<(String, Option<String>, i16)>),
    /// DescribeGroups.
    Described(Vec<DescribedGroup>),
    /// ListGroups: the error and the groups.
    Listed(i16, Vec<ListedGroup>),
    /// DeleteGroups: each group's error code.
    Deleted(Vec<(String, i16)>),
}

impl GroupOp {
    /// The answer when the coordinator cannot serve the request at all.
    pub fn failed(self, error_code: i16) -> KafkaOpResult {
        let answer = match self {
            GroupOp::Join { request, .. } => {
                GroupAnswer::Joined(JoinResponse::failed(error_code, request.member_id))
            }
            GroupOp::Sync(_) => GroupAnswer::Synced(SyncResponse::failed(error_code)),
            GroupOp::Heartbeat(_) => GroupAnswer::Heartbeat(error_code),
            GroupOp::Leave(request) => GroupAnswer::Left(
                error_code,
                (request.members.into_iter())
                    .map(|(member, instance)| (member, instance, error_code))
                    .collect(),
            ),
            GroupOp::Describe(groups) => GroupAnswer::Described(
                groups
                    .into_iter()
                    .map(|group_id| DescribedGroup {
                        error_code,
                        group_id,
                        state: "",
                        protocol_type: String::new(),
                        protocol: String::new(),
                        members: Vec::new(),
                    })
                    .collect(),
            ),
            GroupOp::List(_) => GroupAnswer::Listed(error_code, Vec::new()),
            GroupOp::Delete(groups) => {
                GroupAnswer::Deleted(groups.into_iter().map(|g| (g, error_code)).collect())
            }
            GroupOp::Commit(request) => return commit_refused(request, error_code),
        };
        KafkaOpResult::Group(answer)
    }
}

/// The answer to an OffsetCommit refused as a whole: `error_code` on every partition.
pub fn commit_refused(request: CommitRequest, error_code: i16) -> KafkaOpResult {
    KafkaOpResult::OffsetsCommitted(
        (request.topics.into_iter())
            .map(|(topic, partitions)| {
                let codes = partitions.iter().map(|p| (p.index, error_code)).collect();
                (topic, codes)
            })
            .collect(),
    )
}
