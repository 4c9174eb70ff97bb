//! What a run measured: the [`Report`] (counts, loss, duplicates, HDR-histogram latencies)
//! as JSON and as a Markdown table, and the live [`Progress`] counters a progress line reads
//! while it runs.

use std::sync::atomic::AtomicU64;

use hdrhistogram::Histogram;

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
    /// The percentiles of `h`.
    pub(crate) fn of(h: &Histogram<u64>) -> Percentiles {
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

/// An empty latency histogram, microseconds.
pub(crate) fn histogram() -> Histogram<u64> {
    // 1 us to 1 hour, 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant bounds are valid")
}
