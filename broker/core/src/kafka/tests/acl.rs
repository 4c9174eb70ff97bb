//! The access-control list on a Kafka session: what it refuses is answered with Kafka's
//! codes and never handed on, listings leave out what the client may not describe, and a
//! changed list applies to the next request of a live connection.

use std::sync::Mutex;

use super::*;
use crate::acl::{AclRules, AclSource};
use crate::kafka::authorize::Authorized;
use crate::kafka::op::ProduceRecords;

/// A list the test changes while the session lives (as a reload does).
#[derive(Debug)]
struct Switchable(Mutex<Arc<AclRules>>);

impl Switchable {
    fn set(&self, text: &str) {
        *self.0.lock().unwrap() = Arc::new(AclRules::parse(text).unwrap());
    }
}

impl AclSource for Switchable {
    fn current(&self) -> Option<Arc<AclRules>> {
        Some(self.0.lock().unwrap().clone())
    }
}

/// Anonymous clients (client id `test` in every request) may read and write `t`, write `w`,
/// and use groups starting with `g`.
const RULES: &str = "topic readwrite t/#\ntopic write w/#\nkafka-group g*\n";

fn session_with(acl: &Arc<Switchable>) -> KafkaSession {
    let mut settings = (*settings()).clone();
    settings.acl = acl.clone();
    KafkaSession::new(Arc::new(settings), "/127.0.0.1".into())
}

fn switchable() -> Arc<Switchable> {
    Arc::new(Switchable(Mutex::new(Arc::new(
        AclRules::parse(RULES).unwrap(),
    ))))
}

/// HeartbeatRequest v0: group `group`, generation 1, member `m`.
fn heartbeat(correlation: i32, group: &str) -> Vec<u8> {
    let mut body = (group.len() as u16).to_be_bytes().to_vec();
    body.extend_from_slice(group.as_bytes());
    body.extend_from_slice(&1i32.to_be_bytes());
    body.extend_from_slice(&[0, 1, b'm']);
    frame(membership::HEARTBEAT_KEY, 0, correlation, &body)
}

/// The error code of a Heartbeat v0 answer (after size, correlation id).
fn heartbeat_error(out: &[u8]) -> i16 {
    i16::from_be_bytes([out[8], out[9]])
}

#[test]
fn a_group_request_the_list_refuses_is_answered_at_once_and_a_change_applies_at_once() {
    let acl = switchable();
    let mut session = session_with(&acl);
    let mut out = Vec::new();
    let ops = run(&mut session, &heartbeat(1, "g1"), &mut out);
    assert_eq!(ops.len(), 1, "a granted group goes to the coordinator");
    session.complete(
        ops[0].0,
        KafkaOpResult::Group(GroupAnswer::Heartbeat(0)),
        &mut out,
    );
    out.clear();
    let ops = run(&mut session, &heartbeat(2, "other"), &mut out);
    assert!(ops.is_empty());
    assert_eq!(
        heartbeat_error(&out),
        ErrorCode::GroupAuthorizationFailed.code()
    );
    // The list changes: the live connection's next request meets the new one.
    acl.set("topic readwrite t/#\n");
    out.clear();
    let ops = run(&mut session, &heartbeat(3, "g1"), &mut out);
    assert!(ops.is_empty());
    assert_eq!(
        heartbeat_error(&out),
        ErrorCode::GroupAuthorizationFailed.code()
    );
}

#[test]
fn produce_to_a_topic_without_write_is_refused_per_topic() {
    let session = session_with(&switchable());
    let partition = |name: &str| ProduceTopic {
        name: name.into(),
        partitions: vec![(0, ProduceRecords::Nothing)],
    };
    let op = KafkaOp::Produce {
        acks: 1,
        topics: vec![partition("t"), partition("w"), partition("r")],
        create_missing: true,
        partitions: 1,
        topics_max: 10,
        routed: Vec::new(),
    };
    let Authorized::Run(KafkaOp::Produce { topics, .. }, None) = session.authorize(op) else {
        panic!("a produce runs with what it may write");
    };
    let refused: Vec<bool> = (topics.iter())
        .map(|t| matches!(t.partitions[0].1, ProduceRecords::Refused { code, .. } if code == 29))
        .collect();
    assert_eq!(refused, [false, false, true]);
}

#[test]
fn metadata_lists_only_what_the_client_may_describe_and_names_the_refused() {
    let session = session_with(&switchable());
    let topic = |name: &str, error_code: i16| weir_kafka::metadata::Topic {
        error_code,
        name: Some(name.into()),
        topic_id: [0; 16],
        partitions: 1,
    };
    let listing = KafkaOp::Metadata {
        topics: None,
        topic_ids: Vec::new(),
        create_missing: false,
        partitions: 1,
        topics_max: 10,
    };
    let Authorized::Run(_, Some(amend)) = session.authorize(listing) else {
        panic!("a listing is amended");
    };
    let mut result = KafkaOpResult::Topics(Ok(vec![topic("t", 0), topic("x", 0), topic("w", 0)]));
    amend.apply(&mut result);
    let KafkaOpResult::Topics(Ok(listed)) = &result else {
        panic!()
    };
    let names: Vec<_> = listed.iter().filter_map(|t| t.name.as_deref()).collect();
    assert_eq!(names, ["t", "w"]);

    let named = KafkaOp::Metadata {
        topics: Some(vec!["t".into(), "x".into()]),
        topic_ids: Vec::new(),
        create_missing: true,
        partitions: 1,
        topics_max: 10,
    };
    let Authorized::Run(
        KafkaOp::Metadata {
            topics,
            create_missing,
            ..
        },
        Some(amend),
    ) = session.authorize(named)
    else {
        panic!("named topics are amended");
    };
    assert_eq!(
        topics,
        Some(vec!["t".to_owned()]),
        "x is never looked up nor created"
    );
    assert!(create_missing, "t may be written: it may be created");
    let mut result = KafkaOpResult::Topics(Ok(vec![topic("t", 0)]));
    amend.apply(&mut result);
    assert_eq!(
        result,
        KafkaOpResult::Topics(Ok(vec![
            topic("t", 0),
            weir_kafka::metadata::Topic {
                error_code: ErrorCode::TopicAuthorizationFailed.code(),
                name: Some("x".into()),
                topic_id: [0; 16],
                partitions: 0,
            }
        ]))
    );
}

#[test]
fn an_idempotent_producer_id_needs_write_somewhere() {
    let acl = switchable();
    let mut session = session_with(&acl);
    let mut out = Vec::new();
    assert_eq!(
        run(&mut session, &init_producer_id(1, false), &mut out).len(),
        1
    );
    acl.set("topic read t/#\n");
    let mut session = session_with(&acl);
    let mut out = Vec::new();
    assert!(run(&mut session, &init_producer_id(2, false), &mut out).is_empty());
    // Size, correlation id, throttle time, then the error code.
    let code = i16::from_be_bytes([out[12], out[13]]);
    assert_eq!(code, ErrorCode::ClusterAuthorizationFailed.code());
}
