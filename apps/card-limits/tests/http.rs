//! The service over real HTTP, on the embedded log and on Kafka (Apache
//! Kafka, a tansu broker, and a Kappa node serving an embedded log): a generated history sent with `sync=true`, every outcome and
//! the final balances compared with the oracle. The application code is the
//! same; only the log handed to it differs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use kappa_gateway::GatewayConfig;
use kappa_kafka::testing::{ApacheKafka, Tansu};
use kappa_kafka::{KafkaConfig, KafkaLog};
use kappa_log::{EmbeddedLog, Log};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_embedded_log_a_history_sent_over_http_gets_the_oracles_outcomes_and_balances() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn Log> = Arc::new(EmbeddedLog::open(dir.path()).unwrap());
    history_over_http(log, 3000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_kafka_a_history_sent_over_http_gets_the_oracles_outcomes_and_balances() {
    let broker = Tansu::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn Log> = Arc::new(KafkaLog::open(broker.config(dir.path())).unwrap());
    history_over_http(log, 300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_apache_kafka_a_history_sent_over_http_gets_the_oracles_outcomes_and_balances() {
    let kafka = ApacheKafka::start().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn Log> = Arc::new(KafkaLog::open(kafka.config(dir.path())).unwrap());
    history_over_http(log, 300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_kafka_served_by_a_kappa_node_a_history_sent_over_http_gets_the_oracles_outcomes_and_balances()
 {
    let node_dir = tempfile::tempdir().unwrap();
    let node_log: Arc<dyn Log> = Arc::new(EmbeddedLog::open(node_dir.path()).unwrap());
    // The node has a runtime of its own, started outside this test's.
    let node = std::thread::spawn(move || kappa_node::testing::TestNode::start(node_log))
        .join()
        .unwrap()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = KafkaConfig::new(node.bootstrap(), dir.path());
    let log: Arc<dyn Log> = Arc::new(KafkaLog::open(config).unwrap());
    history_over_http(log, 300).await;
}

async fn history_over_http(log: Arc<dyn Log>, commands: usize) {
    let config = GatewayConfig {
        partitions: 3,
        ..GatewayConfig::default()
    };
    let service = card_limits::service::start(log, config, Duration::from_millis(2)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(axum::serve(listener, service.gateway.router()).into_future());
    common::history_http::check_history(addr, commands).await;
}
