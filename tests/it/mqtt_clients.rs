//! The MQTT front with third-party clients in other languages: paho-mqtt (Python, MQTT 3.1.1
//! and 5), mosquitto_pub/mosquitto_sub and MQTT.js, running the scenarios in `tests/compat/`.
//! `cargo xtask test` installs them (Debian's mosquitto-clients, paho-mqtt from PyPI, MQTT.js
//! from npm into `tests/compat/node_modules`). Where a scenario's messages are stored, the
//! Kafka side is checked too: after the broker stops, the records its log holds (key = the
//! MQTT topic, headers = QoS, retain and the MQTT 5 properties), or kcat while it runs.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weir_tests::{WAIT, Weir};

/// Runs paho `scenario` (`<name>_v311` or `<name>_v5`) against `weir`'s MQTT port.
fn paho(weir: &mut Weir, scenario: &str) -> HashMap<String, Value> {
    paho_with(weir, scenario, &[])
}

/// Runs paho `scenario` against `weir`'s MQTT port with more arguments (a phase, another
/// address).
fn paho_with(weir: &mut Weir, scenario: &str, more: &[&str]) -> HashMap<String, Value> {
    let addr = weir.mqtt_addr().expect("mqtt listener").to_string();
    let mut args: Vec<&str> = vec![scenario, &addr];
    args.extend_from_slice(more);
    weir_tests::run_compat_script("python3", "paho_scenarios.py", "paho-mqtt", &args)
}

/// Runs paho with `args` (scenario, MQTT address, ...), its stdin and stdout piped:
/// `on_step` gets each JSON line as it arrives and may answer on the scenario's stdin. The
/// scenario's own waits are bounded, so it ends; it must end successfully. Its JSON lines
/// by step name.
fn paho_live(
    args: &[&str],
    mut on_step: impl FnMut(&Value, &mut ChildStdin),
) -> HashMap<String, Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("compat")
        .join("paho_scenarios.py");
    let child = Command::new("python3")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut child = Reaped(child);
    let mut stdin = child.0.stdin.take().expect("a stdin pipe");
    let stdout = child.0.stdout.take().expect("a stdout pipe");
    let mut steps = HashMap::new();
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("the scenario's output");
        let value: Value = serde_json::from_str(&line).expect("one JSON object per line");
        on_step(&value, &mut stdin);
        let step = value["step"].as_str().expect("a step name").to_owned();
        steps.insert(step, value);
        lines.push(line);
    }
    let mut stderr = String::new();
    if let Some(mut pipe) = child.0.stderr.take() {
        pipe.read_to_string(&mut stderr)
            .expect("the scenario's stderr");
    }
    let status = child.0.wait().expect("the scenario's exit status");
    assert!(
        status.success(),
        "paho-mqtt {args:?} failed (is it installed? `cargo xtask test` installs paho-mqtt):\n\
         {}\n{stderr}",
        lines.join("\n")
    );
    steps
}

/// Stops `weir` with SIGTERM (it must exit with status 0) and starts it again in its place,
/// as `restart` in `tests/it/mqtt.rs` does; see [`start_again`].
fn restart(weir: &mut Weir) {
    weir.signal(libc::SIGTERM).expect("SIGTERM to the broker");
    let status = weir.wait_exit().expect("the broker exits");
    assert_eq!(status.code(), Some(0));
    start_again(weir);
}

/// Starts a broker in place of `weir`, which has exited: on the same data (its working
/// directory) and the same MQTT and Kafka ports. `weir` must have been started with a
/// working directory the test owns (`cwd`): its own temporary directory goes when it is
/// dropped here.
fn start_again(weir: &mut Weir) {
    assert_ne!(
        weir.cwd(),
        weir.dir(),
        "a broker to restart runs in a directory the test owns"
    );
    let mqtt = weir.mqtt_addr().expect("mqtt listener");
    let kafka = weir.kafka_addr().expect("kafka listener");
    let cwd = weir.cwd().to_owned();
    *weir = Weir::builder()
        .cwd(cwd)
        .env("WEIR_MQTT_LISTEN", mqtt.to_string())
        .env("WEIR_KAFKA_LISTEN", kafka.to_string())
        .start()
        .expect("the broker starts again");
}

/// "0", "1", ... up to `count` - 1, then `last`.
fn counted(count: usize, last: &str) -> Vec<String> {
    (0..count)
        .map(|i| i.to_string())
        .chain([last.to_owned()])
        .collect()
}

/// Runs MQTT.js `scenario` with `protocolVersion` `version` (4 or 5) against `weir`.
fn mqttjs(weir: &mut Weir, scenario: &str, version: &str) -> HashMap<String, Value> {
    let addr = weir.mqtt_addr().expect("mqtt listener").to_string();
    weir_tests::run_compat_script(
        "node",
        "mqttjs_scenarios.js",
        "mqtt (MQTT.js, from npm into tests/compat/node_modules)",
        &[scenario, version, &addr],
    )
}

/// One record as the log stores it.
#[derive(Debug)]
struct Stored {
    key: String,
    value: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
}

impl Stored {
    /// The value of header `name` (the first one), as text.
    fn header(&self, name: &str) -> Option<String> {
        (self.headers.iter())
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// Stops `weir` and returns the records of Kafka topic `topic` (partition 0, the only one of
/// an auto-created topic), in log order.
fn stop_and_read(weir: &mut Weir, topic: &str) -> Vec<Stored> {
    weir.signal(libc::SIGTERM).expect("SIGTERM to the broker");
    let status = weir.wait_exit().expect("the broker exits");
    assert_eq!(status.code(), Some(0));
    records(weir.cwd(), topic)
}

/// The records of `topic` under `cwd` (the broker must be stopped).
fn records(cwd: &Path, topic: &str) -> Vec<Stored> {
    let batches = weir_tests::stored_batches(cwd, topic);
    (batches.iter())
        .flat_map(|batch| weir_kafka::record_batch::records(batch))
        .map(|record| Stored {
            key: String::from_utf8(record.key.expect("a key").to_vec()).expect("UTF-8 key"),
            value: record.value.unwrap_or_default().to_vec(),
            headers: (record.headers())
                .map(|(k, v)| {
                    let name = String::from_utf8(k.to_vec()).expect("UTF-8 header name");
                    (name, v.unwrap_or_default().to_vec())
                })
                .collect(),
        })
        .collect()
}

/// `[topic, payload, qos, retain]` as the scenarios report a message.
fn msg(topic: &str, payload: &str, qos: u8, retain: bool) -> Value {
    json!([topic, payload, qos, retain])
}

/// paho (3.1.1 and 5) connects with an empty client id and keep alive 0 and then subscribes
/// and publishes; on MQTT 5 CONNACK assigns a client identifier and tells the server's
/// Receive Maximum (32), Topic Alias Maximum (16) and Maximum Packet Size (1 MiB). A new
/// client id asking for a persistent session (clean start 0) gets session present 0.
#[test]
fn paho_connects_with_an_empty_client_id_and_keep_alive_0() {
    let mut weir = Weir::builder().start().unwrap();
    for version in ["v311", "v5"] {
        let steps = paho(&mut weir, &format!("connect_{version}"));
        let anonymous = &steps["anonymous"];
        assert_eq!(anonymous["reason_code"], 0, "{version}: {anonymous}");
        assert_eq!(anonymous["session_present"], false, "{version}");
        if version == "v5" {
            let assigned = anonymous["assigned_client_id"].as_str().unwrap_or("");
            assert!(!assigned.is_empty(), "an assigned client id: {anonymous}");
            assert_eq!(anonymous["receive_maximum"], 64);
            assert_eq!(anonymous["topic_alias_maximum"], 16);
            assert_eq!(anonymous["maximum_packet_size"], 1_048_576);
            // Keep alive 0 is accepted as asked, not overridden.
            assert_eq!(anonymous["server_keep_alive"], Value::Null);
        }
        assert_eq!(
            steps["anonymous_round_trip"]["granted"],
            json!([1]),
            "{version}"
        );
        assert_eq!(
            steps["anonymous_round_trip"]["received"],
            json!([msg("hello/anon", "hi", 1, false)]),
            "{version}"
        );
        assert_eq!(
            steps["persistent"],
            json!({"step": "persistent", "reason_code": 0, "session_present": false}),
            "{version}"
        );
    }
}

/// Client identifiers CONNACK assigns (MQTT 5, paho) are unique, also across a restart of
/// the broker on the same data directory: eight anonymous clients before and eight after
/// get sixteen different ones. (A repeated one would let a new client take over the
/// session a stored client id keeps.)
#[test]
fn paho_v5_assigned_client_ids_are_not_reused_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let mut weir = Weir::builder().cwd(dir.path()).start().unwrap();
        let steps = paho(&mut weir, "assigned_ids_v5");
        let assigned = steps["assigned"]["ids"].as_array().unwrap().clone();
        assert_eq!(assigned.len(), 8);
        ids.extend(
            assigned
                .into_iter()
                .map(|id| id.as_str().unwrap().to_owned()),
        );
        weir.signal(libc::SIGTERM).unwrap();
        assert_eq!(weir.wait_exit().unwrap().code(), Some(0));
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "assigned twice: {ids:?}");
}

/// Checks the `round_trips`, `sizes`, `downgrade` and `overlap` steps of paho's `qos`
/// scenario.
fn assert_qos_steps(version: &str, steps: &HashMap<String, Value>) {
    let trips = &steps["round_trips"];
    assert_eq!(trips["granted"], json!([2]), "{version}");
    assert_eq!(
        trips["ack_codes"],
        json!([0]),
        "{version}: PUBACK/PUBREC codes"
    );
    for q in 0..3 {
        assert_eq!(
            trips["results"][format!("q{q}")],
            json!({"received": 300, "exact_and_in_order": true, "first_difference": null,
                "qos": [q], "retain": [false]}),
            "{version} QoS {q}"
        );
    }
    assert_eq!(
        steps["sizes"]["lengths"],
        json!([0, 1_000_000]),
        "{version}"
    );
    assert_eq!(steps["sizes"]["big_exact"], true, "{version}");
    // Subscribed at 0, 1 and 2; published at 0, 1 and 2: delivered at the lower of the two.
    assert_eq!(
        steps["downgrade"]["granted"],
        json!({"0": 0, "1": 1, "2": 2})
    );
    assert_eq!(
        steps["downgrade"]["delivered"],
        json!({
            "sub0": [["p0", 0], ["p1", 0], ["p2", 0]],
            "sub1": [["p0", 0], ["p1", 1], ["p2", 1]],
            "sub2": [["p0", 0], ["p1", 1], ["p2", 2]],
        }),
        "{version}"
    );
    // Three subscriptions match ov/a/x: one delivery, at the highest QoS granted (2).
    assert_eq!(steps["overlap"]["granted"], json!([0, 2, 1]));
    assert_eq!(
        steps["overlap"]["received"],
        json!([
            msg("ov/a/x", "once", 2, false),
            msg("ov/a/x", "marker", 2, false)
        ]),
        "{version}"
    );
}

/// paho 3.1.1 publishes 300 binary payloads (every byte value, lengths 0 to 299 bytes) at
/// each of QoS 0, 1 and 2, with up to 20 QoS 1/2 in flight, plus an empty and a
/// 1,000,000-byte one; a subscriber gets every one, byte for byte, in order, at the QoS it
/// was published with. Delivery QoS is the lower of the publish and subscription QoS, and a
/// message three overlapping subscriptions match arrives once, at the highest QoS. The log
/// holds each publish as one record of Kafka topic `qos`, keyed by the MQTT topic, with its
/// QoS in `mqtt.qos`.
#[test]
fn paho_v311_round_trips_qos_0_1_2_with_exact_payloads_in_order() {
    let mut weir = Weir::builder().start().unwrap();
    let steps = paho(&mut weir, "qos_v311");
    assert_qos_steps("v311", &steps);
    let stored = stop_and_read(&mut weir, "qos");
    for q in 0..3 {
        let key = format!("qos/q{q}");
        let mine: Vec<&Stored> = stored.iter().filter(|r| r.key == key).collect();
        assert_eq!(mine.len(), 300, "{key}");
        for (i, record) in mine.iter().enumerate() {
            assert!(
                record.value.starts_with(format!("{q}:{i}:").as_bytes()),
                "{key} record {i} out of order"
            );
            assert_eq!(record.headers, [("mqtt.qos".to_owned(), vec![b'0' + q])]);
        }
    }
    let sizes: Vec<usize> = (stored.iter())
        .filter(|r| r.key == "qos/sizes")
        .map(|r| r.value.len())
        .collect();
    assert_eq!(sizes, [0, 1_000_000]);
}

/// The same round trips with paho speaking MQTT 5 (PUBACK and PUBREC reason code 0).
#[test]
fn paho_v5_round_trips_qos_0_1_2_with_exact_payloads_in_order() {
    let mut weir = Weir::builder().start().unwrap();
    let steps = paho(&mut weir, "qos_v5");
    assert_qos_steps("v5", &steps);
}

/// MQTT 3.1.1 has no receive maximum: paho with 100 QoS 1 or QoS 2 publishes in flight
/// (Weir holds the connection's input while 32 wait for the log) gets every one
/// acknowledged (PUBACK; PUBREC and PUBCOMP), and a subscriber gets them in order.
#[test]
fn paho_v311_with_100_publishes_in_flight_gets_every_one_acknowledged() {
    let mut weir = Weir::builder().start().unwrap();
    let steps = paho(&mut weir, "pipelined_v311");
    for q in [1, 2] {
        assert_eq!(
            steps["pipelined"]["results"][format!("q{q}")],
            json!({"received": 150, "in_order": true}),
            "QoS {q}"
        );
    }
}

/// paho (3.1.1 and 5): six filters with `+` and `#` against eight topics get exactly the
/// topics MQTT's matching rules give (paho's own `topic_matches_sub`): `+` matches one level,
/// an empty one too, and `#` the parent level and everything below. After UNSUBSCRIBE nothing
/// arrives until the next SUBSCRIBE; MQTT 5 UNSUBACK says 0x11 (no subscription existed)
/// for a filter that was not subscribed.
#[test]
fn paho_wildcards_match_and_unsubscribe_stops_delivery() {
    let mut weir = Weir::builder().start().unwrap();
    for version in ["v311", "v5"] {
        let steps = paho(&mut weir, &format!("wildcards_{version}"));
        let matched = &steps["matched"];
        assert_eq!(matched["matched"], matched["expected"], "{version}");
        assert_eq!(
            matched["matched"]["wc/+/temp"],
            json!(["wc//temp", "wc/a/temp", "wc/b/temp"])
        );
        assert_eq!(
            matched["matched"]["wc/#"].as_array().unwrap()[0],
            "wc",
            "`wc/#` matches `wc`"
        );
        let unsubscribe = &steps["unsubscribe"];
        assert_eq!(
            unsubscribe["received"],
            json!(["before", "after"]),
            "{version}"
        );
        if version == "v5" {
            assert_eq!(unsubscribe["codes"], json!([0]));
            assert_eq!(unsubscribe["not_subscribed"], json!([0x11]));
            assert_eq!(unsubscribe["several"], json!([0, 0x11]));
        } else {
            // 3.1.1's UNSUBACK carries no reason codes.
            assert_eq!(unsubscribe["codes"], json!([]));
        }
    }
}

/// paho (3.1.1 and 5): a retained publish replaces the topic's retained message and an
/// empty one clears it; a new subscription gets the retained messages its filter matches,
/// with the retain flag and at the lower of their QoS and its own, before live messages,
/// which have retain 0. MQTT 5: Retain As Published keeps the flag on a live delivery;
/// retain handling 1 sends retained messages only for a new subscription, 0 on every
/// SUBSCRIBE, 2 never. The log holds every retained publish with `mqtt.retain` = 1, the
/// clearing one with an empty value.
#[test]
fn paho_retained_messages_are_replaced_cleared_and_flagged_on_delivery() {
    let mut weir = Weir::builder().start().unwrap();
    let mut v5 = HashMap::new();
    for version in ["v311", "v5"] {
        let steps = paho(&mut weir, &format!("retained_{version}"));
        assert_eq!(
            steps["new_subscriber"]["received"],
            json!([
                msg("ret/a", "v2", 1, true),
                msg("ret/a", "live", 1, false),
                msg("ret/b", "kept", 2, true),
                msg("ret/b", "live", 1, false),
                msg("ret/c", "live", 1, false),
            ]),
            "{version}"
        );
        assert_eq!(
            steps["resubscribe"]["received"],
            json!([
                msg("ret/a", "v2", 1, true),
                msg("ret/b", "kept", 1, true),
                msg("ret/a", "v2", 0, true),
                msg("ret/a", "live2", 0, false),
            ]),
            "{version}"
        );
        v5 = steps;
    }
    assert_eq!(
        v5["retain_as_published"]["rap"],
        json!([msg("ret/a", "v3", 1, true)])
    );
    assert_eq!(
        v5["retain_as_published"]["plain"],
        json!([msg("ret/a", "v3", 1, false)])
    );
    assert_eq!(
        v5["retain_handling"]["handling"],
        json!([
            msg("ret/b", "kept", 1, true),
            msg("ret/b", "live-1", 1, false),
            msg("ret/b", "kept", 1, true),
            msg("ret/b", "live-2", 1, false),
            msg("ret/b", "live-3", 1, false),
        ])
    );
    assert_eq!(
        v5["retain_handling"]["never"],
        json!([msg("ret/b", "live-3", 1, false)])
    );
    let stored = stop_and_read(&mut weir, "ret");
    let retained: Vec<(&str, &[u8])> = (stored.iter())
        .filter(|r| r.header("mqtt.retain").as_deref() == Some("1"))
        .map(|r| (r.key.as_str(), r.value.as_slice()))
        .collect();
    // Both runs store the same retained publishes; the MQTT 5 one adds ret/a v3.
    let one_run: [(&str, &[u8]); 5] = [
        ("ret/a", b"v1"),
        ("ret/a", b"v2"),
        ("ret/b", b"kept"),
        ("ret/c", b"gone"),
        ("ret/c", b""),
    ];
    let mut expected = one_run.to_vec();
    expected.extend(one_run);
    expected.push(("ret/a", b"v3"));
    assert_eq!(retained, expected);
    assert!(
        (stored.iter())
            .filter(|r| r.value.starts_with(b"live"))
            .all(|r| r.header("mqtt.retain").is_none()),
        "live publishes have no mqtt.retain header"
    );
}

/// `mqtt.keep_alive_max_s = 60` (the Paho interoperability suite's test_server_keep_alive):
/// paho asking for a keep alive of 120 s gets CONNACK with Server Keep Alive 60 in MQTT 5; an
/// MQTT 3.1.1 client, which cannot be told, is refused with return code 2.
#[test]
fn paho_asking_for_a_longer_keep_alive_than_the_cap_is_held_to_it() {
    let mut weir = Weir::builder()
        .env("WEIR_MQTT_KEEP_ALIVE_MAX_S", "60")
        .start()
        .unwrap();
    let steps = paho(&mut weir, "keep_alive_cap_v5");
    assert_eq!(
        steps["asked_120"],
        json!({"step": "asked_120", "reason_code": 0, "server_keep_alive": 60})
    );
    let steps = paho(&mut weir, "keep_alive_cap_v311");
    // paho reports 3.1.1's return code 2 as its MQTT 5 equivalent, 0x85.
    assert_eq!(steps["asked_120"]["reason_code"], 0x85, "{steps:?}");
}

/// paho (3.1.1 and 5): after a normal DISCONNECT the will is not published; when a client's
/// socket is closed without one, its will is (the first message on the will topic is the
/// second client's, so the first client's never was); a client silent past 1.5 times its
/// keep alive of 1 s is disconnected and its will published; a retained will becomes the
/// topic's retained message. MQTT 5: DISCONNECT 0x04 (with will message) publishes the will,
/// with its user property and content type.
#[test]
fn paho_wills_follow_abrupt_ends_not_normal_disconnects() {
    let mut weir = Weir::builder().start().unwrap();
    for version in ["v311", "v5"] {
        let steps = paho(&mut weir, &format!("wills_{version}"));
        assert_eq!(
            steps["socket_closed"]["received"],
            json!([msg("wills/a", "socket-closed", 2, false)]),
            "{version}"
        );
        assert_eq!(
            steps["keep_alive_expired"]["received"],
            json!([msg("wills/silent", "timed-out", 1, false)]),
            "{version}"
        );
        assert_eq!(
            steps["retained_will"]["received"],
            json!([msg("wills/kept", "last-words", 1, true)]),
            "{version}"
        );
        if version == "v5" {
            let asked = &steps["disconnect_with_will"];
            assert_eq!(
                asked["received"],
                json!([msg("wills/asked", "with-will", 1, false)])
            );
            assert_eq!(asked["user_properties"], json!([["reason", "asked"]]));
            assert_eq!(asked["content_type"], "text/plain");
        }
    }
    let stored = stop_and_read(&mut weir, "wills");
    let polite: Vec<&Stored> = stored
        .iter()
        .filter(|r| r.value == b"polite-will")
        .collect();
    assert!(polite.is_empty(), "a will after DISCONNECT 0: {polite:?}");
    let kept = (stored.iter())
        .find(|r| r.key == "wills/kept")
        .expect("the retained will is stored");
    assert_eq!(kept.header("mqtt.retain").as_deref(), Some("1"));
}

/// paho MQTT 5: a publish with user properties (a repeated name, non-ASCII, an empty value,
/// a name in the reserved `mqtt.` namespace), content type, response topic, binary
/// correlation data, payload format indicator 1 and a 300 s message expiry reaches a
/// subscriber with all of them (user properties in order, the expiry as what is left of
/// it); one without properties arrives without any. In the log they are record headers:
/// `mqtt.*` for the MQTT properties, user properties under their own names (`mqtt.user.`
/// before a reserved one). A responder answers three requests on their response topic with
/// their correlation data.
#[test]
fn paho_v5_properties_survive_the_log() {
    let mut weir = Weir::builder().start().unwrap();
    let steps = paho(&mut weir, "properties_v5");
    let properties = &steps["properties"];
    assert_eq!(properties["ack_codes"], json!([0, 0]));
    let full = &properties["full"];
    assert_eq!(
        full["user_properties"],
        json!([
            ["k", "v"],
            ["k", "v2"],
            ["ключ", "värde"],
            ["empty", ""],
            ["mqtt.trace", "t1"]
        ])
    );
    assert_eq!(full["content_type"], "application/json");
    assert_eq!(full["response_topic"], "props/reply");
    assert_eq!(full["correlation_data"], "0001636f7272ff");
    assert_eq!(full["payload_format"], 1);
    let expiry = full["message_expiry"].as_u64().expect("a message expiry");
    assert!((1..=300).contains(&expiry), "remaining expiry {expiry}");
    assert_eq!(properties["full_payload"], r#"{"a":1}"#);
    assert_eq!(properties["bare"], json!({}));
    assert_eq!(
        steps["request_response"]["replies"],
        json!([
            ["req-0", "re:ping0"],
            ["req-1", "re:ping1"],
            ["req-2", "re:ping2"]
        ])
    );

    let stored = stop_and_read(&mut weir, "props");
    let full = (stored.iter())
        .find(|r| r.key == "props/full")
        .expect("props/full is stored");
    assert_eq!(full.value, br#"{"a":1}"#);
    let (mut mapped, user): (Vec<_>, Vec<_>) = (full.headers.iter().cloned())
        .partition(|(k, _)| k.starts_with("mqtt.") && !k.starts_with("mqtt.user."));
    mapped.sort();
    let text = |pairs: &[(&str, &[u8])]| -> Vec<(String, Vec<u8>)> {
        (pairs.iter())
            .map(|(k, v)| ((*k).to_owned(), v.to_vec()))
            .collect()
    };
    assert_eq!(
        mapped,
        text(&[
            ("mqtt.content_type", b"application/json"),
            ("mqtt.correlation_data", b"\x00\x01corr\xff"),
            ("mqtt.message_expiry_interval_s", b"300"),
            ("mqtt.payload_format", b"1"),
            ("mqtt.qos", b"1"),
            ("mqtt.response_topic", b"props/reply"),
        ])
    );
    assert_eq!(
        user,
        text(&[
            ("k", b"v"),
            ("k", b"v2"),
            ("ключ", "värde".as_bytes()),
            ("empty", b""),
            ("mqtt.user.mqtt.trace", b"t1"),
        ])
    );
    let bare = (stored.iter())
        .find(|r| r.key == "props/bare")
        .expect("props/bare is stored");
    assert_eq!(bare.value, b"\x00\xff");
    assert_eq!(bare.headers, text(&[("mqtt.qos", b"2")]));
}

/// paho MQTT 5 message expiry: a retained message published with a 1 s expiry is not
/// delivered to a subscriber that subscribes 2.5 s later, while one with an hour's expiry
/// is, with what is left of the hour.
#[test]
fn paho_v5_expired_retained_message_is_not_delivered() {
    let mut weir = Weir::builder().start().unwrap();
    let steps = paho(&mut weir, "expiry_v5");
    let expired = &steps["expired"];
    assert_eq!(
        expired["short"],
        json!([msg("exp/short", "live", 1, false)])
    );
    assert_eq!(expired["long"], json!([msg("exp/long", "fresh", 1, true)]));
    let left = expired["long_expiry"].as_u64().expect("an expiry");
    assert!(
        (1..3600).contains(&left),
        "left of 3600 s after 2.5 s: {left}"
    );
}

/// paho MQTT 5 subscription identifiers: a message matching subscriptions 7 (`sid/a/#`) and
/// 42 (`sid/+/x`) arrives once with both; one matching only one of them carries that one; a
/// subscription without an identifier adds none.
#[test]
fn paho_v5_subscription_identifiers_come_back_once_per_message() {
    let mut weir = Weir::builder().start().unwrap();
    let steps = paho(&mut weir, "subscription_ids_v5");
    let ids = &steps["subscription_ids"];
    assert_eq!(ids["granted"], json!([[1], [1], [1]]));
    assert_eq!(
        ids["received"],
        json!({
            "sid/a/x": [["sid/a/x", [7, 42]], ["end", [7, 42]]],
            "sid/a/y": [["sid/a/y", [7]], ["end", [7]]],
            "sid/b/x": [["sid/b/x", [42]], ["end", [42]]],
            "sid/none": [["sid/none", []], ["end", []]],
        })
    );
}

/// paho MQTT 5 topic aliases from the client (Topic Alias Maximum 16 in CONNACK): a PUBLISH
/// with a topic and alias 1 sets it, then alias 1 alone publishes to that topic; alias 1 is
/// moved to another topic and back. Subscribers get every message under its full topic, and
/// the log keys every record by the full topic.
#[test]
fn paho_v5_topic_aliases_from_the_client_resolve_to_full_topics() {
    let mut weir = Weir::builder().start().unwrap();
    let steps = paho(&mut weir, "topic_alias_v5");
    let alias = &steps["topic_alias"];
    assert_eq!(alias["topic_alias_maximum"], 16);
    assert_eq!(alias["ack_codes"], json!([0, 0, 0, 0, 0, 0]));
    assert_eq!(
        alias["received"],
        json!({
            "alias/long/topic/name": ["first", "second", "fifth", "sixth"],
            "alias/other": ["third", "fourth"],
        })
    );
    let stored = stop_and_read(&mut weir, "alias");
    let mut keyed: Vec<(String, String)> = (stored.iter())
        .map(|r| {
            (
                r.key.clone(),
                String::from_utf8_lossy(&r.value).into_owned(),
            )
        })
        .collect();
    keyed.sort();
    let expected: Vec<(String, String)> = [
        ("alias/long/topic/name", "fifth"),
        ("alias/long/topic/name", "first"),
        ("alias/long/topic/name", "second"),
        ("alias/long/topic/name", "sixth"),
        ("alias/other", "fourth"),
        ("alias/other", "third"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    assert_eq!(keyed, expected);
    assert!(
        (stored.iter()).all(|r| r.headers == [("mqtt.qos".to_owned(), b"1".to_vec())]),
        "no alias header: {stored:?}"
    );
}

/// paho (3.1.1 and 5): a SUBSCRIBE with a shared subscription (`$share/g/...`) and a plain
/// filter gets the plain one granted, and it works (the shared one's answer is not checked
/// here: shared subscriptions have their own tests, in `mqtt.rs` and
/// `paho_shared_subscription_gives_each_message_to_one_member`). MQTT 5: a PUBLISH over the
/// 1 MiB Maximum Packet Size announced in CONNACK ends the connection with a DISCONNECT 0x95
/// (packet too large) that paho reads: the broker keeps reading (and dropping) the rest of
/// the packet after it, so the client gets no reset first.
#[test]
fn paho_oversized_publish_ends_the_connection() {
    let mut weir = Weir::builder().start().unwrap();
    for version in ["v311", "v5"] {
        let steps = paho(&mut weir, &format!("limits_{version}"));
        let mixed = &steps["mixed_subscribe"];
        assert_eq!(mixed["codes"][1], 1, "{version}: {mixed}");
        assert_eq!(
            mixed["received"],
            json!([msg("shared/x", "still-works", 1, false)])
        );
        if version == "v5" {
            let big = &steps["too_big"];
            assert_eq!(big["maximum_packet_size"], 1_048_576);
            assert_eq!(big["disconnect_packets"], json!(["95"]), "{big}");
        }
    }
}

/// Records produced by a Kafka client (kcat) reach paho subscribers (3.1.1 and 5) at QoS 1:
/// one keyed `order-7` in topic `orders` under `orders/order-7`, one with a `mqtt.topic`
/// header under that topic, its other header a user property (MQTT 5).
#[test]
fn kafka_records_reach_paho_subscribers() {
    let mut weir = Weir::builder().start().unwrap();
    let mqtt = weir.mqtt_addr().unwrap().to_string();
    let kafka = weir.kafka_addr().unwrap().to_string();
    for version in ["v311", "v5"] {
        let scenario = format!("kafka_to_mqtt_{version}");
        let steps = weir_tests::run_compat_script(
            "python3",
            "paho_scenarios.py",
            "paho-mqtt (and kcat)",
            &[&scenario, &mqtt, &kafka],
        );
        let from = &steps["from_kafka"];
        assert_eq!(
            from["keyed"],
            json!([msg("orders/order-7", "seven", 1, false)]),
            "{version}"
        );
        assert_eq!(
            from["routed"],
            json!([msg("devices/7/cmd", "reboot", 1, false)]),
            "{version}"
        );
        let expected = if version == "v5" {
            json!([["source", "erp"]])
        } else {
            Value::Null
        };
        assert_eq!(from["routed_properties"], expected, "{version}");
    }
}

/// paho (3.1.1 with Clean Session 0; MQTT 5 with clean start 0 and a Session Expiry
/// Interval of 300 s): a client subscribes to `backlog/<v>/#` at QoS 1 and disconnects;
/// another publishes 25 QoS 1 messages, the broker is restarted (SIGTERM) and 25 more are
/// published. The client reconnects without subscribing again and gets session present 1,
/// the 50 messages in order, then a live one. A clean start with that client id then gets
/// session present 0 and nothing of the old subscription, and the next persistent
/// connection session present 0 too.
#[test]
fn paho_persistent_sessions_get_their_backlog_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut weir = Weir::builder().cwd(dir.path()).start().unwrap();
    for version in ["v311", "v5"] {
        let scenario = format!("session_{version}");
        let away = paho_with(&mut weir, &scenario, &["away"]);
        assert_eq!(
            away["away"],
            json!({"step": "away", "session_present": false, "granted": [1], "published": 25}),
            "{version}"
        );
        restart(&mut weir);
        let back = paho_with(&mut weir, &scenario, &["back"]);
        let resumed = &back["resumed"];
        assert_eq!(resumed["session_present"], true, "{version}: {resumed}");
        assert_eq!(resumed["received"], json!(counted(50, "live")), "{version}");
        assert_eq!(resumed["qos"], json!([1]), "{version}");
        let marker = format!("backlog/{version}/marker");
        assert_eq!(
            back["clean_start"],
            json!({"step": "clean_start", "session_present": false,
                "received": [msg(&marker, "end", 1, false)]}),
            "{version}"
        );
        assert_eq!(back["after_clean"]["session_present"], false, "{version}");
    }
}

/// The PUBCOMP reason codes paho may see: 0, or (MQTT 5, for a PUBREL sent again after the
/// exchange completed on the broker) 0x92, Packet Identifier not found.
fn assert_completion_codes(version: &str, codes: &Value) {
    let codes = codes.as_array().expect("ack codes");
    assert!(
        codes
            .iter()
            .all(|c| c == 0 || (version == "v5" && c == 0x92)),
        "{version}: {codes:?}"
    );
}

/// QoS 2 across a dropped connection, with paho (3.1.1 and 5) and a persistent session: of
/// 30 QoS 2 publishes, 3 wait for the PUBCOMP of a PUBREL the broker has and 5 for the
/// PUBREC of a message the broker has stored (paho ignores those packets) when the socket
/// is shut down under paho. paho reconnects with the same client id (session present 1)
/// and sends PUBREL and PUBLISH (DUP) again; every publish completes, a QoS 2 subscriber
/// gets each message once, in order, and the log holds each once, in order.
#[test]
fn paho_qos2_is_exactly_once_across_a_dropped_connection() {
    let mut weir = Weir::builder().start().unwrap();
    for version in ["v311", "v5"] {
        let steps = paho(&mut weir, &format!("qos2_dropped_{version}"));
        let dropped = &steps["dropped"];
        assert_eq!(
            dropped["at_cut"]["dropped"],
            json!({"PUBCOMP": 3, "PUBREC": 5}),
            "{version}: {dropped}"
        );
        assert_eq!(dropped["session_present"], true, "{version}");
        assert_completion_codes(version, &dropped["ack_codes"]);
        assert_eq!(
            dropped["received"],
            json!(counted(30, "end")),
            "{version}: each once, in order"
        );
    }
    let stored = stop_and_read(&mut weir, "once");
    for version in ["v311", "v5"] {
        let key = format!("once/{version}");
        let values: Vec<String> = (stored.iter())
            .filter(|r| r.key == key)
            .map(|r| String::from_utf8_lossy(&r.value).into_owned())
            .collect();
        assert_eq!(
            values,
            counted(30, "end"),
            "{key}: stored once each, in order"
        );
    }
}

/// QoS 2 across a broker crash, with paho (3.1.1 and 5): a client with a stored persistent
/// session has 30 QoS 2 publishes going, 3 waiting for PUBCOMP and 5 for PUBREC of
/// messages the broker has stored, when the broker is killed (SIGKILL). Restarted on the
/// same data and port, it gives the client session present 1; paho sends the unfinished
/// ones again and every publish completes; the log holds each message once, in order. A
/// persistent QoS 2 subscriber gets every message, in order; it may get again what came
/// since its session's position was last stored (when it subscribed: a crash stores
/// nothing), and the scenario reports what it got.
#[test]
fn paho_qos2_is_stored_exactly_once_across_a_broker_kill() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let mut weir = Weir::builder().cwd(dir.path()).start().unwrap();
    let mqtt = weir.mqtt_addr().unwrap().to_string();
    let expected: Vec<String> = ["before".to_owned()]
        .into_iter()
        .chain(counted(30, "end"))
        .collect();
    for version in ["v311", "v5"] {
        let pid = weir.pid().to_string();
        let scenario = format!("qos2_killed_{version}");
        let steps = paho_live(&[&scenario, &mqtt, &pid], |step, stdin| {
            if step["step"] == "killed" {
                let status = weir.wait_exit().expect("the killed broker ends");
                assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
                start_again(&mut weir);
                writeln!(stdin, "restarted").expect("the scenario reads its stdin");
            }
        });
        let killed = &steps["killed"];
        assert_eq!(
            killed["at_cut"]["dropped"],
            json!({"PUBCOMP": 3, "PUBREC": 5}),
            "{version}: {killed}"
        );
        assert_eq!(killed["session_present_before"], true, "{version}");
        let resumed = &steps["resumed"];
        assert_eq!(resumed["session_present"], true, "{version}: {resumed}");
        assert_eq!(resumed["subscriber_session_present"], true, "{version}");
        assert_completion_codes(version, &resumed["ack_codes"]);
        let received: Vec<String> = (resumed["received"].as_array().unwrap().iter())
            .map(|p| p.as_str().unwrap().to_owned())
            .collect();
        let mut first_seen = Vec::new();
        for payload in &received {
            if !first_seen.contains(payload) {
                first_seen.push(payload.clone());
            }
        }
        assert_eq!(
            first_seen, expected,
            "{version}: every message, in order: {received:?}"
        );
    }
    let stored = stop_and_read(&mut weir, "crash");
    for version in ["v311", "v5"] {
        let key = format!("crash/{version}");
        let values: Vec<String> = (stored.iter())
            .filter(|r| r.key == key)
            .map(|r| String::from_utf8_lossy(&r.value).into_owned())
            .collect();
        assert_eq!(values, expected, "{key}: stored once each, in order");
    }
}

/// paho (3.1.1 and 5) shared subscription `$share/g/jobs/#` with three members: of 300 QoS 1
/// messages on three topics each reaches exactly one member and every member gets some,
/// while a plain `jobs/#` subscriber gets all of them, in order per topic; once a member
/// has disconnected, the next 100 go to the other two (each once, both getting some; none
/// is lost to the one that left).
#[test]
fn paho_shared_subscription_gives_each_message_to_one_member() {
    let mut weir = Weir::builder().start().unwrap();
    for version in ["v311", "v5"] {
        let steps = paho(&mut weir, &format!("shared_{version}"));
        let shared = &steps["shared"];
        assert_eq!(shared["granted"], json!([[1], [1], [1]]), "{version}");
        for (phase, members) in [("first", 3), ("after_leave", 2)] {
            let part = &shared[phase];
            assert_eq!(part["exactly_once"], true, "{version} {phase}: {shared}");
            let shares = part["shares"].as_array().unwrap();
            assert_eq!(shares.len(), members);
            assert!(
                shares.iter().all(|n| n.as_u64().unwrap() > 0),
                "{version} {phase}: every member gets some: {shared}"
            );
        }
        assert_eq!(shared["each_once_overall"], true, "{version}: {shared}");
        assert_eq!(shared["plain_received"], 400, "{version}");
        assert_eq!(shared["plain_in_order"], true, "{version}");
    }
}

/// paho (3.1.1 and 5) session takeover: a second client with the client id of a connected
/// one (both asking for a persistent session) gets session present 1, and the subscription
/// the first made delivers to it; the first is closed, on MQTT 5 with DISCONNECT 0x8E
/// (Session taken over), which paho 2.1 reports as 0 (the reason code is the packet's only
/// byte), so the scenario keeps the packet's bytes.
#[test]
fn paho_takeover_moves_the_session_and_disconnects_the_first_with_0x8e() {
    let mut weir = Weir::builder().start().unwrap();
    for version in ["v311", "v5"] {
        let steps = paho(&mut weir, &format!("takeover_{version}"));
        let takeover = &steps["takeover"];
        let packets = takeover["first_disconnect_packets"].as_array().unwrap();
        if version == "v5" {
            assert_eq!(packets.len(), 1, "one DISCONNECT: {takeover}");
            assert!(
                packets[0].as_str().unwrap().starts_with("8e"),
                "reason code 0x8E: {takeover}"
            );
        } else {
            assert!(
                packets.is_empty(),
                "3.1.1 has no DISCONNECT from the server"
            );
        }
        assert_eq!(takeover["session_present"], true, "{version}: {takeover}");
        assert_eq!(
            takeover["received"],
            json!([msg(&format!("twin/{version}/x"), "hi", 1, false)]),
            "{version}"
        );
        assert_eq!(
            takeover["second_disconnect_packets"],
            json!([]),
            "{version}"
        );
    }
}

/// paho MQTT 5 will with Will Delay Interval 2 s and Session Expiry Interval 60 s: a client
/// whose socket is closed and that reconnects (clean start 0) at once gets session present
/// 1 and no will is published in the next 3 s; when it then vanishes for good, the will
/// arrives, at least 2 s later.
#[test]
fn paho_v5_delayed_will_is_cancelled_by_a_reconnection_and_published_otherwise() {
    let mut weir = Weir::builder().start().unwrap();
    let steps = paho(&mut weir, "will_delay_v5");
    let reconnected = &steps["reconnected"];
    assert!(
        reconnected["back_after_s"].as_f64().unwrap() < 1.0,
        "back within 1 s: {reconnected}"
    );
    assert_eq!(reconnected["session_present"], true);
    assert_eq!(reconnected["received"], json!([]), "no will: {reconnected}");
    let vanished = &steps["vanished"];
    assert_eq!(
        vanished["received"],
        json!([msg("delayed/pump", "lost", 1, false)])
    );
    let after = vanished["after_s"].as_f64().unwrap();
    assert!(after >= 2.0, "published after the delay, not {after} s");
}

/// paho MQTT 5 No Local: a subscription with it gets other clients' publishes and not the
/// client's own (a watcher without it gets all four); once the client also has an
/// overlapping subscription without No Local, its own publish arrives once.
#[test]
fn paho_v5_no_local_skips_the_clients_own_publishes() {
    let mut weir = Weir::builder().start().unwrap();
    let steps = paho(&mut weir, "no_local_v5");
    let no_local = &steps["no_local"];
    assert_eq!(no_local["codes"], json!([[1]]));
    assert_eq!(
        no_local["received"],
        json!([
            msg("nl/t", "theirs-1", 1, false),
            msg("nl/t", "theirs-2", 1, false)
        ])
    );
    assert_eq!(
        no_local["watched"],
        json!(["mine-1", "theirs-1", "mine-2", "theirs-2"])
    );
    let overlapping = &steps["overlapping"];
    assert_eq!(overlapping["codes"], json!([[1], [1]]));
    assert_eq!(
        overlapping["received"],
        json!([
            msg("nl/t", "theirs-1", 1, false),
            msg("nl/t", "theirs-2", 1, false),
            msg("nl/t", "mine-3", 1, false),
            msg("nl/t", "theirs-3", 1, false)
        ])
    );
}

/// paho (3.1.1 and 5) over WebSocket (transport `websockets`, path `/mqtt`) on the
/// WebSocket listener: it gets what a TCP client publishes at QoS 0, 1 and 2, and the TCP
/// client what it publishes, 20 small payloads and a 200,000-byte one per QoS, exact, in
/// order and at their QoS.
#[test]
fn paho_over_websocket_round_trips_qos_0_1_2_with_a_tcp_client() {
    let mut weir = Weir::builder().start().unwrap();
    let ws = weir.mqtt_websocket_addr().unwrap().to_string();
    for version in ["v311", "v5"] {
        let steps = paho_with(&mut weir, &format!("websocket_{version}"), &[&ws]);
        let websocket = &steps["websocket"];
        assert_eq!(websocket["connack"], 0, "{version}");
        assert_eq!(websocket["granted"], json!([[2], [2]]), "{version}");
        for direction in ["down", "up"] {
            for q in 0..3 {
                assert_eq!(
                    websocket["results"][direction][format!("q{q}")],
                    json!({"exact_and_in_order": true, "received": 21, "qos": [q]}),
                    "{version} {direction} QoS {q}"
                );
            }
        }
    }
}

/// paho MQTT 5 subscriber announcing Topic Alias Maximum 2 gets messages on four topics
/// (`sa/a` to `sa/d`, 14 in all) with server-set aliases 1 and 2: a topic first in full with
/// an alias, then by the alias alone; once both are in use the oldest set is given to the
/// next new topic. Resolving them as MQTT 5 says (paho 2.1 leaves it to the application)
/// gives every message's full topic, in publish order. A subscriber announcing no maximum
/// gets full topics without aliases.
#[test]
fn paho_v5_topic_aliases_to_the_client_resolve_to_full_topics() {
    let mut weir = Weir::builder().start().unwrap();
    let steps = paho(&mut weir, "server_aliases_v5");
    let aliases = &steps["server_aliases"];
    assert_eq!(aliases["received"], aliases["sent"], "{aliases}");
    assert_eq!(aliases["plain_received"], aliases["sent"]);
    assert!(
        (aliases["plain_aliases"].as_array().unwrap().iter()).all(Value::is_null),
        "{aliases}"
    );
    // Sent: a b a b c a d c d b a a c b.
    assert_eq!(
        aliases["wire"],
        json!([
            ["sa/a", 1],
            ["sa/b", 2],
            ["", 1],
            ["", 2],
            ["sa/c", 1], // a's alias, the oldest
            ["sa/a", 2], // b's
            ["sa/d", 1], // c's
            ["sa/c", 2], // a's
            ["", 1],
            ["sa/b", 1], // d's, set before c's
            ["sa/a", 2], // c's
            ["", 2],
            ["sa/c", 1], // b's
            ["sa/b", 2]  // a's
        ])
    );
}

/// MQTT.js 5.16 on MQTT 3.1.1 (protocolVersion 4) sends 600 publishes (200 each at QoS 0, 1
/// and 2) without waiting for acknowledgements: every one completes and a subscriber gets
/// them byte for byte, in order, at their QoS. A retained message replaced once reaches a
/// later subscriber with the retain flag; a cleared one does not.
#[test]
fn mqttjs_v4_round_trips_qos_0_1_2_and_retained_messages() {
    let mut weir = Weir::builder().start().unwrap();
    let steps = mqttjs(&mut weir, "round_trip", "4");
    assert_mqttjs_common(&steps);
}

/// MQTT.js 5.16 on MQTT 5: the QoS 0/1/2 round trips and retained messages (at most 32
/// publishes in flight: MQTT.js does not apply the server's Receive Maximum itself), user
/// properties (a repeated name as MQTT.js's array) and content type reach the subscriber;
/// MQTT.js's automatic topic aliases (up to the 16 CONNACK allows) resolve to the full
/// topics; a publish over the 1 MiB Maximum Packet Size ends the connection (DISCONNECT 0x95
/// when the client reads it before the reset).
#[test]
fn mqttjs_v5_round_trips_with_user_properties_and_topic_aliases() {
    let mut weir = Weir::builder().start().unwrap();
    let steps = mqttjs(&mut weir, "round_trip", "5");
    assert_mqttjs_common(&steps);
    assert_eq!(
        steps["properties"],
        json!({"step": "properties", "user_properties": {"site": "plant-3", "tag": ["x", "y"]},
            "content_type": "application/json", "payload_format": true})
    );
    let alias = &steps["topic_alias"];
    assert_eq!(alias["topic_alias_maximum"], 16);
    // What MQTT.js sent: each topic once with its name and alias, then the alias alone.
    assert_eq!(
        alias["sent"],
        json!([
            ["js/alias/one", 1],
            ["js/alias/two", 2],
            ["", 1],
            ["", 2],
            ["", 1],
            ["", 2]
        ])
    );
    assert_eq!(
        alias["one"],
        json!(["js/alias/one#0", "js/alias/one#1", "js/alias/one#2"])
    );
    assert_eq!(
        alias["two"],
        json!(["js/alias/two#0", "js/alias/two#1", "js/alias/two#2"])
    );
    let big = &steps["too_big"];
    assert_eq!(big["maximum_packet_size"], 1_048_576);
    assert_eq!(big["closed"], true);
    assert!(
        big["reason_code"].is_null() || big["reason_code"] == 0x95,
        "{big}"
    );
    let stored = stop_and_read(&mut weir, "js");
    let mut aliased: Vec<&str> = (stored.iter())
        .filter(|r| r.key.starts_with("js/alias/"))
        .map(|r| r.key.as_str())
        .collect();
    aliased.sort_unstable();
    aliased.dedup();
    assert_eq!(aliased, ["js/alias/one", "js/alias/two"]);
    let props = (stored.iter())
        .find(|r| r.key == "js/props")
        .expect("js/props stored");
    let user: Vec<(&str, &[u8])> = (props.headers.iter())
        .filter(|(k, _)| !k.starts_with("mqtt."))
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    assert_eq!(
        user,
        [
            ("site", b"plant-3".as_slice()),
            ("tag", b"x"),
            ("tag", b"y")
        ]
    );
}

/// The steps MQTT.js's `round_trip` reports on both protocol versions.
fn assert_mqttjs_common(steps: &HashMap<String, Value>) {
    let trips = &steps["round_trips"];
    assert_eq!(trips["granted"], json!([2]));
    for q in 0..3 {
        assert_eq!(
            trips["results"][format!("q{q}")],
            json!({"received": 200, "exact_and_in_order": true, "qos": [q]}),
            "QoS {q}"
        );
    }
    assert_eq!(
        steps["retained"]["a"],
        json!([
            msg("js/ret/a", "v2", 1, true),
            msg("js/ret/a", "live", 1, false)
        ])
    );
    assert_eq!(
        steps["retained"]["b"],
        json!([msg("js/ret/b", "live", 1, false)])
    );
}

/// A running mosquitto_sub: its stdout lines arrive on a channel.
pub(crate) struct MosquittoSub {
    child: Child,
    lines: Receiver<String>,
}

impl MosquittoSub {
    /// Starts `mosquitto_sub -d` with `args` against `addr` and waits until it has its SUBACK
    /// (its debug output says `Subscribed`). It gives up by itself after 30 s (`-W`). Its
    /// output goes through `stdbuf -oL` (coreutils): into a pipe, mosquitto_sub's debug
    /// lines would otherwise wait in its stdio buffer until it exits.
    pub(crate) fn start(addr: SocketAddr, args: &[&str]) -> MosquittoSub {
        let mut child = Command::new("stdbuf")
            .args(["-oL", "mosquitto_sub"])
            .args(["-d", "-W", "30", "-h", &addr.ip().to_string()])
            .args(["-p", &addr.port().to_string()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub is installed by `cargo xtask test` (mosquitto-clients)");
        let (tx, lines) = channel();
        let stdout = child.stdout.take().expect("a stdout pipe");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut sub = MosquittoSub { child, lines };
        let before = sub.read_until(|line| line.starts_with("Subscribed (mid"));
        assert!(
            before.iter().all(|line| is_debug(line)),
            "messages before SUBACK: {before:?}"
        );
        sub
    }

    /// Lines until (and with) the first `stop` accepts; panics after [`WAIT`] or if the
    /// process ends first.
    fn read_until(&mut self, mut stop: impl FnMut(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = stop(&line);
                    lines.push(line);
                    if done {
                        return lines;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    panic!("mosquitto_sub: nothing awaited within {WAIT:?}: {lines:?}")
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("mosquitto_sub ended early: {lines:?}")
                }
            }
        }
    }

    /// Waits for the process to end (after its `-C` count, or `-W`); the messages it printed
    /// since [`MosquittoSub::start`], without its debug lines.
    pub(crate) fn messages(mut self) -> Vec<String> {
        let deadline = Instant::now() + WAIT + Duration::from_secs(30);
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => lines.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    panic!("mosquitto_sub did not end: {lines:?}")
                }
            }
        }
        let status = self.child.wait().expect("mosquitto_sub's exit status");
        assert!(status.success(), "mosquitto_sub {status}: {lines:?}");
        lines.into_iter().filter(|line| !is_debug(line)).collect()
    }
}

impl Drop for MosquittoSub {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A line of mosquitto_sub's `-d` output rather than a message.
fn is_debug(line: &str) -> bool {
    line.starts_with("Client ") || line.starts_with("Subscribed (mid")
}

/// Runs mosquitto_pub with `args` against `addr`; panics unless it succeeds within [`WAIT`]
/// (and then kills it).
fn mosquitto_pub(addr: SocketAddr, args: &[&str]) {
    let child = Command::new("mosquitto_pub")
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mosquitto_pub is installed by `cargo xtask test` (mosquitto-clients)");
    let mut publisher = Reaped(child);
    let mut status = None;
    weir_tests::wait_until(&format!("mosquitto_pub {args:?} to end"), WAIT, || {
        status = publisher.0.try_wait().expect("mosquitto_pub's status");
        status.is_some()
    });
    let mut stderr = String::new();
    if let Some(mut pipe) = publisher.0.stderr.take() {
        std::io::Read::read_to_string(&mut pipe, &mut stderr).expect("mosquitto_pub's stderr");
    }
    assert!(
        status.is_some_and(|s| s.success()),
        "mosquitto_pub {args:?} {status:?}: {stderr}"
    );
}

/// A child process killed if it is still running when this is dropped (a test that fails
/// while waiting for it leaves nothing behind).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// mosquitto_pub and mosquitto_sub 2.0 (MQTT 3.1.1): a subscriber to `mq/#` at QoS 2 gets
/// what mosquitto_pub sends at QoS 0, 1 and 2 (a message with spaces, a retained one live
/// with retain 0); a later subscriber gets the retained message with the retain flag; after
/// `-r -n` clears it, a subscriber with `--retained-only` gets none (the live message that
/// follows ends it).
#[test]
fn mosquitto_clients_round_trip_qos_0_1_2_and_retained() {
    let mut weir = Weir::builder().start().unwrap();
    let addr = weir.mqtt_addr().unwrap();
    // Topic, QoS, retain flag, payload.
    let formatted = |args: &[&'static str]| [args, &["-F", "%t|%q|%r|%p"]].concat();
    let sub = MosquittoSub::start(addr, &formatted(&["-t", "mq/#", "-q", "2", "-C", "5"]));
    mosquitto_pub(addr, &["-t", "mq/a", "-q", "0", "-m", "zero"]);
    mosquitto_pub(addr, &["-t", "mq/a", "-q", "1", "-m", "one"]);
    mosquitto_pub(addr, &["-t", "mq/a", "-q", "2", "-m", "two"]);
    mosquitto_pub(addr, &["-t", "mq/b", "-q", "1", "-m", "with spaces in it"]);
    mosquitto_pub(addr, &["-t", "mq/ret", "-q", "1", "-r", "-m", "kept"]);
    let mut got = sub.messages();
    got.sort();
    assert_eq!(
        got,
        [
            "mq/a|0|0|zero",
            "mq/a|1|0|one",
            "mq/a|2|0|two",
            "mq/b|1|0|with spaces in it",
            "mq/ret|1|0|kept",
        ]
    );
    let late = MosquittoSub::start(addr, &formatted(&["-t", "mq/ret", "-q", "1", "-C", "1"]));
    assert_eq!(late.messages(), ["mq/ret|1|1|kept"]);
    mosquitto_pub(addr, &["-t", "mq/ret", "-q", "1", "-r", "-n"]);
    let cleared = MosquittoSub::start(
        addr,
        &formatted(&["-t", "mq/ret", "-q", "1", "--retained-only"]),
    );
    mosquitto_pub(addr, &["-t", "mq/ret", "-q", "1", "-m", "live"]);
    assert_eq!(cleared.messages(), Vec::<String>::new());
}

/// mosquitto_pub and mosquitto_sub 2.0 on MQTT 5 (`-V 5`): user properties (a repeated name),
/// content type, response topic and correlation data set with `-D publish` reach
/// mosquitto_sub; kcat, on the Kafka side, reads the record keyed by the MQTT topic with
/// them as headers.
#[test]
fn mosquitto_v5_properties_reach_the_subscriber_and_kafka_headers() {
    let mut weir = Weir::builder().start().unwrap();
    let addr = weir.mqtt_addr().unwrap();
    let kafka = weir.kafka_addr().unwrap().to_string();
    let sub = MosquittoSub::start(
        addr,
        &["-V", "5", "-t", "mq5/#", "-q", "1", "-C", "2"]
            .into_iter()
            .chain(["-F", "%t|%q|%r|%C|%R|%D|%P|%p"])
            .collect::<Vec<_>>(),
    );
    let props = [
        "-D",
        "publish",
        "user-property",
        "k",
        "v", //
        "-D",
        "publish",
        "user-property",
        "k",
        "v2", //
        "-D",
        "publish",
        "content-type",
        "text/plain", //
        "-D",
        "publish",
        "response-topic",
        "mq5/reply", //
        "-D",
        "publish",
        "correlation-data",
        "corr-1",
    ];
    let mut args = vec!["-V", "5", "-t", "mq5/a", "-q", "1", "-m", "hello"];
    args.extend(props);
    mosquitto_pub(addr, &args);
    mosquitto_pub(addr, &["-V", "5", "-t", "mq5/b", "-q", "2", "-m", "plain"]);
    let mut got = sub.messages();
    got.sort();
    assert_eq!(
        got,
        [
            "mq5/a|1|0|text/plain|mq5/reply|corr-1|k:v k:v2|hello",
            "mq5/b|1|0|||||plain",
        ]
    );
    let consumed = Command::new("kcat")
        .args([
            "-b",
            &kafka,
            "-C",
            "-t",
            "mq5",
            "-p",
            "0",
            "-o",
            "beginning",
            "-e",
        ])
        .args(["-f", "%k|%h|%s\n"])
        .output()
        .expect("kcat is installed by `cargo xtask test` (Debian package kcat)");
    assert_eq!(
        String::from_utf8_lossy(&consumed.stdout),
        "mq5/a|mqtt.qos=1,mqtt.content_type=text/plain,mqtt.response_topic=mq5/reply,\
         mqtt.correlation_data=corr-1,k=v,k=v2|hello\n\
         mq5/b|mqtt.qos=2|plain\n",
        "{}",
        String::from_utf8_lossy(&consumed.stderr)
    );
}
