//! Key-value state stores.
//!
//! A store's committed contents live in the log's commit metadata (one
//! entry per key, under `kappa-streams/<app>/<store>/<partition>/`), so they
//! commit atomically with the outputs and input positions that produced
//! them, and a restart finds exactly the state of the last commit. On the
//! Kafka backend the same writes go to changelog topics.
//!
//! Inside a task, writes go to a buffer first; reads see the buffer, then
//! the committed contents. An in-memory store also keeps the committed
//! contents in a map (restored on start); a persistent store reads the
//! log's storage engine, through a bounded cache of what it read
//! (`store_cache.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use kappa_log::{Commit, Log, LogError};

use crate::store_cache::{CacheCounts, PREFIX_ENTRIES_MAX, StoreCache, entries_in_range};

/// Where a store keeps its committed contents for fast reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoreKind {
    /// Read from the log's storage engine (embedded: fjall), through a
    /// bounded cache ([`crate::StreamsConfig::store_cache_bytes`]).
    Persistent,
    /// A full copy in memory, restored from the log when a task starts.
    InMemory,
}

/// A store declared by a topology.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreSpec {
    /// Store name, unique in the topology.
    pub name: String,
    /// Persistent or in-memory.
    pub kind: StoreKind,
}

/// The metadata prefix of one store partition.
pub(crate) fn store_prefix(app: &str, store: &str, partition: u32) -> Vec<u8> {
    let mut p = Vec::with_capacity(16 + app.len() + store.len() + 10);
    p.extend_from_slice(b"kappa-streams/");
    p.extend_from_slice(app.as_bytes());
    p.push(b'/');
    p.extend_from_slice(store.as_bytes());
    p.push(b'/');
    p.extend_from_slice(&partition.to_be_bytes());
    p.push(b'/');
    p
}

/// Where a task's stream time is kept, so a restart resumes it (windows
/// closed before the restart stay closed).
pub(crate) fn stream_time_key(app: &str, partition: u32) -> Vec<u8> {
    let mut k = app_prefix(app);
    k.extend_from_slice(b"!stream-time/");
    k.extend_from_slice(&partition.to_be_bytes());
    k
}

/// Where [`crate::rebuild_application`] notes, per input partition, the
/// position the application had reached: below it, a restarted topology
/// rebuilds its state without writing outputs again.
pub(crate) fn replay_mark_key(app: &str, topic: &str, partition: u32) -> Vec<u8> {
    let mut k = replay_mark_prefix(app);
    k.extend_from_slice(topic.as_bytes());
    k.push(b'/');
    k.extend_from_slice(&partition.to_be_bytes());
    k
}

/// The prefix of [`replay_mark_key`]s.
pub(crate) fn replay_mark_prefix(app: &str) -> Vec<u8> {
    let mut k = app_prefix(app);
    k.extend_from_slice(b"!replay-until/");
    k
}

/// Whether `topic` is one of `app`'s internal (repartition) topics.
pub(crate) fn is_internal_topic(app: &str, topic: &str) -> bool {
    topic.len() > app.len()
        && topic.starts_with(app)
        && topic.as_bytes()[app.len()] == b'-'
        && topic.ends_with("-repartition")
}

/// The prefix of every store of an application.
pub(crate) fn app_prefix(app: &str) -> Vec<u8> {
    let mut p = b"kappa-streams/".to_vec();
    p.extend_from_slice(app.as_bytes());
    p.push(b'/');
    p
}

/// Committed entries under `base` (a store partition's prefix) whose key,
/// without `base`, starts with `prefix`, is greater than `after` (when
/// given) and at most `last`; keys returned without `base`. Reads pages, so
/// it never loads more of the prefix than the range.
fn committed_range(
    log: &dyn Log,
    base: &[u8],
    prefix: &[u8],
    after: Option<&[u8]>,
    last: &[u8],
) -> Result<Vec<(Bytes, Bytes)>, LogError> {
    const PAGE: usize = 256;
    let mut full_prefix = base.to_vec();
    full_prefix.extend_from_slice(prefix);
    let mut cursor = after.map(|a| {
        let mut k = base.to_vec();
        k.extend_from_slice(a);
        k
    });
    let mut out = Vec::new();
    loop {
        let page = log.metadata_page(&full_prefix, cursor.as_deref(), PAGE)?;
        let full = page.len() == PAGE;
        for (k, v) in page {
            let short = k.slice(base.len()..);
            if &short[..] > last {
                return Ok(out);
            }
            cursor = Some(k.to_vec());
            out.push((short, v));
        }
        if !full {
            return Ok(out);
        }
    }
}

/// One task's view of one store.
pub(crate) struct TaskStore {
    pub(crate) name: String,
    prefix: Vec<u8>,
    /// Ordered, so prefix scans (session windows) need no full scan.
    committed: Option<BTreeMap<Bytes, Bytes>>,
    /// Ordered so prefix scans need not walk every pending write.
    pending: BTreeMap<Bytes, Option<Bytes>>,
    /// What a persistent store has read of its committed contents.
    cache: StoreCache,
    key_buf: Vec<u8>,
}

impl TaskStore {
    /// The store partition `partition` of `spec`; a persistent one caches
    /// up to `cache_bytes` of what it reads.
    pub(crate) fn open(
        log: &dyn Log,
        app: &str,
        spec: &StoreSpec,
        partition: u32,
        cache_bytes: usize,
    ) -> Result<Self, LogError> {
        let prefix = store_prefix(app, &spec.name, partition);
        let committed = match spec.kind {
            StoreKind::Persistent => None,
            StoreKind::InMemory => Some(
                log.metadata_scan(&prefix)?
                    .into_iter()
                    .map(|(k, v)| (k.slice(prefix.len()..), v))
                    .collect(),
            ),
        };
        let cache = StoreCache::new(match spec.kind {
            StoreKind::Persistent => cache_bytes,
            StoreKind::InMemory => 0,
        });
        Ok(Self {
            name: spec.name.clone(),
            prefix,
            committed,
            pending: BTreeMap::new(),
            cache,
            key_buf: Vec::new(),
        })
    }

    pub(crate) fn get(&mut self, log: &dyn Log, key: &[u8]) -> Result<Option<Bytes>, LogError> {
        if let Some(v) = self.pending.get(key) {
            return Ok(v.clone());
        }
        match &self.committed {
            Some(map) => Ok(map.get(key).cloned()),
            None => {
                if let Some(v) = self.cache.get(key) {
                    return Ok(v);
                }
                self.key_buf.clear();
                self.key_buf.extend_from_slice(&self.prefix);
                self.key_buf.extend_from_slice(key);
                let v = log.metadata(&self.key_buf)?;
                self.cache.put_read(key, v.clone());
                Ok(v)
            }
        }
    }

    /// This store's reads answered by its cache, and those that went to the log.
    pub(crate) fn cache_counts(&self) -> CacheCounts {
        self.cache.counts()
    }

    /// Every entry, committed and pending merged (pending wins), in key order.
    pub(crate) fn scan(&self, log: &dyn Log) -> Result<Vec<(Bytes, Bytes)>, LogError> {
        self.scan_prefix(log, &[])
    }

    /// Entries whose key starts with `prefix`, committed and pending merged, in key order.
    pub(crate) fn scan_prefix(
        &self,
        log: &dyn Log,
        prefix: &[u8],
    ) -> Result<Vec<(Bytes, Bytes)>, LogError> {
        let mut merged: BTreeMap<Bytes, Bytes> = match &self.committed {
            Some(map) => map
                .range(Bytes::copy_from_slice(prefix)..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            None => {
                let mut full = self.prefix.clone();
                full.extend_from_slice(prefix);
                log.metadata_scan(&full)?
                    .into_iter()
                    .map(|(k, v)| (k.slice(self.prefix.len()..), v))
                    .collect()
            }
        };
        let pending = self
            .pending
            .range(Bytes::copy_from_slice(prefix)..)
            .take_while(|(k, _)| k.starts_with(prefix));
        for (k, v) in pending {
            match v {
                Some(v) => merged.insert(k.clone(), v.clone()),
                None => merged.remove(k),
            };
        }
        Ok(merged.into_iter().collect())
    }

    /// Entries whose key starts with `prefix`, is greater than `after` (when
    /// given) and at most `last`, committed and pending merged, in key order:
    /// a bounded read (the range, or, to cache it, the whole prefix when it
    /// holds at most [`PREFIX_ENTRIES_MAX`] entries).
    pub(crate) fn range(
        &mut self,
        log: &dyn Log,
        prefix: &[u8],
        after: Option<&[u8]>,
        last: &[u8],
    ) -> Result<Vec<(Bytes, Bytes)>, LogError> {
        use std::ops::Bound;
        // An empty range (BTreeMap::range panics on one).
        if after.is_some_and(|a| a >= last) || prefix > last {
            return Ok(Vec::new());
        }
        let lower = match after {
            Some(a) => Bound::Excluded(Bytes::copy_from_slice(a)),
            None => Bound::Included(Bytes::copy_from_slice(prefix)),
        };
        let upper = Bound::Included(Bytes::copy_from_slice(last));
        let mut merged: BTreeMap<Bytes, Bytes> = match &self.committed {
            Some(map) => map
                .range((lower.clone(), upper.clone()))
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            None => self.committed_range_cached(log, prefix, after, last)?,
        };
        for (k, v) in self
            .pending
            .range((lower, upper))
            .take_while(|(k, _)| k.starts_with(prefix))
        {
            match v {
                Some(v) => merged.insert(k.clone(), v.clone()),
                None => merged.remove(k),
            };
        }
        Ok(merged.into_iter().collect())
    }

    /// The committed part of [`TaskStore::range`] for a persistent store:
    /// from the cache when it holds the whole prefix; else the whole prefix
    /// is read once to be cached, unless it holds more than
    /// [`PREFIX_ENTRIES_MAX`] entries, which are read range by range.
    fn committed_range_cached(
        &mut self,
        log: &dyn Log,
        prefix: &[u8],
        after: Option<&[u8]>,
        last: &[u8],
    ) -> Result<BTreeMap<Bytes, Bytes>, LogError> {
        match self.cache.prefix_state(prefix) {
            Some(true) => return Ok(self.cache.prefix_range(prefix, after, last)),
            Some(false) => {}
            None if self.cache.is_enabled() => {
                self.key_buf.clear();
                self.key_buf.extend_from_slice(&self.prefix);
                self.key_buf.extend_from_slice(prefix);
                let page = log.metadata_page(&self.key_buf, None, PREFIX_ENTRIES_MAX + 1)?;
                if page.len() <= PREFIX_ENTRIES_MAX {
                    let base = self.prefix.len();
                    let whole: BTreeMap<Bytes, Bytes> = page
                        .into_iter()
                        .map(|(k, v)| (k.slice(base..), v))
                        .collect();
                    let out = entries_in_range(&whole, after, last);
                    self.cache.put_prefix(prefix, Some(whole));
                    return Ok(out);
                }
                self.cache.put_prefix(prefix, None);
            }
            None => {}
        }
        Ok(committed_range(log, &self.prefix, prefix, after, last)?
            .into_iter()
            .collect())
    }

    pub(crate) fn put(&mut self, key: Bytes, value: Option<Bytes>) {
        self.pending.insert(key, value);
    }

    /// True when writes wait for the next commit.
    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Adds the buffered writes to a commit.
    pub(crate) fn stage(&self, commit: &mut Commit) {
        commit.metadata.reserve(self.pending.len());
        for (k, v) in &self.pending {
            let mut full = Vec::with_capacity(self.prefix.len() + k.len());
            full.extend_from_slice(&self.prefix);
            full.extend_from_slice(k);
            match v {
                Some(v) => commit.put_metadata(full, v.clone()),
                None => commit.delete_metadata(full),
            };
        }
    }

    /// The commit that carried the staged writes succeeded.
    pub(crate) fn committed(&mut self) {
        match &mut self.committed {
            Some(map) => {
                for (k, v) in std::mem::take(&mut self.pending) {
                    match v {
                        Some(v) => map.insert(k, v),
                        None => map.remove(&k),
                    };
                }
            }
            None => {
                for (k, v) in &self.pending {
                    self.cache.apply(k, v.as_ref());
                }
                self.pending.clear();
            }
        }
    }
}

/// Committed contents of a store, read straight from the log: what
/// interactive queries see. Keys are partitioned as the topology's input
/// (murmur2 of the serialized key).
///
/// ```
/// # use kappa_streams::ReadOnlyStore;
/// # fn demo(store: &ReadOnlyStore) -> Result<(), kappa_log::LogError> {
/// let balance = store.get(b"card-1")?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ReadOnlyStore {
    log: Arc<dyn Log>,
    app: String,
    name: String,
    partitions: u32,
}

impl ReadOnlyStore {
    pub(crate) fn new(log: Arc<dyn Log>, app: &str, name: &str, partitions: u32) -> Self {
        Self {
            log,
            app: app.to_owned(),
            name: name.to_owned(),
            partitions,
        }
    }

    /// The committed value of a serialized key.
    ///
    /// # Errors
    ///
    /// Storage failures.
    pub fn get(&self, key: &[u8]) -> Result<Option<Bytes>, LogError> {
        let partition = kappa_log::partition_for_key(key, self.partitions);
        let mut full = store_prefix(&self.app, &self.name, partition);
        full.extend_from_slice(key);
        self.log.metadata(&full)
    }

    /// The committed value of a serialized key in one partition, for stores
    /// whose processors key entries independently of the task's input key.
    ///
    /// # Errors
    ///
    /// Storage failures.
    pub fn get_in(&self, partition: u32, key: &[u8]) -> Result<Option<Bytes>, LogError> {
        let mut full = store_prefix(&self.app, &self.name, partition);
        full.extend_from_slice(key);
        self.log.metadata(&full)
    }

    /// For a window store (windowed aggregations; panes of hopping
    /// aggregations): the entries of one serialized key whose window (or
    /// pane) starts in `from..=to`, as (start, value), oldest first.
    ///
    /// # Errors
    ///
    /// Storage failures.
    pub fn fetch_windows(
        &self,
        key: &[u8],
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, Bytes)>, LogError> {
        use crate::windowing::time::{entry_key, split_entry_key};
        let partition = kappa_log::partition_for_key(key, self.partitions);
        let base = store_prefix(&self.app, &self.name, partition);
        // Entry keys are start (8 bytes) then key: every window starting in
        // from..=to lies after `entry_key(from - 1, "")` and before
        // `entry_key(to + 1, "")`; the filter below drops the other keys.
        let after = entry_key(from.saturating_sub(1), b"");
        let last = entry_key(to.saturating_add(1), b"");
        Ok(
            committed_range(&*self.log, &base, b"", Some(&after), &last)?
                .into_iter()
                .filter_map(|(k, v)| {
                    let (start, found) = split_entry_key(&k)?;
                    (start >= from && start <= to && found == key).then_some((start, v))
                })
                .collect(),
        )
    }

    /// Committed entries of the partition holding `partition_key` with keys
    /// starting with `prefix`, greater than `after` and at most `last`.
    pub(crate) fn range_in_key_partition(
        &self,
        partition_key: &[u8],
        prefix: &[u8],
        after: Option<&[u8]>,
        last: &[u8],
    ) -> Result<Vec<(Bytes, Bytes)>, LogError> {
        let partition = kappa_log::partition_for_key(partition_key, self.partitions);
        let base = store_prefix(&self.app, &self.name, partition);
        committed_range(&*self.log, &base, prefix, after, last)
    }

    /// Committed entries of the partition of `partition_key` whose key starts with `prefix`.
    pub(crate) fn scan_key_prefix(
        &self,
        partition_key: &[u8],
        prefix: &[u8],
    ) -> Result<Vec<(Bytes, Bytes)>, LogError> {
        let partition = kappa_log::partition_for_key(partition_key, self.partitions);
        let mut full = store_prefix(&self.app, &self.name, partition);
        let base = full.len();
        full.extend_from_slice(prefix);
        Ok(self
            .log
            .metadata_scan(&full)?
            .into_iter()
            .map(|(k, v)| (k.slice(base..), v))
            .collect())
    }

    /// Every committed entry, as (serialized key, serialized value), by partition then key.
    ///
    /// # Errors
    ///
    /// Storage failures.
    pub fn all(&self) -> Result<Vec<(Bytes, Bytes)>, LogError> {
        self.prefix(&[])
    }

    /// Committed entries whose serialized key starts with `prefix`, by
    /// partition then key.
    ///
    /// # Errors
    ///
    /// Storage failures.
    pub fn prefix(&self, prefix: &[u8]) -> Result<Vec<(Bytes, Bytes)>, LogError> {
        let mut out = Vec::new();
        for p in 0..self.partitions {
            let mut full = store_prefix(&self.app, &self.name, p);
            let base = full.len();
            full.extend_from_slice(prefix);
            for (k, v) in self.log.metadata_scan(&full)? {
                out.push((k.slice(base..), v));
            }
        }
        Ok(out)
    }

    /// One page of committed entries whose serialized key starts with
    /// `prefix` and is greater than `after` (when given), merged over all
    /// partitions in key order: at most `limit` entries, reading at most
    /// `limit` from each partition. Pass the last key of a page as `after`
    /// to get the next one.
    ///
    /// # Errors
    ///
    /// Storage failures.
    pub fn page(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, LogError> {
        let mut out = Vec::new();
        for p in 0..self.partitions {
            let base = store_prefix(&self.app, &self.name, p);
            let mut full = base.clone();
            full.extend_from_slice(prefix);
            let after_full = after.map(|a| {
                let mut k = base.clone();
                k.extend_from_slice(a);
                k
            });
            for (k, v) in self
                .log
                .metadata_page(&full, after_full.as_deref(), limit)?
            {
                out.push((k.slice(base.len()..), v));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.truncate(limit);
        Ok(out)
    }

    /// The store's name in its topology.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The number of partitions the store is split into (one per task).
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// The partition (task) that holds a serialized key.
    pub fn partition_of(&self, key: &[u8]) -> u32 {
        kappa_log::partition_for_key(key, self.partitions)
    }

    /// Committed entries with `from <= key < to` (serialized keys, byte
    /// order), sorted by key.
    ///
    /// # Errors
    ///
    /// Storage failures.
    pub fn range(&self, from: &[u8], to: &[u8]) -> Result<Vec<(Bytes, Bytes)>, LogError> {
        let mut out: Vec<(Bytes, Bytes)> = self
            .all()?
            .into_iter()
            .filter(|(k, _)| &k[..] >= from && &k[..] < to)
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}
