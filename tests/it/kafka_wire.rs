//! The Kafka wire protocol against the real `weir`, byte by byte and with kcat: producer ids,
//! Metadata, Produce (acks 0, 1, all; idempotent retries; compressed batches), Fetch (waiting
//! for data), ListOffsets by time and OffsetForLeaderEpoch.

use std::io::Write;
use std::net::TcpStream;

use weir_tests::{WAIT, Weir, api_versions_request, read_frame};

/// InitProducerId v0 with a null transactional id, or `transactional` one.
fn init_producer_id_request(correlation_id: i32, transactional: Option<&str>) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&22i16.to_be_bytes());
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&correlation_id.to_be_bytes());
    body.extend_from_slice(&4i16.to_be_bytes());
    body.extend_from_slice(b"test");
    match transactional {
        Some(id) => {
            body.extend_from_slice(&(id.len() as i16).to_be_bytes());
            body.extend_from_slice(id.as_bytes());
        }
        None => body.extend_from_slice(&(-1i16).to_be_bytes()),
    }
    body.extend_from_slice(&60_000i32.to_be_bytes());
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// Error code and producer id of an InitProducerId v0 answer.
fn producer_id_of(answer: &[u8]) -> (i16, i64) {
    let error = i16::from_be_bytes([answer[8], answer[9]]);
    let id = i64::from_be_bytes(answer[10..18].try_into().expect("8 bytes"));
    (error, id)
}

/// InitProducerId goes through the log's writer (a durable counter) and its answer comes back
/// to the connection's shard; answers stay in request order; ids are never reused, also after
/// a restart.
#[test]
fn producer_ids_come_back_in_order_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let mut weir = Weir::builder().cwd(dir.path()).start().unwrap();
        let mut stream = TcpStream::connect(weir.kafka_addr().unwrap()).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut pipeline = init_producer_id_request(1, None);
        pipeline.extend(api_versions_request(0, 2));
        pipeline.extend(init_producer_id_request(3, None));
        pipeline.extend(init_producer_id_request(4, Some("tx")));
        stream.write_all(&pipeline).unwrap();
        let answers: Vec<Vec<u8>> = (0..4).map(|_| read_frame(&mut stream).unwrap()).collect();
        let order: Vec<i32> = answers
            .iter()
            .map(|a| i32::from_be_bytes(a[..4].try_into().unwrap()))
            .collect();
        assert_eq!(order, [1, 2, 3, 4]);
        for answer in [&answers[0], &answers[2]] {
            let (error, id) = producer_id_of(answer);
            assert_eq!(error, 0);
            ids.push(id);
        }
        // Transactions are not supported: INVALID_REQUEST.
        assert_eq!(producer_id_of(&answers[3]), (42, -1));
        weir.signal(libc::SIGTERM).unwrap();
        assert_eq!(weir.wait_exit().unwrap().code(), Some(0));
    }
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 4, "an id was handed out twice: {ids:?}");
    assert!(ids[2] > ids[1], "ids went back after the restart: {ids:?}");
}

/// A Metadata request (header v1) of `version` 1..=8 naming `topics` (`None`: every topic).
fn metadata_request(version: i16, correlation_id: i32, topics: Option<&[&str]>) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&3i16.to_be_bytes());
    body.extend_from_slice(&version.to_be_bytes());
    body.extend_from_slice(&correlation_id.to_be_bytes());
    body.extend_from_slice(&4i16.to_be_bytes());
    body.extend_from_slice(b"test");
    match topics {
        None => body.extend_from_slice(&(-1i32).to_be_bytes()),
        Some(names) => {
            body.extend_from_slice(&(names.len() as i32).to_be_bytes());
            for name in names {
                body.extend_from_slice(&(name.len() as i16).to_be_bytes());
                body.extend_from_slice(name.as_bytes());
            }
        }
    }
    if version >= 4 {
        body.push(1); // allow_auto_topic_creation
    }
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// (error code, name, partition count) of each topic in a Metadata v1 answer.
fn metadata_topics(answer: &[u8]) -> Vec<(i16, String, i32)> {
    let mut at = 4; // correlation id
    let i32_at = |a: &[u8], at: usize| i32::from_be_bytes(a[at..at + 4].try_into().expect("4"));
    let i16_at = |a: &[u8], at: usize| i16::from_be_bytes(a[at..at + 2].try_into().expect("2"));
    let brokers = i32_at(answer, at);
    at += 4;
    for _ in 0..brokers {
        at += 4; // node id
        at += 2 + i16_at(answer, at) as usize; // host
        at += 4; // port
        let rack = i16_at(answer, at);
        at += 2 + rack.max(0) as usize;
    }
    at += 4; // controller id
    let topics = i32_at(answer, at);
    at += 4;
    let mut out = Vec::new();
    for _ in 0..topics {
        let error = i16_at(answer, at);
        at += 2;
        let len = i16_at(answer, at) as usize;
        let name = String::from_utf8_lossy(&answer[at + 2..at + 2 + len]).into_owned();
        at += 2 + len + 1; // name, is_internal
        let partitions = i32_at(answer, at);
        at += 4;
        for _ in 0..partitions {
            at += 2 + 4 + 4; // error, index, leader
            at += 4 + 4 * i32_at(answer, at) as usize; // replicas
            at += 4 + 4 * i32_at(answer, at) as usize; // isr
        }
        out.push((error, name, partitions));
    }
    out
}

/// Metadata names the broker at its advertised address, creates the topics a client names
/// (through the log's writer, durably), refuses invalid names, and lists every topic.
#[test]
fn metadata_creates_named_topics_and_lists_them() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut weir = Weir::builder()
            .cwd(dir.path())
            .env("WEIR_KAFKA_AUTO_CREATE_PARTITIONS_COUNT", "3")
            .start()
            .unwrap();
        let mut stream = TcpStream::connect(weir.kafka_addr().unwrap()).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream
            .write_all(&metadata_request(1, 1, Some(&["sensors", "bad name!"])))
            .unwrap();
        let answer = read_frame(&mut stream).unwrap();
        assert_eq!(
            metadata_topics(&answer),
            [
                (0, "sensors".to_owned(), 3),
                (17, "bad name!".to_owned(), 0)
            ]
        );
        weir.signal(libc::SIGTERM).unwrap();
        assert_eq!(weir.wait_exit().unwrap().code(), Some(0));
    }
    // After a restart the topic is there; with creation switched off a new name is unknown.
    let mut weir = Weir::builder()
        .cwd(dir.path())
        .env("WEIR_KAFKA_AUTO_CREATE_TOPICS", "false")
        .start()
        .unwrap();
    let mut stream = TcpStream::connect(weir.kafka_addr().unwrap()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(&metadata_request(1, 2, None)).unwrap();
    stream
        .write_all(&metadata_request(4, 3, Some(&["other"])))
        .unwrap();
    let all = read_frame(&mut stream).unwrap();
    assert_eq!(metadata_topics(&all), [(0, "sensors".to_owned(), 3)]);
    let other = read_frame(&mut stream).unwrap();
    assert_eq!(&other[..4], &3i32.to_be_bytes());
}

/// A real client: Debian's kcat (librdkafka 2.0.2) lists the broker and a topic it names,
/// which Metadata creates.
#[test]
fn kcat_lists_the_broker_and_its_topics() {
    let mut weir = Weir::builder().start().unwrap();
    let addr = weir.kafka_addr().unwrap();
    let output = std::process::Command::new("kcat")
        .args([
            "-b",
            &addr.to_string(),
            "-L",
            "-J",
            "-t",
            "sensors",
            "-m",
            "20",
        ])
        .output()
        .expect("kcat is installed by `cargo xtask test` (Debian package kcat)");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listing: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(listing["brokers"][0]["id"], 0);
    assert_eq!(
        listing["brokers"][0]["name"],
        format!("127.0.0.1:{}", addr.port())
    );
    assert_eq!(listing["topics"][0]["topic"], "sensors");
    assert_eq!(listing["topics"][0]["partitions"][0]["leader"], 0);
}

/// The records of every batch stored in `topic`'s partition 0 under `cwd`/weir-data (the
/// broker must be stopped: the data directory is locked while it runs).
fn stored_values(cwd: &std::path::Path, topic: &str) -> Vec<String> {
    (weir_tests::stored_values(cwd, topic).iter())
        .map(|value| String::from_utf8_lossy(value).into_owned())
        .collect()
}

/// A real producer and consumer: Debian's kcat (librdkafka 2.0.2) produces three messages
/// (acknowledged only once durable), reads them back from the beginning, and asks for the
/// latest offset; after the broker stops, the log holds them in order.
#[test]
fn kcat_produces_and_the_log_holds_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut weir = Weir::builder().cwd(dir.path()).start().unwrap();
    let addr = weir.kafka_addr().unwrap();
    let mut kcat = std::process::Command::new("kcat")
        .args(["-b", &addr.to_string(), "-P", "-t", "readings", "-p", "0"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kcat is installed by `cargo xtask test` (Debian package kcat)");
    kcat.stdin
        .take()
        .unwrap()
        .write_all(b"21.5\n21.7\n22.0\n")
        .unwrap();
    let output = kcat.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(weir.metric("weir_log_appends_total").unwrap() > 0);
    // kcat reads them back (Fetch), stopping at the end it learns from the high watermark.
    let consumed = std::process::Command::new("kcat")
        .args(["-b", &addr.to_string(), "-C", "-t", "readings", "-p", "0"])
        .args(["-o", "beginning", "-e", "-f", "%o %s\n"])
        .output()
        .unwrap();
    assert!(
        consumed.status.success(),
        "{}",
        String::from_utf8_lossy(&consumed.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&consumed.stdout),
        "0 21.5\n1 21.7\n2 22.0\n"
    );
    // ListOffsets: the latest offset.
    let latest = std::process::Command::new("kcat")
        .args(["-b", &addr.to_string(), "-Q", "-t", "readings:0:-1"])
        .output()
        .unwrap();
    let latest = String::from_utf8_lossy(&latest.stdout);
    assert!(latest.contains("readings [0] offset 3"), "{latest}");
    weir.signal(libc::SIGTERM).unwrap();
    assert_eq!(weir.wait_exit().unwrap().code(), Some(0));
    assert_eq!(
        stored_values(dir.path(), "readings"),
        ["21.5", "21.7", "22.0"]
    );
}

/// A Produce v7 request (header v1) of one topic whose partitions carry `parts`.
fn produce_request(correlation_id: i32, acks: i16, topic: &str, parts: &[(i32, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&7i16.to_be_bytes());
    body.extend_from_slice(&correlation_id.to_be_bytes());
    body.extend_from_slice(&4i16.to_be_bytes());
    body.extend_from_slice(b"test");
    body.extend_from_slice(&(-1i16).to_be_bytes()); // no transactional id
    body.extend_from_slice(&acks.to_be_bytes());
    body.extend_from_slice(&5_000i32.to_be_bytes());
    body.extend_from_slice(&1i32.to_be_bytes());
    body.extend_from_slice(&(topic.len() as i16).to_be_bytes());
    body.extend_from_slice(topic.as_bytes());
    body.extend_from_slice(&(parts.len() as i32).to_be_bytes());
    for (index, records) in parts {
        body.extend_from_slice(&index.to_be_bytes());
        body.extend_from_slice(&(records.len() as i32).to_be_bytes());
        body.extend_from_slice(records);
    }
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// (index, error code, base offset) of each partition in a Produce v7 answer of one topic.
fn produce_answers(answer: &[u8]) -> Vec<(i32, i16, i64)> {
    let name_len = i16::from_be_bytes([answer[8], answer[9]]) as usize;
    let mut at = 10 + name_len;
    let count = i32::from_be_bytes(answer[at..at + 4].try_into().expect("4"));
    at += 4;
    (0..count)
        .map(|_| {
            let index = i32::from_be_bytes(answer[at..at + 4].try_into().expect("4"));
            let error = i16::from_be_bytes([answer[at + 4], answer[at + 5]]);
            let base = i64::from_be_bytes(answer[at + 6..at + 14].try_into().expect("8"));
            at += 4 + 2 + 8 + 8 + 8; // index, error, base, append time, log start
            (index, error, base)
        })
        .collect()
}

fn batch_of(values: &[&str]) -> Vec<u8> {
    batch_by(weir_kafka::record_batch::BatchBuilder::new(), values)
}

/// The batch `builder` makes of `values`.
fn batch_by(mut builder: weir_kafka::record_batch::BatchBuilder, values: &[&str]) -> Vec<u8> {
    for value in values {
        builder.push(weir_kafka::record_batch::Record {
            timestamp_ms: 1_700_000_000_000,
            key: None,
            value: Some(value.as_bytes()),
            headers: &[],
        });
    }
    builder.finish()
}

/// Produce answers per partition: offsets for good batches (after they are durable), the
/// Kafka error code for a corrupt batch, an unknown partition, bad acks; nothing for acks 0.
#[test]
fn produce_answers_each_partition_and_acks_zero_gets_no_answer() {
    let dir = tempfile::tempdir().unwrap();
    let mut weir = Weir::builder()
        .cwd(dir.path())
        .env("WEIR_KAFKA_AUTO_CREATE_PARTITIONS_COUNT", "2")
        .start()
        .unwrap();
    let mut stream = TcpStream::connect(weir.kafka_addr().unwrap()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let good = batch_of(&["a", "b"]);
    let mut corrupt = batch_of(&["c"]);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    let mut pipeline = produce_request(1, -1, "orders", &[(0, &good), (1, &corrupt), (7, &good)]);
    pipeline.extend(produce_request(
        2,
        0,
        "orders",
        &[(0, &batch_of(&["quiet"]))],
    ));
    pipeline.extend(produce_request(
        3,
        1,
        "orders",
        &[(0, &batch_of(&["c", "d"]))],
    ));
    pipeline.extend(produce_request(4, 5, "orders", &[(0, &good)]));
    stream.write_all(&pipeline).unwrap();
    let first = read_frame(&mut stream).unwrap();
    assert_eq!(&first[..4], &1i32.to_be_bytes());
    assert_eq!(produce_answers(&first), [(0, 0, 0), (1, 2, -1), (7, 3, -1)]);
    // acks 0 is not answered: the next answer is request 3's, after the quiet record.
    let third = read_frame(&mut stream).unwrap();
    assert_eq!(&third[..4], &3i32.to_be_bytes());
    assert_eq!(produce_answers(&third), [(0, 0, 3)]);
    let fourth = read_frame(&mut stream).unwrap();
    assert_eq!(produce_answers(&fourth), [(0, 21, -1)]);
    weir.signal(libc::SIGTERM).unwrap();
    assert_eq!(weir.wait_exit().unwrap().code(), Some(0));
    assert_eq!(
        stored_values(dir.path(), "orders"),
        ["a", "b", "quiet", "c", "d"]
    );
}

/// A Fetch v4 (header v1) for partition 0 of `topic` from `offset`, waiting up to
/// `max_wait_ms` for one byte.
fn fetch_request(correlation_id: i32, topic: &str, offset: i64, max_wait_ms: i32) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&1i16.to_be_bytes());
    body.extend_from_slice(&4i16.to_be_bytes());
    body.extend_from_slice(&correlation_id.to_be_bytes());
    body.extend_from_slice(&4i16.to_be_bytes());
    body.extend_from_slice(b"test");
    body.extend_from_slice(&(-1i32).to_be_bytes()); // replica id
    body.extend_from_slice(&max_wait_ms.to_be_bytes());
    body.extend_from_slice(&1i32.to_be_bytes()); // min bytes
    body.extend_from_slice(&(1i32 << 20).to_be_bytes()); // max bytes
    body.push(0); // isolation level
    body.extend_from_slice(&1i32.to_be_bytes());
    body.extend_from_slice(&(topic.len() as i16).to_be_bytes());
    body.extend_from_slice(topic.as_bytes());
    body.extend_from_slice(&1i32.to_be_bytes());
    body.extend_from_slice(&0i32.to_be_bytes()); // partition
    body.extend_from_slice(&offset.to_be_bytes());
    body.extend_from_slice(&(1i32 << 20).to_be_bytes()); // partition max bytes
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// A consumer waiting in Fetch gets the records as soon as they are committed, well before
/// its wait is over.
#[test]
fn a_waiting_fetch_is_answered_when_data_arrives() {
    let mut weir = Weir::builder().start().unwrap();
    let addr = weir.kafka_addr().unwrap();
    let mut consumer = TcpStream::connect(addr).unwrap();
    consumer.set_read_timeout(Some(WAIT)).unwrap();
    // Create the topic, then wait for its first record for up to 25 s (under WAIT).
    consumer
        .write_all(&metadata_request(1, 1, Some(&["events"])))
        .unwrap();
    read_frame(&mut consumer).unwrap();
    consumer
        .write_all(&fetch_request(2, "events", 0, 25_000))
        .unwrap();
    let mut producer = TcpStream::connect(addr).unwrap();
    producer.set_read_timeout(Some(WAIT)).unwrap();
    producer
        .write_all(&produce_request(
            9,
            -1,
            "events",
            &[(0, &batch_of(&["hello"]))],
        ))
        .unwrap();
    assert_eq!(
        produce_answers(&read_frame(&mut producer).unwrap()),
        [(0, 0, 0)]
    );
    let answer = read_frame(&mut consumer).unwrap();
    assert_eq!(&answer[..4], &2i32.to_be_bytes());
    // The stored batch is in the answer, byte for byte (its records carry "hello").
    let needle = b"hello";
    assert!(
        answer.windows(needle.len()).any(|w| w == needle),
        "no records in the answer"
    );
}

/// More pipelined Produce requests than the session queues behind pending ones: the rest are
/// read once answers go out, and every request is answered in order.
#[test]
fn a_long_produce_pipeline_is_answered_in_full() {
    let mut weir = Weir::builder().start().unwrap();
    let mut stream = TcpStream::connect(weir.kafka_addr().unwrap()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let pipeline: Vec<u8> = (0..150)
        .flat_map(|i| produce_request(i, 1, "pipelined", &[(0, &batch_of(&["x"]))]))
        .collect();
    stream.write_all(&pipeline).unwrap();
    for i in 0..150i32 {
        let answer = read_frame(&mut stream).unwrap();
        assert_eq!(&answer[..4], &i.to_be_bytes());
        assert_eq!(produce_answers(&answer), [(0, 0, i64::from(i))]);
    }
}

/// A producer that sends faster than the log commits, and reads no answers meanwhile: once
/// the session has as many operations in flight as it queues, the broker stops reading the
/// connection, so the requests wait in the client's socket rather than in broker memory; then
/// every one is stored and answered in order.
#[test]
fn produce_requests_that_outrun_the_log_wait_in_the_socket_not_in_memory() {
    // Each group commit waits 100 ms for more appends: the log takes about 40 MB/s.
    let mut weir = Weir::builder()
        .env("WEIR_STORAGE_COMMIT_WINDOW_US", "100000")
        .start()
        .unwrap();
    let addr = weir.kafka_addr().unwrap();
    let mut stream = TcpStream::connect(addr).unwrap();
    // The topic exists before memory is measured.
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
        .write_all(&produce_request(
            0,
            1,
            "outrun",
            &[(0, &batch_of(&["first"]))],
        ))
        .unwrap();
    assert_eq!(
        produce_answers(&read_frame(&mut stream).unwrap()),
        [(0, 0, 0)]
    );
    let before = weir.rss_bytes().unwrap();
    let value = "v".repeat(64 << 10);
    let batch = batch_of(&[value.as_str()]);
    const REQUESTS: i32 = 1024; // 64 MiB of records
    let requests: Vec<u8> = (1..=REQUESTS)
        .flat_map(|i| produce_request(i, 1, "outrun", &[(0, &batch)]))
        .collect();
    let writer = {
        let mut stream = stream.try_clone().unwrap();
        std::thread::spawn(move || stream.write_all(&requests))
    };
    weir.wait_for_metric("weir_connections_read_paused", |n| n == 1)
        .unwrap();
    let paused = weir.rss_bytes().unwrap();
    // 64 operations of 64 KiB in flight, one request and one read buffered, and what the
    // allocator keeps: far from the 64 MiB sent.
    assert!(
        paused < before + (32 << 20),
        "memory grew from {before} to {paused} while the log lagged"
    );
    for i in 1..=REQUESTS {
        let answer = read_frame(&mut stream).unwrap();
        assert_eq!(&answer[..4], &i.to_be_bytes());
        assert_eq!(produce_answers(&answer), [(0, 0, i64::from(i))]);
    }
    writer.join().unwrap().unwrap();
    assert_eq!(weir.metric("weir_connections_read_paused").unwrap(), 0);
}

/// A ListOffsets v1 request (header v1) for partition 0 of `topic` at `timestamp`.
fn list_offsets_request(correlation_id: i32, topic: &str, timestamp: i64) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&2i16.to_be_bytes());
    body.extend_from_slice(&1i16.to_be_bytes());
    body.extend_from_slice(&correlation_id.to_be_bytes());
    body.extend_from_slice(&4i16.to_be_bytes());
    body.extend_from_slice(b"test");
    body.extend_from_slice(&(-1i32).to_be_bytes());
    body.extend_from_slice(&1i32.to_be_bytes());
    body.extend_from_slice(&(topic.len() as i16).to_be_bytes());
    body.extend_from_slice(topic.as_bytes());
    body.extend_from_slice(&1i32.to_be_bytes());
    body.extend_from_slice(&0i32.to_be_bytes());
    body.extend_from_slice(&timestamp.to_be_bytes());
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// ListOffsets by time answers a real timestamp with the offset (Java clients refuse a
/// negative one); a refused acks-0 Produce gets no answer.
#[test]
fn offsets_by_time_carry_a_timestamp_and_a_refused_acks_zero_produce_stays_silent() {
    let mut weir = Weir::builder().start().unwrap();
    let mut stream = TcpStream::connect(weir.kafka_addr().unwrap()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
        .write_all(&produce_request(1, -1, "timed", &[(0, &batch_of(&["t"]))]))
        .unwrap();
    assert_eq!(
        produce_answers(&read_frame(&mut stream).unwrap()),
        [(0, 0, 0)]
    );
    stream
        .write_all(&list_offsets_request(2, "timed", 1_600_000_000_000))
        .unwrap();
    let answer = read_frame(&mut stream).unwrap();
    // correlation, topics[1], name, partitions[1], index, error, timestamp, offset
    let at = 4 + 4 + 2 + 5 + 4 + 4;
    assert_eq!(i16::from_be_bytes([answer[at], answer[at + 1]]), 0);
    let timestamp = i64::from_be_bytes(answer[at + 2..at + 10].try_into().unwrap());
    let offset = i64::from_be_bytes(answer[at + 10..at + 18].try_into().unwrap());
    assert_eq!((timestamp, offset), (1_700_000_000_000, 0));
    // acks 0 with a transactional id: refused, silently; the next answer is ApiVersions'.
    let mut refused = produce_request(3, 0, "timed", &[(0, &batch_of(&["u"]))]);
    // Replace the null transactional id (-1) with "t" in a rebuilt frame.
    let body = &refused[4..];
    let mut rebuilt = body[..14].to_vec();
    rebuilt.extend_from_slice(&[0, 1, b't']);
    rebuilt.extend_from_slice(&body[16..]);
    refused = (rebuilt.len() as u32).to_be_bytes().to_vec();
    refused.extend_from_slice(&rebuilt);
    stream.write_all(&refused).unwrap();
    stream.write_all(&api_versions_request(0, 4)).unwrap();
    assert_eq!(&read_frame(&mut stream).unwrap()[..4], &4i32.to_be_bytes());
}

/// An idempotent producer's retry is answered with the original offsets and not stored
/// again, also when it comes after a broker restart; a batch that skips sequences gets
/// OUT_OF_ORDER_SEQUENCE_NUMBER and an older epoch INVALID_PRODUCER_EPOCH.
#[test]
fn an_idempotent_producers_retry_is_not_stored_twice_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let sequenced = |epoch: i16, seq: i32, values: &[&str]| {
        let builder = weir_kafka::record_batch::BatchBuilder::new().producer(42, epoch, seq);
        batch_by(builder, values)
    };
    let first = sequenced(0, 0, &["a", "b"]);
    let produce = |weir: &mut Weir, correlation_id: i32, batch: &[u8]| {
        let mut stream = TcpStream::connect(weir.kafka_addr().unwrap()).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream
            .write_all(&produce_request(correlation_id, -1, "idem", &[(0, batch)]))
            .unwrap();
        produce_answers(&read_frame(&mut stream).unwrap())
    };
    let mut weir = Weir::builder().cwd(dir.path()).start().unwrap();
    assert_eq!(produce(&mut weir, 1, &first), [(0, 0, 0)]);
    assert_eq!(produce(&mut weir, 2, &sequenced(0, 2, &["c"])), [(0, 0, 2)]);
    weir.signal(libc::SIGTERM).unwrap();
    assert_eq!(weir.wait_exit().unwrap().code(), Some(0));

    let mut weir = Weir::builder().cwd(dir.path()).start().unwrap();
    assert_eq!(
        produce(&mut weir, 3, &first),
        [(0, 0, 0)],
        "the retry gets its offsets"
    );
    assert_eq!(
        produce(&mut weir, 4, &sequenced(0, 5, &["x"])),
        [(0, 45, -1)]
    );
    assert_eq!(
        produce(&mut weir, 5, &sequenced(-1, 3, &["x"])),
        [(0, 47, -1)]
    );
    assert_eq!(produce(&mut weir, 6, &sequenced(0, 3, &["d"])), [(0, 0, 3)]);
    weir.signal(libc::SIGTERM).unwrap();
    assert_eq!(weir.wait_exit().unwrap().code(), Some(0));
    assert_eq!(stored_values(dir.path(), "idem"), ["a", "b", "c", "d"]);
}

/// OffsetForLeaderEpoch: a partition's only leader epoch, 0, ends at its high watermark; a
/// later epoch has no end (-1); an unknown partition gets UNKNOWN_TOPIC_OR_PARTITION.
#[test]
fn leader_epoch_zero_ends_at_the_high_watermark() {
    let mut weir = Weir::builder().start().unwrap();
    let mut stream = TcpStream::connect(weir.kafka_addr().unwrap()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
        .write_all(&produce_request(
            1,
            -1,
            "epochs",
            &[(0, &batch_of(&["a", "b", "c"]))],
        ))
        .unwrap();
    assert_eq!(
        produce_answers(&read_frame(&mut stream).unwrap()),
        [(0, 0, 0)]
    );
    // v3 (header v1): replica -1, topic "epochs", partitions (index, current epoch, epoch).
    let mut body = Vec::new();
    body.extend_from_slice(&23i16.to_be_bytes());
    body.extend_from_slice(&3i16.to_be_bytes());
    body.extend_from_slice(&2i32.to_be_bytes());
    body.extend_from_slice(&[0, 4]);
    body.extend_from_slice(b"test");
    body.extend_from_slice(&(-1i32).to_be_bytes());
    body.extend_from_slice(&1i32.to_be_bytes());
    body.extend_from_slice(&[0, 6]);
    body.extend_from_slice(b"epochs");
    body.extend_from_slice(&3i32.to_be_bytes());
    for (index, epoch) in [(0i32, 0i32), (0, 1), (9, 0)] {
        body.extend_from_slice(&index.to_be_bytes());
        body.extend_from_slice(&(-1i32).to_be_bytes());
        body.extend_from_slice(&epoch.to_be_bytes());
    }
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    stream.write_all(&frame).unwrap();
    let answer = read_frame(&mut stream).unwrap();
    // correlation, throttle, 1 topic, "epochs", 3 partitions, then 18 bytes each.
    let mut at = 4 + 4 + 4 + 2 + 6 + 4;
    let mut partitions = Vec::new();
    for _ in 0..3 {
        let p = &answer[at..at + 18];
        partitions.push((
            i16::from_be_bytes([p[0], p[1]]),
            i32::from_be_bytes(p[2..6].try_into().unwrap()),
            i32::from_be_bytes(p[6..10].try_into().unwrap()),
            i64::from_be_bytes(p[10..18].try_into().unwrap()),
        ));
        at += 18;
    }
    assert_eq!(partitions, [(0, 0, 0, 3), (0, 0, -1, -1), (3, 9, -1, -1)]);
}

/// Compressed batches are decompressed and their records checked before anything is
/// stored: one that inflates past `kafka.batch_decompressed_bytes_max` or does not
/// decompress gets CORRUPT_MESSAGE (and costs at most the limit), a sound one is stored as
/// sent; the connection stays usable throughout.
#[test]
fn a_compressed_batch_that_inflates_past_the_limit_is_refused() {
    use weir_kafka::record_batch::{BatchBuilder, Compression, Record};
    let dir = tempfile::tempdir().unwrap();
    let mut weir = Weir::builder()
        .cwd(dir.path())
        .env("WEIR_KAFKA_BATCH_DECOMPRESSED_BYTES_MAX", "65536")
        .start()
        .unwrap();
    let compressed = |count: usize, value: &[u8]| {
        let mut builder = BatchBuilder::new();
        for _ in 0..count {
            builder.push(Record {
                timestamp_ms: 1_700_000_000_000,
                key: None,
                value: Some(value),
                headers: &[],
            });
        }
        builder.finish_compressed(Compression::Gzip).unwrap()
    };
    let zeros = vec![0u8; 1024];
    let bomb = compressed(1000, &zeros); // about 1 MiB of records in a few KiB
    assert!(bomb.len() < 16 * 1024, "{} bytes", bomb.len());
    let sound = compressed(3, b"ok");
    // Garbage where the compressed records should be, under a correct CRC.
    let mut garbage = sound.clone();
    for byte in &mut garbage[61..] {
        *byte = 0x5a;
    }
    let crc = crc32c::crc32c(&garbage[21..]);
    garbage[17..21].copy_from_slice(&crc.to_be_bytes());
    let mut stream = TcpStream::connect(weir.kafka_addr().unwrap()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    for (correlation, batch, expected) in [
        (1, &bomb, (0, 2, -1)),
        (2, &garbage, (0, 2, -1)),
        (3, &sound, (0, 0, 0)),
    ] {
        stream
            .write_all(&produce_request(correlation, -1, "squeezed", &[(0, batch)]))
            .unwrap();
        let answer = read_frame(&mut stream).unwrap();
        assert_eq!(
            produce_answers(&answer),
            [expected],
            "request {correlation}"
        );
    }
    weir.signal(libc::SIGTERM).unwrap();
    assert_eq!(weir.wait_exit().unwrap().code(), Some(0));
    // Only the sound batch is stored, compressed as it came.
    let stored = weir_tests::stored_batches(dir.path(), "squeezed");
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0][21..],
        sound[21..],
        "byte for byte after the base offset"
    );
}

/// A create-time batch whose declared maxTimestamp is not its largest record timestamp (as
/// librdkafka sends records given timestamp -1; its test 0114 does) is stored with the true
/// one and a CRC to match, as Kafka does, not refused; the rest of it is stored as sent.
#[test]
fn a_batch_with_a_wrong_max_timestamp_is_stored_corrected() {
    use weir_kafka::record_batch::{self, BatchBuilder, Record};
    let dir = tempfile::tempdir().unwrap();
    let mut weir = Weir::builder().cwd(dir.path()).start().unwrap();
    let mut builder = BatchBuilder::new();
    for value in [&b"a"[..], b"b"] {
        builder.push(Record {
            timestamp_ms: -1,
            key: None,
            value: Some(value),
            headers: &[],
        });
    }
    let mut sent = builder.finish();
    let truth = record_batch::validate(&sent).unwrap().max_timestamp;
    record_batch::set_max_timestamp(&mut sent, 0);
    assert!(record_batch::validate(&sent).is_err());
    let mut stream = TcpStream::connect(weir.kafka_addr().unwrap()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
        .write_all(&produce_request(1, -1, "stamped", &[(0, &sent)]))
        .unwrap();
    assert_eq!(
        produce_answers(&read_frame(&mut stream).unwrap()),
        [(0, 0, 0)]
    );
    weir.signal(libc::SIGTERM).unwrap();
    assert_eq!(weir.wait_exit().unwrap().code(), Some(0));
    let stored = weir_tests::stored_batches(dir.path(), "stamped");
    assert_eq!(stored.len(), 1);
    let header = record_batch::validate(&stored[0]).unwrap();
    assert_eq!(header.max_timestamp, truth);
    assert_eq!(stored[0][43..], sent[43..], "records as sent");
}

/// ListOffsets by time finds the first record at or after the time inside a batch, in an
/// uncompressed and in a compressed batch, with that record's own timestamp; a time after
/// every record finds nothing (-1).
#[test]
fn offsets_by_time_are_exact_to_the_record() {
    use weir_kafka::record_batch::{BatchBuilder, Compression, Record};
    let mut weir = Weir::builder().start().unwrap();
    let mut stream = TcpStream::connect(weir.kafka_addr().unwrap()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let stamped = |first: i64| {
        let mut builder = BatchBuilder::new();
        for i in 0..3 {
            builder.push(Record {
                timestamp_ms: first + i * 1000,
                key: None,
                value: Some(b"v"),
                headers: &[],
            });
        }
        builder
    };
    // Offsets 0-2 at times 1000, 2000, 3000 (plain); 3-5 at 4000, 5000, 6000 (zstd).
    let plain = stamped(1000).finish();
    let packed = stamped(4000).finish_compressed(Compression::Zstd).unwrap();
    for (correlation, batch) in [(1, &plain), (2, &packed)] {
        stream
            .write_all(&produce_request(correlation, -1, "times", &[(0, batch)]))
            .unwrap();
        read_frame(&mut stream).unwrap();
    }
    let mut found = Vec::new();
    for (correlation, at) in [(3, 1500), (4, 3000), (5, 3500), (6, 5001), (7, 7000)] {
        stream
            .write_all(&list_offsets_request(correlation, "times", at))
            .unwrap();
        let answer = read_frame(&mut stream).unwrap();
        let at = 4 + 4 + 2 + 5 + 4 + 4;
        let timestamp = i64::from_be_bytes(answer[at + 2..at + 10].try_into().unwrap());
        let offset = i64::from_be_bytes(answer[at + 10..at + 18].try_into().unwrap());
        found.push((timestamp, offset));
    }
    assert_eq!(
        found,
        [(2000, 1), (3000, 2), (4000, 3), (6000, 5), (-1, -1)]
    );
}
