//! Storing what plugins made of messages, on the writer thread: each message in the topic it
//! names (created like a client's would be), in the partition its key chooses (or the one the
//! client chose, for a Kafka record kept in its topic), in one batch per partition, all
//! acknowledged together once durable.

use std::sync::{Arc, Mutex};

use weir_core::kafka::resolve;
use weir_core::log_store::{Append, CheckedBatch, DedupKey, LogStore, PartitionId};
use weir_core::mqtt_kafka::partition_for_key;
use weir_core::plugin::{Message, record_batch};
use weir_kafka::error::ErrorCode;

use super::group_commit::{AppendFailure, Completion, WriterHandle};
use super::work::{Creation, OutputFailure, OutputsDone};

/// One batch to append: whose it is, where, and the batch.
pub(super) struct Placed<K> {
    pub key: K,
    pub partition: PartitionId,
    pub batch: CheckedBatch,
}

/// Resolves the topics of `messages` and groups them into one batch per owner and partition,
/// in order. `pin`: the partition index for a message that stays in the topic its client
/// chose; otherwise the key chooses (Kafka's default partitioner), or, without a key, the
/// message's position. A topic that cannot be had fails with its Kafka error code, naming
/// the owner.
pub(super) fn place<K: Copy + Eq>(
    store: &dyn LogStore,
    messages: Vec<(K, Message, Option<i32>)>,
    creation: Creation,
) -> Result<Vec<Placed<K>>, (K, i16)> {
    let mut names: Vec<String> = Vec::new();
    for (_, m, _) in &messages {
        if !names.contains(&m.topic) {
            names.push(m.topic.clone());
        }
    }
    let first = messages.first().map(|(k, _, _)| *k);
    let resolved = resolve(
        store,
        &names,
        creation.create_missing,
        creation.partitions,
        creation.topics_max,
    )
    .map_err(|e| {
        tracing::warn!("topics of routed messages not resolved: {e}");
        (
            first.expect("resolve runs only with messages"),
            ErrorCode::KafkaStorageError.code(),
        )
    })?;
    let mut groups: Vec<(K, PartitionId, Vec<Message>)> = Vec::new();
    for (position, (key, message, pin)) in messages.into_iter().enumerate() {
        let at = names
            .iter()
            .position(|n| *n == message.topic)
            .expect("every topic was named");
        let partitions = resolved[at].as_ref().map_err(|code| (key, *code))?;
        let index = match (pin, &message.key) {
            (Some(index), _) => usize::try_from(index).unwrap_or(0),
            (None, Some(k)) => partition_for_key(k, partitions.len()),
            (None, None) => position % partitions.len().max(1),
        };
        let Some(&partition) = partitions.get(index) else {
            return Err((key, ErrorCode::UnknownTopicOrPartition.code()));
        };
        match groups
            .iter_mut()
            .find(|(k, p, _)| *k == key && *p == partition)
        {
            Some((_, _, list)) => list.push(message),
            None => groups.push((key, partition, vec![message])),
        }
    }
    groups
        .into_iter()
        .map(|(key, partition, list)| {
            let batch = CheckedBatch::new(record_batch(&list)).map_err(|e| {
                tracing::error!("plugin messages made an invalid batch: {e}");
                (key, ErrorCode::CorruptMessage.code())
            })?;
            Ok(Placed {
                key,
                partition,
                batch,
            })
        })
        .collect()
}

/// Stores `messages` (each in its topic, by key) through group commit; `done` runs once every
/// append is durable or one failed. `dedup` goes with the first append (an MQTT QoS 2
/// publish); `retained`: the MQTT topic whose retained message the first message becomes
/// (cleared if its value is empty), and the retained-message limit.
pub(super) fn store(
    store: &dyn LogStore,
    writer: &WriterHandle,
    (messages, creation): (Vec<Message>, Creation),
    (dedup, retained): (Option<Box<DedupKey>>, Option<(String, u64)>),
    done: OutputsDone,
) {
    if let (Some((topic, max)), Some(first)) = (&retained, messages.first()) {
        let batch = record_batch([first]);
        let value = first.value.as_deref().unwrap_or_default();
        let kept = (!value.is_empty()).then_some(batch.as_slice());
        if let Err(e) = store.set_retained(topic, kept, *max) {
            done(Err(OutputFailure::Retained(e)));
            return;
        }
    }
    let keyed = messages.into_iter().map(|m| ((), m, None)).collect();
    let placed = match place(store, keyed, creation) {
        Ok(placed) => placed,
        Err(((), code)) => {
            done(Err(OutputFailure::Topic(code)));
            return;
        }
    };
    if placed.is_empty() {
        done(Ok(Vec::new()));
        return;
    }
    submit_placed(writer, placed, dedup, done);
}

struct Gathered {
    pending: usize,
    at: Vec<(PartitionId, i64)>,
    failure: Option<OutputFailure>,
    done: Option<OutputsDone>,
}

fn submit_placed(
    writer: &WriterHandle,
    placed: Vec<Placed<()>>,
    mut dedup: Option<Box<DedupKey>>,
    done: OutputsDone,
) {
    let gathered = Arc::new(Mutex::new(Gathered {
        pending: placed.len(),
        at: Vec::new(),
        failure: None,
        done: Some(done),
    }));
    let finish = |gathered: &Mutex<Gathered>,
                  outcome: Result<(PartitionId, i64), OutputFailure>| {
        let mut g = gathered.lock().unwrap_or_else(|e| e.into_inner());
        match outcome {
            Ok(at) => g.at.push(at),
            Err(e) => {
                if g.failure.is_none() {
                    g.failure = Some(e);
                }
            }
        }
        g.pending -= 1;
        if g.pending == 0 {
            let result = match g.failure.take() {
                Some(failure) => Err(failure),
                None => Ok(std::mem::take(&mut g.at)),
            };
            if let Some(done) = g.done.take() {
                drop(g);
                done(result);
            }
        }
    };
    let appends: Vec<_> = placed
        .into_iter()
        .map(|p| {
            let gathered = gathered.clone();
            let partition = p.partition;
            let completion: Completion = Box::new(move |result| {
                finish(
                    &gathered,
                    result
                        .map(|a| (partition, a.base_offset))
                        .map_err(OutputFailure::Append),
                )
            });
            (
                Append {
                    partition: p.partition,
                    batch: p.batch,
                    dedup: dedup.take(),
                },
                completion,
            )
        })
        .collect();
    if let Err(refused) = writer.submit_all(appends) {
        for _ in refused {
            let failure = AppendFailure::queue_full();
            finish(&gathered, Err(OutputFailure::Append(failure)));
        }
    }
}
