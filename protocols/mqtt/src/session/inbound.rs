//! Every packet after the CONNECT was accepted: publishes, acknowledgements, subscriptions,
//! pings and the client's DISCONNECT.

use super::*;

impl ServerSession {
    /// Every packet after the CONNECT was accepted.
    pub(super) fn on_packet(
        &mut self,
        packet: Packet,
        out: &mut Vec<u8>,
        actions: &mut Vec<Action>,
    ) -> Result<(), SessionError> {
        let v5 = self.version.is_v5();
        match packet {
            Packet::Publish(publish) => self.on_publish(publish, out, actions),
            Packet::PubAck(ack) => {
                let tag = self.final_ack(ack.packet_id.get(), Outbound::Qos1Sent, out)?;
                actions.extend(tag.map(|tag| Action::Delivered { tag }));
                Ok(())
            }
            Packet::PubRec(rec) => {
                let id = rec.packet_id.get();
                match self.outbound.get(&id).copied() {
                    Some((Outbound::Qos2Sent, tag)) if rec.reason_code.is_error() => {
                        // A failed PUBREC ends the exchange (MQTT 5 section 4.3.3).
                        actions.push(Action::Delivered { tag });
                        self.release(id, out);
                    }
                    Some((state @ (Outbound::Qos2Sent | Outbound::Qos2Released), tag)) => {
                        if state == Outbound::Qos2Sent {
                            actions.push(Action::Delivered { tag });
                        }
                        self.outbound.insert(id, (Outbound::Qos2Released, tag));
                        self.send(&Packet::PubRel(PubResponse::new(rec.packet_id)), out);
                    }
                    Some((Outbound::Qos1Sent, _)) => {
                        return Err(protocol(
                            ReasonCode::PROTOCOL_ERROR,
                            "PUBREC for a QoS 1 publish",
                        ));
                    }
                    None => {
                        let mut rel = PubResponse::new(rec.packet_id);
                        if v5 {
                            rel.reason_code = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
                        }
                        self.send(&Packet::PubRel(rel), out);
                    }
                }
                Ok(())
            }
            Packet::PubComp(comp) => {
                self.final_ack(comp.packet_id.get(), Outbound::Qos2Released, out)?;
                Ok(())
            }
            Packet::PubRel(rel) => {
                let id = rel.packet_id.get();
                match self.inbound.get(&id) {
                    // Also an identifier this connection never saw: a resumed session's
                    // exchange from an earlier connection, which the broker may know.
                    Some(Inbound::Qos2Stored) | None => {
                        self.inbound.insert(id, Inbound::Qos2Releasing);
                        actions.push(Action::Released {
                            packet_id: rel.packet_id,
                        });
                    }
                    // A retransmission while the broker is on it: answered once, later.
                    Some(Inbound::Qos2Releasing) => {}
                    Some(_) => {
                        return Err(protocol(ReasonCode::PROTOCOL_ERROR, "PUBREL before PUBREC"));
                    }
                }
                Ok(())
            }
            Packet::Subscribe(subscribe) => {
                let count = subscribe.subscriptions.len();
                self.add_pending(subscribe.packet_id, true, count)?;
                actions.push(Action::Subscribe(subscribe));
                Ok(())
            }
            Packet::Unsubscribe(unsubscribe) => {
                let count = unsubscribe.filters.len();
                self.add_pending(unsubscribe.packet_id, false, count)?;
                actions.push(Action::Unsubscribe(unsubscribe));
                Ok(())
            }
            Packet::PingReq => {
                self.send(&Packet::PingResp, out);
                Ok(())
            }
            Packet::Disconnect(disconnect) => {
                let expiry = disconnect.properties.session_expiry_interval;
                if self.session_expiry_zero && expiry.is_some_and(|s| s > 0) {
                    // MQTT 5 section 3.14.2.2.2.
                    return Err(protocol(
                        ReasonCode::PROTOCOL_ERROR,
                        "DISCONNECT sets a session expiry after CONNECT set none",
                    ));
                }
                self.state = State::Closed;
                actions.push(Action::Disconnected {
                    publish_will: disconnect.reason_code != ReasonCode::SUCCESS,
                    session_expiry_interval_s: expiry,
                });
                Ok(())
            }
            Packet::Connect(_) => Err(protocol(ReasonCode::PROTOCOL_ERROR, "second CONNECT")),
            Packet::Auth(_) => Err(protocol(
                ReasonCode::PROTOCOL_ERROR,
                "AUTH (enhanced authentication is not supported)",
            )),
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                Err(protocol(
                    ReasonCode::PROTOCOL_ERROR,
                    "server-to-client packet from the client",
                ))
            }
        }
    }

    /// A PUBACK (`ends` QoS 1) or PUBCOMP (`ends` a released QoS 2): frees the exchange it
    /// ends and returns its tag. One for an exchange in another state is a protocol error;
    /// one for no exchange too in MQTT 5 (3.1.1 cannot be told why, and a stale one changes
    /// nothing there).
    fn final_ack(
        &mut self,
        id: u16,
        ends: Outbound,
        out: &mut Vec<u8>,
    ) -> Result<Option<u64>, SessionError> {
        match self.outbound.get(&id).copied() {
            Some((state, tag)) if state == ends => {
                self.release(id, out);
                Ok(Some(tag))
            }
            None if !self.version.is_v5() => Ok(None),
            found => {
                let why = match found {
                    Some(_) => "an acknowledgement of the wrong type",
                    None => "an acknowledgement for a packet identifier not awaiting one",
                };
                Err(protocol(ReasonCode::PROTOCOL_ERROR, why))
            }
        }
    }

    pub(super) fn on_publish(
        &mut self,
        mut publish: Publish,
        out: &mut Vec<u8>,
        actions: &mut Vec<Action>,
    ) -> Result<(), SessionError> {
        if let Some(alias) = publish.properties.topic_alias.take() {
            if alias == 0 || alias > self.limits.topic_alias_max {
                return Err(protocol(
                    ReasonCode::TOPIC_ALIAS_INVALID,
                    "topic alias above the maximum",
                ));
            }
            let slot = usize::from(alias - 1);
            if publish.topic.is_empty() {
                match self.aliases.get(slot) {
                    Some(Some(topic)) => publish.topic.clone_from(topic),
                    // MQTT 5 section 3.3.2.3.4: an unknown alias is a Protocol Error.
                    _ => {
                        return Err(protocol(
                            ReasonCode::PROTOCOL_ERROR,
                            "topic alias used before it was set",
                        ));
                    }
                }
            } else {
                if self.aliases.len() <= slot {
                    self.aliases.resize(slot + 1, None);
                }
                self.aliases[slot] = Some(publish.topic.clone());
            }
        }
        if publish
            .topic
            .split('/')
            .nth(self.limits.topic_levels_max)
            .is_some()
        {
            return Err(protocol(
                ReasonCode::TOPIC_NAME_INVALID,
                "a topic with more levels than mqtt.topic_levels_max",
            ));
        }
        if crate::topic::is_shared_filter(&publish.topic) {
            // `$share/...` names shared subscriptions, never a topic (MQTT 5 section 4.8.2).
            return Err(protocol(
                ReasonCode::TOPIC_NAME_INVALID,
                "a publish to a $share/ topic",
            ));
        }
        if publish.properties.payload_format_indicator == Some(true)
            && std::str::from_utf8(&publish.payload).is_err()
        {
            return Err(protocol(
                ReasonCode::PAYLOAD_FORMAT_INVALID,
                "payload marked UTF-8 is not UTF-8",
            ));
        }
        let Some(packet_id) = publish.packet_id else {
            actions.push(Action::Publish(publish));
            return Ok(());
        };
        let id = packet_id.get();
        let qos2 = publish.qos == QoS::ExactlyOnce;
        match (self.inbound.get(&id), qos2) {
            // A copy while the broker stores the first: acknowledged with it (each copy gets
            // its PUBACK or PUBREC, MQTT 4.3.3; nothing is stored twice).
            (Some(Inbound::Qos1Storing), false) | (Some(Inbound::Qos2Storing), true) => {
                let copies = self.copies.entry(id).or_insert(0);
                *copies = copies.saturating_add(1);
                Ok(())
            }
            (Some(Inbound::Qos2Stored), true) => {
                self.send(&Packet::PubRec(PubResponse::new(packet_id)), out);
                Ok(())
            }
            (Some(Inbound::Qos2Releasing), _) => Err(protocol(
                ReasonCode::PROTOCOL_ERROR,
                "packet identifier reused before PUBCOMP",
            )),
            (Some(_), _) => Err(protocol(
                ReasonCode::PROTOCOL_ERROR,
                "packet identifier reused with another QoS",
            )),
            (None, _) => {
                if self.version.is_v5()
                    && self.inbound.len() >= usize::from(self.limits.receive_maximum)
                {
                    // 3.1.x input is held by `must_hold` instead.
                    return Err(protocol(
                        ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
                        "more unacknowledged QoS 1 and 2 publishes than the receive maximum",
                    ));
                }
                let state = if qos2 {
                    Inbound::Qos2Storing
                } else {
                    Inbound::Qos1Storing
                };
                self.inbound.insert(id, state);
                actions.push(Action::Publish(publish));
                Ok(())
            }
        }
    }
}
