//! One suite of topology tests, run on every backend: the embedded log and
//! Kafka, on Apache Kafka (one KRaft node run as a child process), on
//! librdkafka's mock cluster (in process), on tansu (a Kafka-compatible
//! broker run as a child process) and on a Kappa node (the Kafka protocol
//! served from an embedded log). Each test restarts the
//! application on a reopened log halfway through its input, so stores and
//! positions are restored from what the backend kept.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use common::{
    collect, create_topics, decoded_sums, driven, open_embedded, recomputed_sums, runtime_config,
    topology, varied_inputs,
};

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kappa_kafka::testing::{ApacheKafka, MockBroker, Tansu};
use kappa_kafka::{KafkaConfig, KafkaLog};
use kappa_log::{EmbeddedLog, Log, ProducerRecord};
use kappa_streams::Streams;

const PARTITIONS: u32 = 3;

/// Opens (or reopens) a backend's log; what it needs lives in `Backend`.
trait Backend {
    fn open(&self, state: &Path) -> Arc<dyn Log>;
}

struct Embedded;

impl Backend for Embedded {
    fn open(&self, state: &Path) -> Arc<dyn Log> {
        open_embedded(state)
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

fn run(log: &Arc<dyn Log>, records: &[ProducerRecord]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let config = runtime_config("suite", Duration::from_millis(20), 50);
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
    let input = varied_inputs(240, 7);
    let expected = collect(&**driven(&input, PARTITIONS).log(), PARTITIONS);

    let state = tempfile::tempdir().unwrap();
    let log = backend.open(state.path());
    create_topics(&*log, PARTITIONS);
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
    assert_eq!(decoded_sums(sums), recomputed_sums(&input));
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
