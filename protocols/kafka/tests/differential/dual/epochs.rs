// OffsetForLeaderEpoch (key 23): compiled against both kafka-protocol releases (see
// `dual.rs`).

use kp::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kp::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kp::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use proptest::prelude::*;
use weir_kafka::cluster::{self, EpochAnswer};

use crate::support::{check, few, head, tags, text};

fn request_value(version: i16) -> impl Strategy<Value = OffsetForLeaderEpochRequest> {
    let partition =
        (any::<(i32, i32, i32)>(), tags()).prop_map(move |((p, current, epoch), tags)| {
            let partition = OffsetForLeaderPartition::default()
                .with_partition(p)
                .with_leader_epoch(epoch)
                .with_unknown_tagged_fields(tags);
            if version >= 2 {
                partition.with_current_leader_epoch(current)
            } else {
                partition
            }
        });
    let topic = (text(), few(partition), tags()).prop_map(|(name, partitions, tags)| {
        OffsetForLeaderTopic::default()
            .with_topic(oracle::topic(&name))
            .with_partitions(partitions)
            .with_unknown_tagged_fields(tags)
    });
    (any::<i32>(), few(topic), tags()).prop_map(move |(replica_id, topics, tags)| {
        let request = OffsetForLeaderEpochRequest::default()
            .with_topics(topics)
            .with_unknown_tagged_fields(tags);
        if version >= 3 {
            request.with_replica_id(oracle::broker(replica_id))
        } else {
            request
        }
    })
}

/// Weir ignores `replica_id` (v3+; consumers send -1) and keeps the rest; before v2 there is
/// no current leader epoch, which Weir reports as -1 (unknown).
pub fn request(version: i16) {
    check(
        "OffsetForLeaderEpoch request",
        version,
        (head(), request_value(version)),
        |(head, sent)| {
            let body = oracle::request_body(
                kp::messages::ApiKey::OffsetForLeaderEpoch,
                &sent,
                version,
                cluster::epoch_header_version,
                &head,
            );
            let parsed = cluster::parse_epochs(&body, version).expect("Weir parses the request");
            let expected: Vec<_> = (sent.topics.iter())
                .map(|topic| {
                    let queries = topic.partitions.iter().map(|p| {
                        let current = if version >= 2 {
                            p.current_leader_epoch
                        } else {
                            -1
                        };
                        (p.partition, current, p.leader_epoch)
                    });
                    (topic.topic.0.to_string(), queries.collect::<Vec<_>>())
                })
                .collect();
            assert_eq!(parsed, expected);
        },
    );
}

pub fn response(version: i16) {
    let topics = few((text(), few(any::<EpochAnswer>())));
    check(
        "OffsetForLeaderEpoch response",
        version,
        (any::<i32>(), topics),
        |(correlation_id, topics)| {
            let mut out = Vec::new();
            cluster::write_epochs_response(&mut out, correlation_id, version, &topics);
            let read: OffsetForLeaderEpochResponse =
                oracle::decode_response(&out, version, correlation_id);
            let expected = topics.iter().map(|(name, answers)| {
                let partitions = answers
                    .iter()
                    .map(|&(index, error_code, epoch, end_offset)| {
                        let answer = EpochEndOffset::default()
                            .with_error_code(error_code)
                            .with_partition(index)
                            .with_end_offset(end_offset);
                        // The leader epoch exists from v1.
                        if version >= 1 {
                            answer.with_leader_epoch(epoch)
                        } else {
                            answer
                        }
                    });
                OffsetForLeaderTopicResult::default()
                    .with_topic(oracle::topic(name))
                    .with_partitions(partitions.collect())
            });
            // throttle_time_ms (v2+) is 0, kafka-protocol's default.
            assert_eq!(
                read,
                OffsetForLeaderEpochResponse::default().with_topics(expected.collect())
            );
        },
    );
}
