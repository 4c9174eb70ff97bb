//! Differential tests of Weir's Kafka codec against kafka-protocol as an oracle.
//!
//! Weir keeps its own, hand-written decoder on the server side: kafka-protocol sizes
//! `Vec::with_capacity` from counts read off the wire, so a few hostile bytes can make it
//! allocate gigabytes, and Weir checks every count against the bytes present first. That
//! leaves two implementations of the same schemas, and these tests hold them to agree, for
//! every API key and every version in [`weir_kafka::api_versions::IMPLEMENTED`]:
//!
//! - **requests**: a value built with kafka-protocol (from proptest strategies, unknown tagged
//!   fields included wherever a flexible version allows them) is encoded as a client would,
//!   request header included; Weir's header parser and body parser must read back the same
//!   field values (the fields Weir keeps; each case says which ones it ignores), and Weir
//!   must choose the same request header version;
//! - **responses**: Weir's writer encodes a value; kafka-protocol decodes it at the same
//!   version (response header too) and must read back what Weir meant, field by field, with
//!   no byte left over.
//!
//! kafka-protocol 0.16 and later are generated from Kafka 4 schemas, which dropped some old
//! versions Weir still serves (Produce v0-2 for old librdkafka, among others); those versions
//! are checked against kafka-protocol 0.15, the last release with Kafka 3 schemas. The
//! coverage test fails when `IMPLEMENTED` lists a version that no case covers, so a version
//! added later needs its differential case too. kafka-protocol is a dev-dependency only.

#[path = "differential/admin.rs"]
mod admin;
#[path = "differential/dual.rs"]
mod dual;
#[path = "differential/fetch.rs"]
mod fetch;
#[path = "differential/groups.rs"]
mod groups;
#[path = "differential/listing.rs"]
mod listing;
#[path = "differential/metadata.rs"]
mod metadata;
#[path = "differential/offsets.rs"]
mod offsets;
#[path = "differential/sasl.rs"]
mod sasl;
#[path = "differential/support.rs"]
mod support;

use std::ops::RangeInclusive;

use weir_kafka::api_versions::IMPLEMENTED;

/// Which kafka-protocol release a case checks against.
const NEWEST: &str = "kafka-protocol 0.18";
const LEGACY: &str = "kafka-protocol 0.15";

/// The differential checks of one API over a range of versions against one oracle.
struct Case {
    api_key: i16,
    name: &'static str,
    versions: RangeInclusive<i16>,
    oracle: &'static str,
    /// Panics unless Weir parses what kafka-protocol encodes at that version.
    request: fn(i16),
    /// Panics unless kafka-protocol reads what Weir writes at that version.
    response: fn(i16),
}

const fn case(
    api_key: i16,
    name: &'static str,
    versions: RangeInclusive<i16>,
    oracle: &'static str,
    request: fn(i16),
    response: fn(i16),
) -> Case {
    Case {
        api_key,
        name,
        versions,
        oracle,
        request,
        response,
    }
}

/// Every case, keyed by API key with its versions.
#[rustfmt::skip]
const CASES: &[Case] = &[
    case(0, "Produce", 0..=2, LEGACY, dual::legacy::produce::request, dual::legacy::produce::response),
    case(0, "Produce", 3..=11, NEWEST, dual::newest::produce::request, dual::newest::produce::response),
    case(1, "Fetch", 4..=11, NEWEST, fetch::fetch_request, fetch::fetch_response),
    case(2, "ListOffsets", 1..=5, NEWEST, fetch::list_offsets_request, fetch::list_offsets_response),
    case(3, "Metadata", 0..=12, NEWEST, metadata::request, metadata::response),
    case(8, "OffsetCommit", 2..=8, NEWEST, offsets::commit_request, offsets::commit_response),
    case(9, "OffsetFetch", 1..=8, NEWEST, offsets::fetch_request, offsets::fetch_response),
    case(10, "FindCoordinator", 0..=4, NEWEST, metadata::coordinator_request, metadata::coordinator_response),
    case(11, "JoinGroup", 0..=9, NEWEST, groups::join_request, groups::join_response),
    case(12, "Heartbeat", 0..=4, NEWEST, groups::heartbeat_request, groups::heartbeat_response),
    case(13, "LeaveGroup", 0..=5, NEWEST, groups::leave_request, groups::leave_response),
    case(14, "SyncGroup", 0..=5, NEWEST, groups::sync_request, groups::sync_response),
    case(15, "DescribeGroups", 0..=5, NEWEST, listing::describe_groups_request, listing::describe_groups_response),
    case(16, "ListGroups", 0..=4, NEWEST, listing::list_groups_request, listing::list_groups_response),
    case(17, "SaslHandshake", 0..=1, NEWEST, sasl::handshake_request, sasl::handshake_response),
    case(18, "ApiVersions", 0..=4, NEWEST, metadata::api_versions_request, metadata::api_versions_response),
    case(19, "CreateTopics", 0..=1, LEGACY, dual::legacy::create_topics::request, dual::legacy::create_topics::response),
    case(19, "CreateTopics", 2..=7, NEWEST, dual::newest::create_topics::request, dual::newest::create_topics::response),
    case(20, "DeleteTopics", 0..=0, LEGACY, dual::legacy::delete_topics::request, dual::legacy::delete_topics::response),
    case(20, "DeleteTopics", 1..=6, NEWEST, dual::newest::delete_topics::request, dual::newest::delete_topics::response),
    case(21, "DeleteRecords", 0..=2, NEWEST, admin::delete_records_request, admin::delete_records_response),
    case(22, "InitProducerId", 0..=4, NEWEST, admin::init_producer_id_request, admin::init_producer_id_response),
    case(23, "OffsetForLeaderEpoch", 0..=1, LEGACY, dual::legacy::epochs::request, dual::legacy::epochs::response),
    case(23, "OffsetForLeaderEpoch", 2..=4, NEWEST, dual::newest::epochs::request, dual::newest::epochs::response),
    case(32, "DescribeConfigs", 0..=0, LEGACY, dual::legacy::describe_configs::request, dual::legacy::describe_configs::response),
    case(32, "DescribeConfigs", 1..=4, NEWEST, dual::newest::describe_configs::request, dual::newest::describe_configs::response),
    case(36, "SaslAuthenticate", 0..=2, NEWEST, sasl::authenticate_request, sasl::authenticate_response),
    case(37, "CreatePartitions", 0..=3, NEWEST, admin::create_partitions_request, admin::create_partitions_response),
    case(42, "DeleteGroups", 0..=2, NEWEST, listing::delete_groups_request, listing::delete_groups_response),
    case(60, "DescribeCluster", 0..=1, NEWEST, metadata::describe_cluster_request, metadata::describe_cluster_response),
];

/// Runs `check` of every case at every version it covers.
fn run_all(what: &str, check: impl Fn(&Case) -> fn(i16)) {
    for case in CASES {
        for version in case.versions.clone() {
            // Captured output: printed only when the check below fails.
            println!("{} {what} v{version} against {}", case.name, case.oracle);
            check(case)(version);
        }
    }
}

#[test]
fn weir_parses_the_requests_kafka_protocol_encodes() {
    run_all("request", |case| case.request);
}

#[test]
fn kafka_protocol_reads_the_responses_weir_writes() {
    run_all("response", |case| case.response);
}

/// A version added to `IMPLEMENTED` without a differential case fails here.
#[test]
fn every_implemented_version_has_a_differential_case() {
    let mut missing = Vec::new();
    for range in IMPLEMENTED {
        for version in range.min..=range.max {
            let covering = CASES
                .iter()
                .filter(|case| case.api_key == range.api_key && case.versions.contains(&version))
                .count();
            if covering != 1 {
                missing.push(format!(
                    "API {} v{version}: {covering} cases",
                    range.api_key
                ));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "need exactly one case each: {missing:?}"
    );
}

/// A case for a version Weir does not implement (or no longer does) checks nothing real, and
/// a case's key must be the one Kafka gives its API.
#[test]
fn every_case_names_implemented_versions() {
    for case in CASES {
        let key = kafka_protocol::messages::ApiKey::try_from(case.api_key).unwrap();
        assert_eq!(format!("{key:?}"), case.name, "API key {}", case.api_key);
        let range = IMPLEMENTED
            .iter()
            .find(|range| range.api_key == case.api_key)
            .unwrap_or_else(|| panic!("{} (key {}) is not implemented", case.name, case.api_key));
        assert!(
            range.min <= *case.versions.start() && *case.versions.end() <= range.max,
            "{} v{:?} is outside the implemented v{}..={}",
            case.name,
            case.versions,
            range.min,
            range.max
        );
    }
}
