//! WebAssembly plugins on ingest against the real `weir` process: the example plugins
//! (Rust, C, JavaScript; built by `cargo xtask plugins`) bound in the config file and
//! deployed at run time, read back with rdkafka and rumqttc; the limits (deadline, memory
//! cap, traps, circuit breaker), deploy-time validation and hot swap.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rumqttc::{Packet, QoS};
use weir_tests::{WAIT, Weir, http_request, plugin_wasm};

use crate::mqtt::{Client, bootstrap};

/// A `weir.toml` holding these `[[plugins.bindings]]` tables (TOML text) in a fresh directory,
/// and a broker started on it with `env`.
fn start_with(bindings: &str, env: &[(&str, &str)]) -> Weir {
    let dir = tempfile::tempdir().expect("tempdir").keep();
    std::fs::write(dir.join("weir.toml"), bindings).expect("config written");
    let mut builder = Weir::builder().cwd(&dir).arg("-c").arg("weir.toml");
    for (k, v) in env {
        builder = builder.env(*k, *v);
    }
    builder.start().expect("weir starts")
}

fn binding(name: &str, topic: &str, plugin: &str, config: &str, extra: &str) -> String {
    format!(
        "[[plugins.bindings]]\nname = \"{name}\"\ntopics = [\"{topic}\"]\n{extra}\n\
         plugins = [{{ path = \"{}\", config = {{ {config} }} }}]\n\n",
        plugin_wasm(plugin).display()
    )
}

/// A record read back: topic, key, value, headers.
type Read = (String, Option<String>, String, HashMap<String, String>);

/// Everything in `topics` from the start, until `count` records arrived (or [`WAIT`]
/// passed).
fn consume(weir: &mut Weir, topics: &[&str], count: usize) -> Vec<Read> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap(weir))
        .set("group.id", format!("reader-{}", topics.join("-")))
        .set("auto.offset.reset", "earliest")
        .set("topic.metadata.refresh.interval.ms", "500")
        .create()
        .expect("consumer");
    consumer.subscribe(topics).expect("subscribe");
    let mut out = Vec::new();
    let deadline = Instant::now() + WAIT;
    while out.len() < count && Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message.expect("a record");
        let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_owned(), text(h.value).unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        out.push((
            message.topic().to_owned(),
            text(message.key()),
            text(message.payload()).unwrap_or_default(),
            headers,
        ));
    }
    out
}

fn producer(weir: &mut Weir, extra: &[(&str, &str)]) -> BaseProducer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap(weir))
        .set("linger.ms", "0");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    config.create().expect("producer")
}

/// Publishes at QoS 1 and waits for every PUBACK.
fn publish_all(client: &Client, messages: &[(&str, &str)]) {
    for (topic, payload) in messages {
        client
            .client
            .publish(*topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
            .expect("queued");
    }
    for i in 0..messages.len() {
        client.wait_for(&format!("PUBACK {i}"), |p| matches!(p, Packet::PubAck(_)));
    }
}

/// The three Rust example plugins, bound in the config file: `threshold-filter` drops
/// readings outside its range (from MQTT and from Kafka producers alike), `unit-convert`
/// rewrites values and adds a header, `topic-router` sends MQTT messages to Kafka topics by
/// their second level, one of them to two topics. What rdkafka and an MQTT subscriber read
/// back is what the plugins made.
#[test]
fn the_rust_example_plugins_filter_transform_and_route_mqtt_and_kafka_messages() {
    let config = binding(
        "filter",
        "readings",
        "threshold-filter",
        "field = \"t\", min = 0, max = 50",
        "",
    ) + &binding(
        "convert",
        "weather",
        "unit-convert",
        "field = \"temperature\", from = \"F\", to = \"C\"",
        "",
    ) + &binding(
        "router",
        "site",
        "topic-router",
        "level = 1, \"route.temp\" = \"temperature,all-readings\", \"route.hum\" = \"humidity\"",
        "",
    );
    let mut weir = start_with(&config, &[]);
    let addr = weir.mqtt_addr().unwrap();
    let watcher = Client::connect(addr, "watcher", |_| {});
    watcher.subscribe("weather/#", QoS::AtLeastOnce);
    let device = Client::connect(addr, "device", |_| {});
    publish_all(
        &device,
        &[
            ("readings/a", r#"{"t": 20}"#),
            ("readings/a", r#"{"t": 75}"#),
            ("readings/b", r#"{"t": -3}"#),
            ("readings/b", r#"{"t": 49.5}"#),
            ("weather/roof", r#"{"temperature": 212, "station": "roof"}"#),
            ("site/temp/1", "21.5"),
            ("site/hum/1", "40"),
            ("site/door/1", "open"),
        ],
    );
    let kafka = producer(&mut weir, &[]);
    for (topic, key, value) in [
        ("readings", "k", r#"{"t": 10}"#),
        ("readings", "k", r#"{"t": 100}"#),
        ("weather", "station-2", r#"{"temperature": 32}"#),
        ("site", "x/temp/9", "19"),
    ] {
        kafka
            .send(BaseRecord::to(topic).key(key).payload(value))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    kafka.flush(WAIT).unwrap();

    let readings = consume(&mut weir, &["readings"], 3);
    let mut values: Vec<&str> = readings.iter().map(|r| r.2.as_str()).collect();
    values.sort();
    assert_eq!(values, [r#"{"t": 10}"#, r#"{"t": 20}"#, r#"{"t": 49.5}"#]);

    let weather = consume(&mut weir, &["weather"], 2);
    assert_eq!(weather.len(), 2);
    let by_key: HashMap<String, &Read> = weather
        .iter()
        .map(|r| (r.1.clone().unwrap_or_default(), r))
        .collect();
    let roof = by_key["weather/roof"];
    let json: serde_json::Value = serde_json::from_str(&roof.2).unwrap();
    assert_eq!(json["temperature"], serde_json::json!(100.0));
    assert_eq!(json["station"], "roof");
    assert_eq!(roof.3["unit"], "C");
    assert_eq!(roof.3["mqtt.qos"], "1");
    let produced = by_key["station-2"];
    assert_eq!(produced.2, r#"{"temperature":0.0}"#);
    assert_eq!(produced.3["unit"], "C");
    // The MQTT subscriber gets the stored (converted) messages, from both sides.
    let mut seen: Vec<(String, serde_json::Value)> = watcher
        .publishes(2)
        .into_iter()
        .map(|p| (p.topic.clone(), serde_json::from_slice(&p.payload).unwrap()))
        .collect();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(seen[0].0, "weather/roof");
    assert_eq!(seen[0].1["temperature"], serde_json::json!(100.0));
    assert_eq!(seen[1].0, "weather/station-2");
    assert_eq!(seen[1].1["temperature"], serde_json::json!(0.0));

    // Routed by the MQTT topic's second level, or by the Kafka key's.
    let routed = consume(&mut weir, &["temperature", "humidity", "all-readings"], 5);
    let mut where_to: Vec<(String, String)> = routed
        .iter()
        .map(|r| (r.0.clone(), r.1.clone().unwrap_or_default()))
        .collect();
    where_to.sort();
    assert_eq!(
        where_to,
        [
            ("all-readings".to_owned(), "site/temp/1".to_owned()),
            ("all-readings".to_owned(), "x/temp/9".to_owned()),
            ("humidity".to_owned(), "site/hum/1".to_owned()),
            ("temperature".to_owned(), "site/temp/1".to_owned()),
            ("temperature".to_owned(), "x/temp/9".to_owned()),
        ]
    );
    // Without a route the message stays in its own topic.
    let site = consume(&mut weir, &["site"], 1);
    assert_eq!(site.len(), 1);
    assert_eq!(site[0].1.as_deref(), Some("site/door/1"));
    let (status, body) = weir_tests::http_get(weir.admin_addr().unwrap(), "/plugins").unwrap();
    assert_eq!(status, 200);
    let described: serde_json::Value = serde_json::from_str(&body).unwrap();
    let filter = &described["bindings"][0]["plugins"][0];
    assert_eq!(filter["records_in"], 6);
    assert_eq!(filter["drops"], 3);
    assert_eq!(
        weir.metric("weir_plugin_records_in_total").unwrap(),
        6 + 2 + 4
    );
}

/// The C plugin (bytes world, through plugins-sdk/c/weir_plugin.h) and the JavaScript plugin
/// (typed world, QuickJS) run in the broker like the Rust ones.
#[test]
fn c_and_javascript_plugins_run_in_the_broker() {
    let config = binding("guard", "blobs", "size-guard", "value_bytes_max = 16", "")
        + &binding(
            "redact",
            "users",
            "redact",
            "fields = \"password,token\"",
            "",
        );
    let mut weir = start_with(&config, &[]);
    // One record per request: a rejection refuses the whole batch it came in.
    let big = "x".repeat(17);
    assert_eq!(produce_error(&mut weir, "blobs", "small"), None);
    assert_eq!(
        produce_error(&mut weir, "blobs", &big),
        Some(KafkaError::MessageProduction(
            RDKafkaErrorCode::InvalidRecord
        ))
    );
    assert_eq!(produce_error(&mut weir, "blobs", ""), None);
    let addr = weir.mqtt_addr().unwrap();
    let app = Client::connect(addr, "app", |_| {});
    // MQTT 3.1.1: the rejected publish is acknowledged and dropped.
    publish_all(&app, &[("blobs/a", big.as_str()), ("blobs/a", "tiny")]);
    let blobs = consume(&mut weir, &["blobs"], 2);
    let values: Vec<&str> = blobs.iter().map(|r| r.2.as_str()).collect();
    assert_eq!(values, ["small", "tiny"]);

    publish_all(
        &app,
        &[
            (
                "users/ann",
                r#"{"user":"ann","password":"hunter2","token":"t","n":1}"#,
            ),
            ("users/bob", "not json"),
        ],
    );
    assert_eq!(
        produce_error(&mut weir, "users", r#"{"user":"cy","token":"x"}"#),
        None
    );
    let users = consume(&mut weir, &["users"], 3);
    let by_key: HashMap<String, String> = users
        .into_iter()
        .map(|r| (r.1.unwrap_or_default(), r.2))
        .collect();
    let ann: serde_json::Value = serde_json::from_str(&by_key["users/ann"]).unwrap();
    assert_eq!(ann, serde_json::json!({"user": "ann", "n": 1}));
    assert_eq!(by_key["users/bob"], "not json");
    let cy: serde_json::Value = serde_json::from_str(&by_key["k"]).unwrap();
    assert_eq!(cy, serde_json::json!({"user": "cy"}));
}

/// A plugin's rejection reaches an MQTT 5 client as the PUBACK reason code with the plugin's
/// reason string, a 3.1.1 client as a PUBACK (it has no negative one; nothing is stored),
/// and a Kafka producer as INVALID_RECORD; nothing rejected is stored.
#[test]
fn rejections_reach_mqtt5_clients_as_reason_codes_and_kafka_producers_as_errors() {
    let config = binding(
        "filter",
        "readings",
        "threshold-filter",
        "field = \"t\", max = 50",
        "",
    );
    let mut weir = start_with(&config, &[]);
    let addr = weir.mqtt_addr().unwrap();

    let mut options =
        rumqttc::v5::MqttOptions::new("v5-device", addr.ip().to_string(), addr.port());
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut connection) = rumqttc::v5::Client::new(options, 10);
    client
        .publish(
            "readings/x",
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            false,
            "garbage",
        )
        .unwrap();
    let deadline = Instant::now() + WAIT;
    let puback = loop {
        assert!(Instant::now() < deadline, "no PUBACK within {WAIT:?}");
        match connection.recv_timeout(Duration::from_millis(200)) {
            Ok(Ok(rumqttc::v5::Event::Incoming(rumqttc::v5::mqttbytes::v5::Packet::PubAck(
                ack,
            )))) => break ack,
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(e)) => panic!("connection failed: {e}"),
        }
    };
    assert_eq!(
        puback.reason,
        rumqttc::v5::mqttbytes::v5::PubAckReason::PayloadFormatInvalid
    );
    let reason = puback
        .properties
        .and_then(|p| p.reason_string)
        .unwrap_or_default();
    assert!(reason.contains("numeric field \"t\""), "{reason}");

    let old = Client::connect(addr, "v311-device", |_| {});
    publish_all(
        &old,
        &[("readings/y", "garbage"), ("readings/y", r#"{"t": 1}"#)],
    );

    let error = produce_error(&mut weir, "readings", "garbage");
    assert_eq!(
        error,
        Some(KafkaError::MessageProduction(
            RDKafkaErrorCode::InvalidRecord
        ))
    );
    let stored = consume(&mut weir, &["readings"], 1);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].2, r#"{"t": 1}"#);
    assert_eq!(weir.metric("weir_plugin_rejects_total").unwrap(), 3);
}

/// Records what each delivery reported.
#[derive(Default)]
struct Deliveries(std::sync::Mutex<Vec<Result<(), KafkaError>>>);

impl rdkafka::ClientContext for Deliveries {}

impl rdkafka::producer::ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::producer::DeliveryResult<'_>, _: ()) {
        let outcome = result.as_ref().map(|_| ()).map_err(|(e, _)| e.clone());
        self.0.lock().expect("deliveries").push(outcome);
    }
}

/// What the delivery of one record to `topic` reported: `None` for success.
fn produce_error(weir: &mut Weir, topic: &str, value: &str) -> Option<KafkaError> {
    let producer: BaseProducer<Deliveries> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap(weir))
        .set("message.send.max.retries", "0")
        .create_with_context(Deliveries::default())
        .expect("producer");
    producer
        .send(BaseRecord::to(topic).key("k").payload(value))
        .map_err(|(e, _)| e)
        .expect("queued");
    producer.flush(WAIT).expect("flushed");
    let mut outcomes = producer.context().0.lock().expect("deliveries").clone();
    assert_eq!(outcomes.len(), 1);
    outcomes.pop().expect("one delivery").err()
}

/// A plugin that loops forever is stopped at its deadline and one that grows its memory
/// without end at its cap; their messages land in the dead-letter topic with headers naming
/// the plugin, its version, the error and the original topic, are acknowledged, and ingest
/// goes on (the next messages pass through new instances).
#[test]
fn a_looping_or_growing_plugin_is_stopped_and_its_messages_dead_lettered() {
    let config = binding(
        "spin",
        "spin",
        "misbehave",
        "mode = \"loop\", trigger = \"bad\"",
        "deadline_ms = 20",
    ) + &binding(
        "hog",
        "hog",
        "misbehave",
        "mode = \"grow\", trigger = \"bad\"",
        "memory_bytes_max = 4194304\ndead_letter_topic = \"hog-failures\"",
    );
    let mut weir = start_with(&config, &[]);
    let addr = weir.mqtt_addr().unwrap();
    let device = Client::connect(addr, "device", |_| {});
    for topic in ["spin/a", "hog/a"] {
        publish_all(&device, &[(topic, "ok 1")]);
        publish_all(&device, &[(topic, "bad")]);
        publish_all(&device, &[(topic, "ok 2")]);
    }
    for (topic, dlq, error) in [
        ("spin", "spin.dlq", "timeout"),
        ("hog", "hog-failures", "memory"),
    ] {
        let stored = consume(&mut weir, &[topic], 2);
        let values: Vec<&str> = stored.iter().map(|r| r.2.as_str()).collect();
        assert_eq!(values, ["ok 1", "ok 2"], "{topic}");
        let letters = consume(&mut weir, &[dlq], 1);
        assert_eq!(letters.len(), 1, "{dlq}");
        let (_, key, value, headers) = &letters[0];
        assert_eq!(value, "bad");
        assert_eq!(key.as_deref(), Some(format!("{topic}/a").as_str()));
        assert_eq!(headers["weir.plugin.name"], "misbehave");
        assert_eq!(headers["weir.plugin.version"].len(), 12);
        assert!(
            headers["weir.plugin.error"].starts_with(error),
            "{headers:?}"
        );
        assert_eq!(headers["weir.original.topic"], topic);
        assert_eq!(headers["mqtt.qos"], "1");
    }
    assert_eq!(weir.metric("weir_plugin_failures_total").unwrap(), 2);
    assert_eq!(weir.metric("weir_plugin_dead_lettered_total").unwrap(), 2);
}

/// 10,000 consecutive traps (each discarding its instance) leave the broker's memory flat
/// and trip the circuit breaker (`plugins.failures_max` = 10,000), which logs and counts it;
/// with `when_open = "reject"`, producers are then refused.
#[test]
fn ten_thousand_traps_keep_memory_flat_and_trip_the_breaker() {
    let config = binding(
        "crash",
        "crash",
        "misbehave",
        "mode = \"trap\"",
        "when_open = \"reject\"",
    );
    // Relaxed durability: the dead letters need no fsync each, so the test is quick.
    let mut weir = start_with(
        &config,
        &[
            ("WEIR_STORAGE_DURABILITY", "relaxed"),
            ("WEIR_PLUGINS_FAILURES_MAX", "10000"),
            ("WEIR_PLUGINS_BREAKER_OPEN_MS", "600000"),
        ],
    );
    // One record per batch: a call, a trap, a discarded instance each.
    let kafka = producer(
        &mut weir,
        &[
            ("batch.num.messages", "1"),
            ("message.send.max.retries", "0"),
        ],
    );
    let send_wave = |n: usize| {
        for i in 0..n {
            kafka
                .send(BaseRecord::to("crash").key("k").payload(&format!("{i}")))
                .map_err(|(e, _)| e)
                .expect("queued");
        }
        kafka.flush(WAIT).expect("flushed");
    };
    send_wave(1000);
    let warm = weir.rss_anon_bytes().unwrap();
    let mut waves = 0;
    while weir.metric("weir_plugin_circuit_trips_total").unwrap() == 0 {
        waves += 1;
        let failures = weir.metric("weir_plugin_failures_total").unwrap();
        assert!(
            waves <= 20,
            "no trip after 21,000 records ({failures} failures)"
        );
        send_wave(1000);
    }
    let after = weir.rss_anon_bytes().unwrap();
    assert_eq!(weir.metric("weir_plugin_failures_total").unwrap(), 10_000);
    assert!(
        after < warm + 16 * 1024 * 1024,
        "anonymous memory grew from {warm} to {after} bytes over 10,000 traps"
    );
    weir.wait_for_log("plugin circuit open").unwrap();
    assert_eq!(
        weir.metric("weir_plugin_dead_lettered_total").unwrap(),
        10_000
    );
    assert_eq!(
        produce_error(&mut weir, "crash", "refused"),
        Some(KafkaError::MessageProduction(
            RDKafkaErrorCode::PolicyViolation
        ))
    );
    assert!(weir.metric("weir_plugin_circuit_bypassed_total").unwrap() >= 1);
}

/// A module that does not match the contract is refused at deploy with the validation error
/// (and nothing changes); so is a configuration its `init` refuses; a config-file binding
/// that cannot start stops the broker with the reason.
#[test]
fn a_module_that_does_not_match_the_contract_is_refused_at_deploy() {
    let mut weir = Weir::builder().start().unwrap();
    let admin = weir.admin_addr().unwrap();
    let (status, body) = http_request(
        admin,
        "PUT",
        "/plugins/modules/junk",
        b"\0asm\x01\0\0\0garbage",
    )
    .unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not a valid WebAssembly component"), "{body}");
    // A core module (not a component) of the right magic: refused the same way.
    let (status, body) =
        http_request(admin, "PUT", "/plugins/modules/core", b"\0asm\x01\0\0\0").unwrap();
    assert_eq!(status, 400, "{body}");
    let bytes = std::fs::read(plugin_wasm("threshold-filter")).unwrap();
    let (status, body) = http_request(admin, "PUT", "/plugins/modules/filter", &bytes).unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("bytes-plugin"), "{body}");
    let spec = br#"{"topics": ["t"], "plugins": [{"module": "filter", "config": {"min": "ten"}}]}"#;
    let (status, body) = http_request(admin, "PUT", "/plugins/bindings/b", spec).unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("init refused the configuration") && body.contains("min"),
        "{body}"
    );
    let spec = br#"{"topics": ["t"], "plugins": [{"module": "nothing"}]}"#;
    let (status, body) = http_request(admin, "PUT", "/plugins/bindings/b", spec).unwrap();
    assert_eq!(status, 400, "{body}");
    let (_, listed) = weir_tests::http_get(admin, "/plugins").unwrap();
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["bindings"], serde_json::json!([]));
    drop(weir);

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.wasm"), b"not wasm").unwrap();
    std::fs::write(
        dir.path().join("weir.toml"),
        "[[plugins.bindings]]\nname = \"b\"\ntopics = [\"t\"]\nplugins = [{ path = \"bad.wasm\" }]\n",
    )
    .unwrap();
    let (code, output) = weir_tests::run_weir(
        &["-c", "weir.toml"],
        &[
            ("WEIR_ADMIN_LISTEN", "127.0.0.1:0"),
            ("WEIR_KAFKA_LISTEN", "127.0.0.1:0"),
            ("WEIR_MQTT_LISTEN", "127.0.0.1:0"),
            ("WEIR_MQTT_WEBSOCKET_LISTEN", "127.0.0.1:0"),
        ],
        dir.path(),
    )
    .unwrap();
    assert_eq!(code, 1, "{output}");
    assert!(
        output.contains("plugin binding \"b\"")
            && output.contains("not a valid WebAssembly component"),
        "{output}"
    );
}

/// `weir plugin deploy|list|remove` manage a running broker: a binding replaced five times
/// (alternating modules) while a client publishes 3,000 QoS 1 messages loses none, drops no
/// connection, and each message is stored once, through whichever version was bound.
#[test]
fn hot_swap_under_a_steady_publish_load_loses_no_message() {
    let mut weir = Weir::builder().start().unwrap();
    let admin = weir.admin_addr().unwrap().to_string();
    let cli = |args: &[&str]| {
        let mut all = vec!["plugin"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--admin", &admin]);
        let (code, output) =
            weir_tests::run_weir(&all, &[], std::path::Path::new(".")).expect("weir runs");
        assert_eq!(code, 0, "weir {all:?}: {output}");
        output
    };
    let passthrough = plugin_wasm("passthrough").display().to_string();
    let convert = plugin_wasm("unit-convert").display().to_string();
    cli(&[
        "deploy",
        &passthrough,
        "--binding",
        "steady",
        "--topic",
        "steady",
    ]);
    let addr = weir.mqtt_addr().unwrap();
    let total = 3000;
    let publisher = std::thread::spawn(move || {
        let device = Client::connect(addr, "steady-device", |o| {
            o.set_inflight(10);
        });
        for i in 0..total {
            device
                .client
                .publish(
                    "steady/a",
                    QoS::AtLeastOnce,
                    false,
                    format!("{{\"temperature\": 32, \"seq\": {i}}}").into_bytes(),
                )
                .expect("queued");
        }
        for i in 0..total {
            device.wait_for(&format!("PUBACK {i}"), |p| matches!(p, Packet::PubAck(_)));
        }
    });
    // Each swap once the plugins have seen 500 more messages, while the client goes on.
    for round in 0..5u64 {
        weir.wait_for_metric("weir_plugin_records_in_total", |n| n >= 500 * (round + 1))
            .unwrap();
        let (module, file) = if round % 2 == 0 {
            ("convert", convert.as_str())
        } else {
            ("pass", passthrough.as_str())
        };
        cli(&[
            "deploy",
            file,
            "--binding",
            "steady",
            "--module",
            module,
            "--topic",
            "steady",
            "--set",
            "from=F",
            "--set",
            "to=C",
        ]);
    }
    publisher
        .join()
        .expect("every PUBACK arrived on one connection");
    let listed: serde_json::Value = serde_json::from_str(&cli(&["list"])).unwrap();
    assert_eq!(listed["bindings"][0]["name"], "steady");
    cli(&["remove", "steady"]);
    let listed: serde_json::Value = serde_json::from_str(&cli(&["list"])).unwrap();
    assert_eq!(listed["bindings"], serde_json::json!([]));
    let stored = consume(&mut weir, &["steady"], total);
    let mut seqs: Vec<u64> = stored
        .iter()
        .map(|r| {
            let json: serde_json::Value = serde_json::from_str(&r.2).expect("JSON");
            json["seq"].as_u64().expect("seq")
        })
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..total as u64).collect::<Vec<_>>());
    // Both versions stored some: the first 500 unconverted, some after the first swap
    // converted (32 F is 0 C).
    let converted = stored.iter().filter(|r| r.3.contains_key("unit")).count();
    assert!(
        converted > 0 && converted < total - 500,
        "{converted} converted"
    );
    assert!(stored.iter().filter(|r| r.3.contains_key("unit")).all(|r| {
        let json: serde_json::Value = serde_json::from_str(&r.2).expect("JSON");
        json["temperature"] == serde_json::json!(0.0)
    }));
}

/// Modules and bindings deployed at run time are kept in the data directory: after a
/// restart the binding is there and applies, its module loaded from the compiled cache.
#[test]
fn deployed_plugins_survive_a_restart() {
    let mut weir = Weir::builder().start().unwrap();
    let admin = weir.admin_addr().unwrap();
    let bytes = std::fs::read(plugin_wasm("threshold-filter")).unwrap();
    let (status, body) = http_request(admin, "PUT", "/plugins/modules/filter", &bytes).unwrap();
    assert_eq!(status, 200, "{body}");
    let spec = br#"{"topics": ["kept"], "plugins": [{"module": "filter", "config": {"max": 10}}]}"#;
    let (status, body) = http_request(admin, "PUT", "/plugins/bindings/f", spec).unwrap();
    assert_eq!(status, 200, "{body}");
    weir.signal(libc::SIGTERM).unwrap();
    weir.wait_exit().unwrap();
    weir.start_again(&[]).unwrap();
    let (_, listed) = weir_tests::http_get(weir.admin_addr().unwrap(), "/plugins").unwrap();
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["modules"][0]["name"], "filter");
    assert_eq!(listed["bindings"][0]["name"], "f");
    assert_eq!(listed["bindings"][0]["source"], "deployed");
    assert!(
        weir.cwd()
            .join("weir-data/plugins/cache")
            .read_dir()
            .unwrap()
            .count()
            >= 1,
        "the compiled module is cached"
    );
    for value in [r#"{"value": 5}"#, r#"{"value": 50}"#] {
        assert_eq!(produce_error(&mut weir, "kept", value), None);
    }
    let stored = consume(&mut weir, &["kept"], 1);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].2, r#"{"value": 5}"#);
}

/// `plugins.module_bytes_max`: a larger module is refused with 413 and changes nothing;
/// `plugins.instances_max`: an instance beyond the pool fails like a plugin (its messages
/// dead-lettered with the reason) while the binding that has one goes on.
#[test]
fn plugin_module_size_and_instance_limits_have_their_documented_outcomes() {
    let config = binding("first", "first", "passthrough", "", "")
        + &binding("second", "second", "passthrough", "", "");
    let mut weir = start_with(
        &config,
        &[
            ("WEIR_PLUGINS_MODULE_BYTES_MAX", "80000"),
            ("WEIR_PLUGINS_INSTANCES_MAX", "1"),
            ("WEIR_SERVER_SHARDS", "1"),
        ],
    );
    let admin = weir.admin_addr().unwrap();
    let (status, body) =
        http_request(admin, "PUT", "/plugins/modules/big", &[0u8; 100_000]).unwrap();
    assert_eq!(status, 413, "{body}");
    let (_, listed) = weir_tests::http_get(admin, "/plugins").unwrap();
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["modules"], serde_json::json!([]));

    assert_eq!(produce_error(&mut weir, "first", "a"), None);
    assert_eq!(produce_error(&mut weir, "second", "b"), None);
    assert_eq!(consume(&mut weir, &["first"], 1)[0].2, "a");
    let letters = consume(&mut weir, &["second.dlq"], 1);
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].2, "b");
    assert!(
        letters[0].3["weir.plugin.error"].starts_with("instantiate"),
        "{:?}",
        letters[0].3
    );
}
