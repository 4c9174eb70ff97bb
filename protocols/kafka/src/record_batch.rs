//! Kafka RecordBatch v2 ("magic 2"), the unit Weir stores.
//!
//! Layout (big-endian), 61 bytes of header then the records:
//!
//! ```text
//!  0 baseOffset i64        | not covered by the CRC: the log rewrites it on append
//!  8 batchLength i32       | bytes after this field
//! 12 partitionLeaderEpoch i32
//! 16 magic i8 (= 2)
//! 17 crc u32              | CRC32C of bytes 21..end
//! 21 attributes i16       | bits 0-2 compression, 3 timestamp type, 4 transactional, 5 control
//! 23 lastOffsetDelta i32
//! 27 baseTimestamp i64
//! 35 maxTimestamp i64
//! 43 producerId i64
//! 51 producerEpoch i16
//! 53 baseSequence i32
//! 57 recordCount i32
//! 61 records...
//! ```
//!
//! [`validate`] checks one batch completely before anything trusts it; [`set_base_offset`]
//! assigns offsets without touching the CRC; [`BatchBuilder`] encodes records; [`records`]
//! iterates the records of an uncompressed batch.

/// Size of the fixed header.
pub const HEADER_LEN: usize = 61;
/// Bytes before `batchLength`'s coverage starts (baseOffset + batchLength).
pub const LOG_OVERHEAD: usize = 12;
/// Offset of the first byte the CRC covers.
const CRC_START: usize = 21;
/// The only record batch format Weir accepts.
pub const MAGIC: i8 = 2;

pub use crate::compression::{Compression, DecompressError};

/// Why a batch was refused. Each variant maps to Kafka's `CORRUPT_MESSAGE` (2) or
/// `INVALID_RECORD` (87) at the protocol edge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Fewer bytes than the header or than `batchLength` declares.
    #[error("record batch truncated: {have} bytes, need {need}")]
    Truncated {
        /// Bytes present.
        have: usize,
        /// Bytes the header declares or requires.
        need: usize,
    },
    /// More bytes than `batchLength` declares.
    #[error("record batch has {extra} trailing bytes after its declared length")]
    Trailing {
        /// Bytes beyond the declared end.
        extra: usize,
    },
    /// `batchLength` is negative or too small to hold the header.
    #[error("record batch length {0} is invalid")]
    BadLength(i32),
    /// Not a v2 batch.
    #[error("record batch magic {0} is not supported (only v2)")]
    BadMagic(i8),
    /// The stored CRC does not match the bytes.
    #[error("record batch CRC mismatch: header says {stored:#010x}, bytes give {computed:#010x}")]
    BadCrc {
        /// CRC in the header.
        stored: u32,
        /// CRC computed over the bytes.
        computed: u32,
    },
    /// Compression bits name no codec.
    #[error("record batch uses unknown compression codec {0}")]
    BadCompression(u8),
    /// Record count is zero, negative, or disagrees with `lastOffsetDelta`.
    #[error("record batch record count {count} is invalid (lastOffsetDelta {last_offset_delta})")]
    BadCount {
        /// Declared record count.
        count: i32,
        /// Declared last offset delta.
        last_offset_delta: i32,
    },
    /// A record inside an uncompressed batch is malformed.
    #[error("record {index} is malformed: {reason}")]
    BadRecord {
        /// Index of the record in the batch.
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// `maxTimestamp` is not the largest record timestamp (create-time batches).
    #[error("batch maxTimestamp {declared} differs from its largest record timestamp {actual}")]
    BadMaxTimestamp {
        /// The header's maxTimestamp.
        declared: i64,
        /// The largest record timestamp.
        actual: i64,
    },
    /// A compressed batch inflates past the limit, or cannot be decompressed.
    #[error(transparent)]
    Decompression(#[from] DecompressError),
    /// The records do not fill the batch exactly as declared.
    #[error("batch declares {declared} records but holds {found}")]
    CountMismatch {
        /// Declared count.
        declared: i32,
        /// Records found.
        found: usize,
    },
}

/// The fixed header of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record (assigned by the log).
    pub base_offset: i64,
    /// Bytes after the `batchLength` field.
    pub batch_length: i32,
    /// Leader epoch (Weir has one node: 0).
    pub partition_leader_epoch: i32,
    /// CRC32C of bytes 21..end.
    pub crc: u32,
    /// Attribute bits.
    pub attributes: i16,
    /// Offset of the last record relative to `base_offset`.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Idempotent producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence number of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records.
    pub record_count: i32,
}

impl BatchHeader {
    /// Parses the header fields from the first [`HEADER_LEN`] bytes. Checks nothing else.
    pub fn parse(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
        if bytes.len() < HEADER_LEN {
            return Err(BatchError::Truncated {
                have: bytes.len(),
                need: HEADER_LEN,
            });
        }
        let magic = bytes[16] as i8;
        if magic != MAGIC {
            return Err(BatchError::BadMagic(magic));
        }
        Ok(BatchHeader {
            base_offset: i64_at(bytes, 0),
            batch_length: i32_at(bytes, 8),
            partition_leader_epoch: i32_at(bytes, 12),
            crc: u32::from_be_bytes(array_at(bytes, 17)),
            attributes: i16::from_be_bytes(array_at(bytes, 21)),
            last_offset_delta: i32_at(bytes, 23),
            base_timestamp: i64_at(bytes, 27),
            max_timestamp: i64_at(bytes, 35),
            producer_id: i64_at(bytes, 43),
            producer_epoch: i16::from_be_bytes(array_at(bytes, 51)),
            base_sequence: i32_at(bytes, 53),
            record_count: i32_at(bytes, 57),
        })
    }

    /// Total size of the batch on the wire and on disk.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + usize::try_from(self.batch_length).unwrap_or(0)
    }

    /// Offset of the last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// The offset after this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    /// The compression codec.
    pub fn compression(&self) -> Result<Compression, BatchError> {
        match self.attributes & 0x7 {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            other => Err(BatchError::BadCompression(other as u8)),
        }
    }

    /// True for transaction markers and other control batches.
    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }
}

/// Checks that `bytes` is exactly one well-formed v2 batch: length, magic, CRC32C, codec,
/// record count, and for uncompressed batches every record's framing and offset delta.
/// Compressed batches get their records checked when they are decompressed.
pub fn validate(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(bytes)?;
    if header.batch_length < (HEADER_LEN - LOG_OVERHEAD) as i32 {
        return Err(BatchError::BadLength(header.batch_length));
    }
    let total = header.total_len();
    if bytes.len() < total {
        return Err(BatchError::Truncated {
            have: bytes.len(),
            need: total,
        });
    }
    if bytes.len() > total {
        return Err(BatchError::Trailing {
            extra: bytes.len() - total,
        });
    }
    let computed = crc32c::crc32c(&bytes[CRC_START..]);
    if computed != header.crc {
        return Err(BatchError::BadCrc {
            stored: header.crc,
            computed,
        });
    }
    let compression = header.compression()?;
    if header.record_count < 1 || header.last_offset_delta != header.record_count - 1 {
        return Err(BatchError::BadCount {
            count: header.record_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    if compression == Compression::None {
        check_records(&header, &bytes[HEADER_LEN..])?;
    }
    Ok(header)
}

/// Sets a batch's maxTimestamp to `max_timestamp` and recomputes its CRC: what Apache Kafka
/// does to every create-time batch it appends, so a batch whose producer declared a wrong
/// maxTimestamp (librdkafka does for records it is given timestamp -1) is stored consistent
/// rather than refused. `batch` must hold at least a batch header.
pub fn set_max_timestamp(batch: &mut [u8], max_timestamp: i64) {
    if batch.len() < HEADER_LEN {
        return;
    }
    batch[35..43].copy_from_slice(&max_timestamp.to_be_bytes());
    let crc = crc32c::crc32c(&batch[CRC_START..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// [`validate`], and for a compressed batch also its records: they are decompressed (at
/// most `decompressed_bytes_max` bytes; a batch that inflates further is refused before
/// more is allocated) and checked like an uncompressed batch's.
pub fn validate_all(
    bytes: &[u8],
    decompressed_bytes_max: usize,
) -> Result<BatchHeader, BatchError> {
    let header = validate(bytes)?;
    let compression = header.compression()?;
    if compression != Compression::None {
        let records = crate::compression::decompress(
            compression,
            &bytes[HEADER_LEN..],
            decompressed_bytes_max,
        )?;
        check_records(&header, &records)?;
    }
    Ok(header)
}

/// The first record of `batch` whose timestamp is at or after `at`: its offset and
/// timestamp (Kafka's ListOffsets by time). Records of a compressed batch are decompressed
/// first, at most `decompressed_bytes_max` bytes; a log-append-time batch stamps every record
/// with its maxTimestamp. `None` if no record qualifies or the batch cannot be read.
pub fn first_at_or_after(
    batch: &[u8],
    at: i64,
    decompressed_bytes_max: usize,
) -> Option<(i64, i64)> {
    let header = BatchHeader::parse(batch).ok()?;
    let log_append_time = header.attributes & 0x8 != 0;
    let records = match header.compression().ok()? {
        Compression::None => batch.get(HEADER_LEN..)?.to_vec(),
        codec => {
            crate::compression::decompress(codec, batch.get(HEADER_LEN..)?, decompressed_bytes_max)
                .ok()?
        }
    };
    parse_records(&records)
        .map_while(Result::ok)
        .find_map(|record| {
            let timestamp = if log_append_time {
                header.max_timestamp
            } else {
                header.base_timestamp.saturating_add(record.timestamp_delta)
            };
            (timestamp >= at).then(|| {
                (
                    header.base_offset + i64::from(record.offset_delta),
                    timestamp,
                )
            })
        })
}

/// The record bytes of a stored batch (after its header), decompressed when the batch is
/// compressed, at most `decompressed_bytes_max` bytes; iterate them with [`records_in`].
pub fn record_bytes(
    batch: &[u8],
    decompressed_bytes_max: usize,
) -> Result<std::borrow::Cow<'_, [u8]>, BatchError> {
    let header = BatchHeader::parse(batch)?;
    let body = batch.get(HEADER_LEN..).unwrap_or(&[]);
    match header.compression()? {
        Compression::None => Ok(std::borrow::Cow::Borrowed(body)),
        codec => Ok(std::borrow::Cow::Owned(crate::compression::decompress(
            codec,
            body,
            decompressed_bytes_max,
        )?)),
    }
}

/// The records in `body` (record bytes as [`record_bytes`] returns them), up to the first one
/// that does not parse.
pub fn records_in(body: &[u8]) -> impl Iterator<Item = RecordRef<'_>> {
    parse_records(body).map_while(Result::ok)
}

/// Checks the records of a batch (`records`: its uncompressed record bytes): each one's
/// framing, their offset deltas in sequence, their count, and the batch's maxTimestamp.
fn check_records(header: &BatchHeader, records: &[u8]) -> Result<(), BatchError> {
    {
        let mut found = 0usize;
        let mut max_delta = i64::MIN;
        for record in parse_records(records) {
            let record = record?;
            if i64::from(record.offset_delta) != found as i64 {
                return Err(BatchError::BadRecord {
                    index: found,
                    reason: "offset delta out of sequence",
                });
            }
            max_delta = max_delta.max(record.timestamp_delta);
            found += 1;
        }
        if found != header.record_count as usize {
            return Err(BatchError::CountMismatch {
                declared: header.record_count,
                found,
            });
        }
        // Retention and the time index trust maxTimestamp, so a create-time batch must carry
        // its true largest record timestamp (log-append-time batches get theirs from the log).
        let log_append_time = header.attributes & 0x8 != 0;
        let actual = header.base_timestamp.saturating_add(max_delta);
        if !log_append_time && header.max_timestamp != actual {
            return Err(BatchError::BadMaxTimestamp {
                declared: header.max_timestamp,
                actual,
            });
        }
    }
    Ok(())
}

/// Splits a produce request's `records` field, which may hold several batches back to back,
/// into batches. Each item is one batch's bytes, not yet validated; a truncated tail is an
/// error item.
pub fn split(mut bytes: &[u8]) -> impl Iterator<Item = Result<&[u8], BatchError>> {
    std::iter::from_fn(move || {
        if bytes.is_empty() {
            return None;
        }
        if bytes.len() < LOG_OVERHEAD {
            let have = bytes.len();
            bytes = &[];
            return Some(Err(BatchError::Truncated {
                have,
                need: LOG_OVERHEAD,
            }));
        }
        let declared = i32_at(bytes, 8);
        let Ok(len) = usize::try_from(declared) else {
            bytes = &[];
            return Some(Err(BatchError::BadLength(declared)));
        };
        let total = LOG_OVERHEAD.saturating_add(len);
        if bytes.len() < total {
            let have = bytes.len();
            bytes = &[];
            return Some(Err(BatchError::Truncated { have, need: total }));
        }
        let (batch, rest) = bytes.split_at(total);
        bytes = rest;
        Some(Ok(batch))
    })
}

/// Why a legacy (v0/v1) message set could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LegacyError {
    /// A length runs past the bytes present, or a field is malformed.
    #[error("legacy message set malformed: {0}")]
    Malformed(&'static str),
    /// A message's CRC32 does not match its bytes.
    #[error("legacy message CRC mismatch")]
    BadCrc,
    /// Compressed legacy messages are not converted.
    #[error("compressed legacy messages are not supported")]
    Compressed,
}

/// True if `records` starts with a v2 batch (magic 2 at byte 16), false for the older
/// message-set formats (magic 0 and 1).
pub fn is_v2(records: &[u8]) -> bool {
    records.get(16) == Some(&(MAGIC as u8))
}

/// Converts a legacy message set (magic 0 or 1, uncompressed), as old clients and clients
/// that have not seen a Fetch v4 in ApiVersions send it, into one RecordBatch v2, the way
/// Apache Kafka up-converts. Each message's CRC32 is checked first. v0 messages have no
/// timestamp and get `append_time_ms` (retention and time lookups need a real one).
pub fn upconvert_legacy(mut set: &[u8], append_time_ms: i64) -> Result<Vec<u8>, LegacyError> {
    let mut builder = BatchBuilder::new();
    while !set.is_empty() {
        let head = set
            .get(..12)
            .ok_or(LegacyError::Malformed("message header"))?;
        let size = i32::from_be_bytes([head[8], head[9], head[10], head[11]]);
        let size = usize::try_from(size).map_err(|_| LegacyError::Malformed("message size"))?;
        let message = set
            .get(12..12usize.saturating_add(size))
            .ok_or(LegacyError::Malformed("message size beyond the set"))?;
        set = &set[12 + size..];
        let crc = u32::from_be_bytes(
            message
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .ok_or(LegacyError::Malformed("crc"))?,
        );
        if crc32fast::hash(&message[4..]) != crc {
            return Err(LegacyError::BadCrc);
        }
        let mut r = &message[4..];
        let magic = *r.first().ok_or(LegacyError::Malformed("magic"))?;
        let attributes = *r.get(1).ok_or(LegacyError::Malformed("attributes"))?;
        r = &r[2..];
        if attributes & 0x7 != 0 {
            return Err(LegacyError::Compressed);
        }
        let timestamp_ms = match magic {
            0 => append_time_ms,
            1 => {
                let ts = r.get(..8).ok_or(LegacyError::Malformed("timestamp"))?;
                r = &r[8..];
                i64::from_be_bytes(
                    ts.try_into()
                        .map_err(|_| LegacyError::Malformed("timestamp"))?,
                )
            }
            _ => return Err(LegacyError::Malformed("magic")),
        };
        let key = legacy_bytes(&mut r)?;
        let value = legacy_bytes(&mut r)?;
        builder.push(Record {
            timestamp_ms,
            key,
            value,
            headers: &[],
        });
    }
    if builder.is_empty() {
        return Err(LegacyError::Malformed("empty message set"));
    }
    Ok(builder.finish())
}

fn legacy_bytes<'a>(r: &mut &'a [u8]) -> Result<Option<&'a [u8]>, LegacyError> {
    let len = r.get(..4).ok_or(LegacyError::Malformed("length"))?;
    let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
    *r = &r[4..];
    if len == -1 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| LegacyError::Malformed("length"))?;
    let bytes = r
        .get(..len)
        .ok_or(LegacyError::Malformed("length beyond the message"))?;
    *r = &r[len..];
    Ok(Some(bytes))
}

/// Writes `base_offset` into a batch. The CRC does not cover this field, so the batch stays
/// valid.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    assert!(batch.len() >= HEADER_LEN, "set_base_offset on a non-batch");
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// One record of an uncompressed batch, borrowing the batch's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Record attributes (unused by Kafka today).
    pub attributes: i8,
    /// Timestamp relative to the batch's base timestamp.
    pub timestamp_delta: i64,
    /// Offset relative to the batch's base offset.
    pub offset_delta: i32,
    /// Key, or `None` for a null key.
    pub key: Option<&'a [u8]>,
    /// Value, or `None` for a null value (a tombstone).
    pub value: Option<&'a [u8]>,
    /// Headers in order, raw: use [`RecordRef::headers`] to iterate them.
    headers_raw: &'a [u8],
    header_count: usize,
}

impl<'a> RecordRef<'a> {
    /// The record's headers: key and optional value.
    pub fn headers(&self) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> + use<'a> {
        let mut cursor = Cursor {
            bytes: self.headers_raw,
        };
        (0..self.header_count).map_while(move |_| {
            let key = cursor.bytes_field().ok()??;
            let value = cursor.bytes_field().ok()?;
            Some((key, value))
        })
    }
}

/// The records of an uncompressed batch that passed [`validate`]. For a compressed batch the
/// iterator yields nothing: decompress first.
pub fn records(batch: &[u8]) -> impl Iterator<Item = RecordRef<'_>> {
    let compressed = BatchHeader::parse(batch)
        .map(|h| h.attributes & 0x7 != 0)
        .unwrap_or(true);
    let records = if compressed { &[][..] } else { batch };
    records_unchecked(records).map_while(Result::ok)
}

fn records_unchecked(batch: &[u8]) -> impl Iterator<Item = Result<RecordRef<'_>, BatchError>> {
    parse_records(batch.get(HEADER_LEN..).unwrap_or(&[]))
}

/// The records in `body` (uncompressed record bytes), each parsed or the error that stops
/// the iteration.
fn parse_records(body: &[u8]) -> impl Iterator<Item = Result<RecordRef<'_>, BatchError>> {
    let mut cursor = Cursor { bytes: body };
    let mut index = 0usize;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || cursor.bytes.is_empty() {
            return None;
        }
        let record =
            parse_record(&mut cursor).map_err(|reason| BatchError::BadRecord { index, reason });
        failed = record.is_err();
        index += 1;
        Some(record)
    })
}

fn parse_record<'a>(cursor: &mut Cursor<'a>) -> Result<RecordRef<'a>, &'static str> {
    let length = cursor.varint()?;
    let length = usize::try_from(length).map_err(|_| "negative record length")?;
    if length == 0 || length > cursor.bytes.len() {
        return Err("record length beyond the batch");
    }
    let (body, rest) = cursor.bytes.split_at(length);
    cursor.bytes = rest;
    let mut r = Cursor { bytes: body };
    let attributes = *r.bytes.first().ok_or("missing attributes")? as i8;
    r.bytes = &r.bytes[1..];
    let timestamp_delta = r.varlong()?;
    let offset_delta = r.varint()?;
    let key = r.bytes_field()?;
    let value = r.bytes_field()?;
    let header_count = r.varint()?;
    let header_count = usize::try_from(header_count).map_err(|_| "negative header count")?;
    let headers_raw = r.bytes;
    // Walk the headers once so a bad header is caught here, not by a later reader.
    for _ in 0..header_count {
        if r.bytes_field()?.is_none() {
            return Err("null header key");
        }
        r.bytes_field()?;
    }
    if !r.bytes.is_empty() {
        return Err("bytes after the last header");
    }
    Ok(RecordRef {
        attributes,
        timestamp_delta,
        offset_delta,
        key,
        value,
        headers_raw,
        header_count,
    })
}

/// A reader over borrowed bytes. Every length is checked against what remains.
struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    /// A zigzag varint of at most 5 bytes, as an i32.
    fn varint(&mut self) -> Result<i32, &'static str> {
        let value = self.varlong_bounded(5)?;
        i32::try_from(value).map_err(|_| "varint out of range")
    }

    /// A zigzag varint of at most 10 bytes.
    fn varlong(&mut self) -> Result<i64, &'static str> {
        self.varlong_bounded(10)
    }

    fn varlong_bounded(&mut self, max_bytes: usize) -> Result<i64, &'static str> {
        let mut raw: u64 = 0;
        for i in 0..max_bytes {
            let byte = *self.bytes.get(i).ok_or("varint truncated")?;
            raw |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                self.bytes = &self.bytes[i + 1..];
                return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
            }
        }
        Err("varint too long")
    }

    /// A varint length then that many bytes; length -1 is null.
    fn bytes_field(&mut self) -> Result<Option<&'a [u8]>, &'static str> {
        let len = self.varint()?;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| "negative length")?;
        if len > self.bytes.len() {
            return Err("length beyond the record");
        }
        let (field, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(Some(field))
    }
}

/// One record to encode.
#[derive(Debug, Clone, Copy, Default)]
pub struct Record<'a> {
    /// Absolute timestamp in milliseconds since the epoch.
    pub timestamp_ms: i64,
    /// Key, or `None` for null.
    pub key: Option<&'a [u8]>,
    /// Value, or `None` for null.
    pub value: Option<&'a [u8]>,
    /// Headers.
    pub headers: &'a [(&'a str, Option<&'a [u8]>)],
}

/// Encodes an uncompressed v2 batch record by record.
#[derive(Debug)]
pub struct BatchBuilder {
    buf: Vec<u8>,
    count: i32,
    base_timestamp: Option<i64>,
    max_timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchBuilder {
    /// An empty batch without an idempotent producer.
    pub fn new() -> BatchBuilder {
        BatchBuilder::with_capacity(0)
    }

    /// An empty batch whose buffer has room for `records_bytes` of records before it grows
    /// (a batch of known size is then built with one allocation).
    pub fn with_capacity(records_bytes: usize) -> BatchBuilder {
        let mut buf = Vec::with_capacity(HEADER_LEN + records_bytes);
        buf.resize(HEADER_LEN, 0);
        BatchBuilder {
            buf,
            count: 0,
            base_timestamp: None,
            max_timestamp: -1,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
        }
    }

    /// Marks the batch as written by an idempotent producer.
    pub fn producer(mut self, id: i64, epoch: i16, base_sequence: i32) -> BatchBuilder {
        self.producer_id = id;
        self.producer_epoch = epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Number of records so far.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// True before the first record.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Encoded size so far.
    pub fn encoded_len(&self) -> usize {
        self.buf.len()
    }

    /// Appends one record.
    pub fn push(&mut self, record: Record<'_>) {
        let base_timestamp = *self.base_timestamp.get_or_insert(record.timestamp_ms);
        self.max_timestamp = self.max_timestamp.max(record.timestamp_ms);
        let timestamp_delta = record.timestamp_ms - base_timestamp;
        let field_len = |field: Option<&[u8]>| match field {
            None => varlong_len(-1),
            Some(bytes) => varlong_len(bytes.len() as i64) + bytes.len(),
        };
        let body_len = 1
            + varlong_len(timestamp_delta)
            + varlong_len(i64::from(self.count))
            + field_len(record.key)
            + field_len(record.value)
            + varlong_len(record.headers.len() as i64)
            + (record.headers.iter())
                .map(|(key, value)| field_len(Some(key.as_bytes())) + field_len(*value))
                .sum::<usize>();
        let body = &mut self.buf;
        put_varlong(body, body_len as i64);
        let start = body.len();
        body.push(0); // attributes
        put_varlong(body, timestamp_delta);
        put_varlong(body, i64::from(self.count));
        put_bytes_field(body, record.key);
        put_bytes_field(body, record.value);
        put_varlong(body, record.headers.len() as i64);
        for (key, value) in record.headers {
            put_bytes_field(body, Some(key.as_bytes()));
            put_bytes_field(body, *value);
        }
        debug_assert_eq!(body.len() - start, body_len);
        self.count += 1;
    }

    /// Finishes the batch with base offset 0 (the log assigns the real one).
    pub fn finish(self) -> Vec<u8> {
        self.finish_with(Compression::None, |_| None)
    }

    /// The batch with its records compressed with `codec`, as producers send them.
    pub fn finish_compressed(self, codec: Compression) -> std::io::Result<Vec<u8>> {
        let mut failed = None;
        let batch = self.finish_with(codec, |records| {
            Some(
                crate::compression::compress(codec, records).unwrap_or_else(|e| {
                    failed = Some(e);
                    Vec::new()
                }),
            )
        });
        match failed {
            Some(e) => Err(e),
            None => Ok(batch),
        }
    }

    /// `encode` gives the records' bytes as stored, or `None` to keep them as they are.
    fn finish_with(
        mut self,
        codec: Compression,
        encode: impl FnOnce(&[u8]) -> Option<Vec<u8>>,
    ) -> Vec<u8> {
        assert!(self.count > 0, "a record batch needs at least one record");
        if let Some(records) = encode(&self.buf[HEADER_LEN..]) {
            self.buf.truncate(HEADER_LEN);
            self.buf.extend_from_slice(&records);
        }
        let base_timestamp = self.base_timestamp.unwrap_or(0);
        let batch_length = (self.buf.len() - LOG_OVERHEAD) as i32;
        let b = &mut self.buf;
        b[0..8].copy_from_slice(&0i64.to_be_bytes());
        b[8..12].copy_from_slice(&batch_length.to_be_bytes());
        b[12..16].copy_from_slice(&0i32.to_be_bytes());
        b[16] = MAGIC as u8;
        b[21..23].copy_from_slice(&(codec as i16).to_be_bytes());
        b[23..27].copy_from_slice(&(self.count - 1).to_be_bytes());
        b[27..35].copy_from_slice(&base_timestamp.to_be_bytes());
        b[35..43].copy_from_slice(&self.max_timestamp.to_be_bytes());
        b[43..51].copy_from_slice(&self.producer_id.to_be_bytes());
        b[51..53].copy_from_slice(&self.producer_epoch.to_be_bytes());
        b[53..57].copy_from_slice(&self.base_sequence.to_be_bytes());
        b[57..61].copy_from_slice(&self.count.to_be_bytes());
        let crc = crc32c::crc32c(&b[CRC_START..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        self.buf
    }
}

/// The bytes [`put_varlong`] writes for `value`.
fn varlong_len(value: i64) -> usize {
    let raw = ((value << 1) ^ (value >> 63)) as u64;
    (64 - raw.leading_zeros() as usize).max(1).div_ceil(7)
}

fn put_varlong(out: &mut Vec<u8>, value: i64) {
    let mut raw = ((value << 1) ^ (value >> 63)) as u64;
    while raw >= 0x80 {
        out.push((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

fn put_bytes_field(out: &mut Vec<u8>, field: Option<&[u8]>) {
    match field {
        None => put_varlong(out, -1),
        Some(bytes) => {
            put_varlong(out, bytes.len() as i64);
            out.extend_from_slice(bytes);
        }
    }
}

fn array_at<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}

fn i64_at(bytes: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(array_at(bytes, at))
}

fn i32_at(bytes: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(array_at(bytes, at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn varlong_len_counts_what_put_varlong_writes() {
        for value in [
            0,
            1,
            -1,
            63,
            64,
            -64,
            -65,
            8191,
            8192,
            i64::from(i32::MAX),
            i64::MIN,
            i64::MAX,
        ] {
            let mut out = Vec::new();
            put_varlong(&mut out, value);
            assert_eq!(varlong_len(value), out.len(), "{value}");
        }
    }

    fn sample(n: usize) -> Vec<u8> {
        let mut builder = BatchBuilder::new();
        for i in 0..n {
            let value = format!("value-{i}");
            builder.push(Record {
                timestamp_ms: 1_700_000_000_000 + i as i64,
                key: Some(b"sensors/room1/temp"),
                value: Some(value.as_bytes()),
                headers: &[("mqtt.qos", Some(b"1")), ("empty", None)],
            });
        }
        builder.finish()
    }

    #[test]
    fn built_batches_validate_and_read_back() {
        let batch = sample(3);
        let header = validate(&batch).unwrap();
        assert_eq!(header.record_count, 3);
        assert_eq!(header.last_offset_delta, 2);
        assert_eq!(header.base_timestamp, 1_700_000_000_000);
        assert_eq!(header.max_timestamp, 1_700_000_000_002);
        assert_eq!(header.total_len(), batch.len());
        let records: Vec<RecordRef<'_>> = records(&batch).collect();
        assert_eq!(records.len(), 3);
        assert_eq!(records[2].value, Some(&b"value-2"[..]));
        assert_eq!(records[2].timestamp_delta, 2);
        let headers: Vec<_> = records[0].headers().collect();
        assert_eq!(
            headers,
            vec![(&b"mqtt.qos"[..], Some(&b"1"[..])), (&b"empty"[..], None)]
        );
    }

    #[test]
    fn base_offset_rewrite_keeps_the_crc_valid() {
        let mut batch = sample(2);
        set_base_offset(&mut batch, 1_000);
        let header = validate(&batch).unwrap();
        assert_eq!(header.base_offset, 1_000);
        assert_eq!(header.next_offset(), 1_002);
    }

    #[test]
    fn a_flipped_bit_fails_the_crc() {
        let mut batch = sample(2);
        let last = batch.len() - 1;
        batch[last] ^= 1;
        assert!(matches!(validate(&batch), Err(BatchError::BadCrc { .. })));
    }

    #[test]
    fn lengths_and_magic_are_checked() {
        let batch = sample(1);
        assert!(matches!(
            validate(&batch[..40]),
            Err(BatchError::Truncated { .. })
        ));
        assert!(matches!(
            validate(&batch[..batch.len() - 1]),
            Err(BatchError::Truncated { .. })
        ));
        let mut longer = batch.clone();
        longer.push(0);
        assert_eq!(validate(&longer), Err(BatchError::Trailing { extra: 1 }));
        let mut magic = batch.clone();
        magic[16] = 1;
        assert_eq!(validate(&magic), Err(BatchError::BadMagic(1)));
        let mut negative = batch.clone();
        negative[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert_eq!(validate(&negative), Err(BatchError::BadLength(-5)));
    }

    /// A header that claims 2^31-1 records in a tiny batch is refused without allocating.
    #[test]
    fn a_hostile_record_count_is_refused() {
        let mut batch = sample(1);
        batch[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        batch[23..27].copy_from_slice(&(i32::MAX - 1).to_be_bytes());
        let crc = crc32c::crc32c(&batch[CRC_START..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(
            validate(&batch),
            Err(BatchError::CountMismatch {
                declared: i32::MAX,
                found: 1
            })
        );
    }

    #[test]
    fn a_false_max_timestamp_is_refused_until_set_right() {
        let mut batch = sample(2);
        let header = validate(&batch).unwrap();
        set_max_timestamp(&mut batch, i64::MAX);
        let Err(BatchError::BadMaxTimestamp { declared, actual }) = validate(&batch) else {
            panic!("a false maxTimestamp passed");
        };
        assert_eq!((declared, actual), (i64::MAX, header.max_timestamp));
        set_max_timestamp(&mut batch, actual);
        assert_eq!(validate(&batch).unwrap(), header);
    }

    #[test]
    fn legacy_message_sets_are_upconverted() {
        // Two magic-1 messages: (ts 5, key "k", value "a") and (ts 6, null key, value "b").
        let message = |ts: i64, key: Option<&[u8]>, value: &[u8]| {
            let mut body = vec![1u8, 0];
            body.extend_from_slice(&ts.to_be_bytes());
            match key {
                Some(k) => {
                    body.extend_from_slice(&(k.len() as i32).to_be_bytes());
                    body.extend_from_slice(k);
                }
                None => body.extend_from_slice(&(-1i32).to_be_bytes()),
            }
            body.extend_from_slice(&(value.len() as i32).to_be_bytes());
            body.extend_from_slice(value);
            let mut message = crc32fast::hash(&body).to_be_bytes().to_vec();
            message.extend_from_slice(&body);
            let mut entry = 0i64.to_be_bytes().to_vec();
            entry.extend_from_slice(&(message.len() as i32).to_be_bytes());
            entry.extend_from_slice(&message);
            entry
        };
        let mut set = message(5, Some(b"k"), b"a");
        set.extend(message(6, None, b"b"));
        assert!(!is_v2(&set));
        let batch = upconvert_legacy(&set, 0).unwrap();
        assert!(is_v2(&batch));
        let header = validate(&batch).unwrap();
        assert_eq!((header.record_count, header.max_timestamp), (2, 6));
        let values: Vec<_> = records(&batch).map(|r| (r.key, r.value)).collect();
        assert_eq!(
            values,
            [(Some(&b"k"[..]), Some(&b"a"[..])), (None, Some(&b"b"[..]))]
        );
        let mut corrupt = set.clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 1;
        assert_eq!(upconvert_legacy(&corrupt, 0), Err(LegacyError::BadCrc));
        assert!(upconvert_legacy(&set[..set.len() - 3], 0).is_err());
    }

    #[test]
    fn split_walks_concatenated_batches() {
        let mut joined = sample(1);
        joined.extend_from_slice(&sample(2));
        let parts: Vec<_> = split(&joined).collect::<Result<_, _>>().unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(validate(parts[1]).unwrap().record_count, 2);
        joined.truncate(joined.len() - 3);
        let last = split(&joined).last().unwrap();
        assert!(matches!(last, Err(BatchError::Truncated { .. })));
    }

    proptest! {
        /// Any bytes: validate never panics, and whatever it accepts re-validates after an
        /// offset rewrite.
        #[test]
        fn validate_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if validate(&bytes).is_ok() {
                set_base_offset(&mut bytes, 7);
                prop_assert!(validate(&bytes).is_ok());
            }
        }

        /// A valid batch with one byte changed after the CRC field is always refused.
        #[test]
        fn any_corruption_after_the_crc_is_caught(n in 1usize..5, pos in 21usize..200, bit in 0u8..8) {
            let mut batch = sample(n);
            let pos = pos % batch.len();
            prop_assume!(pos >= CRC_START);
            batch[pos] ^= 1 << bit;
            prop_assert!(validate(&batch).is_err());
        }

        #[test]
        fn records_round_trip(values in proptest::collection::vec(proptest::option::of(proptest::collection::vec(any::<u8>(), 0..50)), 1..20)) {
            let mut builder = BatchBuilder::new();
            for (i, value) in values.iter().enumerate() {
                builder.push(Record { timestamp_ms: i as i64, key: None, value: value.as_deref(), headers: &[] });
            }
            let batch = builder.finish();
            prop_assert_eq!(validate(&batch).unwrap().record_count as usize, values.len());
            let back: Vec<Option<Vec<u8>>> = records(&batch).map(|r| r.value.map(<[u8]>::to_vec)).collect();
            prop_assert_eq!(back, values);
        }
    }
}
