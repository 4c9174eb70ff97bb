//! The requests a session answers by reading the log on its own shard: Fetch (answered at
//! once, or waiting for data or its deadline), ListOffsets and OffsetForLeaderEpoch.

use weir_kafka::error::ErrorCode;
use weir_kafka::frame::write_frame;
use weir_kafka::{cluster, fetch, header};

use super::apis::{KafkaError, request_body};
use super::session::{KafkaSession, Queued, WaitingFetch};
use crate::acl::Access;
use crate::log_store::{LogStore, PartitionId, StoreError, partition_at};

/// Room reserved in a Fetch answer beyond its record bytes, for its headers and per-partition
/// fields (more only costs a reallocation).
const FETCH_ANSWER_OVERHEAD_BYTES: usize = 4096;

/// The longest a Fetch waits for data, whatever the client asks.
const FETCH_WAIT_MAX_MS: u64 = 30_000;

impl KafkaSession {
    /// Answers waiting fetches that now have enough data or reached their deadline, and a
    /// failed authentication whose delay is over: the connection must then close (the error
    /// says why).
    pub fn tick(&mut self, now_ms: u64, out: &mut Vec<u8>) -> Result<(), KafkaError> {
        self.release_refusal(now_ms, out)?;
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
        Ok(())
    }
    /// Reads what `request` asks for; returns the answer, its record bytes, and whether a
    /// partition has an error (Kafka answers at once then). Only the first partition that has
    /// data may go past the byte budgets (with its first batch, so a reader always makes
    /// progress); a later batch that does not fit is left for the next fetch.
    pub(super) fn read(
        &self,
        request: &fetch::FetchRequest,
    ) -> (Vec<fetch::FetchedTopic>, usize, bool) {
        let store = &*self.settings.store;
        let cap = self.settings.fetch_bytes_max;
        let mut budget = usize::try_from(request.max_bytes).unwrap_or(0).min(cap);
        let mut total = 0usize;
        let mut any_error = false;
        let mut topics = Vec::with_capacity(request.topics.len());
        let caller = self.caller();
        for topic in &request.topics {
            if !caller.topic(Access::Read, &topic.name) {
                any_error = true;
                topics.push(refused_fetch(topic));
                continue;
            }
            let pids = store
                .topic(&topic.name)
                .ok()
                .flatten()
                .map(|t| t.partitions);
            let mut partitions = Vec::with_capacity(topic.partitions.len());
            for wanted in &topic.partitions {
                let pid = pids.as_ref().and_then(|p| partition_at(p, wanted.index));
                let limit = usize::try_from(wanted.max_bytes)
                    .unwrap_or(0)
                    .min(cap)
                    .min(budget);
                let first = total == 0;
                let mut answer = read_partition(store, pid, wanted, limit);
                any_error |= answer.error_code != 0;
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

    pub(super) fn fetch(
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
            amend: None,
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

    pub(super) fn list_offsets(
        &mut self,
        frame: &[u8],
        start: header::HeaderStart,
        out: &mut Vec<u8>,
    ) -> Result<(), KafkaError> {
        let body = request_body(frame, start, |_| 1)?;
        let queries = fetch::parse_list_offsets(body, start.api_version)?;
        let store = &*self.settings.store;
        let caller = self.caller();
        let answers: Vec<(String, Vec<fetch::OffsetAnswer>)> = queries
            .into_iter()
            .map(|(name, queries)| {
                if !caller.describe(&name) {
                    let refused = ErrorCode::TopicAuthorizationFailed.code();
                    return (
                        name,
                        queries.iter().map(|q| (q.index, refused, -1, -1)).collect(),
                    );
                }
                let pids = store.topic(&name).ok().flatten().map(|t| t.partitions);
                let answers = queries
                    .iter()
                    .map(|q| {
                        let pid = pids.as_ref().and_then(|p| partition_at(p, q.index));
                        let Some(pid) = pid else {
                            return (q.index, ErrorCode::UnknownTopicOrPartition.code(), -1, -1);
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
                            Err(_) => (q.index, ErrorCode::KafkaStorageError.code(), -1, -1),
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
    pub(super) fn leader_epochs(
        &mut self,
        frame: &[u8],
        start: header::HeaderStart,
        out: &mut Vec<u8>,
    ) -> Result<(), KafkaError> {
        let body = request_body(frame, start, cluster::epoch_header_version)?;
        let asked = cluster::parse_epochs(body, start.api_version)?;
        let store = &*self.settings.store;
        let caller = self.caller();
        let answers: Vec<(String, Vec<cluster::EpochAnswer>)> = asked
            .into_iter()
            .map(|(name, queries)| {
                if !caller.describe(&name) {
                    let refused = ErrorCode::TopicAuthorizationFailed.code();
                    let answers = queries.iter().map(|q| (q.0, refused, -1, -1)).collect();
                    return (name, answers);
                }
                let pids = store.topic(&name).ok().flatten().map(|t| t.partitions);
                let answers = queries
                    .into_iter()
                    .map(|(index, current, epoch)| {
                        let pid = pids.as_ref().and_then(|p| partition_at(p, index));
                        let Some(pid) = pid else {
                            return (index, ErrorCode::UnknownTopicOrPartition.code(), -1, -1);
                        };
                        if current > 0 {
                            return (index, ErrorCode::UnknownLeaderEpoch.code(), -1, -1);
                        }
                        match (epoch, store.partition(pid)) {
                            (_, Err(_)) => (index, ErrorCode::KafkaStorageError.code(), -1, -1),
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
}

/// A Fetch's answer for a topic the client may not read: TOPIC_AUTHORIZATION_FAILED in every
/// partition, no records.
fn refused_fetch(topic: &fetch::FetchTopic) -> fetch::FetchedTopic {
    let partitions = (topic.partitions.iter())
        .map(|wanted| fetch::FetchedPartition {
            index: wanted.index,
            error_code: ErrorCode::TopicAuthorizationFailed.code(),
            high_watermark: -1,
            log_start_offset: -1,
            records: Vec::new(),
        })
        .collect();
    fetch::FetchedTopic {
        name: topic.name.clone(),
        partitions,
    }
}

/// Reads one partition of a Fetch, up to `limit` bytes (its first batch whole); the answer
/// carries the error code when the partition is unknown (`pid` is `None`), the offset is out
/// of range, or the store failed.
fn read_partition(
    store: &dyn LogStore,
    pid: Option<PartitionId>,
    wanted: &fetch::FetchPartition,
    limit: usize,
) -> fetch::FetchedPartition {
    let mut answer = fetch::FetchedPartition {
        index: wanted.index,
        error_code: 0,
        high_watermark: -1,
        log_start_offset: -1,
        records: Vec::new(),
    };
    let Some(pid) = pid else {
        answer.error_code = ErrorCode::UnknownTopicOrPartition.code();
        return answer;
    };
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
            answer.error_code = ErrorCode::OffsetOutOfRange.code();
            answer.high_watermark = high_watermark;
            answer.log_start_offset = log_start_offset;
        }
        Err(_) => answer.error_code = ErrorCode::KafkaStorageError.code(),
    }
    answer
}

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
