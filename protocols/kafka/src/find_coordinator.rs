//! FindCoordinator (key 10): which broker coordinates a consumer group (or a transaction).
//!
//! Versions 0 to 4; 3 and later are flexible; 4 asks for several keys at once. Weir is a
//! single node: it coordinates every group itself. Transactions are not supported, so a
//! transactional key gets COORDINATOR_NOT_AVAILABLE.

use crate::header::write_response_header;
use crate::wire::{Reader, WireError, Writer};

/// API key of FindCoordinator.
pub const API_KEY: i16 = 10;
/// Highest version implemented.
pub const VERSION_MAX: i16 = 4;
/// Key type of a consumer group.
pub const KEY_TYPE_GROUP: i8 = 0;
/// Key type of a transactional id.
pub const KEY_TYPE_TRANSACTION: i8 = 1;

/// Request header version for `version` (flexible from 3).
pub fn request_header_version(version: i16) -> u8 {
    if version >= 3 { 2 } else { 1 }
}

/// What a request asks for: the key type and the keys (one before v4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// [`KEY_TYPE_GROUP`] or 1 (transaction).
    pub key_type: i8,
    /// Group ids (or transactional ids).
    pub keys: Vec<String>,
}

/// Parses a request body of `version`.
pub fn parse_request(body: &[u8], version: i16) -> Result<Request, WireError> {
    let mut r = Reader::new(body);
    let flexible = version >= 3;
    let null_key = WireError::Invalid("null coordinator key");
    let request = if version >= 4 {
        let key_type = r.i8()?;
        let count = r.array_len(true, 1)?;
        let mut keys = Vec::new();
        for _ in 0..count {
            keys.push(r.string_of(true)?.ok_or(null_key)?.to_owned());
        }
        Request { key_type, keys }
    } else {
        let key = r.string_of(flexible)?.ok_or(null_key)?.to_owned();
        let key_type = if version >= 1 {
            r.i8()?
        } else {
            KEY_TYPE_GROUP
        };
        Request {
            key_type,
            keys: vec![key],
        }
    };
    if flexible {
        r.skip_tagged_fields()?;
    }
    Ok(request)
}

/// The coordinator found for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coordinator<'a> {
    /// The key asked for.
    pub key: &'a str,
    /// 0 or why there is none.
    pub error_code: i16,
    /// With an error, why.
    pub error_message: Option<&'a str>,
    /// Its node id, host and port (-1, "", -1 with an error).
    pub node: (i32, &'a str, i32),
}

/// Writes the whole response (header included) for a request of `version`.
pub fn write_response(
    out: &mut Vec<u8>,
    correlation_id: i32,
    version: i16,
    coordinators: &[Coordinator<'_>],
) {
    let flexible = version >= 3;
    write_response_header(out, correlation_id, u8::from(flexible));
    let mut w = Writer::new(out, flexible);
    if version >= 1 {
        w.i32(0); // throttle_time_ms
    }
    if version >= 4 {
        w.array_len(coordinators.len());
        for c in coordinators {
            w.string(c.key);
            w.i32(c.node.0);
            w.string(c.node.1);
            w.i32(c.node.2);
            w.i16(c.error_code);
            w.nullable_string(c.error_message);
            w.tagged();
        }
    } else if let Some(c) = coordinators.first() {
        w.i16(c.error_code);
        if version >= 1 {
            w.nullable_string(c.error_message);
        }
        w.i32(c.node.0);
        w.string(c.node.1);
        w.i32(c.node.2);
    }
    w.tagged();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_of_each_generation() {
        let v0 = parse_request(&[0, 1, b'g'], 0).unwrap();
        assert_eq!(v0.keys, ["g"]);
        let v3 = parse_request(&[2, b'g', 1, 0], 3).unwrap();
        assert_eq!((v3.key_type, v3.keys.len()), (1, 1));
        let v4 = parse_request(&[0, 3, 2, b'a', 2, b'b', 0], 4).unwrap();
        assert_eq!(v4.keys, ["a", "b"]);
        assert!(parse_request(&[0, 0x7f, 0xff, 0xff, 0xff, 0x07], 4).is_err());
    }

    #[test]
    fn response_layouts() {
        let found = Coordinator {
            key: "g",
            error_code: 0,
            error_message: None,
            node: (0, "h", 9092),
        };
        let mut v0 = Vec::new();
        write_response(&mut v0, 1, 0, std::slice::from_ref(&found));
        assert_eq!(
            v0,
            [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, b'h', 0, 0, 0x23, 0x84]
        );
        let mut v4 = Vec::new();
        write_response(&mut v4, 1, 4, &[found]);
        let expected = [
            0, 0, 0, 1, 0, 0, 0, 0, 0, 2, 2, b'g', 0, 0, 0, 0, 2, b'h', 0, 0, 0x23, 0x84, 0, 0, 0,
            0, 0,
        ];
        assert_eq!(v4, expected);
    }
}
