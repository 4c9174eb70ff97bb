//! A minimal blocking MQTT 3.1.1 client on the project's own codec (`weir-mqtt`), for the
//! simulator's devices and subscribers and for the benchmarks.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, bail};
use weir_mqtt::{
    Connect, Packet, PacketDecoder, PacketId, ProtocolVersion, QoS, Subscribe, Subscription,
    SubscriptionOptions, Will,
};

/// The protocol version the client speaks.
pub const V: ProtocolVersion = ProtocolVersion::V3_1_1;

/// One connection: a clean session with keep alive off, over a TCP socket or another
/// transport (TLS over one, for the benchmarks).
#[derive(Debug)]
pub struct Conn<S = TcpStream> {
    /// The socket (the caller may make it non-blocking or give it a read timeout).
    pub stream: S,
    /// The CONNACK said the broker had a session for this client id.
    pub session_present: bool,
    buffer: Vec<u8>,
    decoder: PacketDecoder,
}

impl Conn {
    /// Connects as `client_id` with a clean session and no will, and waits (at most 10 s)
    /// for a successful CONNACK.
    pub fn connect(addr: SocketAddr, client_id: &str) -> anyhow::Result<Conn> {
        Conn::connect_with(addr, client_id, true, None)
    }

    /// Connects as `client_id` with `clean_start` and `will`, and waits (at most 10 s) for a
    /// successful CONNACK.
    pub fn connect_with(
        addr: SocketAddr,
        client_id: &str,
        clean_start: bool,
        will: Option<Will>,
    ) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(addr).with_context(|| format!("connect to {addr}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Conn::over(stream, client_id, clean_start, will)
    }
}

impl<S: Read + Write> Conn<S> {
    /// Speaks MQTT over `stream`, connected and given its read timeout: connects as
    /// `client_id` with `clean_start` and `will`, and waits for a successful CONNACK.
    pub fn over(
        stream: S,
        client_id: &str,
        clean_start: bool,
        will: Option<Will>,
    ) -> anyhow::Result<Conn<S>> {
        let mut conn = Conn {
            stream,
            session_present: false,
            buffer: Vec::new(),
            decoder: PacketDecoder::new(64 << 20),
        };
        conn.send(&Packet::Connect(Box::new(Connect {
            protocol_version: V,
            clean_start,
            keep_alive: 0,
            client_id: client_id.to_owned(),
            will,
            username: None,
            password: None,
            properties: Default::default(),
        })))?;
        match conn.expect(|p| matches!(p, Packet::ConnAck(_)))? {
            Packet::ConnAck(ack) if !ack.reason_code.is_error() => {
                conn.session_present = ack.session_present;
                Ok(conn)
            }
            other => bail!("{client_id}: CONNECT refused: {other:?}"),
        }
    }

    /// Subscribes to `filter` and waits for the SUBACK.
    pub fn subscribe(&mut self, filter: &str, qos: QoS) -> anyhow::Result<()> {
        self.send(&Packet::Subscribe(Subscribe {
            packet_id: PacketId::MIN,
            properties: Default::default(),
            subscriptions: vec![Subscription {
                filter: filter.to_owned(),
                options: SubscriptionOptions::qos(qos),
            }],
        }))?;
        self.expect(|p| matches!(p, Packet::SubAck(_)))?;
        Ok(())
    }

    /// Writes one packet.
    pub fn send(&mut self, packet: &Packet) -> anyhow::Result<()> {
        let mut bytes = Vec::new();
        packet.encode(V, &mut bytes)?;
        self.stream.write_all(&bytes)?;
        Ok(())
    }

    /// The next packet, reading as needed; `None` when a read times out (or would block).
    pub fn next_packet(&mut self) -> anyhow::Result<Option<Packet>> {
        loop {
            if let Some(packet) = self.decoded()? {
                return Ok(Some(packet));
            }
            if !self.read_once()? {
                return Ok(None);
            }
        }
    }

    /// Waits for a packet `want` accepts, skipping others; an error if a read times out.
    pub fn expect(&mut self, want: impl Fn(&Packet) -> bool) -> anyhow::Result<Packet> {
        loop {
            match self.next_packet()? {
                Some(packet) if want(&packet) => return Ok(packet),
                Some(_) => {}
                None => bail!("timed out waiting for the broker"),
            }
        }
    }

    /// The complete packets after one read (which may find nothing: a non-blocking socket,
    /// or a read timeout).
    pub fn ready(&mut self) -> anyhow::Result<Vec<Packet>> {
        self.read_once()?;
        let mut packets = Vec::new();
        while let Some(packet) = self.decoded()? {
            packets.push(packet);
        }
        Ok(packets)
    }

    fn decoded(&mut self) -> anyhow::Result<Option<Packet>> {
        match self.decoder.decode(&self.buffer, V)? {
            Some((packet, used)) => {
                self.buffer.drain(..used);
                Ok(Some(packet))
            }
            None => Ok(None),
        }
    }

    /// One read into the buffer; false if it timed out or would block.
    fn read_once(&mut self) -> anyhow::Result<bool> {
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => bail!("the broker closed the connection"),
            Ok(n) => {
                self.buffer.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }
}
