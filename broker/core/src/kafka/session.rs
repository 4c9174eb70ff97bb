//! A Kafka connection's session state: its request decoder, the queue that keeps answers in
//! request order behind pending operations, and the fetches waiting for data. The requests
//! come in through `apis.rs` (the table and the dispatch), the reads through `reading.rs`.

use std::collections::VecDeque;
use std::sync::Arc;

use weir_kafka::frame::{FrameDecoder, write_frame};
use weir_kafka::{fetch, header};

use super::op::{Amend, KafkaOp, KafkaOpResult};
use super::operations::write_result;
use super::settings::{ANSWERS_QUEUED_MAX, KafkaSettings, REQUEST_BYTES_MIN};
use crate::auth::Verdict;
use crate::auth::scram::{ScramMechanism, ScramServer};

/// An answer in request order: ready bytes, or a slot waiting for an operation.
#[derive(Debug)]
pub(super) struct Queued {
    /// The operation this answer waits for, if any.
    pub(super) waiting: Option<u64>,
    pub(super) correlation_id: i32,
    pub(super) api_version: i16,
    /// The whole frame once ready.
    pub(super) frame: Vec<u8>,
    /// What the access-control list changes in the operation's result.
    pub(super) amend: Option<Amend>,
}

/// Per-connection protocol state.
#[derive(Debug)]
pub struct KafkaSession {
    pub(super) settings: Arc<KafkaSettings>,
    /// The client's address as DescribeGroups shows it (`/ip`).
    pub(super) client_host: String,
    /// Fetches waiting for data (`min_bytes`) or their deadline.
    pub(super) waiting_fetches: Vec<WaitingFetch>,
    /// Operations handed out and not completed (answered or not: acks 0 counts too).
    pub(super) ops_in_flight: usize,
    /// Bytes of ready answers queued behind a pending one.
    pub(super) queued_bytes: usize,
    pub(super) decoder: FrameDecoder,
    pub(super) requests: u64,
    pub(super) next_token: u64,
    pub(super) queued: VecDeque<Queued>,
    /// Where the connection is with SASL.
    pub(super) sasl: Sasl,
    /// A version 0 SaslHandshake was answered: the exchange's tokens come as raw frames.
    pub(super) sasl_raw: bool,
    /// Whether a client without SASL is let in (asked of the credentials once, here, not
    /// per request).
    pub(super) anonymous_allowed: bool,
    /// The client id of the latest request, kept while an access-control list is in force
    /// (what its patterns' `%c` stands for).
    pub(super) client_id: String,
    /// A failed authentication waiting out `refused_auth_delay_ms`: nothing more is read.
    pub(super) refusal: Option<Refusal>,
}

/// A failed SASL authentication's answer, held until `at_ms`; the connection closes after it.
#[derive(Debug)]
pub(super) struct Refusal {
    pub(super) at_ms: u64,
    /// The answer's body (none after a version 0 handshake: the connection just closes).
    pub(super) answer: Option<Vec<u8>>,
    /// Why, for the log.
    pub(super) why: String,
}

/// A SASL mechanism a Kafka client may choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mechanism {
    /// PLAIN: the user name and password in one token.
    Plain,
    /// SCRAM-SHA-256 or SCRAM-SHA-512.
    Scram(ScramMechanism),
}

/// Where a connection is with SASL.
#[derive(Debug, Default)]
pub(super) enum Sasl {
    /// No handshake: the client is anonymous, let in only if anonymous clients are.
    #[default]
    None,
    /// Handshake answered: the first token is due.
    Started(Mechanism),
    /// SCRAM's server-first message went out: the client's final message is due.
    Scram(Box<ScramServer>),
    /// Authenticated as this user; no second authentication on the connection.
    Done(String),
}

impl KafkaSession {
    /// A session with the broker's Kafka settings, for a client at `client_host` (shown by
    /// DescribeGroups).
    pub fn new(settings: Arc<KafkaSettings>, client_host: String) -> KafkaSession {
        let anonymous_allowed = settings.auth.authenticate(None, None) == Verdict::Anonymous;
        KafkaSession {
            client_host,
            decoder: FrameDecoder::new(REQUEST_BYTES_MIN, settings.request_bytes_max),
            settings,
            waiting_fetches: Vec::new(),
            ops_in_flight: 0,
            queued_bytes: 0,
            requests: 0,
            next_token: 0,
            queued: VecDeque::new(),
            sasl: Sasl::None,
            sasl_raw: false,
            anonymous_allowed,
            client_id: String::new(),
            refusal: None,
        }
    }

    /// Requests answered or accepted for an answer so far.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// True while the session takes no more requests until operations complete: the queue
    /// of answers behind pending operations, or the operations in flight, are at
    /// [`ANSWERS_QUEUED_MAX`]. The connection should not be read meanwhile.
    pub fn saturated(&self) -> bool {
        self.queued.len() >= ANSWERS_QUEUED_MAX
            || self.ops_in_flight >= ANSWERS_QUEUED_MAX
            || self.refusal.is_some()
    }

    /// True while an operation's result is awaited.
    pub fn waiting(&self) -> bool {
        !self.queued.is_empty()
    }

    /// Takes the result of operation `token`, and writes to `out` every answer that no
    /// longer waits.
    pub fn complete(&mut self, token: u64, mut result: KafkaOpResult, out: &mut Vec<u8>) {
        self.ops_in_flight = self.ops_in_flight.saturating_sub(1);
        let Some(slot) = self.queued.iter_mut().find(|q| q.waiting == Some(token)) else {
            return;
        };
        if let Some(amend) = slot.amend.take() {
            amend.apply(&mut result);
        }
        let (correlation_id, version) = (slot.correlation_id, slot.api_version);
        let mut frame = Vec::new();
        write_frame(&mut frame, |body| {
            write_result(body, correlation_id, version, result, &self.settings)
        });
        self.fill(token, frame, out);
    }

    /// True while a fetch waits for data or its deadline.
    pub fn has_waiting_fetch(&self) -> bool {
        !self.waiting_fetches.is_empty()
    }

    /// True while a failed authentication waits to be answered ([`KafkaSession::tick`]).
    pub fn refusing(&self) -> bool {
        self.refusal.is_some()
    }

    /// Puts `frame` in the slot waiting for `token` and writes out every answer no longer
    /// waiting, in order.
    pub(super) fn fill(&mut self, token: u64, frame: Vec<u8>, out: &mut Vec<u8>) {
        if let Some(slot) = self.queued.iter_mut().find(|q| q.waiting == Some(token)) {
            self.queued_bytes += frame.len();
            slot.frame = frame;
            slot.waiting = None;
        }
        while self.queued.front().is_some_and(|q| q.waiting.is_none()) {
            if let Some(ready) = self.queued.pop_front() {
                self.queued_bytes = self.queued_bytes.saturating_sub(ready.frame.len());
                out.extend_from_slice(&ready.frame);
            }
        }
    }

    /// Queues an answer slot that waits for `op`; `amend` changes its result first.
    pub(super) fn defer(
        &mut self,
        start: header::HeaderStart,
        (op, amend): (KafkaOp, Option<Amend>),
        ops: &mut Vec<(u64, KafkaOp)>,
    ) {
        let token = self.hand_on(op, ops);
        self.queued.push_back(Queued {
            waiting: Some(token),
            correlation_id: start.correlation_id,
            api_version: start.api_version,
            frame: Vec::new(),
            amend,
        });
    }

    /// Hands `op` on with no answer waiting for it (a Produce with acks 0); returns its token.
    pub(super) fn hand_on(&mut self, op: KafkaOp, ops: &mut Vec<(u64, KafkaOp)>) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        ops.push((token, op));
        self.ops_in_flight += 1;
        token
    }

    /// Answers the request `start` with `result` (of no operation), in order.
    pub(super) fn answer_result(
        &mut self,
        start: header::HeaderStart,
        result: KafkaOpResult,
        out: &mut Vec<u8>,
    ) {
        let settings = self.settings.clone();
        self.answer_now(out, |body| {
            let (correlation_id, version) = (start.correlation_id, start.api_version);
            write_result(body, correlation_id, version, result, &settings)
        });
    }

    /// Writes an answer to `out`, or queues it behind an answer that waits.
    pub(super) fn answer_now(&mut self, out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
        if self.queued.is_empty() {
            write_frame(out, body);
        } else {
            let mut frame = Vec::new();
            write_frame(&mut frame, body);
            self.queued_bytes += frame.len();
            self.queued.push_back(Queued {
                waiting: None,
                correlation_id: 0,
                api_version: 0,
                frame,
                amend: None,
            });
        }
    }
}

/// A Fetch answer waiting for data or its deadline.
#[derive(Debug)]
pub(super) struct WaitingFetch {
    pub(super) token: u64,
    pub(super) correlation_id: i32,
    pub(super) version: i16,
    pub(super) deadline_ms: u64,
    pub(super) request: fetch::FetchRequest,
}
