//! Sliding windows (KIP-450): windows of a fixed time difference `d`,
//! inclusive at both ends, placed where records are. For each key the
//! windows are every `[t - d, t]` ending at a record (left windows) and
//! every non-empty `[t + 1, t + 1 + d]` starting just after a record (right
//! windows). A record creates or updates the windows that contain it, and
//! its own right window when later records already fall in it.
//!
//! Each key's records within reach are kept, and an affected window's
//! aggregate is recomputed from them in timestamp order, so order-independent
//! aggregates (count, sum, min, max) give what Kafka Streams gives.
//! A window is closed once `end < stream time - grace`; a record whose
//! right window `[t + 1, t + 1 + d]` would already be closed is late.

use std::collections::BTreeSet;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::context::TaskContext;
use crate::error::StreamsError;
use crate::ktable::KTable;
use crate::node::{Children, Data, Forward, Node, NodeFactory, TaskInit, add_child, new_children};
use crate::serde::{I64, Serde};
use crate::topology::Materialized;
use crate::windows::{Emit, Window, Windowed, WindowedKStream, record_late, register_windowed};

/// Sliding windows of a time difference, with grace.
///
/// ```
/// use std::time::Duration;
/// let w = kappa_streams::SlidingWindows::with_time_difference_and_grace(Duration::from_secs(10), Duration::from_secs(2));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlidingWindows {
    diff_ms: i64,
    grace_ms: i64,
}

impl SlidingWindows {
    /// Windows spanning `difference` (inclusive), accepting records up to `grace` late.
    pub fn with_time_difference_and_grace(difference: Duration, grace: Duration) -> Self {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Self {
            diff_ms: ms(difference),
            grace_ms: ms(grace),
        }
    }
}

/// A grouped stream cut into sliding windows.
pub type SlidingWindowedKStream<K, V> = WindowedKStream<K, V, SlidingWindows>;

impl<K: Data, V: Data> SlidingWindowedKStream<K, V> {
    /// Counts each window's records.
    pub fn count(
        &self,
        store: Materialized,
        value_serde: impl Serde<V>,
    ) -> KTable<Windowed<K>, i64> {
        self.aggregate(store, value_serde, I64, || 0, |_, _, n| n + 1)
    }

    /// Aggregates each window's records (in timestamp order) with `f`,
    /// starting from `init`. `value_serde` keeps the records in reach.
    pub fn aggregate<A: Data>(
        &self,
        store: Materialized,
        value_serde: impl Serde<V>,
        agg_serde: impl Serde<A>,
        init: impl Fn() -> A + Send + Sync + 'static,
        f: impl Fn(&K, V, A) -> A + Send + Sync + 'static,
    ) -> KTable<Windowed<K>, A> {
        let children = new_children();
        add_child(
            &self.children,
            Arc::new(SlidingOp {
                store: store.0.name.clone(),
                key_serde: self.key_serde.clone(),
                value_serde: Arc::new(value_serde),
                agg_serde: Arc::new(agg_serde),
                init: Arc::new(init),
                f: Arc::new(f),
                windows: self.windows,
                emit: self.emit,
                late_topic: self.late_topic.clone(),
                children: children.clone(),
                _types: PhantomData,
            }),
        );
        let w = self.windows;
        let invalid = (w.diff_ms < 0 || w.grace_ms < 0)
            .then(|| "sliding windows need a time difference and grace >= 0".to_owned());
        let name = register_windowed(
            &self.graph,
            "sliding-aggregate",
            &store,
            &self.name,
            self.late_topic.as_deref(),
            invalid,
        );
        KTable::new(self.graph.clone(), children, name)
    }
}

struct SlidingOp<K, V, A, I, F> {
    store: String,
    key_serde: Arc<dyn Serde<K>>,
    value_serde: Arc<dyn Serde<V>>,
    agg_serde: Arc<dyn Serde<A>>,
    init: Arc<I>,
    f: Arc<F>,
    windows: SlidingWindows,
    emit: Emit,
    late_topic: Option<String>,
    children: Children<Windowed<K>, Option<A>>,
    _types: PhantomData<fn(V)>,
}

struct SlidingRun<K, V, A, I, F> {
    store: usize,
    key_serde: Arc<dyn Serde<K>>,
    value_serde: Arc<dyn Serde<V>>,
    agg_serde: Arc<dyn Serde<A>>,
    init: Arc<I>,
    f: Arc<F>,
    windows: SlidingWindows,
    emit: Emit,
    late_topic: Option<Arc<str>>,
    forward: Forward<Windowed<K>, Option<A>>,
}

impl<K, V, A, I, F> NodeFactory<K, V> for SlidingOp<K, V, A, I, F>
where
    K: Data,
    V: Data,
    A: Data,
    I: Fn() -> A + Send + Sync + 'static,
    F: Fn(&K, V, A) -> A + Send + Sync + 'static,
{
    fn build(&self, init: &TaskInit<'_>) -> Result<Box<dyn Node<K, V>>, StreamsError> {
        Ok(Box::new(SlidingRun {
            store: init.store(&self.store)?,
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
            agg_serde: self.agg_serde.clone(),
            init: self.init.clone(),
            f: self.f.clone(),
            windows: self.windows,
            emit: self.emit,
            late_topic: self.late_topic.as_deref().map(Arc::from),
            forward: Forward::build(&self.children, init)?,
        }))
    }
}

fn time_bytes(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

fn time_of(b: &[u8]) -> Option<i64> {
    Some((u64::from_be_bytes(b.try_into().ok()?) ^ (1 << 63)) as i64)
}

/// Records: `b'r' | len u32 | key | time | topic hash u32 | offset u64 | seq u32` → value.
fn record_prefix(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(5 + key.len() + 24);
    k.push(b'r');
    k.extend_from_slice(&(key.len() as u32).to_be_bytes());
    k.extend_from_slice(key);
    k
}

/// Windows awaiting their final emission: `b'w' | end | start | key`.
fn window_key(key: &[u8], window: Window) -> Bytes {
    let mut k = Vec::with_capacity(17 + key.len());
    k.push(b'w');
    k.extend_from_slice(&time_bytes(window.end));
    k.extend_from_slice(&time_bytes(window.start));
    k.extend_from_slice(key);
    Bytes::from(k)
}

impl<K: Data, V: Data, A: Data, I, F> SlidingRun<K, V, A, I, F>
where
    I: Fn() -> A + Send + Sync + 'static,
    F: Fn(&K, V, A) -> A + Send + Sync + 'static,
{
    fn add(&mut self, ctx: &mut TaskContext, key: K, value: V) -> Result<(), StreamsError> {
        let d = self.windows.diff_ms;
        let t = ctx.timestamp();
        let close_time = ctx.stream_time().saturating_sub(self.windows.grace_ms);
        if t.saturating_add(1).saturating_add(d) < close_time {
            record_late(ctx, self.late_topic.as_ref(), self.windows.grace_ms);
            return self.close(ctx);
        }
        let key_bytes = ctx.encode(&*self.key_serde, &key, "store key")?;
        let prefix = record_prefix(&key_bytes);
        let mut entry = prefix.clone();
        entry.extend_from_slice(&time_bytes(t));
        let position = ctx.position();
        entry.extend_from_slice(
            &(kappa_log::murmur2(position.topic.as_bytes()) as u32).to_be_bytes(),
        );
        entry.extend_from_slice(&position.offset.to_be_bytes());
        entry.extend_from_slice(&ctx.next_derived().to_be_bytes());
        let encoded = ctx.encode(&*self.value_serde, &value, "window record")?;
        ctx.store_put(self.store, Bytes::from(entry), Some(encoded));

        // This key's records in reach, in timestamp order.
        let mut records: Vec<(i64, Bytes)> = Vec::new();
        for (k, v) in ctx.store_scan_prefix(self.store, &prefix)? {
            let Some(rt) = k.get(prefix.len()..prefix.len() + 8).and_then(time_of) else {
                continue;
            };
            // A record at rt matters to no window ending after rt + 1 + d.
            if rt.saturating_add(1).saturating_add(d) < close_time {
                ctx.store_put(self.store, k, None);
                continue;
            }
            records.push((rt, v));
        }
        let times: BTreeSet<i64> = records.iter().map(|(rt, _)| *rt).collect();
        let in_range = |lo: i64, hi: i64| times.range(lo..=hi).next().is_some();

        // The windows this record creates or updates.
        let mut affected: BTreeSet<(i64, i64)> = BTreeSet::new();
        for &r in times.range(t..=t.saturating_add(d)) {
            affected.insert((r.saturating_sub(d), r)); // left windows holding t
        }
        for &r in times.range(t.saturating_sub(d).saturating_sub(1)..t) {
            affected.insert((r + 1, r.saturating_add(1).saturating_add(d))); // right windows holding t
        }
        if in_range(t.saturating_add(1), t.saturating_add(d)) {
            affected.insert((t + 1, t.saturating_add(1).saturating_add(d))); // t's own right window
        }
        for (start, end) in affected {
            if end < close_time {
                continue;
            }
            let mut agg = (self.init)();
            for (rt, v) in &records {
                if *rt >= start && *rt <= end {
                    let v = ctx.decode_stored(self.store, &*self.value_serde, v)?;
                    agg = (self.f)(&key, v, agg);
                }
            }
            let window = Window { start, end };
            match self.emit {
                Emit::OnUpdate => self.forward.send(
                    ctx,
                    Windowed {
                        key: key.clone(),
                        window,
                    },
                    Some(agg),
                )?,
                Emit::Final => {
                    let encoded = ctx.encode(&*self.agg_serde, &agg, "aggregate")?;
                    ctx.store_put(self.store, window_key(&key_bytes, window), Some(encoded));
                }
            }
        }
        self.close(ctx)
    }

    /// Emits final results of closed windows and drops records out of reach.
    fn close(&mut self, ctx: &mut TaskContext) -> Result<(), StreamsError> {
        let close_time = ctx.stream_time().saturating_sub(self.windows.grace_ms);
        if self.emit == Emit::Final {
            for (k, v) in ctx.store_scan_prefix(self.store, b"w")? {
                let (Some(end), Some(start)) = (
                    k.get(1..9).and_then(time_of),
                    k.get(9..17).and_then(time_of),
                ) else {
                    continue;
                };
                if end >= close_time {
                    break; // entries are in end order
                }
                let key = ctx.decode_stored(self.store, &*self.key_serde, &k[17..])?;
                let agg = ctx.decode_stored(self.store, &*self.agg_serde, &v)?;
                ctx.store_put(self.store, k.clone(), None);
                self.forward.send(
                    ctx,
                    Windowed {
                        key,
                        window: Window { start, end },
                    },
                    Some(agg),
                )?;
            }
        }
        Ok(())
    }
}

impl<K, V, A, I, F> Node<K, V> for SlidingRun<K, V, A, I, F>
where
    K: Data,
    V: Data,
    A: Data,
    I: Fn() -> A + Send + Sync + 'static,
    F: Fn(&K, V, A) -> A + Send + Sync + 'static,
{
    fn process(&mut self, ctx: &mut TaskContext, key: K, value: V) -> Result<(), StreamsError> {
        let store = self.store;
        ctx.with_node_stream_time(store, |ctx| self.add(ctx, key, value))
    }

    fn tick(&mut self, ctx: &mut TaskContext, now_ms: i64) -> Result<(), StreamsError> {
        self.forward.tick(ctx, now_ms)
    }
}
