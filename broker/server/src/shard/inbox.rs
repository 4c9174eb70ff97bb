//! A shard's inbox: results of work done on other threads (today: the log writer), pushed
//! into a bounded lock-free queue and announced through the shard's waker.

use std::sync::Arc;

use crossbeam_queue::ArrayQueue;
use weir_core::kafka::KafkaOpResult;

use super::epoll::Waker;

/// Messages a shard can hold before a producer has to wait for it to catch up.
const INBOX_CAPACITY: usize = 16 * 1024;

/// The result of an operation a connection asked for.
#[derive(Debug)]
pub(super) struct Done {
    pub(super) slot: usize,
    pub(super) generation: u32,
    pub(super) token: u64,
    pub(super) result: KafkaOpResult,
}

/// The queue and the shard's waker.
#[derive(Debug)]
pub(super) struct Inbox {
    queue: ArrayQueue<Done>,
    waker: Arc<Waker>,
    /// The shard has stopped: results are dropped instead of waited for.
    closed: std::sync::atomic::AtomicBool,
}

impl Inbox {
    pub(super) fn new(waker: Arc<Waker>) -> Inbox {
        Inbox {
            queue: ArrayQueue::new(INBOX_CAPACITY),
            waker,
            closed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Delivers `done` and wakes the shard. When the inbox is full the producer waits for the
    /// shard to drain it: back-pressure on the writer, never a dropped result.
    pub(super) fn push(&self, mut done: Done) {
        loop {
            if self.closed.load(std::sync::atomic::Ordering::Acquire) {
                return;
            }
            match self.queue.push(done) {
                Ok(()) => break,
                Err(back) => {
                    done = back;
                    self.waker.wake();
                    std::thread::yield_now();
                }
            }
        }
        self.waker.wake();
    }

    /// Marks the shard stopped: later results are dropped.
    pub(super) fn close(&self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// The next message, if any.
    pub(super) fn pop(&self) -> Option<Done> {
        self.queue.pop()
    }
}
