//! The group coordinator's thread: one thread owns every consumer group's membership
//! ([`weir_core::kafka::coordinator::Coordinator`]), takes the group requests of every
//! shard's connections over a channel, gives the state machine the time, and sends each
//! answer back the way the request said (the owning shard's inbox). Commits and group
//! deletions it lets through run on the log's writer thread, in the order it decided them.
//!
//! Group requests are rare next to produce and fetch, so one thread serves them all and no
//! group state is shared. The channel is unbounded, but what it can hold is bounded: a
//! connection has at most `ANSWERS_QUEUED_MAX` requests in flight, and connections are
//! bounded by `server.connections_max`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use weir_core::kafka::KafkaOpResult;
use weir_core::kafka::coordinator::{Action, Coordinator, GroupLimits, GroupOp, Waiter};
use weir_core::log_store::LogStore;
use weir_kafka::error::ErrorCode;

use crate::writer::{Work, WriterHandle};

/// Where an answer goes.
pub type Deliver = Box<dyn FnOnce(KafkaOpResult) + Send>;

/// How often rebalance deadlines and session timeouts are checked.
const TICK_EVERY: Duration = Duration::from_millis(100);

enum Message {
    Op(GroupOp, Deliver),
    Stop,
}

/// Sends group requests to the coordinator thread.
#[derive(Clone)]
pub struct CoordinatorHandle {
    tx: mpsc::Sender<Message>,
}

impl std::fmt::Debug for CoordinatorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CoordinatorHandle")
    }
}

impl CoordinatorHandle {
    /// Hands `op` to the coordinator; `deliver` gets its answer (COORDINATOR_NOT_AVAILABLE
    /// if the coordinator has stopped).
    pub fn submit(&self, op: GroupOp, deliver: Deliver) {
        if let Err(mpsc::SendError(Message::Op(op, deliver))) =
            self.tx.send(Message::Op(op, deliver))
        {
            deliver(op.failed(ErrorCode::CoordinatorNotAvailable.code()));
        }
    }
}

/// The running coordinator thread.
#[derive(Debug)]
pub struct CoordinatorThread {
    handle: CoordinatorHandle,
    thread: Option<JoinHandle<()>>,
}

impl CoordinatorThread {
    /// Starts the thread. `store` is read for groups that only have committed offsets;
    /// `writer` stores commits and deletions.
    pub fn start(
        limits: GroupLimits,
        store: Arc<dyn LogStore>,
        writer: WriterHandle,
    ) -> std::io::Result<CoordinatorThread> {
        let (tx, rx) = mpsc::channel();
        // Member ids carry the start time, so an id from an earlier run is never reissued.
        let incarnation = u64::try_from(crate::clock::wall_ms()).unwrap_or(0);
        let thread = std::thread::Builder::new()
            .name("weir-groups".into())
            .spawn(move || run(Coordinator::new(limits, incarnation), &rx, &*store, &writer))?;
        Ok(CoordinatorThread {
            handle: CoordinatorHandle { tx },
            thread: Some(thread),
        })
    }

    /// A handle for the shards.
    pub fn handle(&self) -> CoordinatorHandle {
        self.handle.clone()
    }

    /// Stops the thread; requests still waiting (a JoinGroup in a rebalance) are dropped
    /// with their connections.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.handle.tx.send(Message::Stop);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the group coordinator thread panicked");
        }
    }
}

impl Drop for CoordinatorThread {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(
    mut coordinator: Coordinator,
    rx: &mpsc::Receiver<Message>,
    store: &dyn LogStore,
    writer: &WriterHandle,
) {
    let mut waiting: HashMap<Waiter, Deliver> = HashMap::new();
    let mut next_waiter: Waiter = 0;
    let mut actions = Vec::new();
    let mut last_tick = crate::clock::now();
    loop {
        match rx.recv_timeout(TICK_EVERY) {
            Ok(Message::Op(op, deliver)) => {
                let waiter = next_waiter;
                next_waiter += 1;
                waiting.insert(waiter, deliver);
                let now = crate::clock::monotonic_ms(crate::clock::now());
                coordinator.handle(waiter, op, now, store, &mut actions);
            }
            Ok(Message::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        let now = crate::clock::now();
        if now.duration_since(last_tick) >= TICK_EVERY {
            last_tick = now;
            coordinator.tick(crate::clock::monotonic_ms(now), &mut actions);
        }
        for action in actions.drain(..) {
            match action {
                Action::Reply(waiter, result) => {
                    if let Some(deliver) = waiting.remove(&waiter) {
                        deliver(result);
                    }
                }
                Action::Write(waiter, op) => {
                    let Some(deliver) = waiting.remove(&waiter) else {
                        continue;
                    };
                    writer.work(Work::Kafka { op, done: deliver });
                }
            }
        }
    }
}
