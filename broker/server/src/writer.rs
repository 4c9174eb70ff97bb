//! The group-commit writer: one thread in front of the log that turns many appends into few
//! durable commits.
//!
//! Callers (the shards, later) [`WriterHandle::submit`] an append with a completion callback
//! and go on. The writer thread takes everything pending, up to `commit_bytes_max`, waits at
//! most `commit_window` for more, appends the group in one store transaction (one commit, one
//! sync in fsync mode), and only then calls each completion. So a protocol handler that
//! acknowledges in its completion never acknowledges data that is not durable.
//!
//! Limits and outcomes:
//! - bytes queued and not yet committed are bounded by `queue_bytes_max`; a submit beyond it
//!   is refused at once with [`Busy`] and the append handed back, so the caller can stop
//!   reading from its socket instead of buffering more;
//! - a full store ([`StoreError::Full`]) fails that group's appends and the writer goes on:
//!   appends succeed again once space is freed;
//! - any other store failure is fatal: that group's appends fail, the `on_fatal` hook runs
//!   (the server exits), and the writer completes nothing more; later submits fail with
//!   [`AppendFailure::Stopped`].
//!
//! Shutdown ([`Writer::shutdown`]) commits everything already submitted, then stops.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use weir_core::log_store::{Append, AppendError, Appended, LogStore, StoreError};

/// Called once with the outcome of one append, on the writer thread. It must be quick: hand
/// the result to the owning shard and return.
pub type Completion = Box<dyn FnOnce(Result<Appended, AppendFailure>) + Send>;

/// Why an append was not made durable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendFailure {
    /// The batch itself was refused (invalid, unknown partition).
    #[error(transparent)]
    Rejected(#[from] AppendError),
    /// The store refused the group: full (retry later) or fatal.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The writer has stopped (shutdown or a fatal error).
    #[error("the log writer has stopped")]
    Stopped,
}

/// A submit refused because `storage.append_queue_bytes_max` bytes are already queued; the
/// append and its completion come back untouched.
pub struct Busy {
    /// The append that was not queued.
    pub append: Append,
    /// Its completion, not called.
    pub done: Completion,
}

impl std::fmt::Debug for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Busy")
            .field("partition", &self.append.partition)
            .field("bytes", &self.append.batch.len())
            .finish()
    }
}

/// Group-commit settings, from `storage.*` keys.
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// How long to wait for more appends after the first one of a group (0: commit whatever
    /// is pending at once).
    pub commit_window: Duration,
    /// Most bytes in one group.
    pub commit_bytes_max: u64,
    /// Most bytes submitted and not yet completed.
    pub queue_bytes_max: u64,
}

/// Counters of the writer's work, for metrics and benchmarks.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Groups committed.
    pub commits: AtomicU64,
    /// Appends completed successfully.
    pub appends: AtomicU64,
    /// Bytes appended successfully.
    pub bytes: AtomicU64,
    /// Appends failed (any reason).
    pub failures: AtomicU64,
    /// Total time spent in store commits, nanoseconds.
    pub commit_nanos: AtomicU64,
}

enum Request {
    Append(Append, Completion),
    Stop,
}

/// Submits appends to the writer. Cheap to clone; one per shard.
#[derive(Clone)]
pub struct WriterHandle {
    tx: Sender<Request>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for WriterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterHandle")
            .field(
                "queued_bytes",
                &self.shared.queued_bytes.load(Ordering::Relaxed),
            )
            .finish()
    }
}

struct Shared {
    queued_bytes: AtomicU64,
    queue_bytes_max: u64,
    stopped: AtomicBool,
    stats: WriterStats,
}

impl WriterHandle {
    /// Queues `append`; `done` runs once it is durable or has failed. Returns the append back
    /// if the queue is full. After the writer stopped, `done` runs at once with `Stopped`.
    pub fn submit(&self, append: Append, done: Completion) -> Result<(), Busy> {
        if self.shared.stopped.load(Ordering::Acquire) {
            done(Err(AppendFailure::Stopped));
            return Ok(());
        }
        let bytes = append.batch.len() as u64;
        let before = self.shared.queued_bytes.fetch_add(bytes, Ordering::AcqRel);
        // One append larger than the whole budget is still accepted into an empty queue, so a
        // large batch cannot be refused forever.
        if before > 0 && before + bytes > self.shared.queue_bytes_max {
            self.shared.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
            return Err(Busy { append, done });
        }
        if let Err(returned) = self.tx.send(Request::Append(append, done)) {
            self.shared.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
            if let Request::Append(_, done) = returned.0 {
                done(Err(AppendFailure::Stopped));
            }
        }
        Ok(())
    }

    /// Bytes submitted and not yet completed.
    pub fn queued_bytes(&self) -> u64 {
        self.shared.queued_bytes.load(Ordering::Acquire)
    }

    /// The writer's counters.
    pub fn stats(&self) -> &WriterStats {
        &self.shared.stats
    }
}

/// The writer thread and its handle.
#[derive(Debug)]
pub struct Writer {
    handle: WriterHandle,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the writer thread over `store`. `on_fatal` runs once, on the writer thread, if
    /// the store fails fatally.
    pub fn start(
        store: Arc<dyn LogStore>,
        config: WriterConfig,
        on_fatal: Box<dyn FnOnce(StoreError) + Send>,
    ) -> std::io::Result<Writer> {
        let (tx, rx) = std::sync::mpsc::channel();
        let shared = Arc::new(Shared {
            queued_bytes: AtomicU64::new(0),
            queue_bytes_max: config.queue_bytes_max,
            stopped: AtomicBool::new(false),
            stats: WriterStats::default(),
        });
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("weir-writer".into())
            .spawn(move || run(&*store, config, &rx, &thread_shared, on_fatal))?;
        Ok(Writer {
            handle: WriterHandle { tx, shared },
            thread: Some(thread),
        })
    }

    /// A handle for submitting appends.
    pub fn handle(&self) -> WriterHandle {
        self.handle.clone()
    }

    /// Commits everything submitted so far, then stops the thread. Appends submitted after
    /// this call fail with `Stopped`.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        let _ = self.handle.tx.send(Request::Stop);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the log writer thread panicked");
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

fn run(
    store: &dyn LogStore,
    config: WriterConfig,
    rx: &Receiver<Request>,
    shared: &Shared,
    on_fatal: Box<dyn FnOnce(StoreError) + Send>,
) {
    let mut on_fatal = Some(on_fatal);
    let mut stopping = false;
    let mut group: Vec<(Append, Completion)> = Vec::new();
    while !stopping {
        // Block for the first request of a group.
        match rx.recv() {
            Ok(Request::Append(append, done)) => group.push((append, done)),
            Ok(Request::Stop) | Err(_) => break,
        }
        let mut bytes = group[0].0.batch.len() as u64;
        let deadline = Instant::now() + config.commit_window;
        while bytes < config.commit_bytes_max {
            let next = match rx.try_recv() {
                Ok(request) => Some(request),
                Err(TryRecvError::Disconnected) => None,
                Err(TryRecvError::Empty) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        None
                    } else {
                        rx.recv_timeout(left).ok()
                    }
                }
            };
            match next {
                Some(Request::Append(append, done)) => {
                    bytes += append.batch.len() as u64;
                    group.push((append, done));
                }
                Some(Request::Stop) => {
                    stopping = true;
                    break;
                }
                None => break,
            }
        }
        if let Err(fatal) = commit_group(store, &mut group, shared) {
            shared.stopped.store(true, Ordering::Release);
            if let Some(hook) = on_fatal.take() {
                hook(fatal);
            }
            break;
        }
    }
    // Shutdown: commit what is already queued. After a fatal error, fail it instead.
    let fatal = shared.stopped.swap(true, Ordering::AcqRel);
    let mut rest: Vec<(Append, Completion)> = rx
        .try_iter()
        .filter_map(|request| match request {
            Request::Append(append, done) => Some((append, done)),
            Request::Stop => None,
        })
        .collect();
    if fatal {
        for (append, done) in rest {
            shared
                .queued_bytes
                .fetch_sub(append.batch.len() as u64, Ordering::AcqRel);
            done(Err(AppendFailure::Stopped));
        }
    } else {
        while !rest.is_empty() {
            let mut bytes = 0u64;
            let take = rest
                .iter()
                .take_while(|(append, _)| {
                    bytes += append.batch.len() as u64;
                    bytes <= config.commit_bytes_max
                })
                .count()
                .max(1);
            let mut chunk: Vec<_> = rest.drain(..take).collect();
            if let Err(fatal) = commit_group(store, &mut chunk, shared) {
                if let Some(hook) = on_fatal.take() {
                    hook(fatal);
                }
                for (append, done) in rest.drain(..) {
                    shared
                        .queued_bytes
                        .fetch_sub(append.batch.len() as u64, Ordering::AcqRel);
                    done(Err(AppendFailure::Stopped));
                }
            }
        }
    }
}

/// Appends `group` in one transaction and completes every append. Returns the error if it is
/// fatal. Leaves `group` empty.
fn commit_group(
    store: &dyn LogStore,
    group: &mut Vec<(Append, Completion)>,
    shared: &Shared,
) -> Result<(), StoreError> {
    let (mut appends, completions): (Vec<Append>, Vec<Completion>) = group.drain(..).unzip();
    let bytes: u64 = appends.iter().map(|a| a.batch.len() as u64).sum();
    let started = Instant::now();
    let outcome = store.append(&mut appends);
    let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    shared
        .stats
        .commit_nanos
        .fetch_add(nanos, Ordering::Relaxed);
    shared.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
    let stats = &shared.stats;
    match outcome {
        Ok(results) => {
            stats.commits.fetch_add(1, Ordering::Relaxed);
            debug_assert_eq!(results.len(), completions.len(), "one result per append");
            for ((result, done), append) in results.into_iter().zip(completions).zip(&appends) {
                match &result {
                    Ok(_) => {
                        stats.appends.fetch_add(1, Ordering::Relaxed);
                        stats
                            .bytes
                            .fetch_add(append.batch.len() as u64, Ordering::Relaxed);
                    }
                    Err(_) => {
                        stats.failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                done(result.map_err(AppendFailure::Rejected));
            }
            Ok(())
        }
        Err(error) => {
            stats
                .failures
                .fetch_add(completions.len() as u64, Ordering::Relaxed);
            let fatal = !matches!(error, StoreError::Full(_));
            if fatal {
                tracing::error!("log commit failed: {error}");
            } else {
                tracing::warn!("append refused: {error}");
            }
            for done in completions {
                done(Err(AppendFailure::Store(error.clone())));
            }
            if fatal { Err(error) } else { Ok(()) }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::mpsc::channel;

    use weir_core::log_store::{PartitionId, TopicConfig};
    use weir_kafka::record_batch::{BatchBuilder, Record};
    use weir_log::faulty::{FailAfter, Fault};
    use weir_log::{LmdbLog, LogOptions};

    use super::*;

    const KEEP: TopicConfig = TopicConfig {
        retention_ms: -1,
        retention_bytes: -1,
    };

    fn batch(value: &[u8]) -> Vec<u8> {
        let mut builder = BatchBuilder::new();
        builder.push(Record {
            timestamp_ms: 1,
            key: None,
            value: Some(value),
            headers: &[],
        });
        builder.finish()
    }

    fn config(window_us: u64) -> WriterConfig {
        WriterConfig {
            commit_window: Duration::from_micros(window_us),
            commit_bytes_max: 1 << 20,
            queue_bytes_max: 64 << 20,
        }
    }

    fn lmdb(dir: &std::path::Path) -> (Arc<LmdbLog>, PartitionId) {
        let (log, _) = LmdbLog::open(dir, LogOptions::default()).unwrap();
        let pid = log.create_topic("t", 1, KEEP).unwrap().partitions[0];
        (Arc::new(log), pid)
    }

    type Outcomes = Arc<Mutex<Vec<(usize, Result<Appended, AppendFailure>)>>>;

    fn recorder(outcomes: &Outcomes, index: usize, tx: &Sender<()>) -> Completion {
        let (outcomes, tx) = (outcomes.clone(), tx.clone());
        Box::new(move |result| {
            outcomes.lock().unwrap().push((index, result));
            let _ = tx.send(());
        })
    }

    #[test]
    fn many_appenders_share_commits_and_every_completion_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let (log, pid) = lmdb(dir.path());
        let writer =
            Writer::start(log.clone(), config(2_000), Box::new(|e| panic!("{e}"))).unwrap();
        let (tx, rx) = channel();
        let outcomes: Outcomes = Arc::default();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let (handle, outcomes, tx) = (writer.handle(), outcomes.clone(), tx.clone());
                std::thread::spawn(move || {
                    for i in 0..25 {
                        let index = t * 100 + i;
                        let append = Append {
                            partition: pid,
                            batch: batch(format!("{index}").as_bytes()),
                        };
                        handle
                            .submit(append, recorder(&outcomes, index, &tx))
                            .unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        for _ in 0..200 {
            rx.recv_timeout(Duration::from_secs(30)).unwrap();
        }
        let outcomes = outcomes.lock().unwrap();
        let mut offsets: Vec<i64> = outcomes
            .iter()
            .map(|(_, r)| r.as_ref().unwrap().base_offset)
            .collect();
        offsets.sort_unstable();
        assert_eq!(offsets, (0..200).collect::<Vec<i64>>());
        let stats = writer.handle();
        let commits = stats.stats().commits.load(Ordering::Relaxed);
        assert!(
            (1..200).contains(&commits),
            "{commits} commits for 200 appends"
        );
        assert_eq!(stats.queued_bytes(), 0);
        // Durable means readable by anyone, now.
        assert_eq!(log.partition(pid).unwrap().high_watermark, 200);
        writer.shutdown();
    }

    #[test]
    fn a_rejected_batch_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (log, pid) = lmdb(dir.path());
        let writer = Writer::start(log, config(0), Box::new(|e| panic!("{e}"))).unwrap();
        let (tx, rx) = channel();
        let outcomes: Outcomes = Arc::default();
        let handle = writer.handle();
        let mut corrupt = batch(b"x");
        corrupt[30] ^= 1;
        handle
            .submit(
                Append {
                    partition: pid,
                    batch: corrupt,
                },
                recorder(&outcomes, 0, &tx),
            )
            .unwrap();
        handle
            .submit(
                Append {
                    partition: pid,
                    batch: batch(b"ok"),
                },
                recorder(&outcomes, 1, &tx),
            )
            .unwrap();
        for _ in 0..2 {
            rx.recv_timeout(Duration::from_secs(30)).unwrap();
        }
        let outcomes = outcomes.lock().unwrap();
        let by_index = |i| &outcomes.iter().find(|(index, _)| *index == i).unwrap().1;
        assert!(matches!(
            by_index(0),
            Err(AppendFailure::Rejected(AppendError::InvalidBatch(_)))
        ));
        assert_eq!(by_index(1).as_ref().unwrap().base_offset, 0);
    }

    #[test]
    fn a_full_store_fails_the_group_and_the_writer_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = LmdbLog::open(dir.path(), LogOptions::default()).unwrap();
        let store = Arc::new(FailAfter::new(log, 1, Fault::Full));
        let pid = store.create_topic("t", 1, KEEP).unwrap().partitions[0];
        let writer = Writer::start(store.clone(), config(0), Box::new(|e| panic!("{e}"))).unwrap();
        let (tx, rx) = channel();
        let outcomes: Outcomes = Arc::default();
        let handle = writer.handle();
        handle
            .submit(
                Append {
                    partition: pid,
                    batch: batch(b"a"),
                },
                recorder(&outcomes, 0, &tx),
            )
            .unwrap();
        rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert!(matches!(
            outcomes.lock().unwrap()[0].1,
            Err(AppendFailure::Store(StoreError::Full(_)))
        ));
        store.rearm(u64::MAX);
        handle
            .submit(
                Append {
                    partition: pid,
                    batch: batch(b"b"),
                },
                recorder(&outcomes, 1, &tx),
            )
            .unwrap();
        rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(
            outcomes.lock().unwrap()[1].1.as_ref().unwrap().base_offset,
            0
        );
    }

    #[test]
    fn a_fatal_error_stops_the_writer_and_runs_the_hook() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = LmdbLog::open(dir.path(), LogOptions::default()).unwrap();
        let store = Arc::new(FailAfter::new(log, 1, Fault::Fatal));
        let pid = store.create_topic("t", 1, KEEP).unwrap().partitions[0];
        let (fatal_tx, fatal_rx) = channel();
        let writer = Writer::start(
            store,
            config(0),
            Box::new(move |e| fatal_tx.send(e).unwrap()),
        )
        .unwrap();
        let (tx, rx) = channel();
        let outcomes: Outcomes = Arc::default();
        let handle = writer.handle();
        handle
            .submit(
                Append {
                    partition: pid,
                    batch: batch(b"a"),
                },
                recorder(&outcomes, 0, &tx),
            )
            .unwrap();
        rx.recv_timeout(Duration::from_secs(30)).unwrap();
        let fatal = fatal_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert!(matches!(fatal, StoreError::Fatal(_)));
        assert!(matches!(
            outcomes.lock().unwrap()[0].1,
            Err(AppendFailure::Store(StoreError::Fatal(_)))
        ));
        // Nothing is completed successfully after a fatal error.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !handle.shared.stopped.load(Ordering::Acquire) {
            assert!(Instant::now() < deadline, "writer never stopped");
            std::thread::yield_now();
        }
        handle
            .submit(
                Append {
                    partition: pid,
                    batch: batch(b"b"),
                },
                recorder(&outcomes, 1, &tx),
            )
            .unwrap();
        rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(outcomes.lock().unwrap()[1].1, Err(AppendFailure::Stopped));
    }

    #[test]
    fn the_queue_is_bounded_in_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = LmdbLog::open(dir.path(), LogOptions::default()).unwrap();
        // Appends held in the store, as on a stalled disk, keep the queue full.
        let store = Arc::new(FailAfter::new(log, u64::MAX, Fault::Fatal));
        let pid = store.create_topic("t", 1, KEEP).unwrap().partitions[0];
        store.hold_appends();
        let one = batch(&[7u8; 1000]).len() as u64;
        let small = WriterConfig {
            commit_window: Duration::ZERO,
            commit_bytes_max: 1,
            queue_bytes_max: 3 * one,
        };
        let writer = Writer::start(store.clone(), small, Box::new(|e| panic!("{e}"))).unwrap();
        let handle = writer.handle();
        let (tx, rx) = channel();
        let outcomes: Outcomes = Arc::default();
        for i in 0..3 {
            let append = Append {
                partition: pid,
                batch: batch(&[7u8; 1000]),
            };
            handle.submit(append, recorder(&outcomes, i, &tx)).unwrap();
        }
        let append = Append {
            partition: pid,
            batch: batch(&[7u8; 1000]),
        };
        let busy = handle
            .submit(append, recorder(&outcomes, 3, &tx))
            .unwrap_err();
        assert_eq!(busy.append.batch.len() as u64, one);
        assert_eq!(handle.queued_bytes(), 3 * one);
        store.release();
        for _ in 0..3 {
            rx.recv_timeout(Duration::from_secs(30)).unwrap();
        }
        assert_eq!(handle.queued_bytes(), 0);
        handle.submit(busy.append, busy.done).unwrap();
        rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(store.partition(pid).unwrap().high_watermark, 4);
    }

    #[test]
    fn shutdown_commits_what_was_submitted() {
        let dir = tempfile::tempdir().unwrap();
        let (log, pid) = lmdb(dir.path());
        let writer =
            Writer::start(log.clone(), config(50_000), Box::new(|e| panic!("{e}"))).unwrap();
        let handle = writer.handle();
        let (tx, rx) = channel();
        let outcomes: Outcomes = Arc::default();
        for i in 0..50 {
            let append = Append {
                partition: pid,
                batch: batch(b"s"),
            };
            handle.submit(append, recorder(&outcomes, i, &tx)).unwrap();
        }
        writer.shutdown();
        assert_eq!(rx.try_iter().count(), 50);
        assert!(outcomes.lock().unwrap().iter().all(|(_, r)| r.is_ok()));
        assert_eq!(log.partition(pid).unwrap().high_watermark, 50);
        // After shutdown, submits fail with Stopped.
        handle
            .submit(
                Append {
                    partition: pid,
                    batch: batch(b"late"),
                },
                recorder(&outcomes, 99, &tx),
            )
            .unwrap();
        assert_eq!(
            outcomes.lock().unwrap().last().unwrap().1,
            Err(AppendFailure::Stopped)
        );
    }
}
