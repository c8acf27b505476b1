//! Invariant 1: stores are caches of the log. After `reset_application`
//! a restart recomputes stores and outputs identical to the originals.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use common::{open_embedded, sum_by_key};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kappa_log::{FetchLimits, Log, ProducerRecord, TopicPartition, TopicSpec};
use kappa_streams::{
    I64, Json, Materialized, Streams, StreamsBuilder, StreamsConfig, Topology, Utf8,
    rebuild_application, reset_application,
};

/// A store's committed (key, value) pairs.
type Entries = Vec<(bytes::Bytes, bytes::Bytes)>;

fn topology() -> Topology {
    let b = StreamsBuilder::new();
    let input = b.stream("in", Utf8, Json::<i64>::new());
    sum_by_key(&input);
    input
        .group_by(
            "by-sign",
            |_, v: &i64| (if *v < 0 { "neg" } else { "pos" }).to_owned(),
            Utf8,
            Json::<i64>::new(),
        )
        .count(Materialized::in_memory("signs"))
        .to("signs", Utf8, I64);
    b.build().unwrap()
}

fn run(log: &Arc<dyn Log>) -> (Entries, Entries) {
    let mut config = StreamsConfig::new("rebuild");
    config.num_threads = 2;
    config.commit_interval = Duration::from_millis(5);
    let streams = Streams::start(log.clone(), topology(), config).unwrap();
    streams.wait_for_inputs().unwrap();
    let stores = (
        streams.store("sums").all().unwrap(),
        streams.store("signs").all().unwrap(),
    );
    streams.close().unwrap();
    stores
}

/// Output values per (topic, key), from `from` offsets on.
fn outputs(
    log: &dyn Log,
    from: &BTreeMap<(String, u32), u64>,
) -> BTreeMap<(String, Vec<u8>), Vec<Vec<u8>>> {
    let mut out = BTreeMap::new();
    for ((topic, p), at) in from {
        let mut records = Vec::new();
        let limits = FetchLimits {
            records_max: usize::MAX,
            bytes_max: usize::MAX,
            ..FetchLimits::default()
        };
        log.fetch(
            &[(TopicPartition::new(topic.as_str(), *p), *at)],
            limits,
            &mut records,
        )
        .unwrap();
        for r in records {
            out.entry((topic.clone(), r.key.unwrap().to_vec()))
                .or_insert_with(Vec::new)
                .push(r.value.unwrap().to_vec());
        }
    }
    out
}

fn ends(log: &dyn Log) -> BTreeMap<(String, u32), u64> {
    let mut m = BTreeMap::new();
    for t in ["sums", "signs"] {
        for p in 0..3 {
            m.insert(
                (t.to_owned(), p),
                log.offsets(&TopicPartition::new(t, p)).unwrap().end,
            );
        }
    }
    m
}

/// An embedded log in `dir` with this topology's topics.
fn embedded(dir: &std::path::Path) -> Arc<dyn Log> {
    let log = open_embedded(dir);
    for t in ["in", "sums", "signs"] {
        log.create_topic(&TopicSpec::new(t, 3)).unwrap();
    }
    log
}

/// Values -10..=10 on keys k0..k12, some negative so both signs are counted.
fn input(range: std::ops::Range<i64>) -> Vec<ProducerRecord> {
    range
        .map(|i| {
            ProducerRecord::value(((i * 37) % 21 - 10).to_string()).with_key(format!("k{}", i % 13))
        })
        .collect()
}

#[test]
fn a_reset_application_recomputes_identical_stores_and_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let log = embedded(dir.path());
    log.append("in", input(0..500)).unwrap();

    let start = ends(&*log);
    let original_stores = run(&log);
    let after_first = ends(&*log);
    let original_outputs = outputs(&*log, &start);
    assert!(!original_stores.0.is_empty() && !original_stores.1.is_empty());

    let report = reset_application(&*log, "rebuild").unwrap();
    assert_eq!(report.positions_reset, 3);
    assert!(report.store_entries_dropped > 0);
    assert_eq!(
        report.internal_topics_deleted,
        ["rebuild-by-sign-repartition"]
    );
    assert!(
        log.metadata_scan(b"kappa-streams/rebuild/")
            .unwrap()
            .is_empty()
    );

    let rebuilt_stores = run(&log);
    assert_eq!(rebuilt_stores, original_stores, "rebuilt stores differ");
    assert_eq!(
        outputs(&*log, &after_first),
        original_outputs,
        "rebuilt outputs differ"
    );
}

#[test]
fn a_rebuilt_application_recomputes_its_stores_without_repeating_outputs() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (embedded(dir_a.path()), embedded(dir_b.path()));
    let start = ends(&*a);
    for log in [&a, &b] {
        log.append("in", input(0..400)).unwrap();
        run(log);
    }
    // A loses its stores and rebuilds them; B never did.
    let report = rebuild_application(&*a, "rebuild").unwrap();
    assert!(report.store_entries_dropped > 0);
    let before = ends(&*a);
    let rebuilt = run(&a);
    assert_eq!(ends(&*a), before, "a rebuild wrote outputs again");
    assert!(
        a.metadata_scan(b"kappa-streams/rebuild/!replay-until/")
            .unwrap()
            .is_empty(),
        "replay marks are dropped once passed"
    );
    let mut config = StreamsConfig::new("rebuild");
    config.commit_interval = Duration::from_millis(5);
    let reference = Streams::start(b.clone(), topology(), config).unwrap();
    reference.wait_for_inputs().unwrap();
    assert_eq!(rebuilt.0, reference.store("sums").all().unwrap());
    assert_eq!(rebuilt.1, reference.store("signs").all().unwrap());
    reference.close().unwrap();
    // After the rebuild, new input is processed as usual: both logs agree.
    for log in [&a, &b] {
        log.append("in", input(400..600)).unwrap();
    }
    assert_eq!(run(&a), run(&b));
    assert_eq!(outputs(&*a, &start), outputs(&*b, &start));
}
