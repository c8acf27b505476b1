//! [`KafkaLog`]: the [`Log`] trait on a Kafka cluster.

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
use crate::client::COMMIT_HEADER;
use crate::config::KafkaConfig;
use crate::offsets::OffsetMirror;
use crate::produce::{Outgoing, Sender, Senders};
use crate::read::Readers;
use crate::writeahead::{self, ChunkHeader, Entry};

/// The compacted topic holding metadata that belongs to no declared
/// changelog: group positions, the topic registry, progress markers.
pub const METADATA_TOPIC: &str = "kappa-metadata";
/// Write-ahead slots (partitions of the commit topic): how many commits
/// of one instance may be in flight at once.
pub const COMMIT_SLOTS: u32 = 8;

/// Groups' task slots live in `kappa-tasks-<group>`, one partition per task.
pub const TASKS_TOPIC_PREFIX: &str = "kappa-tasks-";
const GROUPS_PREFIX: &[u8] = b"kappa-log/groups/";
const TOPICS_PREFIX: &[u8] = b"kappa-log/topics/";
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

    /// Reads partitions from the given offsets to their ends: at least to
    /// the end the leader reports now, and on until a read finds nothing
    /// more (some brokers under-report the end). `rewind` as in
    /// [`crate::read::Reader::read`].
    fn read_to_end(
        &self,
        tps: &[(TopicPartition, u64)],
        rewind: bool,
        mut each: impl FnMut(&[Record], &[u64]) -> Result<(), LogError>,
    ) -> Result<(), LogError> {
        let mut from = tps.to_vec();
        if from.is_empty() {
            return Ok(());
        }
        let mut ends = Vec::with_capacity(from.len());
        for (tp, _) in &from {
            ends.push(self.readers.with(&[], |r| r.watermarks(tp))?.1);
        }
        let mut out = Vec::new();
        let mut empty_waits = 0;
        loop {
            let reached = from.iter().zip(&ends).all(|((_, at), end)| at >= end);
            // Below the reported ends records exist: wait for them (a
            // reused reader's end reports can be older than they are).
            let limits = FetchLimits {
                records_max: RESTORE_BATCH,
                wait_max: if reached { Duration::ZERO } else { END_WAIT },
                ..FetchLimits::default()
            };
            out.clear();
            let outcome = self
                .readers
                .with(&from, |r| r.read(&from, limits, &mut out, true, rewind))?;
            each(&out, &outcome.next_offsets)?;
            for ((_, at), next) in from.iter_mut().zip(&outcome.next_offsets) {
                *at = *next;
            }
            if outcome.records > 0 {
                empty_waits = 0;
                continue;
            }
            if reached {
                return Ok(());
            }
            // Offsets below the reported end that hold nothing readable
            // (another producer's transaction markers) end the read too.
            empty_waits += 1;
            if empty_waits >= END_WAITS_MAX {
                return Ok(());
            }
        }
    }

    /// Copies changelog partitions into the cache from their checkpoints.
    fn restore(&self, tps: &[TopicPartition]) -> Result<u64, LogError> {
        let _restoring = lock(&self.restoring);
        let mut from = Vec::with_capacity(tps.len());
        for tp in tps {
            let (low, _) = self.readers.with(&[], |r| r.watermarks(tp))?;
            from.push((tp.clone(), self.cache.checkpoint(tp)?.max(low)));
        }
        let mut applied = 0u64;
        let mut changes = Vec::new();
        self.read_to_end(&from, true, |records, next| {
            changes.clear();
            let own = lock(&self.own_metadata);
            for r in records {
                if let Some(k) = &r.key {
                    // This instance wrote the key later: that value stands.
                    if *r.topic == *METADATA_TOPIC && own.get(k).is_some_and(|at| *at > r.offset) {
                        continue;
                    }
                    changes.push((k.clone(), r.value.clone()));
                }
            }
            drop(own);
            applied += records.len() as u64;
            let checkpoints: Vec<(TopicPartition, u64)> = from
                .iter()
                .zip(next)
                .map(|((tp, _), n)| (tp.clone(), *n))
                .collect();
            self.cache.apply(&changes, &checkpoints)
        })?;
        Ok(applied)
    }

    /// Reads the end of a write-ahead slot: finishes its last entry if it
    /// is complete, and returns the slot positioned after it.
    fn recover_slot(
        &self,
        topic: Arc<str>,
        writer: Arc<str>,
        partition: u32,
    ) -> Result<Slot, LogError> {
        let tp = TopicPartition::new(topic.clone(), partition);
        let (low, high) = self.readers.with(&[], |r| r.watermarks(&tp))?;
        let mut slot = Slot {
            topic,
            writer,
            partition,
            next_seq: 0,
        };
        if high <= low {
            return Ok(slot);
        }
        let mut last: Option<Record> = None;
        // Where tansu puts the end: the first record of the last batch.
        self.read_to_end(&[(tp.clone(), high - 1)], false, |records, _| {
            if let Some(r) = records.last() {
                last = Some(r.clone());
            }
            Ok(())
        })?;
        let Some(last) = last else {
            return Ok(slot);
        };
        let header = last
            .value
            .as_deref()
            .and_then(ChunkHeader::parse)
            .ok_or_else(|| {
                LogError::CorruptMetadata(format!(
                    "{} holds a record that is not a write-ahead chunk",
                    last.position()
                ))
            })?;
        slot.next_seq = header.seq + 1;
        if !header.is_last() {
            // Cut short while being written: that commit never happened.
            return Ok(slot);
        }
        let first = last.offset - u64::from(header.part);
        let mut chunks = Vec::new();
        // An entry's chunks are produced alone, after the previous entry's
        // were acknowledged: the first starts a batch.
        self.read_to_end(&[(tp, first)], false, |records, _| {
            for r in records {
                if chunks.len() < header.parts as usize {
                    chunks.push(r.value.clone().unwrap_or_default());
                }
            }
            Ok(())
        })?;
        if let Some(entry) = Entry::decode(&chunks)? {
            self.finish(&entry, &slot.writer, partition)?;
        }
        Ok(slot)
    }

    /// Produces what of `entry` is not yet in its destinations.
    fn finish(&self, entry: &Entry, writer: &str, slot: u32) -> Result<(), LogError> {
        let instance = writer;
        let mut found: HashSet<usize> = HashSet::new();
        let from: Vec<(TopicPartition, u64)> = entry.bounds.clone();
        self.read_to_end(&from, true, |records, _| {
            for r in records {
                if let Some(v) = r.header(COMMIT_HEADER)
                    && let Some((s, seq, index)) = writeahead::parse_commit_id(instance, v)
                    && s == slot
                    && seq == entry.seq
                {
                    found.insert(index);
                }
            }
            Ok(())
        })?;
        let (missing, indexes): (Vec<Outgoing>, Vec<usize>) = entry
            .records
            .iter()
            .enumerate()
            .filter(|(i, _)| !found.contains(i))
            .map(|(i, o)| (o.clone(), i))
            .unzip();
        if !missing.is_empty() {
            let seq = entry.seq;
            self.senders.with(|s| {
                s.send_all(&missing, &|i| {
                    Some((
                        COMMIT_HEADER,
                        writeahead::commit_id(instance, slot, seq, indexes[i]),
                    ))
                })
            })?;
        }
        let mut stats = lock(&self.restore);
        stats.redone_entries += 1;
        stats.redone_records += missing.len() as u64;
        tracing::info!(
            writer,
            slot,
            seq = entry.seq,
            missing = missing.len(),
            "finished a write-ahead entry"
        );
        Ok(())
    }

    fn put_back_slot(&self, slot: Slot, ok: bool) {
        if ok {
            self.put_slot(slot);
        } else {
            self.retire_slot(slot);
        }
    }

    fn take_slot(&self) -> Result<Slot, LogError> {
        let mut slots = lock(&self.slots);
        loop {
            if let Some(s) = slots.idle.pop() {
                return Ok(s);
            }
            if slots.retired == COMMIT_SLOTS {
                return Err(LogError::Broker(
                    "every write-ahead slot had a commit fail; reopen the log to finish them"
                        .to_owned(),
                ));
            }
            slots = self
                .slot_free
                .wait(slots)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    fn put_slot(&self, slot: Slot) {
        lock(&self.slots).idle.push(slot);
        self.slot_free.notify_one();
    }

    /// Takes a slot out of use after a commit on it failed: whether its
    /// entry was stored is unknown, so only the next start may decide
    /// (by reading the slot's end) and finish it.
    fn retire_slot(&self, slot: Slot) {
        tracing::error!(
            slot = slot.partition,
            seq = slot.next_seq,
            "a commit failed; its write-ahead slot is retired until the log is reopened"
        );
        lock(&self.slots).retired += 1;
        self.slot_free.notify_all();
    }

    /// The changelog partition a metadata key belongs to.
    fn route(&self, key: &[u8]) -> TopicPartition {
        // A task's positions go with the task (one writer: its holder).
        if let Some(rest) = key.strip_prefix(GROUPS_PREFIX)
            && let Some((group, tp)) = parse_group_key(rest)
            && let Some((topic, n)) = self
                .task_groups
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&group)
            && tp.partition < *n
        {
            return TopicPartition::new(topic.clone(), tp.partition);
        }
        let routes = self
            .routes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (prefix, topic) in routes.iter() {
            if let Some(rest) = key.strip_prefix(prefix.as_slice())
                && let Some(p) = rest.get(..4)
                && let Ok(p) = <[u8; 4]>::try_from(p)
            {
                return TopicPartition::new(topic.clone(), u32::from_be_bytes(p));
            }
        }
        TopicPartition::new(METADATA_TOPIC, 0)
    }

    fn partition_for(&self, topic: &str, n: u32, record: &ProducerRecord) -> u32 {
        match &record.key {
            Some(k) => kappa_log::partition_for_key(k, n),
            None => {
                let mut rr = lock(&self.round_robin);
                let next = rr.entry(topic.to_owned()).or_insert(0);
                let p = *next % n;
                *next = next.wrapping_add(1);
                p
            }
        }
    }

    /// Checks a commit and fixes every record's destination. Nothing is
    /// written when any part is invalid.
    fn plan(&self, commit: Commit) -> Result<Planned, LogError> {
        let now = kappa_log::now_ms();
        let mut records = Vec::with_capacity(commit.record_count() + commit.metadata.len());
        for append in commit.appends {
            let n = self.partition_count(&append.topic)?;
            let config = self.topic_config(&append.topic)?;
            for mut record in append.records {
                let partition = match append.partition {
                    Some(p) => {
                        self.check_partition(&append.topic, p)?;
                        p
                    }
                    None => self.partition_for(&append.topic, n, &record),
                };
                let size = record.encoded_len();
                if size > config.max_record_bytes as usize {
                    return Err(LogError::RecordTooLarge {
                        topic: append.topic.to_string(),
                        size,
                        max: config.max_record_bytes,
                    });
                }
                if config.cleanup_policy == CleanupPolicy::Compact && record.key.is_none() {
                    return Err(LogError::MissingKey(append.topic.to_string()));
                }
                record.timestamp.get_or_insert(now);
                records.push(Outgoing {
                    topic: append.topic.clone(),
                    partition,
                    record,
                });
            }
        }
        let outputs = records.len();
        let mut changes = Vec::with_capacity(commit.metadata.len() + commit.group_positions.len());
        for gp in commit.group_positions {
            if !kappa_log::valid_group_name(&gp.group) {
                return Err(LogError::InvalidGroupName(gp.group.to_string()));
            }
            self.check_partition(&gp.partition.topic, gp.partition.partition)?;
            changes.push((
                Bytes::from(group_key(&gp.group, &gp.partition)),
                Some(Bytes::copy_from_slice(&gp.offset.to_be_bytes())),
            ));
        }
        for (k, v) in commit.metadata {
            if k.is_empty() || k.len() > METADATA_KEY_BYTES_MAX {
                return Err(LogError::InvalidConfig(format!(
                    "metadata keys are 1 to {METADATA_KEY_BYTES_MAX} bytes; got {}",
                    k.len()
                )));
            }
            changes.push((k, v));
        }
        for (k, v) in &changes {
            let tp = self.route(k);
            records.push(Outgoing {
                topic: tp.topic,
                partition: tp.partition,
                record: ProducerRecord {
                    key: Some(k.clone()),
                    value: v.clone(),
                    headers: Vec::new(),
                    timestamp: Some(now),
                },
            });
        }
        Ok(Planned {
            records,
            outputs,
            changes,
        })
    }

    /// A lower bound of the end of each partition in `records`.
    fn bounds(&self, records: &[Outgoing]) -> Result<Vec<(TopicPartition, u64)>, LogError> {
        let mut tps: Vec<TopicPartition> = records
            .iter()
            .map(|o| TopicPartition::new(o.topic.clone(), o.partition))
            .collect();
        tps.sort();
        tps.dedup();
        let mut out = Vec::with_capacity(tps.len());
        for tp in tps {
            let known = lock(&self.known_end).get(&tp).copied();
            let at = match known {
                Some(at) => at,
                None => {
                    let (_, high) = self.readers.with(&[], |r| r.watermarks(&tp))?;
                    lock(&self.known_end).insert(tp.clone(), high);
                    high
                }
            };
            out.push((tp, at));
        }
        Ok(out)
    }

    /// `entry`'s chunks, bound for `slot`'s partition of its commit topic.
    fn chunk_records(&self, slot: &Slot, entry: &Entry) -> Vec<Outgoing> {
        entry
            .chunks()
            .into_iter()
            .map(|record| Outgoing {
                topic: slot.topic.clone(),
                partition: slot.partition,
                record,
            })
            .collect()
    }

    /// Writes each entry ahead on its slot, then produces them all (one
    /// produce round each); returns each entry's records' offsets.
    fn write_ahead(&self, items: &mut [(Slot, Entry)]) -> Result<Vec<Vec<Option<u64>>>, LogError> {
        let chunks: Vec<Vec<Outgoing>> = items
            .iter()
            .map(|(slot, entry)| self.chunk_records(slot, entry))
            .collect();
        let parts: Vec<&[Outgoing]> = chunks.iter().map(Vec::as_slice).collect();
        for (slot, entry) in items.iter_mut() {
            slot.next_seq = entry.seq + 1;
        }
        self.senders.with(|s| s.send_parts(&parts, &|_| None))?;
        // Where each entry's records start in the concatenation.
        let mut starts = Vec::with_capacity(items.len());
        let mut total = 0;
        for (_, entry) in items.iter() {
            starts.push(total);
            total += entry.records.len();
        }
        let parts: Vec<&[Outgoing]> = items.iter().map(|(_, e)| e.records.as_slice()).collect();
        let offsets = self.senders.with(|s| {
            s.send_parts(&parts, &|i| {
                let n = starts.partition_point(|start| *start <= i) - 1;
                let (slot, entry) = &items[n];
                Some((
                    COMMIT_HEADER,
                    writeahead::commit_id(&slot.writer, slot.partition, entry.seq, i - starts[n]),
                ))
            })
        })?;
        let mut out = Vec::with_capacity(items.len());
        let mut rest = &offsets[..];
        for (_, entry) in items.iter() {
            let (mine, after) = rest.split_at(entry.records.len().min(rest.len()));
            out.push(mine.iter().copied().map(Some).collect());
            rest = after;
        }
        Ok(out)
    }

    /// Commits each task's records in a transaction of its producer, the
    /// tasks side by side; returns each entry's records' offsets where the
    /// broker reported them.
    fn write_transactions(
        items: &mut [((u32, Sender), Entry)],
    ) -> Result<Vec<Vec<Option<u64>>>, LogError> {
        let transact =
            |((_, sender), entry): &((u32, Sender), Entry)| sender.transact(&entry.records);
        if let [one] = items {
            return Ok(vec![transact(one)?]);
        }
        std::thread::scope(|scope| {
            let running: Vec<_> = items
                .iter()
                .map(|item| scope.spawn(move || transact(item)))
                .collect();
            running
                .into_iter()
                .map(|t| {
                    t.join().unwrap_or_else(|_| {
                        Err(LogError::Broker(
                            "a transaction's thread panicked".to_owned(),
                        ))
                    })
                })
                .collect()
        })
    }

    /// Commits checked commits, each with its writer: `write` makes them
    /// durable (returning each record's offset where known), then their
    /// metadata is applied to the cache. Gives each writer back to
    /// `put_back` (`false`: its commit's fate is unknown, so the writer
    /// must not be used again until its task or slot is recovered).
    fn commit_planned<W>(
        &self,
        batch: Vec<(Planned, W)>,
        seq_of: impl Fn(&W) -> u64,
        write: impl FnOnce(&mut [(W, Entry)]) -> Result<Vec<Vec<Option<u64>>>, LogError>,
        put_back: impl Fn(W, bool),
    ) -> Result<Vec<CommitReceipt>, LogError> {
        let flight = self.next_flight.fetch_add(1, Ordering::Relaxed);
        let mut items = Vec::with_capacity(batch.len());
        let mut metas = Vec::with_capacity(batch.len());
        let mut changelog_bounds: Vec<(TopicPartition, u64)> = Vec::new();
        let mut failed = None;
        for (planned, slot) in batch {
            let bounds = match self.bounds(&planned.records) {
                Ok(b) => b,
                Err(e) => {
                    failed = Some(e);
                    put_back(slot, true);
                    continue;
                }
            };
            // Shared metadata is never checkpointed by writing: other
            // instances write it too (it is caught up by reading).
            changelog_bounds.extend(
                bounds
                    .iter()
                    .filter(|(tp, _)| {
                        *tp.topic != *METADATA_TOPIC
                            && planned.records[planned.outputs..]
                                .iter()
                                .any(|o| o.topic == tp.topic && o.partition == tp.partition)
                    })
                    .cloned(),
            );
            let entry = Entry {
                seq: seq_of(&slot),
                records: planned.records,
                bounds,
            };
            metas.push((planned.outputs, planned.changes));
            items.push((slot, entry));
        }
        if let Some(e) = failed {
            for (slot, _) in items {
                put_back(slot, true);
            }
            return Err(e);
        }
        lock(&self.in_flight).insert(flight, changelog_bounds.clone());
        let offsets = match write(&mut items) {
            Ok(o) => o,
            Err(e) => {
                // The commits may yet happen (when their slots are
                // recovered): their changelog records must stay above
                // every checkpoint, so the flight stays registered.
                for (slot, _) in items {
                    put_back(slot, false);
                }
                return Err(e);
            }
        };
        // Remember ends, and never checkpoint past a commit still producing.
        let mut ends: HashMap<TopicPartition, u64> = HashMap::new();
        let mut all_changes = Vec::new();
        let mut receipts = Vec::with_capacity(items.len());
        {
            let mut own = lock(&self.own_metadata);
            for (((_, entry), at), (outputs, changes)) in items.iter().zip(&offsets).zip(metas) {
                for (o, at) in entry.records.iter().zip(at) {
                    let Some(at) = at else { continue };
                    let e = ends
                        .entry(TopicPartition::new(o.topic.clone(), o.partition))
                        .or_insert(0);
                    *e = (*e).max(at + 1);
                }
                for ((k, _), (o, at)) in changes
                    .iter()
                    .zip(entry.records[outputs..].iter().zip(&at[outputs..]))
                {
                    if *o.topic == *METADATA_TOPIC
                        && let Some(at) = at
                    {
                        own.insert(k.clone(), *at);
                    }
                }
                all_changes.extend(changes);
                receipts.push(CommitReceipt {
                    positions: entry.records[..outputs]
                        .iter()
                        .zip(at)
                        .filter_map(|(o, at)| {
                            Some(Position {
                                topic: o.topic.clone(),
                                partition: o.partition,
                                offset: (*at)?,
                            })
                        })
                        .collect(),
                });
            }
        }
        for (slot, _) in items {
            put_back(slot, true);
        }
        {
            let mut known = lock(&self.known_end);
            for (tp, end) in &ends {
                let k = known.entry(tp.clone()).or_insert(0);
                *k = (*k).max(*end);
            }
        }
        let checkpoints: Vec<(TopicPartition, u64)> = {
            let flights = lock(&self.in_flight);
            let mut tps: Vec<&TopicPartition> = changelog_bounds.iter().map(|(tp, _)| tp).collect();
            tps.sort();
            tps.dedup();
            // A partition whose offsets the broker did not report keeps its
            // checkpoint: the next restore reads those records again.
            tps.into_iter()
                .filter_map(|tp| {
                    let other = flights
                        .iter()
                        .filter(|(id, _)| **id != flight)
                        .flat_map(|(_, b)| b.iter())
                        .filter(|(t, _)| t == tp)
                        .map(|(_, b)| *b)
                        .min();
                    let mine = ends.get(tp).copied()?;
                    Some((tp.clone(), other.map_or(mine, |o| o.min(mine))))
                })
                .collect()
        };
        // Still registered until its changes are in the cache: a commit
        // finishing meanwhile must not checkpoint past this one's records.
        // (If applying fails it stays registered, which is safe.)
        self.cache.apply(&all_changes, &checkpoints)?;
        lock(&self.in_flight).remove(&flight);
        self.offsets.mirror(all_changes.iter().filter_map(|(k, v)| {
            let (group, tp) = parse_group_key(k.strip_prefix(GROUPS_PREFIX)?)?;
            let offset = u64::from_be_bytes(<[u8; 8]>::try_from(v.as_deref()?).ok()?);
            Some((group, tp, offset))
        }));
        Ok(receipts)
    }

    /// The commit topic of `group`'s task slots, made with `tasks`
    /// partitions when missing.
    fn task_topic(&self, group: &str, tasks: u32) -> Result<Arc<str>, LogError> {
        if !kappa_log::valid_group_name(group) {
            return Err(LogError::InvalidGroupName(group.to_owned()));
        }
        let topic = format!("{TASKS_TOPIC_PREFIX}{group}");
        kappa_log::validate_topic_name(&topic)?;
        let spec =
            TopicSpec::new(topic.as_str(), tasks.max(1)).with_retention_ms(COMMIT_RETENTION_MS);
        match self.partition_count(&topic) {
            Ok(n) if n == spec.partitions => {}
            Ok(n) => {
                return Err(LogError::InvalidConfig(format!(
                    "{topic:?} has {n} partitions but group {group:?} has {tasks} tasks; reset the application"
                )));
            }
            Err(LogError::UnknownTopic(_)) => {
                match self.topics.create(&spec) {
                    Ok(()) | Err(LogError::TopicExists(_)) => {}
                    Err(e) => return Err(e),
                }
                self.partitions
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(topic.clone(), spec.partitions);
            }
            Err(e) => return Err(e),
        }
        let changelog = kappa_log::task_changelog(group);
        match self.create_topic(&TopicSpec::new(changelog.as_str(), spec.partitions).compacted()) {
            Ok(()) => {}
            Err(LogError::TopicExists(_)) => {
                let n = self.partition_count(&changelog)?;
                if n != spec.partitions {
                    return Err(LogError::InvalidConfig(format!(
                        "{changelog:?} has {n} partitions but group {group:?} has {tasks} tasks; reset the application"
                    )));
                }
            }
            Err(e) => return Err(e),
        }
        self.task_groups
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(group.to_owned(), (changelog.into(), spec.partitions));
        Ok(topic.into())
    }

    fn forget_group_positions_of(&self, topic: &str) -> Result<(), LogError> {
        let mut commit = Commit::new();
        let mut after: Option<Bytes> = None;
        loop {
            let page = self.cache.page(GROUPS_PREFIX, after.as_deref(), 1024)?;
            let Some(last) = page.last() else {
                break;
            };
            after = Some(last.0.clone());
            for (k, _) in &page {
                if parse_group_key(&k[GROUPS_PREFIX.len()..])
                    .is_some_and(|(_, tp)| *tp.topic == *topic)
                {
                    commit.delete_metadata(k.clone());
                }
            }
        }
        commit.delete_metadata(topics_key(topic));
        self.commit(commit).map(|_| ())
    }
}

/// A checked commit: records with fixed destinations (outputs first, then
/// metadata changelog records) and the metadata changes themselves.
struct Planned {
    records: Vec<Outgoing>,
    outputs: usize,
    changes: Vec<(Bytes, Option<Bytes>)>,
}

/// The transactional id of a group's task: whoever holds the task uses it,
/// so claiming the task fences the instance that held it before.
fn task_transactional_id(group: &str, task: u32) -> String {
    format!("kappa-{group}-{task}")
}

fn topics_key(topic: &str) -> Vec<u8> {
    let mut k = TOPICS_PREFIX.to_vec();
    k.extend_from_slice(topic.as_bytes());
    k
}

fn group_prefix(group: &str) -> Vec<u8> {
    let mut k = GROUPS_PREFIX.to_vec();
    k.extend_from_slice(group.as_bytes());
    k.push(0);
    k
}

fn group_key(group: &str, tp: &TopicPartition) -> Vec<u8> {
    let mut k = group_prefix(group);
    k.extend_from_slice(tp.topic.as_bytes());
    k.push(0);
    k.extend_from_slice(&tp.partition.to_be_bytes());
    k
}

/// `group \0 topic \0 partition` back into its parts.
fn parse_group_key(k: &[u8]) -> Option<(String, TopicPartition)> {
    let g = k.iter().position(|b| *b == 0)?;
    let rest = &k[g + 1..];
    let t = rest.iter().position(|b| *b == 0)?;
    let p: [u8; 4] = rest.get(t + 1..)?.try_into().ok()?;
    Some((
        String::from_utf8(k[..g].to_vec()).ok()?,
        TopicPartition::new(std::str::from_utf8(&rest[..t]).ok()?, u32::from_be_bytes(p)),
    ))
}

/// Topics that are the backend's own machinery, not the application's.
fn is_internal(topic: &str) -> bool {
    topic.starts_with("__")
        || topic == METADATA_TOPIC
        || topic.starts_with("kappa-commits-")
        || topic.starts_with(TASKS_TOPIC_PREFIX)
        || topic.ends_with("-changelog")
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
        let count = tasks.iter().max().map_or(1, |m| m + 1);
        // Made by joining the group, or by an earlier claim of all tasks.
        let n = match self.partition_count(&format!("{TASKS_TOPIC_PREFIX}{group}")) {
            Ok(n) if n >= count => n,
            _ => count,
        };
        let topic = self.task_topic(group, n)?;
        let writer: Arc<str> = format!("@{group}").into();
        let mut slots = Vec::with_capacity(tasks.len());
        for &task in tasks {
            self.check_partition(&topic, task)?;
            // Finishes what a write-ahead holder left, also when the group
            // now commits by transactions.
            slots.push(self.recover_slot(topic.clone(), writer.clone(), task)?);
        }
        let writers: Vec<(u32, TaskWriter)> = if self.config.transactional() {
            // Before the state is read: initialising a task's producer
            // fences its last holder and aborts its open transaction.
            let config = &self.config;
            std::thread::scope(|scope| {
                let starting: Vec<_> = tasks
                    .iter()
                    .map(|&task| {
                        scope.spawn(move || {
                            let id = task_transactional_id(group, task);
                            Sender::transactional(config, &id)
                                .map(|s| (task, TaskWriter::Transactional(s)))
                        })
                    })
                    .collect();
                starting
                    .into_iter()
                    .map(|t| {
                        t.join().unwrap_or_else(|_| {
                            Err(LogError::Broker(
                                "a task's producer thread panicked".to_owned(),
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>, LogError>>()
            })?
        } else {
            slots
                .into_iter()
                .map(|slot| (slot.partition, TaskWriter::Ahead(slot)))
                .collect()
        };
        let mut tps = changelogs.to_vec();
        tps.push(TopicPartition::new(METADATA_TOPIC, 0));
        let started = Instant::now();
        let records = self.restore(&tps)?;
        {
            let mut stats = lock(&self.restore);
            stats.records += records;
            stats.seconds += started.elapsed().as_secs_f64();
        }
        tracing::info!(
            group,
            ?tasks,
            records,
            seconds = started.elapsed().as_secs_f64(),
            "tasks claimed: their state is restored"
        );
        let mut held = lock(&self.task_writers);
        for (task, writer) in writers {
            held.insert((group.to_owned(), task), writer);
        }
        Ok(())
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
        if !kappa_log::valid_group_name(group) {
            return Err(LogError::InvalidGroupName(group.to_owned()));
        }
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
        if !kappa_log::valid_group_name(group) {
            return Err(LogError::InvalidGroupName(group.to_owned()));
        }
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
mod tests {
    use super::*;
    use crate::testing::MockBroker;

    fn open(broker: &Arc<MockBroker>, dir: &std::path::Path) -> KafkaLog {
        KafkaLog::open_with_topic_admin(broker.config(dir), broker.clone()).unwrap()
    }

    fn values(log: &KafkaLog, topic: &str, partitions: u32) -> Vec<String> {
        let mut out = Vec::new();
        for p in 0..partitions {
            let tp = TopicPartition::new(topic, p);
            let mut records = Vec::new();
            log.read_to_end(&[(tp, 0)], true, |rs, _| {
                records.extend_from_slice(rs);
                Ok(())
            })
            .unwrap();
            out.extend(records.iter().map(|r| {
                String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned()
            }));
        }
        out.sort();
        out
    }

    /// A commit's entry and its chunks, on a slot taken for it (and never
    /// given back: the process is about to "die").
    fn entry_of(log: &KafkaLog, c: Commit) -> (Slot, Entry, Vec<Outgoing>) {
        let planned = log.plan(c).unwrap();
        let bounds = log.bounds(&planned.records).unwrap();
        let slot = log.take_slot().unwrap();
        let entry = Entry {
            seq: slot.next_seq,
            records: planned.records,
            bounds,
        };
        let chunks = log.chunk_records(&slot, &entry);
        (slot, entry, chunks)
    }

    /// The process dies after writing a commit's entry ahead and producing
    /// `produced` of its records: the next start produces the rest, once.
    fn interrupted_after(produced: usize) {
        let broker = Arc::new(MockBroker::start().unwrap());
        let dir = tempfile::tempdir().unwrap();
        let log = open(&broker, dir.path());
        log.create_topic(&TopicSpec::new("out", 2)).unwrap();
        let mut c = Commit::new();
        for i in 0..20 {
            c.append(
                "out",
                ProducerRecord::value(format!("v{i:02}")).with_key(format!("k{i}")),
            );
        }
        c.put_metadata("store/x", "42");
        c.set_group_position("app", TopicPartition::new("out", 1), 17);
        let (slot, entry, chunks) = entry_of(&log, c);
        let total = entry.records.len();
        log.senders
            .with(|s| s.send_all(&chunks, &|_| None))
            .unwrap();
        let n = produced.min(total);
        let (instance, partition, seq) = (log.config.instance.clone(), slot.partition, entry.seq);
        log.senders
            .with(|s| {
                s.send_all(&entry.records[..n], &|i| {
                    Some((
                        COMMIT_HEADER,
                        writeahead::commit_id(&instance, partition, seq, i),
                    ))
                })
            })
            .unwrap();
        drop(log);

        let log = open(&broker, dir.path());
        let expected: Vec<String> = (0..20).map(|i| format!("v{i:02}")).collect();
        assert_eq!(values(&log, "out", 2), expected, "each output exactly once");
        assert_eq!(
            log.metadata(b"store/x").unwrap().as_deref(),
            Some(&b"42"[..])
        );
        assert_eq!(
            log.group_positions("app").unwrap(),
            vec![(TopicPartition::new("out", 1), 17)]
        );
        let stats = log.restore_stats();
        assert_eq!(stats.redone_records, (total - n) as u64, "{stats:?}");
        // A second restart finds the entry complete and produces nothing.
        drop(log);
        let log = open(&broker, dir.path());
        assert_eq!(log.restore_stats().redone_records, 0);
        assert_eq!(values(&log, "out", 2), expected);
    }

    #[test]
    fn a_commit_cut_short_before_producing_is_finished_at_the_next_start() {
        interrupted_after(0);
    }

    #[test]
    fn a_commit_cut_short_while_producing_is_finished_without_duplicates() {
        interrupted_after(7);
        interrupted_after(21);
    }

    #[test]
    fn an_entry_cut_short_while_written_ahead_never_happened() {
        let broker = Arc::new(MockBroker::start().unwrap());
        let dir = tempfile::tempdir().unwrap();
        let log = open(&broker, dir.path());
        log.create_topic(&TopicSpec::new("out", 1)).unwrap();
        let mut c = Commit::new();
        for i in 0..40 {
            c.append(
                "out",
                ProducerRecord::value(vec![b'x'; 100_000]).with_key(format!("k{i}")),
            );
        }
        let (_, _, mut chunks) = entry_of(&log, c);
        assert!(chunks.len() > 1);
        chunks.pop();
        log.senders
            .with(|s| s.send_all(&chunks, &|_| None))
            .unwrap();
        drop(log);
        let log = open(&broker, dir.path());
        assert!(values(&log, "out", 1).is_empty());
        assert_eq!(log.restore_stats().redone_entries, 0);
        // The slot goes on after the abandoned entry.
        log.append("out", vec![ProducerRecord::value("after").with_key("k")])
            .unwrap();
        assert_eq!(values(&log, "out", 1), vec!["after".to_owned()]);
    }
}
