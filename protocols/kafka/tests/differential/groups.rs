//! Classic group membership: JoinGroup (key 11), Heartbeat (12), LeaveGroup (13) and
//! SyncGroup (14), against kafka-protocol's newest release.

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
};
use proptest::prelude::*;
use weir_kafka::membership::{
    self, HEARTBEAT_KEY, JOIN_KEY, JoinResponse, JoinedMember, LEAVE_KEY, SYNC_KEY, SyncResponse,
};

use crate::support::newest::{self as oracle, group, os, s};
use crate::support::{blob, check, few, head, opt_text, tags, text};

fn join_value(version: i16) -> impl Strategy<Value = JoinGroupRequest> {
    let protocol = (text(), blob(), tags()).prop_map(|(name, metadata, tags)| {
        JoinGroupRequestProtocol::default()
            .with_name(s(&name))
            .with_metadata(Bytes::from(metadata))
            .with_unknown_tagged_fields(tags)
    });
    let ids = (text(), text(), opt_text(), text());
    let fields = (ids, any::<(i32, i32)>(), few(protocol), opt_text(), tags());
    fields.prop_map(
        move |(ids, (session, rebalance), protocols, reason, tags)| {
            let (group_id, member_id, instance, protocol_type) = ids;
            let mut request = JoinGroupRequest::default()
                .with_group_id(group(&group_id))
                .with_session_timeout_ms(session)
                .with_member_id(s(&member_id))
                .with_protocol_type(s(&protocol_type))
                .with_protocols(protocols)
                .with_unknown_tagged_fields(tags);
            if version >= 1 {
                request = request.with_rebalance_timeout_ms(rebalance);
            }
            if version >= 5 {
                request = request.with_group_instance_id(os(instance.as_deref()));
            }
            if version >= 8 {
                request = request.with_reason(os(reason.as_deref()));
            }
            request
        },
    )
}

/// Weir ignores the reason (v8+; only for the broker's log). v0 has no rebalance timeout, for
/// which Weir takes the session timeout, as Kafka does.
pub fn join_request(version: i16) {
    check(
        "JoinGroup request",
        version,
        (head(), join_value(version)),
        |(head, sent)| {
            let header_version = |v| membership::request_header_version(JOIN_KEY, v);
            let body =
                oracle::request_body(ApiKey::JoinGroup, &sent, version, header_version, &head);
            let parsed = membership::parse_join(&body, version).expect("Weir parses the request");
            let expected = membership::JoinRequest {
                group_id: sent.group_id.0.to_string(),
                session_timeout_ms: sent.session_timeout_ms,
                rebalance_timeout_ms: if version >= 1 {
                    sent.rebalance_timeout_ms
                } else {
                    sent.session_timeout_ms
                },
                member_id: sent.member_id.to_string(),
                group_instance_id: sent.group_instance_id.as_ref().map(|id| id.to_string()),
                protocol_type: sent.protocol_type.to_string(),
                protocols: (sent.protocols.iter())
                    .map(|p| (p.name.to_string(), p.metadata.to_vec()))
                    .collect(),
            };
            assert_eq!(parsed, expected);
        },
    );
}

fn join_answer() -> impl Strategy<Value = JoinResponse> {
    let member =
        (text(), opt_text(), blob()).prop_map(|(member_id, group_instance_id, metadata)| {
            JoinedMember {
                member_id,
                group_instance_id,
                metadata,
            }
        });
    let fields = (
        any::<(i16, i32)>(),
        opt_text(),
        opt_text(),
        text(),
        text(),
        few(member),
    );
    fields.prop_map(
        |(
            (error_code, generation_id),
            protocol_type,
            protocol_name,
            leader,
            member_id,
            members,
        )| {
            JoinResponse {
                error_code,
                generation_id,
                protocol_type,
                protocol_name,
                leader,
                member_id,
                members,
            }
        },
    )
}

/// What kafka-protocol should read for `answer` at `version`.
fn expected_join(answer: &JoinResponse, version: i16) -> JoinGroupResponse {
    let members = answer.members.iter().map(|m| {
        let member = JoinGroupResponseMember::default()
            .with_member_id(s(&m.member_id))
            .with_metadata(Bytes::copy_from_slice(&m.metadata));
        // The instance id exists from v5.
        if version >= 5 {
            member.with_group_instance_id(os(m.group_instance_id.as_deref()))
        } else {
            member
        }
    });
    let expected = JoinGroupResponse::default()
        .with_error_code(answer.error_code)
        .with_generation_id(answer.generation_id)
        .with_leader(s(&answer.leader))
        .with_member_id(s(&answer.member_id))
        .with_members(members.collect());
    // throttle_time_ms (v2+) is 0 and skip_assignment (v9) false: the defaults.
    if version >= 7 {
        expected
            .with_protocol_type(os(answer.protocol_type.as_deref()))
            .with_protocol_name(os(answer.protocol_name.as_deref()))
    } else {
        // Before v7 the protocol name is not nullable: none is sent as empty.
        let name = answer.protocol_name.as_deref().unwrap_or_default();
        expected.with_protocol_name(Some(s(name)))
    }
}

pub fn join_response(version: i16) {
    check(
        "JoinGroup response",
        version,
        (any::<i32>(), join_answer()),
        |(correlation_id, answer)| {
            let mut out = Vec::new();
            membership::write_join_response(&mut out, correlation_id, version, &answer);
            let read: JoinGroupResponse = oracle::decode_response(&out, version, correlation_id);
            assert_eq!(read, expected_join(&answer, version));
        },
    );
}

/// Weir keeps every field.
pub fn heartbeat_request(version: i16) {
    let fields = (text(), any::<i32>(), text(), opt_text(), tags());
    check(
        "Heartbeat request",
        version,
        (head(), fields),
        |(head, (group_id, generation, member, instance, tags))| {
            let mut sent = HeartbeatRequest::default()
                .with_group_id(group(&group_id))
                .with_generation_id(generation)
                .with_member_id(s(&member))
                .with_unknown_tagged_fields(tags);
            if version >= 3 {
                sent = sent.with_group_instance_id(os(instance.as_deref()));
            }
            let header_version = |v| membership::request_header_version(HEARTBEAT_KEY, v);
            let body =
                oracle::request_body(ApiKey::Heartbeat, &sent, version, header_version, &head);
            let parsed =
                membership::parse_heartbeat(&body, version).expect("Weir parses the request");
            let expected = membership::HeartbeatRequest {
                group_id: group_id.clone(),
                generation_id: generation,
                member_id: member.clone(),
                group_instance_id: instance.filter(|_| version >= 3),
            };
            assert_eq!(parsed, expected);
        },
    );
}

pub fn heartbeat_response(version: i16) {
    check(
        "Heartbeat response",
        version,
        any::<(i32, i16)>(),
        |(correlation_id, error_code)| {
            let mut out = Vec::new();
            membership::write_heartbeat_response(&mut out, correlation_id, version, error_code);
            let read: HeartbeatResponse = oracle::decode_response(&out, version, correlation_id);
            // throttle_time_ms (v1+) is 0, kafka-protocol's default.
            assert_eq!(
                read,
                HeartbeatResponse::default().with_error_code(error_code)
            );
        },
    );
}

fn leave_value(version: i16) -> impl Strategy<Value = LeaveGroupRequest> {
    let member =
        (text(), opt_text(), opt_text(), tags()).prop_map(move |(id, instance, reason, tags)| {
            let member = MemberIdentity::default()
                .with_member_id(s(&id))
                .with_group_instance_id(os(instance.as_deref()))
                .with_unknown_tagged_fields(tags);
            // The reason exists from v5.
            if version >= 5 {
                member.with_reason(os(reason.as_deref()))
            } else {
                member
            }
        });
    (text(), text(), few(member), tags()).prop_map(move |(group_id, member_id, members, tags)| {
        let request = LeaveGroupRequest::default()
            .with_group_id(group(&group_id))
            .with_unknown_tagged_fields(tags);
        // One member before v3, several (by member or instance id) from v3.
        if version >= 3 {
            request.with_members(members)
        } else {
            request.with_member_id(s(&member_id))
        }
    })
}

/// Weir ignores each member's reason (v5+; only for the broker's log).
pub fn leave_request(version: i16) {
    check(
        "LeaveGroup request",
        version,
        (head(), leave_value(version)),
        |(head, sent)| {
            let header_version = |v| membership::request_header_version(LEAVE_KEY, v);
            let body =
                oracle::request_body(ApiKey::LeaveGroup, &sent, version, header_version, &head);
            let parsed = membership::parse_leave(&body, version).expect("Weir parses the request");
            let members = if version >= 3 {
                (sent.members.iter())
                    .map(|m| {
                        (
                            m.member_id.to_string(),
                            m.group_instance_id.as_ref().map(|i| i.to_string()),
                        )
                    })
                    .collect()
            } else {
                vec![(sent.member_id.to_string(), None)]
            };
            let expected = membership::LeaveRequest {
                group_id: sent.group_id.0.to_string(),
                members,
            };
            assert_eq!(parsed, expected);
        },
    );
}

pub fn leave_response(version: i16) {
    let members = few((text(), opt_text(), any::<i16>()));
    check(
        "LeaveGroup response",
        version,
        (any::<(i32, i16)>(), members),
        |((correlation_id, error_code), members)| {
            let mut out = Vec::new();
            membership::write_leave_response(
                &mut out,
                correlation_id,
                version,
                error_code,
                &members,
            );
            let read: LeaveGroupResponse = oracle::decode_response(&out, version, correlation_id);
            let mut expected = LeaveGroupResponse::default().with_error_code(error_code);
            if version >= 3 {
                let members = members.iter().map(|(id, instance, error)| {
                    MemberResponse::default()
                        .with_member_id(s(id))
                        .with_group_instance_id(os(instance.as_deref()))
                        .with_error_code(*error)
                });
                expected = expected.with_members(members.collect());
            }
            assert_eq!(read, expected);
        },
    );
}

fn sync_value(version: i16) -> impl Strategy<Value = SyncGroupRequest> {
    let assignment = (text(), blob(), tags()).prop_map(|(member, assignment, tags)| {
        SyncGroupRequestAssignment::default()
            .with_member_id(s(&member))
            .with_assignment(Bytes::from(assignment))
            .with_unknown_tagged_fields(tags)
    });
    let ids = (text(), any::<i32>(), text(), opt_text());
    let fields = (ids, opt_text(), opt_text(), few(assignment), tags());
    fields.prop_map(
        move |((group_id, generation, member, instance), kind, name, assignments, tags)| {
            let mut request = SyncGroupRequest::default()
                .with_group_id(group(&group_id))
                .with_generation_id(generation)
                .with_member_id(s(&member))
                .with_assignments(assignments)
                .with_unknown_tagged_fields(tags);
            if version >= 3 {
                request = request.with_group_instance_id(os(instance.as_deref()));
            }
            if version >= 5 {
                request = request
                    .with_protocol_type(os(kind.as_deref()))
                    .with_protocol_name(os(name.as_deref()));
            }
            request
        },
    )
}

/// Weir keeps every field.
pub fn sync_request(version: i16) {
    check(
        "SyncGroup request",
        version,
        (head(), sync_value(version)),
        |(head, sent)| {
            let header_version = |v| membership::request_header_version(SYNC_KEY, v);
            let body =
                oracle::request_body(ApiKey::SyncGroup, &sent, version, header_version, &head);
            let parsed = membership::parse_sync(&body, version).expect("Weir parses the request");
            let text = |t: &Option<oracle::StrBytes>| t.as_ref().map(|t| t.to_string());
            let expected = membership::SyncRequest {
                group_id: sent.group_id.0.to_string(),
                generation_id: sent.generation_id,
                member_id: sent.member_id.to_string(),
                group_instance_id: text(&sent.group_instance_id),
                protocol_type: text(&sent.protocol_type),
                protocol_name: text(&sent.protocol_name),
                assignments: (sent.assignments.iter())
                    .map(|a| (a.member_id.to_string(), a.assignment.to_vec()))
                    .collect(),
            };
            assert_eq!(parsed, expected);
        },
    );
}

pub fn sync_response(version: i16) {
    let answer = (any::<i16>(), opt_text(), opt_text(), blob()).prop_map(
        |(error_code, protocol_type, protocol_name, assignment)| SyncResponse {
            error_code,
            protocol_type,
            protocol_name,
            assignment,
        },
    );
    check(
        "SyncGroup response",
        version,
        (any::<i32>(), answer),
        |(correlation_id, answer)| {
            let mut out = Vec::new();
            membership::write_sync_response(&mut out, correlation_id, version, &answer);
            let read: SyncGroupResponse = oracle::decode_response(&out, version, correlation_id);
            let mut expected = SyncGroupResponse::default()
                .with_error_code(answer.error_code)
                .with_assignment(Bytes::copy_from_slice(&answer.assignment));
            // The protocol type and name exist from v5; throttle_time_ms (v1+) is 0.
            if version >= 5 {
                expected = expected
                    .with_protocol_type(os(answer.protocol_type.as_deref()))
                    .with_protocol_name(os(answer.protocol_name.as_deref()));
            }
            assert_eq!(read, expected);
        },
    );
}
