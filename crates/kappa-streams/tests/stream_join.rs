//! Windowed stream–stream joins, each test naming the Kafka Streams behaviour it encodes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::time::Duration;

use kappa_streams::{JoinSerdes, JoinWindows, StreamsBuilder, TopologyTestDriver, Utf8};

const MS: Duration = Duration::from_millis(1);

fn driver(kind: &str) -> TopologyTestDriver {
    let b = StreamsBuilder::new();
    let left = b.stream("left", Utf8, Utf8);
    let right = b.stream("right", Utf8, Utf8);
    let w = JoinWindows::of_time_difference(5 * MS);
    let serdes = JoinSerdes::new(Utf8, Utf8, Utf8);
    let joined = match kind {
        "inner" => left.join_stream(&right, "j", w, serdes, |l: String, r: String| {
            format!("{l}+{r}")
        }),
        "left" => left.left_join_stream(&right, "j", w, serdes, |l: String, r: Option<String>| {
            format!("{l}+{r:?}")
        }),
        _ => left.outer_join_stream(
            &right,
            "j",
            w,
            serdes,
            |l: Option<String>, r: Option<String>| format!("{l:?}+{r:?}"),
        ),
    };
    joined.to("out", Utf8, Utf8);
    TopologyTestDriver::new(b.build().unwrap(), 1).unwrap()
}

fn pipe(d: &mut TopologyTestDriver, side: &str, key: &str, value: &str, t: i64) {
    d.pipe(side, &Utf8, &key.to_owned(), &Utf8, &value.to_owned(), t)
        .unwrap();
}

fn out(d: &mut TopologyTestDriver) -> Vec<(String, String, i64)> {
    d.read_output("out", &Utf8, &Utf8)
        .unwrap()
        .into_iter()
        .map(|(k, v, t)| (k, v.unwrap(), t))
        .collect()
}

fn s(v: &str) -> String {
    v.to_owned()
}

#[test]
fn inner_join_pairs_records_of_equal_key_within_the_window() {
    let mut d = driver("inner");
    pipe(&mut d, "left", "a", "L1", 10);
    pipe(&mut d, "right", "a", "R1", 12); // 2 ms apart: joins
    pipe(&mut d, "right", "b", "R2", 12); // other key
    pipe(&mut d, "right", "a", "R3", 30); // 20 ms apart: no
    pipe(&mut d, "left", "a", "L2", 27); // joins R3 only (R1 is 15 ms away)
    assert_eq!(
        out(&mut d),
        [(s("a"), s("L1+R1"), 12), (s("a"), s("L2+R3"), 27)]
    );
}

#[test]
fn left_join_emits_an_unpartnered_left_record_only_after_its_window_closes() {
    let mut d = driver("left");
    pipe(&mut d, "left", "a", "L1", 0);
    pipe(&mut d, "left", "b", "L2", 2);
    pipe(&mut d, "right", "b", "R1", 4); // partners L2
    assert_eq!(out(&mut d), [(s("b"), s("L2+Some(\"R1\")"), 4)]);
    pipe(&mut d, "right", "c", "R2", 20); // stream time 20 closes windows before 15
    assert_eq!(out(&mut d), [(s("a"), s("L1+None"), 0)]);
}

#[test]
fn outer_join_emits_unpartnered_records_of_both_sides() {
    let mut d = driver("outer");
    pipe(&mut d, "left", "a", "L1", 0);
    pipe(&mut d, "right", "b", "R1", 1);
    pipe(&mut d, "left", "c", "L2", 2);
    pipe(&mut d, "right", "c", "R2", 3);
    pipe(&mut d, "left", "z", "L3", 30);
    let mut got = out(&mut d);
    got.sort();
    assert_eq!(
        got,
        [
            (s("a"), s("Some(\"L1\")+None"), 0),
            (s("b"), s("None+Some(\"R1\")"), 1),
            (s("c"), s("Some(\"L2\")+Some(\"R2\")"), 3)
        ]
    );
}
