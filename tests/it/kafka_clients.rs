//! The Kafka front with third-party clients: kafka-python and confluent-kafka (librdkafka
//! 2.16) from PyPI, installed by `cargo xtask test`, running the scenarios in
//! `tests/compat/`, and Debian's kcat (librdkafka 2.0.2; its basics are in `server.rs`).

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use weir_tests::Weir;

/// Runs `scenario` of the kafka-python script against `weir`; its JSON lines by step name.
fn kafka_python(weir: &mut Weir, scenario: &str) -> HashMap<String, Value> {
    let addr = weir.kafka_addr().expect("kafka listener").to_string();
    run_script("kafka_python.py", "kafka-python", &[scenario, &addr])
}

/// Runs `scenario` of the confluent-kafka script with `args` after the bootstrap address.
fn confluent(addr: &str, scenario: &str, args: &[&str]) -> HashMap<String, Value> {
    let mut all = vec![scenario, addr];
    all.extend_from_slice(args);
    run_script("confluent_scenarios.py", "confluent-kafka", &all)
}

/// Runs `tests/compat/<script>` (a Python client `package` from PyPI drives) with `args`;
/// its JSON lines by step name.
fn run_script(script: &str, package: &str, args: &[&str]) -> HashMap<String, Value> {
    weir_tests::run_compat_script("python3", script, package, args)
}

/// kafka-python's admin client creates a topic with a partition count and a setting (one
/// that survives a restart), gets TOPIC_ALREADY_EXISTS, INVALID_CONFIG and
/// INVALID_REPLICATION_FACTOR for what Weir cannot do, deletes the topic, describes another's
/// settings (and the broker's: none with Kafka names), grows it
/// (INVALID_PARTITIONS for shrinking) and deletes records from the start of a partition
/// (OFFSET_OUT_OF_RANGE past its end); it also describes the cluster.
#[test]
fn kafka_python_admin_creates_and_deletes_topics() {
    let dir = tempfile::tempdir().unwrap();
    let mut weir = Weir::builder()
        .cwd(dir.path())
        .env("WEIR_KAFKA_AUTO_CREATE_TOPICS", "false")
        .start()
        .unwrap();
    let steps = kafka_python(&mut weir, "admin");
    // DescribeCluster: this node is the cluster and its controller.
    let port = weir.kafka_addr().unwrap().port();
    assert_eq!(
        steps["cluster"]["cluster"],
        serde_json::json!({"cluster_id": "weir", "controller_id": 0, "authorized_operations": null,
            "brokers": [{"broker_id": 0, "host": "127.0.0.1", "port": port, "rack": null}]})
    );
    let error = |step: &str| steps[step]["error"].as_i64().unwrap();
    assert_eq!(error("create"), 0);
    assert_eq!(steps["create"]["partitions"], 3);
    assert_eq!(steps["create"]["retention_ms"], "60000");
    assert_eq!(error("again"), 36, "TOPIC_ALREADY_EXISTS");
    assert_eq!(error("bad_config"), 40, "INVALID_CONFIG");
    assert_eq!(error("replicated"), 38, "INVALID_REPLICATION_FACTOR");
    assert_eq!(steps["listed"]["topics"], serde_json::json!(["orders"]));
    assert_eq!(error("delete"), 0);
    assert_eq!(error("delete_missing"), 3, "UNKNOWN_TOPIC_OR_PARTITION");
    assert_eq!(steps["listed_after"]["topics"], serde_json::json!([]));
    assert_eq!(error("kept"), 0);
    assert_eq!(
        steps["describe"]["configs"],
        serde_json::json!({
            "cleanup.policy": ["delete", "DEFAULT_CONFIG"],
            "retention.bytes": ["1048576", "DYNAMIC_TOPIC_CONFIG"],
            "retention.ms": ["604800000", "DEFAULT_CONFIG"],
        })
    );
    assert_eq!(steps["describe_broker"]["configs"], serde_json::json!({}));
    assert_eq!(error("grow"), 0);
    assert_eq!(error("shrink"), 37, "INVALID_PARTITIONS");
    assert_eq!(steps["delete_records"]["low_watermark"], 2);
    assert_eq!(error("delete_past_end"), 1, "OFFSET_OUT_OF_RANGE");
    assert_eq!(steps["log_start"]["offset"], 2);
    weir.signal(libc::SIGTERM).unwrap();
    assert_eq!(weir.wait_exit().unwrap().code(), Some(0));
    // The deleted topic stays deleted; the kept one is on disk with its partitions and
    // its setting.
    let log = weir_log::LmdbLog::open(
        &dir.path().join("weir-data/log"),
        weir_log::LogOptions::default(),
    )
    .unwrap()
    .0;
    let topics = weir_core::log_store::LogStore::topics(&log).unwrap();
    assert_eq!(topics.len(), 1);
    assert_eq!(
        (topics[0].name.as_str(), topics[0].partitions.len()),
        ("kept", 4)
    );
    assert_eq!(topics[0].config.retention_bytes, 1_048_576);
}

/// kafka-python's (idempotent) producer writes five records with acks=all; its consumer,
/// assigned the partition, reads them back from the beginning.
#[test]
fn kafka_python_produces_and_consumes() {
    let mut weir = Weir::builder().start().unwrap();
    let steps = kafka_python(&mut weir, "produce_consume");
    let expected: Vec<Value> = (0..5)
        .map(|i| serde_json::json!([i, format!("k{i}"), format!("v{i}")]))
        .collect();
    assert_eq!(steps["consumed"]["records"], Value::Array(expected));
}

/// A kafka-python consumer with a group id and an assigned partition commits its position
/// (FindCoordinator, OffsetCommit); a second consumer of the group resumes there
/// (OffsetFetch); the admin client lists the group's offset with its metadata. Group
/// membership (subscribe) is not built yet.
#[test]
fn kafka_python_commits_offsets_and_a_new_consumer_resumes_there() {
    let mut weir = Weir::builder().start().unwrap();
    let steps = kafka_python(&mut weir, "committed_offsets");
    assert_eq!(
        steps["first"]["read"],
        serde_json::json!(["e0", "e1", "e2", "e3"])
    );
    assert_eq!(steps["first"]["committed"], 4);
    assert_eq!(steps["second"]["read"], serde_json::json!(["e4", "e5"]));
    assert_eq!(
        steps["listed"]["offsets"],
        serde_json::json!({"readers": {"events:0": [4, "four read"]}, "nobody": {}})
    );
}

/// Batches compressed by the producer are stored and served as they came: kcat (librdkafka)
/// writes with each codec Kafka defines and reads every record back at its offset.
#[test]
fn kcat_round_trips_every_compression_codec() {
    let dir = tempfile::tempdir().unwrap();
    let mut weir = Weir::builder().cwd(dir.path()).start().unwrap();
    let addr = weir.kafka_addr().unwrap().to_string();
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("compressed-{codec}");
        let mut kcat = Command::new("kcat")
            .args(["-b", &addr, "-P", "-t", &topic, "-p", "0", "-z", codec])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kcat is installed by `cargo xtask test` (Debian package kcat)");
        let lines: String = (0..50).map(|i| format!("{codec} reading {i}\n")).collect();
        std::io::Write::write_all(&mut kcat.stdin.take().unwrap(), lines.as_bytes()).unwrap();
        let produced = kcat.wait_with_output().unwrap();
        assert!(
            produced.status.success(),
            "{codec}: {}",
            String::from_utf8_lossy(&produced.stderr)
        );
        let consumed = Command::new("kcat")
            .args(["-b", &addr, "-C", "-t", &topic, "-p", "0"])
            .args(["-o", "beginning", "-e", "-f", "%o %s\n"])
            .output()
            .unwrap();
        let expected: String = (0..50)
            .map(|i| format!("{i} {codec} reading {i}\n"))
            .collect();
        assert_eq!(
            String::from_utf8_lossy(&consumed.stdout),
            expected,
            "{codec}"
        );
    }
    weir.signal(libc::SIGTERM).unwrap();
    assert_eq!(weir.wait_exit().unwrap().code(), Some(0));
    // The log holds the batches as compressed: the codec bits (attributes, bytes 21-22 of a
    // RecordBatch v2) of a topic's batches name the codec it was written with. (librdkafka
    // sends a batch uncompressed when compressing would not make it smaller.)
    for (bits, codec) in [(1, "gzip"), (2, "snappy"), (3, "lz4"), (4, "zstd")] {
        let codecs: Vec<i16> =
            (weir_tests::stored_batches(dir.path(), &format!("compressed-{codec}")).iter())
                .map(|batch| i16::from_be_bytes([batch[21], batch[22]]) & 7)
                .collect();
        assert!(codecs.contains(&bits), "{codec}: batch codecs {codecs:?}");
    }
}

/// The partitions each member of a kafka-python step reported, sorted, all together.
fn partitions(assigned: &Value) -> Vec<u64> {
    let mut all: Vec<u64> = (assigned.as_object().expect("members").values())
        .flat_map(|p| p.as_array().expect("partitions").iter())
        .map(|p| p.as_u64().expect("a partition index"))
        .collect();
    all.sort_unstable();
    all
}

/// Consumer-group membership with kafka-python (JoinGroup, SyncGroup, Heartbeat,
/// LeaveGroup): three subscribed members split a 3-partition topic one each; when one
/// closes, the other two take its partition over and read what comes next; every position
/// is committed. After a broker restart, a new member of the group reads only the records
/// that came after the committed positions; the admin client lists the group (empty, with
/// its offsets) and deletes it (GROUP_ID_NOT_FOUND for an unknown one).
#[test]
fn kafka_python_group_rebalances_when_a_member_leaves_and_resumes_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut weir = Weir::builder().cwd(dir.path()).start().unwrap();
    let steps = kafka_python(&mut weir, "group");
    let three = &steps["three"]["assigned"];
    assert_eq!(partitions(three), [0, 1, 2], "{three}");
    assert!(
        (three.as_object().unwrap().values()).all(|p| p.as_array().unwrap().len() == 1),
        "one partition each: {three}"
    );
    let two = &steps["two"]["assigned"];
    assert_eq!(partitions(two), [0, 1, 2], "{two}");
    assert_eq!(steps["two"]["read"], 39);
    assert_eq!(
        steps["after"],
        serde_json::json!({"step": "after", "state": "Empty",
            "committed": {"fleet:0": 13, "fleet:1": 13, "fleet:2": 13}})
    );
    weir.signal(libc::SIGTERM).unwrap();
    assert_eq!(weir.wait_exit().unwrap().code(), Some(0));

    let mut weir = Weir::builder().cwd(dir.path()).start().unwrap();
    let steps = kafka_python(&mut weir, "group_resume");
    assert_eq!(
        steps["resumed"]["read"],
        serde_json::json!(["late0", "late1", "late2"])
    );
    assert_eq!(
        steps["listed"]["groups"],
        serde_json::json!([{"group_id": "fleet-readers", "protocol_type": "", "group_state": "Empty"}])
    );
    assert_eq!(
        steps["deleted"]["result"],
        serde_json::json!({"fleet-readers": "OK", "nobody": "GroupIdNotFoundError"})
    );
    assert_eq!(steps["listed_after"]["groups"], serde_json::json!([]));
}

/// librdkafka's balanced consumer (kcat -G) joins a group, reads both partitions of a topic
/// and commits when it closes; after a broker restart the next one reads only what was
/// produced since.
#[test]
fn kcat_balanced_consumer_resumes_from_committed_offsets_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        Weir::builder()
            .cwd(dir.path())
            .env("WEIR_KAFKA_AUTO_CREATE_PARTITIONS_COUNT", "2")
            .start()
            .unwrap()
    };
    let produce = |addr: &str, partition: &str, lines: &str| {
        let mut kcat = Command::new("kcat")
            .args(["-b", addr, "-P", "-t", "meters", "-p", partition])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("kcat is installed by `cargo xtask test` (Debian package kcat)");
        std::io::Write::write_all(&mut kcat.stdin.take().unwrap(), lines.as_bytes()).unwrap();
        assert!(kcat.wait().unwrap().success());
    };
    let consume = |addr: &str| {
        let out = Command::new("kcat")
            .args(["-b", addr, "-G", "meter-readers", "meters", "-e", "-q"])
            .args(["-X", "auto.offset.reset=earliest"])
            .args(["-f", "%p %o %s\n"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut lines: Vec<String> = (String::from_utf8_lossy(&out.stdout).lines())
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines
    };
    let mut weir = start();
    let addr = weir.kafka_addr().unwrap().to_string();
    produce(&addr, "0", "a\nb\nc\n");
    produce(&addr, "1", "d\ne\n");
    assert_eq!(
        consume(&addr),
        ["0 0 a", "0 1 b", "0 2 c", "1 0 d", "1 1 e"]
    );
    weir.signal(libc::SIGTERM).unwrap();
    assert_eq!(weir.wait_exit().unwrap().code(), Some(0));

    let mut weir = start();
    let addr = weir.kafka_addr().unwrap().to_string();
    produce(&addr, "1", "f\n");
    assert_eq!(consume(&addr), ["1 2 f"]);
}

/// librdkafka 2.16 (confluent-kafka): every codec (none, gzip, snappy, lz4, zstd) with every
/// acks setting (0, 1, all) is delivered and read back in order; a consumer starting at the
/// end reads only what comes after it.
#[test]
fn confluent_kafka_produces_with_every_codec_and_acks_and_reads_from_both_ends() {
    let mut weir = Weir::builder().start().unwrap();
    let addr = weir.kafka_addr().unwrap().to_string();
    let steps = confluent(&addr, "codecs", &[]);
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        assert_eq!(
            steps["codecs"]["results"][codec],
            serde_json::json!({"delivered": 60, "errors": [], "in_order": true}),
            "{codec}"
        );
    }
    assert_eq!(
        steps["latest"]["read"],
        serde_json::json!(["late0", "late1", "late2"])
    );
}

/// librdkafka's consumer group: three members split a 3-partition topic one each, the two
/// left take over when one closes, and after a broker restart a new member reads only
/// what came after the committed offsets.
#[test]
fn confluent_kafka_group_rebalances_and_resumes_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut weir = Weir::builder().cwd(dir.path()).start().unwrap();
    let addr = weir.kafka_addr().unwrap().to_string();
    let steps = confluent(&addr, "group", &[]);
    let three = &steps["three"]["assigned"];
    assert_eq!(partitions(three), [0, 1, 2], "{three}");
    assert_eq!(three.as_object().unwrap().len(), 3, "{three}");
    let two = &steps["two"]["assigned"];
    assert_eq!(partitions(two), [0, 1, 2], "{two}");
    assert_eq!(steps["two"]["read"], 39);
    weir.signal(libc::SIGTERM).unwrap();
    assert_eq!(weir.wait_exit().unwrap().code(), Some(0));
    let mut weir = Weir::builder().cwd(dir.path()).start().unwrap();
    let addr = weir.kafka_addr().unwrap().to_string();
    let steps = confluent(&addr, "group_resume", &[]);
    assert_eq!(
        steps["resumed"]["read"],
        serde_json::json!(["late0", "late1", "late2"])
    );
}

/// An idempotent librdkafka producer keeps sending while the broker is killed (SIGKILL)
/// and restarted on the same port: every record is delivered, and the log holds each
/// exactly once, in order (what was in flight at the kill is retried; a retry of a stored
/// batch is answered as a duplicate, not stored again).
#[test]
fn confluent_kafka_idempotent_producer_survives_a_broker_kill_without_loss_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let listen = weir_tests::free_local_addr().to_string();
    let start = || {
        Weir::builder()
            .cwd(dir.path())
            .env("WEIR_KAFKA_LISTEN", listen.clone())
            .start()
            .unwrap()
    };
    let mut weir = start();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("compat/confluent_scenarios.py");
    let producer = Command::new("python3")
        .arg(script)
        .args(["idempotent", &listen, "1500"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 runs");
    // The producer sends for about 6 s; kill the broker once records are in the log, in the
    // middle of it.
    weir.wait_for_metric("weir_log_appends_total", |n| n >= 100)
        .unwrap();
    weir.signal(libc::SIGKILL).unwrap();
    weir.wait_exit().unwrap();
    let _weir = start();
    let output = producer.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let produced = (stdout.lines())
        .find(|line| line.contains("\"produced\""))
        .expect("the producer reports");
    let produced: Value = serde_json::from_str(produced).unwrap();
    assert_eq!(produced["delivered"], 1500, "{produced}");
    assert_eq!(produced["error_count"], 0, "{produced}");
    let steps = confluent(&listen, "read_all", &["idempotent", "1500"]);
    assert_eq!(
        steps["read"],
        serde_json::json!({"step": "read", "count": 1500, "distinct": 1500, "extra": 0, "in_order": true})
    );
}

/// kafkajs 2.2.4 (Node, from npm): gzip produce with acks=all, three subscribed members
/// that split a 3-partition topic and rebalance when one disconnects, committed offsets
/// read back, and the admin client listing, describing and deleting the group.
#[test]
fn kafkajs_group_rebalances_and_its_admin_client_manages_the_group() {
    let mut weir = Weir::builder().start().unwrap();
    let addr = weir.kafka_addr().unwrap().to_string();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("compat/kafkajs_scenarios.js");
    let output = Command::new("node")
        .arg(script)
        .args(["group", &addr])
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "kafkajs failed (is it installed? `cargo xtask test` installs it into \
         tests/compat/node_modules):\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let steps: HashMap<String, Value> = (stdout.lines())
        .map(|line| {
            let value: Value = serde_json::from_str(line).expect("one JSON object per line");
            (value["step"].as_str().expect("a step").to_owned(), value)
        })
        .collect();
    let three = &steps["three"]["assigned"];
    assert_eq!(partitions(three), [0, 1, 2], "{three}");
    assert_eq!(three.as_object().unwrap().len(), 3, "{three}");
    assert_eq!(partitions(&steps["two"]["assigned"]), [0, 1, 2]);
    assert_eq!(steps["two"]["read"], 39);
    assert_eq!(
        steps["after"]["committed"],
        serde_json::json!({"js:0": 13, "js:1": 13, "js:2": 13})
    );
    assert_eq!(steps["after"]["state"], "Empty");
    assert_eq!(steps["listed"]["groups"], serde_json::json!(["js-readers"]));
    assert_eq!(steps["deleted"]["groups"], serde_json::json!([]));
}
