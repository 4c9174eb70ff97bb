//! Decompressing a batch's records, never past a limit.
//!
//! Every codec decodes as a stream into a buffer that stops one byte past the limit, so a
//! batch that inflates further (a "zip bomb") costs at most the limit, whatever sizes its
//! compressed data claims. Formats, as Kafka's clients write them: gzip (one or more
//! members), snappy (raw, or in the xerial framing the Java client uses), LZ4 frames and
//! zstd frames.

use std::io::Read;

/// Compression codec in the low three bits of `attributes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Records stored as they are.
    None = 0,
    /// gzip.
    Gzip = 1,
    /// snappy (raw, or in xerial framing as the Java client writes it).
    Snappy = 2,
    /// lz4 frame.
    Lz4 = 3,
    /// zstd.
    Zstd = 4,
}

/// Why a compressed batch's records were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecompressError {
    /// A compressed batch inflates past the limit.
    #[error("compressed records inflate past {max_bytes} bytes")]
    InflatesTooMuch {
        /// The limit.
        max_bytes: usize,
    },
    /// A compressed batch's records cannot be decompressed.
    #[error("{codec} records cannot be decompressed: {reason}")]
    Decompress {
        /// The codec.
        codec: &'static str,
        /// The decoder's complaint.
        reason: String,
    },
}

/// The xerial snappy stream header: magic, then version and compatible version (i32 each).
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const XERIAL_HEADER_LEN: usize = 16;

/// `data` compressed with `codec` in the format Kafka's clients write (raw snappy, as
/// librdkafka writes it).
pub fn compress(codec: Compression, data: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    match codec {
        Compression::None => Ok(data.to_vec()),
        Compression::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(data)?;
            encoder.finish()
        }
        Compression::Snappy => snap::raw::Encoder::new()
            .compress_vec(data)
            .map_err(std::io::Error::other),
        Compression::Lz4 => {
            let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::new());
            encoder.write_all(data)?;
            encoder.finish().map_err(std::io::Error::other)
        }
        Compression::Zstd => Ok(ruzstd::encoding::compress_to_vec(
            data,
            ruzstd::encoding::CompressionLevel::Fastest,
        )),
    }
}

/// The records of a batch compressed with `codec`, at most `max_bytes` of them.
pub fn decompress(
    codec: Compression,
    data: &[u8],
    max_bytes: usize,
) -> Result<Vec<u8>, DecompressError> {
    match codec {
        Compression::None => bounded(data, max_bytes, "none"),
        Compression::Gzip => bounded(flate2::read::MultiGzDecoder::new(data), max_bytes, "gzip"),
        Compression::Snappy => snappy(data, max_bytes),
        Compression::Lz4 => bounded(lz4_flex::frame::FrameDecoder::new(data), max_bytes, "lz4"),
        Compression::Zstd => {
            let decoder = ruzstd::decoding::StreamingDecoder::new(data).map_err(|e| {
                DecompressError::Decompress {
                    codec: "zstd",
                    reason: e.to_string(),
                }
            })?;
            bounded(decoder, max_bytes, "zstd")
        }
    }
}

/// Reads `reader` to its end, refusing more than `max_bytes`.
fn bounded(
    reader: impl Read,
    max_bytes: usize,
    codec: &'static str,
) -> Result<Vec<u8>, DecompressError> {
    let mut out = Vec::new();
    reader
        .take(max_bytes as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| DecompressError::Decompress {
            codec,
            reason: e.to_string(),
        })?;
    if out.len() > max_bytes {
        return Err(DecompressError::InflatesTooMuch { max_bytes });
    }
    Ok(out)
}

/// Raw snappy, or xerial-framed blocks (each a big-endian length and a raw snappy block).
/// The size a block declares is checked against what is left of the limit before its
/// buffer is allocated.
fn snappy(data: &[u8], max_bytes: usize) -> Result<Vec<u8>, DecompressError> {
    let fail = |reason: String| DecompressError::Decompress {
        codec: "snappy",
        reason,
    };
    let mut out = Vec::new();
    let block = |raw: &[u8], out: &mut Vec<u8>| -> Result<(), DecompressError> {
        let len = snap::raw::decompress_len(raw).map_err(|e| fail(e.to_string()))?;
        if len > max_bytes - out.len() {
            return Err(DecompressError::InflatesTooMuch { max_bytes });
        }
        let start = out.len();
        out.resize(start + len, 0);
        snap::raw::Decoder::new()
            .decompress(raw, &mut out[start..])
            .map_err(|e| fail(e.to_string()))?;
        Ok(())
    };
    if !data.starts_with(&XERIAL_MAGIC) {
        block(data, &mut out)?;
        return Ok(out);
    }
    let mut rest = data
        .get(XERIAL_HEADER_LEN..)
        .ok_or_else(|| fail("truncated xerial header".into()))?;
    while !rest.is_empty() {
        let len_bytes: [u8; 4] = (rest.get(..4))
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| fail("truncated xerial block length".into()))?;
        let len = usize::try_from(i32::from_be_bytes(len_bytes))
            .map_err(|_| fail("negative xerial block length".into()))?;
        let raw = (rest.get(4..4 + len)).ok_or_else(|| fail("truncated xerial block".into()))?;
        block(raw, &mut out)?;
        rest = &rest[4 + len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn every_codec_round_trips_within_the_limit() {
        let data: Vec<u8> = (0..10_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let raw_snappy = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        let mut xerial = XERIAL_MAGIC.to_vec();
        xerial.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
        for chunk in data.chunks(16_384) {
            let block = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
            xerial.extend_from_slice(&(block.len() as i32).to_be_bytes());
            xerial.extend_from_slice(&block);
        }
        let lz4 = lz4_flex::frame::FrameEncoder::new(Vec::new());
        let lz4 = {
            let mut lz4 = lz4;
            lz4.write_all(&data).unwrap();
            lz4.finish().unwrap()
        };
        let zstd = ruzstd::encoding::compress_to_vec(
            &data[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        let cases = [
            (Compression::Gzip, gzip(&data)),
            (Compression::Snappy, raw_snappy),
            (Compression::Snappy, xerial),
            (Compression::Lz4, lz4),
            (Compression::Zstd, zstd),
        ];
        for (codec, compressed) in &cases {
            assert_eq!(
                decompress(*codec, compressed, data.len()).unwrap(),
                data,
                "{codec:?}"
            );
            assert_eq!(
                decompress(*codec, compressed, data.len() - 1),
                Err(DecompressError::InflatesTooMuch {
                    max_bytes: data.len() - 1
                }),
                "{codec:?}"
            );
            let garbage = &compressed[compressed.len() / 2..];
            assert!(
                decompress(*codec, garbage, data.len()).is_err(),
                "{codec:?}"
            );
        }
    }

    #[test]
    fn compressed_batches_validate_with_their_records() {
        use crate::record_batch::{BatchBuilder, Record, validate_all};
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut builder = BatchBuilder::new();
            for i in 0..100 {
                let value = format!("reading {i}");
                builder.push(Record {
                    timestamp_ms: 1_700_000_000_000 + i,
                    key: None,
                    value: Some(value.as_bytes()),
                    headers: &[],
                });
            }
            let batch = builder.finish_compressed(codec).unwrap();
            let header = validate_all(&batch, 1 << 20).unwrap();
            assert_eq!(
                (header.compression(), header.record_count),
                (Ok(codec), 100)
            );
            assert!(matches!(
                validate_all(&batch, 100),
                Err(crate::record_batch::BatchError::Decompression(
                    DecompressError::InflatesTooMuch { max_bytes: 100 }
                ))
            ));
        }
    }

    #[test]
    fn the_first_record_at_or_after_a_time_is_found_in_any_batch() {
        use crate::record_batch::{BatchBuilder, Record, first_at_or_after};
        let build = || {
            let mut builder = BatchBuilder::new();
            for t in [10, 20, 30] {
                builder.push(Record {
                    timestamp_ms: t,
                    key: None,
                    value: Some(b"v"),
                    headers: &[],
                });
            }
            builder
        };
        let plain = build().finish();
        let packed = build().finish_compressed(Compression::Lz4).unwrap();
        for batch in [&plain, &packed] {
            assert_eq!(first_at_or_after(batch, 15, 1 << 20), Some((1, 20)));
            assert_eq!(first_at_or_after(batch, 5, 1 << 20), Some((0, 10)));
            assert_eq!(first_at_or_after(batch, 31, 1 << 20), None);
        }
        assert_eq!(first_at_or_after(&packed, 15, 4), None, "past the limit");
    }

    #[test]
    fn a_bomb_costs_at_most_the_limit() {
        // 64 MiB of zeros gzip to about 64 KiB; with a 1 MiB limit decoding stops there.
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            encoder.write_all(&zeros).unwrap();
        }
        let bomb = encoder.finish().unwrap();
        assert!(bomb.len() < 1 << 17);
        assert_eq!(
            decompress(Compression::Gzip, &bomb, 1 << 20),
            Err(DecompressError::InflatesTooMuch { max_bytes: 1 << 20 })
        );
        // A raw snappy block that claims 4 GiB is refused from its header alone.
        let claim = [0xff, 0xff, 0xff, 0xff, 0x0f];
        assert_eq!(
            decompress(Compression::Snappy, &claim, 1 << 20),
            Err(DecompressError::InflatesTooMuch { max_bytes: 1 << 20 })
        );
    }
}
