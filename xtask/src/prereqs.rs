//! What the test suite needs beyond cargo, where each thing comes from, and how to get it.
//!
//! Every prerequisite has a [`Source`], and the source decides how its presence is checked,
//! so that a tool someone left on the machine by hand never passes for one the test command
//! installs:
//!
//! - **Debian packages** are checked by the package (`dpkg-query -W -f='${Status}'` must say
//!   `install ok installed`), plus, where it matters, a probe that the tool it brings works.
//! - **PyPI packages** by importing the module with the `python3` the tests run and asking
//!   `importlib.metadata` for the installed version, which must be the pinned one.
//! - **npm packages** by importing them with Node.js from the folder the test command installs
//!   them into, and reading their `package.json` there for the pinned version (the one given
//!   here, or the one a `package-lock.json` beside a build script pins).
//! - **rustup components** by the command they add.
//! - **What the machine kind ships outside Debian** (rustup's Rust toolchain, Node.js with its
//!   npm from Node's own packages, pyenv's Python) by command and version: the test command
//!   never installs those; `cargo xtask doctor` says which version it found and which it needs.
//!
//! `cargo xtask doctor` prints the whole table and fails when anything is missing;
//! `cargo xtask test` runs the same check first and installs what is missing when it may
//! (as root, or under `CI=true`), then checks again. Each tool a test needs is registered in
//! [`requirements`], so the README's one test command keeps working on a fresh machine.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::bail;

mod list;

use list::{NPM_PREFIX, TOOLS_DIR};
pub(crate) use list::{Requirement, Source, requirements};

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finding {
    /// Whether the requirement is met.
    pub(crate) present: bool,
    /// What was found: a version, or why it does not count.
    pub(crate) detail: String,
}

impl Finding {
    fn yes(detail: impl Into<String>) -> Self {
        Self {
            present: true,
            detail: detail.into(),
        }
    }

    fn no(detail: impl Into<String>) -> Self {
        Self {
            present: false,
            detail: detail.into(),
        }
    }
}

/// `cargo xtask doctor`: prints the table of every prerequisite; false when one is missing.
pub(crate) fn doctor(requirements: &[Requirement]) -> bool {
    let findings: Vec<Finding> = requirements.iter().map(check).collect();
    println!("{}", table(requirements, &findings));
    let missing = findings.iter().filter(|f| !f.present).count();
    if missing > 0 {
        eprintln!(
            "{missing} of {} prerequisites missing: `cargo xtask prereqs` (as root or with \
             CI=true) installs them; `cargo xtask test` does so first",
            requirements.len()
        );
        return false;
    }
    println!("all {} prerequisites present", requirements.len());
    true
}

/// Checks every requirement and prints the table; installs the missing ones when allowed
/// and checks again, otherwise fails with the list of what is missing and how to get it.
pub(crate) fn ensure(requirements: &[Requirement]) -> anyhow::Result<()> {
    let findings: Vec<Finding> = requirements.iter().map(check).collect();
    println!("{}", table(requirements, &findings));
    let missing: Vec<Requirement> = (requirements.iter().zip(&findings))
        .filter(|(_, f)| !f.present)
        .map(|(r, _)| *r)
        .collect();
    if missing.is_empty() {
        eprintln!("all {} prerequisites present", requirements.len());
        return Ok(());
    }
    match plan(&missing, requirements, may_install()) {
        Plan::Report(text) => bail!("{text}"),
        Plan::Install(commands) => {
            for command in &commands {
                eprintln!("installing: {}", command.words.join(" "));
                let mut process = Command::new(&command.words[0]);
                process.args(&command.words[1..]);
                if let Some(dir) = command.dir {
                    process.current_dir(dir);
                }
                let status = process.status()?;
                if !status.success() {
                    bail!("`{}` failed with {status}", command.words.join(" "));
                }
            }
            let still: Vec<String> = missing
                .iter()
                .filter_map(|r| {
                    let found = check(r);
                    (!found.present).then(|| format!("{} ({})", r.what, found.detail))
                })
                .collect();
            if !still.is_empty() {
                bail!("still missing after installing: {}", still.join(", "));
            }
            Ok(())
        }
    }
}

/// The prerequisites as a Markdown table: what, where from, found, needed by.
pub(crate) fn table(requirements: &[Requirement], findings: &[Finding]) -> String {
    let mut text = String::from(
        "| prerequisite | comes from | present | needed by |\n| --- | --- | --- | --- |\n",
    );
    for (r, f) in requirements.iter().zip(findings) {
        let mark = if f.present { "yes" } else { "MISSING" };
        text.push_str(&format!(
            "| {} | {} | {mark}: {} | {} |\n",
            r.what,
            origin(r.source),
            f.detail,
            r.needed_by
        ));
    }
    text
}

/// Where a source's things come from, in words.
fn origin(source: Source) -> String {
    match source {
        Source::Machine { at_least, .. } => {
            format!("the machine, outside Debian (>= {at_least}; not installed by xtask)")
        }
        Source::RustupComponent { name, .. } => format!("rustup component {name}"),
        Source::Debian { packages, .. } => format!("Debian: {}", packages.join(" ")),
        Source::Pip {
            package, version, ..
        } => format!("PyPI: {package}=={version}"),
        Source::Npm { package, version } => format!("npm: {package}@{version} in {NPM_PREFIX}"),
        Source::NpmLocked { dir, package } => format!("npm: {package}, npm ci in {dir}"),
        Source::DebianUnpacked { package, .. } => {
            format!("Debian: {package}, unpacked into {TOOLS_DIR}/{package} (not installed)")
        }
    }
}

/// What to do about missing requirements.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Commands to run, in order.
    Install(Vec<Install>),
    /// A message listing what is missing and how to install it.
    Report(String),
}

/// One install command, and the folder it runs in when not the workspace root.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Install {
    pub(crate) words: Vec<String>,
    pub(crate) dir: Option<&'static str>,
}

/// Groups the missing requirements into as few install commands as possible, or, when
/// installing is not allowed (or a missing tool is the machine's), explains them. `all` is
/// every requirement (see [`Wanted::of`]).
pub(crate) fn plan(missing: &[Requirement], all: &[Requirement], may_install: bool) -> Plan {
    let wanted = Wanted::of(missing, all);
    let owned = |words: &[&str]| words.iter().map(|w| (*w).to_owned()).collect::<Vec<_>>();
    let with = |words: &[&str], names: &[String]| Install {
        words: owned(words)
            .into_iter()
            .chain(names.iter().cloned())
            .collect(),
        dir: None,
    };
    let mut commands: Vec<Install> = Vec::new();
    if !wanted.debian.is_empty() {
        commands.push(with(&["apt-get", "update", "-q"], &[]));
        let install = ["apt-get", "install", "-y", "-q", "--no-install-recommends"];
        commands.push(with(&install, &wanted.debian));
    }
    if !wanted.pip.is_empty() {
        commands.push(with(
            &["python3", "-m", "pip", "install", "-q"],
            &wanted.pip,
        ));
    }
    if !wanted.rustup.is_empty() {
        commands.push(with(&["rustup", "component", "add"], &wanted.rustup));
    }
    if !wanted.npm.is_empty() {
        // Local to the scenarios, so nothing outside the checkout changes.
        let install = ["npm", "install", "--prefix", NPM_PREFIX, "--no-save"];
        commands.push(with(&install, &wanted.npm));
    }
    for package in &wanted.unpacked {
        // Unpacked where the tests look, so no package's scripts run and no service starts.
        let script = format!(
            "set -e; d=$(mktemp -d); (cd \"$d\" && apt-get download -q -o APT::Sandbox::User=root {package}); \
             rm -rf {TOOLS_DIR}/{package}; mkdir -p {TOOLS_DIR}; \
             dpkg-deb -x \"$d\"/{package}_*.deb {TOOLS_DIR}/{package}; rm -rf \"$d\""
        );
        commands.push(with(&["sh", "-c", &script], &[]));
    }
    for dir in wanted.npm_locked {
        commands.push(Install {
            words: owned(&["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"]),
            dir: Some(dir),
        });
    }
    if may_install && wanted.machine.is_empty() {
        return Plan::Install(commands);
    }
    Plan::Report(report(missing, &wanted.machine, &commands, may_install))
}

/// The names to install, by source, for a set of missing requirements.
#[derive(Debug, Default)]
struct Wanted<'a> {
    debian: Vec<String>,
    pip: Vec<String>,
    rustup: Vec<String>,
    npm: Vec<String>,
    npm_locked: Vec<&'static str>,
    unpacked: Vec<&'static str>,
    machine: Vec<&'a Requirement>,
}

impl<'a> Wanted<'a> {
    /// `all` is every requirement: `npm install --no-save` removes from `node_modules` the
    /// packages it is not given, so when one npm package is missing, all are named.
    fn of(missing: &'a [Requirement], all: &[Requirement]) -> Self {
        let mut wanted = Wanted::default();
        let any_npm = missing
            .iter()
            .any(|r| matches!(r.source, Source::Npm { .. }));
        for r in missing {
            match r.source {
                Source::Debian { packages, .. } => {
                    wanted
                        .debian
                        .extend(packages.iter().map(|p| (*p).to_owned()));
                }
                Source::Pip {
                    package, version, ..
                } => wanted.pip.push(format!("{package}=={version}")),
                Source::RustupComponent { name, .. } => wanted.rustup.push(name.to_owned()),
                Source::NpmLocked { dir, .. } => wanted.npm_locked.push(dir),
                Source::DebianUnpacked { package, .. } => wanted.unpacked.push(package),
                Source::Machine { .. } => wanted.machine.push(r),
                Source::Npm { .. } => {}
            }
        }
        if any_npm {
            for r in all {
                if let Source::Npm { package, version } = r.source {
                    wanted.npm.push(format!("{package}@{version}"));
                }
            }
        }
        for names in [
            &mut wanted.debian,
            &mut wanted.pip,
            &mut wanted.rustup,
            &mut wanted.npm,
        ] {
            dedup_keeping_order(names);
        }
        dedup_keeping_order(&mut wanted.npm_locked);
        dedup_keeping_order(&mut wanted.unpacked);
        wanted
    }
}

fn dedup_keeping_order<T: PartialEq + Clone>(names: &mut Vec<T>) {
    let mut kept: Vec<T> = Vec::with_capacity(names.len());
    for name in names.drain(..) {
        if !kept.contains(&name) {
            kept.push(name);
        }
    }
    *names = kept;
}

/// The message for missing requirements that will not be installed now.
fn report(
    missing: &[Requirement],
    machine: &[&Requirement],
    commands: &[Install],
    may_install: bool,
) -> String {
    let mut text = String::from("missing test prerequisites:\n");
    for r in missing {
        text.push_str(&format!("  - {} (for {})\n", r.what, r.needed_by));
    }
    for r in machine {
        text.push_str(&format!(
            "{} comes with the machine, not from the test command: install it ({}) and rerun\n",
            r.what,
            origin(r.source)
        ));
    }
    if !may_install && !commands.is_empty() {
        text.push_str(
            "install the rest with the commands below (as root), or rerun as root or with \
             CI=true to let `cargo xtask test` install them:\n",
        );
    }
    for command in commands {
        let at = command
            .dir
            .map(|d| format!("(cd {d} && "))
            .unwrap_or_default();
        let close = if command.dir.is_some() { ")" } else { "" };
        text.push_str(&format!("  {at}{}{close}\n", command.words.join(" ")));
    }
    text
}

/// Checks one requirement the way its source says.
pub(crate) fn check(requirement: &Requirement) -> Finding {
    match requirement.source {
        Source::Machine { version, at_least } => check_version(version, at_least),
        Source::RustupComponent { probe, .. } => match output(probe) {
            Some(text) => Finding::yes(first_line(&text)),
            None => Finding::no(format!("`{}` fails", probe.join(" "))),
        },
        Source::Debian { packages, probe } => check_debian(packages, probe),
        Source::Pip {
            package,
            version,
            module,
        } => check_pip(package, version, module),
        Source::Npm { package, version } => check_npm(Path::new(NPM_PREFIX), package, version),
        Source::NpmLocked { dir, package } => match locked_version(Path::new(dir), package) {
            Ok(version) => check_npm(Path::new(dir), package, &version),
            Err(why) => Finding::no(why),
        },
        Source::DebianUnpacked { package, probe } => match output(probe) {
            Some(_) => Finding::yes(format!("{TOOLS_DIR}/{package}")),
            None => Finding::no(format!("not unpacked in {TOOLS_DIR}/{package}")),
        },
    }
}

fn check_version(command: &[&str], at_least: &str) -> Finding {
    let Some(text) = output(command) else {
        return Finding::no(format!("`{}` fails", command.join(" ")));
    };
    match version_in(&text) {
        Some(found) if version_at_least(&found, at_least) => Finding::yes(found),
        Some(found) => Finding::no(format!("{found}, older than {at_least}")),
        None => Finding::no(format!("no version in `{}`", first_line(&text))),
    }
}

fn check_debian(packages: &[&str], probe: Option<&[&str]>) -> Finding {
    let mut versions = Vec::new();
    for package in packages {
        let status = output(&["dpkg-query", "-W", "-f=${Status}\t${Version}", package]);
        match status.as_deref().and_then(installed_version) {
            Some(version) => versions.push(format!("{package} {version}")),
            None => return Finding::no(format!("package {package} is not installed")),
        }
    }
    if let Some(probe) = probe
        && output(probe).is_none()
    {
        return Finding::no(format!("installed, but `{}` fails", probe.join(" ")));
    }
    Finding::yes(versions.join(", "))
}

/// The version in dpkg-query's `${Status}\t${Version}` output when the package is installed
/// (not merely known, removed with its configuration left, or half-installed).
pub(crate) fn installed_version(status: &str) -> Option<&str> {
    let (status, version) = status.split_once('\t')?;
    (status.trim() == "install ok installed").then_some(version.trim())
}

fn check_pip(package: &str, version: &str, module: &str) -> Finding {
    let script = format!(
        "import importlib.metadata, {module}; print(importlib.metadata.version('{package}'))"
    );
    match output(&["python3", "-c", &script]) {
        Some(found) if found.trim() == version => Finding::yes(found.trim().to_owned()),
        Some(found) => Finding::no(format!("{} installed, {version} pinned", found.trim())),
        None => Finding::no(format!("python3 cannot import {module}")),
    }
}

/// Imports `package` with Node from `dir` (as the scenarios and build scripts do) and reads
/// its version from the `package.json` there.
fn check_npm(dir: &Path, package: &str, version: &str) -> Finding {
    let manifest = dir.join("node_modules").join(package).join("package.json");
    let found = std::fs::read_to_string(&manifest)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|json| json["version"].as_str().map(str::to_owned));
    let Some(found) = found else {
        return Finding::no(format!("not installed in {}", dir.display()));
    };
    if found != version {
        return Finding::no(format!("{found} installed, {version} pinned"));
    }
    let script = format!("await import({package:?})");
    let imports = Command::new("node")
        .args(["--input-type=module", "-e", &script])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if imports {
        Finding::yes(found)
    } else {
        Finding::no(format!("{found} installed, but node cannot import it"))
    }
}

/// The version of `package` that the `package-lock.json` in `dir` pins.
fn locked_version(dir: &Path, package: &str) -> Result<String, String> {
    let lock = dir.join("package-lock.json");
    let text = std::fs::read_to_string(&lock).map_err(|e| format!("{}: {e}", lock.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", lock.display()))?;
    json["packages"][format!("node_modules/{package}")]["version"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("{} pins no {package}", lock.display()))
}

/// The first thing in `text` that looks like a version (`v20.1.0`, `1.95.0`, `3.11.7`).
pub(crate) fn version_in(text: &str) -> Option<String> {
    text.split_whitespace()
        .map(|word| word.trim_start_matches('v'))
        .find(|word| {
            word.split('.').count() >= 2
                && word
                    .split('.')
                    .all(|p| p.chars().all(|c| c.is_ascii_digit()) && !p.is_empty())
        })
        .map(str::to_owned)
}

/// Compares dotted numeric versions part by part (`1.95.0` >= `1.95`).
pub(crate) fn version_at_least(found: &str, wanted: &str) -> bool {
    let parts = |v: &str| -> Vec<u64> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    let (found, wanted) = (parts(found), parts(wanted));
    for (i, want) in wanted.iter().enumerate() {
        let have = found.get(i).copied().unwrap_or(0);
        if have != *want {
            return have > *want;
        }
    }
    true
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").trim().to_owned()
}

/// The command's standard output when it runs and succeeds.
fn output(command: &[&str]) -> Option<String> {
    let (program, args) = command.split_first()?;
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Installing is allowed as root or under CI.
fn may_install() -> bool {
    crate::shell::ci() || effective_uid() == Some(0)
}

fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(test)]
mod tests;
