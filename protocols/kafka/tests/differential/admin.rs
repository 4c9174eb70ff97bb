//! DeleteRecords (key 21), InitProducerId (22) and CreatePartitions (37), against
//! kafka-protocol's newest release.

use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsAssignment, CreatePartitionsTopic,
};
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, DeleteRecordsRequest, DeleteRecordsResponse,
    InitProducerIdRequest, InitProducerIdResponse, ProducerId, TransactionalId,
};
use proptest::prelude::*;
use weir_kafka::delete_records::PartitionResult;
use weir_kafka::{create_partitions, delete_records, init_producer_id};

use crate::support::newest::{self as oracle, broker, os, s, topic};
use crate::support::{check, few, head, many, opt_text, tags, text};

fn delete_records_value() -> impl Strategy<Value = DeleteRecordsRequest> {
    let partition = (any::<(i32, i64)>(), tags()).prop_map(|((index, offset), tags)| {
        DeleteRecordsPartition::default()
            .with_partition_index(index)
            .with_offset(offset)
            .with_unknown_tagged_fields(tags)
    });
    let topic = (text(), few(partition), tags()).prop_map(|(name, partitions, tags)| {
        DeleteRecordsTopic::default()
            .with_name(topic(&name))
            .with_partitions(partitions)
            .with_unknown_tagged_fields(tags)
    });
    (few(topic), any::<i32>(), tags()).prop_map(|(topics, timeout_ms, tags)| {
        DeleteRecordsRequest::default()
            .with_topics(topics)
            .with_timeout_ms(timeout_ms)
            .with_unknown_tagged_fields(tags)
    })
}

/// Weir ignores `timeout_ms` (the change is local) and keeps the rest.
pub fn delete_records_request(version: i16) {
    check(
        "DeleteRecords request",
        version,
        (head(), delete_records_value()),
        |(head, sent)| {
            let header_version = delete_records::request_header_version;
            let body =
                oracle::request_body(ApiKey::DeleteRecords, &sent, version, header_version, &head);
            let parsed =
                delete_records::parse_request(&body, version).expect("Weir parses the request");
            let expected: delete_records::Request = (sent.topics.iter())
                .map(|t| {
                    let partitions = t.partitions.iter().map(|p| (p.partition_index, p.offset));
                    (t.name.0.to_string(), partitions.collect())
                })
                .collect();
            assert_eq!(parsed, expected);
        },
    );
}

pub fn delete_records_response(version: i16) {
    let partition =
        any::<(i32, i64, i16)>().prop_map(|(index, low_watermark, error_code)| PartitionResult {
            index,
            low_watermark,
            error_code,
        });
    let topics = few((text(), few(partition)));
    check(
        "DeleteRecords response",
        version,
        (any::<i32>(), topics),
        |(correlation_id, topics)| {
            let mut out = Vec::new();
            delete_records::write_response(&mut out, correlation_id, version, &topics);
            let read: DeleteRecordsResponse =
                oracle::decode_response(&out, version, correlation_id);
            let expected = topics.iter().map(|(name, partitions)| {
                let partitions = partitions.iter().map(|p| {
                    DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.index)
                        .with_low_watermark(p.low_watermark)
                        .with_error_code(p.error_code)
                });
                DeleteRecordsTopicResult::default()
                    .with_name(topic(name))
                    .with_partitions(partitions.collect())
            });
            // throttle_time_ms is 0, kafka-protocol's default.
            assert_eq!(
                read,
                DeleteRecordsResponse::default().with_topics(expected.collect())
            );
        },
    );
}

/// Weir keeps every field; before v3 there is no producer id or epoch, which Weir reports as
/// -1 (a new producer).
pub fn init_producer_id_request(version: i16) {
    let fields = (opt_text(), any::<(i32, i64, i16)>(), tags());
    check(
        "InitProducerId request",
        version,
        (head(), fields),
        |(head, (transactional_id, numbers, tags))| {
            let (timeout, producer_id, epoch) = numbers;
            let mut sent = InitProducerIdRequest::default()
                .with_transactional_id(transactional_id.as_deref().map(|id| TransactionalId(s(id))))
                .with_transaction_timeout_ms(timeout)
                .with_unknown_tagged_fields(tags);
            if version >= 3 {
                sent = sent
                    .with_producer_id(ProducerId(producer_id))
                    .with_producer_epoch(epoch);
            }
            let header_version = init_producer_id::request_header_version;
            let body = oracle::request_body(
                ApiKey::InitProducerId,
                &sent,
                version,
                header_version,
                &head,
            );
            let parsed =
                init_producer_id::parse_request(&body, version).expect("Weir parses the request");
            let expected = init_producer_id::Request {
                transactional_id: transactional_id.as_deref(),
                transaction_timeout_ms: timeout,
                producer_id: if version >= 3 { producer_id } else { -1 },
                producer_epoch: if version >= 3 { epoch } else { -1 },
            };
            assert_eq!(parsed, expected);
        },
    );
}

pub fn init_producer_id_response(version: i16) {
    check(
        "InitProducerId response",
        version,
        any::<(i32, i16, i64, i16)>(),
        |(correlation_id, error_code, producer_id, epoch)| {
            let mut out = Vec::new();
            init_producer_id::write_response(
                &mut out,
                correlation_id,
                version,
                error_code,
                producer_id,
                epoch,
            );
            let read: InitProducerIdResponse =
                oracle::decode_response(&out, version, correlation_id);
            // throttle_time_ms is 0, kafka-protocol's default.
            let expected = InitProducerIdResponse::default()
                .with_error_code(error_code)
                .with_producer_id(ProducerId(producer_id))
                .with_producer_epoch(epoch);
            assert_eq!(read, expected);
        },
    );
}

fn create_partitions_value() -> impl Strategy<Value = CreatePartitionsRequest> {
    let assignment = (many(any::<i32>()), tags()).prop_map(|(ids, tags)| {
        CreatePartitionsAssignment::default()
            .with_broker_ids(ids.into_iter().map(broker).collect())
            .with_unknown_tagged_fields(tags)
    });
    let growth = (
        text(),
        any::<i32>(),
        proptest::option::of(few(assignment)),
        tags(),
    );
    let growth = growth.prop_map(|(name, count, assignments, tags)| {
        CreatePartitionsTopic::default()
            .with_name(topic(&name))
            .with_count(count)
            .with_assignments(assignments)
            .with_unknown_tagged_fields(tags)
    });
    (few(growth), any::<(i32, bool)>(), tags()).prop_map(
        |(topics, (timeout_ms, validate_only), tags)| {
            CreatePartitionsRequest::default()
                .with_topics(topics)
                .with_timeout_ms(timeout_ms)
                .with_validate_only(validate_only)
                .with_unknown_tagged_fields(tags)
        },
    )
}

/// Weir ignores `timeout_ms` (the change is one local transaction) and keeps the rest.
pub fn create_partitions_request(version: i16) {
    check(
        "CreatePartitions request",
        version,
        (head(), create_partitions_value()),
        |(head, sent)| {
            let header_version = create_partitions::request_header_version;
            let body = oracle::request_body(
                ApiKey::CreatePartitions,
                &sent,
                version,
                header_version,
                &head,
            );
            let parsed =
                create_partitions::parse_request(&body, version).expect("Weir parses the request");
            let topics = sent.topics.iter().map(|t| create_partitions::Growth {
                name: t.name.0.to_string(),
                count: t.count,
                assignments: (t.assignments.as_ref()).map(|assignments| {
                    (assignments.iter())
                        .map(|a| a.broker_ids.iter().map(|id| id.0).collect())
                        .collect()
                }),
            });
            let expected = create_partitions::Request {
                topics: topics.collect(),
                validate_only: sent.validate_only,
            };
            assert_eq!(parsed, expected);
        },
    );
}

pub fn create_partitions_response(version: i16) {
    let results = few((text(), any::<i16>(), opt_text()));
    check(
        "CreatePartitions response",
        version,
        (any::<i32>(), results),
        |(correlation_id, results)| {
            let mut out = Vec::new();
            create_partitions::write_response(&mut out, correlation_id, version, &results);
            let read: CreatePartitionsResponse =
                oracle::decode_response(&out, version, correlation_id);
            let expected = results.iter().map(|(name, error_code, message)| {
                CreatePartitionsTopicResult::default()
                    .with_name(topic(name))
                    .with_error_code(*error_code)
                    .with_error_message(os(message.as_deref()))
            });
            // throttle_time_ms is 0, kafka-protocol's default.
            assert_eq!(
                read,
                CreatePartitionsResponse::default().with_results(expected.collect())
            );
        },
    );
}
