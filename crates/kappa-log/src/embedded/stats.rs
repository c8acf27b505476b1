//! Counters the log keeps about itself, for `/metrics` and `describe`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Running totals since the log was opened.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) commits: AtomicU64,
    pub(crate) records_appended: AtomicU64,
    pub(crate) bytes_appended: AtomicU64,
    pub(crate) storage_failures: AtomicU64,
    pub(crate) batches_expired: AtomicU64,
    pub(crate) records_compacted: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// A snapshot of the embedded log's counters (totals since open).
///
/// ```
/// use kappa_log::{EmbeddedLog, Log, TopicSpec, ProducerRecord};
/// let dir = tempfile::tempdir()?;
/// let log = EmbeddedLog::open(dir.path())?;
/// log.create_topic(&TopicSpec::new("t", 1))?;
/// log.append("t", vec![ProducerRecord::value("x"); 3])?;
/// let stats = log.stats();
/// assert_eq!((stats.commits, stats.records_appended), (1, 3));
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EmbeddedStats {
    /// Commits that carried records, positions or metadata.
    pub commits: u64,
    /// Records appended.
    pub records_appended: u64,
    /// Bytes of record batches appended.
    pub bytes_appended: u64,
    /// Writes or fsyncs that failed (each poisons the log).
    pub storage_failures: u64,
    /// Batches removed by retention.
    pub batches_expired: u64,
    /// Records removed by compaction.
    pub records_compacted: u64,
    /// True once a storage failure has made the log refuse writes.
    pub poisoned: bool,
    /// Bytes the storage engine occupies on disk.
    pub disk_bytes: u64,
}

impl Counters {
    pub(crate) fn snapshot(&self, poisoned: bool, disk_bytes: u64) -> EmbeddedStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        EmbeddedStats {
            commits: get(&self.commits),
            records_appended: get(&self.records_appended),
            bytes_appended: get(&self.bytes_appended),
            storage_failures: get(&self.storage_failures),
            batches_expired: get(&self.batches_expired),
            records_compacted: get(&self.records_compacted),
            poisoned,
            disk_bytes,
        }
    }
}
