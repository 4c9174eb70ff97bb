//! The on-disk schema: every table of the LMDB environment, its key and value layout, and the
//! schema version.
//!
//! All integers are big-endian so that LMDB's byte-wise key order is numeric order. Signed
//! values that appear in keys (timestamps) are stored with the sign bit flipped so negative
//! values sort first.
//!
//! | table | key | value |
//! | --- | --- | --- |
//! | `meta` | UTF-8 name | `schema_version` u32; `next_partition_id` u32; `free_epoch` i64; `next_producer_id` i64 |
//! | `log` | partition id u32, base offset u64 | one RecordBatch v2, byte for byte as fetched |
//! | `partitions` | partition id u32 | [`PartitionMeta`], 32 bytes |
//! | `time_index` | partition id u32, timestamp (sign-flipped u64) | base offset u64 |
//! | `topics` | topic name (UTF-8) | [`TopicMeta`] |
//! | `group_offsets` | group length u16, group (UTF-8), partition id u32 | offset i64, leader epoch i32, metadata (UTF-8, the rest) |
//! | `producers` | producer id i64, partition id u32 | epoch i16, newest timestamp i64, count u8, then per batch (up to 5) first and last sequence i32, base and last offset i64 (see [`crate::producers`]) |
//! | `mqtt_sessions` | client id (UTF-8, at most 480 bytes) | a persistent MQTT session: expiry, subscriptions and a delivery cursor per partition (`weir_core::mqtt_kafka::SessionRecord`) |
//! | `dedup` | owner length u16, owner (UTF-8: an MQTT client id), id u16 | partition id u32, base offset i64, last offset i64 of the append made with the key |
//! | `mqtt_retained` | MQTT topic (UTF-8, at most 480 bytes) | the retained message: a one-record batch as the MQTT front stores publishes (`weir_core::mqtt_kafka::message_batch`) |
//!
//! The MQTT tables' values are encoded by `weir_core::mqtt_kafka`: a session record starts with its
//! format version; a retained message is a RecordBatch v2, versioned by its magic byte.
//!
//! Versioning: `meta.schema_version` is written when the environment is created. Opening an
//! environment with a newer version than this build knows is refused (a downgrade could
//! misread data); an older version is migrated forward at open, inside one transaction, once
//! there is a version 2.

use weir_core::log_store::{PartitionId, TopicConfig};

/// The schema this build writes.
pub const SCHEMA_VERSION: u32 = 1;

/// Names of the tables (LMDB named databases).
pub mod table {
    /// Schema version and counters.
    pub const META: &str = "meta";
    /// Record batches by partition and base offset.
    pub const LOG: &str = "log";
    /// Per-partition offsets and size.
    pub const PARTITIONS: &str = "partitions";
    /// Per-partition index from running maximum timestamp to batch base offset.
    pub const TIME_INDEX: &str = "time_index";
    /// Topics and their configuration.
    pub const TOPICS: &str = "topics";
    /// Consumer-group committed offsets (filled by the Kafka front).
    pub const GROUP_OFFSETS: &str = "group_offsets";
    /// Idempotent-producer state, checked and updated by every append.
    pub const PRODUCERS: &str = "producers";
    /// MQTT persistent sessions (filled by the MQTT front).
    pub const MQTT_SESSIONS: &str = "mqtt_sessions";
    /// MQTT retained messages (filled by the MQTT front).
    pub const MQTT_RETAINED: &str = "mqtt_retained";
    /// Keys of appends that must happen at most once (MQTT QoS 2), written with them.
    pub const DEDUP: &str = "dedup";
    /// Every table, for creation at open (a table added later is created when an older
    /// environment is opened).
    pub const ALL: [&str; 10] = [
        META,
        LOG,
        PARTITIONS,
        TIME_INDEX,
        TOPICS,
        GROUP_OFFSETS,
        PRODUCERS,
        MQTT_SESSIONS,
        MQTT_RETAINED,
        DEDUP,
    ];
}

/// `dedup` key prefix of `owner`: its length, then its bytes.
pub fn dedup_prefix(owner: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(2 + owner.len() + 2);
    key.extend_from_slice(&(owner.len() as u16).to_be_bytes());
    key.extend_from_slice(owner.as_bytes());
    key
}

/// `dedup` key of `owner`'s `id`.
pub fn dedup_key(owner: &str, id: u16) -> Vec<u8> {
    let mut key = dedup_prefix(owner);
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// `dedup` value: where the append went.
pub fn encode_dedup(partition: PartitionId, base_offset: i64, last_offset: i64) -> [u8; 20] {
    let mut value = [0u8; 20];
    value[..4].copy_from_slice(&partition.0.to_be_bytes());
    value[4..12].copy_from_slice(&base_offset.to_be_bytes());
    value[12..].copy_from_slice(&last_offset.to_be_bytes());
    value
}

/// Decodes a `dedup` value.
pub fn decode_dedup(value: &[u8]) -> Option<(PartitionId, i64, i64)> {
    let value: &[u8; 20] = value.try_into().ok()?;
    let partition = u32::from_be_bytes(value[..4].try_into().ok()?);
    let base = i64::from_be_bytes(value[4..12].try_into().ok()?);
    let last = i64::from_be_bytes(value[12..].try_into().ok()?);
    Some((PartitionId(partition), base, last))
}

/// `group_offsets` key prefix of `group`: its length, then its bytes, so no group's prefix is
/// another's.
pub fn group_prefix(group: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(2 + group.len() + 4);
    key.extend_from_slice(&(group.len() as u16).to_be_bytes());
    key.extend_from_slice(group.as_bytes());
    key
}

/// `group_offsets` value: offset, leader epoch, metadata.
pub fn encode_committed(committed: &weir_core::log_store::CommittedOffset) -> Vec<u8> {
    let mut value = Vec::with_capacity(12 + committed.metadata.len());
    value.extend_from_slice(&committed.offset.to_be_bytes());
    value.extend_from_slice(&committed.leader_epoch.to_be_bytes());
    value.extend_from_slice(committed.metadata.as_bytes());
    value
}

/// Reads a `group_offsets` value; `None` if it is too short or not UTF-8.
pub fn decode_committed(value: &[u8]) -> Option<weir_core::log_store::CommittedOffset> {
    let offset = i64::from_be_bytes(value.get(..8)?.try_into().ok()?);
    let leader_epoch = i32::from_be_bytes(value.get(8..12)?.try_into().ok()?);
    let metadata = std::str::from_utf8(value.get(12..)?).ok()?.to_owned();
    Some(weir_core::log_store::CommittedOffset {
        offset,
        leader_epoch,
        metadata,
    })
}

/// Keys of the `meta` table.
pub mod meta_key {
    /// u32: the schema version.
    pub const SCHEMA_VERSION: &[u8] = b"schema_version";
    /// u32: the next partition id to assign.
    pub const NEXT_PARTITION_ID: &[u8] = b"next_partition_id";
    /// i64: bumped after deletions so LMDB can reuse the pages they freed.
    pub const FREE_EPOCH: &[u8] = b"free_epoch";
    /// i64: the next idempotent-producer id to hand out.
    pub const NEXT_PRODUCER_ID: &[u8] = b"next_producer_id";
}

/// `log` key: partition id then base offset.
pub fn log_key(partition: PartitionId, base_offset: i64) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..4].copy_from_slice(&partition.0.to_be_bytes());
    key[4..].copy_from_slice(&(base_offset.max(0) as u64).to_be_bytes());
    key
}

/// Splits a `log` key.
pub fn parse_log_key(key: &[u8]) -> Option<(PartitionId, i64)> {
    let pid = u32::from_be_bytes(key.get(..4)?.try_into().ok()?);
    let offset = u64::from_be_bytes(key.get(4..12)?.try_into().ok()?);
    Some((PartitionId(pid), offset as i64))
}

/// `partitions` key.
pub fn partition_key(partition: PartitionId) -> [u8; 4] {
    partition.0.to_be_bytes()
}

/// `time_index` key: partition id then the timestamp with its sign bit flipped.
pub fn time_key(partition: PartitionId, timestamp_ms: i64) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..4].copy_from_slice(&partition.0.to_be_bytes());
    key[4..].copy_from_slice(&((timestamp_ms as u64) ^ (1 << 63)).to_be_bytes());
    key
}

/// Splits a `time_index` key.
pub fn parse_time_key(key: &[u8]) -> Option<(PartitionId, i64)> {
    let pid = u32::from_be_bytes(key.get(..4)?.try_into().ok()?);
    let raw = u64::from_be_bytes(key.get(4..12)?.try_into().ok()?);
    Some((PartitionId(pid), (raw ^ (1 << 63)) as i64))
}

/// A partition's offsets, size and newest timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartitionMeta {
    /// First readable offset.
    pub log_start_offset: i64,
    /// Offset of the next record (high watermark).
    pub next_offset: i64,
    /// Bytes of stored batches.
    pub size_bytes: u64,
    /// Largest batch max-timestamp seen (the time index's running maximum); `i64::MIN` when
    /// none.
    pub max_timestamp: i64,
}

impl PartitionMeta {
    /// Encoded size.
    pub const LEN: usize = 32;

    /// A new, empty partition.
    pub fn empty() -> PartitionMeta {
        PartitionMeta {
            max_timestamp: i64::MIN,
            ..PartitionMeta::default()
        }
    }

    /// Encodes to 32 bytes.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[0..8].copy_from_slice(&self.log_start_offset.to_be_bytes());
        out[8..16].copy_from_slice(&self.next_offset.to_be_bytes());
        out[16..24].copy_from_slice(&self.size_bytes.to_be_bytes());
        out[24..32].copy_from_slice(&self.max_timestamp.to_be_bytes());
        out
    }

    /// Decodes; `None` if the bytes are not 32 long.
    pub fn decode(bytes: &[u8]) -> Option<PartitionMeta> {
        let bytes: &[u8; Self::LEN] = bytes.try_into().ok()?;
        let i64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            i64::from_be_bytes(b)
        };
        Some(PartitionMeta {
            log_start_offset: i64_at(0),
            next_offset: i64_at(8),
            size_bytes: i64_at(16) as u64,
            max_timestamp: i64_at(24),
        })
    }
}

/// A topic's stored form: version byte 1, retention_ms i64, retention_bytes i64, partition
/// count u32, then that many partition ids u32.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMeta {
    /// Settings.
    pub config: TopicConfig,
    /// Partition ids in partition-index order.
    pub partitions: Vec<PartitionId>,
}

impl TopicMeta {
    const VERSION: u8 = 1;

    /// Encodes the topic.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(21 + 4 * self.partitions.len());
        out.push(Self::VERSION);
        out.extend_from_slice(&self.config.retention_ms.to_be_bytes());
        out.extend_from_slice(&self.config.retention_bytes.to_be_bytes());
        out.extend_from_slice(&(self.partitions.len() as u32).to_be_bytes());
        for pid in &self.partitions {
            out.extend_from_slice(&pid.0.to_be_bytes());
        }
        out
    }

    /// Decodes; `None` for bytes this version did not write. The partition count is checked
    /// against the bytes present before anything is allocated.
    pub fn decode(bytes: &[u8]) -> Option<TopicMeta> {
        if bytes.first() != Some(&Self::VERSION) || bytes.len() < 21 {
            return None;
        }
        let retention_ms = i64::from_be_bytes(bytes[1..9].try_into().ok()?);
        let retention_bytes = i64::from_be_bytes(bytes[9..17].try_into().ok()?);
        let count = u32::from_be_bytes(bytes[17..21].try_into().ok()?) as usize;
        let ids = &bytes[21..];
        if ids.len() != count.checked_mul(4)? {
            return None;
        }
        let partitions = ids
            .chunks_exact(4)
            .map(|c| PartitionId(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
            .collect();
        Some(TopicMeta {
            config: TopicConfig {
                retention_ms,
                retention_bytes,
            },
            partitions,
        })
    }
}

/// The big-endian `u32` at the start of `bytes`, or 0 if there are fewer than 4.
pub(crate) fn u32_of(bytes: &[u8]) -> u32 {
    bytes
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_be_bytes)
}

/// The big-endian `i64` at the start of `bytes`, or 0 if there are fewer than 8.
pub(crate) fn i64_of(bytes: &[u8]) -> i64 {
    bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, i64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_numerically() {
        assert!(log_key(PartitionId(1), 255) < log_key(PartitionId(1), 256));
        assert!(log_key(PartitionId(1), i64::MAX) < log_key(PartitionId(2), 0));
        assert!(time_key(PartitionId(1), -5) < time_key(PartitionId(1), 3));
        assert_eq!(
            parse_time_key(&time_key(PartitionId(9), -5)),
            Some((PartitionId(9), -5))
        );
        assert_eq!(
            parse_log_key(&log_key(PartitionId(7), 42)),
            Some((PartitionId(7), 42))
        );
    }

    #[test]
    fn metas_round_trip() {
        let meta = PartitionMeta {
            log_start_offset: 3,
            next_offset: 10,
            size_bytes: 999,
            max_timestamp: -1,
        };
        assert_eq!(PartitionMeta::decode(&meta.encode()), Some(meta));
        let topic = TopicMeta {
            config: TopicConfig::default(),
            partitions: vec![PartitionId(4), PartitionId(5)],
        };
        assert_eq!(TopicMeta::decode(&topic.encode()), Some(topic.clone()));
        let mut hostile = topic.encode();
        hostile[17..21].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(TopicMeta::decode(&hostile), None);
    }
}
