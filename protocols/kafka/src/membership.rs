//! The classic consumer-group membership protocol: JoinGroup (key 11), Heartbeat (12),
//! LeaveGroup (13), SyncGroup (14), DescribeGroups (15), ListGroups (16) and DeleteGroups
//! (42).
//!
//! Versions: JoinGroup 0 to 9 (flexible from 6), Heartbeat 0 to 4 (from 4), LeaveGroup 0 to
//! 5 (from 4; several members from 3), SyncGroup 0 to 5 (from 4), DescribeGroups 0 to 5
//! (from 5), ListGroups 0 to 4 (from 3; a state filter in 4), DeleteGroups 0 to 2 (from 2).
//! Protocol metadata and assignments are opaque bytes here; the coordinator never looks
//! inside them.

use crate::header::write_response_header;
use crate::wire::{Reader, WireError, Writer};

/// API key of JoinGroup.
pub const JOIN_KEY: i16 = 11;
/// Highest JoinGroup version implemented.
pub const JOIN_MAX: i16 = 9;
/// API key of Heartbeat.
pub const HEARTBEAT_KEY: i16 = 12;
/// Highest Heartbeat version implemented.
pub const HEARTBEAT_MAX: i16 = 4;
/// API key of LeaveGroup.
pub const LEAVE_KEY: i16 = 13;
/// Highest LeaveGroup version implemented.
pub const LEAVE_MAX: i16 = 5;
/// API key of SyncGroup.
pub const SYNC_KEY: i16 = 14;
/// Highest SyncGroup version implemented.
pub const SYNC_MAX: i16 = 5;
/// API key of DescribeGroups.
pub const DESCRIBE_KEY: i16 = 15;
/// Highest DescribeGroups version implemented.
pub const DESCRIBE_MAX: i16 = 5;
/// API key of ListGroups.
pub const LIST_KEY: i16 = 16;
/// Highest ListGroups version implemented.
pub const LIST_MAX: i16 = 4;
/// API key of DeleteGroups.
pub const DELETE_KEY: i16 = 42;
/// Highest DeleteGroups version implemented.
pub const DELETE_MAX: i16 = 2;

/// Whether `version` of API `api_key` (one of this module's) uses the flexible encoding.
pub fn flexible(api_key: i16, version: i16) -> bool {
    let first = match api_key {
        JOIN_KEY => 6,
        HEARTBEAT_KEY | LEAVE_KEY | SYNC_KEY => 4,
        DESCRIBE_KEY => 5,
        LIST_KEY => 3,
        _ => 2,
    };
    version >= first
}

/// Request header version of `version` of API `api_key` (one of this module's).
pub fn request_header_version(api_key: i16, version: i16) -> u8 {
    if flexible(api_key, version) { 2 } else { 1 }
}

/// Starts the answer to `version` of API `api_key`: the response header and, from
/// `throttle_from`, the throttle time (always 0: Weir does not throttle).
fn start_answer(
    out: &mut Vec<u8>,
    correlation_id: i32,
    api_key: i16,
    version: i16,
    throttle_from: i16,
) -> Writer<'_> {
    let flexible = flexible(api_key, version);
    write_response_header(out, correlation_id, u8::from(flexible));
    let mut w = Writer::new(out, flexible);
    if version >= throttle_from {
        w.i32(0); // throttle_time_ms
    }
    w
}

fn required(r: &mut Reader<'_>, flexible: bool, what: &'static str) -> Result<String, WireError> {
    Ok(r.string_of(flexible)?
        .ok_or(WireError::Invalid(what))?
        .to_owned())
}

fn optional(r: &mut Reader<'_>, flexible: bool) -> Result<Option<String>, WireError> {
    Ok(r.string_of(flexible)?.map(str::to_owned))
}

fn bytes(r: &mut Reader<'_>, flexible: bool) -> Result<Vec<u8>, WireError> {
    Ok(r.bytes_of(flexible)?.unwrap_or_default().to_vec())
}

fn end(r: &mut Reader<'_>, flexible: bool) -> Result<(), WireError> {
    if flexible {
        r.skip_tagged_fields()?;
    }
    Ok(())
}

/// A JoinGroup request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    /// The group.
    pub group_id: String,
    /// A member not heard from for this long is removed.
    pub session_timeout_ms: i32,
    /// How long the coordinator waits for members to rejoin (v0: the session timeout).
    pub rebalance_timeout_ms: i32,
    /// The member's id; empty for a new member.
    pub member_id: String,
    /// Static membership id (v5+).
    pub group_instance_id: Option<String>,
    /// The class of protocols ("consumer" for consumers).
    pub protocol_type: String,
    /// The protocols the member supports, in its order of preference, with its metadata.
    pub protocols: Vec<(String, Vec<u8>)>,
}

/// Parses a JoinGroup body of `version` (0..=9).
pub fn parse_join(body: &[u8], version: i16) -> Result<JoinRequest, WireError> {
    let mut r = Reader::new(body);
    let flexible = flexible(JOIN_KEY, version);
    let group_id = required(&mut r, flexible, "null group id")?;
    let session_timeout_ms = r.i32()?;
    let rebalance_timeout_ms = if version >= 1 {
        r.i32()?
    } else {
        session_timeout_ms
    };
    let member_id = required(&mut r, flexible, "null member id")?;
    let group_instance_id = if version >= 5 {
        optional(&mut r, flexible)?
    } else {
        None
    };
    let protocol_type = required(&mut r, flexible, "null protocol type")?;
    let count = r.array_len(flexible, 2)?;
    let mut protocols = Vec::new();
    for _ in 0..count {
        let name = required(&mut r, flexible, "null protocol name")?;
        let metadata = bytes(&mut r, flexible)?;
        end(&mut r, flexible)?;
        protocols.push((name, metadata));
    }
    if version >= 8 {
        r.string_of(flexible)?; // reason: only for the broker's log
    }
    end(&mut r, flexible)?;
    Ok(JoinRequest {
        group_id,
        session_timeout_ms,
        rebalance_timeout_ms,
        member_id,
        group_instance_id,
        protocol_type,
        protocols,
    })
}

/// One member in the JoinGroup answer to the group's leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    /// Its id.
    pub member_id: String,
    /// Its static id.
    pub group_instance_id: Option<String>,
    /// Its metadata for the chosen protocol.
    pub metadata: Vec<u8>,
}

/// A JoinGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    /// 0 or the error.
    pub error_code: i16,
    /// The generation that starts (-1 with an error).
    pub generation_id: i32,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The protocol chosen.
    pub protocol_name: Option<String>,
    /// The leader's member id.
    pub leader: String,
    /// The member's own id.
    pub member_id: String,
    /// Every member, for the leader; empty for the others.
    pub members: Vec<JoinedMember>,
}

impl JoinResponse {
    /// An answer carrying only `error_code` (and the member's id, which a v4+ client keeps).
    pub fn failed(error_code: i16, member_id: String) -> JoinResponse {
        JoinResponse {
            error_code,
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id,
            members: Vec::new(),
        }
    }
}

/// Writes a JoinGroup answer for a request of `version`.
pub fn write_join_response(
    out: &mut Vec<u8>,
    correlation_id: i32,
    version: i16,
    answer: &JoinResponse,
) {
    let mut w = start_answer(out, correlation_id, JOIN_KEY, version, 2);
    w.i16(answer.error_code);
    w.i32(answer.generation_id);
    if version >= 7 {
        w.nullable_string(answer.protocol_type.as_deref());
        w.nullable_string(answer.protocol_name.as_deref());
    } else {
        w.string(answer.protocol_name.as_deref().unwrap_or(""));
    }
    w.string(&answer.leader);
    if version >= 9 {
        w.bool(false); // skip_assignment: the leader always assigns
    }
    w.string(&answer.member_id);
    w.array_len(answer.members.len());
    for member in &answer.members {
        w.string(&member.member_id);
        if version >= 5 {
            w.nullable_string(member.group_instance_id.as_deref());
        }
        w.bytes(&member.metadata);
        w.tagged();
    }
    w.tagged();
}

/// A SyncGroup request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRequest {
    /// The group.
    pub group_id: String,
    /// The member's generation.
    pub generation_id: i32,
    /// The member.
    pub member_id: String,
    /// Static membership id (v3+).
    pub group_instance_id: Option<String>,
    /// The protocol type the member joined with (v5+).
    pub protocol_type: Option<String>,
    /// The protocol the member was told (v5+).
    pub protocol_name: Option<String>,
    /// The leader's assignment per member (empty from the others).
    pub assignments: Vec<(String, Vec<u8>)>,
}

/// Parses a SyncGroup body of `version` (0..=5).
pub fn parse_sync(body: &[u8], version: i16) -> Result<SyncRequest, WireError> {
    let mut r = Reader::new(body);
    let flexible = flexible(SYNC_KEY, version);
    let group_id = required(&mut r, flexible, "null group id")?;
    let generation_id = r.i32()?;
    let member_id = required(&mut r, flexible, "null member id")?;
    let group_instance_id = if version >= 3 {
        optional(&mut r, flexible)?
    } else {
        None
    };
    let (protocol_type, protocol_name) = if version >= 5 {
        (optional(&mut r, flexible)?, optional(&mut r, flexible)?)
    } else {
        (None, None)
    };
    let count = r.array_len(flexible, 2)?;
    let mut assignments = Vec::new();
    for _ in 0..count {
        let member = required(&mut r, flexible, "null member id")?;
        let assignment = bytes(&mut r, flexible)?;
        end(&mut r, flexible)?;
        assignments.push((member, assignment));
    }
    end(&mut r, flexible)?;
    Ok(SyncRequest {
        group_id,
        generation_id,
        member_id,
        group_instance_id,
        protocol_type,
        protocol_name,
        assignments,
    })
}

/// A SyncGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResponse {
    /// 0 or the error.
    pub error_code: i16,
    /// The group's protocol type (v5+).
    pub protocol_type: Option<String>,
    /// The group's protocol (v5+).
    pub protocol_name: Option<String>,
    /// The member's assignment.
    pub assignment: Vec<u8>,
}

impl SyncResponse {
    /// An answer carrying only `error_code`.
    pub fn failed(error_code: i16) -> SyncResponse {
        SyncResponse {
            error_code,
            protocol_type: None,
            protocol_name: None,
            assignment: Vec::new(),
        }
    }
}

/// Writes a SyncGroup answer for a request of `version`.
pub fn write_sync_response(
    out: &mut Vec<u8>,
    correlation_id: i32,
    version: i16,
    answer: &SyncResponse,
) {
    let mut w = start_answer(out, correlation_id, SYNC_KEY, version, 1);
    w.i16(answer.error_code);
    if version >= 5 {
        w.nullable_string(answer.protocol_type.as_deref());
        w.nullable_string(answer.protocol_name.as_deref());
    }
    w.bytes(&answer.assignment);
    w.tagged();
}

/// A Heartbeat request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatRequest {
    /// The group.
    pub group_id: String,
    /// The member's generation.
    pub generation_id: i32,
    /// The member.
    pub member_id: String,
    /// Static membership id (v3+).
    pub group_instance_id: Option<String>,
}

/// Parses a Heartbeat body of `version` (0..=4).
pub fn parse_heartbeat(body: &[u8], version: i16) -> Result<HeartbeatRequest, WireError> {
    let mut r = Reader::new(body);
    let flexible = flexible(HEARTBEAT_KEY, version);
    let group_id = required(&mut r, flexible, "null group id")?;
    let generation_id = r.i32()?;
    let member_id = required(&mut r, flexible, "null member id")?;
    let group_instance_id = if version >= 3 {
        optional(&mut r, flexible)?
    } else {
        None
    };
    end(&mut r, flexible)?;
    Ok(HeartbeatRequest {
        group_id,
        generation_id,
        member_id,
        group_instance_id,
    })
}

/// Writes a Heartbeat answer for a request of `version`.
pub fn write_heartbeat_response(
    out: &mut Vec<u8>,
    correlation_id: i32,
    version: i16,
    error_code: i16,
) {
    let mut w = start_answer(out, correlation_id, HEARTBEAT_KEY, version, 1);
    w.i16(error_code);
    w.tagged();
}

/// A LeaveGroup request: the group and the members leaving, each by member id or (v3+,
/// static members) by instance id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveRequest {
    /// The group.
    pub group_id: String,
    /// (member id, group instance id) of each member leaving; one before v3.
    pub members: Vec<(String, Option<String>)>,
}

/// Parses a LeaveGroup body of `version` (0..=5).
pub fn parse_leave(body: &[u8], version: i16) -> Result<LeaveRequest, WireError> {
    let mut r = Reader::new(body);
    let flexible = flexible(LEAVE_KEY, version);
    let group_id = required(&mut r, flexible, "null group id")?;
    let mut members = Vec::new();
    if version >= 3 {
        let count = r.array_len(flexible, 3)?;
        for _ in 0..count {
            let member_id = required(&mut r, flexible, "null member id")?;
            let instance = optional(&mut r, flexible)?;
            if version >= 5 {
                r.string_of(flexible)?; // reason: only for the broker's log
            }
            end(&mut r, flexible)?;
            members.push((member_id, instance));
        }
    } else {
        members.push((required(&mut r, flexible, "null member id")?, None));
    }
    end(&mut r, flexible)?;
    Ok(LeaveRequest { group_id, members })
}

/// Writes a LeaveGroup answer for a request of `version`: the top-level error and, from v3,
/// each member's (member id, instance id, error code).
pub fn write_leave_response(
    out: &mut Vec<u8>,
    correlation_id: i32,
    version: i16,
    error_code: i16,
    members: &[(String, Option<String>, i16)],
) {
    let mut w = start_answer(out, correlation_id, LEAVE_KEY, version, 1);
    w.i16(error_code);
    if version >= 3 {
        w.array_len(members.len());
        for (member_id, instance, error) in members {
            w.string(member_id);
            w.nullable_string(instance.as_deref());
            w.i16(*error);
            w.tagged();
        }
    }
    w.tagged();
}

/// Parses a DescribeGroups body of `version` (0..=5): the groups, and whether the client
/// asked for authorized operations (v3+).
pub fn parse_describe(body: &[u8], version: i16) -> Result<(Vec<String>, bool), WireError> {
    let mut r = Reader::new(body);
    let flexible = flexible(DESCRIBE_KEY, version);
    let count = r.array_len(flexible, 1)?;
    let mut groups = Vec::new();
    for _ in 0..count {
        groups.push(required(&mut r, flexible, "null group id")?);
    }
    let operations = version >= 3 && r.bool()?;
    end(&mut r, flexible)?;
    Ok((groups, operations))
}

/// One member of a described group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedMember {
    /// Its id.
    pub member_id: String,
    /// Its static id.
    pub group_instance_id: Option<String>,
    /// The client id it joined with.
    pub client_id: String,
    /// The address it joined from.
    pub client_host: String,
    /// Its metadata for the group's protocol (filled while the group is stable).
    pub metadata: Vec<u8>,
    /// Its assignment (filled while the group is stable).
    pub assignment: Vec<u8>,
}

/// One described group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedGroup {
    /// 0 or the error.
    pub error_code: i16,
    /// The group.
    pub group_id: String,
    /// "Empty", "PreparingRebalance", "CompletingRebalance", "Stable" or "Dead".
    pub state: &'static str,
    /// Its protocol type, or "".
    pub protocol_type: String,
    /// Its protocol, or "".
    pub protocol: String,
    /// Its members.
    pub members: Vec<DescribedMember>,
}

/// Authorized operations when the client did not ask for them (Kafka's "not provided").
const OPERATIONS_NOT_PROVIDED: i32 = i32::MIN;

/// Writes a DescribeGroups answer for a request of `version`.
pub fn write_describe_response(
    out: &mut Vec<u8>,
    correlation_id: i32,
    version: i16,
    groups: &[DescribedGroup],
) {
    let mut w = start_answer(out, correlation_id, DESCRIBE_KEY, version, 1);
    w.array_len(groups.len());
    for group in groups {
        w.i16(group.error_code);
        w.string(&group.group_id);
        w.string(group.state);
        w.string(&group.protocol_type);
        w.string(&group.protocol);
        w.array_len(group.members.len());
        for member in &group.members {
            w.string(&member.member_id);
            if version >= 4 {
                w.nullable_string(member.group_instance_id.as_deref());
            }
            w.string(&member.client_id);
            w.string(&member.client_host);
            w.bytes(&member.metadata);
            w.bytes(&member.assignment);
            w.tagged();
        }
        if version >= 3 {
            // No ACLs: authorization is not modelled, so nothing is claimed.
            w.i32(OPERATIONS_NOT_PROVIDED);
        }
        w.tagged();
    }
    w.tagged();
}

/// Parses a ListGroups body of `version` (0..=4): the states asked for (v4+; empty: all).
pub fn parse_list(body: &[u8], version: i16) -> Result<Vec<String>, WireError> {
    let mut r = Reader::new(body);
    let flexible = flexible(LIST_KEY, version);
    let mut states = Vec::new();
    if version >= 4 {
        let count = r.array_len(flexible, 1)?;
        for _ in 0..count {
            states.push(required(&mut r, flexible, "null state")?);
        }
    }
    end(&mut r, flexible)?;
    Ok(states)
}

/// One listed group: id, protocol type, state.
pub type ListedGroup = (String, String, &'static str);

/// Writes a ListGroups answer for a request of `version`.
pub fn write_list_response(
    out: &mut Vec<u8>,
    correlation_id: i32,
    version: i16,
    error_code: i16,
    groups: &[ListedGroup],
) {
    let mut w = start_answer(out, correlation_id, LIST_KEY, version, 1);
    w.i16(error_code);
    w.array_len(groups.len());
    for (group_id, protocol_type, state) in groups {
        w.string(group_id);
        w.string(protocol_type);
        if version >= 4 {
            w.string(state);
        }
        w.tagged();
    }
    w.tagged();
}

/// Parses a DeleteGroups body of `version` (0..=2): the groups.
pub fn parse_delete(body: &[u8], version: i16) -> Result<Vec<String>, WireError> {
    let mut r = Reader::new(body);
    let flexible = flexible(DELETE_KEY, version);
    let count = r.array_len(flexible, 1)?;
    let mut groups = Vec::new();
    for _ in 0..count {
        groups.push(required(&mut r, flexible, "null group id")?);
    }
    end(&mut r, flexible)?;
    Ok(groups)
}

/// Writes a DeleteGroups answer for a request of `version`: (group, error code) each.
pub fn write_delete_response(
    out: &mut Vec<u8>,
    correlation_id: i32,
    version: i16,
    results: &[(String, i16)],
) {
    let mut w = start_answer(out, correlation_id, DELETE_KEY, version, 0);
    w.array_len(results.len());
    for (group_id, error_code) in results {
        w.string(group_id);
        w.i16(*error_code);
        w.tagged();
    }
    w.tagged();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classic_string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as i16).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    #[test]
    fn join_requests_of_the_classic_and_flexible_generations() {
        let mut v1 = Vec::new();
        classic_string(&mut v1, "g");
        v1.extend_from_slice(&6000i32.to_be_bytes());
        v1.extend_from_slice(&30000i32.to_be_bytes());
        classic_string(&mut v1, "");
        classic_string(&mut v1, "consumer");
        v1.extend_from_slice(&1i32.to_be_bytes());
        classic_string(&mut v1, "range");
        v1.extend_from_slice(&2i32.to_be_bytes());
        v1.extend_from_slice(&[7, 8]);
        let join = parse_join(&v1, 1).unwrap();
        assert_eq!(join.group_id, "g");
        assert_eq!(
            (join.session_timeout_ms, join.rebalance_timeout_ms),
            (6000, 30000)
        );
        assert_eq!(join.protocols, [("range".to_owned(), vec![7, 8])]);
        // v0 has no rebalance timeout: the session timeout stands in.
        let mut v0 = Vec::new();
        classic_string(&mut v0, "g");
        v0.extend_from_slice(&6000i32.to_be_bytes());
        v0.extend_from_slice(&v1[2 + 1 + 8..]);
        assert_eq!(parse_join(&v0, 0).unwrap().rebalance_timeout_ms, 6000);

        // v8, flexible: compact strings, an instance id, a reason, tagged fields.
        let v8 = [
            2, b'g', 0, 0, 0x17, 0x70, 0, 0, 0x75, 0x30, 2, b'm', 2, b'i', 9, b'c', b'o', b'n',
            b's', b'u', b'm', b'e', b'r', 2, 3, b'r', b'r', 2, 9, 0, 1, 0,
        ];
        let join = parse_join(&v8, 8).unwrap();
        assert_eq!(join.member_id, "m");
        assert_eq!(join.group_instance_id.as_deref(), Some("i"));
        assert_eq!(join.protocols, [("rr".to_owned(), vec![9])]);
        // A protocol count that the frame cannot hold is refused before anything is kept.
        let mut hostile = v1[..v1.len() - 17].to_vec();
        hostile.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(parse_join(&hostile, 1).is_err());
    }

    #[test]
    fn join_answers_by_version() {
        let answer = JoinResponse {
            error_code: 0,
            generation_id: 3,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            leader: "a".into(),
            member_id: "a".into(),
            members: vec![JoinedMember {
                member_id: "a".into(),
                group_instance_id: None,
                metadata: vec![1],
            }],
        };
        let mut v0 = Vec::new();
        write_join_response(&mut v0, 9, 0, &answer);
        let expected_v0 = [
            0, 0, 0, 9, 0, 0, 0, 0, 0, 3, 0, 5, b'r', b'a', b'n', b'g', b'e', 0, 1, b'a', 0, 1,
            b'a', 0, 0, 0, 1, 0, 1, b'a', 0, 0, 0, 1, 1,
        ];
        assert_eq!(v0, expected_v0);
        let mut v9 = Vec::new();
        write_join_response(&mut v9, 9, 9, &answer);
        let expected_v9 = [
            0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 9, b'c', b'o', b'n', b's', b'u', b'm',
            b'e', b'r', 6, b'r', b'a', b'n', b'g', b'e', 2, b'a', 0, 2, b'a', 2, 2, b'a', 0, 2, 1,
            0, 0,
        ];
        assert_eq!(v9, expected_v9);
    }

    #[test]
    fn sync_heartbeat_and_leave_round_trip_their_fields() {
        let v5 = [
            2, b'g', 0, 0, 0, 4, 2, b'm', 0, 9, b'c', b'o', b'n', b's', b'u', b'm', b'e', b'r', 6,
            b'r', b'a', b'n', b'g', b'e', 2, 2, b'm', 3, 1, 2, 0, 0,
        ];
        let sync = parse_sync(&v5, 5).unwrap();
        assert_eq!((sync.generation_id, sync.group_instance_id), (4, None));
        assert_eq!(sync.protocol_name.as_deref(), Some("range"));
        assert_eq!(sync.assignments, [("m".to_owned(), vec![1, 2])]);
        let mut out = Vec::new();
        write_sync_response(
            &mut out,
            1,
            0,
            &SyncResponse {
                error_code: 27,
                protocol_type: None,
                protocol_name: None,
                assignment: vec![5],
            },
        );
        assert_eq!(out, [0, 0, 0, 1, 0, 27, 0, 0, 0, 1, 5]);

        let mut v0 = Vec::new();
        classic_string(&mut v0, "g");
        v0.extend_from_slice(&4i32.to_be_bytes());
        classic_string(&mut v0, "m");
        let beat = parse_heartbeat(&v0, 0).unwrap();
        assert_eq!((beat.generation_id, beat.member_id.as_str()), (4, "m"));
        let mut out = Vec::new();
        write_heartbeat_response(&mut out, 1, 4, 0);
        assert_eq!(out, [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);

        let mut v0 = Vec::new();
        classic_string(&mut v0, "g");
        classic_string(&mut v0, "m");
        assert_eq!(
            parse_leave(&v0, 0).unwrap().members,
            [("m".to_owned(), None)]
        );
        let v5 = [2, b'g', 3, 1, 2, b'i', 0, 0, 2, b'm', 0, 1, 0, 0];
        let leave = parse_leave(&v5, 5).unwrap();
        assert_eq!(
            leave.members,
            [
                (String::new(), Some("i".to_owned())),
                ("m".to_owned(), None)
            ]
        );
        let mut out = Vec::new();
        write_leave_response(&mut out, 1, 3, 0, &[("m".into(), None, 25)]);
        let expected = [
            0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, b'm', 0xff, 0xff, 0, 25,
        ];
        assert_eq!(out, expected);
    }

    #[test]
    fn describe_list_and_delete() {
        let (groups, operations) = parse_describe(&[2, 2, b'g', 1, 0], 5).unwrap();
        assert_eq!((groups, operations), (vec!["g".to_owned()], true));
        let described = DescribedGroup {
            error_code: 0,
            group_id: "g".into(),
            state: "Stable",
            protocol_type: "consumer".into(),
            protocol: "range".into(),
            members: vec![DescribedMember {
                member_id: "m".into(),
                group_instance_id: None,
                client_id: "c".into(),
                client_host: "/h".into(),
                metadata: vec![1],
                assignment: vec![2],
            }],
        };
        let mut v0 = Vec::new();
        write_describe_response(&mut v0, 1, 0, std::slice::from_ref(&described));
        let mut expected = vec![0, 0, 0, 1, 0, 0, 0, 1, 0, 0];
        for s in ["g", "Stable", "consumer", "range"] {
            classic_string(&mut expected, s);
        }
        expected.extend_from_slice(&[0, 0, 0, 1]);
        for s in ["m", "c", "/h"] {
            classic_string(&mut expected, s);
        }
        expected.extend_from_slice(&[0, 0, 0, 1, 1, 0, 0, 0, 1, 2]);
        assert_eq!(v0, expected);

        assert_eq!(parse_list(&[], 0).unwrap(), Vec::<String>::new());
        let states = parse_list(&[2, 7, b'S', b't', b'a', b'b', b'l', b'e', 0], 4).unwrap();
        assert_eq!(states, ["Stable"]);
        let mut out = Vec::new();
        write_list_response(&mut out, 1, 4, 0, &[("g".into(), "".into(), "Empty")]);
        let expected = [
            0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 2, b'g', 1, 6, b'E', b'm', b'p', b't', b'y', 0, 0,
        ];
        assert_eq!(out, expected);

        assert_eq!(
            parse_delete(&[3, 2, b'a', 2, b'b', 0], 2).unwrap(),
            ["a", "b"]
        );
        assert!(parse_delete(&[0x7f, 0xff, 0xff, 0xff], 0).is_err());
        let mut out = Vec::new();
        write_delete_response(&mut out, 1, 0, &[("a".into(), 69)]);
        assert_eq!(out, [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, b'a', 0, 69]);
    }
}
