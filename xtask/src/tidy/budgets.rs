//! Length budgets and the clock rule, over the Rust files of the tree.
//!
//! - **Files**: the non-test code of a `.rs` file is at most [`FILE_LINES_MAX`] lines, unless
//!   `allowed.rs` lists it with its reason; no file passes its ceiling
//!   ([`file_lines_ceiling`]: 1,400 in `protocols/`, where one codec or state machine may be
//!   long, 1,000 everywhere else), listed or not.
//! - **Functions**: at most [`FUNCTION_LINES_MAX`] lines from `fn` to the closing brace
//!   (TigerBeetle's rule), unless `allowed.rs` lists it with its reason.
//! - **The clock**: `Instant::now`, `SystemTime::now` and `.elapsed()` appear in non-test code
//!   only in [`CLOCK_FILE`] and in tooling ([`CLOCK_TOOLING`]); everything else receives the
//!   time as an argument, so it can be driven with simulated time.
//!
//! Test code (`#[cfg(test)]` items, `tests.rs` files, anything under a `tests/` folder) is
//! bound by none of these. A listed exception that no longer exceeds its budget is itself a
//! problem, so the lists only shrink.

use std::path::{Path, PathBuf};

use super::allowed::{LongFile, LongFunction};
use super::source::{Function, code_only, functions, test_lines};

/// Lines of non-test code a file may hold without a listed reason.
pub(crate) const FILE_LINES_MAX: usize = 800;

/// Lines one function may span.
pub(crate) const FUNCTION_LINES_MAX: usize = 70;

/// The only file of the broker that reads the clock.
pub(crate) const CLOCK_FILE: &str = "broker/server/src/clock.rs";

/// Tooling, which may read the clock where it likes.
pub(crate) const CLOCK_TOOLING: &[&str] = &["tests/", "benches/", "xtask/", "iot-sim/"];

const CLOCK_READS: &[&str] = &["Instant::now", "SystemTime::now", ".elapsed()"];

/// The most lines of non-test code any file may hold, listed or not.
pub(crate) fn file_lines_ceiling(path: &str) -> usize {
    if path.starts_with("protocols/") {
        1400
    } else {
        1000
    }
}

/// What may exceed a budget, and why.
#[derive(Debug)]
pub(crate) struct Allowed {
    /// Files allowed past [`FILE_LINES_MAX`], never past their ceiling.
    pub(crate) files: &'static [LongFile],
    /// Functions allowed past [`FUNCTION_LINES_MAX`].
    pub(crate) functions: &'static [LongFunction],
}

/// The tree's listed exceptions (in `allowed.rs`).
pub(crate) const ALLOWED: Allowed = Allowed {
    files: super::allowed::LONG_FILES,
    functions: super::allowed::LONG_FUNCTIONS,
};

/// Nothing allowed: what the rules' own tests check against.
#[cfg(test)]
pub(crate) const NONE: Allowed = Allowed {
    files: &[],
    functions: &[],
};

/// One Rust file of the tree: its path from the root and its text.
pub(crate) struct RustFile {
    pub(crate) path: String,
    pub(crate) text: String,
}

/// Every `.rs` file under `root`, but build outputs, `.git` and `node_modules`.
pub(crate) fn rust_files(root: &Path) -> anyhow::Result<Vec<RustFile>> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_dir() {
                if !["target", ".git", "node_modules"].contains(&name) {
                    stack.push(path);
                }
                continue;
            }
            if path.extension().is_some_and(|ext| ext == "rs") {
                files.push(RustFile {
                    path: relative(root, &path),
                    text: std::fs::read_to_string(&path)?,
                });
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

fn relative(root: &Path, path: &Path) -> String {
    let rel: PathBuf = path.strip_prefix(root).unwrap_or(path).to_path_buf();
    rel.to_string_lossy().replace('\\', "/")
}

/// Whether the whole file is test code.
pub(crate) fn is_test_file(path: &str) -> bool {
    path.starts_with("tests/") || path.contains("/tests/") || path.ends_with("/tests.rs")
}

/// The problems of every budget and the clock rule over `files`.
pub(crate) fn check(files: &[RustFile], allowed: &Allowed) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen = Seen::default();
    for file in files.iter().filter(|f| !is_test_file(&f.path)) {
        let code = code_only(&file.text);
        let test = test_lines(&code);
        let is_code = |n: usize| !test.get(n).copied().unwrap_or(false);
        let lines: Vec<(usize, &str)> = (code.lines().enumerate())
            .filter(|(n, _)| is_code(*n))
            .collect();
        check_file_length(&file.path, lines.len(), allowed, &mut seen, &mut problems);
        for function in functions(&code).iter().filter(|f| is_code(f.first - 1)) {
            check_function(&file.path, function, allowed, &mut seen, &mut problems);
        }
        check_clock(&file.path, &lines, &mut problems);
    }
    check_stale(allowed, &seen, &mut problems);
    problems
}

/// The listed exceptions that were needed.
#[derive(Debug, Default)]
struct Seen {
    files: Vec<String>,
    functions: Vec<(String, String)>,
}

fn check_file_length(
    path: &str,
    code_lines: usize,
    allowed: &Allowed,
    seen: &mut Seen,
    problems: &mut Vec<String>,
) {
    let ceiling = file_lines_ceiling(path);
    let listed = allowed.files.iter().any(|l| l.path == path);
    let fits = code_lines <= ceiling && (code_lines <= FILE_LINES_MAX || listed);
    if fits && code_lines > FILE_LINES_MAX {
        seen.files.push(path.to_owned());
    } else if !fits && code_lines > ceiling {
        problems.push(format!(
            "{path}: {code_lines} lines of non-test code, past the ceiling of {ceiling} that no \
             listed reason lifts: split it along its seams"
        ));
    } else if !fits {
        problems.push(format!(
            "{path}: {code_lines} lines of non-test code, over {FILE_LINES_MAX}: split it, or \
             list it in LONG_FILES (xtask/src/tidy/allowed.rs) with the reason"
        ));
    }
}

fn check_function(
    path: &str,
    function: &Function,
    allowed: &Allowed,
    seen: &mut Seen,
    problems: &mut Vec<String>,
) {
    if function.lines <= FUNCTION_LINES_MAX {
        return;
    }
    let listed = (allowed.functions.iter()).any(|l| l.path == path && l.name == function.name);
    if listed {
        seen.functions
            .push((path.to_owned(), function.name.clone()));
    } else {
        problems.push(format!(
            "{path}:{}: fn {} is {} lines, over {FUNCTION_LINES_MAX}: split it, or list it in \
             LONG_FUNCTIONS (xtask/src/tidy/allowed.rs) with the reason",
            function.first, function.name, function.lines
        ));
    }
}

fn check_clock(path: &str, lines: &[(usize, &str)], problems: &mut Vec<String>) {
    let tooling = CLOCK_TOOLING.iter().any(|t| path.starts_with(t));
    if path == CLOCK_FILE || tooling || path.starts_with("plugins/") {
        return;
    }
    for (n, line) in lines {
        if let Some(read) = CLOCK_READS.iter().find(|read| line.contains(*read)) {
            problems.push(format!(
                "{path}:{}: `{read}` outside {CLOCK_FILE}: take the time as an argument, or \
                 ask the server's clock",
                n + 1
            ));
        }
    }
}

/// A listed exception that is no longer needed is a problem too, so the lists only shrink.
fn check_stale(allowed: &Allowed, seen: &Seen, problems: &mut Vec<String>) {
    let files = allowed.files.iter();
    let unexplained = (files.clone().map(|l| (l.path, l.why)))
        .chain(allowed.functions.iter().map(|l| (l.path, l.why)))
        .filter(|(_, why)| why.trim().is_empty());
    for (path, _) in unexplained {
        problems.push(format!(
            "{path}: listed without a reason: say why it may be long"
        ));
    }
    for listed in files {
        if !seen.files.iter().any(|f| f == listed.path) {
            problems.push(format!(
                "{}: listed as a long file but no longer past its budget (or gone): remove it \
                 from the list",
                listed.path
            ));
        }
    }
    for listed in allowed.functions {
        let needed =
            (seen.functions.iter()).any(|(path, name)| path == listed.path && name == listed.name);
        if !needed {
            problems.push(format!(
                "{}: fn {} is listed in LONG_FUNCTIONS but within {FUNCTION_LINES_MAX} lines (or \
                 gone): remove it from the list",
                listed.path, listed.name
            ));
        }
    }
}
