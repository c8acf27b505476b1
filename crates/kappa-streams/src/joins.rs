//! Joins: stream–table (inner, left) and table–table (inner, left, outer),
//! with Kafka Streams' semantics. Both sides are read in the same task, so
//! their topics must have equal partition counts (checked at start).
//!
//! * Stream–table: each stream record looks up the table's current row for
//!   its key; table updates alone emit nothing.
//! * Table–table: an update on either side looks up the other side's row
//!   and emits the new joined row, or a deletion when the join no longer
//!   holds.

use std::marker::PhantomData;
use std::sync::Arc;

use crate::context::TaskContext;
use crate::error::StreamsError;
use crate::kstream::KStream;
use crate::ktable::KTable;
use crate::node::{Children, Data, Forward, Node, NodeFactory, TaskInit, add_child, new_children};
use crate::serde::Serde;
use crate::topology::lock;

/// Looks each record up in a store and combines: `f(record, row)`; `None` drops.
struct LookupOp<K, V, T, R, F> {
    store: String,
    lookup: Arc<Lookup<K, T, F>>,
    children: Children<K, R>,
    _types: PhantomData<fn(V)>,
}

/// A lookup's serdes and function, shared by the node of every task.
struct Lookup<K, T, F> {
    key_serde: Arc<dyn Serde<K>>,
    row_serde: Arc<dyn Serde<T>>,
    f: F,
}

struct LookupRun<K, T, R, F> {
    store: usize,
    lookup: Arc<Lookup<K, T, F>>,
    forward: Forward<K, R>,
}

// The factory asks only what its node asks (stated once, on the node's
// impl) and what sharing the function between tasks asks.
impl<K, V, T, R, F> NodeFactory<K, V> for LookupOp<K, V, T, R, F>
where
    K: Data,
    R: Data,
    F: Send + Sync,
    LookupRun<K, T, R, F>: Node<K, V> + 'static,
{
    fn build(&self, init: &TaskInit<'_>) -> Result<Box<dyn Node<K, V>>, StreamsError> {
        Ok(Box::new(LookupRun {
            store: init.store(&self.store)?,
            lookup: self.lookup.clone(),
            forward: Forward::build(&self.children, init)?,
        }))
    }
}

impl<K, V, T, R, F> Node<K, V> for LookupRun<K, T, R, F>
where
    K: Data,
    T: Data,
    R: Data,
    F: Fn(V, Option<T>) -> Option<R> + Send + Sync + 'static,
{
    fn process(&mut self, ctx: &mut TaskContext, key: K, value: V) -> Result<(), StreamsError> {
        let lookup = &*self.lookup;
        let key_bytes = ctx.encode(&*lookup.key_serde, &key, "store key")?;
        let row = ctx.store_get_decoded(self.store, &key_bytes, &*lookup.row_serde)?;
        match (lookup.f)(value, row) {
            Some(r) => self.forward.send(ctx, key, r),
            None => Ok(()),
        }
    }

    fn tick(&mut self, ctx: &mut TaskContext, now_ms: i64) -> Result<(), StreamsError> {
        self.forward.tick(ctx, now_ms)
    }
}

fn lookup<K: Data, V: Data, T: Data, R: Data>(
    parent: &Children<K, V>,
    store: (String, Arc<dyn Serde<T>>),
    key_serde: Arc<dyn Serde<K>>,
    children: Children<K, R>,
    f: impl Fn(V, Option<T>) -> Option<R> + Send + Sync + 'static,
) {
    add_child(
        parent,
        Arc::new(LookupOp {
            store: store.0,
            lookup: Arc::new(Lookup {
                key_serde,
                row_serde: store.1,
                f,
            }),
            children,
            _types: PhantomData,
        }),
    );
}

impl<K: Data, V: Data> KStream<K, V> {
    /// Inner stream–table join: each record with a row in `table` becomes
    /// `joiner(value, row)`; records without a row are dropped.
    ///
    /// ```
    /// # use kappa_streams::{StreamsBuilder, Utf8, Json, Materialized};
    /// let b = StreamsBuilder::new();
    /// let limits = b.table("limits", Utf8, Json::<u64>::new(), Materialized::in_memory("limits"));
    /// let over = b
    ///     .stream("spends", Utf8, Json::<u64>::new())
    ///     .join(&limits, Utf8, |spent, limit| spent > limit);
    /// ```
    pub fn join<T: Data, R: Data>(
        &self,
        table: &KTable<K, T>,
        key_serde: impl Serde<K>,
        joiner: impl Fn(V, T) -> R + Send + Sync + 'static,
    ) -> KStream<K, R> {
        self.table_lookup("join", table, key_serde, move |v, t: Option<T>| {
            t.map(|t| joiner(v, t))
        })
    }

    /// Left stream–table join: every record becomes `joiner(value, row or None)`.
    pub fn left_join<T: Data, R: Data>(
        &self,
        table: &KTable<K, T>,
        key_serde: impl Serde<K>,
        joiner: impl Fn(V, Option<T>) -> R + Send + Sync + 'static,
    ) -> KStream<K, R> {
        self.table_lookup("left-join", table, key_serde, move |v, t| {
            Some(joiner(v, t))
        })
    }

    fn table_lookup<T: Data, R: Data>(
        &self,
        kind: &str,
        table: &KTable<K, T>,
        key_serde: impl Serde<K>,
        f: impl Fn(V, Option<T>) -> Option<R> + Send + Sync + 'static,
    ) -> KStream<K, R> {
        self.require_partitioned_by_key("a table join");
        let children = new_children();
        if let Some(store) = table.store_for_join() {
            lookup(
                self.children(),
                store,
                Arc::new(key_serde),
                children.clone(),
                f,
            );
        }
        let name = lock(self.graph()).add_node(kind, &[self.node_name(), table.node_name()]);
        KStream::new(self.graph().clone(), children, name, false)
    }
}

impl<K: Data, V: Data> KTable<K, V> {
    /// Inner table–table join: a row exists while both sides have one. An
    /// update while the other side has no row emits nothing (as Kafka).
    pub fn join<T: Data, R: Data>(
        &self,
        other: &KTable<K, T>,
        key_serde: impl Serde<K>,
        joiner: impl Fn(V, T) -> R + Send + Sync + 'static,
    ) -> KTable<K, R> {
        let joiner = Arc::new(joiner);
        let j = joiner.clone();
        self.table_join(
            "table-join",
            other,
            key_serde,
            move |v, t| t.map(|t| v.map(|v| j(v, t))),
            move |t, v| v.map(|v| t.map(|t| joiner(v, t))),
        )
    }

    /// Left table–table join: a row exists while this side has one; updates
    /// of the other side while this side has none emit nothing.
    pub fn left_join<T: Data, R: Data>(
        &self,
        other: &KTable<K, T>,
        key_serde: impl Serde<K>,
        joiner: impl Fn(V, Option<T>) -> R + Send + Sync + 'static,
    ) -> KTable<K, R> {
        let joiner = Arc::new(joiner);
        let j = joiner.clone();
        self.table_join(
            "table-left-join",
            other,
            key_serde,
            move |v, t| Some(v.map(|v| j(v, t))),
            move |t, v| v.map(|v| Some(joiner(v, t))),
        )
    }

    /// Outer table–table join: a row exists while either side has one.
    pub fn outer_join<T: Data, R: Data>(
        &self,
        other: &KTable<K, T>,
        key_serde: impl Serde<K>,
        joiner: impl Fn(Option<V>, Option<T>) -> R + Send + Sync + 'static,
    ) -> KTable<K, R> {
        let joiner = Arc::new(joiner);
        let j = joiner.clone();
        let both = move |v: Option<V>, t: Option<T>, j: &dyn Fn(Option<V>, Option<T>) -> R| {
            Some(if v.is_none() && t.is_none() {
                None
            } else {
                Some(j(v, t))
            })
        };
        self.table_join(
            "table-outer-join",
            other,
            key_serde,
            move |v, t| both(v, t, &*j),
            move |t, v| both(v, t, &*joiner),
        )
    }

    /// Each side's changes look up the other side's row. The closures give
    /// `None` to emit nothing, `Some(None)` for a deletion, `Some(Some(r))`
    /// for a joined row.
    fn table_join<T: Data, R: Data>(
        &self,
        kind: &str,
        other: &KTable<K, T>,
        key_serde: impl Serde<K>,
        on_this: impl Fn(Option<V>, Option<T>) -> Option<Option<R>> + Send + Sync + 'static,
        on_other: impl Fn(Option<T>, Option<V>) -> Option<Option<R>> + Send + Sync + 'static,
    ) -> KTable<K, R> {
        let children: Children<K, Option<R>> = new_children();
        let key_serde: Arc<dyn Serde<K>> = Arc::new(key_serde);
        if let (Some(mine), Some(theirs)) = (self.store_for_join(), other.store_for_join()) {
            lookup(
                self.children(),
                theirs,
                key_serde.clone(),
                children.clone(),
                on_this,
            );
            lookup(
                other.children(),
                mine,
                key_serde,
                children.clone(),
                on_other,
            );
        }
        let name = lock(self.graph()).add_node(kind, &[self.node_name(), other.node_name()]);
        KTable::new(self.graph().clone(), children, name)
    }
}
