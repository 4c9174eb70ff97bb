//! What every shard of the set shares: the sessions' settings, each shard's inbox and feed
//! of appends, the MQTT client ids and shared subscriptions, delayed wills, and the
//! connection counts the limits apply to.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use weir_core::kafka::KafkaSettings;
use weir_core::mqtt_connection::MqttSettings;

use super::client_ids::ClientIds;
use super::epoll::Waker;
use super::inbox::Inbox;
use super::mqtt::{AppendFeed, DelayedWills, ShareTable, TailStart};
use super::settings::{ServerConfig, ShardMetrics};

/// State every shard shares.
#[derive(Debug)]
pub(super) struct ShardsShared {
    /// What the Kafka sessions of each listener share (the advertised address is known once
    /// bound).
    pub(super) kafka: Vec<Arc<KafkaSettings>>,
    /// What every MQTT session shares.
    pub(super) mqtt: Arc<MqttSettings>,
    /// Per shard: the partitions that grew, for delivery to its MQTT subscribers.
    pub(super) feeds: Vec<Arc<AppendFeed>>,
    /// Per shard: results and messages for it.
    pub(super) inboxes: Vec<Arc<Inbox>>,
    /// The connection each connected MQTT client id is on, and takeovers in progress.
    pub(super) clients: ClientIds,
    /// The members of every MQTT shared subscription.
    pub(super) shares: Arc<ShareTable>,
    /// MQTT wills waiting for their delay.
    pub(super) wills: DelayedWills,
    /// Where each shard's MQTT delivery starts.
    pub(super) tail_start: TailStart,
    /// Random per process, mixed into each connection's seed, so client ids MQTT assigns
    /// differ from those of earlier runs (whose sessions may still be stored).
    pub(super) seed_base: u64,
    pub(super) stop: AtomicBool,
    pub(super) open_total: AtomicU32,
    /// Open connections per listener, indexed like `ServerConfig::listeners`.
    pub(super) open_per_listener: Vec<AtomicU32>,
}

impl ShardsShared {
    /// Counts a new connection on `listener` against both limits; false (and nothing
    /// counted) if either is reached.
    pub(super) fn admit(&self, listener: usize, config: &ServerConfig) -> bool {
        let take = |counter: &AtomicU32, max: u32| {
            counter
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < max).then_some(n + 1)
                })
                .is_ok()
        };
        if !take(&self.open_total, config.connections_max) {
            return false;
        }
        let limit = config.listeners[listener].connections_max;
        if !take(&self.open_per_listener[listener], limit) {
            self.open_total.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Uncounts a closed connection.
    pub(super) fn release(&self, listener: usize) {
        self.open_total.fetch_sub(1, Ordering::AcqRel);
        self.open_per_listener[listener].fetch_sub(1, Ordering::AcqRel);
    }
}

/// The shard-creation arguments both loops take.
pub(super) type ShardArgs = (
    usize,
    Vec<TcpListener>,
    Arc<Waker>,
    Arc<ShardsShared>,
    Arc<[ShardMetrics]>,
    Arc<ServerConfig>,
);
