//! `iot-sim run <scenario.toml>`: drives a simulated device fleet against an MQTT broker and
//! prints a progress line while it runs, then a summary table; `--json` writes the report.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "iot-sim", about = "A seeded fleet of simulated MQTT devices")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs a scenario.
    Run {
        /// The scenario file (TOML).
        scenario: PathBuf,
        /// The broker, overriding the scenario's `broker`.
        #[arg(long)]
        broker: Option<String>,
        /// Where to write the report as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Also read the messages back from this Kafka bootstrap address (overrides the
        /// scenario's `kafka_bootstrap`).
        #[arg(long)]
        kafka: Option<String>,
    },
}

fn main() -> anyhow::Result<()> {
    let Command::Run {
        scenario,
        broker,
        json,
        kafka,
    } = Cli::parse().command;
    let text = std::fs::read_to_string(&scenario)
        .with_context(|| format!("reading {}", scenario.display()))?;
    let mut scenario = iot_sim::Scenario::parse(&text)?;
    if let Some(broker) = broker {
        scenario.broker = broker;
    }
    if kafka.is_some() {
        scenario.kafka_bootstrap = kafka;
    }
    eprintln!(
        "{} devices at {}/s each for {:?} against {}",
        scenario.devices, scenario.rate_per_device_per_s, scenario.duration, scenario.broker
    );
    let progress = Arc::new(iot_sim::Progress::default());
    let watcher = {
        let progress = progress.clone();
        let total = scenario.duration + scenario.drain;
        std::thread::spawn(move || {
            let started = Instant::now();
            while started.elapsed() < total {
                std::thread::sleep(Duration::from_secs(1));
                eprintln!(
                    "{:>4.0} s: sent {}, acked {}, received {}",
                    started.elapsed().as_secs_f64(),
                    progress.sent.load(Ordering::Relaxed),
                    progress.acked.load(Ordering::Relaxed),
                    progress.received.load(Ordering::Relaxed)
                );
            }
        })
    };
    let report = iot_sim::run(&scenario, &progress)?;
    drop(watcher);
    println!("{}", report.table());
    if let Some(path) = json {
        std::fs::write(&path, serde_json::to_string_pretty(&report.json())?)?;
        eprintln!("report written to {}", path.display());
    }
    Ok(())
}
