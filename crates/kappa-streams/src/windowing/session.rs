//! Session windows: per key, records closer than the inactivity gap form
//! one session `[first, last]`; a record that bridges sessions merges them.
//! As in Kafka Streams, a session is closed (and later records for it are
//! late) once `end < stream time - grace - gap`.

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

/// Sessions separated by an inactivity gap.
///
/// ```
/// use std::time::Duration;
/// let sessions = kappa_streams::SessionWindows::with_inactivity_gap_and_grace(
///     Duration::from_secs(300),
///     Duration::from_secs(60),
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionWindows {
    gap_ms: i64,
    grace_ms: i64,
}

impl SessionWindows {
    /// Sessions ended by `gap` of inactivity, accepting records up to `grace` late.
    pub fn with_inactivity_gap_and_grace(gap: Duration, grace: Duration) -> Self {
        Self {
            gap_ms: ms(gap),
            grace_ms: ms(grace),
        }
    }

    /// Sessions with no grace.
    pub fn with_inactivity_gap(gap: Duration) -> Self {
        Self::with_inactivity_gap_and_grace(gap, Duration::ZERO)
    }
}

/// A grouped stream cut into sessions.
pub type SessionWindowedKStream<K, V> = WindowedKStream<K, V, SessionWindows>;

impl<K: Data, V: Data> SessionWindowedKStream<K, V> {
    /// Counts each session's records.
    pub fn count(&self, store: Materialized) -> KTable<Windowed<K>, i64> {
        let sessions = Sessions::new(self.windows, Arc::new(counting), Arc::new(sum));
        self.aggregate_sessions("session-count", store, I64, sessions)
    }

    /// Aggregates each session; `merger` combines sessions a record bridges.
    pub fn aggregate<A: Data>(
        &self,
        store: Materialized,
        agg_serde: impl Serde<A>,
        init: impl Fn() -> A + Send + Sync + 'static,
        f: impl Fn(&K, V, A) -> A + Send + Sync + 'static,
        merger: impl Fn(A, A) -> A + Send + Sync + 'static,
    ) -> KTable<Windowed<K>, A> {
        let (f, merger) = (Arc::new(from_init(init, f)), Arc::new(merger));
        let sessions = Sessions::new(self.windows, f, merger);
        self.aggregate_sessions("session-aggregate", store, agg_serde, sessions)
    }

    fn aggregate_sessions<A: Data, F: Fold<K, V, A>>(
        &self,
        kind: &str,
        store: Materialized,
        agg_serde: impl Serde<A>,
        sessions: Sessions<A, F>,
    ) -> KTable<Windowed<K>, A> {
        let w = self.windows;
        let invalid = (w.gap_ms <= 0 || w.grace_ms < 0)
            .then(|| "session windows need a positive inactivity gap and a grace >= 0".to_owned());
        let agg_serde = Arc::new(agg_serde);
        self.aggregate_with(kind, store, agg_serde, sessions, w.grace_ms, invalid)
    }
}

/// One aggregate per (session, key), and the open sessions in memory.
struct Sessions<A, F> {
    windows: SessionWindows,
    f: Arc<F>,
    merger: Combine<A>,
    /// Open sessions by (end, key bytes, start).
    open: BTreeSet<(i64, Bytes, i64)>,
}

impl<A, F> Sessions<A, F> {
    fn new(windows: SessionWindows, f: Arc<F>, merger: Combine<A>) -> Self {
        let open = BTreeSet::new();
        Self {
            windows,
            f,
            merger,
            open,
        }
    }

    /// Sessions ending before this have closed.
    fn close_time<K>(&self, at: &Step<'_, K, A>) -> i64 {
        let after = at.grace_ms.saturating_add(self.windows.gap_ms);
        at.stream_time.saturating_sub(after)
    }
}

/// `len u32 BE | key | end | start` (times as [`time_bytes`], so a key's
/// sessions sort by end): one key's sessions share a prefix.
fn key_prefix(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + key.len() + 16);
    k.extend_from_slice(&(key.len() as u32).to_be_bytes());
    k.extend_from_slice(key);
    k
}

fn entry_key(key: &[u8], start: i64, end: i64) -> Bytes {
    let mut k = key_prefix(key);
    k.extend_from_slice(&time_bytes(end));
    k.extend_from_slice(&time_bytes(start));
    Bytes::from(k)
}

fn split_entry(k: &Bytes) -> Option<(Bytes, i64, i64)> {
    let len = u32::from_be_bytes(k.get(..4)?.try_into().ok()?) as usize;
    if k.len() != len.checked_add(20)? {
        return None;
    }
    let key = k.slice(4..4 + len);
    let end = time_of(k.get(4 + len..12 + len)?)?;
    let start = time_of(k.get(12 + len..20 + len)?)?;
    Some((key, start, end))
}

impl<K: Data, V: Data, A: Data, F: Fold<K, V, A>> WindowAssigner<K, V, A> for Sessions<A, F> {
    fn fresh(&self) -> Self {
        Self::new(self.windows, self.f.clone(), self.merger.clone())
    }

    fn load(&mut self, ctx: &mut TaskContext, store: usize) -> Result<(), StreamsError> {
        let entries = ctx.store_scan(store)?;
        let sessions = entries.iter().filter_map(|(k, _)| split_entry(k));
        self.open
            .extend(sessions.map(|(key, start, end)| (end, key, start)));
        Ok(())
    }

    fn add(&mut self, at: &mut Step<'_, K, A>, key: &K, value: V) -> Result<Placed, StreamsError> {
        let t = at.ctx.timestamp();
        let gap = self.windows.gap_ms;
        let key_bytes = at.key_bytes(key)?;
        // Sessions this record touches: within `gap` of it on either side.
        let mut merged_start = t;
        let mut merged_end = t;
        let mut merged: Option<A> = None;
        let mut absorbed = Vec::new();
        for (k, v) in at
            .ctx
            .store_scan_prefix(at.store, &key_prefix(&key_bytes))?
        {
            let Some((_, start, end)) = split_entry(&k) else {
                continue;
            };
            if end >= t.saturating_sub(gap) && start <= t.saturating_add(gap) {
                merged_start = merged_start.min(start);
                merged_end = merged_end.max(end);
                let agg = at.decode(&v)?;
                merged = Some(match merged {
                    Some(m) => (self.merger)(m, agg),
                    None => agg,
                });
                absorbed.push((start, end));
            }
        }
        if merged_end < self.close_time(at) {
            return Ok(Placed::Late);
        }
        for (start, end) in absorbed {
            at.delete(entry_key(&key_bytes, start, end));
            self.open.remove(&(end, key_bytes.clone(), start));
            if at.emit == Emit::OnUpdate && (start, end) != (merged_start, merged_end) {
                at.updates.push((Window { start, end }, None));
            }
        }
        let next = (self.f)(key, value, merged);
        let (start, end) = (merged_start, merged_end);
        at.put(entry_key(&key_bytes, start, end), &next)?;
        self.open.insert((end, key_bytes, start));
        if at.emit == Emit::OnUpdate {
            at.updates.push((Window { start, end }, Some(next)));
        }
        Ok(Placed::InWindow)
    }

    /// Emits (for final results) and drops sessions that have closed.
    fn close(&mut self, at: &mut Step<'_, K, A>) -> Result<(), StreamsError> {
        let close_time = self.close_time(at);
        at.close_ended(&mut self.open, |(end, key, start)| {
            let (start, end) = (*start, *end);
            let ended = end < close_time;
            ended.then(|| {
                (
                    entry_key(key, start, end),
                    key.clone(),
                    Window { start, end },
                )
            })
        })
    }
}

/// Serde of session-windowed keys as Kafka's `SessionWindowedSerde`: the
/// key's bytes, then the end and the start as 8 big-endian bytes each.
#[derive(Clone)]
pub struct SessionWindowedSerde<S>(pub S);

impl<K, S: Serde<K>> Serde<Windowed<K>> for SessionWindowedSerde<S> {
    fn serialize(&self, value: &Windowed<K>, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        let Window { start, end } = value.window;
        encode_windowed(&self.0, &value.key, [end, start], out)
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<Windowed<K>, SerdeError> {
        let (key, [end, start]) = decode_windowed(&self.0, bytes, "a session key")?;
        Ok(Windowed {
            key,
            window: Window { start, end },
        })
    }
}
