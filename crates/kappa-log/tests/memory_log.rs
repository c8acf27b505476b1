//! The in-memory log behaves as the embedded log does, for random commits.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use kappa_log::{
    Commit, Durability, EmbeddedLog, EmbeddedOptions, FetchLimits, Log, MemoryLog, ProducerRecord,
    TopicPartition, TopicSpec,
};
use proptest::prelude::*;

/// (topic index, fixed partition, key index, value byte, group offset, metadata byte)
type Step = (usize, Option<u32>, Option<u8>, u8, Option<u64>, Option<u8>);

fn apply(log: &dyn Log, step: &Step) -> Result<Vec<String>, String> {
    let (topic, partition, key, value, group, meta) = *step;
    let name = ["a", "b", "missing"][topic];
    let mut c = Commit::new();
    let mut r = ProducerRecord::value(vec![value]).with_timestamp(i64::from(value));
    if let Some(k) = key {
        r = r.with_key(vec![k % 5]);
    }
    match partition {
        Some(p) => c.append_to(name, p, r),
        None => c.append(name, r),
    };
    if let Some(offset) = group {
        c.set_group_position("g", TopicPartition::new("a", 0), offset);
    }
    if let Some(m) = meta {
        c.put_metadata(vec![b'm', m % 3], vec![m]);
    }
    log.commit(c)
        .map(|r| r.positions.iter().map(ToString::to_string).collect())
        .map_err(|e| e.to_string())
}

fn contents(log: &dyn Log) -> Vec<String> {
    let mut out = Vec::new();
    for (topic, partitions) in [("a", 2), ("b", 3)] {
        for p in 0..partitions {
            let mut records = Vec::new();
            log.fetch(
                &[(TopicPartition::new(topic, p), 0)],
                FetchLimits::default(),
                &mut records,
            )
            .unwrap();
            for r in records {
                out.push(format!(
                    "{} {:?} {:?} {}",
                    r.position(),
                    r.key,
                    r.value,
                    r.timestamp
                ));
            }
        }
    }
    out.push(format!("{:?}", log.group_positions("g").unwrap()));
    out.push(format!("{:?}", log.metadata_scan(b"m").unwrap()));
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn memory_log_matches_embedded_log(steps in prop::collection::vec(
        (0..3usize, prop::option::weighted(0.3, 0..4u32), prop::option::weighted(0.7, any::<u8>()), any::<u8>(), prop::option::weighted(0.2, 0..6u64), prop::option::weighted(0.3, any::<u8>())),
        1..40,
    )) {
        let dir = tempfile::tempdir().unwrap();
        let embedded = EmbeddedLog::open_with(dir.path(), EmbeddedOptions::default().durability(Durability::Never)).unwrap();
        let memory = MemoryLog::new();
        for log in [&embedded as &dyn Log, &memory] {
            log.create_topic(&TopicSpec::new("a", 2)).unwrap();
            log.create_topic(&TopicSpec::new("b", 3)).unwrap();
        }
        for step in &steps {
            // Keyless records without a fixed partition rotate per log; pin them.
            let mut step = *step;
            if step.2.is_none() && step.1.is_none() {
                step.1 = Some(0);
            }
            prop_assert_eq!(apply(&embedded, &step), apply(&memory, &step), "{:?}", step);
        }
        prop_assert_eq!(contents(&embedded), contents(&memory));
    }
}
