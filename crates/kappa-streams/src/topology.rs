//! `StreamsBuilder` and the built, validated `Topology`.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use crate::error::StreamsError;
use crate::kstream::KStream;
use crate::ktable::KTable;
use crate::node::{Data, SourceFactory, new_children};
use crate::ops::{SourceOp, TableSourceOp, TopicName};
use crate::serde::Serde;
use crate::store::{StoreKind, StoreSpec};

/// Which store an aggregation or table writes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Materialized(pub(crate) StoreSpec);

impl Materialized {
    /// A store read from the log's storage engine.
    pub fn persistent(name: &str) -> Self {
        Self(StoreSpec {
            name: name.to_owned(),
            kind: StoreKind::Persistent,
        })
    }

    /// A store kept in memory (restored from the log when a task starts).
    pub fn in_memory(name: &str) -> Self {
        Self(StoreSpec {
            name: name.to_owned(),
            kind: StoreKind::InMemory,
        })
    }
}

/// A node as `describe()` shows it.
#[derive(Clone, Debug)]
pub(crate) struct NodeDesc {
    pub(crate) name: String,
    pub(crate) kind: String,
    pub(crate) parents: Vec<String>,
    /// The topic the node reads or writes, if any.
    pub(crate) topic: Option<TopicName>,
    /// The stores the node reads or writes.
    pub(crate) stores: Vec<String>,
}

/// The topology under construction, shared by every stream handle.
#[derive(Default)]
pub(crate) struct Graph {
    pub(crate) sources: Vec<Arc<dyn SourceFactory>>,
    pub(crate) stores: Vec<StoreSpec>,
    pub(crate) nodes: Vec<NodeDesc>,
    pub(crate) sinks: Vec<TopicName>,
    pub(crate) internal_topics: Vec<String>,
    /// Topics read whole into global tables.
    pub(crate) global_topics: Vec<String>,
    pub(crate) errors: Vec<String>,
}

impl Graph {
    /// Registers a node for `describe()` and returns its unique name.
    pub(crate) fn add_node(&mut self, kind: &str, parents: &[&str]) -> String {
        let name = format!("{}-{:010}", kind.to_uppercase(), self.nodes.len());
        self.nodes.push(NodeDesc {
            name: name.clone(),
            kind: kind.to_owned(),
            parents: parents.iter().map(|p| (*p).to_owned()).collect(),
            topic: None,
            stores: Vec::new(),
        });
        name
    }

    /// Records the topic and stores node `name` uses, for [`Topology::nodes`].
    pub(crate) fn node_uses(&mut self, name: &str, topic: Option<TopicName>, stores: &[&str]) {
        if let Some(n) = self.nodes.iter_mut().rev().find(|n| n.name == name) {
            n.topic = topic;
            n.stores = stores.iter().map(|s| (*s).to_owned()).collect();
        }
    }
}

pub(crate) type SharedGraph = Arc<Mutex<Graph>>;

pub(crate) fn lock(g: &SharedGraph) -> std::sync::MutexGuard<'_, Graph> {
    g.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Builds a topology with Kafka Streams' vocabulary.
///
/// ```
/// use kappa_streams::{StreamsBuilder, Utf8, Materialized, I64};
/// let builder = StreamsBuilder::new();
/// builder
///     .stream("words", Utf8, Utf8)
///     .filter(|_, w: &String| !w.is_empty())
///     .group_by_key(Utf8)
///     .count(Materialized::in_memory("word-counts"))
///     .to("word-counts", Utf8, I64);
/// let topology = builder.build().unwrap();
/// assert!(topology.describe().contains("COUNT"));
/// ```
#[derive(Default)]
pub struct StreamsBuilder {
    graph: SharedGraph,
}

impl StreamsBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn graph(&self) -> &SharedGraph {
        &self.graph
    }

    /// A stream of the records of `topic`; event time is the record timestamp.
    pub fn stream<K: Data, V: Data>(
        &self,
        topic: &str,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
    ) -> KStream<K, V> {
        self.source(topic, key_serde, value_serde, None)
    }

    /// A stream whose event time comes from the records themselves
    /// (`extract(key, value, record_timestamp)`), for windows and stream time.
    ///
    /// ```
    /// # use kappa_streams::{StreamsBuilder, Utf8, Json};
    /// #[derive(serde::Serialize, serde::Deserialize, Clone)]
    /// struct Auth { timestamp: i64 }
    /// let b = StreamsBuilder::new();
    /// let auths = b.stream_with_timestamps("auths", Utf8, Json::<Auth>::new(), |_, a: &Auth, _| a.timestamp);
    /// ```
    pub fn stream_with_timestamps<K: Data, V: Data>(
        &self,
        topic: &str,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
        extract: impl Fn(&K, &V, i64) -> i64 + Send + Sync + 'static,
    ) -> KStream<K, V> {
        self.source(topic, key_serde, value_serde, Some(Arc::new(extract)))
    }

    fn source<K: Data, V: Data>(
        &self,
        topic: &str,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
        timestamps: Option<crate::ops::TimestampExtractor<K, V>>,
    ) -> KStream<K, V> {
        let children = new_children();
        let name = {
            let mut g = lock(&self.graph);
            let name = g.add_node(&format!("source[{topic}]"), &[]);
            g.node_uses(&name, Some(TopicName::Fixed(topic.to_owned())), &[]);
            g.sources.push(Arc::new(SourceOp {
                topic: TopicName::Fixed(topic.to_owned()),
                key_serde: Arc::new(key_serde),
                value_serde: Arc::new(value_serde),
                timestamps,
                children: children.clone(),
            }));
            name
        };
        KStream::new(self.graph.clone(), children, name, false)
    }

    /// A table of the latest value per key of `topic` (tombstones delete),
    /// kept in a store.
    pub fn table<K: Data, V: Data>(
        &self,
        topic: &str,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
        store: Materialized,
    ) -> KTable<K, V> {
        let children = new_children();
        let value_serde: Arc<dyn Serde<V>> = Arc::new(value_serde);
        let name = {
            let mut g = lock(&self.graph);
            let name = g.add_node(&format!("table-source[{topic}]"), &[]);
            g.node_uses(
                &name,
                Some(TopicName::Fixed(topic.to_owned())),
                &[&store.0.name],
            );
            g.stores.push(store.0.clone());
            g.sources.push(Arc::new(TableSourceOp {
                topic: topic.to_owned(),
                store: store.0.name.clone(),
                key_serde: Arc::new(key_serde),
                value_serde: value_serde.clone(),
                children: children.clone(),
            }));
            name
        };
        KTable::new(self.graph.clone(), children, name).materialized(&store.0.name, value_serde)
    }

    /// Checks and freezes the topology.
    ///
    /// # Errors
    ///
    /// [`StreamsError::Topology`] naming every problem found.
    pub fn build(self) -> Result<Topology, StreamsError> {
        let g = std::mem::take(&mut *lock(&self.graph));
        let mut problems = g.errors.clone();
        if g.sources.is_empty() {
            problems.push("it reads no topic; add a stream() or table()".to_owned());
        }
        let mut seen = HashSet::new();
        for s in &g.stores {
            if !seen.insert(&s.name) {
                problems.push(format!("store name {:?} is used twice", s.name));
            }
            if s.name.is_empty() || s.name.contains('/') {
                problems.push(format!(
                    "store name {:?} must be non-empty and contain no '/'",
                    s.name
                ));
            }
        }
        if !problems.is_empty() {
            return Err(StreamsError::Topology(problems.join("; ")));
        }
        Ok(Topology { graph: Arc::new(g) })
    }
}

/// One node of a [`Topology`], as [`Topology::nodes`] describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeDescription {
    /// Unique in the topology (`SOURCE-0000000000`).
    pub name: String,
    /// What it does: `source`, `map`, `aggregate`, `processor`, `sink`...
    pub kind: String,
    /// The kind with its topic or store (`source[commands]`).
    pub label: String,
    /// The nodes it receives records from.
    pub parents: Vec<String>,
    /// The topic it reads (sources) or writes (sinks).
    pub topic: Option<String>,
    /// The stores it reads or writes.
    pub stores: Vec<String>,
}

/// A validated topology, ready to run (see [`crate::Streams`]) or to test
/// (see [`crate::TopologyTestDriver`]).
#[derive(Clone)]
pub struct Topology {
    pub(crate) graph: Arc<Graph>,
}

impl Topology {
    /// The topics read, with internal topics named after `app`.
    pub fn source_topics(&self, app: &str) -> Vec<String> {
        let mut topics: Vec<String> = self.graph.sources.iter().map(|s| s.topic(app)).collect();
        topics.dedup();
        topics
    }

    /// The topics written (outputs and internal topics).
    pub fn sink_topics(&self, app: &str) -> Vec<String> {
        self.graph.sinks.iter().map(|t| t.resolve(app)).collect()
    }

    /// The internal topics (repartitions), named after `app`: the runtime
    /// creates them itself, where inputs must exist beforehand.
    pub(crate) fn internal_topics(&self, app: &str) -> Vec<String> {
        let internal = self.graph.internal_topics.iter();
        internal.map(|s| format!("{app}-{s}")).collect()
    }

    /// The stores declared.
    pub fn stores(&self) -> &[StoreSpec] {
        &self.graph.stores
    }

    /// A readable description: one line per node with its parents.
    pub fn describe(&self) -> String {
        let mut out = String::from("Topology\n");
        for n in &self.graph.nodes {
            if n.parents.is_empty() {
                let _ = writeln!(out, "  {} ({})", n.name, n.kind);
            } else {
                let _ = writeln!(
                    out,
                    "  {} ({}) <-- {}",
                    n.name,
                    n.kind,
                    n.parents.join(", ")
                );
            }
        }
        for s in &self.graph.stores {
            let _ = writeln!(out, "  store {} ({:?})", s.name, s.kind);
        }
        out
    }

    /// The nodes, in the order they were added (parents first), with the
    /// topics and stores each uses; internal topics are named after `app`.
    ///
    /// ```
    /// use kappa_streams::{Materialized, StreamsBuilder, Utf8};
    /// let b = StreamsBuilder::new();
    /// b.table("names", Utf8, Utf8, Materialized::persistent("latest"));
    /// b.stream("clicks", Utf8, Utf8)
    ///     .map_values(|v: String| v.to_uppercase())
    ///     .to("totals", Utf8, Utf8);
    /// let nodes = b.build()?.nodes("app");
    /// assert_eq!(nodes[0].topic.as_deref(), Some("names"));
    /// assert_eq!(nodes[0].stores, ["latest"]);
    /// assert_eq!(nodes[1].kind, "source");
    /// assert_eq!(nodes.last().and_then(|n| n.topic.as_deref()), Some("totals"));
    /// # Ok::<_, kappa_streams::StreamsError>(())
    /// ```
    pub fn nodes(&self, app: &str) -> Vec<NodeDescription> {
        self.graph
            .nodes
            .iter()
            .map(|n| NodeDescription {
                name: n.name.clone(),
                kind: n.kind.split('[').next().unwrap_or(&n.kind).to_owned(),
                label: n.kind.clone(),
                parents: n.parents.clone(),
                topic: n.topic.as_ref().map(|t| t.resolve(app)),
                stores: n.stores.clone(),
            })
            .collect()
    }

    /// The topology as a Mermaid flowchart.
    pub fn describe_mermaid(&self) -> String {
        let mut out = String::from("flowchart TD\n");
        for n in &self.graph.nodes {
            let label = n.kind.replace('"', "'");
            let _ = writeln!(out, "  {}[\"{}\"]", n.name, label);
            for p in &n.parents {
                let _ = writeln!(out, "  {p} --> {}", n.name);
            }
        }
        out
    }
}
