//! The `kappa` binary end to end: topics, produce, consume, errors, bench.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::stdout_of_success;
use kappa_log::{EmbeddedLog, Log, TopicPartition, partition_for_key};

fn kappa(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kappa"));
    c.arg("--log")
        .arg(dir)
        .args(args)
        .env_remove("KAPPA_LOG")
        .env_remove("KAPPA_DURABILITY");
    c
}

fn run(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = kappa(dir, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn ok(dir: &Path, args: &[&str], stdin: &str) -> String {
    let out = run(dir, args, stdin);
    assert!(
        out.status.success(),
        "kappa {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fails(dir: &Path, args: &[&str], stdin: &str) -> String {
    let out = run(dir, args, stdin);
    assert!(!out.status.success(), "kappa {args:?} should have failed");
    String::from_utf8(out.stderr).unwrap()
}

/// `kappa topics create TOPIC --partitions N OPTIONS…`, which must succeed.
fn create_topic(dir: &Path, topic: &str, partitions: u32, options: &[&str]) {
    let partitions = partitions.to_string();
    let mut args = vec!["topics", "create", topic, "--partitions", &partitions];
    args.extend_from_slice(options);
    ok(dir, &args, "");
}

/// A new log holding `topic`, of one partition, with `lines` produced to it.
fn one_partition_of(topic: &str, lines: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    create_topic(tmp.path(), topic, 1, &[]);
    ok(tmp.path(), &["produce", topic], lines);
    tmp
}

/// `kappa consume TOPIC OPTIONS…`, which must succeed; what it printed.
fn consume(dir: &Path, topic: &str, options: &[&str]) -> String {
    let mut args = vec!["consume", topic];
    args.extend_from_slice(options);
    ok(dir, &args, "")
}

/// Runs `kappa bench BENCHMARK ARGS --json` in a scratch directory, which
/// it must leave empty; the results of its JSON report.
fn bench_results(benchmark: &str, args: &[&str]) -> Vec<serde_json::Value> {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kappa"))
        .args(["bench", benchmark])
        .args(args)
        .args(["--json", "--dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&stdout_of_success(out)).unwrap();
    assert_eq!(report["benchmark"], benchmark);
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "the scratch directory is cleaned up"
    );
    report["results"].as_array().unwrap().clone()
}

fn end_offsets(dir: &Path, topic: &str) -> Vec<u64> {
    let log = EmbeddedLog::open(dir).unwrap();
    let d = log.describe_topic(topic).unwrap();
    d.partitions.iter().map(|p| p.end_offset).collect()
}

#[test]
fn produce_then_consume_round_trips_values_keys_and_positions() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    create_topic(dir, "orders", 3, &[]);
    let positions = ok(
        dir,
        &[
            "produce",
            "orders",
            "--key-separator",
            ":",
            "--print-positions",
        ],
        "card-1:{\"amount\":5}\ncard-2:b\ncard-1:c\n",
    );
    let p1 = partition_for_key(b"card-1", 3);
    let p2 = partition_for_key(b"card-2", 3);
    let expected_positions = if p1 == p2 {
        format!("orders/{p1}/0\norders/{p1}/1\norders/{p1}/2\n")
    } else {
        format!("orders/{p1}/0\norders/{p2}/0\norders/{p1}/1\n")
    };
    assert_eq!(positions, expected_positions);

    let values = consume(dir, "orders", &["--partition", &p1.to_string()]);
    assert_eq!(
        values,
        if p1 == p2 {
            "{\"amount\":5}\nb\nc\n"
        } else {
            "{\"amount\":5}\nc\n"
        }
    );

    let json = consume(
        dir,
        "orders",
        &[
            "--format",
            "json",
            "--partition",
            &p1.to_string(),
            "--max",
            "1",
        ],
    );
    let line: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(line["topic"], "orders");
    assert_eq!(line["partition"], p1);
    assert_eq!(line["offset"], 0);
    assert_eq!(line["key"], "card-1");
    assert_eq!(line["value"], "{\"amount\":5}");
    assert!(line["timestamp"].as_i64().unwrap() > 1_600_000_000_000);
    assert_eq!(line["headers"], serde_json::json!([]));

    let all = consume(dir, "orders", &["--from-beginning"]);
    let mut lines: Vec<&str> = all.lines().collect();
    lines.sort();
    assert_eq!(lines, ["b", "c", "{\"amount\":5}"]);
}

#[test]
fn fixed_keys_partitions_offsets_and_times_select_records() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    create_topic(dir, "t", 2, &[]);
    ok(dir, &["produce", "t", "--partition", "1"], "a\nb\nc\nd\n");
    ok(dir, &["produce", "t", "--key", "same"], "k1\nk2\n");
    let kp = partition_for_key(b"same", 2);
    assert_eq!(
        consume(
            dir,
            "t",
            &[
                "--partition",
                &kp.to_string(),
                "--from-offset",
                if kp == 1 { "4" } else { "0" }
            ]
        ),
        "k1\nk2\n"
    );
    assert_eq!(
        consume(
            dir,
            "t",
            &["--partition", "1", "--from-offset", "2", "--max", "1"]
        ),
        "c\n"
    );
    // Every record so far is older than a time in the far future, none newer.
    assert_eq!(
        consume(dir, "t", &["--from-time", "2200-01-01T00:00:00Z"]),
        ""
    );
    let since_epoch = consume(
        dir,
        "t",
        &["--partition", "1", "--from-time", "1970-01-02T00:00:00Z"],
    );
    assert!(since_epoch.starts_with("a\nb\nc\nd\n"), "{since_epoch}");
    let described = ok(dir, &["topics", "describe", "t"], "");
    assert!(described.contains("partitions: 2"), "{described}");
    assert!(
        described.lines().any(|l| l.starts_with("1\t0\t")),
        "{described}"
    );
}

#[test]
fn a_consumer_group_resumes_where_it_stopped() {
    let tmp = one_partition_of("t", "1\n2\n3\n4\n5\n");
    let dir = tmp.path();
    assert_eq!(consume(dir, "t", &["--group", "g", "--max", "2"]), "1\n2\n");
    assert_eq!(consume(dir, "t", &["--group", "g"]), "3\n4\n5\n");
    assert_eq!(consume(dir, "t", &["--group", "g"]), "");
    let log = EmbeddedLog::open(dir).unwrap();
    assert_eq!(
        log.group_positions("g").unwrap(),
        vec![(TopicPartition::new("t", 0), 5)]
    );
}

#[test]
fn follow_prints_existing_records_and_stops_at_max() {
    // The embedded log belongs to one process, so a follower can't watch
    // another process append (tailing across threads is tested in
    // kappa-log's log_behaviour.rs). Here: --follow prints what exists and
    // stops once --max records were printed.
    let tmp = one_partition_of("live", "first\n");
    let dir = tmp.path();
    let follower = kappa(dir, &["consume", "live", "--follow", "--max", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = follower.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "first\n");
}

#[test]
fn bad_input_is_refused_with_a_clear_message_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    create_topic(dir, "t", 2, &["--max-record-bytes", "100"]);
    assert!(
        fails(
            dir,
            &["topics", "create", "bad name", "--partitions", "1"],
            ""
        )
        .contains("invalid topic name")
    );
    assert!(
        fails(dir, &["topics", "create", "t", "--partitions", "1"], "").contains("already exists")
    );
    assert!(
        fails(
            dir,
            &[
                "topics",
                "create",
                "u",
                "--partitions",
                "1",
                "--cleanup-policy",
                "shred"
            ],
            ""
        )
        .contains("cleanup policy")
    );
    assert!(fails(dir, &["produce", "nope"], "x\n").contains("unknown topic \"nope\""));
    assert!(fails(dir, &["consume", "nope"], "").contains("unknown topic \"nope\""));
    assert!(
        fails(dir, &["produce", "t", "--partition", "2"], "x\n")
            .contains("partition 2 is out of range")
    );
    assert!(
        fails(dir, &["consume", "t", "--partition", "9"], "")
            .contains("partition 9 is out of range")
    );
    assert!(
        fails(dir, &["--durability", "sometimes", "topics", "list"], "")
            .contains("invalid durability")
    );
    let before = end_offsets(dir, "t");
    let big = format!("ok\n{}\n", "x".repeat(500));
    let err = fails(dir, &["produce", "t", "--partition", "0"], &big);
    assert!(err.contains("larger than topic \"t\" allows"), "{err}");
    assert_eq!(
        end_offsets(dir, "t"),
        before,
        "a rejected batch must write nothing"
    );
    let err = fails(
        dir,
        &["produce", "t", "--key-separator", ":", "--batch-size", "2"],
        "a:1\nb:2\nno separator\n",
    );
    assert!(err.contains("line 3 has no key separator"), "{err}");
    assert!(err.contains("2 records before it were committed"), "{err}");
    assert_eq!(end_offsets(dir, "t").iter().sum::<u64>(), 2);
}

#[test]
fn an_unreachable_kafka_cluster_is_a_clear_error() {
    let state = tempfile::tempdir().unwrap();
    // Nothing listens on port 9 of loopback.
    let out = Command::new(env!("CARGO_BIN_EXE_kappa"))
        .env("KAPPA_STATE_DIR", state.path())
        .args([
            "--log",
            "kafka://127.0.0.1:9?kappa.timeout.ms=1500",
            "topics",
            "list",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("opening the Kafka log at kafka://127.0.0.1:9"),
        "{err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_kappa"))
        .args(["--log", "kafka://127.0.0.1:9?acks=0", "topics", "list"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sets this property itself"), "{err}");
}

#[test]
fn a_second_process_gets_already_in_use() {
    let tmp = tempfile::tempdir().unwrap();
    let holder = EmbeddedLog::open(tmp.path()).unwrap();
    let err = fails(tmp.path(), &["topics", "list"], "");
    assert!(err.contains("already in use by another process"), "{err}");
    drop(holder);
    ok(tmp.path(), &["topics", "list"], "");
}

#[test]
fn topics_can_be_listed_and_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    create_topic(dir, "b", 1, &["--cleanup-policy", "compact"]);
    create_topic(dir, "a", 2, &["--retention-ms", "60000"]);
    assert_eq!(
        ok(dir, &["topics", "list"], ""),
        "a\tpartitions=2\tcleanup.policy=delete\nb\tpartitions=1\tcleanup.policy=compact\n"
    );
    assert!(ok(dir, &["topics", "describe", "a"], "").contains("retention.ms: 60000"));
    ok(dir, &["topics", "delete", "a"], "");
    assert_eq!(
        ok(dir, &["topics", "list"], ""),
        "b\tpartitions=1\tcleanup.policy=compact\n"
    );
    assert!(fails(dir, &["topics", "delete", "a"], "").contains("unknown topic"));
}

#[test]
fn bench_log_prints_a_json_summary() {
    let results = bench_results(
        "log",
        &[
            "--records",
            "3000",
            "--value-sizes",
            "100,1024",
            "--batch",
            "500",
        ],
    );
    assert_eq!(results.len(), 2);
    for (r, size) in results.iter().zip([100, 1024]) {
        assert_eq!(r["value_bytes"], size);
        assert_eq!(r["records"], 3000);
        for field in [
            "append_records_per_s",
            "read_records_per_s",
            "raw_write_fsync_mb_per_s",
            "append_vs_raw_ratio",
        ] {
            assert!(r[field].as_f64().unwrap() > 0.0, "{field} in {r}");
        }
    }
}

#[test]
fn bench_gateway_measures_grpc_beside_http_in_one_run() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kappa"))
        .args(["bench", "gateway", "--duration", "1s", "--rounds", "1"])
        .args([
            "--connections",
            "4",
            "--sync-connections",
            "4",
            "--sync-rate",
            "100",
        ])
        .args(["--durability", "never", "--json", "--dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&stdout_of_success(out)).unwrap();
    assert_eq!(report["benchmark"], "gateway");
    let run = &report["runs"][0];
    let http = &run["async_gateway_alone"]["report"];
    let grpc = &run["async_grpc_gateway_alone"]["report"];
    for (name, r) in [("HTTP", http), ("gRPC", grpc)] {
        assert!(r["ok"].as_u64().unwrap() > 0, "{name}: {r}");
        assert_eq!(r["errors"], 0, "{name}: {r}");
    }
    let ratio = run["async_grpc_gateway_alone"]["ratio_to_http"]
        .as_f64()
        .unwrap();
    let expected =
        grpc["throughput_per_s"].as_f64().unwrap() / http["throughput_per_s"].as_f64().unwrap();
    assert!((ratio - expected).abs() < 1e-9, "{ratio} vs {expected}");
    assert_eq!(report["median"]["async_grpc_ratio_to_http"], ratio);
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "the scratch directory is cleaned up"
    );
}

#[test]
fn bench_streams_prints_a_json_summary() {
    let results = bench_results(
        "streams",
        &[
            "--records",
            "2000",
            "--durability",
            "never",
            "--rounds",
            "2",
        ],
    );
    let names: Vec<&str> = results
        .iter()
        .map(|r| r["scenario"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "filter-map",
            "keyed-count",
            "keyed-count-mem",
            "hopping-sum"
        ]
    );
    for r in results {
        assert_eq!(r["records"], 2000);
        let rounds: Vec<f64> = r["rounds_records_per_s"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(rounds.len(), 2, "{r}");
        // The median of two rounds lies between them.
        let (low, high) = (rounds[0].min(rounds[1]), rounds[0].max(rounds[1]));
        let median = r["records_per_s"].as_f64().unwrap();
        assert!(low > 0.0 && (low..=high).contains(&median), "{r}");
    }
}

#[test]
fn app_reset_moves_positions_back_and_drops_stores() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let log = EmbeddedLog::open(tmp.path()).unwrap();
        log.create_topic(&kappa_log::TopicSpec::new("in", 1))
            .unwrap();
        log.append("in", vec![kappa_log::ProducerRecord::value("v"); 3])
            .unwrap();
        let mut c = kappa_log::Commit::new();
        c.set_group_position("app", TopicPartition::new("in", 0), 3);
        c.put_metadata("kappa-streams/app/store/x", "1");
        c.put_metadata("kappa-streams/other/store/x", "2");
        log.commit(c).unwrap();
    }
    let out = ok(tmp.path(), &["app", "reset", "--application-id", "app"], "");
    assert!(
        out.contains("1 input position(s) back to the start, 1 store entries dropped"),
        "{out}"
    );
    let log = EmbeddedLog::open(tmp.path()).unwrap();
    assert_eq!(
        log.group_positions("app").unwrap(),
        vec![(TopicPartition::new("in", 0), 0)]
    );
    assert!(
        log.metadata(b"kappa-streams/app/store/x")
            .unwrap()
            .is_none()
    );
    assert!(
        log.metadata(b"kappa-streams/other/store/x")
            .unwrap()
            .is_some()
    );
}

#[test]
fn demo_serves_commands_that_load_drives_and_the_log_keeps() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let mut demo = kappa(
        &log_dir,
        &[
            "--durability",
            "never",
            "demo",
            "--http",
            "127.0.0.1:0",
            "--partitions",
            "2",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let mut line = String::new();
    BufReader::new(demo.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .to_owned();
    let out = Command::new(env!("CARGO_BIN_EXE_kappa"))
        .args([
            "load",
            "--url",
            &url,
            "--sync",
            "--rate",
            "200",
            "--connections",
            "4",
            "--duration",
            "1s",
            "--json",
        ])
        .output()
        .unwrap();
    demo.kill().unwrap();
    demo.wait().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&stdout_of_success(out)).unwrap();
    let ok = report["ok"].as_u64().unwrap();
    assert!(ok > 100, "{report}");
    assert_eq!(report["errors"], 0);
    assert!(report["latency_ms"]["p99"].as_f64().unwrap() > 0.0);
    // Every answered command is in the log, with its event.
    assert_eq!(end_offsets(&log_dir, "commands").iter().sum::<u64>(), ok);
    assert_eq!(end_offsets(&log_dir, "events").iter().sum::<u64>(), ok);
    let bad = Command::new(env!("CARGO_BIN_EXE_kappa"))
        .args(["load", "--url", "localhost:1", "--duration", "1s"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("http://"));
}
