//! Changing what exists: a topic's partition count and configuration, and
//! a group's committed positions.
//!
//! A topic's in-memory state is replaced whole (readers hold it by `Arc`),
//! sharing the partitions' offset counters with the state it replaces, so
//! a commit racing the change is never lost; the writer lock orders the
//! change among commits.

use std::sync::Arc;
use std::sync::atomic::AtomicU32;

use super::catalog::TopicMeta;
use super::{Inner, TopicState, keys, lock_ignoring_poison};
use crate::commit::check_group_name;
use crate::error::LogError;
use crate::record::TopicPartition;
use crate::topic::{TopicConfig, TopicSpec};

impl Inner {
    pub(crate) fn create_partitions(&self, topic: &str, partitions: u32) -> Result<(), LogError> {
        self.replace_topic(topic, |spec| {
            if partitions <= spec.partitions {
                return Err(LogError::InvalidConfig(format!(
                    "topic {topic:?} has {} partition(s); a topic only grows, so ask for more",
                    spec.partitions
                )));
            }
            spec.partitions = partitions;
            Ok(())
        })
    }

    pub(crate) fn alter_topic_config(
        &self,
        topic: &str,
        config: TopicConfig,
    ) -> Result<(), LogError> {
        self.replace_topic(topic, |spec| {
            spec.config = config;
            Ok(())
        })
    }

    /// Applies `change` to a topic's spec, stores it durably and swaps the
    /// in-memory state, all under the writer lock.
    fn replace_topic(
        &self,
        topic: &str,
        change: impl FnOnce(&mut TopicSpec) -> Result<(), LogError>,
    ) -> Result<(), LogError> {
        let _writer = lock_ignoring_poison(&self.writer);
        self.check_writable()?;
        let old = self.topic(topic)?;
        let mut spec = old.spec.clone();
        change(&mut spec)?;
        spec.validate()?;
        let meta = TopicMeta { id: old.id, spec };
        let mut b = self.db.batch();
        b.insert(&self.ks.topics, topic.as_bytes(), meta.encode());
        self.commit_batch(b, true)?;
        let mut partitions = old.partitions.clone();
        partitions.resize_with(meta.spec.partitions as usize, Arc::default);
        let state = TopicState {
            id: old.id,
            name: old.name.clone(),
            spec: meta.spec,
            partitions,
            round_robin: AtomicU32::new(0),
        };
        tracing::info!(topic, partitions = state.spec.partitions, config = ?state.spec.config, "altered topic");
        self.publish(|| {
            self.topics
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(state.name.clone(), Arc::new(state));
        });
        // Fetches waiting on the topic look again and see the new partitions.
        self.notify_commit();
        Ok(())
    }

    pub(crate) fn delete_group_positions(
        &self,
        group: &str,
        partitions: Option<&[TopicPartition]>,
    ) -> Result<usize, LogError> {
        check_group_name(group)?;
        let _writer = lock_ignoring_poison(&self.writer);
        self.check_writable()?;
        let mut b = self.db.batch();
        let mut removed = 0;
        match partitions {
            Some(partitions) => {
                for tp in partitions {
                    let k = keys::group_key(group, &tp.topic, tp.partition);
                    if self.ks.groups.get(&k)?.is_some() {
                        b.remove(&self.ks.groups, k);
                        removed += 1;
                    }
                }
            }
            None => {
                for item in self.ks.groups.prefix(keys::group_prefix(group)) {
                    let k = item.key()?;
                    if matches!(keys::parse_group_key(&k), Some((g, ..)) if g == group) {
                        b.remove(&self.ks.groups, k);
                        removed += 1;
                    }
                }
            }
        }
        if removed == 0 {
            return Ok(0);
        }
        self.commit_batch(b, true)?;
        self.publish(|| {});
        tracing::info!(group, removed, "deleted group positions");
        Ok(removed)
    }
}
