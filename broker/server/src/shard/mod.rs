//! Thread-per-core serving: N shard threads, each with its own event loop, its own
//! `SO_REUSEPORT` listener socket per protocol, and the connections it accepted.
//!
//! A connection lives on the shard that accepted it and never moves; nothing on the
//! per-request path takes a lock. A shard's loop reads what a connection sent into that
//! connection's buffer, hands the bytes to the protocol's sans-IO session, and writes back
//! every response the session produced in one `write` (several frames per system call).
//!
//! Limits, and what happens at each:
//! - `server.connections_max` (all listeners) and `<protocol>.connections_max` (one
//!   listener): a connection over either is closed as soon as it is accepted;
//! - the receive buffer holds at most one request (`kafka.request_bytes_max`, checked from
//!   the size prefix before the body is buffered) plus one read;
//! - `server.write_buffer_bytes_max`: once a connection's unsent responses pass it, the
//!   connection stops being read (and its requests stop being answered) until the client has
//!   read enough to bring them under half of it: a client that never reads costs at most
//!   this much broker memory, and the kernel's socket buffers;
//! - `server.handshake_timeout_ms`: a connection that has not sent one complete request by
//!   then is closed; `<protocol>.idle_timeout_ms`: a connection silent that long is closed.
//!
//! Backends: epoll today ([`epoll`]). The io_uring backend is not built yet; `server.io =
//! "auto"` selects epoll and says so in the log.

pub mod epoll;

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use weir_core::kafka::KafkaSession;

use self::epoll::{Epoll, Event, Interest, Waker};

/// Which protocol a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// The Kafka wire protocol.
    Kafka,
}

impl Protocol {
    /// Name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Kafka => "kafka",
        }
    }
}

/// One protocol's listener settings.
#[derive(Debug, Clone, Copy)]
pub struct ListenerConfig {
    /// The protocol.
    pub protocol: Protocol,
    /// Where to listen.
    pub addr: SocketAddr,
    /// Connections open at once on this listener, all shards together.
    pub connections_max: u32,
    /// A connection silent this long is closed.
    pub idle_timeout: Duration,
}

/// Settings of the shard set.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Number of shard threads.
    pub shards: usize,
    /// Pin shard `i` to CPU `i % cpus`.
    pub pin_threads: bool,
    /// The listeners.
    pub listeners: Vec<ListenerConfig>,
    /// Connections open at once, all listeners together.
    pub connections_max: u32,
    /// Unsent bytes per connection before it stops being read.
    pub write_buffer_bytes_max: usize,
    /// Time to the first complete request.
    pub handshake_timeout: Duration,
    /// Largest Kafka request.
    pub kafka_request_bytes_max: usize,
    /// Time to flush responses at shutdown.
    pub drain_timeout: Duration,
}

/// Counters of one shard, read by `/metrics`.
#[derive(Debug, Default)]
pub struct ShardMetrics {
    /// Connections accepted and kept.
    pub accepted: AtomicU64,
    /// Connections closed at accept because a limit was reached.
    pub refused: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
    /// Connections closed by a timeout.
    pub timed_out: AtomicU64,
    /// Connections closed for a protocol error.
    pub protocol_errors: AtomicU64,
    /// Bytes received.
    pub bytes_in: AtomicU64,
    /// Bytes sent.
    pub bytes_out: AtomicU64,
    /// Requests answered.
    pub requests: AtomicU64,
    /// Bytes waiting to be sent, all connections of the shard.
    pub write_queue_bytes: AtomicU64,
    /// Connections not being read because their client does not read.
    pub read_paused: AtomicU64,
    /// Event-loop iterations.
    pub loop_iterations: AtomicU64,
}

/// State every shard shares.
#[derive(Debug)]
struct Shared {
    stop: AtomicBool,
    open_total: AtomicU32,
    /// Open connections per listener, indexed like `ServerConfig::listeners`.
    open_per_listener: Vec<AtomicU32>,
}

/// The running shards.
#[derive(Debug)]
pub struct Shards {
    threads: Vec<JoinHandle<()>>,
    wakers: Vec<Arc<Waker>>,
    shared: Arc<Shared>,
    metrics: Arc<[ShardMetrics]>,
    bound: Vec<(Protocol, SocketAddr)>,
}

impl Shards {
    /// Binds every listener on every shard (so an address in use fails here, before anything
    /// runs), then starts the shard threads.
    pub fn start(config: ServerConfig) -> io::Result<Shards> {
        let shards = config.shards.max(1);
        let mut per_shard: Vec<Vec<TcpListener>> = (0..shards).map(|_| Vec::new()).collect();
        let mut bound = Vec::new();
        for listener in &config.listeners {
            let sockets = bind_reuseport(listener.addr, shards).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "cannot listen on {} for {} ({}.listen): {e}",
                        listener.addr,
                        listener.protocol.name(),
                        listener.protocol.name()
                    ),
                )
            })?;
            bound.push((listener.protocol, sockets[0].local_addr()?));
            for (shard, socket) in sockets.into_iter().enumerate() {
                per_shard[shard].push(socket);
            }
        }
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            open_total: AtomicU32::new(0),
            open_per_listener: config.listeners.iter().map(|_| AtomicU32::new(0)).collect(),
        });
        let metrics: Arc<[ShardMetrics]> = (0..shards).map(|_| ShardMetrics::default()).collect();
        let config = Arc::new(config);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut threads = Vec::new();
        let mut wakers = Vec::new();
        for (id, listeners) in per_shard.into_iter().enumerate() {
            let waker = Arc::new(Waker::new()?);
            let mut shard = Shard::new(
                id,
                listeners,
                waker.clone(),
                shared.clone(),
                metrics.clone(),
                config.clone(),
            )?;
            let pin = config.pin_threads.then_some(id % cpus);
            threads.push(
                std::thread::Builder::new()
                    .name(format!("weir-shard-{id}"))
                    .spawn(move || {
                        if let Some(cpu) = pin {
                            pin_to_cpu(cpu);
                        }
                        shard.run();
                    })?,
            );
            wakers.push(waker);
        }
        Ok(Shards {
            threads,
            wakers,
            shared,
            metrics,
            bound,
        })
    }

    /// The addresses actually bound, per protocol (port 0 resolved).
    pub fn bound(&self) -> &[(Protocol, SocketAddr)] {
        &self.bound
    }

    /// Per-shard counters.
    pub fn metrics(&self) -> Arc<[ShardMetrics]> {
        self.metrics.clone()
    }

    /// Stops accepting, lets each shard flush its responses (up to the drain timeout), closes
    /// every connection and joins the threads.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        for waker in &self.wakers {
            waker.wake();
        }
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                tracing::error!("a shard thread panicked");
            }
        }
    }
}

impl Drop for Shards {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Binds `count` listening sockets to `addr` with `SO_REUSEPORT`, so the kernel spreads
/// incoming connections over them. With port 0 the first socket picks the port and the
/// others join it.
fn bind_reuseport(addr: SocketAddr, count: usize) -> io::Result<Vec<TcpListener>> {
    let mut sockets: Vec<TcpListener> = Vec::with_capacity(count);
    let mut target = addr;
    for _ in 0..count {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(target),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&target.into())?;
        socket.listen(LISTEN_BACKLOG)?;
        let listener: TcpListener = socket.into();
        if sockets.is_empty() {
            target = listener.local_addr()?;
        }
        sockets.push(listener);
    }
    Ok(sockets)
}

/// Pending connections the kernel queues per listening socket.
const LISTEN_BACKLOG: i32 = 1024;
/// Bytes read from a connection per readiness event.
const READ_CHUNK: usize = 64 * 1024;
/// A receive buffer emptied with more capacity than this is freed.
const READ_BUFFER_KEEP: usize = 4 * 1024;
/// A send buffer emptied with more capacity than this is freed.
const WRITE_BUFFER_KEEP: usize = 4 * 1024;
/// Events handled per wait.
const EVENT_BATCH: usize = 256;
/// How often timeouts are checked.
const SWEEP_EVERY: Duration = Duration::from_millis(250);
/// How long a listener stays unwatched after the process ran out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

const WAKER_TOKEN: u64 = 0;
const LISTENER_TOKEN_BASE: u64 = 1;
const CONN_TOKEN_BASE: u64 = 1 << 32;

struct Listener {
    socket: TcpListener,
    config: ListenerConfig,
    index: usize,
    /// Unwatched until this time after EMFILE.
    paused_until: Option<Instant>,
}

enum Session {
    Kafka(KafkaSession),
}

struct Conn {
    stream: TcpStream,
    listener: usize,
    session: Session,
    read_buf: Vec<u8>,
    write_buf: Vec<u8>,
    written: usize,
    interest: Interest,
    read_paused: bool,
    /// A protocol error or end of input: flush what is pending, then close.
    closing: bool,
    accepted_at: Instant,
    last_active: Instant,
    answered_any: bool,
}

impl Conn {
    fn pending(&self) -> usize {
        self.write_buf.len() - self.written
    }
}

struct Shard {
    id: usize,
    epoll: Epoll,
    waker: Arc<Waker>,
    listeners: Vec<Listener>,
    conns: Vec<Option<Conn>>,
    free: VecDeque<usize>,
    shared: Arc<Shared>,
    metrics: Arc<[ShardMetrics]>,
    config: Arc<ServerConfig>,
    write_queue: u64,
    /// Where reads land first, reused for every connection of the shard.
    scratch: Box<[u8]>,
}

impl Shard {
    fn new(
        id: usize,
        sockets: Vec<TcpListener>,
        waker: Arc<Waker>,
        shared: Arc<Shared>,
        metrics: Arc<[ShardMetrics]>,
        config: Arc<ServerConfig>,
    ) -> io::Result<Shard> {
        let epoll = Epoll::new(EVENT_BATCH)?;
        let read = Interest {
            read: true,
            write: false,
        };
        epoll.add(waker.raw_fd(), WAKER_TOKEN, read)?;
        let mut listeners = Vec::new();
        for (index, socket) in sockets.into_iter().enumerate() {
            epoll.add(socket.as_raw_fd(), LISTENER_TOKEN_BASE + index as u64, read)?;
            listeners.push(Listener {
                socket,
                config: config.listeners[index],
                index,
                paused_until: None,
            });
        }
        Ok(Shard {
            id,
            epoll,
            waker,
            listeners,
            conns: Vec::new(),
            free: VecDeque::new(),
            shared,
            metrics,
            config,
            write_queue: 0,
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
        })
    }

    fn metrics(&self) -> &ShardMetrics {
        &self.metrics[self.id]
    }

    fn run(&mut self) {
        let mut events = Vec::with_capacity(EVENT_BATCH);
        let mut next_sweep = Instant::now() + SWEEP_EVERY;
        while !self.shared.stop.load(Ordering::Acquire) {
            let timeout = next_sweep.saturating_duration_since(Instant::now());
            events.clear();
            if let Err(e) = self.epoll.wait(timeout, |event| events.push(event)) {
                tracing::error!(shard = self.id, "epoll_wait failed: {e}");
                break;
            }
            self.metrics()
                .loop_iterations
                .fetch_add(1, Ordering::Relaxed);
            for event in events.drain(..) {
                self.dispatch(event);
            }
            let now = Instant::now();
            if now >= next_sweep {
                self.sweep(now);
                next_sweep = now + SWEEP_EVERY;
            }
        }
        self.drain();
    }

    fn dispatch(&mut self, event: Event) {
        match event.token {
            WAKER_TOKEN => self.waker.reset(),
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
            let accepted = self.listeners[index].socket.accept();
            let (stream, peer) = match accepted {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors (EMFILE/ENFILE) or memory: stop watching the
                    // listener for a moment instead of spinning on it.
                    tracing::warn!(shard = self.id, "accept failed: {e}; pausing this listener");
                    let listener = &mut self.listeners[index];
                    let _ = self.epoll.delete(listener.socket.as_raw_fd());
                    listener.paused_until = Some(Instant::now() + ACCEPT_BACKOFF);
                    return;
                }
            };
            let listener = &self.listeners[index];
            if !self.admit(listener.index, listener.config.connections_max) {
                self.metrics().refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, "connection refused: connection limit reached");
                drop(stream);
                continue;
            }
            if let Err(e) = self.register(stream, index) {
                tracing::warn!(%peer, "cannot set up connection: {e}");
                self.release(index);
            }
        }
    }

    /// Counts a new connection against both limits; false (and nothing counted) if either is
    /// reached.
    fn admit(&self, listener: usize, listener_max: u32) -> bool {
        let total = &self.shared.open_total;
        if total.fetch_add(1, Ordering::AcqRel) >= self.config.connections_max {
            total.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        let mine = &self.shared.open_per_listener[listener];
        if mine.fetch_add(1, Ordering::AcqRel) >= listener_max {
            mine.fetch_sub(1, Ordering::AcqRel);
            total.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    fn release(&self, listener: usize) {
        self.shared.open_total.fetch_sub(1, Ordering::AcqRel);
        self.shared.open_per_listener[listener].fetch_sub(1, Ordering::AcqRel);
    }

    fn register(&mut self, stream: TcpStream, listener: usize) -> io::Result<()> {
        stream.set_nonblocking(true)?;
        stream.set_nodelay(true)?;
        let slot = self.free.pop_front().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        let interest = Interest {
            read: true,
            write: false,
        };
        if let Err(e) = self
            .epoll
            .add(stream.as_raw_fd(), CONN_TOKEN_BASE + slot as u64, interest)
        {
            self.free.push_back(slot);
            return Err(e);
        }
        let session = match self.listeners[listener].config.protocol {
            Protocol::Kafka => {
                Session::Kafka(KafkaSession::new(self.config.kafka_request_bytes_max))
            }
        };
        let now = Instant::now();
        self.conns[slot] = Some(Conn {
            stream,
            listener,
            session,
            read_buf: Vec::new(),
            write_buf: Vec::new(),
            written: 0,
            interest,
            read_paused: false,
            closing: false,
            accepted_at: now,
            last_active: now,
            answered_any: false,
        });
        let metrics = self.metrics();
        metrics.accepted.fetch_add(1, Ordering::Relaxed);
        metrics.open.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn on_readable(&mut self, slot: usize) {
        let write_max = self.config.write_buffer_bytes_max;
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if conn.read_paused || conn.closing {
            return;
        }
        // Read one chunk into the shard's scratch buffer; only bytes a session leaves
        // unconsumed (a partial request) are copied into the connection's own buffer, so an
        // idle connection holds no buffer at all.
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
        if got == 0 {
            // End of input: answer what is complete, then close once it is sent.
            conn.closing = true;
        } else {
            conn.last_active = Instant::now();
            self.metrics[self.id]
                .bytes_in
                .fetch_add(got as u64, Ordering::Relaxed);
            conn.read_buf.extend_from_slice(&self.scratch[..got]);
        }
        self.process(slot, write_max);
        self.flush(slot);
    }

    /// Feeds buffered input to the session, within the send-buffer limit.
    fn process(&mut self, slot: usize, write_max: usize) {
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let before_out = conn.write_buf.len();
        let Session::Kafka(session) = &mut conn.session;
        let before_requests = session.requests();
        let limit = conn.written + write_max;
        let result = session.on_bytes(&conn.read_buf, &mut conn.write_buf, limit);
        let answered = session.requests() - before_requests;
        match result {
            Ok(used) => {
                conn.read_buf.drain(..used);
            }
            Err(e) => {
                tracing::debug!(shard = self.id, "closing a kafka connection: {e}");
                self.metrics[self.id]
                    .protocol_errors
                    .fetch_add(1, Ordering::Relaxed);
                conn.closing = true;
                conn.read_buf = Vec::new();
            }
        }
        if answered > 0 {
            conn.answered_any = true;
            self.metrics[self.id]
                .requests
                .fetch_add(answered, Ordering::Relaxed);
        }
        if conn.read_buf.is_empty() && conn.read_buf.capacity() > READ_BUFFER_KEEP {
            conn.read_buf = Vec::new();
        }
        self.write_queue += (conn.write_buf.len() - before_out) as u64;
        if conn.pending() >= write_max && !conn.read_paused {
            conn.read_paused = true;
            self.metrics[self.id]
                .read_paused
                .fetch_add(1, Ordering::Relaxed);
        }
        self.metrics[self.id]
            .write_queue_bytes
            .store(self.write_queue, Ordering::Relaxed);
    }

    /// Writes what is pending; updates interest; closes a closing connection once empty.
    fn flush(&mut self, slot: usize) {
        let write_max = self.config.write_buffer_bytes_max;
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let mut sent = 0usize;
        let mut failed = false;
        while conn.pending() > 0 {
            match conn.stream.write(&conn.write_buf[conn.written..]) {
                Ok(0) => {
                    failed = true;
                    break;
                }
                Ok(n) => {
                    conn.written += n;
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
        self.write_queue = self.write_queue.saturating_sub(sent as u64);
        let metrics = &self.metrics[self.id];
        metrics.bytes_out.fetch_add(sent as u64, Ordering::Relaxed);
        metrics
            .write_queue_bytes
            .store(self.write_queue, Ordering::Relaxed);
        if failed {
            self.close(slot);
            return;
        }
        if conn.pending() == 0 {
            conn.write_buf.clear();
            conn.written = 0;
            if conn.write_buf.capacity() > WRITE_BUFFER_KEEP {
                conn.write_buf = Vec::new();
            }
            if conn.closing {
                self.close(slot);
                return;
            }
        }
        let mut resumed = false;
        if conn.read_paused && conn.pending() < write_max / 2 {
            conn.read_paused = false;
            resumed = true;
            metrics.read_paused.fetch_sub(1, Ordering::Relaxed);
        }
        let want = Interest {
            read: !conn.read_paused && !conn.closing,
            write: conn.pending() > 0,
        };
        if want != conn.interest {
            let token = CONN_TOKEN_BASE + slot as u64;
            if self
                .epoll
                .modify(conn.stream.as_raw_fd(), token, want)
                .is_err()
            {
                self.close(slot);
                return;
            }
            conn.interest = want;
        }
        // Requests held back while the client was not reading are answered now.
        if resumed && !conn.read_buf.is_empty() {
            self.process(slot, write_max);
            self.flush(slot);
        }
    }

    fn close(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::take) else {
            return;
        };
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
        self.release(conn.listener);
        self.free.push_back(slot);
        // Dropping the stream closes the socket.
    }

    /// Closes connections past their handshake or idle timeout; re-watches listeners paused
    /// after EMFILE.
    fn sweep(&mut self, now: Instant) {
        let handshake = self.config.handshake_timeout;
        let mut expired = Vec::new();
        for (slot, conn) in self.conns.iter().enumerate() {
            let Some(conn) = conn else { continue };
            let idle = self.listeners[conn.listener].config.idle_timeout;
            let silent = now.saturating_duration_since(conn.last_active);
            let never_asked =
                !conn.answered_any && now.saturating_duration_since(conn.accepted_at) > handshake;
            if never_asked || silent > idle {
                expired.push(slot);
            }
        }
        for slot in expired {
            self.metrics().timed_out.fetch_add(1, Ordering::Relaxed);
            self.close(slot);
        }
        for index in 0..self.listeners.len() {
            let listener = &mut self.listeners[index];
            if listener.paused_until.is_some_and(|until| now >= until) {
                let token = LISTENER_TOKEN_BASE + index as u64;
                let read = Interest {
                    read: true,
                    write: false,
                };
                if self
                    .epoll
                    .add(listener.socket.as_raw_fd(), token, read)
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
        let deadline = Instant::now() + self.config.drain_timeout;
        for slot in 0..self.conns.len() {
            if let Some(conn) = self.conns[slot].as_mut() {
                conn.closing = true;
            }
            self.flush(slot);
        }
        let mut events = Vec::new();
        while self.conns.iter().any(Option::is_some) && Instant::now() < deadline {
            events.clear();
            let left = deadline
                .saturating_duration_since(Instant::now())
                .min(SWEEP_EVERY);
            if self.epoll.wait(left, |event| events.push(event)).is_err() {
                break;
            }
            for event in events.drain(..) {
                if event.token >= CONN_TOKEN_BASE && event.writable {
                    self.flush((event.token - CONN_TOKEN_BASE) as usize);
                }
            }
        }
        for slot in 0..self.conns.len() {
            self.close(slot);
        }
    }
}

fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and sched_setaffinity get
    // valid pointers to it. Pinning is best effort: a container may forbid it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            tracing::debug!(
                cpu,
                "could not pin shard thread: {}",
                io::Error::last_os_error()
            );
        }
    }
}
