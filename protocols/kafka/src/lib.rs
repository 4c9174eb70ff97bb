//! Kafka wire formats for Weir, without I/O.
//!
//! Today this crate holds [`record_batch`]: the Kafka RecordBatch v2 format that is Weir's
//! canonical unit of storage (validation with CRC32C, offset assignment, encoding, and
//! iteration over uncompressed records). Request framing and the protocol codecs join it with
//! the Kafka front.
//!
//! Invariant: nothing here allocates from a length or count read off the wire; every declared
//! size is checked against the bytes actually present first.

pub mod record_batch;
