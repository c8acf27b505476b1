//! The Kafka backend's `Log` behaviour on four brokers: Apache Kafka (one
//! KRaft node run as a child process), librdkafka's in-process mock
//! cluster, tansu (a Kafka-compatible broker run as a child process) and a
//! Kappa node (the Kafka protocol served from an embedded log, in this
//! process); and what it writes, read by Kafka clients nobody here wrote.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

// The behaviour kappa-log's own suite checks on the embedded log.
#[path = "../../kappa-log/tests/behaviour/mod.rs"]
mod behaviour;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use kappa_kafka::testing::{ApacheKafka, MockBroker, Tansu};
use kappa_kafka::{CommitProtocol, KafkaConfig, KafkaLog};
use kappa_log::{
    Commit, Log, LogError, ProducerRecord, TopicPartition, TopicSpec, partition_for_key,
};

/// A broker to run on: opens a log on it with its state in a directory.
trait Broker {
    /// Settings for a log with its state in `dir`.
    fn config(&self, dir: &std::path::Path) -> KafkaConfig;
    fn open(&self, dir: &std::path::Path) -> KafkaLog {
        KafkaLog::open(self.config(dir)).unwrap()
    }
    /// Where Kafka clients nobody here wrote connect to it.
    fn bootstrap(&self) -> String {
        self.config(std::path::Path::new("")).bootstrap
    }
}

impl Broker for Arc<MockBroker> {
    fn config(&self, dir: &std::path::Path) -> KafkaConfig {
        MockBroker::config(self, dir)
    }
    fn open(&self, dir: &std::path::Path) -> KafkaLog {
        KafkaLog::open_with_topic_admin(self.config(dir), self.clone()).unwrap()
    }
}

impl Broker for Tansu {
    fn config(&self, dir: &std::path::Path) -> KafkaConfig {
        Tansu::config(self, dir)
    }
}

impl Broker for ApacheKafka {
    fn config(&self, dir: &std::path::Path) -> KafkaConfig {
        ApacheKafka::config(self, dir)
    }
}

/// A Kappa node serving an embedded log on a loopback port.
struct KappaNode {
    node: kappa_node::testing::TestNode,
    _dir: tempfile::TempDir,
}

impl Broker for KappaNode {
    fn config(&self, dir: &std::path::Path) -> KafkaConfig {
        KafkaConfig::new(self.node.bootstrap(), dir)
    }
}

fn kappa_node() -> KappaNode {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(kappa_log::EmbeddedLog::open(dir.path()).unwrap());
    KappaNode {
        node: kappa_node::testing::TestNode::start(log).unwrap(),
        _dir: dir,
    }
}

fn mock() -> Arc<MockBroker> {
    Arc::new(MockBroker::start().unwrap())
}

fn tansu() -> Tansu {
    Tansu::start().unwrap()
}

fn apache_kafka() -> ApacheKafka {
    ApacheKafka::start().unwrap_or_else(|e| panic!("{e}"))
}

fn commits_reads_and_metadata_survive_a_restart_and_a_lost_state_directory(broker: &dyn Broker) {
    let dir = tempfile::tempdir().unwrap();
    let log = broker.open(dir.path());
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
        let records = behaviour::read_partition(&log, "in", p);
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
    let log = broker.open(dir.path());
    check(&log);
    drop(log);
    // A lost state directory: everything comes back from the changelog.
    let fresh = tempfile::tempdir().unwrap();
    let log = broker.open(fresh.path());
    check(&log);
    assert!(
        log.restore_stats().records >= 4,
        "{:?}",
        log.restore_stats()
    );
}

fn bad_commits_are_refused_whole(broker: &dyn Broker) {
    let dir = tempfile::tempdir().unwrap();
    let log = broker.open(dir.path());
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

/// A task claimed by another instance fences the instance that held it:
/// the old holder's commits (outputs, store, positions) never land, the
/// new holder's do, and a fresh start restores only what landed.
fn a_task_claimed_elsewhere_fences_its_last_holder(broker: &dyn Broker) {
    let task_commit = |output: &str, position: u64| {
        let mut c = Commit::new();
        c.append(
            "out",
            ProducerRecord::value(output.to_owned()).with_key("k"),
        );
        c.put_metadata("store/k", output.to_owned());
        c.set_group_position("fenced", TopicPartition::new("in", 0), position);
        vec![(0, c)]
    };
    let (first_dir, second_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let transactional = |dir: &std::path::Path, instance: &str| {
        let mut config = broker.config(dir);
        config.commit = CommitProtocol::Transactions;
        config.instance = instance.to_owned();
        KafkaLog::open(config).unwrap()
    };
    let first = transactional(first_dir.path(), "first");
    for topic in ["in", "out"] {
        first.create_topic(&TopicSpec::new(topic, 1)).unwrap();
    }
    first
        .commit({
            let mut c = Commit::new();
            c.append_all(
                "in",
                None,
                (0..3).map(|i| ProducerRecord::value(format!("{i}"))),
            );
            c
        })
        .unwrap();
    first.claim_tasks("fenced", &[0], &[]).unwrap();
    first
        .commit_tasks("fenced", task_commit("first-1", 1))
        .unwrap();

    let second = transactional(second_dir.path(), "second");
    second.claim_tasks("fenced", &[0], &[]).unwrap();
    assert_eq!(
        second.metadata(b"store/k").unwrap().as_deref(),
        Some(&b"first-1"[..]),
        "the new holder restores what the last one committed"
    );

    let refused = first
        .commit_tasks("fenced", task_commit("first-2", 2))
        .unwrap_err()
        .to_string();
    assert!(refused.contains("fenced"), "{refused}");
    let again = first
        .commit_tasks("fenced", task_commit("first-3", 3))
        .unwrap_err()
        .to_string();
    assert!(again.contains("not held"), "{again}");
    second
        .commit_tasks("fenced", task_commit("second-2", 2))
        .unwrap();

    let values: Vec<String> = second
        .read_topic("out")
        .unwrap()
        .iter()
        .map(|r| String::from_utf8(r.value.as_deref().unwrap().to_vec()).unwrap())
        .collect();
    assert_eq!(values, ["first-1", "second-2"], "only the holders' commits");
    drop((first, second));
    let fresh = tempfile::tempdir().unwrap();
    let log = broker.open(fresh.path());
    assert_eq!(
        log.metadata(b"store/k").unwrap().as_deref(),
        Some(&b"second-2"[..])
    );
    assert_eq!(
        log.group_positions("fenced").unwrap(),
        [(TopicPartition::new("in", 0), 2)]
    );
}

/// Tells a test which tasks the group assigned.
struct Assignments(Mutex<mpsc::Sender<Vec<u32>>>);

impl kappa_log::RebalanceListener for Assignments {
    fn revoked(&self, _: &[u32]) {}
    fn assigned(&self, tasks: &[u32]) {
        let _ = self.0.lock().unwrap().send(tasks.to_vec());
    }
}

/// Committed offsets of `groups` as a Kafka admin client nobody here wrote
/// (Python `confluent-kafka`) reads them: group -> (topic, partition) -> offset.
fn kafka_group_offsets(
    bootstrap: &str,
    groups: &[&str],
) -> BTreeMap<String, BTreeMap<(String, u32), u64>> {
    const SCRIPT: &str = r#"
import json, sys
from confluent_kafka import ConsumerGroupTopicPartitions
from confluent_kafka.admin import AdminClient
admin = AdminClient({"bootstrap.servers": sys.argv[1], "broker.address.family": "v4"})
out = {}
for group in sys.argv[2:]:
    found = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(30)
    out[group] = [[tp.topic, tp.partition, tp.offset] for tp in found.topic_partitions]
print(json.dumps(out))
"#;
    let mut args = vec![bootstrap];
    args.extend_from_slice(groups);
    let parsed: BTreeMap<String, Vec<(String, u32, i64)>> =
        serde_json::from_slice(&python_output(SCRIPT, &args)).unwrap();
    parsed
        .into_iter()
        .map(|(group, tps)| {
            let offsets = tps
                .into_iter()
                .filter(|(_, _, offset)| *offset >= 0)
                .map(|(t, p, o)| ((t, p), u64::try_from(o).unwrap()))
                .collect();
            (group, offsets)
        })
        .collect()
}

/// Kappa's positions as Kafka tools see them: the positions of a plain
/// group and of a task group (committed by the tasks' holder, a member of
/// the Kafka group of the same name) are the groups' committed offsets,
/// read by an independent admin client once the log is closed.
fn positions_are_kafka_group_offsets(broker: &dyn Broker) {
    let dir = tempfile::tempdir().unwrap();
    let log = broker.open(dir.path());
    log.create_topic(&TopicSpec::new("in", 2)).unwrap();
    let tp = |p| TopicPartition::new("in", p);
    // Positions within what the partitions hold (a Kappa node refuses others).
    let mut input = Commit::new();
    for p in 0..2 {
        for i in 0..10 {
            input.append_to("in", p, ProducerRecord::value(format!("{i}")));
        }
    }
    log.commit(input).unwrap();
    let mut plain = Commit::new();
    plain.set_group_position("plain", tp(0), 3);
    plain.set_group_position("plain", tp(1), 5);
    log.commit(plain).unwrap();

    let (tell, assigned) = mpsc::channel();
    let member = log
        .join_group("app", 2, Arc::new(Assignments(Mutex::new(tell))))
        .unwrap();
    loop {
        let tasks = assigned
            .recv_timeout(Duration::from_secs(60))
            .expect("the group assigned no tasks within 60 s");
        if tasks == [0, 1] {
            break;
        }
    }
    log.claim_tasks("app", &[0, 1], &[]).unwrap();
    for round in 1..=3u64 {
        let commits = (0..2u32)
            .map(|task| {
                let mut c = Commit::new();
                c.set_group_position("app", tp(task), round * (u64::from(task) + 2));
                (task, c)
            })
            .collect();
        log.commit_tasks("app", commits).unwrap();
    }
    // Closing copies what is still pending, through the member that holds the tasks.
    drop(log);
    drop(member);

    let seen = kafka_group_offsets(&broker.bootstrap(), &["plain", "app"]);
    let reopened = broker.open(tempfile::tempdir().unwrap().path());
    for (group, expected) in [("plain", [3, 5]), ("app", [6, 9])] {
        let kappa: BTreeMap<(String, u32), u64> = reopened
            .group_positions(group)
            .unwrap()
            .into_iter()
            .map(|(tp, o)| ((tp.topic.to_string(), tp.partition), o))
            .collect();
        let wanted: BTreeMap<(String, u32), u64> = (0..2u32)
            .map(|p| (("in".to_owned(), p), expected[p as usize]))
            .collect();
        assert_eq!(kappa, wanted, "Kappa's positions of {group}");
        assert_eq!(seen[group], kappa, "Kafka's offsets of {group}");
    }
}

/// A task's new holder copies the positions it took over to the group's
/// Kafka offsets. The last holder committed them but its copy never
/// reached Kafka (it was killed or frozen in between; here the copy is
/// overwritten with older offsets by a plain Kafka client): the new
/// holder has nothing new to read, so without that copy Kafka's tools
/// would show the stale lag for good.
fn a_new_holder_copies_the_positions_it_took_over(broker: &dyn Broker) {
    let tp = |p| TopicPartition::new("in", p);
    let last = broker.open(tempfile::tempdir().unwrap().path());
    last.create_topic(&TopicSpec::new("in", 2)).unwrap();
    let mut input = Commit::new();
    for p in 0..2 {
        for i in 0..10 {
            input.append_to("in", p, ProducerRecord::value(format!("{i}")));
        }
    }
    last.commit(input).unwrap();
    last.claim_tasks("app", &[0, 1], &[]).unwrap();
    let commits = [(0u32, 7u64), (1, 4)]
        .into_iter()
        .map(|(task, position)| {
            let mut c = Commit::new();
            c.set_group_position("app", tp(task), position);
            (task, c)
        })
        .collect();
    last.commit_tasks("app", commits).unwrap();
    drop(last);

    let stale: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", "app")
        .create()
        .unwrap();
    let mut older = rdkafka::TopicPartitionList::new();
    for p in 0..2 {
        older
            .add_partition_offset("in", p, rdkafka::Offset::Offset(1))
            .unwrap();
    }
    rdkafka::consumer::Consumer::commit(&stale, &older, rdkafka::consumer::CommitMode::Sync)
        .unwrap();
    drop(stale);
    let in_kafka = |offsets: [u64; 2]| -> BTreeMap<(String, u32), u64> {
        (0..2u32)
            .map(|p| (("in".to_owned(), p), offsets[p as usize]))
            .collect()
    };
    assert_eq!(
        kafka_group_offsets(&broker.bootstrap(), &["app"])["app"],
        in_kafka([1, 1]),
        "the copy is stale before the new holder claims the tasks"
    );

    let next = broker.open(tempfile::tempdir().unwrap().path());
    let (tell, assigned) = mpsc::channel();
    let member = next
        .join_group("app", 2, Arc::new(Assignments(Mutex::new(tell))))
        .unwrap();
    while assigned
        .recv_timeout(Duration::from_secs(60))
        .expect("the group assigned no tasks within 60 s")
        != [0, 1]
    {}
    next.claim_tasks("app", &[0, 1], &[]).unwrap();
    // Closing copies what is still pending, through the member that holds the tasks.
    drop(next);
    drop(member);
    assert_eq!(
        kafka_group_offsets(&broker.bootstrap(), &["app"])["app"],
        in_kafka([7, 4]),
        "the group's Kafka offsets are the positions the new holder took over"
    );
}

/// A topic's partition count and `max.message.bytes`/`retention.ms` as a
/// Kafka admin client nobody here wrote (Python `confluent-kafka`) reads
/// them from the cluster.
fn kafka_topic_view(bootstrap: &str, topic: &str) -> (usize, String, String) {
    const SCRIPT: &str = r#"
import json, sys
from confluent_kafka.admin import AdminClient, ConfigResource
admin = AdminClient({"bootstrap.servers": sys.argv[1], "broker.address.family": "v4"})
topic = sys.argv[2]
partitions = len(admin.list_topics(topic, timeout=30).topics[topic].partitions)
resource = ConfigResource("topic", topic)
configs = admin.describe_configs([resource])[resource].result(30)
print(json.dumps([partitions, configs["max.message.bytes"].value, configs["retention.ms"].value]))
"#;
    serde_json::from_slice(&python_output(SCRIPT, &[bootstrap, topic])).unwrap()
}

/// What a Python script (run with `confluent-kafka` installed) prints.
fn python_output(script: &str, args: &[&str]) -> Vec<u8> {
    let python = kappa_kafka::testing::python().unwrap_or_else(|e| panic!("{e}"));
    stdout_of_success(
        std::process::Command::new(python)
            .args(["-c", script])
            .args(args)
            .output()
            .unwrap(),
    )
}

/// What a client program printed; what it complained of if it failed.
fn stdout_of_success(out: std::process::Output) -> Vec<u8> {
    let complaint = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{complaint}");
    out.stdout
}

/// Growing a topic, altering its config and deleting group positions
/// reach the cluster (Kafka clients see them) and survive a lost state
/// directory; what is refused changes nothing.
fn topics_grow_configs_change_and_positions_go(broker: &dyn Broker) {
    {
        let dir = tempfile::tempdir().unwrap();
        let log = broker.open(dir.path());
        behaviour::grow_orders(&log);
        let after = log
            .append("orders", vec![ProducerRecord::value("after").with_key("k")])
            .unwrap();
        assert_eq!(after[0].partition, partition_for_key(b"k", 5));
        behaviour::alter_config(&log, "orders");
        behaviour::delete_some_group_positions(&log);
    }
    let bootstrap = &broker.bootstrap();
    assert_eq!(
        kafka_topic_view(bootstrap, "orders"),
        (5, "300".to_owned(), "60000".to_owned())
    );
    let mirrored = kafka_group_offsets(bootstrap, &["app-two"]);
    assert_eq!(mirrored["app-two"].len(), 3, "{mirrored:?}");

    // A lost state directory: all of it comes back from the cluster.
    let dir = tempfile::tempdir().unwrap();
    let log = broker.open(dir.path());
    assert_eq!(log.partition_count("orders").unwrap(), 5);
    behaviour::check_altered_config(&log, "orders");
    assert_eq!(
        behaviour::read_partition(&log, "orders", partition_for_key(b"k", 2)).len(),
        1,
        "records already written stay where they were"
    );
    behaviour::check_deleted_group_positions(&log);
    drop(log);
    assert!(
        kafka_group_offsets(bootstrap, &["app-two"])["app-two"].is_empty(),
        "a deleted group's offsets are gone from the cluster too"
    );
}

/// A `#[test]` for each broker a behaviour runs on, named
/// `<behaviour>::on_<broker>`; each starts its own broker.
macro_rules! on_brokers {
    ($($behaviour:ident: $($test:ident => $broker:ident),+;)+) => {
        $(
            mod $behaviour {
                $(
                    #[test]
                    fn $test() {
                        super::$behaviour(&super::$broker());
                    }
                )+
            }
        )+
    };
}

on_brokers! {
    commits_reads_and_metadata_survive_a_restart_and_a_lost_state_directory:
        on_apache_kafka => apache_kafka,
        on_the_mock => mock,
        on_tansu => tansu,
        on_a_kappa_node => kappa_node;
    bad_commits_are_refused_whole:
        on_apache_kafka => apache_kafka,
        on_the_mock => mock,
        on_tansu => tansu,
        on_a_kappa_node => kappa_node;
    a_task_claimed_elsewhere_fences_its_last_holder:
        on_apache_kafka => apache_kafka,
        on_a_kappa_node => kappa_node;
    // These two not on the mock cluster: it answers OffsetFetch only for
    // partitions the request names, so an admin client's "every offset of
    // the group" is empty there (`rd_kafka_mock_handle_OffsetFetch`,
    // librdkafka 2.12).
    positions_are_kafka_group_offsets:
        on_apache_kafka => apache_kafka,
        on_a_kappa_node => kappa_node;
    topics_grow_configs_change_and_positions_go:
        on_apache_kafka => apache_kafka,
        on_a_kappa_node => kappa_node;
    a_new_holder_copies_the_positions_it_took_over:
        on_apache_kafka => apache_kafka,
        on_a_kappa_node => kappa_node;
}

/// kcat, an ordinary Kafka client, reads what Kappa wrote: keys, values,
/// headers, on the partitions Java clients would choose.
#[test]
fn kcat_reads_what_kappa_wrote() {
    let broker = tansu();
    let dir = tempfile::tempdir().unwrap();
    let log = broker.open(dir.path());
    log.create_topic(&TopicSpec::new("orders", 2)).unwrap();
    let written: Vec<(String, String)> = (0..10)
        .map(|i| (format!("order-{i}"), format!("{{\"n\":{i}}}")))
        .collect();
    log.append(
        "orders",
        written
            .iter()
            .map(|(k, v)| {
                ProducerRecord::value(v.clone())
                    .with_key(k.clone())
                    .with_header("kappa-correlation", "c-1")
            })
            .collect(),
    )
    .unwrap();
    let out = stdout_of_success(
        std::process::Command::new("kcat")
            .args(["-b", &broker.bootstrap(), "-C", "-t", "orders", "-e", "-q"])
            .args(["-f", "%p|%k|%s|%h\\n"])
            .output()
            .expect("kcat is missing: run scripts/test.sh or apt-get install kcat"),
    );
    let mut read: Vec<(String, String)> = Vec::new();
    for line in String::from_utf8(out).unwrap().lines() {
        let parts: Vec<&str> = line.splitn(4, '|').collect();
        let [p, k, v, h] = parts[..] else {
            panic!("unexpected kcat line {line:?}");
        };
        assert_eq!(
            p.parse::<u32>().unwrap(),
            kappa_log::partition_for_key(k.as_bytes(), 2),
            "{k} is where Java clients put it"
        );
        assert!(h.contains("kappa-correlation=c-1"), "headers {h:?}");
        read.push((k.to_owned(), v.to_owned()));
    }
    read.sort();
    let mut expected = written;
    expected.sort();
    assert_eq!(read, expected);
}
