//! Weir's partitioned log on LMDB, through heed.
//!
//! [`LmdbLog`] implements [`weir_core::log_store::LogStore`]: one LMDB environment whose tables
//! are described in [`schema`]; batches are Kafka RecordBatch v2, checked before they reach
//! it (`CheckedBatch`), and stored byte for byte with the assigned base offset written in;
//! reads hand out the stored bytes. A call to `append` is one write transaction, so whoever
//! groups appends (the server's group-commit writer) pays one commit and one sync per group.
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
//!
//! The implementation is split by what it does, and this file's `impl LogStore for LmdbLog`
//! hands each method to the module that holds it:
//! - `lmdb_log.rs`: the log's handle (the environment and its tables) and how it is opened
//!   ([`LogOptions`], [`Durability`]); every other module builds on it.
//! - `open.rs`: opening the environment, the schema version check, and the repair at open
//!   (partition metadata from the stored batches, batches no topic owns).
//! - `append.rs`: a group of appends in one transaction: offsets, idempotent producers'
//!   sequences, dedup keys, the time index.
//! - `partitions.rs`: reads, partition state and offsets by timestamp, and the metadata and
//!   batch lookups the other modules share.
//! - `topics.rs`: creating, growing, configuring, deleting and listing topics.
//! - `retention.rs`: deleting from partitions' starts (retention, DeleteRecords) a bounded
//!   chunk per transaction, and the expiry of idle producers.
//! - `side_tables.rs`: consumer groups' committed offsets, producer ids, MQTT retained
//!   messages and sessions, the release of dedup keys.
//! - `txn.rs`: commits and poisoning, syncs, the disk reserve, releasing freed pages, and
//!   the sorting of LMDB errors.
//! - [`schema`]: every table's key and value layout; [`producers`]: the idempotent-producer
//!   state.

pub mod faulty;
pub mod producers;
pub mod schema;

mod append;
mod lmdb_log;
mod open;
mod partitions;
mod retention;
mod side_tables;
mod topics;
mod txn;

use weir_core::log_store::{
    Append, AppendError, Appended, CommittedOffset, LogStore, PartitionId, PartitionState,
    ReadSummary, RetentionReport, StoreError, TopicConfig, TopicInfo,
};

pub use crate::lmdb_log::{Durability, LmdbLog, LogOptions};
pub use crate::open::{OpenError, Repair};
pub use weir_core::log_store::TOPIC_PARTITIONS_MAX;

impl LogStore for LmdbLog {
    fn append(
        &self,
        appends: &mut [Append],
    ) -> Result<Vec<Result<Appended, AppendError>>, StoreError> {
        self.append_group(appends)
    }

    fn read(
        &self,
        partition: PartitionId,
        offset: i64,
        max_bytes: usize,
        visit: &mut dyn FnMut(&[u8]),
    ) -> Result<ReadSummary, StoreError> {
        self.read_batches(partition, offset, max_bytes, visit)
    }

    fn partition(&self, partition: PartitionId) -> Result<PartitionState, StoreError> {
        self.partition_state(partition)
    }

    fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        config: TopicConfig,
    ) -> Result<TopicInfo, StoreError> {
        self.insert_topic(name, partitions, config)
    }

    fn add_partitions(&self, name: &str, total: u32) -> Result<TopicInfo, StoreError> {
        self.grow_topic(name, total)
    }

    fn set_topic_config(&self, name: &str, config: TopicConfig) -> Result<(), StoreError> {
        self.configure_topic(name, config)
    }

    fn delete_topic(&self, name: &str) -> Result<(), StoreError> {
        self.remove_topic(name)
    }

    fn topic(&self, name: &str) -> Result<Option<TopicInfo>, StoreError> {
        self.find_topic(name)
    }

    fn topics(&self) -> Result<Vec<TopicInfo>, StoreError> {
        self.list_topics()
    }

    fn topics_version(&self) -> u64 {
        self.topics_version
            .load(std::sync::atomic::Ordering::Acquire)
    }

    fn delete_records(&self, partition: PartitionId, offset: i64) -> Result<i64, StoreError> {
        self.delete_records_before(partition, offset)
    }

    fn offset_for_timestamp(
        &self,
        partition: PartitionId,
        timestamp_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        self.offset_at_time(partition, timestamp_ms)
    }

    fn enforce_retention(&self, now_ms: i64) -> Result<RetentionReport, StoreError> {
        self.apply_retention(now_ms)
    }

    fn allocate_producer_id(&self) -> Result<i64, StoreError> {
        self.next_producer_id()
    }

    fn commit_offsets(
        &self,
        group: &str,
        offsets: &[(PartitionId, CommittedOffset)],
    ) -> Result<(), StoreError> {
        self.put_group_offsets(group, offsets)
    }

    fn committed_offsets(
        &self,
        group: &str,
    ) -> Result<Vec<(PartitionId, CommittedOffset)>, StoreError> {
        self.load_group_offsets(group)
    }

    fn offset_groups(&self) -> Result<Vec<String>, StoreError> {
        self.groups_with_offsets()
    }

    fn set_retained(
        &self,
        topic: &str,
        message: Option<&[u8]>,
        topics_max: u64,
    ) -> Result<(), StoreError> {
        self.put_retained(topic, message, topics_max)
    }

    fn retained(&self, visit: &mut dyn FnMut(&str, &[u8])) -> Result<(), StoreError> {
        self.visit_retained(visit)
    }

    fn release_dedup(&self, owner: &str, id: Option<u16>) -> Result<(), StoreError> {
        self.delete_dedup_keys(owner, id)
    }

    fn put_mqtt_session(
        &self,
        client_id: &str,
        session: Option<&[u8]>,
        sessions_max: u64,
    ) -> Result<(), StoreError> {
        self.store_mqtt_session(client_id, session, sessions_max)
    }

    fn mqtt_session(&self, client_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.load_mqtt_session(client_id)
    }

    fn mqtt_sessions(&self, visit: &mut dyn FnMut(&str, &[u8])) -> Result<(), StoreError> {
        self.visit_mqtt_sessions(visit)
    }

    fn delete_group_offsets(&self, group: &str) -> Result<bool, StoreError> {
        self.remove_group_offsets(group)
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.sync_env()
    }
}

#[cfg(test)]
mod tests;
