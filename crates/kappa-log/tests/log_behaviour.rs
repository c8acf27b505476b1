//! What a Kafka user expects of a log: tailing, partitioning, timestamps,
//! groups, metadata, retention, compaction, topic lifecycle.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod behaviour;

use std::sync::Arc;
use std::time::Duration;

use behaviour::{
    alter_config, check_altered_config, check_deleted_group_positions, delete_some_group_positions,
    grow_orders, read_partition,
};
use kappa_log::{
    Commit, Durability, EmbeddedLog, EmbeddedOptions, FetchLimits, Log, LogError, ProducerRecord,
    Record, TopicPartition, TopicSpec, partition_for_key,
};

fn open(dir: &std::path::Path) -> EmbeddedLog {
    EmbeddedLog::open_with(
        dir,
        EmbeddedOptions::default().durability(Durability::Never),
    )
    .unwrap()
}

fn values(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| {
            r.value.as_deref().map_or("<tombstone>".to_owned(), |v| {
                String::from_utf8_lossy(v).into_owned()
            })
        })
        .collect()
}

#[test]
fn a_waiting_reader_wakes_on_commit() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(dir.path()));
    log.create_topic(&TopicSpec::new("t", 2)).unwrap();
    let reader = {
        let log = log.clone();
        std::thread::spawn(move || {
            let from = [
                (TopicPartition::new("t", 0), 0),
                (TopicPartition::new("t", 1), 0),
            ];
            // Far longer than the test takes: if the commit did not wake the
            // reader, it would return empty and the assertion below fails.
            let limits = FetchLimits {
                wait_max: Duration::from_secs(600),
                ..FetchLimits::default()
            };
            let mut out = Vec::new();
            log.fetch(&from, limits, &mut out).unwrap();
            out
        })
    };
    let mut c = Commit::new();
    c.append_to("t", 1, ProducerRecord::value("wake up"));
    log.commit(c).unwrap();
    let got = reader.join().unwrap();
    assert_eq!(values(&got), ["wake up"]);
    assert_eq!(got[0].position().to_string(), "t/1/0");
}

#[test]
fn keyed_records_follow_murmur2_and_keyless_ones_rotate() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.create_topic(&TopicSpec::new("t", 3)).unwrap();
    let keyed: Vec<ProducerRecord> = (0..30)
        .map(|i| ProducerRecord::value(format!("v{i}")).with_key(format!("card-{}", i % 5)))
        .collect();
    let positions = log.append("t", keyed).unwrap();
    for (i, p) in positions.iter().enumerate() {
        let key = format!("card-{}", i % 5);
        assert_eq!(p.partition, partition_for_key(key.as_bytes(), 3), "{key}");
    }
    let before: Vec<u64> = (0..3)
        .map(|p| log.offsets(&TopicPartition::new("t", p)).unwrap().end)
        .collect();
    log.append(
        "t",
        (0..9)
            .map(|i| ProducerRecord::value(format!("k{i}")))
            .collect(),
    )
    .unwrap();
    for p in 0..3u32 {
        let end = log.offsets(&TopicPartition::new("t", p)).unwrap().end;
        assert_eq!(
            end - before[p as usize],
            3,
            "partition {p} got an uneven share"
        );
    }
}

#[test]
fn offsets_by_timestamp_find_the_first_record_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.create_topic(&TopicSpec::new("t", 1)).unwrap();
    for batch in [[10, 20], [15, 30]] {
        log.append(
            "t",
            batch
                .iter()
                .map(|&ts| ProducerRecord::value("x").with_timestamp(ts))
                .collect(),
        )
        .unwrap();
    }
    let tp = TopicPartition::new("t", 0);
    assert_eq!(log.offset_for_timestamp(&tp, 0).unwrap(), Some(0));
    assert_eq!(log.offset_for_timestamp(&tp, 11).unwrap(), Some(1));
    assert_eq!(log.offset_for_timestamp(&tp, 15).unwrap(), Some(1));
    assert_eq!(log.offset_for_timestamp(&tp, 21).unwrap(), Some(3));
    assert_eq!(log.offset_for_timestamp(&tp, 31).unwrap(), None);
}

#[test]
fn group_positions_and_metadata_commit_with_records_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        log.create_topic(&TopicSpec::new("in", 2)).unwrap();
        log.create_topic(&TopicSpec::new("out", 1)).unwrap();
        log.append("in", vec![ProducerRecord::value("a").with_key("k")])
            .unwrap();
        let mut c = Commit::new();
        c.append("out", ProducerRecord::value("derived"));
        c.set_group_position(
            "app",
            TopicPartition::new("in", partition_for_key(b"k", 2)),
            1,
        );
        c.put_metadata("store/x/k", "1");
        c.put_metadata("store/x/j", "2");
        c.put_metadata("other", "3");
        log.commit(c).unwrap();
        let mut c = Commit::new();
        c.delete_metadata("store/x/j");
        log.commit(c).unwrap();
    }
    let log = open(dir.path());
    assert_eq!(
        log.group_positions("app").unwrap(),
        vec![(TopicPartition::new("in", partition_for_key(b"k", 2)), 1)]
    );
    assert!(log.group_positions("app2").unwrap().is_empty());
    let scanned = log.metadata_scan(b"store/").unwrap();
    assert_eq!(scanned.len(), 1);
    assert_eq!(
        (&scanned[0].0[..], &scanned[0].1[..]),
        (&b"store/x/k"[..], &b"1"[..])
    );
    assert_eq!(log.metadata(b"other").unwrap().as_deref(), Some(&b"3"[..]));
    assert_eq!(values(&log.read_topic("out").unwrap()), ["derived"]);
}

#[test]
fn retention_by_time_and_size_removes_whole_old_batches() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        log.create_topic(&TopicSpec::new("timed", 1).with_retention_ms(1000))
            .unwrap();
        log.create_topic(&TopicSpec::new("sized", 1).with_retention_bytes(1))
            .unwrap();
        for ts in [100, 200, 5000] {
            log.append(
                "timed",
                vec![ProducerRecord::value(format!("at{ts}")).with_timestamp(ts); 2],
            )
            .unwrap();
            log.append(
                "sized",
                vec![ProducerRecord::value(format!("at{ts}")).with_timestamp(ts)],
            )
            .unwrap();
        }
        let report = log.run_maintenance(1500, false).unwrap();
        // timed: batches with newest record before 1500-1000 go; sized: all but the newest.
        assert_eq!(report.batches_expired, 2 + 2);
        let stats = log.stats();
        assert_eq!(
            (stats.batches_expired, stats.commits, stats.records_appended),
            (4, 6, 9)
        );
        assert!(!stats.poisoned);
        assert_eq!(
            values(&log.read_topic("timed").unwrap()),
            ["at5000", "at5000"]
        );
        assert_eq!(values(&log.read_topic("sized").unwrap()), ["at5000"]);
        let tp = TopicPartition::new("timed", 0);
        assert_eq!(log.offsets(&tp).unwrap().start, 4);
        let mut out = Vec::new();
        let err = log
            .fetch(&[(tp, 0)], FetchLimits::default(), &mut out)
            .unwrap_err();
        assert!(
            matches!(
                err,
                LogError::OffsetOutOfRange {
                    start: 4,
                    end: 6,
                    ..
                }
            ),
            "{err}"
        );
        // Everything expires: the partition is empty but keeps its offsets.
        log.run_maintenance(1_000_000, false).unwrap();
        assert_eq!(log.read_topic("timed").unwrap().len(), 0);
    }
    let log = open(dir.path());
    let range = log.offsets(&TopicPartition::new("timed", 0)).unwrap();
    assert_eq!((range.start, range.end), (6, 6));
    assert_eq!(
        log.append("timed", vec![ProducerRecord::value("next")])
            .unwrap()[0]
            .offset,
        6
    );
}

#[test]
fn compaction_keeps_the_latest_value_per_key_at_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        log.create_topic(&TopicSpec::new("kv", 1).compacted())
            .unwrap();
        let rec = |k: &str, v: Option<&str>| ProducerRecord {
            key: Some(k.to_owned().into()),
            value: v.map(|v| v.to_owned().into()),
            timestamp: Some(1000),
            ..Default::default()
        };
        log.append("kv", vec![rec("a", Some("a1")), rec("b", Some("b1"))])
            .unwrap();
        log.append("kv", vec![rec("a", Some("a2")), rec("c", Some("c1"))])
            .unwrap();
        log.append("kv", vec![rec("b", None)]).unwrap();
        // Tombstones stay until delete_retention_ms has passed.
        log.run_maintenance(2000, true).unwrap();
        let kept: Vec<(u64, String)> = log
            .read_topic("kv")
            .unwrap()
            .iter()
            .map(|r| (r.offset, values(std::slice::from_ref(r))[0].clone()))
            .collect();
        assert_eq!(
            kept,
            [
                (2, "a2".to_owned()),
                (3, "c1".to_owned()),
                (4, "<tombstone>".to_owned())
            ]
        );
        // They expire by when they were written, not by their (old) event time.
        let written = kappa_log::now_ms();
        assert_eq!(
            log.run_maintenance(written, true)
                .unwrap()
                .records_compacted,
            0
        );
        let report = log
            .run_maintenance(written + 2 * 24 * 3600 * 1000, true)
            .unwrap();
        assert_eq!(report.records_compacted, 1);
        assert_eq!(values(&log.read_topic("kv").unwrap()), ["a2", "c1"]);
    }
    // The removed tombstone was the last record; the end offset must not move back.
    let log = open(dir.path());
    assert_eq!(log.offsets(&TopicPartition::new("kv", 0)).unwrap().end, 5);
    assert_eq!(values(&log.read_topic("kv").unwrap()), ["a2", "c1"]);
}

#[test]
fn a_deleted_topic_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.create_topic(&TopicSpec::new("t", 2)).unwrap();
    log.append("t", vec![ProducerRecord::value("old"); 10])
        .unwrap();
    let mut c = Commit::new();
    c.set_group_position("g", TopicPartition::new("t", 0), 2);
    log.commit(c).unwrap();
    log.delete_topic("t").unwrap();
    assert!(log.list_topics().unwrap().is_empty());
    assert!(log.group_positions("g").unwrap().is_empty());
    log.create_topic(&TopicSpec::new("t", 1)).unwrap();
    assert!(log.read_topic("t").unwrap().is_empty());
    assert_eq!(
        log.append("t", vec![ProducerRecord::value("new")]).unwrap()[0].offset,
        0
    );
    assert_eq!(values(&log.read_topic("t").unwrap()), ["new"]);
}

#[test]
fn fetch_limits_bound_the_answer_and_report_where_to_continue() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.create_topic(&TopicSpec::new("t", 1)).unwrap();
    log.append(
        "t",
        (0..10)
            .map(|i| ProducerRecord::value(format!("{i}")))
            .collect(),
    )
    .unwrap();
    let tp = TopicPartition::new("t", 0);
    let mut out = Vec::new();
    let limits = FetchLimits {
        records_max: 4,
        ..FetchLimits::default()
    };
    let o = log.fetch(&[(tp.clone(), 3)], limits, &mut out).unwrap();
    assert_eq!(values(&out), ["3", "4", "5", "6"]);
    assert_eq!(o.next_offsets, [7]);
    out.clear();
    let limits = FetchLimits {
        bytes_max: 1,
        ..FetchLimits::default()
    };
    let o = log.fetch(&[(tp, 7)], limits, &mut out).unwrap();
    assert_eq!(values(&out), ["7"]);
    assert_eq!(o.next_offsets, [8]);
}

#[test]
fn headers_keys_and_timestamps_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.create_topic(&TopicSpec::new("t", 1)).unwrap();
    let sent = ProducerRecord::value(vec![0u8, 255, 7])
        .with_key("k")
        .with_timestamp(-5)
        .with_header("kappa-source", "commands/0/1")
        .with_header("kappa-source", "dup");
    log.append("t", vec![sent.clone(), ProducerRecord::default()])
        .unwrap();
    let got = log.read_topic("t").unwrap();
    assert_eq!(got[0].key, sent.key);
    assert_eq!(got[0].value, sent.value);
    assert_eq!(got[0].timestamp, -5);
    assert_eq!(got[0].headers, sent.headers);
    assert_eq!((got[1].key.clone(), got[1].value.clone()), (None, None));
}

#[test]
fn readers_see_commits_whole_across_partitions_and_metadata() {
    const COMMITS: u64 = 2000;
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.create_topic(&TopicSpec::new("t", 2)).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            for n in 1..=COMMITS {
                let mut c = Commit::new();
                c.append_to("t", 0, ProducerRecord::value("x"));
                c.append_to("t", 1, ProducerRecord::value("y"));
                c.put_metadata("count", n.to_string());
                log.commit(c).unwrap();
            }
        });
        let from = [
            (TopicPartition::new("t", 0), 0),
            (TopicPartition::new("t", 1), 0),
        ];
        let limits = FetchLimits {
            records_max: usize::MAX,
            bytes_max: usize::MAX,
            ..FetchLimits::default()
        };
        let mut out = Vec::new();
        loop {
            // Metadata first: the records of the commit that wrote it must be readable.
            let count: u64 = log
                .metadata(b"count")
                .unwrap()
                .map_or(0, |v| std::str::from_utf8(&v).unwrap().parse().unwrap());
            out.clear();
            log.fetch(&from, limits, &mut out).unwrap();
            let p0 = out.iter().filter(|r| r.partition == 0).count() as u64;
            let p1 = out.iter().filter(|r| r.partition == 1).count() as u64;
            assert_eq!(
                p0, p1,
                "a fetch saw one partition's share of a commit without the other's"
            );
            assert!(
                p0 >= count,
                "metadata of commit {count} is visible but only {p0} of its records"
            );
            if count == COMMITS {
                break;
            }
        }
        // Leaving the scope joins the writer.
    });
}

/// After growing: old records where they were, new keys on the new count,
/// new partitions from offset 0.
fn check_grown_orders(log: &dyn Log) {
    assert_eq!(log.partition_count("orders").unwrap(), 5);
    assert_eq!(
        values(&read_partition(log, "orders", partition_for_key(b"k", 2))),
        ["before"]
    );
    let after = log
        .append("orders", vec![ProducerRecord::value("after").with_key("k")])
        .unwrap();
    assert_eq!(after[0].partition, partition_for_key(b"k", 5));
    let mut c = Commit::new();
    c.append_to("orders", 4, ProducerRecord::value("new partition"));
    assert_eq!(log.commit(c).unwrap().positions[0].offset, 0);
}

#[test]
fn a_topic_grows_keeps_its_records_and_new_keys_follow_the_new_count() {
    let dir = tempfile::tempdir().unwrap();
    grow_orders(&open(dir.path()));
    check_grown_orders(&open(dir.path()));

    let memory = kappa_log::MemoryLog::new();
    grow_orders(&memory);
    check_grown_orders(&memory);
}

#[test]
fn an_altered_topic_config_applies_at_once_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        log.create_topic(&TopicSpec::new("t", 1)).unwrap();
        log.append("t", vec![ProducerRecord::value(vec![0u8; 500])])
            .unwrap();
        alter_config(&log, "t");
    }
    let log = open(dir.path());
    check_altered_config(&log, "t");
    assert_eq!(
        log.read_topic("t").unwrap().len(),
        1,
        "records already written stay"
    );
}

#[test]
fn deleted_group_positions_are_gone_and_others_stay_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    delete_some_group_positions(&open(dir.path()));
    let log = open(dir.path());
    check_deleted_group_positions(&log);
    assert_eq!(
        log.group_positions("app").unwrap(),
        vec![(TopicPartition::new("in", 0), 0)]
    );
}
