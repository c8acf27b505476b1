//! Joins, each test naming the Kafka Streams behaviour it encodes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use common::{json_table, s, strings};

use std::sync::Arc;

use kappa_log::{Log, MemoryLog, ProducerRecord, TopicSpec};
use kappa_streams::{
    Json, Materialized, Streams, StreamsBuilder, StreamsConfig, TopologyTestDriver, Utf8,
};

fn put(d: &mut TopologyTestDriver, topic: &str, key: &str, value: Option<i64>) {
    let record = ProducerRecord {
        key: Some(key.to_owned().into()),
        value: value.map(|v| v.to_string().into()),
        timestamp: Some(0),
        ..Default::default()
    };
    d.pipe_record(topic, record).unwrap();
}

#[test]
fn stream_table_join_looks_up_the_current_row_and_table_updates_emit_nothing() {
    let b = StreamsBuilder::new();
    let limits = json_table::<i64>(&b, "limits", Materialized::in_memory("limits"));
    let spends = b.stream("spends", Utf8, Json::<i64>::new());
    spends
        .join(&limits, Utf8, |spend, limit| format!("{spend}/{limit}"))
        .to("inner", Utf8, Utf8);
    spends
        .left_join(&limits, Utf8, |spend, limit| format!("{spend}/{limit:?}"))
        .to("left", Utf8, Utf8);
    let mut d = TopologyTestDriver::new(b.build().unwrap(), 2).unwrap();
    put(&mut d, "spends", "card-1", Some(5)); // no row yet
    put(&mut d, "limits", "card-1", Some(100)); // emits nothing by itself
    put(&mut d, "spends", "card-1", Some(7));
    put(&mut d, "limits", "card-1", Some(200));
    put(&mut d, "spends", "card-1", Some(9));
    put(&mut d, "limits", "card-1", None); // tombstone removes the row
    put(&mut d, "spends", "card-1", Some(11));
    assert_eq!(
        strings(&mut d, "inner"),
        [
            (s("card-1"), Some(s("7/100"))),
            (s("card-1"), Some(s("9/200")))
        ]
    );
    assert_eq!(
        strings(&mut d, "left"),
        [
            (s("card-1"), Some(s("5/None"))),
            (s("card-1"), Some(s("7/Some(100)"))),
            (s("card-1"), Some(s("9/Some(200)"))),
            (s("card-1"), Some(s("11/None")))
        ]
    );
}

#[test]
fn table_table_joins_emit_on_updates_from_either_side() {
    let b = StreamsBuilder::new();
    let left = json_table::<i64>(&b, "left", Materialized::in_memory("l"));
    let right = json_table::<i64>(&b, "right", Materialized::persistent("r"));
    left.join(&right, Utf8, |l, r| format!("{l}+{r}"))
        .to("inner", Utf8, Utf8);
    left.left_join(&right, Utf8, |l, r| format!("{l}+{r:?}"))
        .to("left-out", Utf8, Utf8);
    left.outer_join(&right, Utf8, |l, r| format!("{l:?}+{r:?}"))
        .to("outer", Utf8, Utf8);
    let mut d = TopologyTestDriver::new(b.build().unwrap(), 1).unwrap();
    put(&mut d, "left", "k", Some(1));
    put(&mut d, "right", "k", Some(2));
    put(&mut d, "left", "k", None);
    put(&mut d, "right", "k", None);
    // Inner: nothing while the other side is empty; a deletion once it breaks.
    assert_eq!(
        strings(&mut d, "inner"),
        [(s("k"), Some(s("1+2"))), (s("k"), None)]
    );
    // Left: every left change; right changes only while a left row exists.
    assert_eq!(
        strings(&mut d, "left-out"),
        [
            (s("k"), Some(s("1+None"))),
            (s("k"), Some(s("1+Some(2)"))),
            (s("k"), None)
        ]
    );
    assert_eq!(
        strings(&mut d, "outer"),
        [
            (s("k"), Some(s("Some(1)+None"))),
            (s("k"), Some(s("Some(1)+Some(2)"))),
            (s("k"), Some(s("None+Some(2)"))),
            (s("k"), None)
        ]
    );
}

#[test]
fn joining_an_unmaterialized_table_is_refused_at_build_time() {
    let b = StreamsBuilder::new();
    let t = b
        .table("t", Utf8, Utf8, Materialized::in_memory("t"))
        .map_values(|v: String| v);
    b.stream("s", Utf8, Utf8)
        .join(&t, Utf8, |a: String, b: String| a + &b);
    let err = b.build().err().unwrap();
    assert!(err.to_string().contains("not materialized"), "{err}");
}

#[test]
fn inputs_with_different_partition_counts_are_refused_at_start() {
    let log: Arc<dyn Log> = Arc::new(MemoryLog::new());
    log.create_topic(&TopicSpec::new("s", 2)).unwrap();
    log.create_topic(&TopicSpec::new("t", 3)).unwrap();
    log.create_topic(&TopicSpec::new("out", 1)).unwrap();
    let b = StreamsBuilder::new();
    let t = b.table("t", Utf8, Utf8, Materialized::in_memory("t"));
    b.stream("s", Utf8, Utf8)
        .join(&t, Utf8, |a: String, b: String| a + &b)
        .to("out", Utf8, Utf8);
    let err = Streams::start(log, b.build().unwrap(), StreamsConfig::new("j"))
        .err()
        .unwrap();
    assert!(err.to_string().contains("equal partition counts"), "{err}");
}

#[test]
fn joining_after_a_key_change_without_repartition_is_refused() {
    let b = StreamsBuilder::new();
    let t = b.table("t", Utf8, Utf8, Materialized::in_memory("t"));
    b.stream("s", Utf8, Utf8)
        .map(|k: String, v: String| (v, k))
        .join(&t, Utf8, |a: String, b: String| a + &b)
        .to("out", Utf8, Utf8);
    let err = b.build().err().unwrap();
    assert!(err.to_string().contains("call repartition"), "{err}");
}
