//! The CONNECT: its checks, and the CONNACK that refuses one.

use super::*;

impl ServerSession {
    /// The CONNECT, in the first state.
    pub(super) fn on_connect(
        &mut self,
        packet: Packet,
        out: &mut Vec<u8>,
        actions: &mut Vec<Action>,
    ) -> Result<(), SessionError> {
        let Packet::Connect(connect) = packet else {
            // The version is unknown, so the connection closes without a packet.
            return Err(protocol(
                ReasonCode::PROTOCOL_ERROR,
                "first packet is not CONNECT",
            ));
        };
        let Connect {
            protocol_version,
            clean_start,
            keep_alive,
            client_id,
            will,
            username,
            password,
            properties,
        } = *connect;
        self.version = protocol_version;
        self.clean_start = clean_start;
        let max = self.limits.keep_alive_max_s;
        let capped = max < u16::MAX && (keep_alive == 0 || keep_alive > max);
        if let Some(what) = self.identifier_refusal(&client_id, clean_start, capped) {
            self.write_connack_failure(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, out);
            return Err(protocol(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, what));
        }
        if properties.authentication_method.is_some() {
            // MQTT 5 section 4.12: a server that does not support the method refuses it.
            let reason = ReasonCode::BAD_AUTHENTICATION_METHOD;
            self.write_connack_failure(reason, out);
            return Err(protocol(reason, "enhanced authentication is not supported"));
        }
        let keep_alive = if capped {
            self.server_keep_alive = Some(max);
            max
        } else {
            keep_alive
        };
        let (client_id, client_id_assigned) = if client_id.is_empty() {
            let id = format!("weir-{:016x}", mix(self.seed));
            self.assigned_client_id = Some(id.clone());
            (id, true)
        } else {
            (client_id, false)
        };
        self.keep_alive_s = keep_alive;
        self.take_client_limits(&properties);
        self.state = State::AwaitingAnswer;
        actions.push(Action::Connect(Box::new(ConnectRequest {
            protocol_version,
            client_id,
            client_id_assigned,
            clean_start,
            keep_alive_s: keep_alive,
            session_expiry_interval_s: properties.session_expiry_interval,
            will,
            username,
            password,
            properties,
        })));
        Ok(())
    }

    /// What the CONNECT's properties say of the client (MQTT 5; absent on 3.1.x).
    fn take_client_limits(&mut self, properties: &Properties) {
        self.session_expiry_zero = matches!(properties.session_expiry_interval, None | Some(0));
        self.client_receive_maximum = properties.receive_maximum.unwrap_or(u16::MAX);
        self.client_topic_alias_max = properties.topic_alias_maximum.unwrap_or(0);
        self.problem_information = properties.request_problem_information.unwrap_or(true);
        self.client_packet_size_max = properties
            .maximum_packet_size
            .map_or(usize::MAX, |max| max as usize);
    }

    /// Why a CONNECT of this version is refused with "identifier rejected" (3.1.x: return
    /// code 2), if it is: its client identifier, or (3.1.x, which cannot be told another) a
    /// keep alive above the cap (`capped`).
    fn identifier_refusal(
        &self,
        client_id: &str,
        clean_start: bool,
        capped: bool,
    ) -> Option<&'static str> {
        let version = self.version;
        if client_id.len() > self.limits.client_id_bytes_max {
            Some("client identifier too long")
        } else if client_id.is_empty() && version == ProtocolVersion::V3_1 {
            // MQTT 3.1 section 3.1: the identifier has 1 to 23 characters.
            Some("empty client identifier (MQTT 3.1)")
        } else if client_id.is_empty() && !clean_start && !version.is_v5() {
            // 3.1.1 section 3.1.3.1: an empty identifier needs Clean Session 1.
            Some("empty client identifier without clean session")
        } else if capped && !version.is_v5() {
            Some("keep alive of 0 or above mqtt.keep_alive_max_s")
        } else {
            None
        }
    }

    /// Refuses the CONNECT with `reason` (3.1.x: the nearest return code).
    pub(super) fn write_connack_failure(&self, reason: ReasonCode, out: &mut Vec<u8>) {
        let reason_code = if self.version.is_v5() {
            reason
        } else {
            reason.to_v4_connack()
        };
        self.send(
            &Packet::ConnAck(ConnAck {
                session_present: false,
                reason_code,
                properties: Properties::default(),
            }),
            out,
        );
    }

    /// Answers a CONNECT that could not be decoded, where the version allows it: an
    /// unsupported protocol gets the 3.1.1 return code 1 (which every version understands), an
    /// MQTT 5 CONNECT a CONNACK with the reason code; a broken 3.1.x CONNECT just closes.
    pub(super) fn refuse_broken_connect(
        &mut self,
        err: &SessionError,
        input: &[u8],
        out: &mut Vec<u8>,
    ) {
        if matches!(
            err,
            SessionError::Decode(DecodeError::UnsupportedProtocol { .. })
        ) {
            self.version = ProtocolVersion::V3_1_1;
            self.write_connack_failure(ReasonCode::UNSUPPORTED_PROTOCOL_VERSION, out);
            return;
        }
        if connect_version_hint(input) == Some(ProtocolVersion::V5) {
            self.version = ProtocolVersion::V5;
            let reason = err.reason_code();
            let reason = if reason::allowed(PacketType::ConnAck, reason, true) {
                reason
            } else {
                ReasonCode::MALFORMED_PACKET
            };
            self.write_connack_failure(reason, out);
        }
    }
}

/// The protocol version a CONNECT at the start of `buf` names, read from its first bytes
/// without decoding the rest, to answer a broken CONNECT in its own version.
fn connect_version_hint(buf: &[u8]) -> Option<ProtocolVersion> {
    if buf.first()? >> 4 != 1 {
        return None;
    }
    let mut i = 1;
    while buf.get(i)? & 0x80 != 0 {
        i += 1;
        if i > 4 {
            return None;
        }
    }
    i += 1;
    let len = usize::from(u16::from_be_bytes([*buf.get(i)?, *buf.get(i + 1)?]));
    let name = buf.get(i + 2..i + 2 + len)?;
    match (name, *buf.get(i + 2 + len)?) {
        (b"MQTT", 5) => Some(ProtocolVersion::V5),
        (b"MQTT", 4) => Some(ProtocolVersion::V3_1_1),
        (b"MQIsdp", 3) => Some(ProtocolVersion::V3_1),
        _ => None,
    }
}

/// SplitMix64's finaliser: a bijection, so distinct seeds give distinct identifiers.
fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
