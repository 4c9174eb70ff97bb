//! Tests of the LMDB log against real environments in temporary directories.

use proptest::prelude::*;
use weir_core::log_store::{
    Append, AppendError, CheckedBatch, LogStore, PartitionId, StoreError, TopicConfig,
};
use weir_kafka::record_batch::{BatchBuilder, BatchHeader, Record, validate};

use crate::faulty::{FailAfter, Fault};
use crate::schema::{self, PartitionMeta};
use crate::{Durability, LmdbLog, LogOptions, OpenError, Repair};

const KEEP: TopicConfig = TopicConfig {
    retention_ms: -1,
    retention_bytes: -1,
};

/// A batch of `n` records whose values name `tag` and the record index; timestamps start at
/// `ts`.
fn batch(tag: &str, n: usize, ts: i64) -> Vec<u8> {
    let mut builder = BatchBuilder::new();
    for i in 0..n {
        let value = format!("{tag}-{i}");
        builder.push(Record {
            timestamp_ms: ts + i as i64,
            key: Some(tag.as_bytes()),
            value: Some(value.as_bytes()),
            headers: &[],
        });
    }
    builder.finish()
}

fn checked(bytes: Vec<u8>) -> CheckedBatch {
    CheckedBatch::new(bytes).unwrap()
}

fn open(dir: &std::path::Path) -> LmdbLog {
    let (log, repairs) = LmdbLog::open(dir, LogOptions::default()).unwrap();
    assert!(repairs.is_empty(), "unexpected repairs: {repairs:?}");
    log
}

fn append_one(log: &impl LogStore, pid: PartitionId, bytes: Vec<u8>) -> Result<i64, StoreError> {
    let mut group = [Append {
        partition: pid,
        batch: checked(bytes),
        dedup: None,
    }];
    let mut results = log.append(&mut group)?;
    Ok(results.remove(0).unwrap().base_offset)
}

fn read_all(log: &impl LogStore, pid: PartitionId, from: i64) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    log.read(pid, from, usize::MAX, &mut |b| out.push(b.to_vec()))
        .unwrap();
    out
}

#[test]
fn appends_get_contiguous_offsets_and_read_back_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let topic = log.create_topic("sensors", 2, KEEP).unwrap();
    let (p0, p1) = (topic.partitions[0], topic.partitions[1]);
    let mut group = vec![
        Append {
            partition: p0,
            batch: checked(batch("a", 3, 100)),
            dedup: None,
        },
        Append {
            partition: p1,
            batch: checked(batch("b", 1, 100)),
            dedup: None,
        },
        Append {
            partition: p0,
            batch: checked(batch("c", 2, 100)),
            dedup: None,
        },
    ];
    let results = log.append(&mut group).unwrap();
    let offsets: Vec<(i64, i64)> = results
        .iter()
        .map(|r| r.as_ref().map(|a| (a.base_offset, a.last_offset)).unwrap())
        .collect();
    assert_eq!(offsets, [(0, 2), (0, 0), (3, 4)]);
    assert_eq!(append_one(&log, p0, batch("d", 1, 100)).unwrap(), 5);

    let stored = read_all(&log, p0, 0);
    assert_eq!(stored.len(), 3);
    // What was appended (with its assigned base offset) is what comes back.
    assert_eq!(stored[0], group[0].batch.to_vec());
    assert_eq!(stored[1], group[2].batch.to_vec());
    assert_eq!(validate(&stored[1]).unwrap().base_offset, 3);
    let state = log.partition(p0).unwrap();
    assert_eq!((state.log_start_offset, state.high_watermark), (0, 6));
    assert_eq!(
        state.size_bytes,
        stored.iter().map(|b| b.len() as u64).sum::<u64>()
    );
}

#[test]
fn a_bad_batch_cannot_reach_the_log_and_a_bad_partition_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let pid = log.create_topic("t", 1, KEEP).unwrap().partitions[0];
    // A batch is checked when it is made: a corrupt one never becomes an `Append`.
    let mut corrupt = batch("x", 2, 0);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    assert!(matches!(
        CheckedBatch::new(corrupt),
        Err(weir_kafka::record_batch::BatchError::BadCrc { .. })
    ));
    let mut group = vec![
        Append {
            partition: pid,
            batch: checked(batch("ok1", 1, 0)),
            dedup: None,
        },
        Append {
            partition: PartitionId(999),
            batch: checked(batch("nobody", 1, 0)),
            dedup: None,
        },
        Append {
            partition: pid,
            batch: checked(batch("ok2", 1, 0)),
            dedup: None,
        },
    ];
    let results = log.append(&mut group).unwrap();
    assert_eq!(results[0].as_ref().unwrap().base_offset, 0);
    assert_eq!(
        results[1],
        Err(AppendError::UnknownPartition(PartitionId(999)))
    );
    assert_eq!(results[2].as_ref().unwrap().base_offset, 1);
    assert_eq!(log.partition(pid).unwrap().high_watermark, 2);
}

#[test]
fn reads_respect_the_budget_and_the_offset_range() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let pid = log.create_topic("t", 1, KEEP).unwrap().partitions[0];
    for i in 0..5 {
        append_one(&log, pid, batch(&format!("b{i}"), 2, 0)).unwrap();
    }
    let one = batch("b0", 2, 0).len();
    // A budget smaller than one batch still returns one batch.
    let mut got = Vec::new();
    let summary = log.read(pid, 0, 1, &mut |b| got.push(b.len())).unwrap();
    assert_eq!((summary.batches, got.len()), (1, 1));
    // Two and a half batches' worth returns two.
    let summary = log.read(pid, 0, one * 5 / 2, &mut |_| {}).unwrap();
    assert_eq!(summary.batches, 2);
    // An offset inside a batch starts at that batch.
    let from_mid = read_all(&log, pid, 3);
    assert_eq!(validate(&from_mid[0]).unwrap().base_offset, 2);
    assert_eq!(from_mid.len(), 4);
    // The high watermark reads nothing; past it is out of range.
    assert_eq!(log.read(pid, 10, 100, &mut |_| {}).unwrap().batches, 0);
    assert!(matches!(
        log.read(pid, 11, 100, &mut |_| {}),
        Err(StoreError::OffsetOutOfRange {
            high_watermark: 10,
            ..
        })
    ));
    assert!(matches!(
        log.read(PartitionId(77), 0, 100, &mut |_| {}),
        Err(StoreError::UnknownPartition(_))
    ));
}

#[test]
fn delete_records_moves_the_log_start_and_frees_whole_batches() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let pid = log.create_topic("t", 1, KEEP).unwrap().partitions[0];
    for i in 0..4 {
        append_one(&log, pid, batch(&format!("b{i}"), 3, 1_000 * i)).unwrap();
    }
    // Offset 4 is inside the second batch (3..=5): only the first batch goes.
    assert_eq!(log.delete_records(pid, 4).unwrap(), 4);
    let state = log.partition(pid).unwrap();
    assert_eq!(state.log_start_offset, 4);
    assert_eq!(read_all(&log, pid, 4).len(), 3);
    assert!(matches!(
        log.read(pid, 3, 100, &mut |_| {}),
        Err(StoreError::OffsetOutOfRange {
            log_start_offset: 4,
            ..
        })
    ));
    // Moving backwards is a no-op; past the end is an error; -1 means the end.
    assert_eq!(log.delete_records(pid, 1).unwrap(), 4);
    assert!(log.delete_records(pid, 13).is_err());
    assert_eq!(log.delete_records(pid, -1).unwrap(), 12);
    let state = log.partition(pid).unwrap();
    assert_eq!(
        (
            state.log_start_offset,
            state.high_watermark,
            state.size_bytes
        ),
        (12, 12, 0)
    );
    // Appends continue from the high watermark.
    assert_eq!(append_one(&log, pid, batch("after", 1, 0)).unwrap(), 12);
}

#[test]
fn offsets_by_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let pid = log.create_topic("t", 1, KEEP).unwrap().partitions[0];
    append_one(&log, pid, batch("a", 2, 100)).unwrap(); // offsets 0-1, ts 100-101
    append_one(&log, pid, batch("b", 2, 50)).unwrap(); // offsets 2-3, ts 50-51 (older)
    append_one(&log, pid, batch("c", 2, 200)).unwrap(); // offsets 4-5, ts 200-201
    assert_eq!(log.offset_for_timestamp(pid, 0).unwrap(), Some(0));
    assert_eq!(log.offset_for_timestamp(pid, 101).unwrap(), Some(0));
    assert_eq!(log.offset_for_timestamp(pid, 102).unwrap(), Some(4));
    assert_eq!(log.offset_for_timestamp(pid, 201).unwrap(), Some(4));
    assert_eq!(log.offset_for_timestamp(pid, 202).unwrap(), None);
    // After the first batch is deleted, the earliest batch that may hold ts <= 101 is the
    // first one left.
    log.delete_records(pid, 2).unwrap();
    assert_eq!(log.offset_for_timestamp(pid, 40).unwrap(), Some(2));
    assert_eq!(log.offset_for_timestamp(pid, 150).unwrap(), Some(4));
}

#[test]
fn retention_by_size_and_by_time_deletes_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let size = batch("b0", 1, 0).len() as i64;
    let by_size = TopicConfig {
        retention_ms: -1,
        retention_bytes: 2 * size,
    };
    let by_time = TopicConfig {
        retention_ms: 1_000,
        retention_bytes: -1,
    };
    let ps = log.create_topic("by-size", 1, by_size).unwrap().partitions[0];
    let pt = log.create_topic("by-time", 1, by_time).unwrap().partitions[0];
    let pk = log.create_topic("kept", 1, KEEP).unwrap().partitions[0];
    for i in 0..5 {
        append_one(&log, ps, batch(&format!("b{i}"), 1, 0)).unwrap();
        append_one(&log, pt, batch(&format!("b{i}"), 1, 10_000 + i * 1_000)).unwrap();
        append_one(&log, pk, batch(&format!("b{i}"), 1, 0)).unwrap();
    }
    // At t = 13_500 batches with max ts < 12_500 (ts 10_000, 11_000, 12_000) expire.
    let report = log.enforce_retention(13_500).unwrap();
    assert_eq!(report.batches, 3 + 3);
    assert_eq!(log.partition(ps).unwrap().log_start_offset, 3);
    assert_eq!(log.partition(ps).unwrap().size_bytes, 2 * size as u64);
    assert_eq!(log.partition(pt).unwrap().log_start_offset, 3);
    assert_eq!(log.partition(pk).unwrap().log_start_offset, 0);
    // Running it again deletes nothing more.
    assert_eq!(log.enforce_retention(13_500).unwrap().batches, 0);
}

#[test]
fn topics_partitions_and_config() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let t = log
        .create_topic("orders", 2, TopicConfig::default())
        .unwrap();
    assert_eq!(
        log.create_topic("orders", 1, KEEP),
        Err(StoreError::TopicExists("orders".into()))
    );
    assert!(matches!(
        log.create_topic("bad name", 1, KEEP),
        Err(StoreError::InvalidArgument(_))
    ));
    assert!(matches!(
        log.create_topic("..", 1, KEEP),
        Err(StoreError::InvalidArgument(_))
    ));
    assert!(matches!(
        log.create_topic("zero", 0, KEEP),
        Err(StoreError::InvalidArgument(_))
    ));
    let grown = log.add_partitions("orders", 4).unwrap();
    assert_eq!(grown.partitions[..2], t.partitions[..]);
    assert_eq!(grown.partitions.len(), 4);
    assert!(log.add_partitions("orders", 3).is_err());
    log.set_topic_config("orders", KEEP).unwrap();
    assert_eq!(log.topic("orders").unwrap().unwrap().config, KEEP);
    log.create_topic("alerts", 1, KEEP).unwrap();
    let names: Vec<String> = log.topics().unwrap().into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["alerts", "orders"]);
}

#[test]
fn deleting_a_topic_frees_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let gone = log.create_topic("gone", 2, KEEP).unwrap();
    let kept = log.create_topic("kept", 1, KEEP).unwrap().partitions[0];
    for i in 0..50 {
        append_one(&log, gone.partitions[i % 2], batch("x", 10, 0)).unwrap();
    }
    append_one(&log, kept, batch("k", 1, 0)).unwrap();
    log.delete_topic("gone").unwrap();
    assert_eq!(log.topic("gone").unwrap(), None);
    assert!(matches!(
        log.partition(gone.partitions[0]),
        Err(StoreError::UnknownPartition(_))
    ));
    let txn = log.env.read_txn().unwrap();
    assert_eq!(
        log.log.len(&txn).unwrap(),
        1,
        "only the kept topic's batch is left"
    );
    drop(txn);
    assert!(matches!(
        log.delete_topic("gone"),
        Err(StoreError::UnknownTopic(_))
    ));
    // Partition ids are never reused.
    let again = log.create_topic("gone", 1, KEEP).unwrap();
    assert!(again.partitions[0] > kept);
    assert_eq!(read_all(&log, kept, 0).len(), 1);
}

#[test]
fn data_survives_reopen_and_metadata_is_repaired_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let pid;
    {
        let log = open(dir.path());
        pid = log.create_topic("t", 1, KEEP).unwrap().partitions[0];
        for _ in 0..3 {
            append_one(&log, pid, batch("x", 2, 0)).unwrap();
        }
        // Damage the metadata as a bug might: wrong next offset, log start before the data,
        // and batches of a partition no topic owns.
        let mut txn = log.env.write_txn().unwrap();
        let bad = PartitionMeta {
            log_start_offset: 0,
            next_offset: 99,
            size_bytes: 0,
            max_timestamp: 0,
        };
        log.put_meta(&mut txn, pid, &bad).unwrap();
        let orphan = PartitionId(4242);
        let mut orphan_batch = batch("o", 1, 0);
        weir_kafka::record_batch::set_base_offset(&mut orphan_batch, 0);
        log.log
            .put(&mut txn, &schema::log_key(orphan, 0), &orphan_batch)
            .unwrap();
        txn.commit().unwrap();
    }
    let (log, repairs) = LmdbLog::open(dir.path(), LogOptions::default()).unwrap();
    assert_eq!(
        repairs,
        [
            Repair::NextOffset {
                partition: pid,
                recorded: 99,
                actual: 6
            },
            Repair::OrphanBatches {
                partition: PartitionId(4242),
                batches: 1
            },
        ]
    );
    assert_eq!(log.partition(pid).unwrap().high_watermark, 6);
    assert_eq!(read_all(&log, pid, 0).len(), 3);
    assert_eq!(append_one(&log, pid, batch("y", 1, 0)).unwrap(), 6);
    drop(log);
    // A clean reopen repairs nothing.
    open(dir.path());
}

#[test]
fn producer_ids_are_never_handed_out_twice_across_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let first: Vec<i64> = {
        let log = open(dir.path());
        (0..3)
            .map(|_| log.allocate_producer_id().unwrap())
            .collect()
    };
    assert_eq!(first, [0, 1, 2]);
    let log = open(dir.path());
    assert_eq!(log.allocate_producer_id().unwrap(), 3);
}

#[test]
fn committed_offsets_are_per_group_survive_reopen_and_leave_with_their_topic() {
    use weir_core::log_store::{CommittedOffset, GROUP_ID_BYTES_MAX, OFFSET_METADATA_BYTES_MAX};
    let dir = tempfile::tempdir().unwrap();
    let at = |offset, metadata: &str| CommittedOffset {
        offset,
        leader_epoch: 0,
        metadata: metadata.to_owned(),
    };
    let (kept, gone) = {
        let log = open(dir.path());
        let kept = log.create_topic("kept", 2, TopicConfig::default()).unwrap();
        let gone = log.create_topic("gone", 1, TopicConfig::default()).unwrap();
        let (p0, p1, g0) = (kept.partitions[0], kept.partitions[1], gone.partitions[0]);
        log.commit_offsets("g", &[(p0, at(5, "m")), (p1, at(7, ""))])
            .unwrap();
        // "g1" shares "g"'s first byte but not its key prefix; a later commit overwrites.
        log.commit_offsets("g1", &[(p0, at(1, ""))]).unwrap();
        log.commit_offsets("g", &[(p1, at(9, "again")), (g0, at(2, ""))])
            .unwrap();
        // Limits: nothing of a refused commit is written.
        let long_group = "x".repeat(GROUP_ID_BYTES_MAX + 1);
        assert!(matches!(
            log.commit_offsets(&long_group, &[(p0, at(1, ""))]),
            Err(StoreError::InvalidArgument(_))
        ));
        let long_metadata = "m".repeat(OFFSET_METADATA_BYTES_MAX + 1);
        assert!(matches!(
            log.commit_offsets("g", &[(p0, at(6, "")), (p1, at(1, &long_metadata))]),
            Err(StoreError::InvalidArgument(_))
        ));
        log.delete_topic("gone").unwrap();
        ((p0, p1), g0)
    };
    let log = open(dir.path());
    assert_eq!(
        log.committed_offsets("g").unwrap(),
        [(kept.0, at(5, "m")), (kept.1, at(9, "again"))],
        "the deleted topic's offset ({gone:?}) is not returned"
    );
    assert_eq!(log.committed_offsets("g1").unwrap(), [(kept.0, at(1, ""))]);
    assert!(log.committed_offsets("other").unwrap().is_empty());

    // Groups are listed once each, however many offsets they hold; deleting one group's
    // offsets leaves the others.
    log.commit_offsets("h", &[(kept.1, at(3, ""))]).unwrap();
    assert_eq!(log.offset_groups().unwrap(), ["g", "h", "g1"]);
    assert!(log.delete_group_offsets("g").unwrap());
    assert!(
        !log.delete_group_offsets("g").unwrap(),
        "nothing left to delete"
    );
    assert!(log.committed_offsets("g").unwrap().is_empty());
    assert_eq!(log.offset_groups().unwrap(), ["h", "g1"]);
    drop(log);
    assert_eq!(open(dir.path()).offset_groups().unwrap(), ["h", "g1"]);
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        let mut txn = log.env.write_txn().unwrap();
        log.meta
            .put(
                &mut txn,
                schema::meta_key::SCHEMA_VERSION,
                &99u32.to_be_bytes(),
            )
            .unwrap();
        txn.commit().unwrap();
    }
    let err = LmdbLog::open(dir.path(), LogOptions::default()).unwrap_err();
    assert!(
        matches!(err, OpenError::NewerSchema { found: 99, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("run a newer weir"));
}

/// A small map fills up: the append that does not fit fails with `Full`, nothing of its group
/// is visible, freeing space lets appends resume, and every acknowledged batch survives.
#[test]
fn a_full_map_refuses_appends_until_space_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let options = LogOptions {
        map_size_bytes: 1 << 20,
        ..LogOptions::default()
    };
    let (log, _) = LmdbLog::open(dir.path(), options).unwrap();
    let scratch = log.create_topic("scratch", 1, KEEP).unwrap().partitions[0];
    let keep = log.create_topic("keep", 1, KEEP).unwrap().partitions[0];
    let big = |tag: &str| {
        let value = vec![b'v'; 16 * 1024];
        let mut b = BatchBuilder::new();
        b.push(Record {
            timestamp_ms: 0,
            key: Some(tag.as_bytes()),
            value: Some(&value),
            headers: &[],
        });
        b.finish()
    };
    let mut acked = Vec::new();
    let full = loop {
        let pid = if acked.len() % 2 == 0 { scratch } else { keep };
        match append_one(&log, pid, big("x")) {
            Ok(base) => acked.push((pid, base)),
            Err(e) => break e,
        }
        assert!(acked.len() < 1_000, "a 1 MiB map never filled");
    };
    assert!(matches!(full, StoreError::Full(_)), "{full:?}");
    let hw_keep = log.partition(keep).unwrap().high_watermark;
    // Still full on retry.
    assert!(matches!(
        append_one(&log, keep, big("y")),
        Err(StoreError::Full(_))
    ));
    assert_eq!(log.partition(keep).unwrap().high_watermark, hw_keep);
    // Free space; appends resume.
    log.delete_topic("scratch").unwrap();
    let base = append_one(&log, keep, big("after")).unwrap();
    assert_eq!(base, hw_keep);
    drop(log);
    let (log, repairs) = LmdbLog::open(dir.path(), options).unwrap();
    assert!(repairs.is_empty());
    let kept: Vec<i64> = read_all(&log, keep, 0)
        .iter()
        .map(|b| validate(b).unwrap().base_offset)
        .collect();
    let expected: Vec<i64> = acked
        .iter()
        .filter(|(pid, _)| *pid == keep)
        .map(|(_, base)| *base)
        .chain([base])
        .collect();
    assert_eq!(kept, expected);
}

#[test]
fn relaxed_mode_keeps_committed_data_across_a_clean_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let options = LogOptions {
        durability: Durability::Relaxed,
        ..LogOptions::default()
    };
    let pid;
    {
        let (log, _) = LmdbLog::open(dir.path(), options).unwrap();
        pid = log.create_topic("t", 1, KEEP).unwrap().partitions[0];
        for _ in 0..10 {
            append_one(&log, pid, batch("r", 3, 0)).unwrap();
        }
        log.sync().unwrap();
    }
    let (log, _) = LmdbLog::open(dir.path(), options).unwrap();
    assert_eq!(log.partition(pid).unwrap().high_watermark, 30);
}

#[test]
fn fail_after_injects_faults_and_rearms() {
    let dir = tempfile::tempdir().unwrap();
    let store = FailAfter::new(open(dir.path()), 2, Fault::Fatal);
    let pid = store.create_topic("t", 1, KEEP).unwrap().partitions[0];
    append_one(&store, pid, batch("a", 1, 0)).unwrap();
    assert!(matches!(
        append_one(&store, pid, batch("b", 1, 0)),
        Err(StoreError::Fatal(_))
    ));
    // Reads still work and show only what was written.
    assert_eq!(read_all(&store, pid, 0).len(), 1);
    store.rearm(1);
    assert_eq!(append_one(&store, pid, batch("c", 1, 0)).unwrap(), 1);
    let full = FailAfter::new(store, 0, Fault::Full);
    assert!(matches!(full.sync(), Err(StoreError::Full(_))));
}

/// One step of the model test.
#[derive(Debug, Clone)]
enum Op {
    Append {
        partition: usize,
        records: usize,
        group: usize,
    },
    Read {
        partition: usize,
        at: usize,
    },
    DeleteRecords {
        partition: usize,
        at: usize,
    },
    Retention {
        bytes: usize,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..3usize, 1..5usize, 1..4usize)
            .prop_map(|(partition, records, group)| Op::Append { partition, records, group }),
        3 => (0..3usize, any::<usize>()).prop_map(|(partition, at)| Op::Read { partition, at }),
        1 => (0..3usize, any::<usize>()).prop_map(|(partition, at)| Op::DeleteRecords { partition, at }),
        1 => (0..4000usize).prop_map(|bytes| Op::Retention { bytes }),
        1 => Just(Op::Reopen),
    ]
}

/// The model: per partition, the stored batches as (base offset, bytes), and the log start.
#[derive(Debug, Default, Clone)]
struct Model {
    batches: Vec<(i64, Vec<u8>)>,
    log_start: i64,
    next: i64,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Random appends, reads, truncations, retention and reopens keep offsets strictly
    /// increasing and contiguous, and reads return exactly what was appended.
    #[test]
    fn the_log_matches_a_model(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Some(open(dir.path()));
        let pids = log.as_ref().unwrap().create_topic("m", 3, KEEP).unwrap().partitions;
        let mut models = vec![Model::default(); 3];
        let mut counter = 0usize;
        for op in ops {
            let store = log.as_ref().unwrap();
            match op {
                Op::Append { partition, records, group } => {
                    let mut appends: Vec<Append> = (0..group)
                        .map(|g| {
                            counter += 1;
                            Append {
                                partition: pids[(partition + g) % 3],
                                batch: checked(batch(&format!("r{counter}"), records, counter as i64)),
                                dedup: None,
                            }
                        })
                        .collect();
                    let results = store.append(&mut appends).unwrap();
                    for (append, result) in appends.iter().zip(results) {
                        let appended = result.unwrap();
                        let index = pids.iter().position(|p| *p == append.partition).unwrap();
                        let model = &mut models[index];
                        prop_assert_eq!(appended.base_offset, model.next);
                        model.next = appended.last_offset + 1;
                        model.batches.push((appended.base_offset, append.batch.to_vec()));
                    }
                }
                Op::Read { partition, at } => {
                    let model = &models[partition];
                    let span = (model.next - model.log_start + 1) as usize;
                    let offset = model.log_start + (at % span) as i64;
                    let got = read_all(store, pids[partition], offset);
                    let expected: Vec<Vec<u8>> = model
                        .batches
                        .iter()
                        .filter(|(base, bytes)| validate(bytes).map(|h| base + i64::from(h.last_offset_delta) >= offset).unwrap())
                        .map(|(_, bytes)| bytes.clone())
                        .collect();
                    prop_assert_eq!(got, expected);
                }
                Op::DeleteRecords { partition, at } => {
                    let model = &mut models[partition];
                    let span = (model.next - model.log_start + 1) as usize;
                    let offset = model.log_start + (at % span) as i64;
                    let start = store.delete_records(pids[partition], offset).unwrap();
                    prop_assert_eq!(start, offset);
                    model.log_start = offset;
                    model.batches.retain(|(_, bytes)| {
                        BatchHeader::parse(bytes).map(|h| h.next_offset() > offset).unwrap()
                    });
                }
                Op::Retention { bytes } => {
                    let config = TopicConfig { retention_ms: -1, retention_bytes: bytes as i64 };
                    store.set_topic_config("m", config).unwrap();
                    store.enforce_retention(0).unwrap();
                    store.set_topic_config("m", KEEP).unwrap();
                    for model in &mut models {
                        let mut size: usize = model.batches.iter().map(|(_, b)| b.len()).sum();
                        while size > bytes {
                            let (_, first) = model.batches.remove(0);
                            size -= first.len();
                            let next = BatchHeader::parse(&first).unwrap().next_offset();
                            model.log_start = model.log_start.max(next);
                        }
                    }
                }
                Op::Reopen => {
                    drop(log.take());
                    log = Some(open(dir.path()));
                }
            }
            let store = log.as_ref().unwrap();
            for (pid, model) in pids.iter().zip(&models) {
                let state = store.partition(*pid).unwrap();
                prop_assert_eq!(state.high_watermark, model.next);
                prop_assert_eq!(state.log_start_offset, model.log_start);
                let size: usize = model.batches.iter().map(|(_, b)| b.len()).sum();
                prop_assert_eq!(state.size_bytes, size as u64);
                // Contiguity: each stored batch starts where the previous one ended.
                let stored = read_all(store, *pid, model.log_start);
                for pair in stored.windows(2) {
                    let (a, b) = (validate(&pair[0]).unwrap(), validate(&pair[1]).unwrap());
                    prop_assert_eq!(a.next_offset(), b.base_offset);
                }
            }
        }
    }
}

/// A batch of `n` records from idempotent producer `id` (epoch `epoch`) starting at
/// sequence `seq`, stamped `ts`.
fn sequenced(id: i64, epoch: i16, seq: i32, n: usize, ts: i64) -> Vec<u8> {
    let mut builder = BatchBuilder::new().producer(id, epoch, seq);
    for i in 0..n {
        builder.push(Record {
            timestamp_ms: ts,
            key: None,
            value: Some(format!("{id}-{seq}-{i}").as_bytes()),
            headers: &[],
        });
    }
    builder.finish()
}

#[test]
fn idempotent_producers_retries_are_not_stored_twice_even_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let append = |log: &LmdbLog, pid, batches: Vec<Vec<u8>>| {
        let mut group: Vec<Append> = (batches.into_iter())
            .map(|batch| Append {
                partition: pid,
                batch: checked(batch),
                dedup: None,
            })
            .collect();
        log.append(&mut group).unwrap()
    };
    let now = 1_700_000_000_000;
    let pid = {
        let log = open(dir.path());
        let pid = log
            .create_topic("idem", 1, TopicConfig::default())
            .unwrap()
            .partitions[0];
        // Two batches in one group, then a retry of the first in the next group: it gets the
        // first's offsets and nothing is written.
        let first = append(
            &log,
            pid,
            vec![sequenced(7, 0, 0, 3, now), sequenced(7, 0, 3, 2, now)],
        );
        assert_eq!(first[0].as_ref().unwrap().base_offset, 0);
        assert_eq!(first[1].as_ref().unwrap().base_offset, 3);
        let retry = append(&log, pid, vec![sequenced(7, 0, 0, 3, now)]);
        let retried = retry[0].as_ref().unwrap();
        assert_eq!((retried.base_offset, retried.last_offset), (0, 2));
        assert_eq!(log.partition(pid).unwrap().high_watermark, 5);
        // Another producer, and a batch without a producer, are unaffected.
        let other = append(
            &log,
            pid,
            vec![sequenced(8, 0, 0, 1, now), batch("plain", 1, now)],
        );
        assert!(other.iter().all(Result::is_ok));
        pid
    };
    let log = open(dir.path());
    let results = append(
        &log,
        pid,
        vec![
            sequenced(7, 0, 3, 2, now), // a retry of the second batch, after the reopen
            sequenced(7, 0, 6, 1, now), // a gap: 5 was expected
            sequenced(7, -1, 5, 1, now), // an older epoch
            sequenced(7, 0, 5, 1, now), // in order
        ],
    );
    assert_eq!(results[0].as_ref().unwrap().base_offset, 3);
    assert_eq!(
        results[1],
        Err(AppendError::OutOfOrderSequence {
            expected: 5,
            got: 6
        })
    );
    assert!(matches!(
        results[2],
        Err(AppendError::ProducerFenced { .. })
    ));
    assert_eq!(results[3].as_ref().unwrap().base_offset, 7);
    assert_eq!(log.partition(pid).unwrap().high_watermark, 8);
    // A day after its last write a producer's state goes: its next batch is taken as new.
    log.enforce_retention(now + crate::producers::PRODUCER_EXPIRY_MS + 1)
        .unwrap();
    let after = append(&log, pid, vec![sequenced(7, 0, 9, 1, now)]);
    assert_eq!(after[0].as_ref().unwrap().base_offset, 8);
}

#[test]
fn retained_messages_are_replaced_deleted_bounded_and_kept_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let all = |log: &LmdbLog| {
        let mut seen = Vec::new();
        log.retained(&mut |topic, message| seen.push((topic.to_owned(), message.to_vec())))
            .unwrap();
        seen
    };
    {
        let log = open(dir.path());
        log.set_retained("a/b", Some(b"one"), 2).unwrap();
        log.set_retained("a/b", Some(b"two"), 2).unwrap();
        log.set_retained("a/c", Some(b"three"), 2).unwrap();
        // A third topic is over the limit; replacing an existing one is not.
        assert!(matches!(
            log.set_retained("a/d", Some(b"x"), 2),
            Err(StoreError::Full(_))
        ));
        log.set_retained("a/c", Some(b"four"), 2).unwrap();
        assert!(matches!(
            log.set_retained(&"t".repeat(481), Some(b"x"), 10),
            Err(StoreError::InvalidArgument(_))
        ));
        // Deleting a topic without one is no error.
        log.set_retained("nothing/here", None, 2).unwrap();
    }
    let log = open(dir.path());
    assert_eq!(
        all(&log),
        vec![
            ("a/b".to_owned(), b"two".to_vec()),
            ("a/c".to_owned(), b"four".to_vec())
        ]
    );
    log.set_retained("a/b", None, 2).unwrap();
    log.set_retained("a/d", Some(b"x"), 2).unwrap();
    assert_eq!(
        all(&log),
        vec![
            ("a/c".to_owned(), b"four".to_vec()),
            ("a/d".to_owned(), b"x".to_vec())
        ]
    );
}

#[test]
fn an_append_with_a_dedup_key_happens_once_until_the_key_is_released() {
    use weir_core::log_store::DedupKey;
    let dir = tempfile::tempdir().unwrap();
    let key = |id| {
        Some(DedupKey {
            owner: "sensor-7".into(),
            id,
        })
    };
    let append = |log: &LmdbLog, pid, id, tag: &str| {
        let mut group = [Append {
            partition: pid,
            batch: checked(batch(tag, 1, 5)),
            dedup: key(id).map(Box::new),
        }];
        log.append(&mut group)
            .unwrap()
            .remove(0)
            .unwrap()
            .base_offset
    };
    let pid = {
        let log = open(dir.path());
        let pid = log.create_topic("t", 1, KEEP).unwrap().partitions[0];
        assert_eq!(append(&log, pid, 1, "a"), 0);
        assert_eq!(append(&log, pid, 2, "b"), 1);
        // A retry of key 1 gets the first offset and writes nothing.
        assert_eq!(append(&log, pid, 1, "a"), 0);
        pid
    };
    // The keys survive a reopen.
    let log = open(dir.path());
    assert_eq!(append(&log, pid, 2, "b"), 1);
    assert_eq!(read_all(&log, pid, 0).len(), 2);
    // Released, the key is new again; releasing every key of the owner frees the rest.
    log.release_dedup("sensor-7", Some(1)).unwrap();
    assert_eq!(append(&log, pid, 1, "c"), 2);
    log.release_dedup("sensor-7", None).unwrap();
    assert_eq!(append(&log, pid, 1, "d"), 3);
    assert_eq!(append(&log, pid, 2, "e"), 4);
    assert_eq!(read_all(&log, pid, 0).len(), 5);
    // Another owner's keys are its own.
    log.release_dedup("sensor-70", None).unwrap();
    assert_eq!(append(&log, pid, 2, "e"), 4);
}
