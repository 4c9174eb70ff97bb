//! Durability tests that need a separate process: the log is killed with SIGKILL in the middle
//! of acknowledged writes, and filled until a real (tmpfs) disk is full.
//!
//! This is a `harness = false` test: the same executable is the parent (the tests) and, when
//! called with `child-*` arguments, the child processes. It prints a libtest-style summary.
//!
//! `WEIR_LOG_CRASH_CYCLES` sets the number of kill cycles (default 100; the benchmark suite
//! runs 1,000). `WEIR_LOG_CRASH_SEED` replays one seed.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use weir_core::log_store::{Append, CheckedBatch, LogStore, PartitionId, StoreError, TopicConfig};
use weir_kafka::record_batch::{BatchBuilder, Record, validate};
use weir_log::{LmdbLog, LogOptions};

const KEEP: TopicConfig = TopicConfig {
    retention_ms: -1,
    retention_bytes: -1,
};

/// A test: `Err` carries what went wrong.
type Test = fn() -> Result<(), String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("child-append") => {
            let seed = args[3].parse().expect("seed argument");
            return child_append(Path::new(&args[2]), seed);
        }
        Some("child-disk-full") => return child_disk_full(Path::new(&args[2])),
        _ => {}
    }
    // libtest passes filters and flags; a filter selects tests by substring.
    let filter: Vec<&str> = args[1..]
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let tests: [(&str, Test); 2] = [
        (
            "kill_9_loses_no_acknowledged_append",
            kill_9_loses_no_acknowledged_append,
        ),
        (
            "a_full_disk_refuses_appends_and_recovers",
            a_full_disk_refuses_appends_and_recovers,
        ),
    ];
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in tests {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f)) {
            continue;
        }
        match test() {
            Ok(()) => {
                println!("test {name} ... ok");
                passed += 1;
            }
            Err(why) => {
                println!("test {name} ... FAILED\n{why}");
                failed += 1;
            }
        }
    }
    println!(
        "\ntest result: {}. {passed} passed; {failed} failed; 0 ignored; 0 measured; 0 filtered out\n",
        if failed == 0 { "ok" } else { "FAILED" }
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A batch whose content is derived from (seed, writer, n), so the parent can tell batches
/// apart.
fn batch(tag: &str, records: usize, value_len: usize) -> CheckedBatch {
    let mut builder = BatchBuilder::new();
    let mut value = tag.as_bytes().to_vec();
    value.resize(value_len.max(tag.len()), b'.');
    for i in 0..records {
        builder.push(Record {
            timestamp_ms: i as i64,
            key: Some(tag.as_bytes()),
            value: Some(&value),
            headers: &[],
        });
    }
    CheckedBatch::new(builder.finish()).expect("a built batch is sound")
}

/// Child: three writer threads append groups as fast as the log allows and, once each group
/// is durable (a sync returned), print one line per batch: `ok <partition> <base offset>
/// <crc>`.
fn child_append(dir: &Path, seed: u64) -> ExitCode {
    let (log, _) = LmdbLog::open(dir, LogOptions::default()).expect("open");
    let log = Arc::new(log);
    let topic = match log.topic("crash").expect("topic") {
        Some(topic) => topic,
        None => log.create_topic("crash", 3, KEEP).expect("create"),
    };
    let stdout = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let threads: Vec<_> = (0..3u64)
        .map(|writer| {
            let (log, stdout, pids) = (log.clone(), stdout.clone(), topic.partitions.clone());
            std::thread::spawn(move || {
                let mut rng = SmallRng::seed_from_u64(seed * 31 + writer);
                for n in 0u64.. {
                    let mut group: Vec<Append> = (0..rng.random_range(1..4))
                        .map(|g| Append {
                            partition: pids[rng.random_range(0..pids.len())],
                            batch: batch(
                                &format!("{seed}-{writer}-{n}-{g}"),
                                rng.random_range(1..5),
                                rng.random_range(10..3000),
                            ),
                            dedup: None,
                        })
                        .collect();
                    let results = log.append(&mut group).expect("append");
                    // Durable once a sync (or a later append) returned: only then report.
                    log.sync().expect("sync");
                    let mut out = stdout.lock().expect("stdout");
                    for (append, result) in group.iter().zip(results) {
                        let appended = result.expect("valid batch");
                        let crc = u32::from_be_bytes(append.batch[17..21].try_into().expect("crc"));
                        writeln!(
                            out,
                            "ok {} {} {crc}",
                            append.partition.0, appended.base_offset
                        )
                        .expect("write");
                    }
                    out.flush().expect("flush");
                }
            })
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
    ExitCode::SUCCESS
}

fn kill_9_loses_no_acknowledged_append() -> Result<(), String> {
    let cycles: u64 = env_number("WEIR_LOG_CRASH_CYCLES").unwrap_or(100);
    let base_seed: u64 = env_number("WEIR_LOG_CRASH_SEED").unwrap_or(0x5eed);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut acked: Vec<(u32, i64, u32)> = Vec::new();
    for cycle in 0..cycles {
        let seed = base_seed + cycle;
        let fail = |why: String| {
            format!(
                "cycle {cycle}, seed {seed} (replay: WEIR_LOG_CRASH_SEED={seed} WEIR_LOG_CRASH_CYCLES=1): {why}"
            )
        };
        let mut rng = SmallRng::seed_from_u64(seed);
        let kill_after = rng.random_range(0..40usize);
        let mut child = Command::new(&exe)
            .args([
                "child-append",
                &dir.path().to_string_lossy(),
                &seed.to_string(),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| fail(e.to_string()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| fail("no stdout".into()))?;
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = 0usize;
        // Read acknowledgements until the chosen moment, then kill; lines already written
        // before the kill are acknowledgements too.
        while seen < kill_after {
            match lines.next() {
                Some(Ok(line)) => {
                    acked.push(parse_ack(&line).ok_or_else(|| fail(format!("bad line {line:?}")))?);
                    seen += 1;
                }
                _ => break,
            }
        }
        child.kill().map_err(|e| fail(e.to_string()))?;
        for line in lines.map_while(Result::ok) {
            acked.push(parse_ack(&line).ok_or_else(|| fail(format!("bad line {line:?}")))?);
        }
        let status = child.wait().map_err(|e| fail(e.to_string()))?;
        if status.code().is_some() {
            return Err(fail(format!("child exited on its own: {status}")));
        }
        check_acked(dir.path(), &acked).map_err(fail)?;
    }
    if acked.is_empty() {
        return Err("no append was ever acknowledged".into());
    }
    eprintln!(
        "crash test: {cycles} kill -9 cycles, {} acknowledged batches, 0 lost",
        acked.len()
    );
    Ok(())
}

fn parse_ack(line: &str) -> Option<(u32, i64, u32)> {
    let mut parts = line.strip_prefix("ok ")?.split(' ');
    Some((
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    ))
}

/// Reopens the log and checks every acknowledged batch is there, intact, at its offset, and
/// that every partition's offsets are contiguous.
fn check_acked(dir: &Path, acked: &[(u32, i64, u32)]) -> Result<(), String> {
    let (log, repairs) = LmdbLog::open(dir, LogOptions::default()).map_err(|e| e.to_string())?;
    if !repairs.is_empty() {
        return Err(format!("reopen needed repairs: {repairs:?}"));
    }
    for &(pid, base, crc) in acked {
        let mut found = None;
        log.read(PartitionId(pid), base, 1, &mut |bytes| {
            found = Some(validate(bytes).map(|h| (h.base_offset, h.crc)));
        })
        .map_err(|e| format!("read of acknowledged batch {pid}/{base}: {e}"))?;
        match found {
            Some(Ok((b, c))) if b == base && c == crc => {}
            other => {
                return Err(format!(
                    "acknowledged batch {pid}/{base} (crc {crc:#x}) lost or changed: {other:?}"
                ));
            }
        }
    }
    if let Some(topic) = log.topic("crash").map_err(|e| e.to_string())? {
        for pid in topic.partitions {
            let mut next = 0i64;
            let mut problem = None;
            log.read(pid, 0, usize::MAX, &mut |bytes| match validate(bytes) {
                Ok(h) if h.base_offset == next => next = h.next_offset(),
                other => problem = Some(format!("{pid:?} at {next}: {other:?}")),
            })
            .map_err(|e| e.to_string())?;
            if let Some(problem) = problem {
                return Err(format!("log not contiguous: {problem}"));
            }
        }
    }
    Ok(())
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

/// The tmpfs size for the disk-full test.
const TMPFS_BYTES: u64 = 4 << 20;
/// A file the child removes to give space back, as an operator would.
const BALLAST_BYTES: usize = 1 << 20;

fn a_full_disk_refuses_appends_and_recovers() -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mount = dir.path().join("small-disk");
    std::fs::create_dir(&mount).map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // A private mount namespace: the tmpfs disappears with the child and nothing leaks into
    // the machine's mount table. Unprivileged users get one through a user namespace.
    let mut unshare = Command::new("unshare");
    unshare.arg("--mount");
    if !is_root() {
        unshare.arg("--map-root-user");
    }
    let script = format!(
        "mount -t tmpfs -o size={TMPFS_BYTES} weir-test \"$1\" && exec \"$2\" child-disk-full \"$1\""
    );
    let output = unshare
        .args(["--", "sh", "-c", &script, "sh"])
        .arg(&mount)
        .arg(&exe)
        .output()
        .map_err(|e| format!("cannot run unshare (util-linux) for a private tmpfs: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        return Err(format!(
            "disk-full child failed ({}). A private tmpfs needs root or unprivileged user \
             namespaces (sysctl kernel.unprivileged_userns_clone=1). Output:\n{text}",
            output.status
        ));
    }
    if !text.contains("disk-full child: done") {
        return Err(format!("child did not finish:\n{text}"));
    }
    eprint!("{text}");
    Ok(())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}

/// Child: runs on a 4 MiB tmpfs. Phase 1 fills the disk with the reserve at 0, so LMDB's
/// commit fails (fatal); phase 2 frees the ballast file, reopens, finds every acknowledged
/// batch and appends again; phase 3 reopens with a reserve, which refuses appends (`Full`)
/// before the disk is full, deletes a topic and appends resume in the space it freed.
fn child_disk_full(mount: &Path) -> ExitCode {
    match disk_full_phases(mount) {
        Ok(()) => {
            println!("disk-full child: done");
            ExitCode::SUCCESS
        }
        Err(why) => {
            println!("disk-full child: {why}");
            ExitCode::FAILURE
        }
    }
}

fn disk_full_phases(mount: &Path) -> Result<(), String> {
    let ballast = mount.join("ballast");
    std::fs::write(&ballast, vec![1u8; BALLAST_BYTES]).map_err(|e| e.to_string())?;
    let data: PathBuf = mount.join("log");
    let raw = LogOptions {
        map_size_bytes: 64 << 20,
        disk_reserve_bytes: 0,
        ..LogOptions::default()
    };
    let mut acked: Vec<(u32, i64, u32)> = Vec::new();
    {
        let (log, _) = LmdbLog::open(&data, raw).map_err(|e| e.to_string())?;
        let keep = log
            .create_topic("keep", 1, KEEP)
            .map_err(|e| e.to_string())?
            .partitions[0];
        // Phase 1: with no reserve, the disk fills under a commit. The failed step cannot be
        // told apart from a failed sync, so it is fatal: the log refuses every write from
        // then on, and nothing more is acknowledged.
        let err = match fill(&log, keep, &mut acked) {
            Ok(full) => return Err(format!("phase 1 expected a fatal commit, got Full: {full}")),
            Err(fatal) => fatal,
        };
        if !err.contains("commit failed") {
            return Err(format!("phase 1 expected a failed commit, got: {err}"));
        }
        match append(&log, keep, 0) {
            Err(StoreError::Fatal(_)) => {}
            other => return Err(format!("a poisoned log accepted an append: {other:?}")),
        }
        println!("phase 1: {} batches acknowledged, then: {err}", acked.len());
    }
    {
        // Phase 2: the operator frees space and restarts; every acknowledged batch is there
        // and appends resume.
        std::fs::remove_file(&ballast).map_err(|e| e.to_string())?;
        let (log, repairs) = LmdbLog::open(&data, raw).map_err(|e| e.to_string())?;
        if !repairs.is_empty() {
            return Err(format!("repairs after a failed commit: {repairs:?}"));
        }
        check_acked_in(&log, &acked)?;
        let keep = log
            .topic("keep")
            .map_err(|e| e.to_string())?
            .ok_or("keep topic gone")?
            .partitions[0];
        let base = append(&log, keep, 1).map_err(|e| format!("after freeing space: {e}"))?;
        acked.push(base);
        println!(
            "phase 2: space freed, restarted, {} batches intact, append acknowledged at offset {}",
            acked.len() - 1,
            base.1
        );
    }
    {
        // Phase 3: with a reserve, appends stop early and a deletion still fits.
        let reserved = LogOptions {
            disk_reserve_bytes: 512 << 10,
            ..raw
        };
        let (log, repairs) = LmdbLog::open(&data, reserved).map_err(|e| e.to_string())?;
        if !repairs.is_empty() {
            return Err(format!("repairs after a full disk: {repairs:?}"));
        }
        let keep = log
            .topic("keep")
            .map_err(|e| e.to_string())?
            .ok_or("keep topic gone")?
            .partitions[0];
        let scratch = log
            .create_topic("scratch", 1, KEEP)
            .map_err(|e| e.to_string())?
            .partitions[0];
        let mut scratch_acked = Vec::new();
        let err = fill(&log, scratch, &mut scratch_acked).map_err(|e| format!("phase 3: {e}"))?;
        if !err.contains("storage.disk_reserve_bytes") {
            return Err(format!(
                "phase 3 expected the reserve to refuse, got: {err}"
            ));
        }
        log.delete_topic("scratch")
            .map_err(|e| format!("delete on a nearly full disk: {e}"))?;
        let base = append(&log, keep, 2).map_err(|e| format!("after deleting a topic: {e}"))?;
        acked.push(base);
        println!(
            "phase 3: reserve reached after {} batches; topic deleted; append resumed",
            scratch_acked.len()
        );
        check_acked_in(&log, &acked)?;
    }
    Ok(())
}

/// Appends 8 KiB batches to `pid` until the store refuses: `Ok` with a `Full` refusal, `Err`
/// with any other.
fn fill(
    log: &LmdbLog,
    pid: PartitionId,
    acked: &mut Vec<(u32, i64, u32)>,
) -> Result<String, String> {
    for n in 0..10_000u64 {
        match append(log, pid, n) {
            Ok(ack) => acked.push(ack),
            Err(StoreError::Full(why)) => return Ok(why),
            Err(other) => return Err(other.to_string()),
        }
        // Each acknowledgement follows a sync, as the server's writer does.
        log.sync().map_err(|e| e.to_string())?;
    }
    Err("the disk never filled".into())
}

fn append(log: &LmdbLog, pid: PartitionId, n: u64) -> Result<(u32, i64, u32), StoreError> {
    let mut group = [Append {
        partition: pid,
        batch: batch(&format!("fill-{n}"), 1, 8 << 10),
        dedup: None,
    }];
    let result = log
        .append(&mut group)?
        .remove(0)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let crc = u32::from_be_bytes(group[0].batch[17..21].try_into().unwrap_or_default());
    Ok((pid.0, result.base_offset, crc))
}

fn check_acked_in(log: &LmdbLog, acked: &[(u32, i64, u32)]) -> Result<(), String> {
    for &(pid, base, crc) in acked {
        let mut found = None;
        log.read(PartitionId(pid), base, 1, &mut |bytes| {
            found = validate(bytes).ok().map(|h| (h.base_offset, h.crc));
        })
        .map_err(|e| e.to_string())?;
        if found != Some((base, crc)) {
            return Err(format!("acknowledged batch {pid}/{base} lost: {found:?}"));
        }
    }
    Ok(())
}
