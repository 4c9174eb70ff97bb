//! Kafka's framing: every request and response is a 4-byte big-endian size, then that many
//! bytes. [`FrameDecoder::decode`] finds the next complete frame in a receive buffer without
//! copying it, and checks the declared size against the configured maximum before the body is
//! buffered, so a 2 GiB size prefix costs 4 bytes, not 2 GiB.

/// Size of the length prefix.
pub const PREFIX_LEN: usize = 4;

/// Why a stream of frames is broken; the connection must be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The size prefix is negative or smaller than any request.
    #[error("frame size {0} is invalid")]
    BadSize(i32),
    /// The size prefix is larger than the configured maximum.
    #[error("frame of {size} bytes exceeds the limit of {max} bytes (kafka.request_bytes_max)")]
    TooLarge {
        /// Declared size.
        size: usize,
        /// The limit.
        max: usize,
    },
}

/// Splits a byte stream into frames.
#[derive(Debug, Clone, Copy)]
pub struct FrameDecoder {
    max: usize,
    min: usize,
}

impl FrameDecoder {
    /// A decoder for frames of `min..=max` bytes (after the prefix).
    pub fn new(min: usize, max: usize) -> FrameDecoder {
        FrameDecoder { min, max }
    }

    /// The largest frame body accepted.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Looks at the start of `buf`: `Ok(Some((body, consumed)))` when a whole frame is there,
    /// `Ok(None)` when more bytes are needed (a normal state, not an error), `Err` when the
    /// prefix is invalid.
    pub fn decode<'a>(&self, buf: &'a [u8]) -> Result<Option<(&'a [u8], usize)>, FrameError> {
        let Some(prefix) = buf.get(..PREFIX_LEN) else {
            return Ok(None);
        };
        let declared = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        let size = usize::try_from(declared).map_err(|_| FrameError::BadSize(declared))?;
        if size < self.min {
            return Err(FrameError::BadSize(declared));
        }
        if size > self.max {
            return Err(FrameError::TooLarge {
                size,
                max: self.max,
            });
        }
        let end = PREFIX_LEN + size;
        Ok(buf.get(PREFIX_LEN..end).map(|body| (body, end)))
    }

    /// Bytes needed to hold the frame that starts `buf` (prefix included), once its prefix
    /// has arrived and been checked; for sizing a receive buffer.
    pub fn frame_len(&self, buf: &[u8]) -> Option<usize> {
        let prefix = buf.get(..PREFIX_LEN)?;
        let declared = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        let size = usize::try_from(declared).ok()?;
        (self.min..=self.max)
            .contains(&size)
            .then_some(PREFIX_LEN + size)
    }
}

/// Writes a frame: reserves the prefix, lets `body` append, then fills the prefix in.
pub fn write_frame(out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; PREFIX_LEN]);
    body(out);
    let size = (out.len() - start - PREFIX_LEN) as u32;
    out[start..start + PREFIX_LEN].copy_from_slice(&size.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    const DECODER: FrameDecoder = FrameDecoder { min: 8, max: 1024 };

    #[test]
    fn partial_frames_need_more_bytes() {
        let mut frame = Vec::new();
        write_frame(&mut frame, |b| b.extend_from_slice(&[7; 10]));
        for cut in 0..frame.len() {
            assert_eq!(DECODER.decode(&frame[..cut]), Ok(None), "cut at {cut}");
        }
        let (body, used) = DECODER.decode(&frame).unwrap().unwrap();
        assert_eq!((body, used), (&[7u8; 10][..], 14));
    }

    #[test]
    fn hostile_prefixes_are_refused_from_four_bytes() {
        let huge = (2u32 << 30).wrapping_sub(1).to_be_bytes();
        assert_eq!(
            DECODER.decode(&huge),
            Err(FrameError::TooLarge {
                size: (2usize << 30) - 1,
                max: 1024
            })
        );
        assert_eq!(
            DECODER.decode(&(-1i32).to_be_bytes()),
            Err(FrameError::BadSize(-1))
        );
        assert_eq!(
            DECODER.decode(&3i32.to_be_bytes()),
            Err(FrameError::BadSize(3))
        );
        assert_eq!(DECODER.frame_len(&huge), None);
    }
}
