//! The Processor API: custom record-at-a-time logic with named state
//! stores, forwarding, and punctuators on stream time and wall-clock time.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::context::TaskContext;
use crate::error::StreamsError;
use crate::kstream::KStream;
use crate::node::{Children, Data, Forward, Node, NodeFactory, TaskInit, add_child, new_children};
use crate::serde::Serde;
use crate::topology::{Materialized, StreamsBuilder, lock};

/// What triggers a punctuation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Punctuation {
    /// Stream time (largest event time seen by the task) passed the next multiple of the interval.
    StreamTime,
    /// The wall clock passed the interval since the last one.
    WallClockTime,
}

/// Custom processing logic. One instance runs per task.
///
/// ```
/// use kappa_streams::{Processor, ProcessorContext, StoreHandle, StreamsError};
/// /// Forwards a value only the first time its key is seen.
/// struct FirstSeen(StoreHandle<String, bool>);
/// impl Processor<String, String, String, String> for FirstSeen {
///     fn process(&mut self, ctx: &mut ProcessorContext<'_, String, String>, key: String, value: String) -> Result<(), StreamsError> {
///         if ctx.get(&self.0, &key)?.is_none() {
///             ctx.put(&self.0, &key, &true)?;
///             ctx.forward(key, value)?;
///         }
///         Ok(())
///     }
/// }
/// ```
pub trait Processor<K, V, KOut, VOut>: Send + 'static {
    /// Called once before the first record of the task (schedule punctuators here).
    ///
    /// # Errors
    ///
    /// Stops the topology.
    fn init(&mut self, _ctx: &mut ProcessorContext<'_, KOut, VOut>) -> Result<(), StreamsError> {
        Ok(())
    }

    /// Processes one record.
    ///
    /// # Errors
    ///
    /// Stops the topology; nothing of the uncommitted work is kept.
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, KOut, VOut>,
        key: K,
        value: V,
    ) -> Result<(), StreamsError>;

    /// A scheduled punctuation fired at `time_ms` (stream or wall-clock time).
    ///
    /// # Errors
    ///
    /// Stops the topology.
    fn punctuate(
        &mut self,
        _ctx: &mut ProcessorContext<'_, KOut, VOut>,
        _kind: Punctuation,
        _time_ms: i64,
    ) -> Result<(), StreamsError> {
        Ok(())
    }
}

/// A typed handle on a key-value store declared with [`StreamsBuilder::add_state_store`].
pub struct StoreHandle<K, V> {
    name: Arc<str>,
    key_serde: Arc<dyn Serde<K>>,
    pub(crate) value_serde: Arc<dyn Serde<V>>,
}

impl<K, V> Clone for StoreHandle<K, V> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
        }
    }
}

impl<K, V> StoreHandle<K, V> {
    /// The store's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl StreamsBuilder {
    /// Declares a key-value store for processors to use.
    pub fn add_state_store<K: 'static, V: 'static>(
        &self,
        store: Materialized,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
    ) -> StoreHandle<K, V> {
        let name: Arc<str> = store.0.name.as_str().into();
        lock(self.graph()).stores.push(store.0);
        StoreHandle {
            name,
            key_serde: Arc::new(key_serde),
            value_serde: Arc::new(value_serde),
        }
    }
}

struct Schedule {
    kind: Punctuation,
    interval_ms: i64,
    next_ms: Option<i64>,
}

/// What a processor sees: the record's metadata, its stores, forwarding and scheduling.
pub struct ProcessorContext<'a, KOut, VOut> {
    task: &'a mut TaskContext,
    forward: &'a mut Forward<KOut, VOut>,
    stores: &'a [(Arc<str>, usize)],
    schedules: &'a mut Vec<Schedule>,
}

impl<KOut: Data, VOut: Data> ProcessorContext<'_, KOut, VOut> {
    /// Sends a record to the next steps; it carries the input's timestamp and provenance.
    ///
    /// # Errors
    ///
    /// A downstream step failed.
    pub fn forward(&mut self, key: KOut, value: VOut) -> Result<(), StreamsError> {
        self.forward.send(self.task, key, value)
    }

    /// Runs `punctuate` every `interval` of stream time or wall-clock time.
    pub fn schedule(&mut self, interval: Duration, kind: Punctuation) {
        let interval_ms = i64::try_from(interval.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        // After a restart the task's stream time is restored: schedule from
        // it, so a boundary crossed before a crash is not skipped on replay.
        let stream_time = self.task.stream_time();
        let next_ms = (kind == Punctuation::StreamTime && stream_time != i64::MIN)
            .then(|| (stream_time.div_euclid(interval_ms) + 1).saturating_mul(interval_ms));
        self.schedules.push(Schedule {
            kind,
            interval_ms,
            next_ms,
        });
    }

    /// Event time of the record being processed.
    pub fn timestamp(&self) -> i64 {
        self.task.timestamp()
    }

    /// The task's stream time.
    pub fn stream_time(&self) -> i64 {
        self.task.stream_time()
    }

    /// Position of the record being processed.
    pub fn position(&self) -> kappa_log::Position {
        self.task.position()
    }

    fn index<K, V>(&self, store: &StoreHandle<K, V>) -> Result<usize, StreamsError> {
        self.store_index(&store.name)
    }

    /// Where `key` lives: the store's index in this task and the key as
    /// the store holds it.
    pub(crate) fn entry<K: 'static, V>(
        &mut self,
        store: &StoreHandle<K, V>,
        key: &K,
    ) -> Result<(usize, Bytes), StreamsError> {
        let i = self.index(store)?;
        let k = self.task.encode(&*store.key_serde, key, "store key")?;
        Ok((i, k))
    }

    pub(crate) fn store_index(&self, name: &str) -> Result<usize, StreamsError> {
        self.stores
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, i)| *i)
            .ok_or_else(|| {
                StreamsError::Topology(format!("store {name:?} is not connected to this processor"))
            })
    }

    pub(crate) fn task(&mut self) -> &mut TaskContext {
        self.task
    }

    /// Reads a key (this task's uncommitted writes first).
    ///
    /// # Errors
    ///
    /// The store is not connected, or a stored value does not decode.
    pub fn get<K: 'static, V: 'static>(
        &mut self,
        store: &StoreHandle<K, V>,
        key: &K,
    ) -> Result<Option<V>, StreamsError> {
        let (i, k) = self.entry(store, key)?;
        match self.task.store_get(i, &k)? {
            Some(bytes) => store
                .value_serde
                .deserialize(&bytes)
                .map(Some)
                .map_err(|e| StreamsError::Store {
                    store: store.name.to_string(),
                    detail: e.0,
                }),
            None => Ok(None),
        }
    }

    /// Writes a key; it commits with the task's outputs and positions.
    ///
    /// # Errors
    ///
    /// The store is not connected, or the value does not encode.
    pub fn put<K: 'static, V: 'static>(
        &mut self,
        store: &StoreHandle<K, V>,
        key: &K,
        value: &V,
    ) -> Result<(), StreamsError> {
        let (i, k) = self.entry(store, key)?;
        let v = self
            .task
            .encode(&*store.value_serde, value, "store value")?;
        self.task.store_put(i, k, Some(v));
        Ok(())
    }

    /// Deletes a key.
    ///
    /// # Errors
    ///
    /// The store is not connected, or the key does not encode.
    pub fn delete<K: 'static, V: 'static>(
        &mut self,
        store: &StoreHandle<K, V>,
        key: &K,
    ) -> Result<(), StreamsError> {
        let (i, k) = self.entry(store, key)?;
        self.task.store_put(i, k, None);
        Ok(())
    }

    /// The (key, value) pairs of this task's part of the store whose
    /// serialized key starts with the serialization of `prefix` (for string
    /// keys: keys that start with it), in key-byte order.
    ///
    /// # Errors
    ///
    /// The store is not connected, or an entry does not decode.
    pub fn prefix<K: 'static, V: 'static>(
        &mut self,
        store: &StoreHandle<K, V>,
        prefix: &K,
    ) -> Result<Vec<(K, V)>, StreamsError> {
        let p = self
            .task
            .encode(&*store.key_serde, prefix, "store key prefix")?;
        self.scan_decoded(store, &p)
    }

    fn scan_decoded<K: 'static, V: 'static>(
        &mut self,
        store: &StoreHandle<K, V>,
        prefix: &[u8],
    ) -> Result<Vec<(K, V)>, StreamsError> {
        let i = self.index(store)?;
        let mut out = Vec::new();
        for (k, v) in self.task.store_scan_prefix(i, prefix)? {
            out.push((
                self.task.decode_stored(i, &*store.key_serde, &k)?,
                self.task.decode_stored(i, &*store.value_serde, &v)?,
            ));
        }
        Ok(out)
    }

    /// Every (key, value) of this task's part of the store, in key-byte order.
    ///
    /// # Errors
    ///
    /// The store is not connected, or an entry does not decode.
    pub fn all<K: 'static, V: 'static>(
        &mut self,
        store: &StoreHandle<K, V>,
    ) -> Result<Vec<(K, V)>, StreamsError> {
        self.scan_decoded(store, &[])
    }
}

impl<K: Data, V: Data> KStream<K, V> {
    /// Runs a custom processor, one instance per task, made by `supplier`,
    /// with access to the listed stores.
    pub fn process<KOut: Data, VOut: Data, P>(
        &self,
        supplier: impl Fn() -> P + Send + Sync + 'static,
        stores: &[&str],
    ) -> KStream<KOut, VOut>
    where
        P: Processor<K, V, KOut, VOut>,
    {
        let children = new_children();
        add_child(
            self.children(),
            Arc::new(ProcessOp {
                supplier: Arc::new(supplier),
                stores: stores.iter().map(|s| Arc::<str>::from(*s)).collect(),
                children: children.clone(),
                _types: PhantomData,
            }),
        );
        let name = {
            let mut g = lock(self.graph());
            let name = g.add_node("processor", &[self.node_name()]);
            g.node_uses(&name, None, stores);
            name
        };
        KStream::new(self.graph().clone(), children, name, true)
    }
}

struct ProcessOp<K, V, KOut, VOut, S> {
    supplier: Arc<S>,
    stores: Vec<Arc<str>>,
    children: Children<KOut, VOut>,
    _types: PhantomData<fn(K, V)>,
}

struct ProcessRun<P, KOut, VOut> {
    processor: P,
    stores: Vec<(Arc<str>, usize)>,
    schedules: Vec<Schedule>,
    initialized: bool,
    forward: Forward<KOut, VOut>,
}

// The factory asks only what its node asks (stated once, on the node's
// impl), plus a supplier to make the processor with.
impl<K, V, KOut, VOut, P, S> NodeFactory<K, V> for ProcessOp<K, V, KOut, VOut, S>
where
    KOut: Data,
    VOut: Data,
    S: Fn() -> P + Send + Sync + 'static,
    ProcessRun<P, KOut, VOut>: Node<K, V> + 'static,
{
    fn build(&self, init: &TaskInit<'_>) -> Result<Box<dyn Node<K, V>>, StreamsError> {
        let mut stores = Vec::with_capacity(self.stores.len());
        for name in &self.stores {
            stores.push((name.clone(), init.store(name)?));
        }
        Ok(Box::new(ProcessRun {
            processor: (self.supplier)(),
            stores,
            schedules: Vec::new(),
            initialized: false,
            forward: Forward::build(&self.children, init)?,
        }))
    }
}

impl<P, KOut: Data, VOut: Data> ProcessRun<P, KOut, VOut> {
    fn context<'a>(
        &'a mut self,
        task: &'a mut TaskContext,
    ) -> (&'a mut P, ProcessorContext<'a, KOut, VOut>) {
        (
            &mut self.processor,
            ProcessorContext {
                task,
                forward: &mut self.forward,
                stores: &self.stores,
                schedules: &mut self.schedules,
            },
        )
    }
}

impl<K, V, KOut, VOut, P> Node<K, V> for ProcessRun<P, KOut, VOut>
where
    K: Data,
    V: Data,
    KOut: Data,
    VOut: Data,
    P: Processor<K, V, KOut, VOut>,
{
    fn process(&mut self, task: &mut TaskContext, key: K, value: V) -> Result<(), StreamsError> {
        self.ensure_init(task)?;
        {
            let (p, mut ctx) = self.context(task);
            p.process(&mut ctx, key, value)?;
        }
        self.fire(task, Punctuation::StreamTime, task.stream_time())
    }

    fn tick(&mut self, task: &mut TaskContext, now_ms: i64) -> Result<(), StreamsError> {
        self.ensure_init(task)?;
        self.fire(task, Punctuation::WallClockTime, now_ms)?;
        self.forward.tick(task, now_ms)
    }
}

impl<P, KOut: Data, VOut: Data> ProcessRun<P, KOut, VOut> {
    fn ensure_init<K, V>(&mut self, task: &mut TaskContext) -> Result<(), StreamsError>
    where
        P: Processor<K, V, KOut, VOut>,
    {
        if !self.initialized {
            self.initialized = true;
            let (p, mut ctx) = self.context(task);
            p.init(&mut ctx)?;
        }
        Ok(())
    }

    /// Fires the due punctuations of one kind; missed intervals fire once.
    fn fire<K, V>(
        &mut self,
        task: &mut TaskContext,
        kind: Punctuation,
        now: i64,
    ) -> Result<(), StreamsError>
    where
        P: Processor<K, V, KOut, VOut>,
    {
        for i in 0..self.schedules.len() {
            let s = &mut self.schedules[i];
            if s.kind != kind || now == i64::MIN {
                continue;
            }
            let next = *s.next_ms.get_or_insert_with(|| match kind {
                // Stream time: the next multiple of the interval after now.
                Punctuation::StreamTime => {
                    (now.div_euclid(s.interval_ms) + 1).saturating_mul(s.interval_ms)
                }
                Punctuation::WallClockTime => now.saturating_add(s.interval_ms),
            });
            if now < next {
                continue;
            }
            s.next_ms = Some(match kind {
                Punctuation::StreamTime => {
                    (now.div_euclid(s.interval_ms) + 1).saturating_mul(s.interval_ms)
                }
                Punctuation::WallClockTime => now.saturating_add(s.interval_ms),
            });
            let saved = task.begin_punctuation(kind, now);
            {
                let (p, mut ctx) = self.context(task);
                p.punctuate(&mut ctx, kind, now)?;
            }
            task.end_punctuation(saved);
        }
        Ok(())
    }
}

/// Provenance of records a punctuation emits: `punctuation/<kind>/<time>`.
pub(crate) fn punctuation_source(kind: Punctuation, time: i64) -> Bytes {
    let kind = match kind {
        Punctuation::StreamTime => "stream-time",
        Punctuation::WallClockTime => "wall-clock",
    };
    Bytes::from(format!("punctuation/{kind}/{time}"))
}
