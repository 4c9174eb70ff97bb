//! Every prerequisite of the test suite: what it is, where it comes from ([`Source`]), and
//! which tests need it.

/// Where a requirement comes from; decides both its check and its install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// Shipped with the machine kind outside Debian: the command (first word of `version`)
    /// must print a version of at least `at_least`. Never installed by the test command.
    Machine {
        version: &'static [&'static str],
        at_least: &'static str,
    },
    /// `rustup component add <name>`; present when `probe` succeeds.
    RustupComponent {
        name: &'static str,
        probe: &'static [&'static str],
    },
    /// `apt-get install <packages>`: present when dpkg has every package installed and, if
    /// given, `probe` succeeds (the tool the package brings runs).
    Debian {
        packages: &'static [&'static str],
        probe: Option<&'static [&'static str]>,
    },
    /// `python3 -m pip install <package>==<version>`; present when `module` imports and the
    /// installed distribution is at exactly `version`.
    Pip {
        package: &'static str,
        version: &'static str,
        module: &'static str,
    },
    /// `npm install --prefix tests/compat --no-save <package>@<version>`, for the Node
    /// scenarios; present when it imports from there at exactly `version`.
    Npm {
        package: &'static str,
        version: &'static str,
    },
    /// `npm ci` in `dir` (a build script's folder with a `package-lock.json`); present when
    /// `package` imports from there at the version the lock file pins.
    NpmLocked {
        dir: &'static str,
        package: &'static str,
    },
    /// `apt-get download <package>` unpacked with `dpkg-deb -x` into `<TOOLS_DIR>/<package>`,
    /// installing nothing system-wide (the `mosquitto` package would start a broker service
    /// on port 1883); present when `probe` succeeds.
    DebianUnpacked {
        package: &'static str,
        probe: &'static [&'static str],
    },
}

/// Where [`Source::DebianUnpacked`] packages are unpacked, from the workspace root.
pub(crate) const TOOLS_DIR: &str = "target/tools";

/// The folder the Node scenarios' packages are installed into.
pub(crate) const NPM_PREFIX: &str = "tests/compat";

/// One thing the tests need.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Requirement {
    /// What it is, for messages.
    pub(crate) what: &'static str,
    /// Where it comes from, which also says how it is checked.
    pub(crate) source: Source,
    /// Which tests need it.
    pub(crate) needed_by: &'static str,
}

/// The test suite's requirements today.
pub(crate) fn requirements() -> Vec<Requirement> {
    let mut all = machine_and_build();
    all.extend(kafka_clients());
    all.extend(mqtt_clients());
    all.extend(rust_plugin_toolchain());
    all.extend(c_and_js_plugin_toolchains());
    all.extend(system_tools());
    all
}

fn machine_and_build() -> Vec<Requirement> {
    vec![
        Requirement {
            what: "Rust toolchain (rustup)",
            source: Source::Machine {
                version: &["cargo", "--version"],
                at_least: "1.95",
            },
            needed_by: "everything (the workspace's rust-version)",
        },
        Requirement {
            what: "rustfmt",
            source: Source::RustupComponent {
                name: "rustfmt",
                probe: &["cargo", "fmt", "--version"],
            },
            needed_by: "tidy (cargo fmt --check)",
        },
        Requirement {
            what: "clippy",
            source: Source::RustupComponent {
                name: "clippy",
                probe: &["cargo", "clippy", "--version"],
            },
            needed_by: "tidy (clippy -D warnings)",
        },
        Requirement {
            what: "C and C++ compilers, make",
            source: Source::Debian {
                packages: &["gcc", "g++", "make"],
                probe: None,
            },
            needed_by: "building librdkafka (rdkafka-sys) and LMDB, and librdkafka's own test programs",
        },
        Requirement {
            what: "OpenSSL's headers and pkg-config",
            source: Source::Debian {
                packages: &["libssl-dev", "pkg-config"],
                probe: None,
            },
            needed_by: "building librdkafka with TLS and SCRAM (rdkafka-sys's ssl feature: the TLS benchmark's Kafka client)",
        },
        Requirement {
            what: "Python",
            source: Source::Machine {
                version: &["python3", "--version"],
                at_least: "3.9",
            },
            needed_by: "the Python client scenarios (kafka-python, confluent-kafka, paho-mqtt)",
        },
        Requirement {
            what: "Node.js",
            source: Source::Machine {
                version: &["node", "--version"],
                at_least: "18",
            },
            needed_by: "the Node scenarios (kafkajs, MQTT.js) and the C and JavaScript plugins' builds",
        },
        Requirement {
            what: "npm (with Node.js)",
            source: Source::Machine {
                version: &["npm", "--version"],
                at_least: "8",
            },
            needed_by: "installing the Node scenarios' and plugin builds' npm packages",
        },
    ]
}

fn kafka_clients() -> Vec<Requirement> {
    vec![
        Requirement {
            what: "kcat",
            source: Source::Debian {
                packages: &["kcat"],
                probe: Some(&["kcat", "-V"]),
            },
            needed_by: "the Kafka compatibility tests (Debian's kcat: librdkafka 2.0.2, the old client)",
        },
        Requirement {
            what: "kafka-python",
            source: Source::Pip {
                package: "kafka-python",
                version: "3.0.12",
                module: "kafka",
            },
            needed_by: "the Kafka compatibility tests (kafka-python's producer, consumer and admin client)",
        },
        Requirement {
            what: "confluent-kafka",
            source: Source::Pip {
                package: "confluent-kafka",
                version: "2.16.1",
                module: "confluent_kafka",
            },
            needed_by: "the Kafka compatibility tests (librdkafka 2.16 through confluent-kafka: codecs, groups, idempotence)",
        },
        Requirement {
            what: "kafkajs",
            source: Source::Npm {
                package: "kafkajs",
                version: "2.2.4",
            },
            needed_by: "the Kafka compatibility tests (kafkajs's producer, consumer group and admin client)",
        },
    ]
}

fn mqtt_clients() -> Vec<Requirement> {
    vec![
        Requirement {
            what: "mosquitto_pub and mosquitto_sub",
            source: Source::Debian {
                packages: &["mosquitto-clients"],
                // `mosquitto_pub --help` exits with 1, so the probe asks the shell instead.
                probe: Some(&[
                    "sh",
                    "-c",
                    "command -v mosquitto_pub && command -v mosquitto_sub",
                ]),
            },
            needed_by: "the MQTT compatibility tests (mosquitto 2.0's command-line clients, MQTT 3.1.1 and 5)",
        },
        Requirement {
            what: "mosquitto_passwd",
            source: Source::DebianUnpacked {
                package: "mosquitto",
                probe: &[
                    "sh",
                    "-c",
                    "f=$(mktemp) && target/tools/mosquitto/usr/bin/mosquitto_passwd -b \"$f\" u p; s=$?; rm -f \"$f\"; exit $s",
                ],
            },
            needed_by: "the security tests (a password file made by Mosquitto 2.0's mosquitto_passwd, read unchanged)",
        },
        Requirement {
            what: "paho-mqtt 2",
            source: Source::Pip {
                package: "paho-mqtt",
                version: "2.1.0",
                module: "paho.mqtt.client",
            },
            needed_by: "the MQTT compatibility tests (paho-mqtt for Python, MQTT 3.1.1 and 5)",
        },
        Requirement {
            what: "MQTT.js",
            source: Source::Npm {
                package: "mqtt",
                version: "5.16.0",
            },
            needed_by: "the MQTT compatibility tests (MQTT.js, MQTT 3.1.1 and 5)",
        },
    ]
}

fn rust_plugin_toolchain() -> Vec<Requirement> {
    vec![
        Requirement {
            what: "Debian's rustc-web and cargo-web",
            source: Source::Debian {
                packages: &["rustc-web", "cargo-web"],
                probe: Some(&["/usr/bin/cargo", "--version"]),
            },
            needed_by: "building the Rust plugins to wasm (rustup here cannot add the wasm32-wasip2 target)",
        },
        Requirement {
            what: "rustc-web's std source",
            source: Source::Debian {
                packages: &["rust-web-src"],
                // The source must be of the compiler's own version, whatever that is.
                probe: Some(&[
                    "sh",
                    "-c",
                    "test -d \"/usr/src/rustc-$(/usr/bin/rustc -V | cut -d' ' -f2)/library\"",
                ]),
            },
            needed_by: "building std for wasm32-wasip2 (-Zbuild-std) for the Rust plugins",
        },
        Requirement {
            what: "rust-lld",
            // rust-web-llvm holds the /usr/bin/rust-lld link, to lld-22, which it does not
            // depend on; and it is only a Recommends of rustc-web. Both are named.
            source: Source::Debian {
                packages: &["rust-web-llvm", "lld-22"],
                probe: Some(&["test", "-x", "/usr/bin/rust-lld"]),
            },
            needed_by: "linking the Rust plugins (rustc-web links wasm through /usr/bin/rust-lld)",
        },
        Requirement {
            what: "wasi-libc",
            source: Source::Debian {
                packages: &["wasi-libc"],
                probe: Some(&["test", "-f", "/usr/lib/wasm32-wasi/libc.a"]),
            },
            needed_by: "the Rust plugins (wasm32-wasip2's std links wasi-libc)",
        },
    ]
}

fn c_and_js_plugin_toolchains() -> Vec<Requirement> {
    vec![
        Requirement {
            what: "clang and wasm-ld",
            source: Source::Debian {
                packages: &["clang-14", "lld-14"],
                probe: Some(&["sh", "-c", "command -v clang-14 && command -v wasm-ld-14"]),
            },
            needed_by: "the C example plugin (plugins/c)",
        },
        Requirement {
            what: "jco-transpile for the C plugin",
            source: Source::NpmLocked {
                dir: "plugins/c/size-guard",
                package: "@bytecodealliance/jco-transpile",
            },
            needed_by: "the C example plugin (its core module wrapped into a component)",
        },
        Requirement {
            what: "componentize-qjs for the JavaScript plugin",
            source: Source::NpmLocked {
                dir: "plugins/js/redact",
                package: "componentize-qjs",
            },
            needed_by: "the JavaScript example plugin (QuickJS into a component)",
        },
        Requirement {
            what: "jco-transpile for the JavaScript plugin",
            source: Source::NpmLocked {
                dir: "plugins/js/redact",
                package: "@bytecodealliance/jco-transpile",
            },
            needed_by: "the JavaScript example plugin (checking the built component)",
        },
    ]
}

fn system_tools() -> Vec<Requirement> {
    vec![
        Requirement {
            what: "stdbuf",
            source: Source::Debian {
                packages: &["coreutils"],
                probe: Some(&["stdbuf", "--version"]),
            },
            needed_by: "the MQTT compatibility tests (mosquitto_sub's output, line by line into a pipe)",
        },
        Requirement {
            what: "openssl",
            source: Source::Debian {
                packages: &["openssl"],
                probe: Some(&["openssl", "version"]),
            },
            needed_by: "the TLS tests (openssl s_client)",
        },
        Requirement {
            what: "unshare",
            source: Source::Debian {
                packages: &["util-linux"],
                probe: Some(&["unshare", "--version"]),
            },
            needed_by: "the log's disk-full test (a tmpfs in a private mount namespace)",
        },
        Requirement {
            what: "mount",
            source: Source::Debian {
                packages: &["mount"],
                probe: Some(&["mount", "--version"]),
            },
            needed_by: "the log's disk-full test (a tmpfs in a private mount namespace)",
        },
    ]
}
