//! A shard's inbox: results of work done on other threads (the log writer, the group
//! coordinator), pushed into a bounded lock-free queue and announced through the shard's
//! waker.

use std::sync::Arc;

use crossbeam_queue::ArrayQueue;
use weir_core::kafka::KafkaOpResult;
use weir_core::mqtt_connection::Stored;
use weir_core::mqtt_kafka::SessionRecord;
use weir_mqtt::ReasonCode;

use super::epoll::Waker;

/// Messages a shard can hold before a producer has to wait for it to catch up. The queue's
/// slots are written when it is made, so they are resident from the start: 4,096 of 64 bytes
/// are 256 KiB per shard (16,384 of 160 bytes were 2.5 MiB, most of an idle broker's
/// anonymous memory).
const INBOX_CAPACITY: usize = 4 * 1024;

/// The result of an operation a connection asked for.
#[derive(Debug)]
pub(super) struct Done {
    pub(super) slot: usize,
    pub(super) generation: u32,
    pub(super) token: u64,
    pub(super) result: Outcome,
}

/// What came back.
#[derive(Debug)]
pub(super) enum Outcome {
    /// A Kafka operation's result (boxed: it is the largest, and the queue's slots are sized
    /// by the largest).
    Kafka(Box<KafkaOpResult>),
    /// An MQTT publish was stored (or not): the code for its PUBACK or PUBREC, and where it
    /// was stored.
    MqttStored(Box<Stored>),
    /// A run of MQTT publishes was stored (or not); its tokens are inside (the answer's own
    /// token is 0).
    MqttStoredRun(Box<StoredRun>),
    /// A QoS 2 exchange's duplicate-check key is forgotten: PUBCOMP.
    MqttReleased,
    /// The session a CONNECT resumes (or none), or the CONNACK code to refuse it with.
    MqttSession(Result<Option<Box<SessionRecord>>, ReasonCode>),
    /// Another connection takes this one's client id (here) over: close this one, store its
    /// session, then let go of the id.
    TakeOver(String),
    /// The connection that had this one's client id is gone.
    TakenOver,
}

/// What a run's answer carries back to its connection: the publishes' tokens, in order,
/// and the run's outcome (where its first record is).
#[derive(Debug)]
pub(super) struct StoredRun {
    pub(super) tokens: Vec<u64>,
    pub(super) stored: Stored,
}

impl StoredRun {
    /// Hands each publish's outcome, by token and in order, to `f` until it returns false;
    /// one `Stored` serves them all (nothing is allocated per publish).
    pub(super) fn each(&self, mut f: impl FnMut(u64, &Stored) -> bool) {
        let mut one = Stored {
            reason: self.stored.reason,
            reason_string: self.stored.reason_string.clone(),
            refused_by_plugin: self.stored.refused_by_plugin,
            at: Vec::with_capacity(1),
        };
        let first = self.stored.at.first().copied();
        for (i, &token) in self.tokens.iter().enumerate() {
            one.at.clear();
            one.at
                .extend(first.map(|(partition, base)| (partition, base + i as i64)));
            if !f(token, &one) {
                return;
            }
        }
    }
}

/// A connection's address: its shard, slot and generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Owner {
    pub(super) shard: usize,
    pub(super) slot: usize,
    pub(super) generation: u32,
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

    /// Asks the shard for a delivery pass (connections wait to catch up on the log).
    pub(super) fn notify_data(&self) {
        self.waker.notify_data();
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

#[cfg(test)]
mod tests {
    #[test]
    fn an_inbox_slot_stays_small() {
        // The inbox's memory is its capacity times this, resident from the start.
        assert!(std::mem::size_of::<super::Done>() <= 64);
    }
}
