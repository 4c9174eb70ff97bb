// DeleteTopics (key 20): compiled against both kafka-protocol releases (see `dual.rs`).

use kp::messages::delete_topics_request::DeleteTopicState;
use kp::messages::delete_topics_response::DeletableTopicResult;
use kp::messages::{DeleteTopicsRequest, DeleteTopicsResponse};
use proptest::prelude::*;
use uuid::Uuid;
use weir_kafka::delete_topics::{self, Target};

use crate::support::{check, few, head, many, opt_text, tags, text, uuid};

fn request_value(version: i16) -> impl Strategy<Value = DeleteTopicsRequest> {
    let state = (opt_text(), uuid(), tags()).prop_map(|(name, id, tags)| {
        // A topic needs a name or an id: one with neither is malformed, in Kafka as in Weir.
        let name = if id == [0; 16] {
            Some(name.unwrap_or_default())
        } else {
            name
        };
        DeleteTopicState::default()
            .with_name(name.as_deref().map(oracle::topic))
            .with_topic_id(Uuid::from_bytes(id))
            .with_unknown_tagged_fields(tags)
    });
    let fields = (many(text()), few(state), any::<i32>(), tags());
    fields.prop_map(move |(names, states, timeout_ms, tags)| {
        let request = DeleteTopicsRequest::default()
            .with_timeout_ms(timeout_ms)
            .with_unknown_tagged_fields(tags);
        if version >= 6 {
            request.with_topics(states)
        } else {
            request.with_topic_names(names.iter().map(|name| oracle::topic(name)).collect())
        }
    })
}

/// Weir ignores `timeout_ms` (deletion is one local transaction); it keeps every topic, by
/// id when it has one (v6), else by name.
pub fn request(version: i16) {
    let value = (head(), request_value(version));
    check("DeleteTopics request", version, value, |(head, sent)| {
        let header_version = delete_topics::request_header_version;
        let body = oracle::request_body(
            kp::messages::ApiKey::DeleteTopics,
            &sent,
            version,
            header_version,
            &head,
        );
        let parsed = delete_topics::parse_request(&body, version).expect("Weir parses the request");
        let expected: Vec<Target> = if version >= 6 {
            (sent.topics.iter())
                .map(|state| match (&state.name, state.topic_id.into_bytes()) {
                    (Some(name), id) if id == [0; 16] => Target::Name(name.0.to_string()),
                    (_, id) => Target::Id(id),
                })
                .collect()
        } else {
            (sent.topic_names.iter())
                .map(|name| Target::Name(name.0.to_string()))
                .collect()
        };
        assert_eq!(parsed, expected);
    });
}

fn results(version: i16) -> impl Strategy<Value = Vec<(Target, i16)>> {
    let target = (text(), uuid()).prop_map(move |(name, id)| {
        // Only v6 names topics by id.
        if version >= 6 && id != [0; 16] {
            Target::Id(id)
        } else {
            Target::Name(name)
        }
    });
    few((target, any::<i16>()))
}

pub fn response(version: i16) {
    let value = (any::<i32>(), results(version));
    check(
        "DeleteTopics response",
        version,
        value,
        |(correlation_id, results)| {
            let mut out = Vec::new();
            delete_topics::write_response(&mut out, correlation_id, version, &results);
            let read: DeleteTopicsResponse = oracle::decode_response(&out, version, correlation_id);
            let expected = results.iter().map(|(target, error_code)| {
                let expected = DeletableTopicResult::default().with_error_code(*error_code);
                // error_message (v5+) is null: the code says it.
                let expected = expected.with_error_message(None);
                match target {
                    Target::Name(name) => expected.with_name(Some(oracle::topic(name))),
                    Target::Id(id) => expected
                        .with_name(None)
                        .with_topic_id(Uuid::from_bytes(*id)),
                }
            });
            assert_eq!(
                read,
                DeleteTopicsResponse::default().with_responses(expected.collect())
            );
        },
    );
}
