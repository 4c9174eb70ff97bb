//! MQTT over WebSocket (RFC 6455; MQTT 3.1.1 and 5.0 section 6), the server side, without
//! I/O: the HTTP upgrade, then binary frames whose payloads form the MQTT byte stream.
//!
//! [`WsServer::decode`] takes received bytes and returns how many it consumed (the caller
//! keeps the rest, an incomplete request or frame); the MQTT bytes of complete frames go to
//! `data`, and what the server must send (the 101 answer, pongs, the closing frame) to `out`.
//! [`encode_binary`] wraps outgoing MQTT bytes in a frame.
//!
//! Limits: the upgrade request is at most [`HANDSHAKE_BYTES_MAX`] bytes; a frame's declared
//! length is checked against the configured maximum before its payload is buffered, so a
//! hostile length costs nothing. What is refused: anything but a `GET` upgrade to WebSocket
//! version 13 with a key (answered `400 Bad Request`), a subprotocol list without `mqtt`
//! (MQTT requires it; `mqttv3.1` of older clients is accepted too), unmasked client frames,
//! reserved bits, text frames (MQTT is binary), fragmented or long control frames, and
//! frames over the limit: each ends the connection, with a closing frame where the
//! handshake was done.

/// Longest upgrade request accepted, in bytes.
pub const HANDSHAKE_BYTES_MAX: usize = 8 * 1024;

/// Why the WebSocket layer ends the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    /// The upgrade request is not one this server accepts.
    #[error("bad WebSocket upgrade: {0}")]
    BadHandshake(&'static str),
    /// A frame broke RFC 6455 or MQTT's use of it.
    #[error("bad WebSocket frame: {0}")]
    BadFrame(&'static str),
    /// A frame longer than the limit.
    #[error("WebSocket frame of {0} bytes is over the limit")]
    TooLarge(u64),
    /// The client closed the WebSocket.
    #[error("the client closed the WebSocket")]
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Handshake,
    Open,
    Closed,
}

/// The server side of one WebSocket connection carrying MQTT.
#[derive(Debug)]
pub struct WsServer {
    state: State,
    frame_bytes_max: usize,
    /// A data message continues in the next frame (opcode 0).
    in_message: bool,
}

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

impl WsServer {
    /// A connection waiting for its upgrade request; frames may be at most
    /// `frame_bytes_max` bytes of payload.
    pub fn new(frame_bytes_max: usize) -> WsServer {
        WsServer {
            state: State::Handshake,
            frame_bytes_max,
            in_message: false,
        }
    }

    /// Whether the upgrade is done and frames flow.
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// Consumes complete requests and frames at the start of `input`: MQTT bytes go to
    /// `data`, answers to `out`. Returns the bytes consumed; an error ends the connection
    /// (after `out` is sent).
    pub fn decode(
        &mut self,
        input: &[u8],
        data: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<usize, WsError> {
        let mut used = 0;
        loop {
            let rest = &input[used..];
            let step = match self.state {
                State::Closed => return Err(WsError::Closed),
                State::Handshake => self.handshake(rest, out),
                State::Open => self.frame(rest, data, out),
            };
            match step {
                Ok(0) => return Ok(used),
                Ok(n) => used += n,
                Err(e) => {
                    if self.state == State::Open {
                        let code: u16 = match e {
                            WsError::TooLarge(_) => 1009,
                            _ => 1002,
                        };
                        encode_frame(0x8, &code.to_be_bytes(), out);
                    }
                    self.state = State::Closed;
                    return Err(e);
                }
            }
        }
    }

    fn handshake(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, WsError> {
        let Some(end) = find(input, b"\r\n\r\n") else {
            if input.len() > HANDSHAKE_BYTES_MAX {
                return Err(refuse(out, "request too long"));
            }
            return Ok(0);
        };
        let request = std::str::from_utf8(&input[..end]).map_err(|_| refuse(out, "not UTF-8"))?;
        let mut lines = request.split("\r\n");
        let request_line = lines.next().unwrap_or("");
        if !request_line.starts_with("GET ") || !request_line.ends_with(" HTTP/1.1") {
            return Err(refuse(out, "not a GET over HTTP/1.1"));
        }
        let (mut upgrade, mut connection, mut version, mut key, mut protocols) =
            (false, false, false, None, None);
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                return Err(refuse(out, "malformed header"));
            };
            let value = value.trim();
            let has = |token: &str| {
                value
                    .split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case(token))
            };
            match name.trim().to_ascii_lowercase().as_str() {
                "upgrade" => upgrade = has("websocket"),
                "connection" => connection = has("upgrade"),
                "sec-websocket-version" => version = value == "13",
                "sec-websocket-key" => key = Some(value.to_owned()),
                "sec-websocket-protocol" => protocols = Some(value.to_owned()),
                _ => {}
            }
        }
        if !(upgrade && connection && version) {
            return Err(refuse(out, "not a WebSocket version 13 upgrade"));
        }
        let Some(key) = key.filter(|k| !k.is_empty() && k.len() <= 64) else {
            return Err(refuse(out, "no Sec-WebSocket-Key"));
        };
        let chosen = match &protocols {
            None => None,
            Some(list) => {
                let offered: Vec<&str> = list.split(',').map(str::trim).collect();
                match ["mqtt", "mqttv3.1"]
                    .into_iter()
                    .find(|p| offered.contains(p))
                {
                    Some(p) => Some(p),
                    None => return Err(refuse(out, "subprotocol mqtt not offered")),
                }
            }
        };
        let accept = accept_key(&key);
        out.extend_from_slice(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
        );
        out.extend_from_slice(format!("Sec-WebSocket-Accept: {accept}\r\n").as_bytes());
        if let Some(p) = chosen {
            out.extend_from_slice(format!("Sec-WebSocket-Protocol: {p}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        self.state = State::Open;
        Ok(end + 4)
    }

    fn frame(
        &mut self,
        input: &[u8],
        data: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<usize, WsError> {
        let [first, second, ..] = *input else {
            return Ok(0);
        };
        if first & 0x70 != 0 {
            return Err(WsError::BadFrame("reserved bits set"));
        }
        if second & 0x80 == 0 {
            return Err(WsError::BadFrame("client frames must be masked"));
        }
        let fin = first & 0x80 != 0;
        let opcode = first & 0x0f;
        let (length, header) = match second & 0x7f {
            126 => match input.get(2..4) {
                Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
                None => return Ok(0),
            },
            127 => match input.get(2..10) {
                Some(b) => (u64::from_be_bytes(b.try_into().unwrap_or([0xff; 8])), 10),
                None => return Ok(0),
            },
            n => (u64::from(n), 2),
        };
        let control = opcode & 0x8 != 0;
        if control && (length > 125 || !fin) {
            return Err(WsError::BadFrame(
                "control frame fragmented or over 125 bytes",
            ));
        }
        if length > self.frame_bytes_max as u64 {
            return Err(WsError::TooLarge(length));
        }
        let length = length as usize;
        let Some(mask) = input.get(header..header + 4) else {
            return Ok(0);
        };
        let start = header + 4;
        let Some(payload) = input.get(start..start + length) else {
            return Ok(0);
        };
        let unmasked = payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]);
        match opcode {
            0x0 if self.in_message => data.extend(unmasked),
            0x2 if !self.in_message => data.extend(unmasked),
            0x0 | 0x2 => return Err(WsError::BadFrame("data frame out of sequence")),
            0x1 => return Err(WsError::BadFrame("text frame: MQTT uses binary frames")),
            0x8 => {
                // Echo the status code, then end.
                let body: Vec<u8> = unmasked.take(2).collect();
                encode_frame(0x8, &body, out);
                self.state = State::Closed;
                return Err(WsError::Closed);
            }
            0x9 => {
                let body: Vec<u8> = unmasked.collect();
                encode_frame(0xA, &body, out);
            }
            0xA => {}
            _ => return Err(WsError::BadFrame("unknown opcode")),
        }
        if !control {
            self.in_message = !fin;
        }
        Ok(start + length)
    }
}

/// Appends `payload` to `out` as one binary frame (server frames are not masked).
pub fn encode_binary(payload: &[u8], out: &mut Vec<u8>) {
    encode_frame(0x2, payload, out);
}

fn encode_frame(opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.push(0x80 | opcode);
    match payload.len() {
        n @ 0..=125 => out.push(n as u8),
        n @ 126..=0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

/// Answers a refused upgrade.
fn refuse(out: &mut Vec<u8>, why: &'static str) -> WsError {
    out.extend_from_slice(
        b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    );
    WsError::BadHandshake(why)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The handshake's accept key (RFC 6455, 4.2.2): base64 of the SHA-1 of the client's key
/// and the protocol's GUID.
fn accept_key(key: &str) -> String {
    use base64::Engine as _;
    let digest = sha1_smol::Sha1::from(format!("{key}{GUID}"))
        .digest()
        .bytes();
    base64::engine::general_purpose::STANDARD.encode(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upgrade(protocol: Option<&str>) -> Vec<u8> {
        let mut r = String::from(
            "GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
        );
        if let Some(p) = protocol {
            r.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
        }
        r.push_str("\r\n");
        r.into_bytes()
    }

    fn masked(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut f = vec![opcode | if fin { 0x80 } else { 0 }];
        match payload.len() {
            n @ 0..=125 => f.push(0x80 | n as u8),
            n => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    #[test]
    fn the_accept_key_is_rfc_6455s() {
        // The example of RFC 6455, section 1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn the_upgrade_is_answered_with_the_rfc_accept_key_and_mqtt() {
        let mut ws = WsServer::new(1024);
        let request = upgrade(Some("mqttv3.1, mqtt"));
        let (mut data, mut out) = (Vec::new(), Vec::new());
        // Byte by byte: nothing is consumed before the request is complete.
        for end in 0..request.len() {
            assert_eq!(ws.decode(&request[..end], &mut data, &mut out), Ok(0));
        }
        assert_eq!(ws.decode(&request, &mut data, &mut out), Ok(request.len()));
        let answer = String::from_utf8(out).unwrap();
        assert!(answer.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        // RFC 6455 section 1.3's example key.
        assert!(answer.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(answer.contains("Sec-WebSocket-Protocol: mqtt\r\n"));
        assert!(ws.is_open());
    }

    #[test]
    fn bad_upgrades_get_400() {
        for request in [
            upgrade(Some("chat")),
            b"POST / HTTP/1.1\r\n\r\n".to_vec(),
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n".to_vec(),
            vec![b'a'; HANDSHAKE_BYTES_MAX + 1],
        ] {
            let mut ws = WsServer::new(1024);
            let (mut data, mut out) = (Vec::new(), Vec::new());
            let err = ws.decode(&request, &mut data, &mut out).unwrap_err();
            assert!(matches!(err, WsError::BadHandshake(_)));
            assert!(out.starts_with(b"HTTP/1.1 400 Bad Request\r\n"));
        }
    }

    #[test]
    fn frames_carry_mqtt_bytes_and_control_frames_are_answered() {
        let mut ws = WsServer::new(1000);
        let (mut data, mut out) = (Vec::new(), Vec::new());
        ws.decode(&upgrade(None), &mut data, &mut out).unwrap();
        out.clear();
        let mut input = masked(0x2, false, b"\x10\x0c");
        input.extend(masked(0x9, true, b"hi"));
        input.extend(masked(0x0, true, &[7u8; 300]));
        let partial = masked(0x2, true, b"tail");
        input.extend_from_slice(&partial[..3]);
        let used = ws.decode(&input, &mut data, &mut out).unwrap();
        assert_eq!(used, input.len() - 3, "the incomplete frame stays");
        assert_eq!(data.len(), 302);
        assert_eq!(out, [0x8A, 2, b'h', b'i'], "pong");
        // A declared length over the limit is refused from the header alone.
        let mut huge = vec![0x82, 0x80 | 127];
        huge.extend_from_slice(&(1u64 << 40).to_be_bytes());
        out.clear();
        assert_eq!(
            ws.decode(&huge, &mut data, &mut out),
            Err(WsError::TooLarge(1 << 40))
        );
        assert_eq!(out, [0x88, 2, 0x03, 0xF1], "close 1009");
    }

    #[test]
    fn protocol_breaks_close_the_websocket() {
        for frame in [
            masked(0x1, true, b"text"),
            {
                let mut f = masked(0x2, true, b"x");
                f[1] &= 0x7f; // unmasked
                f
            },
            masked(0x9, false, b"fragmented ping"),
            masked(0x0, true, b"continuation first"),
            masked(0x8, true, &[0x03, 0xe8]),
        ] {
            let mut ws = WsServer::new(1000);
            let (mut data, mut out) = (Vec::new(), Vec::new());
            ws.decode(&upgrade(Some("mqtt")), &mut data, &mut out)
                .unwrap();
            assert!(ws.decode(&frame, &mut data, &mut out).is_err());
            assert!(!ws.is_open());
            assert!(data.is_empty());
        }
    }

    #[test]
    fn outgoing_frames_use_every_length_form() {
        for (len, header) in [(5usize, 2usize), (300, 4), (70_000, 10)] {
            let mut out = Vec::new();
            encode_binary(&vec![1; len], &mut out);
            assert_eq!(out.len(), header + len);
            assert_eq!(out[0], 0x82);
        }
    }
}
