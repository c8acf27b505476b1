//! Kafka transactions through librdkafka, on `kappa broker` and on Apache
//! Kafka with the same assertions: committed records are visible to a
//! `read_committed` consumer and aborted ones are not; offsets sent to a
//! transaction land with it and only with it; a second producer with the
//! same `transactional.id` fences the first; a transaction left open past
//! its timeout is aborted; a producer process killed mid-transaction leaves
//! nothing of it visible once the transaction times out. On the node alone:
//! a node killed mid-transaction leaves nothing of it visible.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

#[macro_use]
mod node;
mod fresh_node;

use std::time::{Duration, Instant};

use node::{Cluster, runtime};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

const WAIT: Duration = Duration::from_secs(30);

fn transactional(broker: &dyn Cluster, id: &str, timeout_ms: &str) -> BaseProducer {
    let p: BaseProducer = broker
        .client()
        .set("transactional.id", id)
        .set("transaction.timeout.ms", timeout_ms)
        // librdkafka requires a message timeout within the transaction's.
        .set("message.timeout.ms", timeout_ms)
        .set("socket.timeout.ms", timeout_ms)
        .create()
        .unwrap();
    p.init_transactions(WAIT).unwrap();
    p
}

/// Begins a transaction on `p` and sends `values` in it.
fn begin_with(p: &BaseProducer, topic: &str, values: &[&str]) {
    p.begin_transaction().unwrap();
    send(p, topic, values);
}

fn send(p: &BaseProducer, topic: &str, values: &[&str]) {
    for v in values {
        p.send(BaseRecord::<(), str>::to(topic).partition(0).payload(*v))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    p.flush(WAIT).unwrap();
}

/// A `read_committed` consumer of partition 0 of `topic` from its start,
/// with `extra` settings.
fn committed_reader(broker: &dyn Cluster, topic: &str, extra: &[(&str, &str)]) -> BaseConsumer {
    let mut config = broker.client();
    config
        .set("group.id", "transactions-reader")
        .set("isolation.level", "read_committed");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    let c: BaseConsumer = config.create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    c
}

/// The value `c` reads within 200 ms, if any; the end of the partition
/// (with `enable.partition.eof`) comes as an error.
fn next_value(c: &BaseConsumer) -> Result<Option<String>, KafkaError> {
    match c.poll(Duration::from_millis(200)) {
        Some(Ok(m)) => Ok(Some(
            String::from_utf8(m.payload().unwrap().to_vec()).unwrap(),
        )),
        Some(Err(e)) => Err(e),
        None => Ok(None),
    }
}

/// The values a `read_committed` consumer reads from partition 0, up to
/// the partition's end as it reports it now.
fn committed_values(broker: &dyn Cluster, topic: &str) -> Vec<String> {
    let c = committed_reader(broker, topic, &[("enable.partition.eof", "true")]);
    let deadline = Instant::now() + WAIT;
    let mut out = Vec::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "reached the end of {topic} in time"
        );
        match next_value(&c) {
            Ok(value) => out.extend(value),
            Err(KafkaError::PartitionEOF(_)) => return out,
            Err(e) => panic!("{e}"),
        }
    }
}

fn committed_visible_aborted_not(broker: &mut dyn Cluster) {
    let rt = runtime();
    broker.create_topic(&rt, "payments", 1);
    let p = transactional(broker, "payer", "60000");
    begin_with(&p, "payments", &["a1", "a2"]);
    p.commit_transaction(WAIT).unwrap();
    begin_with(&p, "payments", &["b1", "b2"]);
    p.abort_transaction(WAIT).unwrap();
    begin_with(&p, "payments", &["c1"]);
    p.commit_transaction(WAIT).unwrap();
    assert_eq!(committed_values(broker, "payments"), ["a1", "a2", "c1"]);
}

fn offsets_sent_to_a_transaction_land_with_it(broker: &mut dyn Cluster) {
    let rt = runtime();
    broker.create_topic(&rt, "orders", 1);
    broker.create_topic(&rt, "invoices", 1);
    let plain: BaseProducer = broker.client().create().unwrap();
    send(&plain, "orders", &["o0", "o1", "o2", "o3"]);
    let consumer: BaseConsumer = broker
        .client()
        .set("group.id", "invoicing")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let p = transactional(broker, "invoicer", "60000");
    let position = |n: i64| {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("orders", 0, Offset::Offset(n))
            .unwrap();
        tpl
    };
    // Aborted: neither the output nor the offset lands.
    begin_with(&p, "invoices", &["i-aborted"]);
    p.send_offsets_to_transaction(&position(2), &consumer.group_metadata().unwrap(), WAIT)
        .unwrap();
    p.abort_transaction(WAIT).unwrap();
    // Committed: both land.
    begin_with(&p, "invoices", &["i0", "i1"]);
    p.send_offsets_to_transaction(&position(2), &consumer.group_metadata().unwrap(), WAIT)
        .unwrap();
    p.commit_transaction(WAIT).unwrap();
    assert_eq!(committed_values(broker, "invoices"), ["i0", "i1"]);
    let mut asked = TopicPartitionList::new();
    asked.add_partition("orders", 0);
    let got = consumer.committed_offsets(asked, WAIT).unwrap();
    assert_eq!(got.elements()[0].offset(), Offset::Offset(2));
    // An ordinary commit still works beside them.
    consumer.commit(&position(3), CommitMode::Sync).unwrap();
}

fn a_second_producer_with_the_same_id_fences_the_first(broker: &mut dyn Cluster) {
    let rt = runtime();
    broker.create_topic(&rt, "ledger", 1);
    let zombie = transactional(broker, "ledger-writer", "60000");
    begin_with(&zombie, "ledger", &["zombie-1"]);
    let successor = transactional(broker, "ledger-writer", "60000");
    // The zombie's open transaction was aborted, and it cannot commit.
    assert!(
        zombie.commit_transaction(WAIT).is_err(),
        "the fenced producer cannot commit"
    );
    begin_with(&successor, "ledger", &["successor-1"]);
    successor.commit_transaction(WAIT).unwrap();
    assert_eq!(committed_values(broker, "ledger"), ["successor-1"]);
}

fn a_transaction_open_past_its_timeout_is_aborted(broker: &mut dyn Cluster) {
    let rt = runtime();
    broker.create_topic(&rt, "slow", 1);
    let p = transactional(broker, "slowpoke", "2000");
    begin_with(&p, "slow", &["late"]);
    // The transaction has to outlive its two-second timeout: the time
    // passing is what is tested, not a stand-in for a signal.
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        p.commit_transaction(WAIT).is_err(),
        "a timed-out transaction cannot commit"
    );
    assert!(committed_values(broker, "slow").is_empty());
}

/// A transactional producer in another process (confluent-kafka): begins,
/// sends, flushes, says `sent` and waits to be killed.
const HALF_A_TRANSACTION: &str = r#"
import sys
import confluent_kafka as ck
bootstrap, tid, topic = sys.argv[1:4]
p = ck.Producer({"bootstrap.servers": bootstrap, "transactional.id": tid,
                 "transaction.timeout.ms": 2000, "message.timeout.ms": 2000})
p.init_transactions(30)
p.begin_transaction()
for i in range(5):
    p.produce(topic, value=f"killed-{i}", partition=0)
assert p.flush(30) == 0, "records not delivered"
print("sent", flush=True)
sys.stdin.read()
"#;

/// The values a `read_committed` consumer reads from partition 0 until it
/// has read `last`.
fn committed_values_through(broker: &dyn Cluster, topic: &str, last: &str) -> Vec<String> {
    let c = committed_reader(broker, topic, &[]);
    let deadline = Instant::now() + WAIT;
    let mut out = Vec::new();
    while out.last().is_none_or(|v| v != last) {
        assert!(Instant::now() < deadline, "read {last:?} in time: {out:?}");
        out.extend(next_value(&c).unwrap_or_else(|e| panic!("{e}")));
    }
    out
}

fn a_producer_killed_mid_transaction_leaves_nothing_visible(broker: &mut dyn Cluster) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let rt = runtime();
    broker.create_topic(&rt, "abandoned", 1);
    let mut child = Command::new(node::python())
        .args(["-c", HALF_A_TRANSACTION])
        .args([broker.addr(), "quitter", "abandoned"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let line = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(line.trim(), "sent", "the producer sent its records");
    child.kill().unwrap();
    child.wait().unwrap();

    // Records after the abandoned ones become readable once the
    // transaction is over (Kafka holds read_committed readers at it until
    // it times out); none of its records ever do.
    let p: BaseProducer = broker.client().set("acks", "all").create().unwrap();
    send(&p, "abandoned", &["after-1", "after-2"]);
    assert_eq!(
        committed_values_through(broker, "abandoned", "after-2"),
        ["after-1", "after-2"]
    );
}

on_both!(
    committed_visible_aborted_not,
    offsets_sent_to_a_transaction_land_with_it,
    a_second_producer_with_the_same_id_fences_the_first,
    a_transaction_open_past_its_timeout_is_aborted,
    a_producer_killed_mid_transaction_leaves_nothing_visible,
);

#[test]
fn a_node_killed_mid_transaction_leaves_nothing_of_it_visible() {
    let (_rt, _dir, mut broker) = fresh_node::node_with_topic("transfers", 1);
    let p = transactional(&broker, "mover", "60000");
    begin_with(&p, "transfers", &["half-done"]);
    broker.restart();
    assert!(
        p.commit_transaction(WAIT).is_err(),
        "the interrupted transaction cannot commit"
    );
    drop(p);
    let again = transactional(&broker, "mover", "60000");
    begin_with(&again, "transfers", &["whole"]);
    again.commit_transaction(WAIT).unwrap();
    assert_eq!(committed_values(&broker, "transfers"), ["whole"]);
}
