//! Time windows (tumbling and hopping) with grace, emit-on-update or
//! emit-final, and a late-records topic — Kafka Streams' semantics:
//! windows are epoch-aligned `[start, end)`, a record at `t` belongs to
//! every window with `start <= t < end` whose start is a multiple of the
//! advance, and a window is closed once `end + grace <= stream time`.

use std::collections::BTreeSet;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::context::TaskContext;
use crate::error::StreamsError;
use crate::ktable::KTable;
use crate::node::{Children, Data, Forward, Node, NodeFactory, TaskInit, add_child, new_children};
use crate::serde::{I64, Serde, SerdeError};
use crate::topology::{Materialized, SharedGraph, lock};

/// A window's bounds in ms: `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Window {
    /// Inclusive start.
    pub start: i64,
    /// Exclusive end.
    pub end: i64,
}

/// A key within one window: the key type of windowed aggregations.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Windowed<K> {
    /// The record key.
    pub key: K,
    /// The window.
    pub window: Window,
}

/// Tumbling (advance = size) or hopping (advance < size) windows.
///
/// ```
/// use std::time::Duration;
/// use kappa_streams::TimeWindows;
/// let day = Duration::from_secs(86_400);
/// let w = TimeWindows::of_size_with_grace(day * 30, day * 2).advance_by(day);
/// assert_eq!(w.windows_for(0).len(), 30);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeWindows {
    pub(crate) size_ms: i64,
    pub(crate) advance_ms: i64,
    pub(crate) grace_ms: i64,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl TimeWindows {
    /// Tumbling windows of `size` accepting records up to `grace` after a window's end.
    pub fn of_size_with_grace(size: Duration, grace: Duration) -> Self {
        Self {
            size_ms: ms(size),
            advance_ms: ms(size),
            grace_ms: ms(grace),
        }
    }

    /// Tumbling windows of `size` with no grace.
    pub fn of_size_no_grace(size: Duration) -> Self {
        Self::of_size_with_grace(size, Duration::ZERO)
    }

    /// Hopping windows: a new window every `advance` (must be ≤ size).
    #[must_use]
    pub fn advance_by(mut self, advance: Duration) -> Self {
        self.advance_ms = ms(advance);
        self
    }

    /// Window size in ms.
    pub fn size_ms(&self) -> i64 {
        self.size_ms
    }

    fn validate(&self) -> Result<(), String> {
        if self.size_ms <= 0
            || self.advance_ms <= 0
            || self.advance_ms > self.size_ms
            || self.grace_ms < 0
        {
            return Err(format!(
                "time windows need 0 < advance <= size and grace >= 0 (size {} ms, advance {} ms, grace {} ms)",
                self.size_ms, self.advance_ms, self.grace_ms
            ));
        }
        Ok(())
    }

    /// The windows a record at `timestamp` belongs to, earliest first.
    pub fn windows_for(&self, timestamp: i64) -> Vec<Window> {
        // The latest window start at or before the timestamp, then back by
        // `advance` while the window still covers the timestamp.
        let last_start = timestamp - timestamp.rem_euclid(self.advance_ms);
        let mut out = Vec::new();
        let mut start = last_start;
        while start > timestamp.saturating_sub(self.size_ms) {
            out.push(Window {
                start,
                end: start.saturating_add(self.size_ms),
            });
            start = start.saturating_sub(self.advance_ms);
        }
        out.reverse();
        out
    }
}

/// Merges two partial aggregates.
pub(crate) type Combine<A> = Arc<dyn Fn(A, A) -> A + Send + Sync>;

/// When a windowed aggregation emits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Emit {
    /// After every record, for every window it updated (Kafka's default).
    #[default]
    OnUpdate,
    /// Once per window, when it closes (`end + grace <= stream time`).
    Final,
}

/// A grouped stream cut into windows of kind `W`: [`TimeWindows`],
/// [`crate::SessionWindows`] or [`crate::SlidingWindows`].
pub struct WindowedKStream<K, V, W> {
    pub(crate) graph: SharedGraph,
    pub(crate) children: Children<K, V>,
    pub(crate) name: String,
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) windows: W,
    pub(crate) emit: Emit,
    pub(crate) late_topic: Option<String>,
}

/// A grouped stream cut into time windows.
pub type TimeWindowedKStream<K, V> = WindowedKStream<K, V, TimeWindows>;

impl<K: Data, V: Data, W> WindowedKStream<K, V, W> {
    /// Chooses when results are emitted. With [`Emit::OnUpdate`], a session
    /// merge emits a deletion for each merged session, then the new one.
    #[must_use]
    pub fn emit(mut self, emit: Emit) -> Self {
        self.emit = emit;
        self
    }

    /// Sends records that arrive after all their windows closed to `topic`
    /// (unchanged, with provenance and a `kappa-error` reason); without it
    /// they are counted and logged.
    #[must_use]
    pub fn late_records_to(mut self, topic: &str) -> Self {
        self.late_topic = Some(topic.to_owned());
        self
    }
}

impl<K: Data, V: Data> TimeWindowedKStream<K, V> {
    /// Aggregates each key's records per window.
    pub fn aggregate<A: Data>(
        &self,
        store: Materialized,
        agg_serde: impl Serde<A>,
        init: impl Fn() -> A + Send + Sync + 'static,
        f: impl Fn(&K, V, A) -> A + Send + Sync + 'static,
    ) -> KTable<Windowed<K>, A> {
        self.fold(
            "windowed-aggregate",
            store,
            agg_serde,
            None,
            move |k, v, acc| f(k, v, acc.unwrap_or_else(&init)),
        )
    }

    /// Like [`TimeWindowedKStream::aggregate`], for aggregates that can be
    /// merged: `combine(a, b)` merges partial aggregates of adjacent time
    /// slices. With [`Emit::Final`], hopping windows then keep one partial
    /// per key and *pane* (`gcd(size, advance)` of time), so a record costs
    /// one store write instead of one per overlapping window.
    pub fn aggregate_combinable<A: Data>(
        &self,
        store: Materialized,
        agg_serde: impl Serde<A>,
        init: impl Fn() -> A + Send + Sync + 'static,
        f: impl Fn(&K, V, A) -> A + Send + Sync + 'static,
        combine: impl Fn(A, A) -> A + Send + Sync + 'static,
    ) -> KTable<Windowed<K>, A> {
        self.fold(
            "windowed-aggregate",
            store,
            agg_serde,
            Some(Arc::new(combine)),
            move |k, v, acc| f(k, v, acc.unwrap_or_else(&init)),
        )
    }

    /// Counts each key's records per window.
    pub fn count(&self, store: Materialized) -> KTable<Windowed<K>, i64> {
        self.fold(
            "windowed-count",
            store,
            I64,
            Some(Arc::new(|a, b| a + b)),
            |_, _, n| n.unwrap_or(0) + 1,
        )
    }

    /// Combines each key's values per window.
    pub fn reduce(
        &self,
        store: Materialized,
        value_serde: impl Serde<V>,
        f: impl Fn(V, V) -> V + Send + Sync + 'static,
    ) -> KTable<Windowed<K>, V> {
        let f = Arc::new(f);
        let combine = f.clone();
        self.fold(
            "windowed-reduce",
            store,
            value_serde,
            Some(Arc::new(move |a, b| combine(a, b))),
            move |_, v, acc| match acc {
                Some(a) => f(a, v),
                None => v,
            },
        )
    }

    fn fold<A: Data>(
        &self,
        kind: &str,
        store: Materialized,
        agg_serde: impl Serde<A>,
        combine: Option<Combine<A>>,
        f: impl Fn(&K, V, Option<A>) -> A + Send + Sync + 'static,
    ) -> KTable<Windowed<K>, A> {
        let children = new_children();
        let agg_serde: Arc<dyn Serde<A>> = Arc::new(agg_serde);
        match combine {
            // Panes pay off when results are final: emitting on every
            // update would recombine every overlapping window per record.
            Some(combine)
                if self.emit == Emit::Final && self.windows.advance_ms < self.windows.size_ms =>
            {
                add_child(
                    &self.children,
                    Arc::new(crate::panes::PaneAggregateOp {
                        store: store.0.name.clone(),
                        key_serde: self.key_serde.clone(),
                        agg_serde,
                        f: Arc::new(f),
                        combine,
                        windows: self.windows,
                        late_topic: self.late_topic.clone(),
                        children: children.clone(),
                        _types: PhantomData,
                    }),
                );
            }
            _ => add_child(
                &self.children,
                Arc::new(WindowedAggregateOp {
                    store: store.0.name.clone(),
                    key_serde: self.key_serde.clone(),
                    agg_serde,
                    f: Arc::new(f),
                    windows: self.windows,
                    emit: self.emit,
                    late_topic: self.late_topic.clone(),
                    children: children.clone(),
                    _types: PhantomData,
                }),
            ),
        }
        let name = register_windowed(
            &self.graph,
            kind,
            &store,
            &self.name,
            self.late_topic.as_deref(),
            self.windows.validate().err(),
        );
        KTable::new(self.graph.clone(), children, name)
    }
}

/// Adds a windowed aggregation to the graph: its store, its late-records
/// topic, and a build error when its windows are invalid.
pub(crate) fn register_windowed(
    graph: &SharedGraph,
    kind: &str,
    store: &Materialized,
    parent: &str,
    late_topic: Option<&str>,
    invalid: Option<String>,
) -> String {
    let mut g = lock(graph);
    g.errors.extend(invalid);
    if let Some(t) = late_topic {
        g.sinks.push(crate::ops::TopicName::Fixed(t.to_owned()));
    }
    g.stores.push(store.0.clone());
    let node = g.add_node(&format!("{kind}[{}]", store.0.name), &[parent]);
    g.node_uses(&node, None, &[&store.0.name]);
    node
}

struct WindowedAggregateOp<K, V, A, F> {
    store: String,
    key_serde: Arc<dyn Serde<K>>,
    agg_serde: Arc<dyn Serde<A>>,
    f: Arc<F>,
    windows: TimeWindows,
    emit: Emit,
    late_topic: Option<String>,
    children: Children<Windowed<K>, Option<A>>,
    _types: PhantomData<fn(V)>,
}

struct WindowedAggregateRun<K, A, F> {
    store: usize,
    key_serde: Arc<dyn Serde<K>>,
    agg_serde: Arc<dyn Serde<A>>,
    f: Arc<F>,
    windows: TimeWindows,
    emit: Emit,
    late_topic: Option<Arc<str>>,
    /// Open windows held in the store, by (start, key bytes): closing them
    /// in start order is closing them in end order. Rebuilt from the store
    /// on the first record after a (re)start.
    open: Option<BTreeSet<(i64, Bytes)>>,
    forward: Forward<Windowed<K>, Option<A>>,
}

impl<K, V, A, F> NodeFactory<K, V> for WindowedAggregateOp<K, V, A, F>
where
    K: Data,
    V: Data,
    A: Data,
    F: Fn(&K, V, Option<A>) -> A + Send + Sync + 'static,
{
    fn build(&self, init: &TaskInit<'_>) -> Result<Box<dyn Node<K, V>>, StreamsError> {
        Ok(Box::new(WindowedAggregateRun {
            store: init.store(&self.store)?,
            key_serde: self.key_serde.clone(),
            agg_serde: self.agg_serde.clone(),
            f: self.f.clone(),
            windows: self.windows,
            emit: self.emit,
            late_topic: self.late_topic.as_deref().map(Arc::from),
            open: None,
            forward: Forward::build(&self.children, init)?,
        }))
    }
}

/// Store key of one (window, key): start as big-endian i64 with the sign bit
/// flipped (so byte order is time order), then the key bytes.
pub(crate) fn entry_key(start: i64, key: &[u8]) -> Bytes {
    let mut k = Vec::with_capacity(8 + key.len());
    k.extend_from_slice(&((start as u64) ^ (1 << 63)).to_be_bytes());
    k.extend_from_slice(key);
    Bytes::from(k)
}

pub(crate) fn split_entry_key(k: &Bytes) -> Option<(i64, Bytes)> {
    let start = u64::from_be_bytes(k.get(..8)?.try_into().ok()?) ^ (1 << 63);
    Some((start as i64, k.slice(8..)))
}

impl<K, V, A, F> Node<K, V> for WindowedAggregateRun<K, A, F>
where
    K: Data,
    V: Data,
    A: Data,
    F: Fn(&K, V, Option<A>) -> A + Send + Sync + 'static,
{
    fn process(&mut self, ctx: &mut TaskContext, key: K, value: V) -> Result<(), StreamsError> {
        let store = self.store;
        ctx.with_node_stream_time(store, |ctx| self.aggregate(ctx, key, value))
    }

    fn tick(&mut self, ctx: &mut TaskContext, now_ms: i64) -> Result<(), StreamsError> {
        self.forward.tick(ctx, now_ms)
    }
}

impl<K: Data, A: Data, F> WindowedAggregateRun<K, A, F> {
    fn aggregate<V: Data>(
        &mut self,
        ctx: &mut TaskContext,
        key: K,
        value: V,
    ) -> Result<(), StreamsError>
    where
        F: Fn(&K, V, Option<A>) -> A + Send + Sync + 'static,
    {
        if self.open.is_none() {
            let mut open = BTreeSet::new();
            for (k, _) in ctx.store_scan(self.store)? {
                if let Some(entry) = split_entry_key(&k) {
                    open.insert(entry);
                }
            }
            self.open = Some(open);
        }
        let key_bytes = ctx.encode(&*self.key_serde, &key, "store key")?;
        let stream_time = ctx.stream_time();
        let w = self.windows;
        let mut updated = 0;
        let windows = w.windows_for(ctx.timestamp());
        let last = windows.len().saturating_sub(1);
        let mut value = Some(value);
        for (i, window) in windows.into_iter().enumerate() {
            if window.end.saturating_add(w.grace_ms) <= stream_time {
                continue;
            }
            let entry = entry_key(window.start, &key_bytes);
            let current = ctx.store_get_decoded(self.store, &entry, &*self.agg_serde)?;
            // Each window gets the value; the last one takes it without a clone.
            let v = if i == last {
                value.take()
            } else {
                value.clone()
            };
            let Some(v) = v else { break };
            let next = (self.f)(&key, v, current);
            let encoded = ctx.encode(&*self.agg_serde, &next, "aggregate")?;
            ctx.store_put(self.store, entry.clone(), Some(encoded));
            if let Some(open) = &mut self.open {
                open.insert((window.start, key_bytes.clone()));
            }
            updated += 1;
            if self.emit == Emit::OnUpdate {
                self.forward.send(
                    ctx,
                    Windowed {
                        key: key.clone(),
                        window,
                    },
                    Some(next),
                )?;
            }
        }
        if updated == 0 {
            record_late(ctx, self.late_topic.as_ref(), w.grace_ms);
        }
        self.close_windows(ctx, stream_time)
    }
}

/// Counts a record whose windows have all closed and sends it to the
/// late-records topic, or logs it when there is none.
pub(crate) fn record_late(ctx: &mut TaskContext, late_topic: Option<&Arc<str>>, grace_ms: i64) {
    ctx.late_records += 1;
    let reason = format!(
        "late record: every window of timestamp {} closed (stream time {}, grace {grace_ms} ms)",
        ctx.timestamp(),
        ctx.stream_time(),
    );
    match late_topic {
        Some(topic) => ctx.emit_input(topic, reason),
        None => tracing::warn!(position = %ctx.position(), "{reason}"),
    }
}

impl<K: Data, A: Data, F> WindowedAggregateRun<K, A, F> {
    /// Emits (for `Emit::Final`) and drops every window that has closed.
    fn close_windows(
        &mut self,
        ctx: &mut TaskContext,
        stream_time: i64,
    ) -> Result<(), StreamsError> {
        let w = self.windows;
        let Some(open) = &mut self.open else {
            return Ok(());
        };
        while let Some((start, key_bytes)) = open.first().cloned() {
            if start.saturating_add(w.size_ms).saturating_add(w.grace_ms) > stream_time {
                break;
            }
            open.pop_first();
            let entry = entry_key(start, &key_bytes);
            if self.emit == Emit::Final
                && let Some(bytes) = ctx.store_get(self.store, &entry)?
            {
                let agg = ctx.decode_stored(self.store, &*self.agg_serde, &bytes)?;
                let key = ctx.decode_stored(self.store, &*self.key_serde, &key_bytes)?;
                let window = Window {
                    start,
                    end: start.saturating_add(w.size_ms),
                };
                self.forward
                    .send(ctx, Windowed { key, window }, Some(agg))?;
            }
            // Closed windows are kept no longer than size + grace, as Kafka's default retention.
            ctx.store_put(self.store, entry, None);
        }
        Ok(())
    }
}

/// Serde of windowed keys as Kafka's `TimeWindowedSerde`: the key's bytes,
/// then the window start as 8 big-endian bytes; the end is start + size.
#[derive(Clone)]
pub struct WindowedSerde<S> {
    inner: S,
    size_ms: i64,
}

impl<S> WindowedSerde<S> {
    /// Windowed keys of `inner` for windows of `size`.
    pub fn new(inner: S, size: Duration) -> Self {
        Self {
            inner,
            size_ms: ms(size),
        }
    }
}

impl<K, S: Serde<K>> Serde<Windowed<K>> for WindowedSerde<S> {
    fn serialize(&self, value: &Windowed<K>, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        self.inner.serialize(&value.key, out)?;
        out.extend_from_slice(&value.window.start.to_be_bytes());
        Ok(())
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<Windowed<K>, SerdeError> {
        if bytes.len() < 8 {
            return Err(SerdeError(format!(
                "a windowed key needs at least 8 bytes, got {}",
                bytes.len()
            )));
        }
        let (key, start) = bytes.split_at(bytes.len() - 8);
        let start = i64::from_be_bytes(
            start
                .try_into()
                .map_err(|_| SerdeError("bad window start".to_owned()))?,
        );
        Ok(Windowed {
            key: self.inner.deserialize(key)?,
            window: Window {
                start,
                end: start.saturating_add(self.size_ms),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_keys_sort_by_time_including_negative_times() {
        assert!(entry_key(-5, b"k") < entry_key(3, b"a"));
        assert_eq!(
            split_entry_key(&entry_key(-5, b"k")),
            Some((-5, Bytes::from_static(b"k")))
        );
    }
}
