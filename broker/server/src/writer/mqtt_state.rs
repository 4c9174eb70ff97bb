//! The MQTT front's writes, on the writer thread: a publish (its retained message, then its
//! record through group commit), persistent sessions (load, store, expire) and QoS 2
//! duplicate-check keys.

use std::collections::HashMap;

use weir_core::kafka::resolve;
use weir_core::log_store::{Append, LogStore, PartitionId, StoreError};
use weir_core::mqtt_connection::Stored;
use weir_core::mqtt_kafka::{SessionRecord, partition_for_key};
use weir_kafka::error::ErrorCode;
use weir_mqtt::ReasonCode;

use super::group_commit::{AppendFailure, Completion, WriterHandle};
use super::work::{Creation, MqttPublish, ReleasedDone, Retained, SessionDone, StoreDone};

/// Stores a publish: the retained message first (if it has the retain flag), then its record
/// through group commit; `done` gets the reason code for its acknowledgement once the record
/// is durable (or failed).
pub(super) fn publish(
    store: &dyn LogStore,
    writer: &WriterHandle,
    publish: MqttPublish,
    done: StoreDone,
) {
    let MqttPublish {
        topic,
        retained,
        kafka_topic,
        partition,
        batch,
        dedup,
        creation,
        retained_messages_max,
    } = publish;
    let retained = match retained {
        Retained::Unchanged => None,
        Retained::Replace => Some(Some(&batch[..])),
        Retained::Clear => Some(None),
    };
    if let Some(retained) = retained
        && let Err(e) = store.set_retained(&topic, retained, retained_messages_max)
    {
        tracing::debug!(%topic, "retained message not stored: {e}");
        done(Stored::plain(store_error_code(&e), None));
        return;
    }
    let found = partition.map_or_else(|| partition_of(store, kafka_topic, creation, &topic), Ok);
    let partition = match found {
        Ok(partition) => partition,
        Err(code) => {
            done(Stored::plain(code, None));
            return;
        }
    };
    let completion: Completion = Box::new(move |result| match result {
        Ok(appended) => done(Stored::plain(
            ReasonCode::SUCCESS,
            Some((partition, appended.base_offset)),
        )),
        Err(AppendFailure::Store(e)) => done(Stored::plain(store_error_code(&e), None)),
        Err(e) => {
            tracing::debug!("MQTT publish not stored: {e}");
            done(Stored::plain(ReasonCode::UNSPECIFIED_ERROR, None))
        }
    });
    let append = Append {
        partition,
        batch,
        dedup,
    };
    if let Err(busy) = writer.submit(append, completion) {
        (busy.done)(Err(AppendFailure::queue_full()));
    }
}

/// The partition of Kafka topic `kafka_topic` (created if missing, as `creation` says) that
/// MQTT topic `topic` hashes to, or the reason code to refuse the publish with.
fn partition_of(
    store: &dyn LogStore,
    kafka_topic: String,
    creation: Creation,
    topic: &str,
) -> Result<PartitionId, ReasonCode> {
    let names = [kafka_topic];
    let found = resolve(
        store,
        &names,
        creation.create_missing,
        creation.partitions,
        creation.topics_max,
    );
    let partitions = match found.map(|mut found| found.remove(0)) {
        Ok(Ok(partitions)) => partitions,
        Ok(Err(code)) => {
            tracing::debug!(topic = %names[0], code, "MQTT publish refused");
            return Err(resolve_error_code(code));
        }
        Err(e) => return Err(store_error_code(&e)),
    };
    let index = partition_for_key(topic.as_bytes(), partitions.len());
    partitions
        .get(index)
        .copied()
        .ok_or(ReasonCode::UNSPECIFIED_ERROR)
}

/// Loads (or, with `clean_start`, deletes) the stored session of `client_id`: the session to
/// resume, with a cursor for every partition (partitions created after it was stored start at
/// their beginning), or the CONNACK code to refuse with.
pub(super) fn load_session(
    store: &dyn LogStore,
    (client_id, clean_start): (String, bool),
    now_wall_ms: i64,
    done: SessionDone,
) {
    let result = (|| -> Result<Option<SessionRecord>, StoreError> {
        if clean_start {
            forget_session(store, &client_id)?;
            return Ok(None);
        }
        let Some(bytes) = store.mqtt_session(&client_id)? else {
            return Ok(None);
        };
        let record = SessionRecord::decode(&bytes);
        let Some(mut record) = record.filter(|r| !r.expired(now_wall_ms)) else {
            forget_session(store, &client_id)?;
            return Ok(None);
        };
        let known: HashMap<PartitionId, i64> = record.cursors.iter().copied().collect();
        record.cursors = store
            .topics()?
            .iter()
            .flat_map(|t| t.partitions.iter().copied())
            .map(|p| (p, known.get(&p).copied().unwrap_or(0)))
            .collect();
        Ok(Some(record))
    })();
    done(result.map_err(|e| {
        tracing::warn!(client = %client_id, "cannot load the MQTT session: {e}");
        ReasonCode::SERVER_UNAVAILABLE
    }));
}

/// Deletes the session of `client_id` and its QoS 2 state.
fn forget_session(store: &dyn LogStore, client_id: &str) -> Result<(), StoreError> {
    store.put_mqtt_session(client_id, None, 0)?;
    store.release_dedup(client_id, None)
}

/// Stores `record` as the session of `client_id`.
pub(super) fn save_session(
    store: &dyn LogStore,
    client_id: &str,
    record: &SessionRecord,
    sessions_max: u64,
) {
    if let Err(e) = store.put_mqtt_session(client_id, Some(&record.encode()), sessions_max) {
        tracing::warn!(client = %client_id, "MQTT session not stored: {e}");
    }
}

/// Deletes the QoS 2 duplicate-check key of packet `id` (every key of the client with
/// `None`); `done` (PUBCOMP) runs only once the key is durably gone: the client may reuse
/// the identifier after it.
pub(super) fn release_qos2(
    store: &dyn LogStore,
    client_id: &str,
    id: Option<u16>,
    done: ReleasedDone,
) {
    match store.release_dedup(client_id, id) {
        Ok(()) => done(),
        Err(e) => tracing::warn!(client = %client_id, "QoS 2 state not released: {e}"),
    }
}

/// Deletes stored sessions that have expired by `now_wall_ms`, with their QoS 2 state.
pub(super) fn expire_sessions(store: &dyn LogStore, now_wall_ms: i64) {
    let mut expired = Vec::new();
    let visited = store.mqtt_sessions(&mut |client_id, bytes| {
        if SessionRecord::decode(bytes).is_none_or(|r| r.expired(now_wall_ms)) {
            expired.push(client_id.to_owned());
        }
    });
    if let Err(e) = visited {
        tracing::warn!("cannot list MQTT sessions: {e}");
        return;
    }
    for client_id in expired {
        match forget_session(store, &client_id) {
            Ok(()) => tracing::debug!(client = %client_id, "MQTT session expired"),
            Err(e) => tracing::warn!(client = %client_id, "expired MQTT session not deleted: {e}"),
        }
    }
}

/// The MQTT reason code for a topic [`resolve`] could not have: the topic limit
/// (`kafka.topics_max`) reached, or a name Kafka refuses.
fn resolve_error_code(code: i16) -> ReasonCode {
    if code == ErrorCode::InvalidTopicException.code() {
        ReasonCode::TOPIC_NAME_INVALID
    } else if code == ErrorCode::UnknownTopicOrPartition.code()
        || code == ErrorCode::KafkaStorageError.code()
    {
        ReasonCode::QUOTA_EXCEEDED
    } else {
        ReasonCode::UNSPECIFIED_ERROR
    }
}

/// The MQTT reason code for a store error.
pub(super) fn store_error_code(error: &StoreError) -> ReasonCode {
    match error {
        StoreError::Full(_) => ReasonCode::QUOTA_EXCEEDED,
        StoreError::InvalidArgument(_) => ReasonCode::TOPIC_NAME_INVALID,
        _ => ReasonCode::UNSPECIFIED_ERROR,
    }
}
