//! `/metrics` in the Prometheus text format: per-shard connection and traffic counters, the
//! group-commit writer's counters and its commit-latency histogram.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::shard::ShardMetrics;
use crate::writer::WriterHandle;

/// Where `/metrics` reads from.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// One entry per shard.
    pub shards: Arc<[ShardMetrics]>,
    /// The log writer.
    pub writer: WriterHandle,
    /// Plugin counters.
    pub plugins: Option<Arc<crate::plugins::Registry>>,
}

impl Metrics {
    /// The whole page.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        type Field = fn(&ShardMetrics) -> &AtomicU64;
        let per_shard: [(&str, &str, &str, Field); 14] = [
            (
                "weir_connections_accepted_total",
                "counter",
                "Connections accepted and kept.",
                |m| &m.accepted,
            ),
            (
                "weir_connections_refused_total",
                "counter",
                "Connections closed at accept: a connection limit was reached.",
                |m| &m.refused,
            ),
            ("weir_connections_open", "gauge", "Connections open.", |m| {
                &m.open
            }),
            (
                "weir_connections_timed_out_total",
                "counter",
                "Connections closed by the handshake or idle timeout.",
                |m| &m.timed_out,
            ),
            (
                "weir_protocol_errors_total",
                "counter",
                "Connections closed for a protocol error.",
                |m| &m.protocol_errors,
            ),
            (
                "weir_received_bytes_total",
                "counter",
                "Bytes received from clients.",
                |m| &m.bytes_in,
            ),
            (
                "weir_sent_bytes_total",
                "counter",
                "Bytes sent to clients.",
                |m| &m.bytes_out,
            ),
            (
                "weir_requests_total",
                "counter",
                "Requests answered.",
                |m| &m.requests,
            ),
            (
                "weir_write_queue_bytes",
                "gauge",
                "Bytes waiting to be sent to clients.",
                |m| &m.write_queue_bytes,
            ),
            (
                "weir_connections_read_paused",
                "gauge",
                "Connections not read because their client does not read its responses.",
                |m| &m.read_paused,
            ),
            (
                "weir_event_loop_iterations_total",
                "counter",
                "Event-loop wake-ups.",
                |m| &m.loop_iterations,
            ),
            (
                "weir_mqtt_messages_delivered_total",
                "counter",
                "MQTT messages written or queued to subscribers.",
                |m| &m.mqtt_delivered,
            ),
            (
                "weir_mqtt_messages_dropped_total",
                "counter",
                "MQTT QoS 0 messages not delivered to a subscriber whose write buffer was full \
                 (they stay in the log).",
                |m| &m.mqtt_dropped,
            ),
            (
                "weir_mqtt_publishes_denied_total",
                "counter",
                "MQTT publishes the access-control list (auth.acl_file) refused; nothing of them \
                 is stored.",
                |m| &m.mqtt_denied,
            ),
        ];
        for (name, kind, help, field) in per_shard {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (shard, metrics) in self.shards.iter().enumerate() {
                let value = field(metrics).load(Ordering::Relaxed);
                let _ = writeln!(out, "{name}{{shard=\"{shard}\"}} {value}");
            }
        }
        let stats = self.writer.stats();
        let writer: [(&str, &str, &str, u64); 5] = [
            (
                "weir_log_commits_total",
                "counter",
                "Group commits.",
                stats.commits.load(Ordering::Relaxed),
            ),
            (
                "weir_log_appends_total",
                "counter",
                "Batches appended.",
                stats.appends.load(Ordering::Relaxed),
            ),
            (
                "weir_log_appended_bytes_total",
                "counter",
                "Bytes appended.",
                stats.bytes.load(Ordering::Relaxed),
            ),
            (
                "weir_log_append_failures_total",
                "counter",
                "Appends that failed.",
                stats.failures.load(Ordering::Relaxed),
            ),
            (
                "weir_log_append_queue_bytes",
                "gauge",
                "Bytes submitted to the writer and not yet completed.",
                self.writer.queued_bytes(),
            ),
        ];
        for (name, kind, help, value) in writer {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        stats.commit_latency.render(
            &mut out,
            "weir_log_commit_seconds",
            "Time of one group commit in the store.",
        );
        if let Some(plugins) = &self.plugins {
            plugins.render_metrics(&mut out);
        }
        out
    }
}
