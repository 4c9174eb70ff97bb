//! MQTT's data representations (section 1.5): big-endian integers, variable byte integers,
//! length-prefixed UTF-8 strings and binary data. Readers check every length against the bytes
//! present before using it; writers go through [`Sink`] so that one function both measures and
//! writes a field.

use crate::error::{DecodeError, EncodeError};

/// The largest value a variable byte integer holds (4 bytes of 7 bits).
pub const VARIABLE_BYTE_INTEGER_MAX: u32 = 268_435_455;

/// Reads fields from the body of one packet, front to back.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Takes `n` bytes, or fails without consuming anything when fewer are present.
    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if n > self.bytes.len() {
            return Err(DecodeError::Truncated(what));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    /// Everything not yet read.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn variable_byte_integer(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        match read_variable_byte_integer(self.bytes, what)? {
            Some((value, used)) => {
                self.bytes = &self.bytes[used..];
                Ok(value)
            }
            None => Err(DecodeError::Truncated(what)),
        }
    }

    /// Binary data: a two-byte length, then that many bytes (borrowed).
    pub(crate) fn binary(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.u16(what)?;
        self.take(usize::from(len), what)
    }

    /// A UTF-8 string: valid UTF-8 without U+0000 (section 1.5.4).
    pub(crate) fn str(&mut self, what: &'static str) -> Result<&'a str, DecodeError> {
        let bytes = self.binary(what)?;
        let s = std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8(what))?;
        if s.contains('\0') {
            return Err(DecodeError::NullCharacter(what));
        }
        Ok(s)
    }

    /// An owned copy of a string; allocates exactly the bytes present.
    pub(crate) fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        self.str(what).map(str::to_owned)
    }
}

/// Reads a variable byte integer from the start of `bytes`: `Ok(None)` when it is not complete
/// yet, `Ok(Some((value, bytes used)))`, or an error when a fourth byte still has the
/// continuation bit (the encoding allows at most four bytes).
pub(crate) fn read_variable_byte_integer(
    bytes: &[u8],
    what: &'static str,
) -> Result<Option<(u32, usize)>, DecodeError> {
    let mut value: u32 = 0;
    for (i, &byte) in bytes.iter().take(4).enumerate() {
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if bytes.len() >= 4 {
        return Err(DecodeError::MalformedVariableByteInteger(what));
    }
    Ok(None)
}

/// Where encoded bytes go: a buffer, or a [`Counter`] that only measures.
pub(crate) trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A sink that counts bytes, to compute a length prefix before writing what it covers.
#[derive(Debug, Default)]
pub(crate) struct Counter(pub(crate) usize);

impl Sink for Counter {
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}

pub(crate) fn put_u8(out: &mut impl Sink, value: u8) {
    out.put(&[value]);
}

pub(crate) fn put_u16(out: &mut impl Sink, value: u16) {
    out.put(&value.to_be_bytes());
}

pub(crate) fn put_u32(out: &mut impl Sink, value: u32) {
    out.put(&value.to_be_bytes());
}

/// Writes `value` in the fewest bytes (the specification requires the minimal encoding).
pub(crate) fn put_variable_byte_integer(
    out: &mut impl Sink,
    value: usize,
    what: &'static str,
) -> Result<(), EncodeError> {
    let mut v = u32::try_from(value)
        .ok()
        .filter(|v| *v <= VARIABLE_BYTE_INTEGER_MAX)
        .ok_or(EncodeError::VariableByteIntegerTooLarge { what, value })?;
    let mut buf = [0u8; 4];
    let mut n = 0;
    loop {
        let mut byte = (v & 0x7F) as u8;
        v >>= 7;
        if v > 0 {
            byte |= 0x80;
        }
        buf[n] = byte;
        n += 1;
        if v == 0 {
            break;
        }
    }
    out.put(&buf[..n]);
    Ok(())
}

/// Bytes a variable byte integer of `value` takes (`value` at most the maximum).
pub(crate) fn variable_byte_integer_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

pub(crate) fn put_binary(
    out: &mut impl Sink,
    bytes: &[u8],
    what: &'static str,
) -> Result<(), EncodeError> {
    let len = u16::try_from(bytes.len()).map_err(|_| EncodeError::FieldTooLong {
        what,
        len: bytes.len(),
    })?;
    put_u16(out, len);
    out.put(bytes);
    Ok(())
}

pub(crate) fn put_str(out: &mut impl Sink, s: &str, what: &'static str) -> Result<(), EncodeError> {
    put_binary(out, s.as_bytes(), what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_byte_integer_boundaries_use_minimal_bytes() {
        for (value, bytes) in [
            (0usize, vec![0x00]),
            (127, vec![0x7F]),
            (128, vec![0x80, 0x01]),
            (16_383, vec![0xFF, 0x7F]),
            (16_384, vec![0x80, 0x80, 0x01]),
            (2_097_151, vec![0xFF, 0xFF, 0x7F]),
            (2_097_152, vec![0x80, 0x80, 0x80, 0x01]),
            (268_435_455, vec![0xFF, 0xFF, 0xFF, 0x7F]),
        ] {
            let mut out = Vec::new();
            put_variable_byte_integer(&mut out, value, "test").unwrap();
            assert_eq!(out, bytes, "{value}");
            assert_eq!(variable_byte_integer_len(value), bytes.len());
            assert_eq!(
                read_variable_byte_integer(&bytes, "test"),
                Ok(Some((value as u32, bytes.len())))
            );
            for cut in 0..bytes.len() {
                assert_eq!(read_variable_byte_integer(&bytes[..cut], "test"), Ok(None));
            }
        }
        assert!(put_variable_byte_integer(&mut Vec::new(), 268_435_456, "test").is_err());
        assert_eq!(
            read_variable_byte_integer(&[0xFF, 0xFF, 0xFF, 0xFF, 0x01], "test"),
            Err(DecodeError::MalformedVariableByteInteger("test"))
        );
    }
}
