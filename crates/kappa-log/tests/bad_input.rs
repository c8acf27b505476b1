//! Bad input gets a clear error and changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::time::Duration;

use kappa_log::{
    Commit, Durability, EmbeddedLog, EmbeddedOptions, FetchLimits, Log, LogError, ProducerRecord,
    TopicPartition, TopicSpec,
};

fn open(dir: &std::path::Path) -> EmbeddedLog {
    EmbeddedLog::open_with(
        dir,
        EmbeddedOptions::default().durability(Durability::Never),
    )
    .unwrap()
}

/// Everything observable about the log, to compare before and after a rejected call.
fn observe(log: &EmbeddedLog) -> String {
    let mut s = String::new();
    for spec in log.list_topics().unwrap() {
        let d = log.describe_topic(&spec.name).unwrap();
        s += &format!("{:?}\n", d);
        for p in &d.partitions {
            let mut out = Vec::new();
            let from = [(
                TopicPartition::new(spec.name.as_str(), p.partition),
                p.start_offset,
            )];
            log.fetch(&from, FetchLimits::default(), &mut out).unwrap();
            s += &format!("{out:?}\n");
        }
    }
    s += &format!("{:?}\n", log.group_positions("g").unwrap());
    s += &format!("{:?}\n", log.metadata_scan(b"").unwrap());
    s
}

fn seeded() -> (tempfile::TempDir, EmbeddedLog) {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.create_topic(&TopicSpec::new("a", 2)).unwrap();
    let mut small = TopicSpec::new("small", 1);
    small.config.max_record_bytes = 64;
    log.create_topic(&small).unwrap();
    log.create_topic(&TopicSpec::new("kv", 1).compacted())
        .unwrap();
    let mut c = Commit::new();
    c.append_to("a", 0, ProducerRecord::value("x"));
    c.set_group_position("g", TopicPartition::new("a", 0), 1);
    c.put_metadata("m", "1");
    log.commit(c).unwrap();
    (dir, log)
}

/// Runs `refusals` on a [`seeded`] log, which must look the same after.
fn refused_without_change(refusals: impl FnOnce(&EmbeddedLog)) {
    let (_dir, log) = seeded();
    let before = observe(&log);
    refusals(&log);
    assert_eq!(observe(&log), before);
}

#[test]
fn invalid_topic_names_are_refused() {
    refused_without_change(|log| {
        for name in ["", ".", "..", "has space", "slash/name", &"x".repeat(250)] {
            let err = log.create_topic(&TopicSpec::new(name, 1)).unwrap_err();
            assert!(
                matches!(err, LogError::InvalidTopicName { .. }),
                "{name:?}: {err}"
            );
            assert!(err.to_string().contains("invalid topic name"), "{err}");
        }
        assert!(matches!(
            log.create_topic(&TopicSpec::new("z", 0)),
            Err(LogError::InvalidConfig(_))
        ));
        assert!(matches!(
            log.create_topic(&TopicSpec::new("a", 1)),
            Err(LogError::TopicExists(_))
        ));
    });
}

#[test]
fn unknown_topics_are_reported_by_name() {
    refused_without_change(|log| {
        let err = log
            .append("nope", vec![ProducerRecord::value("v")])
            .unwrap_err();
        assert_eq!(err.to_string(), "unknown topic \"nope\"");
        let mut out = Vec::new();
        let from = [(TopicPartition::new("nope", 0), 0)];
        for refused in [
            log.fetch(&from, FetchLimits::default(), &mut out).err(),
            log.describe_topic("nope").err(),
            log.delete_topic("nope").err(),
            log.offsets(&TopicPartition::new("nope", 0)).err(),
        ] {
            assert!(
                matches!(refused, Some(LogError::UnknownTopic(_))),
                "{refused:?}"
            );
        }
    });
}

#[test]
fn partitions_out_of_range_are_refused() {
    refused_without_change(|log| {
        let mut c = Commit::new();
        c.append_to("a", 2, ProducerRecord::value("v"));
        let err = log.commit(c).unwrap_err();
        assert!(
            matches!(
                err,
                LogError::PartitionOutOfRange {
                    partition: 2,
                    partitions: 2,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("partition 2 is out of range for topic \"a\""),
            "{err}"
        );
        let mut out = Vec::new();
        let from = [(TopicPartition::new("a", 7), 0)];
        assert!(matches!(
            log.fetch(&from, FetchLimits::default(), &mut out),
            Err(LogError::PartitionOutOfRange { partition: 7, .. })
        ));
    });
}

#[test]
fn oversized_records_are_refused_with_their_size() {
    refused_without_change(|log| {
        let err = log
            .append("small", vec![ProducerRecord::value(vec![0u8; 100])])
            .unwrap_err();
        match err {
            LogError::RecordTooLarge { size, max, .. } => {
                assert_eq!(max, 64);
                assert!(size > 100);
            }
            other => panic!("expected RecordTooLarge, got {other}"),
        }
    });
}

#[test]
fn a_commit_with_one_bad_part_writes_nothing() {
    let (dir, log) = seeded();
    let before = observe(&log);
    let bad_parts: Vec<fn(&mut Commit)> = vec![
        |c| {
            c.append_to("a", 9, ProducerRecord::value("unknown partition"));
        },
        |c| {
            c.append("missing", ProducerRecord::value("unknown topic"));
        },
        |c| {
            c.append("small", ProducerRecord::value(vec![1u8; 1000]));
        },
        |c| {
            c.append("kv", ProducerRecord::value("compacted topics need keys"));
        },
        |c| {
            c.set_group_position("g", TopicPartition::new("a", 5), 0);
        },
        |c| {
            c.set_group_position("g", TopicPartition::new("a", 1), 99);
        },
        |c| {
            c.set_group_position("", TopicPartition::new("a", 1), 0);
        },
        |c| {
            c.put_metadata("", "empty key");
        },
    ];
    for (i, bad) in bad_parts.iter().enumerate() {
        // Good parts first, so a partial write would show.
        let mut c = Commit::new();
        c.append_to("a", 0, ProducerRecord::value("good"));
        c.append_to("a", 1, ProducerRecord::value("good"));
        c.set_group_position("g", TopicPartition::new("a", 1), 1);
        c.put_metadata("n", "2");
        bad(&mut c);
        assert!(log.commit(c).is_err(), "bad part {i} was accepted");
        assert_eq!(observe(&log), before, "bad part {i} changed the log");
    }
    drop(log);
    let log = open(dir.path());
    assert_eq!(observe(&log), before, "a rejected commit reached the disk");
}

#[test]
fn reads_outside_the_partition_are_refused() {
    let (_dir, log) = seeded();
    let mut out = Vec::new();
    let from = [(TopicPartition::new("a", 0), 5)];
    let err = log
        .fetch(&from, FetchLimits::default(), &mut out)
        .unwrap_err();
    assert!(
        matches!(
            err,
            LogError::OffsetOutOfRange {
                offset: 5,
                start: 0,
                end: 1,
                ..
            }
        ),
        "{err}"
    );
    assert!(out.is_empty());
    // The end itself is valid: nothing yet, no error, no waiting past the bound.
    let from = [(TopicPartition::new("a", 0), 1)];
    let limits = FetchLimits {
        wait_max: Duration::from_millis(1),
        ..FetchLimits::default()
    };
    let outcome = log.fetch(&from, limits, &mut out).unwrap();
    assert_eq!((outcome.records, outcome.next_offsets), (0, vec![1]));
}

#[test]
fn bad_group_names_are_refused() {
    let (_dir, log) = seeded();
    assert!(matches!(
        log.group_positions(""),
        Err(LogError::InvalidGroupName(_))
    ));
    assert!(matches!(
        log.group_positions("tab\there"),
        Err(LogError::InvalidGroupName(_))
    ));
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let (dir, _log) = seeded();
    let err = EmbeddedLog::open(dir.path())
        .err()
        .expect("second open must fail");
    assert!(matches!(err, LogError::AlreadyInUse { .. }), "{err}");
    assert!(err.to_string().contains("already in use"), "{err}");
}
