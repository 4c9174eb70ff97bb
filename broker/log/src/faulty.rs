//! A store that fails on purpose: [`FailAfter`] passes the first N write operations to the
//! store it wraps, then fails every later one with the chosen fault until re-armed. Reads
//! always pass through, so a test can check what was kept. It can also hold appends (as a
//! slow disk would) until released, to fill queues in front of the store.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

use weir_core::log_store::{
    Append, AppendError, Appended, CommittedOffset, LogStore, PartitionId, PartitionState,
    ReadSummary, RetentionReport, StoreError, TopicConfig, TopicInfo,
};

/// Which failure to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Storage full: the caller should refuse the write and retry later.
    Full,
    /// A failed commit or sync: the caller must stop.
    Fatal,
}

/// Wraps `S`; write operations after the first `ops` fail with `fault`.
#[derive(Debug)]
pub struct FailAfter<S> {
    inner: S,
    remaining: AtomicI64,
    fault: Fault,
    held: Mutex<Held>,
    released: Condvar,
    appends_done: AtomicU64,
    syncs_started: AtomicU64,
    syncs_done: AtomicU64,
}

/// Which operations wait for [`FailAfter::release`].
#[derive(Debug, Default, Clone, Copy)]
struct Held {
    appends: bool,
    syncs: bool,
}

impl<S: LogStore> FailAfter<S> {
    /// Lets `ops` write operations through, then fails with `fault`.
    pub fn new(inner: S, ops: u64, fault: Fault) -> FailAfter<S> {
        FailAfter {
            inner,
            remaining: AtomicI64::new(ops.min(i64::MAX as u64) as i64),
            fault,
            held: Mutex::new(Held::default()),
            released: Condvar::new(),
            appends_done: AtomicU64::new(0),
            syncs_started: AtomicU64::new(0),
            syncs_done: AtomicU64::new(0),
        }
    }

    /// Appends the wrapped store completed successfully so far.
    pub fn appends_done(&self) -> u64 {
        self.appends_done.load(Ordering::SeqCst)
    }

    /// Syncs the wrapped store completed successfully so far.
    pub fn syncs_done(&self) -> u64 {
        self.syncs_done.load(Ordering::SeqCst)
    }

    /// Makes appends wait until [`FailAfter::release`].
    pub fn hold_appends(&self) {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).appends = true;
    }

    /// Makes syncs wait until [`FailAfter::release`].
    pub fn hold_syncs(&self) {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).syncs = true;
    }

    /// Lets held operations go on.
    pub fn release(&self) {
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) = Held::default();
        self.released.notify_all();
    }

    /// Syncs called so far (including ones still held).
    pub fn syncs_started(&self) -> u64 {
        self.syncs_started.load(Ordering::SeqCst)
    }

    fn wait_while(&self, held: impl Fn(&Held) -> bool) {
        let mut state = self.held.lock().unwrap_or_else(|e| e.into_inner());
        while held(&state) {
            state = self.released.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Lets `ops` more write operations through (the fault was "fixed").
    pub fn rearm(&self, ops: u64) {
        self.remaining
            .store(ops.min(i64::MAX as u64) as i64, Ordering::SeqCst);
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn tick(&self) -> Result<(), StoreError> {
        if self.remaining.fetch_sub(1, Ordering::SeqCst) > 0 {
            return Ok(());
        }
        Err(match self.fault {
            Fault::Full => StoreError::Full("injected fault".into()),
            Fault::Fatal => StoreError::Fatal("injected fault".into()),
        })
    }
}

impl<S: LogStore> LogStore for FailAfter<S> {
    fn append(
        &self,
        appends: &mut [Append],
    ) -> Result<Vec<Result<Appended, AppendError>>, StoreError> {
        self.wait_while(|held| held.appends);
        self.tick()?;
        let results = self.inner.append(appends)?;
        self.appends_done.fetch_add(1, Ordering::SeqCst);
        Ok(results)
    }

    fn read(
        &self,
        partition: PartitionId,
        offset: i64,
        max_bytes: usize,
        visit: &mut dyn FnMut(&[u8]),
    ) -> Result<ReadSummary, StoreError> {
        self.inner.read(partition, offset, max_bytes, visit)
    }

    fn partition(&self, partition: PartitionId) -> Result<PartitionState, StoreError> {
        self.inner.partition(partition)
    }

    fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        config: TopicConfig,
    ) -> Result<TopicInfo, StoreError> {
        self.tick()?;
        self.inner.create_topic(name, partitions, config)
    }

    fn add_partitions(&self, name: &str, total: u32) -> Result<TopicInfo, StoreError> {
        self.tick()?;
        self.inner.add_partitions(name, total)
    }

    fn set_topic_config(&self, name: &str, config: TopicConfig) -> Result<(), StoreError> {
        self.tick()?;
        self.inner.set_topic_config(name, config)
    }

    fn delete_topic(&self, name: &str) -> Result<(), StoreError> {
        self.tick()?;
        self.inner.delete_topic(name)
    }

    fn topic(&self, name: &str) -> Result<Option<TopicInfo>, StoreError> {
        self.inner.topic(name)
    }

    fn topics(&self) -> Result<Vec<TopicInfo>, StoreError> {
        self.inner.topics()
    }

    fn topics_version(&self) -> u64 {
        self.inner.topics_version()
    }

    fn delete_records(&self, partition: PartitionId, offset: i64) -> Result<i64, StoreError> {
        self.tick()?;
        self.inner.delete_records(partition, offset)
    }

    fn offset_for_timestamp(
        &self,
        partition: PartitionId,
        timestamp_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        self.inner.offset_for_timestamp(partition, timestamp_ms)
    }

    fn enforce_retention(&self, now_ms: i64) -> Result<RetentionReport, StoreError> {
        self.tick()?;
        self.inner.enforce_retention(now_ms)
    }

    fn allocate_producer_id(&self) -> Result<i64, StoreError> {
        self.tick()?;
        self.inner.allocate_producer_id()
    }

    fn commit_offsets(
        &self,
        group: &str,
        offsets: &[(PartitionId, CommittedOffset)],
    ) -> Result<(), StoreError> {
        self.tick()?;
        self.inner.commit_offsets(group, offsets)
    }

    fn committed_offsets(
        &self,
        group: &str,
    ) -> Result<Vec<(PartitionId, CommittedOffset)>, StoreError> {
        self.inner.committed_offsets(group)
    }

    fn offset_groups(&self) -> Result<Vec<String>, StoreError> {
        self.inner.offset_groups()
    }

    fn delete_group_offsets(&self, group: &str) -> Result<bool, StoreError> {
        self.tick()?;
        self.inner.delete_group_offsets(group)
    }

    fn set_retained(
        &self,
        topic: &str,
        message: Option<&[u8]>,
        topics_max: u64,
    ) -> Result<(), StoreError> {
        self.tick()?;
        self.inner.set_retained(topic, message, topics_max)
    }

    fn retained(&self, visit: &mut dyn FnMut(&str, &[u8])) -> Result<(), StoreError> {
        self.inner.retained(visit)
    }

    fn put_mqtt_session(
        &self,
        client_id: &str,
        session: Option<&[u8]>,
        sessions_max: u64,
    ) -> Result<(), StoreError> {
        self.tick()?;
        self.inner
            .put_mqtt_session(client_id, session, sessions_max)
    }

    fn mqtt_session(&self, client_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.mqtt_session(client_id)
    }

    fn mqtt_sessions(&self, visit: &mut dyn FnMut(&str, &[u8])) -> Result<(), StoreError> {
        self.inner.mqtt_sessions(visit)
    }

    fn release_dedup(&self, owner: &str, id: Option<u16>) -> Result<(), StoreError> {
        self.tick()?;
        self.inner.release_dedup(owner, id)
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.syncs_started.fetch_add(1, Ordering::SeqCst);
        self.wait_while(|held| held.syncs);
        self.tick()?;
        self.inner.sync()?;
        self.syncs_done.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}
