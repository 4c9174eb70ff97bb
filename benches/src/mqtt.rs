//! `weir-bench mqtt`: MQTT publishes through the real `weir` process and through Mosquitto,
//! side by side in one run, in the shapes of issue 19 (`--shapes` picks some):
//!
//! - **one-to-one**: 1 publisher on `bench/0` to 1 subscriber of `bench/0` (exact topic),
//!   pipelined (as fast as the broker takes them);
//! - **four-to-one**: `--publishers` (4) publishers on `bench/<n>` to 1 `bench/#` subscriber
//!   (wildcard), pipelined;
//! - **fan-out**: 1 publisher on `bench/0` to `--fan-out` (100) subscriber connections of
//!   `bench/0`, pipelined, `--messages / --fan-out` published (so `--messages` deliveries);
//!   msg/s counts every delivery;
//! - **fixed-rate**: 1 publisher to 1 subscriber at each of `--rates` (1,000 and 10,000 msg/s)
//!   for `--fixed-seconds`: publish-to-delivery latency p50 / p99 / p99.9 with coordinated
//!   omission corrected (message `i` is due at `base + i / rate`, carries `i` in its first 8
//!   payload bytes, and its latency is its delivery time less that due time, so a send held
//!   back, by the generator or by the QoS 1 window, counts against it; publisher and
//!   subscriber are threads of this process sharing one `Instant` base), and broker CPU per
//!   message at that rate;
//! - **fleet**: an iot-sim fleet of `--fleet-devices` (10,000) devices, one connection each,
//!   at 1 msg/s each on `fleet/<n>/t`, one `fleet/#` subscriber and, on Weir only (Mosquitto
//!   has no Kafka side), iot-sim's Kafka consumer reading topic `fleet` back: a
//!   cost-per-message measurement, broker and generator CPU per published message over at
//!   least `--fleet-seconds` once the fleet is connected, on schedule and read (`fleet`).
//!
//! Each at QoS 0 and QoS 1 (publishers and subscribers alike; the fleet through iot-sim's QoS
//! mix). Pipelined QoS 1 publishers keep at most `--window` (1,000) publishes unacknowledged.
//!
//! The generator of every shape but the fleet is raw sockets (`raw`): PUBLISH frames encoded
//! once and patched in place, written in 64 KiB batches; subscribers parse frames with a
//! minimal fixed-header parser over reusable buffers and answer PUBACKs from a reusable
//! buffer; nothing is decoded or allocated per message. `iot_sim::client::Conn` does the
//! CONNECT and SUBSCRIBE handshakes only. The fleet's devices and Kafka consumer are the
//! `iot-sim` crate's library (`iot_sim::run`), its subscriber the raw one.
//!
//! Brokers, each started fresh for each run: Weir twice, with `storage.durability = "fsync"`
//! (a PUBACK only once the message is on disk) and `"relaxed"` (once the commit reaches the
//! page cache), one shard (`WEIR_SERVER_SHARDS=1`) that pins itself to CPU 0 (its writer
//! thread is not pinned), everything else default but, for the fleet, its connection limits
//! (10,000 MQTT connections by default) raised above the fleet's size; with `--acl` also Weir
//! fsync under an access-control list granting `bench/#` and `fleet/#`; Mosquitto pinned to
//! CPU 0 with `persistence false` (memory only, so an in-memory baseline, not a durable one),
//! no queue or in-flight limits (`max_queued_messages 0`, `max_queued_bytes 0`,
//! `max_inflight_messages 0`: its default queue of 1,000 would drop QoS 1 messages to a slow
//! subscriber) and its other defaults (Nagle's algorithm left on, as a new user has it). The
//! generator pins itself to CPU 1 (its threads, librdkafka's too, inherit it): on a 2-core
//! machine broker and generator share the machine's cores.
//!
//! Per run: messages delivered per second (pipelined: from the first publish to the last
//! delivery, every subscriber's deliveries counted), deliveries lost (QoS 0 may drop; QoS 1
//! must not), the broker's CPU time per message (user + system of every thread, from
//! `/proc/<pid>/stat`, over the run; per delivery in fan-out, per published message in the
//! fleet), and the generator's (this process's, `getrusage(RUSAGE_SELF)`, every thread), so a
//! reader sees whether the generator could have been the bottleneck. Brokers alternate within
//! each round (every broker runs a case before the next case starts); one Markdown table of
//! medians per shape, then the ratios Weir / Mosquitto.
//!
//! `measure` and `measure_over` are the older client (publishers and subscriber on
//! `iot_sim::client::Conn`, any transport) that `weir-bench tls`, `plugins` and `suite` use.
//! The process raises its open-file limit to the hard limit (the brokers inherit it).

mod brokers;
mod fleet;
mod raw;
mod report;
mod settings;
mod shapes;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use iot_sim::client::{Conn, V};
use weir_mqtt::{Packet, PubResponse, Publish, QoS};

pub(crate) use brokers::{Target, raise_fd_limit, start_mosquitto, start_with, which};
use report::Results;
use settings::Case;
pub use settings::{MqttShapes, Shape};

use crate::server::{clock_ticks_per_s, cpu_ticks, weir_binary};

/// Settings of one run of [`measure`] (the older client).
#[derive(Debug, Clone)]
pub struct MqttBench {
    /// Messages per run, all publishers together.
    pub messages: usize,
    /// Publisher connections.
    pub publishers: usize,
    /// QoS 1 publishes in flight per publisher.
    pub window: usize,
}

/// One run's figures (of [`measure`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Run {
    /// Messages delivered per second.
    pub(crate) messages_per_s: f64,
    /// Messages not delivered.
    pub(crate) lost: usize,
    /// Broker CPU time per message, microseconds.
    pub(crate) cpu_us_per_message: f64,
}

/// Runs every case of `bench` on every broker, round after round, then prints the report.
pub fn run(bench: &MqttShapes) -> anyhow::Result<()> {
    let weir = weir_binary()?;
    let mosquitto = which("mosquitto");
    // SAFETY: sysconf with a valid name has no memory effects.
    let cores = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    weir::shard::pin_to_cpu(1);
    let open_files = raise_fd_limit();
    println!(
        "mqtt benchmark: brokers on CPU 0 (Weir's shard pinned, its other threads not; Mosquitto \
         pinned), the load generator on CPU 1: broker and generator share this machine's {cores} \
         CPUs. Payload {} B, QoS 1 window {} per publisher, {} messages per pipelined run, \
         open-file limit {open_files}",
        bench.payload_bytes, bench.window, bench.messages
    );
    let mut brokers = vec!["weir fsync", "weir relaxed"];
    if bench.acl {
        brokers.push("weir fsync acl");
    }
    match &mosquitto {
        Some(path) => {
            println!(
                "peer: {path} (persistence false, no queue or in-flight limits, otherwise defaults)"
            );
            brokers.push("mosquitto");
        }
        None => println!("peer: mosquitto not found (apt-get install mosquitto); Weir only"),
    }
    let cases = Case::all(bench);
    let fleet = cases.iter().any(|c| c.shape == Shape::Fleet);
    if fleet && open_files < bench.fleet_devices as u64 + 64 {
        println!(
            "warning: {open_files} open files allowed, the fleet needs {} and more",
            bench.fleet_devices
        );
    }
    // Weir's connection limits (10,000 MQTT, 20,000 in all by default) raised for the fleet.
    let limit = (bench.fleet_devices + 100).max(20_000).to_string();
    let fleet_env = [
        ("WEIR_MQTT_CONNECTIONS_MAX", limit.as_str()),
        ("WEIR_SERVER_CONNECTIONS_MAX", limit.as_str()),
    ];
    let mut results = Results::new(&cases, &brokers);
    for round in 0..bench.rounds {
        for (c, case) in cases.iter().enumerate() {
            for (b, name) in brokers.iter().enumerate() {
                let dir = tempfile::tempdir()?;
                let env: &[(&str, &str)] = if case.shape == Shape::Fleet {
                    &fleet_env
                } else {
                    &[]
                };
                let target = start_with(name, &weir, mosquitto.as_deref(), dir.path(), env)?;
                let sample = match case.shape {
                    Shape::Fleet => fleet::fleet(&target, case.qos, bench),
                    Shape::FixedRate => shapes::fixed_rate(&target, case, bench),
                    _ => shapes::pipelined(&target, case, bench),
                }
                .with_context(|| format!("{} on {name}", case.label()))?;
                let latency = sample.latency_ms.map_or(String::new(), |[p50, p99, p999]| {
                    format!(", latency p50 {p50:.3} / p99 {p99:.3} / p99.9 {p999:.3} ms")
                });
                let kafka = sample.kafka.map_or(String::new(), |(per_s, lost)| {
                    format!(", Kafka {per_s:.0} msg/s ({lost} lost)")
                });
                println!(
                    "round {}: {}, {name}: {:.0} msg/s delivered, {} lost, broker {:.2} us / generator {:.2} us CPU per message{latency}{kafka}",
                    round + 1,
                    case.label(),
                    sample.delivered_per_s,
                    sample.lost,
                    sample.broker_cpu_us,
                    sample.generator_cpu_us
                );
                results.push(c, b, sample);
            }
        }
    }
    results.print(bench);
    Ok(())
}

/// A client transport: a TCP socket, or TLS over one.
pub(crate) trait Socket: Read + Write + Send + 'static {
    /// The TCP socket underneath.
    fn tcp(&self) -> &TcpStream;
}

impl Socket for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

/// Opens an MQTT connection as the given client id over one transport.
pub(crate) type Connector<S> = Arc<dyn Fn(&str) -> anyhow::Result<Conn<S>> + Send + Sync>;

/// Publishers send `payload` on `bench/<n>` to the broker at `addr` (process `pid`), one
/// subscriber reads `bench/#`.
pub(crate) fn measure(
    addr: SocketAddr,
    pid: u32,
    qos: QoS,
    bench: &MqttBench,
    payload: &[u8],
) -> anyhow::Result<Run> {
    let connect: Connector<TcpStream> = Arc::new(move |id| Conn::connect(addr, id));
    measure_over(&connect, pid, qos, bench, payload)
}

/// [`measure`] with the clients `connect` opens.
pub(crate) fn measure_over<S: Socket>(
    connect: &Connector<S>,
    pid: u32,
    qos: QoS,
    bench: &MqttBench,
    payload: &[u8],
) -> anyhow::Result<Run> {
    let per_publisher = bench.messages / bench.publishers.max(1);
    let total = per_publisher * bench.publishers.max(1);
    let mut subscriber = connect("bench-sub")?;
    subscriber.subscribe("bench/#", qos)?;
    let receiver = std::thread::spawn(move || -> anyhow::Result<(usize, Instant)> {
        let mut received = 0;
        let mut last = Instant::now();
        subscriber
            .stream
            .tcp()
            .set_read_timeout(Some(Duration::from_secs(2)))?;
        while received < total {
            let Some(packet) = subscriber.next_packet()? else {
                break;
            };
            if let Packet::Publish(p) = packet {
                received += 1;
                last = Instant::now();
                if let Some(id) = p.packet_id {
                    subscriber.send(&Packet::PubAck(PubResponse::new(id)))?;
                }
            }
        }
        Ok((received, last))
    });
    let payload = payload.to_vec();
    let cpu_before = cpu_ticks(pid)?;
    let started = Instant::now();
    let publishers: Vec<_> = (0..bench.publishers.max(1))
        .map(|p| {
            let payload = payload.clone();
            let window = bench.window.max(1);
            let connect = connect.clone();
            std::thread::spawn(move || -> anyhow::Result<()> {
                let mut conn = connect(&format!("bench-pub-{p}"))?;
                let topic = format!("bench/{p}");
                let mut buffer = Vec::new();
                let mut in_flight = 0;
                let mut acked = 0;
                for i in 0..per_publisher {
                    let packet_id = (qos != QoS::AtMostOnce).then(|| id((i % 60_000) as u16 + 1));
                    Packet::Publish(Publish {
                        dup: false,
                        qos,
                        retain: false,
                        topic: topic.clone(),
                        packet_id,
                        properties: Default::default(),
                        payload: payload.clone(),
                    })
                    .encode(V, &mut buffer)?;
                    if qos == QoS::AtMostOnce {
                        if buffer.len() >= 64 * 1024 {
                            conn.stream.write_all(&buffer)?;
                            buffer.clear();
                        }
                        continue;
                    }
                    in_flight += 1;
                    if in_flight == window {
                        conn.stream.write_all(&buffer)?;
                        buffer.clear();
                        while in_flight > window / 2 {
                            conn.expect(|p| matches!(p, Packet::PubAck(_)))?;
                            in_flight -= 1;
                            acked += 1;
                        }
                    }
                }
                conn.stream.write_all(&buffer)?;
                while acked < per_publisher && qos != QoS::AtMostOnce {
                    conn.expect(|p| matches!(p, Packet::PubAck(_)))?;
                    acked += 1;
                }
                conn.stream.flush()?;
                Ok(())
            })
        })
        .collect();
    for publisher in publishers {
        publisher
            .join()
            .map_err(|_| anyhow::anyhow!("a publisher panicked"))??;
    }
    let (received, last) = receiver
        .join()
        .map_err(|_| anyhow::anyhow!("the subscriber panicked"))??;
    let elapsed = last
        .saturating_duration_since(started)
        .as_secs_f64()
        .max(1e-6);
    let cpu_s = (cpu_ticks(pid)? - cpu_before) as f64 / clock_ticks_per_s();
    Ok(Run {
        messages_per_s: received as f64 / elapsed,
        lost: total - received,
        cpu_us_per_message: cpu_s * 1e6 / total as f64,
    })
}

fn id(n: u16) -> weir_mqtt::PacketId {
    weir_mqtt::PacketId::new(n).unwrap_or(weir_mqtt::PacketId::MIN)
}
