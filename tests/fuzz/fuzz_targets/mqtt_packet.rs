//! Any bytes a client can send as MQTT packets, in each protocol version: the fixed header
//! and size checks, every packet's decoder, properties and topic rules; whatever decodes must
//! encode again to bytes that decode to the same packet.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_mqtt::{PacketDecoder, ProtocolVersion};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, mut input)) = data.split_first() else {
        return;
    };
    let version = match selector % 3 {
        0 => ProtocolVersion::V3_1,
        1 => ProtocolVersion::V3_1_1,
        _ => ProtocolVersion::V5,
    };
    let decoder = PacketDecoder::new(64 * 1024);
    while let Ok(Some((packet, used))) = decoder.decode(input, version) {
        let mut encoded = Vec::new();
        if packet.encode(version, &mut encoded).is_ok() {
            let again = decoder.decode(&encoded, version);
            assert!(
                matches!(&again, Ok(Some((p, n))) if *p == packet && *n == encoded.len()),
                "{packet:?} re-encoded to {encoded:?}, which decodes to {again:?}"
            );
        }
        input = &input[used..];
    }
});
