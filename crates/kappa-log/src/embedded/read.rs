//! The read path: fetch (with tailing), timestamp lookup, group positions.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;

use super::batch::{BatchSummary, BatchView};
use fjall::Readable;

use super::{Inner, TopicState, bounded_wait, keys, lock_ignoring_poison};
use crate::commit::check_group_name;
use crate::error::{LogError, describe_fjall};
use crate::log::{FetchLimits, FetchOutcome};
use crate::record::{OffsetRange, Record, TopicPartition};

/// One partition of a fetch, with the end it may read up to.
struct PartitionRead {
    topic: Arc<TopicState>,
    partition: u32,
    offset: u64,
    end: u64,
}

fn corrupt(t: &TopicState, partition: u32, offset: u64, detail: String) -> LogError {
    LogError::Corrupt {
        topic: t.name.to_string(),
        partition,
        offset,
        detail,
    }
}

impl Inner {
    pub(crate) fn fetch(
        &self,
        from: &[(TopicPartition, u64)],
        limits: FetchLimits,
        out: &mut Vec<Record>,
    ) -> Result<FetchOutcome, LogError> {
        let deadline = Instant::now() + bounded_wait(limits.wait_max);
        let (lock, cvar) = &self.commits;
        loop {
            // Read the commit counter before looking, so a commit that lands
            // after the look is seen as a change and nothing is missed.
            let seen = *lock_ignoring_poison(lock);
            let reads = self.plan_reads(from)?;
            let outcome = self.read_planned(&reads, limits, out)?;
            if outcome.records > 0 || limits.records_max == 0 {
                return Ok(outcome);
            }
            let mut guard = lock_ignoring_poison(lock);
            loop {
                if *guard != seen {
                    break;
                }
                let now = Instant::now();
                if now >= deadline {
                    return Ok(outcome);
                }
                guard = cvar
                    .wait_timeout(guard, deadline - now)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
            }
        }
    }

    /// Every partition's bounds, taken in one published state, so a commit
    /// spanning several of them is seen whole or not at all.
    fn plan_reads(&self, from: &[(TopicPartition, u64)]) -> Result<Vec<PartitionRead>, LogError> {
        let mut reads = Vec::with_capacity(from.len());
        {
            let _published = self
                .published
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for (tp, offset) in from {
                let topic = self.topic(&tp.topic)?;
                let p = self.partition(&topic, tp.partition)?;
                let OffsetRange { start, end } = p.offsets();
                if *offset < start || *offset > end {
                    return Err(LogError::OffsetOutOfRange {
                        topic: topic.name.to_string(),
                        partition: tp.partition,
                        offset: *offset,
                        start,
                        end,
                    });
                }
                reads.push(PartitionRead {
                    topic,
                    partition: tp.partition,
                    offset: *offset,
                    end,
                });
            }
        }
        Ok(reads)
    }

    /// Reads the planned partitions in order while `limits` allow.
    fn read_planned(
        &self,
        reads: &[PartitionRead],
        limits: FetchLimits,
        out: &mut Vec<Record>,
    ) -> Result<FetchOutcome, LogError> {
        let mut outcome = FetchOutcome {
            next_offsets: Vec::with_capacity(reads.len()),
            records: 0,
        };
        let mut bytes = 0usize;
        for read in reads {
            let next = if outcome.records < limits.records_max
                && (outcome.records == 0 || bytes < limits.bytes_max)
            {
                self.read_partition(read, limits, &mut outcome.records, &mut bytes, out)?
            } else {
                read.offset
            };
            outcome.next_offsets.push(next);
        }
        Ok(outcome)
    }

    /// Reads one partition from `read.offset` up to `read.end`; returns the
    /// next offset to read.
    fn read_partition(
        &self,
        read: &PartitionRead,
        limits: FetchLimits,
        count: &mut usize,
        bytes: &mut usize,
        out: &mut Vec<Record>,
    ) -> Result<u64, LogError> {
        let (t, partition, offset, end) = (&read.topic, read.partition, read.offset, read.end);
        if offset == end {
            return Ok(end);
        }
        let (count_before, bytes_before, out_before) = (*count, *bytes, out.len());
        // The batch holding `offset` is the last one starting at or before it.
        let first_base = self
            .ks
            .batches
            .range(keys::batch_key(t.id, partition, 0)..=keys::batch_key(t.id, partition, offset))
            .next_back()
            .map(|g| g.key())
            .transpose()
            .map_err(|e| corrupt(t, partition, offset, describe_fjall(&e)))?
            .and_then(|k| keys::base_offset_of(&k))
            .unwrap_or(offset);

        let mut next = end;
        let range =
            keys::batch_key(t.id, partition, first_base)..keys::batch_key(t.id, partition, end);
        'batches: for item in self.ks.batches.range(range) {
            let (k, v) = item
                .into_inner()
                .map_err(|e| corrupt(t, partition, offset, describe_fjall(&e)))?;
            let base = keys::base_offset_of(&k)
                .ok_or_else(|| corrupt(t, partition, offset, "malformed batch key".to_owned()))?;
            let view = BatchView::parse(Bytes::from(v), base)
                .map_err(|e| corrupt(t, partition, base, e.0))?;
            let mut stopped = false;
            view.for_each_record(&t.name, partition, offset, |r| {
                if r.offset >= end {
                    stopped = true;
                    return false;
                }
                *bytes +=
                    r.key.as_ref().map_or(0, Bytes::len) + r.value.as_ref().map_or(0, Bytes::len);
                next = r.offset + 1;
                out.push(r);
                *count += 1;
                if *count >= limits.records_max || *bytes >= limits.bytes_max {
                    stopped = true;
                    return false;
                }
                true
            })
            .map_err(|e| corrupt(t, partition, base, e.0))?;
            if stopped {
                break 'batches;
            }
            next = end;
        }
        // Retention advances the start before it deletes batches; if it ran
        // during this read, records may have vanished under us, so report the
        // offset as gone rather than silently skip ahead.
        let start = self.partition(t, partition)?.start.load(Ordering::Acquire);
        if offset < start {
            out.truncate(out_before);
            (*count, *bytes) = (count_before, bytes_before);
            return Err(LogError::OffsetOutOfRange {
                topic: t.name.to_string(),
                partition,
                offset,
                start,
                end,
            });
        }
        Ok(next)
    }

    pub(crate) fn offset_for_timestamp(
        &self,
        tp: &TopicPartition,
        timestamp_ms: i64,
    ) -> Result<Option<u64>, LogError> {
        let t = self.topic(&tp.topic)?;
        let p = self.partition(&t, tp.partition)?;
        let start = p.start.load(Ordering::Acquire);
        let end = p.end.load(Ordering::Acquire);
        let range =
            keys::batch_key(t.id, tp.partition, 0)..keys::batch_key(t.id, tp.partition, end);
        for item in self.ks.index.range(range) {
            let (k, v) = item
                .into_inner()
                .map_err(|e| corrupt(&t, tp.partition, 0, describe_fjall(&e)))?;
            let base = keys::base_offset_of(&k).unwrap_or(0);
            let summary = BatchSummary::decode(&v).ok_or_else(|| {
                corrupt(
                    &t,
                    tp.partition,
                    base,
                    "batch index entry is damaged".to_owned(),
                )
            })?;
            if summary.max_timestamp < timestamp_ms {
                continue;
            }
            let Some(value) = self
                .ks
                .batches
                .get(k)
                .map_err(|e| corrupt(&t, tp.partition, base, describe_fjall(&e)))?
            else {
                // Removed by retention between the index scan and now.
                continue;
            };
            let view = BatchView::parse(Bytes::from(value), base)
                .map_err(|e| corrupt(&t, tp.partition, base, e.0))?;
            let mut found = None;
            view.for_each_record(&t.name, tp.partition, start, |r| {
                if r.timestamp >= timestamp_ms {
                    found = Some(r.offset);
                    false
                } else {
                    true
                }
            })
            .map_err(|e| corrupt(&t, tp.partition, base, e.0))?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    pub(crate) fn group_names(&self) -> Result<Vec<String>, LogError> {
        let snapshot = self.published();
        let mut names: Vec<String> = Vec::new();
        for item in snapshot.iter(&self.ks.groups) {
            let k = item.key()?;
            let Some((group, ..)) = keys::parse_group_key(&k) else {
                return Err(LogError::CorruptMetadata(
                    "a group position's key is damaged".to_owned(),
                ));
            };
            // Keys sort by group first, so equal names are neighbours.
            if names.last().is_none_or(|last| last != group) {
                names.push(group.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    pub(crate) fn group_positions(
        &self,
        group: &str,
    ) -> Result<Vec<(TopicPartition, u64)>, LogError> {
        check_group_name(group)?;
        let mut out = Vec::new();
        let snapshot = self.published();
        for item in snapshot.prefix(&self.ks.groups, keys::group_prefix(group)) {
            let (k, v) = item.into_inner()?;
            let parsed = keys::parse_group_key(&k);
            let offset = <[u8; 8]>::try_from(v.as_ref()).ok().map(u64::from_le_bytes);
            let (Some((g, topic, partition)), Some(offset)) = (parsed, offset) else {
                return Err(LogError::CorruptMetadata(format!(
                    "a position of group {group:?} is damaged"
                )));
            };
            if g == group {
                out.push((TopicPartition::new(topic, partition), offset));
            }
        }
        out.sort();
        Ok(out)
    }
}
