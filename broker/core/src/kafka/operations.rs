//! What a Kafka session hands to the broker ([`KafkaOp`]), what the log's writer thread makes
//! of it ([`run_op`], [`resolve`]), and the answer each result makes ([`write_result`]).

use weir_kafka::error::ErrorCode;
use weir_kafka::{
    create_partitions, create_topics, delete_records, delete_topics, describe_configs,
    init_producer_id, membership, metadata, offsets, produce,
};

use super::op::{GroupAnswer, KafkaOp, KafkaOpResult, ProduceRecords, ProduceTopic};
use super::settings::{CLUSTER_ID, KafkaSettings};
use super::{admin, groups};
use crate::log_store::{CheckedBatch, LogStore, PartitionId, StoreError, TopicConfig};

/// The error code of a part the store could not run.
const STORAGE: i16 = ErrorCode::KafkaStorageError.code();
/// The error code of a group request the store could not run (clients retry).
const UNAVAILABLE: i16 = ErrorCode::CoordinatorNotAvailable.code();

impl KafkaOp {
    /// The result of this operation when the store could not run it: every part fails with
    /// a storage error (group requests: the coordinator is not available, so clients retry).
    pub fn failed(self, error: StoreError) -> KafkaOpResult {
        match self {
            KafkaOp::AllocateProducerId => KafkaOpResult::ProducerId(Err(error)),
            KafkaOp::Metadata { .. } => KafkaOpResult::Topics(Err(error)),
            KafkaOp::Produce { topics, .. } => KafkaOpResult::Produced(
                (topics.iter())
                    .map(|t| produce_failed(t, STORAGE))
                    .collect(),
            ),
            KafkaOp::CreateTopics { request, .. } => KafkaOpResult::Created(
                (request.topics.iter())
                    .map(|t| admin::failure(&t.name, STORAGE, error.to_string()))
                    .collect(),
            ),
            KafkaOp::DeleteTopics { targets } => {
                KafkaOpResult::Deleted(targets.into_iter().map(|t| (t, STORAGE)).collect())
            }
            KafkaOp::CreatePartitions(request) => KafkaOpResult::Grown(
                (request.topics.into_iter())
                    .map(|t| (t.name, STORAGE, Some(error.to_string())))
                    .collect(),
            ),
            KafkaOp::DeleteRecords(topics) => records_not_deleted(topics),
            KafkaOp::CommitOffsets(request) => groups::commit_refused(request, UNAVAILABLE),
            KafkaOp::DeleteGroups(targets) => KafkaOpResult::Group(GroupAnswer::Deleted(
                (targets.into_iter())
                    .map(|(group, _)| (group, UNAVAILABLE))
                    .collect(),
            )),
            KafkaOp::Group(op) => op.failed(UNAVAILABLE),
            KafkaOp::FetchOffsets(asked) => KafkaOpResult::OffsetsFetched(
                (asked.into_iter())
                    .map(|group| groups::fetch_failed(group, UNAVAILABLE))
                    .collect(),
            ),
            KafkaOp::DescribeConfigs(resources) => configs_not_described(resources, &error),
        }
    }
}

fn records_not_deleted(topics: delete_records::Request) -> KafkaOpResult {
    KafkaOpResult::RecordsDeleted(
        (topics.into_iter())
            .map(|(name, partitions)| {
                let failed = |(index, _)| delete_records::PartitionResult {
                    index,
                    low_watermark: -1,
                    error_code: STORAGE,
                };
                (name, partitions.into_iter().map(failed).collect())
            })
            .collect(),
    )
}

fn configs_not_described(
    resources: Vec<describe_configs::Resource>,
    error: &StoreError,
) -> KafkaOpResult {
    KafkaOpResult::Configs(
        (resources.into_iter())
            .map(|r| describe_configs::ResourceResult {
                error_code: STORAGE,
                error_message: Some(error.to_string()),
                resource_type: r.resource_type,
                name: r.name,
                entries: Vec::new(),
            })
            .collect(),
    )
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
                    error_code: ErrorCode::UnknownTopicId.code(),
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
        KafkaOp::Group(op) => op.failed(ErrorCode::CoordinatorNotAvailable.code()),
        produce @ KafkaOp::Produce { .. } => {
            produce.failed(StoreError::Fatal("produce runs through the writer".into()))
        }
    }
}

/// Writes the answer `result` makes to a request of `version`.
pub(super) fn write_result(
    body: &mut Vec<u8>,
    correlation_id: i32,
    version: i16,
    result: KafkaOpResult,
    settings: &KafkaSettings,
) {
    match result {
        KafkaOpResult::ProducerId(result) => {
            let (error, id, epoch) = match result {
                Ok(id) => (0, id, 0),
                Err(_) => (ErrorCode::CoordinatorNotAvailable.code(), -1, -1),
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
        KafkaOpResult::Group(answer) => write_group_answer(body, correlation_id, version, answer),
        KafkaOpResult::Topics(result) => {
            // A store that cannot be read answers with no topics; the client retries.
            let topics = result.unwrap_or_default();
            let broker = metadata::Broker {
                node_id: 0,
                host: &settings.advertised_host,
                port: settings.advertised_port,
            };
            metadata::write_response(body, correlation_id, version, broker, CLUSTER_ID, &topics)
        }
    }
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
pub(super) fn check_produce_records(records: Option<&[u8]>, cap: usize) -> ProduceRecords {
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
            out.push(Err(ErrorCode::UnknownTopicOrPartition.code()));
            continue;
        }
        match store.create_topic(name, partitions, TopicConfig::default()) {
            Ok(topic) => {
                *count += 1;
                out.push(Ok(topic.partitions));
            }
            Err(StoreError::InvalidArgument(_)) => {
                out.push(Err(ErrorCode::InvalidTopicException.code()))
            }
            Err(StoreError::Full(_)) => out.push(Err(ErrorCode::KafkaStorageError.code())),
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
            out.push(failed(ErrorCode::UnknownTopicOrPartition.code()));
            continue;
        }
        match store.create_topic(&name, partitions, TopicConfig::default()) {
            Ok(topic) => {
                count += 1;
                out.push(found(name, topic.partitions.len()));
            }
            Err(StoreError::InvalidArgument(_)) => {
                out.push(failed(ErrorCode::InvalidTopicException.code()))
            }
            Err(StoreError::Full(_)) => out.push(failed(ErrorCode::KafkaStorageError.code())),
            Err(other) => return Err(other),
        }
    }
    Ok(out)
}
