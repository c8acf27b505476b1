//! The embedded backend: the whole log in one directory, on fjall.
//!
//! Layout (see `docs/log-format.md`): one fjall database under `data/`
//! with keyspaces for topics, record batches, the batch index, partition
//! state, group positions, metadata and system facts. A commit is one fjall
//! write batch, so it is atomic across all of them.

mod alter;
pub(crate) mod batch;
mod catalog;
mod keys;
mod maintenance;
mod options;
mod read;
mod space;
mod stats;
mod write;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use fjall::{
    Database, Keyspace, KeyspaceCreateOptions, KvSeparationOptions, PersistMode, Readable,
};

pub use maintenance::MaintenanceReport;
pub use options::{Durability, EmbeddedOptions, MIN_FREE_BYTES_DEFAULT, ParseDurabilityError};
pub use space::free_bytes;
pub use stats::EmbeddedStats;

use crate::commit::{Commit, CommitReceipt};
use crate::error::LogError;
use crate::log::{FetchLimits, FetchOutcome, Log};
use crate::record::{OffsetRange, Record, TopicPartition};
use crate::topic::{TopicConfig, TopicDescription, TopicSpec};
use batch::BatchSummary;
use catalog::{PartitionMeta, TopicMeta};

/// On-disk format version this build writes; see `docs/log-format.md`.
pub const FORMAT_VERSION: u32 = 1;
const FORMAT_KEY: &[u8] = b"format-version";
const NEXT_TOPIC_ID_KEY: &[u8] = b"next-topic-id";
const DELETING_PREFIX: &[u8] = b"deleting/";
const LOCK_FILE: &str = "kappa.lock";

const DATA_DIR: &str = "data";
const CREATING_DIR: &str = "data.creating";

/// Opens the fjall database and its keyspaces.
fn open_storage(path: &Path, options: &EmbeddedOptions) -> Result<(Database, Keyspaces), LogError> {
    let db = Database::builder(path)
        .cache_size(options.cache_bytes)
        // Record batches are the journal's bulk; compressing them costs
        // about a tenth of the append path's CPU and gains nothing on
        // already-compact or encrypted payloads.
        .journal_compression(fjall::CompressionType::None)
        .open()?;
    let plain = KeyspaceCreateOptions::default;
    let ks = Keyspaces {
        topics: db.keyspace("topics", plain)?,
        // Batches are large values written once and read sequentially:
        // keep them out of the LSM compactions (blob files) and skip
        // compression, which costs CPU on the append path.
        batches: db.keyspace("batches", || {
            KeyspaceCreateOptions::default().with_kv_separation(Some(
                KvSeparationOptions::default()
                    .compression(fjall::CompressionType::None)
                    .separation_threshold(4 * 1024),
            ))
        })?,
        index: db.keyspace("batch-index", plain)?,
        partitions: db.keyspace("partitions", plain)?,
        groups: db.keyspace("groups", plain)?,
        meta: db.keyspace("metadata", plain)?,
        system: db.keyspace("system", plain)?,
    };
    Ok((db, ks))
}

/// Creates the storage in a side directory and renames it into place, so a
/// crash during creation leaves either nothing or a complete database.
/// (fjall's own creation is not crash-atomic: a kill between writing its
/// first journal and its version file leaves a directory it can't reopen.)
fn create_storage(dir: &Path, options: &EmbeddedOptions) -> Result<(), LogError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LogError::Io { path, source }
    };
    let creating = dir.join(CREATING_DIR);
    if creating.exists() {
        std::fs::remove_dir_all(&creating).map_err(io(&creating))?;
    }
    {
        let (db, ks) = open_storage(&creating, options)?;
        let mut b = db.batch();
        b.insert(&ks.system, FORMAT_KEY, FORMAT_VERSION.to_le_bytes());
        b.durability(Some(PersistMode::SyncAll)).commit()?;
        db.persist(PersistMode::SyncAll)?;
    }
    let data = dir.join(DATA_DIR);
    std::fs::rename(&creating, &data).map_err(io(&data))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// The embedded log: durable, partitioned, one directory, one process.
///
/// ```
/// use kappa_log::{EmbeddedLog, EmbeddedOptions, Durability, Log, TopicSpec};
/// let dir = tempfile::tempdir()?;
/// let log = EmbeddedLog::open_with(dir.path(), EmbeddedOptions::default().durability(Durability::Never))?;
/// log.create_topic(&TopicSpec::new("orders", 3))?;
/// assert_eq!(log.list_topics()?.len(), 1);
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// ```
pub struct EmbeddedLog {
    inner: Arc<Inner>,
    threads: Vec<JoinHandle<()>>,
}

pub(crate) struct Keyspaces {
    pub(crate) topics: Keyspace,
    pub(crate) batches: Keyspace,
    pub(crate) index: Keyspace,
    pub(crate) partitions: Keyspace,
    pub(crate) groups: Keyspace,
    pub(crate) meta: Keyspace,
    pub(crate) system: Keyspace,
}

pub(crate) struct Inner {
    pub(crate) dir: PathBuf,
    pub(crate) db: Database,
    pub(crate) ks: Keyspaces,
    pub(crate) topics: RwLock<HashMap<Arc<str>, Arc<TopicState>>>,
    /// Serializes everything that assigns offsets or changes the catalog.
    pub(crate) writer: Mutex<()>,
    /// Serializes retention, compaction and topic deletion, which rewrite old batches.
    pub(crate) maintenance: Mutex<()>,
    pub(crate) poisoned: AtomicBool,
    /// What readers see. Commits store their partitions' end offsets and
    /// replace this snapshot under the write lock, so a reader taking the read
    /// lock sees every partition, group position and metadata write of a
    /// commit, or none of them.
    pub(crate) published: RwLock<fjall::Snapshot>,
    pub(crate) options: EmbeddedOptions,
    /// The free-space floor of the log's file system.
    pub(crate) space: space::SpaceGuard,
    /// Bumped and broadcast on every commit, so tailing readers wake without polling.
    pub(crate) commits: (Mutex<u64>, Condvar),
    pub(crate) shutdown: (Mutex<bool>, Condvar),
    pub(crate) counters: stats::Counters,
    _lock: File,
}

pub(crate) struct TopicState {
    pub(crate) id: u64,
    pub(crate) name: Arc<str>,
    pub(crate) spec: TopicSpec,
    /// Shared with the state that replaces this one when the topic is
    /// altered or grows, so offsets advanced meanwhile are not lost.
    pub(crate) partitions: Vec<Arc<PartitionState>>,
    pub(crate) round_robin: AtomicU32,
}

pub(crate) struct PartitionState {
    pub(crate) start: AtomicU64,
    /// One past the last visible offset; only the writer advances it.
    pub(crate) end: AtomicU64,
    pub(crate) size_bytes: AtomicU64,
    /// Bytes appended since the last compaction.
    pub(crate) dirty_bytes: AtomicU64,
    /// When the oldest tombstone kept by the last compaction may go (ms);
    /// compaction runs then even if nothing new arrived.
    pub(crate) tombstone_expiry_ms: AtomicI64,
}

impl Default for PartitionState {
    fn default() -> Self {
        Self {
            start: AtomicU64::new(0),
            end: AtomicU64::new(0),
            size_bytes: AtomicU64::new(0),
            dirty_bytes: AtomicU64::new(0),
            tombstone_expiry_ms: AtomicI64::new(i64::MAX),
        }
    }
}

impl PartitionState {
    /// The offsets readers may see now.
    pub(crate) fn offsets(&self) -> OffsetRange {
        OffsetRange {
            start: self.start.load(Ordering::Acquire),
            end: self.end.load(Ordering::Acquire),
        }
    }
}

impl EmbeddedLog {
    /// Opens (or creates) a log directory with default options (`always` durability).
    ///
    /// # Errors
    ///
    /// [`LogError::AlreadyInUse`] if another process holds it, storage or
    /// corruption errors if it cannot be recovered.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, LogError> {
        Self::open_with(dir, EmbeddedOptions::default())
    }

    /// Opens (or creates) a log directory.
    ///
    /// # Errors
    ///
    /// As [`EmbeddedLog::open`].
    pub fn open_with(dir: impl AsRef<Path>, options: EmbeddedOptions) -> Result<Self, LogError> {
        let dir = dir.as_ref().to_path_buf();
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| LogError::Io { path, source }
        };
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(LogError::AlreadyInUse {
                    dir,
                    lock: lock_path,
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
        }

        let data = dir.join(DATA_DIR);
        if !data.exists() {
            create_storage(&dir, &options)?;
        }
        let (db, ks) = open_storage(&data, &options)?;

        let snapshot = db.snapshot();
        let space = space::SpaceGuard::new(dir.clone(), options.min_free_bytes);
        let inner = Arc::new(Inner {
            dir,
            space,
            published: RwLock::new(snapshot),
            db,
            ks,
            topics: RwLock::new(HashMap::new()),
            writer: Mutex::new(()),
            maintenance: Mutex::new(()),
            poisoned: AtomicBool::new(false),
            options,
            commits: (Mutex::new(0), Condvar::new()),
            shutdown: (Mutex::new(false), Condvar::new()),
            counters: stats::Counters::default(),
            _lock: lock,
        });
        inner.check_format()?;
        inner.finish_pending_deletes()?;
        inner.load_topics()?;
        inner.publish(|| {});

        let mut threads = Vec::new();
        threads.push(maintenance::spawn_maintenance_thread(&inner)?);
        if let Durability::Interval(every) = inner.options.durability {
            threads.push(maintenance::spawn_fsync_thread(&inner, every)?);
        }
        Ok(Self { inner, threads })
    }

    /// The directory this log lives in.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Runs retention and compaction now, as the background thread does
    /// every `maintenance_interval`, with `now_ms` as the current time.
    /// `force` compacts even partitions with few new bytes.
    ///
    /// # Errors
    ///
    /// Storage or corruption errors; nothing is half-applied.
    pub fn run_maintenance(&self, now_ms: i64, force: bool) -> Result<MaintenanceReport, LogError> {
        self.inner.run_maintenance(now_ms, force)
    }

    /// Counters since open, for metrics.
    pub fn stats(&self) -> EmbeddedStats {
        let disk = self.inner.db.disk_space().unwrap_or(0);
        self.inner
            .counters
            .snapshot(self.inner.poisoned.load(Ordering::Acquire), disk)
    }

    /// Makes everything committed so far durable, whatever the durability mode.
    ///
    /// # Errors
    ///
    /// The fsync failed; the log is then poisoned.
    pub fn sync(&self) -> Result<(), LogError> {
        self.inner.persist()
    }

    /// Flushes in-memory tables to on-disk tables, so data files hold every
    /// record (used by tests that inspect or damage the files).
    ///
    /// # Errors
    ///
    /// Storage failures.
    pub fn flush_tables(&self) -> Result<(), LogError> {
        for ks in [
            &self.inner.ks.topics,
            &self.inner.ks.batches,
            &self.inner.ks.index,
            &self.inner.ks.partitions,
            &self.inner.ks.groups,
            &self.inner.ks.meta,
            &self.inner.ks.system,
        ] {
            ks.rotate_memtable_and_wait()?;
        }
        Ok(())
    }
}

impl Drop for EmbeddedLog {
    fn drop(&mut self) {
        {
            let (lock, cvar) = &self.inner.shutdown;
            *lock_ignoring_poison(lock) = true;
            cvar.notify_all();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Err(e) = self.inner.db.persist(PersistMode::SyncAll) {
            tracing::error!(error = %crate::error::describe_fjall(&e), "final sync of the log failed");
        }
    }
}

/// A mutex whose holder panicked still guards consistent data here (all
/// updates are single stores), so carry on rather than propagate the panic.
pub(crate) fn lock_ignoring_poison<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Inner {
    pub(crate) fn topic(&self, name: &str) -> Result<Arc<TopicState>, LogError> {
        self.topics
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned()
            .ok_or_else(|| LogError::UnknownTopic(name.to_owned()))
    }

    pub(crate) fn partition<'t>(
        &self,
        topic: &'t TopicState,
        partition: u32,
    ) -> Result<&'t PartitionState, LogError> {
        topic
            .partitions
            .get(partition as usize)
            .map(|p| &**p)
            .ok_or_else(|| LogError::PartitionOutOfRange {
                topic: topic.name.to_string(),
                partition,
                partitions: topic.spec.partitions,
            })
    }

    pub(crate) fn check_writable(&self) -> Result<(), LogError> {
        if self.poisoned.load(Ordering::Acquire) {
            Err(LogError::Poisoned)
        } else {
            Ok(())
        }
    }

    /// Commits a storage batch; a failure poisons the log, since what reached
    /// the disk is unknown (the PostgreSQL fsync lesson).
    pub(crate) fn commit_batch(
        &self,
        batch: fjall::OwnedWriteBatch,
        sync: bool,
    ) -> Result<(), LogError> {
        self.check_writable()?;
        let mode = if sync {
            PersistMode::SyncAll
        } else {
            PersistMode::Buffer
        };
        batch.durability(Some(mode)).commit().map_err(|e| {
            self.poisoned.store(true, Ordering::Release);
            stats::Counters::add(&self.counters.storage_failures, 1);
            tracing::error!(error = %crate::error::describe_fjall(&e), "log write failed; refusing further writes");
            LogError::from(e)
        })
    }

    pub(crate) fn persist(&self) -> Result<(), LogError> {
        self.db.persist(PersistMode::SyncAll).map_err(|e| {
            self.poisoned.store(true, Ordering::Release);
            stats::Counters::add(&self.counters.storage_failures, 1);
            LogError::from(e)
        })
    }

    /// Makes offsets changed by `update` and everything in storage so far
    /// visible to readers in one step.
    pub(crate) fn publish(&self, update: impl FnOnce()) {
        let mut published = self
            .published
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        update();
        *published = self.db.snapshot();
    }

    /// The snapshot readers of metadata and group positions use.
    pub(crate) fn published(&self) -> fjall::Snapshot {
        self.published
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn notify_commit(&self) {
        let (lock, cvar) = &self.commits;
        *lock_ignoring_poison(lock) += 1;
        cvar.notify_all();
    }

    fn check_format(&self) -> Result<(), LogError> {
        match self.ks.system.get(FORMAT_KEY)? {
            Some(v) => {
                let found = u32::from_le_bytes(v.as_ref().try_into().map_err(|_| {
                    LogError::CorruptMetadata("format version record is not 4 bytes".to_owned())
                })?);
                if found > FORMAT_VERSION {
                    return Err(LogError::UnsupportedFormat {
                        dir: self.dir.clone(),
                        found,
                        supported: FORMAT_VERSION,
                    });
                }
                Ok(())
            }
            None => {
                if self.ks.topics.first_key_value().is_some() {
                    return Err(LogError::CorruptMetadata(
                        "topics exist but the format version record is missing".to_owned(),
                    ));
                }
                let mut b = self.db.batch();
                b.insert(&self.ks.system, FORMAT_KEY, FORMAT_VERSION.to_le_bytes());
                self.commit_batch(b, true)
            }
        }
    }

    pub(crate) fn next_topic_id(&self) -> Result<u64, LogError> {
        Ok(match self.ks.system.get(NEXT_TOPIC_ID_KEY)? {
            Some(v) => u64::from_le_bytes(v.as_ref().try_into().map_err(|_| {
                LogError::CorruptMetadata("next topic id record is not 8 bytes".to_owned())
            })?),
            None => 1,
        })
    }

    fn load_topics(&self) -> Result<(), LogError> {
        let mut map = HashMap::new();
        for item in self.ks.topics.iter() {
            let (k, v) = item.into_inner()?;
            let name = std::str::from_utf8(&k)
                .map_err(|_| LogError::CorruptMetadata("a topic name is not UTF-8".to_owned()))?;
            let meta = TopicMeta::decode(name, &v)?;
            let state = self.recover_topic_state(meta)?;
            map.insert(state.name.clone(), Arc::new(state));
        }
        *self
            .topics
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = map;
        Ok(())
    }

    /// Rebuilds a topic's in-memory offsets from its batch index.
    fn recover_topic_state(&self, meta: TopicMeta) -> Result<TopicState, LogError> {
        let mut partitions = Vec::with_capacity(meta.spec.partitions as usize);
        for p in 0..meta.spec.partitions {
            let stored = match self.ks.partitions.get(keys::partition_key(meta.id, p))? {
                Some(v) => PartitionMeta::decode(&v).ok_or_else(|| LogError::Corrupt {
                    topic: meta.spec.name.clone(),
                    partition: p,
                    offset: 0,
                    detail: "partition state record is damaged".to_owned(),
                })?,
                None => PartitionMeta::default(),
            };
            let mut size = 0u64;
            let mut end = stored.end_floor;
            for item in self.ks.index.prefix(keys::partition_key(meta.id, p)) {
                let (k, v) = item.into_inner().map_err(|e| LogError::Corrupt {
                    topic: meta.spec.name.clone(),
                    partition: p,
                    offset: 0,
                    detail: crate::error::describe_fjall(&e),
                })?;
                let base = keys::base_offset_of(&k);
                let summary = BatchSummary::decode(&v);
                let (Some(base), Some(summary)) = (base, summary) else {
                    return Err(LogError::Corrupt {
                        topic: meta.spec.name.clone(),
                        partition: p,
                        offset: base.unwrap_or(0),
                        detail: "batch index entry is damaged".to_owned(),
                    });
                };
                size += u64::from(summary.size_bytes);
                let batch_end = base
                    .checked_add(u64::from(summary.last_offset_delta) + 1)
                    .ok_or_else(|| LogError::Corrupt {
                        topic: meta.spec.name.clone(),
                        partition: p,
                        offset: base,
                        detail: "batch index entry points past the largest offset".to_owned(),
                    })?;
                end = end.max(batch_end);
            }
            partitions.push(Arc::new(PartitionState {
                start: AtomicU64::new(stored.log_start.min(end)),
                end: AtomicU64::new(end),
                size_bytes: AtomicU64::new(size),
                // Unknown until compacted once; treating everything as dirty
                // makes the first maintenance run compact it.
                dirty_bytes: AtomicU64::new(size),
                tombstone_expiry_ms: AtomicI64::new(i64::MAX),
            }));
        }
        Ok(TopicState {
            id: meta.id,
            name: meta.spec.name.as_str().into(),
            spec: meta.spec,
            partitions,
            round_robin: AtomicU32::new(0),
        })
    }
}

impl Log for EmbeddedLog {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    fn admit_writes(&self) -> Result<(), LogError> {
        self.inner.check_writable()?;
        self.inner.space.admit()
    }

    fn health(&self) -> Result<(), LogError> {
        self.inner.check_writable()
    }

    fn create_topic(&self, spec: &TopicSpec) -> Result<(), LogError> {
        self.inner.create_topic(spec)
    }

    fn delete_topic(&self, name: &str) -> Result<(), LogError> {
        self.inner.delete_topic(name)
    }

    fn create_partitions(&self, topic: &str, partitions: u32) -> Result<(), LogError> {
        self.inner.create_partitions(topic, partitions)
    }

    fn alter_topic_config(&self, topic: &str, config: TopicConfig) -> Result<(), LogError> {
        self.inner.alter_topic_config(topic, config)
    }

    fn delete_group_positions(
        &self,
        group: &str,
        partitions: Option<&[TopicPartition]>,
    ) -> Result<usize, LogError> {
        self.inner.delete_group_positions(group, partitions)
    }

    fn list_topics(&self) -> Result<Vec<TopicSpec>, LogError> {
        let topics = self
            .inner
            .topics
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut specs: Vec<TopicSpec> = topics.values().map(|t| t.spec.clone()).collect();
        specs.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(specs)
    }

    fn describe_topic(&self, name: &str) -> Result<TopicDescription, LogError> {
        let t = self.inner.topic(name)?;
        Ok(TopicDescription::of(&t.spec, &t.partitions, |p| {
            (p.offsets(), p.size_bytes.load(Ordering::Relaxed))
        }))
    }

    fn commit(&self, commit: Commit) -> Result<CommitReceipt, LogError> {
        self.inner.commit(commit)
    }

    fn fetch(
        &self,
        from: &[(TopicPartition, u64)],
        limits: FetchLimits,
        out: &mut Vec<Record>,
    ) -> Result<FetchOutcome, LogError> {
        self.inner.fetch(from, limits, out)
    }

    fn offsets(&self, partition: &TopicPartition) -> Result<OffsetRange, LogError> {
        let t = self.inner.topic(&partition.topic)?;
        Ok(self.inner.partition(&t, partition.partition)?.offsets())
    }

    fn offset_for_timestamp(
        &self,
        partition: &TopicPartition,
        timestamp_ms: i64,
    ) -> Result<Option<u64>, LogError> {
        self.inner.offset_for_timestamp(partition, timestamp_ms)
    }

    fn group_names(&self) -> Result<Vec<String>, LogError> {
        self.inner.group_names()
    }

    fn group_positions(&self, group: &str) -> Result<Vec<(TopicPartition, u64)>, LogError> {
        self.inner.group_positions(group)
    }

    fn metadata(&self, key: &[u8]) -> Result<Option<Bytes>, LogError> {
        let snapshot = self.inner.published();
        Ok(snapshot.get(&self.inner.ks.meta, key)?.map(Bytes::from))
    }

    fn metadata_scan(&self, prefix: &[u8]) -> Result<Vec<(Bytes, Bytes)>, LogError> {
        let mut out = Vec::new();
        let snapshot = self.inner.published();
        for item in snapshot.prefix(&self.inner.ks.meta, prefix) {
            let (k, v) = item.into_inner()?;
            out.push((Bytes::from(k), Bytes::from(v)));
        }
        Ok(out)
    }

    fn metadata_page(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, LogError> {
        let snapshot = self.inner.published();
        crate::log::metadata_page_from(prefix, after, limit, |range| {
            snapshot
                .range::<&[u8], _>(&self.inner.ks.meta, range)
                .map(fjall::Guard::into_inner)
        })
    }
}

/// How long to block waiting, bounded so a far deadline can't overflow `Instant`.
pub(crate) fn bounded_wait(d: Duration) -> Duration {
    d.min(Duration::from_secs(24 * 60 * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_format_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = EmbeddedLog::open(dir.path()).unwrap();
            let mut b = log.inner.db.batch();
            b.insert(
                &log.inner.ks.system,
                FORMAT_KEY,
                (FORMAT_VERSION + 1).to_le_bytes(),
            );
            log.inner.commit_batch(b, true).unwrap();
        }
        let err = EmbeddedLog::open(dir.path()).err().unwrap();
        assert!(
            matches!(err, LogError::UnsupportedFormat { found, supported, .. } if found == FORMAT_VERSION + 1 && supported == FORMAT_VERSION),
            "{err}"
        );
    }

    #[test]
    fn an_interrupted_topic_deletion_finishes_on_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = EmbeddedLog::open(dir.path()).unwrap();
            log.create_topic(&TopicSpec::new("doomed", 1)).unwrap();
            log.append("doomed", vec![crate::ProducerRecord::value("x"); 3])
                .unwrap();
            // Simulate a crash after the catalog change but before the purge.
            let t = log.inner.topic("doomed").unwrap();
            let mut marker = DELETING_PREFIX.to_vec();
            marker.extend_from_slice(&t.id.to_be_bytes());
            let mut b = log.inner.db.batch();
            b.remove(&log.inner.ks.topics, "doomed");
            b.insert(&log.inner.ks.system, marker, []);
            log.inner.commit_batch(b, true).unwrap();
        }
        let log = EmbeddedLog::open(dir.path()).unwrap();
        assert!(log.list_topics().unwrap().is_empty());
        assert!(log.inner.ks.batches.first_key_value().is_none());
        assert!(log.inner.ks.index.first_key_value().is_none());
        assert!(log.inner.ks.system.prefix(DELETING_PREFIX).next().is_none());
    }
}
