//! Primitive readers for Kafka's binary types. Every length is checked against the bytes
//! present before it is used; nothing allocates.

/// A field ran past the end of its frame, or holds a value its type forbids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Fewer bytes than the field needs.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A value out of its type's range (negative length, non-UTF-8 string, long varint).
    #[error("invalid {0}")]
    Invalid(&'static str),
}

/// Reads fields from a byte slice, front to back.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `bytes`.
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes }
    }

    /// What has not been read.
    pub fn rest(&self) -> &'a [u8] {
        self.bytes
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        if n > self.bytes.len() {
            return Err(WireError::Truncated(what));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    /// An int8.
    pub fn i8(&mut self) -> Result<i8, WireError> {
        Ok(self.take(1, "int8")?[0] as i8)
    }

    /// An int16.
    pub fn i16(&mut self) -> Result<i16, WireError> {
        let b = self.take(2, "int16")?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    /// An int32.
    pub fn i32(&mut self) -> Result<i32, WireError> {
        let b = self.take(4, "int32")?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A boolean (one byte; anything but 0 is true).
    pub fn bool(&mut self) -> Result<bool, WireError> {
        Ok(self.take(1, "boolean")?[0] != 0)
    }

    /// Skips `n` bytes of a field named `what`.
    pub fn skip(&mut self, n: usize, what: &'static str) -> Result<(), WireError> {
        self.take(n, what).map(drop)
    }

    /// A UUID (16 bytes).
    pub fn uuid(&mut self) -> Result<[u8; 16], WireError> {
        let mut id = [0u8; 16];
        id.copy_from_slice(self.take(16, "uuid")?);
        Ok(id)
    }

    /// An int64.
    pub fn i64(&mut self) -> Result<i64, WireError> {
        let b = self.take(8, "int64")?;
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(b);
        Ok(i64::from_be_bytes(bytes))
    }

    /// An unsigned varint of at most 5 bytes.
    pub fn uvarint(&mut self) -> Result<u32, WireError> {
        let mut value: u32 = 0;
        for i in 0..5 {
            let byte = *self.bytes.get(i).ok_or(WireError::Truncated("varint"))?;
            value |= u32::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                if i == 4 && byte > 0x0f {
                    return Err(WireError::Invalid("varint"));
                }
                self.bytes = &self.bytes[i + 1..];
                return Ok(value);
            }
        }
        Err(WireError::Invalid("varint"))
    }

    /// A nullable string with an int16 length (-1 is null).
    pub fn nullable_string(&mut self) -> Result<Option<&'a str>, WireError> {
        let len = self.i16()?;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| WireError::Invalid("string length"))?;
        let bytes = self.take(len, "string")?;
        std::str::from_utf8(bytes)
            .map(Some)
            .map_err(|_| WireError::Invalid("UTF-8 string"))
    }

    /// A compact string (uvarint length + 1; 0 is null).
    pub fn compact_nullable_string(&mut self) -> Result<Option<&'a str>, WireError> {
        let len = self.uvarint()?;
        let Some(len) = (len as usize).checked_sub(1) else {
            return Ok(None);
        };
        let bytes = self.take(len, "compact string")?;
        std::str::from_utf8(bytes)
            .map(Some)
            .map_err(|_| WireError::Invalid("UTF-8 string"))
    }

    /// Nullable bytes with an int32 length (-1 is null).
    pub fn nullable_bytes(&mut self) -> Result<Option<&'a [u8]>, WireError> {
        let len = self.i32()?;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| WireError::Invalid("bytes length"))?;
        self.take(len, "bytes").map(Some)
    }

    /// Compact nullable bytes (uvarint length + 1; 0 is null).
    pub fn compact_nullable_bytes(&mut self) -> Result<Option<&'a [u8]>, WireError> {
        let len = self.uvarint()?;
        let Some(len) = (len as usize).checked_sub(1) else {
            return Ok(None);
        };
        self.take(len, "compact bytes").map(Some)
    }

    /// An array length (compact in flexible versions), refused if its entries, each at
    /// least `entry_min` bytes, cannot fit in the bytes left. `None` for a null array.
    pub fn nullable_array_len(
        &mut self,
        flexible: bool,
        entry_min: usize,
    ) -> Result<Option<usize>, WireError> {
        let n = if flexible {
            match self.uvarint()? {
                0 => return Ok(None),
                n => n as usize - 1,
            }
        } else {
            match self.i32()? {
                -1 => return Ok(None),
                n => usize::try_from(n).map_err(|_| WireError::Invalid("array length"))?,
            }
        };
        if n.saturating_mul(entry_min) > self.bytes.len() {
            return Err(WireError::Truncated("array"));
        }
        Ok(Some(n))
    }

    /// [`Reader::nullable_array_len`] for arrays where null counts as empty.
    pub fn array_len(&mut self, flexible: bool, entry_min: usize) -> Result<usize, WireError> {
        Ok(self.nullable_array_len(flexible, entry_min)?.unwrap_or(0))
    }

    /// Nullable bytes in the encoding of a flexible or a classic version.
    pub fn bytes_of(&mut self, flexible: bool) -> Result<Option<&'a [u8]>, WireError> {
        if flexible {
            self.compact_nullable_bytes()
        } else {
            self.nullable_bytes()
        }
    }

    /// A nullable string in the encoding of a flexible or a classic version.
    pub fn string_of(&mut self, flexible: bool) -> Result<Option<&'a str>, WireError> {
        if flexible {
            self.compact_nullable_string()
        } else {
            self.nullable_string()
        }
    }

    /// Skips a tagged-field section: a count, then (tag, size, bytes) for each.
    pub fn skip_tagged_fields(&mut self) -> Result<(), WireError> {
        let count = self.uvarint()?;
        for _ in 0..count {
            self.uvarint()?;
            let size = self.uvarint()? as usize;
            self.take(size, "tagged field")?;
        }
        Ok(())
    }
}

/// Writes fields in the encoding of a flexible or a classic version.
#[derive(Debug)]
pub struct Writer<'a> {
    /// Where the fields go.
    pub out: &'a mut Vec<u8>,
    flexible: bool,
}

impl<'a> Writer<'a> {
    /// A writer appending to `out` in the flexible encoding or the classic one.
    pub fn new(out: &'a mut Vec<u8>, flexible: bool) -> Writer<'a> {
        Writer { out, flexible }
    }

    /// An int8.
    pub fn i8(&mut self, v: i8) {
        self.out.push(v as u8);
    }

    /// An int16.
    pub fn i16(&mut self, v: i16) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    /// An int32.
    pub fn i32(&mut self, v: i32) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    /// An int64.
    pub fn i64(&mut self, v: i64) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    /// An array length (compact in flexible versions).
    pub fn array_len(&mut self, n: usize) {
        if self.flexible {
            put_uvarint(self.out, n as u32 + 1);
        } else {
            self.i32(n as i32);
        }
    }

    /// A non-null string.
    pub fn string(&mut self, s: &str) {
        self.nullable_string(Some(s));
    }

    /// A nullable string (compact in flexible versions).
    pub fn nullable_string(&mut self, s: Option<&str>) {
        match (s, self.flexible) {
            (None, true) => self.out.push(0),
            (None, false) => self.i16(-1),
            (Some(s), true) => {
                put_uvarint(self.out, s.len() as u32 + 1);
                self.out.extend_from_slice(s.as_bytes());
            }
            (Some(s), false) => {
                // A classic string holds at most i16::MAX bytes: a longer one (an error
                // message quoting a client's name) is cut at a character boundary.
                let mut end = s.len().min(i16::MAX as usize);
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                self.i16(end as i16);
                self.out.extend_from_slice(&s.as_bytes()[..end]);
            }
        }
    }

    /// Non-null bytes (compact in flexible versions).
    pub fn bytes(&mut self, b: &[u8]) {
        if self.flexible {
            put_uvarint(self.out, b.len() as u32 + 1);
        } else {
            self.i32(b.len() as i32);
        }
        self.out.extend_from_slice(b);
    }

    /// A boolean.
    pub fn bool(&mut self, v: bool) {
        self.out.push(u8::from(v));
    }

    /// An empty tagged-field section (flexible versions only): defaults are never written.
    pub fn tagged(&mut self) {
        if self.flexible {
            self.out.push(0);
        }
    }
}

/// Appends an unsigned varint.
pub fn put_uvarint(out: &mut Vec<u8>, mut value: u32) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_reject_six_bytes() {
        for value in [0u32, 1, 127, 128, 300, u32::MAX] {
            let mut out = Vec::new();
            put_uvarint(&mut out, value);
            assert_eq!(Reader::new(&out).uvarint(), Ok(value));
        }
        assert!(Reader::new(&[0xff; 6]).uvarint().is_err());
    }

    /// A classic string past i16::MAX bytes is cut, never written with a wrapped length.
    #[test]
    fn a_long_classic_string_is_cut_at_its_limit() {
        let long = "é".repeat(20_000);
        let mut out = Vec::new();
        Writer::new(&mut out, false).nullable_string(Some(&long));
        let len = i16::from_be_bytes([out[0], out[1]]);
        assert_eq!(len, 32_766, "the last whole character before 32767 bytes");
        assert!(std::str::from_utf8(&out[2..]).is_ok());
    }

    /// A tagged-field count of 2^31 in a tiny frame fails on the first missing byte.
    #[test]
    fn hostile_counts_fail_without_allocating() {
        let mut out = Vec::new();
        put_uvarint(&mut out, 1 << 31);
        assert!(Reader::new(&out).skip_tagged_fields().is_err());
    }
}
