//! Hopping-window aggregation by panes: each key keeps one partial
//! aggregate per pane (`gcd(size, advance)` of time), so a record costs one
//! store write however many windows overlap it. When a window closes
//! (`end + grace <= stream time`), its panes are combined and the result is
//! emitted once; panes no later window needs are dropped.
//!
//! The start of the last emitted window is stored too (under a key shorter
//! than any pane entry), so a restart neither repeats nor skips a window.

use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;
use std::sync::Arc;

use bytes::Bytes;

use crate::context::TaskContext;
use crate::error::StreamsError;
use crate::node::{Children, Data, Forward, Node, NodeFactory, TaskInit};
use crate::serde::Serde;
use crate::windows::{
    Combine, TimeWindows, Window, Windowed, entry_key, record_late, split_entry_key,
};

/// Store key of the last emitted window start; 7 bytes, so never a pane entry (≥ 8).
const LAST_CLOSED_KEY: &[u8] = b"!closed";

pub(crate) struct PaneAggregateOp<K, V, A, F> {
    pub(crate) store: String,
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) agg_serde: Arc<dyn Serde<A>>,
    pub(crate) f: Arc<F>,
    pub(crate) combine: Combine<A>,
    pub(crate) windows: TimeWindows,
    pub(crate) late_topic: Option<String>,
    pub(crate) children: Children<Windowed<K>, Option<A>>,
    pub(crate) _types: PhantomData<fn(V)>,
}

struct PaneAggregateRun<K, A, F> {
    store: usize,
    key_serde: Arc<dyn Serde<K>>,
    agg_serde: Arc<dyn Serde<A>>,
    f: Arc<F>,
    combine: Combine<A>,
    windows: TimeWindows,
    pane_ms: i64,
    late_topic: Option<Arc<str>>,
    /// Panes held, by (pane start, key bytes); loaded on the first record.
    panes: Option<BTreeSet<(i64, Bytes)>>,
    last_closed: Option<i64>,
    forward: Forward<Windowed<K>, Option<A>>,
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl<K, V, A, F> NodeFactory<K, V> for PaneAggregateOp<K, V, A, F>
where
    K: Data,
    V: Data,
    A: Data,
    F: Fn(&K, V, Option<A>) -> A + Send + Sync + 'static,
{
    fn build(&self, init: &TaskInit<'_>) -> Result<Box<dyn Node<K, V>>, StreamsError> {
        Ok(Box::new(PaneAggregateRun {
            store: init.store(&self.store)?,
            key_serde: self.key_serde.clone(),
            agg_serde: self.agg_serde.clone(),
            f: self.f.clone(),
            combine: self.combine.clone(),
            windows: self.windows,
            pane_ms: gcd(self.windows.size_ms, self.windows.advance_ms).max(1),
            late_topic: self.late_topic.as_deref().map(Arc::from),
            panes: None,
            last_closed: None,
            forward: Forward::build(&self.children, init)?,
        }))
    }
}

impl<K: Data, A: Data, F> PaneAggregateRun<K, A, F> {
    fn load(&mut self, ctx: &mut TaskContext) -> Result<(), StreamsError> {
        if self.panes.is_some() {
            return Ok(());
        }
        let mut panes = BTreeSet::new();
        for (k, v) in ctx.store_scan(self.store)? {
            if &k[..] == LAST_CLOSED_KEY {
                let b: [u8; 8] = v[..].try_into().map_err(|_| StreamsError::Store {
                    store: ctx.store_name(self.store).to_owned(),
                    detail: "the last closed window record is not 8 bytes".to_owned(),
                })?;
                self.last_closed = Some(i64::from_be_bytes(b));
            } else if let Some(entry) = split_entry_key(&k) {
                panes.insert(entry);
            }
        }
        self.panes = Some(panes);
        Ok(())
    }

    fn decode(&self, ctx: &TaskContext, bytes: &[u8]) -> Result<A, StreamsError> {
        ctx.decode_stored(self.store, &*self.agg_serde, bytes)
    }

    /// Emits every window that closed since the last one emitted, oldest
    /// first, then drops the panes no open window needs.
    fn close(&mut self, ctx: &mut TaskContext) -> Result<(), StreamsError> {
        let w = self.windows;
        let close_limit = ctx
            .stream_time()
            .saturating_sub(w.size_ms.saturating_add(w.grace_ms));
        while let Some(panes) = &self.panes {
            let Some(&(earliest, _)) = panes.first() else {
                break;
            };
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
            for (pane, key) in panes.range((start, Bytes::new())..(end, Bytes::new())) {
                by_key.entry(key.clone()).or_default().push(*pane);
            }
            for (key_bytes, pane_starts) in by_key {
                let mut total: Option<A> = None;
                for pane in pane_starts {
                    if let Some(bytes) = ctx.store_get(self.store, &entry_key(pane, &key_bytes))? {
                        let part = self.decode(ctx, &bytes)?;
                        total = Some(match total {
                            Some(t) => (self.combine)(t, part),
                            None => part,
                        });
                    }
                }
                let key = ctx.decode_stored(self.store, &*self.key_serde, &key_bytes)?;
                self.forward.send(
                    ctx,
                    Windowed {
                        key,
                        window: Window { start, end },
                    },
                    total,
                )?;
            }
            self.set_last_closed(ctx, start);
            // Panes before the next window's start belong to no open window.
            let next_start = start.saturating_add(w.advance_ms);
            let Some(panes) = &mut self.panes else {
                break;
            };
            while let Some((pane, key)) = panes.first().cloned() {
                if pane >= next_start {
                    break;
                }
                panes.pop_first();
                ctx.store_put(self.store, entry_key(pane, &key), None);
            }
        }
        // Windows that closed without data are closed too: a late record
        // must not reopen them through a pane they share with open windows.
        if close_limit != i64::MIN {
            let closed = close_limit - close_limit.rem_euclid(w.advance_ms);
            if self.last_closed.is_none_or(|c| c < closed) {
                self.set_last_closed(ctx, closed);
            }
        }
        Ok(())
    }

    fn set_last_closed(&mut self, ctx: &mut TaskContext, start: i64) {
        self.last_closed = Some(start);
        ctx.store_put(
            self.store,
            Bytes::from_static(LAST_CLOSED_KEY),
            Some(Bytes::copy_from_slice(&start.to_be_bytes())),
        );
    }
}

impl<K, V, A, F> Node<K, V> for PaneAggregateRun<K, A, F>
where
    K: Data,
    V: Data,
    A: Data,
    F: Fn(&K, V, Option<A>) -> A + Send + Sync + 'static,
{
    fn process(&mut self, ctx: &mut TaskContext, key: K, value: V) -> Result<(), StreamsError> {
        let store = self.store;
        ctx.with_node_stream_time(store, |ctx| self.add(ctx, key, value))
    }

    fn tick(&mut self, ctx: &mut TaskContext, now_ms: i64) -> Result<(), StreamsError> {
        self.forward.tick(ctx, now_ms)
    }
}

impl<K: Data, A: Data, F> PaneAggregateRun<K, A, F> {
    fn add<V: Data>(&mut self, ctx: &mut TaskContext, key: K, value: V) -> Result<(), StreamsError>
    where
        F: Fn(&K, V, Option<A>) -> A + Send + Sync + 'static,
    {
        self.load(ctx)?;
        let w = self.windows;
        let t = ctx.timestamp();
        // The latest window holding t closes last; if it has closed, all have.
        let latest_start = t - t.rem_euclid(w.advance_ms);
        if latest_start
            .saturating_add(w.size_ms)
            .saturating_add(w.grace_ms)
            <= ctx.stream_time()
            || self.last_closed.is_some_and(|c| latest_start <= c)
        {
            record_late(ctx, self.late_topic.as_ref(), w.grace_ms);
            return self.close(ctx);
        }
        let pane = t - t.rem_euclid(self.pane_ms);
        let key_bytes = ctx.encode(&*self.key_serde, &key, "store key")?;
        let entry = entry_key(pane, &key_bytes);
        let current = match ctx.store_get(self.store, &entry)? {
            Some(bytes) => Some(self.decode(ctx, &bytes)?),
            None => None,
        };
        let next = (self.f)(&key, value, current);
        let encoded = ctx.encode(&*self.agg_serde, &next, "aggregate")?;
        ctx.store_put(self.store, entry, Some(encoded));
        if let Some(panes) = &mut self.panes {
            panes.insert((pane, key_bytes));
        }
        self.close(ctx)
    }
}
