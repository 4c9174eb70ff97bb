//! iot-sim: a seeded fleet of simulated MQTT devices that measures a broker.
//!
//! A [`Scenario`] (TOML, see `scenarios/factory.toml`) says how many devices publish, on which
//! topic tree, how often (with jitter), with which payload model and QoS mix, and how many
//! subscribers read it all back. [`run`] drives it against any MQTT 3.1.1 broker with the
//! project's own codec (`weir-mqtt`) over plain sockets, and returns a [`Report`]: messages
//! sent, acknowledged and received, what was lost or duplicated, rates, and latency
//! percentiles from HDR histograms.
//!
//! Pacing is open loop: every message has an intended send time fixed by the schedule, not by
//! when the previous one was acknowledged, and latencies are measured from that intended
//! time. A broker that stalls therefore shows up as latency, not as fewer messages.
//!
//! With `kafka_bootstrap` set, a Kafka consumer (librdkafka) also reads the data back from the
//! broker's Kafka side (`kafka_topic`), which measures MQTT-publish-to-Kafka-consume latency
//! and loss.
//!
//! Devices may keep persistent sessions (`clean_session = false`), drop their connections
//! abruptly and reconnect (`reconnect_every_s`, sending what was in flight again), announce
//! themselves on a retained status topic with an `offline` will (`status_topic`), and
//! subscribe to their own command topic, to which a commander publishes (`command_topic`,
//! `commands_per_s`); the report counts reconnections, wills and commands, with command
//! latency.
//!
//! The modules:
//! - `scenario`: the scenario file, its keys parsed and checked;
//! - `rng`: the seeded randomness every choice draws from;
//! - `payload`: the payload models (JSON, CBOR, raw bytes), written and read back;
//! - `device`: a device's connection (session, will, status, command subscription) and the
//!   publishes it has in flight;
//! - `worker`: the threads polling their devices' sockets (pacing, churn,
//!   acknowledgements, commands);
//! - `commander`: the connection publishing commands to the devices;
//! - `receivers`: the subscribers and the Kafka reader;
//! - `report`: the counts and latencies, as JSON and as a table, and the live progress;
//! - [`client`]: the minimal MQTT client they all use.
//!
//! [`run`], here, ties them together.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

pub mod client;
mod commander;
mod device;
mod payload;
mod receivers;
mod report;
mod rng;
mod scenario;
mod worker;

pub use payload::Payload;
pub use report::{KafkaReadBack, Percentiles, Progress, Report};
pub use scenario::Scenario;

use commander::{join_commander, spawn_commander};
use receivers::{join_kafka_reader, join_subscribers, spawn_kafka_reader, spawn_subscribers};
use worker::{join_workers, spawn_workers};

/// Runs `scenario`; `progress` is updated as it goes.
pub fn run(scenario: &Scenario, progress: &Arc<Progress>) -> anyhow::Result<Report> {
    let addr: SocketAddr = scenario
        .broker
        .to_socket_addrs()?
        .next()
        .context("broker address")?;
    let epoch = Instant::now();
    let stop_receiving = Arc::new(AtomicBool::new(false));
    let subscribers = spawn_subscribers(scenario, addr, epoch, &stop_receiving, progress)?;
    // The devices start once the Kafka reader has its partitions.
    let kafka_reader = spawn_kafka_reader(scenario, epoch, &stop_receiving, progress)?;
    let publish_start = Instant::now();
    let publish_until = publish_start + scenario.duration;
    let commander = spawn_commander(scenario, addr, (epoch, publish_until), progress);
    let workers = spawn_workers(scenario, addr, (epoch, publish_until), progress);
    let (fleet, expected) = join_workers(workers)?;
    let commands_sent = join_commander(commander)?;
    let publish_seconds = publish_start.elapsed().min(scenario.duration).as_secs_f64();
    // Deliveries still on their way get the drain time, then the subscribers stop.
    drain(scenario, progress, fleet.sent, kafka_reader.is_some());
    stop_receiving.store(true, Ordering::Release);
    let deliveries = join_subscribers(subscribers, &expected)?;
    let kafka = join_kafka_reader(kafka_reader, &expected)?;
    Ok(Report {
        kafka,
        reconnects: fleet.reconnects,
        status_online: deliveries.status_online,
        wills_received: deliveries.wills_received,
        commands_sent,
        commands_received: fleet.commands_received,
        command_latency_us: Percentiles::of(&fleet.command_latency),
        devices: fleet.devices,
        sent: fleet.sent,
        acked: fleet.acked,
        unacked: fleet.unacked,
        received: deliveries.received,
        duplicates: deliveries.duplicates,
        missing_qos12: deliveries.missing_qos12,
        publish_seconds,
        ack_latency_us: Percentiles::of(&fleet.ack_latency),
        delivery_latency_us: Percentiles::of(&deliveries.latency),
    })
}

/// Waits until the subscribers (each) and the Kafka reader (when `kafka`) have received as
/// many messages as were `sent`, or the scenario's drain time has passed.
fn drain(scenario: &Scenario, progress: &Progress, sent: [u64; 3], kafka: bool) {
    let total = sent.iter().sum::<u64>() * scenario.subscribers as u64;
    let kafka_total = if kafka { sent.iter().sum::<u64>() } else { 0 };
    let deadline = Instant::now() + scenario.drain;
    while (progress.received.load(Ordering::Relaxed) < total
        || progress.kafka_received.load(Ordering::Relaxed) < kafka_total)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
}
