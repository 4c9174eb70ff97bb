//! `weir-bench mqtt`: MQTT publishes through the real `weir` process and through Mosquitto,
//! side by side, the same clients and the same cores: publishers on several connections, one
//! wildcard subscriber, QoS 0 and QoS 1.
//!
//! Each broker runs on CPU 0 (Weir with one shard); the clients run on CPU 1. Weir runs twice:
//! with `storage.durability = "fsync"` (a PUBACK only once the message is on disk) and
//! `"relaxed"` (after the commit reaches the page cache); Mosquitto keeps messages in memory
//! (`persistence false`), so it is the in-memory baseline, not a like-for-like durable one.
//! Brokers alternate round by round; medians are reported, and the ratios Weir / Mosquitto.
//!
//! Figures per run: messages per second delivered to the subscriber (QoS 0: from the first
//! publish to the last message received; QoS 1: every publish acknowledged and every message
//! received), messages lost (QoS 0 may drop; QoS 1 must not), and broker CPU time per message.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use iot_sim::client::{Conn, V};
use weir_mqtt::{Packet, PubResponse, Publish, QoS};

use crate::server::{Broker, clock_ticks_per_s, cpu_ticks, median, weir_binary};

/// Settings of the MQTT benchmark.
#[derive(Debug, Clone)]
pub struct MqttBench {
    /// Messages per run, all publishers together.
    pub messages: usize,
    /// Publisher connections.
    pub publishers: usize,
    /// Payload bytes.
    pub payload_bytes: usize,
    /// QoS 1 publishes in flight per publisher.
    pub window: usize,
    /// Rounds, alternating the brokers.
    pub rounds: usize,
    /// Also Weir (fsync) under an access-control list granting `bench/#`.
    pub acl: bool,
}

/// One run's figures.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Run {
    /// Messages delivered per second.
    pub(crate) messages_per_s: f64,
    /// Messages not delivered.
    pub(crate) lost: usize,
    /// Broker CPU time per message, microseconds.
    pub(crate) cpu_us_per_message: f64,
}

pub fn run(bench: &MqttBench) -> anyhow::Result<()> {
    let weir = weir_binary()?;
    let mosquitto = which("mosquitto");
    weir::shard::pin_to_cpu(1);
    println!(
        "mqtt benchmark: {} publishers x {} messages of {} B, one `bench/#` subscriber; brokers on CPU 0, clients on CPU 1",
        bench.publishers,
        bench.messages / bench.publishers.max(1),
        bench.payload_bytes
    );
    let mut brokers = vec!["weir fsync", "weir relaxed"];
    if bench.acl {
        brokers.push("weir fsync acl");
    }
    match &mosquitto {
        Some(path) => {
            println!("peer: {path} (persistence false, set_tcp_nodelay true, no queue limits)");
            brokers.push("mosquitto");
        }
        None => println!("peer: mosquitto not found (apt-get install mosquitto); Weir only"),
    }
    let mut results: Vec<Vec<Vec<Run>>> = vec![vec![Vec::new(); brokers.len()]; 2];
    for round in 0..bench.rounds {
        for (b, name) in brokers.iter().enumerate() {
            for (q, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce].into_iter().enumerate() {
                let dir = tempfile::tempdir()?;
                let target = start(name, &weir, mosquitto.as_deref(), dir.path())?;
                let payload = vec![0x5a; bench.payload_bytes];
                let run = measure(target.addr, target.pid, qos, bench, &payload)?;
                println!(
                    "round {}: {name}, QoS {}: {:.0} msg/s, {} lost, {:.2} us CPU/message",
                    round + 1,
                    qos as u8,
                    run.messages_per_s,
                    run.lost,
                    run.cpu_us_per_message
                );
                results[q][b].push(run);
            }
        }
    }
    println!(
        "\n| broker (medians of {} rounds) | QoS 0 msg/s | QoS 0 lost | QoS 0 CPU/msg | QoS 1 msg/s | QoS 1 lost | QoS 1 CPU/msg |",
        bench.rounds
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let med = |runs: &[Run]| {
        (
            median(runs.iter().map(|r| r.messages_per_s).collect()),
            median(runs.iter().map(|r| r.lost as f64).collect()),
            median(runs.iter().map(|r| r.cpu_us_per_message).collect()),
        )
    };
    let medians: Vec<[(f64, f64, f64); 2]> = (0..brokers.len())
        .map(|b| [med(&results[0][b]), med(&results[1][b])])
        .collect();
    for (name, [q0, q1]) in brokers.iter().zip(&medians) {
        println!(
            "| {name} | {:.0} | {:.0} | {:.2} us | {:.0} | {:.0} | {:.2} us |",
            q0.0, q0.1, q0.2, q1.0, q1.1, q1.2
        );
    }
    if let Some(b) = brokers.iter().position(|name| *name == "weir fsync acl") {
        let ([plain, _], [acl, _]) = (medians[0], medians[b]);
        println!(
            "weir fsync with an ACL / without: QoS 0 {:.2}x msg/s, {:.2}x CPU/msg",
            acl.0 / plain.0,
            acl.2 / plain.2
        );
    }
    if let Some(peer) = brokers
        .iter()
        .position(|name| *name == "mosquitto")
        .map(|b| &medians[b])
    {
        for (b, name) in brokers.iter().enumerate().take(2) {
            let [q0, q1] = medians[b];
            println!(
                "{name} / mosquitto: QoS 0 {:.2}x msg/s, {:.2}x CPU/msg; QoS 1 {:.2}x msg/s, {:.2}x CPU/msg",
                q0.0 / peer[0].0,
                q0.2 / peer[0].2,
                q1.0 / peer[1].0,
                q1.2 / peer[1].2
            );
        }
    }
    Ok(())
}

/// A broker under test: its MQTT address and PID; stopped when dropped.
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    pub(crate) pid: u32,
    pub(crate) weir: Option<Broker>,
    mosquitto: Option<Child>,
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(child) = &mut self.mosquitto {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn start(name: &str, weir: &Path, mosquitto: Option<&str>, dir: &Path) -> anyhow::Result<Target> {
    start_with(name, weir, mosquitto, dir, &[])
}

/// Starts broker `name` (`weir fsync`, `weir relaxed` or `mosquitto`) on CPU 0 in `dir`;
/// `extra` is more environment for Weir.
pub(crate) fn start_with(
    name: &str,
    weir: &Path,
    mosquitto: Option<&str>,
    dir: &Path,
    extra: &[(&str, &str)],
) -> anyhow::Result<Target> {
    if name.starts_with("weir") {
        let durability = if name.contains("relaxed") {
            "relaxed"
        } else {
            "fsync"
        };
        let acl = dir.join("acl").display().to_string();
        let mut env = vec![
            ("WEIR_SERVER_SHARDS", "1"),
            ("WEIR_STORAGE_DURABILITY", durability),
        ];
        if name.ends_with("acl") {
            // Anonymous clients (the benchmark's) may publish and read `bench/#`.
            std::fs::write(&acl, "topic readwrite bench/#\n")?;
            env.push(("WEIR_AUTH_ACL_FILE", acl.as_str()));
        }
        env.extend_from_slice(extra);
        // Its one shard pins itself to CPU 0 (`server.pin_threads`).
        let broker = Broker::start(weir, dir, &env)?;
        return Ok(Target {
            addr: broker.mqtt,
            pid: broker.pid(),
            weir: Some(broker),
            mosquitto: None,
        });
    }
    start_mosquitto(mosquitto.context("mosquitto")?, dir, "")
}

/// Starts Mosquitto from `path` on CPU 0 in `dir`, in memory, with `more` added to its
/// configuration (more listeners); the address of its first listener.
pub(crate) fn start_mosquitto(path: &str, dir: &Path, more: &str) -> anyhow::Result<Target> {
    let port = free_port()?;
    let config = dir.join("mosquitto.conf");
    std::fs::write(
        &config,
        format!(
            "per_listener_settings false\nallow_anonymous true\npersistence false\n\
             set_tcp_nodelay true\nmax_queued_messages 0\nmax_queued_bytes 0\n\
             max_inflight_messages 0\nlog_dest none\nlistener {port} 127.0.0.1\n{more}"
        ),
    )?;
    let child = Command::new(path)
        .arg("-c")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let pid = child.id();
    pin_pid(pid, 0);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            bail!("mosquitto did not listen on {addr}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Target {
        addr,
        pid,
        weir: None,
        mosquitto: Some(child),
    })
}

/// A client transport: a TCP socket, or TLS over one.
pub(crate) trait Socket: Read + Write + Send + 'static {
    /// The TCP socket underneath.
    fn tcp(&self) -> &TcpStream;
}

impl Socket for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

/// Opens an MQTT connection as the given client id over one transport.
pub(crate) type Connector<S> = Arc<dyn Fn(&str) -> anyhow::Result<Conn<S>> + Send + Sync>;

/// Publishers send `payload` on `bench/<n>` to the broker at `addr` (process `pid`), one
/// subscriber reads `bench/#`.
pub(crate) fn measure(
    addr: SocketAddr,
    pid: u32,
    qos: QoS,
    bench: &MqttBench,
    payload: &[u8],
) -> anyhow::Result<Run> {
    let connect: Connector<TcpStream> = Arc::new(move |id| Conn::connect(addr, id));
    measure_over(&connect, pid, qos, bench, payload)
}

/// [`measure`] with the clients `connect` opens.
pub(crate) fn measure_over<S: Socket>(
    connect: &Connector<S>,
    pid: u32,
    qos: QoS,
    bench: &MqttBench,
    payload: &[u8],
) -> anyhow::Result<Run> {
    let per_publisher = bench.messages / bench.publishers.max(1);
    let total = per_publisher * bench.publishers.max(1);
    let mut subscriber = connect("bench-sub")?;
    subscriber.subscribe("bench/#", qos)?;
    let receiver = std::thread::spawn(move || -> anyhow::Result<(usize, Instant)> {
        let mut received = 0;
        let mut last = Instant::now();
        subscriber
            .stream
            .tcp()
            .set_read_timeout(Some(Duration::from_secs(2)))?;
        while received < total {
            let Some(packet) = subscriber.next_packet()? else {
                break;
            };
            if let Packet::Publish(p) = packet {
                received += 1;
                last = Instant::now();
                if let Some(id) = p.packet_id {
                    subscriber.send(&Packet::PubAck(PubResponse::new(id)))?;
                }
            }
        }
        Ok((received, last))
    });
    let payload = payload.to_vec();
    let cpu_before = cpu_ticks(pid)?;
    let started = Instant::now();
    let publishers: Vec<_> = (0..bench.publishers.max(1))
        .map(|p| {
            let payload = payload.clone();
            let window = bench.window.max(1);
            let connect = connect.clone();
            std::thread::spawn(move || -> anyhow::Result<()> {
                let mut conn = connect(&format!("bench-pub-{p}"))?;
                let topic = format!("bench/{p}");
                let mut buffer = Vec::new();
                let mut in_flight = 0;
                let mut acked = 0;
                for i in 0..per_publisher {
                    let packet_id = (qos != QoS::AtMostOnce).then(|| id((i % 60_000) as u16 + 1));
                    Packet::Publish(Publish {
                        dup: false,
                        qos,
                        retain: false,
                        topic: topic.clone(),
                        packet_id,
                        properties: Default::default(),
                        payload: payload.clone(),
                    })
                    .encode(V, &mut buffer)?;
                    if qos == QoS::AtMostOnce {
                        if buffer.len() >= 64 * 1024 {
                            conn.stream.write_all(&buffer)?;
                            buffer.clear();
                        }
                        continue;
                    }
                    in_flight += 1;
                    if in_flight == window {
                        conn.stream.write_all(&buffer)?;
                        buffer.clear();
                        while in_flight > window / 2 {
                            conn.expect(|p| matches!(p, Packet::PubAck(_)))?;
                            in_flight -= 1;
                            acked += 1;
                        }
                    }
                }
                conn.stream.write_all(&buffer)?;
                while acked < per_publisher && qos != QoS::AtMostOnce {
                    conn.expect(|p| matches!(p, Packet::PubAck(_)))?;
                    acked += 1;
                }
                conn.stream.flush()?;
                Ok(())
            })
        })
        .collect();
    for publisher in publishers {
        publisher
            .join()
            .map_err(|_| anyhow::anyhow!("a publisher panicked"))??;
    }
    let (received, last) = receiver
        .join()
        .map_err(|_| anyhow::anyhow!("the subscriber panicked"))??;
    let elapsed = last
        .saturating_duration_since(started)
        .as_secs_f64()
        .max(1e-6);
    let cpu_s = (cpu_ticks(pid)? - cpu_before) as f64 / clock_ticks_per_s();
    Ok(Run {
        messages_per_s: received as f64 / elapsed,
        lost: total - received,
        cpu_us_per_message: cpu_s * 1e6 / total as f64,
    })
}

fn id(n: u16) -> weir_mqtt::PacketId {
    weir_mqtt::PacketId::new(n).unwrap_or(weir_mqtt::PacketId::MIN)
}

pub(crate) fn which(program: &str) -> Option<String> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .chain([Path::new("/usr/sbin").to_owned()])
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
        .map(|path| path.display().to_string())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Pins process `pid` to `cpu` (best effort).
fn pin_pid(pid: u32, cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_setaffinity gets a valid pointer.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(pid as i32, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}
