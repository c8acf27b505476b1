//! `kappa broker` and Apache Kafka, side by side, with librdkafka (through
//! the `rdkafka` crate): records
//! keep their keys, headers and timestamps and land on murmur2 partitions;
//! every codec reads back; consumer groups rebalance without losing or
//! repeating committed work; committed offsets are the log's group
//! positions and survive a restart; offsets by time; `kappa consume
//! --group` and a Kafka consumer share the group's positions.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

#[macro_use]
mod node;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use kappa_log::{EmbeddedLog, FetchLimits, Log, TopicPartition, partition_for_key};
use node::{Cluster, runtime};
use rdkafka::Message;
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

const WAIT: Duration = Duration::from_secs(30);

fn producer(broker: &dyn Cluster, extra: &[(&str, &str)]) -> FutureProducer {
    let mut c = broker.client();
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create().unwrap()
}

fn reader(broker: &dyn Cluster, group: &str) -> BaseConsumer {
    reader_at(broker.addr(), group)
}

/// As [`reader`], for a broker at `addr` that is not a [`Cluster`] (a
/// service serving its own log).
fn reader_at(addr: &str, group: &str) -> BaseConsumer {
    node::client(addr)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap()
}

/// `(partition, offset, key, value, timestamp, headers)` of a consumed record.
type ReadRecord = (
    i32,
    i64,
    Option<Vec<u8>>,
    Vec<u8>,
    i64,
    Vec<(String, Vec<u8>)>,
);

/// Everything in `topic` from the start, by assignment (no group).
fn read_topic(
    broker: &dyn Cluster,
    topic: &str,
    partitions: i32,
    expected: usize,
) -> Vec<ReadRecord> {
    let consumer = reader(broker, "reader-without-commits");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + WAIT;
    let mut out = Vec::new();
    while out.len() < expected {
        assert!(
            Instant::now() < deadline,
            "read {} of {expected} records of {topic} in time",
            out.len()
        );
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            let headers = m
                .headers()
                .map(|hs| {
                    hs.iter()
                        .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default();
            out.push((
                m.partition(),
                m.offset(),
                m.key().map(<[u8]>::to_vec),
                m.payload().unwrap_or_default().to_vec(),
                m.timestamp().to_millis().unwrap(),
                headers,
            ));
        }
    }
    out
}

fn records_keep_keys_headers_and_timestamps_and_land_on_murmur2_partitions(
    broker: &mut dyn Cluster,
) {
    let rt = runtime();
    broker.create_topic(&rt, "cards", 3);
    let producer = producer(broker, &[]);
    let mut sent = BTreeMap::new();
    for i in 0..60i64 {
        let key = format!("card-{i}");
        let value = format!("spent {i}");
        let ts = 1_700_000_000_000 + i * 1000;
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "kappa-correlation",
                value: Some(&format!("c-{i}")),
            })
            .insert(Header {
                key: "trace",
                value: Some("t"),
            });
        let d = rt
            .block_on(
                producer.send(
                    FutureRecord::to("cards")
                        .key(&key)
                        .payload(&value)
                        .timestamp(ts)
                        .headers(headers),
                    WAIT,
                ),
            )
            .map_err(|(e, _)| e)
            .unwrap();
        assert_eq!(
            d.partition as u32,
            partition_for_key(key.as_bytes(), 3),
            "{key} landed on murmur2(key) % partitions"
        );
        sent.insert(key, (d.partition, d.offset, value, ts, i));
    }
    let read = read_topic(broker, "cards", 3, 60);
    assert_eq!(read.len(), 60);
    for (partition, offset, key, value, ts, headers) in &read {
        let key = String::from_utf8(key.clone().unwrap()).unwrap();
        let (p, o, v, t, i) = &sent[&key];
        assert_eq!(
            (partition, offset),
            (p, o),
            "{key} is where its delivery report said"
        );
        assert_eq!(value, v.as_bytes());
        assert_eq!(ts, t);
        assert_eq!(
            headers,
            &vec![
                (
                    "kappa-correlation".to_string(),
                    format!("c-{i}").into_bytes()
                ),
                ("trace".to_string(), b"t".to_vec())
            ]
        );
    }
    // A node's log itself holds the same records, in offset order per partition.
    broker.stop();
    let Some(dir) = broker.log_dir() else { return };
    let log = EmbeddedLog::open(dir).unwrap();
    for p in 0..3u32 {
        let mut records = Vec::new();
        let tp = TopicPartition::new("cards", p);
        log.fetch(&[(tp, 0)], FetchLimits::default(), &mut records)
            .unwrap();
        let mut expected: Vec<_> = sent.values().filter(|(q, ..)| *q as u32 == p).collect();
        expected.sort_by_key(|(_, o, ..)| *o);
        let got: Vec<_> = records
            .iter()
            .map(|r| (r.offset as i64, r.value.clone().unwrap()))
            .collect();
        let want: Vec<_> = expected
            .iter()
            .map(|(_, o, v, ..)| (*o, bytes::Bytes::from(v.clone())))
            .collect();
        assert_eq!(got, want, "partition {p} of the log");
    }
}

fn batches_of_every_codec_read_back_intact(broker: &mut dyn Cluster) {
    let rt = runtime();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("codec-{codec}");
        broker.create_topic(&rt, &topic, 1);
        let producer = producer(broker, &[("compression.type", codec), ("linger.ms", "50")]);
        let futures: Vec<_> = (0..300)
            .map(|i| {
                let value = format!("{codec} record {i} {}", "x".repeat(i % 50));
                producer
                    .send_result(FutureRecord::<(), _>::to(&topic).payload(&value))
                    .unwrap()
            })
            .collect();
        for f in futures {
            rt.block_on(f).unwrap().map_err(|(e, _)| e).unwrap();
        }
        let read = read_topic(broker, &topic, 1, 300);
        for (i, (_, offset, _, value, ..)) in read.iter().enumerate() {
            assert_eq!(*offset, i as i64);
            assert_eq!(
                String::from_utf8(value.clone()).unwrap(),
                format!("{codec} record {i} {}", "x".repeat(i % 50)),
                "{codec}"
            );
        }
    }
}

/// What the consumers of a group did, and a signal when it changes.
#[derive(Default)]
struct Book {
    ledger: Mutex<Ledger>,
    changed: Condvar,
}

/// What the consumers of a group did.
#[derive(Default)]
struct Ledger {
    /// `(partition, offset)` → how many times it was processed.
    seen: BTreeMap<(i32, i64), u32>,
    /// Partition → the highest offset committed (the next to read).
    committed: BTreeMap<i32, i64>,
    /// Records processed although a commit already covered them.
    repeated_after_commit: Vec<(i32, i64)>,
}

impl Ledger {
    /// Records covered by a commit (offsets start at 0 on a new topic).
    fn committed_records(&self) -> i64 {
        self.committed.values().sum()
    }
}

fn member(
    broker: &dyn Cluster,
    group: &str,
    topic: &str,
    strategy: &str,
    book: Arc<Book>,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<()> {
    let consumer: BaseConsumer = broker
        .client()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", strategy)
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "200")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let topic = topic.to_string();
    thread::spawn(move || {
        // A commit refused mid-rebalance (REBALANCE_IN_PROGRESS, as Kafka
        // answers then) is retried while the partition is still ours. One
        // pending commit per partition: a later commit of another partition
        // must not drop it, or a partition whose last record it was stays
        // behind for good.
        let mut pending: BTreeMap<i32, i64> = BTreeMap::new();
        while !stop.load(Ordering::Relaxed) {
            if !pending.is_empty() {
                let assignment = consumer.assignment().ok();
                pending.retain(|&p, &mut next| {
                    let owned = assignment
                        .as_ref()
                        .is_some_and(|a| a.find_partition(&topic, p).is_some());
                    owned && commit(&consumer, &book, &topic, p, next).is_err()
                });
            }
            let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let (p, o) = (m.partition(), m.offset());
            {
                let mut l = book.ledger.lock().unwrap();
                *l.seen.entry((p, o)).or_default() += 1;
                if l.committed.get(&p).is_some_and(|c| o < *c) {
                    l.repeated_after_commit.push((p, o));
                }
            }
            match commit(&consumer, &book, &topic, p, o + 1) {
                Ok(()) => pending.remove(&p),
                Err(next) => pending.insert(p, next),
            };
        }
        // Leaving the group hands its partitions over at once.
        consumer.unsubscribe();
    })
}

/// Commits `next` for partition `p`; on failure returns the offset to retry.
fn commit(consumer: &BaseConsumer, book: &Book, topic: &str, p: i32, next: i64) -> Result<(), i64> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, p, Offset::Offset(next))
        .unwrap();
    consumer.commit(&tpl, CommitMode::Sync).map_err(|_| next)?;
    let mut l = book.ledger.lock().unwrap();
    let c = l.committed.entry(p).or_default();
    *c = (*c).max(next);
    drop(l);
    book.changed.notify_all();
    Ok(())
}

fn wait_for(book: &Book, committed: i64) {
    let deadline = Instant::now() + WAIT;
    let mut l = book.ledger.lock().unwrap();
    loop {
        let n = l.committed_records();
        if n >= committed {
            return;
        }
        let now = Instant::now();
        assert!(
            now < deadline,
            "{n} of {committed} records committed in time"
        );
        l = book.changed.wait_timeout(l, deadline - now).unwrap().0;
    }
}

fn produce_range(
    rt: &tokio::runtime::Runtime,
    producer: &FutureProducer,
    topic: &str,
    from: usize,
    to: usize,
) {
    let futures: Vec<_> = (from..to)
        .map(|i| {
            let key = format!("k{i}");
            producer
                .send_result(FutureRecord::to(topic).key(&key).payload("v"))
                .unwrap()
        })
        .collect();
    for f in futures {
        rt.block_on(f).unwrap().map_err(|(e, _)| e).unwrap();
    }
}

fn group_rebalances_without_losing_or_repeating_committed_work(
    broker: &mut dyn Cluster,
    strategy: &str,
) {
    let rt = runtime();
    let topic = "payments";
    broker.create_topic(&rt, topic, 6);
    let producer = producer(broker, &[]);
    let book = Arc::new(Book::default());
    let group = format!("settlement-{strategy}");

    let stop_a = Arc::new(AtomicBool::new(false));
    let stop_rest = Arc::new(AtomicBool::new(false));
    let join = |stop: &Arc<AtomicBool>| {
        member(
            &*broker,
            &group,
            topic,
            strategy,
            book.clone(),
            stop.clone(),
        )
    };
    // Records `from..to` go in and are committed while the group is as it is now.
    let produce_and_commit = |from: usize, to: usize| {
        produce_range(&rt, &producer, topic, from, to);
        wait_for(&book, to as i64);
    };
    let a = join(&stop_a);
    produce_and_commit(0, 100);
    let b = join(&stop_rest);
    produce_and_commit(100, 200);
    let c = join(&stop_rest);
    produce_and_commit(200, 300);
    stop_a.store(true, Ordering::Relaxed);
    a.join().unwrap();
    produce_and_commit(300, 400);
    stop_rest.store(true, Ordering::Relaxed);
    b.join().unwrap();
    c.join().unwrap();

    let l = book.ledger.lock().unwrap();
    assert_eq!(l.seen.len(), 400, "every record was processed");
    assert!(
        l.repeated_after_commit.is_empty(),
        "records processed again after their commit: {:?}",
        l.repeated_after_commit
    );
    drop(l);
    // The group committed every partition to its end.
    let ends: BTreeMap<i32, i64> = {
        let c = reader(broker, "watermarks");
        (0..6)
            .map(|p| (p, c.fetch_watermarks(topic, p, WAIT).unwrap().1))
            .collect()
    };
    let mut asked = TopicPartitionList::new();
    for p in 0..6 {
        asked.add_partition(topic, p);
    }
    let committed: BTreeMap<i32, i64> = reader(broker, &group)
        .committed_offsets(asked, WAIT)
        .unwrap()
        .elements()
        .iter()
        .map(|e| (e.partition(), e.offset().to_raw().unwrap_or(-1)))
        .collect();
    assert_eq!(
        committed, ends,
        "the group's committed offsets are the partitions' ends"
    );
    // On a node, they are the log's group positions.
    broker.stop();
    let Some(dir) = broker.log_dir() else { return };
    let log = EmbeddedLog::open(dir).unwrap();
    let positions: BTreeMap<u32, u64> = log
        .group_positions(&group)
        .unwrap()
        .into_iter()
        .map(|(tp, o)| (tp.partition, o))
        .collect();
    let ends: BTreeMap<u32, u64> = (0..6)
        .map(|p| (p, log.offsets(&TopicPartition::new(topic, p)).unwrap().end))
        .collect();
    assert_eq!(
        positions, ends,
        "the group committed every partition to its end"
    );
}

fn committed_offsets_and_records_survive_a_restart_and_offsets_by_time_find_the_first_record_at_or_after(
    broker: &mut dyn Cluster,
) {
    let rt = runtime();
    broker.create_topic(&rt, "ledger", 2);
    let producer = producer(broker, &[]);
    for i in 0..10i64 {
        let f = producer
            .send_result(
                FutureRecord::<(), _>::to("ledger")
                    .partition((i % 2) as i32)
                    .payload("x")
                    .timestamp(10_000 + i * 1000),
            )
            .unwrap();
        rt.block_on(f).unwrap().map_err(|(e, _)| e).unwrap();
    }
    drop(producer);
    let consumer = reader(broker, "auditors");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("ledger", 0, Offset::Offset(3))
        .unwrap();
    tpl.add_partition_offset("ledger", 1, Offset::Offset(4))
        .unwrap();
    consumer.commit(&tpl, CommitMode::Sync).unwrap();
    drop(consumer);

    broker.restart();
    let consumer = reader(broker, "auditors");
    let committed = consumer.committed_offsets(tpl.clone(), WAIT).unwrap();
    let mut got: Vec<(i32, Offset)> = committed
        .elements()
        .iter()
        .map(|e| (e.partition(), e.offset()))
        .collect();
    got.sort_by_key(|(p, _)| *p);
    assert_eq!(got, vec![(0, Offset::Offset(3)), (1, Offset::Offset(4))]);

    // Partition 0 holds timestamps 10000, 12000, ..., 18000 at offsets 0..5.
    let mut query = TopicPartitionList::new();
    query
        .add_partition_offset("ledger", 0, Offset::Offset(12_500))
        .unwrap();
    query
        .add_partition_offset("ledger", 1, Offset::Offset(99_000))
        .unwrap();
    let found = consumer.offsets_for_times(query, WAIT).unwrap();
    let found: BTreeMap<i32, Offset> = found
        .elements()
        .iter()
        .map(|e| (e.partition(), e.offset()))
        .collect();
    assert_eq!(
        found[&0],
        Offset::Offset(2),
        "14000 at offset 2 is the first at or after 12500"
    );
    assert_eq!(found[&1], Offset::End, "no record at or after 99000");

    // A subscribed member resumes where the group committed.
    consumer.subscribe(&["ledger"]).unwrap();
    let mut first: BTreeMap<i32, i64> = BTreeMap::new();
    let deadline = Instant::now() + WAIT;
    while first.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "resumed on both partitions in time"
        );
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            first.entry(m.partition()).or_insert(m.offset());
        }
    }
    assert_eq!(first, BTreeMap::from([(0, 3), (1, 4)]));
}

fn topic_configs_given_at_creation_are_described(broker: &mut dyn Cluster) {
    use rdkafka::admin::{
        AdminClient, AdminOptions, ConfigSource, NewTopic, ResourceSpecifier, TopicReplication,
    };
    let rt = runtime();
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        broker.client().create().unwrap();
    let options = AdminOptions::new().operation_timeout(Some(WAIT));
    let topics = [
        NewTopic::new("settled", 2, TopicReplication::Fixed(1))
            .set("retention.ms", "3600000")
            .set("max.message.bytes", "200000"),
        NewTopic::new("latest", 1, TopicReplication::Fixed(1)).set("cleanup.policy", "compact"),
    ];
    for r in rt.block_on(admin.create_topics(&topics, &options)).unwrap() {
        r.unwrap();
    }
    let bad =
        NewTopic::new("refused", 1, TopicReplication::Fixed(1)).set("cleanup.policy", "sometimes");
    let refused = rt.block_on(admin.create_topics(&[bad], &options)).unwrap();
    assert!(refused[0].is_err(), "an invalid cleanup.policy is refused");
    let described = rt
        .block_on(admin.describe_configs(
            &[
                ResourceSpecifier::Topic("settled"),
                ResourceSpecifier::Topic("latest"),
            ],
            &options,
        ))
        .unwrap();
    assert_eq!(described.len(), 2);
    for config in &described {
        let config = config.as_ref().unwrap();
        let expected: &[(&str, &str)] = match &config.specifier {
            rdkafka::admin::OwnedResourceSpecifier::Topic(t) if t == "settled" => {
                &[("retention.ms", "3600000"), ("max.message.bytes", "200000")]
            }
            rdkafka::admin::OwnedResourceSpecifier::Topic(t) if t == "latest" => {
                &[("cleanup.policy", "compact")]
            }
            other => panic!("described {other:?}, which was not asked for"),
        };
        for (key, value) in expected {
            let entry = config
                .get(key)
                .unwrap_or_else(|| panic!("{key} is described"));
            assert_eq!(
                entry.value.as_deref(),
                Some(*value),
                "{key} in {:?}",
                config.entries
            );
            assert!(
                matches!(entry.source, ConfigSource::DynamicTopic),
                "{key} is the topic's own"
            );
        }
        assert!(
            config
                .get("cleanup.policy")
                .is_some_and(|p| p.value.is_some()),
            "every topic describes its cleanup.policy"
        );
    }
}

fn a_range_group_of_two_then_three_rebalances_without_losing_or_repeating_committed_work(
    broker: &mut dyn Cluster,
) {
    group_rebalances_without_losing_or_repeating_committed_work(broker, "range");
}

fn a_cooperative_sticky_group_rebalances_without_losing_or_repeating_committed_work(
    broker: &mut dyn Cluster,
) {
    group_rebalances_without_losing_or_repeating_committed_work(broker, "cooperative-sticky");
}

/// A Kafka consumer group and the embedded log's group of the same name
/// are one thing, both ways: `kappa consume --group` starts where a Kafka
/// consumer of the group committed and commits where it stopped, and a
/// Kafka consumer of the group then resumes there. (The node owns the log
/// while it runs, so `kappa consume` reads the directory between two runs
/// of the node.)
#[test]
fn kappa_consume_and_a_kafka_consumer_share_a_groups_positions() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let mut broker = node::Broker::start(dir.path());
    broker.create_topic(&rt, "shared", 1);
    let producer = producer(&broker, &[]);
    for i in 0..6 {
        let f = producer
            .send_result(FutureRecord::<(), _>::to("shared").payload(&format!("v{i}")))
            .unwrap();
        rt.block_on(f).unwrap().map_err(|(e, _)| e).unwrap();
    }
    drop(producer);
    let next_values = |broker: &dyn Cluster, n: usize| -> (Vec<String>, i64) {
        let consumer = reader(broker, "shared-readers");
        consumer.subscribe(&["shared"]).unwrap();
        let deadline = Instant::now() + WAIT;
        let mut values = Vec::new();
        let mut next = 0;
        while values.len() < n {
            assert!(Instant::now() < deadline, "read {values:?} in time");
            if let Some(m) = consumer.poll(Duration::from_millis(100)) {
                let m = m.unwrap();
                values.push(String::from_utf8(m.payload().unwrap().to_vec()).unwrap());
                next = m.offset() + 1;
            }
        }
        let mut at = TopicPartitionList::new();
        at.add_partition_offset("shared", 0, Offset::Offset(next))
            .unwrap();
        consumer.commit(&at, CommitMode::Sync).unwrap();
        (values, next)
    };
    assert_eq!(next_values(&broker, 2), (vec!["v0".into(), "v1".into()], 2));
    broker.stop();

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kappa"))
        .args(["--log", dir.path().to_str().unwrap()])
        .args([
            "consume",
            "shared",
            "--group",
            "shared-readers",
            "--max",
            "2",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "v2\nv3\n",
        "kappa consume starts where the Kafka consumer committed"
    );

    let broker = node::Broker::start(dir.path());
    assert_eq!(
        next_values(&broker, 2),
        (vec!["v4".into(), "v5".into()], 6),
        "the Kafka consumer resumes where kappa consume stopped"
    );
}

on_both!(
    topic_configs_given_at_creation_are_described,
    records_keep_keys_headers_and_timestamps_and_land_on_murmur2_partitions,
    batches_of_every_codec_read_back_intact,
    a_range_group_of_two_then_three_rebalances_without_losing_or_repeating_committed_work,
    a_cooperative_sticky_group_rebalances_without_losing_or_repeating_committed_work,
    committed_offsets_and_records_survive_a_restart_and_offsets_by_time_find_the_first_record_at_or_after,
);

/// A running process, killed when the test ends however it ends.
struct KilledOnDrop(std::process::Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The address a process started with `--kafka-listen` says it serves its
/// log at, read from the next line of its standard output.
fn kafka_address(stdout: &mut impl std::io::BufRead, who: &str) -> String {
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    line.trim()
        .strip_prefix("serving the log to Kafka clients at ")
        .unwrap_or_else(|| panic!("{who} printed {line:?} instead of its Kafka address"))
        .to_owned()
}

/// `kappa demo --kafka-listen`: a service serves its own log to Kafka
/// clients while it runs. A Kafka consumer reads the commands it took
/// over HTTP and the events its processor wrote for them; the node's
/// figures are in the service's `/metrics`; a Kafka cluster given as the
/// log is refused before anything starts.
#[test]
fn a_service_serves_its_own_log_to_kafka_clients() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kappa"))
        .args(["--log", log_dir.to_str().unwrap(), "--durability", "never"])
        .args(["demo", "--http", "127.0.0.1:0", "--partitions", "2"])
        .args(["--kafka-listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let _demo = KilledOnDrop(child);
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("kappa demo printed {line:?} instead of its address"))
        .to_owned();
    let kafka = kafka_address(&mut stdout, "kappa demo");

    let out = Command::new(env!("CARGO_BIN_EXE_kappa"))
        .args(["load", "--url", &url, "--sync", "--rate", "100"])
        .args(["--connections", "2", "--duration", "1s", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let answered = usize::try_from(report["ok"].as_u64().unwrap()).unwrap();
    assert!(answered > 10, "{report}");
    assert_eq!(report["errors"], 0, "{report}");

    // Every answered command, and the event that answered it, over Kafka.
    let consumer = reader_at(&kafka, "demo-readers");
    let mut tpl = TopicPartitionList::new();
    for topic in ["commands", "events"] {
        for p in 0..2 {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .unwrap();
        }
    }
    consumer.assign(&tpl).unwrap();
    let mut read: BTreeMap<String, usize> = BTreeMap::new();
    let deadline = Instant::now() + WAIT;
    while read.get("commands") != Some(&answered) || read.get("events") != Some(&answered) {
        assert!(
            Instant::now() < deadline,
            "read {read:?} of {answered} commands and events in time"
        );
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            let envelope: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            assert!(envelope["id"].is_string(), "{envelope}");
            *read.entry(m.topic().to_owned()).or_default() += 1;
        }
    }
    drop(consumer);

    let metrics = node::scrape(&format!("{url}/metrics"));
    let connections: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("kappa_node_connections_total "))
        .unwrap_or_else(|| panic!("no kappa_node_connections_total in\n{metrics}"))
        .trim()
        .parse()
        .unwrap();
    assert!(connections >= 1, "{metrics}");

    let refused = Command::new(env!("CARGO_BIN_EXE_kappa"))
        .args([
            "--log",
            "kafka://127.0.0.1:1",
            "demo",
            "--http",
            "127.0.0.1:0",
        ])
        .args(["--kafka-listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!refused.status.success(), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("--kafka-listen") && stderr.contains("Kafka cluster"),
        "{stderr}"
    );
    assert!(refused.stdout.is_empty(), "{refused:?}");
}

/// `kappa-sums --kafka-listen`: while the process runs (its input still
/// open), a Kafka consumer reads the sums its topology wrote from its own
/// log; when the input ends, the process finishes as without the node.
#[test]
fn a_topology_binary_serves_its_log_to_kafka_clients_while_it_runs() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kappa-sums"))
        .args(["--log", dir.path().join("log").to_str().unwrap()])
        .args(["--partitions", "2", "--kafka-listen", "127.0.0.1:0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut sums = KilledOnDrop(child);
    let kafka = kafka_address(&mut stdout, "kappa-sums");
    // One input commit's worth (kappa-sums commits every 100 lines).
    let input: String = (0..100)
        .map(|i| if i % 2 == 0 { "a 1\n" } else { "b 2\n" })
        .collect();
    stdin.write_all(input.as_bytes()).unwrap();
    stdin.flush().unwrap();

    let consumer = reader_at(&kafka, "sums-readers");
    let mut tpl = TopicPartitionList::new();
    for p in 0..2 {
        tpl.add_partition_offset("sums", p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let expected = BTreeMap::from([
        ("a".to_owned(), "50".to_owned()),
        ("b".to_owned(), "100".to_owned()),
    ]);
    let mut latest: BTreeMap<String, String> = BTreeMap::new();
    let deadline = Instant::now() + WAIT;
    while latest != expected {
        assert!(Instant::now() < deadline, "read sums {latest:?} in time");
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            latest.insert(
                String::from_utf8(m.key().unwrap().to_vec()).unwrap(),
                String::from_utf8(m.payload().unwrap().to_vec()).unwrap(),
            );
        }
    }
    drop(consumer);

    drop(stdin);
    let status = sums.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let rest: Vec<String> = stdout.lines().map(Result::unwrap).collect();
    assert_eq!(
        rest.last().map(String::as_str),
        Some("appended 100"),
        "{rest:?}"
    );
}
