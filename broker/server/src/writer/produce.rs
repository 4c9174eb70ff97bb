//! Produce on the writer thread: resolve (and create) the topics, then hand every batch (checked
//! on the connection's shard already) to group commit; the answer is assembled as the appends
//! complete, each once it is durable.
//!
//! The aggregation state is behind a mutex that only the writer thread takes (completions run
//! there, one after another), so it is never contended.

use std::sync::{Arc, Mutex};

use weir_core::kafka::{
    KafkaOpResult, ProduceRecords, ProduceTopic, RoutedMessage, produce_failed, resolve,
};
use weir_core::log_store::{
    Append, AppendError, CheckedBatch, LogStore, PartitionId, StoreError, partition_at,
};
use weir_kafka::error::ErrorCode;
use weir_kafka::produce::{PartitionResponse, TopicResponse};
use weir_kafka::record_batch;

use super::group_commit::{AppendFailure, Completion, WriterHandle};
use super::outputs::{Placed, place};
use super::work::{Creation, KafkaDone};

struct Aggregate {
    responses: Vec<TopicResponse>,
    pending: usize,
    finish: Option<KafkaDone>,
}

impl Aggregate {
    /// Records one append's outcome for partition `pi` of topic `ti`; answers after the last.
    /// `own`: an append to the partition itself (its offset is the answer's), not one of a
    /// message a plugin routed elsewhere.
    fn record(
        this: &Mutex<Aggregate>,
        (ti, pi): (usize, usize),
        own: bool,
        outcome: Result<weir_core::log_store::Appended, i16>,
    ) {
        let mut guard = this.lock().unwrap_or_else(|e| e.into_inner());
        let answer = &mut guard.responses[ti].partitions[pi];
        match outcome {
            Ok(_) if !own => {}
            Ok(appended) => {
                if answer.base_offset < 0 || appended.base_offset < answer.base_offset {
                    answer.base_offset = appended.base_offset;
                }
                answer.log_start_offset = appended.log_start_offset;
            }
            Err(code) => {
                if answer.error_code == 0 {
                    answer.error_code = code;
                }
            }
        }
        if answer.error_code != 0 {
            answer.base_offset = -1;
        }
        guard.pending -= 1;
        if guard.pending == 0 {
            let responses = std::mem::take(&mut guard.responses);
            let finish = guard.finish.take();
            drop(guard);
            if let Some(finish) = finish {
                finish(KafkaOpResult::Produced(responses));
            }
        }
    }
}

/// Runs a Produce request on the writer thread: the records of each partition, and the
/// messages plugins routed elsewhere (their outcome counted in their partition's answer).
pub(super) fn run(
    store: &dyn LogStore,
    writer: &WriterHandle,
    (topics, routed): (Vec<ProduceTopic>, Vec<RoutedMessage>),
    (creation, known): (Creation, Vec<Option<Vec<PartitionId>>>),
    finish: KafkaDone,
) {
    let resolved = match resolve_unknown(store, &topics, known, creation) {
        Ok(resolved) => resolved,
        Err(_) => {
            let failed = topics
                .iter()
                .map(|t| produce_failed(t, ErrorCode::KafkaStorageError.code()));
            finish(KafkaOpResult::Produced(failed.collect()));
            return;
        }
    };
    let mut responses: Vec<TopicResponse> = topics.iter().map(|t| produce_failed(t, 0)).collect();
    let mut work = Vec::new();
    for (ti, (topic, found)) in topics.into_iter().zip(resolved).enumerate() {
        for (pi, (index, records)) in topic.partitions.into_iter().enumerate() {
            let answer = &mut responses[ti].partitions[pi];
            if let Some((pid, batches)) = partition_work(&found, index, records, answer) {
                work.extend(batches.into_iter().map(|batch| (ti, pi, pid, batch)));
            }
        }
    }
    let mut elsewhere = Vec::new();
    if !routed.is_empty() {
        let keyed = routed
            .into_iter()
            .map(|r| ((r.topic, r.partition), r.message, None))
            .collect();
        match place(store, keyed, creation) {
            Ok(placed) => elsewhere = placed,
            Err(((ti, pi), code)) => {
                let answer = &mut responses[ti].partitions[pi];
                answer.error_code = code;
                answer.base_offset = -1;
            }
        }
    }
    if work.is_empty() && elsewhere.is_empty() {
        finish(KafkaOpResult::Produced(responses));
        return;
    }
    let aggregate = Arc::new(Mutex::new(Aggregate {
        responses,
        pending: work.len() + elsewhere.len(),
        finish: Some(finish),
    }));
    submit_routed(writer, &aggregate, elsewhere);
    submit_partitions(writer, &aggregate, work);
}

/// Where one partition's `records` go (partition `index` of a topic `found` or not) and the
/// batches to append there, or `None` with its `answer` filled in when nothing is appended.
fn partition_work(
    found: &Result<Vec<PartitionId>, i16>,
    index: i32,
    records: ProduceRecords,
    answer: &mut PartitionResponse,
) -> Option<(PartitionId, Vec<CheckedBatch>)> {
    if let ProduceRecords::Refused { .. } = records {
        // Refused on the shard (a plugin, the access-control list): answered as such
        // whether or not the topic exists.
        partition_batches(records, answer);
        return None;
    }
    let pid = match found {
        Err(code) => {
            answer.error_code = *code;
            return None;
        }
        Ok(pids) => match partition_at(pids, index) {
            Some(pid) => pid,
            None => {
                answer.error_code = ErrorCode::UnknownTopicOrPartition.code();
                return None;
            }
        },
    };
    Some((pid, partition_batches(records, answer)?))
}

/// The batches to append for one partition's `records`, or `None` with its `answer` filled
/// in when nothing is appended. Batches were checked on the connection's shard. Older clients
/// (and librdkafka until it sees Fetch v4 advertised) send the legacy message format: it is
/// converted to one v2 batch here, as Kafka does.
fn partition_batches(
    records: ProduceRecords,
    answer: &mut PartitionResponse,
) -> Option<Vec<CheckedBatch>> {
    let batches = match records {
        ProduceRecords::Batches(batches) => batches,
        ProduceRecords::Legacy(set) => {
            match record_batch::upconvert_legacy(&set, crate::clock::wall_ms()) {
                Ok(batch) => CheckedBatch::new(batch).map_or_else(
                    |e| {
                        tracing::debug!("produce refused: {e}");
                        Vec::new()
                    },
                    |batch| vec![batch],
                ),
                Err(e) => {
                    tracing::debug!("produce refused: {e}");
                    Vec::new()
                }
            }
        }
        ProduceRecords::Corrupt => Vec::new(),
        ProduceRecords::Refused {
            code,
            message,
            record_errors,
        } => {
            answer.error_code = code;
            answer.error_message = Some(message);
            answer.record_errors = record_errors
                .into_iter()
                .map(|(index, why)| (index, Some(why)))
                .collect();
            return None;
        }
        ProduceRecords::Nothing => return None,
    };
    if batches.is_empty() {
        answer.error_code = ErrorCode::CorruptMessage.code();
        return None;
    }
    Some(batches)
}

/// Submits the messages plugins routed to other topics; each counts in the answer of the
/// partition it came from.
fn submit_routed(
    writer: &WriterHandle,
    aggregate: &Arc<Mutex<Aggregate>>,
    elsewhere: Vec<Placed<(usize, usize)>>,
) {
    for placed in elsewhere {
        let done_aggregate = aggregate.clone();
        let origin = placed.key;
        let done: Completion = Box::new(move |result: Result<_, AppendFailure>| {
            Aggregate::record(
                &done_aggregate,
                origin,
                false,
                result.map_err(|e| error_code(&e)),
            );
        });
        let append = Append {
            partition: placed.partition,
            batch: placed.batch,
            dedup: None,
        };
        if let Err(refused) = writer.submit_all(vec![(append, done)]) {
            for _ in refused {
                Aggregate::record(
                    aggregate,
                    origin,
                    false,
                    Err(ErrorCode::RequestTimedOut.code()),
                );
            }
        }
    }
}

/// Submits the batches of each partition (`work`: topic index, partition index, partition,
/// batch, in request order). A partition's batches are queued together or refused together,
/// so a full queue never leaves a partition half written.
fn submit_partitions(
    writer: &WriterHandle,
    aggregate: &Arc<Mutex<Aggregate>>,
    work: Vec<(usize, usize, PartitionId, CheckedBatch)>,
) {
    let mut work = work.into_iter().peekable();
    while let Some((ti, pi, partition, batch)) = work.next() {
        let mut appends = vec![(ti, pi, partition, batch)];
        while let Some(next) = work.next_if(|w| (w.0, w.1) == (ti, pi)) {
            appends.push(next);
        }
        let appends = appends
            .into_iter()
            .map(|(ti, pi, partition, batch)| {
                let done_aggregate = aggregate.clone();
                let done: Completion = Box::new(move |result: Result<_, AppendFailure>| {
                    let outcome = result.map_err(|e| error_code(&e));
                    Aggregate::record(&done_aggregate, (ti, pi), true, outcome);
                });
                (
                    Append {
                        partition,
                        batch,
                        dedup: None,
                    },
                    done,
                )
            })
            .collect();
        if let Err(refused) = writer.submit_all(appends) {
            for _ in refused {
                Aggregate::record(
                    aggregate,
                    (ti, pi),
                    true,
                    Err(ErrorCode::RequestTimedOut.code()),
                );
            }
        }
    }
}

/// Each topic's partitions: as the shard found them, or else found (or created) here.
fn resolve_unknown(
    store: &dyn LogStore,
    topics: &[ProduceTopic],
    mut known: Vec<Option<Vec<PartitionId>>>,
    creation: Creation,
) -> Result<Vec<Result<Vec<PartitionId>, i16>>, StoreError> {
    known.resize(topics.len(), None);
    // A topic every partition of which was refused is not looked up nor created (its
    // partitions are answered as refused, whatever `found` says).
    let wanted = |topic: &ProduceTopic| {
        (topic.partitions.iter()).any(|(_, r)| !matches!(r, ProduceRecords::Refused { .. }))
    };
    let unknown: Vec<String> = (topics.iter().zip(&known))
        .filter(|(topic, found)| found.is_none() && wanted(topic))
        .map(|(topic, _)| topic.name.clone())
        .collect();
    let Creation {
        create_missing,
        partitions,
        topics_max,
    } = creation;
    let mut found = resolve(store, &unknown, create_missing, partitions, topics_max)?.into_iter();
    let unknown_topic = Err(ErrorCode::UnknownTopicOrPartition.code());
    Ok((known.into_iter().zip(topics))
        .map(|(known, topic)| match known {
            Some(partitions) => Ok(partitions),
            None if !wanted(topic) => unknown_topic.clone(),
            None => found.next().unwrap_or(unknown_topic.clone()),
        })
        .collect())
}

fn error_code(failure: &AppendFailure) -> i16 {
    tracing::debug!("produce refused: {failure}");
    match failure {
        AppendFailure::Rejected(AppendError::UnknownPartition(_)) => {
            ErrorCode::UnknownTopicOrPartition.code()
        }
        AppendFailure::Rejected(AppendError::OutOfOrderSequence { .. }) => {
            ErrorCode::OutOfOrderSequenceNumber.code()
        }
        AppendFailure::Rejected(AppendError::ProducerFenced { .. }) => {
            ErrorCode::InvalidProducerEpoch.code()
        }
        // Kafka produces carry no dedup key.
        AppendFailure::Rejected(AppendError::DedupKeyTooLong)
        | AppendFailure::Store(_)
        | AppendFailure::Stopped => ErrorCode::KafkaStorageError.code(),
    }
}
