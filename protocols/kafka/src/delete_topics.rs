//! DeleteTopics (key 20): deletes topics and their data.
//!
//! Versions 0 to 6; 4 and later are flexible. v6 names topics by name or id; Weir gives
//! topics no ids, so a topic named only by id gets UNKNOWN_TOPIC_ID.

use crate::header::write_response_header;
use crate::wire::{Reader, WireError, Writer};

/// API key of DeleteTopics.
pub const API_KEY: i16 = 20;
/// Highest version implemented.
pub const VERSION_MAX: i16 = 6;

/// Request header version for `version` (flexible from 4).
pub fn request_header_version(version: i16) -> u8 {
    if version >= 4 { 2 } else { 1 }
}

/// A topic to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// By name.
    Name(String),
    /// By id (v6+).
    Id([u8; 16]),
}

/// Parses a request body of `version`: the topics to delete. Array counts are checked
/// against the bytes present before anything is allocated for them.
pub fn parse_request(body: &[u8], version: i16) -> Result<Vec<Target>, WireError> {
    let mut r = Reader::new(body);
    let flexible = version >= 4;
    let count = r.array_len(flexible, 1)?;
    let mut targets = Vec::new();
    for _ in 0..count {
        let name = r.string_of(flexible)?.map(str::to_owned);
        let target = if version >= 6 {
            let id = r.uuid()?;
            r.skip_tagged_fields()?;
            match name {
                Some(name) if id == [0; 16] => Target::Name(name),
                _ if id != [0; 16] => Target::Id(id),
                _ => return Err(WireError::Invalid("topic with neither name nor id")),
            }
        } else {
            Target::Name(name.ok_or(WireError::Invalid("null topic name"))?)
        };
        targets.push(target);
    }
    r.i32()?; // timeout_ms: deletion is one local transaction
    if flexible {
        r.skip_tagged_fields()?;
    }
    Ok(targets)
}

/// Writes the whole response (header included) for a request of `version`: one
/// (topic, error code) per target, in request order.
pub fn write_response(
    out: &mut Vec<u8>,
    correlation_id: i32,
    version: i16,
    results: &[(Target, i16)],
) {
    let flexible = version >= 4;
    write_response_header(out, correlation_id, u8::from(flexible));
    let mut w = Writer::new(out, flexible);
    if version >= 1 {
        w.i32(0); // throttle_time_ms
    }
    w.array_len(results.len());
    for (target, error_code) in results {
        let (name, id) = match target {
            Target::Name(name) => (Some(name.as_str()), [0; 16]),
            Target::Id(id) => (None, *id),
        };
        // Only v6 names topics by id, and v6 names are nullable.
        w.nullable_string(name);
        if version >= 6 {
            w.out.extend_from_slice(&id);
        }
        w.i16(*error_code);
        if version >= 5 {
            w.nullable_string(None); // error message: the code says it
        }
        w.tagged();
    }
    w.tagged();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_by_name_and_by_id() {
        let v0 = [0, 0, 0, 1, 0, 1, b't', 0, 0, 0x75, 0x30];
        assert_eq!(parse_request(&v0, 0).unwrap(), [Target::Name("t".into())]);
        let mut v6 = vec![3, 2, b't'];
        v6.extend_from_slice(&[0; 16]);
        v6.extend_from_slice(&[0, 0]);
        v6.extend_from_slice(&[5; 16]);
        v6.extend_from_slice(&[0, 0, 0, 0x75, 0x30, 0]);
        assert_eq!(
            parse_request(&v6, 6).unwrap(),
            [Target::Name("t".into()), Target::Id([5; 16])]
        );
        let mut neither = vec![2, 0];
        neither.extend_from_slice(&[0; 16]);
        neither.extend_from_slice(&[0, 0, 0, 0x75, 0x30, 0]);
        assert!(parse_request(&neither, 6).is_err());
        assert!(parse_request(&[0x7f, 0xff, 0xff, 0xff, 0], 0).is_err());
    }

    #[test]
    fn response_layouts() {
        let mut v0 = Vec::new();
        write_response(&mut v0, 3, 0, &[(Target::Name("t".into()), 3)]);
        assert_eq!(v0, [0, 0, 0, 3, 0, 0, 0, 1, 0, 1, b't', 0, 3]);
        let mut v6 = Vec::new();
        write_response(&mut v6, 3, 6, &[(Target::Id([5; 16]), 100)]);
        let mut expected = vec![0, 0, 0, 3, 0, 0, 0, 0, 0, 2, 0];
        expected.extend_from_slice(&[5; 16]);
        expected.extend_from_slice(&[0, 100, 0, 0, 0]);
        assert_eq!(v6, expected);
    }
}
