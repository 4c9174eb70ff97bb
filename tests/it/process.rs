//! The process itself: start on defaults, configuration sources and their errors, logging,
//! the data directory lock, the admin listener's limits, and clean shutdown on signals.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;

use weir_tests::{WAIT, Weir, http_get, run_weir};

#[test]
fn sigint_stops_cleanly_with_exit_0() {
    let mut weir = Weir::builder().start().unwrap();
    let addr = weir.admin_addr().unwrap();
    assert_eq!(
        http_get(addr, "/health").unwrap(),
        (200, "ready\n".to_owned())
    );
    weir.signal(libc::SIGINT).unwrap();
    let status = weir.wait_exit().unwrap();
    assert_eq!(status.code(), Some(0), "log:\n{}", weir.log().join("\n"));
    weir.wait_for_log("SIGINT received").unwrap();
    weir.wait_for_log("shutdown complete").unwrap();
}

#[test]
fn sigterm_stops_cleanly_with_exit_0() {
    let mut weir = Weir::builder().start().unwrap();
    weir.signal(libc::SIGTERM).unwrap();
    let status = weir.wait_exit().unwrap();
    assert_eq!(status.code(), Some(0), "log:\n{}", weir.log().join("\n"));
    weir.wait_for_log("SIGTERM received").unwrap();
}

/// The README's run command uses no configuration at all: the embedded defaults put MQTT on
/// 1883 (and over WebSocket on 9001), Kafka on 9092, admin HTTP on loopback's 8080 and data
/// under ./weir-data.
#[test]
fn embedded_defaults_need_no_config() {
    let mut weir = Weir::builder().defaults_only().start().unwrap();
    let admin = weir.admin_addr().unwrap();
    assert_eq!(admin.to_string(), "127.0.0.1:8080");
    assert_eq!(weir.mqtt_addr().unwrap().to_string(), "0.0.0.0:1883");
    assert_eq!(
        weir.mqtt_websocket_addr().unwrap().to_string(),
        "0.0.0.0:9001"
    );
    assert_eq!(weir.kafka_addr().unwrap().to_string(), "0.0.0.0:9092");
    let lock = weir.cwd().join("weir-data").join("weir.lock");
    let pid = std::fs::read_to_string(&lock).unwrap();
    assert_eq!(pid.trim(), weir.pid().to_string());
    let local = "127.0.0.1:8080".parse().unwrap();
    assert_eq!(http_get(local, "/health").unwrap().0, 200);
    weir.signal(libc::SIGINT).unwrap();
    assert_eq!(weir.wait_exit().unwrap().code(), Some(0));
}

#[test]
fn config_file_value_error_names_key_file_and_line_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("weir.toml");
    std::fs::write(
        &file,
        "# broker\n[admin]\nlisten = \"127.0.0.1:0\"\nconnections_max = \"lots\"\n",
    )
    .unwrap();
    let (code, out) = run_weir(&["--config", "weir.toml"], &[], dir.path()).unwrap();
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("weir.toml:4: key `admin.connections_max`: expected an integer"),
        "{out}"
    );
    // Nothing was started: no data directory was created.
    assert!(!dir.path().join("weir-data").exists());
}

#[test]
fn unknown_key_in_file_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("w.toml"),
        "[log]\nformat = \"json\"\nlevl = \"debug\"\n",
    )
    .unwrap();
    let (code, out) = run_weir(&["-c", "w.toml", "serve"], &[], dir.path()).unwrap();
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("w.toml:3: key `log.levl`: unknown key (did you mean `log.level`?)"),
        "{out}"
    );
}

#[test]
fn toml_syntax_error_exits_2_with_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("w.toml"), "data_dir = \"d\"\n[admin\n").unwrap();
    let (code, out) = run_weir(&["-c", "w.toml"], &[], dir.path()).unwrap();
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("w.toml:2: invalid TOML"), "{out}");
}

#[test]
fn missing_config_file_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = run_weir(&["-c", "nope.toml"], &[], dir.path()).unwrap();
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("cannot read config file nope.toml"), "{out}");
}

#[test]
fn environment_value_error_names_the_variable_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("WEIR_SHUTDOWN_DRAIN_TIMEOUT_MS", "10s")];
    let (code, out) = run_weir(&[], &env, dir.path()).unwrap();
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(
            "environment variable WEIR_SHUTDOWN_DRAIN_TIMEOUT_MS (key `shutdown.drain_timeout_ms`)"
        ),
        "{out}"
    );
}

#[test]
fn bad_command_line_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = run_weir(&["--log-format", "xml"], &[], dir.path()).unwrap();
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("invalid value 'xml'"), "{out}");
}

/// Precedence: file < environment < flag.
#[test]
fn environment_overrides_file_and_flag_overrides_environment() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("w.toml"),
        "data_dir = \"from-file\"\n[log]\nformat = \"text\"\n",
    )
    .unwrap();
    let mut weir = Weir::builder()
        .cwd(dir.path())
        .arg("-c")
        .arg("w.toml")
        .arg("--log-format")
        .arg("json")
        .env("WEIR_DATA_DIR", "from-env")
        .env("WEIR_NO_SUCH_KEY", "1")
        .start()
        .unwrap();
    assert!(dir.path().join("from-env/weir.lock").exists());
    assert!(!dir.path().join("from-file").exists());
    weir.wait_for_log("WEIR_NO_SUCH_KEY").unwrap();
    weir.signal(libc::SIGTERM).unwrap();
    assert_eq!(weir.wait_exit().unwrap().code(), Some(0));
    // --log-format json beat the file's `text`: every line is a JSON object.
    for line in weir.log() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            value.get("level").is_some() && value.get("message").is_some(),
            "{line}"
        );
    }
}

#[test]
fn second_broker_on_the_same_data_dir_is_refused() {
    let mut first = Weir::builder().start().unwrap();
    let data = first.cwd().join("weir-data");
    let mut second = Weir::builder()
        .env("WEIR_DATA_DIR", data.to_string_lossy())
        .spawn()
        .unwrap();
    let status = second.wait_exit().unwrap();
    assert_eq!(status.code(), Some(1));
    let message = format!("in use by another weir process (pid {})", first.pid());
    second.wait_for_log(&message).unwrap();
    // The first broker is unaffected.
    let addr = first.admin_addr().unwrap();
    assert_eq!(http_get(addr, "/health").unwrap().0, 200);
}

#[test]
fn admin_port_in_use_fails_with_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut weir = Weir::builder()
        .env("WEIR_ADMIN_LISTEN", &addr)
        .spawn()
        .unwrap();
    assert_eq!(weir.wait_exit().unwrap().code(), Some(1));
    weir.wait_for_log(&format!(
        "cannot listen on {addr} for admin HTTP (admin.listen)"
    ))
    .unwrap();
}

/// `admin.connections_max`: a connection beyond the limit is closed as soon as it is accepted;
/// once one closes, a new one is served.
#[test]
fn admin_connection_limit_closes_extra_connections() {
    let mut weir = Weir::builder()
        .env("WEIR_ADMIN_CONNECTIONS_MAX", "2")
        .start()
        .unwrap();
    let addr = weir.admin_addr().unwrap();
    let held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut stream = TcpStream::connect(addr).unwrap();
            // A full request on a kept-alive connection proves the server holds it.
            write!(stream, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut buf = [0u8; 12];
            stream.set_read_timeout(Some(WAIT)).unwrap();
            stream.read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"HTTP/1.1 200");
            stream
        })
        .collect();
    let mut extra = TcpStream::connect(addr).unwrap();
    extra.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 1];
    let read = extra.read(&mut buf);
    assert!(
        matches!(read, Ok(0)) || read.is_err(),
        "extra connection was served: {read:?}"
    );
    drop(held);
    // The permits return when the server sees the held connections close; retry until then.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match http_get(addr, "/health") {
            Ok((200, _)) => break,
            other => assert!(
                std::time::Instant::now() < deadline,
                "never served again: {other:?}"
            ),
        }
    }
}

/// `admin.header_timeout_ms`: a client that connects and says nothing is disconnected.
#[test]
fn admin_header_timeout_closes_silent_connections() {
    let mut weir = Weir::builder()
        .env("WEIR_ADMIN_HEADER_TIMEOUT_MS", "200")
        .start()
        .unwrap();
    let addr = weir.admin_addr().unwrap();
    let mut silent = TcpStream::connect(addr).unwrap();
    silent.set_read_timeout(Some(WAIT)).unwrap();
    let mut response = Vec::new();
    // read_to_end returns when the server closes; a timeout error fails the test.
    silent.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
}

#[test]
fn unknown_admin_paths_are_404() {
    let mut weir = Weir::builder().start().unwrap();
    let addr = weir.admin_addr().unwrap();
    assert_eq!(http_get(addr, "/nope").unwrap().0, 404);
}

/// `weir --help`, docs/config.md and the config struct agree. (The struct/docs half is the
/// unit test `docs_config_md_matches_the_keys` in the server crate; this is the help half.)
#[test]
fn help_documents_every_key_in_docs_config_md() {
    let dir = tempfile::tempdir().unwrap();
    let (code, help) = run_weir(&["--help"], &[], dir.path()).unwrap();
    assert_eq!(code, 0, "{help}");
    let docs_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/config.md");
    let docs = std::fs::read_to_string(docs_path).unwrap();
    let rows: Vec<&str> = docs
        .lines()
        .filter(|line| line.starts_with("| `"))
        .collect();
    assert!(rows.len() >= 5, "docs/config.md has too few key rows");
    for row in rows {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let key = cells[1].trim_matches('`');
        let env = cells[2].trim_matches('`');
        let default = cells[4].trim_matches('`');
        let entry = format!("{key} / {env}  [");
        assert!(help.contains(&entry), "--help lacks {entry}\n{help}");
        assert!(
            help.contains(&format!("default: {default}]")),
            "--help lacks default of {key}"
        );
    }
    let (code, serve_help) = run_weir(&["serve", "--help"], &[], dir.path()).unwrap();
    assert_eq!(code, 0);
    assert!(serve_help.contains("admin.connections_max / WEIR_ADMIN_CONNECTIONS_MAX"));
}
