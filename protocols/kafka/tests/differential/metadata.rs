//! What a client asks first: ApiVersions (key 18), Metadata (key 3), FindCoordinator (key
//! 10) and DescribeCluster (key 60), against kafka-protocol's newest release.

use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::find_coordinator_response::Coordinator as KpCoordinator;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, DescribeClusterRequest, DescribeClusterResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, MetadataRequest, MetadataResponse,
};
use kafka_protocol::protocol::HeaderVersion;
use proptest::collection::vec;
use proptest::prelude::*;
use uuid::Uuid;
use weir_kafka::api_versions::{self, ApiRange, IMPLEMENTED};
use weir_kafka::error::ErrorCode;
use weir_kafka::{cluster, find_coordinator, metadata};

use crate::support::newest::{self as oracle, broker, os, s, topic};
use crate::support::{check, few, head, many, opt_text, tags, text, uuid};

fn metadata_value(version: i16) -> impl Strategy<Value = MetadataRequest> {
    let entry = (opt_text(), uuid(), tags()).prop_map(move |(name, id, tags)| {
        // Topic ids exist from v12, and a topic has a name or an id (Weir, like Kafka,
        // refuses one with neither, or an id before v12).
        let (name, id) = if version >= 12 && id != [0; 16] {
            (name, id)
        } else {
            (Some(name.unwrap_or_default()), [0; 16])
        };
        MetadataRequestTopic::default()
            .with_name(name.as_deref().map(topic))
            .with_topic_id(Uuid::from_bytes(id))
            .with_unknown_tagged_fields(tags)
    });
    let fields = (proptest::option::of(few(entry)), any::<[bool; 3]>(), tags());
    fields.prop_map(
        move |(topics, [auto_create, cluster_ops, topic_ops], tags)| {
            // v0 has no null array (an empty one means every topic).
            let topics = if version == 0 {
                Some(topics.unwrap_or_default())
            } else {
                topics
            };
            let mut request = MetadataRequest::default()
                .with_topics(topics)
                .with_unknown_tagged_fields(tags);
            if version >= 4 {
                request = request.with_allow_auto_topic_creation(auto_create);
            }
            if (8..=10).contains(&version) {
                request = request.with_include_cluster_authorized_operations(cluster_ops);
            }
            if version >= 8 {
                request = request.with_include_topic_authorized_operations(topic_ops);
            }
            request
        },
    )
}

/// Weir ignores the authorized-operations flags (v8+; it reports none).
pub fn request(version: i16) {
    check(
        "Metadata request",
        version,
        (head(), metadata_value(version)),
        |(head, sent)| {
            let header_version = metadata::request_header_version;
            let body =
                oracle::request_body(ApiKey::Metadata, &sent, version, header_version, &head);
            let parsed = metadata::parse_request(&body, version).expect("Weir parses the request");
            let entries = sent.topics.as_deref();
            let topics = match entries {
                Some([]) if version == 0 => None, // v0: every topic
                _ => entries.map(|entries| {
                    (entries.iter())
                        .filter(|t| t.topic_id.is_nil())
                        .map(|t| t.name.as_ref().expect("a name without an id").0.to_string())
                        .collect()
                }),
            };
            let expected = metadata::Request {
                topics,
                topic_ids: (entries.unwrap_or_default().iter())
                    .filter(|t| !t.topic_id.is_nil())
                    .map(|t| t.topic_id.into_bytes())
                    .collect(),
                allow_auto_topic_creation: sent.allow_auto_topic_creation,
            };
            assert_eq!(parsed, expected);
        },
    );
}

fn metadata_topic(version: i16) -> impl Strategy<Value = metadata::Topic> {
    // Now and then over 127 partitions, whose compact count takes two varint bytes.
    let partitions = prop_oneof![6 => 0u32..4, 1 => 127u32..131];
    let fields = (any::<i16>(), opt_text(), uuid(), partitions);
    fields.prop_map(
        move |(error_code, name, topic_id, partitions)| metadata::Topic {
            error_code,
            // Only an id lookup has no name, and those exist from v12.
            name: if version >= 12 {
                name
            } else {
                Some(name.unwrap_or_default())
            },
            topic_id,
            partitions,
        },
    )
}

/// What kafka-protocol should read for one topic at `version`, Weir being node `node`.
fn expected_topic(t: &metadata::Topic, node: i32, version: i16) -> MetadataResponseTopic {
    let partitions = (0..t.partitions).map(|index| {
        let partition = MetadataResponsePartition::default()
            .with_partition_index(index as i32)
            .with_leader_id(broker(node))
            .with_replica_nodes(vec![broker(node)])
            .with_isr_nodes(vec![broker(node)]);
        // Leader epoch 0 (v7+): one node leads every partition for its whole life.
        if version >= 7 {
            partition.with_leader_epoch(0)
        } else {
            partition
        }
    });
    let expected = MetadataResponseTopic::default()
        .with_error_code(t.error_code)
        .with_name(t.name.as_deref().map(topic))
        .with_partitions(partitions.collect());
    // The topic id exists from v10; authorized operations (v8+) stay "not provided".
    if version >= 10 {
        expected.with_topic_id(Uuid::from_bytes(t.topic_id))
    } else {
        expected
    }
}

pub fn response(version: i16) {
    let node = (any::<i32>(), text(), any::<i32>());
    let value = (any::<i32>(), node, text(), few(metadata_topic(version)));
    check(
        "Metadata response",
        version,
        value,
        |(correlation_id, node, cluster_id, topics)| {
            let (node_id, host, port) = node;
            let weir_broker = metadata::Broker {
                node_id,
                host: &host,
                port,
            };
            let mut out = Vec::new();
            metadata::write_response(
                &mut out,
                correlation_id,
                version,
                weir_broker,
                &cluster_id,
                &topics,
            );
            let read: MetadataResponse = oracle::decode_response(&out, version, correlation_id);
            let only_broker = MetadataResponseBroker::default()
                .with_node_id(broker(node_id))
                .with_host(s(&host))
                .with_port(port); // rack (v1+): null
            let mut expected = MetadataResponse::default()
                .with_brokers(vec![only_broker])
                .with_topics(
                    topics
                        .iter()
                        .map(|t| expected_topic(t, node_id, version))
                        .collect(),
                );
            if version >= 1 {
                expected = expected.with_controller_id(broker(node_id));
            }
            if version >= 2 {
                expected = expected.with_cluster_id(Some(s(&cluster_id)));
            }
            assert_eq!(read, expected);
        },
    );
}

fn coordinator_value(version: i16) -> impl Strategy<Value = FindCoordinatorRequest> {
    let fields = (text(), many(text()), any::<i8>(), tags());
    fields.prop_map(move |(key, keys, key_type, tags)| {
        let request = FindCoordinatorRequest::default().with_unknown_tagged_fields(tags);
        match version {
            0 => request.with_key(s(&key)),
            1..=3 => request.with_key(s(&key)).with_key_type(key_type),
            _ => request
                .with_key_type(key_type)
                .with_coordinator_keys(keys.iter().map(|k| s(k)).collect()),
        }
    })
}

/// Weir keeps every field (a v0 key is a group's).
pub fn coordinator_request(version: i16) {
    check(
        "FindCoordinator request",
        version,
        (head(), coordinator_value(version)),
        |(head, sent)| {
            let header_version = find_coordinator::request_header_version;
            let body = oracle::request_body(
                ApiKey::FindCoordinator,
                &sent,
                version,
                header_version,
                &head,
            );
            let parsed =
                find_coordinator::parse_request(&body, version).expect("Weir parses the request");
            let keys = if version >= 4 {
                sent.coordinator_keys
                    .iter()
                    .map(|k| k.to_string())
                    .collect()
            } else {
                vec![sent.key.to_string()]
            };
            let expected = find_coordinator::Request {
                key_type: sent.key_type,
                keys,
            };
            assert_eq!(parsed, expected);
        },
    );
}

type Found = (String, i16, Option<String>, (i32, String, i32));

/// What kafka-protocol should read for `found` at `version`: before v4 a request names one key
/// and the answer carries one coordinator.
fn expected_coordinators(found: &[Found], version: i16) -> FindCoordinatorResponse {
    if version >= 4 {
        let coordinators = found
            .iter()
            .map(|(key, error_code, message, (id, host, port))| {
                KpCoordinator::default()
                    .with_key(s(key))
                    .with_node_id(broker(*id))
                    .with_host(s(host))
                    .with_port(*port)
                    .with_error_code(*error_code)
                    .with_error_message(os(message.as_deref()))
            });
        return FindCoordinatorResponse::default().with_coordinators(coordinators.collect());
    }
    let (_, error_code, message, (id, host, port)) = &found[0];
    let expected = FindCoordinatorResponse::default()
        .with_error_code(*error_code)
        .with_node_id(broker(*id))
        .with_host(s(host))
        .with_port(*port);
    // The error message exists from v1; throttle_time_ms (v1+) is 0, the default.
    if version >= 1 {
        expected.with_error_message(os(message.as_deref()))
    } else {
        expected
    }
}

pub fn coordinator_response(version: i16) {
    let found = (
        text(),
        any::<i16>(),
        opt_text(),
        (any::<i32>(), text(), any::<i32>()),
    );
    let count = if version >= 4 { 0..4 } else { 1..2 };
    let value = (any::<i32>(), vec(found, count));
    check(
        "FindCoordinator response",
        version,
        value,
        |(correlation_id, found)| {
            let coordinators: Vec<_> = (found.iter())
                .map(
                    |(key, error_code, message, (id, host, port))| find_coordinator::Coordinator {
                        key,
                        error_code: *error_code,
                        error_message: message.as_deref(),
                        node: (*id, host.as_str(), *port),
                    },
                )
                .collect();
            let mut out = Vec::new();
            find_coordinator::write_response(&mut out, correlation_id, version, &coordinators);
            let read: FindCoordinatorResponse =
                oracle::decode_response(&out, version, correlation_id);
            assert_eq!(read, expected_coordinators(&found, version));
        },
    );
}

/// Weir reads only the header of ApiVersions: the body (client software name and version,
/// v3+) is for the broker's log in Kafka and unused here.
pub fn api_versions_request(version: i16) {
    let value = (head(), text(), text());
    check(
        "ApiVersions request",
        version,
        value,
        |(head, name, client_version)| {
            let mut sent = ApiVersionsRequest::default();
            if version >= 3 {
                sent = sent
                    .with_client_software_name(s(&name))
                    .with_client_software_version(s(&client_version));
            }
            oracle::request_body(
                ApiKey::ApiVersions,
                &sent,
                version,
                api_versions::request_header_version,
                &head,
            );
        },
    );
}

fn expected_api_versions(apis: &[ApiRange]) -> ApiVersionsResponse {
    let keys = apis.iter().map(|api| {
        ApiVersion::default()
            .with_api_key(api.api_key)
            .with_min_version(api.min)
            .with_max_version(api.max)
    });
    // throttle_time_ms (v1+) is 0 and no feature (v3+ tagged fields) is listed: defaults.
    ApiVersionsResponse::default().with_api_keys(keys.collect())
}

pub fn api_versions_response(version: i16) {
    // ApiVersions answers always use response header v0, flexible or not.
    assert_eq!(ApiVersionsResponse::header_version(version), 0);
    let mut out = Vec::new();
    api_versions::write_response(&mut out, 41, version, IMPLEMENTED);
    let read: ApiVersionsResponse = oracle::decode_response(&out, version, 41);
    assert_eq!(read, expected_api_versions(IMPLEMENTED));
    let range =
        any::<(i16, i16, i16)>().prop_map(|(api_key, min, max)| ApiRange { api_key, min, max });
    check(
        "ApiVersions response",
        version,
        (any::<i32>(), few(range)),
        |(correlation_id, apis)| {
            let mut out = Vec::new();
            api_versions::write_response(&mut out, correlation_id, version, &apis);
            let read: ApiVersionsResponse = oracle::decode_response(&out, version, correlation_id);
            assert_eq!(read, expected_api_versions(&apis));
        },
    );
}

/// A version past the table gets the v0 answer with UNSUPPORTED_VERSION and the table, which
/// a client reads as v0 before it retries with a version from it.
#[test]
fn an_api_versions_request_of_an_unknown_version_gets_a_v0_answer() {
    let mut out = Vec::new();
    api_versions::write_response(&mut out, 9, api_versions::VERSION_MAX + 1, IMPLEMENTED);
    let read: ApiVersionsResponse = oracle::decode_response(&out, 0, 9);
    let expected =
        expected_api_versions(IMPLEMENTED).with_error_code(ErrorCode::UnsupportedVersion.code());
    assert_eq!(read, expected);
}

fn describe_cluster_value(version: i16) -> impl Strategy<Value = DescribeClusterRequest> {
    (any::<bool>(), any::<i8>(), tags()).prop_map(move |(operations, endpoint_type, tags)| {
        let request = DescribeClusterRequest::default()
            .with_include_cluster_authorized_operations(operations)
            .with_unknown_tagged_fields(tags);
        if version >= 1 {
            request.with_endpoint_type(endpoint_type)
        } else {
            request
        }
    })
}

/// Weir ignores `include_cluster_authorized_operations` (no ACLs) and keeps the endpoint type
/// (v1+; brokers before).
pub fn describe_cluster_request(version: i16) {
    check(
        "DescribeCluster request",
        version,
        (head(), describe_cluster_value(version)),
        |(head, sent)| {
            let body = oracle::request_body(
                ApiKey::DescribeCluster,
                &sent,
                version,
                cluster::describe_header_version,
                &head,
            );
            let parsed = cluster::parse_describe(&body, version).expect("Weir parses the request");
            assert_eq!(parsed, sent.endpoint_type);
        },
    );
}

pub fn describe_cluster_response(version: i16) {
    // Only v1 can ask for another endpoint type than brokers (1).
    let endpoint_type = if version >= 1 {
        prop_oneof![Just(1i8), any::<i8>()].boxed()
    } else {
        Just(1i8).boxed()
    };
    let node = (any::<i32>(), text(), any::<i32>());
    let value = (any::<i32>(), endpoint_type, text(), node);
    check(
        "DescribeCluster response",
        version,
        value,
        |(correlation_id, endpoint_type, cluster_id, (id, host, port))| {
            let node = cluster::Node {
                id,
                host: &host,
                port,
            };
            let mut out = Vec::new();
            cluster::write_describe_response(
                &mut out,
                correlation_id,
                version,
                endpoint_type,
                &cluster_id,
                node,
            );
            let read: DescribeClusterResponse =
                oracle::decode_response(&out, version, correlation_id);
            let brokers = endpoint_type == 1;
            // The wording of the error message is Weir's own: only its presence is checked.
            assert_eq!(read.error_message.is_some(), !brokers);
            let only_broker = DescribeClusterBroker::default()
                .with_broker_id(broker(id))
                .with_host(s(&host))
                .with_port(port); // rack: null
            let mut expected = DescribeClusterResponse::default()
                .with_error_code(if brokers {
                    0
                } else {
                    ErrorCode::UnsupportedEndpointType.code()
                })
                .with_error_message(read.error_message.clone())
                .with_cluster_id(s(&cluster_id))
                .with_controller_id(broker(id))
                .with_brokers(if brokers { vec![only_broker] } else { vec![] });
            if version >= 1 {
                expected = expected.with_endpoint_type(endpoint_type);
            }
            // cluster_authorized_operations is "not provided", the default.
            assert_eq!(read, expected);
        },
    );
}
