//! Consumer-group offsets for the Kafka front: FindCoordinator, OffsetCommit and
//! OffsetFetch. An OffsetCommit is first checked against the group's membership by the
//! coordinator ([`super::coordinator`]), then stored on the log's writer thread, so a commit
//! is durable when answered; OffsetFetch runs on the writer thread too, so it sees every
//! commit answered before it.

use std::collections::HashMap;

use weir_kafka::error::ErrorCode;
use weir_kafka::offsets::{CommitRequest, FetchGroup, FetchedGroup, FetchedOffset};

pub use super::op::commit_refused;
use crate::log_store::{
    CommittedOffset, GROUP_ID_BYTES_MAX, LogStore, OFFSET_METADATA_BYTES_MAX, PartitionId,
    TopicInfo, partition_at,
};

/// The offset APIs accept any group id the store can key, the empty one included (as Kafka
/// does for them).
fn valid_group(group: &str) -> bool {
    group.len() <= GROUP_ID_BYTES_MAX
}

/// The answer for a group whose offsets cannot be given: the group error, and (for v0/v1
/// clients, which have no group-level error field) the same error on every partition asked.
pub fn fetch_failed(group: FetchGroup, error_code: i16) -> FetchedGroup {
    let (group_id, topics) = group;
    let topics = topics
        .unwrap_or_default()
        .into_iter()
        .map(|(name, indexes)| {
            let failed = |index| FetchedOffset {
                index,
                offset: -1,
                leader_epoch: -1,
                metadata: String::new(),
                error_code,
            };
            (name, indexes.into_iter().map(failed).collect())
        })
        .collect();
    FetchedGroup {
        group_id,
        topics,
        error_code,
    }
}

/// Stores the offsets of an OffsetCommit the coordinator has let through; per topic,
/// (partition index, error code).
pub fn commit_offsets(
    store: &dyn LogStore,
    request: CommitRequest,
) -> Vec<(String, Vec<(i32, i16)>)> {
    let refused = (!valid_group(&request.group_id)).then_some(ErrorCode::InvalidGroupId.code());
    let mut answers = Vec::with_capacity(request.topics.len());
    let mut writes: Vec<(PartitionId, CommittedOffset)> = Vec::new();
    // Where each write's answer goes: (topic, partition) positions in `answers`.
    let mut slots = Vec::new();
    for (topic, partitions) in request.topics {
        let found = store.topic(&topic);
        let mut codes = Vec::with_capacity(partitions.len());
        for partition in partitions {
            let pid = match &found {
                Ok(Some(info)) => partition_at(&info.partitions, partition.index),
                _ => None,
            };
            let code = match (refused, &found, pid) {
                (Some(code), _, _) => code,
                (None, Err(_), _) => ErrorCode::CoordinatorNotAvailable.code(),
                (None, Ok(_), None) => ErrorCode::UnknownTopicOrPartition.code(),
                (None, Ok(_), Some(_)) if partition.metadata.len() > OFFSET_METADATA_BYTES_MAX => {
                    ErrorCode::OffsetMetadataTooLarge.code()
                }
                (None, Ok(_), Some(pid)) => {
                    slots.push((answers.len(), codes.len()));
                    writes.push((
                        pid,
                        CommittedOffset {
                            offset: partition.offset,
                            leader_epoch: partition.leader_epoch,
                            metadata: partition.metadata,
                        },
                    ));
                    0
                }
            };
            codes.push((partition.index, code));
        }
        answers.push((topic, codes));
    }
    // A failed commit (a full map, a fatal error the writer reports) is retried by clients.
    if !writes.is_empty() && store.commit_offsets(&request.group_id, &writes).is_err() {
        for (t, p) in slots {
            answers[t].1[p].1 = ErrorCode::CoordinatorNotAvailable.code();
        }
    }
    answers
}

/// The committed offsets an OffsetFetch asks for, per group.
pub fn fetch_offsets(store: &dyn LogStore, groups: Vec<FetchGroup>) -> Vec<FetchedGroup> {
    let Ok(all) = store.topics() else {
        let failed = |group| fetch_failed(group, ErrorCode::CoordinatorNotAvailable.code());
        return groups.into_iter().map(failed).collect();
    };
    let by_name: HashMap<&str, &TopicInfo> = all.iter().map(|t| (t.name.as_str(), t)).collect();
    groups
        .into_iter()
        .map(|(group_id, topics)| {
            if !valid_group(&group_id) {
                return fetch_failed((group_id, topics), ErrorCode::InvalidGroupId.code());
            }
            let committed = match store.committed_offsets(&group_id) {
                Ok(committed) => committed,
                Err(_) => {
                    return fetch_failed(
                        (group_id, topics),
                        ErrorCode::CoordinatorNotAvailable.code(),
                    );
                }
            };
            let committed: HashMap<PartitionId, CommittedOffset> = committed.into_iter().collect();
            let answer = |index: i32, pid: Option<PartitionId>| {
                let found = pid.and_then(|pid| committed.get(&pid));
                FetchedOffset {
                    index,
                    offset: found.map_or(-1, |c| c.offset),
                    leader_epoch: found.map_or(-1, |c| c.leader_epoch),
                    metadata: found.map(|c| c.metadata.clone()).unwrap_or_default(),
                    error_code: 0,
                }
            };
            let topics = match topics {
                // Every partition the group committed, topic by topic.
                None => all
                    .iter()
                    .filter_map(|topic: &TopicInfo| {
                        let partitions: Vec<FetchedOffset> = (topic.partitions.iter().enumerate())
                            .filter(|(_, pid)| committed.contains_key(pid))
                            .map(|(i, pid)| answer(i as i32, Some(*pid)))
                            .collect();
                        (!partitions.is_empty()).then(|| (topic.name.clone(), partitions))
                    })
                    .collect(),
                Some(topics) => topics
                    .into_iter()
                    .map(|(name, indexes)| {
                        let info = by_name.get(name.as_str());
                        let pid = |index| partition_at(&info?.partitions, index);
                        let partitions = indexes.into_iter().map(|i| answer(i, pid(i))).collect();
                        (name, partitions)
                    })
                    .collect(),
            };
            FetchedGroup {
                group_id,
                topics,
                error_code: 0,
            }
        })
        .collect()
}

/// Deletes the committed offsets of the groups the coordinator found empty (`None`); the
/// others keep the error it gave. A group without offsets does not exist.
pub fn delete_groups(
    store: &dyn LogStore,
    targets: Vec<(String, Option<i16>)>,
) -> Vec<(String, i16)> {
    targets
        .into_iter()
        .map(|(group, refused)| {
            let code = refused.unwrap_or_else(|| match store.delete_group_offsets(&group) {
                Ok(true) => 0,
                Ok(false) => ErrorCode::GroupIdNotFound.code(),
                Err(_) => ErrorCode::CoordinatorNotAvailable.code(),
            });
            (group, code)
        })
        .collect()
}
