//! Finding packets in a byte stream. [`PacketDecoder::decode`] looks at the start of a receive
//! buffer and checks the fixed header (type, flags, remaining length) against the configured
//! maximum before waiting for the body, so a hostile remaining length costs at most five bytes
//! of buffering, never the size it declares.

use crate::error::DecodeError;
use crate::kind::{PacketType, ProtocolVersion, QoS};
use crate::packet::Packet;
use crate::spares::Spares;
use crate::wire::{self, read_variable_byte_integer};

/// The largest packet MQTT can express: a one-byte type, a four-byte remaining length and
/// 268,435,455 bytes after it.
pub const PACKET_SIZE_BYTES_LIMIT: usize = 1 + 4 + wire::VARIABLE_BYTE_INTEGER_MAX as usize;

/// Splits a byte stream into packets, refusing any larger than a configured maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketDecoder {
    packet_size_bytes_max: usize,
}

impl PacketDecoder {
    /// A decoder that refuses packets larger than `packet_size_bytes_max` bytes, counted as
    /// MQTT 5 counts the Maximum Packet Size: the whole packet, fixed header included.
    pub const fn new(packet_size_bytes_max: usize) -> PacketDecoder {
        // The smallest packets (PINGREQ, PINGRESP, DISCONNECT) take two bytes.
        assert!(
            packet_size_bytes_max >= 2,
            "a maximum packet size below 2 refuses PINGREQ"
        );
        PacketDecoder {
            packet_size_bytes_max,
        }
    }

    /// The largest packet accepted, in bytes.
    pub const fn packet_size_bytes_max(&self) -> usize {
        self.packet_size_bytes_max
    }

    /// Looks at the start of `buf`: `Ok(Some((packet, consumed)))` when a whole packet is there
    /// (`consumed` bytes long), `Ok(None)` when more bytes are needed (a normal state, not an
    /// error), `Err` when the bytes so far cannot start a valid packet; the connection must then
    /// be closed with [`DecodeError::reason_code`].
    ///
    /// `version` is the connection's protocol version; a CONNECT is decoded by the version it
    /// names, so before CONNECT any version may be passed. The first byte is checked as soon
    /// as it arrives and the size as soon as the remaining length is complete.
    pub fn decode(
        &self,
        buf: &[u8],
        version: ProtocolVersion,
    ) -> Result<Option<(Packet, usize)>, DecodeError> {
        self.decode_reusing(buf, version, &mut Spares::default())
    }

    /// [`PacketDecoder::decode`], with a PUBLISH's topic and payload copied into buffers
    /// taken from `spares` (when it has any) instead of newly allocated ones.
    pub fn decode_reusing(
        &self,
        buf: &[u8],
        version: ProtocolVersion,
        spares: &mut Spares,
    ) -> Result<Option<(Packet, usize)>, DecodeError> {
        let Some((packet_type, header_len, total)) = self.header(buf, version)? else {
            return Ok(None);
        };
        let Some(body) = buf.get(header_len..total) else {
            return Ok(None);
        };
        let flags = buf[0] & 0x0F;
        let packet = Packet::decode_body(packet_type, flags, body, (version, spares))?;
        Ok(Some((packet, total)))
    }

    /// The size of the packet that starts `buf`, fixed header included, once its fixed header
    /// has arrived and been checked: for sizing a receive buffer. `Ok(None)` means the fixed
    /// header is incomplete.
    pub fn packet_len(
        &self,
        buf: &[u8],
        version: ProtocolVersion,
    ) -> Result<Option<usize>, DecodeError> {
        Ok(self.header(buf, version)?.map(|(_, _, total)| total))
    }

    /// Checks the fixed header: the packet type, the fixed header length and the whole size.
    fn header(
        &self,
        buf: &[u8],
        version: ProtocolVersion,
    ) -> Result<Option<(PacketType, usize, usize)>, DecodeError> {
        let Some((&first, rest)) = buf.split_first() else {
            return Ok(None);
        };
        let packet_type = PacketType::from_first_byte(first, version)?;
        let Some((remaining, len_bytes)) = read_variable_byte_integer(rest, "remaining length")?
        else {
            return Ok(None);
        };
        let header_len = 1 + len_bytes;
        let total = header_len + remaining as usize;
        if total > self.packet_size_bytes_max {
            return Err(DecodeError::PacketTooLarge {
                size: total,
                max: self.packet_size_bytes_max,
            });
        }
        Ok(Some((packet_type, header_len, total)))
    }
}

impl PacketType {
    /// Reads the first byte of a fixed header and checks its flags (section 2.1.3); AUTH is
    /// a reserved type before MQTT 5.
    pub(crate) fn from_first_byte(
        byte: u8,
        version: ProtocolVersion,
    ) -> Result<PacketType, DecodeError> {
        use PacketType::*;
        let packet = match byte >> 4 {
            1 => Connect,
            2 => ConnAck,
            3 => Publish,
            4 => PubAck,
            5 => PubRec,
            6 => PubRel,
            7 => PubComp,
            8 => Subscribe,
            9 => SubAck,
            10 => Unsubscribe,
            11 => UnsubAck,
            12 => PingReq,
            13 => PingResp,
            14 => Disconnect,
            15 if version.is_v5() => Auth,
            t => return Err(DecodeError::ReservedPacketType(t)),
        };
        let flags = byte & 0x0F;
        let valid = match packet {
            Publish => {
                QoS::try_from((flags >> 1) & 0x03)?;
                // DUP must be 0 for QoS 0 (section 3.3.1.1).
                !(flags & 0x08 != 0 && flags & 0x06 == 0)
            }
            // MQTT 3.1 sets DUP on a PUBREL, SUBSCRIBE or UNSUBSCRIBE sent again (its
            // section 3: these carry QoS 1 and the DUP flag); 3.1.1 and 5 fix the flags.
            PubRel | Subscribe | Unsubscribe if version == ProtocolVersion::V3_1 => {
                flags & 0b0111 == 0b0010
            }
            PubRel | Subscribe | Unsubscribe => flags == 0b0010,
            _ => flags == 0,
        };
        if !valid {
            return Err(DecodeError::InvalidFixedHeaderFlags { packet, flags });
        }
        Ok(packet)
    }
}
