// DescribeConfigs (key 32): compiled against both kafka-protocol releases (see `dual.rs`).

use kp::messages::describe_configs_request::DescribeConfigsResource;
use kp::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kp::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use proptest::prelude::*;
use weir_kafka::describe_configs::{self, Entry, Resource, ResourceResult};

use crate::support::{check, few, head, many, opt_text, tags, text};

fn request_value(version: i16) -> impl Strategy<Value = DescribeConfigsRequest> {
    let keys = proptest::option::of(many(text()));
    let resource = (any::<i8>(), text(), keys, tags()).prop_map(|(kind, name, keys, tags)| {
        DescribeConfigsResource::default()
            .with_resource_type(kind)
            .with_resource_name(oracle::s(&name))
            .with_configuration_keys(keys.map(|keys| keys.iter().map(|k| oracle::s(k)).collect()))
            .with_unknown_tagged_fields(tags)
    });
    let fields = (few(resource), any::<(bool, bool)>(), tags());
    fields.prop_map(move |(resources, (synonyms, documentation), tags)| {
        DescribeConfigsRequest::default()
            .with_resources(resources)
            .with_include_synonyms(synonyms && version >= 1)
            .with_include_documentation(documentation && version >= 3)
            .with_unknown_tagged_fields(tags)
    })
}

/// Weir ignores `include_synonyms` and `include_documentation` (it reports neither); a null
/// key list (every setting) reads as an empty one, which means the same.
pub fn request(version: i16) {
    check(
        "DescribeConfigs request",
        version,
        (head(), request_value(version)),
        |(head, sent)| {
            let header_version = describe_configs::request_header_version;
            let body = oracle::request_body(
                kp::messages::ApiKey::DescribeConfigs,
                &sent,
                version,
                header_version,
                &head,
            );
            let parsed =
                describe_configs::parse_request(&body, version).expect("Weir parses the request");
            let expected: Vec<Resource> = (sent.resources.iter())
                .map(|r| Resource {
                    resource_type: r.resource_type,
                    name: r.resource_name.to_string(),
                    keys: (r.configuration_keys.iter().flatten())
                        .map(|k| k.to_string())
                        .collect(),
                })
                .collect();
            assert_eq!(parsed, expected);
        },
    );
}

fn resource_result() -> impl Strategy<Value = ResourceResult> {
    let source = prop_oneof![Just(1i8), Just(5i8), any::<i8>()];
    let entry = (text(), text(), source, any::<(i8, bool)>()).prop_map(
        |(name, value, source, (config_type, read_only))| Entry {
            name,
            value,
            source,
            config_type,
            read_only,
        },
    );
    let fields = (any::<(i16, i8)>(), opt_text(), text(), few(entry));
    fields.prop_map(
        |((error_code, resource_type), error_message, name, entries)| ResourceResult {
            error_code,
            error_message,
            resource_type,
            name,
            entries,
        },
    )
}

/// What kafka-protocol should read for one setting at `version`.
fn expected_config(entry: &Entry, version: i16) -> DescribeConfigsResourceResult {
    let mut expected = DescribeConfigsResourceResult::default()
        .with_name(oracle::s(&entry.name))
        .with_value(Some(oracle::s(&entry.value)))
        .with_read_only(entry.read_only)
        .with_is_sensitive(false);
    if version == 0 {
        // v0 has `is_default` instead of a source: 5 is Kafka's DEFAULT_CONFIG.
        expected = super::with_is_default(expected, entry.source == 5);
    } else {
        expected = expected.with_config_source(entry.source); // synonyms (v1+): none
    }
    if version >= 3 {
        expected = expected
            .with_config_type(entry.config_type)
            .with_documentation(None);
    }
    expected
}

pub fn response(version: i16) {
    let value = (any::<i32>(), few(resource_result()));
    check(
        "DescribeConfigs response",
        version,
        value,
        |(correlation_id, results)| {
            let mut out = Vec::new();
            describe_configs::write_response(&mut out, correlation_id, version, &results);
            let read: DescribeConfigsResponse =
                oracle::decode_response(&out, version, correlation_id);
            let expected = results.iter().map(|r| {
                DescribeConfigsResult::default()
                    .with_error_code(r.error_code)
                    .with_error_message(oracle::os(r.error_message.as_deref()))
                    .with_resource_type(r.resource_type)
                    .with_resource_name(oracle::s(&r.name))
                    .with_configs(
                        r.entries
                            .iter()
                            .map(|e| expected_config(e, version))
                            .collect(),
                    )
            });
            // throttle_time_ms is 0, kafka-protocol's default.
            assert_eq!(
                read,
                DescribeConfigsResponse::default().with_results(expected.collect())
            );
        },
    );
}
