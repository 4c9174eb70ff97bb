//! Kafka's checks against the access-control list (`auth.acl_file`), made as Apache Kafka
//! makes them, with topics mapped as the MQTT-Kafka contract says (docs/security.md):
//!
//! - A topic is checked as the MQTT filter `<topic>/#` ([`AclRules::allows_kafka_topic`]):
//!   producing needs write, fetching read; describing it (Metadata, ListOffsets,
//!   OffsetForLeaderEpoch, OffsetFetch, DescribeConfigs) read or write; creating it (also by
//!   auto-creation) or adding partitions write; deleting it or its records read and write.
//!   OffsetCommit needs read on the topics committed, as Kafka's does.
//! - A consumer group needs a `kafka-group` line: FindCoordinator, JoinGroup, SyncGroup,
//!   Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch, DescribeGroups, DeleteGroups.
//! - The broker itself: describing its configuration needs `topic readwrite #`; an idempotent
//!   producer id needs write on some topic (Kafka's rule since 3.0).
//!
//! What is refused is answered with TOPIC_AUTHORIZATION_FAILED, GROUP_AUTHORIZATION_FAILED or
//! CLUSTER_AUTHORIZATION_FAILED for that item while the rest of the request runs; a listing
//! (Metadata of every topic, ListGroups, OffsetFetch of every committed topic) leaves out what
//! the client may not describe, and a topic it may not describe is never created. The rules
//! are read anew for every request, so a reloaded list applies to live connections at once.
//! Without a list, nothing is checked.

use std::sync::Arc;

use weir_kafka::error::ErrorCode;
use weir_kafka::{create_partitions, delete_records, delete_topics, header, membership, offsets};

use super::op::{
    Amend, GroupAnswer, GroupOp, KafkaOp, KafkaOpResult, ProduceRecords, ProduceTopic,
};
use super::session::KafkaSession;
use crate::acl::{Access, AclRules, Client};

/// What a refused topic's answer says.
const TOPIC_REFUSED: &str = "not authorized to access the topic (auth.acl_file)";

/// The client behind a request, and the rules in force for it.
#[derive(Debug, Clone)]
pub(super) struct Caller {
    /// The access-control list; `None`: everything is allowed.
    rules: Option<Arc<AclRules>>,
    user: Option<String>,
    client_id: String,
}

/// What becomes of an operation a client asked for.
#[derive(Debug)]
pub(super) enum Authorized {
    /// Run it (what was refused already left out or marked), and amend its result.
    Run(KafkaOp, Option<Amend>),
    /// Answer at once, running nothing.
    Refused(KafkaOpResult),
}

impl Caller {
    fn client(&self) -> Client<'_> {
        Client {
            user: self.user.as_deref(),
            client_id: &self.client_id,
        }
    }

    /// Whether no list is in force.
    pub(super) fn is_open(&self) -> bool {
        self.rules.is_none()
    }

    /// Whether the client may produce to (`Write`) or fetch from (`Read`) `topic`.
    pub(super) fn topic(&self, access: Access, topic: &str) -> bool {
        (self.rules.as_ref()).is_none_or(|r| r.allows_kafka_topic(self.client(), access, topic))
    }

    /// Whether the client may learn of `topic` and its offsets: read or write.
    pub(super) fn describe(&self, topic: &str) -> bool {
        self.topic(Access::Read, topic) || self.topic(Access::Write, topic)
    }

    /// Whether the client may delete `topic` or its records: read and write.
    fn manage(&self, topic: &str) -> bool {
        self.topic(Access::Read, topic) && self.topic(Access::Write, topic)
    }

    /// Whether the client may use the consumer group `group`.
    pub(super) fn group(&self, group: &str) -> bool {
        (self.rules.as_ref()).is_none_or(|r| r.allows_group(self.client(), group))
    }

    /// Whether the client may act on the whole broker (`topic readwrite #`).
    fn cluster(&self) -> bool {
        (self.rules.as_ref()).is_none_or(|r| r.allows_everything(self.client()))
    }

    /// Whether the client may write to some topic (what an idempotent producer id needs).
    pub(super) fn writes_somewhere(&self) -> bool {
        (self.rules.as_ref()).is_none_or(|r| r.grants_some_write(self.client()))
    }
}

impl KafkaSession {
    /// Who is asking now, and the rules in force.
    pub(super) fn caller(&self) -> Caller {
        let rules = self.settings.acl.current();
        let (user, client_id) = match rules {
            Some(_) => (self.user().map(str::to_owned), self.client_id.clone()),
            None => (None, String::new()),
        };
        Caller {
            rules,
            user,
            client_id,
        }
    }

    /// Keeps the request's client id (what `%c` stands for in the list's patterns) while a
    /// list is in force.
    pub(super) fn note_client_id(&mut self, frame: &[u8]) {
        if self.settings.acl.current().is_none() {
            return;
        }
        // Every implemented request has header version 1 or 2: the client id comes first.
        if let Ok((header, _)) = header::RequestHeader::parse(frame, 1)
            && let Some(id) = header.client_id
            && id != self.client_id
        {
            id.clone_into(&mut self.client_id);
        }
    }

    /// What becomes of `op`, asked for by this connection's client.
    pub(super) fn authorize(&self, op: KafkaOp) -> Authorized {
        let caller = self.caller();
        if caller.is_open() {
            return Authorized::Run(op, None);
        }
        match op {
            KafkaOp::Produce { .. } => produce(&caller, op),
            KafkaOp::Metadata { .. } => metadata(caller, op),
            KafkaOp::CreateTopics { request, defaults } => {
                create_topics(&caller, request, defaults)
            }
            KafkaOp::DeleteTopics { targets } => delete_topics(&caller, targets),
            KafkaOp::CreatePartitions(request) => create_partitions(&caller, request),
            KafkaOp::DeleteRecords(request) => delete_records(&caller, request),
            KafkaOp::DescribeConfigs(_) => describe_configs(caller, op),
            KafkaOp::FetchOffsets(asked) => fetch_offsets(caller, asked),
            KafkaOp::Group(op) => group(caller, op),
            op @ (KafkaOp::AllocateProducerId
            | KafkaOp::CommitOffsets(_)
            | KafkaOp::DeleteGroups(_)) => Authorized::Run(op, None),
        }
    }
}

/// Produce: the partitions of every topic the client may not write are refused
/// ([`refuse_unwritable`]).
fn produce(caller: &Caller, mut op: KafkaOp) -> Authorized {
    if let KafkaOp::Produce { topics, .. } = &mut op {
        refuse_unwritable(caller, topics);
    }
    Authorized::Run(op, None)
}

/// CreateTopics: a topic needs write.
fn create_topics(
    caller: &Caller,
    mut request: weir_kafka::create_topics::Request,
    defaults: super::admin::CreateDefaults,
) -> Authorized {
    let refused = take(&mut request.topics, |t| {
        !caller.topic(Access::Write, &t.name)
    });
    let amend =
        Amend::new(move |result| {
            if let KafkaOpResult::Created(created) = result {
                created.extend(refused.into_iter().map(|t| {
                    weir_kafka::create_topics::TopicResult {
                        name: t.name,
                        error_code: ErrorCode::TopicAuthorizationFailed.code(),
                        error_message: Some(TOPIC_REFUSED.to_owned()),
                        num_partitions: -1,
                        configs: Vec::new(),
                    }
                }));
            }
        });
    Authorized::Run(KafkaOp::CreateTopics { request, defaults }, amend)
}

/// DeleteTopics: a topic needs read and write; one named by id is refused unless the client
/// may act on the whole broker.
fn delete_topics(caller: &Caller, mut targets: Vec<delete_topics::Target>) -> Authorized {
    let refused = take(&mut targets, |target| match target {
        delete_topics::Target::Name(name) => !caller.manage(name),
        delete_topics::Target::Id(_) => !caller.cluster(),
    });
    let amend = Amend::new(move |result| {
        if let KafkaOpResult::Deleted(deleted) = result {
            let code = ErrorCode::TopicAuthorizationFailed.code();
            deleted.extend(refused.into_iter().map(|t| (t, code)));
        }
    });
    Authorized::Run(KafkaOp::DeleteTopics { targets }, amend)
}

/// CreatePartitions: a topic needs write.
fn create_partitions(caller: &Caller, mut request: create_partitions::Request) -> Authorized {
    let refused = take(&mut request.topics, |growth: &create_partitions::Growth| {
        !caller.topic(Access::Write, &growth.name)
    });
    let amend = Amend::new(move |result| {
        if let KafkaOpResult::Grown(grown) = result {
            let code = ErrorCode::TopicAuthorizationFailed.code();
            grown.extend(
                (refused.into_iter())
                    .map(|growth| (growth.name, code, Some(TOPIC_REFUSED.to_owned()))),
            );
        }
    });
    Authorized::Run(KafkaOp::CreatePartitions(request), amend)
}

/// DeleteRecords: a topic needs read and write.
fn delete_records(caller: &Caller, mut request: delete_records::Request) -> Authorized {
    let refused = take(&mut request, |(name, _)| !caller.manage(name));
    let amend = Amend::new(move |result| {
        if let KafkaOpResult::RecordsDeleted(deleted) = result {
            deleted.extend(refused.into_iter().map(|(name, partitions)| {
                let answers = (partitions.into_iter())
                    .map(|(index, _)| delete_records::PartitionResult {
                        index,
                        low_watermark: -1,
                        error_code: ErrorCode::TopicAuthorizationFailed.code(),
                    })
                    .collect();
                (name, answers)
            }));
        }
    });
    Authorized::Run(KafkaOp::DeleteRecords(request), amend)
}

/// DescribeConfigs: a topic's settings need read or write on it, the broker's `topic
/// readwrite #`; what is refused is answered with no settings.
fn describe_configs(caller: Caller, op: KafkaOp) -> Authorized {
    use weir_kafka::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
    let amend = Amend::new(move |result| {
        let KafkaOpResult::Configs(configs) = result else {
            return;
        };
        for config in configs {
            let code = match config.resource_type {
                RESOURCE_TOPIC if !caller.describe(&config.name) => {
                    ErrorCode::TopicAuthorizationFailed
                }
                RESOURCE_BROKER if !caller.cluster() => ErrorCode::ClusterAuthorizationFailed,
                _ => continue,
            };
            config.error_code = code.code();
            config.error_message = Some("not authorized (auth.acl_file)".into());
            config.entries.clear();
        }
    });
    Authorized::Run(op, amend)
}

/// Marks the partitions of every topic the client may not write as refused: nothing of them
/// is stored, plugins do not see them, and the topic is not created.
fn refuse_unwritable(caller: &Caller, topics: &mut [ProduceTopic]) {
    for topic in topics {
        if caller.topic(Access::Write, &topic.name) {
            continue;
        }
        for (_, records) in &mut topic.partitions {
            *records = ProduceRecords::Refused {
                code: ErrorCode::TopicAuthorizationFailed.code(),
                message: TOPIC_REFUSED.to_owned(),
                record_errors: Vec::new(),
            };
        }
    }
}

/// Metadata: the topics named that the client may not describe are answered
/// TOPIC_AUTHORIZATION_FAILED (and not created); a listing of every topic leaves them out.
/// A missing topic is created only if the client may write to every topic it named.
fn metadata(caller: Caller, mut op: KafkaOp) -> Authorized {
    let KafkaOp::Metadata {
        topics,
        create_missing,
        ..
    } = &mut op
    else {
        return Authorized::Run(op, None);
    };
    let Some(named) = topics else {
        let amend = Amend::new(move |result| {
            if let KafkaOpResult::Topics(Ok(topics)) = result {
                topics.retain(|t| t.name.as_deref().is_none_or(|name| caller.describe(name)));
            }
        });
        return Authorized::Run(op, amend);
    };
    let refused = take(named, |name| !caller.describe(name));
    *create_missing &= named.iter().all(|n| caller.topic(Access::Write, n));
    let amend = Amend::new(move |result| {
        if let KafkaOpResult::Topics(Ok(topics)) = result {
            topics.extend(refused.into_iter().map(|name| weir_kafka::metadata::Topic {
                error_code: ErrorCode::TopicAuthorizationFailed.code(),
                name: Some(name),
                topic_id: [0; 16],
                partitions: 0,
            }));
        }
    });
    Authorized::Run(op, amend)
}

/// OffsetFetch: a group the client may not use is answered GROUP_AUTHORIZATION_FAILED with no
/// offsets; a topic named that it may not describe TOPIC_AUTHORIZATION_FAILED; a listing of
/// every committed topic leaves such topics out.
fn fetch_offsets(caller: Caller, asked: Vec<offsets::FetchGroup>) -> Authorized {
    let listed: Vec<bool> = asked.iter().map(|(_, topics)| topics.is_none()).collect();
    let amend = Amend::new(move |result| {
        let KafkaOpResult::OffsetsFetched(fetched) = result else {
            return;
        };
        for (group, listed) in fetched.iter_mut().zip(listed) {
            if !caller.group(&group.group_id) {
                group.error_code = ErrorCode::GroupAuthorizationFailed.code();
                group.topics.clear();
                continue;
            }
            if listed {
                group.topics.retain(|(topic, _)| caller.describe(topic));
                continue;
            }
            for (topic, partitions) in &mut group.topics {
                if !caller.describe(topic) {
                    for partition in partitions {
                        partition.offset = -1;
                        partition.leader_epoch = -1;
                        partition.metadata.clear();
                        partition.error_code = ErrorCode::TopicAuthorizationFailed.code();
                    }
                }
            }
        }
    });
    Authorized::Run(KafkaOp::FetchOffsets(asked), amend)
}

/// A request of the group protocol: refused as a whole when the client may not use its
/// group; DescribeGroups and DeleteGroups per group; ListGroups lists only the groups the
/// client may use; OffsetCommit also per topic (read).
fn group(caller: Caller, op: GroupOp) -> Authorized {
    let code = ErrorCode::GroupAuthorizationFailed.code();
    let single = match &op {
        GroupOp::Join { request, .. } => Some(&request.group_id),
        GroupOp::Sync(request) => Some(&request.group_id),
        GroupOp::Heartbeat(request) => Some(&request.group_id),
        GroupOp::Leave(request) => Some(&request.group_id),
        GroupOp::Commit(request) => Some(&request.group_id),
        GroupOp::Describe(_) | GroupOp::List(_) | GroupOp::Delete(_) => None,
    };
    if single.is_some_and(|group| !caller.group(group)) {
        return Authorized::Refused(op.failed(code));
    }
    match op {
        GroupOp::Commit(mut request) => {
            let refused = take(&mut request.topics, |(topic, _)| {
                !caller.topic(Access::Read, topic)
            });
            let amend = Amend::new(move |result| {
                if let KafkaOpResult::OffsetsCommitted(committed) = result {
                    let code = ErrorCode::TopicAuthorizationFailed.code();
                    committed.extend(refused.into_iter().map(|(topic, partitions)| {
                        (topic, partitions.iter().map(|p| (p.index, code)).collect())
                    }));
                }
            });
            Authorized::Run(KafkaOp::Group(GroupOp::Commit(request)), amend)
        }
        GroupOp::Delete(mut groups) => {
            let refused = take(&mut groups, |group| !caller.group(group));
            let amend = Amend::new(move |result| {
                if let KafkaOpResult::Group(GroupAnswer::Deleted(deleted)) = result {
                    deleted.extend(refused.into_iter().map(|group| (group, code)));
                }
            });
            Authorized::Run(KafkaOp::Group(GroupOp::Delete(groups)), amend)
        }
        GroupOp::Describe(_) | GroupOp::List(_) => {
            let amend = Amend::new(move |result| match result {
                KafkaOpResult::Group(GroupAnswer::Described(groups)) => {
                    for group in groups.iter_mut().filter(|g| !caller.group(&g.group_id)) {
                        *group = membership::DescribedGroup {
                            error_code: code,
                            group_id: std::mem::take(&mut group.group_id),
                            state: "",
                            protocol_type: String::new(),
                            protocol: String::new(),
                            members: Vec::new(),
                        };
                    }
                }
                KafkaOpResult::Group(GroupAnswer::Listed(_, groups)) => {
                    groups.retain(|(group, _, _)| caller.group(group));
                }
                _ => {}
            });
            Authorized::Run(KafkaOp::Group(op), amend)
        }
        op => Authorized::Run(KafkaOp::Group(op), None),
    }
}

/// Takes the items `refused` picks out of `items`, keeping the others in order.
fn take<T>(items: &mut Vec<T>, refused: impl Fn(&T) -> bool) -> Vec<T> {
    let (out, kept) = std::mem::take(items).into_iter().partition(refused);
    *items = kept;
    out
}
