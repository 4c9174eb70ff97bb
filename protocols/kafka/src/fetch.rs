//! Fetch (key 1), versions 4 to 11, and ListOffsets (key 2), versions 1 to 5: reading
//! stored batches and finding offsets. (The flexible versions come later.)
//!
//! Array counts are checked against the bytes present before anything is allocated.

use crate::header::write_response_header;
use crate::wire::{Reader, WireError};

/// API key of Fetch.
pub const FETCH_KEY: i16 = 1;
/// Fetch versions implemented.
pub const FETCH_MIN: i16 = 4;
/// Highest Fetch version implemented.
pub const FETCH_MAX: i16 = 11;
/// API key of ListOffsets.
pub const LIST_OFFSETS_KEY: i16 = 2;
/// ListOffsets versions implemented.
pub const LIST_OFFSETS_MIN: i16 = 1;
/// Highest ListOffsets version implemented.
pub const LIST_OFFSETS_MAX: i16 = 5;

/// One partition a Fetch asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPartition {
    /// Partition index.
    pub index: i32,
    /// First offset wanted.
    pub fetch_offset: i64,
    /// Most bytes for this partition (the first batch is sent whole regardless).
    pub max_bytes: i32,
}

/// One topic a Fetch asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchTopic {
    /// Topic name.
    pub name: String,
    /// Its partitions.
    pub partitions: Vec<FetchPartition>,
}

/// A Fetch request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    /// How long the broker may wait for `min_bytes`.
    pub max_wait_ms: i32,
    /// Bytes to wait for.
    pub min_bytes: i32,
    /// Most bytes in the answer (the first batch is sent whole regardless).
    pub max_bytes: i32,
    /// The topics.
    pub topics: Vec<FetchTopic>,
}

fn name(r: &mut Reader<'_>) -> Result<String, WireError> {
    Ok(r.nullable_string()?
        .ok_or(WireError::Invalid("null topic name"))?
        .to_owned())
}

/// Parses a Fetch body of `version` (4..=11).
pub fn parse_fetch(body: &[u8], version: i16) -> Result<FetchRequest, WireError> {
    let mut r = Reader::new(body);
    r.i32()?; // replica_id
    let max_wait_ms = r.i32()?;
    let min_bytes = r.i32()?;
    let max_bytes = r.i32()?;
    r.skip(1, "isolation level")?;
    if version >= 7 {
        r.i32()?; // session_id
        r.i32()?; // session_epoch
    }
    let topic_count = r.array_len(false, 6)?;
    let mut topics = Vec::new();
    for _ in 0..topic_count {
        let name = name(&mut r)?;
        let partition_count = r.array_len(false, 16)?;
        let mut partitions = Vec::new();
        for _ in 0..partition_count {
            let index = r.i32()?;
            if version >= 9 {
                r.i32()?; // current_leader_epoch
            }
            let fetch_offset = r.i64()?;
            if version >= 5 {
                r.i64()?; // log_start_offset (followers only)
            }
            let max_bytes = r.i32()?;
            partitions.push(FetchPartition {
                index,
                fetch_offset,
                max_bytes,
            });
        }
        topics.push(FetchTopic { name, partitions });
    }
    // Forgotten topics (fetch sessions, v7+) and the rack id (v11) are not used.
    Ok(FetchRequest {
        max_wait_ms,
        min_bytes,
        max_bytes,
        topics,
    })
}

/// One partition of a Fetch answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedPartition {
    /// Partition index.
    pub index: i32,
    /// 0, or why nothing was read.
    pub error_code: i16,
    /// The partition's high watermark.
    pub high_watermark: i64,
    /// The partition's log start offset.
    pub log_start_offset: i64,
    /// Stored batches, byte for byte.
    pub records: Vec<u8>,
}

/// One topic of a Fetch answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedTopic {
    /// Topic name.
    pub name: String,
    /// Its partitions.
    pub partitions: Vec<FetchedPartition>,
}

/// Writes a whole Fetch answer (header included) for `version` (4..=11).
pub fn write_fetch_response(
    out: &mut Vec<u8>,
    correlation_id: i32,
    version: i16,
    topics: &[FetchedTopic],
) {
    write_response_header(out, correlation_id, 0);
    out.extend_from_slice(&0i32.to_be_bytes()); // throttle_time_ms
    if version >= 7 {
        out.extend_from_slice(&0i16.to_be_bytes()); // error_code
        out.extend_from_slice(&0i32.to_be_bytes()); // session_id: no fetch sessions
    }
    out.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for topic in topics {
        out.extend_from_slice(&(topic.name.len() as i16).to_be_bytes());
        out.extend_from_slice(topic.name.as_bytes());
        out.extend_from_slice(&(topic.partitions.len() as i32).to_be_bytes());
        for p in &topic.partitions {
            out.extend_from_slice(&p.index.to_be_bytes());
            out.extend_from_slice(&p.error_code.to_be_bytes());
            out.extend_from_slice(&p.high_watermark.to_be_bytes());
            out.extend_from_slice(&p.high_watermark.to_be_bytes()); // last_stable_offset
            if version >= 5 {
                out.extend_from_slice(&p.log_start_offset.to_be_bytes());
            }
            out.extend_from_slice(&(-1i32).to_be_bytes()); // aborted_transactions: null
            if version >= 11 {
                out.extend_from_slice(&(-1i32).to_be_bytes()); // preferred_read_replica
            }
            out.extend_from_slice(&(p.records.len() as i32).to_be_bytes());
            out.extend_from_slice(&p.records);
        }
    }
}

/// One partition a ListOffsets asks about: a timestamp, -1 for the latest offset, -2 for the
/// earliest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetQuery {
    /// Partition index.
    pub index: i32,
    /// The timestamp, or -1 (latest) or -2 (earliest).
    pub timestamp: i64,
}

/// Parses a ListOffsets body of `version` (1..=5): (topic, queries) pairs.
pub fn parse_list_offsets(
    body: &[u8],
    version: i16,
) -> Result<Vec<(String, Vec<OffsetQuery>)>, WireError> {
    let mut r = Reader::new(body);
    r.i32()?; // replica_id
    if version >= 2 {
        r.skip(1, "isolation level")?;
    }
    let topic_count = r.array_len(false, 6)?;
    let mut topics = Vec::new();
    for _ in 0..topic_count {
        let name = name(&mut r)?;
        let partition_count = r.array_len(false, 12)?;
        let mut queries = Vec::new();
        for _ in 0..partition_count {
            let index = r.i32()?;
            if version >= 4 {
                r.i32()?; // current_leader_epoch
            }
            let timestamp = r.i64()?;
            queries.push(OffsetQuery { index, timestamp });
        }
        topics.push((name, queries));
    }
    Ok(topics)
}

/// One partition of a ListOffsets answer: (index, error code, timestamp, offset).
pub type OffsetAnswer = (i32, i16, i64, i64);

/// Writes a whole ListOffsets answer (header included) for `version` (1..=5).
pub fn write_list_offsets_response(
    out: &mut Vec<u8>,
    correlation_id: i32,
    version: i16,
    topics: &[(String, Vec<OffsetAnswer>)],
) {
    write_response_header(out, correlation_id, 0);
    if version >= 2 {
        out.extend_from_slice(&0i32.to_be_bytes()); // throttle_time_ms
    }
    out.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for (name, answers) in topics {
        out.extend_from_slice(&(name.len() as i16).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(answers.len() as i32).to_be_bytes());
        for (index, error, timestamp, offset) in answers {
            out.extend_from_slice(&index.to_be_bytes());
            out.extend_from_slice(&error.to_be_bytes());
            out.extend_from_slice(&timestamp.to_be_bytes());
            out.extend_from_slice(&offset.to_be_bytes());
            if version >= 4 {
                out.extend_from_slice(&0i32.to_be_bytes()); // leader_epoch
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v4_fetch_parses() {
        let mut body = Vec::new();
        body.extend_from_slice(&(-1i32).to_be_bytes());
        body.extend_from_slice(&500i32.to_be_bytes());
        body.extend_from_slice(&1i32.to_be_bytes());
        body.extend_from_slice(&(1i32 << 20).to_be_bytes());
        body.push(0);
        body.extend_from_slice(&1i32.to_be_bytes());
        body.extend_from_slice(&[0, 1, b't']);
        body.extend_from_slice(&1i32.to_be_bytes());
        body.extend_from_slice(&0i32.to_be_bytes());
        body.extend_from_slice(&7i64.to_be_bytes());
        body.extend_from_slice(&1024i32.to_be_bytes());
        let request = parse_fetch(&body, 4).unwrap();
        assert_eq!(request.max_wait_ms, 500);
        assert_eq!(
            request.topics[0].partitions,
            [FetchPartition {
                index: 0,
                fetch_offset: 7,
                max_bytes: 1024
            }]
        );
        assert!(parse_fetch(&body[..body.len() - 1], 4).is_err());
    }

    #[test]
    fn hostile_counts_fail_without_allocating() {
        let mut body = vec![0xff; 4];
        body.extend_from_slice(&[0; 13]);
        body.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(parse_fetch(&body, 4).is_err());
        let mut offsets = vec![0xff; 4];
        offsets.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(parse_list_offsets(&offsets, 1).is_err());
    }
}
