//! What a node sees while it processes a record: the record's metadata,
//! the task's stores, and the buffer of records to emit.

use std::sync::Arc;

use bytes::Bytes;
use kappa_log::{Header, Log, Position, ProducerRecord, Record};

use crate::error::StreamsError;
use crate::provenance::{CAUSATION_HEADER, CORRELATION_HEADER, SOURCE_HEADER};
use crate::serde::Serde;
use crate::store::TaskStore;

/// Store key of a node's own stream time: 7 bytes, shorter than any entry
/// key of the stores that use it (window, session and join entries).
pub(crate) const NODE_STREAM_TIME_KEY: &[u8] = b"!stream";

/// The input record being processed.
#[derive(Clone, Debug)]
pub(crate) struct Current {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: u32,
    pub(crate) offset: u64,
    pub(crate) timestamp: i64,
    /// `topic/partition/offset` of the input, shared by every output it causes.
    pub(crate) source: Bytes,
    pub(crate) correlation: Bytes,
    /// The input's raw key and value, for records forwarded unchanged (late records).
    pub(crate) key: Option<Bytes>,
    pub(crate) value: Option<Bytes>,
    /// Counts entries derived from this input (join buffers), so several
    /// derived from one input get distinct, replay-stable ids.
    pub(crate) derived: u32,
}

/// One task's processing state. Nodes get `&mut TaskContext`.
pub struct TaskContext {
    pub(crate) log: Arc<dyn Log>,
    pub(crate) current: Current,
    pub(crate) outputs: Vec<(Arc<str>, ProducerRecord)>,
    pub(crate) stores: Vec<TaskStore>,
    /// Largest record timestamp this task has seen.
    pub(crate) stream_time: i64,
    pub(crate) value_buf: Vec<u8>,
    /// Records that arrived after all their windows closed.
    pub(crate) late_records: u64,
    /// Time indexes shared by the nodes of one task that share a store (the
    /// two sides of a stream–stream join), by store index.
    pub(crate) time_indexes:
        std::collections::HashMap<usize, std::collections::BTreeSet<(i64, Bytes)>>,
    /// The global tables, shared by every task of the application.
    pub(crate) globals: Arc<crate::global::GlobalStores>,
    /// Set (to the application id) while the current record is below its
    /// partition's replay mark: outputs except to internal topics are dropped.
    pub(crate) replaying: Option<Arc<str>>,
}

impl TaskContext {
    pub(crate) fn new(
        log: Arc<dyn Log>,
        stores: Vec<TaskStore>,
        globals: Arc<crate::global::GlobalStores>,
    ) -> Self {
        Self {
            log,
            current: Current {
                topic: Arc::from(""),
                partition: 0,
                offset: 0,
                timestamp: 0,
                source: Bytes::new(),
                correlation: Bytes::new(),
                key: None,
                value: None,
                derived: 0,
            },
            outputs: Vec::new(),
            stores,
            stream_time: i64::MIN,
            value_buf: Vec::new(),
            late_records: 0,
            time_indexes: std::collections::HashMap::new(),
            globals,
            replaying: None,
        }
    }

    pub(crate) fn set_current(&mut self, r: &Record) {
        let source = Bytes::from(format!("{}/{}/{}", r.topic, r.partition, r.offset));
        let correlation = r
            .header(CORRELATION_HEADER)
            .cloned()
            .unwrap_or_else(|| source.clone());
        self.current = Current {
            topic: r.topic.clone(),
            partition: r.partition,
            offset: r.offset,
            timestamp: r.timestamp,
            source,
            correlation,
            key: r.key.clone(),
            value: r.value.clone(),
            derived: 0,
        };
    }

    /// Records emitted by a punctuation name it as their source; returns the
    /// record context to restore afterwards.
    pub(crate) fn begin_punctuation(
        &mut self,
        kind: crate::processor::Punctuation,
        time: i64,
    ) -> Current {
        let source = crate::processor::punctuation_source(kind, time);
        let punctuation = Current {
            topic: self.current.topic.clone(),
            partition: self.current.partition,
            offset: self.current.offset,
            timestamp: if kind == crate::processor::Punctuation::StreamTime {
                time
            } else {
                self.stream_time.max(0)
            },
            correlation: source.clone(),
            source,
            key: None,
            value: None,
            derived: 0,
        };
        std::mem::replace(&mut self.current, punctuation)
    }

    pub(crate) fn end_punctuation(&mut self, saved: Current) {
        self.current = saved;
    }

    /// Runs `f` with the stream time of one stateful node instead of the
    /// task's: the largest event time that node has seen, kept in its store
    /// (so it survives restarts). A task also reads repartition and table
    /// topics; their records must not close another node's windows.
    pub(crate) fn with_node_stream_time<R>(
        &mut self,
        store: usize,
        f: impl FnOnce(&mut Self) -> Result<R, StreamsError>,
    ) -> Result<R, StreamsError> {
        let stored = self
            .store_get(store, NODE_STREAM_TIME_KEY)?
            .and_then(|b| <[u8; 8]>::try_from(&b[..]).ok())
            .map_or(i64::MIN, i64::from_be_bytes);
        let observed = stored.max(self.current.timestamp);
        if observed != stored {
            self.store_put(
                store,
                Bytes::from_static(NODE_STREAM_TIME_KEY),
                Some(Bytes::copy_from_slice(&observed.to_be_bytes())),
            );
        }
        let task_time = std::mem::replace(&mut self.stream_time, observed);
        let result = f(self);
        self.stream_time = task_time;
        result
    }

    /// Sets the current record's event time (the record timestamp, or what
    /// a timestamp extractor made of it) and advances stream time.
    pub(crate) fn observe_timestamp(&mut self, timestamp: i64) {
        self.current.timestamp = timestamp;
        self.stream_time = self.stream_time.max(timestamp);
    }

    /// The position of the input record being processed.
    pub fn position(&self) -> Position {
        Position {
            topic: self.current.topic.clone(),
            partition: self.current.partition,
            offset: self.current.offset,
        }
    }

    /// A number unique among entries derived from the current input, the
    /// same on every replay of it.
    pub(crate) fn next_derived(&mut self) -> u32 {
        self.current.derived += 1;
        self.current.derived
    }

    /// The event time of the input record being processed.
    pub fn timestamp(&self) -> i64 {
        self.current.timestamp
    }

    /// The task's stream time: the largest timestamp it has processed.
    pub fn stream_time(&self) -> i64 {
        self.stream_time
    }

    /// Queues a record for `topic`, stamped with the input's timestamp and
    /// provenance headers; it is written with the task's next commit.
    pub(crate) fn emit(&mut self, topic: &Arc<str>, key: Option<Bytes>, value: Option<Bytes>) {
        let replayed = match &self.replaying {
            // Rebuilding state: this output was written the first time.
            Some(app) if !crate::store::is_internal_topic(app, topic) => return,
            Some(_) => true,
            None => false,
        };
        let mut headers = vec![
            Header::new(SOURCE_HEADER, self.current.source.clone()),
            Header::new(CAUSATION_HEADER, self.current.source.clone()),
            Header::new(CORRELATION_HEADER, self.current.correlation.clone()),
        ];
        if replayed {
            headers.push(Header::new(crate::runtime::REPLAY_HEADER, "1"));
        }
        self.outputs.push((
            topic.clone(),
            ProducerRecord {
                key,
                value,
                headers,
                timestamp: Some(self.current.timestamp),
            },
        ));
    }

    /// Serializes with a serde into a fresh `Bytes`, naming the input on failure.
    pub(crate) fn encode<T: 'static>(
        &mut self,
        serde: &dyn Serde<T>,
        value: &T,
        what: &'static str,
    ) -> Result<Bytes, StreamsError> {
        self.value_buf.clear();
        serde
            .serialize(value, &mut self.value_buf)
            .map_err(|e| StreamsError::Serialize {
                position: self.position(),
                what,
                detail: e.0,
            })?;
        Ok(Bytes::copy_from_slice(&self.value_buf))
    }

    pub(crate) fn store_get(
        &mut self,
        store: usize,
        key: &[u8],
    ) -> Result<Option<Bytes>, StreamsError> {
        Ok(self.stores[store].get(&*self.log, key)?)
    }

    pub(crate) fn store_scan(&mut self, store: usize) -> Result<Vec<(Bytes, Bytes)>, StreamsError> {
        Ok(self.stores[store].scan(&*self.log)?)
    }

    pub(crate) fn store_scan_prefix(
        &mut self,
        store: usize,
        prefix: &[u8],
    ) -> Result<Vec<(Bytes, Bytes)>, StreamsError> {
        Ok(self.stores[store].scan_prefix(&*self.log, prefix)?)
    }

    pub(crate) fn store_range(
        &mut self,
        store: usize,
        prefix: &[u8],
        after: Option<&[u8]>,
        last: &[u8],
    ) -> Result<Vec<(Bytes, Bytes)>, StreamsError> {
        Ok(self.stores[store].range(&*self.log, prefix, after, last)?)
    }

    /// Queues the input record itself, unchanged but for provenance and a
    /// reason header, to `topic` (late records, dead letters).
    pub(crate) fn emit_input(&mut self, topic: &Arc<str>, reason: String) {
        self.emit(topic, self.current.key.clone(), self.current.value.clone());
        if let Some((_, out)) = self.outputs.last_mut() {
            out.headers
                .push(Header::new(crate::ops::ERROR_HEADER, reason));
        }
    }

    /// Decodes a value read from a store, naming the store on failure.
    pub(crate) fn decode_stored<T: 'static>(
        &self,
        store: usize,
        serde: &dyn Serde<T>,
        bytes: &[u8],
    ) -> Result<T, StreamsError> {
        serde.deserialize(bytes).map_err(|e| StreamsError::Store {
            store: self.store_name(store).to_owned(),
            detail: e.0,
        })
    }

    /// Reads and decodes a key of a store (pending writes first).
    pub(crate) fn store_get_decoded<T: 'static>(
        &mut self,
        store: usize,
        key: &[u8],
        serde: &dyn Serde<T>,
    ) -> Result<Option<T>, StreamsError> {
        match self.store_get(store, key)? {
            Some(bytes) => self.decode_stored(store, serde, &bytes).map(Some),
            None => Ok(None),
        }
    }

    pub(crate) fn store_put(&mut self, store: usize, key: Bytes, value: Option<Bytes>) {
        self.stores[store].put(key, value);
    }

    pub(crate) fn store_name(&self, store: usize) -> &str {
        &self.stores[store].name
    }
}
