//! Session windows: per key, records closer than the inactivity gap form
//! one session `[first, last]`; a record that bridges sessions merges them.
//! As in Kafka Streams, a session is closed (and later records for it are
//! late) once `end < stream time - grace - gap`.

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
use crate::topology::Materialized;
use crate::windows::{Emit, Window, Windowed, WindowedKStream, record_late};

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

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
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

type Merger<A> = Arc<dyn Fn(A, A) -> A + Send + Sync>;

impl<K: Data, V: Data> SessionWindowedKStream<K, V> {
    /// Counts each session's records.
    pub fn count(&self, store: Materialized) -> KTable<Windowed<K>, i64> {
        self.fold(
            "session-count",
            store,
            I64,
            Arc::new(|a, b| a + b),
            |_, _, n| n.unwrap_or(0) + 1,
        )
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
        self.fold(
            "session-aggregate",
            store,
            agg_serde,
            Arc::new(merger),
            move |k, v, acc| f(k, v, acc.unwrap_or_else(&init)),
        )
    }

    fn fold<A: Data>(
        &self,
        kind: &str,
        store: Materialized,
        agg_serde: impl Serde<A>,
        merger: Merger<A>,
        f: impl Fn(&K, V, Option<A>) -> A + Send + Sync + 'static,
    ) -> KTable<Windowed<K>, A> {
        let children = new_children();
        add_child(
            &self.children,
            Arc::new(SessionOp {
                store: store.0.name.clone(),
                key_serde: self.key_serde.clone(),
                agg_serde: Arc::new(agg_serde),
                f: Arc::new(f),
                merger,
                windows: self.windows,
                emit: self.emit,
                late_topic: self.late_topic.clone(),
                children: children.clone(),
                _types: PhantomData,
            }),
        );
        let invalid = (self.windows.gap_ms <= 0 || self.windows.grace_ms < 0)
            .then(|| "session windows need a positive inactivity gap and a grace >= 0".to_owned());
        let name = crate::windows::register_windowed(
            &self.graph,
            kind,
            &store,
            &self.name,
            self.late_topic.as_deref(),
            invalid,
        );
        KTable::new(self.graph.clone(), children, name)
    }
}

struct SessionOp<K, V, A, F> {
    store: String,
    key_serde: Arc<dyn Serde<K>>,
    agg_serde: Arc<dyn Serde<A>>,
    f: Arc<F>,
    merger: Merger<A>,
    windows: SessionWindows,
    emit: Emit,
    late_topic: Option<String>,
    children: Children<Windowed<K>, Option<A>>,
    _types: PhantomData<fn(V)>,
}

struct SessionRun<K, A, F> {
    store: usize,
    key_serde: Arc<dyn Serde<K>>,
    agg_serde: Arc<dyn Serde<A>>,
    f: Arc<F>,
    merger: Merger<A>,
    windows: SessionWindows,
    emit: Emit,
    late_topic: Option<Arc<str>>,
    /// Open sessions by (end, key bytes, start), loaded on the first record.
    open: Option<BTreeSet<(i64, Bytes, i64)>>,
    forward: Forward<Windowed<K>, Option<A>>,
}

impl<K, V, A, F> NodeFactory<K, V> for SessionOp<K, V, A, F>
where
    K: Data,
    V: Data,
    A: Data,
    F: Fn(&K, V, Option<A>) -> A + Send + Sync + 'static,
{
    fn build(&self, init: &TaskInit<'_>) -> Result<Box<dyn Node<K, V>>, StreamsError> {
        Ok(Box::new(SessionRun {
            store: init.store(&self.store)?,
            key_serde: self.key_serde.clone(),
            agg_serde: self.agg_serde.clone(),
            f: self.f.clone(),
            merger: self.merger.clone(),
            windows: self.windows,
            emit: self.emit,
            late_topic: self.late_topic.as_deref().map(Arc::from),
            open: None,
            forward: Forward::build(&self.children, init)?,
        }))
    }
}

/// `len u32 BE | key | end | start` (times sign-flipped big-endian, so a
/// key's sessions sort by end): one key's sessions share a prefix.
fn key_prefix(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + key.len() + 16);
    k.extend_from_slice(&(key.len() as u32).to_be_bytes());
    k.extend_from_slice(key);
    k
}

fn time_bytes(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
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
    let time = |at: usize| -> Option<i64> {
        Some((u64::from_be_bytes(k.get(at..at + 8)?.try_into().ok()?) ^ (1 << 63)) as i64)
    };
    let end = time(4 + len)?;
    let start = time(12 + len)?;
    Some((key, start, end))
}

impl<K: Data, A: Data, F> SessionRun<K, A, F> {
    fn decode(&self, ctx: &TaskContext, bytes: &[u8]) -> Result<A, StreamsError> {
        ctx.decode_stored(self.store, &*self.agg_serde, bytes)
    }

    fn windowed(
        &self,
        ctx: &TaskContext,
        key_bytes: &[u8],
        start: i64,
        end: i64,
    ) -> Result<Windowed<K>, StreamsError> {
        let key = ctx.decode_stored(self.store, &*self.key_serde, key_bytes)?;
        Ok(Windowed {
            key,
            window: Window { start, end },
        })
    }

    /// Emits (for final results) and drops sessions that have closed.
    fn close(&mut self, ctx: &mut TaskContext) -> Result<(), StreamsError> {
        let close_time = ctx
            .stream_time()
            .saturating_sub(self.windows.grace_ms.saturating_add(self.windows.gap_ms));
        while let Some((end, key_bytes, start)) =
            self.open.as_ref().and_then(|o| o.first().cloned())
        {
            if end >= close_time {
                break;
            }
            if let Some(open) = &mut self.open {
                open.pop_first();
            }
            let entry = entry_key(&key_bytes, start, end);
            if self.emit == Emit::Final
                && let Some(bytes) = ctx.store_get(self.store, &entry)?
            {
                let agg = self.decode(ctx, &bytes)?;
                let windowed = self.windowed(ctx, &key_bytes, start, end)?;
                self.forward.send(ctx, windowed, Some(agg))?;
            }
            ctx.store_put(self.store, entry, None);
        }
        Ok(())
    }
}

impl<K, V, A, F> Node<K, V> for SessionRun<K, A, F>
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

impl<K: Data, A: Data, F> SessionRun<K, A, F> {
    fn add<V: Data>(&mut self, ctx: &mut TaskContext, key: K, value: V) -> Result<(), StreamsError>
    where
        F: Fn(&K, V, Option<A>) -> A + Send + Sync + 'static,
    {
        if self.open.is_none() {
            let mut open = BTreeSet::new();
            for (k, _) in ctx.store_scan(self.store)? {
                if let Some((key, start, end)) = split_entry(&k) {
                    open.insert((end, key, start));
                }
            }
            self.open = Some(open);
        }
        let t = ctx.timestamp();
        let gap = self.windows.gap_ms;
        let key_bytes = ctx.encode(&*self.key_serde, &key, "store key")?;
        // Sessions this record touches: within `gap` of it on either side.
        let mut merged_start = t;
        let mut merged_end = t;
        let mut merged: Option<A> = None;
        let mut absorbed = Vec::new();
        for (k, v) in ctx.store_scan_prefix(self.store, &key_prefix(&key_bytes))? {
            let Some((_, start, end)) = split_entry(&k) else {
                continue;
            };
            if end >= t.saturating_sub(gap) && start <= t.saturating_add(gap) {
                merged_start = merged_start.min(start);
                merged_end = merged_end.max(end);
                let agg = self.decode(ctx, &v)?;
                merged = Some(match merged {
                    Some(m) => (self.merger)(m, agg),
                    None => agg,
                });
                absorbed.push((start, end));
            }
        }
        let close_time = ctx
            .stream_time()
            .saturating_sub(self.windows.grace_ms.saturating_add(gap));
        if merged_end < close_time {
            record_late(ctx, self.late_topic.as_ref(), self.windows.grace_ms);
            return self.close(ctx);
        }
        for (start, end) in absorbed {
            ctx.store_put(self.store, entry_key(&key_bytes, start, end), None);
            if let Some(open) = &mut self.open {
                open.remove(&(end, key_bytes.clone(), start));
            }
            if self.emit == Emit::OnUpdate && (start, end) != (merged_start, merged_end) {
                let gone = self.windowed(ctx, &key_bytes, start, end)?;
                self.forward.send(ctx, gone, None)?;
            }
        }
        let next = (self.f)(&key, value, merged);
        let encoded = ctx.encode(&*self.agg_serde, &next, "aggregate")?;
        ctx.store_put(
            self.store,
            entry_key(&key_bytes, merged_start, merged_end),
            Some(encoded),
        );
        if let Some(open) = &mut self.open {
            open.insert((merged_end, key_bytes.clone(), merged_start));
        }
        if self.emit == Emit::OnUpdate {
            let window = Window {
                start: merged_start,
                end: merged_end,
            };
            self.forward
                .send(ctx, Windowed { key, window }, Some(next))?;
        }
        self.close(ctx)
    }
}

/// Serde of session-windowed keys as Kafka's `SessionWindowedSerde`: the
/// key's bytes, then the end and the start as 8 big-endian bytes each.
#[derive(Clone)]
pub struct SessionWindowedSerde<S>(pub S);

impl<K, S: Serde<K>> Serde<Windowed<K>> for SessionWindowedSerde<S> {
    fn serialize(&self, value: &Windowed<K>, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        self.0.serialize(&value.key, out)?;
        out.extend_from_slice(&value.window.end.to_be_bytes());
        out.extend_from_slice(&value.window.start.to_be_bytes());
        Ok(())
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<Windowed<K>, SerdeError> {
        if bytes.len() < 16 {
            return Err(SerdeError(format!(
                "a session key needs at least 16 bytes, got {}",
                bytes.len()
            )));
        }
        let (key, times) = bytes.split_at(bytes.len() - 16);
        let time = |b: &[u8]| {
            b.try_into()
                .map(i64::from_be_bytes)
                .map_err(|_| SerdeError("bad session time".to_owned()))
        };
        Ok(Windowed {
            key: self.0.deserialize(key)?,
            window: Window {
                start: time(&times[8..])?,
                end: time(&times[..8])?,
            },
        })
    }
}
