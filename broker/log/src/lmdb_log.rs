//! The log's handle: one LMDB environment and its tables, and how it is opened. The other
//! modules of the crate each implement a part of the log on it.

use std::sync::atomic::{AtomicBool, AtomicU64};

use heed::types::Bytes;
use heed::{Database, Env, WithoutTls};
#[cfg(doc)]
use weir_core::log_store::LogStore;

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

/// The log on LMDB. Cheap to share behind an `Arc`; every method takes `&self`.
#[derive(Debug)]
pub struct LmdbLog {
    pub(crate) env: Env<WithoutTls>,
    pub(crate) meta: Database<Bytes, Bytes>,
    pub(crate) log: Database<Bytes, Bytes>,
    pub(crate) partitions: Database<Bytes, Bytes>,
    pub(crate) time_index: Database<Bytes, Bytes>,
    pub(crate) topics: Database<Bytes, Bytes>,
    pub(crate) group_offsets: Database<Bytes, Bytes>,
    pub(crate) producers: Database<Bytes, Bytes>,
    pub(crate) mqtt_sessions: Database<Bytes, Bytes>,
    pub(crate) mqtt_retained: Database<Bytes, Bytes>,
    pub(crate) dedup: Database<Bytes, Bytes>,
    /// Every table, for the free-space estimate.
    pub(crate) tables: Vec<Database<Bytes, Bytes>>,
    pub(crate) disk_reserve_bytes: u64,
    pub(crate) durability: Durability,
    /// Set by a failed commit or sync; from then on every write and sync fails.
    pub(crate) poisoned: AtomicBool,
    /// Bumped after each committed change of the topics (`LogStore::topics_version`).
    pub(crate) topics_version: AtomicU64,
}
