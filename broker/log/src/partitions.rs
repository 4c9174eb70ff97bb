//! Reading a partition: its batches from an offset, its state, the offset of a timestamp;
//! and the lookups every other module shares: a partition's metadata, its first and last
//! stored batch, and the decoding of stored keys and values.

use std::ops::Bound;

use heed::{RoTxn, RwTxn};
use weir_core::log_store::{PartitionId, PartitionState, ReadSummary, StoreError};
use weir_kafka::record_batch::BatchHeader;

use crate::lmdb_log::LmdbLog;
use crate::schema::{self, PartitionMeta, i64_of, log_key};
use crate::txn::classify;

impl LmdbLog {
    /// Implements `LogStore::read`.
    pub(crate) fn read_batches(
        &self,
        partition: PartitionId,
        offset: i64,
        max_bytes: usize,
        visit: &mut dyn FnMut(&[u8]),
    ) -> Result<ReadSummary, StoreError> {
        let txn = self.read_txn()?;
        let meta = self
            .load_meta(&txn, partition)?
            .ok_or(StoreError::UnknownPartition(partition))?;
        let state = state_of(&meta);
        if offset < meta.log_start_offset || offset > meta.next_offset {
            return Err(StoreError::OffsetOutOfRange {
                offset,
                log_start_offset: meta.log_start_offset,
                high_watermark: meta.next_offset,
            });
        }
        let mut summary = ReadSummary {
            state,
            ..ReadSummary::default()
        };
        if offset == meta.next_offset {
            return Ok(summary);
        }
        // The batch holding `offset` is the last one starting at or before it.
        let start = match self
            .log
            .get_lower_than_or_equal_to(&txn, &log_key(partition, offset))
            .map_err(classify)?
        {
            Some((key, _)) if belongs(key, partition) => key_array(key)?,
            _ => log_key(partition, offset),
        };
        let end = log_key(partition, i64::MAX);
        let range = inclusive(&start, &end);
        for item in self.log.range(&txn, &range).map_err(classify)? {
            let (key, value) = item.map_err(classify)?;
            if summary.batches > 0 && summary.bytes + value.len() > max_bytes {
                break;
            }
            let header = stored_header(key, value)?;
            if header.next_offset() <= offset {
                continue;
            }
            visit(value);
            summary.batches += 1;
            summary.bytes += value.len();
        }
        Ok(summary)
    }

    /// Implements `LogStore::partition`.
    pub(crate) fn partition_state(
        &self,
        partition: PartitionId,
    ) -> Result<PartitionState, StoreError> {
        let txn = self.read_txn()?;
        self.load_meta(&txn, partition)?
            .map(|meta| state_of(&meta))
            .ok_or(StoreError::UnknownPartition(partition))
    }

    /// Implements `LogStore::offset_for_timestamp` with the time index, which maps each
    /// partition's running maximum timestamp to the batch that raised it.
    pub(crate) fn offset_at_time(
        &self,
        partition: PartitionId,
        timestamp_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let txn = self.read_txn()?;
        let meta = self
            .load_meta(&txn, partition)?
            .ok_or(StoreError::UnknownPartition(partition))?;
        let found = self
            .time_index
            .get_greater_than_or_equal_to(&txn, &schema::time_key(partition, timestamp_ms))
            .map_err(classify)?;
        Ok(match found {
            Some((key, value)) if belongs(key, partition) => {
                Some(i64_of(value).max(meta.log_start_offset))
            }
            _ => None,
        })
    }

    pub(crate) fn load_meta(
        &self,
        txn: &RoTxn,
        pid: PartitionId,
    ) -> Result<Option<PartitionMeta>, StoreError> {
        match self
            .partitions
            .get(txn, &schema::partition_key(pid))
            .map_err(classify)?
        {
            None => Ok(None),
            Some(bytes) => decode_meta(pid, bytes).map(Some),
        }
    }

    pub(crate) fn put_meta(
        &self,
        txn: &mut RwTxn,
        pid: PartitionId,
        meta: &PartitionMeta,
    ) -> Result<(), StoreError> {
        self.partitions
            .put(txn, &schema::partition_key(pid), &meta.encode())
            .map_err(classify)
    }

    pub(crate) fn first_batch(
        &self,
        txn: &RoTxn,
        pid: PartitionId,
    ) -> Result<Option<BatchHeader>, StoreError> {
        let found = self
            .log
            .get_greater_than_or_equal_to(txn, &log_key(pid, 0))
            .map_err(classify)?;
        self.header_in(pid, found)
    }

    pub(crate) fn last_batch(
        &self,
        txn: &RoTxn,
        pid: PartitionId,
    ) -> Result<Option<BatchHeader>, StoreError> {
        let found = self
            .log
            .get_lower_than_or_equal_to(txn, &log_key(pid, i64::MAX))
            .map_err(classify)?;
        self.header_in(pid, found)
    }

    /// The header of a found log entry if it belongs to `pid`.
    fn header_in(
        &self,
        pid: PartitionId,
        found: Option<(&[u8], &[u8])>,
    ) -> Result<Option<BatchHeader>, StoreError> {
        match found {
            Some((key, value)) if belongs(key, pid) => stored_header(key, value).map(Some),
            _ => Ok(None),
        }
    }
}

/// The header of the stored batch under `key`; a batch without one is corruption.
pub(crate) fn stored_header(key: &[u8], value: &[u8]) -> Result<BatchHeader, StoreError> {
    BatchHeader::parse(value).map_err(|e| {
        StoreError::Corrupt(format!(
            "stored batch at {:?} has no valid header: {e}",
            schema::parse_log_key(key)
        ))
    })
}

/// A partition's stored metadata; unreadable metadata is corruption.
pub(crate) fn decode_meta(pid: PartitionId, bytes: &[u8]) -> Result<PartitionMeta, StoreError> {
    PartitionMeta::decode(bytes)
        .ok_or_else(|| StoreError::Corrupt(format!("metadata of partition {pid:?}")))
}

fn state_of(meta: &PartitionMeta) -> PartitionState {
    PartitionState {
        log_start_offset: meta.log_start_offset,
        high_watermark: meta.next_offset,
        size_bytes: meta.size_bytes,
    }
}

/// A key range for heed (std's `RangeInclusive<&[u8]>` is not a `RangeBounds<[u8]>`).
pub(crate) fn inclusive<'k>(start: &'k [u8], end: &'k [u8]) -> (Bound<&'k [u8]>, Bound<&'k [u8]>) {
    (Bound::Included(start), Bound::Included(end))
}

/// True if a `log` or `time_index` key belongs to `pid`.
fn belongs(key: &[u8], pid: PartitionId) -> bool {
    key.get(..4) == Some(&pid.0.to_be_bytes()[..])
}

/// A `log` or `time_index` key as the fixed-size array both are.
pub(crate) fn key_array(key: &[u8]) -> Result<[u8; 12], StoreError> {
    key.try_into()
        .map_err(|_| StoreError::Corrupt(format!("a key of {} bytes where 12 belong", key.len())))
}
