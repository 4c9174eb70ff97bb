//! What reads the fleet's messages back: the MQTT subscribers (telemetry, and the devices'
//! `online` status and `offline` wills) and, with `kafka_bootstrap`, a librdkafka consumer
//! on the broker's Kafka side; each counts distinct messages and duplicates and records
//! latency from the intended send time.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use weir_mqtt::{Packet, PubResponse, QoS};

use crate::client::Conn;
use crate::payload::{COMMAND_PREFIX, parse_payload};
use crate::report::{KafkaReadBack, Percentiles, Progress, histogram};
use crate::scenario::Scenario;

/// Longest the devices wait for the Kafka reader's partitions before starting anyway.
const KAFKA_READY_WAIT: Duration = Duration::from_secs(30);

/// What a subscriber got.
pub(crate) struct Received {
    seen: HashSet<(u32, u32)>,
    duplicates: u64,
    latency: Histogram<u64>,
    online: u64,
    offline: u64,
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

    /// How many of the `expected` messages this receiver never got.
    fn missing(&self, expected: &HashSet<(u32, u32)>) -> u64 {
        expected.iter().filter(|m| !self.seen.contains(m)).count() as u64
    }
}

/// What the subscribers got, added up.
pub(crate) struct Deliveries {
    pub(crate) received: u64,
    pub(crate) duplicates: u64,
    /// QoS 1 and 2 messages some subscriber never received, once per subscriber.
    pub(crate) missing_qos12: u64,
    pub(crate) status_online: u64,
    pub(crate) wills_received: u64,
    pub(crate) latency: Histogram<u64>,
}

/// Connects and subscribes the scenario's subscribers one after the other, each then read
/// by a thread of its own until `stop`.
pub(crate) fn spawn_subscribers(
    scenario: &Scenario,
    addr: SocketAddr,
    epoch: Instant,
    stop: &Arc<AtomicBool>,
    progress: &Arc<Progress>,
) -> anyhow::Result<Vec<JoinHandle<anyhow::Result<Received>>>> {
    (0..scenario.subscribers)
        .map(|i| {
            let mut conn = Conn::connect(addr, &format!("{}-sub-{i}", scenario.client_id_prefix))?;
            conn.subscribe(&scenario.subscribe_filter, scenario.subscriber_qos)?;
            let (stop, progress) = (stop.clone(), progress.clone());
            Ok(std::thread::spawn(move || {
                subscriber(conn, epoch, &stop, &progress)
            }))
        })
        .collect()
}

/// Waits for every subscriber, and counts the `expected` QoS 1 and 2 messages each missed.
pub(crate) fn join_subscribers(
    subscribers: Vec<JoinHandle<anyhow::Result<Received>>>,
    expected: &HashSet<(u32, u32)>,
) -> anyhow::Result<Deliveries> {
    let mut all = Deliveries {
        received: 0,
        duplicates: 0,
        missing_qos12: 0,
        status_online: 0,
        wills_received: 0,
        latency: histogram(),
    };
    for handle in subscribers {
        let got = handle
            .join()
            .map_err(|_| anyhow::anyhow!("a subscriber panicked"))??;
        all.received += got.seen.len() as u64;
        all.duplicates += got.duplicates;
        all.status_online += got.online;
        all.wills_received += got.offline;
        all.missing_qos12 += got.missing(expected);
        all.latency.add(&got.latency)?;
    }
    Ok(all)
}

/// Reads one subscriber's connection until `stop`, acknowledging what needs it.
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

/// Starts the Kafka reader when the scenario has a bootstrap address, and waits (at most
/// [`KAFKA_READY_WAIT`]) until it has its partitions, since the devices start only then.
pub(crate) fn spawn_kafka_reader(
    scenario: &Scenario,
    epoch: Instant,
    stop: &Arc<AtomicBool>,
    progress: &Arc<Progress>,
) -> anyhow::Result<Option<JoinHandle<anyhow::Result<Received>>>> {
    let ready = Arc::new(AtomicBool::new(false));
    let reader = match &scenario.kafka_bootstrap {
        Some(bootstrap) => Some(kafka_reader(
            bootstrap,
            &scenario.kafka_topic,
            epoch,
            (stop.clone(), ready.clone()),
            progress.clone(),
        )?),
        None => None,
    };
    let ready_deadline = Instant::now() + KAFKA_READY_WAIT;
    while reader.is_some() && !ready.load(Ordering::Acquire) && Instant::now() < ready_deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(reader)
}

/// Waits for the Kafka reader, if any: what it read, and how many of the `expected` QoS 1
/// and 2 messages it never read.
pub(crate) fn join_kafka_reader(
    reader: Option<JoinHandle<anyhow::Result<Received>>>,
    expected: &HashSet<(u32, u32)>,
) -> anyhow::Result<Option<KafkaReadBack>> {
    let Some(handle) = reader else {
        return Ok(None);
    };
    let got = handle
        .join()
        .map_err(|_| anyhow::anyhow!("the Kafka reader panicked"))??;
    Ok(Some(KafkaReadBack {
        received: got.seen.len() as u64,
        duplicates: got.duplicates,
        missing_qos12: got.missing(expected),
        latency_us: Percentiles::of(&got.latency),
    }))
}

/// A librdkafka consumer reading every partition of `topic` from its start until `stop`,
/// recording each message's latency from its intended send time; `ready` once assigned.
fn kafka_reader(
    bootstrap: &str,
    topic: &str,
    epoch: Instant,
    (stop, ready): (Arc<AtomicBool>, Arc<AtomicBool>),
    progress: Arc<Progress>,
) -> anyhow::Result<JoinHandle<anyhow::Result<Received>>> {
    use rdkafka::ClientConfig;
    use rdkafka::consumer::BaseConsumer;
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
    assign_from_start(&consumer, topic)?;
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

/// Assigns `consumer` every partition of `topic` from its start, waiting (at most
/// [`KAFKA_READY_WAIT`]) for the topic to have partitions.
fn assign_from_start(
    consumer: &rdkafka::consumer::BaseConsumer,
    topic: &str,
) -> anyhow::Result<()> {
    use rdkafka::consumer::Consumer;
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
    Ok(())
}
