//! Helpers shared by the streams test binaries: one topology run several
//! ways (the test driver, the runtime, every backend), the logs and inputs
//! it runs on, and small test-driver helpers. Each binary uses a part.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kappa_log::{
    Durability, EmbeddedLog, EmbeddedOptions, FetchLimits, Log, ProducerRecord, TopicPartition,
    TopicSpec,
};
use kappa_streams::{
    Data, I64, Json, KStream, KTable, Materialized, Processor, ProcessorContext, StreamsBuilder,
    StreamsConfig, StreamsError, Topology, TopologyTestDriver, Utf8,
};

/// The topics `topology()` writes.
pub const OUTPUTS: [&str; 3] = ["doubled", "sums", "parity"];

/// Three outputs from one input: a stateless filter and map, a keyed sum in
/// a persistent store, and a count by parity through a repartition topic.
pub fn topology() -> Topology {
    let b = StreamsBuilder::new();
    let input = b.stream("in", Utf8, Json::<i64>::new());
    input
        .filter(|_, v| v % 3 != 0)
        .map_values(|v| v * 2)
        .to("doubled", Utf8, Json::<i64>::new());
    sum_by_key(&input);
    input
        .group_by(
            "parity",
            |_, v: &i64| if v % 2 == 0 { "even" } else { "odd" }.to_owned(),
            Utf8,
            Json::<i64>::new(),
        )
        .count(Materialized::in_memory("parity"))
        .to("parity", Utf8, I64);
    b.build().unwrap()
}

/// Each key's running sum, kept in persistent store `sums` and emitted to
/// topic `sums`: the stateful step whose store the tests compare with a
/// recomputation (`recomputed_sums`).
pub fn sum_by_key(input: &KStream<String, i64>) {
    input
        .group_by_key(Utf8)
        .aggregate(
            Materialized::persistent("sums"),
            Json::<i64>::new(),
            || 0,
            |_, v, s| s + v,
        )
        .to("sums", Utf8, Json::<i64>::new());
}

/// Creates `topology()`'s input and output topics with `partitions` partitions.
pub fn create_topics(log: &dyn Log, partitions: u32) {
    for t in std::iter::once("in").chain(OUTPUTS) {
        log.create_topic(&TopicSpec::new(t, partitions)).unwrap();
    }
}

/// Opens (or reopens) an embedded log in `dir`, not syncing to disk: the
/// tests restart applications, not machines.
pub fn open_embedded(dir: &Path) -> Arc<dyn Log> {
    Arc::new(
        EmbeddedLog::open_with(
            dir,
            EmbeddedOptions::default().durability(Durability::Never),
        )
        .unwrap(),
    )
}

/// A fixed, varied input of `count` records: keys k0..k{keys-1}, values
/// -40..40, timestamps from 1000 on.
pub fn varied_inputs(count: i64, keys: i64) -> Vec<ProducerRecord> {
    (0..count)
        .map(|i| {
            let v = (i * 37 % 81) - 40;
            ProducerRecord::value(v.to_string())
                .with_key(format!("k{}", i * 5 % keys))
                .with_timestamp(1_000 + i)
        })
        .collect()
}

/// A runtime configuration with two threads, committing every
/// `commit_interval` and fetching at most `fetch_records_max` records at a
/// time, so one run spans many commits and fetches.
pub fn runtime_config(
    application_id: &str,
    commit_interval: Duration,
    fetch_records_max: usize,
) -> StreamsConfig {
    let mut config = StreamsConfig::new(application_id);
    config.num_threads = 2;
    config.commit_interval = commit_interval;
    config.fetch_records_max = fetch_records_max;
    config
}

/// A test driver of `topology()` on `partitions` partitions that has
/// processed `input`: the reference the runtime must match.
pub fn driven(input: &[ProducerRecord], partitions: u32) -> TopologyTestDriver {
    let mut driver = TopologyTestDriver::new(topology(), partitions).unwrap();
    for r in input {
        driver.pipe_record("in", r.clone()).unwrap();
    }
    driver
}

/// Output values grouped by (topic, key), in order.
pub type ByKey = BTreeMap<(String, Vec<u8>), Vec<Vec<u8>>>;

/// Every output record of `topology()`, read from `partitions` partitions.
pub fn collect(log: &dyn Log, partitions: u32) -> ByKey {
    let mut out = ByKey::new();
    for topic in OUTPUTS {
        for p in 0..partitions {
            let tp = TopicPartition::new(topic, p);
            let end = log.offsets(&tp).unwrap().end;
            let mut at = 0;
            while at < end {
                let mut records = Vec::new();
                let o = log
                    .fetch(&[(tp.clone(), at)], FetchLimits::default(), &mut records)
                    .unwrap();
                at = o.next_offsets[0];
                for r in records {
                    out.entry((topic.to_owned(), r.key.unwrap().to_vec()))
                        .or_default()
                        .push(r.value.map(|v| v.to_vec()).unwrap_or_default());
                }
            }
        }
    }
    out
}

/// Each key's sum of the inputs' values: what store `sums` must hold.
pub fn recomputed_sums(input: &[ProducerRecord]) -> BTreeMap<Vec<u8>, i64> {
    let mut sums: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
    for r in input {
        let v: i64 = std::str::from_utf8(r.value.as_deref().unwrap())
            .unwrap()
            .parse()
            .unwrap();
        *sums.entry(r.key.clone().unwrap().to_vec()).or_default() += v;
    }
    sums
}

/// Store `sums`' entries decoded: comparable with `recomputed_sums`.
pub fn decoded_sums<K: AsRef<[u8]>, V: AsRef<[u8]>>(
    entries: Vec<(K, V)>,
) -> BTreeMap<Vec<u8>, i64> {
    entries
        .into_iter()
        .map(|(k, v)| {
            let sum = serde_json::from_slice(v.as_ref()).unwrap();
            (k.as_ref().to_vec(), sum)
        })
        .collect()
}

/// Short for `to_owned`: expected values are written as many `String`s.
pub fn s(v: &str) -> String {
    v.to_owned()
}

/// Pipes a UTF-8 `key` and `value` into `topic` at time `ts`.
pub fn pipe(d: &mut TopologyTestDriver, topic: &str, key: &str, value: &str, ts: i64) {
    d.pipe(topic, &Utf8, &s(key), &Utf8, &s(value), ts).unwrap();
}

/// `topic`'s new (key, value) pairs, both UTF-8; `None` is a tombstone.
pub fn strings(d: &mut TopologyTestDriver, topic: &str) -> Vec<(String, Option<String>)> {
    d.read_output(topic, &Utf8, &Utf8)
        .unwrap()
        .into_iter()
        .map(|(k, v, _)| (k, v))
        .collect()
}

/// A table of JSON values keyed by UTF-8 strings, read from `topic` into `store`.
pub fn json_table<V>(b: &StreamsBuilder, topic: &str, store: Materialized) -> KTable<String, V>
where
    V: Data + serde::Serialize + serde::de::DeserializeOwned,
{
    b.table(topic, Utf8, Json::<V>::new(), store)
}

/// A processor whose `process` is a closure over `state` (a store handle):
/// for tests whose processor needs neither `init` nor punctuations, where a
/// struct and its impl would outweigh the logic.
pub fn processor<K, V, KOut, VOut, S, F>(state: S, process: F) -> FnProcessor<S, F>
where
    // Repeats the impl's bound so the closure's arguments need no type annotations.
    F: FnMut(&S, &mut ProcessorContext<'_, KOut, VOut>, K, V) -> Result<(), StreamsError>,
{
    FnProcessor { state, process }
}

/// See `processor`.
pub struct FnProcessor<S, F> {
    state: S,
    process: F,
}

impl<K, V, KOut, VOut, S, F> Processor<K, V, KOut, VOut> for FnProcessor<S, F>
where
    S: Send + 'static,
    F: FnMut(&S, &mut ProcessorContext<'_, KOut, VOut>, K, V) -> Result<(), StreamsError>
        + Send
        + 'static,
{
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, KOut, VOut>,
        key: K,
        value: V,
    ) -> Result<(), StreamsError> {
        (self.process)(&self.state, ctx, key, value)
    }
}
