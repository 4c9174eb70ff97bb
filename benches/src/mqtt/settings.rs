//! What `weir-bench mqtt` runs: its settings, its shapes, the cases they expand to (shape,
//! QoS, rate) and one run's figures.

use weir_mqtt::QoS;

/// Settings of `weir-bench mqtt`.
#[derive(Debug, Clone)]
pub struct MqttShapes {
    /// The shapes to run, in the order given.
    pub shapes: Vec<Shape>,
    /// Messages published per pipelined run (one-to-one, the wildcard shape); fan-out
    /// publishes `messages / fan_out`, each delivered to every subscriber.
    pub messages: usize,
    /// Publishers of the wildcard shape.
    pub publishers: usize,
    /// Subscribers of the fan-out shape.
    pub fan_out: usize,
    /// Payload bytes (at least 8 in fixed-rate runs, which carry a sequence number).
    pub payload_bytes: usize,
    /// QoS 1 publishes in flight per publisher, at most.
    pub window: usize,
    /// Messages per second of the fixed-rate runs.
    pub rates: Vec<u32>,
    /// Seconds of each fixed-rate run.
    pub fixed_seconds: f64,
    /// Devices of the fleet, each publishing once a second.
    pub fleet_devices: usize,
    /// Seconds the fleet is measured for, once every device is connected and warm.
    pub fleet_seconds: f64,
    /// Rounds, alternating the brokers.
    pub rounds: usize,
    /// Also Weir (fsync) under an access-control list granting the benchmark's topics.
    pub acl: bool,
}

/// A shape of traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Shape {
    /// One publisher to one subscriber of its exact topic, pipelined.
    OneToOne,
    /// Several publishers (4 by default) to one `bench/#` subscriber, pipelined.
    FourToOne,
    /// One publisher to many subscribers of its exact topic, pipelined.
    FanOut,
    /// One publisher to one subscriber at fixed rates: latency.
    FixedRate,
    /// An iot-sim fleet at one message per device per second: CPU per message.
    Fleet,
}

impl Shape {
    /// Every shape, in the order of the report.
    pub const ALL: [Shape; 5] = [
        Shape::OneToOne,
        Shape::FourToOne,
        Shape::FanOut,
        Shape::FixedRate,
        Shape::Fleet,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Shape::OneToOne => "one-to-one",
            Shape::FourToOne => "four-to-one",
            Shape::FanOut => "fan-out",
            Shape::FixedRate => "fixed-rate",
            Shape::Fleet => "fleet",
        }
    }
}

impl std::str::FromStr for Shape {
    type Err = String;

    fn from_str(text: &str) -> Result<Shape, String> {
        Shape::ALL
            .into_iter()
            .find(|shape| shape.name() == text.trim())
            .ok_or_else(|| {
                let names: Vec<&str> = Shape::ALL.iter().map(|s| s.name()).collect();
                format!("{text:?}: expected one of {}", names.join(", "))
            })
    }
}

/// One measured combination: a shape at a QoS (and a rate, for fixed-rate runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Case {
    pub(crate) shape: Shape,
    pub(crate) qos: QoS,
    /// Messages per second (fixed-rate runs).
    pub(crate) rate: Option<u32>,
}

impl Case {
    /// Every case of `bench`'s shapes: QoS 0 and 1 of each, at each rate for fixed-rate runs.
    pub(crate) fn all(bench: &MqttShapes) -> Vec<Case> {
        let mut cases = Vec::new();
        let mut shapes = Vec::new();
        for shape in &bench.shapes {
            if !shapes.contains(shape) {
                shapes.push(*shape);
            }
        }
        for shape in shapes {
            let rates: Vec<Option<u32>> = match shape {
                Shape::FixedRate => bench.rates.iter().map(|r| Some(*r)).collect(),
                _ => vec![None],
            };
            for rate in rates {
                for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
                    cases.push(Case { shape, qos, rate });
                }
            }
        }
        cases
    }

    /// `shape[, N msg/s], QoS q`.
    pub(crate) fn label(&self) -> String {
        match self.rate {
            Some(rate) => format!("{} {rate} msg/s, QoS {}", self.shape.name(), self.qos as u8),
            None => format!("{}, QoS {}", self.shape.name(), self.qos as u8),
        }
    }
}

/// One run's figures.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Sample {
    /// Messages published per second (the fleet: in the measured window).
    pub(crate) sent_per_s: f64,
    /// Deliveries per second, every subscriber's counted.
    pub(crate) delivered_per_s: f64,
    /// Deliveries that never came.
    pub(crate) lost: u64,
    /// Broker CPU time (user + system, every thread) per message, microseconds.
    pub(crate) broker_cpu_us: f64,
    /// The load generator's (this process's) CPU time per message, microseconds.
    pub(crate) generator_cpu_us: f64,
    /// Publish-to-delivery latency p50, p99 and p99.9, milliseconds.
    pub(crate) latency_ms: Option<[f64; 3]>,
    /// The fleet's Kafka consumer: messages read per second and messages it never read.
    pub(crate) kafka: Option<(f64, u64)>,
}
