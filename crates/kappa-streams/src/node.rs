//! The runtime shape of a topology: typed nodes built per task from
//! factories the DSL registers.
//!
//! Each `KStream<K, V>` owns a list of child factories; an operation adds a
//! factory to its parent's list and returns a stream with a list of its
//! own. When a task starts, each source builds its subtree, so records flow
//! through plain typed calls (`Box<dyn Node<K, V>>`), with no per-record
//! boxing or type erasure between nodes.

use std::sync::{Arc, Mutex};

use kappa_log::Record;

use crate::context::TaskContext;
use crate::error::StreamsError;

/// Values that flow between nodes.
pub trait Data: Clone + Send + 'static {}
impl<T: Clone + Send + 'static> Data for T {}

/// A node processing typed records.
pub(crate) trait Node<K, V>: Send {
    fn process(&mut self, ctx: &mut TaskContext, key: K, value: V) -> Result<(), StreamsError>;

    /// Wall-clock time passed (for wall-clock punctuators); nodes with
    /// children pass it on.
    fn tick(&mut self, _ctx: &mut TaskContext, _now_ms: i64) -> Result<(), StreamsError> {
        Ok(())
    }
}

/// What a task needs to build its nodes.
pub(crate) struct TaskInit<'a> {
    /// The application id (internal topics are named after it).
    pub(crate) app: &'a str,
    /// Store names; a node's store is its index here.
    pub(crate) store_names: &'a [String],
    /// Where undecodable input goes, if not failing.
    pub(crate) dead_letter_topic: Option<Arc<str>>,
}

impl TaskInit<'_> {
    pub(crate) fn store(&self, name: &str) -> Result<usize, StreamsError> {
        self.store_names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| StreamsError::Topology(format!("store {name:?} is not declared")))
    }
}

/// Builds one node (and, through its children, its subtree) for a task.
pub(crate) trait NodeFactory<K, V>: Send + Sync {
    fn build(&self, init: &TaskInit<'_>) -> Result<Box<dyn Node<K, V>>, StreamsError>;
}

/// The child factories of a stream, filled in as the DSL is used.
pub(crate) type Children<K, V> = Arc<Mutex<Vec<Arc<dyn NodeFactory<K, V>>>>>;

pub(crate) fn new_children<K, V>() -> Children<K, V> {
    Arc::new(Mutex::new(Vec::new()))
}

pub(crate) fn add_child<K, V>(children: &Children<K, V>, f: Arc<dyn NodeFactory<K, V>>) {
    children
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(f);
}

/// A node's built children.
pub(crate) struct Forward<K, V> {
    children: Vec<Box<dyn Node<K, V>>>,
}

impl<K: Data, V: Data> Forward<K, V> {
    pub(crate) fn build(
        children: &Children<K, V>,
        init: &TaskInit<'_>,
    ) -> Result<Self, StreamsError> {
        let factories = children
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut built = Vec::with_capacity(factories.len());
        for f in factories {
            built.push(f.build(init)?);
        }
        Ok(Self { children: built })
    }

    /// Passes wall-clock time to every child.
    pub(crate) fn tick(&mut self, ctx: &mut TaskContext, now_ms: i64) -> Result<(), StreamsError> {
        for child in &mut self.children {
            child.tick(ctx, now_ms)?;
        }
        Ok(())
    }

    /// Sends a record to every child; the last one gets it without a clone.
    pub(crate) fn send(
        &mut self,
        ctx: &mut TaskContext,
        key: K,
        value: V,
    ) -> Result<(), StreamsError> {
        let Some((last, rest)) = self.children.split_last_mut() else {
            return Ok(());
        };
        for child in rest {
            child.process(ctx, key.clone(), value.clone())?;
        }
        last.process(ctx, key, value)
    }
}

/// Where records enter: decodes a log record and sends it down.
pub(crate) trait SourceNode: Send {
    fn process(&mut self, ctx: &mut TaskContext, record: &Record) -> Result<(), StreamsError>;

    /// Wall-clock time passed; see [`Node::tick`].
    fn tick(&mut self, ctx: &mut TaskContext, now_ms: i64) -> Result<(), StreamsError>;
}

/// Builds a source for a task.
pub(crate) trait SourceFactory: Send + Sync {
    /// The topic read, given the application id (internal topics are named after it).
    fn topic(&self, app: &str) -> String;
    fn build(&self, init: &TaskInit<'_>) -> Result<Box<dyn SourceNode>, StreamsError>;
}
