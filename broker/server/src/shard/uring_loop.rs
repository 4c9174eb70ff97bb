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
//!   never taken for the new one in the same slot. After a protocol error the connection
//!   lingers first (`Shard::linger`): its write side shut, its multishot receive kept armed
//!   and what it brings dropped, each buffer recycled at once.
//! - Time: the loop waits with a timeout (`submit_with_args`), for the timeout sweep.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use io_uring::types::{Fd, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode, squeue};

use super::conn::WRITE_BUFFER_KEEP;
use super::event_loop::{ACCEPT_BACKOFF, SWEEP_EVERY};
use super::event_loop::{GENERATION_MASK, IoBackend, Shard};
use super::shared::ShardArgs;
use super::uring_buffers::{BGID, ProvidedBuffers};

/// Submission and completion queue size.
const RING_ENTRIES: u32 = 4096;
/// Provided receive buffers per shard, and their size.
const BUFFERS: u16 = 128;
const BUFFER_BYTES: usize = 16 * 1024;

const KIND_WAKER: u64 = 1;
const KIND_ACCEPT: u64 = 2;
const KIND_RECV: u64 = 3;
const KIND_SEND: u64 = 4;
const KIND_CANCEL: u64 = 5;

fn user_data(kind: u64, generation: u32, slot: usize) -> u64 {
    (kind << 56) | (u64::from(generation & GENERATION_MASK) << 32) | (slot as u64 & 0xffff_ffff)
}

fn split(data: u64) -> (u64, u32, usize) {
    (
        data >> 56,
        ((data >> 32) as u32) & GENERATION_MASK,
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

/// What io_uring has in flight for a connection.
#[derive(Default)]
pub(super) struct UringIo {
    recv_armed: bool,
    /// A receive that ran out of buffers: arm again once buffers are back.
    recv_starved: bool,
    cancels_in_flight: u32,
    /// The buffer the in-flight send reads; untouched until its completion.
    sending: Vec<u8>,
    send_pos: usize,
    send_in_flight: bool,
}

impl UringIo {
    fn idle_in_kernel(&self) -> bool {
        !self.recv_armed && !self.send_in_flight && self.cancels_in_flight == 0
    }
}

/// The ring, its provided buffers and the listeners.
pub(super) struct UringBackend {
    // Field order matters: the ring is dropped (closed) before the buffers its operations
    // may reference (and the shard drops its backend before its connections).
    ring: IoUring,
    buffers: ProvidedBuffers,
    listeners: Vec<TcpListener>,
    accept_paused_until: Vec<Option<Instant>>,
    stopping: bool,
    /// Connections whose receive ran out of buffers in this batch: armed again after it.
    starved: Vec<usize>,
}

// SAFETY: the raw pointers in ProvidedBuffers refer to mappings owned by the backend; the
// shard is moved to its thread once and used only there.
unsafe impl Send for UringBackend {}

/// A shard on io_uring.
pub(super) type UringShard = Shard<UringBackend>;

impl UringBackend {
    /// Queues a submission, submitting first if the queue is full.
    fn push(&mut self, entry: &squeue::Entry) {
        loop {
            // SAFETY: every entry refers to a socket and, for sends, a buffer that stay valid
            // until the operation's completion is reaped (see UringIo).
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return;
            }
            if let Err(e) = self.ring.submit() {
                tracing::error!("io_uring submit failed: {e}");
            }
        }
    }

    fn arm_accept(&mut self, index: usize) {
        let accept = opcode::AcceptMulti::new(Fd(self.listeners[index].as_raw_fd()))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(user_data(KIND_ACCEPT, 0, index));
        self.push(&accept);
    }

    /// Cancels the multishot receive of the connection in `slot`.
    fn cancel_recv(&mut self, io: &mut UringIo, slot: usize, generation: u32) {
        io.cancels_in_flight += 1;
        let cancel = opcode::AsyncCancel::new(user_data(KIND_RECV, generation, slot))
            .build()
            .user_data(user_data(KIND_CANCEL, generation, slot));
        self.push(&cancel);
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
            Err(e) => tracing::error!("io_uring_enter failed: {e}"),
        }
    }

    fn completions(&mut self, into: &mut Vec<(u64, i32, u32)>) {
        into.clear();
        into.extend(
            self.ring
                .completion()
                .map(|cqe| (cqe.user_data(), cqe.result(), cqe.flags())),
        );
    }
}

impl IoBackend for UringBackend {
    type Io = UringIo;

    fn in_flight(io: &UringIo) -> usize {
        io.sending.len() - io.send_pos
    }

    /// Starts a send of everything pending if none is in flight; closes a closing
    /// connection once nothing is left to send.
    fn flush(shard: &mut UringShard, slot: usize) {
        let Some(live) = shard.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if live.shut || live.io.send_in_flight {
            return;
        }
        if live.conn.pending() == 0 {
            if live.conn.closing && !live.conn.awaiting_ops() {
                // Closed at once, or after lingering, still receiving.
                match shard.linger(slot, crate::clock::now()) {
                    true => shard.arm_recv(slot),
                    false => UringBackend::close(shard, slot),
                }
            }
            return;
        }
        // Hand the pending answers to the kernel in their own buffer.
        let io = &mut live.io;
        std::mem::swap(&mut io.sending, &mut live.conn.out);
        io.send_pos = live.conn.written;
        live.conn.out.clear();
        live.conn.written = 0;
        shard.submit_send(slot);
    }

    /// Ends every operation on the socket (also of a lingering connection); the slot is
    /// freed once the last completion is in.
    fn close(shard: &mut UringShard, slot: usize) {
        let lingered = (shard.slot(slot)).is_some_and(|live| live.lingering.take().is_some());
        if !lingered && !shard.finish(slot, crate::clock::now()) {
            return;
        }
        let generation = shard.generations[slot];
        let Some(live) = shard.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        // SAFETY: shutdown(2) on a socket we own; it makes pending receives and sends
        // complete.
        unsafe { libc::shutdown(live.conn.stream.as_raw_fd(), libc::SHUT_RDWR) };
        if live.io.recv_armed {
            // A multishot receive on a shut-down socket ends with a final completion; cancel
            // it as well in case the kernel keeps it armed.
            shard.backend.cancel_recv(&mut live.io, slot, generation);
        }
        shard.maybe_free(slot);
    }

    /// Cancels the multishot receive when reading pauses (bytes already received are still
    /// delivered and kept); arms it again when reading resumes.
    fn reading_changed(shard: &mut UringShard, slot: usize, paused: bool) {
        let generation = shard.generations[slot];
        let Some(live) = shard.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if !paused {
            shard.arm_recv(slot);
        } else if live.io.recv_armed {
            shard.backend.cancel_recv(&mut live.io, slot, generation);
        }
    }

    /// Receives that ran out of buffers, and listeners paused after an accept error.
    fn sweep(shard: &mut UringShard, now: Instant) {
        let starved: Vec<usize> = (shard.conns.iter().enumerate())
            .filter_map(|(slot, s)| s.as_ref().filter(|s| s.io.recv_starved).map(|_| slot))
            .collect();
        for slot in starved {
            shard.arm_recv(slot);
        }
        let backend = &mut shard.backend;
        for index in 0..backend.accept_paused_until.len() {
            if backend.accept_paused_until[index].is_some_and(|until| now >= until) {
                backend.accept_paused_until[index] = None;
                backend.arm_accept(index);
            }
        }
    }
}

impl UringShard {
    pub(super) fn new(mut args: ShardArgs) -> io::Result<UringShard> {
        let listeners = std::mem::take(&mut args.1);
        let ring = build_ring()?;
        let buffers = ProvidedBuffers::new(&ring, BUFFERS, BUFFER_BYTES)?;
        let backend = UringBackend {
            ring,
            buffers,
            accept_paused_until: vec![None; listeners.len()],
            listeners,
            stopping: false,
            starved: Vec::new(),
        };
        let mut shard = Shard::with_backend(backend, args, crate::clock::now());
        let poll = opcode::PollAdd::new(Fd(shard.waker.raw_fd()), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(user_data(KIND_WAKER, 0, 0));
        shard.backend.push(&poll);
        for index in 0..shard.backend.listeners.len() {
            shard.backend.arm_accept(index);
        }
        Ok(shard)
    }

    fn arm_recv(&mut self, slot: usize) {
        let generation = self.generations[slot];
        let Some(live) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let io = &mut live.io;
        let open = live.lingering.is_some() || !(live.shut || live.conn.closing);
        if io.recv_armed || !open || live.conn.read_paused {
            return;
        }
        io.recv_armed = true;
        io.recv_starved = false;
        let recv = opcode::RecvMulti::new(Fd(live.conn.stream.as_raw_fd()), BGID)
            .build()
            .user_data(user_data(KIND_RECV, generation, slot));
        self.backend.push(&recv);
    }

    pub(super) fn run(&mut self) {
        let mut next_sweep = crate::clock::now() + SWEEP_EVERY;
        let mut drain_deadline = None;
        let mut completions: Vec<(u64, i32, u32)> = Vec::with_capacity(1024);
        loop {
            if self.shared.stop.load(Ordering::Acquire) && !self.backend.stopping {
                self.backend.stopping = true;
                drain_deadline = Some(crate::clock::now() + self.config.drain_timeout);
                self.begin_drain();
            }
            if self.backend.stopping
                && (self.only_lingering_left()
                    || drain_deadline.is_some_and(|d| crate::clock::now() >= d))
            {
                break;
            }
            let wait = crate::clock::until(next_sweep);
            self.backend.wait(wait.min(SWEEP_EVERY));
            self.metrics()
                .loop_iterations
                .fetch_add(1, Ordering::Relaxed);
            self.backend.completions(&mut completions);
            for &(data, result, flags) in &completions {
                self.complete(data, result, flags);
            }
            // Buffers were recycled during the batch: receives that ran out arm again now.
            for slot in std::mem::take(&mut self.backend.starved) {
                self.arm_recv(slot);
            }
            let now = crate::clock::now();
            if now >= next_sweep {
                self.sweep(now);
                next_sweep = now + SWEEP_EVERY;
            }
        }
        self.close_inbox();
        self.shut_down();
    }

    fn complete(&mut self, data: u64, result: i32, flags: u32) {
        let (kind, generation, slot) = split(data);
        match kind {
            KIND_WAKER => {
                self.on_wake();
                if !cqueue::more(flags) {
                    let poll = opcode::PollAdd::new(Fd(self.waker.raw_fd()), libc::POLLIN as u32)
                        .multi(true)
                        .build()
                        .user_data(user_data(KIND_WAKER, 0, 0));
                    self.backend.push(&poll);
                }
            }
            KIND_ACCEPT => self.on_accept(slot, result, flags),
            KIND_CANCEL => {
                if let Some(live) = self.live(slot, generation) {
                    live.io.cancels_in_flight = live.io.cancels_in_flight.saturating_sub(1);
                }
                self.maybe_free(slot);
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
            if self.backend.stopping {
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
                self.backend.accept_paused_until[index] =
                    Some(crate::clock::now() + ACCEPT_BACKOFF);
            }
            return;
        }
        if !cqueue::more(flags) && !self.backend.stopping {
            self.backend.arm_accept(index);
        }
    }

    fn register(&mut self, stream: TcpStream, listener: usize) -> io::Result<()> {
        stream.set_nodelay(true)?;
        let slot = self.vacant_slot();
        let io = UringIo::default();
        self.install(slot, (stream, listener), io, crate::clock::now());
        self.arm_recv(slot);
        Ok(())
    }

    fn on_recv(&mut self, slot: usize, generation: u32, result: i32, flags: u32) {
        let bid = cqueue::buffer_select(flags);
        let now = crate::clock::now();
        let Some(live) = self.live(slot, generation) else {
            if let Some(bid) = bid {
                self.backend.buffers.recycle(bid);
            }
            return;
        };
        if !cqueue::more(flags) {
            live.io.recv_armed = false;
        }
        if live.lingering.is_some() {
            self.on_linger_recv(slot, result, bid);
            return;
        }
        match (result, bid) {
            (n, Some(bid)) if n > 0 => {
                self.receive(slot, now, |backend| backend.buffers.get(bid, n as usize));
            }
            (0, _) => self.receive(slot, now, |_| &[]),
            (e, _) if e == -libc::ENOBUFS => {
                live.io.recv_starved = true;
                self.backend.starved.push(slot);
            }
            (e, _) if e == -libc::ECANCELED || e > 0 => {}
            _ => {
                // The socket failed: nothing more can be sent either.
                live.conn.closing = true;
                live.conn.linger = false;
                let unsent = live.conn.pending() as u64;
                live.conn.out.clear();
                live.conn.written = 0;
                self.write_queue = self.write_queue.saturating_sub(unsent);
                UringBackend::flush(self, slot);
            }
        }
        if let Some(bid) = bid {
            self.backend.buffers.recycle(bid);
        }
        if let Some(live) = self.slot(slot)
            && !live.io.recv_armed
            && !live.io.recv_starved
        {
            self.arm_recv(slot);
        }
        self.maybe_free(slot);
    }

    /// A receive completion for a lingering connection: what came is dropped and its buffer
    /// recycled; the receive is armed again until the lingering is over.
    fn on_linger_recv(&mut self, slot: usize, result: i32, bid: Option<u16>) {
        if let Some(bid) = bid {
            self.backend.buffers.recycle(bid);
        }
        let over = match result {
            n if n > 0 => self.dropped(slot, n as usize),
            e if e == -libc::ENOBUFS => {
                if let Some(live) = self.slot(slot) {
                    live.io.recv_starved = true;
                }
                self.backend.starved.push(slot);
                false
            }
            e if e == -libc::ECANCELED => false,
            // The client closed its side, or the socket failed.
            _ => self.dropped(slot, 0),
        };
        if over {
            UringBackend::close(self, slot);
        } else if let Some(live) = self.slot(slot)
            && !live.io.recv_armed
            && !live.io.recv_starved
        {
            self.arm_recv(slot);
        }
        self.maybe_free(slot);
    }

    fn submit_send(&mut self, slot: usize) {
        let generation = self.generations[slot];
        let Some(live) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let rest = &live.io.sending[live.io.send_pos..];
        let len = u32::try_from(rest.len()).unwrap_or(u32::MAX);
        let send = opcode::Send::new(Fd(live.conn.stream.as_raw_fd()), rest.as_ptr(), len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(user_data(KIND_SEND, generation, slot));
        live.io.send_in_flight = true;
        self.backend.push(&send);
    }

    fn on_send(&mut self, slot: usize, generation: u32, result: i32) {
        let write_max = self.config.write_buffer_bytes_max;
        let metrics = &self.metrics[self.id];
        let Some(live) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if self.generations[slot] != generation {
            return;
        }
        let io = &mut live.io;
        io.send_in_flight = false;
        if result < 0 {
            let unsent = (io.sending.len() - io.send_pos + live.conn.pending()) as u64;
            self.write_queue = self.write_queue.saturating_sub(unsent);
            io.sending.clear();
            io.send_pos = 0;
            live.conn.closing = true;
            live.conn.out.clear();
            live.conn.written = 0;
            UringBackend::close(self, slot);
            self.maybe_free(slot);
            return;
        }
        let sent = result as usize;
        io.send_pos += sent;
        self.write_queue = self.write_queue.saturating_sub(sent as u64);
        metrics.bytes_out.fetch_add(sent as u64, Ordering::Relaxed);
        metrics
            .write_queue_bytes
            .store(self.write_queue, Ordering::Relaxed);
        if io.send_pos < io.sending.len() && !live.shut {
            self.submit_send(slot);
            return;
        }
        // Whatever a shut-down connection did not send is dropped from the queue.
        let unsent = (io.sending.len() - io.send_pos) as u64;
        self.write_queue = self.write_queue.saturating_sub(unsent);
        io.sending.clear();
        io.send_pos = 0;
        if io.sending.capacity() > WRITE_BUFFER_KEEP {
            io.sending = Vec::new();
        }
        let pending = live.conn.pending();
        let resumed = live.conn.update_pause(pending, write_max, metrics) == Some(false);
        let held_input = live.conn.has_input();
        if live.shut {
            self.maybe_free(slot);
            return;
        }
        if resumed {
            if held_input {
                self.process(slot, crate::clock::now());
            }
            self.arm_recv(slot);
        }
        UringBackend::flush(self, slot);
        self.maybe_free(slot);
    }

    /// Frees the slot of a shut-down connection with nothing left in the kernel.
    fn maybe_free(&mut self, slot: usize) {
        let done = (self.conns.get(slot).and_then(Option::as_ref))
            .is_some_and(|live| live.shut && live.lingering.is_none() && live.io.idle_in_kernel());
        if done {
            // Dropping the connection closes its socket.
            drop(self.free_slot(slot));
        }
    }

    /// Closes whatever is left and waits (briefly) for the kernel to let go of it.
    fn shut_down(&mut self) {
        for slot in 0..self.conns.len() {
            UringBackend::close(self, slot);
        }
        let deadline = crate::clock::now() + Duration::from_secs(1);
        let mut completions = Vec::new();
        while self.conns.iter().any(Option::is_some) && crate::clock::now() < deadline {
            self.backend.wait(Duration::from_millis(50));
            self.backend.completions(&mut completions);
            for &(data, result, flags) in &completions {
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
            self.backend.buffers.leak = true;
        }
    }
}
