//! The embedded log against a plain in-memory model, over random sequences of
//! create / commit / read / retention / compaction / reopen / delete.
//!
//! The model knows only the documented behaviour and the documented batch
//! format sizes (docs/log-format.md), never the implementation.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::collections::BTreeMap;

use kappa_log::{
    Commit, Durability, EmbeddedLog, EmbeddedOptions, FetchLimits, Log, ProducerRecord,
    TopicPartition, TopicSpec, partition_for_key,
};
use proptest::prelude::*;

const TOPICS: [&str; 3] = ["alpha", "beta", "gamma"];
const KEYS: [&str; 4] = ["k0", "k1", "k2", "k3"];
/// Batch header and per-record fixed bytes, from docs/log-format.md.
const BATCH_HEADER_BYTES: u64 = 37;
const RECORD_FIXED_BYTES: u64 = 22;

#[derive(Clone, Debug, PartialEq)]
struct MRecord {
    offset: u64,
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
}

#[derive(Clone, Debug, Default)]
struct MPartition {
    start: u64,
    end: u64,
    batches: Vec<Vec<MRecord>>,
}

#[derive(Clone, Debug)]
struct MTopic {
    spec: TopicSpec,
    partitions: Vec<MPartition>,
}

#[derive(Default, Debug)]
struct Model {
    topics: BTreeMap<String, MTopic>,
    groups: BTreeMap<(String, u32), u64>,
    metadata: BTreeMap<Vec<u8>, Vec<u8>>,
}

fn batch_bytes(batch: &[MRecord]) -> u64 {
    BATCH_HEADER_BYTES
        + batch
            .iter()
            .map(|r| {
                RECORD_FIXED_BYTES
                    + r.key.as_ref().map_or(0, |k| k.len() as u64)
                    + r.value.as_ref().map_or(0, |v| v.len() as u64)
            })
            .sum::<u64>()
}

/// (topic index, fixed partition, key index, value byte, timestamp)
type AppendOp = (usize, Option<u32>, Option<usize>, Option<u8>, i64);

#[derive(Clone, Debug)]
enum Op {
    Create {
        topic: usize,
        partitions: u32,
        policy: u8,
    },
    Commit {
        appends: Vec<AppendOp>,
        group: Option<(usize, u32, u64)>,
        meta: Option<(u8, Option<u8>)>,
    },
    Maintenance {
        now: i64,
    },
    Reopen,
    Delete {
        topic: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let append = (
        0..3usize,
        prop::option::of(0..3u32),
        prop::option::of(0..4usize),
        prop::option::weighted(0.85, any::<u8>()),
        0..10_000i64,
    );
    prop_oneof![
        2 => (0..3usize, 1..4u32, 0..4u8).prop_map(|(topic, partitions, policy)| Op::Create { topic, partitions, policy }),
        6 => (
            prop::collection::vec(append, 0..12),
            prop::option::of((0..3usize, 0..3u32, 0..20u64)),
            prop::option::of((0..4u8, prop::option::of(any::<u8>())))
        ).prop_map(|(appends, group, meta)| Op::Commit { appends, group, meta }),
        2 => (0..20_000i64).prop_map(|now| Op::Maintenance { now }),
        1 => Just(Op::Reopen),
        1 => (0..3usize).prop_map(|topic| Op::Delete { topic }),
    ]
}

fn spec_for(topic: usize, partitions: u32, policy: u8) -> TopicSpec {
    let spec = TopicSpec::new(TOPICS[topic], partitions);
    match policy {
        0 => spec,
        1 => spec.with_retention_ms(3000),
        2 => spec.with_retention_bytes(150),
        _ => spec.compacted(),
    }
}

impl Model {
    fn create(&mut self, spec: TopicSpec) -> bool {
        if self.topics.contains_key(&spec.name) {
            return false;
        }
        let partitions = vec![MPartition::default(); spec.partitions as usize];
        self.topics
            .insert(spec.name.clone(), MTopic { spec, partitions });
        true
    }

    /// Applies a commit if every part is valid; returns whether it was accepted.
    fn commit(&mut self, op: &Op) -> bool {
        let Op::Commit {
            appends,
            group,
            meta,
        } = op
        else {
            return false;
        };
        let mut next = self.clone_ends();
        let mut new_batches: BTreeMap<(String, u32), Vec<MRecord>> = BTreeMap::new();
        for &(t, partition, key, value, ts) in appends {
            let name = TOPICS[t];
            let Some(topic) = self.topics.get(name) else {
                return false;
            };
            let key = key.map(|k| KEYS[k].as_bytes().to_vec());
            let p = match (partition, &key) {
                (Some(p), _) => p,
                (None, Some(k)) => partition_for_key(k, topic.spec.partitions),
                (None, None) => 0,
            };
            if p >= topic.spec.partitions {
                return false;
            }
            if topic.spec.config.cleanup_policy == kappa_log::CleanupPolicy::Compact
                && key.is_none()
            {
                return false;
            }
            let end = next
                .get_mut(&(name.to_owned(), p))
                .expect("model partition");
            new_batches
                .entry((name.to_owned(), p))
                .or_default()
                .push(MRecord {
                    offset: *end,
                    timestamp: ts,
                    key,
                    value: value.map(|v| vec![v; 3]),
                });
            *end += 1;
        }
        if let Some((t, p, offset)) = group {
            let name = TOPICS[*t];
            match next.get(&(name.to_owned(), *p)) {
                Some(end) if offset <= end => {}
                _ => return false,
            }
        }
        for ((name, p), batch) in new_batches {
            let part = &mut self.topics.get_mut(&name).expect("topic").partitions[p as usize];
            part.end += batch.len() as u64;
            part.batches.push(batch);
        }
        if let Some((t, p, offset)) = group {
            self.groups.insert((TOPICS[*t].to_owned(), *p), *offset);
        }
        if let Some((k, v)) = meta {
            match v {
                Some(v) => self.metadata.insert(vec![b'm', *k], vec![*v]),
                None => self.metadata.remove(&vec![b'm', *k]),
            };
        }
        true
    }

    fn clone_ends(&self) -> BTreeMap<(String, u32), u64> {
        let mut m = BTreeMap::new();
        for (name, t) in &self.topics {
            for (i, p) in t.partitions.iter().enumerate() {
                m.insert((name.clone(), i as u32), p.end);
            }
        }
        m
    }

    fn maintenance(&mut self, now: i64) {
        for t in self.topics.values_mut() {
            let c = t.spec.config.clone();
            for p in &mut t.partitions {
                if c.cleanup_policy == kappa_log::CleanupPolicy::Compact {
                    let mut latest = BTreeMap::new();
                    for r in p.batches.iter().flatten() {
                        latest.insert(r.key.clone(), r.offset);
                    }
                    for b in &mut p.batches {
                        b.retain(|r| {
                            latest.get(&r.key) == Some(&r.offset)
                                && !(r.value.is_none() && r.timestamp < now - c.delete_retention_ms)
                        });
                    }
                    p.batches.retain(|b| !b.is_empty());
                    continue;
                }
                let mut drop = 0;
                if let Some(ms) = c.retention_ms {
                    drop = p
                        .batches
                        .iter()
                        .take_while(|b| {
                            b.iter().map(|r| r.timestamp).max().unwrap_or(i64::MIN) < now - ms
                        })
                        .count();
                }
                if let Some(limit) = c.retention_bytes {
                    let mut total: u64 = p.batches[drop..].iter().map(|b| batch_bytes(b)).sum();
                    while drop < p.batches.len() && total - batch_bytes(&p.batches[drop]) >= limit {
                        total -= batch_bytes(&p.batches[drop]);
                        drop += 1;
                    }
                }
                p.batches.drain(..drop);
                if drop > 0 {
                    p.start = p.batches.first().map_or(p.end, |b| b[0].offset);
                }
            }
        }
    }
}

fn open(dir: &std::path::Path) -> EmbeddedLog {
    EmbeddedLog::open_with(
        dir,
        EmbeddedOptions::default().durability(Durability::Never),
    )
    .expect("open")
}

fn check(log: &EmbeddedLog, model: &Model) -> Result<(), TestCaseError> {
    let names: Vec<String> = log
        .list_topics()
        .expect("list")
        .into_iter()
        .map(|s| s.name)
        .collect();
    prop_assert_eq!(names, model.topics.keys().cloned().collect::<Vec<_>>());
    for (name, t) in &model.topics {
        let d = log.describe_topic(name).expect("describe");
        prop_assert_eq!(&d.spec, &t.spec);
        for (i, p) in t.partitions.iter().enumerate() {
            let tp = TopicPartition::new(name.as_str(), i as u32);
            let range = log.offsets(&tp).expect("offsets");
            prop_assert_eq!(
                (range.start, range.end),
                (p.start, p.end),
                "offsets of {}",
                tp
            );
            let expected_bytes: u64 = p.batches.iter().map(|b| batch_bytes(b)).sum();
            prop_assert_eq!(
                d.partitions[i].size_bytes,
                expected_bytes,
                "bytes of {}",
                tp
            );
            let mut out = Vec::new();
            let mut at = p.start;
            while at < p.end {
                let o = log
                    .fetch(
                        &[(tp.clone(), at)],
                        FetchLimits {
                            records_max: 7,
                            ..FetchLimits::default()
                        },
                        &mut out,
                    )
                    .expect("fetch");
                prop_assert!(o.next_offsets[0] > at, "fetch made no progress at {}", at);
                at = o.next_offsets[0];
            }
            let got: Vec<MRecord> = out
                .iter()
                .map(|r| MRecord {
                    offset: r.offset,
                    timestamp: r.timestamp,
                    key: r.key.as_ref().map(|k| k.to_vec()),
                    value: r.value.as_ref().map(|v| v.to_vec()),
                })
                .collect();
            let want: Vec<MRecord> = p.batches.iter().flatten().cloned().collect();
            prop_assert_eq!(got, want, "records of {}", tp);
        }
    }
    for ((topic, p), offset) in &model.groups {
        let positions = log.group_positions("g").expect("groups");
        prop_assert!(
            positions.contains(&(TopicPartition::new(topic.as_str(), *p), *offset)),
            "group position {}/{} = {} missing from {:?}",
            topic,
            p,
            offset,
            positions
        );
    }
    prop_assert_eq!(
        log.group_positions("g").expect("groups").len(),
        model.groups.len()
    );
    let meta: Vec<(Vec<u8>, Vec<u8>)> = log
        .metadata_scan(b"m")
        .expect("scan")
        .into_iter()
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect();
    prop_assert_eq!(meta, model.metadata.clone().into_iter().collect::<Vec<_>>());
    // Paging through the same prefix two at a time yields the same entries.
    let mut paged = Vec::new();
    let mut after: Option<bytes::Bytes> = None;
    loop {
        let page = log.metadata_page(b"m", after.as_deref(), 2).expect("page");
        prop_assert!(page.len() <= 2);
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        paged.extend(page.into_iter().map(|(k, v)| (k.to_vec(), v.to_vec())));
    }
    prop_assert_eq!(
        paged,
        model.metadata.clone().into_iter().collect::<Vec<_>>()
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn embedded_log_matches_the_model(ops in prop::collection::vec(op(), 1..30)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = open(dir.path());
        let mut model = Model::default();
        for op in &ops {
            match op {
                Op::Create { topic, partitions, policy } => {
                    let spec = spec_for(*topic, *partitions, *policy);
                    let accepted = model.create(spec.clone());
                    prop_assert_eq!(log.create_topic(&spec).is_ok(), accepted);
                }
                Op::Commit { appends, group, meta } => {
                    let mut c = Commit::new();
                    for &(t, partition, key, value, ts) in appends {
                        let mut r = ProducerRecord { value: value.map(|v| vec![v; 3].into()), timestamp: Some(ts), ..Default::default() };
                        r.key = key.map(|k| KEYS[k].as_bytes().to_vec().into());
                        // Keyless records without a partition go to 0 so the model needn't track round-robin.
                        let partition = partition.or(if r.key.is_none() { Some(0) } else { None });
                        match partition {
                            Some(p) => c.append_to(TOPICS[t], p, r),
                            None => c.append(TOPICS[t], r),
                        };
                    }
                    if let Some((t, p, offset)) = group {
                        c.set_group_position("g", TopicPartition::new(TOPICS[*t], *p), *offset);
                    }
                    if let Some((k, v)) = meta {
                        match v {
                            Some(v) => c.put_metadata(vec![b'm', *k], vec![*v]),
                            None => c.delete_metadata(vec![b'm', *k]),
                        };
                    }
                    let accepted = model.commit(op) ;
                    let result = log.commit(c);
                    prop_assert_eq!(result.is_ok(), accepted || op_is_empty(op), "{:?}", result);
                }
                Op::Maintenance { now } => {
                    model.maintenance(*now);
                    log.run_maintenance(*now, true).expect("maintenance");
                }
                Op::Reopen => {
                    drop(log);
                    log = open(dir.path());
                }
                Op::Delete { topic } => {
                    let name = TOPICS[*topic];
                    let existed = model.topics.remove(name).is_some();
                    model.groups.retain(|(t, _), _| t != name);
                    prop_assert_eq!(log.delete_topic(name).is_ok(), existed);
                }
            }
            check(&log, &model)?;
        }
    }
}

fn op_is_empty(op: &Op) -> bool {
    matches!(op, Op::Commit { appends, group: None, meta: None } if appends.is_empty())
}
