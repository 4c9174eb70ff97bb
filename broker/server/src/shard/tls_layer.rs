//! TLS between the socket and a connection's protocol: ciphertext the client sent becomes
//! plaintext for the session, what the session writes is encrypted into the connection's
//! send buffer. rustls does no I/O of its own, so this runs inside the shard as the
//! protocols do, the same on both event loops.

use std::io::{Read, Write};
use std::sync::Arc;

use rustls::ServerConnection;

/// One connection's TLS state.
pub(super) struct TlsLayer {
    conn: ServerConnection,
    /// Plaintext the session wrote, encrypted into the send buffer by [`TlsLayer::seal`].
    pub(super) plain_out: Vec<u8>,
    /// Plaintext decrypted by the last [`TlsLayer::open`], for the session.
    pub(super) plain_in: Vec<u8>,
    /// The handshake finished and the connection was told so.
    handshake_seen: bool,
}

/// What one [`TlsLayer::open`] came to.
#[derive(Debug, Default)]
pub(super) struct Opened {
    /// The handshake finished with these bytes: the client's identity may now be read.
    pub(super) handshake_done: bool,
    /// The client sent close_notify: no more input.
    pub(super) closed: bool,
}

impl TlsLayer {
    /// A server-side TLS connection with the configuration in use now.
    pub(super) fn new(config: Arc<rustls::ServerConfig>) -> Result<TlsLayer, rustls::Error> {
        let mut conn = ServerConnection::new(config)?;
        // What waits to be sent is bounded by the connection's write buffer limit, which
        // stops reading; rustls's own limit would refuse plaintext instead.
        conn.set_buffer_limit(None);
        Ok(TlsLayer {
            conn,
            plain_out: Vec::new(),
            plain_in: Vec::new(),
            handshake_seen: false,
        })
    }

    /// Takes ciphertext from the client: decrypted bytes go to `plain_in`, handshake records
    /// and alerts to `out`. An error (a bad record, a refused handshake) has had its alert
    /// written to `out`: send that, then close.
    pub(super) fn open(
        &mut self,
        mut bytes: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Opened, rustls::Error> {
        let mut opened = Opened::default();
        let result = loop {
            if bytes.is_empty() {
                break Ok(());
            }
            if let Err(e) = self.conn.read_tls(&mut bytes) {
                break Err(rustls::Error::General(format!("reading TLS records: {e}")));
            }
            let state = match self.conn.process_new_packets() {
                Ok(state) => state,
                Err(e) => break Err(e),
            };
            let available = state.plaintext_bytes_to_read();
            if available > 0 {
                let start = self.plain_in.len();
                self.plain_in.resize(start + available, 0);
                if let Err(e) = self.conn.reader().read_exact(&mut self.plain_in[start..]) {
                    break Err(rustls::Error::General(format!("decrypted bytes: {e}")));
                }
            }
            opened.closed |= state.peer_has_closed();
        };
        self.flush(out);
        if !self.handshake_seen && !self.conn.is_handshaking() {
            self.handshake_seen = true;
            opened.handshake_done = true;
        }
        result.map(|()| opened)
    }

    /// Encrypts what the session wrote to `plain_out` into `out`.
    pub(super) fn seal(&mut self, out: &mut Vec<u8>) {
        if self.plain_out.is_empty() {
            return;
        }
        // Without a buffer limit the writer takes everything (before the handshake is done,
        // rustls keeps it until it is).
        if let Err(e) = self.conn.writer().write_all(&self.plain_out) {
            tracing::error!("TLS refused plaintext: {e}");
        }
        self.plain_out.clear();
        self.flush(out);
    }

    /// Moves the TLS records rustls has ready into `out`.
    fn flush(&mut self, out: &mut Vec<u8>) {
        while self.conn.wants_write() {
            // Writing into a Vec cannot fail.
            if self.conn.write_tls(out).is_err() {
                break;
            }
        }
    }

    /// The client's verified certificate (the end entity's), if it sent one.
    pub(super) fn peer_certificate(&self) -> Option<&[u8]> {
        let certificates = self.conn.peer_certificates()?;
        certificates.first().map(|c| c.as_ref())
    }
}
