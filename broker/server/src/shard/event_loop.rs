//! One shard's state and everything its event loop does that does not depend on how bytes
//! move: its connections and their slots, the inbox of results, MQTT delivery, timers and
//! sweeps, and handing work to the writer and the group coordinator. A [`IoBackend`] (epoll
//! in `epoll_loop.rs`, io_uring in `uring_loop.rs`) only moves bytes and readiness: it reads
//! into connections, sends what they have, and closes them.

use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::conn::{Conn, SessionSettings};
use super::epoll::Waker;
use super::inbox::{Inbox, Outcome, Owner};
use super::mqtt::{HasConn, MqttTail};
use super::settings::{Reading, ServerConfig, ShardMetrics};
use super::shared::{ShardArgs, ShardsShared};
use super::submit;
use super::topic_table::TopicTable;

/// Connection-table entries kept when every connection has closed; a larger table left by a
/// crowd is freed.
const SLAB_KEEP: usize = 1024;
/// How often timeouts are checked.
pub(super) const SWEEP_EVERY: Duration = Duration::from_millis(250);
/// How long a listener stays unwatched after the process ran out of file descriptors.
pub(super) const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
use crate::plugins::ShardPlugins;
use weir_core::mqtt_connection::{MessagePool, MqttWork};

/// Generations are kept to 24 bits: io_uring's completions carry them in their user data.
pub(super) const GENERATION_MASK: u32 = 0x00ff_ffff;

/// How long a connection closed for a protocol error lingers at most ([`Shard::linger`]).
const LINGER: Duration = Duration::from_secs(2);
/// Bytes a lingering connection may read and drop before it is closed anyway.
const LINGER_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// A connection in its lingering close: finished, its write side shut, its input dropped.
pub(super) struct Lingering {
    /// When it is closed if the client has not closed first.
    until: Instant,
    /// Bytes read and dropped so far.
    dropped: u64,
}

/// How a shard moves bytes: what differs between epoll and io_uring.
pub(super) trait IoBackend: Sized {
    /// What the backend keeps per connection.
    type Io;

    /// Bytes of the connection the kernel is sending now (taken out of `Conn::out`).
    fn in_flight(io: &Self::Io) -> usize;

    /// Sends what the connection has pending, or starts to; closes a closing connection once
    /// nothing is left to send.
    fn flush(shard: &mut Shard<Self>, slot: usize);

    /// Closes the connection: at once, or once the kernel has let go of it.
    fn close(shard: &mut Shard<Self>, slot: usize);

    /// The connection stopped (`paused`) or started again taking input.
    fn reading_changed(shard: &mut Shard<Self>, slot: usize, paused: bool);

    /// The backend's part of the timeout sweep (listeners paused after errors, ...).
    fn sweep(shard: &mut Shard<Self>, now: Instant);
}

/// A connection and what the backend keeps for it.
pub(super) struct Slot<Io> {
    pub(super) conn: Conn,
    pub(super) io: Io,
    /// The connection is finished (its session's leftovers handed over); the slot waits
    /// for the kernel to let go of it, or for its lingering close to end.
    pub(super) shut: bool,
    /// Set while the connection lingers ([`Shard::linger`]).
    pub(super) lingering: Option<Lingering>,
}

impl<Io> Slot<Io> {
    /// Unsent bytes: in the kernel's hands and in the connection's buffer.
    pub(super) fn pending<B: IoBackend<Io = Io>>(&self) -> usize {
        B::in_flight(&self.io) + self.conn.pending()
    }
}

impl<Io> HasConn for Slot<Io> {
    fn conn_mut(&mut self) -> &mut Conn {
        &mut self.conn
    }
}

/// One shard: its backend and its connections.
pub(super) struct Shard<B: IoBackend> {
    // Field order matters: the backend (an io_uring ring) is dropped before the connections
    // whose memory its operations may reference.
    pub(super) backend: B,
    pub(super) conns: Vec<Option<Slot<B::Io>>>,
    /// Per slot, bumped when its connection is gone: a result for a closed connection never
    /// reaches the next one in the slot.
    pub(super) generations: Vec<u32>,
    pub(super) free: Vec<usize>,
    pub(super) id: usize,
    pub(super) waker: Arc<Waker>,
    pub(super) shared: Arc<ShardsShared>,
    pub(super) metrics: Arc<[ShardMetrics]>,
    pub(super) config: Arc<ServerConfig>,
    /// Unsent bytes, all connections of the shard.
    pub(super) write_queue: u64,
    /// Results of operations run elsewhere.
    inbox: Arc<Inbox>,
    /// What the sessions of its connections share.
    sessions: SessionSettings,
    /// The shard's MQTT subscribers and how far they have been served from the log.
    tail: MqttTail,
    plugins: ShardPlugins,
    /// Topics' partitions as this shard last read them.
    topics: TopicTable,
    /// Buffers the MQTT publishes read are decoded into, used again.
    pool: MessagePool,
    /// The list a connection's MQTT work is swapped into for submitting, kept for the next.
    work: Vec<MqttWork>,
    /// Connections accepted, for MQTT's assigned client identifiers.
    accepted: u64,
    /// When to look for expired MQTT sessions next (shard 0).
    next_expiry_check: Instant,
}

impl<B: IoBackend> Shard<B> {
    /// A shard with `backend`; the listeners of `args` are the backend's.
    pub(super) fn with_backend(backend: B, args: ShardArgs, now: Instant) -> Shard<B> {
        let (id, _, waker, shared, metrics, config) = args;
        let tail = MqttTail::new(
            shared.feeds[id].clone(),
            shared.shares.clone(),
            &shared.tail_start,
        );
        Shard {
            backend,
            conns: Vec::new(),
            generations: Vec::new(),
            free: Vec::new(),
            id,
            waker,
            inbox: shared.inboxes[id].clone(),
            sessions: SessionSettings {
                kafka: shared.kafka.clone(),
                mqtt: shared.mqtt.clone(),
                edge: shared.feeds[id].clone(),
                tls: config.tls.clone(),
                identity_as_username: config.tls_identity_as_username,
            },
            plugins: ShardPlugins::new(config.plugins.clone()),
            topics: TopicTable::default(),
            pool: MessagePool::default(),
            work: Vec::new(),
            shared,
            metrics,
            config,
            write_queue: 0,
            tail,
            accepted: 0,
            next_expiry_check: now,
        }
    }

    pub(super) fn metrics(&self) -> &ShardMetrics {
        &self.metrics[self.id]
    }

    /// The connection in `slot` if it is the one `generation` names.
    pub(super) fn live(&mut self, slot: usize, generation: u32) -> Option<&mut Slot<B::Io>> {
        if self.generations.get(slot) != Some(&(generation & GENERATION_MASK)) {
            return None;
        }
        self.conns.get_mut(slot).and_then(Option::as_mut)
    }

    pub(super) fn slot(&mut self, slot: usize) -> Option<&mut Slot<B::Io>> {
        self.conns.get_mut(slot).and_then(Option::as_mut)
    }

    fn owner(&self, slot: usize) -> Owner {
        Owner {
            shard: self.id,
            slot,
            generation: self.generations[slot],
        }
    }

    /// A free slot for a new connection.
    pub(super) fn vacant_slot(&mut self) -> usize {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        if self.generations.len() <= slot {
            self.generations.resize(slot + 1, 0);
        }
        slot
    }

    /// Gives back a slot whose connection could not be set up.
    pub(super) fn unused_slot(&mut self, slot: usize) {
        self.free.push(slot);
    }

    /// Puts the connection accepted on `listener` in `slot` (from [`Shard::vacant_slot`]).
    pub(super) fn install(
        &mut self,
        slot: usize,
        (stream, listener): (TcpStream, usize),
        io: B::Io,
        now: Instant,
    ) {
        self.accepted += 1;
        let conn = Conn::new(
            stream,
            (listener, &self.config.listeners[listener]),
            &self.sessions,
            self.shared.seed_base ^ ((self.id as u64) << 48) ^ self.accepted,
            now,
        );
        self.conns[slot] = Some(Slot {
            conn,
            io,
            shut: false,
            lingering: None,
        });
        let metrics = self.metrics();
        metrics.accepted.fetch_add(1, Ordering::Relaxed);
        metrics.open.fetch_add(1, Ordering::Relaxed);
    }

    /// The waker fired: results arrived, or the log grew.
    pub(super) fn on_wake(&mut self) {
        self.waker.reset();
        self.drain_inbox();
        if self.waker.take_data() {
            self.tick_waiting(crate::clock::now(), false);
            self.deliver_mqtt();
        }
    }

    /// Delivers operation results to their connections and sends the answers they release.
    pub(super) fn drain_inbox(&mut self) {
        // One reading of the clock for the results drained together.
        let now = crate::clock::now();
        while let Some(done) = self.inbox.pop() {
            if let Outcome::TakeOver(client_id) = done.result {
                self.take_over(done.slot, done.generation, &client_id, now);
                continue;
            }
            let Some(slot) = self.live(done.slot, done.generation) else {
                continue;
            };
            if slot.shut {
                continue;
            }
            let added = slot.conn.complete(done.token, done.result, now);
            self.write_queue += added;
            // Requests held back behind the operation are read now.
            self.process(done.slot, now);
            B::flush(self, done.slot);
        }
    }

    /// Another connection takes over the MQTT client id of the one in `slot`: that one
    /// closes and stores its session first, then lets go of the id (if it is already gone,
    /// it stored its session as it closed).
    fn take_over(&mut self, slot: usize, generation: u32, client_id: &str, now: Instant) {
        if let Some(live) = self.live(slot, generation)
            && !live.shut
        {
            let mut work = live.conn.take_over(now);
            self.mqtt_work(self.owner(slot), &mut work);
            B::flush(self, slot);
        }
        submit::let_go(&self.shared, client_id);
    }

    /// Offers what the log gained to this shard's MQTT subscribers and sends it.
    pub(super) fn deliver_mqtt(&mut self) {
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
            B::flush(self, slot);
        }
        if more {
            self.waker.notify_data();
        }
    }

    /// Hands the bytes received on `slot` to its session (`bytes` finds them where the
    /// backend put them; empty: the end of input), then submits and sends what it produced.
    pub(super) fn receive(
        &mut self,
        slot: usize,
        now: Instant,
        bytes: impl for<'a> FnOnce(&'a B) -> &'a [u8],
    ) {
        let metrics = &self.metrics[self.id];
        let Some((live, limit)) = Self::taking_input(&mut self.conns, slot, &self.config) else {
            return;
        };
        let input = bytes(&self.backend);
        let mut cx = Reading {
            metrics,
            pool: &mut self.pool,
        };
        self.write_queue += live.conn.receive(input, now, limit, &mut cx);
        self.after_input(slot);
        self.submit_ops(slot);
        B::flush(self, slot);
    }

    /// Feeds held input to the session within the send-buffer limit, then applies
    /// back-pressure and submits what it asked for.
    pub(super) fn process(&mut self, slot: usize, now: Instant) {
        let metrics = &self.metrics[self.id];
        let Some((live, limit)) = Self::taking_input(&mut self.conns, slot, &self.config) else {
            return;
        };
        let mut cx = Reading {
            metrics,
            pool: &mut self.pool,
        };
        self.write_queue += live.conn.process(limit, &mut cx, now);
        self.after_input(slot);
        self.submit_ops(slot);
    }

    /// The connection in `slot` if it is open to input, with the bytes of answers its `out`
    /// may hold once it has answered (`server.write_buffer_bytes_max` past what it has
    /// written, less what the kernel is sending for it).
    fn taking_input<'a>(
        conns: &'a mut [Option<Slot<B::Io>>],
        slot: usize,
        config: &ServerConfig,
    ) -> Option<(&'a mut Slot<B::Io>, usize)> {
        let live = conns.get_mut(slot).and_then(Option::as_mut)?;
        if live.shut {
            return None;
        }
        let room = live.conn.written + config.write_buffer_bytes_max;
        let limit = room.saturating_sub(B::in_flight(&live.io));
        Some((live, limit))
    }

    /// Pauses reading when answers pile up or the session takes no more requests; resumes it
    /// when both are over.
    fn after_input(&mut self, slot: usize) {
        let write_max = self.config.write_buffer_bytes_max;
        let metrics = &self.metrics[self.id];
        metrics
            .write_queue_bytes
            .store(self.write_queue, Ordering::Relaxed);
        let Some(live) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let pending = live.pending::<B>();
        if let Some(paused) = live.conn.update_pause(pending, write_max, metrics) {
            B::reading_changed(self, slot, paused);
        }
    }

    /// Hands the connection's pending operations to the writer or the group coordinator,
    /// and carries out what its MQTT session asked for.
    fn submit_ops(&mut self, slot: usize) {
        let Some(live) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        // The connection's work list and the shard's spare change places: both keep their
        // capacity.
        let mut work = std::mem::take(&mut self.work);
        live.conn.swap_mqtt_work(&mut work);
        let ops = live.conn.take_ops();
        let me = self.owner(slot);
        if !ops.is_empty() {
            let ingest = (&mut self.plugins, &mut self.topics);
            submit::kafka_ops(&self.config, ingest, &self.inbox, me, ops);
        }
        if !work.is_empty() {
            self.mqtt_work(me, &mut work);
        }
        self.work = work;
    }

    /// Carries out (and empties) `work`, of connection `me`'s MQTT session.
    fn mqtt_work(&mut self, me: Owner, work: &mut Vec<MqttWork>) {
        let parts = (
            &mut self.tail,
            &mut self.plugins,
            &mut self.topics,
            &mut self.pool,
        );
        submit::mqtt_work(&self.config, &self.shared, parts, me, work);
    }

    /// Answers what waited for data or time (fetches); with `deadlines`, also checks
    /// MQTT keep alive.
    pub(super) fn tick_waiting(&mut self, now: Instant, deadlines: bool) {
        for slot in 0..self.conns.len() {
            if let Some(live) = self.conns[slot].as_mut()
                && !live.shut
                && (live.conn.has_timers() || (deadlines && live.conn.has_deadline()))
            {
                self.write_queue += live.conn.tick(now);
                self.process(slot, now);
                B::flush(self, slot);
            }
        }
    }

    /// The timeout sweep: timers and keep-alives, lagging MQTT subscribers, delayed wills
    /// and expired sessions, connections past their handshake or idle timeout, then the
    /// backend's own.
    pub(super) fn sweep(&mut self, now: Instant) {
        self.tick_waiting(now, true);
        if self.tail.has_lagging() {
            self.deliver_mqtt();
        }
        submit::mqtt_upkeep(
            &self.config,
            (&self.shared, &mut self.plugins, &mut self.topics),
            self.id,
            &mut self.next_expiry_check,
        );
        let expired = super::conn::expired(
            self.conns
                .iter()
                .map(|s| s.as_ref().filter(|s| !s.shut).map(|s| &s.conn)),
            now,
            &self.config,
        );
        for slot in expired {
            self.metrics().timed_out.fetch_add(1, Ordering::Relaxed);
            B::close(self, slot);
        }
        let lingered: Vec<usize> = (self.conns.iter().enumerate())
            .filter_map(|(slot, s)| {
                let lingering = s.as_ref()?.lingering.as_ref()?;
                (now >= lingering.until).then_some(slot)
            })
            .collect();
        for slot in lingered {
            B::close(self, slot);
        }
        B::sweep(self, now);
    }

    /// Starts the lingering close of the connection in `slot`, which closes for a protocol
    /// error with nothing left to send (true if it lingers already). Its session is finished
    /// now (its will and session handed over) and its write side shut down: the client reads
    /// the answers, then the end of the stream, rather than a reset for the bytes it is still
    /// sending (the rest of an oversized packet). The backend goes on reading and drops what
    /// comes ([`Shard::dropped`]), handing none of it to the session, until the client
    /// closes, [`LINGER`] passes (the sweep) or [`LINGER_BYTES_MAX`] bytes were dropped; then
    /// it closes the connection, which only then stops being counted. False: the connection
    /// does not linger and the caller closes it.
    pub(super) fn linger(&mut self, slot: usize, now: Instant) -> bool {
        let metrics = &self.metrics[self.id];
        let Some(live) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return false;
        };
        if live.lingering.is_some() {
            return true;
        }
        if !live.conn.linger || live.shut || live.conn.stream.shutdown(Shutdown::Write).is_err() {
            return false;
        }
        if live.conn.read_paused {
            live.conn.read_paused = false;
            metrics.read_paused.fetch_sub(1, Ordering::Relaxed);
        }
        live.lingering = Some(Lingering {
            until: now + LINGER,
            dropped: 0,
        });
        self.finish(slot, now);
        true
    }

    /// Counts `n` bytes read from the lingering connection in `slot` and dropped (0: the
    /// client closed its side, or the socket failed). True once its lingering is over: the
    /// backend closes it.
    pub(super) fn dropped(&mut self, slot: usize, n: usize) -> bool {
        let metrics = &self.metrics[self.id];
        metrics.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
        let Some(lingering) = (self.conns.get_mut(slot).and_then(Option::as_mut))
            .and_then(|live| live.lingering.as_mut())
        else {
            return true;
        };
        lingering.dropped += n as u64;
        n == 0 || lingering.dropped >= LINGER_BYTES_MAX
    }

    /// True when every connection left (if any) is lingering: a shutdown's drain does not
    /// wait for those, it closes them.
    pub(super) fn only_lingering_left(&self) -> bool {
        (self.conns.iter().flatten()).all(|live| live.lingering.is_some())
    }

    /// The connection in `slot` is closing: hands over what its session leaves (its will,
    /// its session) and marks it shut. False if there is none, or it already was.
    pub(super) fn finish(&mut self, slot: usize, now: Instant) -> bool {
        let Some(live) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return false;
        };
        if live.shut {
            return false;
        }
        live.shut = true;
        let (client_id, mut work) = live.conn.finish(now);
        let me = self.owner(slot);
        let parts = (
            &mut self.tail,
            &mut self.plugins,
            &mut self.topics,
            &mut self.pool,
        );
        submit::finish_mqtt(&self.config, &self.shared, parts, me, client_id, &mut work);
        true
    }

    /// Frees the slot of a finished connection and counts it gone; the caller drops it
    /// (closing its socket).
    pub(super) fn free_slot(&mut self, slot: usize) -> Option<Slot<B::Io>> {
        let gone = self.conns.get_mut(slot).and_then(Option::take)?;
        self.write_queue = self.write_queue.saturating_sub(gone.pending::<B>() as u64);
        let metrics = &self.metrics[self.id];
        metrics.open.fetch_sub(1, Ordering::Relaxed);
        metrics
            .write_queue_bytes
            .store(self.write_queue, Ordering::Relaxed);
        if gone.conn.read_paused {
            metrics.read_paused.fetch_sub(1, Ordering::Relaxed);
        }
        self.shared.release(gone.conn.listener);
        self.generations[slot] = self.generations[slot].wrapping_add(1) & GENERATION_MASK;
        self.free.push(slot);
        if self.free.len() == self.conns.len() && self.conns.len() > SLAB_KEEP {
            // Every connection is gone (and the kernel holds nothing of theirs: a slot is
            // freed only after its last completion): give back the table a crowd left behind.
            // The generations stay: results for closed connections may still be on their way.
            self.conns = Vec::new();
            self.free = Vec::new();
        }
        Some(gone)
    }

    /// Shutdown begins: every connection sends what it has, then closes.
    pub(super) fn begin_drain(&mut self) {
        for slot in 0..self.conns.len() {
            if let Some(live) = self.conns[slot].as_mut() {
                live.conn.closing = true;
            }
            B::flush(self, slot);
        }
    }

    /// The shard's loop ended: nothing more comes through its inbox.
    pub(super) fn close_inbox(&self) {
        self.inbox.close();
    }
}
