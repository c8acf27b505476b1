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

/// Runs each case, a `fn(&mut dyn Cluster)` of the test file, as a test
/// on a Kappa node and as a test on Apache Kafka: what a client sees must
/// be the same (docs/node.md lists the deliberate differences).
#[allow(unused_macros)] // each test file uses a part
macro_rules! on_both {
    ($($case:ident),* $(,)?) => {
        mod on_a_kappa_node {
            $(
                #[test]
                fn $case() {
                    let dir = tempfile::tempdir().unwrap();
                    super::$case(&mut $crate::node::Broker::start(dir.path()));
                }
            )*
        }
        mod on_apache_kafka {
            $(
                #[test]
                fn $case() {
                    super::$case(&mut $crate::node::apache_kafka());
                }
            )*
        }
    };
}

/// A running `kappa broker` serving the embedded log in `dir`.
pub struct Broker {
    child: Option<Child>,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The log directory.
    pub dir: PathBuf,
    /// `http://127.0.0.1:PORT/metrics`, when started with its figures.
    pub metrics: Option<String>,
    /// The arguments after `broker --listen`, given again on a restart.
    extra: Vec<String>,
}

impl Broker {
    /// Starts a broker on a free loopback port.
    pub fn start(dir: &Path) -> Self {
        Self::start_on(dir, "127.0.0.1:0")
    }

    /// Starts a broker on `listen` (a restart reuses the address, so that
    /// clients reconnect to it).
    pub fn start_on(dir: &Path, listen: &str) -> Self {
        Self::start_with(dir, listen, &[])
    }

    /// Starts a broker that also serves its figures on a free loopback port.
    pub fn start_with_metrics(dir: &Path) -> Self {
        Self::start_with(dir, "127.0.0.1:0", &["--metrics-listen", "127.0.0.1:0"])
    }

    /// Starts a broker with more arguments after `broker`.
    pub fn start_with(dir: &Path, listen: &str, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kappa"))
            .args(["--log", dir.to_str().unwrap(), "broker", "--listen", listen])
            .args(extra)
            .env(
                "KAPPA_LOG_LEVEL",
                std::env::var("KAPPA_BROKER_LOG_LEVEL").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting kappa broker");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("kappa broker printed {line:?} instead of its address"))
            .to_string();
        let metrics = extra.contains(&"--metrics-listen").then(|| {
            line.clear();
            stdout.read_line(&mut line).unwrap();
            line.trim()
                .strip_prefix("metrics on ")
                .unwrap_or_else(|| {
                    panic!("kappa broker printed {line:?} instead of its metrics address")
                })
                .to_string()
        });
        Self {
            child: Some(child),
            addr,
            dir: dir.to_path_buf(),
            metrics,
            extra: extra.iter().map(|a| (*a).to_string()).collect(),
        }
    }

    /// SIGKILL, then wait for the process to be gone (the log's lock with it).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills and starts again on the same address, with the same arguments.
    pub fn restart(&mut self) {
        self.kill();
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        let again = Self::start_with(&self.dir.clone(), &self.addr.clone(), &extra);
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

/// The Python of the virtualenv with the Kafka clients, failing the test
/// with how to make it when it is missing.
pub fn python() -> PathBuf {
    kappa_kafka::testing::python().unwrap_or_else(|e| panic!("{e}"))
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

/// The text at a broker's `/metrics`.
pub fn scrape(url: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(
        s,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}

/// Sends one request to `addr` on a new connection and decodes the answer:
/// for APIs that no stock client within the test's reach sends
/// (IncrementalAlterConfigs, OffsetDelete). kafka-protocol encodes and
/// decodes; the broker under test is the only thing checked.
pub fn send_request(
    addr: &str,
    api_key: kafka_protocol::messages::ApiKey,
    version: i16,
    body: kafka_protocol::messages::RequestKind,
) -> kafka_protocol::messages::ResponseKind {
    use std::io::{Read, Write};

    use bytes::{Buf, BufMut, BytesMut};
    use kafka_protocol::messages::{RequestHeader, ResponseHeader, ResponseKind};
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

    let mut frame = BytesMut::new();
    frame.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("kappa-test")))
        .encode(&mut frame, api_key.request_header_version(version))
        .unwrap();
    body.encode(&mut frame, version).unwrap();
    let size = i32::try_from(frame.len() - 4).unwrap();
    frame[..4].copy_from_slice(&size.to_be_bytes());

    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(&frame).unwrap();
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).unwrap();
    let mut answer = vec![0u8; usize::try_from(i32::from_be_bytes(size)).unwrap()];
    stream.read_exact(&mut answer).unwrap();
    let mut answer = bytes::Bytes::from(answer);
    let header =
        ResponseHeader::decode(&mut answer, api_key.response_header_version(version)).unwrap();
    assert_eq!(header.correlation_id, 7, "the answer is to this request");
    let response = ResponseKind::decode(api_key, &mut answer, version).unwrap();
    assert!(!answer.has_remaining(), "the whole answer was decoded");
    response
}
