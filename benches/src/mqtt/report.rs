//! The report of `weir-bench mqtt`: every run's figures kept by case and broker, then one
//! Markdown table of medians per shape and the ratios Weir / Mosquitto.

use super::settings::{Case, MqttShapes, Sample, Shape};
use crate::server::median;

/// Every run's figures: `samples[case][broker]`, one per round.
#[derive(Debug)]
pub(crate) struct Results {
    cases: Vec<Case>,
    brokers: Vec<&'static str>,
    samples: Vec<Vec<Vec<Sample>>>,
}

impl Results {
    pub(crate) fn new(cases: &[Case], brokers: &[&'static str]) -> Results {
        Results {
            cases: cases.to_vec(),
            brokers: brokers.to_vec(),
            samples: vec![vec![Vec::new(); brokers.len()]; cases.len()],
        }
    }

    pub(crate) fn push(&mut self, case: usize, broker: usize, sample: Sample) {
        self.samples[case][broker].push(sample);
    }

    /// The median of each figure of case `c` on broker `b`.
    fn median(&self, c: usize, b: usize) -> Sample {
        let runs = &self.samples[c][b];
        let med = |f: &dyn Fn(&Sample) -> f64| median(runs.iter().map(f).collect());
        let latency = |i: usize| med(&|s| s.latency_ms.map_or(0.0, |l| l[i]));
        Sample {
            sent_per_s: med(&|s| s.sent_per_s),
            delivered_per_s: med(&|s| s.delivered_per_s),
            lost: med(&|s| s.lost as f64) as u64,
            broker_cpu_us: med(&|s| s.broker_cpu_us),
            generator_cpu_us: med(&|s| s.generator_cpu_us),
            latency_ms: runs
                .first()
                .and_then(|s| s.latency_ms)
                .map(|_| [latency(0), latency(1), latency(2)]),
            kafka: runs.first().and_then(|s| s.kafka).map(|_| {
                (
                    med(&|s| s.kafka.map_or(0.0, |k| k.0)),
                    med(&|s| s.kafka.map_or(0.0, |k| k.1 as f64)) as u64,
                )
            }),
        }
    }

    /// One table per shape, then the ratios.
    pub(crate) fn print(&self, bench: &MqttShapes) {
        for shape in Shape::ALL {
            let cases: Vec<usize> = (0..self.cases.len())
                .filter(|&c| self.cases[c].shape == shape)
                .collect();
            if cases.is_empty() {
                continue;
            }
            println!("\n{}\n", title(shape, bench));
            println!("{}", header(shape, bench.rounds));
            for c in cases {
                for b in 0..self.brokers.len() {
                    println!("{}", self.row(c, b));
                }
            }
        }
        println!();
        for c in 0..self.cases.len() {
            self.ratios(c);
        }
    }

    /// The table row of case `c` on broker `b`.
    fn row(&self, c: usize, b: usize) -> String {
        let (case, name, m) = (&self.cases[c], self.brokers[b], self.median(c, b));
        let qos = case.qos as u8;
        let cpu = format!("{:.2} us | {:.2} us", m.broker_cpu_us, m.generator_cpu_us);
        let latency = m.latency_ms.map_or(String::new(), |[p50, p99, p999]| {
            format!("{p50:.3} | {p99:.3} | {p999:.3}")
        });
        match case.shape {
            Shape::FixedRate => format!(
                "| {name} | {} | {qos} | {:.0} | {} | {latency} | {cpu} |",
                case.rate.unwrap_or(0),
                m.delivered_per_s,
                m.lost
            ),
            Shape::Fleet => {
                let kafka = m.kafka.map_or("- | -".to_owned(), |(per_s, lost)| {
                    format!("{per_s:.0} | {lost}")
                });
                format!(
                    "| {name} | {qos} | {:.0} | {:.0} | {} | {kafka} | {cpu} |",
                    m.sent_per_s, m.delivered_per_s, m.lost
                )
            }
            _ => format!(
                "| {name} | {qos} | {:.0} | {} | {cpu} |",
                m.delivered_per_s, m.lost
            ),
        }
    }

    /// The ratios of case `c`: each Weir against Mosquitto, and Weir under an ACL against
    /// Weir without one.
    fn ratios(&self, c: usize) {
        let find = |name: &str| self.brokers.iter().position(|b| *b == name);
        let case = &self.cases[c];
        let compare = |ours: usize, theirs: usize| {
            let (a, b) = (self.median(c, ours), self.median(c, theirs));
            let cpu = format!("{:.2}x broker CPU/msg", a.broker_cpu_us / b.broker_cpu_us);
            match (case.shape, a.latency_ms, b.latency_ms) {
                (Shape::Fleet, _, _) => cpu,
                (_, Some(x), Some(y)) => format!(
                    "{cpu}, {:.2}x p50, {:.2}x p99, {:.2}x p99.9",
                    x[0] / y[0],
                    x[1] / y[1],
                    x[2] / y[2]
                ),
                _ => format!("{:.2}x msg/s, {cpu}", a.delivered_per_s / b.delivered_per_s),
            }
        };
        if let Some(peer) = find("mosquitto") {
            for (b, name) in self.brokers.iter().enumerate() {
                if name.starts_with("weir") {
                    println!("{}: {name} / mosquitto: {}", case.label(), compare(b, peer));
                }
            }
        }
        if let (Some(plain), Some(acl)) = (find("weir fsync"), find("weir fsync acl")) {
            println!(
                "{}: weir fsync acl / weir fsync: {}",
                case.label(),
                compare(acl, plain)
            );
        }
    }
}

/// What a shape's table shows.
fn title(shape: Shape, bench: &MqttShapes) -> String {
    match shape {
        Shape::OneToOne => {
            "one-to-one: 1 publisher on `bench/0` -> 1 subscriber of `bench/0`, pipelined".into()
        }
        Shape::FourToOne => format!(
            "four-to-one: {} publishers on `bench/<n>` -> 1 subscriber of `bench/#`, pipelined",
            bench.publishers
        ),
        Shape::FanOut => format!(
            "fan-out: 1 publisher on `bench/0` -> {} subscribers of `bench/0`, pipelined; msg/s counts every delivery, CPU is per delivery",
            bench.fan_out
        ),
        Shape::FixedRate => format!(
            "fixed-rate: 1 publisher -> 1 subscriber, {} s per rate; latency from each message's scheduled send time (ms)",
            bench.fixed_seconds
        ),
        Shape::Fleet => format!(
            "fleet: iot-sim, {} devices x 1 msg/s on `fleet/<n>/t` -> 1 `fleet/#` subscriber (+ a Kafka consumer on Weir); rates and CPU per published message over at least {} s once the fleet is connected, on schedule and read; lost over the whole run",
            bench.fleet_devices, bench.fleet_seconds
        ),
    }
}

/// A shape's table header.
fn header(shape: Shape, rounds: usize) -> String {
    let (columns, n) = match shape {
        Shape::FixedRate => (
            "rate | QoS | msg/s delivered | lost | p50 ms | p99 ms | p99.9 ms | broker CPU/msg | generator CPU/msg",
            10,
        ),
        Shape::Fleet => (
            "QoS | msg/s sent | msg/s delivered | lost | Kafka msg/s | Kafka lost | broker CPU/msg | generator CPU/msg",
            9,
        ),
        _ => (
            "QoS | msg/s delivered | lost | broker CPU/msg | generator CPU/msg",
            6,
        ),
    };
    format!(
        "| broker (medians of {rounds} rounds) | {columns} |\n|{}",
        " --- |".repeat(n)
    )
}
