//! Tidy checks that keep the architecture honest, run by `cargo xtask tidy` and as unit tests
//! (so plain `cargo test` catches a violation too).
//!
//! 1. **Dependency direction** (from `cargo metadata`): every workspace crate has a rule
//!    naming the workspace crates it may depend on and the external crates that must not be in
//!    its dependency closure. Protocol crates depend on no workspace crate and on nothing that
//!    does I/O or async (tokio, mio, heed, wasmtime, io-uring, hyper, socket2). A workspace
//!    crate without a rule is itself a violation: add it here and to ARCHITECTURE.md.
//! 2. **Length budgets and the clock rule** ([`budgets`]): files and functions within their
//!    line budgets or listed with a reason; the clock read only in the server's `clock.rs`
//!    and in tooling. Everything else gets time as an argument, so it can be tested with
//!    simulated time.
//! 3. **No import circles** ([`layers`]): within a crate, the files form layers; no file
//!    imports (by `use` or by a `crate::`, `super::`, `self::` or bare child-module path) one
//!    that imports it back, directly or around a longer circle.

mod allowed;
mod budgets;
mod layers;
mod source;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use anyhow::Context;
use serde_json::Value;

/// External crates that do I/O, async, storage or Wasm execution.
const IO_CRATES: &[&str] = &[
    "tokio",
    "mio",
    "async-std",
    "smol",
    "heed",
    "lmdb-master-sys",
    "wasmtime",
    "io-uring",
    "hyper",
    "socket2",
];

/// What one workspace crate may depend on.
struct Rule {
    krate: &'static str,
    /// Workspace crates allowed as normal dependencies.
    may_use: &'static [&'static str],
    /// External crates that must not appear anywhere in its normal dependency closure.
    forbidden: &'static [&'static str],
}

/// The rules; ARCHITECTURE.md states the same in prose.
const RULES: &[Rule] = &[
    Rule {
        krate: "weir-mqtt",
        may_use: &[],
        forbidden: IO_CRATES,
    },
    Rule {
        krate: "weir-kafka",
        may_use: &[],
        forbidden: IO_CRATES,
    },
    Rule {
        krate: "weir-plugin-sdk",
        may_use: &[],
        forbidden: IO_CRATES,
    },
    Rule {
        krate: "weir-core",
        may_use: &["weir-mqtt", "weir-kafka", "weir-plugin-sdk"],
        forbidden: IO_CRATES,
    },
    Rule {
        krate: "weir-log",
        may_use: &["weir-core", "weir-kafka"],
        forbidden: &["tokio", "mio", "wasmtime", "io-uring", "hyper"],
    },
    Rule {
        krate: "weir-plugin-host",
        may_use: &["weir-core", "weir-plugin-sdk"],
        forbidden: &[
            "tokio",
            "mio",
            "heed",
            "lmdb-master-sys",
            "io-uring",
            "hyper",
        ],
    },
    Rule {
        krate: "iot-sim",
        may_use: &["weir-mqtt"],
        forbidden: &["heed", "wasmtime"],
    },
    // The server wires everything together; tooling may use anything.
    Rule {
        krate: "weir",
        may_use: &["*"],
        forbidden: &[],
    },
    Rule {
        krate: "weir-tests",
        may_use: &["*"],
        forbidden: &[],
    },
    Rule {
        krate: "weir-bench",
        may_use: &["*"],
        forbidden: &[],
    },
    Rule {
        krate: "xtask",
        may_use: &[],
        forbidden: &[],
    },
];

/// Runs every check on the workspace at `root`; returns one line per problem.
pub(crate) fn check_workspace(root: &Path) -> anyhow::Result<Vec<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1"])
        .current_dir(root)
        .output()
        .context("run cargo metadata")?;
    if !output.status.success() {
        anyhow::bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let metadata: Value = serde_json::from_slice(&output.stdout)?;
    let mut problems = check_dependencies(&metadata)?;
    let files = budgets::rust_files(root)?;
    problems.extend(budgets::check(&files, &budgets::ALLOWED));
    problems.extend(layers::check(&files));
    Ok(problems)
}

/// The dependency-direction check over `cargo metadata` output.
pub(crate) fn check_dependencies(metadata: &Value) -> anyhow::Result<Vec<String>> {
    let packages = metadata["packages"].as_array().context("packages")?;
    let name_of: BTreeMap<&str, &str> = packages
        .iter()
        .filter_map(|p| Some((p["id"].as_str()?, p["name"].as_str()?)))
        .collect();
    let members: BTreeSet<&str> = metadata["workspace_members"]
        .as_array()
        .context("workspace_members")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    // Normal (not dev, not build) dependency edges, by package id.
    let mut edges: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for node in metadata["resolve"]["nodes"]
        .as_array()
        .context("resolve.nodes")?
    {
        let id = node["id"].as_str().context("node id")?;
        let deps = node["deps"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        let normal = deps.iter().filter(|dep| {
            dep["dep_kinds"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k["kind"].is_null()))
        });
        edges.insert(id, normal.filter_map(|dep| dep["pkg"].as_str()).collect());
    }

    let mut problems = Vec::new();
    for &member in &members {
        let name = name_of.get(member).copied().unwrap_or(member);
        let Some(rule) = RULES.iter().find(|rule| rule.krate == name) else {
            problems.push(format!(
                "workspace crate `{name}` has no dependency rule: add one in xtask/src/tidy.rs \
                 and describe the crate in ARCHITECTURE.md"
            ));
            continue;
        };
        for &dep in edges.get(member).map(Vec::as_slice).unwrap_or(&[]) {
            let dep_name = name_of.get(dep).copied().unwrap_or(dep);
            if members.contains(dep) && !rule.may_use.iter().any(|&m| m == "*" || m == dep_name) {
                problems.push(format!(
                    "`{name}` depends on workspace crate `{dep_name}`, which its rule forbids"
                ));
            }
        }
        for (dep, path) in &closure(member, name, &edges, &name_of) {
            let dep_name = name_of.get(dep).copied().unwrap_or(dep);
            if rule.forbidden.contains(&dep_name) {
                problems.push(format!(
                    "`{name}` must not depend on `{dep_name}` (through {})",
                    path.join(" -> ")
                ));
            }
        }
    }
    Ok(problems)
}

/// Every crate in the normal dependency closure of `member` (named `name`), with the path
/// of crate names that brings it in.
fn closure<'a>(
    member: &'a str,
    name: &'a str,
    edges: &BTreeMap<&'a str, Vec<&'a str>>,
    name_of: &BTreeMap<&'a str, &'a str>,
) -> BTreeMap<&'a str, Vec<&'a str>> {
    let mut seen: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut stack = vec![(member, vec![name])];
    while let Some((id, path)) = stack.pop() {
        for &dep in edges.get(id).map(Vec::as_slice).unwrap_or(&[]) {
            if seen.contains_key(dep) {
                continue;
            }
            let mut dep_path = path.clone();
            dep_path.push(name_of.get(dep).copied().unwrap_or(dep));
            seen.insert(dep, dep_path.clone());
            stack.push((dep, dep_path));
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    /// A minimal `cargo metadata` document: workspace crates and edges between names.
    fn metadata(members: &[&str], edges: &[(&str, &str, &str)]) -> Value {
        let mut names: BTreeSet<&str> = members.iter().copied().collect();
        for (from, to, _) in edges {
            names.insert(from);
            names.insert(to);
        }
        let id = |name: &str| format!("{name} 0.0.0");
        let packages: Vec<Value> = names
            .iter()
            .map(|n| serde_json::json!({"id": id(n), "name": n}))
            .collect();
        let nodes: Vec<Value> = names
            .iter()
            .map(|n| {
                let deps: Vec<Value> = edges
                    .iter()
                    .filter(|(from, _, _)| from == n)
                    .map(|(_, to, kind)| {
                        let kind = if kind.is_empty() {
                            Value::Null
                        } else {
                            Value::from(*kind)
                        };
                        serde_json::json!({"pkg": id(to), "dep_kinds": [{"kind": kind}]})
                    })
                    .collect();
                serde_json::json!({"id": id(n), "deps": deps})
            })
            .collect();
        serde_json::json!({
            "packages": packages,
            "workspace_members": members.iter().map(|m| id(m)).collect::<Vec<_>>(),
            "resolve": {"nodes": nodes},
        })
    }

    #[test]
    fn the_real_workspace_is_tidy() {
        let problems = check_workspace(&root()).unwrap();
        assert!(
            problems.is_empty(),
            "tidy problems:\n{}",
            problems.join("\n")
        );
    }

    /// The check the foundation issue asks to see fail: a protocol crate gaining tokio, even
    /// through another crate.
    #[test]
    fn a_protocol_crate_gaining_tokio_fails() {
        let direct = metadata(&["weir-mqtt"], &[("weir-mqtt", "tokio", "")]);
        let problems = check_dependencies(&direct).unwrap();
        assert_eq!(
            problems,
            ["`weir-mqtt` must not depend on `tokio` (through weir-mqtt -> tokio)"]
        );

        let indirect = metadata(
            &["weir-kafka"],
            &[
                ("weir-kafka", "some-helper", ""),
                ("some-helper", "tokio", ""),
            ],
        );
        let problems = check_dependencies(&indirect).unwrap();
        assert_eq!(
            problems,
            [
                "`weir-kafka` must not depend on `tokio` (through weir-kafka -> some-helper -> tokio)"
            ]
        );
    }

    #[test]
    fn dev_dependencies_do_not_count() {
        let dev = metadata(&["weir-mqtt"], &[("weir-mqtt", "tokio", "dev")]);
        assert!(check_dependencies(&dev).unwrap().is_empty());
    }

    #[test]
    fn upward_workspace_dependencies_fail() {
        let up = metadata(
            &["weir-mqtt", "weir-core"],
            &[("weir-mqtt", "weir-core", "")],
        );
        let problems = check_dependencies(&up).unwrap();
        assert_eq!(
            problems,
            ["`weir-mqtt` depends on workspace crate `weir-core`, which its rule forbids"]
        );
    }

    #[test]
    fn a_crate_without_a_rule_fails() {
        let unknown = metadata(&["weir-utils"], &[]);
        let problems = check_dependencies(&unknown).unwrap();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("`weir-utils` has no dependency rule"));
    }

    fn file(path: &str, text: &str) -> budgets::RustFile {
        budgets::RustFile {
            path: path.to_owned(),
            text: text.to_owned(),
        }
    }

    #[test]
    fn clock_reads_outside_the_clock_file_fail() {
        let files = [
            file(
                "protocols/mqtt/src/lib.rs",
                "fn f() {\n    let t = std::time::Instant::now();\n}\n",
            ),
            file(
                "broker/server/src/shard/conn.rs",
                "// Instant::now in a comment is fine\nfn f(t: Instant) {\n    t.elapsed();\n}\n",
            ),
            file(
                "broker/server/src/clock.rs",
                "fn f() { let t = Instant::now(); }\n",
            ),
            file(
                "broker/server/src/writer.rs",
                "fn f() {}\n#[cfg(test)]\nmod tests {\n    fn t() { let d = Instant::now(); }\n}\n",
            ),
            file(
                "tests/it/main.rs",
                "fn f() { let t = SystemTime::now(); }\n",
            ),
        ];
        let problems = budgets::check(&files, &budgets::NONE);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("protocols/mqtt/src/lib.rs:2: `Instant::now`"));
        assert!(problems[1].starts_with("broker/server/src/shard/conn.rs:3: `.elapsed()`"));
    }

    #[test]
    fn files_and_functions_over_budget_fail() {
        let long_fn = format!("fn long() {{\n{}}}\n", "    x();\n".repeat(69));
        let files = [
            file("broker/core/src/big.rs", &"const A: u8 = 0;\n".repeat(801)),
            file(
                "broker/core/src/huge.rs",
                &"const A: u8 = 0;\n".repeat(1001),
            ),
            file(
                "protocols/kafka/src/codec.rs",
                &"const A: u8 = 0;\n".repeat(1001),
            ),
            file("broker/core/src/f.rs", &long_fn),
            file(
                "broker/core/src/tests.rs",
                &"const A: u8 = 0;\n".repeat(2000),
            ),
        ];
        let problems = budgets::check(&files, &budgets::NONE);
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert!(
            problems[0].starts_with("broker/core/src/big.rs: 801 lines"),
            "{problems:#?}"
        );
        assert!(
            problems[1].contains("past the ceiling of 1000"),
            "{problems:#?}"
        );
        assert!(
            problems[2].starts_with("protocols/kafka/src/codec.rs: 1001 lines"),
            "{problems:#?}"
        );
        assert!(problems[2].contains("over 800"), "{problems:#?}");
        assert!(
            problems[3].starts_with("broker/core/src/f.rs:1: fn long is 71 lines"),
            "{problems:#?}"
        );
    }

    /// The shard's `mod.rs` imports a child that imports `mod.rs` back through `super`.
    #[test]
    fn a_child_importing_its_importing_parent_is_a_circle() {
        let files = [
            file("broker/server/src/lib.rs", "mod shard;\n"),
            file(
                "broker/server/src/shard/mod.rs",
                "mod conn;\nuse conn::Conn;\nuse self::conn::expired;\npub(crate) struct MqttWork;\n",
            ),
            file(
                "broker/server/src/shard/conn.rs",
                "use super::MqttWork;\npub(crate) struct Conn;\npub(crate) fn expired() {}\n",
            ),
        ];
        assert_eq!(
            layers::check(&files),
            [
                "import circle in broker/server/src: broker/server/src/shard/conn.rs -> \
                 broker/server/src/shard/mod.rs (MqttWork), broker/server/src/shard/mod.rs -> \
                 broker/server/src/shard/conn.rs (Conn): make the lower file not import the \
                 upper one"
            ]
        );
    }

    /// A parent naming a child module by its bare name (`use decoder::X`, `error::f()` in
    /// code) points at the child's file, like `self::decoder::X`; a bare name that is no child
    /// module with a file (another crate, a type, an inline module) points nowhere.
    #[test]
    fn bare_child_paths_are_arrows() {
        let files = [
            file(
                "m/src/lib.rs",
                "mod decoder;
mod error;
mod inline { pub fn g() {} }
pub use decoder::Decoder;
pub struct Packet;
fn f() { error::fail(); inline::g(); std::mem::drop(Packet::default()); }
",
            ),
            file(
                "m/src/decoder.rs",
                "pub struct Decoder;
",
            ),
            file(
                "m/src/error.rs",
                "use crate::Packet;
pub fn fail() {}
",
            ),
        ];
        assert_eq!(
            layers::check(&files),
            [
                "import circle in m/src: m/src/error.rs -> m/src/lib.rs (Packet), m/src/lib.rs \
                 -> m/src/error.rs (fail): make the lower file not import the upper one"
            ]
        );
    }

    /// Nested brace groups, `self` inside a group, renames and `pub use` all lead somewhere.
    #[test]
    fn nested_use_groups_are_expanded() {
        let files = [
            file(
                "a/src/lib.rs",
                "pub use crate::top::{x::{self as y, Y}, z::*};\nmod top;\n",
            ),
            file("a/src/top/mod.rs", "mod x;\nmod z;\n"),
            file(
                "a/src/top/x.rs",
                "use super::{\n    w::W,\n    z::{inner::{Deep, Deeper}, Z},\n};\npub struct Y;\n",
            ),
            file("a/src/top/z.rs", "use crate::Top;\n"),
            file("a/src/top/w.rs", "use super::super::top::x::Y;\n"),
        ];
        assert_eq!(
            layers::check(&files),
            [
                "import circle in a/src: a/src/lib.rs -> a/src/top/x.rs (x), a/src/lib.rs -> \
                 a/src/top/z.rs (*), a/src/top/w.rs -> a/src/top/x.rs (Y), a/src/top/x.rs -> \
                 a/src/top/w.rs (W), a/src/top/x.rs -> a/src/top/z.rs (Deep), a/src/top/z.rs -> \
                 a/src/lib.rs (Top): make the lower file not import the upper one"
            ]
        );
    }

    /// Paths in code (`super::x::f()`, `crate::clock::now()`, `super::super::`) are arrows.
    #[test]
    fn inline_paths_are_arrows() {
        let files = [
            file(
                "s/src/lib.rs",
                "mod clock;\nmod shard;\nfn f() { shard::conn::run(); }\n",
            ),
            file(
                "s/src/clock.rs",
                "pub fn now() -> u64 { crate::shard::conn::ZERO }\n",
            ),
            file("s/src/shard/mod.rs", "pub mod conn;\npub mod inbox;\n"),
            file(
                "s/src/shard/inbox.rs",
                "pub fn take() -> u64 {\n    super::conn::expired(crate::clock::now())\n}\n",
            ),
            file(
                "s/src/shard/conn.rs",
                "pub const ZERO: u64 = 0;\npub fn run() {\n    let x = super::super::clock::now();\n}\n",
            ),
        ];
        let problems = layers::check(&files);
        assert_eq!(
            problems,
            [
                "import circle in s/src: s/src/clock.rs -> s/src/shard/conn.rs (ZERO), \
                 s/src/shard/conn.rs -> s/src/clock.rs (now): make the lower file not import \
                 the upper one"
            ]
        );
    }

    /// Comments, strings, `#[cfg(test)]` items and test files name nothing.
    #[test]
    fn comments_strings_and_tests_are_not_arrows() {
        let files = [
            file("c/src/lib.rs", "mod a;\nmod b;\n"),
            file("c/src/a.rs", "use crate::b::B;\npub struct A;\n"),
            file(
                "c/src/b.rs",
                "// use crate::a::A;\n/// [`crate::a::A`]\nconst S: &str = \"super::a::A\";\npub struct B;\n#[cfg(test)]\nmod tests {\n    use crate::a::A;\n    fn t() { let _ = crate::a::A; }\n}\n#[cfg(test)]\nuse super::a;\n",
            ),
            file("c/src/b/tests.rs", "use crate::a::A;\n"),
        ];
        assert!(layers::check(&files).is_empty());
    }

    /// Crates are separate graphs: `one`'s `a.rs` and `two`'s `b.rs` name each other's module
    /// paths, which would close a circle if crates were mixed. A `main.rs` beside a `lib.rs`
    /// and a binary under `src/bin/` are crates of their own.
    #[test]
    fn files_of_different_crates_never_form_a_circle() {
        let files = [
            file("one/src/lib.rs", "mod a;\nmod b;\n"),
            file("one/src/a.rs", "use crate::b::B;\n"),
            file("two/src/lib.rs", "mod a;\nmod b;\n"),
            file("two/src/b.rs", "use crate::a::A;\n"),
            file("two/src/main.rs", "use crate::a::A;\n"),
            file("two/src/bin/tool.rs", "use crate::b::B;\n"),
        ];
        assert!(layers::check(&files).is_empty());
    }

    /// A layered crate passes: the root and upper files import lower ones, never back.
    #[test]
    fn a_layered_crate_passes() {
        let files = [
            file(
                "l/src/main.rs",
                "mod shard;\nmod clock;\nuse crate::shard::{Shard, conn::Conn};\n",
            ),
            file(
                "l/src/clock.rs",
                "pub fn now() -> u64 { 0 }\nfn f() { self::now(); }\n",
            ),
            file(
                "l/src/shard/mod.rs",
                "pub mod conn;\npub use conn::Conn;\nuse self::conn::new;\n",
            ),
            file(
                "l/src/shard/conn.rs",
                "use crate::clock;\nuse std::io;\npub fn new() { crate::clock::now(); }\n",
            ),
        ];
        assert!(layers::check(&files).is_empty());
    }
}
