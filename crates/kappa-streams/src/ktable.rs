//! `KGroupedStream` (records grouped by key, ready to aggregate) and
//! `KTable` (the latest value per key, as a stream of changes).

use std::marker::PhantomData;
use std::sync::Arc;

use crate::kstream::KStream;
use crate::node::{Children, Data, add_child, new_children};
use crate::ops::{AggregateOp, SinkOp, StatelessOp, TopicName};
use crate::serde::{I64, Serde};
use crate::topology::{Materialized, SharedGraph, lock};

/// A stream grouped by key.
pub struct KGroupedStream<K, V> {
    graph: SharedGraph,
    children: Children<K, V>,
    name: String,
    key_serde: Arc<dyn Serde<K>>,
}

impl<K: Data, V: Data> KGroupedStream<K, V> {
    pub(crate) fn new(
        graph: SharedGraph,
        children: Children<K, V>,
        name: String,
        key_serde: Arc<dyn Serde<K>>,
    ) -> Self {
        Self {
            graph,
            children,
            name,
            key_serde,
        }
    }

    /// Folds each key's records into an aggregate kept in `store`; the
    /// table emits the new aggregate after every record.
    ///
    /// ```
    /// # use kappa_streams::{StreamsBuilder, Utf8, Json, Materialized};
    /// let b = StreamsBuilder::new();
    /// let spent = b
    ///     .stream("settlements", Utf8, Json::<u64>::new())
    ///     .group_by_key(Utf8)
    ///     .aggregate(Materialized::persistent("spent"), Json::<u64>::new(), || 0, |_card, amount, total| total + amount);
    /// ```
    pub fn aggregate<A: Data>(
        &self,
        store: Materialized,
        agg_serde: impl Serde<A>,
        init: impl Fn() -> A + Send + Sync + 'static,
        f: impl Fn(&K, V, A) -> A + Send + Sync + 'static,
    ) -> KTable<K, A> {
        self.fold("aggregate", store, agg_serde, move |k, v, acc| {
            f(k, v, acc.unwrap_or_else(&init))
        })
    }

    pub(crate) fn fold<A: Data>(
        &self,
        kind: &str,
        store: Materialized,
        agg_serde: impl Serde<A>,
        f: impl Fn(&K, V, Option<A>) -> A + Send + Sync + 'static,
    ) -> KTable<K, A> {
        let children = new_children();
        let agg_serde: Arc<dyn Serde<A>> = Arc::new(agg_serde);
        add_child(
            &self.children,
            Arc::new(AggregateOp {
                store: store.0.name.clone(),
                key_serde: self.key_serde.clone(),
                agg_serde: agg_serde.clone(),
                f: Arc::new(f),
                children: children.clone(),
                _types: PhantomData,
            }),
        );
        let name = {
            let mut g = lock(&self.graph);
            g.stores.push(store.0.clone());
            let node = g.add_node(&format!("{kind}[{}]", store.0.name), &[&self.name]);
            g.node_uses(&node, None, &[&store.0.name]);
            node
        };
        KTable::new(self.graph.clone(), children, name).materialized(&store.0.name, agg_serde)
    }

    /// Cuts the groups into time windows (tumbling or hopping).
    pub fn windowed_by(
        &self,
        windows: crate::windowing::TimeWindows,
    ) -> crate::windowing::TimeWindowedKStream<K, V> {
        self.windowed(windows)
    }

    /// Cuts the groups into sliding windows (KIP-450).
    pub fn windowed_by_sliding(
        &self,
        windows: crate::windowing::SlidingWindows,
    ) -> crate::windowing::SlidingWindowedKStream<K, V> {
        self.windowed(windows)
    }

    /// Cuts the groups into sessions for session-windowed aggregation.
    pub fn windowed_by_sessions(
        &self,
        sessions: crate::windowing::SessionWindows,
    ) -> crate::windowing::SessionWindowedKStream<K, V> {
        self.windowed(sessions)
    }

    fn windowed<W>(&self, windows: W) -> crate::windowing::WindowedKStream<K, V, W> {
        crate::windowing::WindowedKStream {
            graph: self.graph.clone(),
            children: self.children.clone(),
            name: self.name.clone(),
            key_serde: self.key_serde.clone(),
            windows,
            emit: crate::windowing::Emit::OnUpdate,
            late_topic: None,
        }
    }

    /// Counts each key's records (stored as Kafka's 8-byte big-endian long).
    pub fn count(&self, store: Materialized) -> KTable<K, i64> {
        self.fold("count", store, I64, |_, _, n| n.unwrap_or(0) + 1)
    }

    /// Combines each key's values with `f`; a key's first value is kept as is.
    pub fn reduce(
        &self,
        store: Materialized,
        value_serde: impl Serde<V>,
        f: impl Fn(V, V) -> V + Send + Sync + 'static,
    ) -> KTable<K, V> {
        self.fold("reduce", store, value_serde, move |_, v, acc| match acc {
            Some(a) => f(a, v),
            None => v,
        })
    }
}

/// The latest value per key, seen as a stream of changes (`None` = deleted).
pub struct KTable<K, V> {
    graph: SharedGraph,
    children: Children<K, Option<V>>,
    name: String,
    /// The store holding this table's rows and the serde of its values,
    /// when it is materialized (tables from topics and aggregations are).
    store: Option<(String, Arc<dyn Serde<V>>)>,
}

impl<K: Data, V: Data> KTable<K, V> {
    pub(crate) fn new(graph: SharedGraph, children: Children<K, Option<V>>, name: String) -> Self {
        Self {
            graph,
            children,
            name,
            store: None,
        }
    }

    pub(crate) fn graph(&self) -> &SharedGraph {
        &self.graph
    }

    pub(crate) fn node_name(&self) -> &str {
        &self.name
    }

    pub(crate) fn children(&self) -> &Children<K, Option<V>> {
        &self.children
    }

    pub(crate) fn materialized(mut self, store: &str, serde: Arc<dyn Serde<V>>) -> Self {
        self.store = Some((store.to_owned(), serde));
        self
    }

    /// The store and value serde a join reads; records a build error naming
    /// the table when it has none.
    pub(crate) fn store_for_join(&self) -> Option<(String, Arc<dyn Serde<V>>)> {
        if self.store.is_none() {
            lock(&self.graph).errors.push(format!(
                "{} is joined but not materialized: join a table read from a topic or produced by an aggregation",
                self.name
            ));
        }
        self.store.clone()
    }

    fn change<V2: Data>(
        &self,
        kind: &str,
        f: impl Fn(K, Option<V>) -> (K, Option<V2>) + Send + Sync + 'static,
    ) -> KTable<K, V2> {
        let children = new_children();
        add_child(
            &self.children,
            Arc::new(StatelessOp {
                f: Arc::new(move |k, v, out: &mut Vec<(K, Option<V2>)>| out.push(f(k, v))),
                children: children.clone(),
                _types: PhantomData,
            }),
        );
        let name = lock(&self.graph).add_node(kind, &[&self.name]);
        KTable::new(self.graph.clone(), children, name)
    }

    /// Keeps rows for which `predicate` holds; others become deletions
    /// downstream, as in Kafka Streams.
    pub fn filter(&self, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> Self {
        self.change("table-filter", move |k, v| {
            let keep = v.filter(|v| predicate(&k, v));
            (k, keep)
        })
    }

    /// Maps each row's value.
    pub fn map_values<V2: Data>(
        &self,
        f: impl Fn(V) -> V2 + Send + Sync + 'static,
    ) -> KTable<K, V2> {
        self.change("table-map-values", move |k, v| (k, v.map(&f)))
    }

    /// The table's changes as a stream; `None` marks a deletion.
    pub fn to_stream(&self) -> KStream<K, Option<V>> {
        let children = new_children();
        add_child(
            &self.children,
            Arc::new(StatelessOp {
                f: Arc::new(|k, v, out: &mut Vec<(K, Option<V>)>| out.push((k, v))),
                children: children.clone(),
                _types: PhantomData,
            }),
        );
        let name = lock(&self.graph).add_node("to-stream", &[&self.name]);
        KStream::new(self.graph.clone(), children, name, false)
    }

    /// Writes every change to `topic`; deletions become tombstones.
    pub fn to(&self, topic: &str, key_serde: impl Serde<K>, value_serde: impl Serde<V>) {
        add_child(
            &self.children,
            Arc::new(SinkOp {
                topic: TopicName::Fixed(topic.to_owned()),
                key_serde: Arc::new(key_serde),
                value_serde: Arc::new(value_serde),
            }),
        );
        let mut g = lock(&self.graph);
        let node = g.add_node(&format!("sink[{topic}]"), &[&self.name]);
        g.node_uses(&node, Some(TopicName::Fixed(topic.to_owned())), &[]);
        g.sinks.push(TopicName::Fixed(topic.to_owned()));
    }
}
