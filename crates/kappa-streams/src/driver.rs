//! `TopologyTestDriver`: runs a topology deterministically in one thread on
//! an in-memory log, through the same worker code as the real runtime.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kappa_log::{FetchLimits, Log, MemoryLog, ProducerRecord, Record, TopicPartition, TopicSpec};

use crate::error::StreamsError;
use crate::global::GlobalStores;
use crate::runtime::{StreamsConfig, Worker, plan};
use crate::serde::Serde;
use crate::store::ReadOnlyStore;
use crate::topology::Topology;

/// Pipes records into a topology and reads what it wrote, with no threads,
/// no clock and no disk. Every piped record is processed and committed
/// before `pipe` returns.
///
/// ```
/// use kappa_streams::{StreamsBuilder, TopologyTestDriver, Utf8, I64, Materialized};
/// let b = StreamsBuilder::new();
/// b.stream("words", Utf8, Utf8)
///     .group_by_key(Utf8)
///     .count(Materialized::in_memory("counts"))
///     .to("counts", Utf8, I64);
/// let mut driver = TopologyTestDriver::new(b.build()?, 1)?;
/// driver.pipe("words", &Utf8, &"a".to_string(), &Utf8, &"x".to_string(), 1000)?;
/// driver.pipe("words", &Utf8, &"a".to_string(), &Utf8, &"y".to_string(), 2000)?;
/// let out = driver.read_output("counts", &Utf8, &I64)?;
/// assert_eq!(out, vec![("a".to_string(), Some(1), 1000), ("a".to_string(), Some(2), 2000)]);
/// # Ok::<_, kappa_streams::StreamsError>(())
/// ```
pub struct TopologyTestDriver {
    log: Arc<MemoryLog>,
    worker: Worker,
    globals: Arc<GlobalStores>,
    app: String,
    partitions: u32,
    read_positions: std::collections::HashMap<TopicPartition, u64>,
    /// The driver's wall clock: starts at 0 and moves only by `advance_wall_clock`.
    wall_clock_ms: i64,
}

impl TopologyTestDriver {
    /// A driver whose input and output topics have `partitions` partitions
    /// (created for you).
    ///
    /// # Errors
    ///
    /// The topology does not fit (for example a bad application id).
    pub fn new(topology: Topology, partitions: u32) -> Result<Self, StreamsError> {
        Self::with_config(topology, partitions, StreamsConfig::new("test-driver"))
    }

    /// As [`TopologyTestDriver::new`] with a chosen configuration.
    ///
    /// # Errors
    ///
    /// As [`TopologyTestDriver::new`].
    pub fn with_config(
        topology: Topology,
        partitions: u32,
        config: StreamsConfig,
    ) -> Result<Self, StreamsError> {
        let log = Arc::new(MemoryLog::new());
        let app = config.application_id.clone();
        let internal = topology.internal_topics(&app);
        let mut topics = topology.source_topics(&app);
        topics.extend(topology.sink_topics(&app));
        topics.extend(topology.graph.global_topics.iter().cloned());
        topics.extend(config.dead_letter_topic.clone());
        for t in topics.iter().filter(|t| !internal.contains(t)) {
            match log.create_topic(&TopicSpec::new(t.as_str(), partitions)) {
                Ok(()) | Err(kappa_log::LogError::TopicExists(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let plan = plan(&*log, &topology, &config)?;
        let all: Vec<u32> = (0..plan.partitions).collect();
        let globals = Arc::new(GlobalStores::new(&*log, &topology.graph.global_topics)?);
        let mut worker = Worker::new(
            log.clone() as Arc<dyn Log>,
            &topology,
            &config,
            &plan,
            &all,
            globals.clone(),
        )?;
        worker.set_manual_clock(0);
        Ok(Self {
            log,
            worker,
            globals,
            wall_clock_ms: 0,
            app,
            partitions: plan.partitions,
            read_positions: std::collections::HashMap::new(),
        })
    }

    /// The in-memory log underneath, for inspection.
    pub fn log(&self) -> &Arc<MemoryLog> {
        &self.log
    }

    /// Appends a raw record to `topic` and processes everything pending.
    ///
    /// # Errors
    ///
    /// The log refused the record or processing failed.
    pub fn pipe_record(&mut self, topic: &str, record: ProducerRecord) -> Result<(), StreamsError> {
        self.log.append(topic, vec![record])?;
        self.run()
    }

    /// Appends a typed record with an event timestamp and processes it.
    ///
    /// # Errors
    ///
    /// Encoding failed, the log refused the record, or processing failed.
    pub fn pipe<K: 'static, V: 'static>(
        &mut self,
        topic: &str,
        key_serde: &dyn Serde<K>,
        key: &K,
        value_serde: &dyn Serde<V>,
        value: &V,
        timestamp_ms: i64,
    ) -> Result<(), StreamsError> {
        let encode = |what: &'static str, r: Result<(), crate::SerdeError>| {
            r.map_err(|e| StreamsError::Topology(format!("cannot encode the piped {what}: {e}")))
        };
        let mut k = Vec::new();
        encode("key", key_serde.serialize(key, &mut k))?;
        let mut v = Vec::new();
        encode("value", value_serde.serialize(value, &mut v))?;
        self.pipe_record(
            topic,
            ProducerRecord {
                key: Some(Bytes::from(k)),
                value: Some(Bytes::from(v)),
                headers: Vec::new(),
                timestamp: Some(timestamp_ms),
            },
        )
    }

    /// Processes and commits until nothing is pending: outputs become
    /// readable only once committed, and may feed the topology again
    /// (repartition topics, a stream read by a later step).
    fn run(&mut self) -> Result<(), StreamsError> {
        loop {
            // Global tables first, as the runtime reads them before processing.
            while self.globals.catch_up(&*self.log, Duration::ZERO)? > 0 {}
            while self.worker.poll(Duration::ZERO)? > 0 {}
            let emitted = self.worker.pending_outputs();
            self.worker.commit()?;
            if emitted == 0 {
                return Ok(());
            }
        }
    }

    /// Records written to `topic` since the last read of it, in partition
    /// then offset order.
    ///
    /// # Errors
    ///
    /// Unknown topic.
    pub fn read_records(&mut self, topic: &str) -> Result<Vec<Record>, StreamsError> {
        let partitions = self.log.describe_topic(topic)?.spec.partitions;
        let mut out = Vec::new();
        for p in 0..partitions {
            let tp = TopicPartition::new(topic, p);
            let at = self.read_positions.get(&tp).copied().unwrap_or(0);
            let limits = FetchLimits {
                records_max: usize::MAX,
                bytes_max: usize::MAX,
                ..FetchLimits::default()
            };
            let o = self.log.fetch(&[(tp.clone(), at)], limits, &mut out)?;
            self.read_positions.insert(tp, o.next_offsets[0]);
        }
        Ok(out)
    }

    /// Decoded records written to `topic` since the last read: (key, value
    /// or `None` for a tombstone, timestamp).
    ///
    /// # Errors
    ///
    /// Unknown topic or a record that does not decode.
    pub fn read_output<K: 'static, V: 'static>(
        &mut self,
        topic: &str,
        key_serde: &dyn Serde<K>,
        value_serde: &dyn Serde<V>,
    ) -> Result<Vec<(K, Option<V>, i64)>, StreamsError> {
        let mut out = Vec::new();
        for r in self.read_records(topic)? {
            let fail = |what: &'static str, e: crate::SerdeError| StreamsError::Deserialize {
                position: r.position(),
                what,
                detail: e.0,
            };
            let k = key_serde
                .deserialize(r.key.as_deref().unwrap_or_default())
                .map_err(|e| fail("key", e))?;
            let v = match &r.value {
                Some(v) => Some(value_serde.deserialize(v).map_err(|e| fail("value", e))?),
                None => None,
            };
            out.push((k, v, r.timestamp));
        }
        Ok(out)
    }

    /// Moves the driver's wall clock forward, running due wall-clock
    /// punctuators and committing what they emit.
    ///
    /// # Errors
    ///
    /// A punctuator or the commit failed.
    pub fn advance_wall_clock(&mut self, by: Duration) -> Result<(), StreamsError> {
        self.wall_clock_ms += i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.worker.set_manual_clock(self.wall_clock_ms);
        self.worker.tick()?;
        self.run()
    }

    /// Records that arrived after all their windows closed.
    pub fn late_records(&self) -> u64 {
        self.worker.late_records()
    }

    /// The worker's counters as of its last commit.
    pub fn metrics(&self) -> crate::StreamsMetrics {
        self.worker.metrics()
    }

    /// The committed contents of a store.
    pub fn store(&self, name: &str) -> ReadOnlyStore {
        ReadOnlyStore::new(self.log.clone(), &self.app, name, self.partitions)
    }
}
