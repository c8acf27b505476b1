//! The Kafka backend's `Log` behaviour, on librdkafka's in-process mock cluster.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test
use std::sync::Arc;

use kappa_kafka::testing::MockBroker;
use kappa_kafka::{KafkaConfig, KafkaLog};
use kappa_log::{
    Commit, FetchLimits, Log, LogError, ProducerRecord, Record, TopicPartition, TopicSpec,
};

fn open(broker: &Arc<MockBroker>, dir: &std::path::Path) -> KafkaLog {
    let config = KafkaConfig::new(broker.bootstrap(), dir);
    KafkaLog::open_with_topic_admin(config, broker.clone()).unwrap()
}

fn read_all(log: &dyn Log, topic: &str, partition: u32) -> Vec<Record> {
    let tp = TopicPartition::new(topic, partition);
    let end = log.offsets(&tp).unwrap().end;
    let mut at = log.offsets(&tp).unwrap().start;
    let mut out = Vec::new();
    while at < end {
        let o = log
            .fetch(&[(tp.clone(), at)], FetchLimits::default(), &mut out)
            .unwrap();
        at = o.next_offsets[0];
    }
    out
}

#[test]
fn commits_reads_and_metadata_survive_a_restart_and_a_lost_state_directory() {
    let broker = Arc::new(MockBroker::start().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let log = open(&broker, dir.path());
    log.create_topic(&TopicSpec::new("in", 3)).unwrap();
    assert!(matches!(
        log.create_topic(&TopicSpec::new("in", 3)),
        Err(LogError::TopicExists(_))
    ));
    let mut c = Commit::new();
    for i in 0..30 {
        c.append(
            "in",
            ProducerRecord::value(format!("v{i}"))
                .with_key(format!("k{i}"))
                .with_header("h", "x"),
        );
    }
    c.set_group_position("g", TopicPartition::new("in", 1), 5);
    c.put_metadata("app/a", "1");
    c.put_metadata("app/b", "2");
    let receipt = log.commit(c).unwrap();
    assert_eq!(receipt.positions.len(), 30);
    for (i, pos) in receipt.positions.iter().enumerate() {
        assert_eq!(
            pos.partition,
            kappa_log::partition_for_key(format!("k{i}").as_bytes(), 3),
            "murmur2 like Java clients"
        );
    }
    let mut seen = 0;
    for p in 0..3 {
        let records = read_all(&log, "in", p);
        for r in &records {
            assert_eq!(
                r.headers.len(),
                1,
                "only the application's headers: {:?}",
                r.headers
            );
            assert_eq!(r.partition, p);
        }
        seen += records.len();
    }
    assert_eq!(seen, 30);
    let mut c = Commit::new();
    c.delete_metadata("app/a");
    c.set_group_position("g", TopicPartition::new("in", 1), 9);
    log.commit(c).unwrap();
    let check = |log: &KafkaLog| {
        assert_eq!(log.metadata(b"app/a").unwrap(), None);
        assert_eq!(log.metadata(b"app/b").unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(
            log.group_positions("g").unwrap(),
            vec![(TopicPartition::new("in", 1), 9)]
        );
        assert_eq!(log.describe_topic("in").unwrap().spec.partitions, 3);
        assert_eq!(
            log.list_topics()
                .unwrap()
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>(),
            vec!["in"]
        );
    };
    check(&log);
    drop(log);
    // Same state directory: restores only the tail.
    let log = open(&broker, dir.path());
    check(&log);
    drop(log);
    // A lost state directory: everything comes back from the changelog.
    let fresh = tempfile::tempdir().unwrap();
    let log = open(&broker, fresh.path());
    check(&log);
    assert!(
        log.restore_stats().records >= 4,
        "{:?}",
        log.restore_stats()
    );
}

#[test]
fn bad_commits_are_refused_whole() {
    let broker = Arc::new(MockBroker::start().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let log = open(&broker, dir.path());
    log.create_topic(&TopicSpec::new("t", 2)).unwrap();
    log.create_topic(&TopicSpec::new("facts", 1).compacted())
        .unwrap();
    let tp = TopicPartition::new("t", 0);
    for (bad, says) in [
        (
            {
                let mut c = Commit::new();
                c.append("t", ProducerRecord::value("ok"));
                c.append("nope", ProducerRecord::value("x"));
                c
            },
            "unknown topic",
        ),
        (
            {
                let mut c = Commit::new();
                c.append("t", ProducerRecord::value("ok"));
                c.append_to("t", 7, ProducerRecord::value("x"));
                c
            },
            "out of range",
        ),
        (
            {
                let mut c = Commit::new();
                c.append("facts", ProducerRecord::value("no key"));
                c
            },
            "needs a key",
        ),
        (
            {
                let mut c = Commit::new();
                c.append("t", ProducerRecord::value("ok"));
                c.set_group_position("", tp.clone(), 1);
                c
            },
            "invalid group name",
        ),
    ] {
        let e = log.commit(bad).unwrap_err().to_string();
        assert!(e.contains(says), "{e}");
    }
    for p in 0..2 {
        assert_eq!(log.offsets(&TopicPartition::new("t", p)).unwrap().end, 0);
    }
}
