use std::sync::Arc;

use super::*;
use crate::log_store::{EmptyStore, StoreError};

mod acl;
mod sasl;
use coordinator::{GroupAnswer, GroupOp};
use weir_kafka::error::ErrorCode;
use weir_kafka::frame::{FrameError, write_frame};
use weir_kafka::{membership, offsets};

fn settings() -> Arc<KafkaSettings> {
    Arc::new(KafkaSettings {
        store: Arc::new(EmptyStore),
        request_bytes_max: 1 << 20,
        advertised_host: "localhost".into(),
        advertised_port: 9092,
        auto_create_topics: true,
        auto_create_partitions: 1,
        topics_max: 10,
        fetch_bytes_max: 1 << 20,
        batch_decompressed_bytes_max: 1 << 20,
        auth: Arc::new(crate::auth::AllowAll),
        acl: Arc::new(crate::acl::NoAcl),
        refused_auth_delay_ms: 0,
    })
}

/// A request of `api_key` with no body but an ApiVersions v3+ one (its client software
/// name and version).
fn request(api_key: i16, version: i16, correlation: i32) -> Vec<u8> {
    let body: &[u8] = if version >= 3 {
        &[0, 5, b'w', b'e', b'i', b'r', 4, b'0', b'.', b'0', 0]
    } else {
        &[]
    };
    frame(api_key, version, correlation, body)
}

/// A request frame of `api_key` with a v1 header (client id `test`), then `body`.
fn frame(api_key: i16, version: i16, correlation: i32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame(&mut out, |b| {
        b.extend_from_slice(&api_key.to_be_bytes());
        b.extend_from_slice(&version.to_be_bytes());
        b.extend_from_slice(&correlation.to_be_bytes());
        b.extend_from_slice(&[0, 4]);
        b.extend_from_slice(b"test");
        b.extend_from_slice(body);
    });
    out
}

/// InitProducerId v0: header v1, then a null transactional id and a timeout.
fn init_producer_id(correlation: i32, transactional: bool) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame(&mut out, |b| {
        b.extend_from_slice(&22i16.to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&correlation.to_be_bytes());
        b.extend_from_slice(&[0, 4]);
        b.extend_from_slice(b"test");
        if transactional {
            b.extend_from_slice(&[0, 2, b't', b'x']);
        } else {
            b.extend_from_slice(&(-1i16).to_be_bytes());
        }
        b.extend_from_slice(&60_000i32.to_be_bytes());
    });
    out
}

/// Correlation ids of the frames in `out`, in order.
fn correlations(out: &[u8]) -> Vec<i32> {
    let mut ids = Vec::new();
    let mut at = 0;
    while at + 8 <= out.len() {
        let len = u32::from_be_bytes(out[at..at + 4].try_into().unwrap()) as usize;
        ids.push(i32::from_be_bytes(out[at + 4..at + 8].try_into().unwrap()));
        at += 4 + len;
    }
    ids
}

fn run(session: &mut KafkaSession, input: &[u8], out: &mut Vec<u8>) -> Vec<(u64, KafkaOp)> {
    let mut ops = Vec::new();
    let used = session
        .on_bytes(input, out, usize::MAX, &mut ops, 0)
        .unwrap();
    assert_eq!(used, input.len());
    ops
}

#[test]
fn pipelined_requests_are_answered_in_order_and_partial_ones_wait() {
    let mut session = KafkaSession::new(settings(), String::new());
    let mut input = request(18, 0, 1);
    input.extend(request(18, 3, 2));
    let partial = request(18, 1, 3);
    input.extend_from_slice(&partial[..5]);
    let mut out = Vec::new();
    let mut ops = Vec::new();
    let used = session
        .on_bytes(&input, &mut out, usize::MAX, &mut ops, 0)
        .unwrap();
    assert_eq!(used, input.len() - 5);
    assert_eq!(session.requests(), 2);
    assert_eq!(correlations(&out), [1, 2]);
    assert!(ops.is_empty());
}

#[test]
fn answers_behind_an_operation_wait_for_it_in_order() {
    let mut session = KafkaSession::new(settings(), String::new());
    let mut input = request(18, 0, 1);
    input.extend(init_producer_id(2, false));
    input.extend(request(18, 0, 3));
    input.extend(init_producer_id(4, false));
    input.extend(request(18, 0, 5));
    let mut out = Vec::new();
    let ops = run(&mut session, &input, &mut out);
    assert_eq!(
        correlations(&out),
        [1],
        "only the answer before the first operation"
    );
    assert_eq!(ops.len(), 2);
    // The second operation finishing first releases nothing.
    session.complete(ops[1].0, KafkaOpResult::ProducerId(Ok(8)), &mut out);
    assert_eq!(correlations(&out), [1]);
    session.complete(ops[0].0, KafkaOpResult::ProducerId(Ok(7)), &mut out);
    assert_eq!(correlations(&out), [1, 2, 3, 4, 5]);
    assert!(!session.waiting());
    // Answer 2 carries producer id 7, epoch 0, no error.
    let second = 4 + u32::from_be_bytes(out[0..4].try_into().unwrap()) as usize;
    assert_eq!(&out[second + 8..second + 8 + 4], &[0, 0, 0, 0], "throttle");
    assert_eq!(&out[second + 12..second + 14], &[0, 0], "error code");
    assert_eq!(&out[second + 14..second + 22], &7i64.to_be_bytes());
}

#[test]
fn commits_go_to_known_partitions_of_valid_groups() {
    let commit = |group: &str, generation_id, member: &str| offsets::CommitRequest {
        group_id: group.into(),
        generation_id,
        member_id: member.into(),
        topics: vec![(
            "t".into(),
            vec![offsets::CommitPartition {
                index: 0,
                offset: 1,
                leader_epoch: -1,
                metadata: String::new(),
            }],
        )],
    };
    // Membership is the coordinator's to check: here only the group id and the
    // partitions matter.
    let code = |request| groups::commit_offsets(&EmptyStore, request)[0].1[0].1;
    let long = "g".repeat(crate::log_store::GROUP_ID_BYTES_MAX + 1);
    assert_eq!(
        code(commit(&long, -1, "")),
        ErrorCode::InvalidGroupId.code()
    );
    let unknown = ErrorCode::UnknownTopicOrPartition.code();
    assert_eq!(code(commit("g", -1, "m")), unknown);
    assert_eq!(code(commit("", -1, "")), unknown);
    // v0/v1 answers have no group error field: it is repeated on each partition asked.
    let asked = vec![(long, Some(vec![("t".to_owned(), vec![0, 1])]))];
    let fetched = groups::fetch_offsets(&EmptyStore, asked);
    assert_eq!(fetched[0].error_code, ErrorCode::InvalidGroupId.code());
    let codes: Vec<_> = fetched[0].topics[0]
        .1
        .iter()
        .map(|p| p.error_code)
        .collect();
    assert_eq!(codes, [ErrorCode::InvalidGroupId.code(); 2]);
}

#[test]
fn group_requests_go_to_the_coordinator_with_the_client_and_come_back_answered() {
    // DescribeGroups v0 (header v1, client id "test"): one group.
    let mut describe = Vec::new();
    write_frame(&mut describe, |b| {
        b.extend_from_slice(&membership::DESCRIBE_KEY.to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&7i32.to_be_bytes());
        b.extend_from_slice(&[0, 4]);
        b.extend_from_slice(b"test");
        b.extend_from_slice(&[0, 0, 0, 1, 0, 1, b'g']);
    });
    // JoinGroup v0: group "g", session 6 s, no member id, "consumer", one protocol.
    let mut join = Vec::new();
    write_frame(&mut join, |b| {
        b.extend_from_slice(&membership::JOIN_KEY.to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&8i32.to_be_bytes());
        b.extend_from_slice(&[0, 4]);
        b.extend_from_slice(b"test");
        b.extend_from_slice(&[0, 1, b'g', 0, 0, 0x17, 0x70, 0, 0, 0, 8]);
        b.extend_from_slice(b"consumer");
        b.extend_from_slice(&[0, 0, 0, 1, 0, 1, b'r', 0, 0, 0, 0]);
    });
    let mut session = KafkaSession::new(settings(), "/10.0.0.7".into());
    let mut out = Vec::new();
    let ops = run(&mut session, &[describe, join].concat(), &mut out);
    assert!(out.is_empty(), "both wait for the coordinator");
    let [
        (first, KafkaOp::Group(GroupOp::Describe(groups))),
        (second, joined),
    ] = &ops[..]
    else {
        panic!("expected two group operations, got {ops:?}");
    };
    assert_eq!(groups, &["g"]);
    let KafkaOp::Group(GroupOp::Join {
        request,
        client_id,
        client_host,
    }) = joined
    else {
        panic!("expected a join, got {joined:?}");
    };
    assert_eq!(
        (request.session_timeout_ms, request.protocols.len()),
        (6000, 1)
    );
    assert_eq!(
        (client_id.as_str(), client_host.as_str()),
        ("test", "/10.0.0.7")
    );
    let answer =
        membership::JoinResponse::failed(ErrorCode::RebalanceInProgress.code(), "m".into());
    session.complete(
        *second,
        KafkaOpResult::Group(GroupAnswer::Joined(answer)),
        &mut out,
    );
    assert!(out.is_empty(), "answers keep request order");
    let described = GroupAnswer::Described(Vec::new());
    session.complete(*first, KafkaOpResult::Group(described), &mut out);
    assert_eq!(correlations(&out), [7, 8]);
    let second_frame = 4 + u32::from_be_bytes(out[0..4].try_into().unwrap()) as usize;
    assert_eq!(
        &out[second_frame + 8..second_frame + 10],
        &ErrorCode::RebalanceInProgress.code().to_be_bytes()
    );
}

#[test]
fn the_advertised_table_is_in_key_order_without_repeats() {
    assert!(IMPLEMENTED.windows(2).all(|w| w[0].api_key < w[1].api_key));
}

#[test]
fn every_advertised_api_has_one_handler_and_every_handler_is_advertised() {
    let advertised: Vec<i16> = IMPLEMENTED.iter().map(|range| range.api_key).collect();
    let handled: Vec<i16> = apis::APIS.iter().map(|api| api.key).collect();
    assert_eq!(handled, advertised);
    assert_eq!(apis::name(18), "ApiVersions");
    assert_eq!(apis::name(1000), "unknown");
}

#[test]
fn topics_asked_for_by_id_are_unknown_and_come_after_named_ones() {
    let op = KafkaOp::Metadata {
        topics: Some(vec!["missing".into()]),
        topic_ids: vec![[9; 16]],
        create_missing: false,
        partitions: 1,
        topics_max: 10,
    };
    let KafkaOpResult::Topics(Ok(topics)) = run_op(op, &EmptyStore) else {
        panic!("metadata answers with topics");
    };
    let codes: Vec<_> = topics
        .iter()
        .map(|t| (t.error_code, t.name.as_deref(), t.topic_id))
        .collect();
    assert_eq!(
        codes,
        [
            (
                ErrorCode::UnknownTopicOrPartition.code(),
                Some("missing"),
                [0; 16]
            ),
            (ErrorCode::UnknownTopicId.code(), None, [9; 16]),
        ]
    );
}

#[test]
fn transactional_ids_and_failed_allocations_get_error_codes() {
    let mut session = KafkaSession::new(settings(), String::new());
    let mut out = Vec::new();
    let ops = run(&mut session, &init_producer_id(1, true), &mut out);
    assert!(ops.is_empty());
    assert_eq!(
        &out[12..14],
        &ErrorCode::InvalidRequest.code().to_be_bytes()
    );
    out.clear();
    let ops = run(&mut session, &init_producer_id(2, false), &mut out);
    let failed = KafkaOpResult::ProducerId(Err(StoreError::Full("disk".into())));
    session.complete(ops[0].0, failed, &mut out);
    assert_eq!(
        &out[12..14],
        &ErrorCode::CoordinatorNotAvailable.code().to_be_bytes()
    );
}

#[test]
fn the_queue_behind_an_operation_is_bounded() {
    let mut session = KafkaSession::new(settings(), String::new());
    let mut input = init_producer_id(0, false);
    for i in 1..200 {
        input.extend(request(18, 0, i));
    }
    let (mut out, mut ops) = (Vec::new(), Vec::new());
    let used = session
        .on_bytes(&input, &mut out, usize::MAX, &mut ops, 0)
        .unwrap();
    assert!(used < input.len());
    assert_eq!(session.requests() as usize, ANSWERS_QUEUED_MAX);
}

#[test]
fn the_output_limit_holds_requests_back() {
    let mut session = KafkaSession::new(settings(), String::new());
    let one = request(18, 0, 1);
    let input: Vec<u8> = (0..10).flat_map(|_| one.clone()).collect();
    let (mut out, mut ops) = (Vec::new(), Vec::new());
    let used = session.on_bytes(&input, &mut out, 1, &mut ops, 0).unwrap();
    assert_eq!((used, session.requests()), (one.len(), 1));
}

#[test]
fn unimplemented_apis_and_bad_frames_close_the_connection() {
    let mut session = KafkaSession::new(settings(), String::new());
    let (mut out, mut ops) = (Vec::new(), Vec::new());
    assert_eq!(
        session.on_bytes(&request(1, 12, 1), &mut out, usize::MAX, &mut ops, 0),
        Err(KafkaError::NotImplemented {
            api_key: 1,
            api_version: 12
        })
    );
    let huge = (i32::MAX).to_be_bytes();
    assert!(matches!(
        session.on_bytes(&huge, &mut out, usize::MAX, &mut ops, 0),
        Err(KafkaError::Frame(FrameError::TooLarge { .. }))
    ));
    let mut bad = Vec::new();
    write_frame(&mut bad, |b| {
        b.extend_from_slice(&[0, 18, 0, 1, 0, 0, 0, 1, 0x7f, 0x7f])
    });
    assert!(matches!(
        session.on_bytes(&bad, &mut out, usize::MAX, &mut ops, 0),
        Err(KafkaError::Malformed(_))
    ));
    let mut v9 = init_producer_id(1, false);
    v9[6..8].copy_from_slice(&9i16.to_be_bytes());
    assert!(matches!(
        session.on_bytes(&v9, &mut out, usize::MAX, &mut ops, 0),
        Err(KafkaError::NotImplemented { api_key: 22, .. })
    ));
}
