//! A shard's event loop on epoll: readiness in, non-blocking `read`/`write` calls out.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::conn::Conn;
use super::epoll::{Epoll, Event, Interest, Waker};
use super::inbox::{Inbox, Outcome, Owner};
use super::mqtt::{HasConn, MqttTail};
use super::{
    ACCEPT_BACKOFF, EVENT_BATCH, READ_CHUNK, SLAB_KEEP, SWEEP_EVERY, ServerConfig, ShardArgs,
    ShardMetrics, ShardsShared,
};

const WAKER_TOKEN: u64 = 0;
const LISTENER_TOKEN_BASE: u64 = 1;
const CONN_TOKEN_BASE: u64 = 1 << 32;

const READ: Interest = Interest {
    read: true,
    write: false,
};

struct Listener {
    socket: TcpListener,
    /// Unwatched until this time after EMFILE.
    paused_until: Option<Instant>,
}

/// An epoll connection: the shared state plus what the kernel is asked to watch.
struct Slot {
    conn: Conn,
    interest: Interest,
}

pub(super) struct EpollShard {
    id: usize,
    epoll: Epoll,
    waker: Arc<Waker>,
    listeners: Vec<Listener>,
    conns: Vec<Option<Slot>>,
    free: Vec<usize>,
    shared: Arc<ShardsShared>,
    metrics: Arc<[ShardMetrics]>,
    config: Arc<ServerConfig>,
    write_queue: u64,
    /// Where reads land first, reused for every connection of the shard.
    scratch: Box<[u8]>,
    /// Results of operations run elsewhere.
    inbox: Arc<Inbox>,
    /// Per slot, bumped when its connection closes: a result for a closed connection never
    /// reaches the next one in the slot.
    generations: Vec<u32>,
    /// The shard's MQTT subscribers and how far they have been served from the log.
    tail: MqttTail,
    plugins: crate::plugins::ShardPlugins,
    /// Connections accepted, for MQTT's assigned client identifiers.
    accepted: u64,
    /// When to look for expired MQTT sessions next (shard 0).
    next_expiry_check: Instant,
}

impl HasConn for Slot {
    fn conn_mut(&mut self) -> &mut Conn {
        &mut self.conn
    }
}

impl EpollShard {
    pub(super) fn new(args: ShardArgs) -> io::Result<EpollShard> {
        let (id, sockets, waker, shared, metrics, config) = args;
        let plugins = crate::plugins::ShardPlugins::new(config.plugins.clone());
        let epoll = Epoll::new(EVENT_BATCH)?;
        epoll.add(waker.raw_fd(), WAKER_TOKEN, READ)?;
        let mut listeners = Vec::new();
        for (index, socket) in sockets.into_iter().enumerate() {
            epoll.add(socket.as_raw_fd(), LISTENER_TOKEN_BASE + index as u64, READ)?;
            listeners.push(Listener {
                socket,
                paused_until: None,
            });
        }
        let tail = MqttTail::new(
            shared.feeds[id].clone(),
            shared.shares.clone(),
            &shared.tail_start,
        );
        let inbox = shared.inboxes[id].clone();
        Ok(EpollShard {
            id,
            epoll,
            listeners,
            conns: Vec::new(),
            free: Vec::new(),
            shared,
            metrics,
            config,
            write_queue: 0,
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            inbox,
            generations: Vec::new(),
            tail,
            plugins,
            accepted: 0,
            next_expiry_check: crate::clock::now(),
            waker,
        })
    }

    pub(super) fn run(&mut self) {
        let mut events = Vec::with_capacity(EVENT_BATCH);
        let mut next_sweep = crate::clock::now() + SWEEP_EVERY;
        while !self.shared.stop.load(Ordering::Acquire) {
            let timeout = next_sweep.saturating_duration_since(crate::clock::now());
            events.clear();
            if let Err(e) = self.epoll.wait(timeout, |event| events.push(event)) {
                tracing::error!(shard = self.id, "epoll_wait failed: {e}");
                break;
            }
            self.metrics[self.id]
                .loop_iterations
                .fetch_add(1, Ordering::Relaxed);
            for event in events.drain(..) {
                self.dispatch(event);
            }
            let now = crate::clock::now();
            if now >= next_sweep {
                self.sweep(now);
                next_sweep = now + SWEEP_EVERY;
            }
        }
        self.drain();
    }

    fn dispatch(&mut self, event: Event) {
        match event.token {
            WAKER_TOKEN => {
                self.waker.reset();
                self.drain_inbox();
                if self.waker.take_data() {
                    self.tick_waiting(crate::clock::now(), false);
                    self.deliver_mqtt();
                }
            }
            token if token >= CONN_TOKEN_BASE => {
                let slot = (token - CONN_TOKEN_BASE) as usize;
                if event.readable {
                    self.on_readable(slot);
                }
                if event.writable {
                    self.flush(slot);
                }
            }
            token => self.accept((token - LISTENER_TOKEN_BASE) as usize),
        }
    }

    fn accept(&mut self, index: usize) {
        loop {
            let (stream, peer) = match self.listeners[index].socket.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors (EMFILE/ENFILE) or memory: stop watching the
                    // listener for a moment instead of spinning on it.
                    tracing::warn!(shard = self.id, "accept failed: {e}; pausing this listener");
                    let listener = &mut self.listeners[index];
                    let _ = self.epoll.delete(listener.socket.as_raw_fd());
                    listener.paused_until = Some(crate::clock::now() + ACCEPT_BACKOFF);
                    return;
                }
            };
            let metrics = &self.metrics[self.id];
            if !self.shared.admit(index, &self.config) {
                metrics.refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, "connection refused: connection limit reached");
                continue;
            }
            if let Err(e) = self.register(stream, index) {
                tracing::warn!(%peer, "cannot set up connection: {e}");
                self.shared.release(index);
            }
        }
    }

    fn register(&mut self, stream: TcpStream, listener: usize) -> io::Result<()> {
        stream.set_nonblocking(true)?;
        stream.set_nodelay(true)?;
        let slot = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        if self.generations.len() <= slot {
            self.generations.resize(slot + 1, 0);
        }
        let token = CONN_TOKEN_BASE + slot as u64;
        if let Err(e) = self.epoll.add(stream.as_raw_fd(), token, READ) {
            self.free.push(slot);
            return Err(e);
        }
        let config = &self.config;
        self.accepted += 1;
        let conn = Conn::new(
            stream,
            listener,
            config.listeners[listener].protocol,
            (&self.shared, self.id),
            self.shared.seed_base ^ ((self.id as u64) << 48) ^ self.accepted,
            crate::clock::now(),
        );
        self.conns[slot] = Some(Slot {
            conn,
            interest: READ,
        });
        let metrics = &self.metrics[self.id];
        metrics.accepted.fetch_add(1, Ordering::Relaxed);
        metrics.open.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn on_readable(&mut self, slot: usize) {
        let Some(Slot { conn, .. }) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if conn.read_paused || conn.closing {
            return;
        }
        // One chunk into the shard's scratch buffer; the connection keeps only what its
        // session leaves unconsumed.
        let got = match conn.stream.read(&mut self.scratch) {
            Ok(n) => n,
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted =>
            {
                return;
            }
            Err(_) => {
                self.close(slot);
                return;
            }
        };
        let write_max = self.config.write_buffer_bytes_max;
        let metrics = &self.metrics[self.id];
        let limit = conn.written + write_max;
        self.write_queue += conn.receive(&self.scratch[..got], crate::clock::now(), limit, metrics);
        conn.update_pause(conn.pending(), write_max, metrics);
        metrics
            .write_queue_bytes
            .store(self.write_queue, Ordering::Relaxed);
        self.submit_ops(slot);
        self.flush(slot);
    }

    /// Hands the connection's pending operations to the writer.
    fn submit_ops(&mut self, slot: usize) {
        let Some(Slot { conn, .. }) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let (ops, work) = (conn.take_ops(), conn.take_mqtt_work());
        if !ops.is_empty() {
            let generation = self.generations[slot];
            super::submit_ops(
                &self.config,
                &mut self.plugins,
                &self.inbox,
                slot,
                generation,
                ops,
            );
        }
        if !work.is_empty() {
            self.mqtt_work(self.owner(slot), work);
        }
    }

    /// Carries out what the MQTT session of connection `me` asked for.
    fn mqtt_work(&mut self, me: Owner, work: Vec<super::MqttWork>) {
        super::submit_mqtt(
            &self.config,
            &self.shared,
            (&mut self.tail, &mut self.plugins),
            me,
            work,
        );
    }

    fn owner(&self, slot: usize) -> Owner {
        Owner {
            shard: self.id,
            slot,
            generation: self.generations[slot],
        }
    }

    /// Another connection takes over the MQTT client id of the one in `slot`: that one
    /// closes and stores its session first, then the new one is told.
    fn take_over(&mut self, slot: usize, generation: u32, to: Owner) {
        if self.generations.get(slot) == Some(&generation)
            && let Some(Slot { conn, .. }) = self.conns.get_mut(slot).and_then(Option::as_mut)
        {
            let work = conn.take_over();
            self.mqtt_work(self.owner(slot), work);
            self.flush(slot);
        }
        super::hand_over(&self.shared, to);
    }

    /// Offers what the log gained to this shard's MQTT subscribers and sends it.
    fn deliver_mqtt(&mut self) {
        let limits = (
            self.config.kafka_batch_decompressed_bytes_max,
            self.config.write_buffer_bytes_max,
        );
        let (touched, more) = self.tail.deliver(
            &*self.config.store,
            limits,
            &mut self.conns,
            &self.metrics[self.id],
        );
        for (slot, added) in touched {
            self.write_queue += added;
            self.flush(slot);
        }
        if more {
            self.waker.notify_data();
        }
    }

    /// Delivers operation results to their connections and sends the answers they release.
    fn drain_inbox(&mut self) {
        while let Some(done) = self.inbox.pop() {
            if let Outcome::TakeOver(to) = done.result {
                self.take_over(done.slot, done.generation, to);
                continue;
            }
            if self.generations.get(done.slot) != Some(&done.generation) {
                continue;
            }
            let Some(Slot { conn, .. }) = self.conns.get_mut(done.slot).and_then(Option::as_mut)
            else {
                continue;
            };
            self.write_queue += conn.complete(done.token, done.result);
            // Requests held back behind the operation are read now.
            self.process(done.slot);
            self.flush(done.slot);
        }
    }

    /// Feeds buffered input to the session within the send-buffer limit.
    fn process(&mut self, slot: usize) {
        let write_max = self.config.write_buffer_bytes_max;
        let Some(Slot { conn, .. }) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let metrics = &self.metrics[self.id];
        self.write_queue += conn.process(conn.written + write_max, metrics);
        conn.update_pause(conn.pending(), write_max, metrics);
        metrics
            .write_queue_bytes
            .store(self.write_queue, Ordering::Relaxed);
        self.submit_ops(slot);
    }

    /// Writes what is pending, updates interest, and closes a closing connection once empty.
    /// When a paused connection resumes, answers its held requests and writes again, in a
    /// loop rather than by recursion (a tiny send buffer could resume thousands of times).
    fn flush(&mut self, slot: usize) {
        while self.flush_once(slot) {
            self.process(slot);
        }
    }

    /// One round of [`EpollShard::flush`]; true if the connection resumed with input held.
    fn flush_once(&mut self, slot: usize) -> bool {
        let write_max = self.config.write_buffer_bytes_max;
        let Some(Slot { conn, interest }) = self.conns.get_mut(slot).and_then(Option::as_mut)
        else {
            return false;
        };
        let mut sent = 0usize;
        let mut failed = false;
        while conn.pending() > 0 {
            match conn.stream.write(&conn.out[conn.written..]) {
                Ok(0) => {
                    failed = true;
                    break;
                }
                Ok(n) => {
                    conn.sent(n);
                    sent += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        let metrics = &self.metrics[self.id];
        self.write_queue = self.write_queue.saturating_sub(sent as u64);
        metrics.bytes_out.fetch_add(sent as u64, Ordering::Relaxed);
        metrics
            .write_queue_bytes
            .store(self.write_queue, Ordering::Relaxed);
        if failed || (conn.closing && conn.pending() == 0 && !conn.awaiting_ops()) {
            self.close(slot);
            return false;
        }
        let resumed = conn.update_pause(conn.pending(), write_max, metrics) == Some(false);
        let want = Interest {
            read: !conn.read_paused && !conn.closing,
            write: conn.pending() > 0,
        };
        if want != *interest {
            let token = CONN_TOKEN_BASE + slot as u64;
            if self
                .epoll
                .modify(conn.stream.as_raw_fd(), token, want)
                .is_err()
            {
                self.close(slot);
                return false;
            }
            *interest = want;
        }
        // Requests held back while the client was not reading are answered next.
        resumed && conn.has_input()
    }

    fn close(&mut self, slot: usize) {
        let Some(Slot { mut conn, .. }) = self.conns.get_mut(slot).and_then(Option::take) else {
            return;
        };
        let (client_id, work) = conn.finish();
        let me = self.owner(slot);
        super::finish_mqtt(
            &self.config,
            &self.shared,
            (&mut self.tail, &mut self.plugins),
            me,
            client_id,
            work,
        );
        let _ = self.epoll.delete(conn.stream.as_raw_fd());
        self.write_queue = self.write_queue.saturating_sub(conn.pending() as u64);
        let metrics = &self.metrics[self.id];
        metrics.open.fetch_sub(1, Ordering::Relaxed);
        metrics
            .write_queue_bytes
            .store(self.write_queue, Ordering::Relaxed);
        if conn.read_paused {
            metrics.read_paused.fetch_sub(1, Ordering::Relaxed);
        }
        self.shared.release(conn.listener);
        self.generations[slot] = self.generations[slot].wrapping_add(1);
        self.free.push(slot);
        if self.free.len() == self.conns.len() && self.conns.len() > SLAB_KEEP {
            // Every connection is gone: give back the table a crowd left behind. The
            // generations stay: results for closed connections may still be on their way.
            self.conns = Vec::new();
            self.free = Vec::new();
        }
        // Dropping the stream closes the socket.
    }

    /// Answers what waited for data or time (fetches); with `deadlines`, also checks
    /// MQTT keep alive.
    fn tick_waiting(&mut self, now: Instant, deadlines: bool) {
        for slot in 0..self.conns.len() {
            if let Some(Slot { conn, .. }) = self.conns[slot].as_mut()
                && (conn.has_timers() || (deadlines && conn.has_deadline()))
            {
                self.write_queue += conn.tick(now);
                self.process(slot);
                self.flush(slot);
            }
        }
    }

    /// Closes connections past their handshake or idle timeout; re-watches listeners paused
    /// after EMFILE.
    fn sweep(&mut self, now: Instant) {
        self.tick_waiting(now, true);
        if self.tail.has_lagging() {
            self.deliver_mqtt();
        }
        super::mqtt_upkeep(
            &self.config,
            (&self.shared, &mut self.plugins),
            self.id,
            &mut self.next_expiry_check,
        );
        let expired = super::conn::expired(
            self.conns.iter().map(|slot| slot.as_ref().map(|s| &s.conn)),
            now,
            &self.config,
        );
        for slot in expired {
            self.metrics[self.id]
                .timed_out
                .fetch_add(1, Ordering::Relaxed);
            self.close(slot);
        }
        for (index, listener) in self.listeners.iter_mut().enumerate() {
            if listener.paused_until.is_some_and(|until| now >= until) {
                let token = LISTENER_TOKEN_BASE + index as u64;
                if self
                    .epoll
                    .add(listener.socket.as_raw_fd(), token, READ)
                    .is_ok()
                {
                    listener.paused_until = None;
                }
            }
        }
    }

    /// Shutdown: no more accepts or reads; send what is pending until the drain timeout;
    /// close everything.
    fn drain(&mut self) {
        for listener in self.listeners.drain(..) {
            let _ = self.epoll.delete(listener.socket.as_raw_fd());
        }
        let deadline = crate::clock::now() + self.config.drain_timeout;
        for slot in 0..self.conns.len() {
            if let Some(Slot { conn, .. }) = self.conns[slot].as_mut() {
                conn.closing = true;
            }
            self.flush(slot);
        }
        let mut events = Vec::new();
        while self.conns.iter().any(Option::is_some) && crate::clock::now() < deadline {
            events.clear();
            let left = deadline
                .saturating_duration_since(crate::clock::now())
                .min(SWEEP_EVERY);
            if self.epoll.wait(left, |event| events.push(event)).is_err() {
                break;
            }
            for event in events.drain(..) {
                if event.token == WAKER_TOKEN {
                    self.waker.reset();
                    self.drain_inbox();
                } else if event.token >= CONN_TOKEN_BASE && event.writable {
                    self.flush((event.token - CONN_TOKEN_BASE) as usize);
                }
            }
            // Answers waiting for time (fetches) still go out before their connections close.
            self.sweep(crate::clock::now());
        }
        for slot in 0..self.conns.len() {
            self.close(slot);
        }
        self.inbox.close();
    }
}
