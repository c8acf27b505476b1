//! Time windows (tumbling and hopping) with grace, emit-on-update or
//! emit-final, and a late-records topic — Kafka Streams' semantics:
//! windows are epoch-aligned `[start, end)`, a record at `t` belongs to
//! every window with `start <= t < end` whose start is a multiple of the
//! advance, and a window is closed once `end + grace <= stream time`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::{
    Combine, Emit, Fold, Placed, Step, Window, WindowAssigner, Windowed, WindowedKStream, counting,
    decode_windowed, encode_windowed, from_init, ms, sum, time_bytes, time_of,
};
use crate::context::TaskContext;
use crate::error::StreamsError;
use crate::ktable::KTable;
use crate::node::Data;
use crate::serde::{I64, Serde, SerdeError};
use crate::topology::Materialized;

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

/// A grouped stream cut into time windows.
pub type TimeWindowedKStream<K, V> = WindowedKStream<K, V, TimeWindows>;

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
            from_init(init, f),
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
        let (combine, f) = (Some(Arc::new(combine) as Combine<A>), from_init(init, f));
        self.fold("windowed-aggregate", store, agg_serde, combine, f)
    }

    /// Counts each key's records per window.
    pub fn count(&self, store: Materialized) -> KTable<Windowed<K>, i64> {
        self.fold("windowed-count", store, I64, Some(Arc::new(sum)), counting)
    }

    /// Combines each key's values per window.
    pub fn reduce(
        &self,
        store: Materialized,
        value_serde: impl Serde<V>,
        f: impl Fn(V, V) -> V + Send + Sync + 'static,
    ) -> KTable<Windowed<K>, V> {
        let f = Arc::new(f);
        let combine: Combine<V> = f.clone();
        self.fold(
            "windowed-reduce",
            store,
            value_serde,
            Some(combine),
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
        f: impl Fold<K, V, A>,
    ) -> KTable<Windowed<K>, A> {
        let (w, f) = (self.windows, Arc::new(f));
        let (agg_serde, invalid) = (Arc::new(agg_serde), w.validate().err());
        match combine {
            // Panes pay off when results are final: emitting on every
            // update would recombine every overlapping window per record.
            Some(combine) if self.emit == Emit::Final && w.advance_ms < w.size_ms => {
                let panes = super::panes::Panes::new(w, f, combine, agg_serde.clone());
                self.aggregate_with(kind, store, agg_serde, panes, w.grace_ms, invalid)
            }
            _ => {
                let each = EachWindow::new(w, f);
                self.aggregate_with(kind, store, agg_serde, each, w.grace_ms, invalid)
            }
        }
    }
}

/// One aggregate per (window, key), and the open windows in memory.
struct EachWindow<F> {
    windows: TimeWindows,
    f: Arc<F>,
    /// Open windows held in the store, by (start, key bytes): closing them
    /// in start order is closing them in end order.
    open: BTreeSet<(i64, Bytes)>,
}

impl<F> EachWindow<F> {
    fn new(windows: TimeWindows, f: Arc<F>) -> Self {
        let open = BTreeSet::new();
        Self { windows, f, open }
    }
}

/// Store key of one (window, key): the window start as [`time_bytes`] (so
/// byte order is time order), then the key bytes.
pub(crate) fn entry_key(start: i64, key: &[u8]) -> Bytes {
    let mut k = Vec::with_capacity(8 + key.len());
    k.extend_from_slice(&time_bytes(start));
    k.extend_from_slice(key);
    Bytes::from(k)
}

pub(crate) fn split_entry_key(k: &Bytes) -> Option<(i64, Bytes)> {
    let start = time_of(k.get(..8)?)?;
    Some((start, k.slice(8..)))
}

impl<K: Data, V: Data, A: Data, F: Fold<K, V, A>> WindowAssigner<K, V, A> for EachWindow<F> {
    fn fresh(&self) -> Self {
        Self::new(self.windows, self.f.clone())
    }

    fn load(&mut self, ctx: &mut TaskContext, store: usize) -> Result<(), StreamsError> {
        let entries = ctx.store_scan(store)?;
        self.open
            .extend(entries.iter().filter_map(|(k, _)| split_entry_key(k)));
        Ok(())
    }

    fn add(&mut self, at: &mut Step<'_, K, A>, key: &K, value: V) -> Result<Placed, StreamsError> {
        let key_bytes = at.key_bytes(key)?;
        let mut placed = Placed::Late;
        let windows = self.windows.windows_for(at.ctx.timestamp());
        let last = windows.len().saturating_sub(1);
        let mut value = Some(value);
        for (i, window) in windows.into_iter().enumerate() {
            if window.end.saturating_add(at.grace_ms) <= at.stream_time {
                continue;
            }
            let entry = entry_key(window.start, &key_bytes);
            let current = at.get(&entry)?;
            // Each window gets the value; the last one takes it without a clone.
            let v = if i == last {
                value.take()
            } else {
                value.clone()
            };
            let Some(v) = v else { break };
            let next = (self.f)(key, v, current);
            at.put(entry, &next)?;
            self.open.insert((window.start, key_bytes.clone()));
            placed = Placed::InWindow;
            if at.emit == Emit::OnUpdate {
                at.updates.push((window, Some(next)));
            }
        }
        Ok(placed)
    }

    fn close(&mut self, at: &mut Step<'_, K, A>) -> Result<(), StreamsError> {
        let (size, grace, now) = (self.windows.size_ms, at.grace_ms, at.stream_time);
        // Closed windows are kept no longer than size + grace, as Kafka's default retention.
        at.close_ended(&mut self.open, |(start, key)| {
            let (start, end) = (*start, start.saturating_add(size));
            let ended = end.saturating_add(grace) <= now;
            ended.then(|| (entry_key(start, key), key.clone(), Window { start, end }))
        })
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
        encode_windowed(&self.inner, &value.key, [value.window.start], out)
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<Windowed<K>, SerdeError> {
        let (key, [start]) = decode_windowed(&self.inner, bytes, "a windowed key")?;
        let end = start.saturating_add(self.size_ms);
        Ok(Windowed {
            key,
            window: Window { start, end },
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
