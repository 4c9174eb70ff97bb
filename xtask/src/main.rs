//! `cargo xtask`: the project's automation, in Rust so it runs wherever cargo does.
//!
//! - `cargo xtask test`: the README's test command and what CI runs. Checks (and, when it
//!   may, installs) what the tests need, runs the tidy checks, builds once, runs every test.
//! - `cargo xtask tidy`: formatting, clippy with warnings denied, the dependency direction, the
//!   clock rule, the length budgets and no import circles (see `tidy.rs`).
//! - `cargo xtask doctor`: every prerequisite of the tests, where it comes from, and whether it
//!   is present; fails when one is missing. Installs nothing.
//! - `cargo xtask prereqs`: the same check, then installs what is missing (as root or under CI).
//! - `cargo xtask plugins`: builds the plugins in `plugins/` (Rust, C, JavaScript) to
//!   components in `plugins/target/wasm`, which the tests load.
//! - `cargo xtask bench [log|server|mqtt|kafka|plugins|tls|suite]`: the benchmarks (release builds), never part of `test`.
//! - `cargo xtask fuzz [target] [-- seconds]`: the `cargo fuzz` targets in `tests/fuzz`
//!   (nightly), each for a time, allocations capped; `test` only checks that they build.

mod plugins;
mod prereqs;
mod shell;
mod tidy;

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

use shell::{cargo, ci, run, step, workspace_root};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    std::env::set_current_dir(&root)?;
    match args.first().map(String::as_str) {
        Some("test") => test(&root, &args[1..]),
        Some("tidy") => tidy_all(&root),
        Some("doctor") => {
            if !prereqs::doctor(&prereqs::requirements()) {
                std::process::exit(1);
            }
            Ok(())
        }
        Some("prereqs") => prereqs::ensure(&prereqs::requirements()),
        Some("plugins") => plugins::build(&root),
        Some("bench") => bench(&args[1..]),
        Some("fuzz") => fuzz(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n\
                 commands:\n  \
                 test [-- <cargo test args>]  install what tests need, tidy, build, run all tests\n  \
                 tidy                         fmt, clippy -D warnings, dependencies, clock, lengths, circles\n  \
                 doctor                       list test prerequisites, where each comes from, what is missing\n  \
                 prereqs                      check (and when allowed, install) test prerequisites\n  \
                 plugins                      build every plugin in plugins/ to plugins/target/wasm\n  \
                 bench [log|server|mqtt|kafka|plugins|tls|suite] [-- <args>] benchmarks with same-run baselines (release build)\n  \
                 fuzz [target] [-- <seconds>] cargo fuzz targets in tests/fuzz (nightly; 600 s each)"
            );
            std::process::exit(2);
        }
    }
}

/// The README's test command.
fn test(root: &Path, extra: &[String]) -> anyhow::Result<()> {
    step("prerequisites");
    prereqs::ensure(&prereqs::requirements())?;
    tidy_all(root)?;
    plugins::build(root)?;
    let locked = ci().then_some("--locked");
    step("build (one build, shared by every test)");
    cargo(&["build", "--workspace", "--all-targets"], locked)?;
    step("fuzz targets build (run them with `cargo xtask fuzz`)");
    cargo(
        &[
            "check",
            "--manifest-path",
            "tests/fuzz/Cargo.toml",
            "--target-dir",
            "target/fuzz-check",
        ],
        locked,
    )?;
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let pass_through = extra.strip_prefix(&["--"]).unwrap_or(&extra);
    step("tests (every crate but the integration suite)");
    let mut args = vec![
        "test",
        "--workspace",
        "--exclude",
        "weir-tests",
        "--no-fail-fast",
    ];
    if !pass_through.is_empty() {
        args.push("--");
        args.extend_from_slice(pass_through);
    }
    cargo(&args, locked)?;
    integration_suite(root, locked, pass_through)?;
    step("librdkafka's own test suite, allow-listed tests (tests/compat/librdkafka_allow.txt)");
    cargo(
        &[
            "test",
            "-p",
            "weir-tests",
            "--test",
            "librdkafka_suite",
            "--",
            "--nocapture",
        ],
        locked,
    )?;
    step("all tests passed");
    Ok(())
}

/// The integration suite, once per event-loop backend this machine has.
fn integration_suite(
    root: &Path,
    locked: Option<&str>,
    pass_through: &[&str],
) -> anyhow::Result<()> {
    let mut backends = vec!["epoll"];
    match uring_available(root) {
        Ok(()) => backends.insert(0, "uring"),
        Err(why) if ci() => bail!("io_uring must work on CI machines, but: {why}"),
        Err(why) => {
            eprintln!("io_uring is not available here ({why}): the suite runs on epoll only")
        }
    }
    for backend in backends {
        step(&format!("integration suite, server.io = {backend}"));
        let mut command =
            Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
        command.args([
            "test",
            "-p",
            "weir-tests",
            "--lib",
            "--test",
            "it",
            "--no-fail-fast",
        ]);
        command.args(locked);
        if !pass_through.is_empty() {
            command.arg("--").args(pass_through);
        }
        command.env("TEST_IO_BACKEND", backend);
        run(&mut command)?;
    }
    Ok(())
}

/// The fuzz targets, in `tests/fuzz` (a crate of its own, outside the workspace).
const FUZZ_TARGETS: [&str; 4] = [
    "kafka_request",
    "record_batch",
    "mqtt_packet",
    "mqtt_session",
];

/// Runs the fuzz targets (all, or the one named) for a time each, with nightly and
/// `cargo fuzz`, allocations capped so a decoder that trusts a wire count is caught.
fn fuzz(args: &[String]) -> anyhow::Result<()> {
    let (which, extra) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &[][..]),
    };
    let seconds = extra.first().map_or("600", String::as_str);
    for target in FUZZ_TARGETS {
        if !which.is_empty() && !which.iter().any(|w| w == target) {
            continue;
        }
        step(&format!("fuzz: {target} for {seconds} s"));
        let mut command = Command::new("cargo");
        command.current_dir("tests/fuzz").args([
            "+nightly",
            "fuzz",
            "run",
            "-O",
            target,
            "--",
            &format!("-max_total_time={seconds}"),
            "-rss_limit_mb=1024",
            "-malloc_limit_mb=256",
            "-max_len=70000",
        ]);
        run(&mut command).context("cargo fuzz needs nightly and `cargo install cargo-fuzz`")?;
    }
    Ok(())
}

/// The benchmark suite: release builds, never part of `test`. Figures are printed as
/// Markdown tables for benches/README.md and issue notes.
fn bench(args: &[String]) -> anyhow::Result<()> {
    let (which, extra) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &[][..]),
    };
    let all = which.is_empty();
    if all || which.iter().any(|w| w == "log") {
        step("bench: log crash test, 1,000 kill -9 cycles");
        let mut crash = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
        crash
            .args([
                "test",
                "--release",
                "-p",
                "weir-log",
                "--test",
                "durability",
                "--",
                "kill_9",
            ])
            .env("WEIR_LOG_CRASH_CYCLES", "1000");
        run(&mut crash)?;
        step("bench: log throughput against the raw disk");
        let mut args = vec!["run", "--release", "-p", "weir-bench", "--", "log"];
        args.extend(extra.iter().map(String::as_str));
        cargo(&args, None)?;
    }
    let process_benches = [
        ("server", "the weir process on io_uring and on epoll"),
        (
            "mqtt",
            "MQTT through the weir process and through Mosquitto",
        ),
        (
            "kafka",
            "librdkafka producing and consuming through the weir process",
        ),
        (
            "plugins",
            "plugin call cost, start-up, and MQTT with a plugin against none",
        ),
        (
            "tls",
            "MQTT and Kafka over TLS beside plaintext, handshakes, memory per idle TLS connection",
        ),
    ];
    for (name, what) in process_benches {
        if !(all || which.iter().any(|w| w == name)) {
            continue;
        }
        step(&format!("bench: {what}"));
        if name == "plugins" || name == "suite" {
            plugins::build(&workspace_root())?;
        }
        cargo(
            &["build", "--release", "-p", "weir", "-p", "weir-bench"],
            None,
        )?;
        let mut args = vec!["run", "--release", "-p", "weir-bench", "--", name];
        args.extend(extra.iter().map(String::as_str));
        cargo(&args, None)?;
    }
    Ok(())
}

fn tidy_all(root: &Path) -> anyhow::Result<()> {
    step("tidy: cargo fmt --check");
    cargo(&["fmt", "--all", "--", "--check"], None)
        .context("formatting differs: run `cargo fmt --all`")?;
    step("tidy: clippy, warnings denied");
    cargo(
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        ci().then_some("--locked"),
    )?;
    step("tidy: dependency direction, clock rule, length budgets and import circles");
    let problems = tidy::check_workspace(root)?;
    if !problems.is_empty() {
        for problem in &problems {
            eprintln!("tidy: {problem}");
        }
        bail!("{} tidy problem(s)", problems.len());
    }
    Ok(())
}

/// Asks the freshly built broker whether io_uring works on this machine.
fn uring_available(root: &Path) -> Result<(), String> {
    let weir = root.join("target/debug/weir");
    let output = Command::new(&weir)
        .arg("io-probe")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", weir.display()))?;
    let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if output.status.success() {
        Ok(())
    } else {
        Err(text)
    }
}
