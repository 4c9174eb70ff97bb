//! DeleteRecords (key 21): moves partitions' log start forward, deleting what is before it.
//!
//! Versions 0 to 2; 2 is flexible. An offset of -1 means the high watermark.

use crate::header::write_response_header;
use crate::wire::{Reader, WireError, Writer};

/// API key of DeleteRecords.
pub const API_KEY: i16 = 21;
/// Highest version implemented.
pub const VERSION_MAX: i16 = 2;

/// Request header version for `version` (flexible from 2).
pub fn request_header_version(version: i16) -> u8 {
    if version >= 2 { 2 } else { 1 }
}

/// Per topic, the (partition index, offset) pairs to delete up to.
pub type Request = Vec<(String, Vec<(i32, i64)>)>;

/// Parses a request body of `version`. Array counts are checked against the bytes present
/// before anything is allocated for them.
pub fn parse_request(body: &[u8], version: i16) -> Result<Request, WireError> {
    let mut r = Reader::new(body);
    let flexible = version >= 2;
    let topic_count = r.array_len(flexible, 2)?;
    let mut topics = Vec::new();
    for _ in 0..topic_count {
        let name = r
            .string_of(flexible)?
            .ok_or(WireError::Invalid("null topic name"))?
            .to_owned();
        let partition_count = r.array_len(flexible, 12)?;
        let mut partitions = Vec::new();
        for _ in 0..partition_count {
            let index = r.i32()?;
            let offset = r.i64()?;
            if flexible {
                r.skip_tagged_fields()?;
            }
            partitions.push((index, offset));
        }
        if flexible {
            r.skip_tagged_fields()?;
        }
        topics.push((name, partitions));
    }
    r.i32()?; // timeout_ms: the change is local
    if flexible {
        r.skip_tagged_fields()?;
    }
    Ok(topics)
}

/// One partition's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionResult {
    /// Partition index.
    pub index: i32,
    /// The log start after the deletion (-1 with an error).
    pub low_watermark: i64,
    /// 0 or why nothing was deleted.
    pub error_code: i16,
}

/// Writes the whole response (header included) for a request of `version`.
pub fn write_response(
    out: &mut Vec<u8>,
    correlation_id: i32,
    version: i16,
    topics: &[(String, Vec<PartitionResult>)],
) {
    let flexible = version >= 2;
    write_response_header(out, correlation_id, u8::from(flexible));
    let mut w = Writer::new(out, flexible);
    w.i32(0); // throttle_time_ms
    w.array_len(topics.len());
    for (name, partitions) in topics {
        w.string(name);
        w.array_len(partitions.len());
        for p in partitions {
            w.i32(p.index);
            w.out.extend_from_slice(&p.low_watermark.to_be_bytes());
            w.i16(p.error_code);
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
    fn v0_and_v2_requests() {
        let mut v0 = vec![0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 1, 0, 0, 0, 2];
        v0.extend_from_slice(&(-1i64).to_be_bytes());
        v0.extend_from_slice(&[0, 0, 0x75, 0x30]);
        assert_eq!(
            parse_request(&v0, 0).unwrap(),
            [("t".to_owned(), vec![(2, -1)])]
        );
        let mut v2 = vec![2, 2, b't', 2, 0, 0, 0, 0];
        v2.extend_from_slice(&5i64.to_be_bytes());
        v2.extend_from_slice(&[0, 0, 0, 0, 0x75, 0x30, 0]);
        assert_eq!(
            parse_request(&v2, 2).unwrap(),
            [("t".to_owned(), vec![(0, 5)])]
        );
        assert!(parse_request(&v2[..9], 2).is_err());
        // One topic claiming 2^31 - 1 partitions in a few bytes.
        assert!(parse_request(&[0, 0, 0, 1, 0, 1, b't', 0x7f, 0xff, 0xff, 0xff], 0).is_err());
    }

    #[test]
    fn response_layouts() {
        let topics = [(
            "t".to_owned(),
            vec![PartitionResult {
                index: 0,
                low_watermark: 5,
                error_code: 0,
            }],
        )];
        let mut v0 = Vec::new();
        write_response(&mut v0, 2, 0, &topics);
        let mut expected = vec![0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 1];
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0]);
        assert_eq!(v0, expected);
        let mut v2 = Vec::new();
        write_response(&mut v2, 2, 2, &topics);
        let mut expected = vec![0, 0, 0, 2, 0, 0, 0, 0, 0, 2, 2, b't', 2, 0, 0, 0, 0];
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0]);
        assert_eq!(v2, expected);
    }
}
