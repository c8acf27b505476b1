//! Background upkeep: retention, compaction, interval fsync, and finishing
//! interrupted topic deletions.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;

use super::batch::{BatchBuilder, BatchSummary, BatchView};
use super::catalog::PartitionMeta;
use super::stats::Counters;
use super::{DELETING_PREFIX, Inner, TopicState, keys, lock_ignoring_poison};
use crate::error::{LogError, describe_fjall};
use crate::record::now_ms;
use crate::topic::CleanupPolicy;

/// Keys removed per storage batch when purging a deleted topic, so the
/// purge never builds one unbounded batch.
const PURGE_KEYS_PER_BATCH_MAX: usize = 10_000;
/// Bytes of rewritten batches per storage batch during compaction.
const COMPACTION_REWRITE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// What one maintenance run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Batches removed by retention.
    pub batches_expired: u64,
    /// Records removed by compaction.
    pub records_compacted: u64,
}

impl Inner {
    pub(crate) fn run_maintenance(
        &self,
        now: i64,
        force: bool,
    ) -> Result<MaintenanceReport, LogError> {
        let _maintenance = lock_ignoring_poison(&self.maintenance);
        let topics: Vec<Arc<TopicState>> = self
            .topics
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        let mut report = MaintenanceReport::default();
        for t in topics {
            for p in 0..t.spec.partitions {
                match t.spec.config.cleanup_policy {
                    CleanupPolicy::Delete => {
                        let n = self.apply_retention(&t, p, now)?;
                        report.batches_expired += n;
                        Counters::add(&self.counters.batches_expired, n);
                    }
                    CleanupPolicy::Compact => {
                        let n = self.compact(&t, p, now, force)?;
                        report.records_compacted += n;
                        Counters::add(&self.counters.records_compacted, n);
                    }
                }
            }
        }
        Ok(report)
    }

    /// Deletes the oldest batches past the retention time or size, as Kafka
    /// deletes segments: in order, stopping at the first one to keep.
    fn apply_retention(&self, t: &TopicState, partition: u32, now: i64) -> Result<u64, LogError> {
        let c = &t.spec.config;
        if c.retention_ms.is_none() && c.retention_bytes.is_none() {
            return Ok(0);
        }
        let p = self.partition(t, partition)?;
        let mut batches: Vec<(Vec<u8>, BatchSummary)> = Vec::new();
        for item in self.ks.index.prefix(keys::partition_key(t.id, partition)) {
            let (k, v) = item.into_inner().map_err(|e| LogError::Corrupt {
                topic: t.name.to_string(),
                partition,
                offset: 0,
                detail: describe_fjall(&e),
            })?;
            let summary = BatchSummary::decode(&v).ok_or_else(|| LogError::Corrupt {
                topic: t.name.to_string(),
                partition,
                offset: keys::base_offset_of(&k).unwrap_or(0),
                detail: "batch index entry is damaged".to_owned(),
            })?;
            batches.push((k.to_vec(), summary));
        }
        let mut expired = 0usize;
        if let Some(ms) = c.retention_ms {
            let cutoff = now.saturating_sub(ms);
            expired = batches
                .iter()
                .take_while(|(_, s)| s.max_timestamp < cutoff)
                .count();
        }
        if let Some(limit) = c.retention_bytes {
            let mut total: u64 = batches[expired..]
                .iter()
                .map(|(_, s)| u64::from(s.size_bytes))
                .sum();
            while let Some((_, s)) = batches.get(expired) {
                let rest = total - u64::from(s.size_bytes);
                if rest < limit {
                    break;
                }
                total = rest;
                expired += 1;
            }
        }
        if expired == 0 {
            return Ok(0);
        }
        // The first offset kept: the next surviving batch, or just past the
        // last expired one. Not the current end, which may include batches
        // committed after the index scan above.
        let new_start = match batches.get(expired) {
            Some((k, _)) => keys::base_offset_of(k),
            None => {
                let (k, s) = &batches[expired - 1];
                keys::base_offset_of(k)
                    .and_then(|base| base.checked_add(u64::from(s.last_offset_delta) + 1))
            }
        }
        .ok_or_else(|| LogError::Corrupt {
            topic: t.name.to_string(),
            partition,
            offset: 0,
            detail: "batch index key is damaged".to_owned(),
        })?
        .max(p.start.load(Ordering::Acquire));
        // Advance the start before deleting, so a reader that finds batches
        // missing also finds the start moved past them (see read_partition).
        self.publish(|| p.start.store(new_start, Ordering::Release));
        let mut b = self.db.batch();
        let mut freed = 0u64;
        for (k, s) in &batches[..expired] {
            b.remove(&self.ks.batches, k.as_slice());
            b.remove(&self.ks.index, k.as_slice());
            freed += u64::from(s.size_bytes);
        }
        // The start is also the end's floor: if every batch went, the
        // partition still continues at this offset after a reopen.
        let meta = PartitionMeta {
            log_start: new_start,
            end_floor: new_start,
        };
        self.commit_with_meta(t, partition, b, &meta, || {
            p.size_bytes.fetch_sub(freed, Ordering::Relaxed);
        })?;
        tracing::debug!(topic = %t.name, partition, batches = expired, new_start, "retention removed batches");
        Ok(expired as u64)
    }

    /// Keeps only the latest record per key; tombstones older than
    /// `delete_retention_ms` go too. Offsets never change. Runs when at least
    /// half the partition is new since the last compaction (Kafka's
    /// `min.cleanable.dirty.ratio` of 0.5), when a kept tombstone expires, or
    /// when forced.
    fn compact(
        &self,
        t: &TopicState,
        partition: u32,
        now: i64,
        force: bool,
    ) -> Result<u64, LogError> {
        let p = self.partition(t, partition)?;
        let dirty = p.dirty_bytes.load(Ordering::Relaxed);
        let size = p.size_bytes.load(Ordering::Relaxed);
        let tombstone_due = now >= p.tombstone_expiry_ms.load(Ordering::Relaxed);
        if !force && !tombstone_due && (dirty == 0 || dirty * 2 < size) {
            return Ok(0);
        }
        let end = p.end.load(Ordering::Acquire);
        let corrupt = |offset: u64, detail: String| LogError::Corrupt {
            topic: t.name.to_string(),
            partition,
            offset,
            detail,
        };
        let range = keys::batch_key(t.id, partition, 0)..keys::batch_key(t.id, partition, end);

        // Pass 1: the latest offset of every key (keys copied, so batch buffers are not kept alive).
        let mut latest: HashMap<Bytes, u64> = HashMap::new();
        for item in self.ks.batches.range(range.clone()) {
            let (k, v) = item
                .into_inner()
                .map_err(|e| corrupt(0, describe_fjall(&e)))?;
            let base = keys::base_offset_of(&k).unwrap_or(0);
            let view = BatchView::parse(Bytes::from(v), base).map_err(|e| corrupt(base, e.0))?;
            view.for_each_record(&t.name, partition, 0, |r| {
                if let Some(key) = r.key {
                    latest.insert(Bytes::copy_from_slice(&key), r.offset);
                }
                true
            })
            .map_err(|e| corrupt(base, e.0))?;
        }

        // Pass 2: rewrite batches that hold superseded records.
        // Tombstones expire by when they were written, not by their event
        // time: a replayed old delete must still reach lagging readers.
        let delete_retention = t.spec.config.delete_retention_ms;
        let tombstone_cutoff = now.saturating_sub(delete_retention);
        let mut removed_total = 0u64;
        let mut b = self.db.batch();
        let mut pending_bytes = 0usize;
        // Bytes freed by the rewrites in `b`, applied once `b` commits.
        let mut freed = 0i64;
        let mut tombstone_expiry = i64::MAX;
        for item in self.ks.batches.range(range) {
            let (k, v) = item
                .into_inner()
                .map_err(|e| corrupt(0, describe_fjall(&e)))?;
            let base = keys::base_offset_of(&k).unwrap_or(0);
            let old_len = v.len();
            let view = BatchView::parse(Bytes::from(v), base).map_err(|e| corrupt(base, e.0))?;
            let mut kept = Vec::new();
            let mut removed = 0u64;
            view.for_each_record(&t.name, partition, 0, |r| {
                let is_latest = r.key.as_ref().and_then(|k| latest.get(k)) == Some(&r.offset);
                let expired_tombstone = r.value.is_none() && view.append_time < tombstone_cutoff;
                if is_latest && !expired_tombstone {
                    if r.value.is_none() {
                        tombstone_expiry =
                            tombstone_expiry.min(view.append_time.saturating_add(delete_retention));
                    }
                    kept.push(r);
                } else {
                    removed += 1;
                }
                true
            })
            .map_err(|e| corrupt(base, e.0))?;
            if removed == 0 {
                continue;
            }
            removed_total += removed;
            freed += old_len as i64;
            if kept.is_empty() {
                b.remove(&self.ks.batches, k.clone());
                b.remove(&self.ks.index, k);
                continue;
            }
            let mut builder = BatchBuilder::new(base, old_len, view.append_time);
            for r in &kept {
                builder.push(
                    r.offset,
                    r.timestamp,
                    r.key.as_deref(),
                    r.value.as_deref(),
                    &r.headers,
                );
            }
            let (value, summary) = builder.finish();
            freed -= value.len() as i64;
            pending_bytes += value.len();
            b.insert(&self.ks.index, k.clone(), summary.encode());
            b.insert(&self.ks.batches, k, value);
            if pending_bytes >= COMPACTION_REWRITE_BYTES_MAX {
                let chunk = std::mem::replace(&mut b, self.db.batch());
                self.commit_compaction(t, partition, end, chunk, std::mem::take(&mut freed))?;
                pending_bytes = 0;
            }
        }
        self.commit_compaction(t, partition, end, b, freed)?;
        p.dirty_bytes.fetch_sub(dirty, Ordering::Relaxed);
        p.tombstone_expiry_ms
            .store(tombstone_expiry, Ordering::Relaxed);
        if removed_total > 0 {
            tracing::debug!(topic = %t.name, partition, removed = removed_total, "compaction removed records");
        }
        Ok(removed_total)
    }

    /// Each compaction chunk is a valid state on its own (it only drops
    /// superseded records), so chunks commit separately. The partition's
    /// end is recorded because the last record may have been dropped.
    /// `freed` is the bytes the chunk frees (negative if it grew).
    fn commit_compaction(
        &self,
        t: &TopicState,
        partition: u32,
        end: u64,
        b: fjall::OwnedWriteBatch,
        freed: i64,
    ) -> Result<(), LogError> {
        if b.is_empty() {
            return Ok(());
        }
        let p = self.partition(t, partition)?;
        let meta = PartitionMeta {
            log_start: p.start.load(Ordering::Acquire),
            end_floor: end,
        };
        self.commit_with_meta(t, partition, b, &meta, || {
            if freed >= 0 {
                p.size_bytes
                    .fetch_sub(freed.unsigned_abs(), Ordering::Relaxed);
            } else {
                p.size_bytes
                    .fetch_add(freed.unsigned_abs(), Ordering::Relaxed);
            }
        })
    }

    /// Commits a rewrite of a partition's batches together with its new
    /// bounds (`meta`), so a reopen never sees the one without the other,
    /// then publishes `update` to readers.
    fn commit_with_meta(
        &self,
        t: &TopicState,
        partition: u32,
        mut b: fjall::OwnedWriteBatch,
        meta: &PartitionMeta,
        update: impl FnOnce(),
    ) -> Result<(), LogError> {
        b.insert(
            &self.ks.partitions,
            keys::partition_key(t.id, partition),
            meta.encode(),
        );
        self.commit_batch(b, true)?;
        self.publish(update);
        Ok(())
    }

    /// Removes all stored data of a deleted topic id, in bounded batches.
    pub(crate) fn purge_topic_data(&self, id: u64) -> Result<(), LogError> {
        let prefix = keys::topic_prefix(id);
        for ks in [&self.ks.batches, &self.ks.index, &self.ks.partitions] {
            loop {
                let mut b = self.db.batch();
                for item in ks.prefix(prefix).take(PURGE_KEYS_PER_BATCH_MAX) {
                    b.remove(ks, item.key()?);
                }
                if b.is_empty() {
                    break;
                }
                self.commit_batch(b, false)?;
            }
        }
        let mut marker = DELETING_PREFIX.to_vec();
        marker.extend_from_slice(&id.to_be_bytes());
        let mut b = self.db.batch();
        b.remove(&self.ks.system, marker);
        self.commit_batch(b, true)
    }

    pub(crate) fn finish_pending_deletes(&self) -> Result<(), LogError> {
        let mut ids = Vec::new();
        for item in self.ks.system.prefix(DELETING_PREFIX) {
            let k = item.key()?;
            let id = k
                .get(DELETING_PREFIX.len()..)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| {
                    LogError::CorruptMetadata("a topic deletion marker is damaged".to_owned())
                })?;
            ids.push(id);
        }
        for id in ids {
            tracing::info!(topic_id = id, "finishing an interrupted topic deletion");
            self.purge_topic_data(id)?;
        }
        Ok(())
    }
}

/// Waits up to `every` or until shutdown; returns true on shutdown.
fn wait_or_shutdown(inner: &Inner, every: Duration) -> bool {
    let (lock, cvar) = &inner.shutdown;
    let guard = lock_ignoring_poison(lock);
    let (guard, _) = cvar
        .wait_timeout_while(guard, every, |stop| !*stop)
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *guard
}

/// The threads hold a weak reference so they never keep a dropped log alive.
fn spawn_named(
    name: &str,
    inner: &Arc<Inner>,
    every: Duration,
    work: fn(&Inner),
) -> Result<JoinHandle<()>, LogError> {
    let weak: Weak<Inner> = Arc::downgrade(inner);
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                if wait_or_shutdown(&inner, every) {
                    return;
                }
                work(&inner);
            }
        })
        .map_err(|source| LogError::Io {
            path: inner.dir.clone(),
            source,
        })
}

pub(crate) fn spawn_maintenance_thread(inner: &Arc<Inner>) -> Result<JoinHandle<()>, LogError> {
    spawn_named(
        "kappa-log-maintenance",
        inner,
        inner.options.maintenance_interval,
        |inner| {
            if let Err(e) = inner.run_maintenance(now_ms(), false) {
                tracing::error!(error = %e, "log maintenance failed");
            }
        },
    )
}

pub(crate) fn spawn_fsync_thread(
    inner: &Arc<Inner>,
    every: Duration,
) -> Result<JoinHandle<()>, LogError> {
    spawn_named("kappa-log-fsync", inner, every, |inner| {
        if let Err(e) = inner.persist() {
            tracing::error!(error = %e, "interval fsync failed; the log is poisoned");
        }
    })
}
