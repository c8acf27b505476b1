//! A `kappa broker` child process, an Apache Kafka broker, and Kafka
//! clients pointed at either.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // each test file uses a part

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

/// A running `kappa broker` serving the embedded log in `dir`.
pub struct Broker {
    child: Option<Child>,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The log directory.
    pub dir: PathBuf,
}

impl Broker {
    /// Starts a broker on a free loopback port.
    pub fn start(dir: &Path) -> Self {
        Self::start_on(dir, "127.0.0.1:0")
    }

    /// Starts a broker on `listen` (a restart reuses the address, so that
    /// clients reconnect to it).
    pub fn start_on(dir: &Path, listen: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kappa"))
            .args(["--log", dir.to_str().unwrap(), "broker", "--listen", listen])
            .env(
                "KAPPA_LOG_LEVEL",
                std::env::var("KAPPA_BROKER_LOG_LEVEL").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting kappa broker");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("kappa broker printed {line:?} instead of its address"))
            .to_string();
        Self {
            child: Some(child),
            addr,
            dir: dir.to_path_buf(),
        }
    }

    /// SIGKILL, then wait for the process to be gone (the log's lock with it).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills and starts again on the same address.
    pub fn restart(&mut self) {
        self.kill();
        let again = Self::start_on(&self.dir.clone(), &self.addr.clone());
        *self = again;
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A runtime for rdkafka's futures.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

pub use kappa_kafka::testing::ApacheKafka;

/// Starts Apache Kafka, failing the test with the reason it could not.
pub fn apache_kafka() -> ApacheKafka {
    ApacheKafka::start().unwrap_or_else(|e| panic!("{e}"))
}

/// Client settings for a broker at `addr`.
pub fn client(addr: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", addr)
        .set("broker.address.family", "v4")
        .set("socket.timeout.ms", "10000")
        .set("message.timeout.ms", "30000");
    c
}

/// A Kafka-protocol broker a test suite runs on: `kappa broker` or Apache Kafka.
pub trait Cluster {
    /// `127.0.0.1:PORT`.
    fn addr(&self) -> &str;
    /// Kills the broker with SIGKILL and starts it again on the same address.
    fn restart(&mut self);
    /// Stops it, for good.
    fn stop(&mut self);
    /// The embedded log's directory (a Kappa node only), for checking the
    /// log itself once the broker is stopped.
    fn log_dir(&self) -> Option<&Path>;

    /// Client settings for this broker.
    fn client(&self) -> ClientConfig {
        client(self.addr())
    }

    /// Creates a topic through the Kafka admin API.
    fn create_topic(&self, rt: &tokio::runtime::Runtime, name: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.client().create().unwrap();
        let results = rt
            .block_on(admin.create_topics(
                &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            ))
            .unwrap();
        for r in results {
            r.unwrap();
        }
    }
}

impl Cluster for Broker {
    fn addr(&self) -> &str {
        &self.addr
    }
    fn restart(&mut self) {
        Broker::restart(self);
    }
    fn stop(&mut self) {
        self.kill();
    }
    fn log_dir(&self) -> Option<&Path> {
        Some(&self.dir)
    }
}

impl Cluster for ApacheKafka {
    fn addr(&self) -> &str {
        self.bootstrap()
    }
    fn restart(&mut self) {
        ApacheKafka::restart(self).unwrap_or_else(|e| panic!("{e}"));
    }
    fn stop(&mut self) {
        self.kill();
    }
    fn log_dir(&self) -> Option<&Path> {
        None
    }
}
