//! What every Kafka connection of the broker shares, and the constants of the front.

use std::sync::Arc;

use crate::acl::AclSource;
use crate::auth::Authenticator;
use crate::log_store::LogStore;

/// Answers a connection may have waiting behind a pending operation. Past it, no further
/// request is read from the connection until the operation completes.
pub const ANSWERS_QUEUED_MAX: usize = 64;

/// The cluster id Metadata reports (Weir is a single node).
pub(super) const CLUSTER_ID: &str = "weir";

/// The smallest request: a v0 header (api key, version, correlation id).
pub(super) const REQUEST_BYTES_MIN: usize = 8;

/// What every Kafka connection of the broker shares: limits, what Metadata says, and the log
/// that Fetch and ListOffsets read (short read transactions, on the connection's shard).
#[derive(Clone)]
pub struct KafkaSettings {
    /// The log.
    pub store: Arc<dyn LogStore>,
    /// Largest request.
    pub request_bytes_max: usize,
    /// Host clients are told to connect to.
    pub advertised_host: String,
    /// Port clients are told to connect to.
    pub advertised_port: i32,
    /// Create a topic a client names in Metadata if it does not exist.
    pub auto_create_topics: bool,
    /// Partitions of an auto-created topic.
    pub auto_create_partitions: u32,
    /// Auto-creation stops once this many topics exist.
    pub topics_max: u32,
    /// Most record bytes in one Fetch answer, whatever the client asks (Kafka's
    /// `fetch.max.bytes`); the first batch of the first partition with data is sent whole.
    pub fetch_bytes_max: usize,
    /// Most bytes the records of one compressed batch may inflate to.
    pub batch_decompressed_bytes_max: usize,
    /// Checks SASL credentials; says whether a client without SASL is let in.
    pub auth: Arc<dyn Authenticator>,
    /// The access-control list (`auth.acl_file`), read anew for every request.
    pub acl: Arc<dyn AclSource>,
    /// How long a failed SASL authentication waits for its answer (and the close after it),
    /// milliseconds (`auth.refused_connect_delay_ms`): each guess costs the client this long.
    pub refused_auth_delay_ms: u64,
}

impl std::fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSettings")
            .field("advertised_host", &self.advertised_host)
            .field("advertised_port", &self.advertised_port)
            .field("auto_create_topics", &self.auto_create_topics)
            .finish_non_exhaustive()
    }
}
