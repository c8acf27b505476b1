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
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::{
    Emit, Placed, Step, Window, WindowAssigner, Windowed, WindowedKStream, ms, time_bytes, time_of,
};
use crate::error::StreamsError;
use crate::ktable::KTable;
use crate::node::Data;
use crate::serde::{I64, Serde};
use crate::topology::Materialized;

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
        let w = self.windows;
        let invalid = (w.diff_ms < 0 || w.grace_ms < 0)
            .then(|| "sliding windows need a time difference and grace >= 0".to_owned());
        let sliding = Sliding {
            windows: w,
            value_serde: Arc::new(value_serde),
            init: Arc::new(init),
            f: Arc::new(f),
        };
        let agg_serde = Arc::new(agg_serde);
        self.aggregate_with(
            "sliding-aggregate",
            store,
            agg_serde,
            sliding,
            w.grace_ms,
            invalid,
        )
    }
}

/// Each key's records in reach, and (for final results) the windows
/// awaiting their emission; nothing in memory.
struct Sliding<V, I, F> {
    windows: SlidingWindows,
    value_serde: Arc<dyn Serde<V>>,
    init: Arc<I>,
    f: Arc<F>,
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

impl<K, V, A, I, F> WindowAssigner<K, V, A> for Sliding<V, I, F>
where
    K: Data,
    V: Data,
    A: Data,
    I: Fn() -> A + Send + Sync + 'static,
    F: Fn(&K, V, A) -> A + Send + Sync + 'static,
{
    fn fresh(&self) -> Self {
        Self {
            windows: self.windows,
            value_serde: self.value_serde.clone(),
            init: self.init.clone(),
            f: self.f.clone(),
        }
    }

    fn add(&mut self, at: &mut Step<'_, K, A>, key: &K, value: V) -> Result<Placed, StreamsError> {
        let d = self.windows.diff_ms;
        let t = at.ctx.timestamp();
        let close_time = at.stream_time.saturating_sub(at.grace_ms);
        if t.saturating_add(1).saturating_add(d) < close_time {
            return Ok(Placed::Late);
        }
        let key_bytes = at.key_bytes(key)?;
        let prefix = record_prefix(&key_bytes);
        let records = self.records_in_reach(at, &prefix, value, close_time)?;
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
                    let v = at.ctx.decode_stored(at.store, &*self.value_serde, v)?;
                    agg = (self.f)(key, v, agg);
                }
            }
            let window = Window { start, end };
            match at.emit {
                Emit::OnUpdate => at.updates.push((window, Some(agg))),
                Emit::Final => at.put(window_key(&key_bytes, window), &agg)?,
            }
        }
        Ok(Placed::InWindow)
    }

    /// Emits final results of closed windows; records out of reach are
    /// dropped as records of their key arrive.
    fn close(&mut self, at: &mut Step<'_, K, A>) -> Result<(), StreamsError> {
        let close_time = at.stream_time.saturating_sub(at.grace_ms);
        if at.emit == Emit::Final {
            for (k, v) in at.ctx.store_scan_prefix(at.store, b"w")? {
                let (Some(end), Some(start)) = (
                    k.get(1..9).and_then(time_of),
                    k.get(9..17).and_then(time_of),
                ) else {
                    continue;
                };
                if end >= close_time {
                    break; // entries are in end order
                }
                let agg = at.decode(&v)?;
                at.delete(k.clone());
                at.closed
                    .push((k.slice(17..), Window { start, end }, Some(agg)));
            }
        }
        Ok(())
    }
}

impl<V: Data, I, F> Sliding<V, I, F> {
    /// Stores the record, then answers this key's records in reach in
    /// timestamp order, dropping those no open window can hold.
    fn records_in_reach<K: 'static, A: 'static>(
        &self,
        at: &mut Step<'_, K, A>,
        prefix: &[u8],
        value: V,
        close_time: i64,
    ) -> Result<Vec<(i64, Bytes)>, StreamsError> {
        let d = self.windows.diff_ms;
        let mut entry = prefix.to_vec();
        entry.extend_from_slice(&time_bytes(at.ctx.timestamp()));
        let position = at.ctx.position();
        entry.extend_from_slice(
            &(kappa_log::murmur2(position.topic.as_bytes()) as u32).to_be_bytes(),
        );
        entry.extend_from_slice(&position.offset.to_be_bytes());
        entry.extend_from_slice(&at.ctx.next_derived().to_be_bytes());
        let encoded = at.ctx.encode(&*self.value_serde, &value, "window record")?;
        at.ctx
            .store_put(at.store, Bytes::from(entry), Some(encoded));

        let mut records: Vec<(i64, Bytes)> = Vec::new();
        for (k, v) in at.ctx.store_scan_prefix(at.store, prefix)? {
            let Some(rt) = k.get(prefix.len()..prefix.len() + 8).and_then(time_of) else {
                continue;
            };
            // A record at rt matters to no window ending after rt + 1 + d.
            if rt.saturating_add(1).saturating_add(d) < close_time {
                at.delete(k);
                continue;
            }
            records.push((rt, v));
        }
        Ok(records)
    }
}
