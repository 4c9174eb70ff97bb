//! TLS on the secure listeners (`mqtt.tls_listen`, `mqtt.websocket_tls_listen`,
//! `kafka.tls_listen`) with real clients trusting the test CA: mosquitto_pub/mosquitto_sub,
//! paho-mqtt, kcat, confluent-kafka, kafka-python and kafkajs; client certificates
//! (`tls.client_ca_file`, `tls.require_client_cert`) and the certificate's common name as the
//! MQTT user name (`tls.identity_as_username`); the protocol versions offered (openssl
//! s_client); certificate rotation under 1,000 open connections; hostile lengths after the
//! handshake. The certificates come from [`weir_tests::pki`]; where a test needs the bytes on
//! the wire, it speaks MQTT or Kafka by hand over rustls.

use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use serde_json::json;
use weir_tests::pki::{
    CertFiles, Pki, TlsStream, client_config, peer_cert, tls_closed_by_peer, tls_connect, tls_send,
};
use weir_tests::{WAIT, Weir, WeirBuilder, output_within, run_compat_script};

use crate::mqtt_clients::MosquittoSub;
use crate::security::add_user;

/// What the broker logs when it has taken new certificate files.
const RELOADED: &str = "tls certificate reloaded";

/// What the broker logs when new certificate files do not parse.
const KEPT: &str = "keeping the previous TLS certificate";

/// A broker serving `pki`'s server certificate on the three TLS listeners (each on
/// 127.0.0.1:0), next to the plaintext ones.
fn tls_broker(pki: &Pki) -> WeirBuilder {
    Weir::builder()
        .env("WEIR_TLS_CERT_FILE", pki.server.cert_path())
        .env("WEIR_TLS_KEY_FILE", pki.server.key_path())
        .env("WEIR_MQTT_TLS_LISTEN", "127.0.0.1:0")
        .env("WEIR_MQTT_WEBSOCKET_TLS_LISTEN", "127.0.0.1:0")
        .env("WEIR_KAFKA_TLS_LISTEN", "127.0.0.1:0")
}

/// [`tls_broker`] that wants of every TLS client a certificate `pki`'s CA signed.
fn mutual_tls_broker(pki: &Pki) -> WeirBuilder {
    tls_broker(pki)
        .env("WEIR_TLS_CLIENT_CA_FILE", pki.ca_path())
        .env("WEIR_TLS_REQUIRE_CLIENT_CERT", "true")
}

/// A mosquitto client's TLS arguments: the test CA, `client`'s certificate and key if given,
/// then `more`.
fn tls_args(pki: &Pki, client: Option<&CertFiles>, more: &[&str]) -> Vec<String> {
    let mut args = vec!["--cafile".to_owned(), pki.ca_path()];
    if let Some(client) = client {
        args.extend(["--cert".to_owned(), client.cert_path()]);
        args.extend(["--key".to_owned(), client.key_path()]);
    }
    args.extend(more.iter().map(|arg| (*arg).to_owned()));
    args
}

/// `args` as string slices.
fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Runs mosquitto_pub with `args` against `addr`, for at most [`WAIT`]; whether it
/// succeeded, and what it printed (or that it did not end).
fn mosquitto_pub(addr: SocketAddr, args: &[String]) -> (bool, String) {
    let mut command = Command::new("mosquitto_pub");
    command
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(args);
    match output_within(&mut command, None, WAIT) {
        Ok(output) => {
            let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&output.stderr));
            (output.status.success(), text)
        }
        Err(e) => (false, format!("{e:#}")),
    }
}

/// An MQTT packet: `first` (type and flags), the remaining length, `body`.
fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// An MQTT string: two bytes of length, then the bytes.
fn mqtt_string(text: &str) -> Vec<u8> {
    let mut out = (text.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out
}

/// An MQTT 3.1.1 CONNECT: clean session, keep-alive 0 (no deadline), `client_id`.
fn connect_v311(client_id: &str) -> Vec<u8> {
    let mut body = mqtt_string("MQTT");
    body.extend_from_slice(&[4, 0x02, 0, 0]);
    body.extend_from_slice(&mqtt_string(client_id));
    packet(0x10, &body)
}

/// An MQTT 5 CONNECT: clean start, keep-alive 0, no properties, `client_id`.
fn connect_v5(client_id: &str) -> Vec<u8> {
    let mut body = mqtt_string("MQTT");
    body.extend_from_slice(&[5, 0x02, 0, 0, 0]);
    body.extend_from_slice(&mqtt_string(client_id));
    packet(0x10, &body)
}

/// Reads one MQTT packet (fixed header and all) from `stream`.
fn read_packet(stream: &mut TlsStream) -> std::io::Result<Vec<u8>> {
    let mut out = vec![0u8];
    stream.read_exact(&mut out[..1])?;
    let mut len = 0usize;
    for shift in [0, 7, 14, 21] {
        let mut byte = [0u8];
        stream.read_exact(&mut byte)?;
        out.push(byte[0]);
        len |= usize::from(byte[0] & 0x7f) << shift;
        if byte[0] & 0x80 == 0 {
            break;
        }
    }
    let start = out.len();
    out.resize(start + len, 0);
    stream.read_exact(&mut out[start..])?;
    Ok(out)
}

/// An MQTT 3.1.1 client over TLS to `addr` as `client_id`, its CONNECT accepted.
fn mqtt_client(
    addr: SocketAddr,
    config: &std::sync::Arc<rustls::ClientConfig>,
    client_id: &str,
) -> TlsStream {
    let mut stream = tls_connect(addr, config).expect("the TLS handshake");
    tls_send(&mut stream, &connect_v311(client_id)).expect("CONNECT written");
    let connack = read_packet(&mut stream).expect("CONNACK");
    assert_eq!(connack, [0x20, 2, 0, 0], "{client_id}: CONNACK");
    stream
}

/// Sends PINGREQ on every connection, then checks each answers PINGRESP.
fn all_answer_pingreq(clients: &mut [TlsStream]) {
    for (i, stream) in clients.iter_mut().enumerate() {
        tls_send(stream, &[0xc0, 0]).unwrap_or_else(|e| panic!("PINGREQ on connection {i}: {e}"));
    }
    for (i, stream) in clients.iter_mut().enumerate() {
        let mut answer = [0u8; 2];
        stream
            .read_exact(&mut answer)
            .unwrap_or_else(|e| panic!("PINGRESP on connection {i}: {e}"));
        assert_eq!(answer, [0xd0, 0], "connection {i}");
    }
}

/// mosquitto_pub and mosquitto_sub 2.0 over MQTT TLS with `--cafile` and no client
/// certificate: the subscriber gets what the publisher sent; a plaintext client on the TLS
/// port gets nowhere. With `tls.require_client_cert` and the CA as `tls.client_ca_file`,
/// clients presenting a certificate the CA signed (`--cert`, `--key`) get in; a client with
/// no certificate, with one signed by another CA and with an expired one are each refused,
/// and nothing they sent reaches the subscriber.
#[test]
fn mosquitto_clients_over_tls_with_and_without_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path()).unwrap();
    let mut weir = tls_broker(&pki).start().unwrap();
    let addr = weir.mqtt_tls_addr().unwrap();
    let sub_args = tls_args(&pki, None, &["-t", "tls/a", "-q", "1", "-C", "1"]);
    let sub = MosquittoSub::start(addr, &strs(&sub_args));
    let (ok, text) = mosquitto_pub(
        addr,
        &tls_args(&pki, None, &["-t", "tls/a", "-q", "1", "-m", "over tls"]),
    );
    assert!(ok, "{text}");
    assert_eq!(sub.messages(), ["over tls"]);
    let plain = ["-t", "tls/a", "-q", "1", "-m", "in clear"].map(str::to_owned);
    let (ok, text) = mosquitto_pub(addr, &plain);
    assert!(!ok, "a plaintext client on the TLS port: {text}");
    drop(weir);

    let mut weir = mutual_tls_broker(&pki).start().unwrap();
    let addr = weir.mqtt_tls_addr().unwrap();
    let reader = pki.client("reader").unwrap();
    let writer = pki.client("writer").unwrap();
    let format = ["-t", "mtls/#", "-q", "1", "-C", "2", "-F", "%t|%p"];
    let sub_args = tls_args(&pki, Some(&reader), &format);
    let sub = MosquittoSub::start(addr, &strs(&sub_args));
    let publish = |client: Option<&CertFiles>, topic: &str, message: &str| {
        mosquitto_pub(
            addr,
            &tls_args(&pki, client, &["-t", topic, "-q", "1", "-m", message]),
        )
    };
    let (ok, text) = publish(Some(&writer), "mtls/a", "with a certificate");
    assert!(ok, "{text}");
    let foreign = pki.foreign_client("writer").unwrap();
    let expired = pki.expired_client("writer").unwrap();
    for (what, client) in [
        ("no certificate", None),
        ("another CA's certificate", Some(&foreign)),
        ("an expired certificate", Some(&expired)),
    ] {
        let (ok, text) = publish(client, "mtls/refused", what);
        assert!(!ok, "{what} got in: {text}");
    }
    let (ok, text) = publish(Some(&writer), "mtls/b", "last");
    assert!(ok, "{text}");
    assert_eq!(
        sub.messages(),
        ["mtls/a|with a certificate", "mtls/b|last"],
        "nothing from the refused clients"
    );
}

/// paho-mqtt 2.1 (MQTT 3.1.1 and 5) over TLS and over secure WebSocket, `tls_set` with the
/// test CA (paho checks the certificate and the name, 127.0.0.1): each client gets what the
/// other publishes at QoS 0, 1 and 2, payloads exact and in order, a 200,000-byte one too;
/// the connection speaks TLS 1.3, the newest both sides offer.
#[test]
fn paho_over_tls_and_secure_websocket_round_trips_qos_0_1_2() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path()).unwrap();
    let mut weir = tls_broker(&pki).start().unwrap();
    let tls = weir.mqtt_tls_addr().unwrap().to_string();
    let wss = weir.mqtt_websocket_tls_addr().unwrap().to_string();
    let ca = pki.ca_path();
    for version in ["v311", "v5"] {
        let scenario = format!("tls_{version}");
        let args = [scenario.as_str(), &tls, &wss, &ca];
        let steps = run_compat_script("python3", "paho_scenarios.py", "paho-mqtt", &args);
        let step = &steps["tls"];
        assert_eq!(step["connack"], json!([0, 0]), "{version}: {step}");
        assert_eq!(step["granted"], json!([[2], [2]]), "{version}: {step}");
        assert_eq!(step["protocol"], "TLSv1.3", "{version}");
        for direction in ["down", "up"] {
            for qos in 0..3 {
                let result = &step["results"][direction][format!("q{qos}")];
                assert_eq!(
                    result,
                    &json!({"exact_and_in_order": true, "received": 21, "qos": [qos]}),
                    "{version} {direction} QoS {qos}"
                );
            }
        }
    }
}

/// kcat with `args`, Debian's librdkafka (2.0.2) rather than the one `cargo test` puts on
/// LD_LIBRARY_PATH (rdkafka-sys's, without SCRAM); `input` on its stdin; at most [`WAIT`].
fn kcat(args: &[&str], input: Option<&[u8]>) -> std::process::Output {
    let mut command = Command::new("kcat");
    command.env_remove("LD_LIBRARY_PATH").args(args);
    output_within(&mut command, input, WAIT)
        .expect("kcat is installed by `cargo xtask test` and ends")
}

/// Kafka clients over TLS with SASL (SASL_SSL), each checking the server's certificate and
/// name against the test CA: confluent-kafka (librdkafka 2.16) with SCRAM-SHA-512,
/// kafka-python with SCRAM-SHA-256, kcat (Debian's librdkafka 2.0) with SCRAM-SHA-512 and
/// kafkajs with PLAIN each produce a record and read it back. Metadata on the TLS listener
/// names the TLS port (kcat -L), so clients that bootstrap over TLS stay on TLS; a wrong
/// password fails over TLS as it does in clear.
#[test]
fn kafka_clients_use_sasl_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path()).unwrap();
    let users = dir.path().join("users").display().to_string();
    add_user(&users, "alice", "alices password");
    let mut weir = tls_broker(&pki)
        .env("WEIR_AUTH_USERS_FILE", &users)
        .env("WEIR_AUTH_ALLOW_ANONYMOUS", "false")
        .start()
        .unwrap();
    let tls = weir.kafka_tls_addr().unwrap();
    let plain = weir.kafka_addr().unwrap();
    let addr = tls.to_string();
    let ca = pki.ca_path();
    for (client, package, mechanism, topic) in [
        (
            "confluent",
            "confluent-kafka",
            "SCRAM-SHA-512",
            "tls-scram512",
        ),
        (
            "kafka-python",
            "kafka-python",
            "SCRAM-SHA-256",
            "tls-scram256",
        ),
    ] {
        let args = [
            "--tls",
            &ca,
            client,
            &addr,
            mechanism,
            "alice",
            "alices password",
            topic,
        ];
        let steps = run_compat_script("python3", "sasl_scenarios.py", package, &args);
        assert_eq!(steps["produce"]["delivered"], true, "{client}: {steps:?}");
        assert_eq!(steps["consume"]["values"], json!(["over sasl"]), "{client}");
    }
    let wrong = [
        "--tls",
        &ca,
        "confluent",
        &addr,
        "SCRAM-SHA-512",
        "alice",
        "guess",
        "tls-refused",
    ];
    let steps = run_compat_script("python3", "sasl_scenarios.py", "confluent-kafka", &wrong);
    assert_eq!(steps["produce"]["delivered"], false, "{steps:?}");

    let js = [
        "sasl_tls",
        addr.as_str(),
        &ca,
        "plain",
        "alice",
        "alices password",
        "tls-js",
    ];
    let steps = run_compat_script("node", "kafkajs_scenarios.js", "kafkajs", &js);
    assert_eq!(steps["produce"]["delivered"], true, "{steps:?}");
    assert_eq!(steps["consume"]["values"], json!(["over tls"]));

    let ssl_location = format!("ssl.ca.location={ca}");
    let sasl = [
        "-X",
        "security.protocol=SASL_SSL",
        "-X",
        &ssl_location,
        "-X",
        "sasl.mechanisms=SCRAM-SHA-512",
        "-X",
        "sasl.username=alice",
        "-X",
        "sasl.password=alices password",
    ];
    let produced = kcat(
        &[&["-b", &addr, "-P", "-t", "tls-kcat"][..], &sasl].concat(),
        Some(b"from kcat\n"),
    );
    assert!(
        produced.status.success(),
        "kcat -P: {}",
        String::from_utf8_lossy(&produced.stderr)
    );
    let consume = ["-b", &addr, "-C", "-t", "tls-kcat", "-o", "beginning", "-e"];
    let consumed = kcat(&[&consume[..], &["-q"], &sasl].concat(), None);
    assert_eq!(
        String::from_utf8_lossy(&consumed.stdout).trim(),
        "from kcat",
        "{}",
        String::from_utf8_lossy(&consumed.stderr)
    );
    let listed = kcat(
        &[&["-b", &addr, "-L", "-m", "10"][..], &sasl].concat(),
        None,
    );
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    let brokers: Vec<&str> = (listed.lines())
        .filter(|line| line.trim_start().starts_with("broker "))
        .collect();
    assert!(!brokers.is_empty(), "{listed}");
    for line in brokers {
        assert!(
            line.contains(&format!(":{} ", tls.port()))
                || line.ends_with(&format!(":{}", tls.port())),
            "the TLS listener advertises its own port {}, not {}: {line}",
            tls.port(),
            plain.port()
        );
    }
}

/// `openssl s_client -brief` against `addr` with `version` (`-tls1_2`, ...) and every cipher
/// allowed, verifying the server's certificate against `ca`; whether it got a session, and
/// what it printed.
fn s_client(addr: SocketAddr, ca: &str, version: &str) -> (bool, String) {
    let mut command = Command::new("openssl");
    command
        .args(["s_client", "-connect", &addr.to_string(), version])
        .args(["-cipher", "DEFAULT@SECLEVEL=0", "-CAfile", ca])
        .args(["-verify_return_error", "-brief"]);
    let output = output_within(&mut command, None, WAIT)
        .expect("openssl is installed by `cargo xtask test` (Debian package openssl) and ends");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    let established = text.contains("CONNECTION ESTABLISHED");
    (output.status.success() && established, text)
}

/// Only TLS 1.2 and 1.3 are offered, on all three TLS listeners: openssl s_client (OpenSSL 3)
/// gets a session, the certificate verified against the test CA, with `-tls1_2` and
/// `-tls1_3`, and none with `-tls1_1` even with every cipher and security level allowed
/// (`DEFAULT@SECLEVEL=0`).
#[test]
fn only_tls_1_2_and_1_3_are_offered() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path()).unwrap();
    let mut weir = tls_broker(&pki).start().unwrap();
    let ca = pki.ca_path();
    let listeners = [
        ("mqtt", weir.mqtt_tls_addr().unwrap()),
        ("mqtt websocket", weir.mqtt_websocket_tls_addr().unwrap()),
        ("kafka", weir.kafka_tls_addr().unwrap()),
    ];
    for (listener, addr) in listeners {
        for (version, name) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
            let (ok, text) = s_client(addr, &ca, version);
            assert!(ok, "{listener} {version}: {text}");
            assert!(
                text.contains(&format!("Protocol version: {name}")),
                "{listener} {version}: {text}"
            );
            assert!(text.contains("Verification: OK"), "{listener}: {text}");
        }
        let (ok, text) = s_client(addr, &ca, "-tls1_1");
        assert!(!ok, "{listener} -tls1_1 got a session: {text}");
        assert!(!text.contains("Protocol version"), "{listener}: {text}");
    }
}

/// Raises this process's open-files limit to its hard limit (a broker started afterwards
/// inherits it): the rotation test holds over a thousand connections on each side.
fn raise_open_files_limit(at_least: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid rlimit.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    assert!(
        limit.rlim_cur >= at_least,
        "the open-files hard limit {} is below {at_least}",
        limit.rlim_cur
    );
}

/// Writes `text` to a new file beside `path`, then renames it over `path` (atomically: a
/// reader sees the old file or the new one, never half of one).
fn replace_file(path: &Path, text: &str) {
    let new = path.with_extension("new");
    std::fs::write(&new, text).expect("write the new file");
    std::fs::rename(&new, path).expect("rename it over the old one");
}

/// Writes `cert`'s certificate and key as `cert.pem` and `key.pem` into a new directory
/// `dir`.
fn write_pair(dir: &Path, cert: &CertFiles) {
    std::fs::create_dir(dir).expect("a new directory");
    std::fs::write(dir.join("cert.pem"), &cert.cert_pem).expect("write cert.pem");
    std::fs::write(dir.join("key.pem"), &cert.key_pem).expect("write key.pem");
}

/// Certificate rotation under load: with 1,000 MQTT clients connected over TLS, the
/// configured certificate and key are replaced three ways (new files renamed over them; the
/// directory symlink they are reached through swapped to another directory, as a Kubernetes
/// secret volume updates; a fixed file announced with SIGHUP). Each time the broker logs the
/// reload, a new handshake gets the new certificate (the end-entity DER compared), and all
/// 1,000 old connections still answer PINGREQ. A certificate file that does not parse is
/// logged and ignored, found by the periodic check or read on SIGHUP: new handshakes keep
/// getting the last good certificate.
#[test]
fn certificate_rotation_reaches_new_handshakes_and_keeps_1000_connections() {
    raise_open_files_limit(2500);
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path()).unwrap();
    let second = pki.server_cert("second").unwrap();
    let third = pki.server_cert("third").unwrap();
    let fourth = pki.server_cert("fourth").unwrap();
    // The configured paths go through a directory symlink: live -> live-1.
    let live_1 = dir.path().join("live-1");
    let live_2 = dir.path().join("live-2");
    write_pair(&live_1, &pki.server);
    write_pair(&live_2, &third);
    let live = dir.path().join("live");
    std::os::unix::fs::symlink("live-1", &live).unwrap();
    let mut weir = Weir::builder()
        .env(
            "WEIR_TLS_CERT_FILE",
            live.join("cert.pem").display().to_string(),
        )
        .env(
            "WEIR_TLS_KEY_FILE",
            live.join("key.pem").display().to_string(),
        )
        .env("WEIR_MQTT_TLS_LISTEN", "127.0.0.1:0")
        .start()
        .unwrap();
    let addr = weir.mqtt_tls_addr().unwrap();
    let config = client_config(&pki.ca_der, None).unwrap();
    // The certificate a new handshake gets (None if the handshake fails).
    let presented = || {
        tls_connect(addr, &config)
            .ok()
            .and_then(|stream| peer_cert(&stream))
    };
    assert_eq!(presented(), Some(pki.server.der.clone()));
    let mut clients: Vec<TlsStream> = (0..1000)
        .map(|i| mqtt_client(addr, &config, &format!("rotation-{i}")))
        .collect();
    all_answer_pingreq(&mut clients);

    // 1. New files renamed over the old ones, one after the other: for a moment the pair
    // does not match, which the broker may refuse (keeping the old pair) until the
    // certificate follows the key.
    replace_file(&live_1.join("key.pem"), &second.key_pem);
    replace_file(&live_1.join("cert.pem"), &second.cert_pem);
    weir_tests::wait_until("a handshake with the second certificate", WAIT, || {
        presented() == Some(second.der.clone())
    });
    weir_tests::wait_until("the reload logged", WAIT, || {
        weir.count_in_log(RELOADED) >= 1
    });
    all_answer_pingreq(&mut clients);

    // 2. The directory symlink swapped to live-2 (atomically: a new link renamed over it).
    let new_link = dir.path().join("live.new");
    std::os::unix::fs::symlink("live-2", &new_link).unwrap();
    std::fs::rename(&new_link, &live).unwrap();
    weir_tests::wait_until("a handshake with the third certificate", WAIT, || {
        presented() == Some(third.der.clone())
    });
    weir_tests::wait_until("the second reload logged", WAIT, || {
        weir.count_in_log(RELOADED) >= 2
    });
    all_answer_pingreq(&mut clients);

    // 3. A certificate file that does not parse: logged, and the third certificate stays.
    let kept = weir.count_in_log(KEPT);
    let broken = "-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n";
    replace_file(&live_2.join("cert.pem"), broken);
    weir_tests::wait_until("the broken file refused", WAIT, || {
        weir.count_in_log(KEPT) > kept
    });
    assert_eq!(presented(), Some(third.der.clone()));
    // SIGHUP reads the files again (as it does the credentials: "... after SIGHUP").
    let kept_after_sighup = format!("{KEPT} after SIGHUP");
    weir.signal(libc::SIGHUP).unwrap();
    weir.wait_for_log(&kept_after_sighup).unwrap();
    assert_eq!(presented(), Some(third.der.clone()));
    all_answer_pingreq(&mut clients);

    // 4. Good files again, announced with SIGHUP (the periodic check may see them first).
    replace_file(&live_2.join("key.pem"), &fourth.key_pem);
    replace_file(&live_2.join("cert.pem"), &fourth.cert_pem);
    weir.signal(libc::SIGHUP).unwrap();
    weir.wait_for_log(&format!("{RELOADED} after SIGHUP"))
        .unwrap();
    assert_eq!(presented(), Some(fourth.der.clone()));
    all_answer_pingreq(&mut clients);
    let mut late = mqtt_client(addr, &config, "rotation-late");
    assert_eq!(peer_cert(&late), Some(fourth.der.clone()));
    all_answer_pingreq(std::slice::from_mut(&mut late));
}

/// `tls.identity_as_username`, with client certificates required and anonymous clients
/// refused: the certificate's common name is the MQTT user name, though the users file has no
/// such user. mosquitto_pub with the certificate of "sensor-7" and no user name (and again
/// with a user name and password nobody knows, which are ignored) publishes to a subscriber
/// holding another certificate. A certificate whose common name is not UTF-8, or that has
/// none, gets CONNACK "not authorized" (MQTT 3.1.1 return code 5, MQTT 5 reason code 0x87)
/// and the connection ends. In clear, a client still needs a password. The same certificate
/// is a Kafka client's user (kcat over SSL): the access-control list lets "sensor-7" produce
/// to `sensors` and refuses it `other`.
#[test]
fn the_client_certificates_common_name_is_the_mqtt_user_name() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path()).unwrap();
    let users = dir.path().join("users").display().to_string();
    add_user(&users, "alice", "alices password");
    let acl = dir.path().join("acl");
    let rules = "user sensor-7\ntopic readwrite sensors/#\nuser reader\ntopic read sensors/#\n";
    std::fs::write(&acl, rules).unwrap();
    let mut weir = mutual_tls_broker(&pki)
        .env("WEIR_AUTH_ACL_FILE", acl.display().to_string())
        .env("WEIR_TLS_IDENTITY_AS_USERNAME", "true")
        .env("WEIR_AUTH_USERS_FILE", &users)
        .env("WEIR_AUTH_ALLOW_ANONYMOUS", "false")
        .env("WEIR_AUTH_REFUSED_CONNECT_DELAY_MS", "0")
        .start()
        .unwrap();
    weir.wait_for_log("1 users loaded").unwrap();
    let addr = weir.mqtt_tls_addr().unwrap();
    let sensor = pki.client("sensor-7").unwrap();
    let reader = pki.client("reader").unwrap();
    let format = ["-t", "sensors/#", "-q", "1", "-C", "2", "-F", "%t|%p"];
    let sub_args = tls_args(&pki, Some(&reader), &format);
    let sub = MosquittoSub::start(addr, &strs(&sub_args));
    let (ok, text) = mosquitto_pub(
        addr,
        &tls_args(
            &pki,
            Some(&sensor),
            &["-t", "sensors/7", "-q", "1", "-m", "21.5"],
        ),
    );
    assert!(ok, "{text}");
    let ignored = ["-u", "mallory", "-P", "guess"];
    let more = [&ignored[..], &["-t", "sensors/7", "-q", "1", "-m", "21.6"]].concat();
    let (ok, text) = mosquitto_pub(addr, &tls_args(&pki, Some(&sensor), &more));
    assert!(ok, "the user name and password are ignored: {text}");
    assert_eq!(sub.messages(), ["sensors/7|21.5", "sensors/7|21.6"]);

    let non_utf8 = pki.non_utf8_client().unwrap();
    let without_cn = pki.client_without_cn().unwrap();
    for (what, cert) in [
        ("a common name that is not UTF-8", &non_utf8),
        ("no common name", &without_cn),
    ] {
        let config = client_config(&pki.ca_der, Some(cert)).unwrap();
        let mut stream = tls_connect(addr, &config).unwrap();
        tls_send(&mut stream, &connect_v311("no-name")).unwrap();
        let connack = read_packet(&mut stream).unwrap();
        assert_eq!(connack, [0x20, 2, 0, 5], "3.1.1, {what}");
        assert!(tls_closed_by_peer(&mut stream), "3.1.1, {what}");
        let mut stream = tls_connect(addr, &config).unwrap();
        tls_send(&mut stream, &connect_v5("no-name")).unwrap();
        let connack = read_packet(&mut stream).unwrap();
        assert_eq!(connack[0], 0x20, "5, {what}: {connack:02x?}");
        assert_eq!(connack.get(3), Some(&0x87), "5, {what}: {connack:02x?}");
        assert!(tls_closed_by_peer(&mut stream), "5, {what}");
    }
    let plain = weir.mqtt_addr().unwrap();
    let (ok, text) = mosquitto_pub(plain, &["-t", "x", "-m", "y"].map(str::to_owned));
    assert!(!ok, "{text}");
    assert!(text.to_lowercase().contains("not authori"), "{text}");

    let kafka = weir.kafka_tls_addr().unwrap().to_string();
    let ssl = [
        "security.protocol=SSL".to_owned(),
        format!("ssl.ca.location={}", pki.ca_path()),
        format!("ssl.certificate.location={}", sensor.cert_path()),
        format!("ssl.key.location={}", sensor.key_path()),
    ];
    let ssl: Vec<&str> = ssl.iter().flat_map(|x| ["-X", x.as_str()]).collect();
    let produce = |topic: &str| {
        let args = [&["-b", kafka.as_str(), "-P", "-t", topic][..], &ssl].concat();
        kcat(&args, Some(b"from a certificate\n"))
    };
    let sent = produce("sensors");
    assert!(sent.status.success(), "kcat -P sensors: {sent:?}");
    let refused = produce("other");
    assert!(!refused.status.success(), "kcat -P other: {refused:?}");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("authorization failed"), "{said}");
    let consume = [
        "-b",
        kafka.as_str(),
        "-C",
        "-t",
        "sensors",
        "-o",
        "beginning",
        "-e",
        "-q",
    ];
    let read = kcat(&[&consume[..], &ssl].concat(), None);
    // The MQTT publishes to sensors/7 are in the Kafka topic `sensors` too.
    assert_eq!(
        String::from_utf8_lossy(&read.stdout).trim(),
        "21.5\n21.6\nfrom a certificate"
    );
}

/// Hostile lengths after the TLS handshake: an MQTT CONNECT, and a PUBLISH after a good
/// CONNECT, announcing 256 MiB (the largest remaining length MQTT encodes), and a Kafka frame
/// announcing 0x7fffffff bytes: each connection is closed, the broker's resident memory does
/// not grow by anything near those sizes, and it still serves new MQTT and Kafka clients over
/// TLS.
#[test]
fn hostile_lengths_over_tls_close_the_connection_without_allocating_them() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path()).unwrap();
    let mut weir = tls_broker(&pki).start().unwrap();
    let mqtt = weir.mqtt_tls_addr().unwrap();
    let kafka = weir.kafka_tls_addr().unwrap();
    let config = client_config(&pki.ca_der, None).unwrap();
    let before = weir.rss_bytes().unwrap();
    let filler = [0u8; 4096];
    let huge_mqtt = [0xff, 0xff, 0xff, 0x7f];

    let mut stream = tls_connect(mqtt, &config).unwrap();
    // Writes may fail once the broker has closed the connection.
    let _ = tls_send(&mut stream, &[&[0x10][..], &huge_mqtt, &filler].concat());
    assert!(tls_closed_by_peer(&mut stream), "a 256 MiB CONNECT");
    let mut stream = mqtt_client(mqtt, &config, "hostile");
    let _ = tls_send(&mut stream, &[&[0x30][..], &huge_mqtt, &filler].concat());
    assert!(tls_closed_by_peer(&mut stream), "a 256 MiB PUBLISH");
    let mut stream = tls_connect(kafka, &config).unwrap();
    let _ = tls_send(
        &mut stream,
        &[&0x7fff_ffffu32.to_be_bytes()[..], &filler].concat(),
    );
    assert!(tls_closed_by_peer(&mut stream), "a 2 GiB Kafka frame");

    let after = weir.rss_bytes().unwrap();
    assert!(
        after < before + (64 << 20),
        "resident memory went from {before} to {after} bytes"
    );
    let mut stream = mqtt_client(mqtt, &config, "after");
    all_answer_pingreq(std::slice::from_mut(&mut stream));
    let mut stream = tls_connect(kafka, &config).unwrap();
    tls_send(&mut stream, &weir_tests::api_versions_request(3, 7)).unwrap();
    let answer = weir_tests::read_frame(&mut stream).unwrap();
    assert_eq!(answer[..4], 7i32.to_be_bytes(), "ApiVersions answered");
    assert_eq!(answer[4..6], 0i16.to_be_bytes(), "no error");
}

/// One HTTP/1.1 request over `stream` (`Connection: close`), with the bearer `token` if given;
/// the whole answer.
fn https_request(stream: &mut TlsStream, request: &str, token: Option<&str>) -> String {
    let authorization =
        token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    let head =
        format!("{request} HTTP/1.1\r\nHost: weir\r\n{authorization}Connection: close\r\n\r\n");
    tls_send(stream, head.as_bytes()).expect("send the request");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// `admin.tls`: the admin API speaks HTTPS with the listeners' certificate (the token still
/// guards it); plain HTTP gets no answer from it. `weir plugin` speaks HTTPS to it, trusting
/// exactly the certificate of `tls.cert_file`, or the CA of `--cacert`; a `tls.cert_file`
/// that is not the broker's certificate fails the handshake, and nothing is sent.
#[test]
fn the_admin_api_speaks_https_with_admin_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path()).unwrap();
    let token = "5f0c2a9e6b7d4e1f8a3c0b2d9e7f6a1c";
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let token_file = token_file.display().to_string();
    let mut weir = Weir::builder()
        .env("WEIR_TLS_CERT_FILE", pki.server.cert_path())
        .env("WEIR_TLS_KEY_FILE", pki.server.key_path())
        .env("WEIR_ADMIN_TLS", "true")
        .env("WEIR_ADMIN_TOKEN_FILE", &token_file)
        .start()
        .unwrap();
    let addr = weir.admin_https_addr().unwrap();
    let config = client_config(&pki.ca_der, None).unwrap();
    let get = |path: &str, token: Option<&str>| {
        let mut stream = tls_connect(addr, &config).unwrap();
        https_request(&mut stream, &format!("GET {path}"), token)
    };
    let health = get("/health", None);
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let refused = get("/plugins", None);
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    let listed = get("/plugins", Some(token));
    assert!(listed.starts_with("HTTP/1.1 200"), "{listed}");
    // Plain HTTP on the HTTPS port: no HTTP answer.
    match weir_tests::http_get(addr, "/health") {
        Ok((status, body)) => panic!("plain HTTP answered {status}: {body}"),
        Err(e) => assert!(!format!("{e:#}").is_empty()),
    }
    let listen = addr.to_string();
    let cli = |cert_file: &str, args: &[&str]| {
        let env = [
            ("WEIR_ADMIN_TLS", "true"),
            ("WEIR_ADMIN_TOKEN_FILE", token_file.as_str()),
            ("WEIR_ADMIN_LISTEN", listen.as_str()),
            ("WEIR_TLS_CERT_FILE", cert_file),
        ];
        weir_tests::run_weir(args, &env, dir.path()).unwrap()
    };
    let own = pki.server.cert_path();
    let (code, listed) = cli(&own, &["plugin", "list"]);
    assert_eq!(code, 0, "pinned to tls.cert_file: {listed}");
    assert!(listed.contains("bindings"), "{listed}");
    let ca = pki.ca_path();
    let (code, listed) = cli(&own, &["plugin", "list", "--cacert", &ca]);
    assert_eq!(code, 0, "--cacert: {listed}");
    let other = pki.server_cert("other").unwrap().cert_path();
    let (code, refused) = cli(&other, &["plugin", "list"]);
    assert_ne!(code, 0, "another certificate pinned: {refused}");
    assert!(refused.contains("admin API"), "{refused}");
}
