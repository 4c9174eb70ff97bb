//! Ingest plugins as the broker core sees them: a chain of calls over one batch, and what
//! becomes of each message the batch started with.
//!
//! The wasm host (weir-plugin-host) implements [`PluginCall`]; the server runs
//! [`run_chain`] on the shard that received the messages, before anything is stored, and
//! turns each [`Fate`] into appends and protocol answers. Batches cross into plugins in the
//! layout of plugins-sdk/LAYOUT.md ([`weir_plugin_sdk::layout`]).

use std::fmt;

pub use weir_plugin_sdk::layout::{
    self, Header, Message, RejectKind, Rejection, Verdict, put_message,
};

/// Why a plugin call failed. After any of these the instance is discarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginFailure {
    /// The guest trapped (a panic, an abort, an out-of-bounds access, ...).
    Trap(String),
    /// The call ran past its deadline.
    Timeout,
    /// The instance asked for more memory than its cap.
    MemoryCap,
    /// The plugin returned an error for the batch.
    Error(String),
    /// The plugin's answer broke the contract (layout, count, an invalid topic name).
    BadAnswer(String),
    /// No instance could be made (init failed, the pool is exhausted).
    Instantiate(String),
}

impl PluginFailure {
    /// A short name for metrics and the dead-letter header.
    pub fn kind(&self) -> &'static str {
        match self {
            PluginFailure::Trap(_) => "trap",
            PluginFailure::Timeout => "timeout",
            PluginFailure::MemoryCap => "memory",
            PluginFailure::Error(_) => "error",
            PluginFailure::BadAnswer(_) => "bad-answer",
            PluginFailure::Instantiate(_) => "instantiate",
        }
    }
}

impl fmt::Display for PluginFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginFailure::Trap(what) => write!(f, "trap: {what}"),
            PluginFailure::Timeout => write!(f, "timeout: the call ran past its deadline"),
            PluginFailure::MemoryCap => write!(f, "memory: the instance reached its memory cap"),
            PluginFailure::Error(what) => write!(f, "error: {what}"),
            PluginFailure::BadAnswer(what) => write!(f, "bad answer: {what}"),
            PluginFailure::Instantiate(what) => write!(f, "instantiate: {what}"),
        }
    }
}

/// One plugin of a chain, ready to be called.
pub trait PluginCall {
    /// The verdicts on the `count` messages encoded in `batch`, one per message in order.
    fn process(&mut self, batch: &[u8], count: usize) -> Result<Vec<Verdict>, PluginFailure>;
}

/// What a chain made of one message the batch started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Every plugin kept it unchanged: store the original.
    Keep,
    /// Store these messages instead (each in its topic; never empty).
    Store(Vec<Message>),
    /// Store nothing, answer success.
    Drop,
    /// Store nothing of its request part, answer this error.
    Reject(Rejection),
}

/// A chain that failed: which plugin (its index in the chain) and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainFailure {
    /// Index of the failing plugin in the chain.
    pub plugin: usize,
    /// What happened.
    pub failure: PluginFailure,
}

/// Runs `batch` (holding `count` messages) through `chain` in order and says what becomes of
/// each original message. Messages a plugin returns must name topics `topic_ok` accepts,
/// or the call counts as that plugin's failure. A failure anywhere fails the whole batch
/// (the caller sends the originals to the dead-letter topic).
pub fn run_chain(
    chain: &mut [&mut dyn PluginCall],
    batch: Vec<u8>,
    count: usize,
    topic_ok: &dyn Fn(&str) -> Result<(), String>,
) -> Result<Vec<Fate>, ChainFailure> {
    let mut fates = vec![Fate::Keep; count];
    // `None` while every original is alive and unchanged (the bytes are the originals).
    let mut current: Option<Vec<(usize, Message)>> = None;
    let mut bytes = batch;
    for (index, plugin) in chain.iter_mut().enumerate() {
        let alive = current.as_ref().map_or(count, Vec::len);
        if alive == 0 {
            break;
        }
        let fail = |failure| ChainFailure {
            plugin: index,
            failure,
        };
        let verdicts = plugin.process(&bytes, alive).map_err(fail)?;
        if verdicts.len() != alive {
            return Err(fail(PluginFailure::BadAnswer(format!(
                "{} verdicts for {alive} messages",
                verdicts.len()
            ))));
        }
        if verdicts.iter().all(|v| *v == Verdict::Keep) {
            continue;
        }
        let messages: Vec<(usize, Message)> = match current.take() {
            Some(messages) => messages,
            None => layout::read_batch(&bytes)
                .map_err(|e| fail(PluginFailure::BadAnswer(e.to_string())))?
                .into_iter()
                .enumerate()
                .collect(),
        };
        let checked = |m: &Message| {
            topic_ok(&m.topic).map_err(|e| {
                fail(PluginFailure::BadAnswer(format!(
                    "a message for topic {:?}: {e}",
                    m.topic
                )))
            })
        };
        let mut next = Vec::with_capacity(messages.len());
        for ((origin, message), verdict) in messages.into_iter().zip(verdicts) {
            match verdict {
                Verdict::Keep => next.push((origin, message)),
                Verdict::Change(changed) => {
                    checked(&changed)?;
                    next.push((origin, changed));
                }
                Verdict::Drop => {}
                Verdict::Reject(rejection) => {
                    if !matches!(fates[origin], Fate::Reject(_)) {
                        fates[origin] = Fate::Reject(rejection);
                    }
                }
                Verdict::Route(routed) => {
                    for m in &routed {
                        checked(m)?;
                    }
                    next.extend(routed.into_iter().map(|m| (origin, m)));
                }
            }
        }
        next.retain(|(origin, _)| !matches!(fates[*origin], Fate::Reject(_)));
        let mut writer = layout::BatchWriter::new(next.len(), bytes.len());
        for (_, m) in &next {
            writer.message(m);
        }
        bytes = writer.finish();
        current = Some(next);
    }
    if let Some(messages) = current {
        for fate in fates.iter_mut() {
            if *fate == Fate::Keep {
                *fate = Fate::Drop;
            }
        }
        for (origin, message) in messages {
            match &mut fates[origin] {
                Fate::Store(list) => list.push(message),
                fate => *fate = Fate::Store(vec![message]),
            }
        }
    }
    Ok(fates)
}

/// One uncompressed record batch (no producer id; base offset 0, the log assigns it) holding
/// `messages` in order. A plugin message's header values are never null.
pub fn record_batch<'a>(messages: impl IntoIterator<Item = &'a Message>) -> Vec<u8> {
    let mut builder = weir_kafka::record_batch::BatchBuilder::new();
    for m in messages {
        let headers: Vec<(&str, Option<&[u8]>)> = m
            .headers
            .iter()
            .map(|h| (h.name.as_str(), Some(h.value.as_slice())))
            .collect();
        builder.push(weir_kafka::record_batch::Record {
            timestamp_ms: m.timestamp_ms,
            key: m.key.as_deref(),
            value: m.value.as_deref(),
            headers: &headers,
        });
    }
    builder.finish()
}

/// Appends the records of one checked Kafka batch to a plugin batch, as messages bound for
/// `topic`; a null header value becomes an empty one. Returns how many were added, or why
/// the batch cannot be read (a compressed batch inflating past `decompressed_bytes_max`).
pub fn put_batch_records(
    out: &mut Vec<u8>,
    topic: &str,
    batch: &[u8],
    decompressed_bytes_max: usize,
) -> Result<usize, weir_kafka::record_batch::BatchError> {
    use weir_kafka::record_batch::{BatchHeader, record_bytes, records_in};
    let header = BatchHeader::parse(batch)?;
    let body = record_bytes(batch, decompressed_bytes_max)?;
    let mut count = 0;
    for record in records_in(&body) {
        let headers: Vec<(&[u8], &[u8])> = record
            .headers()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect();
        put_message(
            out,
            topic,
            record.key,
            record.value,
            headers.into_iter(),
            header.base_timestamp.saturating_add(record.timestamp_delta),
            None,
        );
        count += 1;
    }
    Ok(count)
}

/// `original` (as it was bound for its topic) on its way to `dead_letter_topic` after plugin
/// `plugin` (version `version`) failed with `error`: its key, value and headers kept, the
/// [`dead_letter`] headers added.
pub fn dead_letter(
    mut original: Message,
    dead_letter_topic: &str,
    plugin: &str,
    version: &str,
    error: &str,
) -> Message {
    let original_topic = std::mem::replace(&mut original.topic, dead_letter_topic.to_owned());
    for (name, value) in [
        (dead_letter::PLUGIN, plugin),
        (dead_letter::VERSION, version),
        (dead_letter::ERROR, error),
        (dead_letter::ORIGINAL_TOPIC, &original_topic),
    ] {
        original.headers.push(Header {
            name: name.to_owned(),
            value: value.as_bytes().to_vec(),
        });
    }
    original
}

/// Header names a dead-lettered record carries, besides its own headers.
pub mod dead_letter {
    /// The failing plugin's name.
    pub const PLUGIN: &str = "weir.plugin.name";
    /// Its version (the first 12 hex digits of its module's SHA-256).
    pub const VERSION: &str = "weir.plugin.version";
    /// The failure (`trap: ...`, `timeout: ...`, ...).
    pub const ERROR: &str = "weir.plugin.error";
    /// The topic the record was on its way to.
    pub const ORIGINAL_TOPIC: &str = "weir.original.topic";
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scripted plugin: answers from a function of the batch.
    struct Scripted<F: FnMut(Vec<Message>) -> Result<Vec<Verdict>, PluginFailure>>(F);

    impl<F: FnMut(Vec<Message>) -> Result<Vec<Verdict>, PluginFailure>> PluginCall for Scripted<F> {
        fn process(&mut self, batch: &[u8], count: usize) -> Result<Vec<Verdict>, PluginFailure> {
            let messages = layout::read_batch(batch).expect("the chain encodes valid batches");
            assert_eq!(messages.len(), count);
            (self.0)(messages)
        }
    }

    fn ok(name: &str) -> Result<(), String> {
        if name.is_empty() {
            Err("empty".into())
        } else {
            Ok(())
        }
    }

    fn batch(values: &[&str]) -> (Vec<u8>, usize) {
        let messages: Vec<Message> = values.iter().map(|v| Message::new("in", *v)).collect();
        (layout::write_batch(&messages), messages.len())
    }

    #[test]
    fn all_keep_leaves_the_originals_and_later_plugins_see_earlier_changes() {
        let (bytes, n) = batch(&["a", "b", "c"]);
        let mut keep = Scripted(|ms: Vec<Message>| Ok(vec![Verdict::Keep; ms.len()]));
        assert_eq!(
            run_chain(&mut [&mut keep], bytes.clone(), n, &ok).unwrap(),
            vec![Fate::Keep; 3]
        );
        // The first drops "b" and routes "c" to two topics; the second sees 3 messages and
        // rejects the copy of "c" in topic x, which rejects "c" as a whole.
        let mut first = Scripted(|ms: Vec<Message>| {
            Ok(vec![
                Verdict::Keep,
                Verdict::Drop,
                Verdict::Route(vec![
                    ms[2].clone().with_topic("x"),
                    ms[2].clone().with_topic("y"),
                ]),
            ])
        });
        let mut second = Scripted(|ms: Vec<Message>| {
            assert_eq!(ms.len(), 3);
            Ok(ms
                .iter()
                .map(|m| match &*m.topic {
                    "x" => Verdict::invalid("no x"),
                    _ => Verdict::Change(m.clone().with_value("z")),
                })
                .collect())
        });
        let fates = run_chain(&mut [&mut first, &mut second], bytes, n, &ok).unwrap();
        assert_eq!(fates[0], Fate::Store(vec![Message::new("in", "z")]));
        assert_eq!(fates[1], Fate::Drop);
        assert!(matches!(&fates[2], Fate::Reject(r) if r.reason == "no x"));
    }

    #[test]
    fn failures_wrong_counts_and_bad_topics_name_the_plugin() {
        let (bytes, n) = batch(&["a", "b"]);
        let mut keep = Scripted(|ms: Vec<Message>| Ok(vec![Verdict::Keep; ms.len()]));
        let mut short = Scripted(|_| Ok(vec![Verdict::Keep]));
        let failed = run_chain(&mut [&mut keep, &mut short], bytes.clone(), n, &ok).unwrap_err();
        assert_eq!(failed.plugin, 1);
        assert!(matches!(failed.failure, PluginFailure::BadAnswer(_)));
        let mut bad_topic = Scripted(|ms: Vec<Message>| {
            Ok(ms
                .iter()
                .map(|m| Verdict::Change(m.clone().with_topic("")))
                .collect())
        });
        let failed = run_chain(&mut [&mut bad_topic], bytes.clone(), n, &ok).unwrap_err();
        assert_eq!(failed.plugin, 0);
        let mut trap = Scripted(|_| Err(PluginFailure::Timeout));
        let failed = run_chain(&mut [&mut trap], bytes, n, &ok).unwrap_err();
        assert_eq!(failed.failure, PluginFailure::Timeout);
    }

    #[test]
    fn a_chain_stops_calling_once_nothing_is_left() {
        let (bytes, n) = batch(&["a"]);
        let mut drop_all = Scripted(|ms: Vec<Message>| Ok(vec![Verdict::Drop; ms.len()]));
        let mut never = Scripted(|_| panic!("called with nothing left"));
        let fates = run_chain(&mut [&mut drop_all, &mut never], bytes, n, &ok).unwrap();
        assert_eq!(fates, vec![Fate::Drop]);
    }
}
