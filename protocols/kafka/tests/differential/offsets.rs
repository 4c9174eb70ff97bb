//! Committed offsets: OffsetCommit (key 8, v2-8) and OffsetFetch (key 9, v1-8), against
//! kafka-protocol's newest release.

use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
};
use proptest::collection::vec;
use proptest::prelude::*;
use weir_kafka::offsets::{self, CommitPartition, FetchGroup, FetchedGroup, FetchedOffset};

use crate::support::newest::{self as oracle, group, os, s, topic};
use crate::support::{check, few, head, many, opt_text, tags, text};

fn commit_topic(version: i16) -> impl Strategy<Value = OffsetCommitRequestTopic> {
    let partition = (any::<(i32, i64, i32)>(), opt_text(), tags()).prop_map(
        move |((index, offset, epoch), metadata, tags)| {
            let partition = OffsetCommitRequestPartition::default()
                .with_partition_index(index)
                .with_committed_offset(offset)
                .with_committed_metadata(os(metadata.as_deref()))
                .with_unknown_tagged_fields(tags);
            // The leader epoch exists from v6.
            if version >= 6 {
                partition.with_committed_leader_epoch(epoch)
            } else {
                partition
            }
        },
    );
    (text(), few(partition), tags()).prop_map(|(name, partitions, tags)| {
        OffsetCommitRequestTopic::default()
            .with_name(topic(&name))
            .with_partitions(partitions)
            .with_unknown_tagged_fields(tags)
    })
}

fn commit_value(version: i16) -> impl Strategy<Value = OffsetCommitRequest> {
    let ids = (text(), any::<i32>(), text(), opt_text());
    let fields = (ids, any::<i64>(), few(commit_topic(version)), tags());
    fields.prop_map(
        move |((group_id, generation, member, instance), retention, topics, tags)| {
            let mut request = OffsetCommitRequest::default()
                .with_group_id(group(&group_id))
                .with_generation_id_or_member_epoch(generation)
                .with_member_id(s(&member))
                .with_topics(topics)
                .with_unknown_tagged_fields(tags);
            if version >= 7 {
                request = request.with_group_instance_id(os(instance.as_deref()));
            }
            if version <= 4 {
                request = request.with_retention_time_ms(retention);
            }
            request
        },
    )
}

/// Weir ignores `group_instance_id` (v7+; static membership is not used) and
/// `retention_time_ms` (v2-4; offsets stay until their topic goes). A null metadata is kept as
/// empty; before v6 there is no leader epoch, which Weir keeps as -1.
pub fn commit_request(version: i16) {
    check(
        "OffsetCommit request",
        version,
        (head(), commit_value(version)),
        |(head, sent)| {
            let body = oracle::request_body(
                ApiKey::OffsetCommit,
                &sent,
                version,
                offsets::commit_header_version,
                &head,
            );
            let parsed = offsets::parse_commit(&body, version).expect("Weir parses the request");
            let topics = sent.topics.iter().map(|t| {
                let partitions = t.partitions.iter().map(|p| CommitPartition {
                    index: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p
                        .committed_metadata
                        .as_deref()
                        .unwrap_or_default()
                        .to_owned(),
                });
                (t.name.0.to_string(), partitions.collect())
            });
            let expected = offsets::CommitRequest {
                group_id: sent.group_id.0.to_string(),
                generation_id: sent.generation_id_or_member_epoch,
                member_id: sent.member_id.to_string(),
                topics: topics.collect(),
            };
            assert_eq!(parsed, expected);
        },
    );
}

type Committed = Vec<(String, Vec<(i32, i16)>)>;

pub fn commit_response(version: i16) {
    let topics = few((text(), few(any::<(i32, i16)>())));
    check(
        "OffsetCommit response",
        version,
        (any::<i32>(), topics),
        |(correlation_id, topics): (i32, Committed)| {
            let mut out = Vec::new();
            offsets::write_commit_response(&mut out, correlation_id, version, &topics);
            let read: OffsetCommitResponse = oracle::decode_response(&out, version, correlation_id);
            let expected = topics.iter().map(|(name, partitions)| {
                let partitions = partitions.iter().map(|&(index, error_code)| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(index)
                        .with_error_code(error_code)
                });
                OffsetCommitResponseTopic::default()
                    .with_name(topic(name))
                    .with_partitions(partitions.collect())
            });
            // throttle_time_ms (v3+) is 0, kafka-protocol's default.
            assert_eq!(
                read,
                OffsetCommitResponse::default().with_topics(expected.collect())
            );
        },
    );
}

/// One group's topics as generated: `None` asks for every committed partition.
type AskedTopics = Option<Vec<(String, Vec<i32>)>>;

fn asked_topics(version: i16) -> impl Strategy<Value = AskedTopics> {
    let topics = few((text(), many(any::<i32>())));
    // v1 has no null array.
    proptest::option::of(topics).prop_map(move |t| {
        if version >= 2 {
            t
        } else {
            Some(t.unwrap_or_default())
        }
    })
}

fn fetch_value(version: i16) -> impl Strategy<Value = OffsetFetchRequest> {
    let group_count = if version >= 8 { 0..4 } else { 1..2 };
    let groups = vec((text(), asked_topics(version), tags()), group_count);
    (groups, any::<bool>(), tags()).prop_map(move |(groups, require_stable, tags)| {
        let mut request = OffsetFetchRequest::default().with_unknown_tagged_fields(tags);
        if version >= 7 {
            request = request.with_require_stable(require_stable);
        }
        if version >= 8 {
            let groups = groups.iter().map(|(id, asked, tags)| {
                let topics = asked.as_ref().map(|topics| {
                    (topics.iter())
                        .map(|(name, indexes)| {
                            OffsetFetchRequestTopics::default()
                                .with_name(topic(name))
                                .with_partition_indexes(indexes.clone())
                        })
                        .collect()
                });
                OffsetFetchRequestGroup::default()
                    .with_group_id(group(id))
                    .with_topics(topics)
                    .with_unknown_tagged_fields(tags.clone())
            });
            return request.with_groups(groups.collect());
        }
        let (id, asked, _) = &groups[0];
        let topics = asked.as_ref().map(|topics| {
            (topics.iter())
                .map(|(name, indexes)| {
                    OffsetFetchRequestTopic::default()
                        .with_name(topic(name))
                        .with_partition_indexes(indexes.clone())
                })
                .collect()
        });
        request.with_group_id(group(id)).with_topics(topics)
    })
}

/// Weir ignores `require_stable` (v7+; no transactional offsets are ever pending).
pub fn fetch_request(version: i16) {
    check(
        "OffsetFetch request",
        version,
        (head(), fetch_value(version)),
        |(head, sent)| {
            let body = oracle::request_body(
                ApiKey::OffsetFetch,
                &sent,
                version,
                offsets::fetch_header_version,
                &head,
            );
            let parsed = offsets::parse_fetch(&body, version).expect("Weir parses the request");
            let expected: Vec<FetchGroup> = if version >= 8 {
                (sent.groups.iter())
                    .map(|g| {
                        let topics = g.topics.as_ref().map(|topics| {
                            (topics.iter())
                                .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                                .collect()
                        });
                        (g.group_id.0.to_string(), topics)
                    })
                    .collect()
            } else {
                let topics = sent.topics.as_ref().map(|topics| {
                    (topics.iter())
                        .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                        .collect()
                });
                vec![(sent.group_id.0.to_string(), topics)]
            };
            assert_eq!(parsed, expected);
        },
    );
}

fn fetched_group() -> impl Strategy<Value = FetchedGroup> {
    let offset = (any::<(i32, i64, i32, i16)>(), text()).prop_map(
        |((index, offset, leader_epoch, error_code), metadata)| FetchedOffset {
            index,
            offset,
            leader_epoch,
            metadata,
            error_code,
        },
    );
    let fields = (text(), few((text(), few(offset))), any::<i16>());
    fields.prop_map(|(group_id, topics, error_code)| FetchedGroup {
        group_id,
        topics,
        error_code,
    })
}

/// What kafka-protocol should read for the topics of one group at `version` before v8.
fn expected_topics(g: &FetchedGroup, version: i16) -> Vec<OffsetFetchResponseTopic> {
    let topics = g.topics.iter().map(|(name, partitions)| {
        let partitions = partitions.iter().map(|p| {
            let partition = OffsetFetchResponsePartition::default()
                .with_partition_index(p.index)
                .with_committed_offset(p.offset)
                .with_metadata(Some(s(&p.metadata)))
                .with_error_code(p.error_code);
            // The leader epoch exists from v5.
            if version >= 5 {
                partition.with_committed_leader_epoch(p.leader_epoch)
            } else {
                partition
            }
        });
        OffsetFetchResponseTopic::default()
            .with_name(topic(name))
            .with_partitions(partitions.collect())
    });
    topics.collect()
}

/// What kafka-protocol should read for one group of a v8 answer.
fn expected_group(g: &FetchedGroup) -> OffsetFetchResponseGroup {
    let topics = g.topics.iter().map(|(name, partitions)| {
        let partitions = partitions.iter().map(|p| {
            OffsetFetchResponsePartitions::default()
                .with_partition_index(p.index)
                .with_committed_offset(p.offset)
                .with_committed_leader_epoch(p.leader_epoch)
                .with_metadata(Some(s(&p.metadata)))
                .with_error_code(p.error_code)
        });
        OffsetFetchResponseTopics::default()
            .with_name(topic(name))
            .with_partitions(partitions.collect())
    });
    OffsetFetchResponseGroup::default()
        .with_group_id(group(&g.group_id))
        .with_topics(topics.collect())
        .with_error_code(g.error_code)
}

/// Before v8 a request names one group and the answer is that group's; from v8 it names
/// several, and the answer has a group array.
pub fn fetch_response(version: i16) {
    let count = if version >= 8 { 0..4 } else { 1..2 };
    check(
        "OffsetFetch response",
        version,
        (any::<i32>(), vec(fetched_group(), count)),
        |(correlation_id, groups)| {
            let mut out = Vec::new();
            offsets::write_fetch_response(&mut out, correlation_id, version, &groups);
            let read: OffsetFetchResponse = oracle::decode_response(&out, version, correlation_id);
            // throttle_time_ms (v3+) is 0, kafka-protocol's default.
            let expected = if version >= 8 {
                OffsetFetchResponse::default()
                    .with_groups(groups.iter().map(expected_group).collect())
            } else {
                let expected = OffsetFetchResponse::default()
                    .with_topics(expected_topics(&groups[0], version));
                // The group's error code exists from v2.
                if version >= 2 {
                    expected.with_error_code(groups[0].error_code)
                } else {
                    expected
                }
            };
            assert_eq!(read, expected);
        },
    );
}
