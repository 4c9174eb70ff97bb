//! The session's actions, as the broker answers them: connect, publish, subscribe,
//! unsubscribe, release, disconnect and close.

use weir_mqtt::{
    Action, ConnectRequest, Publish, QoS, ReasonCode, RetainHandling, Subscribe, Unsubscribe, topic,
};

use super::subscriptions::Sub;
use super::{MqttConnection, MqttWork, RETAINED_SENT_KEPT_MS, packet_id, payload_hash};
use crate::acl::{Access, Client as AclClient};
use crate::auth::{CertificateIdentity, Verdict};
use crate::log_store::{DedupKey, RETAINED_TOPIC_BYTES_MAX};
use crate::mqtt_kafka::{self as mapping, LogMessage};

impl MqttConnection {
    /// Handles what the session asked for.
    pub(super) fn handle_actions(&mut self, out: &mut Vec<u8>, work: &mut Vec<MqttWork>) {
        // Handling may add actions (answers to refused publishes): those wait for the next
        // call. The list's buffer is kept for the next read.
        let mut actions = std::mem::take(&mut self.actions);
        for action in actions.drain(..) {
            match action {
                Action::Connect(request) => {
                    if !self.authenticate(&request) || !self.will_allowed(&request) {
                        continue;
                    }
                    self.client_id = request.client_id.clone();
                    self.will = request.will;
                    let asked = if request.protocol_version.is_v5() {
                        request.session_expiry_interval_s.unwrap_or(0)
                    } else if request.clean_start {
                        0
                    } else {
                        u32::MAX
                    };
                    self.expiry_interval_s = asked.min(self.settings.session_expiry_max_s);
                    self.connecting = Some((request.client_id.clone(), request.clean_start));
                    work.push(MqttWork::Connect {
                        client_id: request.client_id,
                        clean_start: request.clean_start,
                    });
                }
                Action::Publish(publish) => self.publish(publish, out, work),
                Action::Subscribe(subscribe) => self.subscribe(subscribe, out, work),
                Action::Unsubscribe(unsubscribe) => self.unsubscribe(unsubscribe, out, work),
                Action::Released { packet_id } => work.push(MqttWork::Release {
                    client_id: self.client_id.clone(),
                    id: Some(packet_id.get()),
                }),
                Action::Delivered { tag } => {
                    self.unacked.remove(&tag);
                    if !self.behind.is_empty() {
                        work.push(MqttWork::Behind);
                    }
                }
                Action::Disconnected {
                    publish_will,
                    session_expiry_interval_s,
                } => {
                    if let Some(expiry) = session_expiry_interval_s {
                        self.expiry_interval_s = expiry.min(self.settings.session_expiry_max_s);
                    }
                    if !publish_will {
                        self.will = None;
                    }
                    self.end(work);
                }
                Action::Close { reason, .. } => {
                    tracing::debug!(client = %self.client_id, ?reason, "MQTT connection closed by its session");
                    self.end(work);
                }
            }
        }
        if self.actions.is_empty() {
            self.actions = actions;
        }
    }

    /// Checks the CONNECT's credentials; a refused one is answered (CONNACK 0x86 or 0x87,
    /// 3.1.x: 4 or 5) after `mqtt.refused_connect_delay_ms`, and nothing of it is kept.
    fn authenticate(&mut self, request: &ConnectRequest) -> bool {
        let username = request.username.as_deref();
        let verdict = match &self.certificate {
            Some(CertificateIdentity::User(user)) => Verdict::User(user.clone()),
            Some(CertificateIdentity::Refused(why)) => {
                let why = format!("its TLS certificate names no user: {why}");
                return self.refuse(request, ReasonCode::NOT_AUTHORIZED, &why);
            }
            None => (self.settings.auth).authenticate(username, request.password.as_deref()),
        };
        let (reason, why) = match verdict {
            Verdict::User(user) => {
                self.user = Some(user);
                return true;
            }
            Verdict::Anonymous => return true,
            Verdict::BadCredentials => (
                ReasonCode::BAD_USER_NAME_OR_PASSWORD,
                "bad user name or password",
            ),
            Verdict::NotAuthorized => (
                ReasonCode::NOT_AUTHORIZED,
                "anonymous clients are not allowed",
            ),
        };
        self.refuse(request, reason, why)
    }

    /// Whether the ACL lets the client publish its will; if not, the CONNECT is refused
    /// (0x87, 3.1.x: 5), so a will it may not publish is never taken.
    fn will_allowed(&mut self, request: &ConnectRequest) -> bool {
        let (Some(will), Some(acl)) = (&request.will, self.settings.acl.current()) else {
            return true;
        };
        let client = AclClient {
            user: self.user.as_deref(),
            client_id: &request.client_id,
        };
        if acl.allows(client, Access::Write, &will.topic) {
            return true;
        }
        self.user = None;
        let why = format!("the ACL does not let it publish its will to {}", will.topic);
        self.refuse(request, ReasonCode::NOT_AUTHORIZED, &why)
    }

    /// Refuses a CONNECT: answered with `reason` after `mqtt.refused_connect_delay_ms`.
    fn refuse(&mut self, request: &ConnectRequest, reason: ReasonCode, why: &str) -> bool {
        let (client, user) = (
            &request.client_id,
            request.username.as_deref().unwrap_or(""),
        );
        tracing::info!(%client, user, "MQTT connection refused: {why}");
        let at = self.monotonic_ms + self.settings.refused_connect_delay_ms;
        self.refusal = Some((reason, at));
        false
    }

    /// A PUBLISH to store (QoS 0 too): its message, with the time it arrived, and for QoS 2
    /// its duplicate-check key.
    fn publish(&mut self, publish: Publish, out: &mut Vec<u8>, work: &mut Vec<MqttWork>) {
        let token = publish.packet_id.map_or(0, |id| u64::from(id.get()));
        // `$SYS` topics are the broker's own: no client publishes there (Mosquitto's rule).
        let reserved = publish.topic == "$SYS" || publish.topic.starts_with("$SYS/");
        if reserved || !self.may(Access::Write, &publish.topic) {
            // Nothing is stored. MQTT 5 is told (PUBACK/PUBREC 0x87); 3.1.x has no negative
            // acknowledgement, so the publish is acknowledged and dropped, as it allows.
            self.denied += 1;
            tracing::debug!(client = %self.client_id, topic = %publish.topic, "publish denied (ACL or $SYS)");
            let v5 = self.session.protocol_version().is_v5();
            let reason = if v5 {
                ReasonCode::NOT_AUTHORIZED
            } else {
                ReasonCode::SUCCESS
            };
            self.refuse_publish(token, reason, out);
            return;
        }
        if publish.retain && publish.topic.len() > RETAINED_TOPIC_BYTES_MAX {
            self.refuse_publish(token, ReasonCode::QUOTA_EXCEEDED, out);
            return;
        }
        let mut properties = publish.properties;
        properties.topic_alias = None;
        properties.subscription_identifiers.clear();
        self.stores_in_flight += 1;
        self.publishes_handed += 1;
        // A QoS 2 publish is stored at most once, also when the client sends it
        // again on a later connection (it did not see the PUBREC) or after a
        // restart: the log keeps its key until the client's PUBREL.
        let dedup = (publish.qos == QoS::ExactlyOnce)
            .then_some(publish.packet_id)
            .flatten()
            .map(|id| {
                Box::new(DedupKey {
                    owner: self.client_id.clone(),
                    id: id.get(),
                })
            });
        self.used_qos2 |= dedup.is_some();
        let message = self.pool.message(LogMessage {
            topic: publish.topic,
            payload: publish.payload,
            qos: publish.qos,
            retain: publish.retain,
            properties,
            timestamp_ms: self.wall_ms,
        });
        work.push(MqttWork::Store {
            token,
            dedup,
            message,
        });
    }

    /// Answers a publish that will not be stored.
    fn refuse_publish(&mut self, token: u64, reason: ReasonCode, out: &mut Vec<u8>) {
        if let Some(id) = packet_id(token) {
            self.session.published(id, reason, out, &mut self.actions);
        }
    }

    /// Why a subscription to `filter` is refused, if it is: more levels than
    /// `mqtt.topic_levels_max` (0x8F), `mqtt.subscribe_deny` (0x80: refused to every client,
    /// as Paho's interoperability suite expects), or the ACL (0x87: this client may not).
    fn subscription_refusal(&self, filter: &str) -> Option<ReasonCode> {
        if filter
            .split('/')
            .nth(self.settings.limits.topic_levels_max)
            .is_some()
        {
            return Some(ReasonCode::TOPIC_FILTER_INVALID);
        }
        if (self.settings.subscribe_deny.iter()).any(|deny| topic::matches(deny, filter)) {
            return Some(ReasonCode::UNSPECIFIED_ERROR);
        }
        (!self.may_subscribe(filter)).then_some(ReasonCode::NOT_AUTHORIZED)
    }

    fn subscribe(&mut self, subscribe: Subscribe, out: &mut Vec<u8>, work: &mut Vec<MqttWork>) {
        let had_any = !self.subs.is_empty();
        let identifier = subscribe
            .properties
            .subscription_identifiers
            .first()
            .copied();
        let mut codes = Vec::with_capacity(subscribe.subscriptions.len());
        let mut retained_for = Vec::new();
        // Asked once per SUBSCRIBE, and only when it makes a new subscription.
        let mut not_offered = None;
        for subscription in subscribe.subscriptions {
            let mut sub = Sub::new(subscription.filter, subscription.options, identifier);
            if let Some(refused) = self.subscription_refusal(&sub.filter) {
                codes.push(refused);
                continue;
            }
            let options = sub.options;
            if sub.group.is_some() {
                work.push(MqttWork::ShareJoin {
                    filter: sub.full.clone(),
                    member: self.conn_id,
                });
            }
            // A replaced subscription goes on where it was (where it starts, and which of
            // the connection's own earlier publishes it leaves out); a new one takes what is
            // stored from now on, not what was stored before and not offered yet.
            let existed = match self.subs.iter_mut().find(|s| s.full == sub.full) {
                Some(old) => {
                    sub.starts_at = std::mem::take(&mut old.starts_at);
                    sub.own_before = old.own_before;
                    sub.skip = std::mem::take(&mut old.skip);
                    *old = sub.clone();
                    true
                }
                None => {
                    sub.starts_at = not_offered
                        .get_or_insert_with(|| self.edge.not_offered())
                        .clone();
                    // Nor what this connection published before it and the log has not
                    // answered yet: those land later, wherever they land.
                    sub.own_before = self.publishes_handed;
                    self.skip_own_until = self.publishes_handed;
                    self.subs.push(sub.clone());
                    false
                }
            };
            codes.push(ReasonCode(options.qos as u8));
            // Retained messages are not sent for shared subscriptions (MQTT 5 section 4.8.2).
            let send_retained = sub.group.is_none()
                && match options.retain_handling {
                    RetainHandling::SendAtSubscribe => true,
                    RetainHandling::SendAtSubscribeIfNew => !existed,
                    RetainHandling::DoNotSend => false,
                };
            if send_retained {
                retained_for.push(sub);
            }
        }
        self.session.subscribed(subscribe.packet_id, &codes, out);
        if !had_any && !self.subs.is_empty() {
            work.push(MqttWork::Subscribed);
        }
        if self.expiry_interval_s > 0 {
            self.save(work);
        }
        if !retained_for.is_empty() {
            self.send_retained(&retained_for, out);
        }
    }

    /// Sends the retained messages `subs` match, as MQTT requires after a SUBACK.
    fn send_retained(&mut self, subs: &[Sub], out: &mut Vec<u8>) {
        let mut found = Vec::new();
        let scan = self.settings.store.retained(&mut |topic, bytes| {
            if subs.iter().any(|s| topic::matches(&s.filter, topic)) {
                found.extend(mapping::batch_messages(
                    &mapping::kafka_topic(topic),
                    bytes,
                    usize::MAX,
                ));
            }
        });
        if let Err(e) = scan {
            tracing::warn!("cannot read retained messages: {e}");
        }
        let now = self.wall_ms;
        for (_, message) in found {
            if !self.may(Access::Read, &message.topic) {
                continue;
            }
            let matching = subs
                .iter()
                .filter(|s| topic::matches(&s.filter, &message.topic));
            // Retained messages keep their retain flag whatever the subscription says. They
            // are not tracked for redelivery (a new subscription gets them again), and one that
            // does not fit the queue is not sent.
            if let Ok(true) = self.deliver_to(&message, matching, (true, false), now, out, None) {
                self.retained_sent.insert(
                    message.topic.clone(),
                    (message.timestamp_ms, payload_hash(&message.payload)),
                );
                self.retained_sent_until_ms = now + RETAINED_SENT_KEPT_MS;
            }
        }
    }

    fn unsubscribe(
        &mut self,
        unsubscribe: Unsubscribe,
        out: &mut Vec<u8>,
        work: &mut Vec<MqttWork>,
    ) {
        let had_any = !self.subs.is_empty();
        let codes: Vec<ReasonCode> = unsubscribe
            .filters
            .iter()
            .map(
                |filter| match self.subs.iter().position(|s| &s.full == filter) {
                    Some(at) => {
                        let sub = self.subs.remove(at);
                        if sub.group.is_some() {
                            work.push(MqttWork::ShareLeave {
                                filter: sub.full,
                                member: self.conn_id,
                            });
                        }
                        ReasonCode::SUCCESS
                    }
                    None => ReasonCode::NO_SUBSCRIPTION_EXISTED,
                },
            )
            .collect();
        self.session
            .unsubscribed(unsubscribe.packet_id, &codes, out);
        if had_any && self.subs.is_empty() {
            work.push(MqttWork::Unsubscribed);
        }
        if self.expiry_interval_s > 0 {
            self.save(work);
        }
    }
}
