//! Re-grouping a table and aggregating it with an adder and a subtractor:
//! when a row changes, its old value is subtracted from the old group and
//! its new value added to the new group (Kafka Streams' `KGroupedTable`).
//!
//! The change travels through an internal repartition topic, so groups
//! meet in one task whatever the table's own key.

use std::marker::PhantomData;
use std::sync::Arc;

use bytes::Bytes;

use crate::context::TaskContext;
use crate::error::StreamsError;
use crate::kstream::KStream;
use crate::ktable::{KGroupedStream, KTable};
use crate::node::{Data, Node, NodeFactory, TaskInit, add_child, new_children};
use crate::ops::{SourceOp, TopicName};
use crate::serde::{I64, Serde, SerdeError};
use crate::store::{StoreKind, StoreSpec};
use crate::topology::{Materialized, lock};

/// One side of a row change, as it travels to its group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change<V> {
    /// The row's new value joins the group.
    Add(V),
    /// The row's old value leaves the group.
    Subtract(V),
}

/// `0x01` + value for add, `0x00` + value for subtract.
struct ChangeSerde<V>(Arc<dyn Serde<V>>);

impl<V: 'static> Serde<Change<V>> for ChangeSerde<V> {
    fn serialize(&self, value: &Change<V>, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        match value {
            Change::Add(v) => {
                out.push(1);
                self.0.serialize(v, out)
            }
            Change::Subtract(v) => {
                out.push(0);
                self.0.serialize(v, out)
            }
        }
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<Change<V>, SerdeError> {
        match bytes.split_first() {
            Some((1, v)) => Ok(Change::Add(self.0.deserialize(v)?)),
            Some((0, v)) => Ok(Change::Subtract(self.0.deserialize(v)?)),
            _ => Err(SerdeError("not a table change record".to_owned())),
        }
    }
}

/// A table re-grouped by a new key, ready to aggregate.
pub struct KGroupedTable<K2, V2> {
    changes: KGroupedStream<K2, Change<V2>>,
}

impl<K: Data, V: Data> KTable<K, V> {
    /// Re-groups rows by `selector(key, value) -> (group key, value)`.
    /// `table_key_serde` encodes this table's keys, which identify rows.
    ///
    /// ```
    /// # use kappa_streams::{StreamsBuilder, Utf8, Json, Materialized};
    /// let b = StreamsBuilder::new();
    /// // card -> owner; count cards per owner, following re-assignments.
    /// let owners = b.table("card-owners", Utf8, Utf8, Materialized::in_memory("owners"));
    /// let cards_per_owner = owners
    ///     .group_by("by-owner", |card: &String, owner: &String| (owner.clone(), card.clone()), Utf8, Utf8, Utf8)
    ///     .count(Materialized::persistent("cards-per-owner"));
    /// ```
    pub fn group_by<K2: Data, V2: Data>(
        &self,
        name: &str,
        selector: impl Fn(&K, &V) -> (K2, V2) + Send + Sync + 'static,
        table_key_serde: impl Serde<K>,
        key_serde: impl Serde<K2>,
        value_serde: impl Serde<V2>,
    ) -> KGroupedTable<K2, V2> {
        let key_serde: Arc<dyn Serde<K2>> = Arc::new(key_serde);
        let value_serde: Arc<dyn Serde<V2>> = Arc::new(value_serde);
        let topic = TopicName::Internal(format!("{name}-repartition"));
        let previous = format!("{name}-previous");
        add_child(
            self.children(),
            Arc::new(RegroupOp {
                topic: topic.clone(),
                previous: previous.clone(),
                row_key_serde: Arc::new(table_key_serde),
                selector: Arc::new(selector),
                key_serde: key_serde.clone(),
                value_serde: value_serde.clone(),
                _types: PhantomData,
            }),
        );
        let children = new_children();
        let node = {
            let mut g = lock(self.graph());
            let sink = g.add_node(&format!("regroup[{name}]"), &[self.node_name()]);
            g.node_uses(&sink, Some(topic.clone()), &[]);
            let node = g.add_node(&format!("regroup-source[{name}]"), &[&sink]);
            g.node_uses(&node, Some(topic.clone()), &[]);
            g.stores.push(StoreSpec {
                name: previous,
                kind: StoreKind::Persistent,
            });
            g.sinks.push(topic.clone());
            g.internal_topics.push(format!("{name}-repartition"));
            g.sources.push(Arc::new(SourceOp {
                topic,
                key_serde: key_serde.clone(),
                value_serde: Arc::new(ChangeSerde(value_serde)),
                timestamps: None,
                children: children.clone(),
            }));
            node
        };
        let stream: KStream<K2, Change<V2>> =
            KStream::new(self.graph().clone(), children, node, false);
        KGroupedTable {
            changes: KGroupedStream::new(
                stream.graph().clone(),
                stream.children().clone(),
                stream.node_name().to_owned(),
                key_serde,
            ),
        }
    }
}

impl<K2: Data, V2: Data> KGroupedTable<K2, V2> {
    /// Aggregates each group: `adder` for rows joining it, `subtractor` for rows leaving it.
    pub fn aggregate<A: Data>(
        &self,
        store: Materialized,
        agg_serde: impl Serde<A>,
        init: impl Fn() -> A + Send + Sync + 'static,
        adder: impl Fn(&K2, V2, A) -> A + Send + Sync + 'static,
        subtractor: impl Fn(&K2, V2, A) -> A + Send + Sync + 'static,
    ) -> KTable<K2, A> {
        self.changes.fold(
            "table-aggregate",
            store,
            agg_serde,
            move |k, change, acc| {
                let acc = acc.unwrap_or_else(&init);
                match change {
                    Change::Add(v) => adder(k, v, acc),
                    Change::Subtract(v) => subtractor(k, v, acc),
                }
            },
        )
    }

    /// Counts the rows in each group.
    pub fn count(&self, store: Materialized) -> KTable<K2, i64> {
        self.changes
            .fold("table-count", store, I64, |_, change, n| {
                let n = n.unwrap_or(0);
                match change {
                    Change::Add(_) => n + 1,
                    Change::Subtract(_) => n - 1,
                }
            })
    }
}

struct RegroupOp<K, V, K2, V2, F> {
    topic: TopicName,
    previous: String,
    row_key_serde: Arc<dyn Serde<K>>,
    selector: Arc<F>,
    key_serde: Arc<dyn Serde<K2>>,
    value_serde: Arc<dyn Serde<V2>>,
    _types: PhantomData<fn(K, V)>,
}

struct RegroupRun<K, K2, V2, F> {
    topic: Arc<str>,
    previous: usize,
    row_key_serde: Arc<dyn Serde<K>>,
    selector: Arc<F>,
    key_serde: Arc<dyn Serde<K2>>,
    change_serde: ChangeSerde<V2>,
}

// The factory asks only what its node asks (stated once, on the node's
// impl) and what sharing the selector between tasks asks.
impl<K, V, K2, V2, F> NodeFactory<K, Option<V>> for RegroupOp<K, V, K2, V2, F>
where
    F: Send + Sync,
    RegroupRun<K, K2, V2, F>: Node<K, Option<V>> + 'static,
{
    fn build(&self, init: &TaskInit<'_>) -> Result<Box<dyn Node<K, Option<V>>>, StreamsError> {
        Ok(Box::new(RegroupRun {
            topic: self.topic.resolve(init.app).into(),
            previous: init.store(&self.previous)?,
            row_key_serde: self.row_key_serde.clone(),
            selector: self.selector.clone(),
            key_serde: self.key_serde.clone(),
            change_serde: ChangeSerde(self.value_serde.clone()),
        }))
    }
}

/// The previous mapping of a row: `len u32 | group key | value`, as encoded for the repartition topic.
fn split_previous(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_be_bytes(b.get(..4)?.try_into().ok()?) as usize;
    Some((b.get(4..4 + len)?, b.get(4 + len..)?))
}

impl<K, V, K2, V2, F> Node<K, Option<V>> for RegroupRun<K, K2, V2, F>
where
    K: Data,
    V: Data,
    K2: Data,
    V2: Data,
    F: Fn(&K, &V) -> (K2, V2) + Send + Sync + 'static,
{
    fn process(
        &mut self,
        ctx: &mut TaskContext,
        key: K,
        value: Option<V>,
    ) -> Result<(), StreamsError> {
        let row_id = ctx.encode(&*self.row_key_serde, &key, "table key")?;
        if let Some(previous) = ctx.store_get(self.previous, &row_id)?
            && let Some((group, value)) = split_previous(&previous)
        {
            let mut change = vec![0u8];
            change.extend_from_slice(value);
            ctx.emit(
                &self.topic,
                Some(Bytes::copy_from_slice(group)),
                Some(Bytes::from(change)),
            );
        }
        match &value {
            Some(v) => {
                let (group, mapped) = (self.selector)(&key, v);
                let group = ctx.encode(&*self.key_serde, &group, "group key")?;
                let change = ctx.encode(&self.change_serde, &Change::Add(mapped), "group value")?;
                let mut previous = Vec::with_capacity(4 + group.len() + change.len());
                previous.extend_from_slice(&(group.len() as u32).to_be_bytes());
                previous.extend_from_slice(&group);
                previous.extend_from_slice(&change[1..]);
                ctx.store_put(self.previous, row_id, Some(Bytes::from(previous)));
                ctx.emit(&self.topic, Some(group), Some(change));
            }
            None => ctx.store_put(self.previous, row_id, None),
        }
        Ok(())
    }
}
