//! The shapes driven by the raw-socket generator: pipelined one-to-one, many-to-one on a
//! wildcard and fan-out, and the fixed-rate latency runs. Every connection is opened and
//! subscribed before the clock starts; the broker's CPU time (`/proc/<pid>/stat`) and this
//! process's (`getrusage`) are read just before the first publish and after the last
//! delivery.

use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use weir_mqtt::QoS;

use super::brokers::Target;
use super::raw::{
    Delivered, Frames, Latencies, Schedule, connect, own_cpu_s, publish_at_rate, publish_pipelined,
    receive,
};
use super::settings::{Case, MqttShapes, Sample, Shape};
use crate::server::{clock_ticks_per_s, cpu_ticks};

/// CPU time of the broker and of this process, seconds.
#[derive(Debug, Clone, Copy)]
struct Cpu {
    broker_s: f64,
    own_s: f64,
}

impl Cpu {
    fn now(pid: u32) -> anyhow::Result<Cpu> {
        Ok(Cpu {
            broker_s: cpu_ticks(pid)? as f64 / clock_ticks_per_s(),
            own_s: own_cpu_s(),
        })
    }

    /// Microseconds per message of each since `before`, over `messages`: (broker, own).
    fn per_message_us(self, before: Cpu, messages: u64) -> (f64, f64) {
        let n = messages.max(1) as f64;
        (
            (self.broker_s - before.broker_s) * 1e6 / n,
            (self.own_s - before.own_s) * 1e6 / n,
        )
    }
}

/// Connects `n` subscribers of `filter` at `qos`.
fn subscribers(
    target: &Target,
    n: usize,
    filter: &str,
    qos: QoS,
) -> anyhow::Result<Vec<TcpStream>> {
    (0..n)
        .map(|s| connect(target.addr, &format!("bench-sub-{s}"), Some((filter, qos))))
        .collect()
}

/// Waits for a thread of the run.
fn join<T>(handle: JoinHandle<anyhow::Result<T>>, what: &str) -> anyhow::Result<T> {
    handle.join().map_err(|_| anyhow!("{what} panicked"))?
}

/// A pipelined run: one-to-one (`bench/0` to its exact subscriber), the wildcard shape
/// (`--publishers` publishers on `bench/<n>` to one `bench/#` subscriber) or fan-out (one
/// publisher on `bench/0` to `--fan-out` subscribers of `bench/0`, `--messages / --fan-out`
/// published, so `--messages` deliveries). Delivered msg/s: every delivery, from the first publish to the last delivery;
/// CPU per message: per delivery.
pub(crate) fn pipelined(
    target: &Target,
    case: &Case,
    bench: &MqttShapes,
) -> anyhow::Result<Sample> {
    let (publishers, subscribers_n, filter, messages) = match case.shape {
        Shape::FourToOne => (bench.publishers.max(1), 1, "bench/#", bench.messages),
        Shape::FanOut => {
            let fan_out = bench.fan_out.max(1);
            (1, fan_out, "bench/0", bench.messages / fan_out)
        }
        _ => (1, 1, "bench/0", bench.messages),
    };
    let per_publisher = (messages / publishers).max(1) as u64;
    let expected = per_publisher * (publishers * subscribers_n) as u64;
    let subs = subscribers(target, subscribers_n, filter, case.qos)?;
    let pubs: Vec<TcpStream> = (0..publishers)
        .map(|p| connect(target.addr, &format!("bench-pub-{p}"), None))
        .collect::<anyhow::Result<_>>()?;
    let payload = vec![0x5a; bench.payload_bytes];
    let frames: Vec<Frames> = (0..publishers)
        .map(|p| Frames::new(&format!("bench/{p}"), case.qos, &payload, usize::MAX))
        .collect();
    let done = Arc::new(AtomicBool::new(false));
    let before = Cpu::now(target.pid)?;
    let started = Instant::now();
    let receiver = {
        let done = done.clone();
        std::thread::spawn(move || receive(subs, expected, (&done, &AtomicU64::new(0)), None))
    };
    let (qos, window) = (case.qos, bench.window);
    let senders: Vec<_> = (pubs.into_iter().zip(frames))
        .map(|(stream, frames)| {
            std::thread::spawn(move || {
                publish_pipelined(stream, frames, per_publisher, qos, window)
            })
        })
        .collect();
    let sent = senders.into_iter().try_for_each(|s| join(s, "a publisher"));
    done.store(true, Ordering::Release);
    let got: Delivered = join(receiver, "the subscribers")?;
    sent?;
    let (broker_cpu_us, generator_cpu_us) = Cpu::now(target.pid)?.per_message_us(before, expected);
    let seconds = (got.last.saturating_duration_since(started).as_secs_f64()).max(1e-6);
    Ok(Sample {
        sent_per_s: (per_publisher * publishers as u64) as f64 / seconds,
        delivered_per_s: got.count as f64 / seconds,
        lost: expected.saturating_sub(got.count),
        broker_cpu_us,
        generator_cpu_us,
        latency_ms: None,
        kafka: None,
    })
}

/// A fixed-rate run: one publisher on `bench/0` at `case.rate` messages per second for
/// `--fixed-seconds`, one subscriber of `bench/0`. Each payload carries its sequence number;
/// the subscriber, in the same process with the same time base, computes each message's
/// latency from its scheduled send time.
pub(crate) fn fixed_rate(
    target: &Target,
    case: &Case,
    bench: &MqttShapes,
) -> anyhow::Result<Sample> {
    let rate = f64::from(case.rate.unwrap_or(1000).max(1));
    let count = (rate * bench.fixed_seconds).max(1.0) as u64;
    let subs = subscribers(target, 1, "bench/0", case.qos)?;
    let publisher = connect(target.addr, "bench-pub-0", None)?;
    let payload = vec![0x5a; bench.payload_bytes.max(8)];
    let frames = Frames::new("bench/0", case.qos, &payload, 256);
    let done = Arc::new(AtomicBool::new(false));
    let before = Cpu::now(target.pid)?;
    // Message `i` is due `i / rate` seconds after `base`, a moment after both threads start.
    let schedule = Schedule {
        base: Instant::now() + Duration::from_millis(5),
        interval_ns: 1e9 / rate,
        count,
    };
    let receiver = {
        let done = done.clone();
        std::thread::spawn(move || -> anyhow::Result<(Delivered, Latencies)> {
            let mut latencies = Latencies::new(schedule);
            let tally = AtomicU64::new(0);
            let got = receive(subs, count, (&done, &tally), Some(&mut latencies))?;
            Ok((got, latencies))
        })
    };
    let (qos, window) = (case.qos, bench.window);
    let sender =
        std::thread::spawn(move || publish_at_rate(publisher, frames, schedule, qos, window));
    let sent = join(sender, "the publisher");
    done.store(true, Ordering::Release);
    let (got, latencies) = join(receiver, "the subscriber")?;
    sent?;
    let (broker_cpu_us, generator_cpu_us) = Cpu::now(target.pid)?.per_message_us(before, count);
    let seconds = (got
        .last
        .saturating_duration_since(schedule.base)
        .as_secs_f64())
    .max(1e-6);
    Ok(Sample {
        sent_per_s: rate,
        delivered_per_s: got.count as f64 / seconds,
        lost: count.saturating_sub(got.count),
        broker_cpu_us,
        generator_cpu_us,
        latency_ms: Some(latencies.percentiles_ms()),
        kafka: None,
    })
}
