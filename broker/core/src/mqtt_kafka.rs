//! MQTT on the shared log: how an MQTT message becomes a Kafka record and a record becomes an
//! MQTT message again (the contract in `docs/mqtt-kafka.md`), without I/O or a clock.
//!
//! - A PUBLISH to `a/b/c` is stored in the Kafka topic named by its first level, `a`
//!   ([`kafka_topic`]), as one record: key = the whole MQTT topic, value = the payload,
//!   timestamp = when the broker received it, headers = the QoS, the retain flag and every
//!   MQTT 5 property ([`header`]). The partition is chosen from the key as Kafka's default
//!   partitioner does ([`partition_for_key`]), so one MQTT topic stays ordered in one
//!   partition and a Kafka producer keying by MQTT topic lands in the same one.
//! - A record becomes an MQTT message ([`message_from_record`]) under the topic in its
//!   `mqtt.topic` header if it has one; else, if it came from MQTT (it has `mqtt.qos`), its
//!   key; else `<kafka topic>/<key>` when the key is UTF-8 and makes a valid topic name, and
//!   `<kafka topic>` otherwise. Its QoS is its `mqtt.qos` header, or 1 for records Kafka
//!   clients produced; other headers become MQTT 5 user properties.

use std::borrow::Cow;

use weir_kafka::record_batch::{self, BatchBuilder, BatchHeader, Record, RecordRef};
use weir_mqtt::{Properties, QoS, RetainHandling, SubscriptionOptions, topic};

use crate::log_store::PartitionId;

/// Record header names of the mapping. Every name starting with `mqtt.` is reserved for it.
pub mod header {
    /// The QoS the message was published with: `0`, `1` or `2`. Marks a record as coming
    /// from MQTT.
    pub const QOS: &str = "mqtt.qos";
    /// `1` when the message was published with the retain flag.
    pub const RETAIN: &str = "mqtt.retain";
    /// The MQTT topic to deliver a record under (for Kafka producers; MQTT's own records
    /// carry their topic in the key).
    pub const TOPIC: &str = "mqtt.topic";
    /// MQTT 5 Payload Format Indicator: `0` or `1`.
    pub const PAYLOAD_FORMAT: &str = "mqtt.payload_format";
    /// MQTT 5 Message Expiry Interval, seconds, as decimal text.
    pub const MESSAGE_EXPIRY_S: &str = "mqtt.message_expiry_interval_s";
    /// MQTT 5 Content Type.
    pub const CONTENT_TYPE: &str = "mqtt.content_type";
    /// MQTT 5 Response Topic.
    pub const RESPONSE_TOPIC: &str = "mqtt.response_topic";
    /// MQTT 5 Correlation Data, raw bytes.
    pub const CORRELATION_DATA: &str = "mqtt.correlation_data";
    /// Prefix of a user property whose own name starts with `mqtt.`; other user properties
    /// are headers under their own names.
    pub const USER_PREFIX: &str = "mqtt.user.";
    /// Prefix every mapping header shares.
    pub const RESERVED_PREFIX: &str = "mqtt.";
}

/// Longest Kafka topic name.
pub const KAFKA_TOPIC_BYTES_MAX: usize = 249;

/// The Kafka topic an MQTT topic's messages are stored in: its first level, every character
/// Kafka does not allow in a topic name (anything but ASCII letters, digits, `.`, `_`, `-`)
/// replaced by `_`, cut at 249 bytes. An empty first level (a topic starting with `/`), `.`
/// and `..` become `_`, `_.` and `_..`.
pub fn kafka_topic(mqtt_topic: &str) -> String {
    kafka_topic_of(mqtt_topic).into_owned()
}

/// [`kafka_topic`], borrowed from `mqtt_topic` when its first level is a Kafka topic name
/// as it is (no copy for the common topic).
pub fn kafka_topic_of(mqtt_topic: &str) -> Cow<'_, str> {
    let first = mqtt_topic.split('/').next().unwrap_or("");
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if first.len() <= KAFKA_TOPIC_BYTES_MAX
        && first.chars().all(allowed)
        && !matches!(first, "" | "." | "..")
    {
        return Cow::Borrowed(first);
    }
    let mut name: String = first
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(KAFKA_TOPIC_BYTES_MAX)
        .collect();
    if name.is_empty() || name == "." || name == ".." {
        name.insert(0, '_');
    }
    Cow::Owned(name)
}

/// Kafka's murmur2 hash (the Java client's `Utils.murmur2`), which its default partitioner
/// applies to record keys.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition (index among `partitions`, at least 1) Kafka's default partitioner gives a
/// record with `key`.
pub fn partition_for_key(key: &[u8], partitions: usize) -> usize {
    ((murmur2(key) & 0x7fff_ffff) as usize) % partitions.max(1)
}

/// An application message as the broker handles it, on its way into or out of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogMessage {
    /// The MQTT topic.
    pub topic: String,
    /// The payload.
    pub payload: Vec<u8>,
    /// The QoS it was published with (records from Kafka clients: 1).
    pub qos: QoS,
    /// Whether it was published with the retain flag.
    pub retain: bool,
    /// Its MQTT 5 properties: payload format, message expiry (as published), content type,
    /// response topic, correlation data, user properties. No topic alias or subscription
    /// identifiers.
    pub properties: Properties,
    /// When the broker received it, milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

impl LogMessage {
    /// A message with no topic, payload or properties (QoS 0), to fill.
    pub fn empty() -> LogMessage {
        LogMessage {
            topic: String::new(),
            payload: Vec::new(),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Properties::default(),
            timestamp_ms: 0,
        }
    }

    /// The message expiry left at `now_ms` (wall clock): `None` if it has none, `Some(0)` if
    /// it has expired.
    pub fn expiry_left_s(&self, now_ms: i64) -> Option<u32> {
        let interval = self.properties.message_expiry_interval?;
        let elapsed_s = (now_ms.saturating_sub(self.timestamp_ms) / 1000).max(0);
        Some(u32::try_from(i64::from(interval).saturating_sub(elapsed_s).max(0)).unwrap_or(0))
    }
}

/// The record headers `message` is stored with (docs/mqtt-kafka.md), in order.
pub fn message_headers(message: &LogMessage) -> Vec<(Cow<'_, str>, Cow<'_, [u8]>)> {
    let p = &message.properties;
    let mut headers: Vec<(Cow<'_, str>, Cow<'_, [u8]>)> =
        vec![(header::QOS.into(), qos_value(message.qos).into())];
    if message.retain {
        headers.push((header::RETAIN.into(), (&b"1"[..]).into()));
    }
    if let Some(utf8) = p.payload_format_indicator {
        let flag: &[u8] = if utf8 { b"1" } else { b"0" };
        headers.push((header::PAYLOAD_FORMAT.into(), flag.into()));
    }
    if let Some(expiry) = p.message_expiry_interval {
        headers.push((
            header::MESSAGE_EXPIRY_S.into(),
            expiry.to_string().into_bytes().into(),
        ));
    }
    if let Some(v) = &p.content_type {
        headers.push((header::CONTENT_TYPE.into(), v.as_bytes().into()));
    }
    if let Some(v) = &p.response_topic {
        headers.push((header::RESPONSE_TOPIC.into(), v.as_bytes().into()));
    }
    if let Some(v) = &p.correlation_data {
        headers.push((header::CORRELATION_DATA.into(), v.as_slice().into()));
    }
    for (name, value) in &p.user_properties {
        let name: Cow<'_, str> = if name.starts_with(header::RESERVED_PREFIX) {
            format!("{}{name}", header::USER_PREFIX).into()
        } else {
            name.as_str().into()
        };
        headers.push((name, value.as_bytes().into()));
    }
    headers
}

/// The `mqtt.qos` header's value.
fn qos_value(qos: QoS) -> &'static [u8] {
    match qos {
        QoS::AtMostOnce => b"0",
        QoS::AtLeastOnce => b"1",
        QoS::ExactlyOnce => b"2",
    }
}

/// One record batch holding `message` as a single record (base offset 0; the log assigns it).
pub fn message_batch(message: &LogMessage) -> Vec<u8> {
    // Room for the record's lengths, offsets and the QoS header besides topic and payload.
    let bytes = message.topic.len() + message.payload.len() + 64;
    let mut builder = BatchBuilder::with_capacity(bytes);
    push_message(&mut builder, message);
    builder.finish()
}

/// Appends `message` to `builder` as one record, without allocating when the message has no
/// retain flag and no properties (its one header, the QoS, then needs no list).
pub fn push_message(builder: &mut BatchBuilder, message: &LogMessage) {
    let record = |headers| Record {
        timestamp_ms: message.timestamp_ms,
        key: Some(message.topic.as_bytes()),
        value: Some(&message.payload),
        headers,
    };
    if !message.retain && message.properties == Properties::default() {
        builder.push(record(&[(header::QOS, Some(qos_value(message.qos)))]));
        return;
    }
    let headers = message_headers(message);
    let headers: Vec<(&str, Option<&[u8]>)> =
        headers.iter().map(|(k, v)| (&**k, Some(&**v))).collect();
    builder.push(record(&headers));
}

/// Appends `message`, on its way to Kafka topic `kafka_topic`, to a plugin batch (the
/// record it would be stored as, and its MQTT origin).
pub fn put_plugin_message(out: &mut Vec<u8>, kafka_topic: &str, message: &LogMessage) {
    let headers = message_headers(message);
    crate::plugin::put_message(
        out,
        kafka_topic,
        Some(message.topic.as_bytes()),
        Some(&message.payload),
        headers.iter().map(|(k, v)| (k.as_bytes(), &**v)),
        message.timestamp_ms,
        Some((&message.topic, message.qos as u8)),
    );
}

/// The MQTT message a record of Kafka topic `kafka_topic` is delivered as, or `None` if it
/// cannot be one (a `mqtt.topic` header that is no valid topic name).
pub fn message_from_record(
    kafka_topic: &str,
    batch: &BatchHeader,
    record: &RecordRef<'_>,
) -> Option<LogMessage> {
    let mut message = LogMessage::empty();
    fill_message(kafka_topic, batch, record, &mut message).then_some(message)
}

/// [`message_from_record`] into `message`, whose buffers are reused: false if the record
/// cannot be an MQTT message (`message` then holds nothing meaningful).
pub fn fill_message(
    kafka_topic: &str,
    batch: &BatchHeader,
    record: &RecordRef<'_>,
    message: &mut LogMessage,
) -> bool {
    let Some(Headers { qos, retain, named }) = read_headers(record, message) else {
        return false;
    };
    let topic = &mut message.topic;
    if !named {
        let key = record.key.and_then(|k| std::str::from_utf8(k).ok());
        match (qos, key) {
            (Some(_), Some(key)) => topic.push_str(key),
            (None, Some(key)) if !key.is_empty() => {
                topic.push_str(kafka_topic);
                topic.push('/');
                topic.push_str(key);
            }
            _ => topic.push_str(kafka_topic),
        }
    }
    if !valid_name(topic) {
        if named || qos.is_some() || !valid_name(kafka_topic) {
            return false;
        }
        topic.clear();
        topic.push_str(kafka_topic);
    }
    let log_append_time = batch.attributes & 0x8 != 0;
    message.timestamp_ms = if log_append_time {
        batch.max_timestamp
    } else {
        batch.base_timestamp.saturating_add(record.timestamp_delta)
    };
    message.payload.clear();
    message
        .payload
        .extend_from_slice(record.value.unwrap_or(&[]));
    message.qos = qos.unwrap_or(QoS::AtLeastOnce);
    message.retain = retain;
    true
}

/// What a record's headers say besides the properties.
struct Headers {
    qos: Option<QoS>,
    retain: bool,
    /// A `mqtt.topic` header named the topic (it is in the message's topic).
    named: bool,
}

/// Reads `record`'s headers into `message`'s properties (and its topic, when a header names
/// it), both emptied first; `None` if a `mqtt.topic` header is not UTF-8.
fn read_headers(record: &RecordRef<'_>, message: &mut LogMessage) -> Option<Headers> {
    let (mut qos, mut retain, mut named) = (None, false, false);
    let topic = &mut message.topic;
    topic.clear();
    let properties = &mut message.properties;
    if *properties != Properties::default() {
        *properties = Properties::default();
    }
    for (name, value) in record.headers() {
        let value = value.unwrap_or(&[]);
        let text = || std::str::from_utf8(value).ok().map(str::to_owned);
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        match name {
            header::QOS => {
                qos = match value {
                    b"0" => Some(QoS::AtMostOnce),
                    b"2" => Some(QoS::ExactlyOnce),
                    _ => Some(QoS::AtLeastOnce),
                }
            }
            header::RETAIN => retain = value == b"1",
            header::TOPIC => {
                let name = std::str::from_utf8(value).ok()?;
                topic.clear();
                topic.push_str(name);
                named = true;
            }
            header::PAYLOAD_FORMAT => properties.payload_format_indicator = Some(value == b"1"),
            header::MESSAGE_EXPIRY_S => {
                properties.message_expiry_interval = text().and_then(|t| t.parse().ok());
            }
            header::CONTENT_TYPE => properties.content_type = text(),
            header::RESPONSE_TOPIC => {
                properties.response_topic = text().filter(|t| valid_name(t));
            }
            header::CORRELATION_DATA => properties.correlation_data = Some(value.to_vec()),
            name => {
                let user = match name.strip_prefix(header::USER_PREFIX) {
                    Some(own) => own,
                    None if name.starts_with(header::RESERVED_PREFIX) => continue,
                    None => name,
                };
                // MQTT strings are UTF-8 without U+0000; other header values are not
                // forwarded.
                if let Some(value) = text().filter(|v| !v.contains('\0'))
                    && !user.contains('\0')
                {
                    properties.user_properties.push((user.to_owned(), value));
                }
            }
        }
    }
    Some(Headers { qos, retain, named })
}

/// Whether `topic` can be an MQTT topic name a message is delivered under.
fn valid_name(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= usize::from(u16::MAX)
        && !topic.contains('\0')
        && topic::is_valid_topic_name(topic)
}

/// Every message in a stored batch of `kafka_topic`, with its offset; a compressed batch is
/// decompressed within `decompressed_bytes_max` (a batch that does not decompress yields
/// nothing).
pub fn batch_messages(
    kafka_topic: &str,
    batch: &[u8],
    decompressed_bytes_max: usize,
) -> Vec<(i64, LogMessage)> {
    let mut messages = MessageBuffer::default();
    messages.read_batch(kafka_topic, batch, decompressed_bytes_max);
    messages.entries.truncate(messages.len);
    messages.entries
}

/// The messages of the batches a delivery step read, with their offsets, in buffers kept
/// from step to step: once their capacity has grown to the messages' sizes, reading a batch
/// allocates nothing per message.
#[derive(Debug, Default)]
pub struct MessageBuffer {
    entries: Vec<(i64, LogMessage)>,
    len: usize,
}

impl MessageBuffer {
    /// Forgets the messages (keeping their buffers).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The messages read since the last [`MessageBuffer::clear`].
    pub fn messages(&self) -> &[(i64, LogMessage)] {
        &self.entries[..self.len]
    }

    /// Appends the messages of stored batch `batch` of `kafka_topic`, as [`batch_messages`]
    /// reads them.
    pub fn read_batch(&mut self, kafka_topic: &str, batch: &[u8], decompressed_bytes_max: usize) {
        let Ok(header) = BatchHeader::parse(batch) else {
            return;
        };
        if header.is_control() {
            return;
        }
        let Ok(body) = record_batch::record_bytes(batch, decompressed_bytes_max) else {
            return;
        };
        for record in record_batch::records_in(&body) {
            if self.len == self.entries.len() {
                self.entries.push((0, LogMessage::empty()));
            }
            let (offset, message) = &mut self.entries[self.len];
            if fill_message(kafka_topic, &header, &record, message) {
                *offset = header.base_offset + i64::from(record.offset_delta);
                self.len += 1;
            }
        }
    }
}

/// One subscription of a stored session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSubscription {
    /// The topic filter (never a shared one).
    pub filter: String,
    /// Its options.
    pub options: SubscriptionOptions,
    /// Its MQTT 5 subscription identifier.
    pub identifier: Option<u32>,
}

/// A persistent MQTT session as the log's `mqtt_sessions` table keeps it. Its offline backlog
/// is not a copy of messages but a cursor per partition: the first offset not yet
/// acknowledged by the client; the next connection is delivered from there.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionRecord {
    /// Seconds the session outlives its connection.
    pub expiry_interval_s: u32,
    /// When it was stored, milliseconds since the Unix epoch (the expiry counts from the
    /// last store, which is the disconnection unless the broker stopped abruptly).
    pub stored_at_ms: i64,
    /// Its subscriptions.
    pub subscriptions: Vec<StoredSubscription>,
    /// Per partition, the first offset to deliver to the next connection. A partition not
    /// listed was created after the session was stored: it is delivered from its start.
    pub cursors: Vec<(PartitionId, i64)>,
    /// Per partition, the offset below which QoS 1 and 2 messages were sent to a connection of
    /// the session: sent again from the cursor, they carry DUP=1 (version 2 on; version 1
    /// records have none).
    pub sent: Vec<(PartitionId, i64)>,
    /// Packet identifiers of QoS 2 messages sent to the client whose PUBREL went and whose
    /// PUBCOMP did not come: the next connection sends the PUBREL again (version 2 on).
    pub released: Vec<u16>,
}

/// Format version of an encoded [`SessionRecord`], its first byte (version 1, without
/// [`SessionRecord::sent`], is read too).
const SESSION_RECORD_VERSION: u8 = 2;

/// A list of (partition, offset) of an encoded [`SessionRecord`], read with `take`.
fn positions<'a>(
    take: &mut impl FnMut(usize) -> Option<&'a [u8]>,
) -> Option<Vec<(PartitionId, i64)>> {
    let count = u32::from_be_bytes(take(4)?.try_into().ok()?);
    let mut list = Vec::new();
    for _ in 0..count {
        let partition = u32::from_be_bytes(take(4)?.try_into().ok()?);
        let offset = i64::from_be_bytes(take(8)?.try_into().ok()?);
        list.push((PartitionId(partition), offset));
    }
    Some(list)
}

impl SessionRecord {
    /// Whether the session has expired at `now_ms` (wall clock).
    pub fn expired(&self, now_ms: i64) -> bool {
        let deadline = self
            .stored_at_ms
            .saturating_add(i64::from(self.expiry_interval_s).saturating_mul(1000));
        now_ms >= deadline
    }

    /// The record as stored.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![SESSION_RECORD_VERSION];
        out.extend_from_slice(&self.expiry_interval_s.to_be_bytes());
        out.extend_from_slice(&self.stored_at_ms.to_be_bytes());
        out.extend_from_slice(&(self.subscriptions.len() as u32).to_be_bytes());
        for sub in &self.subscriptions {
            out.extend_from_slice(&(sub.filter.len() as u16).to_be_bytes());
            out.extend_from_slice(sub.filter.as_bytes());
            let o = sub.options;
            out.push(
                o.qos as u8
                    | u8::from(o.no_local) << 2
                    | u8::from(o.retain_as_published) << 3
                    | (o.retain_handling as u8) << 4,
            );
            out.extend_from_slice(&sub.identifier.unwrap_or(0).to_be_bytes());
        }
        for positions in [&self.cursors, &self.sent] {
            out.extend_from_slice(&(positions.len() as u32).to_be_bytes());
            for (partition, offset) in positions {
                out.extend_from_slice(&partition.0.to_be_bytes());
                out.extend_from_slice(&offset.to_be_bytes());
            }
        }
        out.extend_from_slice(&(self.released.len() as u32).to_be_bytes());
        for id in &self.released {
            out.extend_from_slice(&id.to_be_bytes());
        }
        out
    }

    /// Decodes a stored record; `None` if it is not one this build wrote.
    pub fn decode(bytes: &[u8]) -> Option<SessionRecord> {
        let mut r = bytes;
        let mut take = |n: usize| -> Option<&[u8]> {
            let (head, rest) = r.split_at_checked(n)?;
            r = rest;
            Some(head)
        };
        let version = take(1)?[0];
        if !(1..=SESSION_RECORD_VERSION).contains(&version) {
            return None;
        }
        let expiry_interval_s = u32::from_be_bytes(take(4)?.try_into().ok()?);
        let stored_at_ms = i64::from_be_bytes(take(8)?.try_into().ok()?);
        let count = u32::from_be_bytes(take(4)?.try_into().ok()?);
        let mut subscriptions = Vec::new();
        for _ in 0..count {
            let len = u16::from_be_bytes(take(2)?.try_into().ok()?);
            let filter = std::str::from_utf8(take(usize::from(len))?)
                .ok()?
                .to_owned();
            let bits = take(1)?[0];
            let options = SubscriptionOptions {
                qos: QoS::try_from(bits & 0x3).ok()?,
                no_local: bits & 0x4 != 0,
                retain_as_published: bits & 0x8 != 0,
                retain_handling: match bits >> 4 {
                    0 => RetainHandling::SendAtSubscribe,
                    1 => RetainHandling::SendAtSubscribeIfNew,
                    2 => RetainHandling::DoNotSend,
                    _ => return None,
                },
            };
            let identifier = u32::from_be_bytes(take(4)?.try_into().ok()?);
            subscriptions.push(StoredSubscription {
                filter,
                options,
                identifier: (identifier != 0).then_some(identifier),
            });
        }
        let cursors = positions(&mut take)?;
        let (mut sent, mut released) = (Vec::new(), Vec::new());
        if version >= 2 {
            sent = positions(&mut take)?;
            let count = u32::from_be_bytes(take(4)?.try_into().ok()?);
            for _ in 0..count {
                released.push(u16::from_be_bytes(take(2)?.try_into().ok()?));
            }
        }
        r.is_empty().then_some(SessionRecord {
            expiry_interval_s,
            stored_at_ms,
            subscriptions,
            cursors,
            sent,
            released,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(topic: &str) -> LogMessage {
        LogMessage {
            topic: topic.into(),
            payload: b"21.5".to_vec(),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: Properties::default(),
            timestamp_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn the_first_level_names_the_kafka_topic() {
        assert_eq!(kafka_topic("sensors/room1/temp"), "sensors");
        assert_eq!(kafka_topic("sensors"), "sensors");
        assert_eq!(kafka_topic("/a/b"), "_");
        assert_eq!(kafka_topic("$SYS/x"), "_SYS");
        assert_eq!(kafka_topic("häus le/x"), "h_us_le");
        assert_eq!(kafka_topic("./x"), "_.");
        assert_eq!(kafka_topic(".."), "_..");
        assert_eq!(kafka_topic(&"x".repeat(300)).len(), 249);
    }

    #[test]
    fn murmur2_matches_kafkas() {
        // Values from Kafka's UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21"), -973_932_308);
        assert_eq!(murmur2(b"foobar"), -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985_981_536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1_486_304_829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58_897_971
        );
        assert_eq!(murmur2(b"abc"), 479_470_107);
        assert!(partition_for_key(b"sensors/a", 4) < 4);
        assert_eq!(partition_for_key(b"x", 0), 0);
    }

    #[test]
    fn a_message_survives_the_log_with_every_property() {
        let mut m = message("sensors/room1/temp");
        m.properties = Properties {
            payload_format_indicator: Some(true),
            message_expiry_interval: Some(60),
            content_type: Some("text/plain".into()),
            response_topic: Some("replies/1".into()),
            correlation_data: Some(vec![0, 1, 255]),
            user_properties: vec![
                ("site".into(), "north".into()),
                ("mqtt.odd".into(), "kept".into()),
                ("site".into(), "south".into()),
            ],
            ..Properties::default()
        };
        let mut batch = message_batch(&m);
        record_batch::set_base_offset(&mut batch, 41);
        assert!(record_batch::validate_all(&batch, 1 << 20).is_ok());
        let out = batch_messages("sensors", &batch, 1 << 20);
        assert_eq!(out, vec![(41, m)]);
    }

    #[test]
    fn kafka_records_get_a_topic_from_header_key_or_name() {
        let build = |key: Option<&[u8]>, headers: &[(&str, Option<&[u8]>)]| {
            let mut b = BatchBuilder::new();
            b.push(Record {
                timestamp_ms: 5,
                key,
                value: Some(b"v"),
                headers,
            });
            b.finish()
        };
        let topic_of = |batch: Vec<u8>| {
            batch_messages("orders", &batch, 1 << 20)
                .pop()
                .map(|(_, m)| (m.topic, m.qos, m.properties.user_properties))
        };
        assert_eq!(
            topic_of(build(Some(b"k1"), &[("trace", Some(b"abc"))])),
            Some((
                "orders/k1".into(),
                QoS::AtLeastOnce,
                vec![("trace".into(), "abc".into())]
            ))
        );
        assert_eq!(
            topic_of(build(None, &[])).map(|t| t.0),
            Some("orders".into())
        );
        // A key that makes no valid topic name falls back to the Kafka topic.
        assert_eq!(
            topic_of(build(Some(b"a+b"), &[])).map(|t| t.0),
            Some("orders".into())
        );
        assert_eq!(
            topic_of(build(
                Some(b"k"),
                &[(header::TOPIC, Some(b"devices/7/cmd"))]
            ))
            .map(|t| t.0),
            Some("devices/7/cmd".into())
        );
        // A named topic that is not a valid MQTT topic name makes no message.
        assert_eq!(
            topic_of(build(Some(b"k"), &[(header::TOPIC, Some(b"bad/#"))])),
            None
        );
        assert_eq!(
            topic_of(build(Some(b"k"), &[(header::QOS, Some(b"0"))])).map(|t| (t.0, t.1)),
            Some(("k".into(), QoS::AtMostOnce))
        );
    }

    #[test]
    fn compressed_batches_are_read_and_control_batches_skipped() {
        let m = message("a/b");
        let mut b = BatchBuilder::new();
        let qos = [b'1'];
        b.push(Record {
            timestamp_ms: m.timestamp_ms,
            key: Some(b"a/b"),
            value: Some(b"x"),
            headers: &[(header::QOS, Some(&qos))],
        });
        let batch = b
            .finish_compressed(record_batch::Compression::Zstd)
            .unwrap();
        let out = batch_messages("a", &batch, 1 << 20);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1.topic, "a/b");
    }

    #[test]
    fn a_message_buffer_reuses_its_entries_and_skips_what_is_no_message() {
        let mut first = message("a/b");
        first.properties.content_type = Some("text/plain".into());
        let mut second = message("a/c");
        second.retain = false;
        second.qos = QoS::AtMostOnce;
        let mut buffer = MessageBuffer::default();
        buffer.read_batch("a", &message_batch(&first), 1 << 20);
        assert_eq!(buffer.messages(), [(0, first.clone())]);
        // The next read replaces the first: its properties and retain flag do not linger.
        buffer.clear();
        buffer.read_batch("a", &message_batch(&second), 1 << 20);
        assert_eq!(buffer.messages(), [(0, second.clone())]);
        // A record whose `mqtt.topic` header is no topic name is skipped, the next one kept.
        let mut b = BatchBuilder::new();
        for (i, topic) in ["bad/#", "a/d"].into_iter().enumerate() {
            b.push(Record {
                timestamp_ms: second.timestamp_ms + i as i64,
                key: None,
                value: Some(b"x"),
                headers: &[(header::TOPIC, Some(topic.as_bytes()))],
            });
        }
        buffer.read_batch("a", &b.finish(), 1 << 20);
        let topics: Vec<(i64, &str)> = (buffer.messages().iter())
            .map(|(offset, m)| (*offset, m.topic.as_str()))
            .collect();
        assert_eq!(topics, [(0, "a/c"), (1, "a/d")]);
    }

    #[test]
    fn a_session_record_round_trips_and_expires() {
        let record = SessionRecord {
            expiry_interval_s: 60,
            stored_at_ms: 1_000_000,
            subscriptions: vec![
                StoredSubscription {
                    filter: "a/+/c".into(),
                    options: SubscriptionOptions {
                        qos: QoS::ExactlyOnce,
                        no_local: true,
                        retain_as_published: true,
                        retain_handling: RetainHandling::DoNotSend,
                    },
                    identifier: Some(268_435_455),
                },
                StoredSubscription {
                    filter: "#".into(),
                    options: SubscriptionOptions::qos(QoS::AtMostOnce),
                    identifier: None,
                },
            ],
            cursors: vec![(PartitionId(3), 17), (PartitionId(9), 0)],
            sent: vec![(PartitionId(3), 20)],
            released: vec![7, 65535],
        };
        let bytes = record.encode();
        assert_eq!(SessionRecord::decode(&bytes), Some(record.clone()));
        // Every truncation and a trailing byte are refused, never a panic.
        for cut in 0..bytes.len() {
            assert_eq!(SessionRecord::decode(&bytes[..cut]), None);
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(SessionRecord::decode(&longer), None);
        assert!(!record.expired(1_059_999));
        assert!(record.expired(1_060_000));
        // A version 1 record (before `sent`) still reads, with nothing sent.
        let v1 = SessionRecord {
            sent: Vec::new(),
            released: Vec::new(),
            ..record
        };
        let mut old = v1.encode();
        old[0] = 1;
        old.truncate(old.len() - 8);
        assert_eq!(SessionRecord::decode(&old), Some(v1));
    }

    #[test]
    fn expiry_counts_down_from_receipt() {
        let mut m = message("a");
        assert_eq!(m.expiry_left_s(m.timestamp_ms + 5_000), None);
        m.properties.message_expiry_interval = Some(10);
        assert_eq!(m.expiry_left_s(m.timestamp_ms + 3_500), Some(7));
        assert_eq!(m.expiry_left_s(m.timestamp_ms + 60_000), Some(0));
    }
}
