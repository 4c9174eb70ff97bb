//! Running commands and the other small helpers every task of xtask uses.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// True under CI (`CI=true`), where the run may install packages and must use the lock file.
pub(crate) fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Runs `cargo <args>`, with `flag` (e.g. `--locked`) placed right after the subcommand so
/// it never lands behind a `--`.
pub(crate) fn cargo(args: &[&str], flag: Option<&str>) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(&cargo);
    if let Some((subcommand, rest)) = args.split_first() {
        command.arg(subcommand);
        command.args(flag);
        command.args(rest);
    }
    run(&mut command)
}

/// Runs `command`, failing unless it exits successfully.
pub(crate) fn run(command: &mut Command) -> anyhow::Result<()> {
    let shown = format!("{command:?}");
    let status = command
        .status()
        .with_context(|| format!("cannot run {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

/// Announces the next step on standard error.
pub(crate) fn step(name: &str) {
    eprintln!("\n==> xtask: {name}");
}

/// The workspace's root folder.
pub(crate) fn workspace_root() -> PathBuf {
    // xtask/ lives one level under the root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from("."))
}
