//! Global tables: every task sees every row, so streams join them on any key.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use common::{pipe, strings};

use std::sync::Arc;

use kappa_log::{FetchLimits, Log, MemoryLog, ProducerRecord, TopicPartition, TopicSpec};
use kappa_streams::{
    Json, Streams, StreamsBuilder, StreamsConfig, Topology, TopologyTestDriver, Utf8,
};

fn topology() -> Topology {
    let b = StreamsBuilder::new();
    let merchants = b.global_table("merchants", Utf8, Utf8);
    let auths = b.stream("auths", Utf8, Json::<(String, i64)>::new());
    auths
        .join_global(
            &merchants,
            |_card, (merchant, _): &(String, i64)| merchant.clone(),
            |(_, amount), name: String| format!("{name}:{amount}"),
        )
        .to("named", Utf8, Utf8);
    auths
        .left_join_global(
            &merchants,
            |_card, (merchant, _): &(String, i64)| merchant.clone(),
            |(m, _), name: Option<String>| format!("{m}={name:?}"),
        )
        .to("all", Utf8, Utf8);
    b.build().unwrap()
}

#[test]
fn a_stream_joins_a_global_table_on_a_key_of_its_choosing() {
    let mut d = TopologyTestDriver::new(topology(), 3).unwrap();
    let merchant = |d: &mut TopologyTestDriver, id: &str, name: &str| {
        pipe(d, "merchants", id, name, 0);
    };
    let auth = |d: &mut TopologyTestDriver, card: &str, m: &str, amount: i64| {
        d.pipe(
            "auths",
            &Utf8,
            &card.to_owned(),
            &Json::new(),
            &(m.to_owned(), amount),
            0,
        )
        .unwrap();
    };
    merchant(&mut d, "m1", "Cafe");
    auth(&mut d, "card-1", "m1", 5);
    auth(&mut d, "card-2", "m2", 7); // no such merchant yet
    merchant(&mut d, "m2", "Books");
    auth(&mut d, "card-3", "m2", 9);
    // Sorted: the auths' tasks emit in no order relative to each other.
    let sorted_values = |d: &mut TopologyTestDriver, topic: &str| {
        let mut values: Vec<String> = strings(d, topic)
            .into_iter()
            .map(|(_, v)| v.unwrap())
            .collect();
        values.sort();
        values
    };
    assert_eq!(sorted_values(&mut d, "named"), ["Books:9", "Cafe:5"]);
    assert_eq!(
        sorted_values(&mut d, "all"),
        ["m1=Some(\"Cafe\")", "m2=None", "m2=Some(\"Books\")"]
    );
}

#[test]
fn the_runtime_reads_global_tables_whole_before_processing() {
    let log: Arc<dyn Log> = Arc::new(MemoryLog::new());
    // The global topic's partitioning is unrelated to the stream's.
    log.create_topic(&TopicSpec::new("merchants", 3)).unwrap();
    for t in ["auths", "named", "all"] {
        log.create_topic(&TopicSpec::new(t, 2)).unwrap();
    }
    log.append(
        "merchants",
        (0..30)
            .map(|i| ProducerRecord::value(format!("shop-{i}")).with_key(format!("m{i}")))
            .collect(),
    )
    .unwrap();
    log.append(
        "auths",
        (0..30)
            .map(|i| {
                ProducerRecord::value(serde_json::to_vec(&(format!("m{i}"), i)).unwrap())
                    .with_key(format!("card-{i}"))
            })
            .collect(),
    )
    .unwrap();
    let mut config = StreamsConfig::new("global");
    config.num_threads = 2;
    let streams = Streams::start(log.clone(), topology(), config).unwrap();
    streams.wait_for_inputs().unwrap();
    streams.close().unwrap();
    let mut named = Vec::new();
    for p in 0..2 {
        log.fetch(
            &[(TopicPartition::new("named", p), 0)],
            FetchLimits::default(),
            &mut named,
        )
        .unwrap();
    }
    assert_eq!(named.len(), 30, "every auth found its merchant");
}
