//! Kafka wire formats for Weir, without I/O.
//!
//! - [`frame`]: size-prefixed framing with the size checked before the body is buffered;
//! - [`header`]: request and response headers;
//! - [`api_versions`]: the ApiVersions answer and the table of implemented APIs;
//! - [`cluster`]: DescribeCluster and OffsetForLeaderEpoch;
//! - [`compression`]: bounded decompression of a batch's records (gzip, snappy, lz4, zstd);
//! - [`error`]: Kafka's error codes as one enum;
//! - [`create_topics`], [`delete_topics`], [`create_partitions`] and [`delete_records`]:
//!   the topic admin requests and answers; [`describe_configs`]: topic settings;
//! - [`find_coordinator`] and [`offsets`]: consumer-group coordinators and committed
//!   offsets (OffsetCommit, OffsetFetch); [`membership`]: the classic group membership
//!   protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, DescribeGroups, ListGroups,
//!   DeleteGroups);
//! - [`fetch`]: the Fetch and ListOffsets requests and answers;
//! - [`init_producer_id`]: the InitProducerId request and answer;
//! - [`metadata`]: the Metadata request and answer;
//! - [`produce`]: the Produce request and answer;
//! - [`record_batch`]: RecordBatch v2, Weir's canonical unit of storage (validation with
//!   CRC32C, offset assignment, encoding, iteration over uncompressed records);
//! - [`wire`]: primitive readers and a writer for both field encodings.
//!
//! Invariant: nothing here allocates from a length or count read off the wire; every declared
//! size is checked against the bytes actually present first.

pub mod api_versions;
pub mod cluster;
pub mod compression;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_configs;
pub mod error;
pub mod fetch;
pub mod find_coordinator;
pub mod frame;
pub mod header;
pub mod init_producer_id;
pub mod membership;
pub mod metadata;
pub mod offsets;
pub mod produce;
pub mod record_batch;
pub mod sasl;
pub mod wire;
