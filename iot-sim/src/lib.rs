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

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use weir_mqtt::{Packet, PacketId, PubResponse, Publish, QoS};

pub mod client;

use client::{Conn, V};

/// What a device's messages carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// A small JSON reading: `{"device":17,"seq":42,"sent_ns":…,"value":21.53}`.
    Json,
    /// Raw bytes of this size (at least 16: the send time, device and sequence number).
    Bytes(usize),
    /// The JSON reading's fields as a CBOR map (RFC 8949): `{"device": u, "seq": u,
    /// "sent_ns": u, "value": f64}`, 62 bytes (integers always in 8 bytes).
    Cbor,
}

/// A fleet and what it does.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The broker, `host:port`.
    pub broker: String,
    /// Seed of every random choice (jitter, QoS, values).
    pub seed: u64,
    /// How long devices publish.
    pub duration: Duration,
    /// How long to wait after that for acknowledgements and deliveries.
    pub drain: Duration,
    /// Number of devices, each on its own connection.
    pub devices: usize,
    /// Messages per second per device.
    pub rate_per_device_per_s: f64,
    /// Each interval varies by up to this fraction either way.
    pub jitter: f64,
    /// Weights of QoS 0, 1 and 2 in the mix.
    pub qos_mix: [f64; 3],
    /// The payload model.
    pub payload: Payload,
    /// Topic of each device; `{device}` is its number.
    pub topic: String,
    /// Subscribers, each reading everything with `subscribe_filter`.
    pub subscribers: usize,
    /// Their filter.
    pub subscribe_filter: String,
    /// Their QoS.
    pub subscriber_qos: QoS,
    /// Threads driving the devices.
    pub workers: usize,
    /// Client id prefix (device `n` is `<prefix>-<n>`).
    pub client_id_prefix: String,
    /// Devices connect with a clean session (false: persistent sessions, which the broker
    /// keeps across their reconnections).
    pub clean_session: bool,
    /// Each device drops its connection abruptly (no DISCONNECT) and reconnects about this
    /// often, in seconds, with jitter; 0: never. In-flight publishes are sent again (DUP) on
    /// the new connection.
    pub reconnect_every_s: f64,
    /// Status topic of each device (`{device}` is its number): a retained `online` after
    /// each CONNECT, and a retained `offline` will the broker publishes when the connection
    /// drops without DISCONNECT.
    pub status_topic: Option<String>,
    /// Command topic of each device: each subscribes to its own (QoS 1).
    pub command_topic: Option<String>,
    /// Commands per second a commander connection publishes (QoS 1) to random devices.
    pub commands_per_s: f64,
    /// A Kafka bootstrap address to read the messages back from, if any.
    pub kafka_bootstrap: Option<String>,
    /// The Kafka topic to read (default: the topic's first level, which is where a broker
    /// mapping MQTT to Kafka as Weir does stores it).
    pub kafka_topic: String,
}

impl Scenario {
    /// Parses a scenario; every key has a default except none is required (an empty file is
    /// 10 devices at 1 message per second for 10 s against 127.0.0.1:1883).
    pub fn parse(text: &str) -> anyhow::Result<Scenario> {
        let doc: toml_edit::DocumentMut = text.parse().context("scenario TOML")?;
        let int = |key: &str, default: i64| -> anyhow::Result<i64> {
            match doc.get(key) {
                None => Ok(default),
                Some(v) => v
                    .as_integer()
                    .with_context(|| format!("`{key}` must be an integer")),
            }
        };
        let float = |key: &str, default: f64| -> anyhow::Result<f64> {
            match doc.get(key) {
                None => Ok(default),
                Some(v) => v
                    .as_float()
                    .or_else(|| v.as_integer().map(|i| i as f64))
                    .with_context(|| format!("`{key}` must be a number")),
            }
        };
        let string = |key: &str, default: &str| -> anyhow::Result<String> {
            match doc.get(key) {
                None => Ok(default.to_owned()),
                Some(v) => v
                    .as_str()
                    .map(str::to_owned)
                    .with_context(|| format!("`{key}` must be a string")),
            }
        };
        let payload = match string("payload", "json")?.as_str() {
            "json" => Payload::Json,
            "cbor" => Payload::Cbor,
            other => match other.strip_prefix("bytes:").and_then(|n| n.parse().ok()) {
                Some(n) if n >= 16 => Payload::Bytes(n),
                _ => bail!(
                    "`payload` is \"json\", \"cbor\" or \"bytes:N\" with N >= 16, not {other:?}"
                ),
            },
        };
        let qos_mix = match doc.get("qos_mix") {
            None => [0.0, 1.0, 0.0],
            Some(v) => {
                let array = v.as_array().context("`qos_mix` is [w0, w1, w2]")?;
                let weights: Vec<f64> = array
                    .iter()
                    .map(|w| w.as_float().or_else(|| w.as_integer().map(|i| i as f64)))
                    .collect::<Option<_>>()
                    .context("`qos_mix` weights are numbers")?;
                match weights[..] {
                    [a, b, c] if a >= 0.0 && b >= 0.0 && c >= 0.0 && a + b + c > 0.0 => [a, b, c],
                    _ => bail!("`qos_mix` is three non-negative weights, not all 0"),
                }
            }
        };
        let subscriber_qos = match int("subscriber_qos", 1)? {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            2 => QoS::ExactlyOnce,
            q => bail!("`subscriber_qos` is 0, 1 or 2, not {q}"),
        };
        let positive = |key: &str, v: i64| -> anyhow::Result<usize> {
            usize::try_from(v)
                .ok()
                .filter(|n| *n > 0)
                .with_context(|| format!("`{key}` must be positive"))
        };
        let topic = string("topic", "factory/{device}/temp")?;
        let first_level = topic.split('/').next().unwrap_or("").to_owned();
        let optional_string = |key: &str| -> anyhow::Result<Option<String>> {
            doc.get(key)
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .with_context(|| format!("`{key}` must be a string"))
                })
                .transpose()
        };
        let scenario = Scenario {
            broker: string("broker", "127.0.0.1:1883")?,
            seed: int("seed", 42)? as u64,
            duration: Duration::from_secs_f64(float("duration_s", 10.0)?.max(0.0)),
            drain: Duration::from_secs_f64(float("drain_s", 5.0)?.max(0.0)),
            devices: positive("devices", int("devices", 10)?)?,
            rate_per_device_per_s: float("rate_per_device_per_s", 1.0)?,
            jitter: float("jitter", 0.1)?.clamp(0.0, 0.99),
            qos_mix,
            payload,
            subscribe_filter: string("subscribe_filter", &default_filter(&topic))?,
            topic,
            subscribers: usize::try_from(int("subscribers", 1)?).context("`subscribers`")?,
            subscriber_qos,
            workers: positive("workers", int("workers", 4)?)?,
            client_id_prefix: string("client_id_prefix", "iot-sim")?,
            clean_session: match doc.get("clean_session") {
                None => true,
                Some(v) => v
                    .as_bool()
                    .context("`clean_session` must be true or false")?,
            },
            reconnect_every_s: float("reconnect_every_s", 0.0)?.max(0.0),
            status_topic: optional_string("status_topic")?,
            command_topic: optional_string("command_topic")?,
            commands_per_s: float("commands_per_s", 0.0)?.max(0.0),
            kafka_bootstrap: optional_string("kafka_bootstrap")?,
            kafka_topic: string("kafka_topic", &first_level)?,
        };
        if scenario.rate_per_device_per_s.is_nan() || scenario.rate_per_device_per_s <= 0.0 {
            bail!("`rate_per_device_per_s` must be positive");
        }
        if scenario.commands_per_s > 0.0 && scenario.command_topic.is_none() {
            bail!("`commands_per_s` needs a `command_topic`");
        }
        Ok(scenario)
    }
}

/// The topic's levels before the first `{device}`, then `#`.
fn default_filter(topic: &str) -> String {
    let fixed: Vec<&str> = topic
        .split('/')
        .take_while(|level| !level.contains("{device}"))
        .collect();
    if fixed.is_empty() {
        "#".to_owned()
    } else {
        format!("{}/#", fixed.join("/"))
    }
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// Devices that connected.
    pub devices: usize,
    /// Messages published, by QoS.
    pub sent: [u64; 3],
    /// QoS 1 and 2 publishes acknowledged (PUBACK, PUBCOMP).
    pub acked: u64,
    /// QoS 1 and 2 publishes never acknowledged.
    pub unacked: u64,
    /// Messages received by the subscribers, distinct (device, sequence) per subscriber.
    pub received: u64,
    /// Messages a subscriber received more than once.
    pub duplicates: u64,
    /// QoS 1 and 2 messages some subscriber never received (QoS 0 may be dropped).
    pub missing_qos12: u64,
    /// How long devices published.
    pub publish_seconds: f64,
    /// Publish-to-acknowledgement latency from the intended send time, microseconds.
    pub ack_latency_us: Percentiles,
    /// Publish-to-delivery latency from the intended send time, microseconds.
    pub delivery_latency_us: Percentiles,
    /// Read back through Kafka (when `kafka_bootstrap` is set): distinct messages, the QoS 1
    /// and 2 messages missing, and publish-to-consume latency from the intended send time.
    pub kafka: Option<KafkaReadBack>,
    /// Abrupt disconnections and reconnections of devices (`reconnect_every_s`).
    pub reconnects: u64,
    /// Status messages the subscribers saw: `online` (after each CONNECT) and `offline`
    /// (wills, one per abrupt disconnection).
    pub status_online: u64,
    /// Wills (`offline`) the subscribers saw.
    pub wills_received: u64,
    /// Commands the commander published and the devices received.
    pub commands_sent: u64,
    /// Commands the devices received (distinct).
    pub commands_received: u64,
    /// Command publish-to-device latency from the intended send time, microseconds.
    pub command_latency_us: Percentiles,
}

/// What the Kafka consumer read back.
#[derive(Debug, Clone, Copy, Default)]
pub struct KafkaReadBack {
    /// Distinct messages read.
    pub received: u64,
    /// Messages read more than once.
    pub duplicates: u64,
    /// QoS 1 and 2 messages never read.
    pub missing_qos12: u64,
    /// Publish-to-consume latency from the intended send time, microseconds.
    pub latency_us: Percentiles,
}

/// Latency percentiles, microseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Percentiles {
        Percentiles {
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "count": self.count, "p50": self.p50, "p99": self.p99,
            "p999": self.p999, "max": self.max,
        })
    }
}

impl Report {
    /// Messages sent, all QoS.
    pub fn sent_total(&self) -> u64 {
        self.sent.iter().sum()
    }

    /// The report as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "devices": self.devices,
            "sent": {"qos0": self.sent[0], "qos1": self.sent[1], "qos2": self.sent[2]},
            "acked": self.acked,
            "unacked": self.unacked,
            "received": self.received,
            "duplicates": self.duplicates,
            "missing_qos12": self.missing_qos12,
            "publish_seconds": self.publish_seconds,
            "sent_per_s": self.sent_total() as f64 / self.publish_seconds.max(1e-9),
            "ack_latency_us": self.ack_latency_us.json(),
            "delivery_latency_us": self.delivery_latency_us.json(),
            "reconnects": self.reconnects,
            "status_online": self.status_online,
            "wills_received": self.wills_received,
            "commands": {
                "sent": self.commands_sent,
                "received": self.commands_received,
                "latency_us": self.command_latency_us.json(),
            },
            "kafka": self.kafka.map(|k| serde_json::json!({
                "received": k.received,
                "duplicates": k.duplicates,
                "missing_qos12": k.missing_qos12,
                "latency_us": k.latency_us.json(),
            })),
        })
    }

    /// The summary table (Markdown).
    pub fn table(&self) -> String {
        let rate = self.sent_total() as f64 / self.publish_seconds.max(1e-9);
        let row = |name: &str, p: &Percentiles| {
            format!(
                "| {name} | {} | {} | {} | {} | {} |\n",
                p.count, p.p50, p.p99, p.p999, p.max
            )
        };
        format!(
            "| devices | sent (QoS 0/1/2) | msg/s | acked | unacked | received | duplicates | missing QoS 1/2 |\n\
             | --- | --- | --- | --- | --- | --- | --- | --- |\n\
             | {} | {} ({}/{}/{}) | {rate:.0} | {} | {} | {} | {} | {} |\n\n\
             | latency from intended send (us) | samples | p50 | p99 | p99.9 | max |\n\
             | --- | --- | --- | --- | --- | --- |\n{}{}",
            self.devices,
            self.sent_total(),
            self.sent[0],
            self.sent[1],
            self.sent[2],
            self.acked,
            self.unacked,
            self.received,
            self.duplicates,
            self.missing_qos12,
            row("publish to acknowledgement", &self.ack_latency_us),
            row("publish to delivery", &self.delivery_latency_us),
        ) + &if self.commands_sent > 0 {
            format!(
                "{}\ncommands: {} sent, {} received\n",
                row("command to device", &self.command_latency_us),
                self.commands_sent,
                self.commands_received
            )
        } else {
            String::new()
        } + &if self.reconnects > 0 || self.status_online > 0 {
            format!(
                "\nreconnections: {}; status seen by subscribers: {} online, {} offline (wills)\n",
                self.reconnects, self.status_online, self.wills_received
            )
        } else {
            String::new()
        } + &self.kafka.map_or_else(String::new, |k| {
            format!(
                "{}\nKafka read-back: {} distinct, {} duplicates, {} QoS 1/2 missing\n",
                row("publish to Kafka consume", &k.latency_us),
                k.received,
                k.duplicates,
                k.missing_qos12
            )
        })
    }
}

/// Live counters, for a progress line.
#[derive(Debug, Default)]
pub struct Progress {
    /// Devices connected (their first connection).
    pub connected: AtomicU64,
    /// Messages the Kafka reader has read so far.
    pub kafka_received: AtomicU64,
    /// Messages sent so far.
    pub sent: AtomicU64,
    /// Acknowledged so far.
    pub acked: AtomicU64,
    /// Received by subscribers so far.
    pub received: AtomicU64,
}

/// A small deterministic generator (splitmix64), so a seed gives the same run.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Runs `scenario`; `progress` is updated as it goes.
pub fn run(scenario: &Scenario, progress: &Arc<Progress>) -> anyhow::Result<Report> {
    let addr: SocketAddr = scenario
        .broker
        .to_socket_addrs()?
        .next()
        .context("broker address")?;
    let epoch = Instant::now();
    let stop_receiving = Arc::new(AtomicBool::new(false));
    let subscribers: Vec<_> = (0..scenario.subscribers)
        .map(|i| {
            let mut conn = Conn::connect(addr, &format!("{}-sub-{i}", scenario.client_id_prefix))?;
            conn.subscribe(&scenario.subscribe_filter, scenario.subscriber_qos)?;
            let (stop, progress) = (stop_receiving.clone(), progress.clone());
            Ok(std::thread::spawn(move || {
                subscriber(conn, epoch, &stop, &progress)
            }))
        })
        .collect::<anyhow::Result<_>>()?;
    let kafka_ready = Arc::new(AtomicBool::new(false));
    let kafka_reader = match &scenario.kafka_bootstrap {
        Some(bootstrap) => Some(kafka_reader(
            bootstrap,
            &scenario.kafka_topic,
            epoch,
            (stop_receiving.clone(), kafka_ready.clone()),
            progress.clone(),
        )?),
        None => None,
    };
    // The devices start once the Kafka reader has its partitions.
    let ready_deadline = Instant::now() + KAFKA_READY_WAIT;
    while kafka_reader.is_some()
        && !kafka_ready.load(Ordering::Acquire)
        && Instant::now() < ready_deadline
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let publish_start = Instant::now();
    let publish_until = publish_start + scenario.duration;
    // The commander stops a little before the devices do, so its last commands arrive while
    // they still read.
    let commands_until = publish_until - (scenario.duration / 4).min(Duration::from_secs(1));
    let commander = (scenario.commands_per_s > 0.0).then(|| {
        let (scenario, progress) = (scenario.clone(), progress.clone());
        std::thread::spawn(move || commander(&scenario, addr, (epoch, commands_until), &progress))
    });
    let workers: Vec<_> = (0..scenario.workers.min(scenario.devices))
        .map(|w| {
            let scenario = scenario.clone();
            let progress = progress.clone();
            std::thread::spawn(move || worker(&scenario, w, addr, epoch, publish_until, &progress))
        })
        .collect();
    let mut sent = [0u64; 3];
    let mut acked = 0;
    let mut unacked = 0;
    let mut devices = 0;
    let mut ack_latency = histogram();
    let mut command_latency = histogram();
    let mut reconnects = 0;
    let mut commands_received = 0;
    let mut expected: HashSet<(u32, u32)> = HashSet::new();
    for handle in workers {
        let result = handle
            .join()
            .map_err(|_| anyhow::anyhow!("a device worker panicked"))??;
        devices += result.devices;
        for (total, n) in sent.iter_mut().zip(result.sent) {
            *total += n;
        }
        acked += result.acked;
        unacked += result.unacked;
        ack_latency.add(&result.ack_latency)?;
        command_latency.add(&result.command_latency)?;
        reconnects += result.reconnects;
        commands_received += result.commands_received;
        expected.extend(result.qos12);
    }
    let commands_sent = match commander {
        Some(handle) => handle
            .join()
            .map_err(|_| anyhow::anyhow!("the commander panicked"))??,
        None => 0,
    };
    let publish_seconds = publish_start.elapsed().min(scenario.duration).as_secs_f64();
    // Deliveries still on their way get the drain time, then the subscribers stop.
    let total = sent.iter().sum::<u64>() * scenario.subscribers as u64;
    let kafka_total = if kafka_reader.is_some() {
        sent.iter().sum::<u64>()
    } else {
        0
    };
    let deadline = Instant::now() + scenario.drain;
    while (progress.received.load(Ordering::Relaxed) < total
        || progress.kafka_received.load(Ordering::Relaxed) < kafka_total)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop_receiving.store(true, Ordering::Release);
    let mut received = 0;
    let mut duplicates = 0;
    let mut missing_qos12 = 0;
    let mut status_online = 0;
    let mut wills_received = 0;
    let mut delivery_latency = histogram();
    for handle in subscribers {
        let got = handle
            .join()
            .map_err(|_| anyhow::anyhow!("a subscriber panicked"))??;
        received += got.seen.len() as u64;
        duplicates += got.duplicates;
        status_online += got.online;
        wills_received += got.offline;
        missing_qos12 += expected.iter().filter(|m| !got.seen.contains(m)).count() as u64;
        delivery_latency.add(&got.latency)?;
    }
    let kafka = match kafka_reader {
        Some(handle) => {
            let got = handle
                .join()
                .map_err(|_| anyhow::anyhow!("the Kafka reader panicked"))??;
            Some(KafkaReadBack {
                received: got.seen.len() as u64,
                duplicates: got.duplicates,
                missing_qos12: expected.iter().filter(|m| !got.seen.contains(m)).count() as u64,
                latency_us: Percentiles::of(&got.latency),
            })
        }
        None => None,
    };
    Ok(Report {
        kafka,
        reconnects,
        status_online,
        wills_received,
        commands_sent,
        commands_received,
        command_latency_us: Percentiles::of(&command_latency),
        devices,
        sent,
        acked,
        unacked,
        received,
        duplicates,
        missing_qos12,
        publish_seconds,
        ack_latency_us: Percentiles::of(&ack_latency),
        delivery_latency_us: Percentiles::of(&delivery_latency),
    })
}

fn histogram() -> Histogram<u64> {
    // 1 us to 1 hour, 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant bounds are valid")
}

/// What one worker's devices did.
struct WorkerResult {
    devices: usize,
    sent: [u64; 3],
    acked: u64,
    unacked: u64,
    ack_latency: Histogram<u64>,
    /// The QoS 1 and 2 messages sent: (device, sequence).
    qos12: Vec<(u32, u32)>,
    reconnects: u64,
    commands_received: u64,
    command_latency: Histogram<u64>,
}

struct Device {
    number: u32,
    conn: Conn,
    topic: String,
    seq: u32,
    next_packet_id: u16,
    /// Packet id -> QoS 1 and 2 publishes not yet completed.
    in_flight: HashMap<u16, InFlight>,
    /// Bytes not yet written.
    pending: Vec<u8>,
    /// When the device next drops its connection (ns since the epoch; `u64::MAX`: never).
    next_churn_ns: u64,
    /// Commands received (their sequence numbers).
    commands: HashSet<u32>,
}

/// A QoS 1 or 2 publish on its way.
struct InFlight {
    /// Its intended send time, ns since the epoch.
    at: u64,
    /// The PUBLISH again, with DUP set, for a reconnection.
    again: Vec<u8>,
    /// QoS 2: PUBREC came and PUBREL was sent.
    released: bool,
}

/// The packet id a device's status publish uses (not tracked for acknowledgement).
const STATUS_PACKET_ID: u16 = u16::MAX;

/// Connects device `number`: its session kind, its will and retained `online` status, its
/// command subscription.
fn connect_device(scenario: &Scenario, addr: SocketAddr, number: u32) -> anyhow::Result<Conn> {
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

fn worker(
    scenario: &Scenario,
    index: usize,
    addr: SocketAddr,
    epoch: Instant,
    publish_until: Instant,
    progress: &Progress,
) -> anyhow::Result<WorkerResult> {
    let mut rng = Rng(scenario.seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut devices: Vec<Device> = Vec::new();
    let churn_ns = scenario.reconnect_every_s * 1e9;
    let start_ns = epoch.elapsed().as_nanos() as f64;
    for number in (index..scenario.devices).step_by(scenario.workers.max(1)) {
        let conn = connect_device(scenario, addr, number as u32)?;
        progress.connected.fetch_add(1, Ordering::Relaxed);
        devices.push(Device {
            number: number as u32,
            conn,
            topic: scenario.topic.replace("{device}", &number.to_string()),
            seq: 0,
            next_packet_id: 1,
            in_flight: HashMap::new(),
            pending: Vec::new(),
            next_churn_ns: if churn_ns > 0.0 {
                (start_ns + rng.unit() * churn_ns) as u64
            } else {
                u64::MAX
            },
            commands: HashSet::new(),
        });
    }
    let interval_ns = 1e9 / scenario.rate_per_device_per_s;
    // Devices start spread over one interval.
    let mut due: BinaryHeap<Reverse<(u64, usize)>> = (0..devices.len())
        .map(|i| Reverse(((start_ns + rng.unit() * interval_ns) as u64, i)))
        .collect();
    let mut result = WorkerResult {
        devices: devices.len(),
        sent: [0; 3],
        acked: 0,
        unacked: 0,
        ack_latency: histogram(),
        qos12: Vec::new(),
        reconnects: 0,
        commands_received: 0,
        command_latency: histogram(),
    };
    let end_ns = publish_until.duration_since(epoch).as_nanos() as u64;
    let weights = scenario.qos_mix;
    let weight_sum: f64 = weights.iter().sum();
    let mut value_rng = rng.clone();
    let drain_until = publish_until + scenario.drain;
    loop {
        let now_ns = epoch.elapsed().as_nanos() as u64;
        // Publish everything due (open loop: the intended time is the schedule's).
        while let Some(&Reverse((at, i))) = due.peek() {
            if at > now_ns || at >= end_ns {
                break;
            }
            due.pop();
            let device = &mut devices[i];
            let pick = rng.unit() * weight_sum;
            let qos = if pick < weights[0] {
                QoS::AtMostOnce
            } else if pick < weights[0] + weights[1] {
                QoS::AtLeastOnce
            } else {
                QoS::ExactlyOnce
            };
            let packet_id = (qos != QoS::AtMostOnce).then(|| {
                let mut id = device.next_packet_id;
                while device.in_flight.contains_key(&id) || id == STATUS_PACKET_ID {
                    id = id.checked_add(1).unwrap_or(1);
                }
                device.next_packet_id = id.checked_add(1).unwrap_or(1);
                PacketId::new(id).unwrap_or(PacketId::MIN)
            });
            let payload = payload(
                &scenario.payload,
                device.number,
                device.seq,
                at,
                &mut value_rng,
            );
            if qos != QoS::AtMostOnce {
                result.qos12.push((device.number, device.seq));
            }
            device.seq += 1;
            let mut publish = Publish {
                dup: false,
                qos,
                retain: false,
                topic: device.topic.clone(),
                packet_id,
                properties: Default::default(),
                payload,
            };
            if let Some(id) = packet_id {
                publish.dup = true;
                let mut again = Vec::new();
                Packet::Publish(publish.clone()).encode(V, &mut again)?;
                publish.dup = false;
                device.in_flight.insert(
                    id.get(),
                    InFlight {
                        at,
                        again,
                        released: false,
                    },
                );
            }
            Packet::Publish(publish).encode(V, &mut device.pending)?;
            result.sent[qos as usize] += 1;
            progress.sent.fetch_add(1, Ordering::Relaxed);
            let jitter = 1.0 + scenario.jitter * (2.0 * rng.unit() - 1.0);
            due.push(Reverse((at + (interval_ns * jitter) as u64, i)));
        }
        // Devices whose time has come drop their connection without DISCONNECT (the broker
        // publishes their will) and connect again, then send what was in flight again.
        let now_ns = epoch.elapsed().as_nanos() as u64;
        for device in &mut devices {
            if device.next_churn_ns > now_ns || now_ns >= end_ns {
                continue;
            }
            let _ = device.conn.stream.shutdown(std::net::Shutdown::Both);
            device.conn = connect_device(scenario, addr, device.number)?;
            device.pending.clear();
            for (id, flight) in &device.in_flight {
                if flight.released {
                    Packet::PubRel(PubResponse::new(
                        PacketId::new(*id).unwrap_or(PacketId::MIN),
                    ))
                    .encode(V, &mut device.pending)?;
                } else {
                    device.pending.extend_from_slice(&flight.again);
                }
            }
            result.reconnects += 1;
            let jitter = 1.0 + scenario.jitter * (2.0 * rng.unit() - 1.0);
            device.next_churn_ns = now_ns + (churn_ns * jitter) as u64;
        }
        // Write what is pending, read what came, without blocking.
        for device in &mut devices {
            device.flush()?;
            for packet in device.conn.ready()? {
                let now = epoch.elapsed().as_nanos() as u64;
                match packet {
                    Packet::PubAck(ack) | Packet::PubComp(ack) => {
                        if let Some(flight) = device.in_flight.remove(&ack.packet_id.get()) {
                            result.acked += 1;
                            progress.acked.fetch_add(1, Ordering::Relaxed);
                            let _ = result
                                .ack_latency
                                .record((now.saturating_sub(flight.at) / 1000).max(1));
                        }
                    }
                    Packet::PubRec(rec) => {
                        if let Some(flight) = device.in_flight.get_mut(&rec.packet_id.get()) {
                            flight.released = true;
                        }
                        Packet::PubRel(PubResponse::new(rec.packet_id))
                            .encode(V, &mut device.pending)?;
                    }
                    Packet::Publish(command) => {
                        if let Some(id) = command.packet_id {
                            Packet::PubAck(PubResponse::new(id)).encode(V, &mut device.pending)?;
                        }
                        if let Some((_, seq, sent)) = command
                            .payload
                            .strip_prefix(COMMAND_PREFIX)
                            .and_then(parse_payload)
                            && device.commands.insert(seq)
                        {
                            result.commands_received += 1;
                            let _ = result
                                .command_latency
                                .record((now.saturating_sub(sent) / 1000).max(1));
                        }
                    }
                    _ => {}
                }
            }
        }
        let publishing = Instant::now() < publish_until;
        let waiting = devices
            .iter()
            .any(|d| !d.in_flight.is_empty() || !d.pending.is_empty());
        if !publishing && (!waiting || Instant::now() >= drain_until) {
            break;
        }
        // Sleep until the next send is due or a socket has something, at most 1 ms.
        let next_ns = due.peek().map_or(u64::MAX, |Reverse((at, _))| *at);
        let wait_ms = if publishing {
            (next_ns.saturating_sub(epoch.elapsed().as_nanos() as u64) / 1_000_000).min(1)
        } else {
            1
        };
        poll_readable(&devices, wait_ms as i32);
    }
    result.unacked = devices.iter().map(|d| d.in_flight.len() as u64).sum();
    for device in &mut devices {
        let _ = device.conn.stream.set_nonblocking(false);
        let _ = device
            .conn
            .send(&Packet::Disconnect(weir_mqtt::Disconnect::new(
                weir_mqtt::ReasonCode::SUCCESS,
            )));
    }
    Ok(result)
}

/// Waits up to `ms` for any device socket to be readable.
fn poll_readable(devices: &[Device], ms: i32) {
    let mut fds: Vec<libc::pollfd> = devices
        .iter()
        .map(|d| libc::pollfd {
            fd: d.conn.stream.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: poll(2) on a valid array of pollfd structures of the given length.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
}

impl Device {
    fn flush(&mut self) -> anyhow::Result<()> {
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
}

/// A message body: the intended send time, device and sequence, then the model's content.
fn payload(model: &Payload, device: u32, seq: u32, sent_ns: u64, rng: &mut Rng) -> Vec<u8> {
    match model {
        Payload::Json => format!(
            "{{\"device\":{device},\"seq\":{seq},\"sent_ns\":{sent_ns},\"value\":{:.2}}}",
            15.0 + 15.0 * rng.unit()
        )
        .into_bytes(),
        Payload::Cbor => {
            let mut out = vec![0xa4]; // a map of 4 pairs
            for (key, value) in [
                ("device", u64::from(device)),
                ("seq", u64::from(seq)),
                ("sent_ns", sent_ns),
            ] {
                cbor_text(&mut out, key);
                out.push(0x1b); // unsigned, 8 bytes follow
                out.extend_from_slice(&value.to_be_bytes());
            }
            cbor_text(&mut out, "value");
            out.push(0xfb); // float64
            out.extend_from_slice(&(15.0 + 15.0 * rng.unit()).to_be_bytes());
            out
        }
        Payload::Bytes(n) => {
            let mut bytes = Vec::with_capacity(*n);
            bytes.extend_from_slice(&sent_ns.to_be_bytes());
            bytes.extend_from_slice(&device.to_be_bytes());
            bytes.extend_from_slice(&seq.to_be_bytes());
            bytes.resize(*n, 0x5a);
            bytes
        }
    }
}

/// Longest the devices wait for the Kafka reader's partitions before starting anyway.
const KAFKA_READY_WAIT: Duration = Duration::from_secs(30);

/// What a command's payload starts with (then a JSON payload naming the device).
const COMMAND_PREFIX: &[u8] = b"cmd ";

/// Publishes commands at `scenario.commands_per_s` (QoS 1, open loop) to random devices'
/// command topics until `until`; returns how many it sent.
fn commander(
    scenario: &Scenario,
    addr: SocketAddr,
    (epoch, until): (Instant, Instant),
    progress: &Progress,
) -> anyhow::Result<u64> {
    let Some(template) = &scenario.command_topic else {
        return Ok(0);
    };
    // Commands start once every device has subscribed.
    while progress.connected.load(Ordering::Relaxed) < scenario.devices as u64
        && Instant::now() < until
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut conn = Conn::connect(addr, &format!("{}-commander", scenario.client_id_prefix))?;
    conn.stream.set_nonblocking(true)?;
    let mut rng = Rng(scenario.seed ^ 0xC0FF_EE00_D15E_A5E5);
    let interval_ns = 1e9 / scenario.commands_per_s;
    let mut next_ns = epoch.elapsed().as_nanos() as f64;
    let mut sent = 0u64;
    let mut pending = Vec::new();
    while Instant::now() < until {
        let now_ns = epoch.elapsed().as_nanos() as f64;
        while next_ns <= now_ns {
            let device = (rng.unit() * scenario.devices as f64) as u32 % scenario.devices as u32;
            let mut payload = COMMAND_PREFIX.to_vec();
            payload.extend_from_slice(
                format!(
                    "{{\"device\":{device},\"seq\":{sent},\"sent_ns\":{}}}",
                    next_ns as u64
                )
                .as_bytes(),
            );
            Packet::Publish(Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: false,
                topic: template.replace("{device}", &device.to_string()),
                packet_id: PacketId::new((sent % 65_535) as u16 + 1),
                properties: Default::default(),
                payload,
            })
            .encode(V, &mut pending)?;
            sent += 1;
            next_ns += interval_ns;
        }
        while !pending.is_empty() {
            match conn.stream.write(&pending) {
                Ok(n) => {
                    pending.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.into()),
            }
        }
        // Acknowledgements are read and dropped: the devices count what arrives.
        conn.ready()?;
        std::thread::sleep(Duration::from_micros(500));
    }
    Ok(sent)
}

/// A CBOR text string shorter than 24 bytes.
fn cbor_text(out: &mut Vec<u8>, text: &str) {
    out.push(0x60 | text.len() as u8);
    out.extend_from_slice(text.as_bytes());
}

/// The device, sequence and send time of a [`Payload::Cbor`] map (keys in any order).
fn parse_cbor(payload: &[u8]) -> Option<(u32, u32, u64)> {
    let mut rest = payload.strip_prefix(&[0xa4])?;
    let (mut device, mut seq, mut sent) = (None, None, None);
    for _ in 0..4 {
        let len = usize::from(rest.first()? & 0x1f);
        if rest.first()? & 0xe0 != 0x60 || len >= 24 {
            return None;
        }
        let key = rest.get(1..1 + len)?;
        rest = &rest[1 + len..];
        let (tag, value) = (rest.first()?, rest.get(1..9)?);
        let number = u64::from_be_bytes(value.try_into().ok()?);
        rest = &rest[9..];
        match (key, tag) {
            (b"device", 0x1b) => device = u32::try_from(number).ok(),
            (b"seq", 0x1b) => seq = u32::try_from(number).ok(),
            (b"sent_ns", 0x1b) => sent = Some(number),
            (b"value", 0xfb) => {}
            _ => return None,
        }
    }
    Some((device?, seq?, sent?))
}

/// The device, sequence and intended send time a payload carries.
fn parse_payload(payload: &[u8]) -> Option<(u32, u32, u64)> {
    if payload.first() == Some(&0xa4) {
        return parse_cbor(payload);
    }
    if payload.first() == Some(&b'{') {
        let text = std::str::from_utf8(payload).ok()?;
        let field = |name: &str| -> Option<u64> {
            let start = text.find(&format!("\"{name}\":"))? + name.len() + 3;
            let digits: String = text[start..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        };
        return Some((
            u32::try_from(field("device")?).ok()?,
            u32::try_from(field("seq")?).ok()?,
            field("sent_ns")?,
        ));
    }
    let sent = u64::from_be_bytes(payload.get(..8)?.try_into().ok()?);
    let device = u32::from_be_bytes(payload.get(8..12)?.try_into().ok()?);
    let seq = u32::from_be_bytes(payload.get(12..16)?.try_into().ok()?);
    Some((device, seq, sent))
}

/// What a subscriber got.
struct Received {
    seen: HashSet<(u32, u32)>,
    duplicates: u64,
    latency: Histogram<u64>,
    online: u64,
    offline: u64,
}

/// A librdkafka consumer reading every partition of `topic` from its start until `stop`,
/// recording each message's latency from its intended send time; `ready` once assigned.
fn kafka_reader(
    bootstrap: &str,
    topic: &str,
    epoch: Instant,
    (stop, ready): (Arc<AtomicBool>, Arc<AtomicBool>),
    progress: Arc<Progress>,
) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<Received>>> {
    use rdkafka::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set(
            "group.id",
            format!(
                "iot-sim-{}",
                epoch.elapsed().as_nanos() ^ u128::from(std::process::id())
            ),
        )
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .set("topic.metadata.refresh.interval.ms", "500")
        .set("allow.auto.create.topics", "true")
        .create()
        .context("Kafka consumer")?;
    // Every partition from its start, assigned directly: a consumer group's first
    // assignment waits for the group's initial rebalance delay (seconds), which would be
    // measured as latency. The metadata request creates the topic if it does not exist yet.
    let deadline = Instant::now() + KAFKA_READY_WAIT;
    let partitions: Vec<i32> = loop {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .with_context(|| format!("metadata of Kafka topic {topic}"))?;
        let found: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if !found.is_empty() {
            break found;
        }
        if Instant::now() > deadline {
            bail!("Kafka topic {topic} has no partitions (is topic auto-creation on?)");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut assignment = rdkafka::TopicPartitionList::new();
    for partition in partitions {
        assignment.add_partition_offset(topic, partition, rdkafka::Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    ready.store(true, Ordering::Release);
    Ok(std::thread::spawn(move || {
        let mut got = Received::new();
        while !stop.load(Ordering::Acquire) {
            let Some(message) = consumer.poll(Duration::from_millis(50)) else {
                continue;
            };
            // Errors such as a topic not created yet are transient: keep polling.
            let Ok(message) = message else { continue };
            let now = epoch.elapsed().as_nanos() as u64;
            if let Some(carried) = message.payload().and_then(parse_payload) {
                got.record(carried, now, &progress.kafka_received);
            }
        }
        Ok(got)
    }))
}

impl Received {
    fn new() -> Received {
        Received {
            seen: HashSet::new(),
            duplicates: 0,
            latency: histogram(),
            online: 0,
            offline: 0,
        }
    }

    /// A message carrying `(device, sequence, intended send time)` arrived at `now_ns`:
    /// counted once (in `counter` too), with its latency, or as a duplicate.
    fn record(&mut self, (device, seq, sent): (u32, u32, u64), now_ns: u64, counter: &AtomicU64) {
        if self.seen.insert((device, seq)) {
            counter.fetch_add(1, Ordering::Relaxed);
            let _ = self
                .latency
                .record((now_ns.saturating_sub(sent) / 1000).max(1));
        } else {
            self.duplicates += 1;
        }
    }
}

fn subscriber(
    mut conn: Conn,
    epoch: Instant,
    stop: &AtomicBool,
    progress: &Progress,
) -> anyhow::Result<Received> {
    conn.stream
        .set_read_timeout(Some(Duration::from_millis(50)))?;
    let mut got = Received::new();
    while !stop.load(Ordering::Acquire) {
        for packet in conn.ready()? {
            if let Packet::Publish(p) = packet {
                let now = epoch.elapsed().as_nanos() as u64;
                if let Some(id) = p.packet_id {
                    let ack = if p.qos == QoS::ExactlyOnce {
                        Packet::PubRec(PubResponse::new(id))
                    } else {
                        Packet::PubAck(PubResponse::new(id))
                    };
                    conn.send(&ack)?;
                }
                match &p.payload[..] {
                    b"online" => got.online += 1,
                    b"offline" => got.offline += 1,
                    command if command.starts_with(COMMAND_PREFIX) => {}
                    payload => {
                        if let Some(carried) = parse_payload(payload) {
                            got.record(carried, now, &progress.received);
                        }
                    }
                }
            } else if let Packet::PubRel(rel) = packet {
                conn.send(&Packet::PubComp(PubResponse::new(rel.packet_id)))?;
            }
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_payload_model_carries_device_sequence_and_send_time() {
        let mut rng = Rng(1);
        for model in [Payload::Json, Payload::Cbor, Payload::Bytes(64)] {
            let bytes = payload(&model, 17, 42, 123_456_789_012, &mut rng);
            assert_eq!(
                parse_payload(&bytes),
                Some((17, 42, 123_456_789_012)),
                "{model:?}"
            );
        }
        assert_eq!(payload(&Payload::Cbor, 1, 2, 3, &mut rng).len(), 62);
        assert_eq!(parse_cbor(&[0xa4, 0x61]), None);
    }

    #[test]
    fn scenarios_parse_with_defaults_and_refuse_nonsense() {
        let s = Scenario::parse("").unwrap();
        assert_eq!((s.devices, s.subscribe_filter.as_str()), (10, "factory/#"));
        let s = Scenario::parse(
            "devices = 1000\npayload = \"bytes:256\"\nqos_mix = [1, 3, 0]\ntopic = \"site/a/{device}\"\n",
        )
        .unwrap();
        assert_eq!(s.payload, Payload::Bytes(256));
        assert_eq!(s.qos_mix, [1.0, 3.0, 0.0]);
        assert_eq!(s.subscribe_filter, "site/a/#");
        for bad in [
            "devices = 0",
            "payload = \"bytes:8\"",
            "qos_mix = [0, 0, 0]",
            "subscriber_qos = 3",
            "rate_per_device_per_s = 0",
            "devices = \"many\"",
        ] {
            assert!(Scenario::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn payloads_carry_device_sequence_and_send_time() {
        let mut rng = Rng(1);
        for model in [Payload::Json, Payload::Bytes(64)] {
            let p = payload(&model, 17, 42, 123_456_789, &mut rng);
            assert_eq!(parse_payload(&p), Some((17, 42, 123_456_789)), "{model:?}");
        }
        // The same seed gives the same values.
        let (mut a, mut b) = (Rng(9), Rng(9));
        assert_eq!((a.next(), a.unit()), (b.next(), b.unit()));
    }
}
