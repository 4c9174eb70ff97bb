//! What a shard set is configured with, and the counters each shard keeps: the ground floor
//! of the shard module, imported by every other file of it and importing none of them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use weir_core::mqtt_connection::{MessagePool, MqttSettings};

use crate::group_thread::CoordinatorHandle;
use crate::writer::WriterHandle;

/// Which protocol a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// The Kafka wire protocol.
    Kafka,
    /// MQTT 3.1, 3.1.1 and 5.0.
    Mqtt,
    /// MQTT over WebSocket (subprotocol `mqtt`).
    MqttWebSocket,
}

impl Protocol {
    /// Name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Kafka => "kafka",
            Protocol::Mqtt => "mqtt",
            Protocol::MqttWebSocket => "mqtt websocket",
        }
    }
}

/// One protocol's listener settings.
#[derive(Debug, Clone, Copy)]
pub struct ListenerConfig {
    /// The protocol.
    pub protocol: Protocol,
    /// Whether it speaks TLS (with [`ServerConfig::tls`]).
    pub tls: bool,
    /// Where to listen.
    pub addr: SocketAddr,
    /// Connections open at once on this listener, all shards together.
    pub connections_max: u32,
    /// A connection silent this long is closed.
    pub idle_timeout: Duration,
}

impl ListenerConfig {
    /// The configuration key of its address.
    pub fn key(&self) -> &'static str {
        match (self.protocol, self.tls) {
            (Protocol::Kafka, false) => "kafka.listen",
            (Protocol::Kafka, true) => "kafka.tls_listen",
            (Protocol::Mqtt, false) => "mqtt.listen",
            (Protocol::Mqtt, true) => "mqtt.tls_listen",
            (Protocol::MqttWebSocket, false) => "mqtt.websocket_listen",
            (Protocol::MqttWebSocket, true) => "mqtt.websocket_tls_listen",
        }
    }

    /// Name for logs: the protocol's, with ` tls` after it on a TLS listener.
    pub fn name(&self) -> String {
        match self.tls {
            true => format!("{} tls", self.protocol.name()),
            false => self.protocol.name().to_owned(),
        }
    }
}

/// Which event loop the shards run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// epoll readiness with non-blocking calls.
    Epoll,
    /// io_uring completions: multishot accept and receive with provided buffers.
    Uring,
}

/// Settings of the shard set.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Number of shard threads.
    pub shards: usize,
    /// The event loop.
    pub backend: Backend,
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
    /// Host Metadata advertises; empty: the Kafka listen address, or `localhost` when that
    /// is a wildcard address.
    pub kafka_advertised_host: String,
    /// Create topics clients name in Metadata.
    pub kafka_auto_create_topics: bool,
    /// Partitions of an auto-created topic.
    pub kafka_auto_create_partitions: u32,
    /// Auto-creation stops at this many topics.
    pub kafka_topics_max: u32,
    /// Most record bytes in one Fetch answer.
    pub kafka_fetch_bytes_max: usize,
    /// Most bytes a compressed batch may inflate to.
    pub kafka_batch_decompressed_bytes_max: usize,
    /// Time to flush responses at shutdown.
    pub drain_timeout: Duration,
    /// Where operations sessions ask for run (the log's writer thread).
    pub writer: WriterHandle,
    /// Where group requests go (the group coordinator's thread).
    pub coordinator: CoordinatorHandle,
    /// The log, for reads on the shards (Fetch, ListOffsets).
    pub store: Arc<dyn weir_core::log_store::LogStore>,
    /// What MQTT connections share.
    pub mqtt: Arc<MqttSettings>,
    /// Ingest plugins; `None`: off.
    pub plugins: Option<Arc<crate::plugins::Registry>>,
    /// The certificate TLS listeners present; needed when one is configured.
    pub tls: Option<Arc<crate::tls::TlsContext>>,
    /// MQTT over TLS: a verified client certificate's common name is the user name
    /// (`tls.identity_as_username`).
    pub tls_identity_as_username: bool,
}

/// What a connection's read uses of its shard: the counters, and the pool the MQTT
/// publishes read are decoded into.
pub(super) struct Reading<'a> {
    pub(super) metrics: &'a ShardMetrics,
    pub(super) pool: &'a mut MessagePool,
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
    /// MQTT messages written or queued to subscribers.
    pub mqtt_delivered: AtomicU64,
    /// MQTT messages not delivered to a subscriber at a limit (they stay in the log).
    pub mqtt_dropped: AtomicU64,
    /// MQTT publishes the access-control list refused (nothing stored).
    pub mqtt_denied: AtomicU64,
}
