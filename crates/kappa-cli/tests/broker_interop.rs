//! Kafka clients nobody here wrote, against `kappa broker` and, to show
//! the scripts ask only what Kafka answers, against Apache Kafka: kcat (Debian),
//! Python's confluent-kafka (librdkafka) and kafka-python (pure Python),
//! and kafkajs (pure JavaScript). The scripts under
//! `crates/kappa-node/tests/clients/` check keys, headers, timestamps,
//! murmur2 partitioning, groups that rebalance, committed offsets, offsets
//! by time, compressed batches and transactions (committed visible, aborted
//! and fenced not), and committed offsets across a broker restart, and
//! print `N passed, M failed`. kcat cannot produce in
//! a transaction; it reads committed records only.
//!
//! `scripts/test.sh` installs the clients: a Python virtualenv in
//! `$KAPPA_TOOLS/py` and the npm packages beside the Node script.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod fresh_node;
mod node;

use std::path::PathBuf;
use std::process::Command;

use node::{Broker, Cluster, apache_kafka};

fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../kappa-node/tests/clients")
}

/// Runs a client script; fails the test with its output unless it passed.
fn run_script(what: &str, mut cmd: Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what} could not start ({e}); scripts/test.sh installs it"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{what}:\n{stdout}");
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.ends_with(", 0 failed") && !last.starts_with("0 passed"),
        "{what} ended with {last:?}"
    );
}

fn python(broker: &dyn Cluster, client: &str) {
    python_with(broker, client, &[]);
}

fn python_with(broker: &dyn Cluster, client: &str, extra: &[&str]) {
    let mut cmd = Command::new(node::python());
    cmd.arg(clients_dir().join("python/interop.py"))
        .args([
            "--bootstrap",
            broker.addr(),
            "--client",
            client,
            "--prefix",
            client,
        ])
        .args(extra);
    run_script(&format!("python {client} {extra:?}"), cmd);
}

fn kafkajs(broker: &dyn Cluster) {
    kafkajs_with(broker, &[]);
}

fn kafkajs_with(broker: &dyn Cluster, extra: &[&str]) {
    let script_dir = clients_dir().join("node");
    assert!(
        script_dir.join("node_modules/kafkajs").exists(),
        "kafkajs is missing: run scripts/test.sh, which runs npm ci in {}",
        script_dir.display()
    );
    let mut cmd = Command::new("node");
    cmd.arg(script_dir.join("interop.mjs"))
        .args(["--bootstrap", broker.addr(), "--prefix", "kafkajs"])
        .args(extra);
    run_script(&format!("kafkajs {extra:?}"), cmd);
}

/// Each script commits offsets, the broker is killed and started again,
/// and each reads them back.
fn committed_offsets_survive_a_restart(broker: &mut dyn Cluster) {
    for phase in ["before", "after"] {
        let extra = ["--restart-phase", phase];
        python_with(broker, "confluent", &extra);
        python_with(broker, "kafka-python", &extra);
        kafkajs_with(broker, &extra);
        if phase == "before" {
            broker.restart();
        }
    }
}

#[test]
fn every_client_finds_its_committed_offsets_after_a_node_restart() {
    let dir = tempfile::tempdir().unwrap();
    committed_offsets_survive_a_restart(&mut Broker::start(dir.path()));
}

#[test]
fn every_client_finds_its_committed_offsets_after_an_apache_kafka_restart() {
    committed_offsets_survive_a_restart(&mut apache_kafka());
}

fn on_a_node(check: impl FnOnce(&dyn Cluster)) {
    let dir = tempfile::tempdir().unwrap();
    check(&Broker::start(dir.path()));
}

#[test]
fn confluent_kafka_for_python_works_against_the_node() {
    on_a_node(|b| python(b, "confluent"));
}

#[test]
fn kafka_python_works_against_the_node() {
    on_a_node(|b| python(b, "kafka-python"));
}

#[test]
fn kafkajs_works_against_the_node() {
    on_a_node(kafkajs);
}

// The same scripts against Apache Kafka: the differences a script sees
// are the node's, not the script's.

#[test]
fn confluent_kafka_for_python_works_against_apache_kafka() {
    python(&apache_kafka(), "confluent");
}

#[test]
fn kafka_python_works_against_apache_kafka() {
    python(&apache_kafka(), "kafka-python");
}

#[test]
fn kafkajs_works_against_apache_kafka() {
    kafkajs(&apache_kafka());
}

#[test]
fn kcat_produces_and_consumes_through_the_node() {
    let (_rt, _dir, broker) = fresh_node::node_with_topic("greetings", 2);
    let mut produce = Command::new("kcat")
        .args([
            "-b",
            &broker.addr,
            "-t",
            "greetings",
            "-P",
            "-K",
            ":",
            "-H",
            "origin=kcat",
            "-X",
            "partitioner=murmur2_random",
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("kcat is missing: run scripts/test.sh or apt-get install kcat");
    {
        use std::io::Write;
        let mut stdin = produce.stdin.take().unwrap();
        for i in 0..20 {
            writeln!(stdin, "k{i}:hello {i}").unwrap();
        }
    }
    assert!(produce.wait().unwrap().success(), "kcat produced");
    let out = kcat_consume(&broker.addr, "greetings", &["-f", "%p %k %s %h\n"]);
    let mut lines: Vec<String> = out.lines().map(str::to_string).collect();
    lines.sort();
    let mut expected: Vec<String> = (0..20)
        .map(|i| {
            let key = format!("k{i}");
            let p = kappa_log::partition_for_key(key.as_bytes(), 2);
            format!("{p} {key} hello {i} origin=kcat")
        })
        .collect();
    expected.sort();
    assert_eq!(lines, expected);
}

#[test]
fn kcat_reading_committed_sees_committed_transactions_only() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let (_rt, _dir, broker) = fresh_node::node_with_topic("settled", 1);
    let p: BaseProducer = broker
        .client()
        .set("transactional.id", "settler")
        .create()
        .unwrap();
    let wait = std::time::Duration::from_secs(30);
    p.init_transactions(wait).unwrap();
    for (value, commit) in [("kept-1", true), ("dropped", false), ("kept-2", true)] {
        p.begin_transaction().unwrap();
        p.send(BaseRecord::<(), str>::to("settled").payload(value))
            .map_err(|(e, _)| e)
            .unwrap();
        p.flush(wait).unwrap();
        if commit {
            p.commit_transaction(wait).unwrap();
        } else {
            p.abort_transaction(wait).unwrap();
        }
    }
    let out = kcat_consume(
        &broker.addr,
        "settled",
        &["-X", "isolation.level=read_committed", "-f", "%s\n"],
    );
    assert_eq!(out, "kept-1\nkept-2\n");
}

/// Everything `topic` holds, read from the beginning to its end by kcat
/// with `extra` arguments (a format, client properties); kcat's output.
fn kcat_consume(addr: &str, topic: &str, extra: &[&str]) -> String {
    let out = Command::new("kcat")
        .args(["-b", addr, "-t", topic, "-C", "-o", "beginning", "-e", "-q"])
        .args(extra)
        .output()
        .expect("kcat is missing: run scripts/test.sh or apt-get install kcat");
    assert!(
        out.status.success(),
        "kcat consumed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
