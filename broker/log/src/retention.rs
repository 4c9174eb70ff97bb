//! Deleting from the start of partitions: retention by time and size, Kafka's
//! DeleteRecords, and the prefix deletion both use (which also trims the time index), done a
//! bounded chunk of batches per transaction; and the expiry of idle idempotent producers,
//! which runs with every retention pass.

use std::ops::Bound;

use heed::RwTxn;
use weir_core::log_store::{PartitionId, RetentionReport, StoreError};
use weir_kafka::record_batch::BatchHeader;

use crate::lmdb_log::LmdbLog;
use crate::partitions::{inclusive, key_array, stored_header};
use crate::producers;
use crate::schema::i64_of;
use crate::schema::{self, log_key};
use crate::txn::classify;

/// Batches deleted per write transaction when deleting a topic or applying retention, so a
/// large deletion never builds one huge transaction.
pub(crate) const DELETE_CHUNK: usize = 4_096;

impl LmdbLog {
    /// Implements `LogStore::enforce_retention`.
    pub(crate) fn apply_retention(&self, now_ms: i64) -> Result<RetentionReport, StoreError> {
        self.check_usable()?;
        let partitions = {
            let txn = self.read_txn()?;
            self.partition_ids(&txn)?
        };
        let mut report = RetentionReport::default();
        for (pid, config) in partitions {
            if config.retention_ms < 0 && config.retention_bytes < 0 {
                continue;
            }
            let expired_before = now_ms.saturating_sub(config.retention_ms);
            loop {
                let mut txn = self.write_txn()?;
                let Some(mut meta) = self.load_meta(&txn, pid)? else {
                    break;
                };
                let size = meta.size_bytes;
                let (batches, bytes) =
                    self.delete_prefix_while(&mut txn, pid, DELETE_CHUNK, |header, freed| {
                        let too_old =
                            config.retention_ms >= 0 && header.max_timestamp < expired_before;
                        let too_big = config.retention_bytes >= 0
                            && size.saturating_sub(freed) > config.retention_bytes as u64;
                        too_old || too_big
                    })?;
                if batches == 0 {
                    break;
                }
                meta.size_bytes = meta.size_bytes.saturating_sub(bytes);
                let first_left = self
                    .first_batch(&txn, pid)?
                    .map_or(meta.next_offset, |h| h.base_offset);
                meta.log_start_offset = meta.log_start_offset.max(first_left);
                self.put_meta(&mut txn, pid, &meta)?;
                self.commit(txn)?;
                report.batches += batches;
                report.bytes += bytes;
                if batches < DELETE_CHUNK as u64 {
                    break;
                }
            }
        }
        if report.batches > 0 {
            self.release_freed_pages()?;
        }
        for (_, batches) in self.delete_orphans()? {
            report.batches += batches;
        }
        self.expire_producers(now_ms)?;
        Ok(report)
    }

    /// Implements `LogStore::delete_records`.
    pub(crate) fn delete_records_before(
        &self,
        partition: PartitionId,
        offset: i64,
    ) -> Result<i64, StoreError> {
        self.check_usable()?;
        let meta = {
            let txn = self.read_txn()?;
            self.load_meta(&txn, partition)?
                .ok_or(StoreError::UnknownPartition(partition))?
        };
        let target = if offset == -1 {
            meta.next_offset
        } else {
            offset
        };
        if target < 0 || target > meta.next_offset {
            return Err(StoreError::OffsetOutOfRange {
                offset,
                log_start_offset: meta.log_start_offset,
                high_watermark: meta.next_offset,
            });
        }
        if target <= meta.log_start_offset {
            return Ok(meta.log_start_offset);
        }
        // The first transaction moves the log start (readers see the new start at once);
        // whole batches before it are deleted a bounded chunk per transaction.
        loop {
            let mut txn = self.write_txn()?;
            let mut meta = self
                .load_meta(&txn, partition)?
                .ok_or(StoreError::UnknownPartition(partition))?;
            let (batches, bytes) = self.delete_prefix(&mut txn, partition, target, DELETE_CHUNK)?;
            meta.log_start_offset = meta.log_start_offset.max(target);
            meta.size_bytes = meta.size_bytes.saturating_sub(bytes);
            self.put_meta(&mut txn, partition, &meta)?;
            self.commit(txn)?;
            if batches < DELETE_CHUNK as u64 {
                break;
            }
        }
        self.make_durable()?;
        self.release_freed_pages()?;
        Ok(target)
    }

    /// Deletes up to `limit` whole batches of `pid` from its start whose next offset is at or
    /// before `before`. Returns (batches, bytes) deleted.
    pub(crate) fn delete_prefix(
        &self,
        txn: &mut RwTxn,
        pid: PartitionId,
        before: i64,
        limit: usize,
    ) -> Result<(u64, u64), StoreError> {
        self.delete_prefix_while(txn, pid, limit, |header, _| header.next_offset() <= before)
    }

    /// Deletes batches of `pid` from its start while `keep_going(header, bytes deleted so
    /// far)` holds, at most `limit` of them. Returns (batches, bytes). Also trims the time
    /// index to the batches that remain.
    fn delete_prefix_while(
        &self,
        txn: &mut RwTxn,
        pid: PartitionId,
        limit: usize,
        mut keep_going: impl FnMut(&BatchHeader, u64) -> bool,
    ) -> Result<(u64, u64), StoreError> {
        let start = log_key(pid, 0);
        let end = log_key(pid, i64::MAX);
        let range = inclusive(&start, &end);
        let mut deleted = (0u64, 0u64);
        {
            let mut iter = self.log.range_mut(txn, &range).map_err(classify)?;
            while deleted.0 < limit as u64 {
                let Some(item) = iter.next() else { break };
                let (key, value) = item.map_err(classify)?;
                let header = stored_header(key, value)?;
                if !keep_going(&header, deleted.1) {
                    break;
                }
                let len = value.len() as u64;
                // SAFETY: neither key nor value is used after the deletion.
                unsafe { iter.del_current() }.map_err(classify)?;
                deleted.0 += 1;
                deleted.1 += len;
            }
        }
        if deleted.0 > 0 {
            let first_left = self
                .first_batch(txn, pid)?
                .map(|h| h.base_offset)
                .unwrap_or(i64::MAX);
            self.trim_time_index(txn, pid, first_left)?;
        }
        Ok(deleted)
    }

    /// Drops time-index entries pointing before `first_left`, the base offset of the first
    /// batch left. The newest dropped entry is re-pointed at `first_left`: that batch is then
    /// the earliest that may hold such timestamps.
    fn trim_time_index(
        &self,
        txn: &mut RwTxn,
        pid: PartitionId,
        first_left: i64,
    ) -> Result<(), StoreError> {
        let start = schema::time_key(pid, i64::MIN);
        let end = schema::time_key(pid, i64::MAX);
        let range = inclusive(&start, &end);
        let mut newest_dropped = None;
        {
            let mut iter = self.time_index.range_mut(txn, &range).map_err(classify)?;
            while let Some(item) = iter.next() {
                let (key, value) = item.map_err(classify)?;
                if i64_of(value) >= first_left {
                    break;
                }
                newest_dropped = Some(key_array(key)?);
                // SAFETY: key and value are not used after the deletion.
                unsafe { iter.del_current() }.map_err(classify)?;
            }
        }
        if let Some(key) = newest_dropped
            && first_left != i64::MAX
        {
            self.time_index
                .put(txn, &key, &first_left.to_be_bytes())
                .map_err(classify)?;
        }
        Ok(())
    }

    /// Drops idempotent-producer states idle for [`producers::PRODUCER_EXPIRY_MS`] (by their
    /// batches' timestamps) or whose partition is gone, in bounded chunks.
    fn expire_producers(&self, now_ms: i64) -> Result<(), StoreError> {
        let expired_before = now_ms.saturating_sub(producers::PRODUCER_EXPIRY_MS);
        let mut after: Option<Vec<u8>> = None;
        loop {
            let mut txn = self.write_txn()?;
            let mut doomed = Vec::new();
            let mut scanned = 0;
            let mut last = None;
            {
                let start = match &after {
                    Some(key) => Bound::Excluded(key.as_slice()),
                    None => Bound::Unbounded,
                };
                let range = (start, Bound::Unbounded);
                for item in self.producers.range(&txn, &range).map_err(classify)? {
                    let (key, value) = item.map_err(classify)?;
                    let gone = match producers::partition_of(key) {
                        Some(pid) => self.load_meta(&txn, pid)?.is_none(),
                        None => true,
                    };
                    let idle = producers::decode(value)
                        .is_none_or(|state| state.last_timestamp < expired_before);
                    if gone || idle {
                        doomed.push(key.to_vec());
                    }
                    last = Some(key.to_vec());
                    scanned += 1;
                    if scanned == DELETE_CHUNK {
                        break;
                    }
                }
            }
            for key in &doomed {
                self.producers.delete(&mut txn, key).map_err(classify)?;
            }
            if doomed.is_empty() {
                txn.abort();
            } else {
                self.commit(txn)?;
            }
            if scanned < DELETE_CHUNK {
                return Ok(());
            }
            after = last;
        }
    }
}
