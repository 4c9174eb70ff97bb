//! iot-sim against the real `weir` process: the tool runs and counts correctly on a tiny
//! fleet (its figures are for benchmarks, never asserted here).

use std::sync::Arc;

use weir_tests::Weir;

/// Five devices publishing at QoS 0, 1 and 2 for a second: every QoS 1 and 2 publish is
/// acknowledged, the subscriber receives every message once, and the report adds up.
#[test]
fn iot_sim_counts_a_small_fleet_exactly() {
    let mut weir = Weir::builder().start().unwrap();
    let addr = weir.mqtt_addr().unwrap();
    let mut scenario = iot_sim::Scenario::parse(
        "devices = 5\nrate_per_device_per_s = 20\nduration_s = 1\ndrain_s = 10\n\
         qos_mix = [1, 1, 1]\npayload = \"bytes:64\"\nworkers = 2\nsubscriber_qos = 2\n",
    )
    .unwrap();
    scenario.broker = addr.to_string();
    let progress = Arc::new(iot_sim::Progress::default());
    let report = iot_sim::run(&scenario, &progress).unwrap();
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
    let mut weir = Weir::builder().start().unwrap();
    let addr = weir.mqtt_addr().unwrap();
    let mut scenario = iot_sim::Scenario::parse(
        "devices = 4\nrate_per_device_per_s = 20\nduration_s = 1\ndrain_s = 20\n\
         qos_mix = [0, 1, 1]\ntopic = \"plant/{device}/t\"\nsubscribers = 0\n",
    )
    .unwrap();
    scenario.broker = addr.to_string();
    scenario.kafka_bootstrap = Some(weir.kafka_addr().unwrap().to_string());
    assert_eq!(scenario.kafka_topic, "plant");
    let progress = Arc::new(iot_sim::Progress::default());
    let report = iot_sim::run(&scenario, &progress).unwrap();
    let total = report.sent_total();
    assert!(total > 0);
    let kafka = report.kafka.expect("read back through Kafka");
    assert_eq!(kafka.received, total, "{report:?}");
    assert_eq!((kafka.duplicates, kafka.missing_qos12), (0, 0));
    assert_eq!(kafka.latency_us.count, total);
    assert_eq!(report.json()["kafka"]["received"], total);
    assert!(report.table().contains("publish to Kafka consume"));
}
