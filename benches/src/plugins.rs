//! `weir-bench plugins`: what ingest plugins cost, each figure next to its baseline.
//!
//! 1. Per-record cost of a pass-through plugin called on batches of 1, 10, 100 and 1,000
//!    messages of 100 B, through both worlds: `passthrough` (the Rust SDK, batch as bytes)
//!    and `typed-passthrough` (typed records from wit-bindgen). Baseline: the same SDK code
//!    run natively (no wasm). The time covers what the broker does per call: encode the
//!    batch, call, decode the answer.
//! 2. Instantiation from the pool (`init` included), the cost after a failure discards one.
//! 3. Start-to-ready of the real `weir` with 10 plugin bindings: no plugins, 10 plugins
//!    compiled (first start), 10 plugins from the compiled-module cache (restart).
//! 4. End to end: MQTT QoS 1 publishes of JSON readings through the real `weir` (fsync) with
//!    `threshold-filter` bound, against the same run without a plugin, alternating.
//!
//! Needs the plugins built (`cargo xtask plugins`) and a release `weir`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use weir_core::plugin::{Message, PluginCall, layout};
use weir_plugin_host::{EngineSettings, Limits, PluginEngine};
use weir_plugin_sdk::{Config, MessageRef, Plugin, Verdict};

use crate::mqtt::{MqttBench, Run, measure};
use crate::server::{Broker, median, weir_binary};

/// Settings of the plugin benchmark.
#[derive(Debug, Clone)]
pub struct PluginBench {
    /// Seconds per call-cost figure.
    pub seconds: f64,
    /// Messages per end-to-end run.
    pub messages: usize,
    /// Rounds of the start-up and end-to-end runs (medians reported).
    pub rounds: usize,
}

fn plugin_file(name: &str) -> anyhow::Result<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/target/wasm")
        .join(format!("{name}.wasm"));
    anyhow::ensure!(
        path.exists(),
        "{} missing: run `cargo xtask plugins` first",
        path.display()
    );
    Ok(path)
}

/// The SDK's code natively: the baseline of the call cost.
struct NativePassthrough;

impl Plugin for NativePassthrough {
    fn init(_: &Config) -> Result<Self, String> {
        Ok(NativePassthrough)
    }
    fn process(&mut self, _: &MessageRef<'_>) -> Verdict {
        Verdict::Keep
    }
}

fn batch_of(n: usize) -> Vec<Message> {
    (0..n)
        .map(|i| {
            let mut m = Message::from_mqtt("bench", format!("bench/{}", i % 4), 1, vec![0x5a; 100]);
            m.headers.push(weir_core::plugin::Header {
                name: "mqtt.qos".into(),
                value: b"1".to_vec(),
            });
            m
        })
        .collect()
}

/// Nanoseconds per record of `call` on batches of `n`, for about `seconds`.
fn per_record(n: usize, seconds: f64, mut call: impl FnMut(&[u8], usize)) -> f64 {
    let messages = batch_of(n);
    let mut calls = 0u64;
    let started = Instant::now();
    while started.elapsed().as_secs_f64() < seconds {
        for _ in 0..16 {
            // Encoding is part of the cost: the broker encodes each batch it calls with.
            let bytes = layout::write_batch(&messages);
            call(&bytes, n);
        }
        calls += 16;
    }
    started.elapsed().as_secs_f64() * 1e9 / (calls as f64 * n as f64)
}

pub fn run(bench: &PluginBench) -> anyhow::Result<()> {
    weir::shard::pin_to_cpu(1);
    let engine = PluginEngine::new(&EngineSettings {
        instances_max: 64,
        memory_bytes_max: 16 << 20,
        cache_dir: None,
    })?;
    let limits = Limits {
        deadline_ticks: u64::MAX,
        memory_bytes_max: 16 << 20,
    };
    let bytes_world = engine.load("passthrough", &std::fs::read(plugin_file("passthrough")?)?)?;
    let typed_world = engine.load(
        "typed-passthrough",
        &std::fs::read(plugin_file("typed-passthrough")?)?,
    )?;
    let mut bytes_instance = bytes_world.instantiate(&[], limits)?;
    let mut typed_instance = typed_world.instantiate(&[], limits)?;
    println!("1. pass-through plugin, ns per 100 B record (encode + call + decode), one core:\n");
    println!(
        "| batch | bytes world (Rust SDK) | typed world (wit-bindgen) | native SDK code (baseline) | bytes / native |"
    );
    println!("| --- | --- | --- | --- | --- |");
    for n in [1, 10, 100, 1000] {
        let bytes_ns = per_record(n, bench.seconds, |b, n| {
            bytes_instance.process(b, n).expect("passthrough answers");
        });
        let typed_ns = per_record(n, bench.seconds, |b, n| {
            typed_instance
                .process(b, n)
                .expect("typed passthrough answers");
        });
        let mut native = NativePassthrough;
        let native_ns = per_record(n, bench.seconds, |b, n| {
            let answer = weir_plugin_sdk::runtime::process_with(&mut native, b).expect("native");
            layout::read_answer(&answer, n).expect("answer");
        });
        println!(
            "| {n} | {bytes_ns:.0} | {typed_ns:.0} | {native_ns:.0} | {:.1}x |",
            bytes_ns / native_ns
        );
    }

    let count = 1000;
    let started = Instant::now();
    for _ in 0..count {
        drop(bytes_world.instantiate(&[], limits)?);
    }
    let bytes_us = started.elapsed().as_secs_f64() * 1e6 / f64::from(count);
    let started = Instant::now();
    for _ in 0..count {
        drop(typed_world.instantiate(&[], limits)?);
    }
    let typed_us = started.elapsed().as_secs_f64() * 1e6 / f64::from(count);
    println!(
        "\n2. instantiation from the pool, init included: passthrough {bytes_us:.1} us, typed-passthrough {typed_us:.1} us (mean of {count})"
    );

    startup(bench)?;
    end_to_end(bench)
}

/// Start-to-ready with 10 bindings: none, compiled at start, loaded from the cache.
fn startup(bench: &PluginBench) -> anyhow::Result<()> {
    let weir = weir_binary()?;
    let source = std::fs::read(plugin_file("threshold-filter")?)?;
    let (mut none, mut cold, mut warm) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..bench.rounds {
        let dir = tempfile::tempdir()?;
        let mut bindings = String::from("[");
        for i in 0..10 {
            // Ten different modules: the same plugin with a custom section naming it.
            let mut module = source.clone();
            let name = format!("weir-bench-{i}");
            let body_len = 1 + name.len() + 4;
            module.push(0);
            module.push(body_len as u8);
            module.push(name.len() as u8);
            module.extend_from_slice(name.as_bytes());
            module.extend_from_slice(&(i as u32).to_le_bytes());
            let file = dir.path().join(format!("p{i}.wasm"));
            std::fs::write(&file, module)?;
            bindings.push_str(&format!(
                "{{ name = \"b{i}\", topics = [\"t{i}\"], plugins = [{{ path = \"{}\" }}] }},",
                file.display()
            ));
        }
        bindings.push(']');
        let plain = tempfile::tempdir()?;
        none.push(Broker::start(&weir, plain.path(), &[])?.ready_ms);
        let env = [("WEIR_PLUGINS_BINDINGS", bindings.as_str())];
        cold.push(Broker::start(&weir, dir.path(), &env)?.ready_ms);
        warm.push(Broker::start(&weir, dir.path(), &env)?.ready_ms);
    }
    println!(
        "\n3. start to ready (medians of {} rounds): no plugins {:.1} ms; 10 plugins compiled at start {:.1} ms; 10 plugins from the cache {:.1} ms",
        bench.rounds,
        median(none),
        median(cold),
        median(warm)
    );
    Ok(())
}

/// MQTT QoS 1 JSON readings through weir with and without threshold-filter.
fn end_to_end(bench: &PluginBench) -> anyhow::Result<()> {
    let weir = weir_binary()?;
    let filter = plugin_file("threshold-filter")?;
    let bindings = format!(
        "[{{ name = \"filter\", topics = [\"bench\"], plugins = [{{ path = \"{}\", config = {{ field = \"value\", min = 0, max = 100 }} }}] }}]",
        filter.display()
    );
    let mqtt = MqttBench {
        messages: bench.messages,
        publishers: 4,
        window: 32,
    };
    // 100 bytes of JSON: a reading the filter keeps, padded.
    let mut payload = br#"{"value": 21.5, "unit": "C", "pad": ""#.to_vec();
    payload.resize(100 - 2, b'x');
    payload.extend_from_slice(b"\"}");
    let mut without: Vec<Run> = Vec::new();
    let mut with: Vec<Run> = Vec::new();
    for _ in 0..bench.rounds {
        for plugged in [false, true] {
            let dir = tempfile::tempdir()?;
            let mut env = vec![("WEIR_SERVER_SHARDS", "1")];
            if plugged {
                env.push(("WEIR_PLUGINS_BINDINGS", bindings.as_str()));
            }
            let broker = Broker::start(&weir, dir.path(), &env)?;
            let run = measure(
                broker.mqtt,
                broker.pid(),
                weir_mqtt::QoS::AtLeastOnce,
                &mqtt,
                &payload,
            )?;
            println!(
                "   {}: {:.0} msg/s, {} lost, {:.2} us CPU/message",
                if plugged {
                    "threshold-filter"
                } else {
                    "no plugin"
                },
                run.messages_per_s,
                run.lost,
                run.cpu_us_per_message
            );
            if plugged { &mut with } else { &mut without }.push(run);
        }
    }
    let rate = |runs: &[Run]| median(runs.iter().map(|r| r.messages_per_s).collect());
    let cpu = |runs: &[Run]| median(runs.iter().map(|r| r.cpu_us_per_message).collect());
    println!(
        "\n4. MQTT QoS 1, 4 publishers x 100 B JSON, fsync, one shard (medians of {}): no plugin {:.0} msg/s {:.2} us CPU/msg; threshold-filter {:.0} msg/s {:.2} us CPU/msg; with / without {:.2}x msg/s",
        bench.rounds,
        rate(&without),
        cpu(&without),
        rate(&with),
        cpu(&with),
        rate(&with) / rate(&without)
    );
    Ok(())
}
