//! The access-control list (`auth.acl_file`, Mosquitto's format) against the real process and
//! mosquitto's clients: what it does not grant is denied on publish, subscribe, will and
//! delivery, nothing denied is stored or delivered, and a reload reaches open connections.

use weir_tests::{Weir, stored_values};

use crate::mqtt_clients::MosquittoSub;
use crate::security::{add_user, mosquitto_client};

const RULES: &str = "\
# alice runs the plant; bob only reads temperatures
user alice
topic readwrite plant/#
topic deny plant/secret/#

user bob
topic read plant/+/temp
topic read plant/sentinel

pattern write devices/%c/#
";

/// The same, with bob's temperature line taken away.
const REVOKED: &str = "\
user alice
topic readwrite plant/#
topic deny plant/secret/#

user bob
topic read plant/sentinel
";

fn credentials<'a>(user: &'a str, password: &'a str, id: &'a str) -> [&'a str; 6] {
    ["-u", user, "-P", password, "-i", id]
}

/// Denied publishes are told to MQTT 5 clients (0x87: mosquitto_pub says "Not authorized")
/// and acknowledged and dropped for 3.1.1 ones (counted); a subscription beyond what a user
/// may read gets SUBACK 0x80 ("denied"); a will to a topic the user may not write refuses
/// the CONNECT; a `pattern` line grants each client its own `devices/<client id>/#`; only
/// what was allowed is stored. Then the file changes and SIGHUP reloads it: bob's open
/// subscription to `plant/+/temp` stops receiving (its line was taken away) while his other
/// subscription goes on.
#[test]
fn mqtt_clients_get_only_what_the_acl_grants() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users").display().to_string();
    add_user(&users, "alice", "alice-pw");
    add_user(&users, "bob", "bob-pw");
    let acl = dir.path().join("acl");
    std::fs::write(&acl, RULES).unwrap();
    let mut weir = Weir::builder()
        .cwd(dir.path())
        .env("WEIR_AUTH_USERS_FILE", &users)
        .env("WEIR_AUTH_ALLOW_ANONYMOUS", "false")
        .env("WEIR_AUTH_REFUSED_CONNECT_DELAY_MS", "0")
        .env("WEIR_AUTH_ACL_FILE", acl.display().to_string())
        .env("WEIR_KAFKA_AUTO_CREATE_PARTITIONS_COUNT", "1")
        .start()
        .unwrap();
    let addr = weir.mqtt_addr().unwrap();
    let alice = credentials("alice", "alice-pw", "alice-1");
    let publish = |who: &[&str], version: &str, topic: &str, message: &str| {
        let mut args = who.to_vec();
        args.extend(["-V", version, "-q", "1", "-t", topic, "-m", message]);
        mosquitto_client("mosquitto_pub", addr, &args)
    };
    let mut bob_args = credentials("bob", "bob-pw", "bob-1").to_vec();
    bob_args.extend([
        "-t",
        "plant/+/temp",
        "-t",
        "plant/sentinel",
        "-q",
        "1",
        "-v",
    ]);
    bob_args.extend(["-C", "3", "-V", "mqttv311"]);
    let bob = MosquittoSub::start(addr, &bob_args);

    let (ok, text) = publish(&alice, "mqttv5", "plant/1/temp", "21.5");
    assert!(ok, "{text}");
    // mosquitto_pub warns, and exits 0.
    let (_, text) = publish(&alice, "mqttv5", "plant/secret/key", "hunter2");
    assert!(text.contains("Not authorized"), "MQTT 5, denied: {text}");
    let bob_writes = credentials("bob", "bob-pw", "bob-2");
    let (ok, text) = publish(&bob_writes, "mqttv311", "plant/2/temp", "from bob");
    assert!(ok, "MQTT 3.1.1: acknowledged, then dropped: {text}");
    assert_eq!(weir.metric("weir_mqtt_publishes_denied_total").unwrap(), 2);
    // `pattern write devices/%c/#`: each client its own subtree.
    let device = credentials("bob", "bob-pw", "dev-7");
    let (_, text) = publish(&device, "mqttv5", "devices/dev-7/state", "on");
    assert!(!text.contains("Not authorized"), "{text}");
    let (_, text) = publish(&device, "mqttv5", "devices/dev-8/state", "off");
    assert!(text.contains("Not authorized"), "{text}");
    // A subscription beyond bob's lines, and a will alice may not publish.
    let mut sub = credentials("bob", "bob-pw", "bob-3").to_vec();
    sub.extend(["-t", "plant/#", "-W", "5", "-V", "mqttv311"]);
    let (_, text) = mosquitto_client("mosquitto_sub", addr, &sub);
    assert!(text.contains("denied"), "SUBACK 0x80: {text}");
    let mut will = alice.to_vec();
    will.extend([
        "--will-topic",
        "plant/secret/last",
        "--will-payload",
        "gone",
    ]);
    will.extend(["-t", "plant/3/temp", "-m", "x", "-V", "mqttv5"]);
    let (ok, text) = mosquitto_client("mosquitto_pub", addr, &will);
    assert!(
        !ok && text.contains("authori"),
        "a will it may not publish: {text}"
    );

    // Take bob's temperature line away: his open subscription stops receiving.
    std::fs::write(&acl, REVOKED).unwrap();
    weir.signal(libc::SIGHUP).unwrap();
    weir.wait_for_log("access-control list reloaded after SIGHUP")
        .unwrap();
    assert!(publish(&alice, "mqttv5", "plant/4/temp", "revoked").0);
    assert!(publish(&alice, "mqttv5", "plant/sentinel", "still here").0);
    assert!(publish(&alice, "mqttv5", "plant/sentinel", "and here").0);
    assert_eq!(
        bob.messages(),
        [
            "plant/1/temp 21.5",
            "plant/sentinel still here",
            "plant/sentinel and here"
        ]
    );
    weir.signal(libc::SIGTERM).unwrap();
    assert_eq!(weir.wait_exit().unwrap().code(), Some(0));
    let stored = |topic: &str| -> Vec<String> {
        (stored_values(dir.path(), topic).iter())
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect()
    };
    assert_eq!(
        stored("plant"),
        ["21.5", "revoked", "still here", "and here"]
    );
    assert_eq!(stored("devices"), ["on"]);
}

/// A file that does not parse stops the start with its line.
#[test]
fn a_broken_acl_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let acl = dir.path().join("acl");
    std::fs::write(&acl, "user alice\ntopic read plant/#/x\n").unwrap();
    let mut weir = Weir::builder()
        .env("WEIR_AUTH_ACL_FILE", acl.display().to_string())
        .spawn()
        .unwrap();
    assert_eq!(weir.wait_exit().unwrap().code(), Some(1));
    weir.wait_for_log("line 2").unwrap();
}

const KAFKA_RULES: &str = "\
user alice
topic readwrite plant/#
topic write logs/#
kafka-group readers-*

user bob
topic readwrite logs/#
topic readwrite hidden/#
";

/// One run of tests/compat/acl_scenarios.py (confluent-kafka over SCRAM-SHA-512) as `user`.
fn kafka_as(
    addr: &str,
    user: &str,
    scenario: &[&str],
) -> std::collections::HashMap<String, serde_json::Value> {
    let password = format!("{user}-pw");
    let args = [&[addr, user, password.as_str()][..], scenario].concat();
    weir_tests::run_compat_script("python3", "acl_scenarios.py", "confluent-kafka", &args)
}

/// Kafka clients (confluent-kafka, librdkafka) get only what the list grants, with Kafka's
/// answers: alice produces to `plant` and reads it back in her group `readers-1`; her produce
/// to `secret` is TOPIC_AUTHORIZATION_FAILED and creates nothing; fetching `logs` (she may
/// write it, not read it) is TOPIC_AUTHORIZATION_FAILED; joining group `audit` is
/// GROUP_AUTHORIZATION_FAILED; Metadata does not list bob's `hidden`; creating `fresh` (no
/// write) and deleting `logs` (no read) are refused. Nothing refused is stored, created or
/// deleted.
#[test]
fn kafka_clients_get_only_what_the_acl_grants() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users").display().to_string();
    add_user(&users, "alice", "alice-pw");
    add_user(&users, "bob", "bob-pw");
    let acl = dir.path().join("acl");
    std::fs::write(&acl, KAFKA_RULES).unwrap();
    let mut weir = Weir::builder()
        .cwd(dir.path())
        .env("WEIR_AUTH_USERS_FILE", &users)
        .env("WEIR_AUTH_ALLOW_ANONYMOUS", "false")
        .env("WEIR_AUTH_ACL_FILE", acl.display().to_string())
        .env("WEIR_KAFKA_AUTO_CREATE_PARTITIONS_COUNT", "1")
        .start()
        .unwrap();
    let addr = weir.kafka_addr().unwrap().to_string();
    for (topic, value) in [("logs", "from bob"), ("hidden", "bob's own")] {
        let steps = kafka_as(&addr, "bob", &["produce", topic, value]);
        assert_eq!(steps["produce"]["delivered"], true, "{steps:?}");
    }
    let steps = kafka_as(&addr, "alice", &["produce", "plant", "21.5"]);
    assert_eq!(steps["produce"]["delivered"], true, "{steps:?}");
    let steps = kafka_as(&addr, "alice", &["produce", "secret", "leaked"]);
    assert_eq!(
        steps["produce"]["error"], "TOPIC_AUTHORIZATION_FAILED",
        "{steps:?}"
    );
    let steps = kafka_as(&addr, "alice", &["consume", "readers-1", "plant"]);
    assert_eq!(
        steps["consume"]["values"],
        serde_json::json!(["21.5"]),
        "{steps:?}"
    );
    let steps = kafka_as(&addr, "alice", &["consume", "audit", "plant"]);
    assert_eq!(
        steps["consume"]["error"], "GROUP_AUTHORIZATION_FAILED",
        "{steps:?}"
    );
    let steps = kafka_as(&addr, "alice", &["assign", "logs"]);
    assert_eq!(
        steps["assign"]["error"], "TOPIC_AUTHORIZATION_FAILED",
        "{steps:?}"
    );
    let steps = kafka_as(&addr, "alice", &["topics"]);
    assert_eq!(
        steps["topics"]["names"],
        serde_json::json!(["logs", "plant"]),
        "{steps:?}"
    );
    let steps = kafka_as(&addr, "alice", &["admin", "fresh", "logs"]);
    assert_eq!(
        steps["create"]["error"], "TOPIC_AUTHORIZATION_FAILED",
        "{steps:?}"
    );
    assert_eq!(
        steps["delete"]["error"], "TOPIC_AUTHORIZATION_FAILED",
        "{steps:?}"
    );
    let steps = kafka_as(&addr, "bob", &["topics"]);
    assert_eq!(
        steps["topics"]["names"],
        serde_json::json!(["hidden", "logs"]),
        "{steps:?}"
    );
    weir.signal(libc::SIGTERM).unwrap();
    assert_eq!(weir.wait_exit().unwrap().code(), Some(0));
    assert_eq!(stored_values(dir.path(), "plant"), [b"21.5".to_vec()]);
    assert_eq!(stored_values(dir.path(), "logs"), [b"from bob".to_vec()]);
    assert_eq!(stored_values(dir.path(), "hidden"), [b"bob's own".to_vec()]);
    let topics = weir_tests::stored_topic_names(dir.path());
    assert_eq!(topics, ["hidden", "logs", "plant"]);
}
