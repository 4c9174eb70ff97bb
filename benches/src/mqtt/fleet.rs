//! The fleet shape: an iot-sim fleet (the `iot-sim` crate's library) of `--fleet-devices`
//! devices, each on its own connection publishing once a second (open loop, 10% jitter,
//! `--payload-bytes` payloads, at least 16) on `fleet/<n>/t`, driven by one iot-sim worker
//! thread; on Weir, iot-sim's librdkafka consumer reads topic `fleet` back from Weir's Kafka
//! side (Mosquitto has none). The one `fleet/#` subscriber is the raw one of the other shapes
//! (`raw::receive`), not iot-sim's, which decodes and allocates per message.
//!
//! A cost-per-message measurement. iot-sim's worker polls all its devices' sockets in a loop,
//! so it takes whatever CPU it is left; one worker (not four) and a cheap subscriber leave
//! the subscriber and the Kafka consumer their share of the generator's core. Once the fleet is ready (every device
//! connected, the messages that fell due while devices were connecting sent, the subscriber
//! caught up), a sampler reads the broker's CPU time, this process's (the whole generator:
//! devices, subscriber, Kafka consumer) and iot-sim's counters, and reads them again when
//! publishing is about to end, at least `--fleet-seconds` later. Rates and CPU per published
//! message are over that window, losses over the whole run. iot-sim's latencies are left
//! out: measured over the whole run, they are mostly the connection-time backlog.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use weir_mqtt::QoS;

use super::brokers::Target;
use super::raw::{connect, own_cpu_s, receive};
use super::settings::{MqttShapes, Sample};
use crate::server::{clock_ticks_per_s, cpu_ticks};

/// Publishing time allowed for the fleet to get ready (connected, on schedule, the subscriber
/// caught up) before the window opens; the scenario publishes for this long, plus the window,
/// plus half a second, so the window is at least `--fleet-seconds` long.
const READY_ALLOWANCE: Duration = Duration::from_secs(8);

/// What the sampler reads, shared with the run.
#[derive(Debug, Default)]
struct Counters {
    /// iot-sim's counters (devices connected, messages sent, read back through Kafka).
    progress: Arc<iot_sim::Progress>,
    /// Deliveries to the subscriber.
    received: AtomicU64,
    /// Set once iot-sim's run has returned.
    ended: AtomicBool,
}

/// The counters and both CPU times at one moment.
#[derive(Debug, Clone, Copy)]
struct Snapshot {
    at: Instant,
    sent: u64,
    received: u64,
    kafka: u64,
    broker_s: f64,
    own_s: f64,
}

impl Snapshot {
    fn take(pid: u32, counters: &Counters) -> anyhow::Result<Snapshot> {
        Ok(Snapshot {
            at: Instant::now(),
            sent: counters.progress.sent.load(Ordering::Relaxed),
            received: counters.received.load(Ordering::Relaxed),
            kafka: counters.progress.kafka_received.load(Ordering::Relaxed),
            broker_s: cpu_ticks(pid)? as f64 / clock_ticks_per_s(),
            own_s: own_cpu_s(),
        })
    }
}

/// The scenario of a fleet run at `qos` against `target` (no iot-sim subscriber).
fn scenario(target: &Target, qos: QoS, bench: &MqttShapes) -> anyhow::Result<iot_sim::Scenario> {
    let duration =
        READY_ALLOWANCE + Duration::from_secs_f64(bench.fleet_seconds) + Duration::from_millis(500);
    let mix = if qos == QoS::AtMostOnce {
        "[1, 0, 0]"
    } else {
        "[0, 1, 0]"
    };
    let mut scenario = iot_sim::Scenario::parse(&format!(
        "devices = {}\nrate_per_device_per_s = 1\nduration_s = {}\ndrain_s = 20\n\
         qos_mix = {mix}\nsubscribers = 0\nworkers = 1\ntopic = \"fleet/{{device}}/t\"\n\
         payload = \"bytes:{}\"\nclient_id_prefix = \"fleet\"\n",
        bench.fleet_devices.max(1),
        duration.as_secs_f64(),
        bench.payload_bytes.max(16),
    ))?;
    scenario.broker = target.addr.to_string();
    scenario.kafka_bootstrap = target.weir.as_ref().map(|w| w.kafka.to_string());
    Ok(scenario)
}

/// One fleet run at `qos` against `target`.
pub(crate) fn fleet(target: &Target, qos: QoS, bench: &MqttShapes) -> anyhow::Result<Sample> {
    let scenario = scenario(target, qos, bench)?;
    let subscriber = connect(target.addr, "fleet-sub", Some(("fleet/#", qos)))?;
    let counters = Arc::new(Counters::default());
    let receiver = {
        let c = counters.clone();
        std::thread::spawn(move || {
            receive(vec![subscriber], u64::MAX, (&c.ended, &c.received), None)
        })
    };
    let sampler = {
        let (c, pid) = (counters.clone(), target.pid);
        let (devices, duration) = (scenario.devices as u64, scenario.duration);
        std::thread::spawn(move || sample_window(pid, &c, devices, duration))
    };
    let report = iot_sim::run(&scenario, &counters.progress);
    counters.ended.store(true, Ordering::Release);
    let window = (sampler.join()).map_err(|_| anyhow!("the fleet sampler panicked"))?;
    let got = (receiver.join()).map_err(|_| anyhow!("the fleet subscriber panicked"))?;
    let (report, (first, last), got) = (report?, window?, got?);
    let seconds = last.at.duration_since(first.at).as_secs_f64().max(1e-6);
    let sent = last.sent.saturating_sub(first.sent).max(1);
    let per_s = |a: u64, b: u64| b.saturating_sub(a) as f64 / seconds;
    Ok(Sample {
        sent_per_s: per_s(first.sent, last.sent),
        delivered_per_s: per_s(first.received, last.received),
        lost: report.sent_total().saturating_sub(got.count),
        broker_cpu_us: (last.broker_s - first.broker_s) * 1e6 / sent as f64,
        generator_cpu_us: (last.own_s - first.own_s) * 1e6 / sent as f64,
        latency_ms: None,
        kafka: report.kafka.map(|k| {
            (
                per_s(first.kafka, last.kafka),
                report.sent_total().saturating_sub(k.received),
            )
        }),
    })
}

/// Waits until the fleet is ready: every device connected (publishing starts as the first
/// one connects), on schedule (open-loop pacing sends what fell due while a device was
/// connecting as soon as it can: that backlog sent) and the subscriber caught up (each to
/// within `devices / 2`, half a second of messages), or [`READY_ALLOWANCE`] after the first
/// connection, whichever comes first. Then takes the window's first snapshot, and its last
/// half a second before publishing ends (`duration` after the first connection). An error if
/// the run ended before any device connected.
fn sample_window(
    pid: u32,
    counters: &Counters,
    devices: u64,
    duration: Duration,
) -> anyhow::Result<(Snapshot, Snapshot)> {
    let count = |n: &AtomicU64| n.load(Ordering::Relaxed);
    let progress = &counters.progress;
    while count(&progress.connected) == 0 {
        if counters.ended.load(Ordering::Acquire) {
            anyhow::bail!("the fleet run ended before any device connected");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let started = Instant::now();
    let ready = || {
        let due = devices as f64 * started.elapsed().as_secs_f64();
        let (sent, received) = (count(&progress.sent), count(&counters.received));
        count(&progress.connected) >= devices
            && sent as f64 + devices as f64 / 2.0 >= due
            && received + devices / 2 >= sent
    };
    while !ready() && started.elapsed() < READY_ALLOWANCE {
        std::thread::sleep(Duration::from_millis(10));
    }
    let first = Snapshot::take(pid, counters)?;
    println!(
        "  fleet: {} of {devices} devices connected; {} {:.1} s after the first connected; {} sent, {} received",
        count(&progress.connected),
        if ready() {
            "ready"
        } else {
            "NOT on schedule or not caught up"
        },
        started.elapsed().as_secs_f64(),
        first.sent,
        first.received
    );
    let end = started + duration - Duration::from_millis(500);
    std::thread::sleep(end.saturating_duration_since(Instant::now()));
    Ok((first, Snapshot::take(pid, counters)?))
}
