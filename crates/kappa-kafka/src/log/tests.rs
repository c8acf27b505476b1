//! The write-ahead protocol cut short at each step, on the mock cluster.
use super::*;
use crate::testing::MockBroker;

fn open(broker: &Arc<MockBroker>, dir: &std::path::Path) -> KafkaLog {
    KafkaLog::open_with_topic_admin(broker.config(dir), broker.clone()).unwrap()
}

/// A mock cluster and a log on it with a topic `out` of `partitions`
/// partitions; the directory is kept so the log can be reopened.
fn log_with_out(partitions: u32) -> (Arc<MockBroker>, tempfile::TempDir, KafkaLog) {
    let broker = Arc::new(MockBroker::start().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let log = open(&broker, dir.path());
    log.create_topic(&TopicSpec::new("out", partitions))
        .unwrap();
    (broker, dir, log)
}

/// A commit appending `values` to `out`, the i-th keyed `k{i}`.
fn keyed_appends(values: impl IntoIterator<Item = impl Into<Bytes>>) -> Commit {
    let mut c = Commit::new();
    for (i, v) in values.into_iter().enumerate() {
        c.append("out", ProducerRecord::value(v).with_key(format!("k{i}")));
    }
    c
}

fn values(log: &KafkaLog, topic: &str, partitions: u32) -> Vec<String> {
    let mut out = Vec::new();
    for p in 0..partitions {
        let tp = TopicPartition::new(topic, p);
        let mut records = Vec::new();
        log.read_to_end(&[(tp, 0)], true, |rs, _| {
            records.extend_from_slice(rs);
            Ok(())
        })
        .unwrap();
        out.extend(
            records.iter().map(|r| {
                String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned()
            }),
        );
    }
    out.sort();
    out
}

/// A commit's entry and its chunks, on a slot taken for it (and never
/// given back: the process is about to "die").
fn entry_of(log: &KafkaLog, c: Commit) -> (Slot, Entry, Vec<Outgoing>) {
    let planned = log.plan(c).unwrap();
    let bounds = log.bounds(&planned.records).unwrap();
    let slot = log.take_slot().unwrap();
    let entry = Entry {
        seq: slot.next_seq,
        records: planned.records,
        bounds,
    };
    let chunks = log.chunk_records(&slot, &entry);
    (slot, entry, chunks)
}

/// The process dies after writing a commit's entry ahead and producing
/// `produced` of its records: the next start produces the rest, once.
fn interrupted_after(produced: usize) {
    let (broker, dir, log) = log_with_out(2);
    let mut c = keyed_appends((0..20).map(|i| format!("v{i:02}")));
    c.put_metadata("store/x", "42");
    c.set_group_position("app", TopicPartition::new("out", 1), 17);
    let (slot, entry, chunks) = entry_of(&log, c);
    let total = entry.records.len();
    log.senders
        .with(|s| s.send_all(&chunks, &|_| None))
        .unwrap();
    let n = produced.min(total);
    let (instance, partition) = (log.config.instance.clone(), slot.partition);
    let tags = writeahead::Tags::new(&instance, partition, &entry);
    log.senders
        .with(|s| s.send_all(&entry.records[..n], &|i| Some(tags.of(i))))
        .unwrap();
    drop(log);

    let log = open(&broker, dir.path());
    let expected: Vec<String> = (0..20).map(|i| format!("v{i:02}")).collect();
    assert_eq!(values(&log, "out", 2), expected, "each output exactly once");
    assert_eq!(
        log.metadata(b"store/x").unwrap().as_deref(),
        Some(&b"42"[..])
    );
    assert_eq!(
        log.group_positions("app").unwrap(),
        vec![(TopicPartition::new("out", 1), 17)]
    );
    let stats = log.restore_stats();
    assert_eq!(stats.redone_records, (total - n) as u64, "{stats:?}");
    // A second restart finds the entry complete and produces nothing.
    drop(log);
    let log = open(&broker, dir.path());
    assert_eq!(log.restore_stats().redone_records, 0);
    assert_eq!(values(&log, "out", 2), expected);
}

#[test]
fn a_commit_cut_short_before_producing_is_finished_at_the_next_start() {
    interrupted_after(0);
}

#[test]
fn a_commit_cut_short_while_producing_is_finished_without_duplicates() {
    interrupted_after(7);
    interrupted_after(21);
}

#[test]
fn an_entry_cut_short_while_written_ahead_never_happened() {
    let (broker, dir, log) = log_with_out(1);
    let c = keyed_appends((0..40).map(|_| vec![b'x'; 100_000]));
    let (_, _, mut chunks) = entry_of(&log, c);
    assert!(chunks.len() > 1);
    chunks.pop();
    log.senders
        .with(|s| s.send_all(&chunks, &|_| None))
        .unwrap();
    drop(log);
    let log = open(&broker, dir.path());
    assert!(values(&log, "out", 1).is_empty());
    assert_eq!(log.restore_stats().redone_entries, 0);
    // The slot goes on after the abandoned entry.
    log.append("out", vec![ProducerRecord::value("after").with_key("k")])
        .unwrap();
    assert_eq!(values(&log, "out", 1), vec!["after".to_owned()]);
}

fn texts(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect()
}

/// A commit of `values` to `out` (one partition), produced record by record
/// as a test asks, with the headers the write-ahead protocol gives them.
struct Producing {
    slot: Slot,
    entry: Entry,
}

impl Producing {
    fn new(log: &KafkaLog, values: &[&'static str]) -> Self {
        let (slot, entry, _) = entry_of(log, keyed_appends(values.iter().copied()));
        Self { slot, entry }
    }

    fn produce(&self, log: &KafkaLog, records: std::ops::Range<usize>) {
        let tags = Tags::new(&self.slot.writer, self.slot.partition, &self.entry);
        let start = records.start;
        log.senders
            .with(|s| s.send_all(&self.entry.records[records], &|i| Some(tags.of(start + i))))
            .unwrap();
    }
}

const WAITING: FetchLimits = FetchLimits {
    records_max: 100,
    bytes_max: 1 << 20,
    wait_max: Duration::from_millis(200),
};

/// A fetch never returns part of a commit's records in a partition: the
/// first of a commit's two records, produced alone (as two produce
/// batches would land), is held back while a record of an earlier commit
/// before it is returned; once the second is produced both come together.
#[test]
fn a_fetch_returns_a_commits_records_in_a_partition_together() {
    let (_broker, _dir, log) = log_with_out(1);
    log.append("out", vec![ProducerRecord::value("before").with_key("k")])
        .unwrap();
    let commit = Producing::new(&log, &["first", "second"]);
    commit.produce(&log, 0..1);
    let tp = TopicPartition::new("out", 0);
    let mut got = Vec::new();
    let outcome = log.fetch(&[(tp.clone(), 0)], WAITING, &mut got).unwrap();
    assert_eq!(
        texts(&got),
        ["before"],
        "the commit's first record is held back"
    );
    assert_eq!(outcome.next_offsets, [1]);
    assert_eq!(outcome.records, 1);

    commit.produce(&log, 1..2);
    got.clear();
    let outcome = log.fetch(&[(tp.clone(), 1)], WAITING, &mut got).unwrap();
    assert_eq!(texts(&got), ["first", "second"]);
    assert_eq!(outcome.next_offsets, [3]);
    assert!(
        got.iter().all(|r| r.headers.is_empty()),
        "the write-ahead headers are not the application's: {:?}",
        got[0].headers
    );
}

/// A commit larger than what one fetch may return comes in parts (holding
/// it back would never end).
#[test]
fn a_commit_larger_than_a_fetch_comes_in_parts() {
    let (_broker, _dir, log) = log_with_out(1);
    let commit = Producing::new(&log, &["a", "b", "c"]);
    commit.produce(&log, 0..3);
    let tp = TopicPartition::new("out", 0);
    let two = FetchLimits {
        records_max: 2,
        ..WAITING
    };
    let mut got = Vec::new();
    let outcome = log.fetch(&[(tp.clone(), 0)], two, &mut got).unwrap();
    assert_eq!(texts(&got), ["a", "b"]);
    log.fetch(&[(tp, outcome.next_offsets[0])], two, &mut got)
        .unwrap();
    assert_eq!(texts(&got), ["a", "b", "c"]);
}

/// A commit whose writer died after producing part of it is delivered as
/// it is once it has been held back for a while (2 s; the rest comes when
/// the writer's slot is recovered), and
/// `read_topic`, a snapshot to the ends, reads it as it is at once.
#[test]
fn a_commit_left_incomplete_is_delivered_as_it_is_after_a_while() {
    let (_broker, _dir, log) = log_with_out(1);
    let commit = Producing::new(&log, &["first", "second"]);
    commit.produce(&log, 0..1);
    assert_eq!(texts(&log.read_topic("out").unwrap()), ["first"]);
    let tp = TopicPartition::new("out", 0);
    let mut got = Vec::new();
    log.fetch(&[(tp.clone(), 0)], WAITING, &mut got).unwrap();
    assert!(got.is_empty(), "held back at first: {:?}", texts(&got));
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the incomplete commit was never delivered"
        );
        log.fetch(&[(tp.clone(), 0)], WAITING, &mut got).unwrap();
    }
    assert_eq!(texts(&got), ["first"]);
}
