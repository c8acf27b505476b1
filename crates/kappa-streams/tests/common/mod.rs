//! The topology and output reader shared by the tests that run one topology
//! several ways (the test driver, the runtime, every backend).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::collections::BTreeMap;

use kappa_log::{FetchLimits, Log, TopicPartition};
use kappa_streams::{I64, Json, Materialized, StreamsBuilder, Topology, Utf8};

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
            |_, v: &i64| if v % 2 == 0 { "even" } else { "odd" }.to_owned(),
            Utf8,
            Json::<i64>::new(),
        )
        .count(Materialized::in_memory("parity"))
        .to("parity", Utf8, I64);
    b.build().unwrap()
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
pub fn recomputed_sums(input: &[kappa_log::ProducerRecord]) -> BTreeMap<Vec<u8>, i64> {
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
