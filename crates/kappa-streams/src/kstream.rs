//! `KStream`: an unbounded stream of keyed records.

use std::marker::PhantomData;
use std::sync::Arc;

use crate::ktable::KGroupedStream;
use crate::node::{Children, Data, NodeFactory, add_child, new_children};
use crate::ops::{SinkOp, SourceOp, StatelessOp, StreamSinkOp, TopicName};
use crate::serde::Serde;
use crate::topology::{SharedGraph, lock};

/// A branch condition for [`KStream::split`].
pub type Predicate<K, V> = Box<dyn Fn(&K, &V) -> bool + Send + Sync>;

/// A stream of records with keys `K` and values `V`.
///
/// Operations return new streams; nothing runs until the topology is built
/// and started.
pub struct KStream<K, V> {
    graph: SharedGraph,
    children: Children<K, V>,
    name: String,
    /// True after an operation that may have changed keys: grouping then
    /// needs a repartition so equal keys meet in one task.
    key_changed: bool,
}

impl<K: Data, V: Data> KStream<K, V> {
    pub(crate) fn new(
        graph: SharedGraph,
        children: Children<K, V>,
        name: String,
        key_changed: bool,
    ) -> Self {
        Self {
            graph,
            children,
            name,
            key_changed,
        }
    }

    /// Records a build error when a key-changing step came before `what`
    /// without a repartition: equal keys would not meet in one task.
    pub(crate) fn require_partitioned_by_key(&self, what: &str) {
        if self.key_changed {
            lock(&self.graph).errors.push(format!(
                "{} feeds {what} after its key was changed; call repartition(..) first so equal keys meet in one task",
                self.name
            ));
        }
    }

    pub(crate) fn graph(&self) -> &SharedGraph {
        &self.graph
    }

    pub(crate) fn node_name(&self) -> &str {
        &self.name
    }

    pub(crate) fn children(&self) -> &Children<K, V> {
        &self.children
    }

    /// Adds a stateless step that turns each record into zero or more.
    fn step<K2: Data, V2: Data>(
        &self,
        kind: &str,
        key_changed: bool,
        f: impl Fn(K, V, &mut Vec<(K2, V2)>) + Send + Sync + 'static,
    ) -> KStream<K2, V2> {
        let children = new_children();
        add_child(
            &self.children,
            Arc::new(StatelessOp {
                f: Arc::new(f),
                children: children.clone(),
                _types: PhantomData,
            }),
        );
        let name = lock(&self.graph).add_node(kind, &[&self.name]);
        KStream::new(
            self.graph.clone(),
            children,
            name,
            self.key_changed || key_changed,
        )
    }

    /// Keeps the records for which `predicate` is true.
    ///
    /// ```
    /// # use kappa_streams::{StreamsBuilder, Utf8, Json};
    /// let b = StreamsBuilder::new();
    /// let big = b.stream("amounts", Utf8, Json::<u64>::new()).filter(|_, amount| *amount > 100);
    /// ```
    pub fn filter(&self, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> Self {
        self.step("filter", false, move |k, v, out| {
            if predicate(&k, &v) {
                out.push((k, v));
            }
        })
    }

    /// Drops the records for which `predicate` is true.
    pub fn filter_not(&self, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> Self {
        self.step("filter-not", false, move |k, v, out| {
            if !predicate(&k, &v) {
                out.push((k, v));
            }
        })
    }

    /// Maps each record to a new key and value (grouping afterwards needs
    /// [`KStream::repartition`]).
    pub fn map<K2: Data, V2: Data>(
        &self,
        f: impl Fn(K, V) -> (K2, V2) + Send + Sync + 'static,
    ) -> KStream<K2, V2> {
        self.step("map", true, move |k, v, out| out.push(f(k, v)))
    }

    /// Maps each value, keeping the key.
    pub fn map_values<V2: Data>(
        &self,
        f: impl Fn(V) -> V2 + Send + Sync + 'static,
    ) -> KStream<K, V2> {
        self.step("map-values", false, move |k, v, out| out.push((k, f(v))))
    }

    /// Maps each record to any number of records.
    pub fn flat_map<K2: Data, V2: Data, I>(
        &self,
        f: impl Fn(K, V) -> I + Send + Sync + 'static,
    ) -> KStream<K2, V2>
    where
        I: IntoIterator<Item = (K2, V2)>,
    {
        self.step("flat-map", true, move |k, v, out| out.extend(f(k, v)))
    }

    /// Maps each value to any number of values, keeping the key.
    pub fn flat_map_values<V2: Data, I>(
        &self,
        f: impl Fn(V) -> I + Send + Sync + 'static,
    ) -> KStream<K, V2>
    where
        I: IntoIterator<Item = V2>,
    {
        self.step("flat-map-values", false, move |k: K, v, out| {
            out.extend(f(v).into_iter().map(|v2| (k.clone(), v2)));
        })
    }

    /// Sees each record without changing it.
    pub fn peek(&self, f: impl Fn(&K, &V) + Send + Sync + 'static) -> Self {
        self.step("peek", false, move |k, v, out| {
            f(&k, &v);
            out.push((k, v));
        })
    }

    /// Consumes each record (a terminal step). Side effects belong in effect
    /// runners; this is for metrics and debugging.
    pub fn for_each(&self, f: impl Fn(K, V) + Send + Sync + 'static) {
        let _: KStream<(), ()> = self.step("for-each", false, move |k, v, _out| f(k, v));
    }

    /// Computes a new key for each record (grouping afterwards needs
    /// [`KStream::repartition`]).
    pub fn select_key<K2: Data>(
        &self,
        f: impl Fn(&K, &V) -> K2 + Send + Sync + 'static,
    ) -> KStream<K2, V> {
        self.step("select-key", true, move |k, v, out| {
            let k2 = f(&k, &v);
            out.push((k2, v));
        })
    }

    /// Splits the stream: each record goes to the first branch whose
    /// predicate holds, or to the last, default branch. Returns
    /// `predicates.len() + 1` streams.
    pub fn split(&self, predicates: Vec<Predicate<K, V>>) -> Vec<Self> {
        let predicates = Arc::new(predicates);
        (0..=predicates.len())
            .map(|i| {
                let predicates = predicates.clone();
                self.step(&format!("branch-{i}"), false, move |k, v, out| {
                    let first = predicates
                        .iter()
                        .position(|p| p(&k, &v))
                        .unwrap_or(predicates.len());
                    if first == i {
                        out.push((k, v));
                    }
                })
            })
            .collect()
    }

    /// Interleaves two streams.
    pub fn merge(&self, other: &Self) -> Self {
        let children = new_children();
        for parent in [&self.children, &other.children] {
            let to = children.clone();
            add_child(
                parent,
                Arc::new(PassThrough { children: to }) as Arc<dyn NodeFactory<K, V>>,
            );
        }
        let name = lock(&self.graph).add_node("merge", &[&self.name, &other.name]);
        Self::new(
            self.graph.clone(),
            children,
            name,
            self.key_changed || other.key_changed,
        )
    }

    /// Writes each record to `topic`, partitioned by murmur2 of its key.
    pub fn to(&self, topic: &str, key_serde: impl Serde<K>, value_serde: impl Serde<V>) {
        let sink = SinkOp {
            topic: TopicName::Fixed(topic.to_owned()),
            key_serde: Arc::new(key_serde),
            value_serde: Arc::new(value_serde),
        };
        add_child(&self.children, Arc::new(StreamSinkOp(sink)));
        let mut g = lock(&self.graph);
        let node = g.add_node(&format!("sink[{topic}]"), &[&self.name]);
        g.node_uses(&node, Some(TopicName::Fixed(topic.to_owned())), &[]);
        g.sinks.push(TopicName::Fixed(topic.to_owned()));
    }

    /// Routes records through an internal topic `<app>-<name>-repartition`
    /// so that each lands in the task of its (new) key.
    pub fn repartition(
        &self,
        name: &str,
        key_serde: impl Serde<K> + Clone,
        value_serde: impl Serde<V> + Clone,
    ) -> Self {
        let topic = TopicName::Internal(format!("{name}-repartition"));
        add_child(
            &self.children,
            Arc::new(StreamSinkOp(SinkOp {
                topic: topic.clone(),
                key_serde: Arc::new(key_serde.clone()),
                value_serde: Arc::new(value_serde.clone()),
            })),
        );
        let children = new_children();
        let node = {
            let mut g = lock(&self.graph);
            let sink = g.add_node(&format!("repartition-sink[{name}]"), &[&self.name]);
            g.node_uses(&sink, Some(topic.clone()), &[]);
            let node = g.add_node(&format!("repartition-source[{name}]"), &[&sink]);
            g.node_uses(&node, Some(topic.clone()), &[]);
            g.sinks.push(topic.clone());
            g.internal_topics.push(format!("{name}-repartition"));
            g.sources.push(Arc::new(SourceOp {
                topic,
                key_serde: Arc::new(key_serde),
                value_serde: Arc::new(value_serde),
                timestamps: None,
                children: children.clone(),
            }));
            node
        };
        Self::new(self.graph.clone(), children, node, false)
    }

    /// Groups records by their key, for aggregation. Refused at build time
    /// when a key-changing step came before without a repartition.
    pub fn group_by_key(&self, key_serde: impl Serde<K>) -> KGroupedStream<K, V> {
        if self.key_changed {
            lock(&self.graph).errors.push(format!(
                "{} groups records whose key was changed upstream; call repartition(..) before group_by_key so equal keys meet in one task",
                self.name
            ));
        }
        KGroupedStream::new(
            self.graph.clone(),
            self.children.clone(),
            self.name.clone(),
            Arc::new(key_serde),
        )
    }

    /// Re-keys and groups: `select_key(f)` + `repartition` + `group_by_key`.
    pub fn group_by<K2: Data>(
        &self,
        name: &str,
        f: impl Fn(&K, &V) -> K2 + Send + Sync + 'static,
        key_serde: impl Serde<K2> + Clone,
        value_serde: impl Serde<V> + Clone,
    ) -> KGroupedStream<K2, V> {
        self.select_key(f)
            .repartition(name, key_serde.clone(), value_serde)
            .group_by_key(key_serde)
    }
}

/// Forwards unchanged (used by `merge`).
struct PassThrough<K, V> {
    children: Children<K, V>,
}

impl<K: Data, V: Data> NodeFactory<K, V> for PassThrough<K, V> {
    fn build(
        &self,
        init: &crate::node::TaskInit<'_>,
    ) -> Result<Box<dyn crate::node::Node<K, V>>, crate::StreamsError> {
        Ok(Box::new(crate::node::Forward::build(&self.children, init)?))
    }
}

impl<K: Data, V: Data> crate::node::Node<K, V> for crate::node::Forward<K, V> {
    fn process(
        &mut self,
        ctx: &mut crate::context::TaskContext,
        key: K,
        value: V,
    ) -> Result<(), crate::StreamsError> {
        self.send(ctx, key, value)
    }

    fn tick(
        &mut self,
        ctx: &mut crate::context::TaskContext,
        now_ms: i64,
    ) -> Result<(), crate::StreamsError> {
        crate::node::Forward::tick(self, ctx, now_ms)
    }
}
