//! SaslHandshake (key 17) and SaslAuthenticate (key 36): a client names a SASL mechanism,
//! then sends its tokens wrapped in SaslAuthenticate requests (the KIP-152 flow).
//!
//! SaslHandshake versions 0 and 1 (the same fields; after a version 0 handshake the tokens
//! follow as raw size-prefixed frames outside the Kafka protocol, and librdkafka before 2.1
//! needs version 0 advertised to use SASL at all). SaslAuthenticate versions 0 to 2; 2 is
//! flexible.

use crate::header::write_response_header;
use crate::wire::{Reader, WireError, Writer};

/// API key of SaslHandshake.
pub const HANDSHAKE_KEY: i16 = 17;
/// Lowest SaslHandshake version implemented.
pub const HANDSHAKE_MIN: i16 = 0;
/// Highest SaslHandshake version implemented.
pub const HANDSHAKE_MAX: i16 = 1;
/// API key of SaslAuthenticate.
pub const AUTHENTICATE_KEY: i16 = 36;
/// Highest SaslAuthenticate version implemented.
pub const AUTHENTICATE_MAX: i16 = 2;

/// Request header version of SaslHandshake (never flexible).
pub fn handshake_header_version(_version: i16) -> u8 {
    1
}

/// Request header version of SaslAuthenticate `version` (flexible from 2).
pub fn authenticate_header_version(version: i16) -> u8 {
    if version >= 2 { 2 } else { 1 }
}

/// Parses a SaslHandshake request body: the mechanism the client wants.
pub fn parse_handshake(body: &[u8], _version: i16) -> Result<&str, WireError> {
    let mut r = Reader::new(body);
    r.string_of(false)?
        .ok_or(WireError::Invalid("null SASL mechanism"))
}

/// Writes a whole SaslHandshake response: the error, and the mechanisms the broker offers.
pub fn write_handshake_response(
    out: &mut Vec<u8>,
    correlation_id: i32,
    error_code: i16,
    mechanisms: &[&str],
) {
    write_response_header(out, correlation_id, 0);
    let mut w = Writer::new(out, false);
    w.i16(error_code);
    w.array_len(mechanisms.len());
    for mechanism in mechanisms {
        w.string(mechanism);
    }
}

/// Parses a SaslAuthenticate request body: the SASL token.
pub fn parse_authenticate(body: &[u8], version: i16) -> Result<&[u8], WireError> {
    let mut r = Reader::new(body);
    let flexible = version >= 2;
    let token = r
        .bytes_of(flexible)?
        .ok_or(WireError::Invalid("null SASL token"))?;
    if flexible {
        r.skip_tagged_fields()?;
    }
    Ok(token)
}

/// A SaslAuthenticate answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated<'a> {
    /// 0, or SASL_AUTHENTICATION_FAILED, ILLEGAL_SASL_STATE, ...
    pub error_code: i16,
    /// With an error, why.
    pub error_message: Option<&'a str>,
    /// The server's SASL token.
    pub token: &'a [u8],
    /// How long the session stays authenticated, ms (v1+); 0: no limit.
    pub session_lifetime_ms: i64,
}

/// Writes a whole SaslAuthenticate response for a request of `version`.
pub fn write_authenticate_response(
    out: &mut Vec<u8>,
    correlation_id: i32,
    version: i16,
    answer: &Authenticated<'_>,
) {
    let flexible = version >= 2;
    write_response_header(out, correlation_id, u8::from(flexible));
    let mut w = Writer::new(out, flexible);
    w.i16(answer.error_code);
    w.nullable_string(answer.error_message);
    w.bytes(answer.token);
    if version >= 1 {
        w.i64(answer.session_lifetime_ms);
    }
    w.tagged();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handshake_and_a_token_parse() {
        assert_eq!(
            parse_handshake(&[0, 5, b'P', b'L', b'A', b'I', b'N'], 1).unwrap(),
            "PLAIN"
        );
        assert!(parse_handshake(&[0xff, 0xff], 1).is_err(), "null");
        assert_eq!(parse_authenticate(&[0, 0, 0, 2, 7, 8], 0).unwrap(), [7, 8]);
        assert_eq!(parse_authenticate(&[3, 7, 8, 0], 2).unwrap(), [7, 8]);
        assert!(
            parse_authenticate(&[0, 0, 0, 9, 1], 1).is_err(),
            "longer than the body"
        );
    }
}
