//! The DSL through the test driver: each test names the Kafka Streams
//! behaviour it encodes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use common::{json_table, pipe, s, strings};

use kappa_log::{Log, ProducerRecord};
use kappa_streams::provenance::{CAUSATION_HEADER, CORRELATION_HEADER, SOURCE_HEADER};
use kappa_streams::{
    ERROR_HEADER, I64, Json, Materialized, StreamsBuilder, StreamsConfig, StreamsError,
    TopologyTestDriver, Utf8,
};

#[test]
fn stateless_steps_filter_map_flat_map_and_peek() {
    let b = StreamsBuilder::new();
    b.stream("in", Utf8, Utf8)
        .filter(|_, v: &String| !v.is_empty())
        .filter_not(|k: &String, _| k == "skip")
        .map_values(|v: String| v.to_uppercase())
        .flat_map_values(|v: String| v.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .map(|k: String, v: String| (format!("{k}:{v}"), v.len().to_string()))
        .to("out", Utf8, Utf8);
    let mut d = TopologyTestDriver::new(b.build().unwrap(), 1).unwrap();
    pipe(&mut d, "in", "a", "hello big world", 1);
    pipe(&mut d, "in", "b", "", 2);
    pipe(&mut d, "in", "skip", "x", 3);
    assert_eq!(
        strings(&mut d, "out"),
        [
            (s("a:HELLO"), Some(s("5"))),
            (s("a:BIG"), Some(s("3"))),
            (s("a:WORLD"), Some(s("5")))
        ]
    );
}

#[test]
fn split_sends_each_record_to_the_first_matching_branch_or_the_default() {
    let b = StreamsBuilder::new();
    let branches = b.stream("in", Utf8, Json::<i64>::new()).split(vec![
        Box::new(|_, v: &i64| *v < 0),
        Box::new(|_, v: &i64| *v < 10),
    ]);
    assert_eq!(branches.len(), 3);
    for (i, branch) in branches.iter().enumerate() {
        branch.to(&format!("out-{i}"), Utf8, Json::<i64>::new());
    }
    let mut d = TopologyTestDriver::new(b.build().unwrap(), 1).unwrap();
    for v in [-1i64, 5, 50, -7] {
        d.pipe("in", &Utf8, &s("k"), &Json::new(), &v, 0).unwrap();
    }
    let values = |d: &mut TopologyTestDriver, t: &str| -> Vec<i64> {
        d.read_output(t, &Utf8, &Json::<i64>::new())
            .unwrap()
            .into_iter()
            .filter_map(|(_, v, _)| v)
            .collect()
    };
    assert_eq!(values(&mut d, "out-0"), [-1, -7]);
    assert_eq!(values(&mut d, "out-1"), [5]);
    assert_eq!(values(&mut d, "out-2"), [50]);
}

#[test]
fn merge_interleaves_both_inputs() {
    let b = StreamsBuilder::new();
    let left = b.stream("left", Utf8, Utf8);
    let right = b.stream("right", Utf8, Utf8);
    left.merge(&right).peek(|_, _| {}).to("out", Utf8, Utf8);
    let mut d = TopologyTestDriver::new(b.build().unwrap(), 1).unwrap();
    pipe(&mut d, "left", "k", "l1", 1);
    pipe(&mut d, "right", "k", "r1", 2);
    pipe(&mut d, "left", "k", "l2", 3);
    let values: Vec<String> = strings(&mut d, "out")
        .into_iter()
        .filter_map(|(_, v)| v)
        .collect();
    assert_eq!(values, ["l1", "r1", "l2"]);
}

#[test]
fn count_reduce_and_aggregate_emit_the_new_value_after_every_record() {
    let b = StreamsBuilder::new();
    let grouped = b.stream("in", Utf8, Json::<i64>::new()).group_by_key(Utf8);
    grouped
        .count(Materialized::in_memory("count"))
        .to("count", Utf8, I64);
    grouped
        .reduce(
            Materialized::persistent("max"),
            Json::<i64>::new(),
            |a, b| a.max(b),
        )
        .to("max", Utf8, Json::<i64>::new());
    grouped
        .aggregate(
            Materialized::persistent("list"),
            Json::<Vec<i64>>::new(),
            Vec::new,
            |_, v, mut acc| {
                acc.push(v);
                acc
            },
        )
        .to("list", Utf8, Json::<Vec<i64>>::new());
    let mut d = TopologyTestDriver::new(b.build().unwrap(), 2).unwrap();
    for (k, v) in [("a", 3i64), ("b", 1), ("a", 7), ("a", 5)] {
        d.pipe("in", &Utf8, &s(k), &Json::new(), &v, 0).unwrap();
    }
    let mut counts = d.read_output("count", &Utf8, &I64).unwrap();
    counts.sort_by_key(|(k, _, _)| k.clone());
    let counts: Vec<(String, Option<i64>)> = counts.into_iter().map(|(k, v, _)| (k, v)).collect();
    assert_eq!(
        counts,
        [
            (s("a"), Some(1)),
            (s("a"), Some(2)),
            (s("a"), Some(3)),
            (s("b"), Some(1))
        ]
    );
    let max: Vec<Option<i64>> = d
        .read_output("max", &Utf8, &Json::<i64>::new())
        .unwrap()
        .into_iter()
        .filter(|(k, _, _)| k == "a")
        .map(|(_, v, _)| v)
        .collect();
    assert_eq!(max, [Some(3), Some(7), Some(7)]);
    // Stores hold the committed aggregate, readable as interactive queries.
    let list = d.store("list").get(b"a").unwrap().unwrap();
    assert_eq!(&list[..], b"[3,7,5]");
    let count = d.store("count").get(b"b").unwrap().unwrap();
    assert_eq!(&count[..], 1i64.to_be_bytes());
}

#[test]
fn a_table_from_a_topic_upserts_and_deletes_on_tombstones() {
    let b = StreamsBuilder::new();
    json_table(&b, "limits", Materialized::in_memory("limits"))
        .filter(|_, limit: &i64| *limit > 0)
        .map_values(|limit| limit * 100)
        .to("limits-cents", Utf8, Json::<i64>::new());
    let mut d = TopologyTestDriver::new(b.build().unwrap(), 1).unwrap();
    d.pipe("limits", &Utf8, &s("card-1"), &Json::new(), &5i64, 1)
        .unwrap();
    d.pipe("limits", &Utf8, &s("card-1"), &Json::new(), &0i64, 2)
        .unwrap();
    d.pipe_record(
        "limits",
        ProducerRecord {
            key: Some("card-2".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let out: Vec<(String, Option<i64>)> = d
        .read_output("limits-cents", &Utf8, &Json::<i64>::new())
        .unwrap()
        .into_iter()
        .map(|(k, v, _)| (k, v))
        .collect();
    // Filtered-out rows and tombstones both become deletions downstream.
    assert_eq!(
        out,
        [
            (s("card-1"), Some(500)),
            (s("card-1"), None),
            (s("card-2"), None)
        ]
    );
    assert_eq!(
        d.store("limits").get(b"card-1").unwrap().as_deref(),
        Some(&b"0"[..])
    );
    assert_eq!(d.store("limits").get(b"card-2").unwrap(), None);
}

#[test]
fn group_by_repartitions_so_new_keys_meet_in_one_task() {
    let b = StreamsBuilder::new();
    b.stream("purchases", Utf8, Utf8)
        .group_by(
            "by-merchant",
            |_card: &String, merchant: &String| merchant.clone(),
            Utf8,
            Utf8,
        )
        .count(Materialized::persistent("per-merchant"))
        .to("per-merchant", Utf8, I64);
    let topology = b.build().unwrap();
    assert!(
        topology.describe().contains("repartition"),
        "{}",
        topology.describe()
    );
    let mut d = TopologyTestDriver::new(topology, 3).unwrap();
    for (card, merchant) in [
        ("c1", "shop"),
        ("c2", "shop"),
        ("c3", "cafe"),
        ("c4", "shop"),
    ] {
        pipe(&mut d, "purchases", card, merchant, 0);
    }
    let mut last = std::collections::BTreeMap::new();
    for (k, v, _) in d.read_output("per-merchant", &Utf8, &I64).unwrap() {
        last.insert(k, v);
    }
    assert_eq!(last.get("shop"), Some(&Some(3)));
    assert_eq!(last.get("cafe"), Some(&Some(1)));
    assert!(
        d.log()
            .describe_topic("test-driver-by-merchant-repartition")
            .is_ok()
    );
}

#[test]
fn emitted_records_carry_provenance_and_the_input_timestamp() {
    let b = StreamsBuilder::new();
    b.stream("commands", Utf8, Utf8)
        .map_values(|v: String| v)
        .to("events", Utf8, Utf8);
    b.stream("events", Utf8, Utf8)
        .map_values(|v: String| v)
        .to("notifications", Utf8, Utf8);
    let mut d = TopologyTestDriver::new(b.build().unwrap(), 1).unwrap();
    pipe(&mut d, "commands", "k", "v", 1234);
    let events = d.read_records("events").unwrap();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.timestamp, 1234);
    assert_eq!(
        e.header(SOURCE_HEADER).map(|v| &v[..]),
        Some(&b"commands/0/0"[..])
    );
    assert_eq!(
        e.header(CAUSATION_HEADER).map(|v| &v[..]),
        Some(&b"commands/0/0"[..])
    );
    assert_eq!(
        e.header(CORRELATION_HEADER).map(|v| &v[..]),
        Some(&b"commands/0/0"[..])
    );
    // One step further, the correlation still names the originating command.
    let n = d.read_records("notifications").unwrap();
    assert_eq!(
        n[0].header(SOURCE_HEADER).map(|v| &v[..]),
        Some(&b"events/0/0"[..])
    );
    assert_eq!(
        n[0].header(CORRELATION_HEADER).map(|v| &v[..]),
        Some(&b"commands/0/0"[..])
    );
}

#[test]
fn undecodable_input_fails_by_default_or_goes_to_the_dead_letter_topic() {
    let build = || {
        let b = StreamsBuilder::new();
        b.stream("in", Utf8, Json::<i64>::new())
            .to("out", Utf8, Json::<i64>::new());
        b.build().unwrap()
    };
    let bad = || ProducerRecord::value("not json").with_key("k");
    let mut d = TopologyTestDriver::new(build(), 1).unwrap();
    let err = d.pipe_record("in", bad()).unwrap_err();
    assert!(
        matches!(err, StreamsError::Deserialize { what: "value", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("in/0/0"), "{err}");

    let mut config = StreamsConfig::new("dlq-app");
    config.dead_letter_topic = Some("dead-letters".to_owned());
    let mut d = TopologyTestDriver::with_config(build(), 1, config).unwrap();
    d.pipe_record("in", bad()).unwrap();
    d.pipe("in", &Utf8, &s("k"), &Json::new(), &7i64, 0)
        .unwrap();
    let dead = d.read_records("dead-letters").unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].value.as_deref(), Some(&b"not json"[..]));
    assert_eq!(
        dead[0].header(SOURCE_HEADER).map(|v| &v[..]),
        Some(&b"in/0/0"[..])
    );
    assert!(dead[0].header(ERROR_HEADER).is_some());
    let out = d.read_output("out", &Utf8, &Json::<i64>::new()).unwrap();
    assert_eq!(out, [(s("k"), Some(7), 0)]);
}

#[test]
fn invalid_topologies_are_refused_at_build_time_with_the_reason() {
    let b = StreamsBuilder::new();
    b.stream("in", Utf8, Utf8)
        .map(|k: String, v: String| (v, k))
        .group_by_key(Utf8)
        .count(Materialized::in_memory("c"));
    let err = b.build().err().unwrap();
    assert!(err.to_string().contains("call repartition"), "{err}");

    let b = StreamsBuilder::new();
    let g = b.stream("in", Utf8, Utf8).group_by_key(Utf8);
    g.count(Materialized::in_memory("same"));
    g.count(Materialized::persistent("same"));
    assert!(b.build().err().unwrap().to_string().contains("used twice"));

    assert!(
        StreamsBuilder::new()
            .build()
            .err()
            .unwrap()
            .to_string()
            .contains("reads no topic")
    );
}

#[test]
fn describe_lists_every_node_and_mermaid_draws_the_edges() {
    let b = StreamsBuilder::new();
    b.stream("in", Utf8, Utf8)
        .filter(|_, _| true)
        .to("out", Utf8, Utf8);
    let t = b.build().unwrap();
    let text = t.describe();
    assert!(
        text.contains("SOURCE[IN]") && text.contains("FILTER") && text.contains("SINK[OUT]"),
        "{text}"
    );
    let mermaid = t.describe_mermaid();
    assert!(mermaid.starts_with("flowchart TD"), "{mermaid}");
    assert_eq!(mermaid.matches("-->").count(), 2, "{mermaid}");
}

#[test]
fn two_streams_of_one_topic_both_see_every_record() {
    let b = StreamsBuilder::new();
    b.stream("in", Utf8, Utf8)
        .map_values(|v: String| format!("1:{v}"))
        .to("out", Utf8, Utf8);
    b.stream("in", Utf8, Utf8)
        .map_values(|v: String| format!("2:{v}"))
        .to("out", Utf8, Utf8);
    let mut d = TopologyTestDriver::new(b.build().unwrap(), 1).unwrap();
    pipe(&mut d, "in", "k", "x", 0);
    let values: Vec<String> = strings(&mut d, "out")
        .into_iter()
        .filter_map(|(_, v)| v)
        .collect();
    assert_eq!(values, ["1:x", "2:x"]);
}
