//! Request and response headers.
//!
//! A request header is `api_key i16, api_version i16, correlation_id i32`, then (header v1+)
//! a nullable `client_id` string, then (header v2, the "flexible" versions) tagged fields.
//! Which header version a request uses depends on its API and version, so the header is read
//! in two steps: [`peek`] reads the fixed part every version shares, and
//! [`RequestHeader::parse`] the rest once the handler knows the header version.

use crate::wire::{Reader, WireError};

/// The fixed start of every request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderStart {
    /// Which API.
    pub api_key: i16,
    /// Which version of it.
    pub api_version: i16,
    /// Echoed in the response.
    pub correlation_id: i32,
}

/// Reads the fixed 8 bytes every request header starts with.
pub fn peek(frame: &[u8]) -> Result<HeaderStart, WireError> {
    let mut r = Reader::new(frame);
    Ok(HeaderStart {
        api_key: r.i16()?,
        api_version: r.i16()?,
        correlation_id: r.i32()?,
    })
}

/// A whole request header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeader<'a> {
    /// The fixed part.
    pub start: HeaderStart,
    /// The client's id, if it sent one.
    pub client_id: Option<&'a str>,
}

impl<'a> RequestHeader<'a> {
    /// Parses a header of `header_version` (0, 1 or 2) from `frame`; returns it and the body.
    pub fn parse(
        frame: &'a [u8],
        header_version: u8,
    ) -> Result<(RequestHeader<'a>, &'a [u8]), WireError> {
        let mut r = Reader::new(frame);
        let start = HeaderStart {
            api_key: r.i16()?,
            api_version: r.i16()?,
            correlation_id: r.i32()?,
        };
        let client_id = if header_version >= 1 {
            r.nullable_string()?
        } else {
            None
        };
        if header_version >= 2 {
            r.skip_tagged_fields()?;
        }
        Ok((RequestHeader { start, client_id }, r.rest()))
    }
}

/// Writes a response header: `correlation_id`, then for header v1 an empty tagged-field
/// section.
pub fn write_response_header(out: &mut Vec<u8>, correlation_id: i32, header_version: u8) {
    out.extend_from_slice(&correlation_id.to_be_bytes());
    if header_version >= 1 {
        out.push(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_of_each_version() {
        let mut frame = vec![0, 18, 0, 3, 0, 0, 0, 42];
        frame.extend_from_slice(&[0, 4]);
        frame.extend_from_slice(b"kcat");
        frame.push(0); // no tagged fields
        frame.extend_from_slice(b"body");
        let (header, body) = RequestHeader::parse(&frame, 2).unwrap();
        assert_eq!(
            header.start,
            HeaderStart {
                api_key: 18,
                api_version: 3,
                correlation_id: 42
            }
        );
        assert_eq!(header.client_id, Some("kcat"));
        assert_eq!(body, b"body");
        let (header, _) = RequestHeader::parse(&frame[..8], 0).unwrap();
        assert_eq!(header.client_id, None);
    }

    #[test]
    fn a_client_id_longer_than_the_frame_is_an_error() {
        let frame = [0, 18, 0, 0, 0, 0, 0, 1, 0x7f, 0xff, b'x'];
        assert!(RequestHeader::parse(&frame, 1).is_err());
        assert!(peek(&frame[..7]).is_err());
    }
}
