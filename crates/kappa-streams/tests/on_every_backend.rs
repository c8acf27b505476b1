//! One suite of topology tests, run on every backend: the embedded log and
//! Kafka, on Apache Kafka (one KRaft node run as a child process), on
//! librdkafka's mock cluster (in process), on tansu (a Kafka-compatible
//! broker run as a child process) and on a Kappa node (the Kafka protocol
//! served from an embedded log). Each test restarts the
//! application on a reopened log halfway through its input, so stores and
//! positions are restored from what the backend kept.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use common::{collect, recomputed_sums, topology};

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kappa_kafka::testing::{ApacheKafka, MockBroker, Tansu};
use kappa_kafka::{KafkaConfig, KafkaLog};
use kappa_log::{Durability, EmbeddedLog, EmbeddedOptions, Log, ProducerRecord, TopicSpec};
use kappa_streams::{Streams, StreamsConfig, TopologyTestDriver};

const PARTITIONS: u32 = 3;

/// Opens (or reopens) a backend's log; what it needs lives in `Backend`.
trait Backend {
    fn open(&self, state: &Path) -> Arc<dyn Log>;
}

struct Embedded;

impl Backend for Embedded {
    fn open(&self, state: &Path) -> Arc<dyn Log> {
        Arc::new(
            EmbeddedLog::open_with(
                state,
                EmbeddedOptions::default().durability(Durability::Never),
            )
            .unwrap(),
        )
    }
}

struct KafkaMock(Arc<MockBroker>);

impl Backend for KafkaMock {
    fn open(&self, state: &Path) -> Arc<dyn Log> {
        let config = self.0.config(state);
        Arc::new(KafkaLog::open_with_topic_admin(config, self.0.clone()).unwrap())
    }
}

struct KafkaTansu(Tansu);

impl Backend for KafkaTansu {
    fn open(&self, state: &Path) -> Arc<dyn Log> {
        Arc::new(KafkaLog::open(self.0.config(state)).unwrap())
    }
}

struct KafkaApache(ApacheKafka);

impl Backend for KafkaApache {
    fn open(&self, state: &Path) -> Arc<dyn Log> {
        Arc::new(KafkaLog::open(self.0.config(state)).unwrap())
    }
}

/// Kappa's Kafka backend on a Kappa node: the Kafka protocol served from
/// an embedded log in this process.
struct KafkaKappaNode {
    node: kappa_node::testing::TestNode,
    _log_dir: tempfile::TempDir,
}

impl Backend for KafkaKappaNode {
    fn open(&self, state: &Path) -> Arc<dyn Log> {
        Arc::new(KafkaLog::open(KafkaConfig::new(self.node.bootstrap(), state)).unwrap())
    }
}

fn inputs() -> Vec<ProducerRecord> {
    // A fixed, varied sequence: keys k0..k6, values -40..40.
    (0..240i64)
        .map(|i| {
            let v = (i * 37 % 81) - 40;
            ProducerRecord::value(v.to_string())
                .with_key(format!("k{}", i * 5 % 7))
                .with_timestamp(1_000 + i)
        })
        .collect()
}

fn run(log: &Arc<dyn Log>, records: &[ProducerRecord]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut config = StreamsConfig::new("suite");
    config.num_threads = 2;
    config.commit_interval = Duration::from_millis(20);
    config.fetch_records_max = 50;
    let streams = Streams::start(log.clone(), topology(), config).unwrap();
    for chunk in records.chunks(40) {
        log.append("in", chunk.to_vec()).unwrap();
    }
    streams.wait_for_inputs().unwrap();
    let sums = streams.store("sums").all().unwrap();
    streams.close().unwrap();
    Some(
        sums.into_iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect(),
    )
}

/// Runs half the input, restarts on a reopened log, runs the rest, and
/// compares outputs and the store with the test driver's.
fn outputs_and_stores_survive_a_restart(backend: &dyn Backend) {
    let input = inputs();
    let mut driver = TopologyTestDriver::new(topology(), PARTITIONS).unwrap();
    for r in &input {
        driver.pipe_record("in", r.clone()).unwrap();
    }
    let expected = collect(&**driver.log(), PARTITIONS);

    let state = tempfile::tempdir().unwrap();
    let log = backend.open(state.path());
    for t in ["in", "doubled", "sums", "parity"] {
        log.create_topic(&TopicSpec::new(t, PARTITIONS)).unwrap();
    }
    let (first, second) = input.split_at(input.len() / 2);
    run(&log, first).unwrap();
    // Every other holder of the log is gone once the application closed,
    // so dropping this one closes it before it is reopened.
    assert_eq!(
        Arc::strong_count(&log),
        1,
        "the log is still shared after close"
    );
    drop(log);
    let log = backend.open(state.path());
    let sums = run(&log, second).unwrap();
    assert_eq!(
        collect(&*log, PARTITIONS),
        expected,
        "outputs equal the driver's"
    );
    // The store equals a recomputation from the input.
    let recomputed = recomputed_sums(&input);
    let stored: BTreeMap<Vec<u8>, i64> = sums
        .into_iter()
        .map(|(k, v)| (k, serde_json::from_slice(&v).unwrap()))
        .collect();
    assert_eq!(stored, recomputed);
}

#[test]
fn embedded_outputs_and_stores_survive_a_restart() {
    outputs_and_stores_survive_a_restart(&Embedded);
}

#[test]
fn kafka_on_the_mock_outputs_and_stores_survive_a_restart() {
    let broker = Arc::new(MockBroker::start().unwrap());
    outputs_and_stores_survive_a_restart(&KafkaMock(broker));
}

#[test]
fn kafka_on_apache_kafka_outputs_and_stores_survive_a_restart() {
    let kafka = ApacheKafka::start().unwrap_or_else(|e| panic!("{e}"));
    outputs_and_stores_survive_a_restart(&KafkaApache(kafka));
}

#[test]
fn kafka_on_tansu_outputs_and_stores_survive_a_restart() {
    outputs_and_stores_survive_a_restart(&KafkaTansu(Tansu::start().unwrap()));
}

#[test]
fn kafka_on_a_kappa_node_outputs_and_stores_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(EmbeddedLog::open(dir.path()).unwrap());
    let node = kappa_node::testing::TestNode::start(log).unwrap();
    outputs_and_stores_survive_a_restart(&KafkaKappaNode {
        node,
        _log_dir: dir,
    });
}
