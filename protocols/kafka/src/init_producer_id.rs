//! InitProducerId (key 22): hands an idempotent producer its id and epoch.
//!
//! Versions 0 to 4; 2 and later are flexible (compact strings, tagged fields). Weir has no
//! transactions: a request naming a transactional id is answered with `INVALID_REQUEST`.

use crate::header::write_response_header;
use crate::wire::{Reader, WireError};

/// API key of InitProducerId.
pub const API_KEY: i16 = 22;
/// Highest version implemented.
pub const VERSION_MAX: i16 = 4;

/// Request header version for `version` (flexible from 2).
pub fn request_header_version(version: i16) -> u8 {
    if version >= 2 { 2 } else { 1 }
}

/// The fields Weir reads from a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// Set by transactional producers (not supported).
    pub transactional_id: Option<&'a str>,
    /// The transaction timeout the client asks for.
    pub transaction_timeout_ms: i32,
    /// v3+: the producer's current id when it asks for an epoch bump, else -1.
    pub producer_id: i64,
    /// v3+: the producer's current epoch, else -1.
    pub producer_epoch: i16,
}

/// Parses a request body of `version`.
pub fn parse_request(body: &[u8], version: i16) -> Result<Request<'_>, WireError> {
    let mut r = Reader::new(body);
    let flexible = version >= 2;
    let transactional_id = r.string_of(flexible)?;
    let transaction_timeout_ms = r.i32()?;
    let (producer_id, producer_epoch) = if version >= 3 {
        (r.i64()?, r.i16()?)
    } else {
        (-1, -1)
    };
    if flexible {
        r.skip_tagged_fields()?;
    }
    Ok(Request {
        transactional_id,
        transaction_timeout_ms,
        producer_id,
        producer_epoch,
    })
}

/// Writes the whole response (header included) for a request of `version`.
pub fn write_response(
    out: &mut Vec<u8>,
    correlation_id: i32,
    version: i16,
    error_code: i16,
    producer_id: i64,
    producer_epoch: i16,
) {
    let flexible = version >= 2;
    write_response_header(out, correlation_id, u8::from(flexible));
    out.extend_from_slice(&0i32.to_be_bytes()); // throttle_time_ms
    out.extend_from_slice(&error_code.to_be_bytes());
    out.extend_from_slice(&producer_id.to_be_bytes());
    out.extend_from_slice(&producer_epoch.to_be_bytes());
    if flexible {
        out.push(0); // no tagged fields
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v0_and_v4_bodies() {
        let v0 = [0xff, 0xff, 0, 0, 0x0e, 0x10];
        let request = parse_request(&v0, 0).unwrap();
        assert_eq!(
            (request.transactional_id, request.transaction_timeout_ms),
            (None, 3600)
        );
        let v4 = [0, 0, 0, 0x0e, 0x10, 0, 0, 0, 0, 0, 0, 0, 7, 0, 2, 0];
        let request = parse_request(&v4, 4).unwrap();
        assert_eq!((request.producer_id, request.producer_epoch), (7, 2));
        assert!(parse_request(&v4[..10], 4).is_err());
    }

    #[test]
    fn response_layouts() {
        let mut v0 = Vec::new();
        write_response(&mut v0, 9, 0, 0, 5, 0);
        assert_eq!(
            v0,
            [0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0]
        );
        let mut v2 = Vec::new();
        write_response(&mut v2, 9, 2, 0, 5, 0);
        assert_eq!(v2.len(), v0.len() + 2);
        assert_eq!(v2[4], 0, "response header v1 tagged fields");
    }
}
