//! Produce (key 0), versions 0 to 11: record batches for partitions of topics.
//!
//! Versions 9 and later are flexible. Versions below 3 carry the legacy message format
//! (magic 0 or 1), which the broker converts to a RecordBatch v2 before storing it; they are
//! advertised also because librdkafka before 2.10 enables gzip, snappy and lz4 only when a
//! broker lists Produce versions that old. Every array count and bytes length is checked against the bytes
//! present before anything is allocated for it; the records stay borrowed from the request.

use crate::header::write_response_header;
use crate::wire::{Reader, WireError, put_uvarint};

/// API key of Produce.
pub const API_KEY: i16 = 0;
/// Lowest version implemented.
pub const VERSION_MIN: i16 = 0;
/// Highest version implemented.
pub const VERSION_MAX: i16 = 11;

/// Request header version for `version` (flexible from 9).
pub fn request_header_version(version: i16) -> u8 {
    if version >= 9 { 2 } else { 1 }
}

/// One partition's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionData<'a> {
    /// Partition index.
    pub index: i32,
    /// One or more record batches, back to back.
    pub records: Option<&'a [u8]>,
}

/// One topic's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicData<'a> {
    /// Topic name.
    pub name: &'a str,
    /// Its partitions' data.
    pub partitions: Vec<PartitionData<'a>>,
}

/// A Produce request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// Set by transactional producers.
    pub transactional_id: Option<&'a str>,
    /// 0: no answer; 1 or -1: answer once the data is durable.
    pub acks: i16,
    /// How long the client waits.
    pub timeout_ms: i32,
    /// The data.
    pub topics: Vec<TopicData<'a>>,
}

/// Parses a request body of `version`.
pub fn parse_request(body: &[u8], version: i16) -> Result<Request<'_>, WireError> {
    let flexible = version >= 9;
    let mut r = Reader::new(body);
    let transactional_id = if version >= 3 {
        r.string_of(flexible)?
    } else {
        None
    };
    let acks = r.i16()?;
    let timeout_ms = r.i32()?;
    let topic_count = r.array_len(flexible, 3)?;
    let mut topics = Vec::new();
    for _ in 0..topic_count {
        let name = if flexible {
            r.compact_nullable_string()?
        } else {
            r.nullable_string()?
        }
        .ok_or(WireError::Invalid("null topic name"))?;
        let partition_count = r.array_len(flexible, 5)?;
        let mut partitions = Vec::new();
        for _ in 0..partition_count {
            let index = r.i32()?;
            let records = if flexible {
                r.compact_nullable_bytes()?
            } else {
                r.nullable_bytes()?
            };
            if flexible {
                r.skip_tagged_fields()?;
            }
            partitions.push(PartitionData { index, records });
        }
        if flexible {
            r.skip_tagged_fields()?;
        }
        topics.push(TopicData { name, partitions });
    }
    if flexible {
        r.skip_tagged_fields()?;
    }
    Ok(Request {
        transactional_id,
        acks,
        timeout_ms,
        topics,
    })
}

/// One partition's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionResponse {
    /// Partition index.
    pub index: i32,
    /// 0 or the reason the data was not stored.
    pub error_code: i16,
    /// Offset of the first record stored, or -1.
    pub base_offset: i64,
    /// The partition's log start offset, or -1.
    pub log_start_offset: i64,
    /// Why it was refused, for the client (v8+).
    pub error_message: Option<String>,
    /// Records refused, by index in the partition's batch, each with why (v8+).
    pub record_errors: Vec<(i32, Option<String>)>,
}

/// One topic's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicResponse {
    /// Topic name.
    pub name: String,
    /// Its partitions' answers.
    pub partitions: Vec<PartitionResponse>,
}

/// Writes the whole response (header included) for a request of `version`.
pub fn write_response(
    out: &mut Vec<u8>,
    correlation_id: i32,
    version: i16,
    topics: &[TopicResponse],
) {
    let flexible = version >= 9;
    write_response_header(out, correlation_id, u8::from(flexible));
    let len = |out: &mut Vec<u8>, n: usize| {
        if flexible {
            put_uvarint(out, n as u32 + 1);
        } else {
            out.extend_from_slice(&(n as i32).to_be_bytes());
        }
    };
    len(out, topics.len());
    for topic in topics {
        if flexible {
            put_uvarint(out, topic.name.len() as u32 + 1);
        } else {
            out.extend_from_slice(&(topic.name.len() as i16).to_be_bytes());
        }
        out.extend_from_slice(topic.name.as_bytes());
        len(out, topic.partitions.len());
        for p in &topic.partitions {
            out.extend_from_slice(&p.index.to_be_bytes());
            out.extend_from_slice(&p.error_code.to_be_bytes());
            out.extend_from_slice(&p.base_offset.to_be_bytes());
            if version >= 2 {
                out.extend_from_slice(&(-1i64).to_be_bytes()); // log_append_time_ms
            }
            if version >= 5 {
                out.extend_from_slice(&p.log_start_offset.to_be_bytes());
            }
            if version >= 8 {
                let string = |out: &mut Vec<u8>, text: Option<&str>| match (text, flexible) {
                    (None, true) => out.push(0),
                    (None, false) => out.extend_from_slice(&(-1i16).to_be_bytes()),
                    (Some(text), _) => {
                        // Kafka strings are at most i16::MAX bytes.
                        let mut end = text.len().min(i16::MAX as usize);
                        while !text.is_char_boundary(end) {
                            end -= 1;
                        }
                        if flexible {
                            put_uvarint(out, end as u32 + 1);
                        } else {
                            out.extend_from_slice(&(end as i16).to_be_bytes());
                        }
                        out.extend_from_slice(&text.as_bytes()[..end]);
                    }
                };
                len(out, p.record_errors.len());
                for (index, message) in &p.record_errors {
                    out.extend_from_slice(&index.to_be_bytes());
                    string(out, message.as_deref());
                    if flexible {
                        out.push(0);
                    }
                }
                string(out, p.error_message.as_deref());
            }
            if flexible {
                out.push(0);
            }
        }
        if flexible {
            out.push(0);
        }
    }
    if version >= 1 {
        out.extend_from_slice(&0i32.to_be_bytes()); // throttle_time_ms
    }
    if flexible {
        out.push(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v7_request_round_trips_its_fields() {
        let mut body = Vec::new();
        body.extend_from_slice(&(-1i16).to_be_bytes()); // no transactional id
        body.extend_from_slice(&(-1i16).to_be_bytes()); // acks all
        body.extend_from_slice(&1000i32.to_be_bytes());
        body.extend_from_slice(&1i32.to_be_bytes());
        body.extend_from_slice(&[0, 1, b't']);
        body.extend_from_slice(&1i32.to_be_bytes());
        body.extend_from_slice(&2i32.to_be_bytes()); // partition 2
        body.extend_from_slice(&3i32.to_be_bytes());
        body.extend_from_slice(b"abc");
        let request = parse_request(&body, 7).unwrap();
        assert_eq!(request.acks, -1);
        assert_eq!(request.topics[0].name, "t");
        assert_eq!(
            request.topics[0].partitions,
            [PartitionData {
                index: 2,
                records: Some(&b"abc"[..])
            }]
        );
    }

    #[test]
    fn hostile_counts_and_lengths_fail_without_allocating() {
        let mut body = vec![0xff, 0xff, 0, 1, 0, 0, 0, 0];
        body.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(parse_request(&body, 7).is_err());
        let mut body = vec![
            0xff, 0xff, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 1,
        ];
        body.extend_from_slice(&0i32.to_be_bytes());
        body.extend_from_slice(&i32::MAX.to_be_bytes()); // records length
        assert!(parse_request(&body, 7).is_err());
    }

    #[test]
    fn response_v7_layout() {
        let mut out = Vec::new();
        let topic = TopicResponse {
            name: "t".into(),
            partitions: vec![PartitionResponse {
                index: 0,
                error_code: 0,
                base_offset: 5,
                log_start_offset: 0,
                error_message: None,
                record_errors: Vec::new(),
            }],
        };
        write_response(&mut out, 1, 7, &[topic]);
        assert_eq!(out.len(), 4 + 4 + 3 + 4 + 4 + 2 + 8 + 8 + 8 + 4);
        assert_eq!(&out[out.len() - 12..out.len() - 4], &0i64.to_be_bytes());
    }

    #[test]
    fn response_v8_carries_record_errors_and_the_error_message() {
        let topic = TopicResponse {
            name: "t".into(),
            partitions: vec![PartitionResponse {
                index: 0,
                error_code: 87,
                base_offset: -1,
                log_start_offset: -1,
                error_message: Some("no".into()),
                record_errors: vec![(3, Some("bad".into()))],
            }],
        };
        let mut out = Vec::new();
        write_response(&mut out, 1, 8, std::slice::from_ref(&topic));
        assert_eq!(out.len(), 49 + 4 + (4 + 2 + 3) + (2 + 2));
        let tail = &out[out.len() - 4 - 4 - 13..out.len() - 4];
        assert_eq!(tail, b"\0\0\0\x01\0\0\0\x03\0\x03bad\0\x02no");
        // Flexible (v9): compact strings and arrays, tagged fields after each record error.
        let mut out = Vec::new();
        write_response(&mut out, 1, 9, &[topic]);
        // Then the partition's and topic's tagged fields, throttle time, tagged fields.
        let tail = &out[out.len() - 7 - 13..out.len() - 7];
        assert_eq!(tail, b"\x02\0\0\0\x03\x04bad\0\x03no");
    }

    #[test]
    fn the_oldest_versions_have_no_transactional_id_append_time_or_throttle() {
        let mut v0 = vec![0, 1, 0, 0, 0x03, 0xe8, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 1];
        v0.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 2, b'x', b'y']);
        let request = parse_request(&v0, 0).unwrap();
        assert_eq!((request.transactional_id, request.acks), (None, 1));
        assert_eq!(request.topics[0].partitions[0].records, Some(&b"xy"[..]));
        let topic = TopicResponse {
            name: "t".into(),
            partitions: vec![PartitionResponse {
                index: 0,
                error_code: 0,
                base_offset: 5,
                log_start_offset: 0,
                error_message: None,
                record_errors: Vec::new(),
            }],
        };
        let mut out = Vec::new();
        write_response(&mut out, 1, 0, std::slice::from_ref(&topic));
        let mut expected = vec![
            0, 0, 0, 1, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 1, 0, 0, 0, 0, 0, 0,
        ];
        expected.extend_from_slice(&5i64.to_be_bytes());
        assert_eq!(out, expected);
        let mut v1 = Vec::new();
        write_response(&mut v1, 1, 1, std::slice::from_ref(&topic));
        assert_eq!(v1.len(), out.len() + 4, "v1 adds throttle_time_ms");
        let mut v2 = Vec::new();
        write_response(&mut v2, 1, 2, &[topic]);
        assert_eq!(v2.len(), v1.len() + 8, "v2 adds log_append_time_ms");
    }
}
