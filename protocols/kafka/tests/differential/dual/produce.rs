// Produce (key 0): compiled against both kafka-protocol releases (see `dual.rs`).

use bytes::Bytes;
use kp::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kp::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kp::messages::{ProduceRequest, ProduceResponse, TransactionalId};
use proptest::prelude::*;
use weir_kafka::produce;

use crate::support::{blob, check, few, head, opt_text, tags, text};

fn partition_data() -> impl Strategy<Value = PartitionProduceData> {
    (any::<i32>(), proptest::option::of(blob()), tags()).prop_map(|(index, records, tags)| {
        PartitionProduceData::default()
            .with_index(index)
            .with_records(records.map(Bytes::from))
            .with_unknown_tagged_fields(tags)
    })
}

fn request_value(version: i16) -> impl Strategy<Value = ProduceRequest> {
    let topic = (text(), few(partition_data()), tags()).prop_map(|(name, partitions, tags)| {
        TopicProduceData::default()
            .with_name(oracle::topic(&name))
            .with_partition_data(partitions)
            .with_unknown_tagged_fields(tags)
    });
    let fields = (opt_text(), any::<i16>(), any::<i32>(), few(topic), tags());
    fields.prop_map(move |(transactional_id, acks, timeout_ms, topics, tags)| {
        // The transactional id exists from v3.
        let transactional_id = transactional_id.filter(|_| version >= 3);
        ProduceRequest::default()
            .with_transactional_id(transactional_id.map(|id| TransactionalId(oracle::s(&id))))
            .with_acks(acks)
            .with_timeout_ms(timeout_ms)
            .with_topic_data(topics)
            .with_unknown_tagged_fields(tags)
    })
}

/// Weir keeps every field of the request.
pub fn request(version: i16) {
    check(
        "Produce request",
        version,
        (head(), request_value(version)),
        |(head, sent)| {
            let body = oracle::request_body(
                kp::messages::ApiKey::Produce,
                &sent,
                version,
                produce::request_header_version,
                &head,
            );
            let parsed = produce::parse_request(&body, version).expect("Weir parses the request");
            let topics = sent.topic_data.iter().map(|topic| produce::TopicData {
                name: topic.name.0.as_str(),
                partitions: (topic.partition_data.iter())
                    .map(|p| produce::PartitionData {
                        index: p.index,
                        records: p.records.as_deref(),
                    })
                    .collect(),
            });
            let expected = produce::Request {
                transactional_id: sent.transactional_id.as_ref().map(|id| id.0.as_str()),
                acks: sent.acks,
                timeout_ms: sent.timeout_ms,
                topics: topics.collect(),
            };
            assert_eq!(parsed, expected);
        },
    );
}

fn partition_answer() -> impl Strategy<Value = produce::PartitionResponse> {
    let record_error = (any::<i32>(), opt_text());
    let fields = (any::<(i32, i16, i64, i64)>(), opt_text(), few(record_error));
    fields.prop_map(
        |((index, error_code, base_offset, log_start_offset), message, errors)| {
            produce::PartitionResponse {
                index,
                error_code,
                base_offset,
                log_start_offset,
                error_message: message,
                record_errors: errors,
            }
        },
    )
}

fn topic_answer() -> impl Strategy<Value = produce::TopicResponse> {
    (text(), few(partition_answer()))
        .prop_map(|(name, partitions)| produce::TopicResponse { name, partitions })
}

/// What kafka-protocol should read for one partition at `version`.
fn expected_partition(p: &produce::PartitionResponse, version: i16) -> PartitionProduceResponse {
    let mut expected = PartitionProduceResponse::default()
        .with_index(p.index)
        .with_error_code(p.error_code)
        .with_base_offset(p.base_offset);
    if version >= 2 {
        expected = expected.with_log_append_time_ms(-1); // Weir stores CreateTime only
    }
    if version >= 5 {
        expected = expected.with_log_start_offset(p.log_start_offset);
    }
    if version >= 8 {
        let errors = p.record_errors.iter().map(|(index, message)| {
            BatchIndexAndErrorMessage::default()
                .with_batch_index(*index)
                .with_batch_index_error_message(oracle::os(message.as_deref()))
        });
        expected = expected
            .with_record_errors(errors.collect())
            .with_error_message(oracle::os(p.error_message.as_deref()));
    }
    expected
}

pub fn response(version: i16) {
    let value = (any::<i32>(), few(topic_answer()));
    check(
        "Produce response",
        version,
        value,
        |(correlation_id, topics)| {
            let mut out = Vec::new();
            produce::write_response(&mut out, correlation_id, version, &topics);
            let read: ProduceResponse = oracle::decode_response(&out, version, correlation_id);
            let expected = topics.iter().map(|topic| {
                TopicProduceResponse::default()
                    .with_name(oracle::topic(&topic.name))
                    .with_partition_responses(
                        (topic.partitions.iter())
                            .map(|p| expected_partition(p, version))
                            .collect(),
                    )
            });
            // throttle_time_ms (v1+) is 0, kafka-protocol's default.
            assert_eq!(
                read,
                ProduceResponse::default().with_responses(expected.collect())
            );
        },
    );
}
