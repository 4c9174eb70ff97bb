//! A shard's table of topics' partitions, so a publish or a produce finds its partitions on the
//! shard, in its own read of the log, and the writer only stores. The table is dropped whenever
//! the log's [`LogStore::topics_version`] moves (a topic created, grown or deleted); a topic not
//! in the log yet is not remembered: the writer creates it (`weir_core::kafka::resolve`, the
//! one find-or-create path of both fronts).

use std::collections::HashMap;

use weir_core::log_store::{LogStore, PartitionId};

/// Topics' partitions as this shard last read them.
#[derive(Debug, Default)]
pub(super) struct TopicTable {
    /// The log's topics version the entries were read at.
    version: u64,
    partitions: HashMap<String, Vec<PartitionId>>,
}

impl TopicTable {
    /// The partitions of topic `name`, or `None` if it does not exist (or cannot be read now:
    /// the writer then finds it, or creates it).
    pub(super) fn partitions(
        &mut self,
        store: &dyn LogStore,
        name: &str,
    ) -> Option<&[PartitionId]> {
        let version = store.topics_version();
        if version != self.version {
            self.partitions.clear();
            self.version = version;
        }
        if !self.partitions.contains_key(name) {
            let topic = match store.topic(name) {
                Ok(topic) => topic?,
                Err(e) => {
                    tracing::debug!(topic = name, "topic not read on the shard: {e}");
                    return None;
                }
            };
            self.partitions.insert(name.to_owned(), topic.partitions);
        }
        self.partitions.get(name).map(Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use weir_core::log_store::TopicConfig;
    use weir_log::{LmdbLog, LogOptions};

    use super::*;

    /// Known topics are read once; a topic created, grown or deleted is read again.
    #[test]
    fn the_table_follows_the_logs_topics() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = LmdbLog::open(dir.path(), LogOptions::default()).unwrap();
        let log = Arc::new(log);
        let mut table = TopicTable::default();
        assert_eq!(table.partitions(&*log, "t"), None);
        let created = log.create_topic("t", 2, TopicConfig::default()).unwrap();
        assert_eq!(table.partitions(&*log, "t"), Some(&created.partitions[..]));
        let grown = log.add_partitions("t", 3).unwrap();
        assert_eq!(table.partitions(&*log, "t").map(<[_]>::len), Some(3));
        assert_eq!(table.partitions(&*log, "t"), Some(&grown.partitions[..]));
        log.delete_topic("t").unwrap();
        assert_eq!(table.partitions(&*log, "t"), None);
    }
}
