//! [`KafkaLog`]: the [`Log`] trait on a Kafka cluster.
//!
//! This module holds the log's state, opening it and the trait's face;
//! the work is in its parts: `commit` (checking, routing and writing a
//! commit, write-ahead or transactional), `slots` (write-ahead slots and
//! finishing an entry cut short), `tasks` (a group's task topics and
//! claiming tasks), `restore` (reading changelogs into the metadata copy)
//! and `keys` (how metadata keys and the backend's own topics are named).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kappa_log::{
    CleanupPolicy, Commit, CommitReceipt, FetchLimits, FetchOutcome, GroupMembership, Log,
    LogError, METADATA_KEY_BYTES_MAX, OffsetRange, PartitionDescription, Position, ProducerRecord,
    RebalanceListener, Record, TopicConfig, TopicDescription, TopicPartition, TopicSpec,
};

use crate::admin::{self, Admin, TopicAdmin};
use crate::cache::Cache;
use crate::client::{self, COMMIT_HEADER};
use crate::config::KafkaConfig;
use crate::offsets::OffsetMirror;
use crate::produce::{Outgoing, Sender, Senders};
use crate::read::Readers;
use crate::writeahead::{self, ChunkHeader, Entry, Tags};

mod commit;
mod keys;
mod restore;
mod slots;
mod tasks;

use self::keys::{
    GROUPS_PREFIX, group_key, group_prefix, is_internal, parse_group_key, task_transactional_id,
    topics_key,
};

/// The compacted topic holding metadata that belongs to no declared
/// changelog: group positions, the topic registry, progress markers.
pub const METADATA_TOPIC: &str = "kappa-metadata";
/// Write-ahead slots (partitions of the commit topic): how many commits
/// of one instance may be in flight at once.
pub const COMMIT_SLOTS: u32 = 8;

/// Groups' task slots live in `kappa-tasks-<group>`, one partition per task.
pub const TASKS_TOPIC_PREFIX: &str = "kappa-tasks-";
/// How long the commit topic keeps entries; only the last of each slot is ever read.
const COMMIT_RETENTION_MS: i64 = 24 * 60 * 60 * 1000;
const RESTORE_BATCH: usize = 50_000;
/// How long a read to the end waits for records below the reported end,
/// and how many such waits finding nothing end it.
const END_WAIT: Duration = Duration::from_millis(200);
const END_WAITS_MAX: u32 = 5;

/// What restoring the metadata copy from the changelogs took.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RestoreStats {
    /// Changelog records applied.
    pub records: u64,
    /// Time spent.
    pub seconds: f64,
    /// Write-ahead entries found unfinished and completed at start.
    pub redone_entries: u64,
    /// Records those entries still had to produce.
    pub redone_records: u64,
}

/// One write-ahead slot: a partition of a commit topic, who writes it,
/// and its next sequence number.
///
/// An instance's own slots (`kappa-commits-<instance>`) carry commits that
/// belong to no task; each task of a group has a slot of its own
/// (partition `task` of `kappa-tasks-<group>`), written by whichever
/// instance holds the task, so the next holder finishes what the last one
/// left half-written.
struct Slot {
    topic: Arc<str>,
    /// Names the writer in commit headers: the instance, or `@<group>`.
    writer: Arc<str>,
    partition: u32,
    next_seq: u64,
}

/// What makes a held task's commits atomic: its write-ahead slot, or its
/// transactional producer (see [`crate::CommitProtocol`]).
enum TaskWriter {
    Ahead(Slot),
    Transactional(Sender),
}

/// Slots not in use, and how many were retired by a failed commit.
#[derive(Default)]
struct SlotPool {
    idle: Vec<Slot>,
    retired: u32,
}

/// The Kafka backend of [`Log`].
///
/// Commits are exactly-once without broker transactions: each is first
/// written as one write-ahead entry to this instance's commit topic (the
/// commit point), then produced to its destinations with a header naming
/// the entry; a restart completes an entry that was cut short, producing
/// only what is missing. With `kappa.commit=transactions` a task's commits
/// are Kafka transactions of a producer of its own instead, and claiming
/// a task fences its last holder ([`crate::CommitProtocol`]). Metadata (store state, group positions) lives in
/// compacted changelog topics, copied to a local cache with a checkpoint
/// per changelog partition, so a restart restores only the tail.
/// See `docs/kafka.md`.
///
/// ```no_run
/// use kappa_kafka::{KafkaConfig, KafkaLog};
/// use kappa_log::{Log, TopicSpec, ProducerRecord};
/// let log = KafkaLog::open(KafkaConfig::from_url("kafka://127.0.0.1:9092", "/var/lib/kappa")?)?;
/// log.create_topic(&TopicSpec::new("greetings", 3))?;
/// log.append("greetings", vec![ProducerRecord::value("hello").with_key("k")])?;
/// # Ok::<_, kappa_log::LogError>(())
/// ```
pub struct KafkaLog {
    config: KafkaConfig,
    admin: Admin,
    topics: Arc<dyn TopicAdmin>,
    senders: Senders,
    readers: Readers,
    cache: Cache,
    commit_topic: Arc<str>,
    /// Partition counts of topics seen so far.
    partitions: RwLock<HashMap<String, u32>>,
    /// Declared changelogs: metadata prefix and its topic.
    routes: RwLock<Vec<(Vec<u8>, Arc<str>)>>,
    slots: Mutex<SlotPool>,
    slot_free: Condvar,
    /// An offset at or below the end of each partition this instance writes to.
    known_end: Mutex<HashMap<TopicPartition, u64>>,
    /// Changelog bounds of commits being produced, so checkpoints never pass them.
    in_flight: Mutex<HashMap<u64, Vec<(TopicPartition, u64)>>>,
    next_flight: AtomicU64,
    round_robin: Mutex<HashMap<String, u32>>,
    restore: Mutex<RestoreStats>,
    /// Writers of the tasks this instance holds, by group and task.
    task_writers: Mutex<HashMap<(String, u32), TaskWriter>>,
    /// For each key this instance wrote to the shared metadata topic, the
    /// offset of its latest write: reading the topic never puts an older
    /// value over it.
    own_metadata: Mutex<HashMap<Bytes, u64>>,
    /// Held while copying changelogs into the cache.
    restoring: Mutex<()>,
    /// Groups whose positions live per task ([`kappa_log::task_changelog`]):
    /// the topic and its partition count.
    task_groups: RwLock<HashMap<String, (Arc<str>, u32)>>,
    /// Copies committed group positions to Kafka's group offsets.
    offsets: OffsetMirror,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl KafkaLog {
    /// Connects, creates the backend's own topics when missing, completes
    /// this instance's unfinished commits and restores the metadata copy.
    ///
    /// # Errors
    ///
    /// The cluster is unreachable, the state directory is unusable or in
    /// use, or a write-ahead entry is corrupt.
    pub fn open(config: KafkaConfig) -> Result<Self, LogError> {
        let admin = Arc::new(Admin::new(&config)?);
        Self::open_with_topic_admin(config, admin)
    }

    /// As [`KafkaLog::open`], creating and deleting topics through `topics`
    /// (for clusters without the admin API, such as the test cluster in
    /// [`crate::testing`]).
    ///
    /// # Errors
    ///
    /// As [`KafkaLog::open`].
    pub fn open_with_topic_admin(
        config: KafkaConfig,
        topics: Arc<dyn TopicAdmin>,
    ) -> Result<Self, LogError> {
        let cache = Cache::open(&config.state_dir)?;
        let log = Self {
            admin: Admin::new(&config)?,
            topics,
            senders: Senders::new(config.clone()),
            readers: Readers::new(config.clone()),
            cache,
            commit_topic: config.commit_topic().into(),
            partitions: RwLock::new(HashMap::new()),
            routes: RwLock::new(Vec::new()),
            slots: Mutex::new(SlotPool::default()),
            slot_free: Condvar::new(),
            known_end: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
            next_flight: AtomicU64::new(0),
            round_robin: Mutex::new(HashMap::new()),
            restore: Mutex::new(RestoreStats::default()),
            task_writers: Mutex::new(HashMap::new()),
            own_metadata: Mutex::new(HashMap::new()),
            restoring: Mutex::new(()),
            task_groups: RwLock::new(HashMap::new()),
            offsets: OffsetMirror::start(&config),
            config,
        };
        let started = Instant::now();
        log.refresh_partitions()?;
        // The backend's own topics, made before anything can be committed
        // (so without entries in the topic registry, which is metadata).
        for spec in [
            TopicSpec::new(METADATA_TOPIC, 1).compacted(),
            TopicSpec::new(&*log.commit_topic, COMMIT_SLOTS).with_retention_ms(COMMIT_RETENTION_MS),
        ] {
            match log.partition_count(&spec.name) {
                Ok(_) => {}
                Err(LogError::UnknownTopic(_)) => match log.topics.create(&spec) {
                    Ok(()) | Err(LogError::TopicExists(_)) => {}
                    Err(e) => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
        let mut slots = Vec::new();
        let writer: Arc<str> = log.config.instance.as_str().into();
        for p in 0..COMMIT_SLOTS {
            slots.push(log.recover_slot(log.commit_topic.clone(), writer.clone(), p)?);
        }
        lock(&log.slots).idle = slots;
        let counts = log.refresh_partitions()?;
        let mut changelogs = vec![TopicPartition::new(METADATA_TOPIC, 0)];
        for (topic, n) in &counts {
            if topic.ends_with("-changelog") {
                changelogs.extend((0..*n).map(|p| TopicPartition::new(topic.as_str(), p)));
            }
        }
        let records = log.restore(&changelogs)?;
        let mut stats = lock(&log.restore);
        stats.records += records;
        stats.seconds += started.elapsed().as_secs_f64();
        tracing::info!(
            instance = %log.config.instance,
            records,
            seconds = stats.seconds,
            redone_entries = stats.redone_entries,
            "kafka log opened: metadata restored from changelogs"
        );
        drop(stats);
        Ok(log)
    }

    /// What the last restores took (at open and for declared changelogs).
    pub fn restore_stats(&self) -> RestoreStats {
        *lock(&self.restore)
    }

    /// The settings this log was opened with.
    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    fn refresh_partitions(&self) -> Result<BTreeMap<String, u32>, LogError> {
        let counts = self.admin.partition_counts(self.config.timeout)?;
        let mut known = self
            .partitions
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        known.clear();
        known.extend(counts.iter().map(|(k, v)| (k.clone(), *v)));
        Ok(counts)
    }

    fn partition_count(&self, topic: &str) -> Result<u32, LogError> {
        if let Some(n) = self
            .partitions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(topic)
        {
            return Ok(*n);
        }
        self.refresh_partitions()?
            .get(topic)
            .copied()
            .ok_or_else(|| LogError::UnknownTopic(topic.to_owned()))
    }

    /// Checks that `topic` exists and has `partition`.
    fn check_partition(&self, topic: &str, partition: u32) -> Result<(), LogError> {
        let n = self.partition_count(topic)?;
        if partition >= n {
            return Err(LogError::PartitionOutOfRange {
                topic: topic.to_owned(),
                partition,
                partitions: n,
            });
        }
        Ok(())
    }

    fn topic_config(&self, topic: &str) -> Result<TopicConfig, LogError> {
        Ok(self
            .cache
            .get(&topics_key(topic))?
            .map_or_else(TopicConfig::default, |b| admin::decode_config(&b)))
    }
}

impl Log for KafkaLog {
    fn backend(&self) -> &'static str {
        "kafka"
    }

    fn create_topic(&self, spec: &TopicSpec) -> Result<(), LogError> {
        spec.validate()?;
        let exists = match self.partition_count(&spec.name) {
            Ok(n) => Some(n),
            Err(LogError::UnknownTopic(_)) => None,
            Err(e) => return Err(e),
        };
        match exists {
            Some(_) if self.cache.get(&topics_key(&spec.name))?.is_some() => {
                return Err(LogError::TopicExists(spec.name.clone()));
            }
            // Made outside Kappa (or before its registry entry was written):
            // adopt it when the partition count agrees.
            Some(n) if n != spec.partitions => {
                return Err(LogError::TopicExists(spec.name.clone()));
            }
            Some(_) => {}
            None => {
                self.topics.create(spec)?;
                self.partitions
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(spec.name.clone(), spec.partitions);
            }
        }
        let mut c = Commit::new();
        c.put_metadata(topics_key(&spec.name), admin::encode_config(&spec.config));
        self.commit(c).map(|_| ())
    }

    fn delete_topic(&self, name: &str) -> Result<(), LogError> {
        self.partition_count(name)?;
        self.topics.delete(name)?;
        self.partitions
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(name);
        lock(&self.known_end).retain(|tp, _| *tp.topic != *name);
        self.forget_group_positions_of(name)
    }

    fn list_topics(&self) -> Result<Vec<TopicSpec>, LogError> {
        let mut out = Vec::new();
        for (name, n) in self.refresh_partitions()? {
            if is_internal(&name) {
                continue;
            }
            let config = self.topic_config(&name)?;
            out.push(TopicSpec {
                name,
                partitions: n,
                config,
            });
        }
        Ok(out)
    }

    fn describe_topic(&self, name: &str) -> Result<TopicDescription, LogError> {
        let n = self.partition_count(name)?;
        let config = self.topic_config(name)?;
        let mut partitions = Vec::with_capacity(n as usize);
        for p in 0..n {
            let r = self.offsets(&TopicPartition::new(name, p))?;
            partitions.push(PartitionDescription {
                partition: p,
                start_offset: r.start,
                end_offset: r.end,
                size_bytes: 0,
            });
        }
        Ok(TopicDescription {
            spec: TopicSpec {
                name: name.to_owned(),
                partitions: n,
                config,
            },
            partitions,
        })
    }

    fn commit(&self, commit: Commit) -> Result<CommitReceipt, LogError> {
        if commit.is_empty() {
            return Ok(CommitReceipt::default());
        }
        let planned = self.plan(commit)?;
        let slot = self.take_slot()?;
        let mut receipts = self.commit_planned(
            vec![(planned, slot)],
            |slot| slot.next_seq,
            |items| self.write_ahead(items),
            |slot, ok| self.put_back_slot(slot, ok),
        )?;
        Ok(receipts.pop().unwrap_or_default())
    }

    fn commit_tasks(&self, group: &str, commits: Vec<(u32, Commit)>) -> Result<(), LogError> {
        let mut planned = Vec::with_capacity(commits.len());
        for (task, commit) in commits {
            if !commit.is_empty() {
                planned.push((task, self.plan(commit)?));
            }
        }
        let mut ahead = Vec::new();
        let mut transactional = Vec::new();
        {
            let mut writers = lock(&self.task_writers);
            let mut taken = Vec::with_capacity(planned.len());
            for (task, p) in planned {
                match writers.remove(&(group.to_owned(), task)) {
                    Some(w) => taken.push((p, task, w)),
                    None => {
                        for (_, task, w) in taken {
                            writers.insert((group.to_owned(), task), w);
                        }
                        return Err(LogError::Broker(format!(
                            "task {task} of group {group:?} is not held by instance {:?} (it was never claimed, was revoked, or an earlier commit of it failed)",
                            self.config.instance
                        )));
                    }
                }
            }
            for (p, task, w) in taken {
                match w {
                    TaskWriter::Ahead(slot) => ahead.push((p, slot)),
                    TaskWriter::Transactional(sender) => transactional.push((p, (task, sender))),
                }
            }
        }
        // A writer whose commit's fate is unknown stays out: the task must
        // be claimed again (which recovers its slot, or fences its
        // producer) before it commits.
        let lost = |task: u32| {
            tracing::error!(
                group,
                task,
                "a task commit failed; the task must be claimed again"
            );
        };
        if !ahead.is_empty() {
            self.commit_planned(
                ahead,
                |slot| slot.next_seq,
                |items| self.write_ahead(items),
                |slot, ok| {
                    if ok {
                        lock(&self.task_writers)
                            .insert((group.to_owned(), slot.partition), TaskWriter::Ahead(slot));
                    } else {
                        lost(slot.partition);
                    }
                },
            )?;
        }
        if !transactional.is_empty() {
            self.commit_planned(
                transactional,
                |_| 0,
                Self::write_transactions,
                |(task, sender), ok| {
                    if ok {
                        lock(&self.task_writers)
                            .insert((group.to_owned(), task), TaskWriter::Transactional(sender));
                    } else {
                        lost(task);
                    }
                },
            )?;
        }
        Ok(())
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn join_group(
        &self,
        group: &str,
        tasks: u32,
        listener: Arc<dyn RebalanceListener>,
    ) -> Result<Box<dyn GroupMembership>, LogError> {
        let topic = self.task_topic(group, tasks)?;
        let member = crate::group::Member::join(&self.config, group, &topic, listener)?;
        self.offsets.member(group, member.consumer());
        Ok(Box::new(member))
    }

    fn claim_tasks(
        &self,
        group: &str,
        tasks: &[u32],
        changelogs: &[TopicPartition],
    ) -> Result<(), LogError> {
        self.claim(group, tasks, changelogs)
    }

    fn release_tasks(&self, group: &str, tasks: &[u32]) -> Result<(), LogError> {
        let mut held = lock(&self.task_writers);
        for t in tasks {
            held.remove(&(group.to_owned(), *t));
        }
        Ok(())
    }

    fn warm_changelogs(&self, changelogs: &[TopicPartition]) -> Result<u64, LogError> {
        self.restore(changelogs)
    }

    fn start_offset(&self, partition: &TopicPartition) -> Result<u64, LogError> {
        self.check_partition(&partition.topic, partition.partition)?;
        Ok(self.readers.with(&[], |r| r.watermarks(partition))?.0)
    }

    fn partition_count(&self, topic: &str) -> Result<u32, LogError> {
        KafkaLog::partition_count(self, topic)
    }

    /// Reads to the ends at the call as they are: unlike a fetch, it
    /// does not hold back a commit met in part (a writer that died
    /// mid-commit and is not recovered yet would hold it up to a timeout).
    fn read_topic(&self, topic: &str) -> Result<Vec<Record>, LogError> {
        let mut from = Vec::new();
        let mut ends = Vec::new();
        for partition in 0..self.partition_count(topic)? {
            let tp = TopicPartition::new(topic, partition);
            let range = self.offsets(&tp)?;
            from.push((tp, range.start));
            ends.push(range.end);
        }
        let mut out = Vec::new();
        let mut reached = from.iter().map(|(_, at)| *at).collect::<Vec<_>>();
        self.read_to_end(&from, true, |records, next| {
            out.extend(records.iter().cloned().map(client::without_backend_headers));
            reached.clone_from_slice(next);
            Ok(())
        })?;
        for (((tp, _), end), at) in from.iter().zip(&ends).zip(&reached) {
            if at < end {
                return Err(LogError::Storage(format!(
                    "{tp}: no records at offset {at}, short of the end offset {end}"
                )));
            }
        }
        out.sort_by_key(|r| (r.partition, r.offset));
        Ok(out)
    }

    fn fetch(
        &self,
        from: &[(TopicPartition, u64)],
        limits: FetchLimits,
        out: &mut Vec<Record>,
    ) -> Result<FetchOutcome, LogError> {
        for (tp, _) in from {
            self.check_partition(&tp.topic, tp.partition)?;
        }
        if from.is_empty() {
            return Ok(FetchOutcome::default());
        }
        self.readers.with(from, |r| r.fetch(from, limits, out))
    }

    fn offsets(&self, partition: &TopicPartition) -> Result<OffsetRange, LogError> {
        self.check_partition(&partition.topic, partition.partition)?;
        let (start, mut end) = self.readers.with(&[], |r| r.watermarks(partition))?;
        if self.config.compat_tansu && end > start {
            // On tansu the reported end is the last batch's first offset + 1.
            self.read_to_end(&[(partition.clone(), end - 1)], false, |records, _| {
                if let Some(last) = records.last() {
                    end = end.max(last.offset + 1);
                }
                Ok(())
            })?;
        }
        Ok(OffsetRange { start, end })
    }

    fn offset_for_timestamp(
        &self,
        partition: &TopicPartition,
        timestamp_ms: i64,
    ) -> Result<Option<u64>, LogError> {
        self.offsets(partition)?;
        self.readers
            .with(&[], |r| r.offset_for_timestamp(partition, timestamp_ms))
    }

    fn group_positions(&self, group: &str) -> Result<Vec<(TopicPartition, u64)>, LogError> {
        kappa_log::check_group_name(group)?;
        let prefix = group_prefix(group);
        let mut out = Vec::new();
        for (k, v) in self.metadata_scan(&prefix)? {
            let parsed = parse_group_key(&k[GROUPS_PREFIX.len()..]);
            let offset = <[u8; 8]>::try_from(&v[..]).ok().map(u64::from_be_bytes);
            if let (Some((_, tp)), Some(offset)) = (parsed, offset) {
                out.push((tp, offset));
            }
        }
        out.sort();
        Ok(out)
    }

    fn group_names(&self) -> Result<Vec<String>, LogError> {
        let mut names = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        // One look per group: its positions' keys all sort below
        // `group \0 \xff` (topic names are ASCII), so the next look starts
        // past them.
        while let Some((k, _)) = self
            .cache
            .page(GROUPS_PREFIX, after.as_deref(), 1)?
            .into_iter()
            .next()
        {
            let Some((group, _)) = parse_group_key(&k[GROUPS_PREFIX.len()..]) else {
                let mut skip = k.to_vec();
                skip.push(0xff);
                after = Some(skip);
                continue;
            };
            let mut skip = group_prefix(&group);
            skip.push(0xff);
            after = Some(skip);
            names.push(group);
        }
        Ok(names)
    }

    fn delete_group_positions(
        &self,
        group: &str,
        partitions: Option<&[TopicPartition]>,
    ) -> Result<usize, LogError> {
        kappa_log::check_group_name(group)?;
        let mut commit = Commit::new();
        let mut removed = 0;
        for (k, _) in self.metadata_scan(&group_prefix(group))? {
            let doomed = match (partitions, parse_group_key(&k[GROUPS_PREFIX.len()..])) {
                (None, _) => true,
                (Some(ps), Some((_, tp))) => ps.contains(&tp),
                (Some(_), None) => false,
            };
            if doomed {
                commit.delete_metadata(k);
                removed += 1;
            }
        }
        if partitions.is_none() {
            // First, so that a group still in use on the cluster keeps its
            // positions here too.
            self.admin.delete_group(group)?;
        }
        self.offsets.forget(group, partitions);
        if removed > 0 {
            self.commit(commit)?;
        }
        Ok(removed)
    }

    fn create_partitions(&self, topic: &str, partitions: u32) -> Result<(), LogError> {
        if is_internal(topic) {
            return Err(LogError::InvalidConfig(format!(
                "{topic:?} is the backend's own topic; its partitions are not changed by hand"
            )));
        }
        // Asked of the cluster, not the cache: another instance may have grown it.
        let current = self
            .refresh_partitions()?
            .get(topic)
            .copied()
            .ok_or_else(|| LogError::UnknownTopic(topic.to_owned()))?;
        if partitions <= current {
            return Err(LogError::InvalidConfig(format!(
                "topic {topic:?} has {current} partition(s); a topic only grows, so ask for more"
            )));
        }
        TopicSpec {
            name: topic.to_owned(),
            partitions,
            config: self.topic_config(topic)?,
        }
        .validate()?;
        self.topics.create_partitions(topic, partitions)?;
        self.partitions
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(topic.to_owned(), partitions);
        tracing::info!(topic, partitions, "grew topic");
        Ok(())
    }

    fn alter_topic_config(&self, topic: &str, config: TopicConfig) -> Result<(), LogError> {
        if is_internal(topic) {
            return Err(LogError::InvalidConfig(format!(
                "{topic:?} is the backend's own topic; its config is not changed by hand"
            )));
        }
        let spec = TopicSpec {
            name: topic.to_owned(),
            partitions: self.partition_count(topic)?,
            config,
        };
        spec.validate()?;
        self.topics.alter_config(topic, &spec.config)?;
        let mut c = Commit::new();
        c.put_metadata(topics_key(topic), admin::encode_config(&spec.config));
        self.commit(c)?;
        tracing::info!(topic, config = ?spec.config, "altered topic");
        Ok(())
    }

    fn metadata(&self, key: &[u8]) -> Result<Option<Bytes>, LogError> {
        self.cache.get(key)
    }

    fn metadata_scan(&self, prefix: &[u8]) -> Result<Vec<(Bytes, Bytes)>, LogError> {
        self.cache.page(prefix, None, usize::MAX)
    }

    fn metadata_page(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, LogError> {
        self.cache.page(prefix, after, limit)
    }

    fn declare_changelog(
        &self,
        prefix: &[u8],
        changelog: &str,
        partitions: u32,
    ) -> Result<(), LogError> {
        let spec = TopicSpec::new(changelog, partitions).compacted();
        match self.create_topic(&spec) {
            Ok(()) => {}
            Err(LogError::TopicExists(_)) => {
                let n = self.partition_count(changelog)?;
                if n != partitions {
                    return Err(LogError::InvalidConfig(format!(
                        "changelog topic {changelog:?} has {n} partitions but its store has {partitions}; reset the application"
                    )));
                }
            }
            Err(e) => return Err(e),
        }
        let mut routes = self
            .routes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !routes.iter().any(|(p, _)| p == prefix) {
            routes.push((prefix.to_vec(), changelog.into()));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test
mod tests;
