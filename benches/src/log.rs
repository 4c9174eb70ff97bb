//! `weir-bench log`: the partitioned log against the raw disk, in the same run.
//!
//! 1. Durable appends (fsync mode) of 1 KiB records in 32 KiB batches through the group-commit
//!    writer, against the raw disk writing the same bytes in writes of the same average commit
//!    size, each followed by `fdatasync`.
//! 2. The same in relaxed mode, against plain buffered sequential writes.
//! 3. A scan of the log from its start, copying every batch out as a fetch would, from the
//!    page cache.
//! 4. Commits per second and records per commit under 1, 8 and 64 concurrent appenders, each
//!    waiting for its own completion before its next append (as a client waiting for an ack).

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use anyhow::Context;
use weir::writer::{Writer, WriterConfig};
use weir_core::log_store::{Append, CheckedBatch, LogStore, PartitionId, TopicConfig};
use weir_kafka::record_batch::{BatchBuilder, Record};
use weir_log::{Durability, LmdbLog, LogOptions};

/// Benchmark settings.
#[derive(Debug, Clone)]
pub struct LogBench {
    /// Bytes written by each throughput run.
    pub total_bytes: u64,
    /// Records per batch (1 KiB each).
    pub records_per_batch: usize,
    /// Appenders in the throughput runs.
    pub appenders: usize,
    /// Duration of each concurrency run.
    pub concurrency_run: Duration,
    /// Group-commit window.
    pub commit_window: Duration,
    /// Alternating rounds of weir and baseline.
    pub rounds: usize,
}

const RECORD_BYTES: usize = 1024;

pub fn run(dir: &Path, bench: &LogBench) -> anyhow::Result<()> {
    println!(
        "log benchmark in {} ({} MiB per throughput run, {} x 1 KiB records per batch, {} appenders, commit window {:?})",
        dir.display(),
        bench.total_bytes >> 20,
        bench.records_per_batch,
        bench.appenders,
        bench.commit_window
    );
    let batch = make_batch(bench.records_per_batch, 0);

    // Weir and its baseline alternate, round after round, and the medians are compared: on a
    // shared VM the disk's speed drifts, and back-to-back runs share the drift.
    let mut rows: [Vec<(f64, f64, Run)>; 2] = [Vec::new(), Vec::new()];
    for round in 0..bench.rounds {
        let fsync = appends(dir, "fsync", Durability::Fsync, bench, &batch)?;
        let raw_fsync = raw_writes(dir, fsync.bytes, fsync.bytes_per_commit(), true)?;
        let relaxed = appends(dir, "relaxed", Durability::Relaxed, bench, &batch)?;
        let raw_buffered = raw_writes(dir, relaxed.bytes, relaxed.bytes_per_commit(), false)?;
        println!(
            "round {}: fsync {:.1} vs raw {:.1} MB/s; relaxed {:.1} vs buffered {:.1} MB/s",
            round + 1,
            fsync.mb_per_s(),
            raw_fsync,
            relaxed.mb_per_s(),
            raw_buffered
        );
        rows[0].push((fsync.mb_per_s(), raw_fsync, fsync));
        rows[1].push((relaxed.mb_per_s(), raw_buffered, relaxed));
    }

    println!(
        "\n| workload (medians of {} rounds) | weir MB/s | baseline | baseline MB/s | weir / baseline (median of round ratios) | KiB per commit |",
        bench.rounds
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for (name, base_name, runs) in [
        (
            "durable append (fsync)",
            "raw write + fdatasync per commit-sized write",
            &rows[0],
        ),
        ("relaxed append", "raw buffered sequential write", &rows[1]),
    ] {
        let weir = median(runs.iter().map(|r| r.0).collect());
        let base = median(runs.iter().map(|r| r.1).collect());
        // The ratio is the median of each round's own ratio: a round's two runs share the
        // disk's mood of the moment.
        let ratio = median(runs.iter().map(|r| r.0 / r.1).collect());
        let per_commit = median(runs.iter().map(|r| r.2.bytes_per_commit() as f64).collect());
        println!(
            "| {name} | {weir:.1} | {base_name} | {base:.1} | {ratio:.2}x | {:.0} |",
            per_commit / 1024.0
        );
    }

    let (scan_gb_s, scanned) = scan(&dir.join("fsync"))?;
    println!(
        "\nscan from start (page cache, each batch copied out): {scan_gb_s:.2} GB/s over {} MiB",
        scanned >> 20
    );

    println!("\n| appenders | appends/s | commits/s | records per commit | KiB per commit |");
    println!("| --- | --- | --- | --- | --- |");
    let small = make_batch(1, 0);
    for appenders in [1usize, 8, 64] {
        let run = concurrency(dir, appenders, bench, &small)?;
        println!(
            "| {appenders} | {:.0} | {:.0} | {:.1} | {:.1} |",
            run.appends as f64 / run.elapsed.as_secs_f64(),
            run.commits as f64 / run.elapsed.as_secs_f64(),
            run.appends as f64 / run.commits.max(1) as f64,
            run.bytes_per_commit() as f64 / 1024.0
        );
    }
    Ok(())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn make_batch(records: usize, seed: u8) -> Vec<u8> {
    let value: Vec<u8> = (0..RECORD_BYTES)
        .map(|i| (i as u8).wrapping_add(seed))
        .collect();
    let mut builder = BatchBuilder::new();
    for i in 0..records {
        builder.push(Record {
            timestamp_ms: 1_700_000_000_000 + i as i64,
            key: Some(b"bench/key"),
            value: Some(&value),
            headers: &[],
        });
    }
    builder.finish()
}

/// What one run of appends did.
#[derive(Debug, Clone, Copy)]
struct Run {
    bytes: u64,
    appends: u64,
    commits: u64,
    elapsed: Duration,
}

impl Run {
    fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
    }

    fn bytes_per_commit(&self) -> u64 {
        self.bytes / self.commits.max(1)
    }
}

fn open(dir: &Path, durability: Durability) -> anyhow::Result<(Arc<LmdbLog>, PartitionId)> {
    let _ = std::fs::remove_dir_all(dir);
    let options = LogOptions {
        map_size_bytes: 64 << 30,
        durability,
        ..LogOptions::default()
    };
    let (log, _) = LmdbLog::open(dir, options)?;
    let config = TopicConfig {
        retention_ms: -1,
        retention_bytes: -1,
    };
    let pid = log.create_topic("bench", 1, config)?.partitions[0];
    Ok((Arc::new(log), pid))
}

/// `appenders` threads each submit the batch and wait for its completion, until
/// `total_bytes` are written.
fn appends(
    dir: &Path,
    name: &str,
    durability: Durability,
    bench: &LogBench,
    batch: &[u8],
) -> anyhow::Result<Run> {
    let (log, pid) = open(&dir.join(name), durability)?;
    let count = bench.total_bytes / batch.len() as u64;
    let durable = durability == Durability::Fsync;
    let run = drive(
        log.clone(),
        pid,
        bench.appenders,
        bench.commit_window,
        durable,
        batch,
        |done| done >= count,
    )?;
    if durability == Durability::Relaxed {
        log.sync()?;
    }
    Ok(run)
}

fn concurrency(
    dir: &Path,
    appenders: usize,
    bench: &LogBench,
    batch: &[u8],
) -> anyhow::Result<Run> {
    let (log, pid) = open(
        &dir.join(format!("appenders-{appenders}")),
        Durability::Fsync,
    )?;
    let until = Instant::now() + bench.concurrency_run;
    drive(
        log,
        pid,
        appenders,
        bench.commit_window,
        true,
        batch,
        |_| Instant::now() >= until,
    )
}

/// Runs closed-loop appenders through a real group-commit writer until `stop(appends so far)`.
fn drive(
    log: Arc<LmdbLog>,
    pid: PartitionId,
    appenders: usize,
    commit_window: Duration,
    sync_before_ack: bool,
    batch: &[u8],
    stop: impl Fn(u64) -> bool + Sync,
) -> anyhow::Result<Run> {
    let writer = Writer::start(
        log,
        WriterConfig {
            commit_window,
            commit_bytes_max: 4 << 20,
            queue_bytes_max: 256 << 20,
            sync_before_ack,
        },
        Box::new(|e| panic!("storage failed during the benchmark: {e}")),
    )?;
    let handle = writer.handle();
    let submitted = std::sync::atomic::AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..appenders {
            let (handle, submitted, stop) = (handle.clone(), &submitted, &stop);
            scope.spawn(move || {
                let (tx, rx) = channel();
                while !stop(submitted.fetch_add(1, Ordering::Relaxed)) {
                    let tx = tx.clone();
                    // Checked here, on the appender's thread, as a connection's shard does.
                    let batch = match CheckedBatch::new(batch.to_vec()) {
                        Ok(batch) => batch,
                        Err(e) => panic!("the benchmark's batch is unsound: {e}"),
                    };
                    let append = Append {
                        partition: pid,
                        batch,
                        dedup: None,
                    };
                    let done = Box::new(move |result| {
                        let _ = tx.send(result);
                    });
                    if handle.submit(append, done).is_err() {
                        continue;
                    }
                    match rx.recv() {
                        Ok(Ok(_)) => {}
                        other => panic!("append failed: {other:?}"),
                    }
                }
            });
        }
    });
    let elapsed = started.elapsed();
    let stats = handle.stats();
    let run = Run {
        bytes: stats.bytes.load(Ordering::Relaxed),
        appends: stats.appends.load(Ordering::Relaxed),
        commits: stats.commits.load(Ordering::Relaxed),
        elapsed,
    };
    writer.shutdown();
    Ok(run)
}

/// The raw disk writing `total` bytes in `chunk`-sized writes, each followed by `fdatasync`
/// when `sync`; returns MB/s.
pub(crate) fn raw_writes(dir: &Path, total: u64, chunk: u64, sync: bool) -> anyhow::Result<f64> {
    let path = dir.join(if sync { "raw-fsync" } else { "raw-buffered" });
    let mut file = File::create(&path).with_context(|| format!("create {}", path.display()))?;
    let buffer = vec![0x5a_u8; chunk.max(1) as usize];
    let started = Instant::now();
    let mut written = 0u64;
    while written < total {
        file.write_all(&buffer)?;
        if sync {
            file.sync_data()?;
        }
        written += buffer.len() as u64;
    }
    let elapsed = started.elapsed();
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(written as f64 / 1e6 / elapsed.as_secs_f64())
}

/// Scans the partition from its start, copying every batch into a buffer; returns GB/s and
/// bytes. The first pass warms the page cache; the second is timed.
fn scan(dir: &Path) -> anyhow::Result<(f64, u64)> {
    let (log, _) = LmdbLog::open(
        dir,
        LogOptions {
            map_size_bytes: 64 << 30,
            ..LogOptions::default()
        },
    )?;
    let pid = log.topic("bench")?.context("bench topic")?.partitions[0];
    let mut out: Vec<u8> = Vec::with_capacity(4 << 20);
    let mut pass = || -> anyhow::Result<(u64, Duration)> {
        let started = Instant::now();
        let end = log.partition(pid)?.high_watermark;
        let mut offset = 0i64;
        let mut bytes = 0u64;
        while offset < end {
            out.clear();
            let mut next = offset;
            log.read(pid, offset, 4 << 20, &mut |batch| {
                out.extend_from_slice(batch);
                if let Ok(header) = weir_kafka::record_batch::BatchHeader::parse(batch) {
                    next = header.next_offset();
                }
            })?;
            bytes += out.len() as u64;
            offset = next;
        }
        Ok((bytes, started.elapsed()))
    };
    pass()?;
    let (bytes, elapsed) = pass()?;
    Ok((bytes as f64 / 1e9 / elapsed.as_secs_f64(), bytes))
}
