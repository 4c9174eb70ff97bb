//! Background upkeep on its own thread: retention passes, in relaxed durability the periodic
//! sync that bounds the loss window, and every [`crate::memory::TRIM_INTERVAL`] giving the
//! allocator's free memory back to the kernel.
//!
//! Retention deletes in bounded transactions through the same store as the writer; LMDB
//! serialises the two, so an append waits at most one deletion chunk.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use weir_core::log_store::{LogStore, StoreError};

/// What the maintenance thread does and how often.
#[derive(Debug, Clone, Copy)]
pub struct MaintenanceConfig {
    /// Time between retention passes.
    pub retention_interval: Duration,
    /// Time between syncs, in relaxed durability; `None` in fsync mode.
    pub sync_interval: Option<Duration>,
}

/// The running maintenance thread.
#[derive(Debug)]
pub struct Maintenance {
    stop: Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl Maintenance {
    /// Starts the thread. `on_fatal` runs if a sync fails.
    pub fn start(
        store: Arc<dyn LogStore>,
        config: MaintenanceConfig,
        on_fatal: Box<dyn FnOnce(StoreError) + Send>,
    ) -> std::io::Result<Maintenance> {
        let (stop, stopped) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("weir-maintenance".into())
            .spawn(move || run(&*store, config, &stopped, on_fatal))?;
        Ok(Maintenance {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread; in relaxed mode it syncs once more on the way out.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        let _ = self.stop.send(());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the maintenance thread panicked");
        }
    }
}

impl Drop for Maintenance {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

fn run(
    store: &dyn LogStore,
    config: MaintenanceConfig,
    stopped: &Receiver<()>,
    on_fatal: Box<dyn FnOnce(StoreError) + Send>,
) {
    let mut next_retention = crate::clock::now() + config.retention_interval;
    let mut next_sync = config
        .sync_interval
        .map(|every| crate::clock::now() + every);
    let mut next_trim = crate::clock::now() + crate::memory::TRIM_INTERVAL;
    loop {
        let wake = next_sync
            .map_or(next_retention, |sync| sync.min(next_retention))
            .min(next_trim);
        match stopped.recv_timeout(wake.saturating_duration_since(crate::clock::now())) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
        }
        let now = crate::clock::now();
        if now >= next_trim {
            crate::memory::trim();
            next_trim = now + crate::memory::TRIM_INTERVAL;
        }
        if let (Some(at), Some(every)) = (next_sync, config.sync_interval)
            && now >= at
        {
            if let Err(e) = store.sync() {
                tracing::error!("periodic sync failed: {e}");
                on_fatal(e);
                return;
            }
            next_sync = Some(now + every);
        }
        if now >= next_retention {
            match store.enforce_retention(crate::clock::wall_ms()) {
                Ok(report) if report.batches > 0 => tracing::info!(
                    batches = report.batches,
                    bytes = report.bytes,
                    "retention deleted old data"
                ),
                Ok(_) => {}
                Err(e @ StoreError::Fatal(_)) => {
                    // A failed commit here may have been the sync the writer counts on.
                    tracing::error!("retention pass failed: {e}");
                    on_fatal(e);
                    return;
                }
                Err(e) => tracing::warn!("retention pass failed: {e}"),
            }
            next_retention = now + config.retention_interval;
        }
    }
    if config.sync_interval.is_some()
        && let Err(e) = store.sync()
    {
        tracing::error!("final sync failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::channel;

    use weir_core::log_store::{Append, CheckedBatch, TopicConfig};
    use weir_kafka::record_batch::{BatchBuilder, Record};
    use weir_log::faulty::{FailAfter, Fault};
    use weir_log::{LmdbLog, LogOptions};

    use super::*;

    fn batch() -> CheckedBatch {
        let mut builder = BatchBuilder::new();
        builder.push(Record {
            timestamp_ms: 0,
            key: None,
            value: Some(b"old"),
            headers: &[],
        });
        CheckedBatch::new(builder.finish()).unwrap()
    }

    #[test]
    fn retention_runs_on_its_interval() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = LmdbLog::open(dir.path(), LogOptions::default()).unwrap();
        let config = TopicConfig {
            retention_ms: -1,
            retention_bytes: 0,
        };
        let pid = log.create_topic("t", 1, config).unwrap().partitions[0];
        for _ in 0..3 {
            log.append(&mut [Append {
                partition: pid,
                batch: batch(),
                dedup: None,
            }])
            .unwrap();
        }
        let log = Arc::new(log);
        let maintenance = Maintenance::start(
            log.clone(),
            MaintenanceConfig {
                retention_interval: Duration::from_millis(10),
                sync_interval: None,
            },
            Box::new(|e| panic!("{e}")),
        )
        .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while log.partition(pid).unwrap().log_start_offset < 3 {
            assert!(std::time::Instant::now() < deadline, "retention never ran");
            std::thread::yield_now();
        }
        maintenance.shutdown();
        assert_eq!(log.partition(pid).unwrap().size_bytes, 0);
    }

    #[test]
    fn a_failed_periodic_sync_is_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = LmdbLog::open(dir.path(), LogOptions::default()).unwrap();
        let store = Arc::new(FailAfter::new(log, 0, Fault::Fatal));
        let (tx, rx) = channel();
        let maintenance = Maintenance::start(
            store,
            MaintenanceConfig {
                retention_interval: Duration::from_secs(3600),
                sync_interval: Some(Duration::from_millis(5)),
            },
            Box::new(move |e| tx.send(e).unwrap()),
        )
        .unwrap();
        let error = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert!(matches!(error, StoreError::Fatal(_)));
        maintenance.shutdown();
    }
}
