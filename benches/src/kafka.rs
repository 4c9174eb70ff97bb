//! `weir-bench kafka`: the real `weir` process with librdkafka (the `rdkafka` crate) on
//! both ends. Produce: 1 KiB records, acks=all, in the default `fsync` durability, next to
//! the raw disk writing the same bytes with `fdatasync` after every 1 MiB and after every
//! write of the broker's mean group-commit size (from its `/metrics`), measured in the same
//! round on the same file system; the ratio is against the latter. Consume: a librdkafka
//! consumer reading the partition from its start, with librdkafka's default fetch sizes. For both, the broker's and the
//! client's CPU time per MB (they share the machine's CPUs).
//!
//! Each round starts a fresh broker in a fresh directory under `--dir`; rounds alternate
//! the broker and the raw disk, and medians are reported.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::server::{Broker, clock_ticks_per_s, cpu_ticks, median, weir_binary};

/// Settings of the Kafka benchmark.
#[derive(Debug, Clone)]
pub struct KafkaBench {
    /// Bytes of record values produced (and consumed) per round.
    pub total_bytes: u64,
    /// Bytes per record value.
    pub record_bytes: usize,
    /// Alternating rounds.
    pub rounds: usize,
}

/// One round's figures.
#[derive(Debug, Clone, Copy)]
struct Round {
    raw_mb_s: f64,
    /// Bytes per group commit the broker made while producing.
    commit_bytes: f64,
    /// The raw disk writing `commit_bytes` per `fdatasync`.
    raw_commit_mb_s: f64,
    produce_mb_s: f64,
    produce_cpu_ms_per_mb: f64,
    produce_client_cpu_ms_per_mb: f64,
    consume_mb_s: f64,
    consume_cpu_ms_per_mb: f64,
    consume_client_cpu_ms_per_mb: f64,
}

const TOPIC: &str = "bench";

pub fn run(dir: &Path, bench: &KafkaBench) -> anyhow::Result<()> {
    let weir = weir_binary()?;
    println!(
        "kafka benchmark: {} (1 shard per CPU, fsync durability) in {}; {} MiB of {} B records per round, librdkafka {}",
        weir.display(),
        dir.display(),
        bench.total_bytes >> 20,
        bench.record_bytes,
        rdkafka::util::get_rdkafka_version().1
    );
    let mut rounds = Vec::new();
    for round in 0..bench.rounds {
        let raw_mb_s = crate::log::raw_writes(dir, bench.total_bytes, 1 << 20, true)?;
        let broker_dir = tempfile::tempdir_in(dir)?;
        let env = [("WEIR_KAFKA_AUTO_CREATE_PARTITIONS_COUNT", "1")];
        let broker = Broker::start(&weir, broker_dir.path(), &env)?;
        let commits_before = broker.metric("weir_log_commits_total")?;
        let bytes_before = broker.metric("weir_log_appended_bytes_total")?;
        let (produce_mb_s, produce_cpu, produce_client_cpu) = produce(&broker, bench)?;
        let commits = broker.metric("weir_log_commits_total")? - commits_before;
        let commit_bytes =
            (broker.metric("weir_log_appended_bytes_total")? - bytes_before) / commits.max(1.0);
        let (consume_mb_s, consume_cpu, consume_client_cpu) = consume(&broker, bench)?;
        drop(broker);
        // The raw disk again, now with one fdatasync per commit-sized write (4 KiB multiples).
        let chunk = ((commit_bytes as u64).div_ceil(4096) * 4096).max(4096);
        let raw_commit_mb_s = crate::log::raw_writes(dir, bench.total_bytes, chunk, true)?;
        let mb = bench.total_bytes as f64 / 1e6;
        let r = Round {
            raw_mb_s,
            commit_bytes,
            raw_commit_mb_s,
            produce_mb_s,
            produce_cpu_ms_per_mb: produce_cpu * 1e3 / mb,
            produce_client_cpu_ms_per_mb: produce_client_cpu * 1e3 / mb,
            consume_mb_s,
            consume_cpu_ms_per_mb: consume_cpu * 1e3 / mb,
            consume_client_cpu_ms_per_mb: consume_client_cpu * 1e3 / mb,
        };
        println!(
            "round {}: raw disk {:.1} MB/s (1 MiB), {:.1} MB/s ({:.0} KiB commits); produce {:.1} MB/s ({:.2}x), broker {:.2} / client {:.2} ms CPU/MB; consume {:.1} MB/s, broker {:.2} / client {:.2} ms CPU/MB",
            round + 1,
            r.raw_mb_s,
            r.raw_commit_mb_s,
            r.commit_bytes / 1024.0,
            r.produce_mb_s,
            r.produce_mb_s / r.raw_commit_mb_s,
            r.produce_cpu_ms_per_mb,
            r.produce_client_cpu_ms_per_mb,
            r.consume_mb_s,
            r.consume_cpu_ms_per_mb,
            r.consume_client_cpu_ms_per_mb
        );
        rounds.push(r);
    }
    let m = |f: fn(&Round) -> f64| median(rounds.iter().map(f).collect());
    let ratios = median(
        rounds
            .iter()
            .map(|r| r.produce_mb_s / r.raw_commit_mb_s)
            .collect(),
    );
    println!(
        "\n| medians of {} rounds | MB/s | ratio | broker CPU per MB | client CPU per MB |",
        bench.rounds
    );
    println!("| --- | --- | --- | --- | --- |");
    println!(
        "| raw disk, fdatasync every 1 MiB | {:.1} | | | |",
        m(|r| r.raw_mb_s)
    );
    println!(
        "| raw disk, fdatasync every commit's bytes ({:.0} KiB) | {:.1} | 1.00 | | |",
        m(|r| r.commit_bytes) / 1024.0,
        m(|r| r.raw_commit_mb_s)
    );
    println!(
        "| produce, acks=all, fsync | {:.1} | {ratios:.2}x raw disk at commit size (same round) | {:.2} ms | {:.2} ms |",
        m(|r| r.produce_mb_s),
        m(|r| r.produce_cpu_ms_per_mb),
        m(|r| r.produce_client_cpu_ms_per_mb)
    );
    println!(
        "| consume from the start | {:.1} | | {:.2} ms | {:.2} ms |",
        m(|r| r.consume_mb_s),
        m(|r| r.consume_cpu_ms_per_mb),
        m(|r| r.consume_client_cpu_ms_per_mb)
    );
    Ok(())
}

/// Counts delivery reports.
struct Deliveries {
    delivered: std::sync::atomic::AtomicU64,
    failed: std::sync::atomic::AtomicU64,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let counter = match result {
            Ok(_) => &self.delivered,
            Err(_) => &self.failed,
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Produces the round's records; returns MB/s, the broker's CPU seconds and this process's
/// (the client's).
pub(crate) fn produce(broker: &Broker, bench: &KafkaBench) -> anyhow::Result<(f64, f64, f64)> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", broker.kafka.to_string());
    produce_with(config, broker.pid(), TOPIC, bench)
}

/// Produces the round's records to `topic` with a client of `config` (its bootstrap servers,
/// and TLS settings if any) to the broker `pid`; returns MB/s, the broker's CPU seconds and
/// this process's (the client's).
pub(crate) fn produce_with(
    mut config: ClientConfig,
    pid: u32,
    topic: &str,
    bench: &KafkaBench,
) -> anyhow::Result<(f64, f64, f64)> {
    use std::sync::atomic::Ordering;
    let context = Deliveries {
        delivered: 0.into(),
        failed: 0.into(),
    };
    let producer: ThreadedProducer<Deliveries> = config
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("queue.buffering.max.messages", "1000000")
        .create_with_context(context)?;
    let value = vec![0x42u8; bench.record_bytes];
    let count = bench.total_bytes / bench.record_bytes as u64;
    // Create the topic and warm the connection outside the measurement.
    producer
        .send(
            BaseRecord::<(), [u8]>::to(topic)
                .payload(&value[..])
                .partition(0),
        )
        .map_err(|(e, _)| e)?;
    producer.flush(Duration::from_secs(30))?;
    let cpu_before = cpu_ticks(pid)?;
    let client_before = cpu_ticks(std::process::id())?;
    let started = Instant::now();
    for _ in 0..count {
        let mut record = BaseRecord::<(), [u8]>::to(topic)
            .payload(&value[..])
            .partition(0);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    back,
                )) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }
    producer.flush(Duration::from_secs(600))?;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = (cpu_ticks(pid)? - cpu_before) as f64 / clock_ticks_per_s();
    let client = (cpu_ticks(std::process::id())? - client_before) as f64 / clock_ticks_per_s();
    let context = producer.context();
    let failed = context.failed.load(Ordering::Relaxed);
    if failed > 0 {
        bail!("{failed} records were not delivered");
    }
    let delivered = context.delivered.load(Ordering::Relaxed);
    if delivered != count + 1 {
        bail!("{delivered} delivery reports for {} records", count + 1);
    }
    Ok((bench.total_bytes as f64 / 1e6 / elapsed, cpu, client))
}

/// Reads the partition from its start; returns MB/s, the broker's CPU seconds and this
/// process's (the client's).
pub(crate) fn consume(broker: &Broker, bench: &KafkaBench) -> anyhow::Result<(f64, f64, f64)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.kafka.to_string())
        .set("group.id", "bench")
        .set("enable.auto.commit", "false")
        .set("queued.min.messages", "1000000")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(TOPIC, 0, Offset::Beginning)?;
    consumer.assign(&assignment)?;
    let count = bench.total_bytes / bench.record_bytes as u64 + 1;
    let cpu_before = cpu_ticks(broker.pid())?;
    let client_before = cpu_ticks(std::process::id())?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(600);
    let mut read = 0u64;
    let mut bytes = 0u64;
    while read < count {
        if Instant::now() > deadline {
            bail!("read {read} of {count} records in 600 s");
        }
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.context("consume")?;
            bytes += message.payload().map_or(0, <[u8]>::len) as u64;
            read += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = (cpu_ticks(broker.pid())? - cpu_before) as f64 / clock_ticks_per_s();
    let client = (cpu_ticks(std::process::id())? - client_before) as f64 / clock_ticks_per_s();
    Ok((bytes as f64 / 1e6 / elapsed, cpu, client))
}
