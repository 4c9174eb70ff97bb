//! A connection's subscriptions, and the members of every shared subscription.

use std::collections::HashMap;

use weir_mqtt::{SubscriptionOptions, topic};

use crate::log_store::PartitionId;
use crate::mqtt_kafka::StoredSubscription;

/// One subscription of a connection.
#[derive(Debug, Clone)]
pub(super) struct Sub {
    /// The filter as subscribed, `$share/{group}/` included.
    pub(super) full: String,
    /// The filter messages are matched against.
    pub(super) filter: String,
    /// The share group of a shared subscription.
    pub(super) group: Option<String>,
    pub(super) options: SubscriptionOptions,
    pub(super) identifier: Option<u32>,
    /// Per partition, the offset the subscription starts at: records below it were stored
    /// before it was made (the shard had not offered them yet) and are not for it.
    pub(super) starts_at: Vec<(PartitionId, i64)>,
    /// The connection's publishes up to this count were read before the subscription was
    /// made: where those still in flight then are stored goes to `skip`.
    pub(super) own_before: u64,
    /// Records of the connection's own publishes made before the subscription, stored after
    /// it: not for it (at most the publishes in flight when it was made).
    pub(super) skip: Vec<(PartitionId, i64)>,
}

impl Sub {
    pub(super) fn new(full: String, options: SubscriptionOptions, identifier: Option<u32>) -> Sub {
        let (group, filter) = match topic::split_shared(&full) {
            Some((group, filter)) => (Some(group.to_owned()), filter.to_owned()),
            None => (None, full.clone()),
        };
        Sub {
            full,
            filter,
            group,
            options,
            identifier,
            starts_at: Vec::new(),
            own_before: 0,
            skip: Vec::new(),
        }
    }

    /// Whether the record at `offset` of `partition` was stored after the subscription was
    /// made (or while it existed).
    pub(super) fn covers(&self, partition: PartitionId, offset: i64) -> bool {
        self.starts_at
            .iter()
            .all(|&(p, start)| p != partition || offset >= start)
            && !self.skip.contains(&(partition, offset))
    }

    pub(super) fn stored(&self) -> StoredSubscription {
        StoredSubscription {
            filter: self.full.clone(),
            options: self.options,
            identifier: self.identifier,
        }
    }
}

/// The members of every shared subscription (`$share/{group}/{filter}`), by the filter as
/// subscribed: connection ids in ascending order, the same on every shard. Each message goes
/// to one member, chosen from its partition and offset, so every shard picks the same one
/// without talking to the others.
#[derive(Debug, Clone, Default)]
pub struct Shares(HashMap<String, Vec<u64>>);

impl Shares {
    /// Adds `member` to the shared subscription `full`.
    pub fn join(&mut self, full: &str, member: u64) {
        let members = self.0.entry(full.to_owned()).or_default();
        if let Err(at) = members.binary_search(&member) {
            members.insert(at, member);
        }
    }

    /// Removes `member` from the shared subscription `full`.
    pub fn leave(&mut self, full: &str, member: u64) {
        if let Some(members) = self.0.get_mut(full) {
            members.retain(|m| *m != member);
            if members.is_empty() {
                self.0.remove(full);
            }
        }
    }

    /// The member that gets the message at `offset` of `partition`.
    pub(super) fn chosen(&self, full: &str, partition: PartitionId, offset: i64) -> Option<u64> {
        let members = self.0.get(full)?;
        // A multiplicative mix, so consecutive offsets of one partition go round the members.
        let mixed = (offset as u64).wrapping_add(u64::from(partition.0).wrapping_mul(0x9E37_79B9));
        members
            .get((mixed % members.len() as u64) as usize)
            .copied()
    }
}
