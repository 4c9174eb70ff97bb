//! The epoll backend of a shard: readiness in, non-blocking `read`/`write` calls out. What
//! the shard does with the bytes is in `event_loop.rs`.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::epoll::{Epoll, Event, Interest};
use super::event_loop::{ACCEPT_BACKOFF, SWEEP_EVERY};
use super::event_loop::{IoBackend, Shard};
use super::shared::ShardArgs;

/// Bytes read from a connection per readiness event.
const READ_CHUNK: usize = 64 * 1024;
/// Events handled per wait.
const EVENT_BATCH: usize = 256;

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

/// The epoll instance, the listeners, and where reads land.
pub(super) struct EpollBackend {
    epoll: Epoll,
    listeners: Vec<Listener>,
    /// Where reads land first, reused for every connection of the shard.
    scratch: Box<[u8]>,
}

/// A shard on epoll.
pub(super) type EpollShard = Shard<EpollBackend>;

impl IoBackend for EpollBackend {
    /// What the kernel is asked to watch.
    type Io = Interest;

    fn in_flight(_: &Interest) -> usize {
        0
    }

    /// Writes what is pending, updates interest, and closes a closing connection once
    /// empty. When a paused connection resumes, answers its held requests and writes again,
    /// in a loop rather than by recursion (a tiny send buffer could resume thousands of
    /// times).
    fn flush(shard: &mut EpollShard, slot: usize) {
        while flush_once(shard, slot) {
            shard.process(slot, crate::clock::now());
        }
    }

    /// Closes the connection at once, also one in its lingering close.
    fn close(shard: &mut EpollShard, slot: usize) {
        let lingering = shard
            .slot(slot)
            .is_some_and(|live| live.lingering.is_some());
        if !lingering && !shard.finish(slot, crate::clock::now()) {
            return;
        }
        if let Some(gone) = shard.free_slot(slot) {
            let _ = shard.backend.epoll.delete(gone.conn.stream.as_raw_fd());
        }
        // Dropping the stream closes the socket.
    }

    /// Interest follows in [`flush`](IoBackend::flush), which always comes next.
    fn reading_changed(_: &mut EpollShard, _: usize, _: bool) {}

    /// Re-watches listeners paused after EMFILE.
    fn sweep(shard: &mut EpollShard, now: Instant) {
        let backend = &mut shard.backend;
        for (index, listener) in backend.listeners.iter_mut().enumerate() {
            if listener.paused_until.is_some_and(|until| now >= until) {
                let token = LISTENER_TOKEN_BASE + index as u64;
                if (backend.epoll)
                    .add(listener.socket.as_raw_fd(), token, READ)
                    .is_ok()
                {
                    listener.paused_until = None;
                }
            }
        }
    }
}

/// One round of [`EpollBackend::flush`]; true if the connection resumed with input held.
fn flush_once(shard: &mut EpollShard, slot: usize) -> bool {
    let write_max = shard.config.write_buffer_bytes_max;
    let metrics = &shard.metrics[shard.id];
    let Some(live) = shard.conns.get_mut(slot).and_then(Option::as_mut) else {
        return false;
    };
    let conn = &mut live.conn;
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
    shard.write_queue = shard.write_queue.saturating_sub(sent as u64);
    metrics.bytes_out.fetch_add(sent as u64, Ordering::Relaxed);
    metrics
        .write_queue_bytes
        .store(shard.write_queue, Ordering::Relaxed);
    if failed {
        EpollBackend::close(shard, slot);
        return false;
    }
    if conn.closing && conn.pending() == 0 && !conn.awaiting_ops() {
        // Closed at once, or after lingering, watched for input only.
        if !shard.linger(slot, crate::clock::now()) || !watch(shard, slot, READ) {
            EpollBackend::close(shard, slot);
        }
        return false;
    }
    let resumed = conn.update_pause(conn.pending(), write_max, metrics) == Some(false);
    let want = Interest {
        read: !conn.read_paused && !conn.closing,
        write: conn.pending() > 0,
    };
    let held_input = conn.has_input();
    if !watch(shard, slot, want) {
        EpollBackend::close(shard, slot);
        return false;
    }
    // Requests held back while the client was not reading are answered next.
    resumed && held_input
}

/// Has the connection in `slot` watched for `want`; false if epoll refused.
fn watch(shard: &mut EpollShard, slot: usize, want: Interest) -> bool {
    let Some(live) = shard.conns.get_mut(slot).and_then(Option::as_mut) else {
        return false;
    };
    if want == live.io {
        return true;
    }
    let token = CONN_TOKEN_BASE + slot as u64;
    let fd = live.conn.stream.as_raw_fd();
    if shard.backend.epoll.modify(fd, token, want).is_err() {
        return false;
    }
    live.io = want;
    true
}

impl EpollShard {
    pub(super) fn new(mut args: ShardArgs) -> io::Result<EpollShard> {
        let epoll = Epoll::new(EVENT_BATCH)?;
        epoll.add(args.2.raw_fd(), WAKER_TOKEN, READ)?;
        let mut listeners = Vec::new();
        for (index, socket) in std::mem::take(&mut args.1).into_iter().enumerate() {
            epoll.add(socket.as_raw_fd(), LISTENER_TOKEN_BASE + index as u64, READ)?;
            listeners.push(Listener {
                socket,
                paused_until: None,
            });
        }
        let backend = EpollBackend {
            epoll,
            listeners,
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
        };
        Ok(Shard::with_backend(backend, args, crate::clock::now()))
    }

    pub(super) fn run(&mut self) {
        let mut events = Vec::with_capacity(EVENT_BATCH);
        let mut next_sweep = crate::clock::now() + SWEEP_EVERY;
        while !self.shared.stop.load(Ordering::Acquire) {
            let timeout = crate::clock::until(next_sweep);
            events.clear();
            if let Err(e) = self.backend.epoll.wait(timeout, |event| events.push(event)) {
                tracing::error!(shard = self.id, "epoll_wait failed: {e}");
                break;
            }
            self.metrics()
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
            WAKER_TOKEN => self.on_wake(),
            token if token >= CONN_TOKEN_BASE => {
                let slot = (token - CONN_TOKEN_BASE) as usize;
                if event.readable {
                    self.on_readable(slot);
                }
                if event.writable {
                    EpollBackend::flush(self, slot);
                }
            }
            token => self.accept((token - LISTENER_TOKEN_BASE) as usize),
        }
    }

    fn accept(&mut self, index: usize) {
        loop {
            let (stream, peer) = match self.backend.listeners[index].socket.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors (EMFILE/ENFILE) or memory: stop watching the
                    // listener for a moment instead of spinning on it.
                    tracing::warn!(shard = self.id, "accept failed: {e}; pausing this listener");
                    let listener = &mut self.backend.listeners[index];
                    let _ = self.backend.epoll.delete(listener.socket.as_raw_fd());
                    listener.paused_until = Some(crate::clock::now() + ACCEPT_BACKOFF);
                    return;
                }
            };
            if !self.shared.admit(index, &self.config) {
                self.metrics().refused.fetch_add(1, Ordering::Relaxed);
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
        let slot = self.vacant_slot();
        let token = CONN_TOKEN_BASE + slot as u64;
        if let Err(e) = self.backend.epoll.add(stream.as_raw_fd(), token, READ) {
            self.unused_slot(slot);
            return Err(e);
        }
        self.install(slot, (stream, listener), READ, crate::clock::now());
        Ok(())
    }

    fn on_readable(&mut self, slot: usize) {
        let Some(live) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if live.lingering.is_some() {
            self.discard(slot);
            return;
        }
        if live.conn.read_paused || live.conn.closing {
            return;
        }
        // One chunk into the shard's scratch buffer; the connection keeps only what its
        // session leaves unconsumed.
        let got = match live.conn.stream.read(&mut self.backend.scratch) {
            Ok(n) => n,
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted =>
            {
                return;
            }
            Err(_) => {
                EpollBackend::close(self, slot);
                return;
            }
        };
        self.receive(slot, crate::clock::now(), |backend| &backend.scratch[..got]);
    }

    /// Reads what the client of a lingering connection still sends, drops it, and closes the
    /// connection once its lingering is over.
    fn discard(&mut self, slot: usize) {
        let Some(live) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let got = match live.conn.stream.read(&mut self.backend.scratch) {
            Ok(n) => n,
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted =>
            {
                return;
            }
            // The socket failed: nothing more to wait for.
            Err(_) => 0,
        };
        if self.dropped(slot, got) {
            EpollBackend::close(self, slot);
        }
    }

    /// Shutdown: no more accepts or reads; send what is pending until the drain timeout
    /// (lingering connections are read, but not waited for); close everything.
    fn drain(&mut self) {
        for listener in self.backend.listeners.drain(..) {
            let _ = self.backend.epoll.delete(listener.socket.as_raw_fd());
        }
        let deadline = crate::clock::now() + self.config.drain_timeout;
        self.begin_drain();
        let mut events = Vec::new();
        while !self.only_lingering_left() && crate::clock::now() < deadline {
            events.clear();
            let left = crate::clock::until(deadline).min(SWEEP_EVERY);
            if self
                .backend
                .epoll
                .wait(left, |event| events.push(event))
                .is_err()
            {
                break;
            }
            for event in events.drain(..) {
                if event.token == WAKER_TOKEN {
                    self.waker.reset();
                    self.drain_inbox();
                } else if event.token >= CONN_TOKEN_BASE {
                    let slot = (event.token - CONN_TOKEN_BASE) as usize;
                    // Only lingering connections are still read.
                    if event.readable {
                        self.on_readable(slot);
                    }
                    if event.writable {
                        EpollBackend::flush(self, slot);
                    }
                }
            }
            // Answers waiting for time (fetches) still go out before their connections close.
            self.sweep(crate::clock::now());
        }
        for slot in 0..self.conns.len() {
            EpollBackend::close(self, slot);
        }
        self.close_inbox();
    }
}
