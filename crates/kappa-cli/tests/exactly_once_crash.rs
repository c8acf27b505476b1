//! Exactly-once under crashes, on both backends: `kappa-sums` (input
//! appender + keyed-sum topology in one process) is killed with SIGKILL at
//! random points while input keeps arriving. After every kill, and after a
//! final clean run: each committed input has exactly one output, outputs
//! are the running sums in input order, nothing uncommitted is visible, and
//! the store equals a from-scratch recomputation from the input topic.
//!
//! On Kafka (librdkafka's mock cluster, hosted by this test and reached by
//! the child over loopback) broker faults are injected as well: produce
//! requests failing with retriable errors, and the broker going down for a
//! moment mid-round. On a Kappa node (the Kafka protocol served from an
//! embedded log by this test) and on Apache Kafka (one KRaft node run by
//! this test) the child reaches its log the same way.
//!
//! Seeded; `KAPPA_CRASH_SEED=<seed>` replays a run.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use common::Rng;
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kappa_kafka::testing::{MockBroker, RDKafkaApiKey, RDKafkaRespErr};
use kappa_kafka::{
    COMMIT_SLOTS, CommitProtocol, KafkaConfig, KafkaLog, METADATA_TOPIC, TASKS_TOPIC_PREFIX,
};
use kappa_log::{EmbeddedLog, Log, LogError, Record, TopicPartition};
use kappa_streams::provenance::SOURCE_HEADER;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer};

const PARTITIONS: u32 = 4;

/// Every record of `topic`, partition by partition.
fn read_topic(log: &dyn Log, topic: &str) -> Vec<Record> {
    match log.read_topic(topic) {
        Ok(records) => records,
        // A kill before the child created its topics leaves none.
        Err(LogError::UnknownTopic(_)) => Vec::new(),
        Err(e) => panic!("{e}"),
    }
}

/// The records of one partition among those of its topic.
fn of_partition(records: &[Record], partition: u32) -> impl Iterator<Item = &Record> {
    records.iter().filter(move |r| r.partition == partition)
}

fn text(b: &Option<bytes::Bytes>) -> String {
    String::from_utf8(b.as_deref().unwrap().to_vec()).unwrap()
}

/// Checks every invariant; returns how many inputs are committed.
fn check(log: &dyn Log, all_processed: bool) -> u64 {
    let committed: HashMap<TopicPartition, u64> = log
        .group_positions("kappa-sums")
        .unwrap()
        .into_iter()
        .collect();
    let mut outputs_by_source: HashMap<String, (String, i64)> = HashMap::new();
    for r in read_topic(log, "sums") {
        let source = String::from_utf8(r.header(SOURCE_HEADER).unwrap().to_vec()).unwrap();
        let value: i64 = text(&r.value).parse().unwrap();
        let previous = outputs_by_source.insert(source.clone(), (text(&r.key), value));
        assert!(
            previous.is_none(),
            "input {source} produced two outputs: {previous:?} and {:?} at {}",
            (text(&r.key), value),
            r.position()
        );
    }
    let mut total = 0;
    let mut expected_store: BTreeMap<String, i64> = BTreeMap::new();
    let numbers = read_topic(log, "numbers");
    for p in 0..PARTITIONS {
        let inputs: Vec<&Record> = of_partition(&numbers, p).collect();
        let done = committed
            .get(&TopicPartition::new("numbers", p))
            .copied()
            .unwrap_or(0);
        if all_processed {
            assert_eq!(done, inputs.len() as u64, "numbers/{p} not fully processed");
        }
        let mut sums: HashMap<String, i64> = HashMap::new();
        for r in inputs {
            let key = text(&r.key);
            let source = format!("numbers/{p}/{}", r.offset);
            let output = outputs_by_source.remove(&source);
            if r.offset >= done {
                assert!(
                    output.is_none(),
                    "{source} is not committed but its output is visible"
                );
                continue;
            }
            let sum = sums.entry(key.clone()).or_default();
            *sum += text(&r.value).parse::<i64>().unwrap();
            assert_eq!(
                output,
                Some((key.clone(), *sum)),
                "output of committed input {source}"
            );
            expected_store.insert(key, *sum);
            total += 1;
        }
    }
    assert!(
        outputs_by_source.is_empty(),
        "outputs without an input: {outputs_by_source:?}"
    );
    let windows = check_window_counts(log, &numbers, &committed);
    if all_processed {
        eprintln!("{windows} closed windows, each emitted once with its exact count");
        assert!(
            windows > 0,
            "no window closed: the windowed count was not exercised"
        );
    }
    let mut store = BTreeMap::new();
    for (k, v) in log
        .metadata_scan(b"kappa-streams/kappa-sums/sums/")
        .unwrap()
    {
        let key = String::from_utf8(
            k[k.len() - k.iter().rev().position(|&b| b == b'/').unwrap()..].to_vec(),
        )
        .unwrap();
        store.insert(
            key,
            String::from_utf8(v.to_vec())
                .unwrap()
                .parse::<i64>()
                .unwrap(),
        );
    }
    assert_eq!(
        store, expected_store,
        "store differs from a recomputation over committed inputs"
    );
    total
}

/// Window size of kappa-sums' windowed count.
const WINDOW_MS: i64 = 50;

/// Each closed (key, window) was emitted exactly once, with the count of
/// its committed inputs (among `numbers`, the whole input topic); no open
/// window was emitted.
fn check_window_counts(
    log: &dyn Log,
    numbers: &[Record],
    committed: &HashMap<TopicPartition, u64>,
) -> usize {
    let mut emitted: HashMap<(String, i64), i64> = HashMap::new();
    for r in read_topic(log, "window-counts") {
        let k = r.key.as_deref().unwrap();
        let (key, start) = k.split_at(k.len() - 8);
        let id = (
            String::from_utf8(key.to_vec()).unwrap(),
            i64::from_be_bytes(start.try_into().unwrap()),
        );
        let count = i64::from_be_bytes(r.value.as_deref().unwrap().try_into().unwrap());
        assert!(
            emitted.insert(id.clone(), count).is_none(),
            "window {id:?} emitted twice"
        );
    }
    let mut expected: HashMap<(String, i64), i64> = HashMap::new();
    for p in 0..PARTITIONS {
        let done = committed
            .get(&TopicPartition::new("numbers", p))
            .copied()
            .unwrap_or(0);
        let inputs: Vec<&Record> = of_partition(numbers, p)
            .filter(|r| r.offset < done)
            .collect();
        let stream_time = inputs.iter().map(|r| r.timestamp).max().unwrap_or(i64::MIN);
        for r in &inputs {
            let start = r.timestamp - r.timestamp.rem_euclid(WINDOW_MS);
            if start + WINDOW_MS <= stream_time {
                *expected.entry((text(&r.key), start)).or_default() += 1;
            }
        }
    }
    assert_eq!(
        emitted, expected,
        "final window counts differ from a recomputation"
    );
    emitted.len()
}

/// Where the child's log is, how the checker opens it, and what faults
/// the backend can suffer.
trait Backend {
    /// The `--log` value, and the child's environment.
    fn child(&self) -> Command;
    /// Opens the log as the child's next start would (on Kafka that
    /// finishes a commit the kill cut short), for checking.
    fn open(&self) -> Box<dyn Log>;
    /// Injects faults during a round; `acks` is how many input commits the
    /// child acknowledged so far.
    fn disturb(&self, rng: &mut Rng, acks: u64);
    fn rounds(&self) -> usize;
    /// Lines one round may send at most.
    fn lines_per_round_max(&self) -> u64;
}

struct Embedded(tempfile::TempDir);

impl Backend for Embedded {
    fn child(&self) -> Command {
        child(&self.0.path().to_string_lossy())
    }
    fn open(&self) -> Box<dyn Log> {
        Box::new(EmbeddedLog::open(self.0.path()).expect("the log reopens after a kill"))
    }
    fn disturb(&self, _: &mut Rng, _: u64) {}
    fn rounds(&self) -> usize {
        30
    }
    fn lines_per_round_max(&self) -> u64 {
        200_000
    }
}

struct Kafka {
    broker: Arc<MockBroker>,
    state: tempfile::TempDir,
}

impl Kafka {
    fn start() -> Self {
        let broker = Arc::new(MockBroker::start().unwrap());
        // The mock has no admin API: everything the child would create exists beforehand.
        for (topic, n) in [
            ("numbers", PARTITIONS),
            ("sums", PARTITIONS),
            ("window-counts", PARTITIONS),
            ("kappa-sums-sums-changelog", PARTITIONS),
            ("kappa-sums-window-counts-changelog", PARTITIONS),
            (METADATA_TOPIC, 1),
            ("kappa-commits-0", COMMIT_SLOTS),
            // The tasks' write-ahead slots and their positions.
            (&format!("{TASKS_TOPIC_PREFIX}kappa-sums"), PARTITIONS),
            (&kappa_log::task_changelog("kappa-sums"), PARTITIONS),
        ] {
            broker.create_topic(topic, n).unwrap();
        }
        Self {
            broker,
            state: tempfile::tempdir().unwrap(),
        }
    }
}

impl Backend for Kafka {
    fn child(&self) -> Command {
        // The mock has no real transactions: the write-ahead protocol.
        let mut c = child(&format!(
            "kafka://{}?kappa.commit=write-ahead",
            self.broker.bootstrap()
        ));
        c.env("KAPPA_STATE_DIR", self.state.path());
        c
    }
    fn open(&self) -> Box<dyn Log> {
        open_as_next_start(|state| {
            KafkaLog::open_with_topic_admin(self.broker.config(state), self.broker.clone())
        })
    }
    fn disturb(&self, rng: &mut Rng, acks: u64) {
        match (acks, rng.below(6)) {
            (1, 0) => {
                let errors = vec![
                    RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                    RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                    RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                ];
                self.broker
                    .fail_requests(RDKafkaApiKey::Produce, errors)
                    .unwrap();
            }
            (5, 1) => {
                self.broker.set_down(true).unwrap();
                // How long the fault lasts, not a wait for anything.
                std::thread::sleep(Duration::from_millis(300));
                self.broker.set_down(false).unwrap();
            }
            _ => {}
        }
    }
    fn rounds(&self) -> usize {
        12
    }
    /// The mock keeps at most 5 MiB per partition and drops the oldest
    /// records beyond that (`max_size` in rdkafka_mock.c), which would
    /// make the checks read from a deleted offset: stay well under it.
    fn lines_per_round_max(&self) -> u64 {
        4_000
    }
}

/// Kappa's Kafka backend on a broker this test runs without faults: a
/// Kappa node (the Kafka protocol served from an embedded log, in this
/// process) or Apache Kafka (one KRaft node, a child process). The child
/// is killed, the broker is not.
struct OnBroker {
    bootstrap: String,
    state: tempfile::TempDir,
    /// Keeps the broker (and what it needs) running.
    _broker: Box<dyn std::any::Any>,
}

impl OnBroker {
    fn kappa_node() -> Self {
        let log_dir = tempfile::tempdir().unwrap();
        let log = Arc::new(EmbeddedLog::open(log_dir.path()).unwrap());
        let node = kappa_node::testing::TestNode::start(log).unwrap();
        Self {
            bootstrap: node.bootstrap().to_owned(),
            state: tempfile::tempdir().unwrap(),
            _broker: Box::new((node, log_dir)),
        }
    }

    fn apache_kafka() -> Self {
        let kafka = kappa_kafka::testing::ApacheKafka::start().unwrap_or_else(|e| panic!("{e}"));
        Self {
            bootstrap: kafka.bootstrap().to_owned(),
            state: tempfile::tempdir().unwrap(),
            _broker: Box::new(kafka),
        }
    }
}

impl OnBroker {
    /// The child as instance `name` (its own state directory under the
    /// shared base, its own commit topic; the same group).
    fn instance(&self, name: &str) -> Command {
        let mut c = child(&format!(
            "kafka://{}?kappa.commit=transactions&kappa.instance={name}",
            self.bootstrap
        ));
        c.env("KAPPA_STATE_DIR", self.state.path());
        c
    }

    /// A client that reads the group's committed offsets (it never joins).
    fn group_reader(&self) -> BaseConsumer {
        rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", "kappa-sums")
            .create()
            .unwrap()
    }
}

/// The group's committed Kafka offsets and the input's ends, by partition.
fn progress(consumer: &BaseConsumer) -> (Vec<i64>, Vec<i64>) {
    let mut asked = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        asked.add_partition("numbers", i32::try_from(p).unwrap());
    }
    let committed = consumer
        .committed_offsets(asked, Duration::from_secs(30))
        .unwrap()
        .elements()
        .iter()
        .map(|e| e.offset().to_raw().unwrap_or(-1))
        .collect();
    let ends = (0..PARTITIONS)
        .map(|p| {
            consumer
                .fetch_watermarks(
                    "numbers",
                    i32::try_from(p).unwrap(),
                    Duration::from_secs(30),
                )
                .unwrap()
                .1
        })
        .collect();
    (committed, ends)
}

impl Backend for OnBroker {
    fn child(&self) -> Command {
        let mut c = child(&format!(
            "kafka://{}?kappa.commit=transactions",
            self.bootstrap
        ));
        c.env("KAPPA_STATE_DIR", self.state.path());
        c
    }
    fn open(&self) -> Box<dyn Log> {
        open_as_next_start(|state| {
            let mut config = KafkaConfig::new(&self.bootstrap, state);
            config.commit = CommitProtocol::Transactions;
            KafkaLog::open(config)
        })
    }
    fn disturb(&self, _: &mut Rng, _: u64) {}
    fn rounds(&self) -> usize {
        8
    }
    fn lines_per_round_max(&self) -> u64 {
        20_000
    }
}

/// Opens Kafka's log as the child's next start would, each time with a
/// fresh copy of the metadata (everything checked comes from the broker).
///
/// Opening finishes the instance's own write-ahead entries; a task's
/// entries are finished when the task is claimed, so every task is
/// claimed here as the child's next start claims it. A task commit whose
/// entry was stored has happened even when the kill cut its production
/// short (its outputs out, its positions not yet): without the claim, the
/// checks would read such a commit half-applied.
fn open_as_next_start(
    open: impl Fn(&std::path::Path) -> Result<KafkaLog, kappa_log::LogError>,
) -> Box<dyn Log> {
    let state = tempfile::tempdir().unwrap();
    let log = open(state.path()).expect("the Kafka log opens after a kill");
    // A kill before the child joined its group leaves no tasks to claim.
    if log
        .partition_count(&format!("{TASKS_TOPIC_PREFIX}kappa-sums"))
        .is_ok()
    {
        let tasks: Vec<u32> = (0..PARTITIONS).collect();
        log.claim_tasks("kappa-sums", &tasks, &[]).unwrap();
        drop(log);
        let state = tempfile::tempdir().unwrap();
        return Box::new(open(state.path()).expect("the Kafka log reopens"));
    }
    Box::new(log)
}

fn child(location: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kappa-sums"));
    c.args(["--log", location])
        .args(["--threads", "2", "--partitions", &PARTITIONS.to_string()]);
    c
}

fn sigkill_never_loses_or_duplicates_a_result(backend: &dyn Backend) {
    let mut rng = Rng::from_env("streams crash test");
    let rounds = backend.rounds();
    let lines_max = backend.lines_per_round_max();
    let mut line = 0u64;
    let mut last_committed = 0;
    for round in 0..rounds {
        let mut proc = backend
            .child()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = proc.stdin.take().unwrap();
        let first = line;
        // The pipe breaks when the child is killed; that ends the round.
        let feeder = feed(
            stdin,
            Arc::new(AtomicBool::new(false)),
            first..first + lines_max,
        );
        // Kill after a random number of input commits: by then the topology
        // is somewhere in processing or committing them.
        let kill_after = 1 + rng.below(150);
        let mut acks = BufReader::new(proc.stdout.take().unwrap()).lines();
        let mut seen = 0;
        while seen < kill_after {
            match acks.next() {
                Some(Ok(l)) if l.starts_with("appended") => {
                    seen += 1;
                    backend.disturb(&mut rng, seen);
                }
                _ => break,
            }
        }
        proc.kill().unwrap();
        proc.wait().unwrap();
        drop(acks);
        line = feeder.join().unwrap();
        let sent = line - first;
        let committed = check(&*backend.open(), false);
        eprintln!(
            "round {round}: killed after {sent} lines sent; {committed} inputs committed so far"
        );
        assert!(
            committed >= last_committed,
            "round {round}: committed inputs went from {last_committed} to {committed}"
        );
        last_committed = committed;
    }
    // A clean run with no new input finishes everything left.
    let status = backend
        .child()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let total = check(&*backend.open(), true);
    eprintln!("{rounds} kills, {total} inputs each with exactly one output");
    assert!(total > 0);
}

/// Sends `KEY AMOUNT` lines numbered from `lines.start` to a child, a
/// hundred at a time, until `lines.end`, `stop`, or its input closes;
/// returns the next line's number.
fn feed(
    mut stdin: std::process::ChildStdin,
    stop: Arc<AtomicBool>,
    lines: std::ops::Range<u64>,
) -> JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut n = lines.start;
        let mut buf = String::new();
        while n < lines.end && !stop.load(Ordering::Relaxed) {
            buf.clear();
            for _ in 0..100 {
                buf += &format!("k{} {}\n", n % 37, n % 11 + 1);
                n += 1;
            }
            if stdin.write_all(buf.as_bytes()).is_err() {
                break;
            }
        }
        n
    })
}

/// Zombie fencing: an instance frozen with SIGSTOP, in the middle of work,
/// past its session timeout while its tasks move to another instance, is
/// resumed with SIGCONT. Its commits are refused ("fenced"), and every
/// input still has exactly one output once the other instance finishes.
fn a_frozen_instance_cannot_commit_after_its_tasks_moved(broker: &OnBroker) {
    let mut zombie = broker
        .instance("zombie")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = feed(zombie.stdin.take().unwrap(), stop.clone(), 0..u64::MAX);
    let mut acks = BufReader::new(zombie.stdout.take().unwrap()).lines();
    // Busy appending and processing: its tasks hold uncommitted work.
    for _ in 0..30 {
        match acks.next() {
            Some(Ok(l)) if l.starts_with("appended") => {}
            other => panic!("the instance stopped acknowledging input: {other:?}"),
        }
    }
    let (said, told) = mpsc::channel();
    let stderr = BufReader::new(zombie.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            eprintln!("zombie: {line}");
            if said.send(line).is_err() {
                break;
            }
        }
    });
    signal(&zombie, "-STOP");

    // The other instance gets the frozen one's tasks once its session times
    // out, and processes every input appended before the freeze.
    let mut successor = broker
        .instance("successor")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let group = broker.group_reader();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (committed, ends) = progress(&group);
        if committed.iter().zip(&ends).all(|(c, e)| c >= e) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the successor did not take over within 120 s: committed {committed:?} of {ends:?}"
        );
        // Between looks at the group's offsets, not a wait for them.
        std::thread::sleep(Duration::from_millis(200));
    }

    signal(&zombie, "-CONT");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match told.recv_timeout(left) {
            Ok(line) if line.contains("fenced") => break,
            Ok(_) => {}
            Err(e) => panic!("the resumed instance never had a commit refused as fenced: {e}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    zombie.kill().unwrap();
    zombie.wait().unwrap();
    drop(acks);
    let sent = feeder.join().unwrap();

    // With its input closed, the successor finishes everything and exits.
    drop(successor.stdin.take());
    assert!(successor.wait().unwrap().success());
    let total = check(&*broker.open(), true);
    eprintln!("{sent} lines sent; {total} inputs each with exactly one output");
    assert!(total > 0);
}

fn signal(child: &std::process::Child, which: &str) {
    let status = Command::new("kill")
        .args([which, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {which} failed");
}

/// A `#[test]` for each backend a scenario runs on.
macro_rules! tests {
    ($($test:ident: $scenario:ident on $backend:expr;)+) => {
        $(
            #[test]
            fn $test() {
                $scenario(&$backend);
            }
        )+
    };
}

tests! {
    on_apache_kafka_a_frozen_instance_cannot_commit_after_its_tasks_moved:
        a_frozen_instance_cannot_commit_after_its_tasks_moved on OnBroker::apache_kafka();
    on_kafka_served_by_a_kappa_node_a_frozen_instance_cannot_commit_after_its_tasks_moved:
        a_frozen_instance_cannot_commit_after_its_tasks_moved on OnBroker::kappa_node();
    on_the_embedded_log_sigkill_never_loses_or_duplicates_a_result:
        sigkill_never_loses_or_duplicates_a_result on Embedded(tempfile::tempdir().unwrap());
    on_kafka_sigkill_and_broker_faults_never_lose_or_duplicate_a_result:
        sigkill_never_loses_or_duplicates_a_result on Kafka::start();
    on_kafka_served_by_a_kappa_node_sigkill_never_loses_or_duplicates_a_result:
        sigkill_never_loses_or_duplicates_a_result on OnBroker::kappa_node();
    on_apache_kafka_sigkill_never_loses_or_duplicates_a_result:
        sigkill_never_loses_or_duplicates_a_result on OnBroker::apache_kafka();
}
