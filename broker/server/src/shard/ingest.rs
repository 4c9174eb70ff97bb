//! Plugins on ingest, on the shard that received the messages, before anything is stored:
//! MQTT publishes (all those one read of a connection brought, per binding, in one call) and
//! Kafka produce requests (every record of a topic in one call). What the chains decide
//! becomes appends and protocol answers:
//!
//! | fate | MQTT 5 (3.1.x) | Kafka |
//! | --- | --- | --- |
//! | keep | stored as published | the client's batch stored unchanged |
//! | changed or routed | stored, each message in its topic | a new batch in the partition for messages still in its topic; the others by key in theirs |
//! | drop | success, nothing stored | success, base offset -1 if nothing is left |
//! | reject | the reason code and string (success, dropped) | INVALID_RECORD with the record errors, nothing of the partition stored |
//! | plugin failure | originals to the dead-letter topic, then success | the same |
//! | circuit open, `reject` | 0x83 (success, dropped) | POLICY_VIOLATION |
//! | circuit open, `pass` | stored as published | stored unchanged |

use std::sync::Arc;

use weir_core::kafka::{ProduceRecords, ProduceTopic, RoutedMessage};
use weir_core::log_store::{CheckedBatch, DedupKey, check_topic_name};
use weir_core::mqtt_kafka::{self as mapping, LogMessage};
use weir_core::plugin::{
    Fate, Message, RejectKind, dead_letter, layout, put_batch_records, record_batch,
};
use weir_kafka::error::ErrorCode;
use weir_kafka::record_batch;
use weir_mqtt::ReasonCode;

use super::mqtt;
use super::settings::ServerConfig;
use super::topic_table::TopicTable;
use crate::plugins::{Binding, RunOutcome, ShardPlugins, WhenOpen};
use crate::writer::{OutputFailure, StoreDone, Work};
use weir_core::mqtt_connection::Stored;

fn topic_ok(name: &str) -> Result<(), String> {
    check_topic_name(name)
}

/// An MQTT publish bound for a topic with a binding.
pub(super) struct BoundPublish {
    pub binding: Arc<Binding>,
    pub kafka_topic: String,
    pub message: Box<LogMessage>,
    pub dedup: Option<Box<DedupKey>>,
    pub done: StoreDone,
}

fn reject_code(kind: RejectKind) -> ReasonCode {
    match kind {
        RejectKind::Invalid => ReasonCode::PAYLOAD_FORMAT_INVALID,
        RejectKind::NotAuthorized => ReasonCode::NOT_AUTHORIZED,
        RejectKind::Refused => ReasonCode::IMPLEMENTATION_SPECIFIC_ERROR,
    }
}

fn refused(reason: ReasonCode, why: String) -> Stored {
    Stored {
        reason,
        reason_string: Some(why),
        refused_by_plugin: true,
        at: Vec::new(),
    }
}

/// Runs the publishes through their bindings' chains (one call per binding) and stores or
/// answers each as its fate says.
pub(super) fn mqtt_publishes(
    config: &ServerConfig,
    (plugins, topics): (&mut ShardPlugins, &mut TopicTable),
    publishes: Vec<BoundPublish>,
) {
    let mut rest = publishes;
    while !rest.is_empty() {
        let id = rest[0].binding.id;
        let (group, others): (Vec<_>, Vec<_>) = rest.into_iter().partition(|p| p.binding.id == id);
        rest = others;
        let binding = group[0].binding.clone();
        let mut batch = layout::BatchWriter::new(
            group.len(),
            group.iter().map(|p| p.message.payload.len() + 64).sum(),
        );
        for p in &group {
            mapping::put_plugin_message(batch.buffer(), &p.kafka_topic, &p.message);
        }
        let count = group.len();
        match plugins.run(&binding, batch.finish(), count, &topic_ok) {
            RunOutcome::Ran(fates) => {
                for (p, fate) in group.into_iter().zip(fates) {
                    mqtt_fate(config, topics, p, fate);
                }
            }
            RunOutcome::Failed {
                plugin,
                version,
                error,
            } => {
                for p in group {
                    let original = plugin_message(&p.kafka_topic, &p.message);
                    let dlq = binding.dead_letter_topic(&p.kafka_topic);
                    let letter = dead_letter(original, &dlq, &plugin, &version, &error);
                    store_mqtt_outputs(config, vec![letter], None, None, p.done);
                }
            }
            RunOutcome::Open(WhenOpen::Pass) => {
                for p in group {
                    mqtt::publish(config, (topics, p.kafka_topic), *p.message, p.dedup, p.done);
                }
            }
            RunOutcome::Open(WhenOpen::Reject) => {
                for p in group {
                    (p.done)(refused(
                        ReasonCode::IMPLEMENTATION_SPECIFIC_ERROR,
                        format!(
                            "plugin binding {} is failing: its circuit is open",
                            binding.spec.name
                        ),
                    ));
                }
            }
        }
    }
}

fn mqtt_fate(config: &ServerConfig, topics: &mut TopicTable, p: BoundPublish, fate: Fate) {
    match fate {
        Fate::Keep => mqtt::publish(config, (topics, p.kafka_topic), *p.message, p.dedup, p.done),
        Fate::Drop => (p.done)(Stored::plain(ReasonCode::SUCCESS, None)),
        Fate::Reject(rejection) => (p.done)(refused(reject_code(rejection.kind), rejection.reason)),
        Fate::Store(messages) => {
            let retained = p.message.retain.then(|| p.message.topic.clone());
            store_mqtt_outputs(config, messages, p.dedup, retained, p.done);
        }
    }
}

fn store_mqtt_outputs(
    config: &ServerConfig,
    messages: Vec<Message>,
    dedup: Option<Box<DedupKey>>,
    retained: Option<String>,
    done: StoreDone,
) {
    let settings = &config.mqtt;
    let creation = mqtt::creation(settings);
    let retained = retained.map(|topic| (topic, settings.retained_messages_max));
    config.writer.work(Work::Outputs {
        messages,
        creation,
        dedup,
        retained,
        done: Box::new(move |result| {
            done(match result {
                Ok(at) => Stored {
                    reason: ReasonCode::SUCCESS,
                    reason_string: None,
                    refused_by_plugin: false,
                    at,
                },
                Err(failure) => {
                    tracing::debug!("MQTT publish's plugin output not stored: {failure:?}");
                    Stored::plain(output_reason(&failure), None)
                }
            })
        }),
    });
}

fn output_reason(failure: &OutputFailure) -> ReasonCode {
    use weir_core::log_store::StoreError;
    match failure {
        OutputFailure::Topic(17) => ReasonCode::TOPIC_NAME_INVALID,
        OutputFailure::Topic(_) => ReasonCode::QUOTA_EXCEEDED,
        OutputFailure::Retained(StoreError::Full(_))
        | OutputFailure::Append(crate::writer::AppendFailure::Store(StoreError::Full(_))) => {
            ReasonCode::QUOTA_EXCEEDED
        }
        _ => ReasonCode::UNSPECIFIED_ERROR,
    }
}

/// `message` as the plugin saw it (the record it would have been stored as), owned.
fn plugin_message(kafka_topic: &str, message: &LogMessage) -> Message {
    let mut batch = layout::BatchWriter::new(1, message.payload.len() + 64);
    mapping::put_plugin_message(batch.buffer(), kafka_topic, message);
    layout::read_batch(&batch.finish())
        .ok()
        .and_then(|mut v| v.pop())
        .unwrap_or_default()
}

/// The records of a partition's entry, as messages bound for `topic` (decompressed within
/// `decompressed_max`); `None` if they cannot be read.
fn partition_messages(
    topic: &str,
    batches: &[CheckedBatch],
    decompressed_max: usize,
) -> Option<Vec<Message>> {
    let mut buf = Vec::new();
    let mut count = 0;
    for batch in batches {
        count += put_batch_records(&mut buf, topic, batch, decompressed_max).ok()?;
    }
    let mut framed = layout::BatchWriter::new(count, buf.len());
    framed.buffer().extend_from_slice(&buf);
    layout::read_batch(&framed.finish()).ok()
}

/// Runs the records of each produced topic that has a binding through its chain (one call
/// per topic) and rewrites the request as the fates say: partitions' records replaced,
/// refused or emptied, and messages for other topics (routed, or dead letters) added to
/// `routed`.
pub(super) fn produce(
    plugins: &mut ShardPlugins,
    topics: &mut [ProduceTopic],
    routed: &mut Vec<RoutedMessage>,
    decompressed_max: usize,
) {
    for (ti, topic) in topics.iter_mut().enumerate() {
        let Some(binding) = plugins.binding_for(&topic.name) else {
            continue;
        };
        // Legacy message sets are converted here, where plugins can see their records.
        for (_, records) in topic.partitions.iter_mut() {
            if let ProduceRecords::Legacy(set) = records {
                let converted = record_batch::upconvert_legacy(set, crate::clock::wall_ms())
                    .ok()
                    .and_then(|b| CheckedBatch::new(b).ok());
                *records = converted.map_or(ProduceRecords::Corrupt, |b| {
                    ProduceRecords::Batches(vec![b])
                });
            }
        }
        let mut body = Vec::new();
        let mut counts = vec![0usize; topic.partitions.len()];
        for (pi, (_, records)) in topic.partitions.iter_mut().enumerate() {
            let ProduceRecords::Batches(batches) = records else {
                continue;
            };
            let before = body.len();
            let mut n = 0;
            for batch in batches.iter() {
                match put_batch_records(&mut body, &topic.name, batch, decompressed_max) {
                    Ok(added) => n += added,
                    Err(e) => {
                        tracing::debug!("produce refused: {e}");
                        n = usize::MAX;
                        break;
                    }
                }
            }
            if n == usize::MAX {
                body.truncate(before);
                *records = ProduceRecords::Corrupt;
            } else {
                counts[pi] = n;
            }
        }
        let total: usize = counts.iter().sum();
        if total == 0 {
            continue;
        }
        let mut batch = layout::BatchWriter::new(total, body.len());
        batch.buffer().extend_from_slice(&body);
        drop(body);
        let outcome = plugins.run(&binding, batch.finish(), total, &topic_ok);
        apply_produce_outcome(
            &binding,
            ti,
            topic,
            &counts,
            outcome,
            routed,
            decompressed_max,
        );
    }
}

fn apply_produce_outcome(
    binding: &Binding,
    ti: usize,
    topic: &mut ProduceTopic,
    counts: &[usize],
    outcome: RunOutcome,
    routed: &mut Vec<RoutedMessage>,
    decompressed_max: usize,
) {
    let mut fates = match outcome {
        RunOutcome::Ran(fates) => fates.into_iter(),
        RunOutcome::Open(WhenOpen::Pass) => return,
        RunOutcome::Open(WhenOpen::Reject) => {
            let message = format!(
                "plugin binding {} is failing: its circuit is open",
                binding.spec.name
            );
            for (pi, (_, records)) in topic.partitions.iter_mut().enumerate() {
                if counts[pi] > 0 {
                    *records = ProduceRecords::Refused {
                        code: ErrorCode::PolicyViolation.code(),
                        message: message.clone(),
                        record_errors: Vec::new(),
                    };
                }
            }
            return;
        }
        RunOutcome::Failed {
            plugin,
            version,
            error,
        } => {
            let dlq = binding.dead_letter_topic(&topic.name);
            let failure = (&dlq[..], &plugin[..], &version[..], &error[..]);
            let to = (ti, routed, decompressed_max);
            return dead_letter_partitions(topic, counts, failure, to);
        }
    };
    let name = topic.name.clone();
    for (pi, (_, records)) in topic.partitions.iter_mut().enumerate() {
        let n = counts[pi];
        if n == 0 {
            continue;
        }
        let mine: Vec<Fate> = fates.by_ref().take(n).collect();
        if mine.iter().all(|f| *f == Fate::Keep) {
            continue;
        }
        let routed_from = |message| RoutedMessage {
            topic: ti,
            partition: pi,
            message,
        };
        let kept = apply_fates(binding, (&name, records), mine, decompressed_max);
        routed.extend(kept.into_iter().map(routed_from));
    }
}

/// A failed plugin call: the records of every partition the call covered go to the
/// dead-letter topic (`failure`: the topic, the plugin, its version, the error), routed from
/// their partition; nothing of them is stored where they were produced.
fn dead_letter_partitions(
    topic: &mut ProduceTopic,
    counts: &[usize],
    (dlq, plugin, version, error): (&str, &str, &str, &str),
    (ti, routed, decompressed_max): (usize, &mut Vec<RoutedMessage>, usize),
) {
    for (pi, (_, records)) in topic.partitions.iter_mut().enumerate() {
        if counts[pi] == 0 {
            continue;
        }
        let ProduceRecords::Batches(batches) = records else {
            continue;
        };
        for original in
            partition_messages(&topic.name, batches, decompressed_max).unwrap_or_default()
        {
            routed.push(RoutedMessage {
                topic: ti,
                partition: pi,
                message: dead_letter(original, dlq, plugin, version, error),
            });
        }
        *records = ProduceRecords::Nothing;
    }
}

/// Applies one partition's verdicts (`fates`, one per record) to its `records` of topic
/// `name`: refused as a whole if a plugin rejected a record, else rebuilt from what is kept
/// in the topic. Returns the messages routed to other topics.
fn apply_fates(
    binding: &Binding,
    (name, records): (&str, &mut ProduceRecords),
    fates: Vec<Fate>,
    decompressed_max: usize,
) -> Vec<Message> {
    let rejected: Vec<(i32, String)> = (fates.iter().enumerate())
        .filter_map(|(i, f)| match f {
            Fate::Reject(r) => Some((i32::try_from(i).unwrap_or(i32::MAX), r.reason.clone())),
            _ => None,
        })
        .collect();
    if let Some((_, first)) = rejected.first() {
        *records = ProduceRecords::Refused {
            code: ErrorCode::InvalidRecord.code(),
            message: format!(
                "refused by a plugin of binding {}: {first}",
                binding.spec.name
            ),
            record_errors: rejected,
        };
        return Vec::new();
    }
    let ProduceRecords::Batches(batches) = records else {
        return Vec::new();
    };
    let originals = partition_messages(name, batches, decompressed_max).unwrap_or_default();
    let (mut here, mut elsewhere) = (Vec::new(), Vec::new());
    for (original, fate) in originals.into_iter().zip(fates) {
        match fate {
            Fate::Keep => here.push(original),
            Fate::Drop | Fate::Reject(_) => {}
            Fate::Store(messages) => {
                let (mine, others): (Vec<_>, Vec<_>) =
                    messages.into_iter().partition(|m| m.topic == name);
                here.extend(mine);
                elsewhere.extend(others);
            }
        }
    }
    *records = if here.is_empty() {
        ProduceRecords::Nothing
    } else {
        match CheckedBatch::new(record_batch(&here)) {
            Ok(batch) => ProduceRecords::Batches(vec![batch]),
            Err(e) => {
                tracing::error!("plugin messages made an invalid batch: {e}");
                ProduceRecords::Corrupt
            }
        }
    };
    elsewhere
}
