//! Session windows, each test naming the Kafka Streams behaviour it encodes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::time::Duration;

use kappa_streams::{
    Emit, I64, Materialized, Serde, SessionWindowedSerde, SessionWindows, StreamsBuilder,
    TopologyTestDriver, Utf8, Window, Windowed,
};

const MS: Duration = Duration::from_millis(1);

fn driver(sessions: SessionWindows, emit: Emit) -> TopologyTestDriver {
    let b = StreamsBuilder::new();
    b.stream("in", Utf8, Utf8)
        .group_by_key(Utf8)
        .windowed_by_sessions(sessions)
        .emit(emit)
        .late_records_to("late")
        .count(Materialized::persistent("sessions"))
        .to("out", SessionWindowedSerde(Utf8), I64);
    TopologyTestDriver::new(b.build().unwrap(), 1).unwrap()
}

fn pipe(d: &mut TopologyTestDriver, key: &str, t: i64) {
    d.pipe("in", &Utf8, &key.to_owned(), &Utf8, &"v".to_owned(), t)
        .unwrap();
}

fn out(d: &mut TopologyTestDriver) -> Vec<(String, i64, i64, Option<i64>)> {
    d.read_output("out", &SessionWindowedSerde(Utf8), &I64)
        .unwrap()
        .into_iter()
        .map(|(w, v, _)| (w.key, w.window.start, w.window.end, v))
        .collect()
}

fn s(v: &str) -> String {
    v.to_owned()
}

#[test]
fn records_within_the_gap_share_a_session_and_others_start_a_new_one() {
    let mut d = driver(SessionWindows::with_inactivity_gap(5 * MS), Emit::OnUpdate);
    pipe(&mut d, "a", 0);
    pipe(&mut d, "a", 3);
    pipe(&mut d, "a", 20);
    pipe(&mut d, "b", 18);
    assert_eq!(
        out(&mut d),
        [
            (s("a"), 0, 0, Some(1)),
            (s("a"), 0, 0, None),
            (s("a"), 0, 3, Some(2)),
            (s("a"), 20, 20, Some(1)),
            (s("b"), 18, 18, Some(1))
        ]
    );
}

#[test]
fn a_record_bridging_two_sessions_merges_them() {
    let mut d = driver(
        SessionWindows::with_inactivity_gap_and_grace(5 * MS, 100 * MS),
        Emit::OnUpdate,
    );
    pipe(&mut d, "a", 0);
    pipe(&mut d, "a", 10);
    pipe(&mut d, "a", 5);
    let got = out(&mut d);
    assert_eq!(
        got[2..],
        [
            (s("a"), 0, 0, None),
            (s("a"), 10, 10, None),
            (s("a"), 0, 10, Some(3))
        ]
    );
    // Session entries (the store also keeps the node's stream time under a short key).
    let sessions = d
        .store("sessions")
        .all()
        .unwrap()
        .into_iter()
        .filter(|(k, _)| k.len() > 7)
        .count();
    assert_eq!(sessions, 1, "merged sessions leave one entry");
}

#[test]
fn a_record_for_a_closed_session_is_late() {
    let mut d = driver(SessionWindows::with_inactivity_gap(5 * MS), Emit::OnUpdate);
    pipe(&mut d, "a", 0);
    pipe(&mut d, "b", 20); // stream time 20: sessions ending before 15 are closed
    pipe(&mut d, "a", 2);
    assert_eq!(
        out(&mut d),
        [(s("a"), 0, 0, Some(1)), (s("b"), 20, 20, Some(1))]
    );
    assert_eq!(d.late_records(), 1);
    assert_eq!(d.read_records("late").unwrap().len(), 1);
}

#[test]
fn emit_final_emits_a_session_once_it_closes() {
    let mut d = driver(SessionWindows::with_inactivity_gap(5 * MS), Emit::Final);
    pipe(&mut d, "a", 0);
    pipe(&mut d, "a", 3);
    assert!(out(&mut d).is_empty());
    pipe(&mut d, "b", 20);
    assert_eq!(out(&mut d), [(s("a"), 0, 3, Some(2))]);
}

#[test]
fn session_keys_encode_as_kafka_does() {
    let w = Windowed {
        key: s("k"),
        window: Window { start: 1, end: 2 },
    };
    let mut b = Vec::new();
    SessionWindowedSerde(Utf8).serialize(&w, &mut b).unwrap();
    let mut expected = b"k".to_vec();
    expected.extend_from_slice(&2i64.to_be_bytes());
    expected.extend_from_slice(&1i64.to_be_bytes());
    assert_eq!(b, expected);
    assert_eq!(SessionWindowedSerde(Utf8).deserialize(&b).unwrap(), w);
}
