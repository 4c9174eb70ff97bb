//! Metadata (key 3): the brokers, and the topics with their partitions and leaders.
//!
//! Versions 0 to 12; 9 and later are flexible (compact strings and arrays, tagged fields).
//! Weir is a single node (id 0) that leads every partition. Topic ids (v10+) are sent as the
//! zero UUID, which clients treat as "not known"; a v12+ request naming a topic by id gets
//! UNKNOWN_TOPIC_ID for it, and v10/v11 requests, which may not use ids, are refused if
//! they do (as Kafka does).

use crate::header::write_response_header;
use crate::wire::{Reader, WireError, Writer};

/// API key of Metadata.
pub const API_KEY: i16 = 3;
/// Highest version implemented.
pub const VERSION_MAX: i16 = 12;

/// Request header version for `version` (flexible from 9).
pub fn request_header_version(version: i16) -> u8 {
    if version >= 9 { 2 } else { 1 }
}

/// What a Metadata request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The topics named, or `None` for every topic.
    pub topics: Option<Vec<String>>,
    /// Topics asked for by id (v12+); Weir gives no topic an id, so none is known.
    pub topic_ids: Vec<[u8; 16]>,
    /// Whether topics named but missing may be created.
    pub allow_auto_topic_creation: bool,
}

/// Parses a request body of `version`. Array counts are checked against the bytes present
/// before anything is allocated for them.
pub fn parse_request(body: &[u8], version: i16) -> Result<Request, WireError> {
    let mut r = Reader::new(body);
    let flexible = version >= 9;
    // Each entry takes at least one byte: a count beyond the bytes left is a lie.
    let count = r.nullable_array_len(flexible, 1)?;
    let mut topic_ids = Vec::new();
    let topics = match count {
        None => None,
        // v0 has no null array: an empty one means every topic.
        Some(0) if version == 0 => None,
        Some(n) => {
            let mut names = Vec::new();
            for _ in 0..n {
                let id = if version >= 10 { r.uuid()? } else { [0; 16] };
                let name = r.string_of(flexible)?;
                if flexible {
                    r.skip_tagged_fields()?;
                }
                if id != [0; 16] {
                    // An id wins over a name, and ids exist from v12 on.
                    if version < 12 {
                        return Err(WireError::Invalid("topic id before Metadata v12"));
                    }
                    topic_ids.push(id);
                    continue;
                }
                names.push(
                    name.ok_or(WireError::Invalid("topic with neither name nor id"))?
                        .to_owned(),
                );
            }
            Some(names)
        }
    };
    let allow_auto_topic_creation = if version >= 4 { r.bool()? } else { true };
    if (8..=10).contains(&version) {
        r.bool()?; // include_cluster_authorized_operations
    }
    if version >= 8 {
        r.bool()?; // include_topic_authorized_operations
    }
    if flexible {
        r.skip_tagged_fields()?;
    }
    Ok(Request {
        topics,
        topic_ids,
        allow_auto_topic_creation,
    })
}

/// The broker as clients must reach it.
#[derive(Debug, Clone, Copy)]
pub struct Broker<'a> {
    /// Node id (Weir: 0).
    pub node_id: i32,
    /// Advertised host.
    pub host: &'a str,
    /// Advertised port.
    pub port: i32,
}

/// One topic of the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    /// Error for the whole topic (0 when it exists).
    pub error_code: i16,
    /// The name (`None` for a topic asked for by an id that is not known).
    pub name: Option<String>,
    /// The id asked for, echoed with its error; zero otherwise.
    pub topic_id: [u8; 16],
    /// Number of partitions (0 with an error).
    pub partitions: u32,
}

/// Writes the whole response (header included) for a request of `version`.
pub fn write_response(
    out: &mut Vec<u8>,
    correlation_id: i32,
    version: i16,
    broker: Broker<'_>,
    cluster_id: &str,
    topics: &[Topic],
) {
    let flexible = version >= 9;
    let mut w = Writer::new(out, flexible);
    write_response_header(w.out, correlation_id, u8::from(flexible));
    if version >= 3 {
        w.i32(0); // throttle_time_ms
    }
    w.array_len(1);
    w.i32(broker.node_id);
    w.string(broker.host);
    w.i32(broker.port);
    if version >= 1 {
        w.nullable_string(None); // rack
    }
    w.tagged();
    if version >= 2 {
        w.nullable_string(Some(cluster_id));
    }
    if version >= 1 {
        w.i32(broker.node_id); // controller
    }
    w.array_len(topics.len());
    for topic in topics {
        w.i16(topic.error_code);
        match &topic.name {
            Some(name) => w.string(name),
            // Only an id lookup has no name, and those exist from v12, where names are nullable.
            None => w.nullable_string(None),
        }
        if version >= 10 {
            w.out.extend_from_slice(&topic.topic_id);
        }
        if version >= 1 {
            w.out.push(0); // is_internal
        }
        w.array_len(topic.partitions as usize);
        for index in 0..topic.partitions {
            w.i16(0);
            w.i32(index as i32);
            w.i32(broker.node_id); // leader
            if version >= 7 {
                w.i32(0); // leader epoch
            }
            w.array_len(1);
            w.i32(broker.node_id); // replicas
            w.array_len(1);
            w.i32(broker.node_id); // in-sync replicas
            if version >= 5 {
                w.array_len(0); // offline replicas
            }
            w.tagged();
        }
        if version >= 8 {
            w.i32(i32::MIN); // topic authorized operations: not computed
        }
        w.tagged();
    }
    if (8..=10).contains(&version) {
        w.i32(i32::MIN); // cluster authorized operations: not computed
    }
    w.tagged();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn requests_of_each_generation() {
        // v0: an empty array means every topic.
        assert_eq!(parse_request(&[0, 0, 0, 0], 0).unwrap().topics, None);
        // v1: null means every topic, empty means none.
        assert_eq!(
            parse_request(&[0xff, 0xff, 0xff, 0xff], 1).unwrap().topics,
            None
        );
        assert_eq!(
            parse_request(&[0, 0, 0, 0], 1).unwrap().topics,
            Some(vec![])
        );
        // v4 with one topic and auto-creation off.
        let v4 = [0, 0, 0, 1, 0, 1, b'a', 0];
        let request = parse_request(&v4, 4).unwrap();
        assert_eq!(request.topics, Some(vec!["a".to_owned()]));
        assert!(!request.allow_auto_topic_creation);
        // v12 (flexible, topic ids): one topic "b", auto-creation on.
        let mut v12 = vec![2];
        v12.extend_from_slice(&[0; 16]);
        v12.extend_from_slice(&[2, b'b', 0, 1, 0, 0]);
        let request = parse_request(&v12, 12).unwrap();
        assert_eq!(request.topics, Some(vec!["b".to_owned()]));
        assert!(request.allow_auto_topic_creation);
    }

    #[test]
    fn topics_asked_for_by_id() {
        // v12: one topic by id (null name), one by name.
        let mut v12 = vec![3];
        v12.extend_from_slice(&[7; 16]);
        v12.extend_from_slice(&[0, 0]);
        v12.extend_from_slice(&[0; 16]);
        v12.extend_from_slice(&[2, b'b', 0, 1, 0, 0]);
        let request = parse_request(&v12, 12).unwrap();
        assert_eq!(request.topics, Some(vec!["b".to_owned()]));
        assert_eq!(request.topic_ids, vec![[7; 16]]);
        // v10 may not use ids, and no version may name a topic with neither.
        let mut v10 = vec![2];
        v10.extend_from_slice(&[7; 16]);
        v10.extend_from_slice(&[2, b'b', 0, 1, 0, 0]);
        assert!(parse_request(&v10, 10).is_err());
        let mut neither = vec![2];
        neither.extend_from_slice(&[0; 16]);
        neither.extend_from_slice(&[0, 0, 1, 0, 0]);
        assert!(parse_request(&neither, 12).is_err());
        // The answer for an unknown id: its error, a null name and the id echoed.
        let broker = Broker {
            node_id: 0,
            host: "h",
            port: 1,
        };
        let topic = Topic {
            error_code: ErrorCode::UnknownTopicId.code(),
            name: None,
            topic_id: [7; 16],
            partitions: 0,
        };
        let mut out = Vec::new();
        write_response(&mut out, 1, 12, broker, "c", &[topic]);
        let mut tail = vec![2, 0, 100, 0];
        tail.extend_from_slice(&[7; 16]);
        tail.extend_from_slice(&[0, 1]); // is_internal, no partitions
        tail.extend_from_slice(&i32::MIN.to_be_bytes());
        tail.extend_from_slice(&[0, 0]); // topic's and response's tagged fields
        assert!(out.ends_with(&tail), "{out:?}");
    }

    #[test]
    fn a_hostile_topic_count_fails_without_allocating() {
        assert!(parse_request(&[0x7f, 0xff, 0xff, 0xff], 1).is_err());
        assert!(parse_request(&[0xff, 0xff, 0xff, 0x07], 9).is_err());
    }

    #[test]
    fn response_v0_layout() {
        let broker = Broker {
            node_id: 0,
            host: "h",
            port: 9092,
        };
        let topic = Topic {
            error_code: 0,
            name: Some("t".into()),
            topic_id: [0; 16],
            partitions: 1,
        };
        let mut out = Vec::new();
        write_response(&mut out, 5, 0, broker, "c", &[topic]);
        let expected: Vec<u8> = [
            &[0, 0, 0, 5][..],                                       // correlation id
            &[0, 0, 0, 1, 0, 0, 0, 0, 0, 1, b'h', 0, 0, 0x23, 0x84], // brokers
            &[0, 0, 0, 1, 0, 0, 0, 1, b't'],                         // topics: error, name
            &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], // 1 partition: error, index, leader
            &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0], // replicas, isr
        ]
        .concat();
        assert_eq!(out, expected);
    }
}
