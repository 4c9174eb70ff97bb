//! Topic administration for the Kafka front: CreateTopics, DeleteTopics, CreatePartitions,
//! DeleteRecords and DescribeConfigs, run on the log's writer thread so they are ordered with appends and
//! durable when answered.
//!
//! Weir is a single node: replication factor 1 (or -1, the default) is the only one it can
//! honour, and a replica assignment may name only broker 0. The topic settings it knows are
//! `retention.ms`, `retention.bytes` and `cleanup.policy=delete`; any other setting is
//! refused with INVALID_CONFIG rather than accepted and ignored.

use weir_kafka::create_partitions;
use weir_kafka::create_topics::{self, ConfigSource, NewTopic, TopicResult};
use weir_kafka::delete_records::PartitionResult;
use weir_kafka::delete_topics::Target;
use weir_kafka::describe_configs::{self, Entry, RESOURCE_BROKER, RESOURCE_TOPIC, ResourceResult};
use weir_kafka::error::ErrorCode;

use std::collections::HashMap;

use crate::log_store::{
    LogStore, StoreError, TOPIC_PARTITIONS_MAX, TopicConfig, check_topic_name, partition_at,
};

/// What a CreateTopics request leaves to the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateDefaults {
    /// Partitions of a topic asked for with -1.
    pub partitions: u32,
    /// No topic is created while this many exist.
    pub topics_max: u32,
}

/// The settings a topic reports: each known one, its value and where it comes from.
pub fn describe_config(config: TopicConfig) -> Vec<(String, String, ConfigSource)> {
    let default = TopicConfig::default();
    let source = |same: bool| {
        if same {
            ConfigSource::Default
        } else {
            ConfigSource::Topic
        }
    };
    vec![
        (
            "cleanup.policy".into(),
            "delete".into(),
            ConfigSource::Default,
        ),
        (
            "retention.bytes".into(),
            config.retention_bytes.to_string(),
            source(config.retention_bytes == default.retention_bytes),
        ),
        (
            "retention.ms".into(),
            config.retention_ms.to_string(),
            source(config.retention_ms == default.retention_ms),
        ),
    ]
}

/// The topic settings `configs` ask for, or the reason they cannot be honoured.
fn parse_config(configs: &[(String, Option<String>)]) -> Result<TopicConfig, String> {
    let mut config = TopicConfig::default();
    for (name, value) in configs {
        let Some(value) = value else { continue }; // null: the default
        let limit = |value: &str| -> Result<i64, String> {
            value
                .parse::<i64>()
                .ok()
                .filter(|v| *v >= -1)
                .ok_or_else(|| format!("{name} must be -1 (no limit) or a count, not `{value}`"))
        };
        match name.as_str() {
            "retention.ms" => config.retention_ms = limit(value)?,
            "retention.bytes" => config.retention_bytes = limit(value)?,
            "cleanup.policy" if value == "delete" => {}
            "cleanup.policy" => {
                return Err(format!(
                    "cleanup.policy `{value}` is not supported: Weir deletes by retention only"
                ));
            }
            _ => {
                return Err(format!(
                    "topic setting `{name}` is not supported (Weir knows retention.ms, \
                     retention.bytes and cleanup.policy=delete)"
                ));
            }
        }
    }
    Ok(config)
}

/// How many partitions `topic` asks for, or why the request cannot be met on one node.
fn partition_count(topic: &NewTopic, default: u32) -> Result<u32, (i16, String)> {
    if !matches!(topic.replication_factor, -1 | 1) {
        return Err((
            ErrorCode::InvalidReplicationFactor.code(),
            format!(
                "replication factor {} cannot be met: Weir is a single node (use 1 or -1)",
                topic.replication_factor
            ),
        ));
    }
    if !topic.assignments.is_empty() {
        if topic.num_partitions != -1 || topic.replication_factor != -1 {
            return Err((
                ErrorCode::InvalidRequest.code(),
                "with a replica assignment, partitions and replication factor must be -1".into(),
            ));
        }
        let in_order = topic
            .assignments
            .iter()
            .enumerate()
            .all(|(i, (index, brokers))| *index as usize == i && brokers.as_slice() == [0]);
        if !in_order {
            return Err((
                ErrorCode::InvalidReplicaAssignment.code(),
                "partitions must be assigned in order 0, 1, ... to broker 0 only".into(),
            ));
        }
        let count = topic.assignments.len();
        if count > TOPIC_PARTITIONS_MAX as usize {
            return Err((
                ErrorCode::InvalidPartitions.code(),
                format!("partitions must be from 1 to {TOPIC_PARTITIONS_MAX}, not {count}"),
            ));
        }
        return Ok(count as u32);
    }
    match topic.num_partitions {
        -1 => Ok(default),
        n if n >= 1 && n as u32 <= TOPIC_PARTITIONS_MAX => Ok(n as u32),
        n => Err((
            ErrorCode::InvalidPartitions.code(),
            format!("partitions must be from 1 to {TOPIC_PARTITIONS_MAX}, not {n}"),
        )),
    }
}

/// The answer for a topic that was not created.
pub(crate) fn failure(name: &str, error_code: i16, message: String) -> TopicResult {
    TopicResult {
        name: name.to_owned(),
        error_code,
        error_message: Some(message),
        num_partitions: -1,
        configs: Vec::new(),
    }
}

/// Creates (or, with `validate_only`, checks) each topic of the request; one answer per
/// topic, in request order.
pub fn create_topics(
    store: &dyn LogStore,
    request: create_topics::Request,
    defaults: CreateDefaults,
) -> Vec<TopicResult> {
    let mut count = match store.topics() {
        Ok(topics) => topics.len(),
        Err(error) => {
            let failed = |t: &NewTopic| {
                failure(
                    &t.name,
                    ErrorCode::KafkaStorageError.code(),
                    error.to_string(),
                )
            };
            return request.topics.iter().map(failed).collect();
        }
    };
    let names = name_counts(request.topics.iter().map(|t| t.name.as_str()));
    let mut out = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let failed = |error_code: i16, message: String| failure(&topic.name, error_code, message);
        if names.get(topic.name.as_str()).copied().unwrap_or(0) > 1 {
            out.push(failed(
                ErrorCode::InvalidRequest.code(),
                "the topic is named twice".into(),
            ));
            continue;
        }
        let checked = check_topic_name(&topic.name)
            .map_err(|m| (ErrorCode::InvalidTopicException.code(), m))
            .and_then(|()| partition_count(topic, defaults.partitions))
            .and_then(|n| {
                parse_config(&topic.configs)
                    .map(|c| (n, c))
                    .map_err(|m| (ErrorCode::InvalidConfig.code(), m))
            });
        let (partitions, config) = match checked {
            Ok(ok) => ok,
            Err((code, message)) => {
                out.push(failed(code, message));
                continue;
            }
        };
        let created = match store.topic(&topic.name) {
            Ok(Some(_)) => Err(StoreError::TopicExists(topic.name.clone())),
            Ok(None) if count >= defaults.topics_max as usize => {
                out.push(failed(
                    ErrorCode::PolicyViolation.code(),
                    format!("kafka.topics_max ({}) topics exist", defaults.topics_max),
                ));
                continue;
            }
            Ok(None) if request.validate_only => Ok(()),
            Ok(None) => store
                .create_topic(&topic.name, partitions, config)
                .map(drop),
            Err(error) => Err(error),
        };
        out.push(match created {
            Ok(()) => {
                count += usize::from(!request.validate_only);
                TopicResult {
                    name: topic.name.clone(),
                    error_code: 0,
                    error_message: None,
                    num_partitions: partitions as i32,
                    configs: describe_config(config),
                }
            }
            Err(StoreError::TopicExists(name)) => failed(
                ErrorCode::TopicAlreadyExists.code(),
                format!("topic `{name}` already exists"),
            ),
            Err(StoreError::InvalidArgument(message)) => {
                failed(ErrorCode::InvalidRequest.code(), message)
            }
            Err(other) => failed(ErrorCode::KafkaStorageError.code(), other.to_string()),
        });
    }
    out
}

/// Deletes each target topic and its data; one error code per target, in request order.
pub fn delete_topics(store: &dyn LogStore, targets: Vec<Target>) -> Vec<(Target, i16)> {
    targets
        .into_iter()
        .map(|target| {
            let code = match &target {
                // Weir gives topics no ids, so none is known.
                Target::Id(_) => ErrorCode::UnknownTopicId.code(),
                Target::Name(name) => match store.delete_topic(name) {
                    Ok(()) => 0,
                    Err(StoreError::UnknownTopic(_)) => ErrorCode::UnknownTopicOrPartition.code(),
                    Err(_) => ErrorCode::KafkaStorageError.code(),
                },
            };
            (target, code)
        })
        .collect()
}

/// How many times each name appears among `names`.
fn name_counts<'a>(names: impl Iterator<Item = &'a str>) -> HashMap<&'a str, usize> {
    let mut counts = HashMap::new();
    for name in names {
        *counts.entry(name).or_insert(0) += 1;
    }
    counts
}

/// Grows (or, with `validate_only`, checks growing) each topic of the request; per topic its
/// name, error code and message, in request order.
pub fn create_partitions(
    store: &dyn LogStore,
    request: create_partitions::Request,
) -> Vec<(String, i16, Option<String>)> {
    let names = name_counts(request.topics.iter().map(|t| t.name.as_str()));
    let grow = |growth: &create_partitions::Growth| -> Result<(), (i16, String)> {
        if names.get(growth.name.as_str()).copied().unwrap_or(0) > 1 {
            return Err((
                ErrorCode::InvalidRequest.code(),
                "the topic is named twice".into(),
            ));
        }
        let current = match store.topic(&growth.name) {
            Ok(Some(topic)) => topic.partitions.len() as i64,
            Ok(None) => {
                let message = format!("unknown topic `{}`", growth.name);
                return Err((ErrorCode::UnknownTopicOrPartition.code(), message));
            }
            Err(error) => return Err((ErrorCode::KafkaStorageError.code(), error.to_string())),
        };
        let count = i64::from(growth.count);
        if count <= current || count > i64::from(TOPIC_PARTITIONS_MAX) {
            return Err((
                ErrorCode::InvalidPartitions.code(),
                format!(
                    "the topic has {current} partitions; the new count must be more, and at \
                     most {TOPIC_PARTITIONS_MAX}, not {count}"
                ),
            ));
        }
        if let Some(assignments) = &growth.assignments {
            let ok = assignments.len() as i64 == count - current
                && assignments.iter().all(|brokers| brokers.as_slice() == [0]);
            if !ok {
                return Err((
                    ErrorCode::InvalidReplicaAssignment.code(),
                    "each new partition must be assigned to broker 0 only".into(),
                ));
            }
        }
        if request.validate_only {
            return Ok(());
        }
        store
            .add_partitions(&growth.name, count as u32)
            .map(drop)
            .map_err(|error| (ErrorCode::KafkaStorageError.code(), error.to_string()))
    };
    request
        .topics
        .iter()
        .map(|growth| match grow(growth) {
            Ok(()) => (growth.name.clone(), 0, None),
            Err((code, message)) => (growth.name.clone(), code, Some(message)),
        })
        .collect()
}

/// Moves each partition's log start to the offset asked for (-1: the high watermark).
pub fn delete_records(
    store: &dyn LogStore,
    topics: weir_kafka::delete_records::Request,
) -> Vec<(String, Vec<PartitionResult>)> {
    topics
        .into_iter()
        .map(|(name, partitions)| {
            let found = store.topic(&name);
            let results = partitions
                .into_iter()
                .map(|(index, offset)| {
                    let partition = match &found {
                        Ok(Some(topic)) => partition_at(&topic.partitions, index),
                        _ => None,
                    };
                    let outcome =
                        match (&found, partition) {
                            (Err(_), _) => Err(ErrorCode::KafkaStorageError.code()),
                            (_, None) => Err(ErrorCode::UnknownTopicOrPartition.code()),
                            (_, Some(partition)) => store
                                .delete_records(partition, offset)
                                .map_err(|e| match e {
                                    StoreError::OffsetOutOfRange { .. } => {
                                        ErrorCode::OffsetOutOfRange.code()
                                    }
                                    StoreError::UnknownPartition(_) => {
                                        ErrorCode::UnknownTopicOrPartition.code()
                                    }
                                    _ => ErrorCode::KafkaStorageError.code(),
                                }),
                        };
                    PartitionResult {
                        index,
                        low_watermark: *outcome.as_ref().unwrap_or(&-1),
                        error_code: outcome.err().unwrap_or(0),
                    }
                })
                .collect();
            (name, results)
        })
        .collect()
}

/// Kafka's `ConfigType` of a topic setting Weir knows: LIST for `cleanup.policy`, LONG for
/// the rest.
fn config_type(name: &str) -> i8 {
    if name == "cleanup.policy" { 7 } else { 5 }
}

/// The settings of each resource asked for: a topic's known settings (all, or the keys
/// named); the broker (id 0) has no Kafka-named settings (Weir's own are in its config
/// file), so its list is empty.
pub fn describe_configs(
    store: &dyn LogStore,
    resources: Vec<describe_configs::Resource>,
) -> Vec<ResourceResult> {
    resources
        .into_iter()
        .map(|resource| {
            let answer = |error_code: i16, error_message: Option<String>, entries| ResourceResult {
                error_code,
                error_message,
                resource_type: resource.resource_type,
                name: resource.name.clone(),
                entries,
            };
            match resource.resource_type {
                RESOURCE_TOPIC => match store.topic(&resource.name) {
                    Ok(Some(topic)) => {
                        let wanted = |name: &str| {
                            resource.keys.is_empty() || resource.keys.iter().any(|k| k == name)
                        };
                        let entries = describe_config(topic.config)
                            .into_iter()
                            .filter(|(name, _, _)| wanted(name))
                            .map(|(name, value, source)| Entry {
                                config_type: config_type(&name),
                                name,
                                value,
                                source: source as i8,
                                read_only: false,
                            })
                            .collect();
                        answer(0, None, entries)
                    }
                    Ok(None) => answer(
                        ErrorCode::UnknownTopicOrPartition.code(),
                        Some(format!("unknown topic `{}`", resource.name)),
                        Vec::new(),
                    ),
                    Err(error) => answer(
                        ErrorCode::KafkaStorageError.code(),
                        Some(error.to_string()),
                        Vec::new(),
                    ),
                },
                RESOURCE_BROKER if matches!(resource.name.as_str(), "" | "0") => {
                    answer(0, None, Vec::new())
                }
                RESOURCE_BROKER => answer(
                    ErrorCode::InvalidRequest.code(),
                    Some(format!("broker `{}` is not this broker (0)", resource.name)),
                    Vec::new(),
                ),
                other => answer(
                    ErrorCode::InvalidRequest.code(),
                    Some(format!("resource type {other} has no settings in Weir")),
                    Vec::new(),
                ),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(partitions: i32, replication: i16) -> NewTopic {
        NewTopic {
            name: "t".into(),
            num_partitions: partitions,
            replication_factor: replication,
            assignments: Vec::new(),
            configs: Vec::new(),
        }
    }

    #[test]
    fn partition_counts_and_single_node_limits() {
        assert_eq!(partition_count(&topic(-1, -1), 4), Ok(4));
        assert_eq!(partition_count(&topic(3, 1), 4), Ok(3));
        assert_eq!(
            partition_count(&topic(0, 1), 4).unwrap_err().0,
            ErrorCode::InvalidPartitions.code()
        );
        assert_eq!(
            partition_count(&topic(3, 3), 4).unwrap_err().0,
            ErrorCode::InvalidReplicationFactor.code()
        );
        let mut assigned = topic(-1, -1);
        assigned.assignments = vec![(0, vec![0]), (1, vec![0])];
        assert_eq!(partition_count(&assigned, 4), Ok(2));
        let many = (0..=TOPIC_PARTITIONS_MAX as i32).map(|i| (i, vec![0]));
        let mut too_many = topic(-1, -1);
        too_many.assignments = many.collect();
        assert_eq!(
            partition_count(&too_many, 4).unwrap_err().0,
            ErrorCode::InvalidPartitions.code()
        );
        assigned.assignments[1].1 = vec![0, 1];
        assert_eq!(
            partition_count(&assigned, 4).unwrap_err().0,
            ErrorCode::InvalidReplicaAssignment.code()
        );
    }

    #[test]
    fn known_settings_are_taken_and_others_refused() {
        let set = |pairs: &[(&str, Option<&str>)]| {
            let pairs: Vec<_> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.map(str::to_owned)))
                .collect();
            parse_config(&pairs)
        };
        let config = set(&[
            ("retention.ms", Some("60000")),
            ("retention.bytes", Some("-1")),
            ("cleanup.policy", Some("delete")),
            ("retention.ms", None),
        ])
        .unwrap();
        assert_eq!(config.retention_ms, 60000);
        assert!(set(&[("retention.ms", Some("-2"))]).is_err());
        assert!(set(&[("retention.ms", Some("soon"))]).is_err());
        assert!(set(&[("cleanup.policy", Some("compact"))]).is_err());
        let unknown = set(&[("segment.bytes", Some("1"))]).unwrap_err();
        assert!(unknown.contains("segment.bytes"), "{unknown}");
    }
}
