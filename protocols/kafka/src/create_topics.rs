//! CreateTopics (key 19): creates topics with a partition count and settings.
//!
//! Versions 0 to 7; 5 and later are flexible. Weir is a single node: a replication factor
//! other than 1 (or -1, the default) and replica assignments naming another broker are
//! refused per topic. The per-topic answer of v5+ carries the partition count, the
//! replication factor and the topic's settings.

use crate::header::write_response_header;
use crate::wire::{Reader, WireError, Writer};

/// API key of CreateTopics.
pub const API_KEY: i16 = 19;
/// Highest version implemented.
pub const VERSION_MAX: i16 = 7;

/// Request header version for `version` (flexible from 5).
pub fn request_header_version(version: i16) -> u8 {
    if version >= 5 { 2 } else { 1 }
}

/// One topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// Its name.
    pub name: String,
    /// Partition count, or -1 for the broker's default.
    pub num_partitions: i32,
    /// Replication factor, or -1 for the broker's default.
    pub replication_factor: i16,
    /// Manual assignment: for partition `i`, the brokers holding replicas.
    pub assignments: Vec<(i32, Vec<i32>)>,
    /// Settings: name and value (`None` means the default).
    pub configs: Vec<(String, Option<String>)>,
}

/// What a CreateTopics request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The topics.
    pub topics: Vec<NewTopic>,
    /// Check everything but create nothing (v1+).
    pub validate_only: bool,
}

fn owned(name: Option<&str>, what: &'static str) -> Result<String, WireError> {
    name.map(str::to_owned).ok_or(WireError::Invalid(what))
}

/// Parses a request body of `version`. Array counts are checked against the bytes present
/// before anything is allocated for them.
pub fn parse_request(body: &[u8], version: i16) -> Result<Request, WireError> {
    let mut r = Reader::new(body);
    let flexible = version >= 5;
    let topic_count = r.array_len(flexible, 8)?;
    let mut topics = Vec::new();
    for _ in 0..topic_count {
        let name = owned(r.string_of(flexible)?, "null topic name")?;
        let num_partitions = r.i32()?;
        let replication_factor = r.i16()?;
        let assignment_count = r.array_len(flexible, 5)?;
        let mut assignments = Vec::new();
        for _ in 0..assignment_count {
            let index = r.i32()?;
            let broker_count = r.array_len(flexible, 4)?;
            let mut brokers = Vec::new();
            for _ in 0..broker_count {
                brokers.push(r.i32()?);
            }
            if flexible {
                r.skip_tagged_fields()?;
            }
            assignments.push((index, brokers));
        }
        let config_count = r.array_len(flexible, 2)?;
        let mut configs = Vec::new();
        for _ in 0..config_count {
            let key = owned(r.string_of(flexible)?, "null config name")?;
            let value = r.string_of(flexible)?.map(str::to_owned);
            if flexible {
                r.skip_tagged_fields()?;
            }
            configs.push((key, value));
        }
        if flexible {
            r.skip_tagged_fields()?;
        }
        topics.push(NewTopic {
            name,
            num_partitions,
            replication_factor,
            assignments,
            configs,
        });
    }
    r.i32()?; // timeout_ms: creation is one local transaction, done well within any timeout
    let validate_only = if version >= 1 { r.bool()? } else { false };
    if flexible {
        r.skip_tagged_fields()?;
    }
    Ok(Request {
        topics,
        validate_only,
    })
}

/// Where a setting's value comes from (Kafka's `ConfigSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on this topic.
    Topic = 1,
    /// The broker's default.
    Default = 5,
}

/// One topic's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicResult {
    /// The name asked for.
    pub name: String,
    /// 0, or why the topic was not created.
    pub error_code: i16,
    /// A human-readable reason with the error.
    pub error_message: Option<String>,
    /// Partition count (v5+; -1 with an error).
    pub num_partitions: i32,
    /// The topic's settings (v5+; empty with an error): name, value, source.
    pub configs: Vec<(String, String, ConfigSource)>,
}

/// Writes the whole response (header included) for a request of `version`.
pub fn write_response(
    out: &mut Vec<u8>,
    correlation_id: i32,
    version: i16,
    topics: &[TopicResult],
) {
    let flexible = version >= 5;
    write_response_header(out, correlation_id, u8::from(flexible));
    let mut w = Writer::new(out, flexible);
    if version >= 2 {
        w.i32(0); // throttle_time_ms
    }
    w.array_len(topics.len());
    for topic in topics {
        w.string(&topic.name);
        if version >= 7 {
            w.out.extend_from_slice(&[0; 16]); // topic id: Weir gives topics none
        }
        w.i16(topic.error_code);
        if version >= 1 {
            w.nullable_string(topic.error_message.as_deref());
        }
        if version >= 5 {
            let ok = topic.error_code == 0;
            w.i32(if ok { topic.num_partitions } else { -1 });
            w.i16(if ok { 1 } else { -1 }); // replication factor
            if ok {
                w.array_len(topic.configs.len());
                for (name, value, source) in &topic.configs {
                    w.string(name);
                    w.nullable_string(Some(value));
                    w.out.push(0); // read_only
                    w.i8(*source as i8);
                    w.out.push(0); // is_sensitive
                    w.tagged();
                }
            } else {
                w.out.push(0); // null configs
            }
        }
        w.tagged();
    }
    w.tagged();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn v0_and_v5_requests() {
        // v0: topic "t", 3 partitions, replication 1, no assignments, one config; timeout.
        let mut v0 = vec![0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 3, 0, 1, 0, 0, 0, 0];
        v0.extend_from_slice(&[0, 0, 0, 1, 0, 2, b'r', b'm', 0, 1, b'5']);
        v0.extend_from_slice(&[0, 0, 0x75, 0x30]);
        let request = parse_request(&v0, 0).unwrap();
        assert_eq!(
            request.topics,
            [NewTopic {
                name: "t".into(),
                num_partitions: 3,
                replication_factor: 1,
                assignments: vec![],
                configs: vec![("rm".into(), Some("5".into()))],
            }]
        );
        assert!(!request.validate_only);
        // v5 (flexible): topic "u", defaults, assignment [0 -> broker 0], no configs,
        // validate only.
        let mut v5 = vec![2, 2, b'u', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        v5.extend_from_slice(&[2, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0]); // assignments
        v5.extend_from_slice(&[1, 0]); // configs, topic tags
        v5.extend_from_slice(&[0, 0, 0x75, 0x30, 1, 0]);
        let request = parse_request(&v5, 5).unwrap();
        assert_eq!(request.topics[0].num_partitions, -1);
        assert_eq!(request.topics[0].assignments, [(0, vec![0])]);
        assert!(request.validate_only);
        assert!(parse_request(&v5[..v5.len() - 3], 5).is_err());
    }

    #[test]
    fn a_hostile_count_fails_without_allocating() {
        assert!(parse_request(&[0x7f, 0xff, 0xff, 0xff], 0).is_err());
        // One topic claiming 2^31 - 1 assignments in a few bytes.
        let lie = [
            0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 1, 0, 1, 0x7f, 0xff, 0xff, 0xff,
        ];
        assert!(parse_request(&lie, 0).is_err());
    }

    #[test]
    fn response_layouts() {
        let created = TopicResult {
            name: "t".into(),
            error_code: 0,
            error_message: None,
            num_partitions: 2,
            configs: vec![("retention.ms".into(), "5".into(), ConfigSource::Topic)],
        };
        let mut v0 = Vec::new();
        write_response(&mut v0, 7, 0, std::slice::from_ref(&created));
        assert_eq!(v0, [0, 0, 0, 7, 0, 0, 0, 1, 0, 1, b't', 0, 0]);
        let mut v5 = Vec::new();
        write_response(&mut v5, 7, 5, &[created]);
        let mut expected = vec![0, 0, 0, 7, 0, 0, 0, 0, 0, 2, 2, b't', 0, 0, 0];
        expected.extend_from_slice(&[0, 0, 0, 2, 0, 1, 2, 13]);
        expected.extend_from_slice(b"retention.ms");
        expected.extend_from_slice(&[2, b'5', 0, 1, 0, 0, 0, 0]);
        assert_eq!(v5, expected);
        let failed = TopicResult {
            name: "t".into(),
            error_code: ErrorCode::TopicAlreadyExists.code(),
            error_message: Some("x".into()),
            num_partitions: 2,
            configs: vec![],
        };
        let mut v5 = Vec::new();
        write_response(&mut v5, 7, 5, &[failed]);
        let tail = [0, 36, 2, b'x', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0];
        assert!(v5.ends_with(&tail), "{v5:?}");
    }
}
