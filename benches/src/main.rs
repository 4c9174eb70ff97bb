//! `weir-bench`: Weir's benchmarks. Every figure is reported next to a baseline measured in
//! the same run on the same machine (the raw disk, another broker, the same code without a
//! plugin), because absolute numbers on a shared VM mean little alone.
//!
//! Benchmarks are not tests: nothing here asserts on speed. Run them with
//! `cargo run --release -p weir-bench -- <workload>` or `cargo xtask bench`.

mod kafka;
mod log;
mod memory;
mod mqtt;
mod plugins;
mod server;
mod suite;
mod tls;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "weir-bench", about = "Weir's side-by-side benchmarks")]
struct Cli {
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Debug, Subcommand)]
enum Workload {
    /// The partitioned log against the raw disk: durable and relaxed appends, scans, group
    /// commit under concurrency.
    Log {
        /// Directory to run in (its file system is what is measured). Default: a temporary
        /// directory under the current one.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// MiB written by each throughput run.
        #[arg(long, default_value_t = 512)]
        mib: u64,
        /// 1 KiB records per batch.
        #[arg(long, default_value_t = 32)]
        records_per_batch: usize,
        /// Shapes of the throughput runs, each `APPENDERSxIN_FLIGHT`: 8x1 is eight closed-loop
        /// appenders, 2x16 two appenders (one per core, as shards) with 16 appends in flight
        /// each.
        #[arg(long, value_delimiter = ',', default_value = "8x1,2x16")]
        shapes: Vec<log::Shape>,
        /// Durability modes of the throughput runs: fsync, relaxed or both.
        #[arg(long, value_delimiter = ',', default_value = "fsync,relaxed")]
        modes: Vec<log::Mode>,
        /// Group-commit window in microseconds.
        #[arg(long, default_value_t = 0)]
        window_us: u64,
        /// Seconds per concurrency run (0: no concurrency runs).
        #[arg(long, default_value_t = 3)]
        seconds: u64,
        /// Alternating rounds of weir and its baseline (medians are reported).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// The real `weir` process with librdkafka producing 1 KiB records (acks=all, fsync)
    /// next to the raw disk, and consuming them from the start.
    Kafka {
        /// Directory to run in (its file system is what is measured). Default: a temporary
        /// directory under the current one.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// MiB of record values per round.
        #[arg(long, default_value_t = 512)]
        mib: u64,
        /// Bytes per record value.
        #[arg(long, default_value_t = 1024)]
        record_bytes: usize,
        /// Rounds (medians are reported).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// MQTT through the real `weir` process (fsync and relaxed) and Mosquitto side by side,
    /// QoS 0 and 1: one-to-one, four-to-one on a wildcard, fan-out, fixed-rate latency, an
    /// iot-sim fleet; broker and generator CPU per message.
    Mqtt {
        /// Shapes to run: one-to-one, four-to-one, fan-out, fixed-rate, fleet.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "one-to-one,four-to-one,fan-out,fixed-rate,fleet"
        )]
        shapes: Vec<mqtt::Shape>,
        /// Messages published per pipelined run (fan-out publishes MESSAGES / FAN_OUT, each
        /// delivered to every subscriber).
        #[arg(long, default_value_t = 100_000)]
        messages: usize,
        /// Publishers of the four-to-one shape.
        #[arg(long, default_value_t = 4)]
        publishers: usize,
        /// Subscribers of the fan-out shape.
        #[arg(long, default_value_t = 100)]
        fan_out: usize,
        /// Payload bytes.
        #[arg(long, default_value_t = 100)]
        payload_bytes: usize,
        /// QoS 1 publishes in flight per publisher, at most.
        #[arg(long, default_value_t = 1000)]
        window: usize,
        /// Messages per second of the fixed-rate runs.
        #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
        rates: Vec<u32>,
        /// Seconds of each fixed-rate run.
        #[arg(long, default_value_t = 4.0)]
        fixed_seconds: f64,
        /// Devices of the fleet (one connection and one message per second each).
        #[arg(long, default_value_t = 10_000)]
        fleet_devices: usize,
        /// Seconds the fleet is measured for (at least), once it is connected and on schedule.
        #[arg(long, default_value_t = 10.0)]
        fleet_seconds: f64,
        /// Rounds, alternating the brokers.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Also Weir (fsync) with an access-control list that grants the clients `bench/#`
        /// and `fleet/#`, beside the same code without one: what checking every publish and
        /// delivery costs.
        #[arg(long)]
        acl: bool,
    },
    /// What TLS costs: MQTT QoS 0 over TCP and over TLS, TLS handshakes per second on one
    /// core and memory per idle TLS connection, Weir and Mosquitto side by side; Kafka 1 KiB
    /// produce over TCP and TLS.
    Tls {
        /// QoS 0 messages per throughput run, all publishers together.
        #[arg(long, default_value_t = 200_000)]
        messages: usize,
        /// Publisher connections.
        #[arg(long, default_value_t = 4)]
        publishers: usize,
        /// Payload bytes.
        #[arg(long, default_value_t = 100)]
        payload_bytes: usize,
        /// Rounds, alternating brokers and transports.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Idle connections opened for the memory figure.
        #[arg(long, default_value_t = 1000)]
        idle_connections: usize,
        /// Seconds of connecting for the handshake rate.
        #[arg(long, default_value_t = 5.0)]
        handshake_seconds: f64,
        /// MiB of 1 KiB Kafka records produced per transport and round (0: none).
        #[arg(long, default_value_t = 128)]
        kafka_mib: u64,
    },
    /// Every workload whose Weir side exists, against Weir and the peers found here
    /// (Mosquitto), alternating, several rounds: a table of medians and ratios with CPU per
    /// message and peak RSS, each throughput as a fraction of the disk's or loopback's limit
    /// measured in the same run; results.json and an SVG chart per workload in --out.
    Suite {
        /// Rounds (medians are reported).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Where results.json and the charts go.
        #[arg(long, default_value = "bench-results")]
        out: PathBuf,
        /// Seconds of publishing in the fleet workloads (fan-in, fan-out, MQTT to Kafka).
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Messages per MQTT throughput run (half at 1 KiB).
        #[arg(long, default_value_t = 200_000)]
        messages: usize,
        /// MiB produced per Kafka run.
        #[arg(long, default_value_t = 256)]
        kafka_mib: u64,
    },
    /// Ingest plugins: per-record call cost in both worlds against the same code natively,
    /// instantiation, start-up with 10 plugins (compiled and cached), and MQTT end to end
    /// with `threshold-filter` bound against no plugin. Needs `cargo xtask plugins`.
    Plugins {
        /// Seconds per call-cost figure.
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
        /// Messages per end-to-end run.
        #[arg(long, default_value_t = 100_000)]
        messages: usize,
        /// Rounds (medians are reported).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// The broker's memory and speed per allocator variant (`LABEL=PATH[@NAME=VALUE]`, e.g.
    /// a `--features mimalloc` build): idle RSS, RSS per idle MQTT connection, one-to-one
    /// QoS 0 and 1 throughput and CPU, peak RSS and RSS returned after the load. Without
    /// variants: the release `weir` with Weir's glibc settings and with glibc's defaults.
    Memory {
        /// A variant to run (repeat the flag for several).
        #[arg(long = "variant")]
        variants: Vec<String>,
        /// Idle MQTT connections opened.
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        /// Messages per load run, each QoS.
        #[arg(long, default_value_t = 300_000)]
        messages: usize,
        /// Rounds, alternating the variants (medians are reported).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// The real `weir` process on io_uring and on epoll: pipelined ApiVersions requests per
    /// second and CPU per request, idle memory, start-to-ready time.
    Server {
        /// Client connections.
        #[arg(long, default_value_t = 16)]
        connections: usize,
        /// Requests in flight per connection.
        #[arg(long, default_value_t = 32)]
        pipeline: usize,
        /// Seconds per run.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Rounds, alternating the backends.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().workload {
        Workload::Kafka {
            dir,
            mib,
            record_bytes,
            rounds,
        } => {
            let temp = tempfile::tempdir_in(dir.unwrap_or_else(|| PathBuf::from(".")))?;
            kafka::run(
                temp.path(),
                &kafka::KafkaBench {
                    total_bytes: mib << 20,
                    record_bytes: record_bytes.max(1),
                    rounds: rounds.max(1),
                },
            )
        }
        Workload::Suite {
            rounds,
            out,
            seconds,
            messages,
            kafka_mib,
        } => suite::run(&suite::SuiteBench {
            rounds: rounds.max(1),
            out,
            seconds,
            messages,
            kafka_mib: kafka_mib.max(1),
        }),
        Workload::Memory {
            variants,
            connections,
            messages,
            rounds,
        } => memory::run(&memory::MemoryBench {
            variants,
            connections,
            messages,
            rounds,
        }),
        Workload::Plugins {
            seconds,
            messages,
            rounds,
        } => plugins::run(&plugins::PluginBench {
            seconds,
            messages,
            rounds: rounds.max(1),
        }),
        Workload::Tls {
            messages,
            publishers,
            payload_bytes,
            rounds,
            idle_connections,
            handshake_seconds,
            kafka_mib,
        } => tls::run(&tls::TlsBench {
            messages,
            publishers: publishers.max(1),
            payload_bytes,
            rounds: rounds.max(1),
            idle_connections,
            handshake_s: handshake_seconds,
            kafka_mib,
        }),
        Workload::Mqtt {
            shapes,
            messages,
            publishers,
            fan_out,
            payload_bytes,
            window,
            rates,
            fixed_seconds,
            fleet_devices,
            fleet_seconds,
            rounds,
            acl,
        } => mqtt::run(&mqtt::MqttShapes {
            shapes,
            messages,
            publishers: publishers.max(1),
            fan_out: fan_out.max(1),
            payload_bytes,
            window: window.max(1),
            rates,
            fixed_seconds,
            fleet_devices: fleet_devices.max(1),
            fleet_seconds,
            rounds: rounds.max(1),
            acl,
        }),
        Workload::Server {
            connections,
            pipeline,
            seconds,
            rounds,
        } => server::run(&server::ServerBench {
            connections,
            pipeline,
            duration: Duration::from_secs(seconds),
            rounds: rounds.max(1),
        }),
        Workload::Log {
            dir,
            mib,
            records_per_batch,
            shapes,
            modes,
            window_us,
            seconds,
            rounds,
        } => {
            // The log runs in this process: with the allocator settings the `weir` binary
            // gives it (the raw-disk baselines allocate nothing per write).
            weir::memory::tune();
            let temp = tempfile::tempdir_in(dir.unwrap_or_else(|| PathBuf::from(".")))?;
            log::run(
                temp.path(),
                &log::LogBench {
                    total_bytes: mib << 20,
                    records_per_batch,
                    shapes,
                    modes: modes.into_iter().map(log::Mode::durability).collect(),
                    concurrency_run: Duration::from_secs(seconds),
                    commit_window: Duration::from_micros(window_us),
                    rounds: rounds.max(1),
                },
            )
        }
    }
}
