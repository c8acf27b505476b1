//! Log behaviour every backend must show, written once against the `Log`
//! trait: kappa-log's suite runs it on the embedded log, kappa-kafka's
//! (`#[path]`-included) on each broker.
//!
//! Each step comes in two halves, the change and what must hold after it,
//! so that a suite can put a reopen or a lost state directory in between.

use kappa_log::{
    CleanupPolicy, Commit, FetchLimits, Log, LogError, ProducerRecord, Record, TopicConfig,
    TopicPartition, TopicSpec,
};

/// Every record of one partition, from its start to its end at the call:
/// some checks are about where records are, which `Log::read_topic`
/// (every partition at once) would hide.
pub fn read_partition(log: &dyn Log, topic: &str, partition: u32) -> Vec<Record> {
    let tp = TopicPartition::new(topic, partition);
    let range = log.offsets(&tp).unwrap();
    let mut out = Vec::new();
    let mut at = range.start;
    while at < range.end {
        let outcome = log
            .fetch(&[(tp.clone(), at)], FetchLimits::default(), &mut out)
            .unwrap();
        at = outcome.next_offsets[0];
    }
    out
}

/// Grows "orders" from 2 to 5 partitions after one keyed record, and checks
/// what is refused on the way.
pub fn grow_orders(log: &dyn Log) {
    log.create_topic(&TopicSpec::new("orders", 2)).unwrap();
    log.append(
        "orders",
        vec![ProducerRecord::value("before").with_key("k")],
    )
    .unwrap();
    log.create_partitions("orders", 5).unwrap();
    for same_or_fewer in [5, 3] {
        assert!(matches!(
            log.create_partitions("orders", same_or_fewer),
            Err(LogError::InvalidConfig(_))
        ));
    }
    assert!(matches!(
        log.create_partitions("nothing", 3),
        Err(LogError::UnknownTopic(_))
    ));
}

/// Lowers `topic`'s largest record to 300 bytes and keeps it a minute, and
/// checks that the new limit applies at once and what is refused: a
/// compacted topic with a retention, an unknown topic.
pub fn alter_config(log: &dyn Log, topic: &str) {
    let mut config = log.describe_topic(topic).unwrap().spec.config;
    config.max_record_bytes = 300;
    config.retention_ms = Some(60_000);
    log.alter_topic_config(topic, config.clone()).unwrap();
    assert!(matches!(
        log.append(topic, vec![ProducerRecord::value(vec![0u8; 500])]),
        Err(LogError::RecordTooLarge { max: 300, .. })
    ));
    let mut compacted_with_retention = config;
    compacted_with_retention.cleanup_policy = CleanupPolicy::Compact;
    assert!(matches!(
        log.alter_topic_config(topic, compacted_with_retention),
        Err(LogError::InvalidConfig(_))
    ));
    assert!(matches!(
        log.alter_topic_config("nothing", TopicConfig::default()),
        Err(LogError::UnknownTopic(_))
    ));
}

/// After [`alter_config`]: `topic` has the config it set.
pub fn check_altered_config(log: &dyn Log, topic: &str) {
    let config = log.describe_topic(topic).unwrap().spec.config;
    assert_eq!(
        (config.max_record_bytes, config.retention_ms),
        (300, Some(60_000))
    );
}

fn input(partition: u32) -> TopicPartition {
    TopicPartition::new("in", partition)
}

/// Gives groups "app" and "app-two" positions on the three partitions of
/// a new topic "in", deletes two of "app"'s, and checks what a deletion
/// answers: how many it removed, and a refused group name.
pub fn delete_some_group_positions(log: &dyn Log) {
    log.create_topic(&TopicSpec::new("in", 3)).unwrap();
    let mut c = Commit::new();
    for p in 0..3 {
        for v in ["a", "b", "c"] {
            c.append_to("in", p, ProducerRecord::value(v));
        }
    }
    log.commit(c).unwrap();
    let mut c = Commit::new();
    for p in 0..3 {
        c.set_group_position("app", input(p), u64::from(p));
        c.set_group_position("app-two", input(p), 3);
    }
    log.commit(c).unwrap();
    assert_eq!(
        log.delete_group_positions("app", Some(&[input(1), input(2)]))
            .unwrap(),
        2
    );
    assert_eq!(
        log.delete_group_positions("app", Some(&[input(1)]))
            .unwrap(),
        0
    );
    assert!(matches!(
        log.delete_group_positions("", None),
        Err(LogError::InvalidGroupName(_))
    ));
}

/// After [`delete_some_group_positions`]: "app" keeps only its first
/// position, and deleting a whole group removes it from the group names.
pub fn check_deleted_group_positions(log: &dyn Log) {
    assert_eq!(log.group_positions("app").unwrap(), vec![(input(0), 0)]);
    assert_eq!(log.group_names().unwrap(), ["app", "app-two"]);
    assert_eq!(log.delete_group_positions("app-two", None).unwrap(), 3);
    assert_eq!(log.group_names().unwrap(), ["app"]);
    assert!(log.group_positions("app-two").unwrap().is_empty());
}
