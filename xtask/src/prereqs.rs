//! What the test suite needs beyond cargo, and how to get it.
//!
//! Each requirement has a check (a command that must succeed) and a source (a Debian package,
//! a PyPI package, an npm package installed into `tests/compat/node_modules`, a rustup
//! component). `ensure` installs what is missing when it may (running as root, or under
//! `CI=true`); otherwise it prints exactly what is missing and the command that installs it,
//! and fails. Each client the tests drive is listed here: kcat, kafka-python, confluent-kafka
//! and kafkajs for the Kafka front; mosquitto_pub/mosquitto_sub, paho-mqtt and MQTT.js for the
//! MQTT front (later issues add theirs, such as the wasm toolchains), so the README's one test
//! command keeps working on a fresh machine.

use std::process::{Command, Stdio};

use anyhow::bail;

/// Where a requirement comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// `rustup component add <name>`.
    RustupComponent(&'static str),
    /// `apt-get install <name>` (Debian; several packages separated by spaces).
    Debian(&'static str),
    /// `python3 -m pip install <name>` (PyPI).
    Pip(&'static str),
    /// `npm install --prefix tests/compat --no-save <name>` (npm), for the Node scenarios.
    Npm(&'static str),
}

/// One thing the tests need.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Requirement {
    /// What it is, for messages.
    pub(crate) what: &'static str,
    /// A command that succeeds only when the requirement is present.
    pub(crate) check: &'static [&'static str],
    /// How to install it.
    pub(crate) source: Source,
    /// Which tests need it.
    pub(crate) needed_by: &'static str,
}

/// The test suite's requirements today.
pub(crate) fn requirements() -> Vec<Requirement> {
    vec![
        Requirement {
            what: "rustfmt",
            check: &["cargo", "fmt", "--version"],
            source: Source::RustupComponent("rustfmt"),
            needed_by: "tidy (cargo fmt --check)",
        },
        Requirement {
            what: "clippy",
            check: &["cargo", "clippy", "--version"],
            source: Source::RustupComponent("clippy"),
            needed_by: "tidy (clippy -D warnings)",
        },
        Requirement {
            what: "kcat",
            check: &["kcat", "-V"],
            source: Source::Debian("kcat"),
            needed_by: "the Kafka compatibility tests (Debian's kcat: librdkafka 2.0.2, the old client)",
        },
        Requirement {
            what: "kafka-python",
            check: &["python3", "-c", "import kafka"],
            source: Source::Pip("kafka-python==3.0.12"),
            needed_by: "the Kafka compatibility tests (kafka-python's producer, consumer and admin client)",
        },
        Requirement {
            what: "confluent-kafka",
            check: &["python3", "-c", "import confluent_kafka"],
            source: Source::Pip("confluent-kafka==2.16.1"),
            needed_by: "the Kafka compatibility tests (librdkafka 2.16 through confluent-kafka: codecs, groups, idempotence)",
        },
        Requirement {
            what: "node",
            check: &["node", "--version"],
            source: Source::Debian("nodejs"),
            needed_by: "the Kafka and MQTT compatibility tests (kafkajs, MQTT.js)",
        },
        Requirement {
            what: "npm",
            check: &["npm", "--version"],
            source: Source::Debian("npm"),
            needed_by: "installing kafkajs and MQTT.js for the compatibility tests",
        },
        Requirement {
            what: "kafkajs",
            check: &[
                "test",
                "-f",
                "tests/compat/node_modules/kafkajs/package.json",
            ],
            source: Source::Npm("kafkajs@2.2.4"),
            needed_by: "the Kafka compatibility tests (kafkajs's producer, consumer group and admin client)",
        },
        Requirement {
            what: "mosquitto_pub and mosquitto_sub",
            // `mosquitto_pub --help` exits with 1, so the check asks the shell instead.
            check: &[
                "sh",
                "-c",
                "command -v mosquitto_pub && command -v mosquitto_sub",
            ],
            source: Source::Debian("mosquitto-clients"),
            needed_by: "the MQTT compatibility tests (mosquitto 2.0's command-line clients, MQTT 3.1.1 and 5)",
        },
        Requirement {
            what: "stdbuf",
            check: &["stdbuf", "--version"],
            source: Source::Debian("coreutils"),
            needed_by: "the MQTT compatibility tests (mosquitto_sub's output, line by line into a pipe)",
        },
        Requirement {
            what: "paho-mqtt 2",
            // The scenarios use paho 2's callback API; paho 1.x imports but lacks it.
            check: &[
                "python3",
                "-c",
                "import paho.mqtt.client as c; c.CallbackAPIVersion.VERSION2",
            ],
            source: Source::Pip("paho-mqtt==2.1.0"),
            needed_by: "the MQTT compatibility tests (paho-mqtt for Python, MQTT 3.1.1 and 5)",
        },
        Requirement {
            what: "MQTT.js",
            check: &["test", "-f", "tests/compat/node_modules/mqtt/package.json"],
            source: Source::Npm("mqtt@5.16.0"),
            needed_by: "the MQTT compatibility tests (MQTT.js, MQTT 3.1.1 and 5)",
        },
        Requirement {
            what: "Debian's rustc-web and cargo-web",
            check: &["/usr/bin/cargo", "--version"],
            source: Source::Debian("rustc-web cargo-web"),
            needed_by: "building the Rust plugins to wasm (rustup here cannot add the wasm32-wasip2 target)",
        },
        Requirement {
            what: "rustc-web's std source",
            check: &[
                "sh",
                "-c",
                "test -d \"/usr/src/rustc-$(/usr/bin/rustc -V | cut -d' ' -f2)/library\"",
            ],
            source: Source::Debian("rust-web-src"),
            needed_by: "building std for wasm32-wasip2 (-Zbuild-std) for the Rust plugins",
        },
        Requirement {
            what: "rust-lld",
            check: &["sh", "-c", "command -v rust-lld"],
            source: Source::Debian("lld-22"),
            needed_by: "linking the Rust plugins (rustc-web links wasm through /usr/bin/rust-lld)",
        },
        Requirement {
            what: "wasi-libc",
            check: &["test", "-f", "/usr/lib/wasm32-wasi/libc.a"],
            source: Source::Debian("wasi-libc"),
            needed_by: "the Rust plugins (wasm32-wasip2's std links wasi-libc)",
        },
        Requirement {
            what: "clang and wasm-ld",
            check: &["sh", "-c", "command -v clang-14 && command -v wasm-ld-14"],
            source: Source::Debian("clang-14 lld-14"),
            needed_by: "the C example plugin (plugins/c)",
        },
        Requirement {
            what: "unshare",
            check: &["unshare", "--version"],
            source: Source::Debian("util-linux"),
            needed_by: "the log's disk-full test (a tmpfs in a private mount namespace)",
        },
        Requirement {
            what: "mount",
            check: &["mount", "--version"],
            source: Source::Debian("mount"),
            needed_by: "the log's disk-full test (a tmpfs in a private mount namespace)",
        },
    ]
}

/// Checks every requirement; installs the missing ones when allowed, otherwise fails with
/// the list of what is missing and how to get it.
pub(crate) fn ensure(requirements: &[Requirement]) -> anyhow::Result<()> {
    let missing: Vec<Requirement> = requirements
        .iter()
        .copied()
        .filter(|r| !present(r))
        .collect();
    if missing.is_empty() {
        eprintln!("all {} prerequisites present", requirements.len());
        return Ok(());
    }
    match plan(&missing, requirements, may_install()) {
        Plan::Report(text) => bail!("{text}"),
        Plan::Install(commands) => {
            for command in &commands {
                eprintln!("installing: {}", command.join(" "));
                let status = Command::new(&command[0]).args(&command[1..]).status()?;
                if !status.success() {
                    bail!("`{}` failed with {status}", command.join(" "));
                }
            }
            let still: Vec<&str> = missing
                .iter()
                .filter(|r| !present(r))
                .map(|r| r.what)
                .collect();
            if !still.is_empty() {
                bail!("still missing after installing: {}", still.join(", "));
            }
            Ok(())
        }
    }
}

/// What to do about missing requirements.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Commands to run, in order.
    Install(Vec<Vec<String>>),
    /// A message listing what is missing and how to install it.
    Report(String),
}

/// Groups the missing requirements into as few install commands as possible, or, when
/// installing is not allowed, explains them. `all` is every requirement: `npm install
/// --no-save` removes from `node_modules` the packages it is not given, so when one npm
/// package is missing the command names every npm package in `all`.
pub(crate) fn plan(missing: &[Requirement], all: &[Requirement], may_install: bool) -> Plan {
    let debian: Vec<&str> = sources(missing, |s| match s {
        Source::Debian(name) => Some(name),
        _ => None,
    });
    let pip: Vec<&str> = sources(missing, |s| match s {
        Source::Pip(name) => Some(name),
        _ => None,
    });
    let rustup: Vec<&str> = sources(missing, |s| match s {
        Source::RustupComponent(name) => Some(name),
        _ => None,
    });
    let npm_source = |s: Source| match s {
        Source::Npm(name) => Some(name),
        _ => None,
    };
    let npm: Vec<&str> = if sources(missing, npm_source).is_empty() {
        Vec::new()
    } else {
        sources(all, npm_source)
    };
    let mut commands: Vec<Vec<String>> = Vec::new();
    let owned = |words: &[&str]| words.iter().map(|w| (*w).to_owned()).collect::<Vec<_>>();
    if !debian.is_empty() {
        commands.push(owned(&["apt-get", "update", "-q"]));
        let mut install = owned(&["apt-get", "install", "-y", "-q", "--no-install-recommends"]);
        // A requirement may need several packages, named with spaces between them.
        install.extend(debian.iter().flat_map(|n| n.split(' ')).map(str::to_owned));
        commands.push(install);
    }
    if !pip.is_empty() {
        let mut install = owned(&["python3", "-m", "pip", "install", "-q"]);
        install.extend(pip.iter().map(|n| (*n).to_owned()));
        commands.push(install);
    }
    if !rustup.is_empty() {
        let mut install = owned(&["rustup", "component", "add"]);
        install.extend(rustup.iter().map(|n| (*n).to_owned()));
        commands.push(install);
    }
    if !npm.is_empty() {
        // Local to the scenarios, so nothing outside the checkout changes.
        let mut install = owned(&["npm", "install", "--prefix", "tests/compat", "--no-save"]);
        install.extend(npm.iter().map(|n| (*n).to_owned()));
        commands.push(install);
    }
    if may_install {
        return Plan::Install(commands);
    }
    let mut text = String::from("missing test prerequisites:\n");
    for r in missing {
        text.push_str(&format!("  - {} (for {})\n", r.what, r.needed_by));
    }
    text.push_str(
        "install them with the commands below (as root), or rerun as root or with CI=true to \
         let `cargo xtask test` install them:\n",
    );
    for command in commands {
        text.push_str(&format!("  {}\n", command.join(" ")));
    }
    Plan::Report(text)
}

fn sources(
    missing: &[Requirement],
    pick: impl Fn(Source) -> Option<&'static str>,
) -> Vec<&'static str> {
    let mut names: Vec<&str> = missing.iter().filter_map(|r| pick(r.source)).collect();
    names.dedup();
    names
}

fn present(requirement: &Requirement) -> bool {
    let Some((program, args)) = requirement.check.split_first() else {
        return false;
    };
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Installing is allowed as root or under CI.
fn may_install() -> bool {
    crate::ci() || effective_uid() == Some(0)
}

fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOSQ: Requirement = Requirement {
        what: "mosquitto clients",
        check: &["mosquitto_pub", "--help"],
        source: Source::Debian("mosquitto-clients"),
        needed_by: "MQTT compat",
    };
    const KCAT: Requirement = Requirement {
        what: "kcat",
        check: &["kcat", "-V"],
        source: Source::Debian("kcat"),
        needed_by: "Kafka compat",
    };
    const PAHO: Requirement = Requirement {
        what: "paho-mqtt",
        check: &["python3", "-c", "import paho.mqtt"],
        source: Source::Pip("paho-mqtt==2.1.0"),
        needed_by: "MQTT compat",
    };

    const MQTTJS: Requirement = Requirement {
        what: "mqtt.js",
        check: &["test", "-d", "tests/compat/node_modules/mqtt"],
        source: Source::Npm("mqtt@5.16.0"),
        needed_by: "MQTT compat",
    };

    #[test]
    fn install_plan_groups_by_source_and_updates_apt_first() {
        let missing = [MQTTJS, MOSQ, PAHO, KCAT];
        let Plan::Install(commands) = plan(&missing, &missing, true) else {
            panic!("expected an install plan");
        };
        let joined: Vec<String> = commands.iter().map(|c| c.join(" ")).collect();
        assert_eq!(
            joined,
            [
                "apt-get update -q",
                "apt-get install -y -q --no-install-recommends mosquitto-clients kcat",
                "python3 -m pip install -q paho-mqtt==2.1.0",
                "npm install --prefix tests/compat --no-save mqtt@5.16.0",
            ]
        );
    }

    #[test]
    fn report_names_each_missing_item_and_its_command() {
        let Plan::Report(text) = plan(&[MOSQ, PAHO], &[MOSQ, PAHO, KCAT], false) else {
            panic!("expected a report");
        };
        assert!(
            text.contains("mosquitto clients (for MQTT compat)"),
            "{text}"
        );
        assert!(text.contains("paho-mqtt (for MQTT compat)"), "{text}");
        assert!(
            text.contains("apt-get install -y -q --no-install-recommends mosquitto-clients"),
            "{text}"
        );
        assert!(
            text.contains("python3 -m pip install -q paho-mqtt==2.1.0"),
            "{text}"
        );
    }

    #[test]
    fn one_missing_npm_package_reinstalls_every_npm_package() {
        const KAFKAJS: Requirement = Requirement {
            what: "kafkajs",
            check: &["test", "-d", "tests/compat/node_modules/kafkajs"],
            source: Source::Npm("kafkajs@2.2.4"),
            needed_by: "Kafka compat",
        };
        let all = [KCAT, KAFKAJS, MQTTJS];
        let Plan::Install(commands) = plan(&[MQTTJS], &all, true) else {
            panic!("expected an install plan");
        };
        let joined: Vec<String> = commands.iter().map(|c| c.join(" ")).collect();
        assert_eq!(
            joined,
            ["npm install --prefix tests/compat --no-save kafkajs@2.2.4 mqtt@5.16.0"]
        );
        let Plan::Install(commands) = plan(&[KCAT], &all, true) else {
            panic!("expected an install plan");
        };
        assert!(commands.iter().all(|c| c[0] != "npm"), "{commands:?}");
    }

    #[test]
    fn a_missing_command_is_not_present() {
        let absent = Requirement {
            check: &["/nonexistent/weir-test-tool"],
            ..KCAT
        };
        assert!(!present(&absent));
        let there = Requirement {
            check: &["cargo", "--version"],
            ..KCAT
        };
        assert!(present(&there));
    }
}
