//! Connections on the shards: served on every shard with either I/O backend, the connection
//! limits and timeouts, bad requests closing only their own connection, bounded memory for
//! many connections and for clients that do not read, `/metrics`.

use std::io::{Read, Write};
use std::net::TcpStream;

use weir_tests::{
    IO_BACKEND_VAR, WAIT, Weir, api_versions_request, closed_by_peer, read_frame, run_weir,
};

#[test]
fn api_versions_is_answered_in_every_version_layout() {
    let mut weir = Weir::builder().start().unwrap();
    let mut stream = TcpStream::connect(weir.kafka_addr().unwrap()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    // Pipelined: three requests in one write, answered in order.
    let mut requests = api_versions_request(0, 1);
    requests.extend(api_versions_request(3, 2));
    requests.extend(api_versions_request(99, 3));
    stream.write_all(&requests).unwrap();
    // The table lists exactly what is implemented: (key, min, max).
    let expected = [
        (0, 0, 11),
        (1, 4, 11),
        (2, 1, 5),
        (3, 0, 12),
        (8, 2, 8),
        (9, 1, 8),
        (10, 0, 4),
        (11, 0, 9),
        (12, 0, 4),
        (13, 0, 5),
        (14, 0, 5),
        (15, 0, 5),
        (16, 0, 4),
        (17, 0, 1),
        (18, 0, 4),
        (19, 0, 7),
        (20, 0, 6),
        (21, 0, 2),
        (22, 0, 4),
        (23, 0, 4),
        (32, 0, 4),
        (36, 0, 2),
        (37, 0, 3),
        (42, 0, 2),
        (60, 0, 1),
    ];
    let v0 = read_frame(&mut stream).unwrap();
    assert_eq!(
        &v0[..10],
        &[0, 0, 0, 1, 0, 0, 0, 0, 0, expected.len() as u8]
    );
    let table: Vec<(i16, i16, i16)> = v0[10..]
        .chunks_exact(6)
        .map(|c| {
            let at = |i: usize| i16::from_be_bytes([c[i], c[i + 1]]);
            (at(0), at(2), at(4))
        })
        .collect();
    assert_eq!(table, expected);
    // v3: compact array, a tagged-field byte per entry, throttle, no tagged fields at the end.
    let v3 = read_frame(&mut stream).unwrap();
    assert_eq!(&v3[..7], &[0, 0, 0, 2, 0, 0, expected.len() as u8 + 1]);
    assert_eq!(v3.len(), 7 + 7 * expected.len() + 4 + 1);
    assert_eq!(&v3[v3.len() - 5..], &[0, 0, 0, 0, 0]);
    let unsupported = read_frame(&mut stream).unwrap();
    assert_eq!(
        &unsupported[..6],
        &[0, 0, 0, 3, 0, 35],
        "UNSUPPORTED_VERSION in v0"
    );
}

/// Hostile requests close their own connection and nothing else: an unsupported version, an
/// unknown API key, a 2 GiB or negative size prefix, an array count of 2^31 - 1 in a tiny
/// frame, a client id past its frame.
#[test]
fn a_bad_request_closes_only_its_own_connection() {
    let mut weir = Weir::builder().start().unwrap();
    let addr = weir.kafka_addr().unwrap();
    let mut good = TcpStream::connect(addr).unwrap();
    good.set_read_timeout(Some(WAIT)).unwrap();
    // A version of an API this broker does not implement (Fetch v0; it serves v4 to v11).
    let mut unsupported = TcpStream::connect(addr).unwrap();
    let mut frame = api_versions_request(0, 7);
    frame[4..6].copy_from_slice(&1i16.to_be_bytes());
    unsupported.write_all(&frame).unwrap();
    assert!(closed_by_peer(&mut unsupported));
    // An API key no Kafka version defines.
    let mut unknown = TcpStream::connect(addr).unwrap();
    let mut frame = api_versions_request(0, 8);
    frame[4..6].copy_from_slice(&9999i16.to_be_bytes());
    unknown.write_all(&frame).unwrap();
    assert!(closed_by_peer(&mut unknown));
    // An array count of 2^31 - 1 in a tiny frame: Metadata v1 naming that many topics.
    let mut counted = TcpStream::connect(addr).unwrap();
    let mut frame = api_versions_request(0, 9);
    frame[4..6].copy_from_slice(&3i16.to_be_bytes());
    frame[6..8].copy_from_slice(&1i16.to_be_bytes());
    frame.extend_from_slice(&i32::MAX.to_be_bytes());
    let len = (frame.len() - 4) as u32;
    frame[..4].copy_from_slice(&len.to_be_bytes());
    counted.write_all(&frame).unwrap();
    assert!(closed_by_peer(&mut counted));
    // A size prefix of 2 GiB: refused from its four bytes.
    let mut huge = TcpStream::connect(addr).unwrap();
    huge.write_all(&0x7fff_ffffu32.to_be_bytes()).unwrap();
    assert!(closed_by_peer(&mut huge));
    // A negative size prefix.
    let mut negative = TcpStream::connect(addr).unwrap();
    negative.write_all(&(-5i32).to_be_bytes()).unwrap();
    assert!(closed_by_peer(&mut negative));
    // A client id running past the end of its frame.
    let mut bad_header = TcpStream::connect(addr).unwrap();
    bad_header
        .write_all(&[0, 0, 0, 10, 0, 18, 0, 1, 0, 0, 0, 1, 0x7f, 0x7f])
        .unwrap();
    assert!(closed_by_peer(&mut bad_header));
    weir.wait_for_metric("weir_protocol_errors_total", |n| n == 6)
        .unwrap();
    // Bounded memory: nothing the counts or sizes asked for was allocated.
    assert!(weir.rss_bytes().unwrap() < 256 << 20);
    good.write_all(&api_versions_request(1, 5)).unwrap();
    assert_eq!(&read_frame(&mut good).unwrap()[..4], &5i32.to_be_bytes());
}

#[test]
fn connection_limits_close_extra_connections_at_accept() {
    let mut weir = Weir::builder()
        .env("WEIR_KAFKA_CONNECTIONS_MAX", "3")
        .start()
        .unwrap();
    let addr = weir.kafka_addr().unwrap();
    let mut held: Vec<TcpStream> = (0..3)
        .map(|i| {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream.set_read_timeout(Some(WAIT)).unwrap();
            stream.write_all(&api_versions_request(0, i)).unwrap();
            read_frame(&mut stream).unwrap();
            stream
        })
        .collect();
    let mut extra = TcpStream::connect(addr).unwrap();
    assert!(closed_by_peer(&mut extra));
    assert_eq!(weir.metric("weir_connections_refused_total").unwrap(), 1);
    held.pop();
    weir.wait_for_metric("weir_connections_open", |n| n == 2)
        .unwrap();
    let mut again = TcpStream::connect(addr).unwrap();
    again.set_read_timeout(Some(WAIT)).unwrap();
    again.write_all(&api_versions_request(0, 9)).unwrap();
    assert_eq!(&read_frame(&mut again).unwrap()[..4], &9i32.to_be_bytes());
}

#[test]
fn silent_connections_are_closed_by_the_handshake_and_idle_timeouts() {
    let mut weir = Weir::builder()
        .env("WEIR_SERVER_HANDSHAKE_TIMEOUT_MS", "300")
        .env("WEIR_KAFKA_IDLE_TIMEOUT_MS", "600")
        .start()
        .unwrap();
    let addr = weir.kafka_addr().unwrap();
    let mut silent = TcpStream::connect(addr).unwrap();
    let mut idle = TcpStream::connect(addr).unwrap();
    idle.set_read_timeout(Some(WAIT)).unwrap();
    idle.write_all(&api_versions_request(0, 1)).unwrap();
    read_frame(&mut idle).unwrap();
    assert!(closed_by_peer(&mut silent));
    assert!(closed_by_peer(&mut idle));
    assert_eq!(weir.metric("weir_connections_timed_out_total").unwrap(), 2);
}

/// 5,000 connections, each answered once, then closed: the broker's memory returns to near
/// where it was before them (within the allocator's trim interval).
#[test]
fn five_thousand_connections_come_and_go_and_memory_returns() {
    let mut weir = Weir::builder().start().unwrap();
    let addr = weir.kafka_addr().unwrap();
    // Warm up the allocator and the shards with a first, smaller wave.
    let warm: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    weir.wait_for_metric("weir_connections_open", |n| n == 200)
        .unwrap();
    drop(warm);
    weir.wait_for_metric("weir_connections_open", |n| n == 0)
        .unwrap();
    let idle = weir.rss_bytes().unwrap();

    let mut streams: Vec<TcpStream> = Vec::with_capacity(5_000);
    for i in 0..5_000 {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(&api_versions_request(0, i)).unwrap();
        streams.push(stream);
    }
    for stream in &mut streams {
        stream.set_read_timeout(Some(WAIT)).unwrap();
        read_frame(stream).unwrap();
    }
    assert_eq!(weir.metric("weir_connections_open").unwrap(), 5_000);
    let peak = weir.rss_bytes().unwrap();
    drop(streams);
    weir.wait_for_metric("weir_connections_open", |n| n == 0)
        .unwrap();
    // The allocator keeps some free memory for reuse and gives it back every 5 s
    // (`weir::memory::TRIM_INTERVAL`): wait for up to three of those.
    let mut after = 0;
    weir_tests::wait_until(
        "the memory to return",
        std::time::Duration::from_secs(15),
        || {
            after = weir.rss_bytes().unwrap();
            after < idle + (4 << 20)
        },
    );
    eprintln!(
        "RSS: idle {} KiB, 5,000 open {} KiB, after {} KiB",
        idle >> 10,
        peak >> 10,
        after >> 10
    );
    assert!(
        after < idle + (4 << 20),
        "memory did not return: idle {idle}, peak {peak}, after {after}"
    );
}

/// A client that sends requests and never reads their responses: the broker stops reading it
/// once `server.write_buffer_bytes_max` of responses wait, so its memory stays bounded.
#[test]
fn a_client_that_never_reads_costs_bounded_memory() {
    let mut weir = Weir::builder()
        .env("WEIR_SERVER_WRITE_BUFFER_BYTES_MAX", "65536")
        .start()
        .unwrap();
    let addr = weir.kafka_addr().unwrap();
    let before = weir.rss_bytes().unwrap();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_write_timeout(Some(std::time::Duration::from_millis(500)))
        .unwrap();
    let request = api_versions_request(0, 1);
    let burst: Vec<u8> = (0..4_096).flat_map(|_| request.clone()).collect();
    // Up to 1 M requests (18 MiB of them, 16 MiB of answers); stop once the socket is full.
    let mut sent = 0usize;
    // A partial write is continued where it stopped, so the stream stays whole requests.
    while sent < 256 * burst.len() {
        let at = sent % burst.len();
        match stream.write(&burst[at..]) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    weir.wait_for_metric("weir_connections_read_paused", |n| n == 1)
        .unwrap();
    let queued = weir.metric("weir_write_queue_bytes").unwrap();
    let after = weir.rss_bytes().unwrap();
    eprintln!("sent {sent} bytes of requests; {queued} bytes queued; RSS {before} -> {after}");
    // Every complete request sent gets one ApiVersions v0 answer of `answer_len` bytes.
    let answer_len = {
        let mut probe = TcpStream::connect(addr).unwrap();
        probe.set_read_timeout(Some(WAIT)).unwrap();
        probe.write_all(&request).unwrap();
        read_frame(&mut probe).unwrap().len() as u64 + 4
    };
    // The cap stops reading once reached, so the queue passes it by at most one answer.
    assert!(
        queued <= 65_536 + answer_len,
        "write queue {queued} past its cap"
    );
    assert!(
        after < before + (8 << 20),
        "memory grew from {before} to {after}"
    );
    // Reading resumes the connection: every request sent is answered.
    let answered_before = weir.metric("weir_requests_total").unwrap();
    let expected = (sent / request.len()) as u64 * answer_len;
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut drained = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    while drained < expected {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n as u64,
        }
    }
    let state = format!(
        "sent {sent}, received {}; answered {answered_before} before draining, {} after; read paused {}; queued {}",
        weir.metric("weir_received_bytes_total").unwrap(),
        weir.metric("weir_requests_total").unwrap(),
        weir.metric("weir_connections_read_paused").unwrap(),
        weir.metric("weir_write_queue_bytes").unwrap(),
    );
    assert_eq!(drained, expected, "{state}");
}

#[test]
fn metrics_report_each_shard_and_the_log_writer() {
    let mut weir = Weir::builder()
        .env("WEIR_SERVER_SHARDS", "3")
        .start()
        .unwrap();
    let addr = weir.admin_addr().unwrap();
    let (status, body) = weir_tests::http_get(addr, "/metrics").unwrap();
    assert_eq!(status, 200);
    for shard in 0..3 {
        assert!(
            body.contains(&format!("weir_connections_open{{shard=\"{shard}\"}} 0")),
            "{body}"
        );
    }
    assert!(
        body.contains("weir_log_commit_seconds_bucket{le=\"+Inf\"} 0"),
        "{body}"
    );
    assert!(
        body.contains("# TYPE weir_requests_total counter"),
        "{body}"
    );
    weir.wait_for_log("3 shards, I/O backend").unwrap();
}

#[test]
fn the_kafka_port_in_use_fails_with_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut weir = Weir::builder()
        .env("WEIR_KAFKA_LISTEN", &addr)
        .spawn()
        .unwrap();
    assert_eq!(weir.wait_exit().unwrap().code(), Some(1));
    weir.wait_for_log(&format!("cannot listen on {addr} for kafka (kafka.listen)"))
        .unwrap();
}

/// The backend the broker runs is the one asked for, and the log says which and why.
#[test]
fn the_io_backend_in_use_is_the_one_asked_for_and_logged() {
    let mut weir = Weir::builder().start().unwrap();
    let line = weir.wait_for_log("I/O backend").unwrap();
    let (code, probe) = run_weir(&["io-probe"], &[], weir.dir()).unwrap();
    match std::env::var(IO_BACKEND_VAR).as_deref() {
        Ok("uring") => {
            assert!(
                line.contains("I/O backend io_uring (server.io = uring)"),
                "{line}"
            );
            assert_eq!((code, probe.trim()), (0, "io_uring: available"));
        }
        Ok("epoll") => assert!(
            line.contains("I/O backend epoll (server.io = epoll)"),
            "{line}"
        ),
        _ if code == 0 => assert!(
            line.contains("io_uring (auto: io_uring works here)"),
            "{line}"
        ),
        _ => assert!(
            line.contains("epoll (auto: io_uring unavailable"),
            "{line}\n{probe}"
        ),
    }
}

/// After a protocol error the connection reads nothing more: later requests in the same
/// pipelined stream are not parsed from a wrong offset and answered.
#[test]
fn nothing_after_a_protocol_error_is_answered() {
    let mut weir = Weir::builder().start().unwrap();
    let mut stream = TcpStream::connect(weir.kafka_addr().unwrap()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut unknown = api_versions_request(0, 2);
    unknown[4..6].copy_from_slice(&1i16.to_be_bytes()); // Fetch, not implemented yet
    let mut pipeline = api_versions_request(0, 1);
    pipeline.extend(unknown);
    for i in 0..2_000 {
        pipeline.extend(api_versions_request(0, 100 + i));
    }
    stream.write_all(&pipeline).unwrap();
    assert_eq!(&read_frame(&mut stream).unwrap()[..4], &1i32.to_be_bytes());
    assert!(
        closed_by_peer(&mut stream),
        "more answers after the protocol error"
    );
}

/// The smallest send buffer still answers every request: one at a time.
#[test]
fn a_one_byte_send_buffer_still_answers_everything() {
    let mut weir = Weir::builder()
        .env("WEIR_SERVER_WRITE_BUFFER_BYTES_MAX", "1")
        .start()
        .unwrap();
    let mut stream = TcpStream::connect(weir.kafka_addr().unwrap()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let pipeline: Vec<u8> = (0..500).flat_map(|i| api_versions_request(0, i)).collect();
    stream.write_all(&pipeline).unwrap();
    for i in 0..500i32 {
        assert_eq!(&read_frame(&mut stream).unwrap()[..4], &i.to_be_bytes());
    }
}
