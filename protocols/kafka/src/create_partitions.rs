//! CreatePartitions (key 37): grows topics to a new partition count.
//!
//! Versions 0 to 3; 2 and later are flexible. Weir is a single node: an assignment may name
//! only broker 0.

use crate::header::write_response_header;
use crate::wire::{Reader, WireError, Writer};

/// API key of CreatePartitions.
pub const API_KEY: i16 = 37;
/// Highest version implemented.
pub const VERSION_MAX: i16 = 3;

/// Request header version for `version` (flexible from 2).
pub fn request_header_version(version: i16) -> u8 {
    if version >= 2 { 2 } else { 1 }
}

/// One topic to grow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Growth {
    /// The topic.
    pub name: String,
    /// The partition count it should have.
    pub count: i32,
    /// For each new partition, the brokers holding its replicas (`None`: the broker picks).
    pub assignments: Option<Vec<Vec<i32>>>,
}

/// What a CreatePartitions request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The topics.
    pub topics: Vec<Growth>,
    /// Check everything but change nothing.
    pub validate_only: bool,
}

/// Parses a request body of `version`. Array counts are checked against the bytes present
/// before anything is allocated for them.
pub fn parse_request(body: &[u8], version: i16) -> Result<Request, WireError> {
    let mut r = Reader::new(body);
    let flexible = version >= 2;
    let topic_count = r.array_len(flexible, 6)?;
    let mut topics = Vec::new();
    for _ in 0..topic_count {
        let name = r
            .string_of(flexible)?
            .ok_or(WireError::Invalid("null topic name"))?
            .to_owned();
        let count = r.i32()?;
        let assignments = match r.nullable_array_len(flexible, 1)? {
            None => None,
            Some(n) => {
                let mut assignments = Vec::new();
                for _ in 0..n {
                    let brokers = r.array_len(flexible, 4)?;
                    let mut ids = Vec::new();
                    for _ in 0..brokers {
                        ids.push(r.i32()?);
                    }
                    if flexible {
                        r.skip_tagged_fields()?;
                    }
                    assignments.push(ids);
                }
                Some(assignments)
            }
        };
        if flexible {
            r.skip_tagged_fields()?;
        }
        topics.push(Growth {
            name,
            count,
            assignments,
        });
    }
    r.i32()?; // timeout_ms: the change is one local transaction
    let validate_only = r.bool()?;
    if flexible {
        r.skip_tagged_fields()?;
    }
    Ok(Request {
        topics,
        validate_only,
    })
}

/// Writes the whole response (header included) for a request of `version`: per topic its
/// name, error code and message.
pub fn write_response(
    out: &mut Vec<u8>,
    correlation_id: i32,
    version: i16,
    results: &[(String, i16, Option<String>)],
) {
    let flexible = version >= 2;
    write_response_header(out, correlation_id, u8::from(flexible));
    let mut w = Writer::new(out, flexible);
    w.i32(0); // throttle_time_ms
    w.array_len(results.len());
    for (name, error_code, message) in results {
        w.string(name);
        w.i16(*error_code);
        w.nullable_string(message.as_deref());
        w.tagged();
    }
    w.tagged();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v0_and_v2_requests() {
        let v0 = [
            0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff, 0, 0, 0x75, 0x30, 1,
        ];
        let request = parse_request(&v0, 0).unwrap();
        assert_eq!(
            request.topics,
            [Growth {
                name: "t".into(),
                count: 4,
                assignments: None
            }]
        );
        assert!(request.validate_only);
        // v2: two new partitions, each on broker 0.
        let v2 = [
            2, 2, b't', 0, 0, 0, 3, 3, 2, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0x75, 0x30, 0,
            0,
        ];
        let request = parse_request(&v2, 2).unwrap();
        assert_eq!(request.topics[0].assignments, Some(vec![vec![0], vec![0]]));
        assert!(!request.validate_only);
        assert!(parse_request(&v2[..10], 2).is_err());
        assert!(parse_request(&[0x7f, 0xff, 0xff, 0xff], 0).is_err());
    }

    #[test]
    fn response_layouts() {
        let results = [("t".to_owned(), 37, Some("x".to_owned()))];
        let mut v0 = Vec::new();
        write_response(&mut v0, 4, 0, &results);
        assert_eq!(
            v0,
            [
                0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, b't', 0, 37, 0, 1, b'x'
            ]
        );
        let mut v2 = Vec::new();
        write_response(&mut v2, 4, 2, &results);
        assert_eq!(
            v2,
            [0, 0, 0, 4, 0, 0, 0, 0, 0, 2, 2, b't', 0, 37, 2, b'x', 0, 0]
        );
    }
}
