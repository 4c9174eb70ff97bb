//! iot-sim against the real `weir` process: the tool runs and counts correctly on a tiny
//! fleet (its figures are for benchmarks, never asserted here).

use std::sync::Arc;

use weir_tests::Weir;

/// Runs the scenario `text` against a fresh broker (reading back through its Kafka side
/// with `kafka`).
fn run_against_weir(text: &str, kafka: bool) -> iot_sim::Report {
    let mut weir = Weir::builder().start().expect("weir starts");
    let mut scenario = iot_sim::Scenario::parse(text).expect("the scenario parses");
    scenario.broker = weir.mqtt_addr().expect("mqtt listener").to_string();
    if kafka {
        scenario.kafka_bootstrap = Some(weir.kafka_addr().expect("kafka listener").to_string());
    }
    let progress = Arc::new(iot_sim::Progress::default());
    iot_sim::run(&scenario, &progress).expect("the scenario runs")
}

/// Five devices publishing at QoS 0, 1 and 2 for a second: every QoS 1 and 2 publish is
/// acknowledged, the subscriber receives every message once, and the report adds up.
#[test]
fn iot_sim_counts_a_small_fleet_exactly() {
    let report = run_against_weir(
        "devices = 5\nrate_per_device_per_s = 20\nduration_s = 1\ndrain_s = 10\n\
         qos_mix = [1, 1, 1]\npayload = \"bytes:64\"\nworkers = 2\nsubscriber_qos = 2\n",
        false,
    );
    assert_eq!(report.devices, 5);
    let total = report.sent_total();
    assert!(total > 0);
    assert_eq!(report.acked, report.sent[1] + report.sent[2], "{report:?}");
    assert_eq!(report.unacked, 0);
    assert_eq!(report.received, total, "{report:?}");
    assert_eq!((report.duplicates, report.missing_qos12), (0, 0));
    assert_eq!(report.delivery_latency_us.count, total);
    assert_eq!(report.ack_latency_us.count, report.acked);
    let json = report.json();
    assert_eq!(json["received"], total);
    assert!(report.table().contains("| 5 |"));
}

/// With a Kafka bootstrap address, iot-sim also reads the fleet's messages back through a
/// Kafka consumer: every message once, with a latency sample each.
#[test]
fn iot_sim_reads_the_fleet_back_through_kafka() {
    let text = "devices = 4\nrate_per_device_per_s = 20\nduration_s = 1\ndrain_s = 20\n\
                qos_mix = [0, 1, 1]\ntopic = \"plant/{device}/t\"\nsubscribers = 0\n\
                payload = \"cbor\"\n";
    assert_eq!(iot_sim::Scenario::parse(text).unwrap().kafka_topic, "plant");
    let report = run_against_weir(text, true);
    let total = report.sent_total();
    assert!(total > 0);
    let kafka = report.kafka.expect("read back through Kafka");
    assert_eq!(kafka.received, total, "{report:?}");
    assert_eq!((kafka.duplicates, kafka.missing_qos12), (0, 0));
    assert_eq!(kafka.latency_us.count, total);
    assert_eq!(report.json()["kafka"]["received"], total);
    assert!(report.table().contains("publish to Kafka consume"));
}

/// Churn, sessions, status, wills and commands: devices with persistent sessions drop their
/// connections abruptly and reconnect (resending what was in flight), each connection
/// announces a retained `online` status and leaves an `offline` will, and a commander's
/// commands reach the devices; every QoS 1 telemetry message is acknowledged and received.
#[test]
fn iot_sim_churns_persistent_devices_with_status_wills_and_commands() {
    let report = run_against_weir(
        "devices = 5\nrate_per_device_per_s = 20\nduration_s = 2\ndrain_s = 20\n\
         qos_mix = [0, 1, 0]\ntopic = \"fleet/{device}/t\"\nsubscribe_filter = \"fleet/#\"\n\
         clean_session = false\nreconnect_every_s = 0.4\n\
         status_topic = \"fleet/{device}/status\"\ncommand_topic = \"fleet/{device}/cmd\"\n\
         commands_per_s = 20\nworkers = 2\n",
        false,
    );
    assert!(report.reconnects >= 5, "{report:?}");
    assert_eq!(report.unacked, 0, "{report:?}");
    assert_eq!(report.acked, report.sent[1], "{report:?}");
    assert_eq!(report.missing_qos12, 0, "{report:?}");
    assert_eq!(report.received, report.sent_total(), "{report:?}");
    // One `online` per connection; a will per abrupt end (or none, where the new
    // connection took the session over first).
    assert!(report.status_online >= 5 + report.reconnects, "{report:?}");
    assert!(
        report.wills_received >= 1 && report.wills_received <= report.reconnects,
        "{report:?}"
    );
    assert!(report.commands_sent > 0);
    assert_eq!(report.commands_received, report.commands_sent, "{report:?}");
    assert_eq!(report.command_latency_us.count, report.commands_sent);
    let json = report.json();
    assert_eq!(json["reconnects"], report.reconnects);
    assert!(report.table().contains("reconnections"));
}
