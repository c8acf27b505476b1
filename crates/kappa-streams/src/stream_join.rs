//! Windowed stream–stream joins (inner, left, outer) with Kafka Streams'
//! semantics: records of the two sides with equal keys join when their
//! timestamps differ by at most the join window. A left (or outer) record
//! that never finds a partner is emitted with `None` once its window has
//! closed (`t + window + grace < stream time`), not immediately.
//!
//! Each side's records wait in a store of their own; unmatched records of
//! the outer side(s) also wait in a third store, indexed by time.

use std::collections::BTreeSet;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::context::TaskContext;
use crate::error::StreamsError;
use crate::kstream::KStream;
use crate::node::{Children, Data, Forward, Node, NodeFactory, TaskInit, add_child, new_children};
use crate::serde::Serde;
use crate::store::{StoreKind, StoreSpec};
use crate::topology::lock;

/// How far apart in time two records may be and still join.
///
/// ```
/// use std::time::Duration;
/// let w = kappa_streams::JoinWindows::of_time_difference_and_grace(Duration::from_secs(60), Duration::from_secs(10));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JoinWindows {
    diff_ms: i64,
    grace_ms: i64,
}

impl JoinWindows {
    /// Records at most `diff` apart join; records up to `grace` late are accepted.
    pub fn of_time_difference_and_grace(diff: Duration, grace: Duration) -> Self {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Self {
            diff_ms: ms(diff),
            grace_ms: ms(grace),
        }
    }

    /// As above with no grace.
    pub fn of_time_difference(diff: Duration) -> Self {
        Self::of_time_difference_and_grace(diff, Duration::ZERO)
    }
}

type Joiner<L, Rt, R> = Arc<dyn Fn(Option<L>, Option<Rt>) -> R + Send + Sync>;

/// Serdes of both sides, to buffer them.
pub struct JoinSerdes<K, L, Rt> {
    /// The key.
    pub key: Arc<dyn Serde<K>>,
    /// Left values.
    pub left: Arc<dyn Serde<L>>,
    /// Right values.
    pub right: Arc<dyn Serde<Rt>>,
}

impl<K, L, Rt> JoinSerdes<K, L, Rt> {
    /// The serdes of a join.
    pub fn new(key: impl Serde<K>, left: impl Serde<L>, right: impl Serde<Rt>) -> Self {
        Self {
            key: Arc::new(key),
            left: Arc::new(left),
            right: Arc::new(right),
        }
    }
}

impl<K, L, Rt> Clone for JoinSerdes<K, L, Rt> {
    fn clone(&self) -> Self {
        Self {
            key: self.key.clone(),
            left: self.left.clone(),
            right: self.right.clone(),
        }
    }
}

impl<K: Data, L: Data> KStream<K, L> {
    /// Inner windowed join: `joiner(left, right)` for every pair within the window.
    pub fn join_stream<Rt: Data, R: Data>(
        &self,
        other: &KStream<K, Rt>,
        name: &str,
        windows: JoinWindows,
        serdes: JoinSerdes<K, L, Rt>,
        joiner: impl Fn(L, Rt) -> R + Send + Sync + 'static,
    ) -> KStream<K, R> {
        let joiner: Joiner<L, Rt, Option<R>> = Arc::new(move |l, r| match (l, r) {
            (Some(l), Some(r)) => Some(joiner(l, r)),
            _ => None,
        });
        self.windowed_join(other, name, windows, serdes, (false, false), joiner)
    }

    /// Left windowed join: pairs as the inner join, and each left record that
    /// found no partner by the time its window closed, with `None`.
    pub fn left_join_stream<Rt: Data, R: Data>(
        &self,
        other: &KStream<K, Rt>,
        name: &str,
        windows: JoinWindows,
        serdes: JoinSerdes<K, L, Rt>,
        joiner: impl Fn(L, Option<Rt>) -> R + Send + Sync + 'static,
    ) -> KStream<K, R> {
        let joiner: Joiner<L, Rt, Option<R>> = Arc::new(move |l, r| l.map(|l| joiner(l, r)));
        self.windowed_join(other, name, windows, serdes, (true, false), joiner)
    }

    /// Outer windowed join: pairs, and unpartnered records of either side
    /// once their window closed.
    pub fn outer_join_stream<Rt: Data, R: Data>(
        &self,
        other: &KStream<K, Rt>,
        name: &str,
        windows: JoinWindows,
        serdes: JoinSerdes<K, L, Rt>,
        joiner: impl Fn(Option<L>, Option<Rt>) -> R + Send + Sync + 'static,
    ) -> KStream<K, R> {
        let joiner: Joiner<L, Rt, Option<R>> = Arc::new(move |l, r| Some(joiner(l, r)));
        self.windowed_join(other, name, windows, serdes, (true, true), joiner)
    }

    fn windowed_join<Rt: Data, R: Data>(
        &self,
        other: &KStream<K, Rt>,
        name: &str,
        windows: JoinWindows,
        serdes: JoinSerdes<K, L, Rt>,
        outer: (bool, bool),
        joiner: Joiner<L, Rt, Option<R>>,
    ) -> KStream<K, R> {
        self.require_partitioned_by_key("a stream join");
        other.require_partitioned_by_key("a stream join");
        let children = new_children();
        let op = Arc::new(JoinOp {
            stores: [
                format!("{name}-left"),
                format!("{name}-right"),
                format!("{name}-unmatched"),
            ],
            serdes,
            windows,
            outer,
            joiner,
            children: children.clone(),
            _types: PhantomData,
        });
        add_child(
            self.children(),
            Arc::new(Side::<_, _, _, _, true>(op.clone())) as Arc<dyn NodeFactory<K, L>>,
        );
        add_child(
            other.children(),
            Arc::new(Side::<_, _, _, _, false>(op.clone())) as Arc<dyn NodeFactory<K, Rt>>,
        );
        let node = {
            let mut g = lock(self.graph());
            if windows.diff_ms < 0 || windows.grace_ms < 0 {
                g.errors
                    .push("join windows need a time difference and grace >= 0".to_owned());
            }
            for store in &op.stores {
                g.stores.push(StoreSpec {
                    name: store.clone(),
                    kind: StoreKind::Persistent,
                });
            }
            let node = g.add_node(
                &format!("stream-join[{name}]"),
                &[self.node_name(), other.node_name()],
            );
            let stores: Vec<&str> = op.stores.iter().map(String::as_str).collect();
            g.node_uses(&node, None, &stores);
            node
        };
        KStream::new(self.graph().clone(), children, node, false)
    }
}

struct JoinOp<K, L, Rt, R> {
    stores: [String; 3],
    serdes: JoinSerdes<K, L, Rt>,
    windows: JoinWindows,
    /// Whether unpartnered (left, right) records are emitted.
    outer: (bool, bool),
    joiner: Joiner<L, Rt, Option<R>>,
    children: Children<K, R>,
    _types: PhantomData<fn(K)>,
}

/// One side of a join; `LEFT` tells which.
struct Side<K, L, Rt, R, const LEFT: bool>(Arc<JoinOp<K, L, Rt, R>>);

struct JoinRun<K, L, Rt, R> {
    op: Arc<JoinOp<K, L, Rt, R>>,
    /// Store indexes: left buffer, right buffer, unmatched. The unmatched
    /// entries' time index lives in the task context, shared by both sides.
    stores: [usize; 3],
    forward: Forward<K, R>,
}

impl<K: Data, L: Data, Rt: Data, R: Data> JoinOp<K, L, Rt, R> {
    fn run(self: &Arc<Self>, init: &TaskInit<'_>) -> Result<JoinRun<K, L, Rt, R>, StreamsError> {
        Ok(JoinRun {
            op: self.clone(),
            stores: [
                init.store(&self.stores[0])?,
                init.store(&self.stores[1])?,
                init.store(&self.stores[2])?,
            ],
            forward: Forward::build(&self.children, init)?,
        })
    }
}

impl<K: Data, L: Data, Rt: Data, R: Data> NodeFactory<K, L> for Side<K, L, Rt, R, true> {
    fn build(&self, init: &TaskInit<'_>) -> Result<Box<dyn Node<K, L>>, StreamsError> {
        Ok(Box::new(LeftNode(self.0.run(init)?)))
    }
}

impl<K: Data, L: Data, Rt: Data, R: Data> NodeFactory<K, Rt> for Side<K, L, Rt, R, false> {
    fn build(&self, init: &TaskInit<'_>) -> Result<Box<dyn Node<K, Rt>>, StreamsError> {
        Ok(Box::new(RightNode(self.0.run(init)?)))
    }
}

struct LeftNode<K, L, Rt, R>(JoinRun<K, L, Rt, R>);
struct RightNode<K, L, Rt, R>(JoinRun<K, L, Rt, R>);

impl<K: Data, L: Data, Rt: Data, R: Data> Node<K, L> for LeftNode<K, L, Rt, R> {
    fn process(&mut self, ctx: &mut TaskContext, key: K, value: L) -> Result<(), StreamsError> {
        let bytes = ctx.encode(&*self.0.op.serdes.left, &value, "join value")?;
        let store = self.0.stores[2];
        ctx.with_node_stream_time(store, |ctx| self.0.on_record(ctx, true, key, bytes))
    }

    fn tick(&mut self, ctx: &mut TaskContext, now_ms: i64) -> Result<(), StreamsError> {
        self.0.forward.tick(ctx, now_ms)
    }
}

impl<K: Data, L: Data, Rt: Data, R: Data> Node<K, Rt> for RightNode<K, L, Rt, R> {
    fn process(&mut self, ctx: &mut TaskContext, key: K, value: Rt) -> Result<(), StreamsError> {
        let bytes = ctx.encode(&*self.0.op.serdes.right, &value, "join value")?;
        let store = self.0.stores[2];
        ctx.with_node_stream_time(store, |ctx| self.0.on_record(ctx, false, key, bytes))
    }

    fn tick(&mut self, ctx: &mut TaskContext, now_ms: i64) -> Result<(), StreamsError> {
        self.0.forward.tick(ctx, now_ms)
    }
}

fn time_bytes(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

fn time_of(b: &[u8]) -> Option<i64> {
    Some((u64::from_be_bytes(b.try_into().ok()?) ^ (1 << 63)) as i64)
}

/// Buffer entry: `len u32 | key | time | topic hash u32 | offset u64 | seq u32`
/// (unique per record reaching the join, even several from one input).
fn buffer_key(key: &[u8], t: i64, ctx: &mut TaskContext) -> Bytes {
    let position = ctx.position();
    let seq = ctx.next_derived();
    let mut k = Vec::with_capacity(4 + key.len() + 24);
    k.extend_from_slice(&(key.len() as u32).to_be_bytes());
    k.extend_from_slice(key);
    k.extend_from_slice(&time_bytes(t));
    k.extend_from_slice(&(kappa_log::murmur2(position.topic.as_bytes()) as u32).to_be_bytes());
    k.extend_from_slice(&position.offset.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    Bytes::from(k)
}

/// The time in a buffer key.
fn buffer_time(k: &[u8]) -> Option<i64> {
    let len = u32::from_be_bytes(k.get(..4)?.try_into().ok()?) as usize;
    time_of(k.get(4 + len..12 + len)?)
}

fn key_prefix(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + key.len());
    k.extend_from_slice(&(key.len() as u32).to_be_bytes());
    k.extend_from_slice(key);
    k
}

/// Unmatched entry: `side (0 left, 1 right) | time | buffer key`.
fn unmatched_key(left: bool, t: i64, buffer_key: &[u8]) -> Bytes {
    let mut k = Vec::with_capacity(9 + buffer_key.len());
    k.push(u8::from(!left));
    k.extend_from_slice(&time_bytes(t));
    k.extend_from_slice(buffer_key);
    Bytes::from(k)
}

impl<K: Data, L: Data, Rt: Data, R: Data> JoinRun<K, L, Rt, R> {
    fn store_err(&self, ctx: &TaskContext, detail: String) -> StreamsError {
        StreamsError::Store {
            store: ctx.store_name(self.stores[2]).to_owned(),
            detail,
        }
    }

    fn on_record(
        &mut self,
        ctx: &mut TaskContext,
        left: bool,
        key: K,
        value: Bytes,
    ) -> Result<(), StreamsError> {
        let w = self.op.windows;
        if !ctx.time_indexes.contains_key(&self.stores[2]) {
            let mut index = BTreeSet::new();
            for (k, _) in ctx.store_scan(self.stores[2])? {
                if let Some(t) = k.get(1..9).and_then(time_of) {
                    index.insert((t, k));
                }
            }
            ctx.time_indexes.insert(self.stores[2], index);
        }
        for buffer in [self.stores[0], self.stores[1]] {
            if !ctx.time_indexes.contains_key(&buffer) {
                let mut index = BTreeSet::new();
                for (k, _) in ctx.store_scan(buffer)? {
                    if let Some(t) = buffer_time(&k) {
                        index.insert((t, k));
                    }
                }
                ctx.time_indexes.insert(buffer, index);
            }
        }
        let t = ctx.timestamp();
        // A record whose whole window has closed can no longer join (late).
        if t.saturating_add(w.diff_ms).saturating_add(w.grace_ms) < ctx.stream_time() {
            crate::windowing::record_late(ctx, None, w.grace_ms);
            return self.expire(ctx);
        }
        let key_bytes = ctx.encode(&*self.op.serdes.key, &key, "join key")?;
        let (this_store, other_store) = if left {
            (self.stores[0], self.stores[1])
        } else {
            (self.stores[1], self.stores[0])
        };
        let own = buffer_key(&key_bytes, t, ctx);
        ctx.store_put(this_store, own.clone(), Some(value.clone()));
        if let Some(index) = ctx.time_indexes.get_mut(&this_store) {
            index.insert((t, own.clone()));
        }
        let prefix = key_prefix(&key_bytes);
        let mut matched = false;
        for (k, v) in ctx.store_scan_prefix(other_store, &prefix)? {
            let Some(other_t) = k.get(prefix.len()..prefix.len() + 8).and_then(time_of) else {
                continue;
            };
            if other_t.abs_diff(t) > w.diff_ms.unsigned_abs() {
                continue;
            }
            matched = true;
            let (l, r) = self.decode_pair(ctx, left, &value, &v)?;
            if let Some(out) = (self.op.joiner)(Some(l), Some(r)) {
                self.forward.send(ctx, key.clone(), out)?;
            }
            // The partner found a match: it is no longer pending as unmatched.
            let theirs = unmatched_key(!left, other_t, &k);
            if ctx
                .time_indexes
                .get_mut(&self.stores[2])
                .is_some_and(|u| u.remove(&(other_t, theirs.clone())))
            {
                ctx.store_put(self.stores[2], theirs, None);
            }
        }
        let outer_here = if left {
            self.op.outer.0
        } else {
            self.op.outer.1
        };
        if !matched && outer_here {
            let mine = unmatched_key(left, t, &own);
            ctx.store_put(self.stores[2], mine.clone(), Some(value));
            if let Some(u) = ctx.time_indexes.get_mut(&self.stores[2]) {
                u.insert((t, mine));
            }
        }
        self.expire(ctx)
    }

    fn decode_pair(
        &self,
        ctx: &TaskContext,
        left: bool,
        mine: &[u8],
        theirs: &[u8],
    ) -> Result<(L, Rt), StreamsError> {
        let (l, r) = if left { (mine, theirs) } else { (theirs, mine) };
        let l = self
            .op
            .serdes
            .left
            .deserialize(l)
            .map_err(|e| self.store_err(ctx, e.0))?;
        let r = self
            .op
            .serdes
            .right
            .deserialize(r)
            .map_err(|e| self.store_err(ctx, e.0))?;
        Ok((l, r))
    }

    /// Emits unmatched records whose window closed, and drops buffered
    /// records no future record can join.
    fn expire(&mut self, ctx: &mut TaskContext) -> Result<(), StreamsError> {
        let w = self.op.windows;
        let closed_before = ctx
            .stream_time()
            .saturating_sub(w.diff_ms.saturating_add(w.grace_ms));
        // Buffered records no future record can join.
        for buffer in [self.stores[0], self.stores[1]] {
            while let Some((t, entry)) = ctx
                .time_indexes
                .get(&buffer)
                .and_then(|u| u.first().cloned())
            {
                if t >= closed_before {
                    break;
                }
                if let Some(u) = ctx.time_indexes.get_mut(&buffer) {
                    u.pop_first();
                }
                ctx.store_put(buffer, entry, None);
            }
        }
        let index = self.stores[2];
        while let Some((t, entry)) = ctx
            .time_indexes
            .get(&index)
            .and_then(|u| u.first().cloned())
        {
            if t >= closed_before {
                break;
            }
            if let Some(u) = ctx.time_indexes.get_mut(&index) {
                u.pop_first();
            }
            let Some(value) = ctx.store_get(self.stores[2], &entry)? else {
                continue;
            };
            ctx.store_put(self.stores[2], entry.clone(), None);
            let buffer = entry.slice(9..);
            let len = u32::from_be_bytes(
                buffer
                    .get(..4)
                    .and_then(|b| b.try_into().ok())
                    .unwrap_or([0; 4]),
            ) as usize;
            let key = self
                .op
                .serdes
                .key
                .deserialize(buffer.get(4..4 + len).unwrap_or_default())
                .map_err(|e| self.store_err(ctx, e.0))?;
            let out = if entry[0] == 0 {
                let l = self
                    .op
                    .serdes
                    .left
                    .deserialize(&value)
                    .map_err(|e| self.store_err(ctx, e.0))?;
                (self.op.joiner)(Some(l), None)
            } else {
                let r = self
                    .op
                    .serdes
                    .right
                    .deserialize(&value)
                    .map_err(|e| self.store_err(ctx, e.0))?;
                (self.op.joiner)(None, Some(r))
            };
            if let Some(out) = out {
                let saved = ctx.current.timestamp;
                ctx.current.timestamp = t;
                let sent = self.forward.send(ctx, key, out);
                ctx.current.timestamp = saved;
                sent?;
            }
        }
        Ok(())
    }
}
