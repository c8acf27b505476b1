//! An in-memory `Log`: the same contract as the embedded log with nothing
//! on disk. For tests, the streams test driver and tools; it has no
//! retention or compaction (nothing ages in a test).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::commit::{Commit, CommitReceipt, METADATA_KEY_BYTES_MAX, check_group_name};
use crate::error::LogError;
use crate::log::{FetchLimits, FetchOutcome, Log};
use crate::partitioner::partition_for_key;
use crate::record::{OffsetRange, Position, Record, TopicPartition, now_ms};
use crate::topic::{TopicConfig, TopicDescription, TopicSpec};

/// A log held in memory.
///
/// ```
/// use kappa_log::{Log, MemoryLog, ProducerRecord, TopicSpec};
/// let log = MemoryLog::new();
/// log.create_topic(&TopicSpec::new("t", 2))?;
/// let p = log.append("t", vec![ProducerRecord::value("v").with_key("k")])?;
/// assert_eq!(p[0].partition, kappa_log::partition_for_key(b"k", 2));
/// # Ok::<_, kappa_log::LogError>(())
/// ```
#[derive(Default)]
pub struct MemoryLog {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    topics: BTreeMap<String, MemTopic>,
    groups: BTreeMap<(String, TopicPartition), u64>,
    metadata: BTreeMap<Bytes, Bytes>,
    commits: u64,
}

struct MemTopic {
    name: Arc<str>,
    spec: TopicSpec,
    partitions: Vec<Vec<Record>>,
    round_robin: AtomicU32,
}

impl MemoryLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts a change to what fetches may see and wakes those waiting, so
    /// they look again.
    fn notify_change(&self, s: &mut State) {
        s.commits += 1;
        self.changed.notify_all();
    }
}

impl State {
    fn topic(&self, name: &str) -> Result<&MemTopic, LogError> {
        self.topics
            .get(name)
            .ok_or_else(|| LogError::UnknownTopic(name.to_owned()))
    }

    fn topic_mut(&mut self, name: &str) -> Result<&mut MemTopic, LogError> {
        self.topics
            .get_mut(name)
            .ok_or_else(|| LogError::UnknownTopic(name.to_owned()))
    }

    fn partition(&self, tp: &TopicPartition) -> Result<&Vec<Record>, LogError> {
        let t = self.topic(&tp.topic)?;
        t.partitions
            .get(tp.partition as usize)
            .ok_or_else(|| LogError::PartitionOutOfRange {
                topic: tp.topic.to_string(),
                partition: tp.partition,
                partitions: t.spec.partitions,
            })
    }
}

/// A partition's offsets: the memory log never drops records, so every
/// partition starts at 0.
fn offsets_of(records: &[Record]) -> OffsetRange {
    OffsetRange {
        start: 0,
        end: records.len() as u64,
    }
}

impl Log for MemoryLog {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn create_topic(&self, spec: &TopicSpec) -> Result<(), LogError> {
        spec.validate()?;
        let mut s = self.lock();
        if s.topics.contains_key(&spec.name) {
            return Err(LogError::TopicExists(spec.name.clone()));
        }
        s.topics.insert(
            spec.name.clone(),
            MemTopic {
                name: spec.name.as_str().into(),
                spec: spec.clone(),
                partitions: vec![Vec::new(); spec.partitions as usize],
                round_robin: AtomicU32::new(0),
            },
        );
        Ok(())
    }

    fn delete_topic(&self, name: &str) -> Result<(), LogError> {
        let mut s = self.lock();
        s.topics
            .remove(name)
            .ok_or_else(|| LogError::UnknownTopic(name.to_owned()))?;
        s.groups.retain(|(_, tp), _| &*tp.topic != name);
        self.notify_change(&mut s);
        Ok(())
    }

    fn create_partitions(&self, topic: &str, partitions: u32) -> Result<(), LogError> {
        let mut s = self.lock();
        let t = s.topic_mut(topic)?;
        if partitions <= t.spec.partitions {
            return Err(LogError::InvalidConfig(format!(
                "topic {topic:?} has {} partition(s); a topic only grows, so ask for more",
                t.spec.partitions
            )));
        }
        let mut spec = t.spec.clone();
        spec.partitions = partitions;
        spec.validate()?;
        t.partitions.resize_with(partitions as usize, Vec::new);
        t.spec = spec;
        self.notify_change(&mut s);
        Ok(())
    }

    fn alter_topic_config(&self, topic: &str, config: TopicConfig) -> Result<(), LogError> {
        let mut s = self.lock();
        let t = s.topic_mut(topic)?;
        let mut spec = t.spec.clone();
        spec.config = config;
        spec.validate()?;
        t.spec = spec;
        Ok(())
    }

    fn delete_group_positions(
        &self,
        group: &str,
        partitions: Option<&[TopicPartition]>,
    ) -> Result<usize, LogError> {
        check_group_name(group)?;
        let mut s = self.lock();
        let before = s.groups.len();
        s.groups
            .retain(|(g, tp), _| g != group || partitions.is_some_and(|ps| !ps.contains(tp)));
        Ok(before - s.groups.len())
    }

    fn list_topics(&self) -> Result<Vec<TopicSpec>, LogError> {
        Ok(self
            .lock()
            .topics
            .values()
            .map(|t| t.spec.clone())
            .collect())
    }

    fn describe_topic(&self, name: &str) -> Result<TopicDescription, LogError> {
        let s = self.lock();
        let t = s.topic(name)?;
        Ok(TopicDescription::of(&t.spec, &t.partitions, |records| {
            let size = records
                .iter()
                .map(|r| r.value.as_ref().map_or(0, Bytes::len) as u64)
                .sum();
            (offsets_of(records), size)
        }))
    }

    fn commit(&self, commit: Commit) -> Result<CommitReceipt, LogError> {
        let mut s = self.lock();
        // Validate everything first: a bad part rejects the whole commit.
        let mut planned: Vec<(String, u32)> = Vec::with_capacity(commit.record_count());
        let mut added: HashMap<(String, u32), u64> = HashMap::new();
        for a in &commit.appends {
            let t = s.topic(&a.topic)?;
            for r in &a.records {
                crate::topic::validate_record(&t.spec, r)?;
                let p = match (a.partition, &r.key) {
                    (Some(p), _) => p,
                    (None, Some(k)) => partition_for_key(k, t.spec.partitions),
                    (None, None) => {
                        t.round_robin.fetch_add(1, Ordering::Relaxed) % t.spec.partitions
                    }
                };
                if p >= t.spec.partitions {
                    return Err(LogError::PartitionOutOfRange {
                        topic: a.topic.to_string(),
                        partition: p,
                        partitions: t.spec.partitions,
                    });
                }
                *added.entry((a.topic.to_string(), p)).or_default() += 1;
                planned.push((a.topic.to_string(), p));
            }
        }
        for gp in &commit.group_positions {
            check_group_name(&gp.group)?;
            let len = s.partition(&gp.partition)?.len() as u64;
            let end = len
                + added
                    .get(&(gp.partition.topic.to_string(), gp.partition.partition))
                    .copied()
                    .unwrap_or(0);
            if gp.offset > end {
                return Err(LogError::OffsetOutOfRange {
                    topic: gp.partition.topic.to_string(),
                    partition: gp.partition.partition,
                    offset: gp.offset,
                    start: 0,
                    end,
                });
            }
        }
        for (k, _) in &commit.metadata {
            if k.is_empty() || k.len() > METADATA_KEY_BYTES_MAX {
                return Err(LogError::InvalidConfig(format!(
                    "metadata keys must be 1 to {METADATA_KEY_BYTES_MAX} bytes, got {}",
                    k.len()
                )));
            }
        }

        let now = now_ms();
        let mut positions = Vec::with_capacity(planned.len());
        let mut planned = planned.into_iter();
        for a in commit.appends {
            for r in a.records {
                let Some((topic, p)) = planned.next() else {
                    break;
                };
                let t = s
                    .topics
                    .get_mut(&topic)
                    .ok_or_else(|| LogError::UnknownTopic(topic.clone()))?;
                let name = t.name.clone();
                let part = &mut t.partitions[p as usize];
                let offset = part.len() as u64;
                part.push(Record {
                    topic: name.clone(),
                    partition: p,
                    offset,
                    timestamp: r.timestamp.unwrap_or(now),
                    key: r.key,
                    value: r.value,
                    headers: r.headers,
                });
                positions.push(Position {
                    topic: name,
                    partition: p,
                    offset,
                });
            }
        }
        for gp in commit.group_positions {
            s.groups
                .insert((gp.group.to_string(), gp.partition), gp.offset);
        }
        for (k, v) in commit.metadata {
            match v {
                Some(v) => s.metadata.insert(k, v),
                None => s.metadata.remove(&k),
            };
        }
        self.notify_change(&mut s);
        Ok(CommitReceipt { positions })
    }

    fn fetch(
        &self,
        from: &[(TopicPartition, u64)],
        limits: FetchLimits,
        out: &mut Vec<Record>,
    ) -> Result<FetchOutcome, LogError> {
        let deadline = Instant::now() + limits.wait_max.min(Duration::from_secs(24 * 3600));
        let mut s = self.lock();
        loop {
            let mut outcome = FetchOutcome {
                next_offsets: Vec::with_capacity(from.len()),
                records: 0,
            };
            let mut bytes = 0usize;
            for (tp, offset) in from {
                let records = s.partition(tp)?;
                let end = records.len() as u64;
                if *offset > end {
                    return Err(LogError::OffsetOutOfRange {
                        topic: tp.topic.to_string(),
                        partition: tp.partition,
                        offset: *offset,
                        start: 0,
                        end,
                    });
                }
                let mut next = *offset;
                for r in &records[*offset as usize..] {
                    if outcome.records >= limits.records_max
                        || (outcome.records > 0 && bytes >= limits.bytes_max)
                    {
                        break;
                    }
                    bytes += r.key.as_ref().map_or(0, Bytes::len)
                        + r.value.as_ref().map_or(0, Bytes::len);
                    out.push(r.clone());
                    outcome.records += 1;
                    next = r.offset + 1;
                }
                outcome.next_offsets.push(next);
            }
            let now = Instant::now();
            if outcome.records > 0 || limits.records_max == 0 || now >= deadline {
                return Ok(outcome);
            }
            let seen = s.commits;
            while s.commits == seen {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                s = self
                    .changed
                    .wait_timeout(s, deadline - now)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
            }
        }
    }

    fn offsets(&self, partition: &TopicPartition) -> Result<OffsetRange, LogError> {
        Ok(offsets_of(self.lock().partition(partition)?))
    }

    fn offset_for_timestamp(
        &self,
        partition: &TopicPartition,
        timestamp_ms: i64,
    ) -> Result<Option<u64>, LogError> {
        let s = self.lock();
        Ok(s.partition(partition)?
            .iter()
            .find(|r| r.timestamp >= timestamp_ms)
            .map(|r| r.offset))
    }

    fn group_names(&self) -> Result<Vec<String>, LogError> {
        let mut names: Vec<String> = self.lock().groups.keys().map(|(g, _)| g.clone()).collect();
        names.dedup();
        Ok(names)
    }

    fn group_positions(&self, group: &str) -> Result<Vec<(TopicPartition, u64)>, LogError> {
        check_group_name(group)?;
        let s = self.lock();
        Ok(s.groups
            .iter()
            .filter(|((g, _), _)| g == group)
            .map(|((_, tp), o)| (tp.clone(), *o))
            .collect())
    }

    fn metadata(&self, key: &[u8]) -> Result<Option<Bytes>, LogError> {
        Ok(self.lock().metadata.get(key).cloned())
    }

    fn metadata_scan(&self, prefix: &[u8]) -> Result<Vec<(Bytes, Bytes)>, LogError> {
        let s = self.lock();
        Ok(s.metadata
            .range(Bytes::copy_from_slice(prefix)..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn metadata_page(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, LogError> {
        let s = self.lock();
        crate::log::metadata_page_from(prefix, after, limit, |range| {
            s.metadata
                .range::<[u8], _>(range)
                .map(|(k, v)| Ok::<_, LogError>((k.clone(), v.clone())))
        })
    }
}
