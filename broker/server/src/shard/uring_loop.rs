//! A shard's event loop on io_uring: the kernel accepts, receives and sends; the loop
//! handles completions.
//!
//! - Accept: one multishot accept per listener.
//! - Receive: one multishot receive per connection, landing in *provided buffers* (a
//!   registered buffer ring the kernel picks from), so no memory is pinned per idle
//!   connection. A buffer goes back to the ring as soon as its bytes are handed to the
//!   connection.
//! - Send: at most one send in flight per connection, over a buffer the connection does not
//!   touch until the send completes; answers produced meanwhile collect in `Conn::out` and go
//!   in the next send, many frames per submission.
//! - Back-pressure: past `server.write_buffer_bytes_max` the multishot receive is cancelled;
//!   it is armed again when the client has read enough.
//! - Close: `shutdown(2)` ends every operation on the socket; the descriptor is closed and
//!   the slot reused only after the last completion for it, so the kernel never writes into a
//!   buffer that is gone. Completions carry a generation so that one for an old connection is
//!   never taken for the new one in the same slot.
//! - Time: the loop waits with a timeout (`submit_with_args`), for the timeout sweep.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use io_uring::types::{Fd, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode, squeue};

use super::conn::{Conn, WRITE_BUFFER_KEEP};
use super::epoll::Waker;
use super::inbox::{Inbox, Outcome, Owner};
use super::mqtt::{HasConn, MqttTail};
use super::uring_buffers::ProvidedBuffers;
use super::{
    ACCEPT_BACKOFF, SLAB_KEEP, SWEEP_EVERY, ServerConfig, ShardArgs, ShardMetrics, ShardsShared,
};

/// Submission and completion queue size.
const RING_ENTRIES: u32 = 4096;
/// Provided receive buffers per shard, and their size.
const BUFFERS: u16 = 128;
const BUFFER_BYTES: usize = 16 * 1024;
/// Buffer group id of the shard's buffer ring.
pub(super) const BGID: u16 = 0;

const KIND_WAKER: u64 = 1;
const KIND_ACCEPT: u64 = 2;
const KIND_RECV: u64 = 3;
const KIND_SEND: u64 = 4;
const KIND_CANCEL: u64 = 5;

fn user_data(kind: u64, generation: u32, slot: usize) -> u64 {
    (kind << 56) | (u64::from(generation & 0x00ff_ffff) << 32) | (slot as u64 & 0xffff_ffff)
}

fn split(data: u64) -> (u64, u32, usize) {
    (
        data >> 56,
        ((data >> 32) & 0x00ff_ffff) as u32,
        (data & 0xffff_ffff) as usize,
    )
}

/// The shard's ring: one thread submits and reaps (`SINGLE_ISSUER`), and completion work
/// runs only when the loop asks for completions (`DEFER_TASKRUN`, Linux 6.1), not as
/// interrupts while it handles others. Kernels without these flags get a plain ring.
fn build_ring() -> io::Result<IoUring> {
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(RING_ENTRIES)
        .or_else(|_| IoUring::builder().build(RING_ENTRIES))
}

/// Checks that this kernel and process can run the io_uring backend: a ring can be created
/// (not blocked by seccomp or `kernel.io_uring_disabled`), a buffer ring can be registered,
/// and a multishot receive really delivers (kernel 6.0 and later).
pub(super) fn probe() -> Result<(), String> {
    let mut ring = IoUring::new(8).map_err(|e| format!("io_uring_setup: {e}"))?;
    let mut buffers =
        ProvidedBuffers::new(&ring, 2, 64).map_err(|e| format!("buffer ring: {e}"))?;
    let (a, b) = std::os::unix::net::UnixStream::pair().map_err(|e| e.to_string())?;
    let recv = opcode::RecvMulti::new(Fd(a.as_raw_fd()), BGID)
        .build()
        .user_data(1);
    // SAFETY: the entry refers to a socket that outlives the ring's use here.
    unsafe { ring.submission().push(&recv) }.map_err(|_| "submission queue full".to_owned())?;
    ring.submit().map_err(|e| format!("io_uring_enter: {e}"))?;
    std::io::Write::write_all(&mut &b, b"probe").map_err(|e| e.to_string())?;
    ring.submit_and_wait(1)
        .map_err(|e| format!("io_uring_enter: {e}"))?;
    let cqe = ring
        .completion()
        .next()
        .ok_or_else(|| "no completion".to_owned())?;
    if cqe.result() != 5 || !cqueue::more(cqe.flags()) {
        return Err(format!(
            "multishot receive unsupported (result {}, flags {:#x}; needs Linux 6.0)",
            cqe.result(),
            cqe.flags()
        ));
    }
    if let Some(bid) = cqueue::buffer_select(cqe.flags()) {
        buffers.recycle(bid);
    }
    // The ring (and the receive still armed on it) goes before the buffers it points into.
    drop(ring);
    drop(buffers);
    Ok(())
}

/// The connection in `slot` if it is the one `generation` names (a completion for an
/// earlier connection in a reused slot finds nothing).
fn live(conns: &mut [Option<UConn>], slot: usize, generation: u32) -> Option<&mut UConn> {
    conns
        .get_mut(slot)
        .and_then(Option::as_mut)
        .filter(|u| u.generation & 0x00ff_ffff == generation)
}

/// A connection with what io_uring has in flight for it.
struct UConn {
    conn: Conn,
    generation: u32,
    recv_armed: bool,
    /// A receive that ran out of buffers: arm again once buffers are back.
    recv_starved: bool,
    cancels_in_flight: u32,
    /// The buffer the in-flight send reads; untouched until its completion.
    sending: Vec<u8>,
    send_pos: usize,
    send_in_flight: bool,
    /// `shutdown(2)` was called; the slot is freed after the last completion.
    shut: bool,
}

impl UConn {
    fn pending(&self) -> usize {
        (self.sending.len() - self.send_pos) + self.conn.pending()
    }

    fn fd(&self) -> RawFd {
        self.conn.stream.as_raw_fd()
    }

    fn idle_in_kernel(&self) -> bool {
        !self.recv_armed && !self.send_in_flight && self.cancels_in_flight == 0
    }
}

pub(super) struct UringShard {
    // Field order matters: the ring is dropped (closed) before the buffers and the
    // connections whose memory its operations may reference.
    ring: IoUring,
    buffers: ProvidedBuffers,
    conns: Vec<Option<UConn>>,
    generations: Vec<u32>,
    free: Vec<usize>,
    listeners: Vec<TcpListener>,
    accept_paused_until: Vec<Option<Instant>>,
    waker: Arc<Waker>,
    id: usize,
    shared: Arc<ShardsShared>,
    metrics: Arc<[ShardMetrics]>,
    config: Arc<ServerConfig>,
    write_queue: u64,
    stopping: bool,
    /// Connections whose receive ran out of buffers in this batch: armed again after it.
    starved: Vec<usize>,
    /// Results of operations run elsewhere.
    inbox: Arc<Inbox>,
    /// The shard's MQTT subscribers and how far they have been served from the log.
    tail: MqttTail,
    plugins: crate::plugins::ShardPlugins,
    /// Connections accepted, for MQTT's assigned client identifiers.
    accepted: u64,
    /// When to look for expired MQTT sessions next (shard 0).
    next_expiry_check: Instant,
}

impl HasConn for UConn {
    fn conn_mut(&mut self) -> &mut Conn {
        &mut self.conn
    }
}

// SAFETY: the raw pointers in ProvidedBuffers refer to mappings owned by the shard; the
// shard is moved to its thread once and used only there.
unsafe impl Send for UringShard {}

impl UringShard {
    pub(super) fn new(args: ShardArgs) -> io::Result<UringShard> {
        let (id, listeners, waker, shared, metrics, config) = args;
        let plugins = crate::plugins::ShardPlugins::new(config.plugins.clone());
        let inbox = shared.inboxes[id].clone();
        let ring = build_ring()?;
        let buffers = ProvidedBuffers::new(&ring, BUFFERS, BUFFER_BYTES)?;
        let accept_paused_until = vec![None; listeners.len()];
        let tail = MqttTail::new(
            shared.feeds[id].clone(),
            shared.shares.clone(),
            &shared.tail_start,
        );
        let mut shard = UringShard {
            ring,
            buffers,
            conns: Vec::new(),
            generations: Vec::new(),
            free: Vec::new(),
            listeners,
            accept_paused_until,
            waker,
            id,
            shared,
            metrics,
            config,
            write_queue: 0,
            stopping: false,
            starved: Vec::new(),
            inbox,
            tail,
            plugins,
            accepted: 0,
            next_expiry_check: crate::clock::now(),
        };
        shard.arm_waker();
        for index in 0..shard.listeners.len() {
            shard.arm_accept(index);
        }
        Ok(shard)
    }

    fn metrics(&self) -> &ShardMetrics {
        &self.metrics[self.id]
    }

    /// Queues a submission, submitting first if the queue is full.
    fn push(&mut self, entry: &squeue::Entry) {
        loop {
            // SAFETY: every entry refers to a socket and, for sends, a buffer that stay valid
            // until the operation's completion is reaped (see UConn).
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return;
            }
            if let Err(e) = self.ring.submit() {
                tracing::error!(shard = self.id, "io_uring submit failed: {e}");
            }
        }
    }

    fn arm_waker(&mut self) {
        let poll = opcode::PollAdd::new(Fd(self.waker.raw_fd()), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(user_data(KIND_WAKER, 0, 0));
        self.push(&poll);
    }

    fn arm_accept(&mut self, index: usize) {
        let accept = opcode::AcceptMulti::new(Fd(self.listeners[index].as_raw_fd()))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(user_data(KIND_ACCEPT, 0, index));
        self.push(&accept);
    }

    fn arm_recv(&mut self, slot: usize) {
        let Some(u) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if u.recv_armed || u.shut || u.conn.closing || u.conn.read_paused {
            return;
        }
        u.recv_armed = true;
        u.recv_starved = false;
        let recv = opcode::RecvMulti::new(Fd(u.fd()), BGID)
            .build()
            .user_data(user_data(KIND_RECV, u.generation, slot));
        self.push(&recv);
    }

    pub(super) fn run(&mut self) {
        let mut next_sweep = crate::clock::now() + SWEEP_EVERY;
        let mut drain_deadline = None;
        let mut completions: Vec<(u64, i32, u32)> = Vec::with_capacity(1024);
        loop {
            if self.shared.stop.load(Ordering::Acquire) && !self.stopping {
                self.stopping = true;
                drain_deadline = Some(crate::clock::now() + self.config.drain_timeout);
                self.begin_drain();
            }
            if self.stopping
                && (self.conns.iter().all(Option::is_none)
                    || drain_deadline.is_some_and(|d| crate::clock::now() >= d))
            {
                break;
            }
            let wait = next_sweep.saturating_duration_since(crate::clock::now());
            self.wait(wait.min(SWEEP_EVERY));
            self.metrics()
                .loop_iterations
                .fetch_add(1, Ordering::Relaxed);
            completions.clear();
            completions.extend(
                self.ring
                    .completion()
                    .map(|cqe| (cqe.user_data(), cqe.result(), cqe.flags())),
            );
            for &(data, result, flags) in &completions {
                self.complete(data, result, flags);
            }
            // Buffers were recycled during the batch: receives that ran out arm again now.
            for slot in std::mem::take(&mut self.starved) {
                self.arm_recv(slot);
            }
            let now = crate::clock::now();
            if now >= next_sweep {
                self.sweep(now);
                next_sweep = now + SWEEP_EVERY;
            }
        }
        self.inbox.close();
        self.finish();
    }

    fn wait(&mut self, timeout: Duration) {
        let ts = Timespec::new()
            .sec(timeout.as_secs())
            .nsec(timeout.subsec_nanos());
        let args = SubmitArgs::new().timespec(&ts);
        match self.ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ETIME) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
            Err(e) => tracing::error!(shard = self.id, "io_uring_enter failed: {e}"),
        }
    }

    fn complete(&mut self, data: u64, result: i32, flags: u32) {
        let (kind, generation, slot) = split(data);
        match kind {
            KIND_WAKER => {
                self.waker.reset();
                self.drain_inbox();
                if self.waker.take_data() {
                    self.tick_waiting(crate::clock::now(), false);
                    self.deliver_mqtt();
                }
                if !cqueue::more(flags) {
                    self.arm_waker();
                }
            }
            KIND_ACCEPT => self.on_accept(slot, result, flags),
            KIND_CANCEL => {
                if let Some(u) = live(&mut self.conns, slot, generation) {
                    u.cancels_in_flight = u.cancels_in_flight.saturating_sub(1);
                }
                self.maybe_finish(slot);
            }
            KIND_RECV => self.on_recv(slot, generation, result, flags),
            KIND_SEND => self.on_send(slot, generation, result),
            _ => {}
        }
    }

    fn on_accept(&mut self, index: usize, result: i32, flags: u32) {
        if result >= 0 {
            // SAFETY: a non-negative accept result is a new descriptor that we now own.
            let stream = unsafe { TcpStream::from_raw_fd(result) };
            if self.stopping {
                drop(stream);
            } else if !self.shared.admit(index, &self.config) {
                self.metrics().refused.fetch_add(1, Ordering::Relaxed);
                drop(stream);
            } else if let Err(e) = self.register(stream, index) {
                tracing::warn!(shard = self.id, "cannot set up connection: {e}");
                self.shared.release(index);
            }
        } else if result != -libc::ECANCELED {
            let error = io::Error::from_raw_os_error(-result);
            tracing::warn!(shard = self.id, "accept failed: {error}");
            if !cqueue::more(flags) {
                // Out of descriptors or memory: arm again after a pause, not at once.
                self.accept_paused_until[index] = Some(crate::clock::now() + ACCEPT_BACKOFF);
            }
            return;
        }
        if !cqueue::more(flags) && !self.stopping {
            self.arm_accept(index);
        }
    }

    fn register(&mut self, stream: TcpStream, listener: usize) -> io::Result<()> {
        stream.set_nodelay(true)?;
        let slot = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        if self.generations.len() <= slot {
            self.generations.resize(slot + 1, 0);
        }
        let generation = self.generations[slot];
        self.accepted += 1;
        let conn = Conn::new(
            stream,
            listener,
            self.config.listeners[listener].protocol,
            (&self.shared, self.id),
            self.shared.seed_base ^ ((self.id as u64) << 48) ^ self.accepted,
            crate::clock::now(),
        );
        self.conns[slot] = Some(UConn {
            conn,
            generation,
            recv_armed: false,
            recv_starved: false,
            cancels_in_flight: 0,
            sending: Vec::new(),
            send_pos: 0,
            send_in_flight: false,
            shut: false,
        });
        let metrics = self.metrics();
        metrics.accepted.fetch_add(1, Ordering::Relaxed);
        metrics.open.fetch_add(1, Ordering::Relaxed);
        self.arm_recv(slot);
        Ok(())
    }

    fn on_recv(&mut self, slot: usize, generation: u32, result: i32, flags: u32) {
        let bid = cqueue::buffer_select(flags);
        let more = cqueue::more(flags);
        let now = crate::clock::now();
        let metrics = &self.metrics[self.id];
        let Some(u) = live(&mut self.conns, slot, generation) else {
            if let Some(bid) = bid {
                self.buffers.recycle(bid);
            }
            return;
        };
        if !more {
            u.recv_armed = false;
        }
        let in_flight = u.sending.len() - u.send_pos;
        let limit = self.config.write_buffer_bytes_max.saturating_sub(in_flight);
        match result {
            n if n > 0 => {
                if let Some(bid) = bid
                    && !u.shut
                {
                    let bytes = self.buffers.get(bid, n as usize);
                    self.write_queue += u.conn.receive(bytes, now, limit, metrics);
                }
            }
            0 => {
                if !u.shut {
                    self.write_queue += u.conn.receive(&[], now, limit, metrics);
                }
            }
            e if e == -libc::ENOBUFS => {
                u.recv_starved = true;
                self.starved.push(slot);
            }
            e if e == -libc::ECANCELED => {}
            _ => {
                // The socket failed: nothing more can be sent either.
                u.conn.closing = true;
                self.write_queue = self.write_queue.saturating_sub(u.conn.pending() as u64);
                u.conn.out.clear();
                u.conn.written = 0;
            }
        }
        if let Some(bid) = bid {
            self.buffers.recycle(bid);
        }
        self.after_input(slot);
        self.submit_ops(slot);
        self.flush(slot);
        if let Some(u) = self.conns.get(slot).and_then(Option::as_ref)
            && !u.recv_armed
            && !u.recv_starved
        {
            self.arm_recv(slot);
        }
        self.maybe_finish(slot);
    }

    /// Feeds held input to the session within the send-buffer limit, then applies
    /// back-pressure.
    fn process(&mut self, slot: usize) {
        let write_max = self.config.write_buffer_bytes_max;
        let metrics = &self.metrics[self.id];
        let Some(u) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if u.shut {
            return;
        }
        let limit = write_max.saturating_sub(u.sending.len() - u.send_pos);
        self.write_queue += u.conn.process(limit, metrics);
        self.after_input(slot);
        self.submit_ops(slot);
    }

    /// Hands the connection's pending operations to the writer.
    fn submit_ops(&mut self, slot: usize) {
        let Some(u) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let (ops, work, generation) = (u.conn.take_ops(), u.conn.take_mqtt_work(), u.generation);
        if !ops.is_empty() {
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
            self.mqtt_work(slot, generation, work);
        }
    }

    /// Carries out what the MQTT session of the connection in `slot` asked for.
    fn mqtt_work(&mut self, slot: usize, generation: u32, work: Vec<super::MqttWork>) {
        let me = Owner {
            shard: self.id,
            slot,
            generation,
        };
        super::submit_mqtt(
            &self.config,
            &self.shared,
            (&mut self.tail, &mut self.plugins),
            me,
            work,
        );
    }

    /// Another connection takes over the MQTT client id of the one in `slot`: that one
    /// closes and stores its session first, then the new one is told.
    fn take_over(&mut self, slot: usize, generation: u32, to: Owner) {
        if let Some(u) = live(&mut self.conns, slot, generation)
            && !u.shut
        {
            let work = u.conn.take_over();
            self.mqtt_work(slot, generation, work);
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
            let Some(u) = live(&mut self.conns, done.slot, done.generation) else {
                continue;
            };
            if u.shut {
                continue;
            }
            self.write_queue += u.conn.complete(done.token, done.result);
            // Requests held back behind the operation are read now.
            self.process(done.slot);
            self.flush(done.slot);
        }
    }

    /// Pauses reading when answers pile up or the session takes no more requests: cancels
    /// the multishot receive (bytes already received are still delivered and kept); resumes
    /// it when both are over.
    fn after_input(&mut self, slot: usize) {
        let write_max = self.config.write_buffer_bytes_max;
        let metrics = &self.metrics[self.id];
        metrics
            .write_queue_bytes
            .store(self.write_queue, Ordering::Relaxed);
        let Some(u) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        match u.conn.update_pause(u.pending(), write_max, metrics) {
            Some(true) if u.recv_armed => {
                u.cancels_in_flight += 1;
                let cancel = opcode::AsyncCancel::new(user_data(KIND_RECV, u.generation, slot))
                    .build()
                    .user_data(user_data(KIND_CANCEL, u.generation, slot));
                self.push(&cancel);
            }
            // The session takes requests again (operations completed): read again.
            Some(false) => self.arm_recv(slot),
            _ => {}
        }
    }

    /// Starts a send of everything pending if none is in flight; closes a closing
    /// connection once nothing is left to send.
    fn flush(&mut self, slot: usize) {
        let Some(u) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if u.shut || u.send_in_flight {
            return;
        }
        if u.conn.pending() == 0 {
            if u.conn.closing && !u.conn.awaiting_ops() {
                self.begin_close(slot);
            }
            return;
        }
        // Hand the pending answers to the kernel in their own buffer.
        std::mem::swap(&mut u.sending, &mut u.conn.out);
        u.send_pos = u.conn.written;
        u.conn.out.clear();
        u.conn.written = 0;
        self.submit_send(slot);
    }

    fn submit_send(&mut self, slot: usize) {
        let Some(u) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let rest = &u.sending[u.send_pos..];
        let len = u32::try_from(rest.len()).unwrap_or(u32::MAX);
        let send = opcode::Send::new(Fd(u.fd()), rest.as_ptr(), len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(user_data(KIND_SEND, u.generation, slot));
        u.send_in_flight = true;
        self.push(&send);
    }

    fn on_send(&mut self, slot: usize, generation: u32, result: i32) {
        let write_max = self.config.write_buffer_bytes_max;
        let metrics = &self.metrics[self.id];
        let Some(u) = live(&mut self.conns, slot, generation) else {
            return;
        };
        u.send_in_flight = false;
        if result < 0 {
            self.write_queue = self.write_queue.saturating_sub(u.pending() as u64);
            u.sending.clear();
            u.send_pos = 0;
            u.conn.closing = true;
            u.conn.out.clear();
            u.conn.written = 0;
            self.begin_close(slot);
            self.maybe_finish(slot);
            return;
        }
        let sent = result as usize;
        u.send_pos += sent;
        self.write_queue = self.write_queue.saturating_sub(sent as u64);
        metrics.bytes_out.fetch_add(sent as u64, Ordering::Relaxed);
        metrics
            .write_queue_bytes
            .store(self.write_queue, Ordering::Relaxed);
        if u.send_pos < u.sending.len() && !u.shut {
            self.submit_send(slot);
            return;
        }
        // Whatever a shut-down connection did not send is dropped from the queue.
        let unsent = (u.sending.len() - u.send_pos) as u64;
        self.write_queue = self.write_queue.saturating_sub(unsent);
        u.sending.clear();
        u.send_pos = 0;
        if u.sending.capacity() > WRITE_BUFFER_KEEP {
            u.sending = Vec::new();
        }
        let resumed = u.conn.update_pause(u.pending(), write_max, metrics) == Some(false);
        let held_input = u.conn.has_input();
        if u.shut {
            self.maybe_finish(slot);
            return;
        }
        if resumed {
            if held_input {
                self.process(slot);
            }
            self.arm_recv(slot);
        }
        self.flush(slot);
        self.maybe_finish(slot);
    }

    /// Ends every operation on the socket; the slot is freed once the last completion is in.
    fn begin_close(&mut self, slot: usize) {
        let Some(u) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if u.shut {
            return;
        }
        u.shut = true;
        let (client_id, work) = u.conn.finish();
        let me = Owner {
            shard: self.id,
            slot,
            generation: u.generation,
        };
        super::finish_mqtt(
            &self.config,
            &self.shared,
            (&mut self.tail, &mut self.plugins),
            me,
            client_id,
            work,
        );
        let Some(u) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        // SAFETY: shutdown(2) on a socket we own; it makes pending receives and sends
        // complete.
        unsafe { libc::shutdown(u.fd(), libc::SHUT_RDWR) };
        if u.recv_armed {
            // A multishot receive on a shut-down socket ends with a final completion; cancel
            // it as well in case the kernel keeps it armed.
            u.cancels_in_flight += 1;
            let cancel = opcode::AsyncCancel::new(user_data(KIND_RECV, u.generation, slot))
                .build()
                .user_data(user_data(KIND_CANCEL, u.generation, slot));
            self.push(&cancel);
        }
        self.maybe_finish(slot);
    }

    /// Frees the slot of a shut-down connection with nothing left in the kernel.
    fn maybe_finish(&mut self, slot: usize) {
        let done = self
            .conns
            .get(slot)
            .and_then(Option::as_ref)
            .is_some_and(|u| u.shut && u.idle_in_kernel());
        if !done {
            return;
        }
        let Some(u) = self.conns.get_mut(slot).and_then(Option::take) else {
            return;
        };
        self.write_queue = self.write_queue.saturating_sub(u.pending() as u64);
        let metrics = &self.metrics[self.id];
        metrics.open.fetch_sub(1, Ordering::Relaxed);
        metrics
            .write_queue_bytes
            .store(self.write_queue, Ordering::Relaxed);
        if u.conn.read_paused {
            metrics.read_paused.fetch_sub(1, Ordering::Relaxed);
        }
        self.shared.release(u.conn.listener);
        self.generations[slot] = self.generations[slot].wrapping_add(1) & 0x00ff_ffff;
        self.free.push(slot);
        if self.free.len() == self.conns.len() && self.conns.len() > SLAB_KEEP {
            // Every connection is gone and the kernel holds nothing of theirs (a slot is
            // freed only after its last completion): give back the table a crowd left behind.
            // The generations stay: results of writer operations for closed connections may
            // still be on their way.
            self.conns = Vec::new();
            self.free = Vec::new();
        }
        // Dropping the connection closes its socket.
    }

    /// Answers what waited for data or time (fetches); with `deadlines`, also checks
    /// MQTT keep alive.
    fn tick_waiting(&mut self, now: Instant, deadlines: bool) {
        for slot in 0..self.conns.len() {
            if let Some(u) = self.conns[slot].as_mut()
                && !u.shut
                && (u.conn.has_timers() || (deadlines && u.conn.has_deadline()))
            {
                self.write_queue += u.conn.tick(now);
                self.process(slot);
                self.flush(slot);
            }
        }
    }

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
            self.conns
                .iter()
                .map(|u| u.as_ref().filter(|u| !u.shut).map(|u| &u.conn)),
            now,
            &self.config,
        );
        for slot in expired {
            self.metrics().timed_out.fetch_add(1, Ordering::Relaxed);
            self.begin_close(slot);
        }
        // Receives that ran out of buffers, and listeners paused after an accept error.
        let starved: Vec<usize> = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(slot, u)| u.as_ref().filter(|u| u.recv_starved).map(|_| slot))
            .collect();
        for slot in starved {
            self.arm_recv(slot);
        }
        for index in 0..self.accept_paused_until.len() {
            if self.accept_paused_until[index].is_some_and(|until| now >= until) {
                self.accept_paused_until[index] = None;
                self.arm_accept(index);
            }
        }
    }

    /// Shutdown: stop accepting; every connection sends what it has, then closes.
    fn begin_drain(&mut self) {
        for slot in 0..self.conns.len() {
            if let Some(u) = self.conns[slot].as_mut() {
                u.conn.closing = true;
            }
            self.flush(slot);
        }
    }

    /// Closes whatever is left and waits (briefly) for the kernel to let go of it.
    fn finish(&mut self) {
        for slot in 0..self.conns.len() {
            self.begin_close(slot);
        }
        let deadline = crate::clock::now() + Duration::from_secs(1);
        while self.conns.iter().any(Option::is_some) && crate::clock::now() < deadline {
            self.wait(Duration::from_millis(50));
            let completions: Vec<(u64, i32, u32)> = self
                .ring
                .completion()
                .map(|cqe| (cqe.user_data(), cqe.result(), cqe.flags()))
                .collect();
            for (data, result, flags) in completions {
                self.complete(data, result, flags);
            }
        }
        if self.conns.iter().any(Option::is_some) {
            // The kernel still holds operations on these connections' memory, and closing
            // the ring does not wait for them: leak that memory rather than free it under the
            // kernel. The process is shutting down.
            tracing::warn!(
                shard = self.id,
                "io_uring operations still pending at shutdown"
            );
            std::mem::forget(std::mem::take(&mut self.conns));
            self.buffers.leak = true;
        }
    }
}
