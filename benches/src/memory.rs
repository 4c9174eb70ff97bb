//! `weir-bench memory`: the broker's memory and speed for each allocator it may be built with.
//! Each variant is a `weir` binary and environment (`--variant LABEL=PATH[@NAME=VALUE]`):
//! the release build (glibc with Weir's settings: one arena, thresholds, a trim every 5 s),
//! the same binary with `GLIBC_TUNABLES` set (Weir then leaves glibc's settings alone: its
//! defaults), and a build with `--features mimalloc`. For each, a fresh broker on its
//! zero-config defaults (every shard, fsync) in a new data directory:
//!
//! 1. idle: resident memory 2 s after it is ready (all of it, and the anonymous part: the
//!    rest is the log's memory map and the binary, pages the kernel can drop);
//! 2. idle connections: the anonymous growth with `--connections` MQTT connections open;
//! 3. load: one publisher, one subscriber, `--messages` 100-byte QoS 0 then QoS 1 messages
//!    pipelined (QoS 1: 64 in flight): messages per second and broker CPU per message;
//! 4. after: peak resident memory (VmHWM, the log's mapped pages included), and anonymous
//!    memory 7 s after the load ended (after a trim), with the connections closed: what the
//!    process kept.
//!
//! Rounds alternate the variants; medians are reported.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use iot_sim::client::Conn;
use weir_mqtt::QoS;

use crate::mqtt::{MqttBench, measure, raise_fd_limit};
use crate::server::{Broker, median, status_kib, weir_binary};

/// Settings of the memory benchmark.
#[derive(Debug, Clone)]
pub struct MemoryBench {
    /// `LABEL=PATH[@NAME=VALUE]` per variant; empty: the release `weir`, as is and with
    /// glibc's defaults.
    pub variants: Vec<String>,
    /// Idle MQTT connections opened.
    pub connections: usize,
    /// Messages per load run (each QoS).
    pub messages: usize,
    /// Rounds (medians reported).
    pub rounds: usize,
}

/// One variant: a binary and its extra environment.
#[derive(Debug, Clone)]
struct Variant {
    label: String,
    binary: PathBuf,
    env: Vec<(String, String)>,
}

/// One round's figures for one variant.
#[derive(Debug, Clone, Default)]
struct Figures {
    idle_kib: f64,
    idle_anon_kib: f64,
    per_connection_kib: f64,
    qos0_per_s: f64,
    qos0_cpu_us: f64,
    qos1_per_s: f64,
    qos1_cpu_us: f64,
    peak_kib: f64,
    after_kib: f64,
}

/// Runs every variant, round after round, and prints the table.
pub fn run(bench: &MemoryBench) -> anyhow::Result<()> {
    let variants = variants(bench)?;
    let limit = raise_fd_limit();
    anyhow::ensure!(
        limit as usize > bench.connections + 64,
        "{} idle connections need more open files than the limit of {limit}",
        bench.connections
    );
    let mut results: Vec<Vec<Figures>> = vec![Vec::new(); variants.len()];
    for round in 0..bench.rounds.max(1) {
        for (i, variant) in variants.iter().enumerate() {
            eprintln!("round {}: {}", round + 1, variant.label);
            results[i].push(one(variant, bench)?);
        }
    }
    print_table(bench, &variants, &results);
    Ok(())
}

/// The variants named, or the default two.
fn variants(bench: &MemoryBench) -> anyhow::Result<Vec<Variant>> {
    if bench.variants.is_empty() {
        let weir = weir_binary()?;
        let defaults = (
            "GLIBC_TUNABLES".to_owned(),
            "glibc.malloc.check=0".to_owned(),
        );
        return Ok(vec![
            Variant {
                label: "glibc, Weir's settings".to_owned(),
                binary: weir.clone(),
                env: Vec::new(),
            },
            Variant {
                label: "glibc defaults".to_owned(),
                binary: weir,
                env: vec![defaults],
            },
        ]);
    }
    (bench.variants.iter())
        .map(|spec| {
            let (label, rest) = spec.split_once('=').context("LABEL=PATH[@NAME=VALUE]")?;
            let (path, env) = match rest.split_once('@') {
                Some((path, env)) => {
                    let (name, value) = env.split_once('=').context("@NAME=VALUE")?;
                    (path, vec![(name.to_owned(), value.to_owned())])
                }
                None => (rest, Vec::new()),
            };
            anyhow::ensure!(Path::new(path).exists(), "{path} not found");
            Ok(Variant {
                label: label.to_owned(),
                binary: PathBuf::from(path),
                env,
            })
        })
        .collect()
}

/// One round of one variant, on a fresh broker.
fn one(variant: &Variant, bench: &MemoryBench) -> anyhow::Result<Figures> {
    let dir = tempfile::tempdir()?;
    let env: Vec<(&str, &str)> = (variant.env.iter())
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let broker = Broker::start(&variant.binary, dir.path(), &env)?;
    let pid = broker.pid();
    let mut figures = Figures::default();
    // The figures are defined at times, not on events: idle is 2 s after ready (threads
    // parked, the first sweeps done), "after" past the maintenance thread's 5 s trim.
    std::thread::sleep(Duration::from_secs(2));
    figures.idle_kib = status_kib(pid, "VmRSS")? as f64;
    figures.idle_anon_kib = status_kib(pid, "RssAnon")? as f64;
    // Each connection has its CONNACK, so the broker holds its state: read at once.
    let conns = idle_connections(broker.mqtt, bench.connections)?;
    let with = status_kib(pid, "RssAnon")? as f64;
    figures.per_connection_kib = (with - figures.idle_anon_kib) / bench.connections.max(1) as f64;
    drop(conns);
    let load = MqttBench {
        messages: bench.messages,
        publishers: 1,
        window: 64,
    };
    let payload = [0x5a; 100];
    let qos0 = measure(broker.mqtt, pid, QoS::AtMostOnce, &load, &payload)?;
    let qos1 = measure(broker.mqtt, pid, QoS::AtLeastOnce, &load, &payload)?;
    (figures.qos0_per_s, figures.qos0_cpu_us) = (qos0.messages_per_s, qos0.cpu_us_per_message);
    (figures.qos1_per_s, figures.qos1_cpu_us) = (qos1.messages_per_s, qos1.cpu_us_per_message);
    figures.peak_kib = status_kib(pid, "VmHWM")? as f64;
    std::thread::sleep(Duration::from_secs(7));
    figures.after_kib = status_kib(pid, "RssAnon")? as f64;
    drop(broker);
    Ok(figures)
}

/// Opens `count` MQTT connections (each waits for its CONNACK) that then stay idle.
fn idle_connections(addr: SocketAddr, count: usize) -> anyhow::Result<Vec<Conn>> {
    (0..count)
        .map(|i| Conn::connect(addr, &format!("idle-{i}")))
        .collect()
}

fn print_table(bench: &MemoryBench, variants: &[Variant], results: &[Vec<Figures>]) {
    println!(
        "\n| variant (medians of {} rounds) | idle RSS (anonymous) | per idle connection ({}) | QoS 0 msg/s | CPU/msg | QoS 1 msg/s | CPU/msg | peak RSS | anonymous after |",
        bench.rounds.max(1),
        bench.connections
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (variant, rounds) in variants.iter().zip(results) {
        let m = |f: fn(&Figures) -> f64| median(rounds.iter().map(f).collect());
        println!(
            "| {} | {:.1} MiB ({:.1} MiB) | {:.2} KiB | {:.0} | {:.2} us | {:.0} | {:.2} us | {:.1} MiB | {:.1} MiB |",
            variant.label,
            m(|f| f.idle_kib) / 1024.0,
            m(|f| f.idle_anon_kib) / 1024.0,
            m(|f| f.per_connection_kib),
            m(|f| f.qos0_per_s),
            m(|f| f.qos0_cpu_us),
            m(|f| f.qos1_per_s),
            m(|f| f.qos1_cpu_us),
            m(|f| f.peak_kib) / 1024.0,
            m(|f| f.after_kib) / 1024.0,
        );
    }
}
