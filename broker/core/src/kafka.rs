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
//! `op.rs` ([`KafkaOp`] and [`KafkaOpResult`], what a session hands on and gets back),
//! `operations.rs` (what the writer thread makes of an operation, and the answers its results
//! make), `settings.rs` ([`KafkaSettings`]). The files form layers: this one only declares and
//! re-exports; `op.rs` and `settings.rs` import no file of the front.

pub mod admin;
mod apis;
mod authorize;
pub mod coordinator;
pub mod groups;
mod op;
mod operations;
mod reading;
mod sasl;
mod session;
mod settings;

pub use apis::KafkaError;
pub use op::{KafkaOp, KafkaOpResult, ProduceRecords, ProduceTopic, RoutedMessage};
pub use operations::{produce_failed, resolve, run_op};
pub use sasl::MECHANISMS;
pub use session::KafkaSession;
pub use settings::{ANSWERS_QUEUED_MAX, KafkaSettings};
/// The APIs and versions this broker implements (what ApiVersions advertises).
pub use weir_kafka::api_versions::IMPLEMENTED;

#[cfg(test)]
mod tests;
