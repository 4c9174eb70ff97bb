//! The Kafka front with librdkafka 2.12 through the `rdkafka` crate: every codec and acks
//! setting, consuming from both ends, a consumer group of three that rebalances and resumes
//! after a broker restart, and an idempotent producer across a broker kill.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use weir_tests::Weir;

/// Counts delivery reports.
#[derive(Default)]
struct Deliveries {
    delivered: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.delivered.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

fn producer(bootstrap: &str, settings: &[(&str, &str)]) -> ThreadedProducer<Deliveries> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5");
    for (key, value) in settings {
        config.set(*key, *value);
    }
    config
        .create_with_context(Deliveries::default())
        .expect("producer")
}

fn send(producer: &ThreadedProducer<Deliveries>, topic: &str, partition: i32, value: &str) {
    let record = BaseRecord::<(), str>::to(topic)
        .payload(value)
        .partition(partition);
    producer.send(record).map_err(|(e, _)| e).expect("queued");
}

fn consumer(bootstrap: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .create()
        .expect("consumer")
}

/// Values read from `topic`'s partition 0 from `offset`, until `count` or 30 s.
fn read(bootstrap: &str, topic: &str, offset: Offset, count: usize) -> Vec<String> {
    read_after(bootstrap, topic, offset, count, || {})
}

/// [`read`], calling `positioned` once the start is fixed: `Offset::End` is resolved first
/// (ListOffsets for the latest offset, as librdkafka does for it) to the offset it names.
fn read_after(
    bootstrap: &str,
    topic: &str,
    offset: Offset,
    count: usize,
    positioned: impl FnOnce(),
) -> Vec<String> {
    let consumer = consumer(bootstrap, "readers");
    let offset = match offset {
        Offset::End => {
            let (_, high) = (consumer.fetch_watermarks(topic, 0, Duration::from_secs(30)))
                .expect("the latest offset");
            Offset::Offset(high)
        }
        other => other,
    };
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, offset)
        .expect("librdkafka call");
    consumer.assign(&assignment).expect("librdkafka call");
    positioned();
    let mut values = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while values.len() < count && Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            let value = message.payload_view::<str>().and_then(Result::ok);
            values.push(value.unwrap_or_default().to_owned());
        }
    }
    values
}

#[test]
fn rdkafka_produces_with_every_codec_and_acks_and_consumes_from_both_ends() {
    let mut weir = Weir::builder().start().unwrap();
    let bootstrap = weir.kafka_addr().unwrap().to_string();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("rd-{codec}");
        let mut sent = Vec::new();
        for acks in ["0", "1", "all"] {
            let producer = producer(&bootstrap, &[("compression.type", codec), ("acks", acks)]);
            for i in 0..20 {
                let value = format!("{codec}-{acks}-{i}-{}", "x".repeat(200));
                send(&producer, &topic, 0, &value);
                sent.push(value);
            }
            producer.flush(Duration::from_secs(30)).unwrap();
            let context = producer.context();
            assert_eq!(
                context.failed.load(Ordering::Relaxed),
                0,
                "{codec} acks {acks}"
            );
            assert_eq!(
                context.delivered.load(Ordering::Relaxed),
                20,
                "{codec} acks {acks}"
            );
        }
        let got = read(&bootstrap, &topic, Offset::Beginning, sent.len());
        assert_eq!(got, sent, "{codec}");
    }
    // From the end: only what comes after the consumer is positioned.
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let late = std::thread::spawn({
        let bootstrap = bootstrap.clone();
        move || {
            read_after(&bootstrap, "rd-none", Offset::End, 3, move || {
                let _ = ready_tx.send(());
            })
        }
    });
    ready
        .recv_timeout(Duration::from_secs(60))
        .expect("the consumer is positioned");
    let producer = producer(&bootstrap, &[]);
    for i in 0..3 {
        send(&producer, "rd-none", 0, &format!("late{i}"));
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    assert_eq!(late.join().unwrap(), ["late0", "late1", "late2"]);
}

/// A subscribed member on its own thread, committing after every record it reads.
struct Member {
    assigned: Arc<Mutex<Vec<i32>>>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

fn member(bootstrap: &str, seen: &Arc<Mutex<Vec<String>>>) -> Member {
    let (assigned, stop) = (
        Arc::new(Mutex::new(Vec::new())),
        Arc::new(AtomicBool::new(false)),
    );
    let consumer = consumer(bootstrap, "rd-group");
    consumer.subscribe(&["rd-plant"]).expect("librdkafka call");
    let thread = std::thread::spawn({
        let (assigned, stop, seen) = (assigned.clone(), stop.clone(), seen.clone());
        move || {
            while !stop.load(Ordering::Relaxed) {
                let message = consumer.poll(Duration::from_millis(200));
                let mut partitions: Vec<i32> =
                    (consumer.assignment().expect("librdkafka call").elements())
                        .iter()
                        .map(|e| e.partition())
                        .collect();
                partitions.sort_unstable();
                *assigned.lock().expect("not poisoned") = partitions;
                if let Some(Ok(message)) = message {
                    let value = message.payload_view::<str>().and_then(Result::ok);
                    seen.lock()
                        .expect("librdkafka call")
                        .push(value.unwrap_or_default().to_owned());
                    // A commit during a rebalance fails; the record comes again to its owner.
                    let _ = consumer.commit_message(&message, CommitMode::Sync);
                }
            }
            consumer.unsubscribe();
        }
    });
    Member {
        assigned,
        stop,
        thread,
    }
}

fn wait_until(what: &str, check: impl Fn() -> bool) {
    weir_tests::wait_until(what, Duration::from_secs(60), check);
}

#[test]
fn rdkafka_group_of_three_rebalances_and_resumes_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        Weir::builder()
            .cwd(dir.path())
            .env("WEIR_KAFKA_AUTO_CREATE_PARTITIONS_COUNT", "3")
            .start()
            .unwrap()
    };
    let mut weir = start();
    let bootstrap = weir.kafka_addr().unwrap().to_string();
    let produce = |bootstrap: &str, prefix: &str, count: i32| {
        let producer = producer(bootstrap, &[("acks", "all")]);
        for i in 0..count {
            send(&producer, "rd-plant", i % 3, &format!("{prefix}{i}"));
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    };
    produce(&bootstrap, "r", 30);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let members: Vec<Member> = (0..3).map(|_| member(&bootstrap, &seen)).collect();
    let split = |members: &[Member]| {
        let mut all: Vec<i32> = (members.iter())
            .flat_map(|m| m.assigned.lock().unwrap().clone())
            .collect();
        all.sort_unstable();
        all == [0, 1, 2]
            && members
                .iter()
                .all(|m| !m.assigned.lock().unwrap().is_empty())
    };
    let distinct = |seen: &Arc<Mutex<Vec<String>>>| {
        let seen = seen.lock().unwrap();
        seen.iter().collect::<std::collections::BTreeSet<_>>().len()
    };
    wait_until("three members sharing three partitions", || split(&members));
    wait_until("the first 30 records", || distinct(&seen) == 30);
    let mut members = members;
    let leaving = members.pop().unwrap();
    leaving.stop.store(true, Ordering::Relaxed);
    leaving.thread.join().unwrap();
    wait_until("two members taking over", || split(&members));
    produce(&bootstrap, "s", 9);
    wait_until("all 39 records", || distinct(&seen) == 39);
    for m in members {
        m.stop.store(true, Ordering::Relaxed);
        m.thread.join().unwrap();
    }
    weir.signal(libc::SIGTERM).unwrap();
    assert_eq!(weir.wait_exit().unwrap().code(), Some(0));

    let mut weir = start();
    let bootstrap = weir.kafka_addr().unwrap().to_string();
    produce(&bootstrap, "late", 3);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let resumed = member(&bootstrap, &seen);
    wait_until("the 3 late records", || seen.lock().unwrap().len() >= 3);
    std::thread::sleep(Duration::from_secs(1));
    resumed.stop.store(true, Ordering::Relaxed);
    resumed.thread.join().unwrap();
    let mut got = seen.lock().unwrap().clone();
    got.sort();
    assert_eq!(
        got,
        ["late0", "late1", "late2"],
        "only what came after the commits"
    );
}

#[test]
fn rdkafka_idempotent_producer_across_a_broker_kill_has_no_loss_and_no_duplicates() {
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
    let producer = producer(
        &listen,
        &[
            ("enable.idempotence", "true"),
            ("message.timeout.ms", "120000"),
            ("reconnect.backoff.max.ms", "500"),
        ],
    );
    let count = 2000;
    let killed_at = count / 3;
    for i in 0..count {
        send(&producer, "rd-idempotent", 0, &format!("m{i}"));
        if i == killed_at {
            weir.signal(libc::SIGKILL).unwrap();
            weir.wait_exit().unwrap();
            weir = start();
        }
        std::thread::sleep(Duration::from_micros(1500));
    }
    producer.flush(Duration::from_secs(120)).unwrap();
    let context = producer.context();
    assert_eq!(context.failed.load(Ordering::Relaxed), 0);
    assert_eq!(context.delivered.load(Ordering::Relaxed), count as u64);
    let got = read(&listen, "rd-idempotent", Offset::Beginning, count + 1);
    let expected: Vec<String> = (0..count).map(|i| format!("m{i}")).collect();
    assert_eq!(got, expected, "each record once, in order");
    drop(weir);
}
