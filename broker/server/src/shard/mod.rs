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
//!   the size prefix before the body is buffered) plus one read: while a session takes no
//!   more requests (64 operations in flight, or 64 answers queued behind one that waits) the
//!   connection is not read, so a client that sends faster than the log commits waits in its
//!   own socket; consumed bytes leave the buffer's front only once they outnumber those kept,
//!   so no byte is moved more than a bounded number of times;
//! - `server.write_buffer_bytes_max`: once a connection's unsent responses pass it, the
//!   connection stops being read (and its requests stop being answered) until the client has
//!   read enough to bring them under half of it: a client that never reads costs at most
//!   this much broker memory, and the kernel's socket buffers;
//! - `server.handshake_timeout_ms`: a connection that has not sent one complete request by
//!   then is closed; `<protocol>.idle_timeout_ms`: a connection silent that long is closed.
//!
//! One shard's state and loop logic: `event_loop.rs`; what it hands to other threads:
//! `submit.rs`. Backends, which only move bytes: epoll (`epoll.rs`, `epoll_loop.rs`) and
//! io_uring (`uring_loop.rs`, its buffer ring in `uring_buffers.rs`).
//! `server.io = "auto"` uses io_uring where the kernel offers what it needs
//! ([`uring_available`]) and epoll otherwise; the choice is logged.

mod client_ids;
mod conn;
pub mod epoll;
mod epoll_loop;
mod event_loop;
mod inbox;
mod ingest;
mod mqtt;
mod settings;
mod shared;
mod submit;
mod tls_layer;
mod topic_table;
mod uring_buffers;
mod uring_loop;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::JoinHandle;

use self::client_ids::ClientIds;
use self::epoll::Waker;
use self::inbox::Inbox;
use self::mqtt::{AppendFeed, DelayedWills, TailStart};
pub use self::settings::{Backend, ListenerConfig, Protocol, ServerConfig, ShardMetrics};
use self::shared::{ShardArgs, ShardsShared};
use crate::plugins::ShardPlugins;
use crate::writer::{AppendPhase, WriterHandle};
use weir_core::kafka::KafkaSettings;
pub use weir_core::mqtt_connection::MqttSettings;

/// The running shards.
#[derive(Debug)]
pub struct Shards {
    threads: Vec<JoinHandle<()>>,
    wakers: Vec<Arc<Waker>>,
    shared: Arc<ShardsShared>,
    metrics: Arc<[ShardMetrics]>,
    bound: Bound,
    config: Arc<ServerConfig>,
}

impl Shards {
    /// Binds every listener on every shard (so an address in use fails here, before anything
    /// runs), then starts the shard threads.
    pub fn start(config: ServerConfig) -> io::Result<Shards> {
        let shards = config.shards.max(1);
        let (per_shard, bound) = bind_listeners(&config, shards)?;
        let wakers = (0..shards)
            .map(|_| Waker::new().map(Arc::new))
            .collect::<io::Result<Vec<_>>>()?;
        let shared = Arc::new(ShardsShared {
            kafka: kafka_settings(&config, &bound),
            mqtt: config.mqtt.clone(),
            feeds: (0..shards).map(|_| Arc::default()).collect(),
            inboxes: wakers
                .iter()
                .map(|w| Arc::new(Inbox::new(w.clone())))
                .collect(),
            clients: ClientIds::default(),
            shares: Arc::default(),
            wills: DelayedWills::default(),
            tail_start: TailStart::read(&*config.store),
            seed_base: {
                use std::hash::{BuildHasher, Hasher};
                // The standard library seeds each RandomState from the OS's randomness.
                std::collections::hash_map::RandomState::new()
                    .build_hasher()
                    .finish()
            },
            stop: AtomicBool::new(false),
            open_total: AtomicU32::new(0),
            open_per_listener: config.listeners.iter().map(|_| AtomicU32::new(0)).collect(),
        });
        let metrics: Arc<[ShardMetrics]> = (0..shards).map(|_| ShardMetrics::default()).collect();
        let config = Arc::new(config);
        let cpus = allowed_cpus();
        let mut started = Shards {
            threads: Vec::new(),
            wakers: Vec::new(),
            shared: shared.clone(),
            metrics: metrics.clone(),
            bound,
            config: config.clone(),
        };
        for (id, listeners) in per_shard.into_iter().enumerate() {
            let waker = wakers[id].clone();
            let pin = config
                .pin_threads
                .then(|| cpus.get(id % cpus.len().max(1)).copied())
                .flatten();
            let args = (
                id,
                listeners,
                waker.clone(),
                shared.clone(),
                metrics.clone(),
                config.clone(),
            );
            // Dropping `started` on a set-up error stops the shards already running.
            started.threads.push(spawn_shard(args, pin)?);
            started.wakers.push(waker);
        }
        follow_appends(&config.writer, started.wakers.clone(), shared.feeds.clone());
        Ok(started)
    }

    /// The addresses actually bound, per listener (port 0 resolved).
    pub fn bound(&self) -> &[(ListenerConfig, SocketAddr)] {
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
        // Wills still waiting for their delay are published rather than forgotten.
        let mut plugins = ShardPlugins::new(self.config.plugins.clone());
        let wills = self.shared.wills.due(i64::MAX);
        let mut topics = topic_table::TopicTable::default();
        submit::publish_wills(&self.config, (&mut plugins, &mut topics), wills);
    }
}

/// The address each listener is bound to (port 0 resolved), in the order of
/// [`ServerConfig::listeners`].
type Bound = Vec<(ListenerConfig, SocketAddr)>;

/// Binds every listener once per shard (`SO_REUSEPORT`): each shard's sockets, and the address
/// each protocol is bound to (port 0 resolved).
fn bind_listeners(
    config: &ServerConfig,
    shards: usize,
) -> io::Result<(Vec<Vec<TcpListener>>, Bound)> {
    let mut per_shard: Vec<Vec<TcpListener>> = (0..shards).map(|_| Vec::new()).collect();
    let mut bound = Vec::new();
    for listener in &config.listeners {
        let sockets = bind_reuseport(listener.addr, shards).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot listen on {} for {} ({}): {e}",
                    listener.addr,
                    listener.name(),
                    listener.key(),
                ),
            )
        })?;
        bound.push((*listener, sockets[0].local_addr()?));
        for (shard, socket) in sockets.into_iter().enumerate() {
            per_shard[shard].push(socket);
        }
    }
    Ok((per_shard, bound))
}

/// What Kafka connections share, per listener (used on the Kafka listeners): Metadata
/// advertises the address of the listener the client came in on (or `kafka.advertised_host`
/// with that listener's port), so a client that bootstrapped over TLS stays on TLS.
fn kafka_settings(config: &ServerConfig, bound: &Bound) -> Vec<Arc<KafkaSettings>> {
    let settings = |addr: SocketAddr| {
        let advertised_host = match &config.kafka_advertised_host {
            host if !host.is_empty() => host.clone(),
            _ if !addr.ip().is_unspecified() => addr.ip().to_string(),
            _ => "localhost".to_owned(),
        };
        Arc::new(KafkaSettings {
            store: config.store.clone(),
            request_bytes_max: config.kafka_request_bytes_max,
            advertised_host,
            advertised_port: i32::from(addr.port()),
            auto_create_topics: config.kafka_auto_create_topics,
            auto_create_partitions: config.kafka_auto_create_partitions,
            topics_max: config.kafka_topics_max,
            fetch_bytes_max: config.kafka_fetch_bytes_max,
            batch_decompressed_bytes_max: config.kafka_batch_decompressed_bytes_max,
            // One set of credentials and one access-control list for both fronts.
            auth: config.mqtt.auth.clone(),
            acl: config.mqtt.acl.clone(),
            refused_auth_delay_ms: config.mqtt.refused_connect_delay_ms,
        })
    };
    bound.iter().map(|(_, addr)| settings(*addr)).collect()
}

/// Starts one shard's thread (pinned to `pin`) and waits until its loop is set up. The loop
/// is built on its own thread: an io_uring ring set up for a single issuer belongs to the
/// thread that creates it. Set-up errors come back here.
fn spawn_shard(args: ShardArgs, pin: Option<usize>) -> io::Result<JoinHandle<()>> {
    let id = args.0;
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
    let thread = std::thread::Builder::new()
        .name(format!("weir-shard-{id}"))
        .spawn(move || {
            if let Some(cpu) = pin {
                pin_to_cpu(cpu);
            }
            let ready = |result: io::Result<()>| {
                let _ = ready_tx.send(result);
            };
            match args.5.backend {
                Backend::Epoll => match epoll_loop::EpollShard::new(args) {
                    Ok(mut shard) => {
                        ready(Ok(()));
                        shard.run();
                    }
                    Err(e) => ready(Err(e)),
                },
                Backend::Uring => match uring_loop::UringShard::new(args) {
                    Ok(mut shard) => {
                        ready(Ok(()));
                        shard.run();
                    }
                    Err(e) => ready(Err(e)),
                },
            }
        })?;
    ready_rx
        .recv()
        .map_err(|_| io::Error::other(format!("shard {id} ended during set-up")))??;
    Ok(thread)
}

/// Tells the shards what the writer made durable: fetches waiting for data are looked at
/// again as soon as appends complete, and shards with MQTT subscribers learn which partitions
/// grew.
fn follow_appends(writer: &WriterHandle, wakers: Vec<Arc<Waker>>, feeds: Vec<Arc<AppendFeed>>) {
    writer.on_appended(Box::new(move |phase, appended| {
        for (waker, feed) in wakers.iter().zip(&feeds) {
            match phase {
                AppendPhase::Stored => feed.hold(appended),
                AppendPhase::Answered => {
                    feed.push(appended);
                    waker.notify_data();
                }
            }
        }
    }));
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

/// Whether the io_uring backend can run here; the reason when it cannot (an old kernel,
/// `kernel.io_uring_disabled`, a seccomp profile that blocks it).
pub fn uring_available() -> Result<(), String> {
    uring_loop::probe()
}

/// The CPUs this process may run on, in order (a container or `taskset` may allow only some).
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

/// Pins the calling thread to `cpu` (best effort: a container may forbid it).
pub fn pin_to_cpu(cpu: usize) {
    if cpu >= libc::CPU_SETSIZE as usize {
        return;
    }
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
