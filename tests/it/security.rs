//! Locking the doors: the admin API's token (`admin.token_file`) and its loopback default;
//! MQTT clients' user names and passwords (`weir user`, a Mosquitto password file).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use weir_tests::{
    WAIT, Weir, http_get, http_request_with_token, plugin_wasm, run_weir, run_weir_with_input,
};

const TOKEN: &str = "5f0c2a9e6b7d4e1f8a3c0b2d9e7f6a1c";

/// Writes `token` to `dir`/admin-token, a file only its owner may read (a new file renamed
/// over the old one, as a rotation does); returns its path.
fn token_file(dir: &Path, token: &str) -> String {
    let (path, new) = (dir.join("admin-token"), dir.join("admin-token.new"));
    std::fs::write(&new, format!("{token}\n")).expect("write the token file");
    std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
    std::fs::rename(&new, &path).expect("rename the token file");
    path.display().to_string()
}

/// A broker whose admin API wants the token of `dir`/admin-token ([`TOKEN`]), with `env`;
/// the token file's path.
fn guarded_broker(dir: &Path, env: &[(&str, &str)]) -> (Weir, String) {
    let file = token_file(dir, TOKEN);
    let mut builder = Weir::builder().env("WEIR_ADMIN_TOKEN_FILE", &file);
    for &(key, value) in env {
        builder = builder.env(key, value);
    }
    (builder.start().expect("the broker starts"), file)
}

/// The admin token is read again when its file changes and on SIGHUP: the new token opens
/// the API at once and the old one no longer does; a file whose token is refused (too short)
/// keeps the token in force.
#[test]
fn the_admin_token_is_reloaded_when_its_file_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (mut weir, file) = guarded_broker(dir.path(), &[]);
    let addr = weir.admin_addr().unwrap();
    let status = |token: &str| {
        let get = ("GET", "/plugins", &b""[..]);
        http_request_with_token(addr, Some(token), get).unwrap().0
    };
    assert_eq!(status(TOKEN), 200);
    let rotated = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";
    let replace = |token: &str| drop(token_file(dir.path(), token));
    replace(rotated);
    weir.wait_for_log("admin token reloaded after a change")
        .unwrap();
    assert_eq!(status(rotated), 200);
    assert_eq!(status(TOKEN), 401);
    replace("short");
    weir.wait_for_log("keeping the admin token in force")
        .unwrap();
    assert_eq!(
        status(rotated),
        200,
        "a refused token keeps the one in force"
    );
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    weir.signal(libc::SIGHUP).unwrap();
    weir_tests::wait_until("the first token back", WAIT, || status(TOKEN) == 200);
    assert_eq!(status(rotated), 401);
}

/// With `admin.token_file`, plugin management without the token (or with a wrong one, or
/// without the `Bearer` scheme) gets 401 and deploys nothing; `/health` and `/metrics` stay
/// open; the same requests with the token work, and `weir plugin` sends the token from the
/// configured file.
#[test]
fn admin_requests_without_the_token_get_401_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut weir, file) = guarded_broker(dir.path(), &[]);
    let addr = weir.admin_addr().unwrap();
    assert_eq!(http_get(addr, "/health").unwrap().0, 200);
    assert_eq!(http_get(addr, "/metrics").unwrap().0, 200);
    let module = std::fs::read(plugin_wasm("passthrough")).unwrap();
    let binding = br#"{"topics": ["guarded"], "plugins": [{"module": "intruder"}]}"#;
    let wrong = format!("{TOKEN}0");
    for token in [None, Some(wrong.as_str()), Some("")] {
        for (method, path, body) in [
            ("PUT", "/plugins/modules/intruder", &module[..]),
            ("PUT", "/plugins/bindings/intruder", &binding[..]),
            ("DELETE", "/plugins/bindings/intruder", &b""[..]),
            ("GET", "/plugins", &b""[..]),
        ] {
            let (status, text) =
                http_request_with_token(addr, token, (method, path, body)).unwrap();
            assert_eq!(status, 401, "{method} {path} with {token:?}: {text}");
            assert!(text.contains("admin.token_file"), "{text}");
        }
    }
    // Nothing was deployed; the token opens the same doors.
    let with_token = |method, path, body| {
        http_request_with_token(addr, Some(TOKEN), (method, path, body)).unwrap()
    };
    let (status, listed) = with_token("GET", "/plugins", &b""[..]);
    assert_eq!(status, 200, "{listed}");
    assert!(!listed.contains("intruder"), "{listed}");
    let (status, text) = with_token("PUT", "/plugins/modules/intruder", &module[..]);
    assert_eq!(status, 200, "{text}");
    // `weir plugin list` reads the token from the configured file; without it, it is refused.
    let admin = addr.to_string();
    let list = ["plugin", "list", "--admin", admin.as_str()];
    let env = [("WEIR_ADMIN_TOKEN_FILE", file.as_str())];
    let (code, output) = run_weir(&list, &env, dir.path()).unwrap();
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("intruder"), "{output}");
    let (code, output) = run_weir(&list, &[], dir.path()).unwrap();
    assert_ne!(code, 0, "{output}");
    assert!(output.contains("401"), "{output}");
}

/// `admin.metrics_require_token`: `/metrics` needs the token too; `/health` never does.
#[test]
fn metrics_can_require_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("WEIR_ADMIN_METRICS_REQUIRE_TOKEN", "true")];
    let (mut weir, _) = guarded_broker(dir.path(), &env);
    let addr = weir.admin_addr().unwrap();
    assert_eq!(http_get(addr, "/health").unwrap().0, 200);
    assert_eq!(http_get(addr, "/metrics").unwrap().0, 401);
    let (status, text) =
        http_request_with_token(addr, Some(TOKEN), ("GET", "/metrics", b"")).unwrap();
    assert_eq!(status, 200);
    assert!(text.contains("weir_"), "{text}");
}

/// Without a token the admin API may only listen on loopback: any other address, or a token
/// file with too short a token, stops Weir at start with the reason.
#[test]
fn an_unguarded_admin_listener_off_loopback_refuses_to_start() {
    let mut weir = Weir::builder()
        .env("WEIR_ADMIN_LISTEN", "0.0.0.0:0")
        .spawn()
        .unwrap();
    assert_eq!(weir.wait_exit().unwrap().code(), Some(1));
    weir.wait_for_log("admin.token_file is not set").unwrap();

    let dir = tempfile::tempdir().unwrap();
    let file = token_file(dir.path(), "short");
    let mut weir = Weir::builder()
        .env("WEIR_ADMIN_LISTEN", "0.0.0.0:0")
        .env("WEIR_ADMIN_TOKEN_FILE", &file)
        .spawn()
        .unwrap();
    assert_eq!(weir.wait_exit().unwrap().code(), Some(1));
    weir.wait_for_log("it needs at least 16").unwrap();
}

/// Publishes `message` to `topic` with mosquitto_pub (MQTT `version`: "mqttv311" or
/// "mqttv5") as `user` (with `password`, if given); its exit status and what it printed.
fn mosquitto_pub(
    addr: std::net::SocketAddr,
    version: &str,
    credentials: Option<(&str, &str)>,
    (topic, message): (&str, &str),
) -> (bool, String) {
    let mut args = vec!["-V", version, "-q", "1", "-t", topic, "-m", message];
    if let Some((user, password)) = credentials {
        args.extend(["-u", user, "-P", password]);
    }
    mosquitto_client("mosquitto_pub", addr, &args)
}

/// Runs `program` (mosquitto_pub or mosquitto_sub) against `addr` with `args`, for at most
/// [`WAIT`]; its exit status and what it printed.
pub(crate) fn mosquitto_client(
    program: &str,
    addr: std::net::SocketAddr,
    args: &[&str],
) -> (bool, String) {
    let mut command = Command::new(program);
    command
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .expect("mosquitto-clients is installed by `cargo xtask test`");
    let mut status = None;
    weir_tests::wait_until("the mosquitto client to end", WAIT, || {
        status = child.try_wait().expect("its status");
        status.is_some()
    });
    let output = child.wait_with_output().expect("its output");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (status.is_some_and(|s| s.success()), text)
}

/// Adds `user` with `password` to the users file at `file` through `weir user add`, the
/// password on standard input.
pub(crate) fn add_user(file: &str, user: &str, password: &str) {
    let args = [
        "user",
        "add",
        user,
        "--users-file",
        file,
        "--iterations",
        "1000",
    ];
    let input = format!("{password}\n");
    let (code, output) =
        run_weir_with_input(&args, &[], Path::new("."), input.as_bytes()).expect("weir runs");
    assert_eq!(code, 0, "{output}");
}

/// With a users file and anonymous access off, mosquitto_pub (MQTT 3.1.1 and 5) gets in only
/// with a known user's password: a wrong password or an unknown user gets "bad user name or
/// password", no credentials "not authorised", and only the accepted publishes are stored.
/// `weir user list` shows the user and the SASL mechanisms its keys allow.
#[test]
fn mqtt_clients_need_a_known_user_and_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users").display().to_string();
    add_user(&users, "alice", "correct horse");
    let list = ["user", "list", "--users-file", &users];
    let (code, listed) = run_weir(&list, &[], dir.path()).unwrap();
    assert_eq!(code, 0, "{listed}");
    assert_eq!(listed, "alice\tPLAIN SCRAM-SHA-256 SCRAM-SHA-512\n");
    let mut weir = Weir::builder()
        .env("WEIR_AUTH_USERS_FILE", &users)
        .env("WEIR_AUTH_ALLOW_ANONYMOUS", "false")
        .env("WEIR_AUTH_REFUSED_CONNECT_DELAY_MS", "100")
        .start()
        .unwrap();
    weir.wait_for_log("1 users loaded").unwrap();
    let addr = weir.mqtt_addr().unwrap();
    for version in ["mqttv311", "mqttv5"] {
        let (ok, text) = mosquitto_pub(
            addr,
            version,
            Some(("alice", "correct horse")),
            ("auth/t", "in"),
        );
        assert!(ok, "{version}: {text}");
        for credentials in [Some(("alice", "wrong")), Some(("mallory", "correct horse"))] {
            let (ok, text) = mosquitto_pub(addr, version, credentials, ("auth/t", "guess"));
            assert!(!ok, "{version} {credentials:?}: {text}");
            assert!(
                text.to_lowercase().contains("bad user name or password"),
                "{version}: {text}"
            );
        }
        let (ok, text) = mosquitto_pub(addr, version, None, ("auth/t", "anonymous"));
        assert!(!ok, "{version}: {text}");
        assert!(
            text.to_lowercase().contains("not authori"),
            "{version}: {text}"
        );
    }
    weir.wait_for_log("MQTT connection refused: bad user name or password")
        .unwrap();
    weir.signal(libc::SIGTERM).unwrap();
    assert_eq!(weir.wait_exit().unwrap().code(), Some(0));
    let stored = weir_tests::stored_values(weir.cwd(), "auth");
    assert_eq!(
        stored,
        [b"in".to_vec(), b"in".to_vec()],
        "only the accepted publishes"
    );
}

/// A password file written by Mosquitto 2.0's own `mosquitto_passwd` works unchanged
/// (`auth.mosquitto_password_file`); a user added later to it, or a password changed in
/// Weir's users file, is taken without a restart (the files are watched, and SIGHUP reloads).
#[test]
fn a_mosquitto_passwd_file_works_unchanged_and_changes_are_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let passwd = weir_tests::unpacked_tool("mosquitto", "usr/bin/mosquitto_passwd");
    let file = dir.path().join("mosquitto.passwd");
    let run = |args: &[&str]| {
        let status = Command::new(&passwd)
            .args(args)
            .status()
            .expect("mosquitto_passwd runs");
        assert!(status.success(), "mosquitto_passwd {args:?}");
    };
    let file_text = file.display().to_string();
    run(&["-c", "-b", &file_text, "bob", "bobs password"]);
    let users = dir.path().join("users").display().to_string();
    let mut weir = Weir::builder()
        .env("WEIR_AUTH_MOSQUITTO_PASSWORD_FILE", &file_text)
        .env("WEIR_AUTH_USERS_FILE", &users)
        .env("WEIR_AUTH_ALLOW_ANONYMOUS", "false")
        .env("WEIR_AUTH_REFUSED_CONNECT_DELAY_MS", "100")
        .start()
        .unwrap();
    let addr = weir.mqtt_addr().unwrap();
    let (ok, text) = mosquitto_pub(
        addr,
        "mqttv311",
        Some(("bob", "bobs password")),
        ("m/t", "1"),
    );
    assert!(ok, "{text}");
    let (ok, _) = mosquitto_pub(addr, "mqttv311", Some(("carol", "carols")), ("m/t", "2"));
    assert!(!ok, "carol is not known yet");
    run(&["-b", &file_text, "carol", "carols"]);
    weir.wait_for_log("credentials reloaded after a change: 2 users")
        .unwrap();
    let (ok, text) = mosquitto_pub(addr, "mqttv311", Some(("carol", "carols")), ("m/t", "3"));
    assert!(ok, "{text}");
    // Weir's own file, changed and announced with SIGHUP.
    add_user(&users, "dave", "first");
    weir.signal(libc::SIGHUP).unwrap();
    weir.wait_for_log("credentials reloaded after SIGHUP: 3 users")
        .unwrap();
    let (ok, text) = mosquitto_pub(addr, "mqttv5", Some(("dave", "first")), ("m/t", "4"));
    assert!(ok, "{text}");
}

/// Runs `client` of `tests/compat/sasl_scenarios.py` with SASL `mechanism` as `user`; its
/// steps by name.
fn sasl_client(
    client: &str,
    addr: std::net::SocketAddr,
    (mechanism, user, password): (&str, &str, &str),
    topic: &str,
) -> std::collections::HashMap<String, serde_json::Value> {
    let package = if client == "confluent" {
        "confluent-kafka"
    } else {
        "kafka-python"
    };
    let addr = addr.to_string();
    let args = [client, &addr, mechanism, user, password, topic];
    weir_tests::run_compat_script("python3", "sasl_scenarios.py", package, &args)
}

/// Kafka clients authenticate with SASL on the plaintext listener: confluent-kafka
/// (librdkafka 2.16) with SCRAM-SHA-512 and PLAIN, kafka-python with SCRAM-SHA-256, kcat
/// (librdkafka 2.0) with SCRAM-SHA-512; each produces and reads back. A wrong password fails
/// the exchange (nothing stored), and with anonymous access off a client without SASL gets
/// nothing.
#[test]
fn kafka_clients_authenticate_with_sasl_plain_and_scram() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users").display().to_string();
    add_user(&users, "alice", "alices password");
    let mut weir = Weir::builder()
        .env("WEIR_AUTH_USERS_FILE", &users)
        .env("WEIR_AUTH_ALLOW_ANONYMOUS", "false")
        .start()
        .unwrap();
    let addr = weir.kafka_addr().unwrap();
    let alice = |mechanism| (mechanism, "alice", "alices password");
    for (client, mechanism, topic) in [
        ("confluent", "SCRAM-SHA-512", "scram512"),
        ("confluent", "PLAIN", "plain"),
        ("kafka-python", "SCRAM-SHA-256", "scram256"),
    ] {
        let steps = sasl_client(client, addr, alice(mechanism), topic);
        assert_eq!(
            steps["produce"]["delivered"], true,
            "{client} {mechanism}: {steps:?}"
        );
        let read = &steps["consume"]["values"];
        assert_eq!(
            read,
            &serde_json::json!(["over sasl"]),
            "{client} {mechanism}"
        );
    }
    for (client, mechanism) in [("confluent", "SCRAM-SHA-512"), ("kafka-python", "PLAIN")] {
        let wrong = (mechanism, "alice", "guess");
        let steps = sasl_client(client, addr, wrong, "refused");
        assert_eq!(
            steps["produce"]["delivered"], false,
            "{client} {mechanism}: {steps:?}"
        );
    }
    // kcat (Debian's, librdkafka 2.0.2) with SCRAM-SHA-512: produce, then read back.
    let sasl = [
        "-X",
        "security.protocol=SASL_PLAINTEXT",
        "-X",
        "sasl.mechanisms=SCRAM-SHA-512",
        "-X",
        "sasl.username=alice",
        "-X",
        "sasl.password=alices password",
    ];
    let broker = addr.to_string();
    // `cargo test` puts the librdkafka rdkafka-sys built (no SCRAM) on LD_LIBRARY_PATH, where
    // kcat would pick it up instead of Debian's.
    let kcat = || {
        let mut command = Command::new("kcat");
        command.env_remove("LD_LIBRARY_PATH");
        command
    };
    let mut produce = kcat()
        .args(["-b", &broker, "-P", "-t", "kcat"])
        .args(sasl)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kcat is installed by `cargo xtask test`");
    use std::io::Write;
    let mut stdin = produce.stdin.take().unwrap();
    stdin.write_all(b"from kcat\n").unwrap();
    drop(stdin);
    let produced = produce.wait_with_output().unwrap();
    assert!(
        produced.status.success(),
        "kcat -P: {}",
        String::from_utf8_lossy(&produced.stderr)
    );
    let consumed = kcat()
        .args([
            "-b",
            &broker,
            "-C",
            "-t",
            "kcat",
            "-o",
            "beginning",
            "-e",
            "-q",
        ])
        .args(sasl)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&consumed.stdout).trim(),
        "from kcat"
    );
    // Without SASL, with anonymous clients refused: not even the topic list.
    let listed = kcat()
        .args(["-b", &broker, "-L", "-m", "5"])
        .output()
        .unwrap();
    assert!(
        !listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stdout)
    );
    weir.wait_for_log("before SASL authentication").unwrap();
    weir.signal(libc::SIGTERM).unwrap();
    assert_eq!(weir.wait_exit().unwrap().code(), Some(0));
    let stored = weir_tests::stored_values(weir.cwd(), "scram512");
    assert_eq!(stored, [b"over sasl".to_vec()]);
}
