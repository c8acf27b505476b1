//! Sliding windows (KIP-450), each test naming the behaviour it encodes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::time::Duration;

use kappa_streams::{
    Emit, I64, Materialized, SlidingWindows, StreamsBuilder, TopologyTestDriver, Utf8,
    WindowedSerde,
};

const MS: Duration = Duration::from_millis(1);

fn driver(emit: Emit) -> TopologyTestDriver {
    driver_with_grace(emit, Duration::ZERO)
}

fn driver_with_grace(emit: Emit, grace: Duration) -> TopologyTestDriver {
    let b = StreamsBuilder::new();
    b.stream("in", Utf8, Utf8)
        .group_by_key(Utf8)
        .windowed_by_sliding(SlidingWindows::with_time_difference_and_grace(
            10 * MS,
            grace,
        ))
        .emit(emit)
        .late_records_to("late")
        .count(Materialized::persistent("counts"), Utf8)
        .to("out", WindowedSerde::new(Utf8, 10 * MS), I64);
    TopologyTestDriver::new(b.build().unwrap(), 1).unwrap()
}

fn pipe(d: &mut TopologyTestDriver, t: i64) {
    d.pipe("in", &Utf8, &"A".to_owned(), &Utf8, &"v".to_owned(), t)
        .unwrap();
}

/// (start, end, count); ends are inclusive for sliding windows. The serde
/// carries only the start, so ends are read back from the records' order.
fn out(d: &mut TopologyTestDriver) -> Vec<(i64, i64)> {
    d.read_output("out", &WindowedSerde::new(Utf8, 10 * MS), &I64)
        .unwrap()
        .into_iter()
        .map(|(w, v, _)| (w.window.start, v.unwrap()))
        .collect()
}

#[test]
fn a_record_opens_its_left_window_and_updates_the_windows_holding_it() {
    let mut d = driver(Emit::OnUpdate);
    pipe(&mut d, 5);
    assert_eq!(out(&mut d), [(-5, 1)]); // [-5, 5]; no right window without later records
    pipe(&mut d, 8);
    // [-2, 8] holds 5 and 8; the right window of 5, [6, 16], now exists and holds 8.
    assert_eq!(out(&mut d), [(-2, 2), (6, 1)]);
}

#[test]
fn an_out_of_order_record_updates_later_windows_and_creates_its_right_window() {
    // Enough grace that no window has closed yet.
    let mut d = driver_with_grace(Emit::OnUpdate, 20 * MS);
    pipe(&mut d, 5);
    pipe(&mut d, 8);
    out(&mut d);
    pipe(&mut d, 3);
    // Its left window [-7, 3]; left windows of 5 and 8 now also hold it;
    // its right window [4, 14] holds 5 and 8.
    assert_eq!(out(&mut d), [(-7, 1), (-5, 2), (-2, 3), (4, 2)]);
}

#[test]
fn windows_closed_by_stream_time_are_not_updated() {
    let mut d = driver(Emit::OnUpdate);
    pipe(&mut d, 5);
    pipe(&mut d, 8);
    out(&mut d);
    pipe(&mut d, 3);
    // No grace: [-7, 3] and [-5, 5] ended before stream time 8 and stay closed.
    assert_eq!(out(&mut d), [(-2, 3), (4, 2)]);
}

#[test]
fn a_record_whose_right_window_is_closed_is_late() {
    let mut d = driver(Emit::OnUpdate);
    pipe(&mut d, 100);
    out(&mut d);
    pipe(&mut d, 50); // 50 + 1 + 10 < stream time 100
    assert!(out(&mut d).is_empty());
    assert_eq!(d.late_records(), 1);
    assert_eq!(d.read_records("late").unwrap().len(), 1);
}

#[test]
fn emit_final_emits_each_window_once_after_it_closes() {
    let mut d = driver(Emit::Final);
    pipe(&mut d, 5);
    assert!(out(&mut d).is_empty());
    pipe(&mut d, 8); // stream time 8 closes [-5, 5]
    assert_eq!(out(&mut d), [(-5, 1)]);
    pipe(&mut d, 30); // closes the windows ending before 30
    assert_eq!(out(&mut d), [(-2, 2), (6, 1)]);
}
