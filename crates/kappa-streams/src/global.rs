//! Global tables: every task sees the whole table, whatever its
//! partitioning, so a stream can join it on any key (`key_mapper`).
//!
//! As in Kafka Streams, a global table is rebuilt from its topic when the
//! application starts (read to the end before processing begins) and then
//! follows the topic; its updates are not synchronized with the stream's
//! event time.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use kappa_log::{FetchLimits, Log, LogError, Record, TopicPartition};

use crate::context::TaskContext;
use crate::error::StreamsError;
use crate::kstream::KStream;
use crate::node::{Children, Data, Forward, Node, NodeFactory, TaskInit, add_child, new_children};
use crate::serde::Serde;
use crate::topology::{StreamsBuilder, lock};

/// A table replicated to every task.
pub struct GlobalKTable<K, V> {
    index: usize,
    key_serde: Arc<dyn Serde<K>>,
    value_serde: Arc<dyn Serde<V>>,
}

impl StreamsBuilder {
    /// A table of the latest value per key of `topic`, all partitions,
    /// available in full to every task.
    pub fn global_table<K: 'static, V: 'static>(
        &self,
        topic: &str,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
    ) -> GlobalKTable<K, V> {
        let mut g = lock(self.graph());
        g.global_topics.push(topic.to_owned());
        let node = g.add_node(&format!("global-table[{topic}]"), &[]);
        g.node_uses(
            &node,
            Some(crate::ops::TopicName::Fixed(topic.to_owned())),
            &[],
        );
        GlobalKTable {
            index: g.global_topics.len() - 1,
            key_serde: Arc::new(key_serde),
            value_serde: Arc::new(value_serde),
        }
    }
}

/// The rows of every global table of a running topology.
#[derive(Default)]
pub(crate) struct GlobalStores {
    tables: Vec<GlobalTable>,
}

struct GlobalTable {
    rows: RwLock<HashMap<Bytes, Bytes>>,
    cursors: Mutex<Vec<(TopicPartition, u64)>>,
}

impl GlobalStores {
    /// Global stores for `topics`, empty, reading from each partition's start.
    pub(crate) fn new(log: &dyn Log, topics: &[String]) -> Result<Self, LogError> {
        let mut tables = Vec::with_capacity(topics.len());
        for topic in topics {
            let partitions = log.describe_topic(topic)?.partitions;
            let cursors = partitions
                .iter()
                .map(|p| {
                    (
                        TopicPartition::new(topic.as_str(), p.partition),
                        p.start_offset,
                    )
                })
                .collect();
            tables.push(GlobalTable {
                rows: RwLock::new(HashMap::new()),
                cursors: Mutex::new(cursors),
            });
        }
        Ok(Self { tables })
    }

    /// Applies what the topics gained since the last call (waiting up to
    /// `wait` when nothing is new); returns how many records it applied.
    pub(crate) fn catch_up(&self, log: &dyn Log, wait: Duration) -> Result<usize, LogError> {
        let mut applied = 0;
        let mut records: Vec<Record> = Vec::new();
        for table in &self.tables {
            let mut cursors = table
                .cursors
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            records.clear();
            let limits = FetchLimits {
                wait_max: wait,
                ..FetchLimits::default()
            };
            let outcome = log.fetch(&cursors, limits, &mut records)?;
            let mut rows = table
                .rows
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for r in &records {
                let key = r.key.clone().unwrap_or_default();
                match &r.value {
                    Some(v) => rows.insert(key, v.clone()),
                    None => rows.remove(&key),
                };
            }
            applied += records.len();
            for ((_, at), next) in cursors.iter_mut().zip(outcome.next_offsets) {
                *at = next;
            }
        }
        Ok(applied)
    }

    /// Reads until every table reached the end its topic had when called.
    pub(crate) fn bootstrap(&self, log: &dyn Log) -> Result<(), LogError> {
        for table in &self.tables {
            let targets: Vec<u64> = {
                let cursors = table
                    .cursors
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                cursors
                    .iter()
                    .map(|(tp, _)| log.offsets(tp).map(|r| r.end))
                    .collect::<Result<_, _>>()?
            };
            loop {
                let behind = {
                    let cursors = table
                        .cursors
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    cursors.iter().zip(&targets).any(|((_, at), end)| at < end)
                };
                if !behind {
                    break;
                }
                self.catch_up(log, Duration::ZERO)?;
            }
        }
        Ok(())
    }

    pub(crate) fn get(&self, index: usize, key: &[u8]) -> Option<Bytes> {
        let table = self.tables.get(index)?;
        table
            .rows
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }
}

impl<K: Data, V: Data> KStream<K, V> {
    /// Inner join with a global table: `key_mapper` picks the table key for
    /// each record; records without a row are dropped.
    ///
    /// ```
    /// # use kappa_streams::{StreamsBuilder, Utf8, Json};
    /// let b = StreamsBuilder::new();
    /// let merchants = b.global_table("merchants", Utf8, Utf8);
    /// let named = b
    ///     .stream("auths", Utf8, Json::<(String, u64)>::new())
    ///     .join_global(&merchants, |_card, (merchant, _)| merchant.clone(), |(_, amount), name: String| (name, amount));
    /// ```
    pub fn join_global<GK: Data, GV: Data, R: Data>(
        &self,
        table: &GlobalKTable<GK, GV>,
        key_mapper: impl Fn(&K, &V) -> GK + Send + Sync + 'static,
        joiner: impl Fn(V, GV) -> R + Send + Sync + 'static,
    ) -> KStream<K, R> {
        self.global_lookup(
            "global-join",
            table,
            key_mapper,
            move |v, row: Option<GV>| row.map(|row| joiner(v, row)),
        )
    }

    /// Left join with a global table: every record, with the row or `None`.
    pub fn left_join_global<GK: Data, GV: Data, R: Data>(
        &self,
        table: &GlobalKTable<GK, GV>,
        key_mapper: impl Fn(&K, &V) -> GK + Send + Sync + 'static,
        joiner: impl Fn(V, Option<GV>) -> R + Send + Sync + 'static,
    ) -> KStream<K, R> {
        self.global_lookup("global-left-join", table, key_mapper, move |v, row| {
            Some(joiner(v, row))
        })
    }

    fn global_lookup<GK: Data, GV: Data, R: Data>(
        &self,
        kind: &str,
        table: &GlobalKTable<GK, GV>,
        key_mapper: impl Fn(&K, &V) -> GK + Send + Sync + 'static,
        f: impl Fn(V, Option<GV>) -> Option<R> + Send + Sync + 'static,
    ) -> KStream<K, R> {
        let children = new_children();
        add_child(
            self.children(),
            Arc::new(GlobalJoinOp {
                join: Arc::new(GlobalJoin {
                    index: table.index,
                    key_serde: table.key_serde.clone(),
                    value_serde: table.value_serde.clone(),
                    key_mapper,
                    f,
                }),
                children: children.clone(),
                _types: PhantomData,
            }),
        );
        let name = lock(self.graph()).add_node(kind, &[self.node_name()]);
        KStream::new(self.graph().clone(), children, name, false)
    }
}

/// A join with a global table, shared by the node of every task.
struct GlobalJoin<GK, GV, M, F> {
    index: usize,
    key_serde: Arc<dyn Serde<GK>>,
    value_serde: Arc<dyn Serde<GV>>,
    key_mapper: M,
    f: F,
}

struct GlobalJoinOp<K, V, GK, GV, R, M, F> {
    join: Arc<GlobalJoin<GK, GV, M, F>>,
    children: Children<K, R>,
    _types: PhantomData<fn(V)>,
}

struct GlobalJoinRun<K, GK, GV, R, M, F> {
    join: Arc<GlobalJoin<GK, GV, M, F>>,
    forward: Forward<K, R>,
}

// The factory asks only what its node asks (stated once, on the node's
// impl) and what sharing the functions between tasks asks.
impl<K, V, GK, GV, R, M, F> NodeFactory<K, V> for GlobalJoinOp<K, V, GK, GV, R, M, F>
where
    K: Data,
    R: Data,
    M: Send + Sync,
    F: Send + Sync,
    GlobalJoinRun<K, GK, GV, R, M, F>: Node<K, V> + 'static,
{
    fn build(&self, init: &TaskInit<'_>) -> Result<Box<dyn Node<K, V>>, StreamsError> {
        Ok(Box::new(GlobalJoinRun {
            join: self.join.clone(),
            forward: Forward::build(&self.children, init)?,
        }))
    }
}

impl<K, V, GK, GV, R, M, F> Node<K, V> for GlobalJoinRun<K, GK, GV, R, M, F>
where
    K: Data,
    V: Data,
    GK: Data,
    GV: Data,
    R: Data,
    M: Fn(&K, &V) -> GK + Send + Sync + 'static,
    F: Fn(V, Option<GV>) -> Option<R> + Send + Sync + 'static,
{
    fn process(&mut self, ctx: &mut TaskContext, key: K, value: V) -> Result<(), StreamsError> {
        let join = &*self.join;
        let table_key = (join.key_mapper)(&key, &value);
        let table_key = ctx.encode(&*join.key_serde, &table_key, "global table key")?;
        let row = match ctx.globals.get(join.index, &table_key) {
            Some(bytes) => {
                Some(
                    join.value_serde
                        .deserialize(&bytes)
                        .map_err(|e| StreamsError::Store {
                            store: format!("global table #{}", join.index),
                            detail: e.0,
                        })?,
                )
            }
            None => None,
        };
        match (join.f)(value, row) {
            Some(r) => self.forward.send(ctx, key, r),
            None => Ok(()),
        }
    }

    fn tick(&mut self, ctx: &mut TaskContext, now_ms: i64) -> Result<(), StreamsError> {
        self.forward.tick(ctx, now_ms)
    }
}
