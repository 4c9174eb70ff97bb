//! Which handler carries out each [`Work`]: the writer thread runs it through the
//! [`CarryOut`] seam of group commit.

use weir_core::kafka::{KafkaOp, run_op};
use weir_core::log_store::{LogStore, PartitionId, StoreError};
use weir_core::mqtt_connection::Stored;
use weir_mqtt::ReasonCode;

use super::group_commit::{AppendFailure, CarryOut, WriterHandle};
use super::work::{Creation, KafkaDone, OutputFailure, Work};
use super::{mqtt_state, outputs, produce};

impl CarryOut for Work {
    /// Carries the work out on the writer thread; `writer` takes the appends it makes.
    fn run(self: Box<Self>, store: &dyn LogStore, writer: &WriterHandle) {
        match *self {
            Work::Produce { op, known, done } => kafka(store, writer, op, known, done),
            Work::Kafka { op, done } => kafka(store, writer, op, Vec::new(), done),
            Work::Outputs {
                messages,
                creation,
                dedup,
                retained,
                done,
            } => outputs::store(store, writer, (messages, creation), (dedup, retained), done),
            Work::MqttPublish(publish, done) => mqtt_state::publish(store, writer, *publish, done),
            Work::LoadSession {
                client_id,
                clean_start,
                done,
            } => {
                let now = crate::clock::wall_ms();
                mqtt_state::load_session(store, (client_id, clean_start), now, done);
            }
            Work::SaveSession {
                client_id,
                record,
                sessions_max,
            } => mqtt_state::save_session(store, &client_id, &record, sessions_max),
            Work::ExpireSessions => mqtt_state::expire_sessions(store, crate::clock::wall_ms()),
            Work::ReleaseQos2 {
                client_id,
                id,
                done,
            } => mqtt_state::release_qos2(store, &client_id, id, done),
        }
    }

    /// The writer stopped before it could run: every waiter is told it failed.
    fn fail(self: Box<Self>) {
        let stopped = || StoreError::Fatal("the log writer has stopped".into());
        match *self {
            Work::Kafka { op, done } | Work::Produce { op, done, .. } => done(op.failed(stopped())),
            Work::Outputs { done, .. } => done(Err(OutputFailure::Append(AppendFailure::Stopped))),
            Work::MqttPublish(_, done) => done(Stored::plain(ReasonCode::UNSPECIFIED_ERROR, None)),
            Work::LoadSession { done, .. } => done(Err(ReasonCode::SERVER_UNAVAILABLE)),
            Work::SaveSession { client_id, .. } => {
                tracing::warn!(client = %client_id, "MQTT session not stored: the log writer has stopped");
            }
            Work::ReleaseQos2 { client_id, .. } => {
                tracing::warn!(client = %client_id, "QoS 2 state not released: the log writer has stopped");
            }
            Work::ExpireSessions => {}
        }
    }
}

/// A Kafka operation; a Produce with its topics' partitions `known` from the shard where it
/// found them (the rest are found or created here).
fn kafka(
    store: &dyn LogStore,
    writer: &WriterHandle,
    op: KafkaOp,
    known: Vec<Option<Vec<PartitionId>>>,
    done: KafkaDone,
) {
    let KafkaOp::Produce {
        topics,
        create_missing,
        partitions,
        topics_max,
        routed,
        ..
    } = op
    else {
        done(run_op(op, store));
        return;
    };
    let creation = Creation {
        create_missing,
        partitions,
        topics_max,
    };
    produce::run(store, writer, (topics, routed), (creation, known), done);
}
