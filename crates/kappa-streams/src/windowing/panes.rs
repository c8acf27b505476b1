//! Hopping-window aggregation by panes: each key keeps one partial
//! aggregate per pane (`gcd(size, advance)` of time), so a record costs one
//! store write however many windows overlap it. When a window closes
//! (`end + grace <= stream time`), its panes are combined and the result is
//! emitted once; panes no later window needs are dropped.
//!
//! The start of the last emitted window is stored too (under a key shorter
//! than any pane entry), so a restart neither repeats nor skips a window.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;

use super::time::{entry_key, split_entry_key};
use super::{Combine, Fold, Placed, Step, TimeWindows, Window, WindowAssigner};
use crate::context::TaskContext;
use crate::error::StreamsError;
use crate::node::Data;

/// Store key of the last emitted window start; 7 bytes, so never a pane entry (≥ 8).
const LAST_CLOSED_KEY: &[u8] = b"!closed";

/// One partial aggregate per (pane, key), and the panes and the last
/// emitted window in memory.
pub(crate) struct Panes<A, F> {
    windows: TimeWindows,
    pane_ms: i64,
    f: Arc<F>,
    combine: Combine<A>,
    /// Panes held, by (pane start, key bytes).
    panes: BTreeSet<(i64, Bytes)>,
    last_closed: Option<i64>,
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl<A, F> Panes<A, F> {
    pub(crate) fn new(windows: TimeWindows, f: Arc<F>, combine: Combine<A>) -> Self {
        Self {
            windows,
            pane_ms: gcd(windows.size_ms, windows.advance_ms).max(1),
            f,
            combine,
            panes: BTreeSet::new(),
            last_closed: None,
        }
    }

    fn set_last_closed(&mut self, ctx: &mut TaskContext, store: usize, start: i64) {
        self.last_closed = Some(start);
        let start = Bytes::copy_from_slice(&start.to_be_bytes());
        ctx.store_put(store, Bytes::from_static(LAST_CLOSED_KEY), Some(start));
    }

    /// Combines a key's panes of one window.
    fn total<K: 'static>(
        &self,
        at: &mut Step<'_, K, A>,
        key_bytes: &[u8],
        panes: Vec<i64>,
    ) -> Result<Option<A>, StreamsError>
    where
        A: 'static,
    {
        let mut total: Option<A> = None;
        for pane in panes {
            if let Some(part) = at.get(&entry_key(pane, key_bytes))? {
                total = Some(match total {
                    Some(t) => (self.combine)(t, part),
                    None => part,
                });
            }
        }
        Ok(total)
    }
}

impl<K: Data, V: Data, A: Data, F: Fold<K, V, A>> WindowAssigner<K, V, A> for Panes<A, F> {
    fn fresh(&self) -> Self {
        Self::new(self.windows, self.f.clone(), self.combine.clone())
    }

    fn load(&mut self, ctx: &mut TaskContext, store: usize) -> Result<(), StreamsError> {
        for (k, v) in ctx.store_scan(store)? {
            if &k[..] == LAST_CLOSED_KEY {
                let b: [u8; 8] = v[..].try_into().map_err(|_| StreamsError::Store {
                    store: ctx.store_name(store).to_owned(),
                    detail: "the last closed window record is not 8 bytes".to_owned(),
                })?;
                self.last_closed = Some(i64::from_be_bytes(b));
            } else if let Some(entry) = split_entry_key(&k) {
                self.panes.insert(entry);
            }
        }
        Ok(())
    }

    fn add(&mut self, at: &mut Step<'_, K, A>, key: &K, value: V) -> Result<Placed, StreamsError> {
        let w = self.windows;
        let t = at.ctx.timestamp();
        // The latest window holding t closes last; if it has closed, all have.
        let latest_start = t - t.rem_euclid(w.advance_ms);
        let latest_end = latest_start.saturating_add(w.size_ms);
        if latest_end.saturating_add(at.grace_ms) <= at.stream_time
            || self.last_closed.is_some_and(|c| latest_start <= c)
        {
            return Ok(Placed::Late);
        }
        let pane = t - t.rem_euclid(self.pane_ms);
        let key_bytes = at.key_bytes(key)?;
        let entry = entry_key(pane, &key_bytes);
        let current = at.get(&entry)?;
        at.put(entry, &(self.f)(key, value, current))?;
        self.panes.insert((pane, key_bytes));
        Ok(Placed::InWindow)
    }

    /// Emits every window that closed since the last one emitted, oldest
    /// first, then drops the panes no open window needs.
    fn close(&mut self, at: &mut Step<'_, K, A>) -> Result<(), StreamsError> {
        let w = self.windows;
        let close_limit = at
            .stream_time
            .saturating_sub(w.size_ms.saturating_add(at.grace_ms));
        while let Some(&(earliest, _)) = self.panes.first() {
            // The next window to emit: after the last emitted one, and no
            // earlier than the first window that holds the earliest pane.
            // Window [s, s + size) holds the pane iff earliest - size < s <= earliest.
            let first_holding = (earliest.saturating_sub(w.size_ms).div_euclid(w.advance_ms) + 1)
                .saturating_mul(w.advance_ms);
            let start = self.last_closed.map_or(first_holding, |c| {
                c.saturating_add(w.advance_ms).max(first_holding)
            });
            if start > close_limit {
                break;
            }
            let end = start + w.size_ms;
            // Group this window's panes by key, in key order for a deterministic output.
            let mut by_key: BTreeMap<Bytes, Vec<i64>> = BTreeMap::new();
            for (pane, key) in self.panes.range((start, Bytes::new())..(end, Bytes::new())) {
                by_key.entry(key.clone()).or_default().push(*pane);
            }
            for (key_bytes, pane_starts) in by_key {
                let total = self.total(at, &key_bytes, pane_starts)?;
                at.closed.push((key_bytes, Window { start, end }, total));
            }
            self.set_last_closed(at.ctx, at.store, start);
            // Panes before the next window's start belong to no open window.
            let next_start = start.saturating_add(w.advance_ms);
            while let Some((pane, key)) = self.panes.first().cloned() {
                if pane >= next_start {
                    break;
                }
                self.panes.pop_first();
                at.delete(entry_key(pane, &key));
            }
        }
        // Windows that closed without data are closed too: a late record
        // must not reopen them through a pane they share with open windows.
        if close_limit != i64::MIN {
            let closed_start = close_limit - close_limit.rem_euclid(w.advance_ms);
            if self.last_closed.is_none_or(|c| c < closed_start) {
                self.set_last_closed(at.ctx, at.store, closed_start);
            }
        }
        Ok(())
    }
}
