//! What a shard hands to other threads for its connections: Kafka operations to the log's
//! writer or the group coordinator, and what MQTT sessions ask for (stores through the
//! plugins, sessions, wills, client-id takeovers). Every result comes back through the
//! shard's inbox, addressed to the connection by slot and generation.

use std::sync::Arc;
use std::time::Duration;

use weir_core::kafka::KafkaOp;
use weir_core::log_store::DedupKey;
use weir_core::mqtt_connection::{MessagePool, MqttWork};
use weir_core::mqtt_kafka::LogMessage;

use super::client_ids::Claim;
use super::inbox::{Done, Inbox, Outcome, Owner};
use super::ingest;
use super::mqtt::{self, MqttTail, PublishRun};
use super::settings::ServerConfig;
use super::shared::ShardsShared;
use super::topic_table::TopicTable;
use crate::plugins::{Binding, ShardPlugins};
use crate::writer::{StoreDone, Work};

/// What MQTT work uses of the shard: its subscribers, plugins, topics and message pool.
pub(super) type MqttParts<'a> = (
    &'a mut MqttTail,
    &'a mut ShardPlugins,
    &'a mut TopicTable,
    &'a mut MessagePool,
);

/// Where a publish goes: the read's run, the plugin-bound list, and (once copied into the
/// run) the pool.
type StoreTo<'a> = (
    &'a mut Option<PublishRun>,
    &'a mut Vec<ingest::BoundPublish>,
    &'a mut MessagePool,
);

/// Hands a connection's operations to the writer thread, or group requests to the group
/// coordinator; each result comes back through the shard's inbox, addressed to the
/// connection by slot and generation.
pub(super) fn kafka_ops(
    config: &ServerConfig,
    (plugins, topics): (&mut ShardPlugins, &mut TopicTable),
    inbox: &Arc<Inbox>,
    me: Owner,
    ops: Vec<(u64, KafkaOp)>,
) {
    for (token, mut op) in ops {
        if let KafkaOp::Produce { topics, routed, .. } = &mut op {
            ingest::produce(
                plugins,
                topics,
                routed,
                config.kafka_batch_decompressed_bytes_max,
            );
        }
        let inbox = inbox.clone();
        let deliver = move |result| {
            inbox.push(Done {
                slot: me.slot,
                generation: me.generation,
                token,
                result: Outcome::Kafka(Box::new(result)),
            })
        };
        let done = Box::new(deliver);
        match op {
            KafkaOp::Group(op) => config.coordinator.submit(op, done),
            KafkaOp::Produce {
                topics: ref named, ..
            } => {
                // The partitions of the topics that exist, found here: the writer only
                // stores, and creates the others.
                let store = &*config.store;
                let known = (named.iter())
                    .map(|t| topics.partitions(store, &t.name).map(<[_]>::to_vec))
                    .collect();
                config.writer.work(Work::Produce { op, known, done });
            }
            op => config.writer.work(Work::Kafka { op, done }),
        }
    }
}

/// Carries out what the MQTT session of connection `me` asked for: stores publishes through
/// the writer (their outcome comes back through the inbox), answers CONNECTs (taking the
/// client id over from another connection first, then loading its session), stores
/// sessions, and keeps the shard's subscriber set.
pub(super) fn mqtt_work(
    config: &ServerConfig,
    shared: &ShardsShared,
    (tail, plugins, topics, pool): MqttParts<'_>,
    me: Owner,
    work: &mut Vec<MqttWork>,
) {
    let mut bound = Vec::new();
    let mut run: Option<PublishRun> = None;
    for item in work.drain(..) {
        let MqttWork::Store {
            token,
            message,
            dedup,
        } = item
        else {
            // What the run holds goes to the writer before anything after it.
            if let Some(run) = run.take() {
                submit_run(config, shared, me, run);
            }
            other_work(config, shared, tail, me, item);
            continue;
        };
        let stores = (&mut run, &mut bound, &mut *pool);
        store(
            config,
            shared,
            me,
            (plugins, topics),
            stores,
            token,
            (message, dedup),
        );
    }
    if let Some(run) = run.take() {
        submit_run(config, shared, me, run);
    }
    if !bound.is_empty() {
        ingest::mqtt_publishes(config, (plugins, topics), bound);
    }
}

/// Carries out what connection `me`'s session asked for besides storing a publish.
fn other_work(
    config: &ServerConfig,
    shared: &ShardsShared,
    tail: &mut MqttTail,
    me: Owner,
    item: MqttWork,
) {
    match item {
        MqttWork::DelayWill {
            client_id,
            due_ms,
            message,
        } => hold_will(shared, me, client_id, due_ms, message),
        MqttWork::Release { client_id, id } => release_qos2(
            config,
            reply_to(shared, me, id.map_or(0, u64::from)),
            client_id,
            id,
        ),
        MqttWork::Connect {
            client_id,
            clean_start,
        } => connect(config, shared, me, client_id, clean_start),
        MqttWork::Load {
            client_id,
            clean_start,
        } => load_session(config, shared, me, client_id, clean_start),
        MqttWork::Save(snapshot) => {
            let record = tail.record(&snapshot, crate::clock::wall_ms());
            config.writer.work(Work::SaveSession {
                client_id: snapshot.client_id,
                record,
                sessions_max: config.mqtt.sessions_max,
            });
        }
        MqttWork::Behind => {
            tail.note(me.slot, &MqttWork::Behind);
            shared.inboxes[me.shard].notify_data();
        }
        MqttWork::ShareJoin { filter, member } => {
            shared.shares.update(|shares| shares.join(&filter, member));
        }
        MqttWork::ShareLeave { filter, member } => {
            shared.shares.update(|shares| shares.leave(&filter, member));
        }
        other => tail.note(me.slot, &other),
    }
}

/// Stores the publish answered by `token`: into the read's current run of plain publishes
/// (the run so far goes to the writer first when this one cannot join it), to its plugin
/// binding's batch, or on its own.
fn store(
    config: &ServerConfig,
    shared: &ShardsShared,
    me: Owner,
    (plugins, topics): (&mut ShardPlugins, &mut TopicTable),
    (run, bound, pool): StoreTo<'_>,
    token: u64,
    (message, dedup): (Box<LogMessage>, Option<Box<DedupKey>>),
) {
    let kafka_topic = weir_core::mqtt_connection::kafka_topic_for(&config.mqtt, &message.topic);
    let binding = plugins.binding_for(&kafka_topic);
    let joins = match binding {
        None => PublishRun::partition_for(config, topics, &kafka_topic, &message, dedup.is_some()),
        Some(_) => None,
    };
    if let Some(current) = run.take_if(|r| joins != Some(r.partition())) {
        submit_run(config, shared, me, current);
    }
    if let Some(partition) = joins {
        let current =
            run.get_or_insert_with(|| PublishRun::new(kafka_topic.into_owned(), partition));
        current.push(token, &message);
        pool.recycle(message);
        // A full run goes now: large messages are not held on the shard in bulk.
        if let Some(full) = run.take_if(|r| r.is_full()) {
            submit_run(config, shared, me, full);
        }
        return;
    }
    let kafka_topic = kafka_topic.into_owned();
    let reply = reply_to(shared, me, token);
    let done: StoreDone = Box::new(move |stored| reply(Outcome::MqttStored(Box::new(stored))));
    let to = (kafka_topic, binding);
    store_or_bind(config, topics, bound, to, (message, dedup), done);
}

/// Stores an MQTT message bound for `kafka_topic`, or, if that topic has a plugin binding
/// (`binding`, looked up by the caller), adds it to `bound` (run through the plugins
/// together afterwards).
fn store_or_bind(
    config: &ServerConfig,
    topics: &mut TopicTable,
    bound: &mut Vec<ingest::BoundPublish>,
    (kafka_topic, binding): (String, Option<Arc<Binding>>),
    (message, dedup): (Box<LogMessage>, Option<Box<DedupKey>>),
    done: StoreDone,
) {
    match binding {
        None => mqtt::publish(config, (topics, kafka_topic), *message, dedup, done),
        Some(binding) => bound.push(ingest::BoundPublish {
            binding,
            kafka_topic,
            message,
            dedup,
            done,
        }),
    }
}

/// Hands a run of connection `me`'s plain publishes to the writer; the outcome comes back
/// as one answer.
fn submit_run(config: &ServerConfig, shared: &ShardsShared, me: Owner, run: PublishRun) {
    let reply = reply_to(shared, me, 0);
    run.submit(config, move |stored| reply(Outcome::MqttStoredRun(stored)));
}

/// Where the result for `token` of connection `me` goes: its shard's inbox.
fn reply_to(shared: &ShardsShared, me: Owner, token: u64) -> impl FnOnce(Outcome) + Send + use<> {
    let inbox = shared.inboxes[me.shard].clone();
    move |result| {
        inbox.push(Done {
            slot: me.slot,
            generation: me.generation,
            token,
            result,
        })
    }
}

/// Holds the will of connection `me` for its delay, unless a new connection has taken its
/// client id over (the session goes on there, and a delayed will is not published). Held
/// under the clients' lock, as a CONNECT cancels wills: a reconnection either finds the will
/// and cancels it, or comes first and is seen here.
fn hold_will(
    shared: &ShardsShared,
    me: Owner,
    client_id: String,
    due_ms: i64,
    message: Box<weir_core::mqtt_kafka::LogMessage>,
) {
    let clients = shared.clients.lock();
    if !clients.taken_from(&client_id, me) {
        shared.wills.hold(client_id, due_ms, message);
    }
    drop(clients);
}

/// Deletes the QoS 2 duplicate-check key of packet `id` (all of the client's with `None`);
/// answers (PUBCOMP) only once the key is durably gone: the client may reuse the identifier
/// after it.
fn release_qos2(
    config: &ServerConfig,
    reply: impl FnOnce(Outcome) + Send + 'static,
    client_id: String,
    id: Option<u16>,
) {
    let done = Box::new(move || {
        if id.is_some() {
            reply(Outcome::MqttReleased);
        }
    });
    config.writer.work(Work::ReleaseQos2 {
        client_id,
        id,
        done,
    });
}

/// A CONNECT of connection `me`: cancels a delayed will of its client id, and either loads
/// the session or waits for the connections holding the id to let go of it (telling the
/// newest of them to close).
fn connect(
    config: &ServerConfig,
    shared: &ShardsShared,
    me: Owner,
    client_id: String,
    clean_start: bool,
) {
    let mut clients = shared.clients.lock();
    shared.wills.cancel(&client_id);
    let claim = clients.claim(&client_id, me);
    drop(clients);
    match claim {
        Claim::Load => load_session(config, shared, me, client_id, clean_start),
        Claim::Wait { close: None } => {}
        Claim::Wait {
            close: Some(previous),
        } => reply_to(shared, previous, 0)(Outcome::TakeOver(client_id)),
    }
}

/// Loads the stored session of `client_id` for connection `me` (with clean start: deletes
/// it).
fn load_session(
    config: &ServerConfig,
    shared: &ShardsShared,
    me: Owner,
    client_id: String,
    clean_start: bool,
) {
    let reply = reply_to(shared, me, 0);
    let done = Box::new(move |loaded: Result<Option<_>, _>| {
        reply(Outcome::MqttSession(loaded.map(|r| r.map(Box::new))))
    });
    config.writer.work(Work::LoadSession {
        client_id,
        clean_start,
        done,
    });
}

/// What a closing MQTT connection leaves: its will and session are stored, and its client id
/// is free again unless another connection has taken it over.
pub(super) fn finish_mqtt(
    config: &ServerConfig,
    shared: &ShardsShared,
    (tail, plugins, topics, pool): MqttParts<'_>,
    me: Owner,
    client_id: Option<String>,
    work: &mut Vec<MqttWork>,
) {
    tail.remove(me.slot);
    mqtt_work(config, shared, (tail, plugins, topics, pool), me, work);
    if let Some(client_id) = client_id {
        shared.clients.lock().leave(&client_id, me);
    }
}

/// MQTT upkeep from a shard's timeout sweep: publishes the wills whose delay is over, and
/// (shard 0, every [`SESSION_EXPIRY_CHECK`]) deletes expired sessions.
pub(super) fn mqtt_upkeep(
    config: &ServerConfig,
    (shared, plugins, topics): (&ShardsShared, &mut ShardPlugins, &mut TopicTable),
    shard: usize,
    next_check: &mut std::time::Instant,
) {
    let wills = shared.wills.due(crate::clock::wall_ms());
    publish_wills(config, (plugins, topics), wills);
    let now = crate::clock::now();
    if shard == 0 && now >= *next_check {
        *next_check = now + SESSION_EXPIRY_CHECK;
        config.writer.work(Work::ExpireSessions);
    }
}

/// Publishes wills whose delay is over, through the plugins of their topics like any publish.
pub(super) fn publish_wills(
    config: &ServerConfig,
    (plugins, topics): (&mut ShardPlugins, &mut TopicTable),
    wills: Vec<weir_core::mqtt_kafka::LogMessage>,
) {
    let mut bound = Vec::new();
    for message in wills {
        let done: StoreDone = Box::new(|_| {});
        let kafka_topic =
            weir_core::mqtt_connection::kafka_topic_for(&config.mqtt, &message.topic).into_owned();
        let message = (Box::new(message), None);
        let binding = plugins.binding_for(&kafka_topic);
        store_or_bind(
            config,
            topics,
            &mut bound,
            (kafka_topic, binding),
            message,
            done,
        );
    }
    if !bound.is_empty() {
        ingest::mqtt_publishes(config, (plugins, topics), bound);
    }
}

/// How often expired MQTT sessions are looked for.
const SESSION_EXPIRY_CHECK: Duration = Duration::from_secs(60);

/// A connection told to let go of `client_id` has submitted what it leaves (or was gone):
/// the connection waiting for the id is told once no earlier one is left.
pub(super) fn let_go(shared: &ShardsShared, client_id: &str) {
    let Some(to) = shared.clients.lock().release(client_id) else {
        return;
    };
    reply_to(shared, to, 0)(Outcome::TakenOver);
}
