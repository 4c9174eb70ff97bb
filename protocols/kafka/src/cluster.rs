//! DescribeCluster (key 60) and OffsetForLeaderEpoch (key 23): what a client asks of the
//! cluster as a whole, and where a leader epoch of a partition ends.
//!
//! DescribeCluster versions 0 and 1 (both flexible); OffsetForLeaderEpoch versions 0 to 4
//! (4 flexible). Weir is one node, so the cluster is that node and every partition has
//! leader epoch 0 for its whole life.

use crate::error::ErrorCode;
use crate::header::write_response_header;
use crate::wire::{Reader, WireError, Writer};

/// API key of DescribeCluster.
pub const DESCRIBE_KEY: i16 = 60;
/// Highest DescribeCluster version implemented.
pub const DESCRIBE_MAX: i16 = 1;
/// API key of OffsetForLeaderEpoch.
pub const EPOCH_KEY: i16 = 23;
/// Highest OffsetForLeaderEpoch version implemented.
pub const EPOCH_MAX: i16 = 4;

/// Request header version of DescribeCluster (always flexible).
pub fn describe_header_version(_version: i16) -> u8 {
    2
}

/// Request header version of OffsetForLeaderEpoch `version` (flexible from 4).
pub fn epoch_header_version(version: i16) -> u8 {
    if version >= 4 { 2 } else { 1 }
}

/// Parses a DescribeCluster body: the endpoint type asked for (1, brokers, before v1).
pub fn parse_describe(body: &[u8], version: i16) -> Result<i8, WireError> {
    let mut r = Reader::new(body);
    r.bool()?; // include_cluster_authorized_operations: no ACLs, nothing to report
    let endpoint_type = if version >= 1 { r.i8()? } else { 1 };
    r.skip_tagged_fields()?;
    Ok(endpoint_type)
}

/// The node a DescribeCluster answer lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node<'a> {
    /// Node id.
    pub id: i32,
    /// Host clients connect to.
    pub host: &'a str,
    /// Port clients connect to.
    pub port: i32,
}

/// Writes a DescribeCluster answer: `node` is the whole cluster and its controller.
pub fn write_describe_response(
    out: &mut Vec<u8>,
    correlation_id: i32,
    version: i16,
    endpoint_type: i8,
    cluster_id: &str,
    node: Node<'_>,
) {
    write_response_header(out, correlation_id, 1);
    let mut w = Writer::new(out, true);
    w.i32(0); // throttle_time_ms
    let brokers = endpoint_type == 1;
    if brokers {
        w.i16(0);
        w.nullable_string(None);
    } else {
        w.i16(ErrorCode::UnsupportedEndpointType.code());
        w.nullable_string(Some("only broker endpoints are served"));
    }
    if version >= 1 {
        w.i8(endpoint_type);
    }
    w.string(cluster_id);
    w.i32(node.id); // controller_id
    if brokers {
        w.array_len(1);
        w.i32(node.id);
        w.string(node.host);
        w.i32(node.port);
        w.nullable_string(None); // rack
        w.tagged();
    } else {
        w.array_len(0);
    }
    w.i32(i32::MIN); // cluster_authorized_operations: not provided
    w.tagged();
}

/// One partition asked about: index, the client's current leader epoch (-1: unknown), the
/// epoch whose end is wanted.
pub type EpochQuery = (i32, i32, i32);

/// Parses an OffsetForLeaderEpoch body of `version` (0..=4): per topic, the queries.
pub fn parse_epochs(
    body: &[u8],
    version: i16,
) -> Result<Vec<(String, Vec<EpochQuery>)>, WireError> {
    let mut r = Reader::new(body);
    let flexible = version >= 4;
    if version >= 3 {
        r.i32()?; // replica_id: consumers send -1
    }
    let topic_count = r.array_len(flexible, 2)?;
    let mut topics = Vec::new();
    for _ in 0..topic_count {
        let name = (r.string_of(flexible)?)
            .ok_or(WireError::Invalid("null topic name"))?
            .to_owned();
        let count = r.array_len(flexible, 8)?;
        let mut queries = Vec::new();
        for _ in 0..count {
            let index = r.i32()?;
            let current = if version >= 2 { r.i32()? } else { -1 };
            let epoch = r.i32()?;
            if flexible {
                r.skip_tagged_fields()?;
            }
            queries.push((index, current, epoch));
        }
        if flexible {
            r.skip_tagged_fields()?;
        }
        topics.push((name, queries));
    }
    if flexible {
        r.skip_tagged_fields()?;
    }
    Ok(topics)
}

/// One partition's answer: index, error code, leader epoch, end offset.
pub type EpochAnswer = (i32, i16, i32, i64);

/// Writes an OffsetForLeaderEpoch answer for a request of `version`.
pub fn write_epochs_response(
    out: &mut Vec<u8>,
    correlation_id: i32,
    version: i16,
    topics: &[(String, Vec<EpochAnswer>)],
) {
    let flexible = version >= 4;
    write_response_header(out, correlation_id, u8::from(flexible));
    let mut w = Writer::new(out, flexible);
    if version >= 2 {
        w.i32(0); // throttle_time_ms
    }
    w.array_len(topics.len());
    for (name, partitions) in topics {
        w.string(name);
        w.array_len(partitions.len());
        for (index, error_code, epoch, end_offset) in partitions {
            w.i16(*error_code);
            w.i32(*index);
            if version >= 1 {
                w.i32(*epoch);
            }
            w.out.extend_from_slice(&end_offset.to_be_bytes());
            w.tagged();
        }
        w.tagged();
    }
    w.tagged();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_cluster_names_the_one_node() {
        assert_eq!(parse_describe(&[0, 0], 0).unwrap(), 1);
        assert_eq!(parse_describe(&[1, 2, 0], 1).unwrap(), 2);
        let mut out = Vec::new();
        let node = Node {
            id: 0,
            host: "h",
            port: 9092,
        };
        write_describe_response(&mut out, 5, 1, 1, "weir", node);
        let expected = [
            0, 0, 0, 5, 0, // header
            0, 0, 0, 0, 0, 0, 0, 1, // throttle, error, null message, endpoint type
            5, b'w', b'e', b'i', b'r', 0, 0, 0, 0, // cluster id, controller
            2, 0, 0, 0, 0, 2, b'h', 0, 0, 0x23, 0x84, 0, 0, // one broker
            0x80, 0, 0, 0, 0, // operations, tagged fields
        ];
        assert_eq!(out, expected);
    }

    #[test]
    fn epochs_by_version() {
        // v2: topic "t", partition 1, current epoch 0, epoch 0.
        let v2 = [
            0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(
            parse_epochs(&v2, 2).unwrap(),
            [("t".to_owned(), vec![(1, 0, 0)])]
        );
        // v4: replica id, compact arrays and tagged fields.
        let v4 = [
            0xff, 0xff, 0xff, 0xff, 2, 2, b't', 2, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0,
            0, 0, 0,
        ];
        assert_eq!(
            parse_epochs(&v4, 4).unwrap(),
            [("t".to_owned(), vec![(1, -1, 0)])]
        );
        assert!(parse_epochs(&[0x7f, 0xff, 0xff, 0xff], 0).is_err());
        let mut v0 = Vec::new();
        write_epochs_response(&mut v0, 1, 0, &[("t".into(), vec![(1, 0, 0, 9)])]);
        let expected = [
            0, 0, 0, 1, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0,
            9,
        ];
        assert_eq!(v0, expected);
    }
}
