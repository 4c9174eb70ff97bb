//! `weir-bench server`: the real `weir` process on each event-loop backend, side by side:
//! requests per second and broker CPU time per request for a minimal request/response
//! (Kafka ApiVersions, pipelined), idle memory, and time from start to ready.
//!
//! The broker runs one shard pinned to CPU 0; the load generator pins itself to CPU 1, so
//! the two do not share a core. Backends alternate round by round; medians are reported.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Settings of the server benchmark.
#[derive(Debug, Clone)]
pub struct ServerBench {
    /// Client connections.
    pub connections: usize,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// Measured time per run.
    pub duration: Duration,
    /// Alternating rounds.
    pub rounds: usize,
}

/// One run's figures.
#[derive(Debug, Clone, Copy)]
struct Run {
    requests_per_s: f64,
    cpu_us_per_request: f64,
    idle_rss_kib: u64,
    ready_ms: f64,
}

pub fn run(bench: &ServerBench) -> anyhow::Result<()> {
    let weir = weir_binary()?;
    weir::shard::pin_to_cpu(1);
    println!(
        "server benchmark: {} with 1 shard on CPU 0, load on CPU 1; {} connections x {} pipelined ApiVersions, {:?} per run",
        weir.display(),
        bench.connections,
        bench.pipeline,
        bench.duration
    );
    let backends = ["uring", "epoll"];
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); backends.len()];
    for round in 0..bench.rounds {
        for (i, backend) in backends.iter().enumerate() {
            let run = one_run(&weir, backend, bench)?;
            println!(
                "round {}: {backend}: {:.0} req/s, {:.2} us CPU/request, idle RSS {} KiB, ready in {:.1} ms",
                round + 1,
                run.requests_per_s,
                run.cpu_us_per_request,
                run.idle_rss_kib,
                run.ready_ms
            );
            runs[i].push(run);
        }
    }
    println!(
        "\n| backend (medians of {} rounds) | requests/s | broker CPU per request | idle RSS | start to ready |",
        bench.rounds
    );
    println!("| --- | --- | --- | --- | --- |");
    let medians: Vec<(f64, f64, f64, f64)> = runs
        .iter()
        .map(|r| {
            (
                median(r.iter().map(|x| x.requests_per_s).collect()),
                median(r.iter().map(|x| x.cpu_us_per_request).collect()),
                median(r.iter().map(|x| x.idle_rss_kib as f64).collect()),
                median(r.iter().map(|x| x.ready_ms).collect()),
            )
        })
        .collect();
    for (backend, (rps, cpu, rss, ready)) in backends.iter().zip(&medians) {
        println!(
            "| {backend} | {rps:.0} | {cpu:.2} us | {:.1} MiB | {ready:.1} ms |",
            rss / 1024.0
        );
    }
    let (u, e) = (medians[0], medians[1]);
    println!(
        "\nio_uring / epoll: {:.2}x requests/s, {:.2}x CPU per request",
        u.0 / e.0,
        u.1 / e.1
    );
    Ok(())
}

pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// The release `weir` next to this benchmark binary.
pub(crate) fn weir_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("benchmark binary directory")?;
    let weir = dir.join("weir");
    if !weir.exists() {
        bail!(
            "{} not found: run `cargo build --release -p weir` first",
            weir.display()
        );
    }
    Ok(weir)
}

/// A `weir` process started for a benchmark; stopped (SIGTERM, then reaped) when dropped.
pub(crate) struct Broker {
    child: Child,
    /// Its Kafka address.
    pub(crate) kafka: SocketAddr,
    /// Its admin HTTP address (`/metrics`).
    pub(crate) admin: SocketAddr,
    /// Its MQTT address.
    pub(crate) mqtt: SocketAddr,
    /// Its MQTT over TLS address, when `mqtt.tls_listen` is set.
    pub(crate) mqtt_tls: Option<SocketAddr>,
    /// Its Kafka over TLS address, when `kafka.tls_listen` is set.
    pub(crate) kafka_tls: Option<SocketAddr>,
    /// Milliseconds from spawn to "weir ready".
    pub(crate) ready_ms: f64,
}

impl Broker {
    /// Starts `weir` in `dir` with its ports on 127.0.0.1:0 and `env`, and waits until it is
    /// ready.
    pub(crate) fn start(weir: &Path, dir: &Path, env: &[(&str, &str)]) -> anyhow::Result<Broker> {
        let started = Instant::now();
        let mut child = Command::new(weir)
            .current_dir(dir)
            .env("WEIR_ADMIN_LISTEN", "127.0.0.1:0")
            .env("WEIR_KAFKA_LISTEN", "127.0.0.1:0")
            .env("WEIR_MQTT_LISTEN", "127.0.0.1:0")
            .env("WEIR_MQTT_WEBSOCKET_LISTEN", "127.0.0.1:0")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().context("stderr")?;
        let mut broker = Broker {
            child,
            kafka: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            mqtt: SocketAddr::from(([127, 0, 0, 1], 0)),
            mqtt_tls: None,
            kafka_tls: None,
            ready_ms: 0.0,
        };
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut kafka: Option<SocketAddr> = None;
        let mut admin: Option<SocketAddr> = None;
        let mut mqtt: Option<SocketAddr> = None;
        broker.ready_ms = loop {
            let line = rx.recv_timeout(Duration::from_secs(30))?;
            if let Some(addr) = line.split("kafka listening on ").nth(1) {
                kafka = Some(addr.trim().parse()?);
            }
            if let Some(addr) = line.split("admin HTTP listening on ").nth(1) {
                admin = Some(addr.trim().parse()?);
            }
            if let Some(addr) = line.split("mqtt listening on ").nth(1) {
                mqtt = Some(addr.trim().parse()?);
            }
            if let Some(addr) = line.split("mqtt tls listening on ").nth(1) {
                broker.mqtt_tls = Some(addr.trim().parse()?);
            }
            if let Some(addr) = line.split("kafka tls listening on ").nth(1) {
                broker.kafka_tls = Some(addr.trim().parse()?);
            }
            if line.contains("weir ready") {
                break started.elapsed().as_secs_f64() * 1e3;
            }
        };
        broker.kafka = kafka.context("kafka address in the log")?;
        broker.admin = admin.context("admin address in the log")?;
        broker.mqtt = mqtt.context("mqtt address in the log")?;
        Ok(broker)
    }

    /// The value of an unlabelled metric from its `/metrics`.
    pub(crate) fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let mut stream = TcpStream::connect(self.admin)?;
        stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .with_context(|| format!("metric {name}"))?
            .trim()
            .parse()
            .with_context(|| format!("metric {name}"))
    }

    /// Its PID.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the PID of the child this value started and has not reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

fn one_run(weir: &Path, backend: &str, bench: &ServerBench) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir()?;
    let env = [("WEIR_SERVER_IO", backend), ("WEIR_SERVER_SHARDS", "1")];
    let broker = Broker::start(weir, dir.path(), &env)?;
    measure(&broker, bench)
}

fn measure(broker: &Broker, bench: &ServerBench) -> anyhow::Result<Run> {
    let (kafka, ready_ms) = (broker.kafka, broker.ready_ms);
    let pid = broker.pid();
    let idle_rss_kib = rss_kib(pid)?;

    let request = api_versions_v0();
    let mut conns: Vec<TcpStream> = (0..bench.connections)
        .map(|_| -> anyhow::Result<TcpStream> {
            let stream = TcpStream::connect(kafka)?;
            stream.set_nodelay(true)?;
            Ok(stream)
        })
        .collect::<Result<_, _>>()?;
    // The answer's size (the API table grows with the Kafka front): from one exchange.
    let response_len = {
        let conn = &mut conns[0];
        conn.write_all(&request)?;
        let mut size = [0u8; 4];
        conn.read_exact(&mut size)?;
        let mut body = vec![0u8; u32::from_be_bytes(size) as usize];
        conn.read_exact(&mut body)?;
        4 + body.len()
    };
    let batch: Vec<u8> = (0..bench.pipeline).flat_map(|_| request.clone()).collect();
    let mut reply = vec![0u8; response_len * bench.pipeline];
    // Warm up, then measure.
    for conn in &mut conns {
        conn.write_all(&batch)?;
        conn.read_exact(&mut reply)?;
    }
    let cpu_before = cpu_ticks(pid)?;
    let t0 = Instant::now();
    let mut requests = 0u64;
    while t0.elapsed() < bench.duration {
        for conn in &mut conns {
            conn.write_all(&batch)?;
        }
        for conn in &mut conns {
            conn.read_exact(&mut reply)?;
        }
        requests += (bench.pipeline * conns.len()) as u64;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu_s = (cpu_ticks(pid)? - cpu_before) as f64 / clock_ticks_per_s();
    Ok(Run {
        requests_per_s: requests as f64 / elapsed,
        cpu_us_per_request: cpu_s * 1e6 / requests as f64,
        idle_rss_kib,
        ready_ms,
    })
}

fn api_versions_v0() -> Vec<u8> {
    let mut body = vec![0, 18, 0, 0, 0, 0, 0, 1, 0, 5];
    body.extend_from_slice(b"bench");
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "VmRSS")
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM` for the peak).
pub(crate) fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .with_context(|| field.to_owned())?;
    Ok(line.trim().trim_end_matches("kB").trim().parse()?)
}

/// User plus system CPU time of `pid`, in clock ticks.
pub(crate) fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').context("stat format")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat; `rest` starts at field 3.
    let utime: u64 = fields.get(11).context("utime")?.parse()?;
    let stime: u64 = fields.get(12).context("stime")?.parse()?;
    Ok(utime + stime)
}

pub(crate) fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf with a valid name has no memory effects.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}
