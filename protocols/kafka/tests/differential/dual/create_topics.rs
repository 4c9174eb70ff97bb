// CreateTopics (key 19): compiled against both kafka-protocol releases (see `dual.rs`).

use kp::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use kp::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kp::messages::{CreateTopicsRequest, CreateTopicsResponse};
use proptest::prelude::*;
use weir_kafka::create_topics::{self, ConfigSource, NewTopic, TopicResult};

use crate::support::{check, few, head, many, opt_text, tags, text};

fn creatable_topic() -> impl Strategy<Value = CreatableTopic> {
    let assignment = (any::<i32>(), many(any::<i32>()), tags()).prop_map(|(index, ids, tags)| {
        CreatableReplicaAssignment::default()
            .with_partition_index(index)
            .with_broker_ids(ids.into_iter().map(oracle::broker).collect())
            .with_unknown_tagged_fields(tags)
    });
    let config = (text(), opt_text(), tags()).prop_map(|(name, value, tags)| {
        CreatableTopicConfig::default()
            .with_name(oracle::s(&name))
            .with_value(oracle::os(value.as_deref()))
            .with_unknown_tagged_fields(tags)
    });
    let fields = (
        text(),
        any::<(i32, i16)>(),
        few(assignment),
        few(config),
        tags(),
    );
    fields.prop_map(
        |(name, (partitions, replication), assignments, configs, tags)| {
            CreatableTopic::default()
                .with_name(oracle::topic(&name))
                .with_num_partitions(partitions)
                .with_replication_factor(replication)
                .with_assignments(assignments)
                .with_configs(configs)
                .with_unknown_tagged_fields(tags)
        },
    )
}

fn request_value(version: i16) -> impl Strategy<Value = CreateTopicsRequest> {
    let fields = (few(creatable_topic()), any::<i32>(), any::<bool>(), tags());
    fields.prop_map(move |(topics, timeout_ms, validate_only, tags)| {
        CreateTopicsRequest::default()
            .with_topics(topics)
            .with_timeout_ms(timeout_ms)
            .with_validate_only(validate_only && version >= 1) // v1+
            .with_unknown_tagged_fields(tags)
    })
}

/// Weir ignores `timeout_ms` (creation is one local transaction); it keeps the rest.
pub fn request(version: i16) {
    let value = (head(), request_value(version));
    check("CreateTopics request", version, value, |(head, sent)| {
        let header_version = create_topics::request_header_version;
        let body = oracle::request_body(
            kp::messages::ApiKey::CreateTopics,
            &sent,
            version,
            header_version,
            &head,
        );
        let parsed = create_topics::parse_request(&body, version).expect("Weir parses the request");
        let topics = sent.topics.iter().map(|topic| NewTopic {
            name: topic.name.0.to_string(),
            num_partitions: topic.num_partitions,
            replication_factor: topic.replication_factor,
            assignments: (topic.assignments.iter())
                .map(|a| {
                    (
                        a.partition_index,
                        a.broker_ids.iter().map(|id| id.0).collect(),
                    )
                })
                .collect(),
            configs: (topic.configs.iter())
                .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                .collect(),
        });
        let expected = create_topics::Request {
            topics: topics.collect(),
            validate_only: sent.validate_only,
        };
        assert_eq!(parsed, expected);
    });
}

fn topic_result() -> impl Strategy<Value = TopicResult> {
    let source = prop_oneof![Just(ConfigSource::Topic), Just(ConfigSource::Default)];
    let error_code = prop_oneof![Just(0i16), any::<i16>()];
    let fields = (
        text(),
        error_code,
        opt_text(),
        any::<i32>(),
        few((text(), text(), source)),
    );
    fields.prop_map(
        |(name, error_code, error_message, num_partitions, configs)| TopicResult {
            name,
            error_code,
            error_message,
            num_partitions,
            configs,
        },
    )
}

/// What kafka-protocol should read for one topic at `version`.
fn expected_topic(topic: &TopicResult, version: i16) -> CreatableTopicResult {
    let mut expected = CreatableTopicResult::default()
        .with_name(oracle::topic(&topic.name))
        .with_error_code(topic.error_code);
    if version >= 1 {
        expected = expected.with_error_message(oracle::os(topic.error_message.as_deref()));
    }
    if version >= 5 {
        // A failed topic has no partition count, replication factor or settings (null).
        let ok = topic.error_code == 0;
        let configs = topic.configs.iter().map(|(name, value, source)| {
            CreatableTopicConfigs::default()
                .with_name(oracle::s(name))
                .with_value(Some(oracle::s(value)))
                .with_read_only(false)
                .with_config_source(*source as i8)
                .with_is_sensitive(false)
        });
        expected = expected
            .with_num_partitions(if ok { topic.num_partitions } else { -1 })
            .with_replication_factor(if ok { 1 } else { -1 })
            .with_configs(ok.then(|| configs.collect()));
    }
    // The topic id (v7+) is the zero UUID: Weir gives topics none, as the default says.
    expected
}

pub fn response(version: i16) {
    let value = (any::<i32>(), few(topic_result()));
    check(
        "CreateTopics response",
        version,
        value,
        |(correlation_id, topics)| {
            let mut out = Vec::new();
            create_topics::write_response(&mut out, correlation_id, version, &topics);
            let read: CreateTopicsResponse = oracle::decode_response(&out, version, correlation_id);
            let expected = topics.iter().map(|t| expected_topic(t, version)).collect();
            assert_eq!(read, CreateTopicsResponse::default().with_topics(expected));
        },
    );
}
