//! `weir-bench suite`: every workload whose Weir side exists, against Weir and against the
//! peers found on this machine (Mosquitto from Debian), the same clients, the same cores
//! (brokers on CPU 0 with Weir on one shard, clients on CPU 1), alternating broker by broker
//! within each round, several rounds; medians, ratios Weir / peer, CPU time per message and
//! peak RSS. The disk's and loopback's limits are measured in the same run, so each
//! throughput also reads as a fraction of what the machine can do. Raw results go to
//! `<out>/results.json` and one SVG bar chart per workload to `<out>/<workload>.svg`.
//!
//! Workloads: MQTT QoS 0 and 1 at 100 B and 1 KiB (4 publishers, one wildcard subscriber);
//! fan-in from 1,000 devices and fan-out to 1,000 subscribers (iot-sim, open-loop pacing);
//! Kafka produce (acks=all) and consume at 1 KiB (Weir only: no Kafka broker installs from
//! this machine's registries); MQTT to Kafka end to end at a fixed rate, without and with a
//! plugin (Weir only: Mosquitto has no Kafka side); 1,000 idle MQTT connections' memory.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use iot_sim::client::Conn;
use weir_mqtt::QoS;

use crate::kafka::KafkaBench;
use crate::mqtt::{MqttBench, Target, measure, start_with, which};
use crate::server::{clock_ticks_per_s, cpu_ticks, median, status_kib, weir_binary};

/// Settings of the suite.
#[derive(Debug, Clone)]
pub struct SuiteBench {
    /// Rounds (medians reported).
    pub rounds: usize,
    /// Where results.json and the charts go.
    pub out: PathBuf,
    /// Seconds of publishing in the iot-sim workloads.
    pub seconds: f64,
    /// Messages per MQTT throughput run.
    pub messages: usize,
    /// MiB per Kafka run.
    pub kafka_mib: u64,
}

/// One measurement of one workload on one broker.
#[derive(Debug, Clone)]
struct Sample {
    value: f64,
    cpu_us_per_msg: Option<f64>,
    peak_rss_kib: u64,
    lost: u64,
    p50_us: Option<u64>,
    p99_us: Option<u64>,
}

/// A workload: its name, unit, the brokers it runs on, and what a physical limit it is a
/// fraction of (bytes per unit of value, and which limit).
struct Workload {
    name: &'static str,
    unit: &'static str,
    peers: bool,
    /// Bytes moved per unit of `value`, and the limit they count against.
    limit: Option<(f64, Limit)>,
    run: fn(&Ctx, &Target) -> anyhow::Result<Sample>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    Loopback,
    Disk,
}

struct Ctx {
    bench: SuiteBench,
    plugin_bindings: String,
}

pub fn run(bench: &SuiteBench) -> anyhow::Result<()> {
    let weir = weir_binary()?;
    let mosquitto = which("mosquitto");
    weir::shard::pin_to_cpu(1);
    std::fs::create_dir_all(&bench.out)?;
    let scratch = tempfile::tempdir_in(".")?;
    println!("limits of this machine, measured now:");
    let disk = crate::log::raw_writes(scratch.path(), 256 << 20, 64 << 10, true)?;
    let loopback = loopback_mb_s()?;
    println!(
        "  disk: {disk:.1} MB/s (64 KiB writes, fdatasync each); loopback TCP: {loopback:.0} MB/s (one stream)\n"
    );
    let filter =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/target/wasm/threshold-filter.wasm");
    let ctx = Ctx {
        bench: bench.clone(),
        plugin_bindings: format!(
            "[{{ name = \"filter\", topics = [\"e2e\"], plugins = [{{ path = \"{}\", config = {{ field = \"value\", min = -1000, max = 1000 }} }}] }}]",
            filter.display()
        ),
    };
    let workloads = workloads();
    let mut brokers = vec!["weir"];
    match &mosquitto {
        Some(path) => {
            println!("peer: {path} (persistence false; in memory, so no like-for-like durability)");
            brokers.push("mosquitto");
        }
        None => println!("peer: mosquitto not found (apt-get install mosquitto); Weir only"),
    }
    let mut samples: BTreeMap<(&str, &str), Vec<Sample>> = BTreeMap::new();
    for round in 0..bench.rounds {
        for w in &workloads {
            if w.name.contains("plugin") && !filter.exists() {
                continue;
            }
            for broker in &brokers {
                if *broker != "weir" && !w.peers {
                    continue;
                }
                let dir = tempfile::tempdir_in(scratch.path())?;
                let mut env: Vec<(&str, &str)> = Vec::new();
                if w.name.contains("plugin") {
                    env.push(("WEIR_PLUGINS_BINDINGS", ctx.plugin_bindings.as_str()));
                }
                let name = if *broker == "weir" {
                    "weir fsync"
                } else {
                    broker
                };
                let target = start_with(name, &weir, mosquitto.as_deref(), dir.path(), &env)?;
                let mut sample = (w.run)(&ctx, &target)?;
                sample.peak_rss_kib = status_kib(target.pid, "VmHWM").unwrap_or(0);
                println!(
                    "round {}: {} on {broker}: {:.1} {}{}",
                    round + 1,
                    w.name,
                    sample.value,
                    w.unit,
                    sample
                        .p99_us
                        .map_or(String::new(), |p| format!(", p99 {p} us"))
                );
                samples.entry((w.name, broker)).or_default().push(sample);
            }
        }
    }
    report(bench, &workloads, &brokers, &samples, disk, loopback)
}

fn workloads() -> Vec<Workload> {
    vec![
        Workload {
            name: "mqtt-qos0-100B",
            unit: "msg/s",
            peers: true,
            limit: Some((100.0, Limit::Loopback)),
            run: |c, t| mqtt_run(c, t, QoS::AtMostOnce, 100),
        },
        Workload {
            name: "mqtt-qos1-100B",
            unit: "msg/s",
            peers: true,
            limit: Some((100.0, Limit::Loopback)),
            run: |c, t| mqtt_run(c, t, QoS::AtLeastOnce, 100),
        },
        Workload {
            name: "mqtt-qos0-1KiB",
            unit: "msg/s",
            peers: true,
            limit: Some((1024.0, Limit::Loopback)),
            run: |c, t| mqtt_run(c, t, QoS::AtMostOnce, 1024),
        },
        Workload {
            name: "mqtt-qos1-1KiB",
            unit: "msg/s",
            peers: true,
            limit: Some((1024.0, Limit::Disk)),
            run: |c, t| mqtt_run(c, t, QoS::AtLeastOnce, 1024),
        },
        Workload {
            name: "fan-in-1000-devices",
            unit: "msg/s",
            peers: true,
            limit: None,
            run: |c, t| {
                let scenario = format!(
                    "devices = 1000\nrate_per_device_per_s = 10\nduration_s = {}\ndrain_s = 20\n\
                     qos_mix = [0, 1, 0]\nworkers = 4\ntopic = \"fanin/{{device}}/t\"\n",
                    c.bench.seconds
                );
                sim_run(t, &scenario, false)
            },
        },
        Workload {
            name: "fan-out-1000-subscribers",
            unit: "deliveries/s",
            peers: true,
            limit: None,
            run: |c, t| {
                let scenario = format!(
                    "devices = 4\nrate_per_device_per_s = 10\nduration_s = {}\ndrain_s = 20\n\
                     qos_mix = [0, 1, 0]\nsubscribers = 1000\nsubscriber_qos = 0\n\
                     topic = \"fanout/{{device}}\"\n",
                    c.bench.seconds
                );
                sim_run(t, &scenario, false)
            },
        },
        Workload {
            name: "kafka-produce-1KiB-acks-all",
            unit: "MB/s",
            peers: false,
            limit: Some((1e6, Limit::Disk)),
            run: |c, t| kafka_run(c, t, true),
        },
        Workload {
            name: "kafka-consume-1KiB",
            unit: "MB/s",
            peers: false,
            limit: Some((1e6, Limit::Loopback)),
            run: |c, t| kafka_run(c, t, false),
        },
        Workload {
            name: "mqtt-to-kafka-2000-msg-s",
            unit: "msg/s",
            peers: false,
            limit: None,
            run: |c, t| e2e_run(c, t),
        },
        Workload {
            name: "mqtt-to-kafka-2000-msg-s-plugin",
            unit: "msg/s",
            peers: false,
            limit: None,
            run: |c, t| e2e_run(c, t),
        },
        Workload {
            name: "idle-connections-1000",
            unit: "KiB/connection",
            peers: true,
            limit: None,
            run: |_, t| idle_run(t),
        },
    ]
}

fn mqtt_run(ctx: &Ctx, target: &Target, qos: QoS, payload_bytes: usize) -> anyhow::Result<Sample> {
    let bench = MqttBench {
        messages: if payload_bytes > 512 {
            ctx.bench.messages / 2
        } else {
            ctx.bench.messages
        },
        publishers: 4,
        window: 32,
    };
    let run = measure(
        target.addr,
        target.pid,
        qos,
        &bench,
        &vec![0x5a; payload_bytes],
    )?;
    Ok(Sample {
        value: run.messages_per_s,
        cpu_us_per_msg: Some(run.cpu_us_per_message),
        peak_rss_kib: 0,
        lost: run.lost as u64,
        p50_us: None,
        p99_us: None,
    })
}

/// Runs an iot-sim scenario against the target; the value is messages received by the
/// subscribers per second of publishing (deliveries), or read back through Kafka.
fn sim_run(target: &Target, scenario: &str, kafka: bool) -> anyhow::Result<Sample> {
    let mut scenario = iot_sim::Scenario::parse(scenario)?;
    scenario.broker = target.addr.to_string();
    if kafka {
        let broker = target
            .weir
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("Kafka needs Weir"))?;
        scenario.kafka_bootstrap = Some(broker.kafka.to_string());
    }
    let cpu_before = cpu_ticks(target.pid)?;
    let report = iot_sim::run(&scenario, &Arc::new(iot_sim::Progress::default()))?;
    let cpu_s = (cpu_ticks(target.pid)? - cpu_before) as f64 / clock_ticks_per_s();
    let seconds = report.publish_seconds.max(1e-9);
    let (count, lost, latency) = match report.kafka {
        Some(k) => (
            k.received,
            report.sent_total().saturating_sub(k.received),
            k.latency_us,
        ),
        None => (
            report.received,
            report.missing_qos12,
            report.delivery_latency_us,
        ),
    };
    Ok(Sample {
        value: count as f64 / seconds,
        cpu_us_per_msg: Some(cpu_s * 1e6 / (count.max(1) as f64)),
        peak_rss_kib: 0,
        lost,
        p50_us: Some(latency.p50),
        p99_us: Some(latency.p99),
    })
}

fn e2e_run(ctx: &Ctx, target: &Target) -> anyhow::Result<Sample> {
    let scenario = format!(
        "devices = 100\nrate_per_device_per_s = 20\nduration_s = {}\ndrain_s = 30\n\
         qos_mix = [0, 1, 0]\nsubscribers = 0\ntopic = \"e2e/{{device}}\"\npayload = \"json\"\n",
        ctx.bench.seconds
    );
    sim_run(target, &scenario, true)
}

fn kafka_run(ctx: &Ctx, target: &Target, produce: bool) -> anyhow::Result<Sample> {
    let broker = target
        .weir
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("Kafka needs Weir"))?;
    let bench = KafkaBench {
        total_bytes: ctx.bench.kafka_mib << 20,
        record_bytes: 1024,
        rounds: 1,
    };
    let (produce_mb_s, produce_cpu_s, _) = crate::kafka::produce(broker, &bench)?;
    let records = (bench.total_bytes / 1024) as f64;
    let (value, cpu_s) = if produce {
        (produce_mb_s, produce_cpu_s)
    } else {
        let (mb_s, cpu_s, _) = crate::kafka::consume(broker, &bench)?;
        (mb_s, cpu_s)
    };
    Ok(Sample {
        value,
        cpu_us_per_msg: Some(cpu_s * 1e6 / records),
        peak_rss_kib: 0,
        lost: 0,
        p50_us: None,
        p99_us: None,
    })
}

/// Opens 1,000 MQTT connections that then stay idle; the value is the broker's resident
/// memory growth per connection.
fn idle_run(target: &Target) -> anyhow::Result<Sample> {
    let before = status_kib(target.pid, "VmRSS")?;
    let conns: Vec<Conn> = (0..1000)
        .map(|i| Conn::connect(target.addr, &format!("idle-{i}")))
        .collect::<anyhow::Result<_>>()?;
    std::thread::sleep(Duration::from_millis(500));
    let after = status_kib(target.pid, "VmRSS")?;
    drop(conns);
    Ok(Sample {
        value: after.saturating_sub(before) as f64 / 1000.0,
        cpu_us_per_msg: None,
        peak_rss_kib: 0,
        lost: 0,
        p50_us: None,
        p99_us: None,
    })
}

/// One TCP stream over loopback for a second: MB/s.
fn loopback_mb_s() -> anyhow::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let reader = std::thread::spawn(move || -> anyhow::Result<u64> {
        let (mut stream, _) = listener.accept()?;
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                return Ok(total);
            }
            total += n as u64;
        }
    });
    let mut stream = TcpStream::connect(addr)?;
    let chunk = vec![0x5au8; 1 << 20];
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(1) {
        stream.write_all(&chunk)?;
    }
    drop(stream);
    let total = reader
        .join()
        .map_err(|_| anyhow::anyhow!("loopback reader panicked"))??;
    Ok(total as f64 / 1e6 / started.elapsed().as_secs_f64())
}

fn report(
    bench: &SuiteBench,
    workloads: &[Workload],
    brokers: &[&str],
    samples: &BTreeMap<(&str, &str), Vec<Sample>>,
    disk: f64,
    loopback: f64,
) -> anyhow::Result<()> {
    let med = |v: &[Sample], f: &dyn Fn(&Sample) -> f64| median(v.iter().map(f).collect());
    let mut table = format!(
        "\n| workload (medians of {} rounds) | broker | value | weir / peer | CPU per message | peak RSS | lost | p50 / p99 latency | of the machine's limit |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
        bench.rounds
    );
    let mut json = serde_json::Map::new();
    for w in workloads {
        let weir = samples.get(&(w.name, "weir"));
        let Some(weir) = weir else { continue };
        let weir_value = med(weir, &|s| s.value);
        let mut bars = Vec::new();
        for broker in brokers {
            let Some(runs) = samples.get(&(w.name, *broker)) else {
                continue;
            };
            let value = med(runs, &|s| s.value);
            bars.push((broker.to_string(), value));
            let ratio = if *broker == "weir" {
                String::new()
            } else {
                format!("{:.2}x", weir_value / value.max(1e-9))
            };
            let cpu = runs[0]
                .cpu_us_per_msg
                .map(|_| format!("{:.2} us", med(runs, &|s| s.cpu_us_per_msg.unwrap_or(0.0))))
                .unwrap_or_default();
            let latency = runs[0]
                .p99_us
                .map(|_| {
                    format!(
                        "{:.0} / {:.0} us",
                        med(runs, &|s| s.p50_us.unwrap_or(0) as f64),
                        med(runs, &|s| s.p99_us.unwrap_or(0) as f64)
                    )
                })
                .unwrap_or_default();
            let limit = w.limit.map_or(String::new(), |(bytes, which)| {
                let (mb_s, name) = match which {
                    Limit::Loopback => (loopback, "loopback"),
                    Limit::Disk => (disk, "disk"),
                };
                format!("{:.1}% of {name}", value * bytes / 1e6 / mb_s * 100.0)
            });
            let _ = writeln!(
                table,
                "| {} | {broker} | {value:.1} {} | {ratio} | {cpu} | {:.1} MiB | {:.0} | {latency} | {limit} |",
                w.name,
                w.unit,
                med(runs, &|s| s.peak_rss_kib as f64) / 1024.0,
                med(runs, &|s| s.lost as f64),
            );
            json.insert(
                format!("{}/{broker}", w.name),
                serde_json::json!({
                    "unit": w.unit,
                    "median": value,
                    "runs": runs.iter().map(|s| serde_json::json!({
                        "value": s.value,
                        "cpu_us_per_msg": s.cpu_us_per_msg,
                        "peak_rss_kib": s.peak_rss_kib,
                        "lost": s.lost,
                        "p50_us": s.p50_us,
                        "p99_us": s.p99_us,
                    })).collect::<Vec<_>>(),
                }),
            );
        }
        std::fs::write(
            bench.out.join(format!("{}.svg", w.name)),
            svg(w.name, w.unit, &bars),
        )?;
    }
    json.insert(
        "limits".into(),
        serde_json::json!({ "disk_mb_s": disk, "loopback_mb_s": loopback }),
    );
    std::fs::write(
        bench.out.join("results.json"),
        serde_json::to_vec_pretty(&serde_json::Value::Object(json))?,
    )?;
    println!("{table}");
    println!(
        "raw results: {}; charts: {}/<workload>.svg",
        bench.out.join("results.json").display(),
        bench.out.display()
    );
    Ok(())
}

/// A horizontal bar chart of one workload's medians, one bar per broker.
fn svg(title: &str, unit: &str, bars: &[(String, f64)]) -> String {
    let max = bars.iter().map(|b| b.1).fold(0.0f64, f64::max).max(1e-9);
    let (width, bar_h, left) = (640.0, 28.0, 110.0);
    let height = 50.0 + bars.len() as f64 * (bar_h + 12.0);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"13\">\n\
         <text x=\"10\" y=\"22\" font-size=\"15\">{} ({})</text>\n",
        escape(title),
        escape(unit)
    );
    for (i, (name, value)) in bars.iter().enumerate() {
        let y = 40.0 + i as f64 * (bar_h + 12.0);
        let w = (width - left - 120.0) * value / max;
        let colour = if name == "weir" { "#2b6cb0" } else { "#a0aec0" };
        let _ = writeln!(
            out,
            "<text x=\"10\" y=\"{:.0}\">{}</text><rect x=\"{left}\" y=\"{y:.0}\" width=\"{w:.1}\" height=\"{bar_h}\" fill=\"{colour}\"/><text x=\"{:.1}\" y=\"{:.0}\">{value:.1}</text>",
            y + 19.0,
            escape(name),
            left + w + 6.0,
            y + 19.0
        );
    }
    out.push_str("</svg>\n");
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
