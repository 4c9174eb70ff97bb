//! The table of Kafka APIs, one entry per API key naming the handler that answers it, and the
//! dispatch of every request a connection receives to its handler
//! ([`KafkaSession::on_bytes`]).
//!
//! Which versions of each API are implemented is the codec's own table, [`IMPLEMENTED`] (what
//! ApiVersions advertises); a test checks that it and [`APIS`] name the same keys. A handler
//! parses its request (any version outside the codec's range closes the connection, see
//! [`request_body`]) and either answers at once (`answer_now`) or hands an operation to the
//! broker (`defer`) whose result `operations.rs` turns into the answer. A new API joins in one
//! place here, beside its codec's entry in [`IMPLEMENTED`] (and its operation, if it needs
//! the writer thread).

use weir_kafka::error::ErrorCode;
use weir_kafka::header::{self, HeaderStart};
use weir_kafka::wire::WireError;
use weir_kafka::{
    api_versions, cluster, create_partitions, create_topics, delete_records, delete_topics,
    describe_configs, fetch, find_coordinator, init_producer_id, membership, metadata, offsets,
    produce, sasl,
};

use weir_kafka::api_versions::IMPLEMENTED;
use weir_kafka::frame::{FrameDecoder, FrameError};

use super::admin;
use super::authorize::Authorized;
use super::op::{GroupOp, KafkaOp, ProduceTopic};
use super::operations::{check_produce_records, produce_failed};
use super::session::KafkaSession;
use super::settings::CLUSTER_ID;

/// One request, as its handler gets it.
#[derive(Debug)]
pub(super) struct Request<'a> {
    /// The whole frame, header included.
    pub(super) frame: &'a [u8],
    /// The header's first fields.
    pub(super) start: HeaderStart,
    /// The session's monotonic time.
    pub(super) now_ms: u64,
}

/// Answers `request` into `out`, or hands operations to `ops`.
pub(super) type Handler = fn(
    &mut KafkaSession,
    &Request<'_>,
    &mut Vec<u8>,
    &mut Vec<(u64, KafkaOp)>,
) -> Result<(), KafkaError>;

/// One API this broker answers.
#[derive(Debug)]
pub(super) struct Api {
    /// The API key.
    pub(super) key: i16,
    /// Kafka's name for it, for logs.
    pub(super) name: &'static str,
    /// What answers it.
    pub(super) handle: Handler,
}

/// Every API the broker answers, in API key order.
pub(super) const APIS: &[Api] = &[
    api(produce::API_KEY, "Produce", produce),
    api(fetch::FETCH_KEY, "Fetch", |s, r, out, _| {
        s.fetch(r.frame, r.start, out, r.now_ms)
    }),
    api(fetch::LIST_OFFSETS_KEY, "ListOffsets", |s, r, out, _| {
        s.list_offsets(r.frame, r.start, out)
    }),
    api(metadata::API_KEY, "Metadata", metadata),
    api(offsets::COMMIT_KEY, "OffsetCommit", |s, r, out, ops| {
        let parse = offsets::parse_commit;
        store_op(s, r, out, ops, offsets::commit_header_version, parse, |c| {
            KafkaOp::Group(GroupOp::Commit(c))
        })
    }),
    api(offsets::FETCH_KEY, "OffsetFetch", |s, r, out, ops| {
        let parse = offsets::parse_fetch;
        store_op(
            s,
            r,
            out,
            ops,
            offsets::fetch_header_version,
            parse,
            KafkaOp::FetchOffsets,
        )
    }),
    api(
        find_coordinator::API_KEY,
        "FindCoordinator",
        find_coordinator,
    ),
    api(membership::JOIN_KEY, "JoinGroup", join_group),
    api(membership::HEARTBEAT_KEY, "Heartbeat", |s, r, out, ops| {
        let parse = membership::parse_heartbeat;
        group_op(
            s,
            r,
            out,
            ops,
            membership::HEARTBEAT_KEY,
            parse,
            GroupOp::Heartbeat,
        )
    }),
    api(membership::LEAVE_KEY, "LeaveGroup", |s, r, out, ops| {
        let parse = membership::parse_leave;
        group_op(s, r, out, ops, membership::LEAVE_KEY, parse, GroupOp::Leave)
    }),
    api(membership::SYNC_KEY, "SyncGroup", |s, r, out, ops| {
        let parse = membership::parse_sync;
        group_op(s, r, out, ops, membership::SYNC_KEY, parse, GroupOp::Sync)
    }),
    api(
        membership::DESCRIBE_KEY,
        "DescribeGroups",
        |s, r, out, ops| {
            let parse = membership::parse_describe;
            // Authorized operations are not reported (Kafka's "not provided").
            group_op(
                s,
                r,
                out,
                ops,
                membership::DESCRIBE_KEY,
                parse,
                |(groups, _operations)| GroupOp::Describe(groups),
            )
        },
    ),
    api(membership::LIST_KEY, "ListGroups", |s, r, out, ops| {
        let parse = membership::parse_list;
        group_op(s, r, out, ops, membership::LIST_KEY, parse, GroupOp::List)
    }),
    api(sasl::HANDSHAKE_KEY, "SaslHandshake", |s, r, out, _| {
        s.sasl_handshake(r.frame, r.start, out)
    }),
    api(api_versions::API_KEY, "ApiVersions", api_versions),
    api(create_topics::API_KEY, "CreateTopics", create_topics),
    api(delete_topics::API_KEY, "DeleteTopics", |s, r, out, ops| {
        let parse = delete_topics::parse_request;
        store_op(
            s,
            r,
            out,
            ops,
            delete_topics::request_header_version,
            parse,
            |targets| KafkaOp::DeleteTopics { targets },
        )
    }),
    api(
        delete_records::API_KEY,
        "DeleteRecords",
        |s, r, out, ops| {
            let parse = delete_records::parse_request;
            store_op(
                s,
                r,
                out,
                ops,
                delete_records::request_header_version,
                parse,
                KafkaOp::DeleteRecords,
            )
        },
    ),
    api(
        init_producer_id::API_KEY,
        "InitProducerId",
        init_producer_id,
    ),
    api(
        cluster::EPOCH_KEY,
        "OffsetForLeaderEpoch",
        |s, r, out, _| s.leader_epochs(r.frame, r.start, out),
    ),
    api(
        describe_configs::API_KEY,
        "DescribeConfigs",
        |s, r, out, ops| {
            let parse = describe_configs::parse_request;
            let header_version = describe_configs::request_header_version;
            store_op(
                s,
                r,
                out,
                ops,
                header_version,
                parse,
                KafkaOp::DescribeConfigs,
            )
        },
    ),
    api(
        sasl::AUTHENTICATE_KEY,
        "SaslAuthenticate",
        |s, r, out, _| s.sasl_authenticate(r, out),
    ),
    api(
        create_partitions::API_KEY,
        "CreatePartitions",
        |s, r, out, ops| {
            let parse = create_partitions::parse_request;
            let header_version = create_partitions::request_header_version;
            store_op(
                s,
                r,
                out,
                ops,
                header_version,
                parse,
                KafkaOp::CreatePartitions,
            )
        },
    ),
    api(membership::DELETE_KEY, "DeleteGroups", |s, r, out, ops| {
        let parse = membership::parse_delete;
        group_op(
            s,
            r,
            out,
            ops,
            membership::DELETE_KEY,
            parse,
            GroupOp::Delete,
        )
    }),
    api(cluster::DESCRIBE_KEY, "DescribeCluster", describe_cluster),
];

const fn api(key: i16, name: &'static str, handle: Handler) -> Api {
    Api { key, name, handle }
}

/// The API with key `key`, if this broker answers it.
pub(super) fn find(key: i16) -> Option<&'static Api> {
    APIS.iter().find(|api| api.key == key)
}

/// Kafka's name of the API with key `key`, as far as this broker knows it.
pub(super) fn name(key: i16) -> &'static str {
    find(key).map_or("unknown", |api| api.name)
}

/// The body of `request` parsed by `parse`, once its header (of `header_version`) parses.
fn parsed<'a, T>(
    request: &Request<'a>,
    header_version: impl Fn(i16) -> u8,
    parse: fn(&'a [u8], i16) -> Result<T, WireError>,
) -> Result<T, KafkaError> {
    let body = request_body(request.frame, request.start, header_version)?;
    Ok(parse(body, request.start.api_version)?)
}

/// Hands `op` on, once the access-control list lets the client ask for it
/// ([`KafkaSession::authorize`]); the answer waits in order for its result. What the list
/// refuses outright is answered at once, in order.
fn defer(
    session: &mut KafkaSession,
    request: &Request<'_>,
    (out, ops): (&mut Vec<u8>, &mut Vec<(u64, KafkaOp)>),
    op: KafkaOp,
) -> Result<(), KafkaError> {
    match session.authorize(op) {
        Authorized::Run(op, amend) => session.defer(request.start, (op, amend), ops),
        Authorized::Refused(result) => session.answer_result(request.start, result, out),
    }
    Ok(())
}

fn api_versions(
    session: &mut KafkaSession,
    request: &Request<'_>,
    out: &mut Vec<u8>,
    _: &mut Vec<(u64, KafkaOp)>,
) -> Result<(), KafkaError> {
    // Parse the whole header so a malformed one is refused; the body (client software name
    // and version in v3+) is not needed to answer. A version outside the range is answered
    // in v0 with UNSUPPORTED_VERSION, so the client can retry with one from the table.
    let start = request.start;
    let header_version = api_versions::request_header_version(start.api_version);
    header::RequestHeader::parse(request.frame, header_version)?;
    session.answer_now(out, |body| {
        api_versions::write_response(
            body,
            start.correlation_id,
            start.api_version,
            api_versions::IMPLEMENTED,
        )
    });
    Ok(())
}

fn init_producer_id(
    session: &mut KafkaSession,
    request: &Request<'_>,
    out: &mut Vec<u8>,
    ops: &mut Vec<(u64, KafkaOp)>,
) -> Result<(), KafkaError> {
    let header_version = init_producer_id::request_header_version;
    let parsed = parsed(request, header_version, init_producer_id::parse_request)?;
    // An idempotent producer needs write on some topic (Kafka's rule since 3.0).
    let refused = if parsed.transactional_id.is_some() {
        ErrorCode::InvalidRequest
    } else if !session.caller().writes_somewhere() {
        ErrorCode::ClusterAuthorizationFailed
    } else {
        return defer(session, request, (out, ops), KafkaOp::AllocateProducerId);
    };
    let start = request.start;
    session.answer_now(out, |body| {
        init_producer_id::write_response(
            body,
            start.correlation_id,
            start.api_version,
            refused.code(),
            -1,
            -1,
        )
    });
    Ok(())
}

fn find_coordinator(
    session: &mut KafkaSession,
    request: &Request<'_>,
    out: &mut Vec<u8>,
    _: &mut Vec<(u64, KafkaOp)>,
) -> Result<(), KafkaError> {
    let header_version = find_coordinator::request_header_version;
    let asked = parsed(request, header_version, find_coordinator::parse_request)?;
    let host = session.settings.advertised_host.clone();
    let port = session.settings.advertised_port;
    let transactions = "transactions are not supported";
    let caller = session.caller();
    let coordinators: Vec<_> = (asked.keys.iter())
        .map(|key| match asked.key_type {
            find_coordinator::KEY_TYPE_GROUP if !caller.group(key) => {
                find_coordinator::Coordinator {
                    key,
                    error_code: ErrorCode::GroupAuthorizationFailed.code(),
                    error_message: Some("not authorized to use the group (auth.acl_file)"),
                    node: (-1, "", -1),
                }
            }
            find_coordinator::KEY_TYPE_GROUP => find_coordinator::Coordinator {
                key,
                error_code: 0,
                error_message: None,
                node: (0, &host, port),
            },
            find_coordinator::KEY_TYPE_TRANSACTION => find_coordinator::Coordinator {
                key,
                error_code: ErrorCode::CoordinatorNotAvailable.code(),
                error_message: Some(transactions),
                node: (-1, "", -1),
            },
            _ => find_coordinator::Coordinator {
                key,
                error_code: ErrorCode::InvalidRequest.code(),
                error_message: Some("unknown coordinator key type"),
                node: (-1, "", -1),
            },
        })
        .collect();
    let start = request.start;
    session.answer_now(out, |body| {
        find_coordinator::write_response(
            body,
            start.correlation_id,
            start.api_version,
            &coordinators,
        )
    });
    Ok(())
}

fn describe_cluster(
    session: &mut KafkaSession,
    request: &Request<'_>,
    out: &mut Vec<u8>,
    _: &mut Vec<(u64, KafkaOp)>,
) -> Result<(), KafkaError> {
    let endpoint_type = parsed(
        request,
        cluster::describe_header_version,
        cluster::parse_describe,
    )?;
    let settings = session.settings.clone();
    let node = cluster::Node {
        id: 0,
        host: &settings.advertised_host,
        port: settings.advertised_port,
    };
    let start = request.start;
    session.answer_now(out, |body| {
        cluster::write_describe_response(
            body,
            start.correlation_id,
            start.api_version,
            endpoint_type,
            CLUSTER_ID,
            node,
        )
    });
    Ok(())
}

fn metadata(
    session: &mut KafkaSession,
    request: &Request<'_>,
    out: &mut Vec<u8>,
    ops: &mut Vec<(u64, KafkaOp)>,
) -> Result<(), KafkaError> {
    let asked = parsed(
        request,
        metadata::request_header_version,
        metadata::parse_request,
    )?;
    let settings = &session.settings;
    let op = KafkaOp::Metadata {
        topics: asked.topics,
        topic_ids: asked.topic_ids,
        create_missing: asked.allow_auto_topic_creation && settings.auto_create_topics,
        partitions: settings.auto_create_partitions,
        topics_max: settings.topics_max,
    };
    defer(session, request, (out, ops), op)
}

fn produce(
    session: &mut KafkaSession,
    request: &Request<'_>,
    out: &mut Vec<u8>,
    ops: &mut Vec<(u64, KafkaOp)>,
) -> Result<(), KafkaError> {
    let asked = parsed(
        request,
        produce::request_header_version,
        produce::parse_request,
    )?;
    // Every batch is checked here, on the connection's shard (compressed ones decompressed),
    // so the log's writer thread never inflates or walks records; a partition with a bad
    // batch is sent on as corrupt and answered CORRUPT_MESSAGE.
    let cap = session.settings.batch_decompressed_bytes_max;
    let topics: Vec<ProduceTopic> = (asked.topics.iter())
        .map(|t| ProduceTopic {
            name: t.name.to_owned(),
            partitions: (t.partitions.iter())
                .map(|p| (p.index, check_produce_records(p.records, cap)))
                .collect(),
        })
        .collect();
    // Transactions are not supported; acks must be -1, 0 or 1.
    let refused = if asked.transactional_id.is_some() {
        Some(ErrorCode::InvalidRequest.code())
    } else if !matches!(asked.acks, -1..=1) {
        Some(ErrorCode::InvalidRequiredAcks.code())
    } else {
        None
    };
    if let Some(error) = refused {
        if asked.acks == 0 {
            // A client that asked for no answer gets none, refused or not.
            return Ok(());
        }
        let answers: Vec<_> = topics.iter().map(|t| produce_failed(t, error)).collect();
        let start = request.start;
        session.answer_now(out, |body| {
            produce::write_response(body, start.correlation_id, start.api_version, &answers)
        });
        return Ok(());
    }
    let settings = &session.settings;
    let op = KafkaOp::Produce {
        acks: asked.acks,
        topics,
        create_missing: settings.auto_create_topics,
        partitions: settings.auto_create_partitions,
        topics_max: settings.topics_max,
        routed: Vec::new(),
    };
    if asked.acks == 0 {
        // No answer: the operation runs and its result goes nowhere.
        if let Authorized::Run(op, _) = session.authorize(op) {
            session.hand_on(op, ops);
        }
        return Ok(());
    }
    defer(session, request, (out, ops), op)
}

fn create_topics(
    session: &mut KafkaSession,
    request: &Request<'_>,
    out: &mut Vec<u8>,
    ops: &mut Vec<(u64, KafkaOp)>,
) -> Result<(), KafkaError> {
    let header_version = create_topics::request_header_version;
    let op = KafkaOp::CreateTopics {
        request: parsed(request, header_version, create_topics::parse_request)?,
        defaults: admin::CreateDefaults {
            partitions: session.settings.auto_create_partitions,
            topics_max: session.settings.topics_max,
        },
    };
    defer(session, request, (out, ops), op)
}

fn join_group(
    session: &mut KafkaSession,
    request: &Request<'_>,
    out: &mut Vec<u8>,
    ops: &mut Vec<(u64, KafkaOp)>,
) -> Result<(), KafkaError> {
    let header_version = |v| membership::request_header_version(membership::JOIN_KEY, v);
    let asked = parsed(request, header_version, membership::parse_join)?;
    let version = header_version(request.start.api_version);
    let (header, _) = header::RequestHeader::parse(request.frame, version)?;
    let op = GroupOp::Join {
        request: asked,
        client_id: header.client_id.unwrap_or_default().to_owned(),
        client_host: session.client_host.clone(),
    };
    defer(session, request, (out, ops), KafkaOp::Group(op))
}

/// A request the writer thread answers: parsed, wrapped into its operation, handed on.
fn store_op<'a, T>(
    session: &mut KafkaSession,
    request: &Request<'a>,
    out: &mut Vec<u8>,
    ops: &mut Vec<(u64, KafkaOp)>,
    header_version: impl Fn(i16) -> u8,
    parse: fn(&'a [u8], i16) -> Result<T, WireError>,
    wrap: fn(T) -> KafkaOp,
) -> Result<(), KafkaError> {
    let asked = parsed(request, header_version, parse)?;
    defer(session, request, (out, ops), wrap(asked))
}

/// A request of the classic group protocol with key `key`: parsed with its header version
/// and handed to the group coordinator.
fn group_op<'a, T>(
    session: &mut KafkaSession,
    request: &Request<'a>,
    out: &mut Vec<u8>,
    ops: &mut Vec<(u64, KafkaOp)>,
    key: i16,
    parse: fn(&'a [u8], i16) -> Result<T, WireError>,
    wrap: fn(T) -> GroupOp,
) -> Result<(), KafkaError> {
    let header_version = |v| membership::request_header_version(key, v);
    let asked = parsed(request, header_version, parse)?;
    defer(session, request, (out, ops), KafkaOp::Group(wrap(asked)))
}

impl KafkaSession {
    /// Takes complete requests at the start of `input`, appending answers to `out` (in
    /// request order) and operations to `ops`, until `out` holds `out_limit` bytes, the
    /// queue of answers behind a pending operation is full, or no complete request is left.
    /// Returns the bytes consumed; the rest waits. An error means the connection must be
    /// closed (answers already in `out` may still be sent).
    pub fn on_bytes(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        out_limit: usize,
        ops: &mut Vec<(u64, KafkaOp)>,
        now_ms: u64,
    ) -> Result<usize, KafkaError> {
        let mut used = 0;
        while out.len() + self.queued_bytes < out_limit
            && !self.saturated()
            && let Some((frame, len)) = self.next_frame(&input[used..])?
        {
            if self.sasl_raw {
                self.sasl_raw_token(frame, out, now_ms)?;
            } else {
                self.handle(frame, out, ops, now_ms)?;
            }
            self.requests += 1;
            used += len;
        }
        Ok(used)
    }
    /// The next complete frame: a request, or a raw SASL token (which may be shorter than any
    /// request) after a version 0 SaslHandshake.
    fn next_frame<'a>(&self, input: &'a [u8]) -> Result<Option<(&'a [u8], usize)>, KafkaError> {
        if self.sasl_raw {
            let raw = FrameDecoder::new(0, self.settings.request_bytes_max);
            return Ok(raw.decode(input)?);
        }
        Ok(self.decoder.decode(input)?)
    }

    fn handle(
        &mut self,
        frame: &[u8],
        out: &mut Vec<u8>,
        ops: &mut Vec<(u64, KafkaOp)>,
        now_ms: u64,
    ) -> Result<(), KafkaError> {
        let start = header::peek(frame)?;
        let Some(api) = find(start.api_key) else {
            return Err(KafkaError::NotImplemented {
                api_key: start.api_key,
                api_version: start.api_version,
            });
        };
        if !self.may_call(start.api_key) {
            return Err(KafkaError::Unauthenticated {
                api_key: start.api_key,
            });
        }
        self.note_client_id(frame);
        let request = Request {
            frame,
            start,
            now_ms,
        };
        (api.handle)(self, &request, out, ops)
    }
}

/// Why a connection must close. Each names what the client sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KafkaError {
    /// The size prefix is invalid or over the limit.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The request header or body is malformed.
    #[error("malformed request: {0}")]
    Malformed(#[from] WireError),
    /// A request other than ApiVersions and SASL's before the client authenticated (or, with
    /// anonymous clients refused, without SASL).
    #[error("API key {api_key} ({}) before SASL authentication", name(*api_key))]
    Unauthenticated {
        /// The API key.
        api_key: i16,
    },
    /// SASL failed or was used out of order (the answer says so to the client).
    #[error("SASL: {0}")]
    Sasl(String),
    /// An API this broker does not implement, or a version outside its range.
    #[error(
        "API key {api_key} ({}) version {api_version} is not implemented by this broker",
        name(*api_key)
    )]
    NotImplemented {
        /// The API key.
        api_key: i16,
        /// The version asked for.
        api_version: i16,
    },
}

/// The body of a request whose API and version [`IMPLEMENTED`] lists, once its header (of
/// version `header_version(api_version)`) parses; any other version closes the connection.
pub(super) fn request_body(
    frame: &[u8],
    start: header::HeaderStart,
    header_version: impl Fn(i16) -> u8,
) -> Result<&[u8], KafkaError> {
    let listed = IMPLEMENTED.iter().any(|range| {
        range.api_key == start.api_key && (range.min..=range.max).contains(&start.api_version)
    });
    if !listed {
        return Err(KafkaError::NotImplemented {
            api_key: start.api_key,
            api_version: start.api_version,
        });
    }
    let (_, body) = header::RequestHeader::parse(frame, header_version(start.api_version))?;
    Ok(body)
}
