//! One client connection, apart from how its bytes move: the protocol session, the input
//! not yet consumed, the answers not yet handed to the kernel, and the timestamps the
//! timeouts need. Both backends drive the same [`Conn`].

use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use std::sync::Arc;

use weir_core::kafka::{KafkaError, KafkaOp, KafkaSession, KafkaSettings};
use weir_core::mqtt_kafka::LogMessage;

use super::inbox::Outcome;
use super::settings::{ListenerConfig, Protocol, Reading, ServerConfig, ShardMetrics};
use super::tls_layer::TlsLayer;
use crate::tls::TlsContext;
use weir_core::auth::CertificateIdentity;
use weir_core::log_store::PartitionId;
use weir_core::mqtt_connection::{
    DeliveryEdge, Ended, MqttConnection, MqttSettings, MqttWork, Offer, Shares,
};
use weir_mqtt::websocket::WsServer;

/// A receive buffer emptied with more capacity than this is freed.
const READ_BUFFER_KEEP: usize = 4 * 1024;
/// A send buffer emptied with more capacity than this is freed.
pub(super) const WRITE_BUFFER_KEEP: usize = 4 * 1024;

/// Delivered bytes waiting unsealed before they are sealed into a TLS record (the largest
/// TLS record's plaintext) or WebSocket frame.
const SEAL_BYTES: usize = 16 * 1024;

/// The protocol state of a connection.
enum Session {
    Kafka(Box<KafkaSession>),
    Mqtt(Box<MqttConnection>),
}

/// MQTT over WebSocket: the frame layer between the socket and the MQTT session.
struct WsLayer {
    server: WsServer,
    /// MQTT bytes from complete frames the session has not consumed.
    data: Vec<u8>,
    /// MQTT packets the session wrote, framed into `out` after each call.
    scratch: Vec<u8>,
}

/// Bytes a WebSocket frame may carry beyond one MQTT packet of the largest size (clients may
/// put several packets in one frame).
const WS_FRAME_SLACK_BYTES: usize = 64 * 1024;

/// What the sessions of a shard's connections share.
pub(super) struct SessionSettings {
    /// Per listener: what its Kafka sessions share (Metadata advertises that listener).
    pub(super) kafka: Vec<Arc<KafkaSettings>>,
    pub(super) mqtt: Arc<MqttSettings>,
    /// Where the shard's MQTT delivery stands, for new subscriptions.
    pub(super) edge: Arc<dyn DeliveryEdge>,
    /// The certificate of the TLS listeners.
    pub(super) tls: Option<Arc<TlsContext>>,
    /// MQTT over TLS: the client certificate's common name is the user name.
    pub(super) identity_as_username: bool,
}

/// A connection's state, shared by both backends.
pub(super) struct Conn {
    pub(super) stream: TcpStream,
    /// Index of the listener that accepted it.
    pub(super) listener: usize,
    session: Session,
    /// Received bytes; those before `read_pos` are consumed, the rest the session has not
    /// taken yet (an incomplete request, or requests held back while answers wait).
    read_buf: Vec<u8>,
    read_pos: usize,
    /// Answers not yet handed to the kernel, from `written` on.
    pub(super) out: Vec<u8>,
    pub(super) written: usize,
    /// Not read while too many answers wait for the client.
    pub(super) read_paused: bool,
    /// A protocol error or end of input: send what is pending, then close.
    pub(super) closing: bool,
    /// The broker ends the connection for a protocol error while the client may still be
    /// sending: once what is pending is sent, it lingers (`Shard::linger`) rather than close
    /// at once.
    pub(super) linger: bool,
    accepted_at: Instant,
    last_active: Instant,
    answered_any: bool,
    /// Operations the session asked for, not yet handed to the writer.
    ops: Vec<(u64, KafkaOp)>,
    /// What an MQTT session asked the shard for, not yet done.
    mqtt_work: Vec<MqttWork>,
    /// The WebSocket layer of MQTT over WebSocket.
    ws: Option<Box<WsLayer>>,
    /// TLS, below the WebSocket layer, on a TLS listener.
    tls: Option<Box<TlsLayer>>,
    /// The TLS client certificate's common name stands as the MQTT user name.
    identity_as_username: bool,
}

impl Conn {
    /// A connection accepted at `now`; `seed` is distinct per connection (it makes the
    /// client identifiers MQTT assigns).
    pub(super) fn new(
        stream: TcpStream,
        (listener, config): (usize, &ListenerConfig),
        sessions: &SessionSettings,
        seed: u64,
        now: Instant,
    ) -> Conn {
        let protocol = config.protocol;
        let session = match protocol {
            Protocol::Kafka => {
                // Kafka shows a member's address as `/ip`.
                let host =
                    (stream.peer_addr().map(|addr| format!("/{}", addr.ip()))).unwrap_or_default();
                let settings = sessions.kafka[listener].clone();
                Session::Kafka(Box::new(KafkaSession::new(settings, host)))
            }
            Protocol::Mqtt | Protocol::MqttWebSocket => {
                Session::Mqtt(Box::new(MqttConnection::new(
                    sessions.mqtt.clone(),
                    sessions.edge.clone(),
                    seed,
                    crate::clock::session_time(now),
                )))
            }
        };
        let ws = (protocol == Protocol::MqttWebSocket).then(|| {
            let frame_max = sessions.mqtt.limits.packet_size_bytes_max + WS_FRAME_SLACK_BYTES;
            Box::new(WsLayer {
                server: WsServer::new(frame_max),
                data: Vec::new(),
                scratch: Vec::new(),
            })
        });
        let (tls, closing) = match config.tls.then_some(sessions.tls.as_ref()) {
            None => (None, false),
            Some(context) => match context.map(|c| TlsLayer::new(c.server_config())) {
                Some(Ok(layer)) => (Some(Box::new(layer)), false),
                // Closed at once, nothing sent.
                Some(Err(e)) => {
                    tracing::error!("a TLS connection could not be set up: {e}");
                    (None, true)
                }
                None => {
                    tracing::error!("a TLS listener without a certificate");
                    (None, true)
                }
            },
        };
        Conn {
            stream,
            listener,
            session,
            read_buf: Vec::new(),
            read_pos: 0,
            out: Vec::new(),
            written: 0,
            read_paused: false,
            closing,
            linger: false,
            accepted_at: now,
            last_active: now,
            answered_any: false,
            ops: Vec::new(),
            mqtt_work: Vec::new(),
            ws,
            identity_as_username: sessions.identity_as_username && tls.is_some(),
            tls,
        }
    }

    /// The MQTT session, the buffer its packets go to (for WebSocket a scratch buffer that
    /// [`Conn::frame_ws`] frames into `out`) and its work list.
    fn mqtt_parts(&mut self) -> Option<(&mut MqttConnection, &mut Vec<u8>, &mut Vec<MqttWork>)> {
        let Conn {
            session,
            ws,
            tls,
            out,
            mqtt_work,
            ..
        } = self;
        let Session::Mqtt(mqtt) = session else {
            return None;
        };
        let out = match ws {
            Some(ws) => &mut ws.scratch,
            None => plaintext(tls, out),
        };
        Some((mqtt, out, mqtt_work))
    }

    /// Moves what the session wrote through the layers below it into `out`: into WebSocket
    /// frames (MQTT over WebSocket), then into TLS records (on a TLS listener).
    fn seal(&mut self) {
        let Conn { ws, tls, out, .. } = self;
        if let Some(ws) = ws
            && !ws.scratch.is_empty()
        {
            weir_mqtt::websocket::encode_binary(&ws.scratch, plaintext(tls, out));
            ws.scratch.clear();
        }
        if let Some(tls) = tls {
            tls.seal(out);
        }
    }

    /// Answer bytes in `out` not yet written.
    pub(super) fn pending(&self) -> usize {
        self.out.len() - self.written
    }

    /// Bytes the session wrote that are not yet sealed into WebSocket frames and TLS records
    /// (deliveries are sealed together: see [`Conn::offer_mqtt`]).
    fn unsealed(&self) -> usize {
        self.ws.as_ref().map_or(0, |ws| ws.scratch.len())
            + self.tls.as_ref().map_or(0, |tls| tls.plain_out.len())
    }

    /// Seals what deliveries left unsealed; returns the bytes added to `out`.
    pub(super) fn seal_deliveries(&mut self) -> u64 {
        if self.unsealed() == 0 {
            return 0;
        }
        let before = self.out.len();
        self.seal();
        (self.out.len() - before) as u64
    }

    /// True while input waits to be processed.
    pub(super) fn has_input(&self) -> bool {
        self.read_pos < self.read_buf.len()
            || self.ws.as_ref().is_some_and(|ws| !ws.data.is_empty())
    }

    /// Takes bytes the client sent and lets the session answer complete requests until `out`
    /// holds `out_limit` bytes. When nothing was held from earlier, the session reads `bytes`
    /// where they are and only what it leaves (an incomplete request, or requests held back)
    /// is copied into the connection. Empty `bytes` is the end of input. Returns the bytes of
    /// answers added.
    pub(super) fn receive(
        &mut self,
        bytes: &[u8],
        now: Instant,
        out_limit: usize,
        cx: &mut Reading<'_>,
    ) -> u64 {
        if self.closing {
            // After a protocol error or end of input nothing more is read.
            return 0;
        }
        cx.metrics
            .bytes_in
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        match self.tls.is_some() && !bytes.is_empty() {
            true => self.receive_tls(bytes, now, out_limit, cx),
            false => self.receive_plain(bytes, now, out_limit, cx),
        }
    }

    /// [`Conn::receive`] on a TLS listener: the records are opened, and what they held goes
    /// to the session.
    fn receive_tls(
        &mut self,
        bytes: &[u8],
        now: Instant,
        out_limit: usize,
        cx: &mut Reading<'_>,
    ) -> u64 {
        let Some(tls) = &mut self.tls else {
            return 0;
        };
        let before = self.out.len();
        self.last_active = now;
        let opened = tls.open(bytes, &mut self.out);
        let mut plain = std::mem::take(&mut tls.plain_in);
        match opened {
            Ok(opened) => {
                if opened.handshake_done {
                    self.identify();
                }
                if !plain.is_empty() {
                    self.receive_plain(&plain, now, out_limit, cx);
                }
                if opened.closed {
                    self.receive_plain(&[], now, out_limit, cx);
                }
            }
            Err(e) => {
                let peer = self.stream.peer_addr().ok();
                tracing::info!(?peer, "closing a TLS connection: {e}");
                cx.metrics.protocol_errors.fetch_add(1, Ordering::Relaxed);
                self.fail();
            }
        }
        if let Some(tls) = &mut self.tls
            && plain.capacity() <= READ_BUFFER_KEEP
        {
            plain.clear();
            tls.plain_in = plain;
        }
        (self.out.len() - before) as u64
    }

    /// The TLS handshake is done: with `tls.identity_as_username`, the session (MQTT or
    /// Kafka) is told who the client certificate names.
    fn identify(&mut self) {
        if !self.identity_as_username {
            return;
        }
        let identity = match self.tls.as_ref().and_then(|tls| tls.peer_certificate()) {
            Some(der) => match crate::tls::common_name(der) {
                Ok(name) => CertificateIdentity::User(name),
                Err(why) => CertificateIdentity::Refused(why),
            },
            None => CertificateIdentity::Refused("no client certificate".to_owned()),
        };
        match &mut self.session {
            Session::Mqtt(mqtt) => mqtt.set_certificate_identity(identity),
            Session::Kafka(kafka) => kafka.set_certificate_identity(identity),
        }
    }

    /// [`Conn::receive`] of plaintext: the client's bytes, or what its TLS records held.
    fn receive_plain(
        &mut self,
        bytes: &[u8],
        now: Instant,
        out_limit: usize,
        cx: &mut Reading<'_>,
    ) -> u64 {
        if bytes.is_empty() {
            // End of input: answer what is complete, then close once it is sent.
            self.closing = true;
            return self.process(out_limit, cx, now);
        }
        self.last_active = now;
        if self.has_input() {
            // Consumed bytes are dropped from the front only once they are at least as many as
            // those kept, so each received byte is moved at most a bounded number of times.
            if self.read_pos >= self.read_buf.len() - self.read_pos {
                self.read_buf.copy_within(self.read_pos.., 0);
                self.read_buf.truncate(self.read_buf.len() - self.read_pos);
                self.read_pos = 0;
            }
            self.read_buf.extend_from_slice(bytes);
            return self.process(out_limit, cx, now);
        }
        let before = self.out.len();
        let used = self.answer(bytes, out_limit, cx, now);
        if let Some(rest) = used.and_then(|used| bytes.get(used..)) {
            self.read_buf.clear();
            self.read_pos = 0;
            self.read_buf.extend_from_slice(rest);
        }
        (self.out.len() - before) as u64
    }

    /// Lets the session answer complete requests held in the connection's buffer until
    /// `out` holds `out_limit` bytes. Returns the bytes of answers added.
    pub(super) fn process(&mut self, out_limit: usize, cx: &mut Reading<'_>, now: Instant) -> u64 {
        if !self.has_input() {
            return 0;
        }
        let before = self.out.len();
        let input = std::mem::take(&mut self.read_buf);
        match self.answer(&input[self.read_pos..], out_limit, cx, now) {
            Some(used) => {
                self.read_pos += used;
                self.read_buf = input;
                if self.read_pos == self.read_buf.len() {
                    self.read_buf.clear();
                    self.read_pos = 0;
                    if self.read_buf.capacity() > READ_BUFFER_KEEP {
                        self.read_buf = Vec::new();
                    }
                }
            }
            // A protocol error: nothing is kept.
            None => self.read_pos = 0,
        }
        (self.out.len() - before) as u64
    }

    /// Runs the session over `input`; returns the bytes consumed, or `None` after a protocol
    /// error (the connection is then closing).
    fn answer(
        &mut self,
        input: &[u8],
        out_limit: usize,
        cx: &mut Reading<'_>,
        now: Instant,
    ) -> Option<usize> {
        // Under TLS the session writes plaintext, sealed after each call.
        let out_limit = match self.tls {
            Some(_) => out_limit.saturating_sub(self.out.len()),
            None => out_limit,
        };
        let session = match &mut self.session {
            Session::Kafka(session) => session,
            Session::Mqtt(_) => return self.answer_mqtt(input, cx, now),
        };
        let answered_before = session.requests();
        let result = session.on_bytes(
            input,
            plaintext(&mut self.tls, &mut self.out),
            out_limit,
            &mut self.ops,
            crate::clock::monotonic_ms(now),
        );
        let answered = session.requests() - answered_before;
        self.seal();
        if answered > 0 {
            self.answered_any = true;
            cx.metrics.requests.fetch_add(answered, Ordering::Relaxed);
        }
        match result {
            Ok(used) => Some(used),
            Err(e) => {
                // Refused authentication is worth an operator's eye; a malformed request is not.
                let security =
                    matches!(e, KafkaError::Sasl(_) | KafkaError::Unauthenticated { .. });
                if security {
                    let peer = self.stream.peer_addr().ok();
                    tracing::info!(?peer, "closing a kafka connection: {e}");
                } else {
                    tracing::debug!("closing a kafka connection: {e}");
                }
                cx.metrics.protocol_errors.fetch_add(1, Ordering::Relaxed);
                self.fail();
                None
            }
        }
    }

    /// [`Conn::answer`] for MQTT, plain or over WebSocket (where `input` is frames, and the
    /// MQTT bytes the session has not consumed stay in the layer).
    fn answer_mqtt(&mut self, input: &[u8], cx: &mut Reading<'_>, now: Instant) -> Option<usize> {
        let now = crate::clock::session_time(now);
        let mut frames_used = None;
        if let Some(ws) = &mut self.ws {
            match ws
                .server
                .decode(input, &mut ws.data, plaintext(&mut self.tls, &mut self.out))
            {
                Ok(used) => frames_used = Some(used),
                Err(e) => {
                    tracing::debug!("closing an MQTT WebSocket: {e}");
                    self.seal();
                    self.closing = true;
                    if e != weir_mqtt::websocket::WsError::Closed {
                        cx.metrics.protocol_errors.fetch_add(1, Ordering::Relaxed);
                        self.fail();
                    }
                    return None;
                }
            }
        }
        let result = match (&mut self.session, &mut self.ws) {
            (Session::Mqtt(mqtt), None) => {
                let out = plaintext(&mut self.tls, &mut self.out);
                mqtt.on_bytes(input, now, (out, &mut self.mqtt_work), cx.pool)
            }
            (Session::Mqtt(mqtt), Some(ws)) => {
                let work = (&mut ws.scratch, &mut self.mqtt_work);
                let result = mqtt.on_bytes(&ws.data, now, work, cx.pool);
                if let Ok(used) = result {
                    ws.data.drain(..used);
                }
                result
            }
            (Session::Kafka(_), _) => return None,
        };
        self.seal();
        if let Some(mqtt) = self.mqtt() {
            let denied = mqtt.take_denied();
            if denied > 0 {
                cx.metrics.mqtt_denied.fetch_add(denied, Ordering::Relaxed);
            }
            self.answered_any |= mqtt.connected();
        }
        match result {
            Ok(used) => Some(frames_used.unwrap_or(used)),
            Err(ended) => {
                self.closing = true;
                if ended == Ended::Violation {
                    cx.metrics.protocol_errors.fetch_add(1, Ordering::Relaxed);
                    self.fail();
                }
                None
            }
        }
    }

    /// The broker ends the connection for a protocol error (its answer, a DISCONNECT or a
    /// TLS alert, is already in `out`): send what is pending, then linger. Under TLS no
    /// close_notify follows the answer (none is sent on any close).
    fn fail(&mut self) {
        self.closing = true;
        self.linger = true;
    }

    /// Lets the session answer what waited for time (fetches waiting for data or their
    /// deadline); returns the bytes of answers added.
    pub(super) fn tick(&mut self, now: Instant) -> u64 {
        let before = self.out.len();
        match &mut self.session {
            Session::Kafka(session) => {
                if !session.has_waiting_fetch() && !session.refusing() {
                    return 0;
                }
                let result = session.tick(
                    crate::clock::monotonic_ms(now),
                    plaintext(&mut self.tls, &mut self.out),
                );
                self.seal();
                if let Err(e) = result {
                    let peer = self.stream.peer_addr().ok();
                    tracing::info!(?peer, "closing a kafka connection: {e}");
                    self.closing = true;
                }
            }
            Session::Mqtt(_) => {
                let open = self.mqtt_parts().is_none_or(|(mqtt, out, work)| {
                    mqtt.tick(crate::clock::session_time(now), out, work)
                });
                self.seal();
                if !open {
                    self.closing = true;
                }
            }
        }
        (self.out.len() - before) as u64
    }

    /// Operations the session asked for since the last call, to hand to the writer.
    pub(super) fn take_ops(&mut self) -> Vec<(u64, KafkaOp)> {
        std::mem::take(&mut self.ops)
    }

    /// What an MQTT session asked the shard for since the last call.
    pub(super) fn take_mqtt_work(&mut self) -> Vec<MqttWork> {
        std::mem::take(&mut self.mqtt_work)
    }

    /// Exchanges the MQTT work asked for with `spare` (an empty list).
    pub(super) fn swap_mqtt_work(&mut self, spare: &mut Vec<MqttWork>) {
        std::mem::swap(&mut self.mqtt_work, spare);
    }

    /// The connection is being closed: its MQTT client id, and what its session leaves to
    /// do (its will, storing the session).
    pub(super) fn finish(&mut self, now: Instant) -> (Option<String>, Vec<MqttWork>) {
        let Session::Mqtt(mqtt) = &mut self.session else {
            return (None, Vec::new());
        };
        mqtt.finish(crate::clock::session_time(now), &mut self.mqtt_work);
        let client_id = Some(mqtt.client_id().to_owned()).filter(|id| !id.is_empty());
        (client_id, self.take_mqtt_work())
    }

    /// Another connection takes this one's MQTT client id: it closes (MQTT 5: DISCONNECT
    /// 0x8E); returns what its session leaves to do, which must be submitted before the other
    /// connection is told.
    pub(super) fn take_over(&mut self, now: Instant) -> Vec<MqttWork> {
        if let Some((mqtt, out, work)) = self.mqtt_parts() {
            mqtt.taken_over(crate::clock::session_time(now), out, work);
            self.seal();
            self.closing = true;
        }
        self.take_mqtt_work()
    }

    /// The MQTT side of the connection, if it is one.
    pub(super) fn mqtt(&mut self) -> Option<&mut MqttConnection> {
        match &mut self.session {
            Session::Mqtt(mqtt) => Some(mqtt),
            Session::Kafka(_) => None,
        }
    }

    /// True while an answer waits for an operation's result: the connection must not be
    /// closed for having nothing to send.
    pub(super) fn awaiting_ops(&self) -> bool {
        match &self.session {
            Session::Kafka(session) => session.waiting(),
            Session::Mqtt(_) => false,
        }
    }

    /// True while the session has answers waiting for data or time (Kafka fetches): looked
    /// at whenever appends complete.
    pub(super) fn has_timers(&self) -> bool {
        match &self.session {
            Session::Kafka(session) => session.has_waiting_fetch(),
            Session::Mqtt(_) => false,
        }
    }

    /// True while the session has a deadline (MQTT keep alive, connect timeout, a refused
    /// authentication's delay): looked at in every timeout sweep.
    pub(super) fn has_deadline(&self) -> bool {
        match &self.session {
            Session::Kafka(session) => session.refusing(),
            Session::Mqtt(mqtt) => mqtt.has_timer(),
        }
    }

    /// Takes an operation's result; returns the bytes of answers it released.
    pub(super) fn complete(&mut self, token: u64, result: Outcome, now: Instant) -> u64 {
        let before = self.out.len();
        let result = match (&mut self.session, result) {
            (Session::Kafka(session), Outcome::Kafka(result)) => {
                session.complete(token, *result, plaintext(&mut self.tls, &mut self.out));
                self.seal();
                return (self.out.len() - before) as u64;
            }
            (_, result) => result,
        };
        let Some((mqtt, out, work)) = self.mqtt_parts() else {
            tracing::error!("an operation's result reached a connection of another protocol");
            return 0;
        };
        let now = crate::clock::session_time(now);
        let (open, accepted) = match result {
            Outcome::MqttStored(stored) => (mqtt.stored(token, &stored, now, out, work), false),
            Outcome::MqttStoredRun(run) => {
                let mut open = true;
                run.each(|token, stored| {
                    open = mqtt.stored(token, stored, now, out, work);
                    open
                });
                (open, false)
            }
            Outcome::MqttSession(loaded) => {
                let loaded = loaded.map(|r| r.map(|r| *r));
                let open = mqtt.resume(loaded, now, out, work);
                (open, open)
            }
            Outcome::MqttReleased => {
                mqtt.released(token, out);
                (true, false)
            }
            Outcome::TakenOver => {
                mqtt.taken_over_from(work);
                (true, false)
            }
            Outcome::Kafka(_) | Outcome::TakeOver(_) => {
                tracing::error!("a result reached a connection it is not for");
                (true, false)
            }
        };
        self.seal();
        self.answered_any |= accepted;
        if !open {
            self.closing = true;
        }
        (self.out.len() - before) as u64
    }

    /// Offers the message at `offset` of `partition` to an MQTT subscriber (`backlog`: read
    /// while catching up); returns what became of it and the bytes written. Over TLS (and
    /// WebSocket) the messages are sealed together once a record's worth is waiting, and the
    /// rest when the delivery pass ends ([`Conn::seal_deliveries`]): one TLS record and one
    /// WebSocket frame per 16 KiB rather than per message.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn offer_mqtt(
        &mut self,
        message: &LogMessage,
        (partition, offset): (PartitionId, i64),
        now_wall_ms: i64,
        write_max: usize,
        backlog: bool,
        shares: &Shares,
        metrics: &ShardMetrics,
    ) -> (Offer, u64) {
        if self.closing {
            return (Offer::Skipped, 0);
        }
        let room = self.pending() + self.unsealed() < write_max;
        let before = self.out.len();
        let Some((mqtt, out, _)) = self.mqtt_parts() else {
            return (Offer::Skipped, 0);
        };
        let offer = mqtt.offer(
            message,
            partition,
            offset,
            now_wall_ms,
            room,
            backlog,
            shares,
            out,
        );
        match offer {
            Offer::Taken => metrics.mqtt_delivered.fetch_add(1, Ordering::Relaxed),
            Offer::Dropped => metrics.mqtt_dropped.fetch_add(1, Ordering::Relaxed),
            Offer::Skipped | Offer::Full => 0,
        };
        if self.unsealed() >= SEAL_BYTES {
            self.seal();
        }
        (offer, (self.out.len() - before) as u64)
    }

    /// Records `n` bytes of `out` written; frees the buffer once all is sent.
    pub(super) fn sent(&mut self, n: usize) {
        self.written += n;
        if self.pending() == 0 {
            self.out.clear();
            self.written = 0;
            if self.out.capacity() > WRITE_BUFFER_KEEP {
                self.out = Vec::new();
            }
        }
    }

    /// Pauses reading once `pending` answer bytes reach `write_max` or while the session
    /// takes no more requests (its queue of answers behind pending operations is full), so
    /// requests the session holds back never pile up in the receive buffer; resumes when the
    /// session takes requests again and `pending` is at half of `write_max` or less.
    /// Returns `Some(true)` when it paused, `Some(false)` when it resumed.
    pub(super) fn update_pause(
        &mut self,
        pending: usize,
        write_max: usize,
        metrics: &ShardMetrics,
    ) -> Option<bool> {
        let saturated = match &self.session {
            Session::Kafka(session) => session.saturated(),
            Session::Mqtt(mqtt) => mqtt.saturated(),
        };
        if !self.read_paused && (pending >= write_max || saturated) {
            self.read_paused = true;
            metrics.read_paused.fetch_add(1, Ordering::Relaxed);
            Some(true)
        } else if self.read_paused && pending <= write_max / 2 && !saturated {
            self.read_paused = false;
            metrics.read_paused.fetch_sub(1, Ordering::Relaxed);
            Some(false)
        } else {
            None
        }
    }

    /// True if the connection outlived its handshake or idle timeout.
    pub(super) fn expired(&self, now: Instant, handshake: Duration, idle: Duration) -> bool {
        let silent = now.saturating_duration_since(self.last_active);
        let never_asked =
            !self.answered_any && now.saturating_duration_since(self.accepted_at) > handshake;
        never_asked || silent > idle
    }
}

/// Where a session writes: `out`, or on a TLS listener the plaintext [`Conn::seal`] encrypts
/// into `out`.
fn plaintext<'a>(tls: &'a mut Option<Box<TlsLayer>>, out: &'a mut Vec<u8>) -> &'a mut Vec<u8> {
    match tls {
        Some(tls) => &mut tls.plain_out,
        None => out,
    }
}

/// Slots (positions in `conns`) whose connection outlived its handshake or idle timeout.
pub(super) fn expired<'a>(
    conns: impl Iterator<Item = Option<&'a Conn>>,
    now: Instant,
    config: &ServerConfig,
) -> Vec<usize> {
    conns
        .enumerate()
        .filter_map(|(slot, conn)| {
            let conn = conn?;
            let idle = config.listeners[conn.listener].idle_timeout;
            conn.expired(now, config.handshake_timeout, idle)
                .then_some(slot)
        })
        .collect()
}
