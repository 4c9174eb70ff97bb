//! A simulated device: its connection (a clean or persistent session, an `offline` will, a
//! retained `online` status, its command subscription), the publishes it has in flight and
//! the bytes it has yet to write, and the QoS mix its publishes draw from.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::SocketAddr;

use anyhow::bail;
use weir_mqtt::{Packet, PacketId, PubResponse, Publish, QoS};

use crate::client::{Conn, V};
use crate::scenario::Scenario;

/// One device of a worker, on its own connection.
pub(crate) struct Device {
    pub(crate) number: u32,
    pub(crate) conn: Conn,
    pub(crate) topic: String,
    pub(crate) seq: u32,
    next_packet_id: u16,
    /// Packet id -> QoS 1 and 2 publishes not yet completed.
    pub(crate) in_flight: HashMap<u16, InFlight>,
    /// Bytes not yet written.
    pub(crate) pending: Vec<u8>,
    /// When the device next drops its connection (ns since the epoch; `u64::MAX`: never).
    pub(crate) next_churn_ns: u64,
    /// Commands received (their sequence numbers).
    pub(crate) commands: HashSet<u32>,
}

/// A QoS 1 or 2 publish on its way.
pub(crate) struct InFlight {
    /// Its intended send time, ns since the epoch.
    pub(crate) at: u64,
    /// The PUBLISH again, with DUP set, for a reconnection.
    again: Vec<u8>,
    /// QoS 2: PUBREC came and PUBREL was sent.
    pub(crate) released: bool,
}

/// The packet id a device's status publish uses (not tracked for acknowledgement).
const STATUS_PACKET_ID: u16 = u16::MAX;

/// Connects device `number`: its session kind, its will and retained `online` status, its
/// command subscription.
pub(crate) fn connect_device(
    scenario: &Scenario,
    addr: SocketAddr,
    number: u32,
) -> anyhow::Result<Conn> {
    let id = format!("{}-{number}", scenario.client_id_prefix);
    let status = scenario
        .status_topic
        .as_ref()
        .map(|t| t.replace("{device}", &number.to_string()));
    let will = status.as_ref().map(|topic| weir_mqtt::Will {
        topic: topic.clone(),
        payload: b"offline".to_vec(),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: Default::default(),
    });
    let mut conn = Conn::connect_with(addr, &id, scenario.clean_session, will)?;
    // A resumed session has the subscription (and may be delivering queued commands, which
    // waiting for a SUBACK would skip).
    if let Some(topic) = &scenario.command_topic
        && !conn.session_present
    {
        conn.subscribe(
            &topic.replace("{device}", &number.to_string()),
            QoS::AtLeastOnce,
        )?;
    }
    if let Some(topic) = status {
        conn.send(&Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: true,
            topic,
            packet_id: PacketId::new(STATUS_PACKET_ID),
            properties: Default::default(),
            payload: b"online".to_vec(),
        }))?;
    }
    conn.stream.set_nonblocking(true)?;
    Ok(conn)
}

/// The QoS of a publish, from a draw `unit` in [0, 1) and the weights of QoS 0, 1 and 2.
pub(crate) fn pick_qos(weights: [f64; 3], unit: f64) -> QoS {
    let weight_sum: f64 = weights.iter().sum();
    let pick = unit * weight_sum;
    if pick < weights[0] {
        QoS::AtMostOnce
    } else if pick < weights[0] + weights[1] {
        QoS::AtLeastOnce
    } else {
        QoS::ExactlyOnce
    }
}

impl Device {
    /// Device `number` on `conn`, publishing on `topic`, which drops its connection first at
    /// `next_churn_ns`.
    pub(crate) fn new(number: u32, conn: Conn, topic: String, next_churn_ns: u64) -> Device {
        Device {
            number,
            conn,
            topic,
            seq: 0,
            next_packet_id: 1,
            in_flight: HashMap::new(),
            pending: Vec::new(),
            next_churn_ns,
            commands: HashSet::new(),
        }
    }

    /// The next packet id neither in flight nor the status publish's.
    pub(crate) fn take_packet_id(&mut self) -> PacketId {
        let mut id = self.next_packet_id;
        while self.in_flight.contains_key(&id) || id == STATUS_PACKET_ID {
            id = id.checked_add(1).unwrap_or(1);
        }
        self.next_packet_id = id.checked_add(1).unwrap_or(1);
        PacketId::new(id).unwrap_or(PacketId::MIN)
    }

    /// Queues `publish` for writing; one with a packet id (QoS 1 or 2) is also in flight
    /// from its intended send time `at` until acknowledged, with a DUP copy kept for a
    /// reconnection.
    pub(crate) fn queue_publish(&mut self, mut publish: Publish, at: u64) -> anyhow::Result<()> {
        if let Some(id) = publish.packet_id {
            publish.dup = true;
            let mut again = Vec::new();
            Packet::Publish(publish.clone()).encode(V, &mut again)?;
            publish.dup = false;
            self.in_flight.insert(
                id.get(),
                InFlight {
                    at,
                    again,
                    released: false,
                },
            );
        }
        Packet::Publish(publish).encode(V, &mut self.pending)?;
        Ok(())
    }

    /// Drops the connection without DISCONNECT (the broker publishes the will), connects
    /// again and queues what was in flight again: PUBREL for the QoS 2 publishes already
    /// released, the PUBLISH with DUP set for the rest.
    pub(crate) fn reconnect(
        &mut self,
        scenario: &Scenario,
        addr: SocketAddr,
    ) -> anyhow::Result<()> {
        let _ = self.conn.stream.shutdown(std::net::Shutdown::Both);
        self.conn = connect_device(scenario, addr, self.number)?;
        self.pending.clear();
        for (id, flight) in &self.in_flight {
            if flight.released {
                Packet::PubRel(PubResponse::new(
                    PacketId::new(*id).unwrap_or(PacketId::MIN),
                ))
                .encode(V, &mut self.pending)?;
            } else {
                self.pending.extend_from_slice(&flight.again);
            }
        }
        Ok(())
    }

    /// Writes what is pending until the socket would block.
    pub(crate) fn flush(&mut self) -> anyhow::Result<()> {
        while !self.pending.is_empty() {
            match self.conn.stream.write(&self.pending) {
                Ok(0) => bail!("the broker closed a device's connection"),
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Ends the session with a DISCONNECT (blocking), so the broker publishes no will;
    /// errors are ignored because the run is over.
    pub(crate) fn disconnect(&mut self) {
        let _ = self.conn.stream.set_nonblocking(false);
        let _ = self
            .conn
            .send(&Packet::Disconnect(weir_mqtt::Disconnect::new(
                weir_mqtt::ReasonCode::SUCCESS,
            )));
    }
}
