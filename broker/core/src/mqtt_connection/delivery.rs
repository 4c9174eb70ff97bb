//! Offering the log's messages to the connection, live or while it catches up.

use std::collections::HashMap;

use weir_mqtt::{DeliverError, Delivery, MessageRef, Properties, ProtocolVersion, QoS, topic};

use super::subscriptions::{Shares, Sub};
use super::{MqttConnection, Offer, payload_hash};
use crate::acl::Access;
use crate::log_store::PartitionId;
use crate::mqtt_kafka::LogMessage;

impl MqttConnection {
    /// Whether live delivery of `partition` at `offset` is this connection's: not while it
    /// catches up on the partition, nor what it already got while catching up.
    pub fn takes_live(&self, partition: PartitionId, offset: i64) -> bool {
        !self.behind.contains_key(&partition)
            && self
                .floor
                .get(&partition)
                .is_none_or(|floor| offset >= *floor)
    }

    /// Offers the message at `offset` of `partition`. `room` is false when the connection's
    /// unsent bytes are at their limit; `backlog` is true while catching up (QoS 0 messages
    /// are not delivered from the backlog).
    #[allow(clippy::too_many_arguments)]
    pub fn offer(
        &mut self,
        message: &LogMessage,
        partition: PartitionId,
        offset: i64,
        now_wall_ms: i64,
        room: bool,
        backlog: bool,
        shares: &Shares,
        out: &mut Vec<u8>,
    ) -> Offer {
        // The ACL in force now decides, also for subscriptions made before it changed and
        // sessions stored before (Mosquitto's CVE-2021-34434 kept a revoked one delivering).
        if !self.session.is_connected() || !self.may(Access::Read, &message.topic) {
            return Offer::Skipped;
        }
        if self.sent_as_retained(message, now_wall_ms) {
            return Offer::Skipped;
        }
        let subs = std::mem::take(&mut self.subs);
        let me = self.conn_id;
        let own = match self.own.iter().position(|at| *at == (partition, offset)) {
            Some(i) => self.own.remove(i).is_some(),
            None => false,
        };
        let matching = subs.iter().filter(|s| {
            topic::matches(&s.filter, &message.topic)
                && s.covers(partition, offset)
                && (s.group.is_none() || shares.chosen(&s.full, partition, offset) == Some(me))
                && !(own && s.options.no_local)
        });
        let granted = matching.clone().map(|s| s.options.qos).max();
        let offer = match granted.map(|g| g.min(message.qos)) {
            None => Offer::Skipped,
            Some(QoS::AtMostOnce) if backlog => Offer::Skipped,
            Some(QoS::AtMostOnce) if !room => Offer::Dropped,
            // A client that does not read gets no more than the write buffer: the rest waits
            // in the log.
            Some(_) if !room => Offer::Full,
            Some(_) => {
                let rap = matching.clone().any(|s| s.options.retain_as_published);
                let retain = rap && message.retain;
                let tag = self.next_tag;
                // Sent to an earlier connection of the session: DUP=1 (QoS 1 and 2).
                let dup = self
                    .sent
                    .get(&partition)
                    .is_some_and(|below| offset < *below);
                let flags = (retain, dup);
                match self.deliver_to(message, matching, flags, now_wall_ms, out, Some(tag)) {
                    Ok(true) => {
                        if message.qos != QoS::AtMostOnce && granted != Some(QoS::AtMostOnce) {
                            self.next_tag += 1;
                            self.unacked.insert(tag, (partition, offset));
                            let below = self.sent.entry(partition).or_insert(0);
                            *below = (*below).max(offset + 1);
                        }
                        Offer::Taken
                    }
                    Ok(false) => Offer::Skipped,
                    Err(()) => Offer::Full,
                }
            }
        };
        self.subs = subs;
        offer
    }

    /// Whether `message` was published before a SUBSCRIBE and sent with it as the retained
    /// message (the record of those is dropped once its time is over).
    fn sent_as_retained(&mut self, message: &LogMessage, now_wall_ms: i64) -> bool {
        if !message.retain || self.retained_sent.is_empty() {
            return false;
        }
        if now_wall_ms > self.retained_sent_until_ms {
            self.retained_sent = HashMap::new();
            return false;
        }
        self.retained_sent.get(&message.topic).is_some_and(|sent| {
            message.timestamp_ms < sent.0
                || (message.timestamp_ms, payload_hash(&message.payload)) == *sent
        })
    }

    /// Delivers `message` once at the highest QoS among `matching`, with their subscription
    /// identifiers and the `retain` and `dup` flags; `tag` tracks a QoS 1 or 2 delivery.
    /// Ok(false): nothing to send (expired, discarded); Err: the queue is full.
    pub(super) fn deliver_to<'s>(
        &mut self,
        message: &LogMessage,
        matching: impl Iterator<Item = &'s Sub> + Clone,
        (retain, dup): (bool, bool),
        now_wall_ms: i64,
        out: &mut Vec<u8>,
        tag: Option<u64>,
    ) -> Result<bool, ()> {
        let Some(granted) = matching.clone().map(|s| s.options.qos).max() else {
            return Ok(false);
        };
        let expiry = message.expiry_left_s(now_wall_ms);
        if expiry == Some(0) {
            return Ok(false);
        }
        // MQTT 5 properties as stored, unless the expiry counted down or subscription
        // identifiers are added (a copy then); none on 3.1.x.
        let none = Properties::default();
        let changed;
        let identified = matching.clone().any(|s| s.identifier.is_some());
        let properties = match self.session.protocol_version() {
            ProtocolVersion::V5 if identified || expiry.is_some() => {
                let mut p = message.properties.clone();
                p.message_expiry_interval = expiry;
                p.subscription_identifiers = matching.filter_map(|s| s.identifier).collect();
                changed = p;
                &changed
            }
            ProtocolVersion::V5 => &message.properties,
            _ => &none,
        };
        let outgoing = MessageRef {
            topic: &message.topic,
            payload: &message.payload,
            qos: granted.min(message.qos),
            retain,
            properties,
            dup,
        };
        match self.session.deliver_tagged(outgoing, tag.unwrap_or(0), out) {
            Ok(Delivery::Sent(_) | Delivery::Queued) => Ok(true),
            Ok(Delivery::Discarded) | Err(DeliverError::NotConnected) => Ok(false),
            Err(DeliverError::QueueFull) => Err(()),
            Err(DeliverError::Invalid(e)) => {
                tracing::debug!(topic = %message.topic, "message not deliverable: {e}");
                Ok(false)
            }
        }
    }

    /// Partitions this connection catches up on, with the next offset to read.
    pub fn behind(&self) -> Vec<(PartitionId, i64)> {
        self.behind.iter().map(|(p, o)| (*p, *o)).collect()
    }

    /// Live delivery of `partition` hit the queue limit at `offset`: read it from there.
    pub fn fall_behind(&mut self, partition: PartitionId, offset: i64) {
        self.behind.entry(partition).or_insert(offset);
    }

    /// Catching up on `partition` reached `next`; `caught_up` when live delivery takes over.
    pub fn advance(&mut self, partition: PartitionId, next: i64, caught_up: bool) {
        if caught_up {
            self.behind.remove(&partition);
            self.floor.insert(partition, next);
        } else {
            self.behind.insert(partition, next);
        }
    }
}
