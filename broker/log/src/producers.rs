//! Idempotent producers: the sequence checks Kafka makes on every batch of a producer with
//! an id, and the state kept for them per producer and partition (`producers` table).
//!
//! A producer numbers its records per partition from 0; each batch carries its epoch and
//! the sequence of its first record. For one (producer, partition) the log keeps the epoch
//! and the last [`RECENT_BATCHES`] batches it accepted. A batch is then:
//! - a **duplicate** if it has the epoch and the first and last sequence of a remembered
//!   batch (a retry of a batch whose answer was lost): it is not written again, and is
//!   answered with the offsets the original got;
//! - **in order** if its first sequence follows the last accepted one (after `i32::MAX`
//!   comes 0), or it is the first batch of a newer epoch (sequence 0), or nothing is known
//!   of the producer on this partition;
//! - otherwise refused: OUT_OF_ORDER_SEQUENCE_NUMBER for a gap, INVALID_PRODUCER_EPOCH for
//!   an older epoch (a fenced producer).
//!
//! State is dropped by the retention pass once a producer has written nothing to the
//! partition for [`PRODUCER_EXPIRY_MS`] by its batches' timestamps, as Kafka does with
//! `producer.id.expiration.ms`, and when its partition is deleted.

use weir_core::log_store::{AppendError, PartitionId};

/// Batches remembered per producer and partition: a producer has at most 5 requests in
/// flight when idempotent, so a retry is always of one of its last 5 batches.
pub const RECENT_BATCHES: usize = 5;

/// A producer's state on a partition is dropped this long after the newest timestamp it
/// wrote there (Kafka's `producer.id.expiration.ms` default: one day).
pub const PRODUCER_EXPIRY_MS: i64 = 24 * 60 * 60 * 1000;

/// One accepted batch: its sequence range and where it landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecentBatch {
    /// Sequence of its first record.
    pub first_seq: i32,
    /// Sequence of its last record.
    pub last_seq: i32,
    /// Offset of its first record.
    pub base_offset: i64,
    /// Offset of its last record.
    pub last_offset: i64,
}

/// What the log knows of one producer on one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerState {
    /// The producer's epoch.
    pub epoch: i16,
    /// The newest record timestamp it wrote here.
    pub last_timestamp: i64,
    /// Its last accepted batches, oldest first.
    pub recent: Vec<RecentBatch>,
}

/// What to do with a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Append it.
    Append,
    /// Already stored at these offsets (first, last): answer with them, write nothing.
    Duplicate(i64, i64),
    /// Refuse it.
    Refuse(AppendError),
}

/// The sequence of the last record of a batch starting at `first` with `last_offset_delta`.
pub fn last_sequence(first: i32, last_offset_delta: i32) -> i32 {
    let wrapped = (i64::from(first) + i64::from(last_offset_delta)) % (i64::from(i32::MAX) + 1);
    wrapped as i32
}

fn next_sequence(last: i32) -> i32 {
    if last == i32::MAX { 0 } else { last + 1 }
}

/// Checks a batch of `epoch` with sequences `first..=last` against `state`.
pub fn check(state: Option<&ProducerState>, epoch: i16, first: i32, last: i32) -> Verdict {
    let Some(state) = state else {
        return Verdict::Append;
    };
    if epoch < state.epoch {
        return Verdict::Refuse(AppendError::ProducerFenced {
            epoch,
            current: state.epoch,
        });
    }
    if epoch > state.epoch {
        return if first == 0 {
            Verdict::Append
        } else {
            Verdict::Refuse(AppendError::OutOfOrderSequence {
                expected: 0,
                got: first,
            })
        };
    }
    if let Some(seen) = (state.recent.iter()).find(|b| b.first_seq == first && b.last_seq == last) {
        return Verdict::Duplicate(seen.base_offset, seen.last_offset);
    }
    let expected = state
        .recent
        .last()
        .map_or(first, |b| next_sequence(b.last_seq));
    if first == expected {
        Verdict::Append
    } else {
        Verdict::Refuse(AppendError::OutOfOrderSequence {
            expected,
            got: first,
        })
    }
}

/// The state after an accepted batch.
pub fn accepted(
    state: Option<ProducerState>,
    epoch: i16,
    batch: RecentBatch,
    max_timestamp: i64,
) -> ProducerState {
    let mut state = match state {
        Some(state) if state.epoch == epoch => state,
        _ => ProducerState {
            epoch,
            last_timestamp: max_timestamp,
            recent: Vec::new(),
        },
    };
    state.last_timestamp = state.last_timestamp.max(max_timestamp);
    if state.recent.len() == RECENT_BATCHES {
        state.recent.remove(0);
    }
    state.recent.push(batch);
    state
}

/// `producers` key: producer id, partition id.
pub fn key(producer_id: i64, partition: PartitionId) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..8].copy_from_slice(&producer_id.to_be_bytes());
    key[8..].copy_from_slice(&partition.0.to_be_bytes());
    key
}

/// The partition of a `producers` key.
pub fn partition_of(key: &[u8]) -> Option<PartitionId> {
    let bytes: [u8; 4] = key.get(8..12)?.try_into().ok()?;
    Some(PartitionId(u32::from_be_bytes(bytes)))
}

/// `producers` value: epoch i16, newest timestamp i64, count u8, then per batch first and
/// last sequence (i32 each), base and last offset (i64 each).
pub fn encode(state: &ProducerState) -> Vec<u8> {
    let mut value = Vec::with_capacity(11 + 24 * state.recent.len());
    value.extend_from_slice(&state.epoch.to_be_bytes());
    value.extend_from_slice(&state.last_timestamp.to_be_bytes());
    value.push(state.recent.len() as u8);
    for b in &state.recent {
        value.extend_from_slice(&b.first_seq.to_be_bytes());
        value.extend_from_slice(&b.last_seq.to_be_bytes());
        value.extend_from_slice(&b.base_offset.to_be_bytes());
        value.extend_from_slice(&b.last_offset.to_be_bytes());
    }
    value
}

/// Reads a `producers` value; `None` if it is malformed.
pub fn decode(value: &[u8]) -> Option<ProducerState> {
    let epoch = i16::from_be_bytes(value.get(..2)?.try_into().ok()?);
    let last_timestamp = i64::from_be_bytes(value.get(2..10)?.try_into().ok()?);
    let count = usize::from(*value.get(10)?);
    let body = value.get(11..)?;
    if count > RECENT_BATCHES || body.len() != count * 24 {
        return None;
    }
    let recent = body
        .chunks_exact(24)
        .map(|c| {
            let i32_at = |at: usize| i32::from_be_bytes([c[at], c[at + 1], c[at + 2], c[at + 3]]);
            let i64_at = |at: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&c[at..at + 8]);
                i64::from_be_bytes(b)
            };
            RecentBatch {
                first_seq: i32_at(0),
                last_seq: i32_at(4),
                base_offset: i64_at(8),
                last_offset: i64_at(16),
            }
        })
        .collect();
    Some(ProducerState {
        epoch,
        last_timestamp,
        recent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(first_seq: i32, last_seq: i32, base_offset: i64) -> RecentBatch {
        RecentBatch {
            first_seq,
            last_seq,
            base_offset,
            last_offset: base_offset + i64::from(last_seq - first_seq),
        }
    }

    #[test]
    fn sequences_follow_on_retries_are_duplicates_and_old_epochs_are_fenced() {
        assert_eq!(
            check(None, 0, 7, 9),
            Verdict::Append,
            "nothing known: accepted"
        );
        let mut state = accepted(None, 0, batch(0, 2, 100), 5);
        for i in 1..=6 {
            let first = i * 3;
            assert_eq!(check(Some(&state), 0, first, first + 2), Verdict::Append);
            state = accepted(
                Some(state),
                0,
                batch(first, first + 2, 100 + i64::from(first)),
                5,
            );
        }
        assert_eq!(
            state.recent.len(),
            RECENT_BATCHES,
            "only the last 5 are kept"
        );
        assert_eq!(check(Some(&state), 0, 18, 20), Verdict::Duplicate(118, 120));
        assert_eq!(check(Some(&state), 0, 6, 8), Verdict::Duplicate(106, 108));
        assert!(matches!(
            check(Some(&state), 0, 22, 22),
            Verdict::Refuse(AppendError::OutOfOrderSequence {
                expected: 21,
                got: 22
            })
        ));
        assert!(matches!(
            check(Some(&state), -1, 21, 21),
            Verdict::Refuse(AppendError::ProducerFenced { .. })
        ));
        assert!(matches!(
            check(Some(&state), 1, 5, 5),
            Verdict::Refuse(AppendError::OutOfOrderSequence { expected: 0, .. })
        ));
        assert_eq!(
            check(Some(&state), 1, 0, 0),
            Verdict::Append,
            "a new epoch starts at 0"
        );
        let bumped = accepted(Some(state.clone()), 1, batch(0, 0, 200), 9);
        assert_eq!(
            (bumped.epoch, bumped.recent.len(), bumped.last_timestamp),
            (1, 1, 9)
        );
        assert_eq!(decode(&encode(&state)), Some(state));
        assert_eq!(
            decode(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]),
            None,
            "count past the data"
        );
    }

    #[test]
    fn sequences_wrap_after_the_largest() {
        assert_eq!(last_sequence(i32::MAX - 1, 3), 1);
        let state = accepted(None, 0, batch(i32::MAX - 1, i32::MAX, 0), 0);
        assert_eq!(check(Some(&state), 0, 0, 4), Verdict::Append);
    }
}
