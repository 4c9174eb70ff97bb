//! The group-commit writer: one thread in front of the log that turns many appends into few
//! durable commits.
//!
//! Callers (the shards) [`WriterHandle::submit`] an append with a completion callback
//! and go on. The writer thread takes everything pending, up to `commit_bytes_max`, waits at
//! most `commit_window` for more, and appends the group in one store transaction. In fsync
//! durability a group's completions run only once a sync covers it: the next commit that
//! stores something (the log syncs each commit's data, and with it the previous commit's
//! meta page), or an explicit `sync` as soon as the queue is empty. Under load that is one
//! sync per commit; a lone append waits for two, as with LMDB's default. So a protocol handler
//! that acknowledges in its completion never acknowledges data that is not durable. In relaxed
//! durability completions run right after the commit.
//!
//! Limits and outcomes:
//! - bytes queued and not yet committed are bounded by `queue_bytes_max`; a submit beyond it
//!   is refused at once with [`Busy`] and the append handed back, so the caller can stop
//!   reading from its socket instead of buffering more;
//! - a full store ([`StoreError::Full`]) fails that group's appends and the writer goes on:
//!   appends succeed again once space is freed;
//! - any other store failure is fatal: that group's appends fail, the `on_fatal` hook runs
//!   (the server exits), and the writer completes nothing more; later submits fail with
//!   [`AppendFailure::Stopped`].
//!
//! Besides appends, the writer carries out typed [`Work`] (`writer/work.rs`): Kafka
//! operations (Produce finds its topics, then appends), plugins' outputs, MQTT publishes,
//! sessions and QoS 2 state, each in order with the appends around it, each handled in one
//! place.
//!
//! Files, from the bottom: `group_commit.rs` (the thread and its handle; it runs work through
//! the [`CarryOut`] seam without knowing it), `work.rs` (what work there is), the handlers
//! (`outputs.rs`, `produce.rs`, `mqtt_state.rs`), `dispatch.rs` (which handler each work
//! goes to). This file only names them.
//!
//! Shutdown ([`Writer::shutdown`]) commits everything already submitted, then stops.

mod dispatch;
mod group_commit;
mod mqtt_state;
mod outputs;
mod produce;
mod work;

pub use group_commit::{
    AppendFailure, AppendListener, AppendPhase, Busy, CarryOut, Completion, Writer, WriterConfig,
    WriterHandle, WriterStats,
};
pub use work::{
    Creation, KafkaDone, MqttPublish, OutputFailure, OutputsDone, ReleasedDone, Retained,
    SessionDone, StoreDone, Work,
};
