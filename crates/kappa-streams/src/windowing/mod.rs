//! Windowed aggregations: one aggregation node, four kinds of window.
//!
//! The node ([`WindowedAggregateOp`]) owns what every windowed aggregation
//! shares: the node's own stream time (kept in its store), grace, when
//! results are emitted, what happens to late records, and forwarding. A
//! [`WindowAssigner`] owns what differs between kinds: which windows a
//! record belongs to, how their aggregates are kept in the store, and when
//! a window has closed.
//!
//! - [`time`]: tumbling and hopping windows, one aggregate per window;
//! - [`panes`]: hopping windows with final results, one partial aggregate
//!   per pane;
//! - [`session`]: sessions, merged when a record bridges them;
//! - [`sliding`]: sliding windows, recomputed from the records in reach.
//!
//! A new kind of window is a new assigner and a `windowed_by_*` method on
//! [`crate::KGroupedStream`]; the node needs no change.

pub(crate) mod panes;
pub(crate) mod session;
pub(crate) mod sliding;
pub(crate) mod time;

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::context::TaskContext;
use crate::error::StreamsError;
use crate::ktable::KTable;
use crate::node::{Children, Data, Forward, Node, NodeFactory, TaskInit, add_child, new_children};
use crate::serde::{Serde, SerdeError};
use crate::topology::{Materialized, SharedGraph, lock};

pub use session::{SessionWindowedKStream, SessionWindowedSerde, SessionWindows};
pub use sliding::{SlidingWindowedKStream, SlidingWindows};
pub use time::{TimeWindowedKStream, TimeWindows, WindowedSerde};

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
/// [`SessionWindows`] or [`SlidingWindows`].
pub struct WindowedKStream<K, V, W> {
    pub(crate) graph: SharedGraph,
    pub(crate) children: Children<K, V>,
    pub(crate) name: String,
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) windows: W,
    pub(crate) emit: Emit,
    pub(crate) late_topic: Option<String>,
}

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

    /// Adds the aggregation node with `assigner` for this stream's windows:
    /// its store, its late-records topic, and a build error when the
    /// windows are `invalid`.
    pub(crate) fn aggregate_with<A: Data, S: WindowAssigner<K, V, A>>(
        &self,
        kind: &str,
        store: Materialized,
        agg_serde: Arc<dyn Serde<A>>,
        assigner: S,
        grace_ms: i64,
        invalid: Option<String>,
    ) -> KTable<Windowed<K>, A> {
        let children = new_children();
        add_child(
            &self.children,
            Arc::new(WindowedAggregateOp {
                store: store.0.name.clone(),
                settings: Settings {
                    key_serde: self.key_serde.clone(),
                    agg_serde,
                    grace_ms,
                    emit: self.emit,
                    late_topic: self.late_topic.as_deref().map(Arc::from),
                },
                assigner,
                children: children.clone(),
                _types: PhantomData,
            }),
        );
        let name = register_windowed(
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

/// Merges two partial aggregates.
pub(crate) type Combine<A> = Arc<dyn Fn(A, A) -> A + Send + Sync>;

/// A windowed aggregation's step function: the aggregate so far (`None`
/// for a window's first record) and a record give the next aggregate.
pub(crate) trait Fold<K, V, A>: Fn(&K, V, Option<A>) -> A + Send + Sync + 'static {}

impl<K, V, A, F: Fn(&K, V, Option<A>) -> A + Send + Sync + 'static> Fold<K, V, A> for F {}

/// Counting as a fold: one more per record.
pub(crate) fn counting<K, V>(_: &K, _: V, n: Option<i64>) -> i64 {
    n.unwrap_or(0) + 1
}

/// Merging two partial counts.
pub(crate) fn sum(a: i64, b: i64) -> i64 {
    a + b
}

/// `f` folding from `init` for a window's first record.
pub(crate) fn from_init<K, V, A>(
    init: impl Fn() -> A + Send + Sync + 'static,
    f: impl Fn(&K, V, A) -> A + Send + Sync + 'static,
) -> impl Fold<K, V, A> {
    move |k, v, acc| f(k, v, acc.unwrap_or_else(&init))
}

/// One record's visit to an assigner: the task, the node's store, when
/// results are emitted, the node's stream time and grace, and where the
/// assigner reports what changed.
pub(crate) struct Step<'a, K, A> {
    pub(crate) ctx: &'a mut TaskContext,
    pub(crate) store: usize,
    pub(crate) emit: Emit,
    pub(crate) stream_time: i64,
    pub(crate) grace_ms: i64,
    key_serde: &'a dyn Serde<K>,
    agg_serde: &'a dyn Serde<A>,
    /// With [`Emit::OnUpdate`]: each window a record changed, with its new
    /// aggregate (`None` for a window merged away).
    pub(crate) updates: &'a mut Vec<(Window, Option<A>)>,
    /// With [`Emit::Final`]: each closed window, with its key's bytes and
    /// final aggregate.
    pub(crate) closed: &'a mut Vec<(Bytes, Window, Option<A>)>,
}

impl<K: 'static, A: 'static> Step<'_, K, A> {
    /// The key as the store holds it (each kind encodes it when it needs
    /// it, not before).
    pub(crate) fn key_bytes(&mut self, key: &K) -> Result<Bytes, StreamsError> {
        self.ctx.encode(self.key_serde, key, "store key")
    }

    /// The aggregate stored under `entry`.
    pub(crate) fn get(&mut self, entry: &[u8]) -> Result<Option<A>, StreamsError> {
        self.ctx
            .store_get_decoded(self.store, entry, self.agg_serde)
    }

    /// An aggregate as stored.
    pub(crate) fn decode(&self, bytes: &[u8]) -> Result<A, StreamsError> {
        self.ctx.decode_stored(self.store, self.agg_serde, bytes)
    }

    /// Stores `agg` under `entry`.
    pub(crate) fn put(&mut self, entry: Bytes, agg: &A) -> Result<(), StreamsError> {
        let encoded = self.ctx.encode(self.agg_serde, agg, "aggregate")?;
        self.ctx.store_put(self.store, entry, Some(encoded));
        Ok(())
    }

    /// Drops what is stored under `entry`.
    pub(crate) fn delete(&mut self, entry: Bytes) {
        self.ctx.store_put(self.store, entry, None);
    }

    /// Closes the open windows that `ended` says have ended, first to last:
    /// `open` is in closing order, so the first still open stops the walk.
    /// `ended` answers a window's store entry, key bytes and bounds.
    pub(crate) fn close_ended<T: Ord + Clone>(
        &mut self,
        open: &mut std::collections::BTreeSet<T>,
        ended: impl Fn(&T) -> Option<(Bytes, Bytes, Window)>,
    ) -> Result<(), StreamsError> {
        while let Some((entry, key_bytes, window)) = open.first().and_then(&ended) {
            open.pop_first();
            self.close_entry(entry, key_bytes, window)?;
        }
        Ok(())
    }

    /// Closes the window stored under `entry`: reports its final aggregate
    /// (with [`Emit::Final`]) and drops it.
    pub(crate) fn close_entry(
        &mut self,
        entry: Bytes,
        key_bytes: Bytes,
        window: Window,
    ) -> Result<(), StreamsError> {
        if self.emit == Emit::Final
            && let Some(agg) = self.get(&entry)?
        {
            self.closed.push((key_bytes, window, Some(agg)));
        }
        self.delete(entry);
        Ok(())
    }
}

/// Where a record went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Placed {
    /// Into at least one open window.
    InWindow,
    /// Nowhere: every window it belongs to has closed.
    Late,
}

/// One kind of window: where a record's windows are, how their aggregates
/// are kept in the node's store, and which have closed.
pub(crate) trait WindowAssigner<K, V, A>: Send + Sync + 'static {
    /// The same windows and functions with nothing loaded: one per task.
    fn fresh(&self) -> Self
    where
        Self: Sized;

    /// Reads what the kind keeps in memory back from the store; called on
    /// a task's first record after a (re)start. Kinds that keep nothing in
    /// memory have nothing to read.
    fn load(&mut self, _ctx: &mut TaskContext, _store: usize) -> Result<(), StreamsError> {
        Ok(())
    }

    /// Adds one record to the windows it belongs to, reporting each window
    /// it changed in [`Step::updates`] with [`Emit::OnUpdate`].
    fn add(&mut self, at: &mut Step<'_, K, A>, key: &K, value: V) -> Result<Placed, StreamsError>;

    /// Drops the windows that have closed, reporting each in
    /// [`Step::closed`] with [`Emit::Final`].
    fn close(&mut self, at: &mut Step<'_, K, A>) -> Result<(), StreamsError>;
}

/// What the node's declaration and each task's node share.
struct Settings<K, A> {
    key_serde: Arc<dyn Serde<K>>,
    agg_serde: Arc<dyn Serde<A>>,
    grace_ms: i64,
    emit: Emit,
    late_topic: Option<Arc<str>>,
}

// By hand: a derive would ask `K: Clone` and `A: Clone`, which the handles do not need.
impl<K, A> Clone for Settings<K, A> {
    fn clone(&self) -> Self {
        Self {
            key_serde: self.key_serde.clone(),
            agg_serde: self.agg_serde.clone(),
            grace_ms: self.grace_ms,
            emit: self.emit,
            late_topic: self.late_topic.clone(),
        }
    }
}

/// The windowed aggregation node, as declared in a topology.
pub(crate) struct WindowedAggregateOp<K, V, A, S> {
    store: String,
    settings: Settings<K, A>,
    assigner: S,
    children: Children<Windowed<K>, Option<A>>,
    _types: PhantomData<fn(V)>,
}

/// The windowed aggregation node in one task.
struct WindowedAggregateRun<K, A, S> {
    store: usize,
    settings: Settings<K, A>,
    assigner: S,
    loaded: bool,
    /// Buffers kept between records, so a record allocates no list.
    updates: Vec<(Window, Option<A>)>,
    closed: Vec<(Bytes, Window, Option<A>)>,
    forward: Forward<Windowed<K>, Option<A>>,
}

impl<K, V, A, S> NodeFactory<K, V> for WindowedAggregateOp<K, V, A, S>
where
    K: Data,
    V: Data,
    A: Data,
    S: WindowAssigner<K, V, A>,
{
    fn build(&self, init: &TaskInit<'_>) -> Result<Box<dyn Node<K, V>>, StreamsError> {
        Ok(Box::new(WindowedAggregateRun {
            store: init.store(&self.store)?,
            settings: self.settings.clone(),
            assigner: self.assigner.fresh(),
            loaded: false,
            updates: Vec::new(),
            closed: Vec::new(),
            forward: Forward::build(&self.children, init)?,
        }))
    }
}

impl<K, V, A, S> Node<K, V> for WindowedAggregateRun<K, A, S>
where
    K: Data,
    V: Data,
    A: Data,
    S: WindowAssigner<K, V, A>,
{
    fn process(&mut self, ctx: &mut TaskContext, key: K, value: V) -> Result<(), StreamsError> {
        let store = self.store;
        ctx.with_node_stream_time(store, |ctx| self.add(ctx, key, value))
    }

    fn tick(&mut self, ctx: &mut TaskContext, now_ms: i64) -> Result<(), StreamsError> {
        self.forward.tick(ctx, now_ms)
    }
}

impl<K: Data, A: Data, S> WindowedAggregateRun<K, A, S> {
    fn add<V: Data>(&mut self, ctx: &mut TaskContext, key: K, value: V) -> Result<(), StreamsError>
    where
        S: WindowAssigner<K, V, A>,
    {
        if !self.loaded {
            self.assigner.load(ctx, self.store)?;
            self.loaded = true;
        }
        // The step borrows the serdes and buffers field by field, so the
        // assigner and the forward stay free to borrow alongside it.
        let settings = &self.settings;
        let mut at = Step {
            stream_time: ctx.stream_time(),
            ctx,
            store: self.store,
            emit: settings.emit,
            grace_ms: settings.grace_ms,
            key_serde: &*settings.key_serde,
            agg_serde: &*settings.agg_serde,
            updates: &mut self.updates,
            closed: &mut self.closed,
        };
        let result = step(
            &mut self.assigner,
            &mut self.forward,
            settings.late_topic.as_ref(),
            &mut at,
            &key,
            value,
        );
        self.updates.clear();
        self.closed.clear();
        result
    }
}

/// Adds a record, forwards what changed, and closes what has closed.
fn step<K: Data, V, A: Data>(
    assigner: &mut impl WindowAssigner<K, V, A>,
    forward: &mut Forward<Windowed<K>, Option<A>>,
    late_topic: Option<&Arc<str>>,
    at: &mut Step<'_, K, A>,
    key: &K,
    value: V,
) -> Result<(), StreamsError> {
    let placed = assigner.add(at, key, value)?;
    for (window, agg) in at.updates.drain(..) {
        let key = key.clone();
        forward.send(at.ctx, Windowed { key, window }, agg)?;
    }
    if placed == Placed::Late {
        record_late(at.ctx, late_topic, at.grace_ms);
    }
    assigner.close(at)?;
    for (key_bytes, window, agg) in at.closed.drain(..) {
        let key = at.ctx.decode_stored(at.store, at.key_serde, &key_bytes)?;
        forward.send(at.ctx, Windowed { key, window }, agg)?;
    }
    Ok(())
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

/// Writes a windowed key as Kafka's windowed serdes do: the key's bytes,
/// then each of `times` as 8 big-endian bytes.
pub(crate) fn encode_windowed<K, const N: usize>(
    inner: &impl Serde<K>,
    key: &K,
    times: [i64; N],
    out: &mut Vec<u8>,
) -> Result<(), SerdeError> {
    inner.serialize(key, out)?;
    for t in times {
        out.extend_from_slice(&t.to_be_bytes());
    }
    Ok(())
}

/// Reads what [`encode_windowed`] wrote; `what` names the key in errors.
pub(crate) fn decode_windowed<K, const N: usize>(
    inner: &impl Serde<K>,
    bytes: &[u8],
    what: &str,
) -> Result<(K, [i64; N]), SerdeError> {
    let Some(key_len) = bytes.len().checked_sub(8 * N) else {
        return Err(SerdeError(format!(
            "{what} needs at least {} bytes, got {}",
            8 * N,
            bytes.len()
        )));
    };
    let (key, tail) = bytes.split_at(key_len);
    let mut times = [0; N];
    for (t, b) in times.iter_mut().zip(tail.chunks_exact(8)) {
        let b: [u8; 8] = b
            .try_into()
            .map_err(|_| SerdeError(format!("{what}: a bad window time")))?;
        *t = i64::from_be_bytes(b);
    }
    Ok((inner.deserialize(key)?, times))
}

/// A duration in ms, saturating.
pub(crate) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A time as 8 bytes whose byte order is time order (big-endian with the
/// sign bit flipped), for store keys.
pub(crate) fn time_bytes(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

/// The time [`time_bytes`] wrote.
pub(crate) fn time_of(b: &[u8]) -> Option<i64> {
    Some((u64::from_be_bytes(b.try_into().ok()?) ^ (1 << 63)) as i64)
}
