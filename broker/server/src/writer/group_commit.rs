//! Group commit: the writer thread, the handle that submits to it, and how many appends become
//! few durable commits (see the module above for the whole story). What the thread carries
//! out besides appends comes in as [`CarryOut`]: the typed work of `work.rs`, which this file
//! does not know.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::thread::JoinHandle;
use std::time::Duration;

use weir_core::log_store::{Append, AppendError, Appended, LogStore, PartitionId, StoreError};

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

impl AppendFailure {
    /// An append refused because the queue is full ([`Busy`]), as its waiter is told: the
    /// store is full for now, retry later.
    pub fn queue_full() -> AppendFailure {
        AppendFailure::Store(StoreError::Full(
            "the append queue is full (storage.append_queue_bytes_max)".into(),
        ))
    }
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
    /// Complete an append only after a sync covers its commit (fsync durability). False in
    /// relaxed durability, where completion follows the commit.
    pub sync_before_ack: bool,
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
    /// Time of each store commit.
    pub commit_latency: crate::histogram::Histogram,
}

/// A completion that runs exactly once: if it is dropped unrun (a request left in the
/// channel when the writer thread ended), it runs with `Stopped`, so no caller waits forever.
struct Ack(Option<Completion>);

impl Ack {
    fn complete(mut self, result: Result<Appended, AppendFailure>) {
        if let Some(done) = self.0.take() {
            done(result);
        }
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        if let Some(done) = self.0.take() {
            done(Err(AppendFailure::Stopped));
        }
    }
}

/// Told, on the writer thread, the partition, base offset and last offset of every append a
/// commit (and its sync) made durable: once before their submitters are answered, once after.
pub type AppendListener = Box<dyn Fn(AppendPhase, &[(PartitionId, i64, i64)]) + Send + Sync>;

/// Where the writer is with appends it made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendPhase {
    /// Durable; their submitters are not answered yet.
    Stored,
    /// Their submitters have their answers.
    Answered,
}

/// Work for the writer thread besides appends (the writer's typed `Work`).
pub trait CarryOut: Send {
    /// Carries the work out on the writer thread; `writer` takes the appends it makes.
    fn run(self: Box<Self>, store: &dyn LogStore, writer: &WriterHandle);
    /// The writer stopped before it could run: every waiter is told it failed.
    fn fail(self: Box<Self>);
}

/// Work that is carried out exactly once: dropped undone, its waiters are told it failed.
struct Pending(Option<Box<dyn CarryOut>>);

impl Pending {
    fn run(mut self, store: &dyn LogStore, writer: &WriterHandle) {
        if let Some(work) = self.0.take() {
            work.run(store, writer);
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(work) = self.0.take() {
            work.fail();
        }
    }
}

enum Request {
    Append(Append, Ack),
    Work(Pending),
    Stop,
}

/// Submits appends to the writer. Cheap to clone; one per shard.
#[derive(Clone)]
pub struct WriterHandle {
    tx: Sender<Request>,
    shared: Arc<WriterShared>,
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

struct WriterShared {
    /// Told each time appends were completed successfully (their data is readable).
    on_appended: std::sync::OnceLock<AppendListener>,
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
        if let Err(returned) = self.tx.send(Request::Append(append, Ack(Some(done)))) {
            // The writer is gone; dropping the request runs its completion with `Stopped`.
            self.shared.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
            drop(returned);
        }
        Ok(())
    }

    /// Queues every append of `appends` or, if the queue cannot take them all, none: they
    /// come back untouched. Produce uses it so a partition's batches are never half queued.
    pub fn submit_all(
        &self,
        appends: Vec<(Append, Completion)>,
    ) -> Result<(), Vec<(Append, Completion)>> {
        if self.shared.stopped.load(Ordering::Acquire) {
            for (_, done) in appends {
                done(Err(AppendFailure::Stopped));
            }
            return Ok(());
        }
        let bytes: u64 = appends.iter().map(|(a, _)| a.batch.len() as u64).sum();
        let before = self.shared.queued_bytes.fetch_add(bytes, Ordering::AcqRel);
        if before > 0 && before + bytes > self.shared.queue_bytes_max {
            self.shared.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
            return Err(appends);
        }
        for (append, done) in appends {
            let len = append.batch.len() as u64;
            if let Err(returned) = self.tx.send(Request::Append(append, Ack(Some(done)))) {
                self.shared.queued_bytes.fetch_sub(len, Ordering::AcqRel);
                drop(returned);
            }
        }
        Ok(())
    }

    /// Queues `work` for the writer thread, after the appends submitted before it.
    pub fn work(&self, work: impl CarryOut + 'static) {
        let work: Box<dyn CarryOut> = Box::new(work);
        if self.shared.stopped.load(Ordering::Acquire) {
            work.fail();
            return;
        }
        // If the writer is gone, the request comes back and dropping it fails the work.
        let _ = self.tx.send(Request::Work(Pending(Some(work))));
    }

    /// Sets the function told each time appends complete successfully, with each stored
    /// append's partition, base offset and last offset (once; later calls are ignored). The shards use it
    /// to wake fetches waiting for data and to deliver new records to MQTT subscribers.
    pub fn on_appended(&self, listener: AppendListener) {
        let _ = self.shared.on_appended.set(listener);
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
        let shared = Arc::new(WriterShared {
            on_appended: std::sync::OnceLock::new(),
            queued_bytes: AtomicU64::new(0),
            queue_bytes_max: config.queue_bytes_max,
            stopped: AtomicBool::new(false),
            stats: WriterStats::default(),
        });
        let thread_shared = shared.clone();
        // Work the writer carries out submits its appends like any caller.
        let thread_handle = WriterHandle {
            tx: tx.clone(),
            shared: shared.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("weir-writer".into())
            .spawn(move || {
                let mut on_fatal = Some(on_fatal);
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let channel = (&rx, &thread_handle);
                    run(&*store, config, channel, &thread_shared, &mut on_fatal)
                }));
                if ran.is_err() {
                    // A bug, not an operating error: stop acknowledging and let the server
                    // exit. Requests still queued complete with `Stopped` as they drop.
                    thread_shared.stopped.store(true, Ordering::Release);
                    if let Some(hook) = on_fatal.take() {
                        hook(StoreError::Fatal("the log writer thread panicked".into()));
                    }
                }
            })?;
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

/// Completions of a committed group waiting for the sync that makes it durable, with the
/// partition each append went to.
type Held = Vec<(PartitionId, Result<Appended, AppendFailure>, Ack)>;

fn run(
    store: &dyn LogStore,
    config: WriterConfig,
    (rx, handle): (&Receiver<Request>, &WriterHandle),
    shared: &WriterShared,
    on_fatal: &mut Option<Box<dyn FnOnce(StoreError) + Send>>,
) {
    let mut writer = Committer {
        store,
        handle,
        shared,
        config,
        held: Vec::new(),
        linger: Duration::ZERO,
        released_by_commit: false,
    };
    let outcome = writer.serve(rx);
    shared.stopped.store(true, Ordering::Release);
    // Whatever is still queued after a stop request was submitted before it: commit it, and
    // run the operations among it in order. After a fatal error, fail it instead.
    let mut rest: Vec<Request> = rx.try_iter().collect();
    let outcome = outcome.and_then(|()| {
        let mut chunk: Vec<(Append, Ack)> = Vec::new();
        let mut bytes = 0u64;
        for request in rest.drain(..) {
            match request {
                Request::Append(append, done) => {
                    bytes += append.batch.len() as u64;
                    chunk.push((append, done));
                    if bytes >= config.commit_bytes_max {
                        writer.commit(std::mem::take(&mut chunk))?;
                        bytes = 0;
                    }
                }
                Request::Work(work) => {
                    if !chunk.is_empty() {
                        writer.commit(std::mem::take(&mut chunk))?;
                        bytes = 0;
                    }
                    work.run(store, handle);
                }
                Request::Stop => {}
            }
        }
        if !chunk.is_empty() {
            writer.commit(chunk)?;
        }
        writer.make_durable()
    });
    if let Err(fatal) = outcome {
        writer.fail_held(&fatal);
        // Requests not reached fail as they drop (appends with `Stopped`, operations with
        // `None`); only the queue accounting needs a hand.
        for request in rest.drain(..).chain(rx.try_iter()) {
            if let Request::Append(append, _) = &request {
                shared
                    .queued_bytes
                    .fetch_sub(append.batch.len() as u64, Ordering::AcqRel);
            }
        }
        if let Some(hook) = on_fatal.take() {
            hook(fatal);
        }
    }
}

/// The writer thread's state: the store, the counters, and the completions of the last
/// committed group while they wait for a sync.
struct Committer<'a> {
    store: &'a dyn LogStore,
    /// Where the work it carries out submits appends.
    handle: &'a WriterHandle,
    shared: &'a WriterShared,
    config: WriterConfig,
    held: Held,
    /// How long to wait for a covering commit before syncing: a moving average of commit
    /// durations, at most [`LINGER_MAX`].
    linger: Duration,
    /// The last commit completed a held group, whose clients may be about to send more.
    released_by_commit: bool,
}

/// Upper bound of the wait for a covering commit.
const LINGER_MAX: Duration = Duration::from_millis(2);

impl Committer<'_> {
    /// Forms and commits groups until a stop request or a fatal error.
    fn serve(&mut self, rx: &Receiver<Request>) -> Result<(), StoreError> {
        loop {
            // With nothing more queued, make the held group durable now rather than wait for a
            // next commit that may be long in coming.
            let first = match self.next_request(rx)? {
                Some(request) => request,
                None => return Ok(()),
            };
            let (append, done) = match first {
                Request::Append(append, done) => (append, done),
                Request::Work(work) => {
                    work.run(self.store, self.handle);
                    continue;
                }
                Request::Stop => return Ok(()),
            };
            let mut bytes = append.batch.len() as u64;
            let mut group = vec![(append, done)];
            let mut stop = false;
            let mut work = None;
            let deadline = crate::clock::now() + self.config.commit_window;
            while bytes < self.config.commit_bytes_max {
                let next = match rx.try_recv() {
                    Ok(request) => Some(request),
                    Err(TryRecvError::Disconnected) => None,
                    Err(TryRecvError::Empty) => {
                        let left = deadline.saturating_duration_since(crate::clock::now());
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
                    Some(Request::Work(pending)) => {
                        // Runs after the appends before it are committed.
                        work = Some(pending);
                        break;
                    }
                    Some(Request::Stop) => {
                        stop = true;
                        break;
                    }
                    None => break,
                }
            }
            self.commit(group)?;
            if let Some(work) = work {
                work.run(self.store, self.handle);
            }
            if stop {
                return Ok(());
            }
        }
    }

    /// Appends `group` in one transaction. Its completions are held until a sync covers it,
    /// or run at once when the store syncs every commit itself (relaxed mode acknowledges
    /// after commit by design). A successful commit also makes the previously held group
    /// durable. Returns the error only if it is fatal.
    fn commit(&mut self, group: Vec<(Append, Ack)>) -> Result<(), StoreError> {
        let (mut appends, completions): (Vec<Append>, Vec<Ack>) = group.into_iter().unzip();
        let bytes: u64 = appends.iter().map(|a| a.batch.len() as u64).sum();
        let stats = &self.shared.stats;
        let started = crate::clock::now();
        let outcome = self.store.append(&mut appends);
        let took = crate::clock::since(started);
        stats.commit_latency.observe(took);
        self.linger = ((self.linger * 7 + took) / 8).min(LINGER_MAX);
        self.shared.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
        match outcome {
            Ok(results) => {
                stats.commits.fetch_add(1, Ordering::Relaxed);
                debug_assert_eq!(results.len(), completions.len(), "one result per append");
                let mut stored_any = false;
                let mut finished: Held = Vec::with_capacity(results.len());
                for ((result, done), append) in results.into_iter().zip(completions).zip(&appends) {
                    if result.is_ok() {
                        stored_any = true;
                        stats.appends.fetch_add(1, Ordering::Relaxed);
                        let len = append.batch.len() as u64;
                        stats.bytes.fetch_add(len, Ordering::Relaxed);
                    } else {
                        stats.failures.fetch_add(1, Ordering::Relaxed);
                    }
                    finished.push((
                        append.partition,
                        result.map_err(AppendFailure::Rejected),
                        done,
                    ));
                }
                // A commit that stored something synced the file, and with it the meta page
                // of the held group: that group is durable now.
                self.released_by_commit = stored_any && !self.held.is_empty();
                if stored_any {
                    let held = std::mem::take(&mut self.held);
                    self.release(held);
                }
                if self.config.sync_before_ack {
                    self.held.extend(finished);
                } else {
                    self.release(finished);
                }
                if !stored_any {
                    // Nothing was written, so nothing was synced: a held group must not wait
                    // for a covering commit that may not come while the queue stays busy.
                    self.make_durable()?;
                }
                Ok(())
            }
            Err(error) => {
                let n = completions.len() as u64;
                stats.failures.fetch_add(n, Ordering::Relaxed);
                let fatal = !matches!(error, StoreError::Full(_));
                if fatal {
                    tracing::error!("log commit failed: {error}");
                } else {
                    tracing::warn!("append refused: {error}");
                }
                for done in completions {
                    done.complete(Err(AppendFailure::Store(error.clone())));
                }
                if fatal {
                    return Err(error);
                }
                // The held group is still waiting for a sync; do not let it wait behind
                // refused groups.
                self.make_durable()
            }
        }
    }

    /// The next request; `None` when every handle is gone. While a committed group waits for
    /// its sync and nothing is queued, waits up to about one commit's duration for a request
    /// first, if the last commit just completed an earlier group: those clients usually send
    /// their next append within that time, and committing it covers the waiting group with one
    /// sync instead of two. Past that, syncs, so the waiting group is not held much longer
    /// than a sync takes. A lone client (nobody was just completed) gets its sync at once.
    fn next_request(&mut self, rx: &Receiver<Request>) -> Result<Option<Request>, StoreError> {
        match rx.try_recv() {
            Ok(request) => return Ok(Some(request)),
            Err(TryRecvError::Disconnected) => return Ok(None),
            Err(TryRecvError::Empty) => {}
        }
        if !self.held.is_empty() {
            if self.released_by_commit {
                match rx.recv_timeout(self.linger) {
                    Ok(request) => return Ok(Some(request)),
                    Err(RecvTimeoutError::Disconnected) => return Ok(None),
                    Err(RecvTimeoutError::Timeout) => {}
                }
            }
            self.make_durable()?;
        }
        Ok(rx.recv().ok())
    }

    /// Syncs the store if a committed group waits for it, then completes that group.
    fn make_durable(&mut self) -> Result<(), StoreError> {
        self.released_by_commit = false;
        if self.held.is_empty() {
            return Ok(());
        }
        self.store.sync()?;
        let held = std::mem::take(&mut self.held);
        self.release(held);
        Ok(())
    }

    /// Completes `held`, telling the listener what of it was stored before (so a subscription
    /// made after a producer's acknowledgement knows the record came before it) and after (so
    /// a producer learns where its record went before the record is delivered).
    fn release(&self, held: Held) {
        let stored: Vec<(PartitionId, i64, i64)> = held
            .iter()
            .filter_map(|(partition, result, _)| {
                result
                    .as_ref()
                    .ok()
                    .map(|a| (*partition, a.base_offset, a.last_offset))
            })
            .collect();
        let listener = self.shared.on_appended.get().filter(|_| !stored.is_empty());
        if let Some(listener) = listener {
            listener(AppendPhase::Stored, &stored);
        }
        release(held);
        if let Some(listener) = listener {
            listener(AppendPhase::Answered, &stored);
        }
    }

    /// After a fatal error, the held group is not known to be durable: fail it.
    fn fail_held(&mut self, error: &StoreError) {
        for (_, _, done) in self.held.drain(..) {
            done.complete(Err(AppendFailure::Store(error.clone())));
        }
    }
}

fn release(held: Held) {
    for (_, result, done) in held {
        done.complete(result);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::mpsc::channel;
    use std::time::Instant;

    use weir_core::log_store::{CheckedBatch, PartitionId, TopicConfig};
    use weir_kafka::record_batch::{BatchBuilder, Record};
    use weir_log::faulty::{FailAfter, Fault};
    use weir_log::{LmdbLog, LogOptions};

    use super::*;
    use crate::writer::{Creation, MqttPublish, Retained, StoreDone, Work};
    use weir_mqtt::ReasonCode;

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

    fn checked(value: &[u8]) -> CheckedBatch {
        CheckedBatch::new(batch(value)).unwrap()
    }

    fn append(partition: PartitionId, value: &[u8]) -> Append {
        Append {
            partition,
            batch: checked(value),
            dedup: None,
        }
    }

    fn config(window_us: u64) -> WriterConfig {
        WriterConfig {
            commit_window: Duration::from_micros(window_us),
            commit_bytes_max: 1 << 20,
            queue_bytes_max: 64 << 20,
            sync_before_ack: true,
        }
    }

    fn lmdb(dir: &std::path::Path) -> (Arc<LmdbLog>, PartitionId) {
        let (log, _) = LmdbLog::open(dir, LogOptions::default()).unwrap();
        let pid = log.create_topic("t", 1, KEEP).unwrap().partitions[0];
        (Arc::new(log), pid)
    }

    /// A real log behind a fault injector, with one topic; the injector lets the topic's
    /// creation through before counting `ops`.
    fn faulty(
        dir: &std::path::Path,
        ops: u64,
        fault: Fault,
    ) -> (Arc<FailAfter<LmdbLog>>, PartitionId) {
        let (log, _) = LmdbLog::open(dir, LogOptions::default()).unwrap();
        let store = Arc::new(FailAfter::new(log, ops.saturating_add(1), fault));
        let pid = store.create_topic("t", 1, KEEP).unwrap().partitions[0];
        (store, pid)
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
                            batch: checked(format!("{index}").as_bytes()),
                            dedup: None,
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
        // Refused by the store: a partition that does not exist.
        handle
            .submit(
                append(PartitionId(pid.0 + 100), b"x"),
                recorder(&outcomes, 0, &tx),
            )
            .unwrap();
        handle
            .submit(append(pid, b"ok"), recorder(&outcomes, 1, &tx))
            .unwrap();
        for _ in 0..2 {
            rx.recv_timeout(Duration::from_secs(30)).unwrap();
        }
        let outcomes = outcomes.lock().unwrap();
        let by_index = |i| &outcomes.iter().find(|(index, _)| *index == i).unwrap().1;
        assert!(matches!(
            by_index(0),
            Err(AppendFailure::Rejected(AppendError::UnknownPartition(_)))
        ));
        assert_eq!(by_index(1).as_ref().unwrap().base_offset, 0);
    }

    #[test]
    fn a_full_store_fails_the_group_and_the_writer_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let (store, pid) = faulty(dir.path(), 0, Fault::Full);
        let writer = Writer::start(store.clone(), config(0), Box::new(|e| panic!("{e}"))).unwrap();
        let (tx, rx) = channel();
        let outcomes: Outcomes = Arc::default();
        let handle = writer.handle();
        handle
            .submit(append(pid, b"a"), recorder(&outcomes, 0, &tx))
            .unwrap();
        rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert!(matches!(
            outcomes.lock().unwrap()[0].1,
            Err(AppendFailure::Store(StoreError::Full(_)))
        ));
        store.rearm(u64::MAX);
        handle
            .submit(append(pid, b"b"), recorder(&outcomes, 1, &tx))
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
        let (store, pid) = faulty(dir.path(), 0, Fault::Fatal);
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
            .submit(append(pid, b"a"), recorder(&outcomes, 0, &tx))
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
            .submit(append(pid, b"b"), recorder(&outcomes, 1, &tx))
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
            sync_before_ack: true,
        };
        let writer = Writer::start(store.clone(), small, Box::new(|e| panic!("{e}"))).unwrap();
        let handle = writer.handle();
        let (tx, rx) = channel();
        let outcomes: Outcomes = Arc::default();
        handle
            .submit(append(pid, &[7u8; 1000]), recorder(&outcomes, 0, &tx))
            .unwrap();
        // Three more do not fit beside the first: none of them is queued.
        let three = (1..4)
            .map(|i| (append(pid, &[7u8; 1000]), recorder(&outcomes, i, &tx)))
            .collect();
        let refused = handle.submit_all(three).unwrap_err();
        assert_eq!(refused.len(), 3);
        assert_eq!(handle.queued_bytes(), one);
        let two = (1..3)
            .map(|i| (append(pid, &[7u8; 1000]), recorder(&outcomes, i, &tx)))
            .collect();
        assert!(handle.submit_all(two).is_ok());
        let append = append(pid, &[7u8; 1000]);
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

    /// In fsync durability a lone append completes only after the sync that covers it; in
    /// relaxed durability it completes after its commit, with no sync.
    #[test]
    fn a_lone_append_completes_only_after_its_sync() {
        for sync_before_ack in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let (store, pid) = faulty(dir.path(), u64::MAX, Fault::Fatal);
            store.hold_syncs();
            let writer = Writer::start(
                store.clone(),
                WriterConfig {
                    sync_before_ack,
                    ..config(0)
                },
                Box::new(|e| panic!("{e}")),
            )
            .unwrap();
            let (tx, rx) = channel();
            let outcomes: Outcomes = Arc::default();
            let append = append(pid, b"lone");
            writer
                .handle()
                .submit(append, recorder(&outcomes, 0, &tx))
                .unwrap();
            if sync_before_ack {
                // The writer committed and is now blocked in the sync it needs before acking.
                let deadline = Instant::now() + Duration::from_secs(30);
                while store.syncs_started() == 0 {
                    assert!(Instant::now() < deadline, "the writer never synced");
                    std::thread::yield_now();
                }
                assert_eq!(store.appends_done(), 1);
                assert!(
                    rx.try_recv().is_err(),
                    "acknowledged before the sync returned"
                );
                store.release();
                rx.recv_timeout(Duration::from_secs(30)).unwrap();
                assert_eq!(store.syncs_done(), 1);
            } else {
                rx.recv_timeout(Duration::from_secs(30)).unwrap();
                assert_eq!((store.appends_done(), store.syncs_started()), (1, 0));
                store.release();
            }
            assert!(outcomes.lock().unwrap()[0].1.is_ok());
        }
    }

    /// Under load a commit that stores something covers the group before it: groups complete
    /// with one sync per commit, not two.
    #[test]
    fn under_load_the_next_commit_covers_the_previous_group() {
        let dir = tempfile::tempdir().unwrap();
        let (store, pid) = faulty(dir.path(), u64::MAX, Fault::Fatal);
        // Hold the first append so everything else queues behind it.
        store.hold_appends();
        let small = WriterConfig {
            commit_bytes_max: 1,
            ..config(0)
        };
        let writer = Writer::start(store.clone(), small, Box::new(|e| panic!("{e}"))).unwrap();
        let (tx, rx) = channel();
        let outcomes: Outcomes = Arc::default();
        for i in 0..10 {
            let append = append(pid, b"q");
            writer
                .handle()
                .submit(append, recorder(&outcomes, i, &tx))
                .unwrap();
        }
        store.release();
        for _ in 0..10 {
            rx.recv_timeout(Duration::from_secs(30)).unwrap();
        }
        // Ten one-append commits back to back, then one sync for the last.
        assert_eq!((store.appends_done(), store.syncs_done()), (10, 1));
    }

    /// A held group is made durable and completed even while the queue stays busy with
    /// groups that store nothing.
    #[test]
    fn a_held_group_does_not_wait_behind_refused_groups() {
        let dir = tempfile::tempdir().unwrap();
        let (store, pid) = faulty(dir.path(), u64::MAX, Fault::Fatal);
        store.hold_appends();
        let one_per_group = WriterConfig {
            commit_bytes_max: 1,
            ..config(0)
        };
        let writer =
            Writer::start(store.clone(), one_per_group, Box::new(|e| panic!("{e}"))).unwrap();
        let (tx, rx) = channel();
        let outcomes: Outcomes = Arc::default();
        let handle = writer.handle();
        handle
            .submit(append(pid, b"good"), recorder(&outcomes, 0, &tx))
            .unwrap();
        for i in 1..=10 {
            handle
                .submit(
                    append(PartitionId(pid.0 + 100), b"bad"),
                    recorder(&outcomes, i, &tx),
                )
                .unwrap();
        }
        store.release();
        for _ in 0..11 {
            rx.recv_timeout(Duration::from_secs(30)).unwrap();
        }
        let order: Vec<usize> = outcomes.lock().unwrap().iter().map(|(i, _)| *i).collect();
        let good_at = order.iter().position(|&i| i == 0).unwrap();
        assert!(
            good_at < 10,
            "the good append completed only after every refused one: {order:?}"
        );
    }

    /// Work runs in order with the appends submitted before it (an MQTT publish after five
    /// appends gets offset 5, whether the writer finds its partition or is given it), and
    /// fails once the writer has stopped.
    #[test]
    fn work_runs_in_order_with_appends() {
        let dir = tempfile::tempdir().unwrap();
        let (log, pid) = lmdb(dir.path());
        let writer = Writer::start(log, config(0), Box::new(|e| panic!("{e}"))).unwrap();
        let handle = writer.handle();
        let (tx, rx) = channel();
        let outcomes: Outcomes = Arc::default();
        for i in 0..5 {
            let append = append(pid, b"before");
            handle.submit(append, recorder(&outcomes, i, &tx)).unwrap();
        }
        let publish = |partition| MqttPublish {
            topic: "sensors/1".into(),
            retained: Retained::Unchanged,
            kafka_topic: "t".into(),
            partition,
            batch: checked(b"published"),
            dedup: None,
            creation: Creation {
                create_missing: false,
                partitions: 1,
                topics_max: 10,
            },
            retained_messages_max: 10,
        };
        let (seen_tx, seen_rx) = channel();
        let seen = seen_tx.clone();
        let done: StoreDone = Box::new(move |stored| seen.send(stored).unwrap());
        handle.work(Work::MqttPublish(Box::new(publish(None)), done));
        let stored = seen_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(
            (stored.reason, stored.at),
            (ReasonCode::SUCCESS, vec![(pid, 5)])
        );
        // With the partition found on the shard, the writer only stores.
        let seen = seen_tx.clone();
        let done: StoreDone = Box::new(move |stored| seen.send(stored).unwrap());
        handle.work(Work::MqttPublish(Box::new(publish(Some(pid))), done));
        let stored = seen_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(stored.at, vec![(pid, 6)]);
        writer.shutdown();
        assert_eq!(rx.try_iter().count(), 5);
        let done: StoreDone = Box::new(move |stored| seen_tx.send(stored).unwrap());
        handle.work(Work::MqttPublish(Box::new(publish(Some(pid))), done));
        let late = seen_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(late.reason, ReasonCode::UNSPECIFIED_ERROR);
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
            let append = append(pid, b"s");
            handle.submit(append, recorder(&outcomes, i, &tx)).unwrap();
        }
        writer.shutdown();
        assert_eq!(rx.try_iter().count(), 50);
        assert!(outcomes.lock().unwrap().iter().all(|(_, r)| r.is_ok()));
        assert_eq!(log.partition(pid).unwrap().high_watermark, 50);
        // After shutdown, submits fail with Stopped.
        handle
            .submit(append(pid, b"late"), recorder(&outcomes, 99, &tx))
            .unwrap();
        assert_eq!(
            outcomes.lock().unwrap().last().unwrap().1,
            Err(AppendFailure::Stopped)
        );
    }
}
