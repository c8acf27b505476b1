//! A bounded read cache of one persistent store's committed contents.
//!
//! A persistent store reads the log's storage engine, and a processor that
//! looks up the same keys over and over (a card's state and its recent
//! daily panes, once per command) pays a storage read, with its snapshot
//! and merge of levels, every time. A task owns its stores alone while its
//! worker runs: the committed contents change only through the worker's
//! own commits, which [`StoreCache::apply`] replays, so what the cache
//! holds stays exact without ever being checked against the log. A new
//! worker (a task claimed again, a restart) starts with an empty cache.
//!
//! Two kinds of entries: the committed value of one key, and every
//! committed entry under a prefix (a window store's key), which answers
//! range reads and reads of keys under it, present or not. A key read and
//! found absent is not kept: a topology that looks up keys it has never
//! seen (a count over distinct keys) would fill the cache with misses and
//! pay for them on every read. Memory is bounded by a byte budget; entries
//! not read since the last sweep go first, as in the CLOCK algorithm.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use foldhash::fast::RandomState;

/// Bytes counted for one cached entry besides its key and value: the
/// maps' own bookkeeping, roughly.
const ENTRY_OVERHEAD: usize = 64;

/// Most entries one prefix may hold to be cached whole; a prefix with more
/// is read range by range from the log, as without a cache.
pub(crate) const PREFIX_ENTRIES_MAX: usize = 256;

/// Bytes counted for one entry of `key_len` and `value_len` bytes.
fn entry_bytes(key_len: usize, value_len: usize) -> usize {
    ENTRY_OVERHEAD + key_len + value_len
}

struct Cached<T> {
    item: T,
    bytes: usize,
    /// Read since the last sweep.
    used: bool,
}

impl<T> Cached<T> {
    /// Just read from the log, once so far: gone at the next sweep unless
    /// read again.
    fn read(item: T, bytes: usize) -> Self {
        Self {
            item,
            bytes,
            used: false,
        }
    }
}

type Entries<T> = HashMap<Bytes, Cached<T>, RandomState>;

/// Drops the entries not read since the last sweep and marks the others
/// unread; returns the bytes freed.
fn drop_unread<T>(map: &mut Entries<T>) -> usize {
    let mut freed = 0;
    map.retain(|_, c| {
        let keep = std::mem::take(&mut c.used);
        if !keep {
            freed += c.bytes;
        }
        keep
    });
    freed
}

/// Drops entries, whichever come first, until `used` is at most `target`.
fn drop_until<T>(map: &mut Entries<T>, used: &mut usize, target: usize) {
    map.retain(|_, c| {
        if *used <= target {
            return true;
        }
        *used -= c.bytes;
        false
    });
}

/// Hits and misses of a cache, for the runtime's figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CacheCounts {
    pub(crate) hits: u64,
    pub(crate) misses: u64,
}

/// See the module documentation. Keys are the store's own (without the
/// store partition's metadata prefix).
pub(crate) struct StoreCache {
    budget: usize,
    used_bytes: usize,
    /// The committed value of a key; `None`: deleted since it was read.
    values: Entries<Option<Bytes>>,
    /// Every committed entry under a prefix, by whole key; `None`: more
    /// than [`PREFIX_ENTRIES_MAX`], not worth reading whole again.
    prefixes: Entries<Option<BTreeMap<Bytes, Bytes>>>,
    /// The lengths of the cached prefixes, to find the prefix a key falls
    /// under without trying each of its lengths.
    prefix_lens: Vec<usize>,
    counts: CacheCounts,
}

impl StoreCache {
    /// A cache of at most about `budget` bytes; 0 caches nothing.
    pub(crate) fn new(budget: usize) -> Self {
        Self {
            budget,
            used_bytes: 0,
            values: HashMap::default(),
            prefixes: HashMap::default(),
            prefix_lens: Vec::new(),
            counts: CacheCounts::default(),
        }
    }

    pub(crate) fn is_enabled(&self) -> bool {
        self.budget > 0
    }

    pub(crate) fn counts(&self) -> CacheCounts {
        self.counts
    }

    /// The committed value of `key` when the cache knows it: `Some(None)`
    /// is a key known to have none (under a prefix held whole, or deleted
    /// since it was read).
    pub(crate) fn get(&mut self, key: &[u8]) -> Option<Option<Bytes>> {
        if !self.is_enabled() {
            return None;
        }
        if let Some(c) = self.values.get_mut(key) {
            c.used = true;
            self.counts.hits += 1;
            return Some(c.item.clone());
        }
        for &len in &self.prefix_lens {
            if len > key.len() {
                continue;
            }
            if let Some(Cached {
                item: Some(entries),
                used,
                ..
            }) = self.prefixes.get_mut(&key[..len])
            {
                *used = true;
                self.counts.hits += 1;
                return Some(entries.get(key).cloned());
            }
        }
        self.counts.misses += 1;
        None
    }

    /// Remembers the committed value of `key` as just read from the log
    /// (an absent one is not kept; see the module documentation).
    pub(crate) fn put_read(&mut self, key: &[u8], value: Option<Bytes>) {
        if !self.is_enabled() || value.is_none() {
            return;
        }
        let bytes = entry_bytes(key.len(), value.as_ref().map_or(0, Bytes::len));
        let old = self
            .values
            .insert(Bytes::copy_from_slice(key), Cached::read(value, bytes));
        self.used_bytes = self.used_bytes + bytes - old.map_or(0, |o| o.bytes);
        self.keep_in_budget();
    }

    /// Whether every entry under `prefix` is cached (`Some(true)`), the
    /// prefix is known to be too large to cache (`Some(false)`), or the
    /// cache does not know (`None`). Counts a hit when it holds them.
    pub(crate) fn prefix_state(&mut self, prefix: &[u8]) -> Option<bool> {
        if !self.is_enabled() {
            return None;
        }
        match self.prefixes.get_mut(prefix) {
            Some(c) => {
                c.used = true;
                let whole = c.item.is_some();
                if whole {
                    self.counts.hits += 1;
                } else {
                    self.counts.misses += 1;
                }
                Some(whole)
            }
            None => {
                self.counts.misses += 1;
                None
            }
        }
    }

    /// The cached entries under `prefix` (whole keys) greater than `after`
    /// and at most `last`, in key order; empty when the prefix is not
    /// cached whole (ask [`StoreCache::prefix_state`] first).
    pub(crate) fn prefix_range(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        last: &[u8],
    ) -> BTreeMap<Bytes, Bytes> {
        match self.prefixes.get(prefix) {
            Some(Cached {
                item: Some(entries),
                ..
            }) => entries_in_range(entries, after, last),
            _ => BTreeMap::new(),
        }
    }

    /// Remembers every committed entry under `prefix` as just read from
    /// the log (`None`: more than [`PREFIX_ENTRIES_MAX`]). Entries taking
    /// more than an eighth of the budget are remembered as too large
    /// instead: held, they would push out everything else, and evicted at
    /// once, they would be read whole again on every range read.
    pub(crate) fn put_prefix(&mut self, prefix: &[u8], entries: Option<BTreeMap<Bytes, Bytes>>) {
        if !self.is_enabled() {
            return;
        }
        let held = entries.as_ref().map_or(0, |e| {
            e.iter().map(|(k, v)| entry_bytes(k.len(), v.len())).sum()
        });
        let (entries, held) = if held > self.budget / 8 {
            (None, 0)
        } else {
            (entries, held)
        };
        let bytes = entry_bytes(prefix.len(), held);
        let old = self
            .prefixes
            .insert(Bytes::copy_from_slice(prefix), Cached::read(entries, bytes));
        self.used_bytes = self.used_bytes + bytes - old.as_ref().map_or(0, |o| o.bytes);
        if old.is_none() && !self.prefix_lens.contains(&prefix.len()) {
            self.prefix_lens.push(prefix.len());
        }
        self.keep_in_budget();
    }

    /// A committed write of `key` (`None`: deleted): what the cache holds
    /// of it changes with it.
    pub(crate) fn apply(&mut self, key: &Bytes, value: Option<&Bytes>) {
        if self.used_bytes == 0 {
            return;
        }
        let new_len = value.map_or(0, Bytes::len);
        if let Some(c) = self.values.get_mut(&key[..]) {
            self.used_bytes -= c.bytes;
            c.bytes = entry_bytes(key.len(), new_len);
            c.item = value.cloned();
            self.used_bytes += c.bytes;
        }
        for &len in &self.prefix_lens {
            if len > key.len() {
                continue;
            }
            let Some(c) = self.prefixes.get_mut(&key[..len]) else {
                continue;
            };
            let Some(entries) = c.item.as_mut() else {
                continue;
            };
            let old = match value {
                Some(v) => entries.insert(key.clone(), v.clone()),
                None => entries.remove(key),
            };
            let old_bytes = old.map_or(0, |o| entry_bytes(key.len(), o.len()));
            let new_bytes = value.map_or(0, |_| entry_bytes(key.len(), new_len));
            let grown = entries.len() > PREFIX_ENTRIES_MAX;
            self.used_bytes -= c.bytes;
            c.bytes = c.bytes + new_bytes - old_bytes;
            if grown {
                // Grown past what is worth holding: read from the log again.
                c.item = None;
                c.bytes = entry_bytes(len, 0);
            }
            self.used_bytes += c.bytes;
        }
        self.keep_in_budget();
    }

    /// Past the budget: drops what was not read since the last sweep, then,
    /// if that freed too little, whatever comes first until half the
    /// budget is left, so a cache whose every entry is hot still shrinks.
    fn keep_in_budget(&mut self) {
        if self.used_bytes <= self.budget {
            return;
        }
        self.used_bytes -= drop_unread(&mut self.values) + drop_unread(&mut self.prefixes);
        if self.used_bytes > self.budget / 4 * 3 {
            let target = self.budget / 2;
            drop_until(&mut self.values, &mut self.used_bytes, target);
            drop_until(&mut self.prefixes, &mut self.used_bytes, target);
        }
        self.prefix_lens
            .retain(|len| self.prefixes.keys().any(|p| p.len() == *len));
    }
}

/// The entries of `entries` greater than `after` (when given) and at most `last`.
pub(crate) fn entries_in_range(
    entries: &BTreeMap<Bytes, Bytes>,
    after: Option<&[u8]>,
    last: &[u8],
) -> BTreeMap<Bytes, Bytes> {
    use std::ops::Bound;
    if after.is_some_and(|a| a >= last) {
        return BTreeMap::new();
    }
    let lower: Bound<&[u8]> = after.map_or(Bound::Unbounded, Bound::Excluded);
    entries
        .range::<[u8], _>((lower, Bound::Included(last)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn prefix(entries: &[(&str, &str)]) -> BTreeMap<Bytes, Bytes> {
        entries.iter().map(|(k, v)| (b(k), b(v))).collect()
    }

    #[test]
    fn values_read_and_absences_are_answered_and_counted() {
        let mut c = StoreCache::new(1 << 20);
        assert_eq!(c.get(b"a"), None);
        c.put_read(b"a", Some(b("1")));
        c.put_read(b"b", None);
        assert_eq!(c.get(b"a"), Some(Some(b("1"))));
        // Absent keys are not kept.
        assert_eq!(c.get(b"b"), None);
        c.apply(&b("a"), None);
        assert_eq!(c.get(b"a"), Some(None));
        assert_eq!(c.counts(), CacheCounts { hits: 2, misses: 2 });
    }

    #[test]
    fn committed_writes_change_cached_values_and_prefixes() {
        let mut c = StoreCache::new(1 << 20);
        c.put_read(b"card-1", Some(b("0")));
        c.put_prefix(b"k1/", Some(prefix(&[("k1/a", "1"), ("k1/b", "2")])));
        c.apply(&b("card-1"), Some(&b("x")));
        c.apply(&b("k1/a"), None);
        c.apply(&b("k1/c"), Some(&b("3")));
        // Under no cached prefix and never read: not remembered.
        c.apply(&b("k2/a"), Some(&b("9")));
        assert_eq!(c.get(b"card-1"), Some(Some(b("x"))));
        assert_eq!(c.prefix_state(b"k1/"), Some(true));
        assert_eq!(
            c.prefix_range(b"k1/", None, b"k1/z"),
            prefix(&[("k1/b", "2"), ("k1/c", "3")])
        );
        // A key under a cached prefix is answered from it, present or not.
        assert_eq!(c.get(b"k1/c"), Some(Some(b("3"))));
        assert_eq!(c.get(b"k1/a"), Some(None));
        assert_eq!(c.get(b"k2/a"), None);
    }

    #[test]
    fn ranges_honour_both_bounds() {
        let mut c = StoreCache::new(1 << 20);
        c.put_prefix(
            b"k/",
            Some(prefix(&[("k/1", "a"), ("k/2", "b"), ("k/3", "c")])),
        );
        assert_eq!(
            c.prefix_range(b"k/", Some(b"k/1"), b"k/2"),
            prefix(&[("k/2", "b")])
        );
        assert!(c.prefix_range(b"j/", None, b"j/9").is_empty());
    }

    #[test]
    fn a_prefix_grown_past_the_limit_is_no_longer_held_whole() {
        let mut c = StoreCache::new(1 << 24);
        let full: BTreeMap<Bytes, Bytes> = (0..PREFIX_ENTRIES_MAX)
            .map(|i| (Bytes::from(format!("p/{i:04}")), b("v")))
            .collect();
        c.put_prefix(b"p/", Some(full));
        assert_eq!(c.prefix_state(b"p/"), Some(true));
        c.apply(&b("p/9999"), Some(&b("v")));
        assert_eq!(c.prefix_state(b"p/"), Some(false));
        assert_eq!(c.get(b"p/0001"), None);
    }

    #[test]
    fn memory_stays_within_the_budget_and_read_entries_stay_longest() {
        let budget = 100 * (ENTRY_OVERHEAD + 8);
        let mut c = StoreCache::new(budget);
        c.put_read(b"hot", Some(b("1")));
        for i in 0..10_000 {
            c.put_read(format!("k{i:06}").as_bytes(), Some(b("1")));
            // Read between every sweep, so a sweep never finds it unread.
            assert_eq!(c.get(b"hot"), Some(Some(b("1"))), "after {i}");
            assert!(c.used_bytes <= budget, "{} > {budget}", c.used_bytes);
        }
        let counted: usize = c.values.values().map(|v| v.bytes).sum();
        assert_eq!(counted, c.used_bytes);
    }

    #[test]
    fn a_prefix_larger_than_an_eighth_of_the_budget_is_remembered_as_too_large() {
        let mut c = StoreCache::new(8 * 1024);
        let big: BTreeMap<Bytes, Bytes> = (0..4)
            .map(|i| (Bytes::from(format!("p/{i}")), Bytes::from(vec![0u8; 400])))
            .collect();
        c.put_prefix(b"p/", Some(big));
        assert_eq!(c.prefix_state(b"p/"), Some(false));
        let small: BTreeMap<Bytes, Bytes> = [(b("q/1"), b("v"))].into_iter().collect();
        c.put_prefix(b"q/", Some(small));
        assert_eq!(c.prefix_state(b"q/"), Some(true));
    }

    #[test]
    fn a_zero_budget_caches_nothing() {
        let mut c = StoreCache::new(0);
        c.put_read(b"a", Some(b("1")));
        c.put_prefix(b"p", Some(BTreeMap::new()));
        assert_eq!(c.get(b"a"), None);
        assert_eq!(c.prefix_state(b"p"), None);
    }
}
