//! The `Log` trait: what every backend (embedded, Kafka) provides.

use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::commit::{Commit, CommitReceipt};
use crate::error::LogError;
use crate::record::{OffsetRange, Position, ProducerRecord, Record, TopicPartition};
use crate::tasks::{GroupMembership, RebalanceListener, SoleMember};
use crate::topic::{TopicConfig, TopicDescription, TopicSpec};

/// Bounds on one fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchLimits {
    /// Most records returned.
    pub records_max: usize,
    /// Stop adding records once this many key+value bytes were returned
    /// (at least one record is always returned when one is available).
    pub bytes_max: usize,
    /// How long to wait for new records when none are available.
    pub wait_max: Duration,
}

impl Default for FetchLimits {
    fn default() -> Self {
        Self {
            records_max: 10_000,
            bytes_max: 16 * 1024 * 1024,
            wait_max: Duration::ZERO,
        }
    }
}

/// What a fetch saw besides its records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FetchOutcome {
    /// For each partition asked for, the next offset to ask for after this fetch.
    pub next_offsets: Vec<u64>,
    /// Records appended to the output vector.
    pub records: usize,
}

/// A durable, partitioned, append-only log with atomic multi-partition commits.
///
/// Both backends implement it; application code only sees this trait.
/// Methods block (there is no async on the hot path); call them from
/// `spawn_blocking` in async code.
///
/// ```
/// use kappa_log::{EmbeddedLog, Log, TopicSpec, ProducerRecord, TopicPartition, FetchLimits};
/// let dir = tempfile::tempdir()?;
/// let log = EmbeddedLog::open(dir.path())?;
/// log.create_topic(&TopicSpec::new("greetings", 1))?;
/// let positions = log.append("greetings", vec![ProducerRecord::value("hello")])?;
/// assert_eq!(positions[0].to_string(), "greetings/0/0");
/// let mut out = Vec::new();
/// log.fetch(&[(TopicPartition::new("greetings", 0), 0)], FetchLimits::default(), &mut out)?;
/// assert_eq!(out[0].value.as_deref(), Some(&b"hello"[..]));
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// ```
pub trait Log: Send + Sync {
    /// Creates a topic.
    ///
    /// # Errors
    ///
    /// Invalid name or config, or [`LogError::TopicExists`].
    fn create_topic(&self, spec: &TopicSpec) -> Result<(), LogError>;

    /// Deletes a topic, its records and the group positions that name it.
    ///
    /// # Errors
    ///
    /// [`LogError::UnknownTopic`].
    fn delete_topic(&self, name: &str) -> Result<(), LogError>;

    /// Grows a topic to `partitions` partitions, as Kafka's
    /// `CreatePartitions`: never shrinks, records already written stay
    /// where they are, and keyed records written afterwards may map to
    /// other partitions than before.
    ///
    /// ```
    /// use kappa_log::{Log, MemoryLog, TopicSpec};
    /// let log = MemoryLog::new();
    /// log.create_topic(&TopicSpec::new("orders", 2))?;
    /// log.create_partitions("orders", 3)?;
    /// assert_eq!(log.partition_count("orders")?, 3);
    /// assert!(log.create_partitions("orders", 2).is_err());
    /// # Ok::<_, kappa_log::LogError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`LogError::UnknownTopic`]; [`LogError::InvalidConfig`] for a count not
    /// above the current one or past the limit;
    /// [`LogError::Unsupported`] on a backend that cannot.
    fn create_partitions(&self, topic: &str, partitions: u32) -> Result<(), LogError> {
        let _ = (topic, partitions);
        Err(LogError::Unsupported(format!(
            "adding partitions to a {} log",
            self.backend()
        )))
    }

    /// Replaces a topic's configuration (retention, cleanup policy, record
    /// size); maintenance and writes follow the new one from now on.
    ///
    /// # Errors
    ///
    /// [`LogError::UnknownTopic`], an invalid config, or
    /// [`LogError::Unsupported`] on a backend that cannot.
    fn alter_topic_config(&self, topic: &str, config: TopicConfig) -> Result<(), LogError> {
        let _ = (topic, config);
        Err(LogError::Unsupported(format!(
            "altering topic configs of a {} log",
            self.backend()
        )))
    }

    /// Forgets committed positions of `group`: those of `partitions`, or
    /// all of them when `None`. Returns how many were removed.
    ///
    /// # Errors
    ///
    /// Invalid group name, storage failure, or [`LogError::Unsupported`]
    /// on a backend that cannot.
    fn delete_group_positions(
        &self,
        group: &str,
        partitions: Option<&[TopicPartition]>,
    ) -> Result<usize, LogError> {
        let _ = (group, partitions);
        Err(LogError::Unsupported(format!(
            "deleting group positions of a {} log",
            self.backend()
        )))
    }

    /// All topics, sorted by name.
    ///
    /// # Errors
    ///
    /// Storage failures.
    fn list_topics(&self) -> Result<Vec<TopicSpec>, LogError>;

    /// A topic's spec and per-partition offsets.
    ///
    /// # Errors
    ///
    /// [`LogError::UnknownTopic`].
    fn describe_topic(&self, name: &str) -> Result<TopicDescription, LogError>;

    /// Applies a commit atomically: all of it is durable (per the durability
    /// mode) and visible when this returns `Ok`, none of it otherwise.
    ///
    /// # Errors
    ///
    /// Any invalid part (unknown topic, partition out of range, oversized
    /// record, bad group name) rejects the whole commit and writes nothing.
    fn commit(&self, commit: Commit) -> Result<CommitReceipt, LogError>;

    /// Appends records to a topic in one commit, returning their positions.
    ///
    /// # Errors
    ///
    /// As [`Log::commit`].
    fn append(&self, topic: &str, records: Vec<ProducerRecord>) -> Result<Vec<Position>, LogError> {
        let mut commit = Commit::new();
        commit.append_all(topic, None, records);
        Ok(self.commit(commit)?.positions)
    }

    /// Reads records from several partitions, starting at the given offsets,
    /// appending them to `out`. When none is available it waits up to
    /// `limits.wait_max` for a commit to bring some (no polling).
    ///
    /// # Errors
    ///
    /// Unknown topic, partition out of range, an offset outside
    /// `start..=end` ([`LogError::OffsetOutOfRange`]), or corrupt data.
    fn fetch(
        &self,
        from: &[(TopicPartition, u64)],
        limits: FetchLimits,
        out: &mut Vec<Record>,
    ) -> Result<FetchOutcome, LogError>;

    /// The offsets a partition holds.
    ///
    /// # Errors
    ///
    /// Unknown topic or partition.
    fn offsets(&self, partition: &TopicPartition) -> Result<OffsetRange, LogError>;

    /// The first offset a partition holds: [`Log::offsets`]' `start`, which
    /// some backends find more cheaply than the end.
    ///
    /// # Errors
    ///
    /// Unknown topic or partition.
    fn start_offset(&self, partition: &TopicPartition) -> Result<u64, LogError> {
        Ok(self.offsets(partition)?.start)
    }

    /// A topic's partition count: [`Log::describe_topic`]' `spec.partitions`,
    /// without the per-partition offsets.
    ///
    /// # Errors
    ///
    /// [`LogError::UnknownTopic`].
    fn partition_count(&self, topic: &str) -> Result<u32, LogError> {
        Ok(self.describe_topic(topic)?.spec.partitions)
    }

    /// Every record of `topic` up to its end offsets at the call, partition
    /// by partition: for small topics (tools, tests, examples), since it
    /// holds them all in memory.
    ///
    /// ```
    /// use kappa_log::{Log, MemoryLog, ProducerRecord, TopicSpec};
    /// let log = MemoryLog::new();
    /// log.create_topic(&TopicSpec::new("greetings", 2)).unwrap();
    /// log.append("greetings", vec![ProducerRecord::value("hi").with_key("a"); 3]).unwrap();
    /// assert_eq!(log.read_topic("greetings").unwrap().len(), 3);
    /// ```
    ///
    /// # Errors
    ///
    /// [`LogError::UnknownTopic`], a failed read, or [`LogError::Storage`]
    /// when a partition's records stop coming before its end offset.
    fn read_topic(&self, topic: &str) -> Result<Vec<Record>, LogError> {
        /// Empty fetches in a row, short of the end, before giving up: a
        /// broker-backed log may answer empty while its reader is still being
        /// assigned, and a partial topic must not pass for a whole one.
        const IDLE_FETCHES_MAX: u32 = 10;
        let mut out = Vec::new();
        for partition in 0..self.partition_count(topic)? {
            let tp = TopicPartition::new(topic, partition);
            let range = self.offsets(&tp)?;
            let (mut at, mut idle) = (range.start, 0);
            while at < range.end {
                let before = out.len();
                let outcome = self.fetch(&[(tp.clone(), at)], FetchLimits::default(), &mut out)?;
                // Compaction and transaction markers leave gaps in offsets:
                // the fetch's next offset steps over them.
                let next = out[before..]
                    .last()
                    .map_or(at, |r| r.offset + 1)
                    .max(outcome.next_offsets.first().copied().unwrap_or(at));
                if next > at {
                    (at, idle) = (next, 0);
                    continue;
                }
                idle += 1;
                if idle == IDLE_FETCHES_MAX {
                    return Err(LogError::Storage(format!(
                        "{tp}: no records at offset {at} after {IDLE_FETCHES_MAX} fetches, short of the end offset {}",
                        range.end
                    )));
                }
            }
        }
        Ok(out)
    }

    /// The first offset whose record has a timestamp at or after `timestamp_ms`,
    /// or `None` if there is none (as Kafka's `ListOffsets` by time).
    ///
    /// # Errors
    ///
    /// Unknown topic or partition, or corrupt data.
    fn offset_for_timestamp(
        &self,
        partition: &TopicPartition,
        timestamp_ms: i64,
    ) -> Result<Option<u64>, LogError>;

    /// The committed positions of a consumer group, sorted.
    ///
    /// # Errors
    ///
    /// Invalid group name or storage failure.
    fn group_positions(&self, group: &str) -> Result<Vec<(TopicPartition, u64)>, LogError>;

    /// The names of every group with committed positions, sorted: Kappa
    /// applications' and Kafka consumer groups' alike (on a served log
    /// they are one thing).
    ///
    /// # Errors
    ///
    /// Storage failure, or [`LogError::Unsupported`] on a backend that
    /// cannot list them.
    fn group_names(&self) -> Result<Vec<String>, LogError> {
        Err(LogError::Unsupported(format!(
            "listing the groups of a {} log",
            self.backend()
        )))
    }

    /// Reads one metadata key.
    ///
    /// # Errors
    ///
    /// Storage failure.
    fn metadata(&self, key: &[u8]) -> Result<Option<Bytes>, LogError>;

    /// All metadata keys with a prefix, in key order.
    ///
    /// # Errors
    ///
    /// Storage failure.
    fn metadata_scan(&self, prefix: &[u8]) -> Result<Vec<(Bytes, Bytes)>, LogError>;

    /// Declares that metadata under `prefix`, followed by a partition
    /// number (4 bytes, big-endian) and `/`, is the state of partition p
    /// of a store with `partitions` partitions. A backend that keeps
    /// metadata in topics (Kafka) gives such a store its own compacted
    /// changelog topic named `changelog`, so each partition's state can be
    /// restored on its own; the embedded log keeps all metadata itself and
    /// ignores this.
    ///
    /// # Errors
    ///
    /// The changelog topic exists with another partition count, or cannot be created.
    fn declare_changelog(
        &self,
        prefix: &[u8],
        changelog: &str,
        partitions: u32,
    ) -> Result<(), LogError> {
        let _ = (prefix, changelog, partitions);
        Ok(())
    }

    /// At most `limit` metadata entries with a prefix whose key is greater
    /// than `after` (when given), in key order: one page of a large scan.
    ///
    /// The default reads the whole prefix; backends override it with a
    /// bounded range read.
    ///
    /// # Errors
    ///
    /// Storage failure.
    fn metadata_page(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, LogError> {
        Ok(self
            .metadata_scan(prefix)?
            .into_iter()
            .filter(|(k, _)| after.is_none_or(|a| &k[..] > a))
            .take(limit)
            .collect())
    }

    /// Whether other processes may use this log at the same time (Kafka):
    /// then a group's tasks are split between its processes by
    /// [`Log::join_group`], and local state is a copy of what the log holds.
    fn is_shared(&self) -> bool {
        false
    }

    /// What kind of log this is (`embedded`, `memory`, `kafka`), for people
    /// looking at a running service.
    fn backend(&self) -> &'static str {
        "custom"
    }

    /// Whether the log takes a write from outside now (a command over HTTP,
    /// a Kafka producer's batch): front doors ask before writing, so that
    /// under pressure they refuse new work while the services finish what
    /// they accepted. The default takes every write.
    ///
    /// ```
    /// use kappa_log::{Log, MemoryLog};
    /// assert!(MemoryLog::new().admit_writes().is_ok());
    /// ```
    ///
    /// # Errors
    ///
    /// [`LogError::DiskFull`] below the embedded log's free-space floor
    /// (it passes by itself once space is freed); [`LogError::Poisoned`]
    /// after a storage failure.
    fn admit_writes(&self) -> Result<(), LogError> {
        Ok(())
    }

    /// Whether the log can go on at all: an error here lasts until the
    /// process reopens the log, so a supervisor should restart it. The
    /// default is always healthy.
    ///
    /// # Errors
    ///
    /// [`LogError::Poisoned`] once a write or fsync has failed.
    fn health(&self) -> Result<(), LogError> {
        Ok(())
    }

    /// Joins `group`, whose work is split into `tasks` tasks: `listener`
    /// hears which of them this process holds, now and as processes join
    /// and leave. The default (a log one process uses) gives it all of
    /// them before returning.
    ///
    /// # Errors
    ///
    /// The group cannot be joined (invalid name, broker unreachable).
    fn join_group(
        &self,
        group: &str,
        tasks: u32,
        listener: Arc<dyn RebalanceListener>,
    ) -> Result<Box<dyn GroupMembership>, LogError> {
        let _ = group;
        Ok(Box::new(SoleMember::join(tasks, listener)))
    }

    /// Makes this process the writer of `group`'s `tasks` before it
    /// processes them: completes what a previous owner left half-written
    /// and brings the local copy of their state (`changelogs`, and the
    /// group's positions) up to the log's end. On a log one process uses
    /// there is nothing to do.
    ///
    /// # Errors
    ///
    /// Log failures; the tasks must not be processed then.
    fn claim_tasks(
        &self,
        group: &str,
        tasks: &[u32],
        changelogs: &[TopicPartition],
    ) -> Result<(), LogError> {
        let _ = (group, tasks, changelogs);
        Ok(())
    }

    /// Gives up `tasks` of `group`: later [`Log::commit_tasks`] for them fail.
    ///
    /// # Errors
    ///
    /// Log failures.
    fn release_tasks(&self, group: &str, tasks: &[u32]) -> Result<(), LogError> {
        let _ = (group, tasks);
        Ok(())
    }

    /// Brings the local copy of changelog partitions this process does not
    /// write up to date (standby replicas), returning the records read.
    ///
    /// # Errors
    ///
    /// Log failures.
    fn warm_changelogs(&self, changelogs: &[TopicPartition]) -> Result<u64, LogError> {
        let _ = changelogs;
        Ok(0)
    }

    /// Commits the work of several claimed tasks of `group`, each
    /// `(task, commit)` atomically on its own. The default merges them
    /// into one [`Log::commit`], which is atomic as a whole.
    ///
    /// # Errors
    ///
    /// As [`Log::commit`]; on a shared log also a task not claimed (or
    /// released since) by this process.
    fn commit_tasks(&self, group: &str, commits: Vec<(u32, Commit)>) -> Result<(), LogError> {
        let _ = group;
        let mut all = Commit::new();
        for (_, c) in commits {
            all.extend(c);
        }
        self.commit(all).map(|_| ())
    }
}

/// Cuts one [`Log::metadata_page`] out of a key-ordered store: `range`
/// reads the store in key order from the start bound it is given, and the
/// page keeps what of that lies under `prefix`, at most `limit` entries.
/// Backends that keep metadata in an ordered store share it so they agree
/// on where a page starts and stops, and read no further than the page.
///
/// # Errors
///
/// The first error the range read yields.
pub fn metadata_page_from<'a, I, K, V, E>(
    prefix: &'a [u8],
    after: Option<&'a [u8]>,
    limit: usize,
    range: impl FnOnce((Bound<&'a [u8]>, Bound<&'a [u8]>)) -> I,
) -> Result<Vec<(Bytes, Bytes)>, LogError>
where
    I: Iterator<Item = Result<(K, V), E>>,
    K: AsRef<[u8]> + Into<Bytes>,
    V: Into<Bytes>,
    LogError: From<E>,
{
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    // A cursor before the prefix would start the page outside it.
    let start = match after {
        Some(a) if a >= prefix => Bound::Excluded(a),
        _ => Bound::Included(prefix),
    };
    for item in range((start, Bound::Unbounded)) {
        let (k, v) = item?;
        if !k.as_ref().starts_with(prefix) {
            break;
        }
        out.push((k.into(), v.into()));
        if out.len() == limit {
            break;
        }
    }
    Ok(out)
}
