//! A store that fails on purpose: [`FailAfter`] passes the first N write operations to the
//! store it wraps, then fails every later one with the chosen fault until re-armed. Reads
//! always pass through, so a test can check what was kept. It can also hold appends (as a
//! slow disk would) until released, to fill queues in front of the store.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Condvar, Mutex};

use weir_core::log_store::{
    Append, AppendError, Appended, LogStore, PartitionId, PartitionState, ReadSummary,
    RetentionReport, StoreError, TopicConfig, TopicInfo,
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
    held: Mutex<bool>,
    released: Condvar,
}

impl<S: LogStore> FailAfter<S> {
    /// Lets `ops` write operations through, then fails with `fault`.
    pub fn new(inner: S, ops: u64, fault: Fault) -> FailAfter<S> {
        FailAfter {
            inner,
            remaining: AtomicI64::new(ops.min(i64::MAX as u64) as i64),
            fault,
            held: Mutex::new(false),
            released: Condvar::new(),
        }
    }

    /// Makes appends wait until [`FailAfter::release`] (or fail with the fault if already
    /// past N operations).
    pub fn hold_appends(&self) {
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) = true;
    }

    /// Lets held appends go on.
    pub fn release(&self) {
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) = false;
        self.released.notify_all();
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
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        while *held {
            held = self.released.wait(held).unwrap_or_else(|e| e.into_inner());
        }
        drop(held);
        self.tick()?;
        self.inner.append(appends)
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

    fn sync(&self) -> Result<(), StoreError> {
        self.tick()?;
        self.inner.sync()
    }
}
