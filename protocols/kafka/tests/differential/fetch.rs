//! Fetch (key 1, v4-11) and ListOffsets (key 2, v1-5), against kafka-protocol's newest
//! release. Both are classic (non-flexible) in these versions, and the broker reads their
//! request header as v1 whatever the version.

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{
    FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse,
};
use proptest::prelude::*;
use weir_kafka::fetch::{self, FetchPartition as WeirPartition, FetchTopic as WeirTopic};

use crate::support::newest::{self as oracle, broker, s, topic};
use crate::support::{blob, check, few, head, many, text};

/// The header version the broker uses for Fetch and ListOffsets (both classic here).
fn classic_header(_version: i16) -> u8 {
    1
}

fn fetch_topic(version: i16) -> impl Strategy<Value = FetchTopic> {
    let partition = any::<(i32, i32, i64, i64, i32)>().prop_map(
        move |(index, leader_epoch, fetch_offset, log_start, max_bytes)| {
            let mut p = FetchPartition::default()
                .with_partition(index)
                .with_fetch_offset(fetch_offset)
                .with_partition_max_bytes(max_bytes);
            if version >= 9 {
                p = p.with_current_leader_epoch(leader_epoch);
            }
            if version >= 5 {
                p = p.with_log_start_offset(log_start);
            }
            p
        },
    );
    (text(), few(partition)).prop_map(|(name, partitions)| {
        FetchTopic::default()
            .with_topic(topic(&name))
            .with_partitions(partitions)
    })
}

fn fetch_value(version: i16) -> impl Strategy<Value = FetchRequest> {
    let forgotten = (text(), many(any::<i32>())).prop_map(|(name, parts)| {
        ForgottenTopic::default()
            .with_topic(topic(&name))
            .with_partitions(parts)
    });
    let numbers = any::<(i32, i32, i32, i32, i8, i32, i32)>();
    let fields = (numbers, few(fetch_topic(version)), few(forgotten), text());
    fields.prop_map(move |(numbers, topics, forgotten, rack)| {
        let (replica, max_wait_ms, min_bytes, max_bytes, isolation, session, epoch) = numbers;
        let mut request = FetchRequest::default()
            .with_replica_id(broker(replica))
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(min_bytes)
            .with_max_bytes(max_bytes)
            .with_isolation_level(isolation)
            .with_topics(topics);
        if version >= 7 {
            request = request
                .with_session_id(session)
                .with_session_epoch(epoch)
                .with_forgotten_topics_data(forgotten);
        }
        if version >= 11 {
            request = request.with_rack_id(s(&rack));
        }
        request
    })
}

/// Weir ignores `replica_id` and `isolation_level` (a consumer's read-committed view is the
/// same log: no transactions), the fetch session (v7+: every fetch is a full one), the
/// forgotten topics (v7+), the rack id (v11), and per partition `current_leader_epoch` (v9+)
/// and `log_start_offset` (v5+, followers only). It keeps the rest.
pub fn fetch_request(version: i16) {
    check(
        "Fetch request",
        version,
        (head(), fetch_value(version)),
        |(head, sent)| {
            let body = oracle::request_body(ApiKey::Fetch, &sent, version, classic_header, &head);
            let parsed = fetch::parse_fetch(&body, version).expect("Weir parses the request");
            let topics = sent.topics.iter().map(|t| WeirTopic {
                name: t.topic.0.to_string(),
                partitions: (t.partitions.iter())
                    .map(|p| WeirPartition {
                        index: p.partition,
                        fetch_offset: p.fetch_offset,
                        max_bytes: p.partition_max_bytes,
                    })
                    .collect(),
            });
            let expected = fetch::FetchRequest {
                max_wait_ms: sent.max_wait_ms,
                min_bytes: sent.min_bytes,
                max_bytes: sent.max_bytes,
                topics: topics.collect(),
            };
            assert_eq!(parsed, expected);
        },
    );
}

fn fetched_topic() -> impl Strategy<Value = fetch::FetchedTopic> {
    let partition = (any::<(i32, i16, i64, i64)>(), blob()).prop_map(
        |((index, error_code, high_watermark, log_start_offset), records)| {
            fetch::FetchedPartition {
                index,
                error_code,
                high_watermark,
                log_start_offset,
                records,
            }
        },
    );
    (text(), few(partition)).prop_map(|(name, partitions)| fetch::FetchedTopic { name, partitions })
}

/// What kafka-protocol should read for one partition at `version`.
fn expected_partition(p: &fetch::FetchedPartition, version: i16) -> PartitionData {
    let mut expected = PartitionData::default()
        .with_partition_index(p.index)
        .with_error_code(p.error_code)
        .with_high_watermark(p.high_watermark)
        .with_last_stable_offset(p.high_watermark) // no open transactions
        .with_aborted_transactions(None) // null: none
        .with_records(Some(Bytes::copy_from_slice(&p.records)));
    if version >= 5 {
        expected = expected.with_log_start_offset(p.log_start_offset);
    }
    // preferred_read_replica (v11) is -1, kafka-protocol's default: read from the leader.
    expected
}

pub fn fetch_response(version: i16) {
    let value = (any::<i32>(), few(fetched_topic()));
    check(
        "Fetch response",
        version,
        value,
        |(correlation_id, topics)| {
            let mut out = Vec::new();
            fetch::write_fetch_response(&mut out, correlation_id, version, &topics);
            let read: FetchResponse = oracle::decode_response(&out, version, correlation_id);
            let expected = topics.iter().map(|t| {
                FetchableTopicResponse::default()
                    .with_topic(topic(&t.name))
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| expected_partition(p, version))
                            .collect(),
                    )
            });
            // throttle_time_ms, error_code and session_id (v7+) are 0, kafka-protocol's defaults.
            assert_eq!(
                read,
                FetchResponse::default().with_responses(expected.collect())
            );
        },
    );
}

fn list_offsets_value(version: i16) -> impl Strategy<Value = ListOffsetsRequest> {
    let partition = any::<(i32, i32, i64)>().prop_map(move |(index, epoch, timestamp)| {
        let p = ListOffsetsPartition::default()
            .with_partition_index(index)
            .with_timestamp(timestamp);
        if version >= 4 {
            p.with_current_leader_epoch(epoch)
        } else {
            p
        }
    });
    let topic = (text(), few(partition)).prop_map(|(name, partitions)| {
        ListOffsetsTopic::default()
            .with_name(topic(&name))
            .with_partitions(partitions)
    });
    (any::<(i32, i8)>(), few(topic)).prop_map(move |((replica, isolation), topics)| {
        let request = ListOffsetsRequest::default()
            .with_replica_id(broker(replica))
            .with_topics(topics);
        if version >= 2 {
            request.with_isolation_level(isolation)
        } else {
            request
        }
    })
}

/// Weir ignores `replica_id`, `isolation_level` (v2+) and `current_leader_epoch` (v4+).
pub fn list_offsets_request(version: i16) {
    check(
        "ListOffsets request",
        version,
        (head(), list_offsets_value(version)),
        |(head, sent)| {
            let body =
                oracle::request_body(ApiKey::ListOffsets, &sent, version, classic_header, &head);
            let parsed =
                fetch::parse_list_offsets(&body, version).expect("Weir parses the request");
            let expected: Vec<_> = (sent.topics.iter())
                .map(|t| {
                    let queries = t.partitions.iter().map(|p| fetch::OffsetQuery {
                        index: p.partition_index,
                        timestamp: p.timestamp,
                    });
                    (t.name.0.to_string(), queries.collect::<Vec<_>>())
                })
                .collect();
            assert_eq!(parsed, expected);
        },
    );
}

pub fn list_offsets_response(version: i16) {
    let topics = few((text(), few(any::<fetch::OffsetAnswer>())));
    check(
        "ListOffsets response",
        version,
        (any::<i32>(), topics),
        |(correlation_id, topics)| {
            let mut out = Vec::new();
            fetch::write_list_offsets_response(&mut out, correlation_id, version, &topics);
            let read: ListOffsetsResponse = oracle::decode_response(&out, version, correlation_id);
            let expected = topics.iter().map(|(name, answers)| {
                let partitions = answers
                    .iter()
                    .map(|&(index, error_code, timestamp, offset)| {
                        let answer = ListOffsetsPartitionResponse::default()
                            .with_partition_index(index)
                            .with_error_code(error_code)
                            .with_timestamp(timestamp)
                            .with_offset(offset);
                        // Every partition has leader epoch 0 (v4+) on a single node.
                        if version >= 4 {
                            answer.with_leader_epoch(0)
                        } else {
                            answer
                        }
                    });
                ListOffsetsTopicResponse::default()
                    .with_name(topic(name))
                    .with_partitions(partitions.collect())
            });
            // throttle_time_ms (v2+) is 0, kafka-protocol's default.
            assert_eq!(
                read,
                ListOffsetsResponse::default().with_topics(expected.collect())
            );
        },
    );
}
