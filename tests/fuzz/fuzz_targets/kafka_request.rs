//! Any bytes a client can send, through a whole Kafka session: framing, headers, every
//! request decoder, the answers written inline, and (for requests that become operations)
//! the answer to their failure; group requests also go through the coordinator.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use weir_core::kafka::coordinator::{Action, Coordinator, GroupLimits};
use weir_core::kafka::{KafkaOp, KafkaSession, KafkaSettings};
use weir_core::log_store::{EmptyStore, StoreError};

fuzz_target!(|data: &[u8]| {
    let settings = Arc::new(KafkaSettings {
        store: Arc::new(EmptyStore),
        request_bytes_max: 1 << 20,
        advertised_host: "localhost".into(),
        advertised_port: 9092,
        auto_create_topics: true,
        auto_create_partitions: 1,
        topics_max: 10,
        fetch_bytes_max: 1 << 20,
        batch_decompressed_bytes_max: 1 << 20,
        auth: Arc::new(weir_core::auth::AllowAll),
        acl: Arc::new(weir_core::acl::NoAcl),
        refused_auth_delay_ms: 0,
    });
    let limits = GroupLimits {
        session_timeout_ms_min: 1,
        session_timeout_ms_max: 60_000,
        initial_rebalance_delay_ms: 0,
        members_max: 10,
        groups_max: 10,
    };
    let mut coordinator = Coordinator::new(limits, 1);
    let mut session = KafkaSession::new(settings, "/127.0.0.1".into());
    let mut out = Vec::new();
    let mut ops = Vec::new();
    let mut input = data;
    // Feed the input in two halves, so requests split across reads are exercised too.
    for _ in 0..2 {
        let used = match session.on_bytes(input, &mut out, 4 << 20, &mut ops, 0) {
            Ok(used) => used,
            Err(_) => break,
        };
        input = &input[used..];
        let mut actions = Vec::new();
        for (token, op) in ops.drain(..) {
            match op {
                KafkaOp::Group(op) => {
                    coordinator.handle(token, op, 0, &EmptyStore, &mut actions);
                }
                op => session.complete(token, op.failed(StoreError::Full("fuzz".into())), &mut out),
            }
        }
        coordinator.tick(60_000, &mut actions);
        for action in actions {
            match action {
                Action::Reply(token, result) => session.complete(token, result, &mut out),
                Action::Write(token, op) => {
                    let result = weir_core::kafka::run_op(op, &EmptyStore);
                    session.complete(token, result, &mut out);
                }
            }
        }
        if session.tick(60_000, &mut out).is_err() {
            // A refused authentication closes the connection.
            break;
        }
        out.clear();
    }
});
