//! The node kinds: sources, stateless transforms, sinks, aggregations.

use std::marker::PhantomData;
use std::sync::Arc;

use bytes::Bytes;
use kappa_log::{Header, Record};

use crate::context::TaskContext;
use crate::error::StreamsError;
use crate::node::{
    Children, Data, Forward, Node, NodeFactory, SourceFactory, SourceNode, TaskInit,
};
use crate::serde::Serde;

/// Header added to dead-letter records: why the record could not be decoded.
pub const ERROR_HEADER: &str = "kappa-error";

/// A topic named by the user, or an internal one named after the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TopicName {
    Fixed(String),
    /// `<app>-<suffix>`
    Internal(String),
}

impl TopicName {
    pub(crate) fn resolve(&self, app: &str) -> String {
        match self {
            Self::Fixed(t) => t.clone(),
            Self::Internal(suffix) => format!("{app}-{suffix}"),
        }
    }
}

/// Decodes a record's key or value; `None` when the policy sent it to the dead-letter topic.
fn decode<T: 'static>(
    ctx: &mut TaskContext,
    dead_letter: Option<&Arc<str>>,
    record: &Record,
    serde: &dyn Serde<T>,
    bytes: Option<&Bytes>,
    what: &'static str,
) -> Result<Option<T>, StreamsError> {
    match serde.deserialize(bytes.map_or(&[][..], |b| &b[..])) {
        Ok(v) => Ok(Some(v)),
        Err(e) => match dead_letter {
            Some(topic) => {
                ctx.emit(topic, record.key.clone(), record.value.clone());
                if let Some((_, out)) = ctx.outputs.last_mut() {
                    out.headers.push(Header::new(
                        ERROR_HEADER,
                        format!("cannot decode the {what}: {}", e.0),
                    ));
                }
                tracing::warn!(position = %record.position(), what, error = %e, "undecodable record sent to the dead-letter topic");
                Ok(None)
            }
            None => Err(StreamsError::Deserialize {
                position: record.position(),
                what,
                detail: e.0,
            }),
        },
    }
}

/// Computes a record's event time from its key, value and stored timestamp.
pub type TimestampExtractor<K, V> = Arc<dyn Fn(&K, &V, i64) -> i64 + Send + Sync>;

pub(crate) struct SourceOp<K, V> {
    pub(crate) topic: TopicName,
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) value_serde: Arc<dyn Serde<V>>,
    pub(crate) timestamps: Option<TimestampExtractor<K, V>>,
    pub(crate) children: Children<K, V>,
}

/// How a source decodes its records in one task: the serdes, and where
/// the records that do not decode go.
struct Decoder<K, V> {
    key_serde: Arc<dyn Serde<K>>,
    value_serde: Arc<dyn Serde<V>>,
    dead_letter: Option<Arc<str>>,
}

impl<K: 'static, V: 'static> Decoder<K, V> {
    fn new(
        key_serde: &Arc<dyn Serde<K>>,
        value_serde: &Arc<dyn Serde<V>>,
        init: &TaskInit<'_>,
    ) -> Self {
        Self {
            key_serde: key_serde.clone(),
            value_serde: value_serde.clone(),
            dead_letter: init.dead_letter_topic.clone(),
        }
    }

    /// The record's key; `None` when it went to the dead-letter topic.
    fn key(&self, ctx: &mut TaskContext, r: &Record) -> Result<Option<K>, StreamsError> {
        let dl = self.dead_letter.as_ref();
        decode(ctx, dl, r, &*self.key_serde, r.key.as_ref(), "key")
    }

    /// The record's value; `None` when it went to the dead-letter topic.
    fn value(&self, ctx: &mut TaskContext, r: &Record) -> Result<Option<V>, StreamsError> {
        let dl = self.dead_letter.as_ref();
        decode(ctx, dl, r, &*self.value_serde, r.value.as_ref(), "value")
    }
}

struct SourceRun<K, V> {
    decoder: Decoder<K, V>,
    timestamps: Option<TimestampExtractor<K, V>>,
    forward: Forward<K, V>,
}

impl<K: Data, V: Data> SourceFactory for SourceOp<K, V> {
    fn topic(&self, app: &str) -> String {
        self.topic.resolve(app)
    }

    fn build(&self, init: &TaskInit<'_>) -> Result<Box<dyn SourceNode>, StreamsError> {
        Ok(Box::new(SourceRun {
            decoder: Decoder::new(&self.key_serde, &self.value_serde, init),
            timestamps: self.timestamps.clone(),
            forward: Forward::build(&self.children, init)?,
        }))
    }
}

impl<K: Data, V: Data> SourceNode for SourceRun<K, V> {
    fn process(&mut self, ctx: &mut TaskContext, r: &Record) -> Result<(), StreamsError> {
        let Some(key) = self.decoder.key(ctx, r)? else {
            return Ok(());
        };
        let Some(value) = self.decoder.value(ctx, r)? else {
            return Ok(());
        };
        let timestamp = match &self.timestamps {
            Some(extract) => extract(&key, &value, r.timestamp),
            None => r.timestamp,
        };
        ctx.observe_timestamp(timestamp);
        self.forward.send(ctx, key, value)
    }

    fn tick(&mut self, ctx: &mut TaskContext, now_ms: i64) -> Result<(), StreamsError> {
        self.forward.tick(ctx, now_ms)
    }
}

/// A table read from a topic: upserts and tombstones into a store, forwarded as changes.
pub(crate) struct TableSourceOp<K, V> {
    pub(crate) topic: String,
    pub(crate) store: String,
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) value_serde: Arc<dyn Serde<V>>,
    pub(crate) children: Children<K, Option<V>>,
}

struct TableSourceRun<K, V> {
    store: usize,
    decoder: Decoder<K, V>,
    forward: Forward<K, Option<V>>,
}

impl<K: Data, V: Data> SourceFactory for TableSourceOp<K, V> {
    fn topic(&self, _app: &str) -> String {
        self.topic.clone()
    }

    fn build(&self, init: &TaskInit<'_>) -> Result<Box<dyn SourceNode>, StreamsError> {
        Ok(Box::new(TableSourceRun {
            store: init.store(&self.store)?,
            decoder: Decoder::new(&self.key_serde, &self.value_serde, init),
            forward: Forward::build(&self.children, init)?,
        }))
    }
}

impl<K: Data, V: Data> SourceNode for TableSourceRun<K, V> {
    fn process(&mut self, ctx: &mut TaskContext, r: &Record) -> Result<(), StreamsError> {
        let Some(key) = self.decoder.key(ctx, r)? else {
            return Ok(());
        };
        // Stored under the serde's encoding of the key, as lookups encode it,
        // so two encodings of one key (JSON field order) are one row.
        let key_bytes = ctx.encode(&*self.decoder.key_serde, &key, "store key")?;
        let value = match &r.value {
            None => None,
            Some(_) => match self.decoder.value(ctx, r)? {
                Some(v) => Some(v),
                None => return Ok(()),
            },
        };
        ctx.observe_timestamp(r.timestamp);
        ctx.store_put(self.store, key_bytes, r.value.clone());
        self.forward.send(ctx, key, value)
    }

    fn tick(&mut self, ctx: &mut TaskContext, now_ms: i64) -> Result<(), StreamsError> {
        self.forward.tick(ctx, now_ms)
    }
}

/// A stateless step: `f` turns one record into zero or more.
pub(crate) struct StatelessOp<K, V, K2, V2, F> {
    pub(crate) f: Arc<F>,
    pub(crate) children: Children<K2, V2>,
    pub(crate) _types: PhantomData<fn(K, V)>,
}

struct StatelessRun<K2, V2, F> {
    f: Arc<F>,
    out: Vec<(K2, V2)>,
    forward: Forward<K2, V2>,
}

impl<K, V, K2, V2, F> NodeFactory<K, V> for StatelessOp<K, V, K2, V2, F>
where
    K: Data,
    V: Data,
    K2: Data,
    V2: Data,
    F: Fn(K, V, &mut Vec<(K2, V2)>) + Send + Sync + 'static,
{
    fn build(&self, init: &TaskInit<'_>) -> Result<Box<dyn Node<K, V>>, StreamsError> {
        Ok(Box::new(StatelessRun {
            f: self.f.clone(),
            out: Vec::new(),
            forward: Forward::build(&self.children, init)?,
        }))
    }
}

impl<K, V, K2, V2, F> Node<K, V> for StatelessRun<K2, V2, F>
where
    K2: Data,
    V2: Data,
    F: Fn(K, V, &mut Vec<(K2, V2)>) + Send + Sync + 'static,
{
    fn process(&mut self, ctx: &mut TaskContext, key: K, value: V) -> Result<(), StreamsError> {
        (self.f)(key, value, &mut self.out);
        for (k, v) in self.out.drain(..) {
            self.forward.send(ctx, k, v)?;
        }
        Ok(())
    }

    fn tick(&mut self, ctx: &mut TaskContext, now_ms: i64) -> Result<(), StreamsError> {
        self.forward.tick(ctx, now_ms)
    }
}

/// Writes records to a topic (`None` values become tombstones).
pub(crate) struct SinkOp<K, V> {
    pub(crate) topic: TopicName,
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) value_serde: Arc<dyn Serde<V>>,
}

struct SinkRun<K, V> {
    topic: Arc<str>,
    key_serde: Arc<dyn Serde<K>>,
    value_serde: Arc<dyn Serde<V>>,
}

impl<K: Data, V: Data> NodeFactory<K, Option<V>> for SinkOp<K, V> {
    fn build(&self, init: &TaskInit<'_>) -> Result<Box<dyn Node<K, Option<V>>>, StreamsError> {
        Ok(Box::new(SinkRun {
            topic: self.topic.resolve(init.app).into(),
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
        }))
    }
}

impl<K: Data, V: Data> Node<K, Option<V>> for SinkRun<K, V> {
    fn process(
        &mut self,
        ctx: &mut TaskContext,
        key: K,
        value: Option<V>,
    ) -> Result<(), StreamsError> {
        let k = ctx.encode(&*self.key_serde, &key, "key")?;
        let v = match &value {
            Some(v) => Some(ctx.encode(&*self.value_serde, v, "value")?),
            None => None,
        };
        ctx.emit(&self.topic, Some(k), v);
        Ok(())
    }
}

/// Folds each key's records into a stored aggregate and forwards the new
/// value. `f` gets the stored aggregate, or `None` for a key's first record.
pub(crate) struct AggregateOp<K, V, A, F> {
    pub(crate) store: String,
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) agg_serde: Arc<dyn Serde<A>>,
    pub(crate) f: Arc<F>,
    pub(crate) children: Children<K, Option<A>>,
    pub(crate) _types: PhantomData<fn(V)>,
}

struct AggregateRun<K, A, F> {
    store: usize,
    key_serde: Arc<dyn Serde<K>>,
    agg_serde: Arc<dyn Serde<A>>,
    f: Arc<F>,
    forward: Forward<K, Option<A>>,
}

impl<K, V, A, F> NodeFactory<K, V> for AggregateOp<K, V, A, F>
where
    K: Data,
    V: Data,
    A: Data,
    F: Fn(&K, V, Option<A>) -> A + Send + Sync + 'static,
{
    fn build(&self, init: &TaskInit<'_>) -> Result<Box<dyn Node<K, V>>, StreamsError> {
        Ok(Box::new(AggregateRun {
            store: init.store(&self.store)?,
            key_serde: self.key_serde.clone(),
            agg_serde: self.agg_serde.clone(),
            f: self.f.clone(),
            forward: Forward::build(&self.children, init)?,
        }))
    }
}

impl<K, V, A, F> Node<K, V> for AggregateRun<K, A, F>
where
    K: Data,
    A: Data,
    F: Fn(&K, V, Option<A>) -> A + Send + Sync + 'static,
{
    fn process(&mut self, ctx: &mut TaskContext, key: K, value: V) -> Result<(), StreamsError> {
        let key_bytes = ctx.encode(&*self.key_serde, &key, "store key")?;
        let current = ctx.store_get_decoded(self.store, &key_bytes, &*self.agg_serde)?;
        let next = (self.f)(&key, value, current);
        let encoded = ctx.encode(&*self.agg_serde, &next, "aggregate")?;
        ctx.store_put(self.store, key_bytes, Some(encoded));
        self.forward.send(ctx, key, Some(next))
    }

    fn tick(&mut self, ctx: &mut TaskContext, now_ms: i64) -> Result<(), StreamsError> {
        self.forward.tick(ctx, now_ms)
    }
}

/// Writes a stream's records to a topic.
pub(crate) struct StreamSinkOp<K, V>(pub(crate) SinkOp<K, V>);

struct StreamSinkRun<K, V>(SinkRun<K, V>);

impl<K: Data, V: Data> NodeFactory<K, V> for StreamSinkOp<K, V> {
    fn build(&self, init: &TaskInit<'_>) -> Result<Box<dyn Node<K, V>>, StreamsError> {
        Ok(Box::new(StreamSinkRun(SinkRun {
            topic: self.0.topic.resolve(init.app).into(),
            key_serde: self.0.key_serde.clone(),
            value_serde: self.0.value_serde.clone(),
        })))
    }
}

impl<K: Data, V: Data> Node<K, V> for StreamSinkRun<K, V> {
    fn process(&mut self, ctx: &mut TaskContext, key: K, value: V) -> Result<(), StreamsError> {
        let sink = &self.0;
        let k = ctx.encode(&*sink.key_serde, &key, "key")?;
        let v = ctx.encode(&*sink.value_serde, &value, "value")?;
        ctx.emit(&sink.topic, Some(k), Some(v));
        Ok(())
    }
}
