//! `cargo xtask plugins`: builds every plugin in `plugins/` to a component in
//! `plugins/target/wasm/<name>.wasm` (what the tests and the plugin guide load), and runs the
//! Rust plugins' own tests natively.
//!
//! - Rust (`plugins/` workspace, the SDK in `plugins-sdk/rust`): with rustup's
//!   `wasm32-wasip2` target when it is installed; otherwise (rustup here cannot download
//!   targets) with Debian's `rustc-web` and its std source, std rebuilt for wasm
//!   (`-Zbuild-std`), as `../shared/design/TOOLCHAINS.md` found works.
//! - C (`plugins/c/*/build.sh`): clang to a freestanding core module, wrapped into a
//!   component with jco-transpile (npm, pinned beside the script).
//! - JavaScript (`plugins/js/*/build.sh`): componentize-qjs (QuickJS), npm, pinned likewise.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

use crate::shell::{run, step};

/// Where every built component lands.
pub(crate) const OUT_DIR: &str = "plugins/target/wasm";

/// Builds every plugin and runs the Rust plugins' tests.
pub(crate) fn build(root: &Path) -> anyhow::Result<()> {
    let out = root.join(OUT_DIR);
    std::fs::create_dir_all(&out)?;
    step("plugins: Rust plugins' tests (native, through the SDK's harness)");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut test = Command::new(&cargo);
    // From plugins/, so its .cargo/config.toml applies.
    test.args(["test", "--quiet"])
        .current_dir(root.join("plugins"));
    if crate::shell::ci() {
        test.arg("--locked");
    }
    run(&mut test)?;
    step("plugins: Rust plugins to wasm32-wasip2 components");
    let mut build = rust_wasm_build(&cargo)?;
    build
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .current_dir(root.join("plugins"));
    if crate::shell::ci() {
        build.arg("--locked");
    }
    run(&mut build)?;
    let built = root.join("plugins/target/wasm32-wasip2/release");
    for entry in std::fs::read_dir(&built)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "wasm") {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .context("file name")?
                .replace('_', "-");
            std::fs::copy(&path, out.join(name))?;
        }
    }
    for (language, dir) in [("C", "plugins/c"), ("JavaScript", "plugins/js")] {
        for entry in std::fs::read_dir(root.join(dir))? {
            let plugin = entry?.path();
            let script = plugin.join("build.sh");
            if !script.exists() {
                continue;
            }
            let name = plugin
                .file_name()
                .and_then(|n| n.to_str())
                .context("plugin dir name")?
                .to_owned();
            step(&format!("plugins: {language} plugin {name}"));
            run(Command::new("bash")
                .arg(&script)
                .arg(out.join(format!("{name}.wasm"))))?;
        }
    }
    step(&format!("plugins built in {OUT_DIR}"));
    Ok(())
}

/// A cargo command that can build for `wasm32-wasip2`: rustup's when it has the target,
/// else Debian's rustc-web with std built from its source.
fn rust_wasm_build(cargo: &str) -> anyhow::Result<Command> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("wasm32-wasip2"))
        .unwrap_or(false);
    if installed {
        return Ok(Command::new(cargo));
    }
    let version = Command::new("/usr/bin/rustc")
        .arg("-V")
        .output()
        .context("neither rustup's wasm32-wasip2 target nor Debian's rustc-web (/usr/bin/rustc) is installed; `cargo xtask prereqs` installs rustc-web")?;
    let version = String::from_utf8_lossy(&version.stdout).to_string();
    let number = version.split_whitespace().nth(1).unwrap_or("");
    let source = format!("/usr/src/rustc-{number}/library");
    if !Path::new(&source).exists() {
        bail!(
            "{} has no std source at {source} (Debian package rust-web-src of the same version)",
            version.trim()
        );
    }
    let mut command = Command::new("/usr/bin/cargo");
    command
        .env("RUSTC", "/usr/bin/rustc")
        .env("RUSTC_BOOTSTRAP", "1")
        .args(["-Zbuild-std=std,panic_abort"]);
    Ok(command)
}
