//! The test driver and the real runtime (threads, embedded log) give the
//! same outputs for the same inputs: per key, the same values in the same
//! order (Kafka Streams' ordering guarantee; order across keys may differ).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kappa_log::{
    Durability, EmbeddedLog, EmbeddedOptions, FetchLimits, Log, ProducerRecord, TopicPartition,
    TopicSpec,
};
use kappa_streams::{
    I64, Json, Materialized, Streams, StreamsBuilder, StreamsConfig, Topology, TopologyTestDriver,
    Utf8,
};
use proptest::prelude::*;

const PARTITIONS: u32 = 2;
const OUTPUTS: [&str; 3] = ["doubled", "sums", "parity"];

fn topology() -> Topology {
    let b = StreamsBuilder::new();
    let input = b.stream("in", Utf8, Json::<i64>::new());
    input
        .filter(|_, v| v % 3 != 0)
        .map_values(|v| v * 2)
        .to("doubled", Utf8, Json::<i64>::new());
    input
        .group_by_key(Utf8)
        .aggregate(
            Materialized::persistent("sums"),
            Json::<i64>::new(),
            || 0,
            |_, v, s| s + v,
        )
        .to("sums", Utf8, Json::<i64>::new());
    input
        .group_by(
            "parity",
            |_, v: &i64| {
                if v % 2 == 0 {
                    "even".to_owned()
                } else {
                    "odd".to_owned()
                }
            },
            Utf8,
            Json::<i64>::new(),
        )
        .count(Materialized::in_memory("parity"))
        .to("parity", Utf8, I64);
    b.build().unwrap()
}

/// Output values grouped by (topic, key), in order.
type ByKey = BTreeMap<(String, Vec<u8>), Vec<Vec<u8>>>;

fn collect(log: &dyn Log) -> ByKey {
    let mut out = ByKey::new();
    for topic in OUTPUTS {
        for p in 0..PARTITIONS {
            let tp = TopicPartition::new(topic, p);
            let mut records = Vec::new();
            let limits = FetchLimits {
                records_max: usize::MAX,
                bytes_max: usize::MAX,
                ..FetchLimits::default()
            };
            log.fetch(&[(tp, 0)], limits, &mut records).unwrap();
            for r in records {
                out.entry((topic.to_owned(), r.key.unwrap().to_vec()))
                    .or_default()
                    .push(r.value.map(|v| v.to_vec()).unwrap_or_default());
            }
        }
    }
    out
}

fn input_record(key: u8, value: i64, ts: i64) -> ProducerRecord {
    ProducerRecord::value(value.to_string())
        .with_key(format!("k{key}"))
        .with_timestamp(ts)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn driver_and_runtime_agree(inputs in prop::collection::vec((0..6u8, -50..50i64, 0..1000i64), 1..120)) {
        let mut driver = TopologyTestDriver::new(topology(), PARTITIONS).unwrap();
        for &(k, v, ts) in &inputs {
            driver.pipe_record("in", input_record(k, v, ts)).unwrap();
        }
        let expected = collect(&**driver.log());
        prop_assert!(expected.keys().any(|(t, _)| t == "sums"));

        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn Log> = Arc::new(
            EmbeddedLog::open_with(dir.path(), EmbeddedOptions::default().durability(Durability::Never)).unwrap(),
        );
        for t in ["in", "doubled", "sums", "parity"] {
            log.create_topic(&TopicSpec::new(t, PARTITIONS)).unwrap();
        }
        let mut config = StreamsConfig::new("agree");
        config.num_threads = 2;
        config.commit_interval = Duration::from_millis(5);
        config.fetch_records_max = 7;
        let streams = Streams::start(log.clone(), topology(), config).unwrap();
        for chunk in inputs.chunks(10) {
            log.append("in", chunk.iter().map(|&(k, v, ts)| input_record(k, v, ts)).collect()).unwrap();
        }
        streams.wait_for_inputs().unwrap();
        let sums = streams.store("sums");
        streams.close().unwrap();
        prop_assert_eq!(collect(&*log), expected);
        // The store agrees with the last sum emitted per key.
        for (k, v) in sums.all().unwrap() {
            let emitted = driver.store("sums").get(&k).unwrap();
            prop_assert_eq!(Some(v), emitted);
        }
    }
}
