//! Produce on the writer thread: resolve (and create) the topics, then hand every batch to
//! group commit; the answer is assembled as the appends complete, each once it is durable.
//!
//! The aggregation state is behind a mutex that only the writer thread takes (completions run
//! there, one after another), so it is never contended.

use std::sync::{Arc, Mutex};

use weir_core::kafka::{KafkaOpResult, ProduceTopic, STORAGE_ERROR, produce_failed, resolve};
use weir_core::log_store::{Append, AppendError, LogStore, partition_at};
use weir_kafka::produce::TopicResponse;
use weir_kafka::record_batch;

use crate::writer::{AppendFailure, WriterHandle};

/// Kafka error codes a Produce answer can carry for a partition.
const CORRUPT_MESSAGE: i16 = 2;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const REQUEST_TIMED_OUT: i16 = 7;
const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const INVALID_PRODUCER_EPOCH: i16 = 47;

/// Where the answer goes once every append has completed.
pub(super) type Finish = Box<dyn FnOnce(KafkaOpResult) + Send>;

struct Aggregate {
    responses: Vec<TopicResponse>,
    pending: usize,
    finish: Option<Finish>,
}

impl Aggregate {
    /// Records one append's outcome for partition `pi` of topic `ti`; answers after the last.
    fn record(
        this: &Mutex<Aggregate>,
        ti: usize,
        pi: usize,
        outcome: Result<weir_core::log_store::Appended, i16>,
    ) {
        let mut guard = this.lock().unwrap_or_else(|e| e.into_inner());
        let answer = &mut guard.responses[ti].partitions[pi];
        match outcome {
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

/// Runs a Produce request on the writer thread.
pub(super) fn run(
    store: &dyn LogStore,
    writer: &WriterHandle,
    topics: Vec<ProduceTopic>,
    create_missing: bool,
    partitions: u32,
    topics_max: u32,
    finish: Finish,
) {
    let names: Vec<String> = topics.iter().map(|t| t.name.clone()).collect();
    let resolved = match resolve(store, &names, create_missing, partitions, topics_max) {
        Ok(resolved) => resolved,
        Err(_) => {
            let failed = topics.iter().map(|t| produce_failed(t, STORAGE_ERROR));
            finish(KafkaOpResult::Produced(failed.collect()));
            return;
        }
    };
    let mut responses: Vec<TopicResponse> = topics.iter().map(|t| produce_failed(t, 0)).collect();
    let mut work = Vec::new();
    for (ti, (topic, found)) in topics.into_iter().zip(resolved).enumerate() {
        for (pi, (index, records)) in topic.partitions.into_iter().enumerate() {
            let answer = &mut responses[ti].partitions[pi];
            let pid = match &found {
                Err(code) => {
                    answer.error_code = *code;
                    continue;
                }
                Ok(pids) => match partition_at(pids, index) {
                    Some(pid) => pid,
                    None => {
                        answer.error_code = UNKNOWN_TOPIC_OR_PARTITION;
                        continue;
                    }
                },
            };
            let Some(records) = records else {
                answer.error_code = CORRUPT_MESSAGE;
                continue;
            };
            // Older clients (and librdkafka until it sees Fetch v4 advertised) send the
            // legacy message format: it is converted to one v2 batch, as Kafka does.
            let batches: Result<Vec<Vec<u8>>, ()> = if record_batch::is_v2(&records) {
                record_batch::split(&records)
                    .map(|batch| batch.map(<[u8]>::to_vec).map_err(drop))
                    .collect()
            } else {
                record_batch::upconvert_legacy(&records, crate::maintenance::wall_ms())
                    .map(|batch| vec![batch])
                    .map_err(|e| tracing::debug!("produce refused: {e}"))
            };
            // Every batch of a partition is checked before any is appended, so a bad one
            // never leaves the partition half written.
            let batches = batches.and_then(|batches| {
                batches
                    .iter()
                    .try_for_each(|b| record_batch::validate(b).map(drop))
                    .map_err(|e| tracing::debug!("produce refused: {e}"))
                    .map(|()| batches)
            });
            match batches {
                Ok(batches) if !batches.is_empty() => {
                    work.extend(batches.into_iter().map(|batch| (ti, pi, pid, batch)));
                }
                _ => answer.error_code = CORRUPT_MESSAGE,
            }
        }
    }
    if work.is_empty() {
        finish(KafkaOpResult::Produced(responses));
        return;
    }
    let aggregate = Arc::new(Mutex::new(Aggregate {
        responses,
        pending: work.len(),
        finish: Some(finish),
    }));
    // A partition's batches are queued together or refused together, so a full queue never
    // leaves a partition half written.
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
                let done: crate::writer::Completion =
                    Box::new(move |result: Result<_, AppendFailure>| {
                        let outcome = result.map_err(|e| error_code(&e));
                        Aggregate::record(&done_aggregate, ti, pi, outcome);
                    });
                (Append { partition, batch }, done)
            })
            .collect();
        if let Err(refused) = writer.submit_all(appends) {
            for _ in refused {
                Aggregate::record(&aggregate, ti, pi, Err(REQUEST_TIMED_OUT));
            }
        }
    }
}

fn error_code(failure: &AppendFailure) -> i16 {
    tracing::debug!("produce refused: {failure}");
    match failure {
        AppendFailure::Rejected(AppendError::InvalidBatch(_)) => CORRUPT_MESSAGE,
        AppendFailure::Rejected(AppendError::UnknownPartition(_)) => UNKNOWN_TOPIC_OR_PARTITION,
        AppendFailure::Rejected(AppendError::OutOfOrderSequence { .. }) => {
            OUT_OF_ORDER_SEQUENCE_NUMBER
        }
        AppendFailure::Rejected(AppendError::ProducerFenced { .. }) => INVALID_PRODUCER_EPOCH,
        AppendFailure::Store(_) | AppendFailure::Stopped => STORAGE_ERROR,
    }
}
