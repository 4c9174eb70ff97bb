//! One Kafka client connection as a state machine: bytes in, response frames out, and
//! operations handed to the broker whose results come back later.
//!
//! [`KafkaSession::on_bytes`] takes whatever the connection has received and answers every
//! complete request in it; an incomplete request waits for more bytes. A request that needs
//! the store's writer (Produce, Metadata's topic creation, the topic admin requests, offset
//! commits and fetches, InitProducerId's durable id) becomes a [`KafkaOp`] the caller runs on
//! the log's writer thread; [`KafkaSession::complete`] takes its result. Kafka answers in
//! request order on a connection, so answers behind a pending operation wait in the session
//! (at most [`ANSWERS_QUEUED_MAX`]; past that no more requests are read) and go out when it
//! completes. The server owns the socket and the buffers; this type owns no I/O.
//!
//! Implemented: exactly the APIs and versions in [`IMPLEMENTED`] (what ApiVersions
//! advertises, the codec's table), each answered by its handler in the table of `apis.rs`:
//! Produce v0-v11 (answered once the batches are durable; no answer for acks 0), Fetch,
//! ListOffsets, Metadata (with topic auto-creation, a switch and a topic-count limit in
//! [`KafkaSettings`]), consumer groups (membership in [`coordinator`], whose requests the
//! caller routes to the group coordinator as [`KafkaOp::Group`]; committed offsets in
//! [`groups`]), topic administration ([`admin`]) and InitProducerId (idempotent producers;
//! transactional ids are refused with `INVALID_REQUEST`). Every other API key or version
//! closes the connection (Apache Kafka does the same for requests it cannot parse), and the
//! error names the API so the log says what a client wanted.
//!
//! The parts: `session.rs` (the connection's request and answer queue), `apis.rs` (the table
//! of APIs and the handlers of the requests answered at once or handed on), `reading.rs`
//! (Fetch, ListOffsets and OffsetForLeaderEpoch, answered by reading the log on the shard),
//! `operations.rs` ([`KafkaOp`], what the writer thread runs, and the answers its results
//! make).

use std::sync::Arc;

use weir_kafka::frame::FrameError;
use weir_kafka::header;
use weir_kafka::wire::WireError;

use crate::log_store::LogStore;

pub mod admin;
mod apis;
pub mod coordinator;
pub mod groups;
mod operations;
mod reading;
mod session;

pub use operations::{
    KafkaOp, KafkaOpResult, ProduceRecords, ProduceTopic, RoutedMessage, produce_failed, resolve,
    run_op,
};
pub use session::KafkaSession;
/// The APIs and versions this broker implements (what ApiVersions advertises).
pub use weir_kafka::api_versions::IMPLEMENTED;

/// Answers a connection may have waiting behind a pending operation. Past it, no further
/// request is read from the connection until the operation completes.
pub const ANSWERS_QUEUED_MAX: usize = 64;

/// The cluster id Metadata reports (Weir is a single node).
const CLUSTER_ID: &str = "weir";

/// The smallest request: a v0 header (api key, version, correlation id).
const REQUEST_BYTES_MIN: usize = 8;

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

/// Why a connection must close. Each names what the client sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KafkaError {
    /// The size prefix is invalid or over the limit.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The request header or body is malformed.
    #[error("malformed request: {0}")]
    Malformed(#[from] WireError),
    /// An API this broker does not implement, or a version outside its range.
    #[error(
        "API key {api_key} ({}) version {api_version} is not implemented by this broker",
        apis::name(*api_key)
    )]
    NotImplemented {
        /// The API key.
        api_key: i16,
        /// The version asked for.
        api_version: i16,
    },
}

/// The body of a request whose API and version [`IMPLEMENTED`] lists, once its header (of
/// version `header_version(api_version)`) parses; any other version closes the connection.
fn request_body(
    frame: &[u8],
    start: header::HeaderStart,
    header_version: impl Fn(i16) -> u8,
) -> Result<&[u8], KafkaError> {
    let listed = IMPLEMENTED.iter().any(|range| {
        range.api_key == start.api_key && (range.min..=range.max).contains(&start.api_version)
    });
    if !listed {
        return Err(KafkaError::NotImplemented {
            api_key: start.api_key,
            api_version: start.api_version,
        });
    }
    let (_, body) = header::RequestHeader::parse(frame, header_version(start.api_version))?;
    Ok(body)
}

#[cfg(test)]
mod tests;
