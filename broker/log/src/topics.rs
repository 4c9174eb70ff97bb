//! Topics: creating one, adding partitions, changing its configuration, deleting it with its
//! data, and listing them; and the allocation of partition ids, which are never reused.

use std::sync::atomic::Ordering;

use heed::{RoTxn, RwTxn};
use weir_core::log_store::{PartitionId, StoreError, TOPIC_PARTITIONS_MAX, TopicConfig, TopicInfo};

use crate::lmdb_log::LmdbLog;
use crate::partitions::inclusive;
use crate::retention::DELETE_CHUNK;
use crate::schema::u32_of;
use crate::schema::{self, PartitionMeta, TopicMeta, meta_key};
use crate::txn::classify;

impl LmdbLog {
    /// Implements `LogStore::create_topic`.
    pub(crate) fn insert_topic(
        &self,
        name: &str,
        partitions: u32,
        config: TopicConfig,
    ) -> Result<TopicInfo, StoreError> {
        validate_topic_name(name)?;
        if partitions == 0 || partitions > TOPIC_PARTITIONS_MAX {
            return Err(StoreError::InvalidArgument(format!(
                "partitions must be from 1 to {TOPIC_PARTITIONS_MAX}, not {partitions}"
            )));
        }
        self.check_usable()?;
        let mut txn = self.write_txn()?;
        if self.load_topic(&txn, name)?.is_some() {
            return Err(StoreError::TopicExists(name.to_owned()));
        }
        let ids = self.allocate_partitions(&mut txn, partitions)?;
        let topic = TopicMeta {
            config,
            partitions: ids,
        };
        self.save_topic(txn, name, topic)
    }

    /// Writes `topic` under `name` in `txn`, commits it durably, and describes it.
    fn save_topic(
        &self,
        mut txn: RwTxn,
        name: &str,
        topic: TopicMeta,
    ) -> Result<TopicInfo, StoreError> {
        self.topics
            .put(&mut txn, name.as_bytes(), &topic.encode())
            .map_err(classify)?;
        self.commit(txn)?;
        self.topics_version.fetch_add(1, Ordering::AcqRel);
        self.make_durable()?;
        Ok(TopicInfo {
            name: name.to_owned(),
            partitions: topic.partitions,
            config: topic.config,
        })
    }

    /// Implements `LogStore::add_partitions`.
    pub(crate) fn grow_topic(&self, name: &str, total: u32) -> Result<TopicInfo, StoreError> {
        self.check_usable()?;
        let mut txn = self.write_txn()?;
        let mut topic = self
            .load_topic(&txn, name)?
            .ok_or_else(|| StoreError::UnknownTopic(name.to_owned()))?;
        let current = topic.partitions.len() as u32;
        if total <= current || total > TOPIC_PARTITIONS_MAX {
            return Err(StoreError::InvalidArgument(format!(
                "topic `{name}` has {current} partitions; the new count must be more, and at \
                 most {TOPIC_PARTITIONS_MAX}, not {total}"
            )));
        }
        let ids = self.allocate_partitions(&mut txn, total - current)?;
        topic.partitions.extend(ids);
        self.save_topic(txn, name, topic)
    }

    /// Implements `LogStore::set_topic_config`.
    pub(crate) fn configure_topic(
        &self,
        name: &str,
        config: TopicConfig,
    ) -> Result<(), StoreError> {
        self.check_usable()?;
        let mut txn = self.write_txn()?;
        let mut topic = self
            .load_topic(&txn, name)?
            .ok_or_else(|| StoreError::UnknownTopic(name.to_owned()))?;
        topic.config = config;
        self.topics
            .put(&mut txn, name.as_bytes(), &topic.encode())
            .map_err(classify)?;
        self.commit(txn)?;
        self.make_durable()
    }

    /// Implements `LogStore::delete_topic`.
    pub(crate) fn remove_topic(&self, name: &str) -> Result<(), StoreError> {
        // First make the topic and its partitions disappear in one transaction; then free the
        // batches in bounded chunks. A crash in between leaves orphan batches, which the check
        // at open, and every retention pass, deletes.
        self.check_usable()?;
        let mut txn = self.write_txn()?;
        let topic = self
            .load_topic(&txn, name)?
            .ok_or_else(|| StoreError::UnknownTopic(name.to_owned()))?;
        self.topics
            .delete(&mut txn, name.as_bytes())
            .map_err(classify)?;
        for &pid in &topic.partitions {
            self.partitions
                .delete(&mut txn, &schema::partition_key(pid))
                .map_err(classify)?;
            let start = schema::time_key(pid, i64::MIN);
            let end = schema::time_key(pid, i64::MAX);
            self.time_index
                .delete_range(&mut txn, &inclusive(&start, &end))
                .map_err(classify)?;
        }
        self.commit(txn)?;
        self.topics_version.fetch_add(1, Ordering::AcqRel);
        self.make_durable()?;
        for &pid in &topic.partitions {
            loop {
                let mut txn = self.write_txn()?;
                let (batches, _) = self.delete_prefix(&mut txn, pid, i64::MAX, DELETE_CHUNK)?;
                self.commit(txn)?;
                if batches < DELETE_CHUNK as u64 {
                    break;
                }
            }
        }
        self.release_freed_pages()
    }

    /// Implements `LogStore::topic`.
    pub(crate) fn find_topic(&self, name: &str) -> Result<Option<TopicInfo>, StoreError> {
        let txn = self.read_txn()?;
        Ok(self.load_topic(&txn, name)?.map(|topic| TopicInfo {
            name: name.to_owned(),
            partitions: topic.partitions,
            config: topic.config,
        }))
    }

    /// Implements `LogStore::topics`.
    pub(crate) fn list_topics(&self) -> Result<Vec<TopicInfo>, StoreError> {
        let txn = self.read_txn()?;
        let mut out = Vec::new();
        for item in self.topics.iter(&txn).map_err(classify)? {
            let (name, value) = item.map_err(classify)?;
            let name = String::from_utf8_lossy(name).into_owned();
            let topic = TopicMeta::decode(value)
                .ok_or_else(|| StoreError::Corrupt(format!("topic `{name}` metadata")))?;
            out.push(TopicInfo {
                name,
                partitions: topic.partitions,
                config: topic.config,
            });
        }
        Ok(out)
    }

    /// Every partition of every topic, with its topic's configuration.
    pub(crate) fn partition_ids(
        &self,
        txn: &RoTxn,
    ) -> Result<Vec<(PartitionId, TopicConfig)>, StoreError> {
        let mut out = Vec::new();
        for item in self.topics.iter(txn).map_err(classify)? {
            let (name, value) = item.map_err(classify)?;
            let topic = TopicMeta::decode(value).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "topic `{}` metadata",
                    String::from_utf8_lossy(name)
                ))
            })?;
            out.extend(topic.partitions.iter().map(|&pid| (pid, topic.config)));
        }
        Ok(out)
    }

    fn load_topic(&self, txn: &RoTxn, name: &str) -> Result<Option<TopicMeta>, StoreError> {
        match self.topics.get(txn, name.as_bytes()).map_err(classify)? {
            None => Ok(None),
            Some(bytes) => TopicMeta::decode(bytes)
                .map(Some)
                .ok_or_else(|| StoreError::Corrupt(format!("topic `{name}` metadata"))),
        }
    }

    /// Takes the next `count` partition ids from the counter in `meta` and gives each empty
    /// metadata.
    fn allocate_partitions(
        &self,
        txn: &mut RwTxn,
        count: u32,
    ) -> Result<Vec<PartitionId>, StoreError> {
        let next = self
            .meta
            .get(txn, meta_key::NEXT_PARTITION_ID)
            .map_err(classify)?
            .map(u32_of)
            .unwrap_or(0);
        let end = next
            .checked_add(count)
            .ok_or_else(|| StoreError::InvalidArgument("partition ids exhausted".into()))?;
        self.meta
            .put(txn, meta_key::NEXT_PARTITION_ID, &end.to_be_bytes())
            .map_err(classify)?;
        let ids: Vec<PartitionId> = (next..end).map(PartitionId).collect();
        for &pid in &ids {
            self.put_meta(txn, pid, &PartitionMeta::empty())?;
        }
        Ok(ids)
    }
}

fn validate_topic_name(name: &str) -> Result<(), StoreError> {
    weir_core::log_store::check_topic_name(name).map_err(StoreError::InvalidArgument)
}
