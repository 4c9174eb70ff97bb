//! `weir-bench tls`: what TLS costs, beside plaintext in the same run and beside Mosquitto
//! with TLS. Three shapes, each broker on CPU 0 (Weir with one shard) and the clients on
//! CPU 1:
//!
//! - MQTT QoS 0 publishes (publishers to one `bench/#` subscriber) over TCP and over TLS,
//!   alternating transports and brokers round by round, a fresh broker per run;
//! - TLS handshakes per second on that one core: each a new TCP connection, a full TLS 1.3
//!   handshake (ECDSA P-256 certificate), an MQTT CONNECT and its CONNACK, then close; beside
//!   the same over plain TCP;
//! - the memory an idle connection holds: the broker's resident set before and after opening
//!   many connections that CONNECT and then stay silent, per connection, over TCP and TLS;
//! - Kafka produce of 1 KiB records with librdkafka (acks=all, so each batch waits for its
//!   fsync) over TCP and over TLS (`security.protocol=ssl`) to one Weir per round, the order
//!   of the two alternating: MB/s and CPU per MB of the broker and of the client. Mosquitto
//!   has no Kafka side.
//!
//! The clients are rustls (ring), the same stack on both brokers' side of the comparison.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use iot_sim::client::Conn;
use weir_mqtt::QoS;
use weir_tests::pki::{Pki, TlsStream, client_config, tls_connect};

use crate::kafka::{KafkaBench, produce_with};
use crate::mqtt::{Connector, MqttBench, Run, Socket, start_mosquitto, which};
use crate::server::{Broker, clock_ticks_per_s, cpu_ticks, median, status_kib, weir_binary};

/// Settings of the TLS benchmark.
#[derive(Debug, Clone)]
pub struct TlsBench {
    /// QoS 0 messages per throughput run, all publishers together.
    pub messages: usize,
    /// Publisher connections.
    pub publishers: usize,
    /// Payload bytes.
    pub payload_bytes: usize,
    /// Rounds, alternating brokers and transports.
    pub rounds: usize,
    /// Idle connections opened for the memory figure.
    pub idle_connections: usize,
    /// Seconds of connecting for the handshake rate.
    pub handshake_s: f64,
    /// MiB of 1 KiB Kafka records produced per transport and round (0: no Kafka figures).
    pub kafka_mib: u64,
}

impl Socket for TlsStream {
    fn tcp(&self) -> &TcpStream {
        &self.sock
    }
}

/// One broker under test, with both transports' addresses.
struct Endpoints {
    plain: SocketAddr,
    tls: SocketAddr,
    pid: u32,
    /// Keeps the broker running.
    _running: Box<dyn std::any::Any>,
}

/// The figures of one broker and transport.
#[derive(Debug, Clone, Default)]
struct Figures {
    qos0: Vec<Run>,
    handshakes_per_s: Vec<f64>,
    cpu_us_per_handshake: Vec<f64>,
    idle_bytes: Vec<f64>,
}

pub fn run(bench: &TlsBench) -> anyhow::Result<()> {
    let weir = weir_binary()?;
    let mosquitto = which("mosquitto");
    weir::shard::pin_to_cpu(1);
    let certs = tempfile::tempdir()?;
    let pki = Pki::new(certs.path())?;
    let config = client_config(&pki.ca_der, None)?;
    let mut brokers = vec!["weir"];
    match &mosquitto {
        Some(path) => {
            println!("peer: {path} (persistence false, TLS listener with the same certificate)");
            brokers.push("mosquitto");
        }
        None => println!("peer: mosquitto not found; Weir only"),
    }
    println!(
        "tls benchmark: {} publishers x {} QoS 0 messages of {} B; {} idle connections; {} s of handshakes; brokers on CPU 0, clients on CPU 1",
        bench.publishers,
        bench.messages / bench.publishers.max(1),
        bench.payload_bytes,
        bench.idle_connections,
        bench.handshake_s
    );
    // figures[broker][0: tcp, 1: tls]
    let mut figures = vec![[Figures::default(), Figures::default()]; brokers.len()];
    for round in 0..bench.rounds {
        for (b, name) in brokers.iter().enumerate() {
            for (t, transport) in ["tcp", "tls"].into_iter().enumerate() {
                let dir = tempfile::tempdir()?;
                let broker = match *name {
                    "weir" => start_weir(&weir, dir.path(), &pki)?,
                    _ => start_peer(mosquitto.as_deref(), dir.path(), &pki)?,
                };
                let sample = measure_all(&broker, t == 1, &config, bench)?;
                println!(
                    "round {}: {name} over {transport}: QoS 0 {:.0} msg/s, {:.2} us CPU/msg; {:.0} connections/s ({:.0} us CPU each); {:.0} B per idle connection",
                    round + 1,
                    sample.qos0[0].messages_per_s,
                    sample.qos0[0].cpu_us_per_message,
                    sample.handshakes_per_s[0],
                    sample.cpu_us_per_handshake[0],
                    sample.idle_bytes[0]
                );
                let into = &mut figures[b][t];
                into.qos0.extend(sample.qos0);
                into.handshakes_per_s.extend(sample.handshakes_per_s);
                into.cpu_us_per_handshake
                    .extend(sample.cpu_us_per_handshake);
                into.idle_bytes.extend(sample.idle_bytes);
            }
        }
    }
    report(&brokers, &figures, bench.rounds);
    kafka_rounds(&weir, &pki, bench)
}

/// Kafka produce over TCP and TLS, one Weir (one shard) per round, and the table of medians.
fn kafka_rounds(weir: &std::path::Path, pki: &Pki, bench: &TlsBench) -> anyhow::Result<()> {
    if bench.kafka_mib == 0 {
        return Ok(());
    }
    let kafka = KafkaBench {
        total_bytes: bench.kafka_mib << 20,
        record_bytes: 1024,
        rounds: 1,
    };
    println!(
        "\nkafka: {} MiB of 1 KiB records per transport and round, acks=all (fsync), librdkafka {}",
        bench.kafka_mib,
        rdkafka::util::get_rdkafka_version().1
    );
    let (cert, key, ca) = (pki.server.cert_path(), pki.server.key_path(), pki.ca_path());
    // figures[0: tcp, 1: tls]: MB/s, broker and client CPU ms per MB.
    let mut figures: [Vec<[f64; 3]>; 2] = Default::default();
    for round in 0..bench.rounds {
        let dir = tempfile::tempdir()?;
        let env = [
            ("WEIR_SERVER_SHARDS", "1"),
            ("WEIR_KAFKA_TLS_LISTEN", "127.0.0.1:0"),
            ("WEIR_TLS_CERT_FILE", cert.as_str()),
            ("WEIR_TLS_KEY_FILE", key.as_str()),
            ("WEIR_KAFKA_AUTO_CREATE_PARTITIONS_COUNT", "1"),
        ];
        let broker = Broker::start(weir, dir.path(), &env)?;
        let tls = (broker.kafka_tls).ok_or_else(|| anyhow::anyhow!("no kafka tls address"))?;
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for t in order {
            let mut config = rdkafka::ClientConfig::new();
            if t == 1 {
                config
                    .set("bootstrap.servers", tls.to_string())
                    .set("security.protocol", "ssl")
                    .set("ssl.ca.location", &ca);
            } else {
                config.set("bootstrap.servers", broker.kafka.to_string());
            }
            let topic = ["over-tcp", "over-tls"][t];
            let (mb_s, cpu_s, client_s) = produce_with(config, broker.pid(), topic, &kafka)?;
            let mb = kafka.total_bytes as f64 / 1e6;
            let figure = [mb_s, cpu_s * 1e3 / mb, client_s * 1e3 / mb];
            println!(
                "round {}: kafka produce over {}: {:.1} MB/s, broker {:.2} / client {:.2} ms CPU/MB",
                round + 1,
                ["tcp", "tls"][t],
                figure[0],
                figure[1],
                figure[2]
            );
            figures[t].push(figure);
        }
    }
    kafka_report(&figures, bench.rounds);
    Ok(())
}

/// The table of Kafka medians (per transport: MB/s, broker and client CPU ms per MB), and
/// the ratios TLS / TCP.
fn kafka_report(figures: &[Vec<[f64; 3]>; 2], rounds: usize) {
    let med = |t: usize, i: usize| median(figures[t].iter().map(|f| f[i]).collect());
    println!(
        "\n| weir, Kafka 1 KiB produce (medians of {} rounds) | MB/s | broker CPU per MB | client CPU per MB |",
        rounds
    );
    println!("| --- | --- | --- | --- |");
    for (t, transport) in ["tcp", "tls"].iter().enumerate() {
        println!(
            "| {transport} | {:.1} | {:.2} ms | {:.2} ms |",
            med(t, 0),
            med(t, 1),
            med(t, 2)
        );
    }
    println!(
        "weir: Kafka produce TLS / TCP: {:.2}x MB/s, {:.2}x broker CPU per MB",
        med(1, 0) / med(0, 0),
        med(1, 1) / med(0, 1)
    );
}

/// Weir with one shard, plaintext and TLS MQTT listeners.
fn start_weir(
    weir: &std::path::Path,
    dir: &std::path::Path,
    pki: &Pki,
) -> anyhow::Result<Endpoints> {
    let (cert, key) = (pki.server.cert_path(), pki.server.key_path());
    let env = [
        ("WEIR_SERVER_SHARDS", "1"),
        ("WEIR_MQTT_TLS_LISTEN", "127.0.0.1:0"),
        ("WEIR_TLS_CERT_FILE", cert.as_str()),
        ("WEIR_TLS_KEY_FILE", key.as_str()),
    ];
    let broker = Broker::start(weir, dir, &env)?;
    Ok(Endpoints {
        plain: broker.mqtt,
        tls: broker
            .mqtt_tls
            .ok_or_else(|| anyhow::anyhow!("no mqtt tls address logged"))?,
        pid: broker.pid(),
        _running: Box::new(broker),
    })
}

/// Mosquitto with a plaintext listener and a TLS listener on the same certificate.
fn start_peer(
    mosquitto: Option<&str>,
    dir: &std::path::Path,
    pki: &Pki,
) -> anyhow::Result<Endpoints> {
    let path = mosquitto.ok_or_else(|| anyhow::anyhow!("mosquitto"))?;
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let listener = format!(
        "listener {tls_port} 127.0.0.1\ncertfile {}\nkeyfile {}\n",
        pki.server.cert_path(),
        pki.server.key_path()
    );
    let target = start_mosquitto(path, dir, &listener)?;
    Ok(Endpoints {
        plain: target.addr,
        tls: SocketAddr::from(([127, 0, 0, 1], tls_port)),
        pid: target.pid,
        _running: Box::new(target),
    })
}

/// Every figure of one broker over one transport.
fn measure_all(
    broker: &Endpoints,
    tls: bool,
    config: &Arc<rustls::ClientConfig>,
    bench: &TlsBench,
) -> anyhow::Result<Figures> {
    if tls {
        figures_over(
            &tls_connector(broker.tls, config.clone()),
            broker.pid,
            bench,
        )
    } else {
        let addr = broker.plain;
        let connect: Connector<TcpStream> = Arc::new(move |id| Conn::connect(addr, id));
        figures_over(&connect, broker.pid, bench)
    }
}

/// Every figure of the broker `pid` with the clients `connect` opens.
fn figures_over<S: Socket>(
    connect: &Connector<S>,
    pid: u32,
    bench: &TlsBench,
) -> anyhow::Result<Figures> {
    let mqtt = MqttBench {
        messages: bench.messages,
        publishers: bench.publishers,
        window: 1,
    };
    let payload = vec![0x5a; bench.payload_bytes];
    let run = crate::mqtt::measure_over(connect, pid, QoS::AtMostOnce, &mqtt, &payload)?;
    let (rate, cpu) = connections_per_s(connect, pid, bench.handshake_s)?;
    Ok(Figures {
        qos0: vec![run],
        handshakes_per_s: vec![rate],
        cpu_us_per_handshake: vec![cpu],
        idle_bytes: vec![idle_bytes(connect, pid, bench.idle_connections)?],
    })
}

/// MQTT clients over TLS to `addr`, verifying the broker's certificate with `config`.
fn tls_connector(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Connector<TlsStream> {
    Arc::new(move |id| Conn::over(tls_connect(addr, &config)?, id, true, None))
}

/// New connections (each a CONNECT answered, then closed) per second for `seconds`, four
/// clients at once, and the broker's CPU per connection (microseconds).
fn connections_per_s<S: Socket>(
    connect: &Connector<S>,
    pid: u32,
    seconds: f64,
) -> anyhow::Result<(f64, f64)> {
    let done = Arc::new(AtomicU64::new(0));
    let cpu_before = cpu_ticks(pid)?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (connect, done) = (connect.clone(), done.clone());
            std::thread::spawn(move || -> anyhow::Result<()> {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    drop(connect(&format!("hs-{c}-{n}"))?);
                    n += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    for client in clients {
        client
            .join()
            .map_err(|_| anyhow::anyhow!("a connecting client panicked"))??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_s = (cpu_ticks(pid)? - cpu_before) as f64 / clock_ticks_per_s();
    let n = done.load(Ordering::Relaxed).max(1) as f64;
    Ok((n / elapsed, cpu_s * 1e6 / n))
}

/// The broker's resident memory per idle connection (bytes): `n` connections opened (each
/// CONNECTed), the resident set read before and after (once it settles).
fn idle_bytes<S: Socket>(connect: &Connector<S>, pid: u32, n: usize) -> anyhow::Result<f64> {
    let before = settled_rss_kib(pid)?;
    let conns = (0..n)
        .map(|i| connect(&format!("idle-{i}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let after = settled_rss_kib(pid)?;
    drop(conns);
    Ok(after.saturating_sub(before) as f64 * 1024.0 / n.max(1) as f64)
}

/// Medians of one broker and transport: QoS 0 msg/s, CPU us per message, connections per
/// second, CPU us per connection, bytes per idle connection.
type Medians = (f64, f64, f64, f64, f64);

/// The resident set of `pid` (KiB) once two reads 100 ms apart agree, or after 5 s.
fn settled_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = status_kib(pid, "VmRSS")?;
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = status_kib(pid, "VmRSS")?;
        if now == last || Instant::now() > deadline {
            return Ok(now);
        }
        last = now;
    }
}

/// The table of medians, and the ratios TLS / TCP and Weir / Mosquitto over TLS.
fn report(brokers: &[&str], figures: &[[Figures; 2]], rounds: usize) {
    println!(
        "\n| broker, transport (medians of {rounds} rounds) | QoS 0 msg/s | CPU/msg | connections/s | CPU/connection | bytes per idle connection |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    let med = |f: &Figures| {
        (
            median(f.qos0.iter().map(|r| r.messages_per_s).collect()),
            median(f.qos0.iter().map(|r| r.cpu_us_per_message).collect()),
            median(f.handshakes_per_s.clone()),
            median(f.cpu_us_per_handshake.clone()),
            median(f.idle_bytes.clone()),
        )
    };
    let medians: Vec<[Medians; 2]> = figures
        .iter()
        .map(|[tcp, tls]| [med(tcp), med(tls)])
        .collect();
    for (name, both) in brokers.iter().zip(&medians) {
        for (transport, m) in ["tcp", "tls"].iter().zip(both) {
            println!(
                "| {name}, {transport} | {:.0} | {:.2} us | {:.0} | {:.0} us | {:.0} |",
                m.0, m.1, m.2, m.3, m.4
            );
        }
    }
    for (name, [tcp, tls]) in brokers.iter().zip(&medians) {
        println!(
            "{name}: TLS / TCP: QoS 0 {:.2}x msg/s, {:.2}x CPU/msg; {:.2}x connections/s; idle connection {:.0} B more",
            tls.0 / tcp.0,
            tls.1 / tcp.1,
            tls.2 / tcp.2,
            tls.4 - tcp.4
        );
    }
    if let [weir, peer] = medians.as_slice() {
        println!(
            "weir / mosquitto over TLS: QoS 0 {:.2}x msg/s, {:.2}x CPU/msg; {:.2}x connections/s; {:.2}x bytes per idle connection",
            weir[1].0 / peer[1].0,
            weir[1].1 / peer[1].1,
            weir[1].2 / peer[1].2,
            weir[1].4 / peer[1].4
        );
    }
}
