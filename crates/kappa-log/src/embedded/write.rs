//! The write path: topic creation and deletion, and the atomic commit.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use super::batch::{BATCH_BYTES_TARGET, BatchBuilder};
use super::catalog::TopicMeta;
use super::keys;
use super::stats::Counters;
use super::{DELETING_PREFIX, Inner, NEXT_TOPIC_ID_KEY, TopicState, lock_ignoring_poison};
use crate::commit::{Commit, CommitReceipt, METADATA_KEY_BYTES_MAX, check_group_name};
use crate::error::LogError;
use crate::partitioner::partition_for_key;
use crate::record::{Position, ProducerRecord, now_ms};
use crate::topic::TopicSpec;

/// One partition's share of a commit while it is being encoded.
struct PartitionWrite {
    topic: usize,
    partition: u32,
    next_offset: u64,
    current: Option<BatchBuilder>,
    sealed: Vec<BatchBuilder>,
    bytes: u64,
    /// Bytes of this partition's records not yet encoded: the size of the
    /// next batch, up to the batch target.
    unencoded: usize,
}

impl Inner {
    pub(crate) fn create_topic(&self, spec: &TopicSpec) -> Result<(), LogError> {
        spec.validate()?;
        let _writer = lock_ignoring_poison(&self.writer);
        self.check_writable()?;
        self.space.admit_own()?;
        if self.topic(&spec.name).is_ok() {
            return Err(LogError::TopicExists(spec.name.clone()));
        }
        let id = self.next_topic_id()?;
        let meta = TopicMeta {
            id,
            spec: spec.clone(),
        };
        let mut b = self.db.batch();
        b.insert(&self.ks.topics, spec.name.as_bytes(), meta.encode());
        b.insert(&self.ks.system, NEXT_TOPIC_ID_KEY, (id + 1).to_le_bytes());
        self.commit_batch(b, true)?;
        let state = TopicState {
            id,
            name: spec.name.as_str().into(),
            spec: spec.clone(),
            partitions: (0..spec.partitions).map(|_| Arc::default()).collect(),
            round_robin: AtomicU32::new(0),
        };
        self.topics
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(state.name.clone(), Arc::new(state));
        tracing::info!(topic = %spec.name, partitions = spec.partitions, "created topic");
        Ok(())
    }

    pub(crate) fn delete_topic(&self, name: &str) -> Result<(), LogError> {
        let _maintenance = lock_ignoring_poison(&self.maintenance);
        let id = {
            let _writer = lock_ignoring_poison(&self.writer);
            self.check_writable()?;
            let t = self.topic(name)?;
            let mut b = self.db.batch();
            b.remove(&self.ks.topics, name.as_bytes());
            // The marker makes an interrupted purge finish on the next open.
            let mut marker = DELETING_PREFIX.to_vec();
            marker.extend_from_slice(&t.id.to_be_bytes());
            b.insert(&self.ks.system, marker, []);
            for item in self.ks.groups.iter() {
                let k = item.key()?;
                if matches!(keys::parse_group_key(&k), Some((_, topic, _)) if topic == name) {
                    b.remove(&self.ks.groups, k);
                }
            }
            self.commit_batch(b, true)?;
            self.publish(|| {
                self.topics
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(name);
            });
            t.id
        };
        // Readers waiting on the topic wake now and learn it is gone.
        self.notify_commit();
        tracing::info!(topic = %name, "deleted topic");
        // The topic is gone either way; the marker makes the next open finish
        // a purge that fails here.
        if let Err(e) = self.purge_topic_data(id) {
            tracing::error!(topic = %name, error = %e, "purging a deleted topic's data failed; it will finish on the next open");
        }
        Ok(())
    }

    pub(crate) fn commit(&self, commit: Commit) -> Result<CommitReceipt, LogError> {
        if commit.is_empty() {
            return Ok(CommitReceipt::default());
        }
        validate_metadata(&commit)?;
        let _writer = lock_ignoring_poison(&self.writer);
        self.check_writable()?;
        self.space.admit_own()?;

        // Resolve and validate everything before encoding anything, so a bad
        // part rejects the whole commit.
        let mut topics: Vec<Arc<TopicState>> = Vec::new();
        let mut topic_index: Vec<usize> = Vec::with_capacity(commit.appends.len());
        for append in &commit.appends {
            let t = match topics.iter().position(|t| t.name == append.topic) {
                Some(i) => i,
                None => {
                    topics.push(self.topic(&append.topic)?);
                    topics.len() - 1
                }
            };
            let state = &topics[t];
            if let Some(p) = append.partition {
                self.partition(state, p)?;
            }
            for r in &append.records {
                crate::topic::validate_record(&state.spec, r)?;
            }
            topic_index.push(t);
        }

        let now = now_ms();
        // Route every record first and count each partition's bytes, so that
        // each batch is allocated at the size it fills: a buffer sized for
        // the whole append (of which a partition gets a share) or grown by
        // doubling touches fresh pages it never fills, which the kernel
        // zeroes (a profiled 18 % of a card-limits run), and the memtable
        // keeps the whole allocation until it is flushed.
        let mut writes: Vec<PartitionWrite> = Vec::new();
        let mut lookup: HashMap<(usize, u32), usize> = HashMap::new();
        // Per record: its partition's write and its encoded length.
        let mut routes: Vec<(usize, usize)> = Vec::with_capacity(commit.record_count());
        for (append, &t) in commit.appends.iter().zip(&topic_index) {
            let state = &topics[t];
            let mut last: Option<(u32, usize)> = None;
            for r in &append.records {
                let p = choose_partition(state, append.partition, r);
                let w = match last {
                    Some((lp, w)) if lp == p => w,
                    _ => *lookup.entry((t, p)).or_insert_with(|| {
                        writes.push(PartitionWrite {
                            topic: t,
                            partition: p,
                            next_offset: state.partitions[p as usize].end.load(Ordering::Acquire),
                            current: None,
                            sealed: Vec::new(),
                            bytes: 0,
                            unencoded: 0,
                        });
                        writes.len() - 1
                    }),
                };
                last = Some((p, w));
                let len = r.encoded_len();
                writes[w].unencoded += len;
                routes.push((w, len));
            }
        }
        let mut positions = Vec::with_capacity(commit.record_count());
        let records = commit.appends.iter().flat_map(|a| &a.records);
        for (r, &(w, len)) in records.zip(&routes) {
            let pw = &mut writes[w];
            let offset = pw.next_offset;
            pw.next_offset += 1;
            let needs_new = pw
                .current
                .as_ref()
                .is_none_or(|b| !b.is_empty() && b.encoded_len() + len > BATCH_BYTES_TARGET);
            if needs_new {
                if let Some(full) = pw.current.take() {
                    pw.sealed.push(full);
                }
                pw.current = Some(BatchBuilder::new(
                    offset,
                    pw.unencoded.min(BATCH_BYTES_TARGET).max(len),
                    now,
                ));
            }
            if let Some(b) = pw.current.as_mut() {
                b.push_producer_record(offset, r.timestamp.unwrap_or(now), r);
            }
            pw.unencoded -= len;
            positions.push(Position {
                topic: topics[pw.topic].name.clone(),
                partition: pw.partition,
                offset,
            });
        }

        // Group positions may point at most at the end the commit leaves behind.
        for gp in &commit.group_positions {
            check_group_name(&gp.group)?;
            let state = match topics.iter().find(|t| t.name == gp.partition.topic) {
                Some(t) => t.clone(),
                None => self.topic(&gp.partition.topic)?,
            };
            let p = self.partition(&state, gp.partition.partition)?;
            let t = topics.iter().position(|t| t.name == state.name);
            let end = t
                .and_then(|t| lookup.get(&(t, gp.partition.partition)))
                .map_or_else(|| p.end.load(Ordering::Acquire), |&w| writes[w].next_offset);
            if gp.offset > end {
                return Err(LogError::OffsetOutOfRange {
                    topic: state.name.to_string(),
                    partition: gp.partition.partition,
                    offset: gp.offset,
                    start: p.start.load(Ordering::Acquire),
                    end,
                });
            }
        }

        // Sized up front: a commit of tens of thousands of store writes
        // would otherwise grow the batch by doubling, copying it each time
        // into fresh memory (profiled at 8 % of a keyed count).
        let items = writes
            .iter()
            .map(|w| 2 * (w.sealed.len() + usize::from(w.current.is_some())))
            .sum::<usize>()
            + commit.group_positions.len()
            + commit.metadata.len();
        // Durability is chosen where the batch is committed (commit_batch).
        let mut batch = fjall::OwnedWriteBatch::with_capacity(self.db.clone(), items);
        for pw in &mut writes {
            if let Some(b) = pw.current.take() {
                pw.sealed.push(b);
            }
            let id = topics[pw.topic].id;
            for builder in pw.sealed.drain(..) {
                let key = keys::batch_key(id, pw.partition, builder.base_offset());
                let (value, summary) = builder.finish();
                pw.bytes += u64::from(summary.size_bytes);
                batch.insert(&self.ks.index, key, summary.encode());
                batch.insert(&self.ks.batches, key, value);
            }
        }
        for gp in &commit.group_positions {
            let key = keys::group_key(&gp.group, &gp.partition.topic, gp.partition.partition);
            batch.insert(&self.ks.groups, key, gp.offset.to_le_bytes());
        }
        for (k, v) in commit.metadata {
            match v {
                Some(v) => batch.insert(&self.ks.meta, k, v),
                None => batch.remove(&self.ks.meta, k),
            }
        }
        let sync = matches!(self.options.durability, super::Durability::Always);
        self.commit_batch(batch, sync)?;

        let mut appended_bytes = 0;
        self.publish(|| {
            for pw in &writes {
                let p = &topics[pw.topic].partitions[pw.partition as usize];
                p.end.store(pw.next_offset, Ordering::Release);
                Counters::add(&p.size_bytes, pw.bytes);
                Counters::add(&p.dirty_bytes, pw.bytes);
                appended_bytes += pw.bytes;
            }
        });
        Counters::add(&self.counters.commits, 1);
        Counters::add(&self.counters.records_appended, positions.len() as u64);
        Counters::add(&self.counters.bytes_appended, appended_bytes);
        self.notify_commit();
        Ok(CommitReceipt { positions })
    }
}

fn choose_partition(t: &TopicState, fixed: Option<u32>, r: &ProducerRecord) -> u32 {
    match (fixed, &r.key) {
        (Some(p), _) => p,
        (None, Some(key)) => partition_for_key(key, t.spec.partitions),
        (None, None) => t.round_robin.fetch_add(1, Ordering::Relaxed) % t.spec.partitions,
    }
}

fn validate_metadata(commit: &Commit) -> Result<(), LogError> {
    for (k, _) in &commit.metadata {
        if k.is_empty() || k.len() > METADATA_KEY_BYTES_MAX {
            return Err(LogError::InvalidConfig(format!(
                "metadata keys must be 1 to {METADATA_KEY_BYTES_MAX} bytes, got {}",
                k.len()
            )));
        }
    }
    Ok(())
}
