//! Any bytes as a Produce request's record set: splitting, validation with the records of
//! compressed batches (bounded decompression of every codec), iteration, and conversion
//! of the legacy message formats.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_kafka::compression;
use weir_kafka::record_batch::{self, Compression};

fuzz_target!(|data: &[u8]| {
    for batch in record_batch::split(data).flatten() {
        let _ = record_batch::validate_all(batch, 1 << 20);
        for record in record_batch::records(batch) {
            let _ = record.headers().count();
        }
    }
    let _ = record_batch::upconvert_legacy(data, 0);
    if let Some((&first, rest)) = data.split_first() {
        let codec = match first % 5 {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            _ => Compression::Zstd,
        };
        let _ = compression::decompress(codec, rest, 1 << 20);
    }
});
