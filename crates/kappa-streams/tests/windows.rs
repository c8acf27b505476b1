//! Windowed aggregations, each test naming the Kafka Streams behaviour it encodes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::sync::Arc;
use std::time::Duration;

use kappa_log::{Log, MemoryLog, ProducerRecord, TopicSpec};
use kappa_streams::provenance::SOURCE_HEADER;
use kappa_streams::{
    ERROR_HEADER, Emit, I64, Materialized, Streams, StreamsBuilder, StreamsConfig, TimeWindows,
    Topology, TopologyTestDriver, Utf8, Window, Windowed, WindowedSerde,
};

const MS: Duration = Duration::from_millis(1);

fn counts(windows: TimeWindows, emit: Emit, late_topic: bool) -> TopologyTestDriver {
    let b = StreamsBuilder::new();
    let mut w = b
        .stream("in", Utf8, Utf8)
        .group_by_key(Utf8)
        .windowed_by(windows)
        .emit(emit);
    if late_topic {
        w = w.late_records_to("late");
    }
    w.count(Materialized::in_memory("counts")).to(
        "out",
        WindowedSerde::new(Utf8, Duration::from_millis(windows.size_ms() as u64)),
        I64,
    );
    TopologyTestDriver::new(b.build().unwrap(), 1).unwrap()
}

/// A log holding topics `in` and `out`, one partition each, for runtime tests.
fn in_and_out_log() -> Arc<dyn Log> {
    let log: Arc<dyn Log> = Arc::new(MemoryLog::new());
    for t in ["in", "out"] {
        log.create_topic(&TopicSpec::new(t, 1)).unwrap();
    }
    log
}

/// Per-key counts in `windows` of 10 ms, each emitted once when it closes,
/// from a persistent store so open windows outlive a restart.
fn final_counts(windows: TimeWindows) -> Topology {
    let b = StreamsBuilder::new();
    b.stream("in", Utf8, Utf8)
        .group_by_key(Utf8)
        .windowed_by(windows)
        .emit(Emit::Final)
        .count(Materialized::persistent("counts"))
        .to("out", WindowedSerde::new(Utf8, 10 * MS), I64);
    b.build().unwrap()
}

/// Starts `final_counts(windows)` as application `app`, appends `records`,
/// and closes once they are processed: one life of the application.
fn run_final_counts(
    log: &Arc<dyn Log>,
    app: &str,
    windows: TimeWindows,
    records: Vec<ProducerRecord>,
) {
    let topology = final_counts(windows);
    let streams = Streams::start(log.clone(), topology, StreamsConfig::new(app)).unwrap();
    log.append("in", records).unwrap();
    streams.wait_for_inputs().unwrap();
    streams.close().unwrap();
}

/// A record of `key` at time `t`.
fn rec(key: &str, t: i64) -> ProducerRecord {
    ProducerRecord::value("v")
        .with_key(key.to_owned())
        .with_timestamp(t)
}

/// Everything in `out`, partition 0.
fn written_out(log: &Arc<dyn Log>) -> Vec<kappa_log::Record> {
    let mut got = Vec::new();
    log.fetch(
        &[(kappa_log::TopicPartition::new("out", 0), 0)],
        kappa_log::FetchLimits::default(),
        &mut got,
    )
    .unwrap();
    got
}

fn pipe(d: &mut TopologyTestDriver, key: &str, ts: i64) {
    d.pipe("in", &Utf8, &key.to_owned(), &Utf8, &"v".to_owned(), ts)
        .unwrap();
}

fn out(d: &mut TopologyTestDriver, size: i64) -> Vec<(String, i64, i64, i64)> {
    let serde = WindowedSerde::new(Utf8, Duration::from_millis(size as u64));
    d.read_output("out", &serde, &I64)
        .unwrap()
        .into_iter()
        .map(|(Windowed { key, window }, v, _)| (key, window.start, window.end, v.unwrap()))
        .collect()
}

#[test]
fn tumbling_windows_are_epoch_aligned_and_half_open() {
    let mut d = counts(
        TimeWindows::of_size_no_grace(10 * MS),
        Emit::OnUpdate,
        false,
    );
    for t in [0, 9, 10] {
        pipe(&mut d, "a", t);
    }
    // t=9 is in [0,10); t=10 starts [10,20).
    assert_eq!(
        out(&mut d, 10),
        [(s("a"), 0, 10, 1), (s("a"), 0, 10, 2), (s("a"), 10, 20, 1)]
    );
}

#[test]
fn a_hopping_window_record_joins_every_window_that_covers_it() {
    let w = TimeWindows::of_size_no_grace(10 * MS).advance_by(5 * MS);
    assert_eq!(
        w.windows_for(7),
        [Window { start: 0, end: 10 }, Window { start: 5, end: 15 }]
    );
    assert_eq!(
        w.windows_for(10),
        [Window { start: 5, end: 15 }, Window { start: 10, end: 20 }]
    );
    let day = Duration::from_secs(86_400);
    let month = TimeWindows::of_size_with_grace(day * 30, day * 2).advance_by(day);
    let t = 100 * 86_400_000 + 3_600_000;
    let ws = month.windows_for(t);
    assert_eq!(ws.len(), 30);
    assert!(
        ws.iter()
            .all(|w| w.start % 86_400_000 == 0 && w.start <= t && t < w.end)
    );

    let mut d = counts(w, Emit::OnUpdate, false);
    pipe(&mut d, "a", 7);
    pipe(&mut d, "a", 12);
    assert_eq!(
        out(&mut d, 10),
        [
            (s("a"), 0, 10, 1),
            (s("a"), 5, 15, 1),
            (s("a"), 5, 15, 2),
            (s("a"), 10, 20, 1)
        ]
    );
}

#[test]
fn grace_is_measured_against_stream_time_and_late_records_are_kept() {
    let w = TimeWindows::of_size_with_grace(10 * MS, 5 * MS);
    // Stream time 12 < 10 + 5: window [0,10) still accepts t=2.
    let mut d = counts(w, Emit::OnUpdate, true);
    pipe(&mut d, "a", 5);
    pipe(&mut d, "a", 12);
    pipe(&mut d, "a", 2);
    assert_eq!(out(&mut d, 10).last(), Some(&(s("a"), 0, 10, 2)));
    assert_eq!(d.late_records(), 0);

    // Stream time 16 >= 15: [0,10) is closed, so t=2 is late.
    let mut d = counts(w, Emit::OnUpdate, true);
    pipe(&mut d, "a", 5);
    pipe(&mut d, "a", 16);
    pipe(&mut d, "a", 2);
    assert_eq!(out(&mut d, 10), [(s("a"), 0, 10, 1), (s("a"), 10, 20, 1)]);
    assert_eq!(d.late_records(), 1);
    let late = d.read_records("late").unwrap();
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].timestamp, 2);
    assert_eq!(
        late[0].header(SOURCE_HEADER).map(|v| &v[..]),
        Some(&b"in/0/2"[..])
    );
    assert!(late[0].header(ERROR_HEADER).is_some());
}

#[test]
fn emit_final_emits_each_window_once_when_it_closes() {
    let mut d = counts(TimeWindows::of_size_no_grace(10 * MS), Emit::Final, false);
    pipe(&mut d, "a", 1);
    pipe(&mut d, "a", 2);
    pipe(&mut d, "b", 3);
    assert!(
        out(&mut d, 10).is_empty(),
        "nothing closes before stream time reaches 10"
    );
    pipe(&mut d, "a", 11);
    let mut closed = out(&mut d, 10);
    closed.sort();
    assert_eq!(closed, [(s("a"), 0, 10, 2), (s("b"), 0, 10, 1)]);
    pipe(&mut d, "c", 25);
    assert_eq!(out(&mut d, 10), [(s("a"), 10, 20, 1)]);
}

#[test]
fn open_windows_survive_a_restart_and_still_emit_final() {
    let log = in_and_out_log();
    let run =
        |records| run_final_counts(&log, "win", TimeWindows::of_size_no_grace(10 * MS), records);
    run(vec![rec("a", 1), rec("a", 4)]);
    assert_eq!(
        log.offsets(&kappa_log::TopicPartition::new("out", 0))
            .unwrap()
            .end,
        0
    );
    run(vec![rec("b", 12)]);
    let got = written_out(&log);
    assert_eq!(
        got.len(),
        1,
        "the window opened before the restart closes after it"
    );
    let mut key = b"a".to_vec();
    key.extend_from_slice(&0i64.to_be_bytes());
    assert_eq!(got[0].key.as_deref(), Some(&key[..]));
    assert_eq!(got[0].value.as_deref(), Some(&2i64.to_be_bytes()[..]));
}

#[test]
fn hopping_partials_survive_a_restart_and_every_window_counts_them() {
    let log = in_and_out_log();
    // 10 ms windows every 5 ms: counts are kept per 5 ms pane and combined
    // when a window closes, so a window spanning the restart needs the
    // panes written before it.
    let windows = TimeWindows::of_size_no_grace(10 * MS).advance_by(5 * MS);
    let run = |records| run_final_counts(&log, "hop", windows, records);
    run(vec![rec("a", 1), rec("a", 6), rec("b", 7)]);
    // Stream time 30 closes every window ending at 30 or before.
    run(vec![rec("a", 8), rec("c", 30)]);
    let got = written_out(&log);
    let got: Vec<(String, i64, i64)> = got
        .iter()
        .map(|r| {
            let key = r.key.as_deref().unwrap();
            let (name, start) = key.split_at(key.len() - 8);
            let value = r.value.as_deref().unwrap();
            (
                String::from_utf8(name.to_vec()).unwrap(),
                i64::from_be_bytes(start.try_into().unwrap()),
                i64::from_be_bytes(value.try_into().unwrap()),
            )
        })
        .collect();
    let expected = [
        // [-5, 5): a@1
        ("a", -5, 1),
        // [0, 10): a@1, a@6, a@8; b@7
        ("a", 0, 3),
        ("b", 0, 1),
        // [5, 15): a@6, a@8; b@7
        ("a", 5, 2),
        ("b", 5, 1),
    ];
    let expected: Vec<(String, i64, i64)> = expected
        .iter()
        .map(|(k, s, n)| ((*k).to_owned(), *s, *n))
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn bad_window_definitions_are_refused_at_build_time() {
    let b = StreamsBuilder::new();
    b.stream("in", Utf8, Utf8)
        .group_by_key(Utf8)
        .windowed_by(TimeWindows::of_size_no_grace(10 * MS).advance_by(20 * MS))
        .count(Materialized::in_memory("c"));
    assert!(
        b.build()
            .err()
            .unwrap()
            .to_string()
            .contains("advance <= size")
    );
}

fn s(v: &str) -> String {
    v.to_owned()
}

#[test]
fn a_timestamp_extractor_sets_event_time_for_windows_and_outputs() {
    let b = StreamsBuilder::new();
    b.stream_with_timestamps(
        "in",
        Utf8,
        kappa_streams::Json::<i64>::new(),
        |_, at: &i64, _| *at,
    )
    .group_by_key(Utf8)
    .windowed_by(TimeWindows::of_size_no_grace(10 * MS))
    .count(Materialized::in_memory("counts"))
    .to("out", WindowedSerde::new(Utf8, 10 * MS), I64);
    let mut d = TopologyTestDriver::new(b.build().unwrap(), 1).unwrap();
    for at in [3i64, 14] {
        // The stored timestamp is 0; the value carries the event time.
        d.pipe("in", &Utf8, &s("a"), &kappa_streams::Json::new(), &at, 0)
            .unwrap();
    }
    let got: Vec<(i64, i64, i64)> = d
        .read_output("out", &WindowedSerde::new(Utf8, 10 * MS), &I64)
        .unwrap()
        .into_iter()
        .map(|(w, _, ts)| (w.window.start, w.window.end, ts))
        .collect();
    assert_eq!(got, [(0, 10, 3), (10, 20, 14)]);
}

mod panes {
    use super::*;
    use kappa_streams::Json;
    use proptest::prelude::*;

    /// (key, window start, window end, value) per emitted window.
    type Emitted = Vec<(String, i64, i64, Option<i64>)>;

    fn run(records: &[(u8, i64)], combinable: bool) -> (Emitted, u64) {
        let b = StreamsBuilder::new();
        let w = b
            .stream("in", Utf8, Json::<i64>::new())
            .group_by_key(Utf8)
            .windowed_by(TimeWindows::of_size_with_grace(10 * MS, 3 * MS).advance_by(4 * MS))
            .emit(Emit::Final);
        let table = if combinable {
            w.aggregate_combinable(
                Materialized::in_memory("sum"),
                Json::<i64>::new(),
                || 0,
                |_, v, s| s + v,
                |a, b| a + b,
            )
        } else {
            w.aggregate(
                Materialized::in_memory("sum"),
                Json::<i64>::new(),
                || 0,
                |_, v, s| s + v,
            )
        };
        table.to("out", WindowedSerde::new(Utf8, 10 * MS), Json::<i64>::new());
        let mut d = TopologyTestDriver::new(b.build().unwrap(), 1).unwrap();
        for &(k, t) in records {
            d.pipe("in", &Utf8, &format!("k{k}"), &Json::new(), &(t % 7), t)
                .unwrap();
        }
        let out = d
            .read_output(
                "out",
                &WindowedSerde::new(Utf8, 10 * MS),
                &Json::<i64>::new(),
            )
            .unwrap()
            .into_iter()
            .map(|(w, v, _)| (w.key, w.window.start, w.window.end, v))
            .collect();
        (out, d.late_records())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Panes (one write per record) give exactly what per-window
        /// aggregation gives: same windows, values, order and late records.
        #[test]
        fn pane_aggregation_equals_per_window_aggregation(
            records in prop::collection::vec((0..3u8, 0..120i64), 1..60)
        ) {
            prop_assert_eq!(run(&records, true), run(&records, false));
        }
    }

    #[test]
    fn hopping_final_results_hold_every_pane_of_the_window() {
        let (out, late) = run(&[(0, 1), (0, 5), (0, 9), (0, 30)], true);
        // Windows [s, s+10) with s a multiple of 4; t=1,5,9 values 1,5,2.
        let first: Vec<_> = out.iter().filter(|(_, s, _, _)| *s <= 8).cloned().collect();
        assert_eq!(
            first,
            [
                (s("k0"), -8, 2, Some(1)),
                (s("k0"), -4, 6, Some(6)),
                (s("k0"), 0, 10, Some(8)),
                (s("k0"), 4, 14, Some(7)),
                (s("k0"), 8, 18, Some(2))
            ]
        );
        assert_eq!(late, 0);
    }
}

#[test]
fn stream_time_survives_a_restart_so_closed_windows_stay_closed() {
    let log = in_and_out_log();
    let tumbling = TimeWindows::of_size_no_grace(10 * MS);
    let run = |records| run_final_counts(&log, "st", tumbling, records);
    let rec = |t: i64| ProducerRecord::value("v").with_key("a").with_timestamp(t);
    run(vec![rec(5), rec(30)]);
    let out = kappa_log::TopicPartition::new("out", 0);
    assert_eq!(
        log.offsets(&out).unwrap().end,
        1,
        "[0,10) closed and emitted once"
    );
    // After a restart t=3 is still late: [0,10) must not reopen and emit again.
    run(vec![rec(3), rec(45)]);
    let mut got = Vec::new();
    log.fetch(&[(out, 0)], kappa_log::FetchLimits::default(), &mut got)
        .unwrap();
    let starts: Vec<i64> = got
        .iter()
        .map(|r| i64::from_be_bytes(r.key.as_ref().unwrap()[1..9].try_into().unwrap()))
        .collect();
    assert_eq!(starts, [0, 30]);
}

#[test]
fn records_of_other_topics_in_the_task_do_not_close_a_nodes_windows() {
    let b = StreamsBuilder::new();
    b.table("settings", Utf8, Utf8, Materialized::in_memory("settings"));
    b.stream("in", Utf8, Utf8)
        .group_by_key(Utf8)
        .windowed_by(TimeWindows::of_size_no_grace(10 * MS))
        .count(Materialized::in_memory("counts"))
        .to("out", WindowedSerde::new(Utf8, 10 * MS), I64);
    let mut d = TopologyTestDriver::new(b.build().unwrap(), 1).unwrap();
    // A far-future table update moves the task's stream time, not the window node's.
    d.pipe("settings", &Utf8, &s("x"), &Utf8, &s("y"), 1_000_000)
        .unwrap();
    pipe(&mut d, "a", 5);
    assert_eq!(out(&mut d, 10), [(s("a"), 0, 10, 1)]);
    assert_eq!(d.late_records(), 0);
}

#[test]
fn the_runtime_counts_processed_and_late_records() {
    let log = in_and_out_log();
    let b = StreamsBuilder::new();
    b.stream("in", Utf8, Utf8)
        .group_by_key(Utf8)
        .windowed_by(TimeWindows::of_size_no_grace(10 * MS))
        .count(Materialized::in_memory("counts"))
        .to("out", WindowedSerde::new(Utf8, 10 * MS), I64);
    let streams = Streams::start(
        log.clone(),
        b.build().unwrap(),
        StreamsConfig::new("metrics"),
    )
    .unwrap();
    let rec = |t: i64| ProducerRecord::value("v").with_key("a").with_timestamp(t);
    log.append("in", vec![rec(5), rec(30), rec(3)]).unwrap();
    streams.wait_for_inputs().unwrap();
    let m = streams.metrics();
    assert_eq!((m.records_processed, m.late_records), (3, 1));
    assert!(m.commits >= 1);
    streams.close().unwrap();
}
