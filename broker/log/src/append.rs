//! Appending a group of batches in one write transaction: each batch gets its partition's
//! next offsets, is checked against its idempotent producer's earlier batches and against its
//! dedup key, and raises the time index when it carries a new maximum timestamp. Partition
//! metadata and producer states are written back once, just before the group's one commit.

use heed::{PutFlags, RoTxn, RwTxn};
use weir_core::log_store::{
    Append, AppendError, Appended, PartitionId, RETAINED_TOPIC_BYTES_MAX, StoreError,
};
use weir_kafka::record_batch::BatchHeader;

use crate::lmdb_log::LmdbLog;
use crate::partitions::key_array;
use crate::producers;
use crate::schema::{self, PartitionMeta, log_key};
use crate::txn::classify;

/// What the appends of one group have touched so far, written back once before the commit.
struct Group {
    /// Metadata of the partitions touched.
    touched: Vec<(PartitionId, PartitionMeta)>,
    /// Idempotent producers' states touched (by `producers::key`); `None` for a producer
    /// with no state yet.
    producer_states: Vec<([u8; 12], Option<producers::ProducerState>)>,
    /// The greatest key in the `log` table, for LMDB's append mode.
    last_key: Option<[u8; 12]>,
}

/// The outcome of one of an append's checks: go on with what the check found, or stop with
/// the append's answer (a duplicate's earlier offsets, or a refusal).
enum Check<T> {
    Proceed(T),
    Answered(Result<Appended, AppendError>),
}

impl LmdbLog {
    /// Implements `LogStore::append`: the whole group is one write transaction, so a failure
    /// of any step (`Err`) writes nothing, and the group costs one commit.
    pub(crate) fn append_group(
        &self,
        appends: &mut [Append],
    ) -> Result<Vec<Result<Appended, AppendError>>, StoreError> {
        self.check_usable()?;
        let mut txn = self.write_txn()?;
        self.check_disk_reserve(&txn, appends)?;
        let mut group = Group {
            touched: Vec::new(),
            producer_states: Vec::new(),
            last_key: match self.log.last(&txn).map_err(classify)? {
                Some((key, _)) => Some(key_array(key)?),
                None => None,
            },
        };
        let mut results = Vec::with_capacity(appends.len());
        for append in appends.iter_mut() {
            results.push(self.append_one(&mut txn, &mut group, append)?);
        }
        self.write_back(&mut txn, &group)?;
        self.commit(txn)?;
        Ok(results)
    }

    /// Appends one batch of the group, or answers it without writing: its partition is
    /// unknown, it is a duplicate (by producer sequence or by dedup key), or it is refused.
    fn append_one(
        &self,
        txn: &mut RwTxn,
        group: &mut Group,
        append: &mut Append,
    ) -> Result<Result<Appended, AppendError>, StoreError> {
        // Checked when it was made (`CheckedBatch`), off this transaction's thread.
        let header = *append.batch.header();
        let pid = append.partition;
        let Some(slot) = self.touch(txn, &mut group.touched, pid)? else {
            return Ok(Err(AppendError::UnknownPartition(pid)));
        };
        let log_start_offset = group.touched[slot].1.log_start_offset;
        let states = &mut group.producer_states;
        let sequenced = match self.check_sequence(txn, states, pid, &header, log_start_offset)? {
            Check::Proceed(sequenced) => sequenced,
            Check::Answered(answer) => return Ok(answer),
        };
        let dedup_key = match self.check_dedup(txn, append, pid, log_start_offset)? {
            Check::Proceed(key) => key,
            Check::Answered(answer) => return Ok(answer),
        };
        let meta = &mut group.touched[slot].1;
        let last_key = &mut group.last_key;
        let appended =
            self.write_batch(txn, meta, last_key, append, &header, dedup_key.as_deref())?;
        if let Some((at, last_seq)) = sequenced {
            let state = group.producer_states[at].1.take();
            let batch = producers::RecentBatch {
                first_seq: header.base_sequence,
                last_seq,
                base_offset: appended.base_offset,
                last_offset: appended.last_offset,
            };
            group.producer_states[at].1 = Some(producers::accepted(
                state,
                header.producer_epoch,
                batch,
                header.max_timestamp,
            ));
        }
        Ok(Ok(appended))
    }

    /// The index of `pid`'s metadata in `touched`, loaded on the partition's first append of
    /// the group; `None` if the partition does not exist.
    fn touch(
        &self,
        txn: &RoTxn,
        touched: &mut Vec<(PartitionId, PartitionMeta)>,
        pid: PartitionId,
    ) -> Result<Option<usize>, StoreError> {
        if let Some(slot) = touched.iter().position(|(p, _)| *p == pid) {
            return Ok(Some(slot));
        }
        match self.load_meta(txn, pid)? {
            Some(meta) => {
                touched.push((pid, meta));
                Ok(Some(touched.len() - 1))
            }
            None => Ok(None),
        }
    }

    /// An idempotent producer's batch, checked against its earlier ones: proceeds with the
    /// index of the producer's state in `states` and the batch's last sequence, or answers a
    /// duplicate or a refusal. Batches without a producer id and sequence proceed with `None`.
    fn check_sequence(
        &self,
        txn: &RoTxn,
        states: &mut Vec<([u8; 12], Option<producers::ProducerState>)>,
        pid: PartitionId,
        header: &BatchHeader,
        log_start_offset: i64,
    ) -> Result<Check<Option<(usize, i32)>>, StoreError> {
        if header.producer_id < 0 || header.base_sequence < 0 {
            return Ok(Check::Proceed(None));
        }
        let last_seq = producers::last_sequence(header.base_sequence, header.last_offset_delta);
        let key = producers::key(header.producer_id, pid);
        let at = match states.iter().position(|(k, _)| *k == key) {
            Some(at) => at,
            None => {
                let state = match self.producers.get(txn, &key).map_err(classify)? {
                    Some(value) => Some(producers::decode(value).ok_or_else(|| {
                        StoreError::Corrupt(format!(
                            "unreadable producer state of partition {pid:?}"
                        ))
                    })?),
                    None => None,
                };
                states.push((key, state));
                states.len() - 1
            }
        };
        let state = states[at].1.as_ref();
        Ok(
            match producers::check(state, header.producer_epoch, header.base_sequence, last_seq) {
                producers::Verdict::Append => Check::Proceed(Some((at, last_seq))),
                producers::Verdict::Duplicate(base_offset, last_offset) => {
                    Check::Answered(Ok(Appended {
                        base_offset,
                        last_offset,
                        log_start_offset,
                    }))
                }
                producers::Verdict::Refuse(error) => Check::Answered(Err(error)),
            },
        )
    }

    /// An append that must happen at most once: proceeds with its `dedup` key (`None` without
    /// one), or answers with the offsets it got if it already happened on this partition.
    fn check_dedup(
        &self,
        txn: &RoTxn,
        append: &Append,
        pid: PartitionId,
        log_start_offset: i64,
    ) -> Result<Check<Option<Vec<u8>>>, StoreError> {
        let key = match &append.dedup {
            Some(key) if key.owner.len() > RETAINED_TOPIC_BYTES_MAX => {
                return Ok(Check::Answered(Err(AppendError::DedupKeyTooLong)));
            }
            Some(key) => schema::dedup_key(&key.owner, key.id),
            None => return Ok(Check::Proceed(None)),
        };
        if let Some(done) = self.dedup.get(txn, &key).map_err(classify)? {
            let (partition, base_offset, last_offset) = schema::decode_dedup(done)
                .ok_or_else(|| StoreError::Corrupt("unreadable dedup entry".into()))?;
            if partition == pid {
                return Ok(Check::Answered(Ok(Appended {
                    base_offset,
                    last_offset,
                    log_start_offset,
                })));
            }
        }
        Ok(Check::Proceed(Some(key)))
    }

    /// Writes the batch at its partition's next offset, with its dedup key if it has one and
    /// a time-index entry if it raises the partition's maximum timestamp, and advances `meta`.
    fn write_batch(
        &self,
        txn: &mut RwTxn,
        meta: &mut PartitionMeta,
        last_key: &mut Option<[u8; 12]>,
        append: &mut Append,
        header: &BatchHeader,
        dedup_key: Option<&[u8]>,
    ) -> Result<Appended, StoreError> {
        let pid = append.partition;
        let base = meta.next_offset;
        append.batch.set_base_offset(base);
        let key = log_key(pid, base);
        // LMDB's append mode fills pages completely, but only works past the last key.
        let flags = if last_key.is_none_or(|last| key > last) {
            PutFlags::APPEND
        } else {
            PutFlags::empty()
        };
        self.log
            .put_with_flags(txn, flags, &key, &append.batch)
            .map_err(classify)?;
        *last_key = Some(last_key.map_or(key, |last| last.max(key)));
        let appended = Appended {
            base_offset: base,
            last_offset: base + i64::from(header.last_offset_delta),
            log_start_offset: meta.log_start_offset,
        };
        debug_assert!(appended.last_offset >= base, "offsets strictly increase");
        if let Some(key) = dedup_key {
            let value = schema::encode_dedup(pid, appended.base_offset, appended.last_offset);
            self.dedup.put(txn, key, &value).map_err(classify)?;
        }
        meta.next_offset = appended.last_offset + 1;
        meta.size_bytes += append.batch.len() as u64;
        if header.max_timestamp > meta.max_timestamp {
            meta.max_timestamp = header.max_timestamp;
            self.time_index
                .put(
                    txn,
                    &schema::time_key(pid, header.max_timestamp),
                    &base.to_be_bytes(),
                )
                .map_err(classify)?;
        }
        Ok(appended)
    }

    /// Writes the group's partition metadata and producer states back, once each.
    fn write_back(&self, txn: &mut RwTxn, group: &Group) -> Result<(), StoreError> {
        for (pid, meta) in &group.touched {
            self.put_meta(txn, *pid, meta)?;
        }
        for (key, state) in &group.producer_states {
            if let Some(state) = state {
                self.producers
                    .put(txn, key, &producers::encode(state))
                    .map_err(classify)?;
            }
        }
        Ok(())
    }
}
