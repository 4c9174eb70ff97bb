//! `weir-bench log`: the partitioned log against the raw disk, in the same run.
//!
//! 1. Durable appends (fsync mode) of 1 KiB records in 32 KiB batches through the group-commit
//!    writer, against the raw disk writing the same bytes in writes of the same average commit
//!    size, each followed by `fdatasync`; and against the same raw writes plus the extra work
//!    any LMDB commit does (see [`disk_writes`]), which bounds what a log on LMDB can
//!    reach.
//! 2. The same in relaxed mode, against plain buffered sequential writes (and the same with
//!    LMDB's extra work).
//!
//!    Both run in two shapes: closed-loop appenders (each waits for its acknowledgement before
//!    its next append, as a client that waits for every ack) and pipelined appenders, one per
//!    core as the broker's shards, each keeping several appends in flight (as a shard does
//!    with many connections and pipelining producers).
//! 3. A scan of the log from its start, copying every batch out as a fetch would, from the
//!    page cache.
//! 4. Commits per second and records per commit under 1, 8 and 64 concurrent appenders, each
//!    waiting for its own completion before its next append (as a client waiting for an ack).

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
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

/// How the appenders of a throughput run submit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Appender threads.
    pub appenders: usize,
    /// Appends each keeps submitted and not yet acknowledged.
    pub in_flight: usize,
}

impl std::str::FromStr for Shape {
    type Err = String;

    /// `AxF`: A appenders with F appends in flight each.
    fn from_str(text: &str) -> Result<Shape, String> {
        let (a, f) = text
            .split_once('x')
            .ok_or_else(|| format!("{text:?}: expected APPENDERSxIN_FLIGHT, e.g. 8x1"))?;
        let number = |v: &str| match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{text:?}: {v:?} is not a positive number")),
        };
        Ok(Shape {
            appenders: number(a)?,
            in_flight: number(f)?,
        })
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = if self.appenders == 1 { "" } else { "s" };
        if self.in_flight == 1 {
            write!(f, "{} closed-loop appender{plural}", self.appenders)
        } else {
            write!(
                f,
                "{} appender{plural} x {} in flight",
                self.appenders, self.in_flight
            )
        }
    }
}

/// A durability mode, as the command line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Acknowledged after a sync.
    Fsync,
    /// Acknowledged after the commit; synced in the background.
    Relaxed,
}

impl Mode {
    /// The log's durability of that name.
    pub fn durability(self) -> Durability {
        match self {
            Mode::Fsync => Durability::Fsync,
            Mode::Relaxed => Durability::Relaxed,
        }
    }
}

/// Benchmark settings.
#[derive(Debug, Clone)]
pub struct LogBench {
    /// Bytes written by each throughput run.
    pub total_bytes: u64,
    /// Records per batch (1 KiB each).
    pub records_per_batch: usize,
    /// The appenders' shapes of the throughput runs.
    pub shapes: Vec<Shape>,
    /// The durability modes of the throughput runs.
    pub modes: Vec<Durability>,
    /// Duration of each concurrency run.
    pub concurrency_run: Duration,
    /// Group-commit window.
    pub commit_window: Duration,
    /// Alternating rounds of weir and baseline.
    pub rounds: usize,
}

const RECORD_BYTES: usize = 1024;

/// Pages every LMDB commit writes besides its data and its meta page, at the least: the
/// copied leaf and branch page of the table appended to, the main database's page that holds
/// that table's root, and a page of the free list that records the pages the copies replaced.
/// They go where freed pages are reused, apart from the data at the file's end (a commit of
/// the log writes 4 to 6 such pages, as `strace` shows).
const LMDB_TREE_PAGES: usize = 4;

/// One throughput row: a durability mode and a shape, measured once per round.
struct Row {
    durability: Durability,
    shape: Shape,
    rounds: Vec<Round>,
}

/// One round of a row: Weir and its two baselines, back to back.
struct Round {
    weir: Run,
    /// Raw writes, MB/s.
    raw: f64,
    /// Raw writes plus LMDB's extra work, MB/s.
    ceiling: f64,
}

/// The row's name in the tables.
fn workload_name(durability: Durability) -> &'static str {
    match durability {
        Durability::Fsync => "durable append (fsync)",
        Durability::Relaxed => "relaxed append",
    }
}

/// The directory of a throughput run's log, under the benchmark's directory.
fn log_dir_name(durability: Durability) -> &'static str {
    match durability {
        Durability::Fsync => "fsync",
        Durability::Relaxed => "relaxed",
    }
}

pub fn run(dir: &Path, bench: &LogBench) -> anyhow::Result<()> {
    println!(
        "log benchmark in {} ({} MiB per throughput run, {} x 1 KiB records per batch, commit window {:?})",
        dir.display(),
        bench.total_bytes >> 20,
        bench.records_per_batch,
        bench.commit_window
    );
    let batch = make_batch(bench.records_per_batch, 0);

    // Weir and its baselines alternate, round after round, and the medians are compared: on
    // a shared VM the disk's speed drifts, and back-to-back runs share the drift.
    let mut rows: Vec<Row> = (bench.modes.iter())
        .flat_map(|&durability| {
            (bench.shapes.iter()).map(move |&shape| Row {
                durability,
                shape,
                rounds: Vec::new(),
            })
        })
        .collect();
    for round in 0..bench.rounds {
        for row in &mut rows {
            let (durability, shape) = (row.durability, row.shape);
            let sync = durability == Durability::Fsync;
            let weir = appends(dir, durability, shape, bench, &batch)?;
            let per_commit = weir.bytes_per_commit();
            let raw = disk_writes(dir, weir.bytes, per_commit, sync, false)?;
            let ceiling = disk_writes(dir, weir.bytes, per_commit, sync, true)?;
            println!(
                "round {}: {} with {shape}: weir {:.1}, raw {raw:.1}, raw + LMDB's extra work {ceiling:.1} MB/s ({} KiB per commit)",
                round + 1,
                workload_name(durability),
                weir.mb_per_s(),
                per_commit >> 10,
            );
            row.rounds.push(Round { weir, raw, ceiling });
        }
    }

    println!(
        "\n| workload (medians of {} rounds) | appenders | weir MB/s | raw MB/s | weir / raw | raw + LMDB's extra work, MB/s | that / raw | weir / that | KiB per commit |",
        bench.rounds
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for row in &rows {
        let of = |f: fn(&Round) -> f64| median(row.rounds.iter().map(f).collect());
        let weir = of(|r| r.weir.mb_per_s());
        let raw = of(|r| r.raw);
        let ceiling = of(|r| r.ceiling);
        // Ratios are medians of each round's own ratio: a round's runs share the disk's mood
        // of the moment.
        let ratio = of(|r| r.weir.mb_per_s() / r.raw);
        let ceiling_ratio = of(|r| r.ceiling / r.raw);
        let of_ceiling = of(|r| r.weir.mb_per_s() / r.ceiling);
        let per_commit = of(|r| r.weir.bytes_per_commit() as f64);
        println!(
            "| {} | {} | {weir:.1} | {raw:.1} | {ratio:.2}x | {ceiling:.1} | {ceiling_ratio:.2}x | {of_ceiling:.2}x | {:.0} |",
            workload_name(row.durability),
            row.shape,
            per_commit / 1024.0
        );
    }

    // The log a throughput run left: the last fsync run's if there was one.
    let scanned = if bench.modes.contains(&Durability::Fsync) {
        Some(Durability::Fsync)
    } else {
        bench.modes.first().copied()
    };
    if let Some(durability) = scanned {
        let (scan_gb_s, scanned) = scan(&dir.join(log_dir_name(durability)))?;
        println!(
            "\nscan from start (page cache, each batch copied out): {scan_gb_s:.2} GB/s over {} MiB",
            scanned >> 20
        );
    }

    if bench.concurrency_run.is_zero() {
        return Ok(());
    }
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

/// Appenders of `shape` submit the batch until `total_bytes` are written.
fn appends(
    dir: &Path,
    durability: Durability,
    shape: Shape,
    bench: &LogBench,
    batch: &[u8],
) -> anyhow::Result<Run> {
    let (log, pid) = open(&dir.join(log_dir_name(durability)), durability)?;
    let count = bench.total_bytes / batch.len() as u64;
    let durable = durability == Durability::Fsync;
    let run = drive(
        log.clone(),
        pid,
        shape,
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
        Shape {
            appenders,
            in_flight: 1,
        },
        bench.commit_window,
        true,
        batch,
        |_| Instant::now() >= until,
    )
}

/// Runs appenders through a real group-commit writer until `stop(appends so far)`. Each
/// appender keeps up to `shape.in_flight` appends submitted; it sleeps until one completes,
/// then takes every completion that has arrived, as a shard drains its inbox when woken.
fn drive(
    log: Arc<LmdbLog>,
    pid: PartitionId,
    shape: Shape,
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
        for _ in 0..shape.appenders {
            let (handle, submitted, stop) = (handle.clone(), &submitted, &stop);
            scope.spawn(move || {
                let (tx, rx) = channel();
                let mut in_flight = 0usize;
                let mut stopped = false;
                loop {
                    while !stopped && in_flight < shape.in_flight {
                        if stop(submitted.fetch_add(1, Ordering::Relaxed)) {
                            stopped = true;
                            break;
                        }
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
                        if handle.submit(append, done).is_ok() {
                            in_flight += 1;
                        }
                    }
                    if in_flight == 0 {
                        break;
                    }
                    // This thread holds a sender, so `recv` waits for a completion.
                    let first = rx.recv().expect("the appender holds a sender");
                    for outcome in std::iter::once(first).chain(rx.try_iter()) {
                        if let Err(e) = outcome {
                            panic!("append failed: {e}");
                        }
                        in_flight -= 1;
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
    disk_writes(dir, total, chunk, sync, false)
}

/// [`raw_writes`], and with `lmdb_work` the work any LMDB commit adds to writing its data:
/// the data copied into pages allocated for the transaction (LMDB without `MDB_WRITEMAP`
/// builds every page in memory it allocates, then writes it), and, before it, its meta page
/// (alternating between the file's first two pages, as LMDB's two meta pages) and
/// [`LMDB_TREE_PAGES`] 4 KiB pages at seeded random places in the file's first 16 MiB, where
/// freed pages are reused. With it, what a log on LMDB would reach if its own work cost
/// nothing.
fn disk_writes(
    dir: &Path,
    total: u64,
    chunk: u64,
    sync: bool,
    lmdb_work: bool,
) -> anyhow::Result<f64> {
    const TREE_AREA_PAGES: u64 = 4096;
    const PAGE: u64 = 4096;
    let path = dir.join(if sync { "raw-fsync" } else { "raw-buffered" });
    let mut file = File::create(&path).with_context(|| format!("create {}", path.display()))?;
    let page = vec![0x11_u8; PAGE as usize];
    let mut end = 0;
    if lmdb_work {
        // The area where reused pages live exists before the timed writes, as in a used log.
        for _ in 0..TREE_AREA_PAGES {
            file.write_all(&page)?;
        }
        file.sync_all()?;
        end = TREE_AREA_PAGES * PAGE;
    }
    let buffer = vec![0x5a_u8; chunk.max(1) as usize];
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next_page = || {
        // xorshift64: a fixed, cheap sequence; the place of each page is all that matters.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        2 + seed % (TREE_AREA_PAGES - 2)
    };
    let started = Instant::now();
    let mut written = 0u64;
    let mut commits = 0u64;
    while written < total {
        if lmdb_work {
            file.write_all_at(&page, (commits % 2) * PAGE)?;
            let mut pages: Vec<u64> = (0..LMDB_TREE_PAGES).map(|_| next_page()).collect();
            pages.sort_unstable();
            for p in pages {
                file.write_all_at(&page, p * PAGE)?;
            }
            // LMDB copies each value into pages it allocates for the transaction, writes
            // them, and frees them.
            file.write_all_at(&buffer.clone(), end)?;
        } else {
            file.write_all_at(&buffer, end)?;
        }
        if sync {
            file.sync_data()?;
        }
        end += buffer.len() as u64;
        written += buffer.len() as u64;
        commits += 1;
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
