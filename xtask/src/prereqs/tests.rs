use super::*;

const MOSQ: Requirement = Requirement {
    what: "mosquitto clients",
    source: Source::Debian {
        packages: &["mosquitto-clients"],
        probe: None,
    },
    needed_by: "MQTT compat",
};
const KCAT: Requirement = Requirement {
    what: "kcat",
    source: Source::Debian {
        packages: &["kcat"],
        probe: None,
    },
    needed_by: "Kafka compat",
};
const PAHO: Requirement = Requirement {
    what: "paho-mqtt",
    source: Source::Pip {
        package: "paho-mqtt",
        version: "2.1.0",
        module: "paho.mqtt.client",
    },
    needed_by: "MQTT compat",
};
const MQTTJS: Requirement = Requirement {
    what: "mqtt.js",
    source: Source::Npm {
        package: "mqtt",
        version: "5.16.0",
    },
    needed_by: "MQTT compat",
};
const KAFKAJS: Requirement = Requirement {
    what: "kafkajs",
    source: Source::Npm {
        package: "kafkajs",
        version: "2.2.4",
    },
    needed_by: "Kafka compat",
};
const LLD: Requirement = Requirement {
    what: "rust-lld",
    source: Source::Debian {
        packages: &["rust-web-llvm", "lld-22"],
        probe: None,
    },
    needed_by: "plugins",
};
const JCO: Requirement = Requirement {
    what: "jco",
    source: Source::NpmLocked {
        dir: "plugins/c/size-guard",
        package: "@bytecodealliance/jco-transpile",
    },
    needed_by: "C plugin",
};

fn joined(plan: Plan) -> Vec<String> {
    let Plan::Install(commands) = plan else {
        panic!("expected an install plan, got {plan:?}");
    };
    commands
        .iter()
        .map(|c| match c.dir {
            Some(dir) => format!("in {dir}: {}", c.words.join(" ")),
            None => c.words.join(" "),
        })
        .collect()
}

#[test]
fn install_plan_groups_by_source_and_updates_apt_first() {
    let missing = [MQTTJS, MOSQ, PAHO, KCAT, LLD, JCO];
    assert_eq!(
        joined(plan(&missing, &missing, true)),
        [
            "apt-get update -q",
            "apt-get install -y -q --no-install-recommends mosquitto-clients kcat rust-web-llvm lld-22",
            "python3 -m pip install -q paho-mqtt==2.1.0",
            "npm install --prefix tests/compat --no-save mqtt@5.16.0",
            "in plugins/c/size-guard: npm ci --no-audit --no-fund --loglevel=error",
        ]
    );
}

#[test]
fn report_names_each_missing_item_and_its_command() {
    let Plan::Report(text) = plan(&[MOSQ, PAHO, JCO], &[MOSQ, PAHO, KCAT, JCO], false) else {
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
    assert!(
        text.contains("(cd plugins/c/size-guard && npm ci"),
        "{text}"
    );
}

#[test]
fn a_missing_machine_tool_is_reported_never_installed() {
    let node = Requirement {
        what: "Node.js",
        source: Source::Machine {
            version: &["node", "--version"],
            at_least: "18",
        },
        needed_by: "Node scenarios",
    };
    let Plan::Report(text) = plan(&[node, KCAT], &[node, KCAT], true) else {
        panic!("a missing machine tool cannot be installed by the test command");
    };
    assert!(text.contains("Node.js comes with the machine"), "{text}");
    assert!(text.contains("apt-get install"), "{text}");
}

#[test]
fn one_missing_npm_package_reinstalls_every_npm_package() {
    let all = [KCAT, KAFKAJS, MQTTJS];
    assert_eq!(
        joined(plan(&[MQTTJS], &all, true)),
        ["npm install --prefix tests/compat --no-save kafkajs@2.2.4 mqtt@5.16.0"]
    );
    let commands = joined(plan(&[KCAT], &all, true));
    assert!(commands.iter().all(|c| !c.contains("npm")), "{commands:?}");
}

#[test]
fn a_tool_left_by_hand_is_not_an_installed_package() {
    // The probe succeeds (the tool "is there"), but no package brought it.
    let by_hand = Requirement {
        source: Source::Debian {
            packages: &["weir-no-such-package"],
            probe: Some(&["true"]),
        },
        ..KCAT
    };
    let found = check(&by_hand);
    assert!(!found.present, "{found:?}");
    assert!(found.detail.contains("weir-no-such-package"), "{found:?}");
}

#[test]
fn an_installed_package_whose_tool_fails_is_missing() {
    // dpkg itself is always installed; a failing probe still makes it missing.
    let broken = Requirement {
        source: Source::Debian {
            packages: &["dpkg"],
            probe: Some(&["false"]),
        },
        ..KCAT
    };
    assert!(!check(&broken).present);
    let fine = Requirement {
        source: Source::Debian {
            packages: &["dpkg"],
            probe: Some(&["true"]),
        },
        ..KCAT
    };
    let found = check(&fine);
    assert!(found.present, "{found:?}");
    assert!(found.detail.starts_with("dpkg "), "{found:?}");
}

#[test]
fn only_an_installed_status_counts() {
    assert_eq!(
        installed_version("install ok installed\t1.2-3"),
        Some("1.2-3")
    );
    assert_eq!(installed_version("deinstall ok config-files\t1.2-3"), None);
    assert_eq!(installed_version("install ok half-configured\t1.2-3"), None);
    assert_eq!(installed_version("unknown ok not-installed\t"), None);
    assert_eq!(installed_version(""), None);
}

#[test]
fn a_python_package_must_import_at_its_pinned_version() {
    // pip itself is where the test command installs: its version is never "0.0.0".
    let wrong = Requirement {
        source: Source::Pip {
            package: "pip",
            version: "0.0.0",
            module: "pip",
        },
        ..PAHO
    };
    let found = check(&wrong);
    assert!(!found.present, "{found:?}");
    assert!(found.detail.contains("0.0.0 pinned"), "{found:?}");
    let absent = Requirement {
        source: Source::Pip {
            package: "weir-no-such-dist",
            version: "1.0",
            module: "weir_no_such_module",
        },
        ..PAHO
    };
    assert!(!check(&absent).present);
}

#[test]
fn machine_tools_are_checked_by_version() {
    assert_eq!(
        version_in("cargo 1.95.0 (f2d3ce0bd 2026-03-21)").as_deref(),
        Some("1.95.0")
    );
    assert_eq!(version_in("v20.20.2").as_deref(), Some("20.20.2"));
    assert_eq!(version_in("Python 3.11.7").as_deref(), Some("3.11.7"));
    assert_eq!(version_in("no version here"), None);
    assert!(version_at_least("1.95.0", "1.95"));
    assert!(version_at_least("1.96", "1.95"));
    assert!(version_at_least("20.20.2", "18"));
    assert!(!version_at_least("1.94.1", "1.95"));
    assert!(!version_at_least("3.8", "3.9"));
    let cargo = Requirement {
        source: Source::Machine {
            version: &["cargo", "--version"],
            at_least: "1.0",
        },
        ..KCAT
    };
    assert!(check(&cargo).present);
    let future = Requirement {
        source: Source::Machine {
            version: &["cargo", "--version"],
            at_least: "999",
        },
        ..KCAT
    };
    let found = check(&future);
    assert!(
        !found.present && found.detail.contains("older than 999"),
        "{found:?}"
    );
}

#[test]
fn the_table_says_where_each_thing_comes_from() {
    let findings = [
        Finding::yes("kcat 1.7.1-1"),
        Finding::no("package rust-web-llvm is not installed"),
    ];
    let text = table(&[KCAT, LLD], &findings);
    assert!(
        text.contains("| kcat | Debian: kcat | yes: kcat 1.7.1-1 |"),
        "{text}"
    );
    assert!(
        text.contains("| rust-lld | Debian: rust-web-llvm lld-22 | MISSING: package rust-web-llvm is not installed |"),
        "{text}"
    );
}

#[test]
fn every_registered_npm_lock_pins_its_package() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for r in requirements() {
        if let Source::NpmLocked { dir, package } = r.source {
            let version = locked_version(&root.join(dir), package);
            assert!(version.is_ok(), "{}: {version:?}", r.what);
        }
    }
}

#[test]
fn doctor_fails_when_anything_is_missing() {
    let missing = Requirement {
        source: Source::Debian {
            packages: &["weir-no-such-package"],
            probe: None,
        },
        ..KCAT
    };
    let present = Requirement {
        source: Source::Debian {
            packages: &["dpkg"],
            probe: None,
        },
        ..KCAT
    };
    assert!(doctor(&[present]));
    assert!(!doctor(&[present, missing]));
}
