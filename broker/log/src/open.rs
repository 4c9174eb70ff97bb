//! Opening the log: the environment with the sync flags of its durability, its tables and the
//! schema version check; then the repair of partition metadata from the stored batches and
//! the deletion of batches no topic owns (also part of every retention pass).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64};

use heed::types::Bytes;
use heed::{Database, Env, EnvFlags, EnvOpenOptions, RwTxn, WithoutTls};
use weir_core::log_store::{PartitionId, StoreError};

use crate::lmdb_log::{Durability, LmdbLog, LogOptions};
use crate::partitions::decode_meta;
use crate::retention::DELETE_CHUNK;
use crate::schema::u32_of;
use crate::schema::{self, log_key, meta_key, table};
use crate::txn::classify;

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

impl LmdbLog {
    /// Opens (creating if needed) the log in directory `path`, checks the schema version and
    /// that partition metadata agrees with the stored batches, and repairs what it can.
    pub fn open(path: &Path, options: LogOptions) -> Result<(LmdbLog, Vec<Repair>), OpenError> {
        let shown = path.display().to_string();
        let env_err = env_error(&shown);
        std::fs::create_dir_all(path).map_err(|e| env_err(e.into()))?;
        let env = open_env(path, &options).map_err(&env_err)?;

        let mut txn = env.write_txn().map_err(&env_err)?;
        let dbs = create_tables(&env, &mut txn).map_err(&env_err)?;
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
        check_schema_version(meta, &mut txn, &shown)?;
        txn.commit().map_err(&env_err)?;

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
            topics_version: AtomicU64::new(0),
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
    pub(crate) fn delete_orphans(&self) -> Result<Vec<(PartitionId, u64)>, StoreError> {
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
}

/// Opens the LMDB environment in `path` with the sync flags `options.durability` asks for.
fn open_env(path: &Path, options: &LogOptions) -> Result<Env<WithoutTls>, heed::Error> {
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
    unsafe { open.open(path) }
}

/// Opens every table of [`table::ALL`], in that order, creating those missing (a table added
/// by a later schema is created when an older environment is opened).
fn create_tables(
    env: &Env<WithoutTls>,
    txn: &mut RwTxn,
) -> Result<Vec<Database<Bytes, Bytes>>, heed::Error> {
    let mut dbs = Vec::with_capacity(table::ALL.len());
    for name in table::ALL {
        dbs.push(env.create_database::<Bytes, Bytes>(txn, Some(name))?);
    }
    Ok(dbs)
}

const SCHEMA_BYTES: [u8; 4] = schema::SCHEMA_VERSION.to_be_bytes();

/// Writes the schema version into a new environment and refuses one written by a newer Weir,
/// which this build could misread.
fn check_schema_version(
    meta: Database<Bytes, Bytes>,
    txn: &mut RwTxn,
    shown: &str,
) -> Result<(), OpenError> {
    let env_err = env_error(shown);
    let version = meta
        .get(txn, meta_key::SCHEMA_VERSION)
        .map_err(&env_err)?
        .map(u32_of);
    match version {
        None => {
            meta.put(txn, meta_key::SCHEMA_VERSION, &SCHEMA_BYTES)
                .map_err(&env_err)?;
        }
        Some(found) if found > schema::SCHEMA_VERSION => {
            return Err(OpenError::NewerSchema {
                path: shown.to_owned(),
                found,
                known: schema::SCHEMA_VERSION,
            });
        }
        Some(_) => {}
    }
    Ok(())
}

/// Wraps an LMDB or file system error met while opening the log at `shown`.
fn env_error(shown: &str) -> impl Fn(heed::Error) -> OpenError + '_ {
    move |source| OpenError::Env {
        path: shown.to_owned(),
        source,
    }
}
