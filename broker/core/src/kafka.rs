//! One Kafka client connection as a state machine: bytes in, response frames out.
//!
//! [`KafkaSession::on_bytes`] takes whatever the connection has received, answers every
//! complete request in it, and says how many bytes it used; an incomplete request waits for
//! more bytes. The server owns the socket and the buffers; this type owns no I/O.
//!
//! Implemented today: ApiVersions. Every other API key is outside the table this broker
//! advertises; a request for one closes the connection (Apache Kafka does the same for
//! requests it cannot parse), and the error names the API so the log says what a client
//! wanted. The rest of the Kafka front builds on this type.

use weir_kafka::api_versions::{self, ApiRange};
use weir_kafka::frame::{FrameDecoder, FrameError, write_frame};
use weir_kafka::header;
use weir_kafka::wire::WireError;

/// The APIs and versions this broker implements: exactly what ApiVersions advertises.
pub const IMPLEMENTED: &[ApiRange] = &[ApiRange {
    api_key: api_versions::API_KEY,
    min: 0,
    max: api_versions::VERSION_MAX,
}];

/// The smallest request: a v0 header (api key, version, correlation id).
const REQUEST_BYTES_MIN: usize = 8;

/// Why a connection must close. Each names what the client sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KafkaError {
    /// The size prefix is invalid or over the limit.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The request header is malformed.
    #[error("malformed request header: {0}")]
    Header(#[from] WireError),
    /// An API this broker does not implement.
    #[error("API key {api_key} (version {api_version}) is not implemented by this broker")]
    NotImplemented {
        /// The API key.
        api_key: i16,
        /// The version asked for.
        api_version: i16,
    },
}

/// Per-connection protocol state.
#[derive(Debug)]
pub struct KafkaSession {
    decoder: FrameDecoder,
    requests: u64,
}

impl KafkaSession {
    /// A session accepting requests of at most `request_bytes_max` bytes.
    pub fn new(request_bytes_max: usize) -> KafkaSession {
        KafkaSession {
            decoder: FrameDecoder::new(REQUEST_BYTES_MIN, request_bytes_max),
            requests: 0,
        }
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// Bytes the request at the start of `input` needs in total, once its size prefix is
    /// known and valid; lets the caller size its receive buffer.
    pub fn wanted(&self, input: &[u8]) -> Option<usize> {
        self.decoder.frame_len(input)
    }

    /// Answers complete requests at the start of `input`, appending response frames to `out`,
    /// until `out` holds `out_limit` bytes or no complete request is left. Returns the bytes
    /// consumed; the rest waits (an incomplete request, or requests held back so a client
    /// that does not read cannot make the broker buffer without bound). An error means the
    /// connection must be closed (responses already in `out` may still be sent).
    pub fn on_bytes(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        out_limit: usize,
    ) -> Result<usize, KafkaError> {
        let mut used = 0;
        while out.len() < out_limit
            && let Some((frame, len)) = self.decoder.decode(&input[used..])?
        {
            self.handle(frame, out)?;
            self.requests += 1;
            used += len;
        }
        Ok(used)
    }

    fn handle(&mut self, frame: &[u8], out: &mut Vec<u8>) -> Result<(), KafkaError> {
        let start = header::peek(frame)?;
        match start.api_key {
            api_versions::API_KEY => {
                // Parse the whole header so a malformed one is refused; the body (client
                // software name and version in v3+) is not needed to answer.
                let header_version = api_versions::request_header_version(start.api_version);
                header::RequestHeader::parse(frame, header_version)?;
                write_frame(out, |body| {
                    api_versions::write_response(
                        body,
                        start.correlation_id,
                        start.api_version,
                        IMPLEMENTED,
                    )
                });
                Ok(())
            }
            api_key => Err(KafkaError::NotImplemented {
                api_key,
                api_version: start.api_version,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(api_key: i16, version: i16, correlation: i32) -> Vec<u8> {
        let mut out = Vec::new();
        write_frame(&mut out, |b| {
            b.extend_from_slice(&api_key.to_be_bytes());
            b.extend_from_slice(&version.to_be_bytes());
            b.extend_from_slice(&correlation.to_be_bytes());
            b.extend_from_slice(&[0, 4]);
            b.extend_from_slice(b"test");
            if version >= 3 {
                b.extend_from_slice(&[0, 5, b'w', b'e', b'i', b'r', 4, b'0', b'.', b'0', 0]);
            }
        });
        out
    }

    #[test]
    fn pipelined_requests_are_answered_in_order_and_partial_ones_wait() {
        let mut session = KafkaSession::new(1 << 20);
        let mut input = request(18, 0, 1);
        input.extend(request(18, 3, 2));
        let partial = request(18, 1, 3);
        input.extend_from_slice(&partial[..5]);
        let mut out = Vec::new();
        let used = session.on_bytes(&input, &mut out, usize::MAX).unwrap();
        assert_eq!(used, input.len() - 5);
        assert_eq!(session.requests(), 2);
        // Two frames: correlation ids 1 then 2.
        assert_eq!(&out[4..8], &1i32.to_be_bytes());
        let second = 4 + u32::from_be_bytes(out[0..4].try_into().unwrap()) as usize;
        assert_eq!(&out[second + 4..second + 8], &2i32.to_be_bytes());
        assert_eq!(session.wanted(&partial), Some(partial.len()));
    }

    #[test]
    fn the_output_limit_holds_requests_back() {
        let mut session = KafkaSession::new(1 << 20);
        let one = request(18, 0, 1);
        let input: Vec<u8> = (0..10).flat_map(|_| one.clone()).collect();
        let mut out = Vec::new();
        let used = session.on_bytes(&input, &mut out, 1).unwrap();
        assert_eq!((used, session.requests()), (one.len(), 1));
    }

    #[test]
    fn unimplemented_apis_and_bad_frames_close_the_connection() {
        let mut session = KafkaSession::new(1 << 20);
        let mut out = Vec::new();
        assert_eq!(
            session.on_bytes(&request(3, 12, 1), &mut out, usize::MAX),
            Err(KafkaError::NotImplemented {
                api_key: 3,
                api_version: 12
            })
        );
        let huge = (i32::MAX).to_be_bytes();
        assert!(matches!(
            session.on_bytes(&huge, &mut out, usize::MAX),
            Err(KafkaError::Frame(FrameError::TooLarge { .. }))
        ));
        // A client id longer than its frame.
        let mut bad = Vec::new();
        write_frame(&mut bad, |b| {
            b.extend_from_slice(&[0, 18, 0, 1, 0, 0, 0, 1, 0x7f, 0x7f])
        });
        assert!(matches!(
            session.on_bytes(&bad, &mut out, usize::MAX),
            Err(KafkaError::Header(_))
        ));
    }
}
