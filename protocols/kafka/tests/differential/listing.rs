//! Groups as a whole: DescribeGroups (key 15), ListGroups (16) and DeleteGroups (42),
//! against kafka-protocol's newest release.

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{
    DescribedGroup as KpGroup, DescribedGroupMember,
};
use kafka_protocol::messages::list_groups_response::ListedGroup as KpListed;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    ListGroupsRequest, ListGroupsResponse,
};
use proptest::prelude::*;
use weir_kafka::membership::{
    self, DELETE_KEY, DESCRIBE_KEY, DescribedGroup, DescribedMember, LIST_KEY, ListedGroup,
};

use crate::support::newest::{self as oracle, group, os, s};
use crate::support::{blob, check, few, head, many, opt_text, tags, text};

/// The states a group can be in (Weir's `DescribedGroup::state` is one of these).
const STATES: [&str; 5] = [
    "Empty",
    "PreparingRebalance",
    "CompletingRebalance",
    "Stable",
    "Dead",
];

fn state() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(&STATES[..])
}

/// Weir keeps every field (authorized operations, v3+, are asked for but never reported).
pub fn describe_groups_request(version: i16) {
    let fields = (many(text()), any::<bool>(), tags());
    check(
        "DescribeGroups request",
        version,
        (head(), fields),
        |(head, (groups, operations, tags))| {
            let operations = operations && version >= 3;
            let sent = DescribeGroupsRequest::default()
                .with_groups(groups.iter().map(|g| group(g)).collect())
                .with_include_authorized_operations(operations)
                .with_unknown_tagged_fields(tags);
            let header_version = |v| membership::request_header_version(DESCRIBE_KEY, v);
            let body = oracle::request_body(
                ApiKey::DescribeGroups,
                &sent,
                version,
                header_version,
                &head,
            );
            let parsed =
                membership::parse_describe(&body, version).expect("Weir parses the request");
            assert_eq!(parsed, (groups.clone(), operations));
        },
    );
}

fn described_group() -> impl Strategy<Value = DescribedGroup> {
    let member = ((text(), opt_text(), text(), text()), blob(), blob()).prop_map(
        |((member_id, group_instance_id, client_id, client_host), metadata, assignment)| {
            DescribedMember {
                member_id,
                group_instance_id,
                client_id,
                client_host,
                metadata,
                assignment,
            }
        },
    );
    let fields = (any::<i16>(), text(), state(), text(), text(), few(member));
    fields.prop_map(
        |(error_code, group_id, state, protocol_type, protocol, members)| DescribedGroup {
            error_code,
            group_id,
            state,
            protocol_type,
            protocol,
            members,
        },
    )
}

/// What kafka-protocol should read for one group at `version`.
fn expected_group(g: &DescribedGroup, version: i16) -> KpGroup {
    let members = g.members.iter().map(|m| {
        let member = DescribedGroupMember::default()
            .with_member_id(s(&m.member_id))
            .with_client_id(s(&m.client_id))
            .with_client_host(s(&m.client_host))
            .with_member_metadata(Bytes::copy_from_slice(&m.metadata))
            .with_member_assignment(Bytes::copy_from_slice(&m.assignment));
        // The instance id exists from v4.
        if version >= 4 {
            member.with_group_instance_id(os(m.group_instance_id.as_deref()))
        } else {
            member
        }
    });
    // Authorized operations (v3+) are "not provided", kafka-protocol's default.
    KpGroup::default()
        .with_error_code(g.error_code)
        .with_group_id(group(&g.group_id))
        .with_group_state(s(g.state))
        .with_protocol_type(s(&g.protocol_type))
        .with_protocol_data(s(&g.protocol))
        .with_members(members.collect())
}

pub fn describe_groups_response(version: i16) {
    check(
        "DescribeGroups response",
        version,
        (any::<i32>(), few(described_group())),
        |(correlation_id, groups)| {
            let mut out = Vec::new();
            membership::write_describe_response(&mut out, correlation_id, version, &groups);
            let read: DescribeGroupsResponse =
                oracle::decode_response(&out, version, correlation_id);
            let expected = groups.iter().map(|g| expected_group(g, version));
            // throttle_time_ms (v1+) is 0, kafka-protocol's default.
            assert_eq!(
                read,
                DescribeGroupsResponse::default().with_groups(expected.collect())
            );
        },
    );
}

/// Weir keeps the state filter (v4+).
pub fn list_groups_request(version: i16) {
    check(
        "ListGroups request",
        version,
        (head(), many(text()), tags()),
        |(head, states, tags)| {
            let states = if version >= 4 { states } else { Vec::new() };
            let sent = ListGroupsRequest::default()
                .with_states_filter(states.iter().map(|state| s(state)).collect())
                .with_unknown_tagged_fields(tags);
            let header_version = |v| membership::request_header_version(LIST_KEY, v);
            let body =
                oracle::request_body(ApiKey::ListGroups, &sent, version, header_version, &head);
            assert_eq!(
                membership::parse_list(&body, version).expect("Weir parses the request"),
                states
            );
        },
    );
}

pub fn list_groups_response(version: i16) {
    let groups = few((text(), text(), state()));
    check(
        "ListGroups response",
        version,
        (any::<(i32, i16)>(), groups),
        |((correlation_id, error_code), groups): ((i32, i16), Vec<ListedGroup>)| {
            let mut out = Vec::new();
            membership::write_list_response(&mut out, correlation_id, version, error_code, &groups);
            let read: ListGroupsResponse = oracle::decode_response(&out, version, correlation_id);
            let expected = groups.iter().map(|(id, protocol_type, state)| {
                let listed = KpListed::default()
                    .with_group_id(group(id))
                    .with_protocol_type(s(protocol_type));
                // The state exists from v4.
                if version >= 4 {
                    listed.with_group_state(s(state))
                } else {
                    listed
                }
            });
            let expected = ListGroupsResponse::default()
                .with_error_code(error_code)
                .with_groups(expected.collect());
            assert_eq!(read, expected);
        },
    );
}

/// Weir keeps every field.
pub fn delete_groups_request(version: i16) {
    check(
        "DeleteGroups request",
        version,
        (head(), many(text()), tags()),
        |(head, groups, tags)| {
            let sent = DeleteGroupsRequest::default()
                .with_groups_names(groups.iter().map(|g| group(g)).collect())
                .with_unknown_tagged_fields(tags);
            let header_version = |v| membership::request_header_version(DELETE_KEY, v);
            let body =
                oracle::request_body(ApiKey::DeleteGroups, &sent, version, header_version, &head);
            assert_eq!(
                membership::parse_delete(&body, version).expect("Weir parses the request"),
                groups
            );
        },
    );
}

pub fn delete_groups_response(version: i16) {
    let results = few((text(), any::<i16>()));
    check(
        "DeleteGroups response",
        version,
        (any::<i32>(), results),
        |(correlation_id, results)| {
            let mut out = Vec::new();
            membership::write_delete_response(&mut out, correlation_id, version, &results);
            let read: DeleteGroupsResponse = oracle::decode_response(&out, version, correlation_id);
            let expected = results.iter().map(|(id, error_code)| {
                DeletableGroupResult::default()
                    .with_group_id(group(id))
                    .with_error_code(*error_code)
            });
            // throttle_time_ms is 0, kafka-protocol's default.
            assert_eq!(
                read,
                DeleteGroupsResponse::default().with_results(expected.collect())
            );
        },
    );
}
