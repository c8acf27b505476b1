//! Hopping-window aggregation by panes: each key keeps one partial
//! aggregate per pane (`gcd(size, advance)` of time), so a record costs one
//! store write however many windows overlap it. When a window closes
//! (`end + grace <= stream time`), its panes are combined and the result is
//! emitted once; panes no later window needs are dropped.
//!
//! The partials live in memory beside the store, which stays their durable
//! copy (read back on a task's first record after a start): a closing
//! window combines each pane once per window it belongs to (`size /
//! advance` times), and reading them from the store each time cost more
//! than everything else the node does. The memory is of the order of the
//! pane index kept before (one key and one pane start per partial).
//!
//! The start of the last emitted window is stored too (under a key shorter
//! than any pane entry), so a restart neither repeats nor skips a window.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

use super::time::{entry_key, split_entry_key};
use super::{Combine, Fold, Placed, Step, TimeWindows, Window, WindowAssigner};
use crate::context::TaskContext;
use crate::error::StreamsError;
use crate::node::Data;
use crate::serde::Serde;

/// Store key of the last emitted window start; 7 bytes, so never a pane entry (≥ 8).
const LAST_CLOSED_KEY: &[u8] = b"!closed";

/// One partial aggregate per (pane, key), in memory and in the store, and
/// the last emitted window.
pub(crate) struct Panes<A, F> {
    windows: TimeWindows,
    pane_ms: i64,
    f: Arc<F>,
    combine: Combine<A>,
    agg_serde: Arc<dyn Serde<A>>,
    /// Each key's partials by pane start, earliest first; keys in order,
    /// so a window's results come out in key order. Behind a mutex only so
    /// the assigner is `Sync` for any `A`: a task reaches it through
    /// `get_mut`, which never locks.
    keys: Mutex<BTreeMap<Bytes, VecDeque<(i64, A)>>>,
    /// How many keys hold a partial of each pane: the first is the earliest pane held.
    pane_keys: BTreeMap<i64, usize>,
    last_closed: Option<i64>,
}

/// One key fewer holds a partial of `pane`.
fn forget(pane_keys: &mut BTreeMap<i64, usize>, pane: i64) {
    if let std::collections::btree_map::Entry::Occupied(mut held) = pane_keys.entry(pane) {
        *held.get_mut() -= 1;
        if *held.get() == 0 {
            held.remove();
        }
    }
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl<A: Data, F> Panes<A, F> {
    pub(crate) fn new(
        windows: TimeWindows,
        f: Arc<F>,
        combine: Combine<A>,
        agg_serde: Arc<dyn Serde<A>>,
    ) -> Self {
        Self {
            windows,
            pane_ms: gcd(windows.size_ms, windows.advance_ms).max(1),
            f,
            combine,
            agg_serde,
            keys: Mutex::new(BTreeMap::new()),
            pane_keys: BTreeMap::new(),
            last_closed: None,
        }
    }

    fn set_last_closed(&mut self, ctx: &mut TaskContext, store: usize, start: i64) {
        self.last_closed = Some(start);
        let start = Bytes::copy_from_slice(&start.to_be_bytes());
        ctx.store_put(store, Bytes::from_static(LAST_CLOSED_KEY), Some(start));
    }

    /// Keeps `agg` as `key`'s partial of `pane`.
    fn hold(&mut self, key: Bytes, pane: i64, agg: A) {
        let keys = self.keys.get_mut().unwrap_or_else(PoisonError::into_inner);
        let partials = keys.entry(key).or_default();
        // Records mostly come in time order: the pane is the last one or new.
        let at = partials.partition_point(|(p, _)| *p < pane);
        match partials.get_mut(at) {
            Some((p, a)) if *p == pane => *a = agg,
            _ => {
                partials.insert(at, (pane, agg));
                *self.pane_keys.entry(pane).or_default() += 1;
            }
        }
    }

    /// Takes `key`'s partial of `pane` out, to fold a record into it.
    fn take(&mut self, key: &[u8], pane: i64) -> Option<A> {
        let keys = self.keys.get_mut().unwrap_or_else(PoisonError::into_inner);
        let partials = keys.get_mut(key)?;
        let at = partials.partition_point(|(p, _)| *p < pane);
        match partials.get(at) {
            Some((p, _)) if *p == pane => {
                forget(&mut self.pane_keys, pane);
                partials.remove(at).map(|(_, a)| a)
            }
            _ => None,
        }
    }
}

impl<K: Data, V: Data, A: Data, F: Fold<K, V, A>> WindowAssigner<K, V, A> for Panes<A, F> {
    fn fresh(&self) -> Self {
        Self::new(
            self.windows,
            self.f.clone(),
            self.combine.clone(),
            self.agg_serde.clone(),
        )
    }

    fn load(&mut self, ctx: &mut TaskContext, store: usize) -> Result<(), StreamsError> {
        for (k, v) in ctx.store_scan(store)? {
            if &k[..] == LAST_CLOSED_KEY {
                let b: [u8; 8] = v[..].try_into().map_err(|_| StreamsError::Store {
                    store: ctx.store_name(store).to_owned(),
                    detail: "the last closed window record is not 8 bytes".to_owned(),
                })?;
                self.last_closed = Some(i64::from_be_bytes(b));
            } else if let Some((pane, key)) = split_entry_key(&k) {
                let agg = ctx.decode_stored(store, &*self.agg_serde, &v)?;
                self.hold(key, pane, agg);
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
        let current = self.take(&key_bytes, pane);
        let next = (self.f)(key, value, current);
        at.put(entry_key(pane, &key_bytes), &next)?;
        self.hold(key_bytes, pane, next);
        Ok(Placed::InWindow)
    }

    /// Emits every window that closed since the last one emitted, oldest
    /// first, then drops the panes no open window needs.
    fn close(&mut self, at: &mut Step<'_, K, A>) -> Result<(), StreamsError> {
        let w = self.windows;
        let close_limit = at
            .stream_time
            .saturating_sub(w.size_ms.saturating_add(at.grace_ms));
        while let Some((&earliest, _)) = self.pane_keys.first_key_value() {
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
            // Panes before the next window's start belong to no open window.
            let next_start = start.saturating_add(w.advance_ms);
            let pane_keys = &mut self.pane_keys;
            let keys = self.keys.get_mut().unwrap_or_else(PoisonError::into_inner);
            keys.retain(|key, partials| {
                // No partial is older than `start`: the last window emitted
                // dropped those, and a record never lands before it.
                let mut total: Option<A> = None;
                for (_, part) in partials.iter().take_while(|(p, _)| *p < end) {
                    total = Some(match total {
                        Some(t) => (self.combine)(t, part.clone()),
                        None => part.clone(),
                    });
                }
                if total.is_some() {
                    at.closed.push((key.clone(), Window { start, end }, total));
                }
                while let Some((pane, _)) = partials.pop_front_if(|(p, _)| *p < next_start) {
                    at.delete(entry_key(pane, key));
                    forget(pane_keys, pane);
                }
                !partials.is_empty()
            });
            self.set_last_closed(at.ctx, at.store, start);
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
