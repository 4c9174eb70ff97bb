//! The payload models (JSON, CBOR, raw bytes): what a device's message carries, written by
//! the devices and read back by the subscribers, the Kafka reader and (for commands) the
//! devices. Every model carries the device, its sequence number and the intended send time,
//! which is what loss, duplicates and latency are measured with.

use crate::rng::Rng;

/// What a device's messages carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// A small JSON reading: `{"device":17,"seq":42,"sent_ns":…,"value":21.53}`.
    Json,
    /// Raw bytes of this size (at least 16: the send time, device and sequence number).
    Bytes(usize),
    /// The JSON reading's fields as a CBOR map (RFC 8949): `{"device": u, "seq": u,
    /// "sent_ns": u, "value": f64}`, 62 bytes (integers always in 8 bytes).
    Cbor,
}

/// What a command's payload starts with (then a JSON payload naming the device).
pub(crate) const COMMAND_PREFIX: &[u8] = b"cmd ";

/// A message body: the intended send time, device and sequence, then the model's content.
pub(crate) fn payload(
    model: &Payload,
    device: u32,
    seq: u32,
    sent_ns: u64,
    rng: &mut Rng,
) -> Vec<u8> {
    match model {
        Payload::Json => format!(
            "{{\"device\":{device},\"seq\":{seq},\"sent_ns\":{sent_ns},\"value\":{:.2}}}",
            15.0 + 15.0 * rng.unit()
        )
        .into_bytes(),
        Payload::Cbor => {
            let mut out = vec![0xa4]; // a map of 4 pairs
            for (key, value) in [
                ("device", u64::from(device)),
                ("seq", u64::from(seq)),
                ("sent_ns", sent_ns),
            ] {
                cbor_text(&mut out, key);
                out.push(0x1b); // unsigned, 8 bytes follow
                out.extend_from_slice(&value.to_be_bytes());
            }
            cbor_text(&mut out, "value");
            out.push(0xfb); // float64
            out.extend_from_slice(&(15.0 + 15.0 * rng.unit()).to_be_bytes());
            out
        }
        Payload::Bytes(n) => {
            let mut bytes = Vec::with_capacity(*n);
            bytes.extend_from_slice(&sent_ns.to_be_bytes());
            bytes.extend_from_slice(&device.to_be_bytes());
            bytes.extend_from_slice(&seq.to_be_bytes());
            bytes.resize(*n, 0x5a);
            bytes
        }
    }
}

/// A CBOR text string shorter than 24 bytes.
fn cbor_text(out: &mut Vec<u8>, text: &str) {
    out.push(0x60 | text.len() as u8);
    out.extend_from_slice(text.as_bytes());
}

/// The device, sequence and send time of a [`Payload::Cbor`] map (keys in any order).
fn parse_cbor(payload: &[u8]) -> Option<(u32, u32, u64)> {
    let mut rest = payload.strip_prefix(&[0xa4])?;
    let (mut device, mut seq, mut sent) = (None, None, None);
    for _ in 0..4 {
        let len = usize::from(rest.first()? & 0x1f);
        if rest.first()? & 0xe0 != 0x60 || len >= 24 {
            return None;
        }
        let key = rest.get(1..1 + len)?;
        rest = &rest[1 + len..];
        let (tag, value) = (rest.first()?, rest.get(1..9)?);
        let number = u64::from_be_bytes(value.try_into().ok()?);
        rest = &rest[9..];
        match (key, tag) {
            (b"device", 0x1b) => device = u32::try_from(number).ok(),
            (b"seq", 0x1b) => seq = u32::try_from(number).ok(),
            (b"sent_ns", 0x1b) => sent = Some(number),
            (b"value", 0xfb) => {}
            _ => return None,
        }
    }
    Some((device?, seq?, sent?))
}

/// The device, sequence and intended send time a payload carries.
pub(crate) fn parse_payload(payload: &[u8]) -> Option<(u32, u32, u64)> {
    if payload.first() == Some(&0xa4) {
        return parse_cbor(payload);
    }
    if payload.first() == Some(&b'{') {
        let text = std::str::from_utf8(payload).ok()?;
        let field = |name: &str| -> Option<u64> {
            let start = text.find(&format!("\"{name}\":"))? + name.len() + 3;
            let digits: String = text[start..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        };
        return Some((
            u32::try_from(field("device")?).ok()?,
            u32::try_from(field("seq")?).ok()?,
            field("sent_ns")?,
        ));
    }
    let sent = u64::from_be_bytes(payload.get(..8)?.try_into().ok()?);
    let device = u32::from_be_bytes(payload.get(8..12)?.try_into().ok()?);
    let seq = u32::from_be_bytes(payload.get(12..16)?.try_into().ok()?);
    Some((device, seq, sent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_payload_model_carries_device_sequence_and_send_time() {
        let mut rng = Rng(1);
        for model in [Payload::Json, Payload::Cbor, Payload::Bytes(64)] {
            let bytes = payload(&model, 17, 42, 123_456_789_012, &mut rng);
            assert_eq!(
                parse_payload(&bytes),
                Some((17, 42, 123_456_789_012)),
                "{model:?}"
            );
        }
        assert_eq!(payload(&Payload::Cbor, 1, 2, 3, &mut rng).len(), 62);
        assert_eq!(parse_cbor(&[0xa4, 0x61]), None);
    }

    #[test]
    fn payloads_carry_device_sequence_and_send_time() {
        let mut rng = Rng(1);
        for model in [Payload::Json, Payload::Bytes(64)] {
            let p = payload(&model, 17, 42, 123_456_789, &mut rng);
            assert_eq!(parse_payload(&p), Some((17, 42, 123_456_789)), "{model:?}");
        }
        // The same seed gives the same values.
        let (mut a, mut b) = (Rng(9), Rng(9));
        assert_eq!((a.next(), a.unit()), (b.next(), b.unit()));
    }
}
