//! Criterion micro benchmarks of the hot paths, one component at a time: MQTT PUBLISH
//! encode/decode, Kafka Produce request decode and response encode, record batches (CRC32C
//! validation, building, each codec's compression and decompression), log append and read (LMDB, relaxed durability, in a temporary
//! directory), and a plugin call per record. `cargo bench -p weir-bench --bench micro`
//! (`-- <filter>` for one group). Not tests: nothing asserts on time.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use weir_core::log_store::{Append, CheckedBatch, LogStore, TopicConfig};
use weir_kafka::record_batch::{self, BatchBuilder, Compression, Record};
use weir_mqtt::{Packet, PacketDecoder, PacketId, ProtocolVersion, Publish, QoS};

const V: ProtocolVersion = ProtocolVersion::V3_1_1;

fn publish(payload: usize) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: "factory/line-1/device-17/temperature".into(),
        packet_id: PacketId::new(7),
        properties: Default::default(),
        payload: vec![0x5a; payload],
    })
}

fn mqtt(c: &mut Criterion) {
    let mut group = c.benchmark_group("mqtt");
    for size in [100, 1024] {
        let packet = publish(size);
        let mut bytes = Vec::new();
        packet.encode(V, &mut bytes).expect("encodes");
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("publish-encode-{size}B"), |b| {
            let mut out = Vec::with_capacity(bytes.len());
            b.iter(|| {
                out.clear();
                black_box(&packet).encode(V, &mut out).expect("encodes");
            })
        });
        let decoder = PacketDecoder::new(1 << 20);
        group.bench_function(format!("publish-decode-{size}B"), |b| {
            b.iter(|| decoder.decode(black_box(&bytes), V).expect("decodes"))
        });
    }
    group.finish();
}

fn batch(records: usize, codec: Compression) -> Vec<u8> {
    let mut builder = BatchBuilder::new();
    let value: Vec<u8> = (0..1024u32).map(|i| (i * 7 % 251) as u8).collect();
    for i in 0..records {
        let key = format!("key-{}", i % 16);
        builder.push(Record {
            timestamp_ms: 1_700_000_000_000 + i as i64,
            key: Some(key.as_bytes()),
            value: Some(&value),
            headers: &[("mqtt.qos", Some(b"1"))],
        });
    }
    builder.finish_compressed(codec).expect("compresses")
}

fn kafka(c: &mut Criterion) {
    let mut group = c.benchmark_group("record-batch");
    let plain = batch(32, Compression::None);
    group.throughput(Throughput::Bytes(plain.len() as u64));
    group.bench_function("validate-crc32c-32x1KiB", |b| {
        b.iter(|| record_batch::validate(black_box(&plain)).expect("valid"))
    });
    group.bench_function("build-32x1KiB", |b| {
        b.iter(|| black_box(batch(32, Compression::None)))
    });
    for codec in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        group.bench_function(format!("build-compress-{codec:?}-32x1KiB"), |b| {
            b.iter(|| black_box(batch(32, codec)))
        });
        let compressed = batch(32, codec);
        group.bench_function(format!("decompress-{codec:?}-32x1KiB"), |b| {
            b.iter(|| {
                record_batch::record_bytes(black_box(&compressed), 64 << 20).expect("inflates")
            })
        });
    }
    group.finish();

    // A Produce v7 request carrying that batch, and its answer.
    let mut body = Vec::new();
    body.extend_from_slice(&(-1i16).to_be_bytes()); // no transactional id
    body.extend_from_slice(&(-1i16).to_be_bytes()); // acks=all
    body.extend_from_slice(&30_000i32.to_be_bytes());
    body.extend_from_slice(&1i32.to_be_bytes());
    body.extend_from_slice(&6i16.to_be_bytes());
    body.extend_from_slice(b"events");
    body.extend_from_slice(&1i32.to_be_bytes());
    body.extend_from_slice(&0i32.to_be_bytes());
    body.extend_from_slice(&(plain.len() as i32).to_be_bytes());
    body.extend_from_slice(&plain);
    let mut group = c.benchmark_group("kafka");
    group.throughput(Throughput::Elements(1));
    group.bench_function("produce-v7-request-decode", |b| {
        b.iter(|| weir_kafka::produce::parse_request(black_box(&body), 7).expect("decodes"))
    });
    let answer = [weir_kafka::produce::TopicResponse {
        name: "events".into(),
        partitions: vec![weir_kafka::produce::PartitionResponse {
            index: 0,
            error_code: 0,
            base_offset: 42,
            log_start_offset: 0,
            error_message: None,
            record_errors: Vec::new(),
        }],
    }];
    group.bench_function("produce-v9-response-encode", |b| {
        let mut out = Vec::with_capacity(128);
        b.iter(|| {
            out.clear();
            weir_kafka::produce::write_response(&mut out, 1, 9, black_box(&answer));
        })
    });
    group.finish();
}

fn log(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(".").expect("temporary directory");
    let options = weir_log::LogOptions {
        map_size_bytes: 8 << 30,
        durability: weir_log::Durability::Relaxed,
        ..weir_log::LogOptions::default()
    };
    let (log, _) = weir_log::LmdbLog::open(dir.path(), options).expect("the log opens");
    let config = TopicConfig {
        retention_ms: -1,
        retention_bytes: -1,
    };
    let pid = log
        .create_topic("bench", 1, config)
        .expect("topic")
        .partitions[0];
    let bytes = batch(32, Compression::None);
    let mut group = c.benchmark_group("log");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("append-relaxed-32x1KiB", |b| {
        b.iter_batched(
            || {
                vec![Append {
                    partition: pid,
                    batch: CheckedBatch::new(bytes.clone()).expect("valid"),
                    dedup: None,
                }]
            },
            |mut appends| log.append(&mut appends).expect("appends"),
            BatchSize::SmallInput,
        )
    });
    // The appends above left far more than 1 MiB; a read hands out stored batches in place.
    group.throughput(Throughput::Bytes(1 << 20));
    group.bench_function("read-1MiB-from-start", |b| {
        b.iter(|| {
            let mut read = 0usize;
            log.read(pid, 0, 1 << 20, &mut |batch| read += batch.len())
                .expect("reads");
            black_box(read)
        })
    });
    group.finish();
}

fn plugin(c: &mut Criterion) {
    use weir_core::plugin::{Message, PluginCall, layout};
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/target/wasm/passthrough.wasm");
    let Ok(wasm) = std::fs::read(&path) else {
        eprintln!(
            "{} missing: run `cargo xtask plugins` for the plugin benchmark",
            path.display()
        );
        return;
    };
    let engine = weir_plugin_host::PluginEngine::new(&weir_plugin_host::EngineSettings {
        instances_max: 4,
        memory_bytes_max: 16 << 20,
        cache_dir: None,
    })
    .expect("engine");
    let plugin = engine.load("passthrough", &wasm).expect("loads");
    let limits = weir_plugin_host::Limits {
        deadline_ticks: u64::MAX,
        memory_bytes_max: 16 << 20,
    };
    let mut instance = plugin.instantiate(&[], limits).expect("instantiates");
    let mut group = c.benchmark_group("plugin");
    for n in [1usize, 100] {
        let messages: Vec<Message> = (0..n)
            .map(|i| Message::from_mqtt("bench", format!("bench/{i}"), 1, vec![0x5a; 100]))
            .collect();
        let encoded = layout::write_batch(&messages);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("passthrough-call-batch-{n}x100B"), |b| {
            b.iter(|| instance.process(black_box(&encoded), n).expect("answers"))
        });
    }
    group.finish();
}

criterion_group!(benches, mqtt, kafka, log, plugin);
criterion_main!(benches);
