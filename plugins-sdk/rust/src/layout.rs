//! The batch layout of the `bytes-plugin` world (plugins-sdk/LAYOUT.md): the messages the
//! host sends and the verdicts a plugin answers, each batch as one byte list.
//!
//! Both sides use this module: the host encodes batches with [`BatchWriter`] and decodes
//! answers with [`read_answer`]; a plugin (through the SDK's runtime) reads batches with
//! [`BatchReader`] and writes answers with [`AnswerWriter`]. Decoding checks every length
//! against the bytes that remain before using it, so a hostile length never allocates what
//! it claims.

use std::fmt;

/// A record header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The header's name.
    pub name: String,
    /// Its value.
    pub value: Vec<u8>,
}

/// Where a message published over MQTT came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttOrigin {
    /// The MQTT topic it was published on.
    pub topic: String,
    /// Its QoS (0, 1 or 2).
    pub qos: u8,
}

/// One message on its way into the log (owned).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    /// The Kafka topic it is (to be) stored in.
    pub topic: String,
    /// The record key (for MQTT publishes: the MQTT topic).
    pub key: Option<Vec<u8>>,
    /// The record value (for MQTT publishes: the payload).
    pub value: Option<Vec<u8>>,
    /// The record headers, in order.
    pub headers: Vec<Header>,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// Set for MQTT publishes; ignored in messages a plugin returns.
    pub mqtt: Option<MqttOrigin>,
}

impl Message {
    /// A message for Kafka topic `topic` with this value and nothing else.
    pub fn new(topic: impl Into<String>, value: impl Into<Vec<u8>>) -> Message {
        Message {
            topic: topic.into(),
            value: Some(value.into()),
            ..Message::default()
        }
    }

    /// As an MQTT publish on `mqtt_topic` arrives: stored in `kafka_topic`, keyed by the MQTT
    /// topic, with its QoS.
    pub fn from_mqtt(
        kafka_topic: impl Into<String>,
        mqtt_topic: impl Into<String>,
        qos: u8,
        payload: impl Into<Vec<u8>>,
    ) -> Message {
        let mqtt_topic = mqtt_topic.into();
        Message {
            topic: kafka_topic.into(),
            key: Some(mqtt_topic.clone().into_bytes()),
            value: Some(payload.into()),
            headers: Vec::new(),
            timestamp_ms: 0,
            mqtt: Some(MqttOrigin {
                topic: mqtt_topic,
                qos,
            }),
        }
    }

    /// This message stored in another topic.
    pub fn with_topic(mut self, topic: impl Into<String>) -> Message {
        self.topic = topic.into();
        self
    }

    /// This message with another value.
    pub fn with_value(mut self, value: impl Into<Vec<u8>>) -> Message {
        self.value = Some(value.into());
        self
    }

    /// The first header named `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.name == name)
            .map(|h| &*h.value)
    }
}

/// Why a message is refused; it chooses the client's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectKind {
    /// The content is not acceptable (MQTT 0x99, Kafka INVALID_RECORD).
    Invalid,
    /// The sender may not publish this (MQTT 0x87, Kafka INVALID_RECORD).
    NotAuthorized,
    /// Any other refusal (MQTT 0x83, Kafka INVALID_RECORD).
    Refused,
}

/// A refusal and the reason the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Its kind.
    pub kind: RejectKind,
    /// The reason (MQTT 5 reason string, Kafka error message).
    pub reason: String,
}

/// What becomes of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Store it unchanged.
    Keep,
    /// Store this message instead (its topic may be another).
    Change(Message),
    /// Store nothing; the client is told it succeeded.
    Drop,
    /// Store nothing; the client gets an error.
    Reject(Rejection),
    /// Store these messages instead, each in its own topic (an empty list is a drop).
    Route(Vec<Message>),
}

impl Verdict {
    /// A rejection of kind [`RejectKind::Invalid`].
    pub fn invalid(reason: impl Into<String>) -> Verdict {
        Verdict::Reject(Rejection {
            kind: RejectKind::Invalid,
            reason: reason.into(),
        })
    }
}

/// An input that does not follow the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutError(pub &'static str);

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed batch layout: {}", self.0)
    }
}

impl std::error::Error for LayoutError {}

/// The length marking an absent optional byte string.
const ABSENT: u32 = u32::MAX;
/// The fewest bytes one encoded message takes (empty topic, absent key and value, no
/// headers, a timestamp, no MQTT origin).
const MESSAGE_BYTES_MIN: usize = 4 + 4 + 4 + 4 + 8 + 1;
/// The fewest bytes one encoded header takes.
const HEADER_BYTES_MIN: usize = 8;

// ---------------------------------------------------------------------------------------
// Writing

fn put_len(out: &mut Vec<u8>, len: usize) {
    // Lengths above u32::MAX - 1 cannot be represented; nothing the host or a plugin handles
    // comes near (a record is bounded far below by the request size limits).
    let len = u32::try_from(len).unwrap_or(ABSENT - 1).min(ABSENT - 1);
    out.extend_from_slice(&len.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

fn put_opt(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(bytes) => put_bytes(out, bytes),
        None => out.extend_from_slice(&ABSENT.to_le_bytes()),
    }
}

/// Appends one message to `out`, its parts given one by one (the host encodes straight from
/// stored records without building a [`Message`]).
pub fn put_message<'h>(
    out: &mut Vec<u8>,
    topic: &str,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: impl ExactSizeIterator<Item = (&'h [u8], &'h [u8])>,
    timestamp_ms: i64,
    mqtt: Option<(&str, u8)>,
) {
    put_bytes(out, topic.as_bytes());
    put_opt(out, key);
    put_opt(out, value);
    put_len(out, headers.len());
    for (name, value) in headers {
        put_bytes(out, name);
        put_bytes(out, value);
    }
    out.extend_from_slice(&timestamp_ms.to_le_bytes());
    match mqtt {
        Some((topic, qos)) => {
            out.push(1);
            put_bytes(out, topic.as_bytes());
            out.push(qos);
        }
        None => out.push(0),
    }
}

fn put_owned(out: &mut Vec<u8>, m: &Message) {
    put_message(
        out,
        &m.topic,
        m.key.as_deref(),
        m.value.as_deref(),
        m.headers.iter().map(|h| (h.name.as_bytes(), &*h.value)),
        m.timestamp_ms,
        m.mqtt.as_ref().map(|o| (&*o.topic, o.qos)),
    );
}

/// Encodes a batch: the count first, then each message with [`put_message`] (or
/// [`BatchWriter::message`]).
#[derive(Debug)]
pub struct BatchWriter {
    buf: Vec<u8>,
}

impl BatchWriter {
    /// A batch of `count` messages, `capacity` bytes reserved.
    pub fn new(count: usize, capacity: usize) -> BatchWriter {
        let mut buf = Vec::with_capacity(capacity.max(4));
        put_len(&mut buf, count);
        BatchWriter { buf }
    }

    /// Appends an owned message.
    pub fn message(&mut self, message: &Message) {
        put_owned(&mut self.buf, message);
    }

    /// The buffer, to append messages with [`put_message`].
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// The encoded batch.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// The bytes `m` takes encoded.
fn encoded_len(m: &Message) -> usize {
    let opt = |b: &Option<Vec<u8>>| 4 + b.as_ref().map_or(0, Vec::len);
    let headers: usize = m
        .headers
        .iter()
        .map(|h| 8 + h.name.len() + h.value.len())
        .sum();
    let mqtt = m.mqtt.as_ref().map_or(0, |o| 5 + o.topic.len());
    4 + m.topic.len() + opt(&m.key) + opt(&m.value) + 4 + headers + 8 + 1 + mqtt
}

/// Encodes a whole batch of owned messages.
pub fn write_batch(messages: &[Message]) -> Vec<u8> {
    let size: usize = messages.iter().map(encoded_len).sum();
    let mut writer = BatchWriter::new(messages.len(), 4 + size);
    for m in messages {
        writer.message(m);
    }
    writer.finish()
}

/// Encodes an answer: the count, then one verdict per message.
#[derive(Debug)]
pub struct AnswerWriter {
    buf: Vec<u8>,
}

impl AnswerWriter {
    /// An answer of `count` verdicts.
    pub fn new(count: usize) -> AnswerWriter {
        let mut buf = Vec::with_capacity(4 + count);
        put_len(&mut buf, count);
        AnswerWriter { buf }
    }

    /// Appends one verdict.
    pub fn verdict(&mut self, verdict: &Verdict) {
        let out = &mut self.buf;
        match verdict {
            Verdict::Keep => out.push(0),
            Verdict::Change(m) => {
                out.push(1);
                put_owned(out, m);
            }
            Verdict::Drop => out.push(2),
            Verdict::Reject(r) => {
                out.push(3);
                out.push(match r.kind {
                    RejectKind::Invalid => 0,
                    RejectKind::NotAuthorized => 1,
                    RejectKind::Refused => 2,
                });
                put_bytes(out, r.reason.as_bytes());
            }
            Verdict::Route(messages) => {
                out.push(4);
                put_len(out, messages.len());
                for m in messages {
                    put_owned(out, m);
                }
            }
        }
    }

    /// The encoded answer.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

// ---------------------------------------------------------------------------------------
// Reading

struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], LayoutError> {
        if self.rest.len() < n {
            return Err(LayoutError(what));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, LayoutError> {
        Ok(self.take(1, what)?[0])
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, LayoutError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i64(&mut self, what: &'static str) -> Result<i64, LayoutError> {
        let b = self.take(8, what)?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Ok(i64::from_le_bytes(a))
    }

    fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], LayoutError> {
        let len = self.u32(what)?;
        self.take(len as usize, what)
    }

    fn str(&mut self, what: &'static str) -> Result<&'a str, LayoutError> {
        std::str::from_utf8(self.bytes(what)?).map_err(|_| LayoutError("a string is not UTF-8"))
    }

    fn opt(&mut self, what: &'static str) -> Result<Option<&'a [u8]>, LayoutError> {
        let len = self.u32(what)?;
        if len == ABSENT {
            return Ok(None);
        }
        self.take(len as usize, what).map(Some)
    }

    /// A count of items of at least `each` bytes: refused if the rest cannot hold them.
    fn count(&mut self, each: usize, what: &'static str) -> Result<usize, LayoutError> {
        let n = self.u32(what)? as usize;
        if n.saturating_mul(each) > self.rest.len() {
            return Err(LayoutError(what));
        }
        Ok(n)
    }

    fn message(&mut self) -> Result<MessageRef<'a>, LayoutError> {
        let topic = self.str("message topic")?;
        let key = self.opt("message key")?;
        let value = self.opt("message value")?;
        let count = self.count(HEADER_BYTES_MIN, "header count")?;
        let start = self.rest;
        for _ in 0..count {
            self.str("header name")?;
            self.bytes("header value")?;
        }
        let used = start.len() - self.rest.len();
        let headers = HeadersRef {
            raw: &start[..used],
            count,
        };
        let timestamp_ms = self.i64("timestamp")?;
        let mqtt = match self.u8("mqtt flag")? {
            0 => None,
            1 => {
                let topic = self.str("mqtt topic")?;
                let qos = self.u8("mqtt qos")?;
                Some(MqttOriginRef { topic, qos })
            }
            _ => return Err(LayoutError("mqtt flag is neither 0 nor 1")),
        };
        Ok(MessageRef {
            topic,
            key,
            value,
            headers,
            timestamp_ms,
            mqtt,
        })
    }
}

/// An MQTT origin, borrowed from a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MqttOriginRef<'a> {
    /// The MQTT topic.
    pub topic: &'a str,
    /// The QoS.
    pub qos: u8,
}

/// A message's headers, borrowed from a batch (checked when the message was read).
#[derive(Debug, Clone, Copy)]
pub struct HeadersRef<'a> {
    raw: &'a [u8],
    count: usize,
}

impl<'a> HeadersRef<'a> {
    /// How many there are.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The headers in order, as (name, value).
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + use<'a> {
        let mut cursor = Cursor { rest: self.raw };
        (0..self.count).filter_map(move |_| {
            let name = cursor.str("header name").ok()?;
            let value = cursor.bytes("header value").ok()?;
            Some((name, value))
        })
    }

    /// The first header named `name`.
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

/// One message, borrowed from a batch: what a plugin looks at.
#[derive(Debug, Clone, Copy)]
pub struct MessageRef<'a> {
    /// The Kafka topic it is about to be stored in.
    pub topic: &'a str,
    /// The record key.
    pub key: Option<&'a [u8]>,
    /// The record value.
    pub value: Option<&'a [u8]>,
    /// The record headers.
    pub headers: HeadersRef<'a>,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// Set for MQTT publishes.
    pub mqtt: Option<MqttOriginRef<'a>>,
}

impl MessageRef<'_> {
    /// An owned copy, to change and return in a [`Verdict`].
    pub fn to_owned(&self) -> Message {
        Message {
            topic: self.topic.to_owned(),
            key: self.key.map(<[u8]>::to_vec),
            value: self.value.map(<[u8]>::to_vec),
            headers: self
                .headers
                .iter()
                .map(|(name, value)| Header {
                    name: name.to_owned(),
                    value: value.to_vec(),
                })
                .collect(),
            timestamp_ms: self.timestamp_ms,
            mqtt: self.mqtt.map(|o| MqttOrigin {
                topic: o.topic.to_owned(),
                qos: o.qos,
            }),
        }
    }
}

/// Reads a batch's messages one at a time, borrowing from the bytes.
#[derive(Debug)]
pub struct BatchReader<'a> {
    rest: &'a [u8],
    remaining: usize,
    count: usize,
}

impl fmt::Debug for Cursor<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cursor({} bytes)", self.rest.len())
    }
}

impl<'a> BatchReader<'a> {
    /// Reads the count; each message is checked as it is read.
    pub fn new(bytes: &'a [u8]) -> Result<BatchReader<'a>, LayoutError> {
        let mut cursor = Cursor { rest: bytes };
        let count = cursor.count(MESSAGE_BYTES_MIN, "batch count")?;
        Ok(BatchReader {
            rest: cursor.rest,
            remaining: count,
            count,
        })
    }

    /// How many messages the batch holds.
    pub fn message_count(&self) -> usize {
        self.count
    }
}

impl<'a> Iterator for BatchReader<'a> {
    type Item = Result<MessageRef<'a>, LayoutError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return (!self.rest.is_empty()).then(|| {
                self.rest = &[];
                Err(LayoutError("bytes left after the last message"))
            });
        }
        self.remaining -= 1;
        let mut cursor = Cursor { rest: self.rest };
        let read = cursor.message();
        self.rest = cursor.rest;
        if read.is_err() {
            self.remaining = 0;
            self.rest = &[];
        }
        Some(read)
    }
}

/// Decodes a whole batch into owned messages.
pub fn read_batch(bytes: &[u8]) -> Result<Vec<Message>, LayoutError> {
    BatchReader::new(bytes)?
        .map(|m| m.map(|m| m.to_owned()))
        .collect()
}

/// Decodes an answer, which must hold exactly `expected` verdicts and nothing after them.
pub fn read_answer(bytes: &[u8], expected: usize) -> Result<Vec<Verdict>, LayoutError> {
    let mut cursor = Cursor { rest: bytes };
    let count = cursor.count(1, "answer count")?;
    if count != expected {
        return Err(LayoutError("the answer holds another number of verdicts"));
    }
    let mut verdicts = Vec::with_capacity(count);
    for _ in 0..count {
        let verdict = match cursor.u8("verdict tag")? {
            0 => Verdict::Keep,
            1 => Verdict::Change(cursor.message()?.to_owned()),
            2 => Verdict::Drop,
            3 => {
                let kind = match cursor.u8("reject kind")? {
                    0 => RejectKind::Invalid,
                    1 => RejectKind::NotAuthorized,
                    2 => RejectKind::Refused,
                    _ => return Err(LayoutError("unknown reject kind")),
                };
                let reason = cursor.str("reject reason")?.to_owned();
                Verdict::Reject(Rejection { kind, reason })
            }
            4 => {
                let n = cursor.count(MESSAGE_BYTES_MIN, "route count")?;
                let mut messages = Vec::with_capacity(n);
                for _ in 0..n {
                    messages.push(cursor.message()?.to_owned());
                }
                Verdict::Route(messages)
            }
            _ => return Err(LayoutError("unknown verdict tag")),
        };
        verdicts.push(verdict);
    }
    if !cursor.rest.is_empty() {
        return Err(LayoutError("bytes left after the last verdict"));
    }
    Ok(verdicts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Message {
        Message {
            topic: "sensors".into(),
            key: Some(b"site/a/temp".to_vec()),
            value: None,
            headers: vec![
                Header {
                    name: "mqtt.qos".into(),
                    value: b"1".to_vec(),
                },
                Header {
                    name: "empty".into(),
                    value: Vec::new(),
                },
            ],
            timestamp_ms: -5,
            mqtt: Some(MqttOrigin {
                topic: "site/a/temp".into(),
                qos: 1,
            }),
        }
    }

    #[test]
    fn a_batch_reads_back_as_written_with_absent_and_empty_parts_kept_apart() {
        let mut empty_value = sample();
        empty_value.value = Some(Vec::new());
        empty_value.mqtt = None;
        let batch = vec![sample(), empty_value, Message::default()];
        assert_eq!(read_batch(&write_batch(&batch)).unwrap(), batch);
        let first = BatchReader::new(&write_batch(&batch))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .headers
            .get("mqtt.qos")
            .map(<[u8]>::to_vec);
        assert_eq!(first, Some(b"1".to_vec()));
    }

    #[test]
    fn answers_read_back_and_must_hold_the_batch_count() {
        let verdicts = vec![
            Verdict::Keep,
            Verdict::Change(sample()),
            Verdict::Drop,
            Verdict::Reject(Rejection {
                kind: RejectKind::NotAuthorized,
                reason: "no".into(),
            }),
            Verdict::Route(vec![sample(), Message::new("other", "v")]),
            Verdict::Route(Vec::new()),
        ];
        let mut writer = AnswerWriter::new(verdicts.len());
        for v in &verdicts {
            writer.verdict(v);
        }
        let bytes = writer.finish();
        assert_eq!(read_answer(&bytes, verdicts.len()).unwrap(), verdicts);
        assert!(read_answer(&bytes, verdicts.len() + 1).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(read_answer(&longer, verdicts.len()).is_err());
        assert!(read_answer(&bytes[..bytes.len() - 1], verdicts.len()).is_err());
    }

    #[test]
    fn hostile_counts_and_lengths_are_refused_before_allocating() {
        // A count of 4 billion messages in 4 bytes.
        assert!(BatchReader::new(&u32::MAX.to_le_bytes()).is_err());
        // A route of 4 billion messages.
        let mut answer = 1u32.to_le_bytes().to_vec();
        answer.push(4);
        answer.extend_from_slice(&(u32::MAX - 1).to_le_bytes());
        assert!(read_answer(&answer, 1).is_err());
        // A topic length past the end.
        let mut batch = 1u32.to_le_bytes().to_vec();
        batch.extend_from_slice(&1000u32.to_le_bytes());
        batch.extend_from_slice(&[0; 30]);
        let mut reader = BatchReader::new(&batch).unwrap();
        assert!(reader.next().unwrap().is_err());
        assert!(reader.next().is_none());
    }

    #[test]
    fn bytes_after_the_last_message_are_an_error() {
        let mut bytes = write_batch(&[sample()]);
        bytes.push(7);
        assert!(read_batch(&bytes).is_err());
    }

    fn message_strategy() -> impl Strategy<Value = Message> {
        (
            ".{0,8}",
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
            proptest::collection::vec(
                (".{0,4}", proptest::collection::vec(any::<u8>(), 0..4)),
                0..3,
            ),
            any::<i64>(),
            proptest::option::of((".{0,6}", 0u8..3)),
        )
            .prop_map(|(topic, key, value, headers, timestamp_ms, mqtt)| Message {
                topic,
                key,
                value,
                headers: headers
                    .into_iter()
                    .map(|(name, value)| Header { name, value })
                    .collect(),
                timestamp_ms,
                mqtt: mqtt.map(|(topic, qos)| MqttOrigin { topic, qos }),
            })
    }

    proptest! {
        #[test]
        fn any_batch_round_trips(batch in proptest::collection::vec(message_strategy(), 0..6)) {
            prop_assert_eq!(read_batch(&write_batch(&batch)).unwrap(), batch);
        }

        #[test]
        fn any_bytes_decode_to_a_value_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..200), n in 0usize..4) {
            let _ = read_batch(&bytes);
            let _ = read_answer(&bytes, n);
        }
    }
}
