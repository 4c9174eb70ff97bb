//! The tables beside the log, each written durably by the call that changes it: consumer
//! groups' committed offsets, idempotent-producer ids, MQTT retained messages and persistent
//! sessions, and the release of dedup keys (which appends write, see `append.rs`).

use std::ops::Bound;

use heed::Database;
use heed::types::Bytes;
use weir_core::log_store::{
    CommittedOffset, GROUP_ID_BYTES_MAX, OFFSET_METADATA_BYTES_MAX, PartitionId,
    RETAINED_TOPIC_BYTES_MAX, StoreError,
};

use crate::lmdb_log::LmdbLog;
use crate::schema::i64_of;
use crate::schema::{self, meta_key};
use crate::txn::classify;

impl LmdbLog {
    /// Implements `LogStore::allocate_producer_id`.
    pub(crate) fn next_producer_id(&self) -> Result<i64, StoreError> {
        self.check_usable()?;
        let mut txn = self.write_txn()?;
        let id = self
            .meta
            .get(&txn, meta_key::NEXT_PRODUCER_ID)
            .map_err(classify)?
            .map_or(0, i64_of);
        self.meta
            .put(
                &mut txn,
                meta_key::NEXT_PRODUCER_ID,
                &(id + 1).to_be_bytes(),
            )
            .map_err(classify)?;
        self.commit(txn)?;
        self.make_durable()?;
        Ok(id)
    }

    /// Implements `LogStore::commit_offsets`.
    pub(crate) fn put_group_offsets(
        &self,
        group: &str,
        offsets: &[(PartitionId, CommittedOffset)],
    ) -> Result<(), StoreError> {
        if group.len() > GROUP_ID_BYTES_MAX {
            return Err(StoreError::InvalidArgument(format!(
                "a group id is at most {GROUP_ID_BYTES_MAX} bytes, not {}",
                group.len()
            )));
        }
        if let Some((_, long)) = offsets
            .iter()
            .find(|(_, c)| c.metadata.len() > OFFSET_METADATA_BYTES_MAX)
        {
            return Err(StoreError::InvalidArgument(format!(
                "offset metadata is at most {OFFSET_METADATA_BYTES_MAX} bytes, not {}",
                long.metadata.len()
            )));
        }
        self.check_usable()?;
        let mut txn = self.write_txn()?;
        let prefix = schema::group_prefix(group);
        for (partition, committed) in offsets {
            let mut key = prefix.clone();
            key.extend_from_slice(&partition.0.to_be_bytes());
            self.group_offsets
                .put(&mut txn, &key, &schema::encode_committed(committed))
                .map_err(classify)?;
        }
        self.commit(txn)?;
        self.make_durable()
    }

    /// Implements `LogStore::committed_offsets`.
    pub(crate) fn load_group_offsets(
        &self,
        group: &str,
    ) -> Result<Vec<(PartitionId, CommittedOffset)>, StoreError> {
        let txn = self.read_txn()?;
        let prefix = schema::group_prefix(group);
        let mut out = Vec::new();
        for item in self
            .group_offsets
            .prefix_iter(&txn, &prefix)
            .map_err(classify)?
        {
            let (key, value) = item.map_err(classify)?;
            let id = key
                .get(prefix.len()..)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(|b| PartitionId(u32::from_be_bytes(b)));
            let (Some(id), Some(committed)) = (id, schema::decode_committed(value)) else {
                return Err(StoreError::Corrupt(format!(
                    "group `{group}` has an unreadable committed offset"
                )));
            };
            // Partition ids are never reused: an offset of a deleted partition is skipped.
            if self.load_meta(&txn, id)?.is_some() {
                out.push((id, committed));
            }
        }
        Ok(out)
    }

    /// Implements `LogStore::offset_groups`.
    pub(crate) fn groups_with_offsets(&self) -> Result<Vec<String>, StoreError> {
        let txn = self.read_txn()?;
        let mut groups = Vec::new();
        // Each step seeks past the last key a group can have (its prefix, then the largest
        // partition id), so the cost is one lookup per group, not per committed offset.
        let mut after: Option<Vec<u8>> = None;
        loop {
            let start = match &after {
                Some(key) => Bound::Excluded(key.as_slice()),
                None => Bound::Unbounded,
            };
            let range = (start, Bound::Unbounded);
            let next = self
                .group_offsets
                .range(&txn, &range)
                .map_err(classify)?
                .next()
                .transpose()
                .map_err(classify)?;
            let Some((key, _)) = next else {
                return Ok(groups);
            };
            let group = key
                .get(..2)
                .map(|len| usize::from(u16::from_be_bytes([len[0], len[1]])))
                .and_then(|len| key.get(2..2 + len))
                .and_then(|name| std::str::from_utf8(name).ok())
                .ok_or_else(|| StoreError::Corrupt("an unreadable group offset key".into()))?;
            let mut last = schema::group_prefix(group);
            last.extend_from_slice(&u32::MAX.to_be_bytes());
            groups.push(group.to_owned());
            after = Some(last);
        }
    }

    /// Implements `LogStore::delete_group_offsets`.
    pub(crate) fn remove_group_offsets(&self, group: &str) -> Result<bool, StoreError> {
        self.check_usable()?;
        let mut txn = self.write_txn()?;
        let prefix = schema::group_prefix(group);
        let mut keys = Vec::new();
        for item in self
            .group_offsets
            .prefix_iter(&txn, &prefix)
            .map_err(classify)?
        {
            let (key, _) = item.map_err(classify)?;
            keys.push(key.to_vec());
        }
        if keys.is_empty() {
            return Ok(false);
        }
        for key in &keys {
            self.group_offsets.delete(&mut txn, key).map_err(classify)?;
        }
        self.commit(txn)?;
        self.release_freed_pages()?;
        self.make_durable()?;
        Ok(true)
    }

    /// Implements `LogStore::set_retained`.
    pub(crate) fn put_retained(
        &self,
        topic: &str,
        message: Option<&[u8]>,
        topics_max: u64,
    ) -> Result<(), StoreError> {
        let limit = "topics have a retained message (mqtt.retained_messages_max)";
        let what = "a retained message's topic";
        self.put_keyed(self.mqtt_retained, what, topic, message, topics_max, limit)
    }

    /// Implements `LogStore::retained`.
    pub(crate) fn visit_retained(
        &self,
        visit: &mut dyn FnMut(&str, &[u8]),
    ) -> Result<(), StoreError> {
        self.visit_keyed(self.mqtt_retained, visit)
    }

    /// Implements `LogStore::put_mqtt_session`.
    pub(crate) fn store_mqtt_session(
        &self,
        client_id: &str,
        session: Option<&[u8]>,
        sessions_max: u64,
    ) -> Result<(), StoreError> {
        let limit = "persistent MQTT sessions are stored (mqtt.sessions_max)";
        self.put_keyed(
            self.mqtt_sessions,
            "a client id",
            client_id,
            session,
            sessions_max,
            limit,
        )
    }

    /// Implements `LogStore::mqtt_session`.
    pub(crate) fn load_mqtt_session(&self, client_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.read_txn()?;
        let found = self.mqtt_sessions.get(&txn, client_id.as_bytes());
        Ok(found.map_err(classify)?.map(<[u8]>::to_vec))
    }

    /// Implements `LogStore::mqtt_sessions`.
    pub(crate) fn visit_mqtt_sessions(
        &self,
        visit: &mut dyn FnMut(&str, &[u8]),
    ) -> Result<(), StoreError> {
        self.visit_keyed(self.mqtt_sessions, visit)
    }

    /// Implements `LogStore::release_dedup`.
    pub(crate) fn delete_dedup_keys(&self, owner: &str, id: Option<u16>) -> Result<(), StoreError> {
        self.check_usable()?;
        let mut txn = self.write_txn()?;
        let keys: Vec<Vec<u8>> = match id {
            Some(id) => vec![schema::dedup_key(owner, id)],
            None => {
                let prefix = schema::dedup_prefix(owner);
                let mut keys = Vec::new();
                for item in self.dedup.prefix_iter(&txn, &prefix).map_err(classify)? {
                    keys.push(item.map_err(classify)?.0.to_vec());
                }
                keys
            }
        };
        let mut deleted = false;
        for key in &keys {
            deleted |= self.dedup.delete(&mut txn, key).map_err(classify)?;
        }
        if !deleted {
            return Ok(());
        }
        self.commit(txn)?;
        self.release_freed_pages()?;
        self.make_durable()
    }

    /// Puts (or with `None` deletes) `value` under the UTF-8 `key` (what it is: `what`) in
    /// `table`, durably; a new key is refused once `keys_max` are stored (`limit` says which).
    fn put_keyed(
        &self,
        table: Database<Bytes, Bytes>,
        what: &str,
        key: &str,
        value: Option<&[u8]>,
        keys_max: u64,
        limit: &str,
    ) -> Result<(), StoreError> {
        if key.is_empty() || key.len() > RETAINED_TOPIC_BYTES_MAX {
            return Err(StoreError::InvalidArgument(format!(
                "{what} is 1 to {RETAINED_TOPIC_BYTES_MAX} bytes, not {}",
                key.len()
            )));
        }
        self.check_usable()?;
        let mut txn = self.write_txn()?;
        let key = key.as_bytes();
        match value {
            Some(value) => {
                let exists = table.get(&txn, key).map_err(classify)?.is_some();
                if !exists && table.len(&txn).map_err(classify)? >= keys_max {
                    return Err(StoreError::Full(format!("{keys_max} {limit}")));
                }
                self.check_disk_reserve_bytes(&txn, value.len() as u64)?;
                table.put(&mut txn, key, value).map_err(classify)?;
                self.commit(txn)?;
            }
            None => {
                if !table.delete(&mut txn, key).map_err(classify)? {
                    return Ok(());
                }
                self.commit(txn)?;
                self.release_freed_pages()?;
            }
        }
        self.make_durable()
    }

    /// Hands `visit` every entry of `table` whose key is UTF-8, in key order.
    fn visit_keyed(
        &self,
        table: Database<Bytes, Bytes>,
        visit: &mut dyn FnMut(&str, &[u8]),
    ) -> Result<(), StoreError> {
        let txn = self.read_txn()?;
        for item in table.iter(&txn).map_err(classify)? {
            let (key, value) = item.map_err(classify)?;
            if let Ok(key) = std::str::from_utf8(key) {
                visit(key, value);
            }
        }
        Ok(())
    }
}
