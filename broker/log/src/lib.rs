//! Weir's partitioned log on LMDB, through heed.
//!
//! [`LmdbLog`] implements [`weir_core::log_store::LogStore`]: one LMDB environment whose tables
//! are described in [`schema`]; batches are Kafka RecordBatch v2, checked before they reach
//! it (`CheckedBatch`), and stored byte for byte with the assigned base offset written in;
//! reads hand out the stored bytes. A call to `append` is one write transaction, so whoever groups appends (the server's
//! group-commit writer) pays one commit and one sync per group.
//!
//! Durability: in [`Durability::Fsync`] (the default) every commit syncs its data pages
//! (`fdatasync`) before it writes the meta page that makes it visible, and the meta page is
//! written without a sync of its own (`MDB_NOMETASYNC`): the next commit's data sync, or
//! [`LogStore::sync`], carries it to disk. So a group is durable once a later append or a
//! sync returned: one sync per commit under load instead of LMDB's default two, and the
//! server's writer calls `sync` whenever it has nothing more to commit, so a lone append
//! costs two syncs as before. [`Durability::Relaxed`] opens the environment with
//! `MDB_NOSYNC`; commits reach the page cache only and `sync` (called by the server every
//! `storage.relaxed_sync_interval_ms`) makes them durable. A process crash loses nothing in
//! either mode; a power loss or kernel crash in relaxed mode loses what was committed since
//! the last sync and, as LMDB documents for `MDB_NOSYNC`, may leave the last transactions
//! inconsistent.
//!
//! Errors: a full map (`MDB_MAP_FULL`) aborts the transaction and returns
//! [`StoreError::Full`]: nothing was written, and appends work again once space is freed. A
//! full disk is caught before the commit: appends are refused as `Full` while the file
//! system's free space, less what the group would grow the file by, is under
//! [`LogOptions::disk_reserve_bytes`]. Any failure of a commit or a sync, a full disk met
//! during a commit included, is [`StoreError::Fatal`] and poisons the log (every later write
//! and sync fails). `MDB_WRITEMAP` is never used: with it, a full disk is a SIGBUS.
//!
//! [`faulty::FailAfter`] wraps any store and fails after N operations, for tests.

pub mod faulty;
pub mod producers;
pub mod schema;

use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use heed::types::Bytes;
use heed::{Database, Env, EnvFlags, EnvOpenOptions, PutFlags, RoTxn, RwTxn, WithoutTls};
use weir_core::log_store::{
    Append, AppendError, Appended, CommittedOffset, GROUP_ID_BYTES_MAX, LogStore,
    OFFSET_METADATA_BYTES_MAX, PartitionId, PartitionState, RETAINED_TOPIC_BYTES_MAX, ReadSummary,
    RetentionReport, StoreError, TopicConfig, TopicInfo,
};
use weir_kafka::record_batch::BatchHeader;

use crate::schema::{PartitionMeta, TopicMeta, log_key, meta_key, table};

pub use weir_core::log_store::TOPIC_PARTITIONS_MAX;

/// Batches deleted per write transaction when deleting a topic or applying retention, so a
/// large deletion never builds one huge transaction.
const DELETE_CHUNK: usize = 4_096;

/// Free pages inside the LMDB file that the reserve check does not count on: every commit
/// frees the old copies of the pages it changed, and LMDB reuses them only two commits later,
/// so a few dozen pages always look free without being usable yet.
const PENDING_FREE_SLACK_BYTES: u64 = 256 << 10;

/// When appends are durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Sync every commit's data; its meta page is durable after the next commit or a sync.
    Fsync,
    /// No sync on commit; only [`LogStore::sync`] makes committed data durable.
    Relaxed,
}

/// How to open the log.
#[derive(Debug, Clone, Copy)]
pub struct LogOptions {
    /// LMDB map size: the most the environment may hold, in bytes.
    pub map_size_bytes: usize,
    /// Sync policy.
    pub durability: Durability,
    /// Concurrent read transactions allowed.
    pub readers_max: u32,
    /// Appends are refused as `Full` while the file system has less free space than this, so
    /// deletions (which also need a few pages) can still run on a nearly full disk.
    pub disk_reserve_bytes: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            map_size_bytes: 1 << 30,
            durability: Durability::Fsync,
            readers_max: 512,
            disk_reserve_bytes: 64 << 20,
        }
    }
}

/// A mismatch found at open and what was done about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repair {
    /// The partition's next offset disagreed with its last stored batch; the log won.
    NextOffset {
        /// The partition.
        partition: PartitionId,
        /// What the metadata said.
        recorded: i64,
        /// What the log says.
        actual: i64,
    },
    /// The partition's log start was before its first stored batch; moved to that batch.
    LogStart {
        /// The partition.
        partition: PartitionId,
        /// What the metadata said.
        recorded: i64,
        /// The first stored batch's base offset.
        actual: i64,
    },
    /// Batches of a partition that no topic owns (a topic deletion cut short) were deleted.
    OrphanBatches {
        /// The partition.
        partition: PartitionId,
        /// Batches deleted.
        batches: u64,
    },
}

/// Why the log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// LMDB or the file system refused.
    #[error("cannot open the log at {path}: {source}")]
    Env {
        /// The directory.
        path: String,
        /// The cause.
        #[source]
        source: heed::Error,
    },
    /// The data was written by a newer Weir.
    #[error(
        "the log at {path} has schema version {found}; this weir understands up to {known}: \
         run a newer weir"
    )]
    NewerSchema {
        /// The directory.
        path: String,
        /// Version on disk.
        found: u32,
        /// Version this build writes.
        known: u32,
    },
    /// The store failed while checking or repairing.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The log on LMDB. Cheap to share behind an `Arc`; every method takes `&self`.
#[derive(Debug)]
pub struct LmdbLog {
    env: Env<WithoutTls>,
    meta: Database<Bytes, Bytes>,
    log: Database<Bytes, Bytes>,
    partitions: Database<Bytes, Bytes>,
    time_index: Database<Bytes, Bytes>,
    topics: Database<Bytes, Bytes>,
    group_offsets: Database<Bytes, Bytes>,
    producers: Database<Bytes, Bytes>,
    mqtt_sessions: Database<Bytes, Bytes>,
    mqtt_retained: Database<Bytes, Bytes>,
    dedup: Database<Bytes, Bytes>,
    /// Every table, for the free-space estimate.
    tables: Vec<Database<Bytes, Bytes>>,
    disk_reserve_bytes: u64,
    durability: Durability,
    /// Set by a failed commit or sync; from then on every write and sync fails.
    poisoned: AtomicBool,
}

impl LmdbLog {
    /// Opens (creating if needed) the log in directory `path`, checks the schema version and
    /// that partition metadata agrees with the stored batches, and repairs what it can.
    pub fn open(path: &Path, options: LogOptions) -> Result<(LmdbLog, Vec<Repair>), OpenError> {
        let shown = path.display().to_string();
        let env_err = |source: heed::Error| OpenError::Env {
            path: shown.clone(),
            source,
        };
        std::fs::create_dir_all(path).map_err(|e| env_err(e.into()))?;
        let mut open = EnvOpenOptions::new().read_txn_without_tls();
        open.map_size(options.map_size_bytes)
            .max_dbs(table::ALL.len() as u32)
            .max_readers(options.readers_max);
        let flags = match options.durability {
            // The next commit's data sync (or `sync`) carries the meta page to disk; callers
            // acknowledge only after one of them (see the module docs).
            Durability::Fsync => EnvFlags::NO_META_SYNC,
            // Nothing is synced on commit; the loss window is the meaning of relaxed mode.
            Durability::Relaxed => EnvFlags::NO_SYNC,
        };
        // SAFETY: these flags only change when data reaches the disk, as documented above;
        // WRITE_MAP is never set.
        unsafe {
            open.flags(flags);
        }
        // SAFETY: the data directory is locked by the server (one process per environment),
        // and this process opens each environment once.
        let env = unsafe { open.open(path) }.map_err(env_err)?;

        let mut txn = env.write_txn().map_err(env_err)?;
        let mut dbs = Vec::with_capacity(table::ALL.len());
        for name in table::ALL {
            dbs.push(
                env.create_database::<Bytes, Bytes>(&mut txn, Some(name))
                    .map_err(env_err)?,
            );
        }
        let [
            meta,
            log,
            partitions,
            time_index,
            topics,
            group_offsets,
            producers,
            mqtt_sessions,
            mqtt_retained,
            dedup,
        ] = dbs[..]
        else {
            unreachable!("table::ALL has ten tables");
        };
        let version = meta
            .get(&txn, meta_key::SCHEMA_VERSION)
            .map_err(env_err)?
            .map(u32_of);
        match version {
            None => {
                meta.put(&mut txn, meta_key::SCHEMA_VERSION, &SCHEMA_BYTES)
                    .map_err(env_err)?;
            }
            Some(found) if found > schema::SCHEMA_VERSION => {
                return Err(OpenError::NewerSchema {
                    path: shown,
                    found,
                    known: schema::SCHEMA_VERSION,
                });
            }
            Some(_) => {}
        }
        txn.commit().map_err(env_err)?;

        let store = LmdbLog {
            env,
            meta,
            log,
            partitions,
            time_index,
            topics,
            group_offsets,
            producers,
            mqtt_sessions,
            mqtt_retained,
            dedup,
            tables: dbs,
            disk_reserve_bytes: options.disk_reserve_bytes,
            durability: options.durability,
            poisoned: AtomicBool::new(false),
        };
        let repairs = store.check_and_repair()?;
        Ok((store, repairs))
    }

    /// Bytes the environment's file occupies on disk.
    pub fn disk_size_bytes(&self) -> u64 {
        self.env.real_disk_size().unwrap_or(0)
    }

    /// Verifies every partition's metadata against its first and last stored batch and
    /// deletes batches no partition owns. The log is the truth: metadata is repaired from it.
    fn check_and_repair(&self) -> Result<Vec<Repair>, StoreError> {
        let mut repairs = Vec::new();
        let mut txn = self.write_txn()?;
        let mut fixes = Vec::new();
        for item in self.partitions.iter(&txn).map_err(classify)? {
            let (key, value) = item.map_err(classify)?;
            let pid = PartitionId(u32_of(key));
            let mut meta = decode_meta(pid, value)?;
            let before = meta;
            let first = self.first_batch(&txn, pid)?;
            let last = self.last_batch(&txn, pid)?;
            if let Some(last) = last
                && last.next_offset() != meta.next_offset
            {
                repairs.push(Repair::NextOffset {
                    partition: pid,
                    recorded: meta.next_offset,
                    actual: last.next_offset(),
                });
                meta.next_offset = last.next_offset();
            }
            if let Some(first) = first
                && meta.log_start_offset < first.base_offset
            {
                repairs.push(Repair::LogStart {
                    partition: pid,
                    recorded: meta.log_start_offset,
                    actual: first.base_offset,
                });
                meta.log_start_offset = first.base_offset;
            }
            if meta != before {
                fixes.push((pid, meta));
            }
        }
        for (pid, meta) in fixes {
            self.put_meta(&mut txn, pid, &meta)?;
        }
        self.commit(txn)?;
        for (partition, batches) in self.delete_orphans()? {
            repairs.push(Repair::OrphanBatches { partition, batches });
        }
        Ok(repairs)
    }

    /// Deletes, in bounded transactions, the batches of partitions no topic owns (left by a
    /// topic deletion cut short). Returns the partitions and batch counts deleted.
    fn delete_orphans(&self) -> Result<Vec<(PartitionId, u64)>, StoreError> {
        let mut deleted = Vec::new();
        let mut next = 0u32;
        loop {
            let orphan = {
                let txn = self.read_txn()?;
                let found = self
                    .log
                    .get_greater_than_or_equal_to(&txn, &log_key(PartitionId(next), 0))
                    .map_err(classify)?
                    .and_then(|(key, _)| schema::parse_log_key(key));
                let Some((pid, _)) = found else { break };
                let owned = self.load_meta(&txn, pid)?.is_some();
                (pid, owned)
            };
            let (pid, owned) = orphan;
            if !owned {
                let mut batches = 0u64;
                loop {
                    let mut txn = self.write_txn()?;
                    let (n, _) = self.delete_prefix(&mut txn, pid, i64::MAX, DELETE_CHUNK)?;
                    self.commit(txn)?;
                    batches += n;
                    if n < DELETE_CHUNK as u64 {
                        break;
                    }
                }
                deleted.push((pid, batches));
            }
            match pid.0.checked_add(1) {
                Some(n) => next = n,
                None => break,
            }
        }
        if !deleted.is_empty() {
            self.release_freed_pages()?;
        }
        Ok(deleted)
    }

    /// Commits `txn`. A full map is `Full` (LMDB runs out of pages before it writes
    /// anything); any other failure is fatal and poisons the log: the failed step may have
    /// been the data sync that was to carry an earlier commit's meta page to disk, and a
    /// second sync would not report the same error again.
    fn commit(&self, txn: RwTxn) -> Result<(), StoreError> {
        match txn.commit() {
            Ok(()) => Ok(()),
            Err(error @ heed::Error::Mdb(heed::MdbError::MapFull | heed::MdbError::TxnFull)) => {
                Err(classify(error))
            }
            Err(error) => Err(self.poison(format!("commit failed: {error}"))),
        }
    }

    fn poison(&self, why: String) -> StoreError {
        self.poisoned.store(true, Ordering::SeqCst);
        StoreError::Fatal(why)
    }

    /// Refuses every write once a commit or sync has failed.
    fn check_usable(&self) -> Result<(), StoreError> {
        if self.poisoned.load(Ordering::SeqCst) {
            return Err(StoreError::Fatal(
                "an earlier commit or sync of the log failed; restart weir".into(),
            ));
        }
        Ok(())
    }

    /// Puts (or with `None` deletes) `value` under the UTF-8 `key` (what it is: `what`) in
    /// `table`, durably; a new key is refused once `keys_max` are stored (`limit` says which).
    fn put_keyed(
        &self,
        table: Database<Bytes, Bytes>,
        what: &str,
        key: &str,
        value: Option<&[u8]>,
        keys_max: u64,
        limit: &str,
    ) -> Result<(), StoreError> {
        if key.is_empty() || key.len() > RETAINED_TOPIC_BYTES_MAX {
            return Err(StoreError::InvalidArgument(format!(
                "{what} is 1 to {RETAINED_TOPIC_BYTES_MAX} bytes, not {}",
                key.len()
            )));
        }
        self.check_usable()?;
        let mut txn = self.write_txn()?;
        let key = key.as_bytes();
        match value {
            Some(value) => {
                let exists = table.get(&txn, key).map_err(classify)?.is_some();
                if !exists && table.len(&txn).map_err(classify)? >= keys_max {
                    return Err(StoreError::Full(format!("{keys_max} {limit}")));
                }
                self.check_disk_reserve_bytes(&txn, value.len() as u64)?;
                table.put(&mut txn, key, value).map_err(classify)?;
                self.commit(txn)?;
            }
            None => {
                if !table.delete(&mut txn, key).map_err(classify)? {
                    return Ok(());
                }
                self.commit(txn)?;
                self.release_freed_pages()?;
            }
        }
        self.make_durable()
    }

    /// Hands `visit` every entry of `table` whose key is UTF-8, in key order.
    fn visit_keyed(
        &self,
        table: Database<Bytes, Bytes>,
        visit: &mut dyn FnMut(&str, &[u8]),
    ) -> Result<(), StoreError> {
        let txn = self.read_txn()?;
        for item in table.iter(&txn).map_err(classify)? {
            let (key, value) = item.map_err(classify)?;
            if let Ok(key) = std::str::from_utf8(key) {
                visit(key, value);
            }
        }
        Ok(())
    }

    /// After an administrative change: in fsync durability, make it durable before the
    /// caller is told it happened.
    fn make_durable(&self) -> Result<(), StoreError> {
        match self.durability {
            Durability::Fsync => self.sync(),
            Durability::Relaxed => Ok(()),
        }
    }

    fn write_txn(&self) -> Result<RwTxn<'_>, StoreError> {
        self.env.write_txn().map_err(classify)
    }

    fn read_txn(&self) -> Result<RoTxn<'_, WithoutTls>, StoreError> {
        self.env.read_txn().map_err(classify)
    }

    fn load_meta(
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

    fn put_meta(
        &self,
        txn: &mut RwTxn,
        pid: PartitionId,
        meta: &PartitionMeta,
    ) -> Result<(), StoreError> {
        self.partitions
            .put(txn, &schema::partition_key(pid), &meta.encode())
            .map_err(classify)
    }

    fn load_topic(&self, txn: &RoTxn, name: &str) -> Result<Option<TopicMeta>, StoreError> {
        match self.topics.get(txn, name.as_bytes()).map_err(classify)? {
            None => Ok(None),
            Some(bytes) => TopicMeta::decode(bytes)
                .map(Some)
                .ok_or_else(|| StoreError::Corrupt(format!("topic `{name}` metadata"))),
        }
    }

    fn first_batch(
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

    fn last_batch(&self, txn: &RoTxn, pid: PartitionId) -> Result<Option<BatchHeader>, StoreError> {
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

    /// Deletes up to `limit` whole batches of `pid` from its start whose next offset is at or
    /// before `before`. Returns (batches, bytes) deleted.
    fn delete_prefix(
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

    fn partition_ids(&self, txn: &RoTxn) -> Result<Vec<(PartitionId, TopicConfig)>, StoreError> {
        let mut out = Vec::new();
        for item in self.topics.iter(txn).map_err(classify)? {
            let (name, value) = item.map_err(classify)?;
            let topic = TopicMeta::decode(value).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "topic `{}` metadata",
                    String::from_utf8_lossy(name)
                ))
            })?;
            out.extend(topic.partitions.iter().map(|&pid| (pid, topic.config)));
        }
        Ok(out)
    }

    /// Refuses an append group that would eat into the disk reserve. Space LMDB already holds
    /// in its file (pages freed by deletions) needs no new disk, so only the part of the group
    /// that must grow the file counts against the reserve.
    fn check_disk_reserve(&self, txn: &RoTxn, appends: &[Append]) -> Result<(), StoreError> {
        let wanted: u64 = appends.iter().map(|a| a.batch.len() as u64).sum();
        self.check_disk_reserve_bytes(txn, wanted)
    }

    /// [`LmdbLog::check_disk_reserve`] for a write of `wanted` bytes.
    fn check_disk_reserve_bytes(&self, txn: &RoTxn, wanted: u64) -> Result<(), StoreError> {
        if self.disk_reserve_bytes == 0 {
            return Ok(());
        }
        let Some(free) = free_disk_bytes(self.env.path()) else {
            return Ok(());
        };
        if free >= self.disk_reserve_bytes.saturating_add(wanted) {
            return Ok(());
        }
        let reusable = self
            .free_bytes_in_file(txn)?
            .saturating_sub(PENDING_FREE_SLACK_BYTES);
        let growth = wanted.saturating_sub(reusable);
        if growth > 0 && free < self.disk_reserve_bytes.saturating_add(growth) {
            return Err(StoreError::Full(format!(
                "the disk is nearly full: {free} bytes free, {} reserved \
                 (storage.disk_reserve_bytes)",
                self.disk_reserve_bytes
            )));
        }
        Ok(())
    }

    /// Bytes of pages inside the LMDB file that no table uses (freed, to be reused). An upper
    /// bound: pages freed by the latest commits are not reusable yet.
    fn free_bytes_in_file(&self, txn: &RoTxn) -> Result<u64, StoreError> {
        let main = self.env.stat();
        let mut used = 2 + main.branch_pages + main.leaf_pages + main.overflow_pages;
        for db in &self.tables {
            let stat = db.stat(txn).map_err(classify)?;
            used += stat.branch_pages + stat.leaf_pages + stat.overflow_pages;
        }
        let pages = self.env.info().last_page_number + 1;
        Ok((pages.saturating_sub(used) as u64).saturating_mul(u64::from(main.page_size)))
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

    /// Commits a tiny transaction so that pages freed by the previous commit can be reused.
    ///
    /// LMDB reuses a page freed by transaction N only from transaction N + 2 on (the previous
    /// snapshot may still be read). When a deletion frees space in a full map, the next append
    /// is transaction N + 1 and, if it fails, commits nothing, so without this step a full map
    /// would stay full after space was freed.
    fn release_freed_pages(&self) -> Result<(), StoreError> {
        let bump = || -> Result<(), StoreError> {
            let mut txn = self.write_txn()?;
            let epoch = self
                .meta
                .get(&txn, meta_key::FREE_EPOCH)
                .map_err(classify)?
                .map_or(0, i64_of);
            self.meta
                .put(&mut txn, meta_key::FREE_EPOCH, &(epoch + 1).to_be_bytes())
                .map_err(classify)?;
            self.commit(txn)
        };
        // Only an optimisation for a full map: if even this does not fit, the next deletion
        // or commit releases the pages instead.
        match bump() {
            Err(StoreError::Full(_)) => Ok(()),
            other => other,
        }
    }

    fn allocate_partitions(
        &self,
        txn: &mut RwTxn,
        count: u32,
    ) -> Result<Vec<PartitionId>, StoreError> {
        let next = self
            .meta
            .get(txn, meta_key::NEXT_PARTITION_ID)
            .map_err(classify)?
            .map(u32_of)
            .unwrap_or(0);
        let end = next
            .checked_add(count)
            .ok_or_else(|| StoreError::InvalidArgument("partition ids exhausted".into()))?;
        self.meta
            .put(txn, meta_key::NEXT_PARTITION_ID, &end.to_be_bytes())
            .map_err(classify)?;
        let ids: Vec<PartitionId> = (next..end).map(PartitionId).collect();
        for &pid in &ids {
            self.put_meta(txn, pid, &PartitionMeta::empty())?;
        }
        Ok(ids)
    }
}

impl LogStore for LmdbLog {
    fn append(
        &self,
        appends: &mut [Append],
    ) -> Result<Vec<Result<Appended, AppendError>>, StoreError> {
        self.check_usable()?;
        let mut txn = self.write_txn()?;
        self.check_disk_reserve(&txn, appends)?;
        // Metadata of the partitions touched, written back once at the end.
        let mut touched: Vec<(PartitionId, PartitionMeta)> = Vec::new();
        let mut last_key: Option<[u8; 12]> = match self.log.last(&txn).map_err(classify)? {
            Some((key, _)) => Some(key_array(key)?),
            None => None,
        };
        let mut results = Vec::with_capacity(appends.len());
        // Idempotent producers' states touched, written back once at the end.
        let mut producer_states: Vec<([u8; 12], Option<producers::ProducerState>)> = Vec::new();
        for append in appends.iter_mut() {
            // Checked when it was made (`CheckedBatch`), off this transaction's thread.
            let header = *append.batch.header();
            let pid = append.partition;
            let slot = match touched.iter().position(|(p, _)| *p == pid) {
                Some(slot) => slot,
                None => match self.load_meta(&txn, pid)? {
                    Some(meta) => {
                        touched.push((pid, meta));
                        touched.len() - 1
                    }
                    None => {
                        results.push(Err(AppendError::UnknownPartition(pid)));
                        continue;
                    }
                },
            };
            let meta = &mut touched[slot].1;
            // An idempotent producer's batch: checked against its earlier ones.
            let sequenced = (header.producer_id >= 0 && header.base_sequence >= 0).then(|| {
                let last_seq =
                    producers::last_sequence(header.base_sequence, header.last_offset_delta);
                (producers::key(header.producer_id, pid), last_seq)
            });
            let mut producer_slot = None;
            if let Some((key, last_seq)) = sequenced {
                let at = match producer_states.iter().position(|(k, _)| *k == key) {
                    Some(at) => at,
                    None => {
                        let state = match self.producers.get(&txn, &key).map_err(classify)? {
                            Some(value) => Some(producers::decode(value).ok_or_else(|| {
                                StoreError::Corrupt(format!(
                                    "unreadable producer state of partition {pid:?}"
                                ))
                            })?),
                            None => None,
                        };
                        producer_states.push((key, state));
                        producer_states.len() - 1
                    }
                };
                let state = producer_states[at].1.as_ref();
                match producers::check(state, header.producer_epoch, header.base_sequence, last_seq)
                {
                    producers::Verdict::Append => producer_slot = Some((at, last_seq)),
                    producers::Verdict::Duplicate(base_offset, last_offset) => {
                        results.push(Ok(Appended {
                            base_offset,
                            last_offset,
                            log_start_offset: meta.log_start_offset,
                        }));
                        continue;
                    }
                    producers::Verdict::Refuse(error) => {
                        results.push(Err(error));
                        continue;
                    }
                }
            }
            // An append that must happen at most once and already did.
            let dedup_key = match &append.dedup {
                Some(key) if key.owner.len() > RETAINED_TOPIC_BYTES_MAX => {
                    results.push(Err(AppendError::DedupKeyTooLong));
                    continue;
                }
                Some(key) => Some(schema::dedup_key(&key.owner, key.id)),
                None => None,
            };
            if let Some(key) = &dedup_key
                && let Some(done) = self.dedup.get(&txn, key).map_err(classify)?
            {
                let (partition, base_offset, last_offset) = schema::decode_dedup(done)
                    .ok_or_else(|| StoreError::Corrupt("unreadable dedup entry".into()))?;
                if partition == pid {
                    results.push(Ok(Appended {
                        base_offset,
                        last_offset,
                        log_start_offset: meta.log_start_offset,
                    }));
                    continue;
                }
            }
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
                .put_with_flags(&mut txn, flags, &key, &append.batch)
                .map_err(classify)?;
            last_key = Some(last_key.map_or(key, |last| last.max(key)));
            let appended = Appended {
                base_offset: base,
                last_offset: base + i64::from(header.last_offset_delta),
                log_start_offset: meta.log_start_offset,
            };
            debug_assert!(appended.last_offset >= base, "offsets strictly increase");
            if let Some(key) = &dedup_key {
                let value = schema::encode_dedup(pid, appended.base_offset, appended.last_offset);
                self.dedup.put(&mut txn, key, &value).map_err(classify)?;
            }
            meta.next_offset = appended.last_offset + 1;
            meta.size_bytes += append.batch.len() as u64;
            if header.max_timestamp > meta.max_timestamp {
                meta.max_timestamp = header.max_timestamp;
                self.time_index
                    .put(
                        &mut txn,
                        &schema::time_key(pid, header.max_timestamp),
                        &base.to_be_bytes(),
                    )
                    .map_err(classify)?;
            }
            if let Some((at, last_seq)) = producer_slot {
                let state = producer_states[at].1.take();
                let batch = producers::RecentBatch {
                    first_seq: header.base_sequence,
                    last_seq,
                    base_offset: appended.base_offset,
                    last_offset: appended.last_offset,
                };
                producer_states[at].1 = Some(producers::accepted(
                    state,
                    header.producer_epoch,
                    batch,
                    header.max_timestamp,
                ));
            }
            results.push(Ok(appended));
        }
        for (pid, meta) in &touched {
            self.put_meta(&mut txn, *pid, meta)?;
        }
        for (key, state) in &producer_states {
            if let Some(state) = state {
                self.producers
                    .put(&mut txn, key, &producers::encode(state))
                    .map_err(classify)?;
            }
        }
        self.commit(txn)?;
        Ok(results)
    }

    fn read(
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

    fn partition(&self, partition: PartitionId) -> Result<PartitionState, StoreError> {
        let txn = self.read_txn()?;
        self.load_meta(&txn, partition)?
            .map(|meta| state_of(&meta))
            .ok_or(StoreError::UnknownPartition(partition))
    }

    fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        config: TopicConfig,
    ) -> Result<TopicInfo, StoreError> {
        validate_topic_name(name)?;
        if partitions == 0 || partitions > TOPIC_PARTITIONS_MAX {
            return Err(StoreError::InvalidArgument(format!(
                "partitions must be from 1 to {TOPIC_PARTITIONS_MAX}, not {partitions}"
            )));
        }
        self.check_usable()?;
        let mut txn = self.write_txn()?;
        if self.load_topic(&txn, name)?.is_some() {
            return Err(StoreError::TopicExists(name.to_owned()));
        }
        let ids = self.allocate_partitions(&mut txn, partitions)?;
        let topic = TopicMeta {
            config,
            partitions: ids,
        };
        self.topics
            .put(&mut txn, name.as_bytes(), &topic.encode())
            .map_err(classify)?;
        self.commit(txn)?;
        self.make_durable()?;
        Ok(TopicInfo {
            name: name.to_owned(),
            partitions: topic.partitions,
            config,
        })
    }

    fn add_partitions(&self, name: &str, total: u32) -> Result<TopicInfo, StoreError> {
        self.check_usable()?;
        let mut txn = self.write_txn()?;
        let mut topic = self
            .load_topic(&txn, name)?
            .ok_or_else(|| StoreError::UnknownTopic(name.to_owned()))?;
        let current = topic.partitions.len() as u32;
        if total <= current || total > TOPIC_PARTITIONS_MAX {
            return Err(StoreError::InvalidArgument(format!(
                "topic `{name}` has {current} partitions; the new count must be more, and at \
                 most {TOPIC_PARTITIONS_MAX}, not {total}"
            )));
        }
        let ids = self.allocate_partitions(&mut txn, total - current)?;
        topic.partitions.extend(ids);
        self.topics
            .put(&mut txn, name.as_bytes(), &topic.encode())
            .map_err(classify)?;
        self.commit(txn)?;
        self.make_durable()?;
        Ok(TopicInfo {
            name: name.to_owned(),
            partitions: topic.partitions,
            config: topic.config,
        })
    }

    fn set_topic_config(&self, name: &str, config: TopicConfig) -> Result<(), StoreError> {
        self.check_usable()?;
        let mut txn = self.write_txn()?;
        let mut topic = self
            .load_topic(&txn, name)?
            .ok_or_else(|| StoreError::UnknownTopic(name.to_owned()))?;
        topic.config = config;
        self.topics
            .put(&mut txn, name.as_bytes(), &topic.encode())
            .map_err(classify)?;
        self.commit(txn)?;
        self.make_durable()
    }

    fn delete_topic(&self, name: &str) -> Result<(), StoreError> {
        // First make the topic and its partitions disappear in one transaction; then free the
        // batches in bounded chunks. A crash in between leaves orphan batches, which the check
        // at open, and every retention pass, deletes.
        self.check_usable()?;
        let mut txn = self.write_txn()?;
        let topic = self
            .load_topic(&txn, name)?
            .ok_or_else(|| StoreError::UnknownTopic(name.to_owned()))?;
        self.topics
            .delete(&mut txn, name.as_bytes())
            .map_err(classify)?;
        for &pid in &topic.partitions {
            self.partitions
                .delete(&mut txn, &schema::partition_key(pid))
                .map_err(classify)?;
            let start = schema::time_key(pid, i64::MIN);
            let end = schema::time_key(pid, i64::MAX);
            self.time_index
                .delete_range(&mut txn, &inclusive(&start, &end))
                .map_err(classify)?;
        }
        self.commit(txn)?;
        self.make_durable()?;
        for &pid in &topic.partitions {
            loop {
                let mut txn = self.write_txn()?;
                let (batches, _) = self.delete_prefix(&mut txn, pid, i64::MAX, DELETE_CHUNK)?;
                self.commit(txn)?;
                if batches < DELETE_CHUNK as u64 {
                    break;
                }
            }
        }
        self.release_freed_pages()
    }

    fn topic(&self, name: &str) -> Result<Option<TopicInfo>, StoreError> {
        let txn = self.read_txn()?;
        Ok(self.load_topic(&txn, name)?.map(|topic| TopicInfo {
            name: name.to_owned(),
            partitions: topic.partitions,
            config: topic.config,
        }))
    }

    fn topics(&self) -> Result<Vec<TopicInfo>, StoreError> {
        let txn = self.read_txn()?;
        let mut out = Vec::new();
        for item in self.topics.iter(&txn).map_err(classify)? {
            let (name, value) = item.map_err(classify)?;
            let name = String::from_utf8_lossy(name).into_owned();
            let topic = TopicMeta::decode(value)
                .ok_or_else(|| StoreError::Corrupt(format!("topic `{name}` metadata")))?;
            out.push(TopicInfo {
                name,
                partitions: topic.partitions,
                config: topic.config,
            });
        }
        Ok(out)
    }

    fn delete_records(&self, partition: PartitionId, offset: i64) -> Result<i64, StoreError> {
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

    fn offset_for_timestamp(
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

    fn enforce_retention(&self, now_ms: i64) -> Result<RetentionReport, StoreError> {
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

    fn allocate_producer_id(&self) -> Result<i64, StoreError> {
        self.check_usable()?;
        let mut txn = self.write_txn()?;
        let id = self
            .meta
            .get(&txn, meta_key::NEXT_PRODUCER_ID)
            .map_err(classify)?
            .map_or(0, i64_of);
        self.meta
            .put(
                &mut txn,
                meta_key::NEXT_PRODUCER_ID,
                &(id + 1).to_be_bytes(),
            )
            .map_err(classify)?;
        self.commit(txn)?;
        self.make_durable()?;
        Ok(id)
    }

    fn commit_offsets(
        &self,
        group: &str,
        offsets: &[(PartitionId, CommittedOffset)],
    ) -> Result<(), StoreError> {
        if group.len() > GROUP_ID_BYTES_MAX {
            return Err(StoreError::InvalidArgument(format!(
                "a group id is at most {GROUP_ID_BYTES_MAX} bytes, not {}",
                group.len()
            )));
        }
        if let Some((_, long)) = offsets
            .iter()
            .find(|(_, c)| c.metadata.len() > OFFSET_METADATA_BYTES_MAX)
        {
            return Err(StoreError::InvalidArgument(format!(
                "offset metadata is at most {OFFSET_METADATA_BYTES_MAX} bytes, not {}",
                long.metadata.len()
            )));
        }
        self.check_usable()?;
        let mut txn = self.write_txn()?;
        let prefix = schema::group_prefix(group);
        for (partition, committed) in offsets {
            let mut key = prefix.clone();
            key.extend_from_slice(&partition.0.to_be_bytes());
            self.group_offsets
                .put(&mut txn, &key, &schema::encode_committed(committed))
                .map_err(classify)?;
        }
        self.commit(txn)?;
        self.make_durable()
    }

    fn committed_offsets(
        &self,
        group: &str,
    ) -> Result<Vec<(PartitionId, CommittedOffset)>, StoreError> {
        let txn = self.read_txn()?;
        let prefix = schema::group_prefix(group);
        let mut out = Vec::new();
        for item in self
            .group_offsets
            .prefix_iter(&txn, &prefix)
            .map_err(classify)?
        {
            let (key, value) = item.map_err(classify)?;
            let id = key
                .get(prefix.len()..)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(|b| PartitionId(u32::from_be_bytes(b)));
            let (Some(id), Some(committed)) = (id, schema::decode_committed(value)) else {
                return Err(StoreError::Corrupt(format!(
                    "group `{group}` has an unreadable committed offset"
                )));
            };
            // Partition ids are never reused: an offset of a deleted partition is skipped.
            if self.load_meta(&txn, id)?.is_some() {
                out.push((id, committed));
            }
        }
        Ok(out)
    }

    fn offset_groups(&self) -> Result<Vec<String>, StoreError> {
        let txn = self.read_txn()?;
        let mut groups = Vec::new();
        // Each step seeks past the last key a group can have (its prefix, then the largest
        // partition id), so the cost is one lookup per group, not per committed offset.
        let mut after: Option<Vec<u8>> = None;
        loop {
            let start = match &after {
                Some(key) => Bound::Excluded(key.as_slice()),
                None => Bound::Unbounded,
            };
            let range = (start, Bound::Unbounded);
            let next = self
                .group_offsets
                .range(&txn, &range)
                .map_err(classify)?
                .next()
                .transpose()
                .map_err(classify)?;
            let Some((key, _)) = next else {
                return Ok(groups);
            };
            let group = key
                .get(..2)
                .map(|len| usize::from(u16::from_be_bytes([len[0], len[1]])))
                .and_then(|len| key.get(2..2 + len))
                .and_then(|name| std::str::from_utf8(name).ok())
                .ok_or_else(|| StoreError::Corrupt("an unreadable group offset key".into()))?;
            let mut last = schema::group_prefix(group);
            last.extend_from_slice(&u32::MAX.to_be_bytes());
            groups.push(group.to_owned());
            after = Some(last);
        }
    }

    fn set_retained(
        &self,
        topic: &str,
        message: Option<&[u8]>,
        topics_max: u64,
    ) -> Result<(), StoreError> {
        let limit = "topics have a retained message (mqtt.retained_messages_max)";
        let what = "a retained message's topic";
        self.put_keyed(self.mqtt_retained, what, topic, message, topics_max, limit)
    }

    fn retained(&self, visit: &mut dyn FnMut(&str, &[u8])) -> Result<(), StoreError> {
        self.visit_keyed(self.mqtt_retained, visit)
    }

    fn release_dedup(&self, owner: &str, id: Option<u16>) -> Result<(), StoreError> {
        self.check_usable()?;
        let mut txn = self.write_txn()?;
        let keys: Vec<Vec<u8>> = match id {
            Some(id) => vec![schema::dedup_key(owner, id)],
            None => {
                let prefix = schema::dedup_prefix(owner);
                let mut keys = Vec::new();
                for item in self.dedup.prefix_iter(&txn, &prefix).map_err(classify)? {
                    keys.push(item.map_err(classify)?.0.to_vec());
                }
                keys
            }
        };
        let mut deleted = false;
        for key in &keys {
            deleted |= self.dedup.delete(&mut txn, key).map_err(classify)?;
        }
        if !deleted {
            return Ok(());
        }
        self.commit(txn)?;
        self.release_freed_pages()?;
        self.make_durable()
    }

    fn put_mqtt_session(
        &self,
        client_id: &str,
        session: Option<&[u8]>,
        sessions_max: u64,
    ) -> Result<(), StoreError> {
        let limit = "persistent MQTT sessions are stored (mqtt.sessions_max)";
        self.put_keyed(
            self.mqtt_sessions,
            "a client id",
            client_id,
            session,
            sessions_max,
            limit,
        )
    }

    fn mqtt_session(&self, client_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.read_txn()?;
        let found = self.mqtt_sessions.get(&txn, client_id.as_bytes());
        Ok(found.map_err(classify)?.map(<[u8]>::to_vec))
    }

    fn mqtt_sessions(&self, visit: &mut dyn FnMut(&str, &[u8])) -> Result<(), StoreError> {
        self.visit_keyed(self.mqtt_sessions, visit)
    }

    fn delete_group_offsets(&self, group: &str) -> Result<bool, StoreError> {
        self.check_usable()?;
        let mut txn = self.write_txn()?;
        let prefix = schema::group_prefix(group);
        let mut keys = Vec::new();
        for item in self
            .group_offsets
            .prefix_iter(&txn, &prefix)
            .map_err(classify)?
        {
            let (key, _) = item.map_err(classify)?;
            keys.push(key.to_vec());
        }
        if keys.is_empty() {
            return Ok(false);
        }
        for key in &keys {
            self.group_offsets.delete(&mut txn, key).map_err(classify)?;
        }
        self.commit(txn)?;
        self.release_freed_pages()?;
        self.make_durable()?;
        Ok(true)
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.check_usable()?;
        self.env
            .force_sync()
            .map_err(|e| self.poison(format!("sync failed: {e}")))
    }
}

const SCHEMA_BYTES: [u8; 4] = schema::SCHEMA_VERSION.to_be_bytes();

fn validate_topic_name(name: &str) -> Result<(), StoreError> {
    weir_core::log_store::check_topic_name(name).map_err(StoreError::InvalidArgument)
}

/// Sorts LMDB errors from reads and puts: a full map or transaction is `Full` (nothing was
/// written), anything else is `Fatal`. Commit errors go through [`LmdbLog::commit`].
fn classify(error: heed::Error) -> StoreError {
    use heed::MdbError;
    match &error {
        heed::Error::Mdb(MdbError::MapFull) => {
            StoreError::Full("the LMDB map is full (storage.map_size_bytes)".into())
        }
        heed::Error::Mdb(MdbError::TxnFull) => {
            StoreError::Full("the transaction has too many dirty pages".into())
        }
        _ => StoreError::Fatal(format!("LMDB: {error}")),
    }
}

/// Free bytes for unprivileged users on the file system holding `path`.
fn free_disk_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: a NUL-terminated path and a pointer to a statvfs-sized buffer, as the call wants.
    let rc = unsafe { libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled the buffer.
    let stat = unsafe { stat.assume_init() };
    #[allow(
        clippy::useless_conversion,
        reason = "the fields are 32-bit on 32-bit targets"
    )]
    let (blocks, block_size) = (u64::from(stat.f_bavail), u64::from(stat.f_frsize));
    Some(blocks.saturating_mul(block_size))
}

fn stored_header(key: &[u8], value: &[u8]) -> Result<BatchHeader, StoreError> {
    BatchHeader::parse(value).map_err(|e| {
        StoreError::Corrupt(format!(
            "stored batch at {:?} has no valid header: {e}",
            schema::parse_log_key(key)
        ))
    })
}

fn decode_meta(pid: PartitionId, bytes: &[u8]) -> Result<PartitionMeta, StoreError> {
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
fn inclusive<'k>(start: &'k [u8], end: &'k [u8]) -> (Bound<&'k [u8]>, Bound<&'k [u8]>) {
    (Bound::Included(start), Bound::Included(end))
}

/// True if a `log` or `time_index` key belongs to `pid`.
fn belongs(key: &[u8], pid: PartitionId) -> bool {
    key.get(..4) == Some(&pid.0.to_be_bytes()[..])
}

fn key_array(key: &[u8]) -> Result<[u8; 12], StoreError> {
    key.try_into()
        .map_err(|_| StoreError::Corrupt(format!("a key of {} bytes where 12 belong", key.len())))
}

fn u32_of(bytes: &[u8]) -> u32 {
    bytes
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_be_bytes)
}

fn i64_of(bytes: &[u8]) -> i64 {
    bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, i64::from_be_bytes)
}

#[cfg(test)]
mod tests;
