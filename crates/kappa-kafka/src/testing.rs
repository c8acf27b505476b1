//! An in-process Kafka cluster for tests: librdkafka's mock cluster,
//! owned by a thread of its own (the mock handle may not move between
//! threads), reachable over loopback TCP by any client, including child
//! processes.

use std::sync::mpsc;
use std::thread::JoinHandle;

use kappa_log::{LogError, TopicSpec};
use rdkafka::mocking::MockCluster;
pub use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use crate::admin::TopicAdmin;

enum Request {
    CreateTopic(String, i32, mpsc::Sender<Result<(), String>>),
    FailRequests(RDKafkaApiKey, Vec<RDKafkaRespErr>, mpsc::Sender<()>),
    BrokerDown(bool, mpsc::Sender<Result<(), String>>),
}

/// A running mock cluster of one broker.
///
/// The mock supports produce, fetch, offsets and consumer groups, but not
/// the admin API (topics are created through [`MockBroker::create_topic`],
/// which [`crate::KafkaLog::open_with_topic_admin`] uses), nor offsets by
/// time; it accepts transactional requests but does not implement their
/// semantics (no commit markers), so logs on it commit by the write-ahead
/// protocol ([`MockBroker::config`]).
pub struct MockBroker {
    bootstrap: String,
    requests: Option<mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
}

impl MockBroker {
    /// Starts the cluster.
    ///
    /// # Errors
    ///
    /// librdkafka could not create it.
    pub fn start() -> Result<Self, LogError> {
        let (tx, rx) = mpsc::channel::<Request>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("kappa-mock-kafka".to_owned())
            .spawn(move || {
                let cluster = match MockCluster::new(1) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                // Serves until every sender is gone.
                for req in rx {
                    match req {
                        Request::CreateTopic(name, partitions, reply) => {
                            let r = cluster
                                .create_topic(&name, partitions, 1)
                                .map_err(|e| e.to_string());
                            let _ = reply.send(r);
                        }
                        Request::FailRequests(key, errors, reply) => {
                            cluster.request_errors(key, &errors);
                            let _ = reply.send(());
                        }
                        Request::BrokerDown(down, reply) => {
                            let r = if down {
                                cluster.broker_down(1)
                            } else {
                                cluster.broker_up(1)
                            };
                            let _ = reply.send(r.map_err(|e| e.to_string()));
                        }
                    }
                }
            })
            .map_err(|e| LogError::Broker(format!("starting the mock cluster: {e}")))?;
        let bootstrap = ready_rx
            .recv()
            .map_err(|_| LogError::Broker("the mock cluster thread ended".to_owned()))?
            .map_err(|e| LogError::Broker(format!("starting the mock cluster: {e}")))?;
        Ok(Self {
            bootstrap,
            requests: Some(tx),
            thread: Some(thread),
        })
    }

    /// `host:port` of the broker.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Settings for a log on this cluster with state in `state_dir`:
    /// write-ahead commits, as the mock has no real transactions.
    pub fn config(&self, state_dir: &std::path::Path) -> crate::KafkaConfig {
        let mut c = crate::KafkaConfig::new(self.bootstrap(), state_dir);
        c.commit = crate::CommitProtocol::WriteAhead;
        c
    }

    fn ask<T>(&self, make: impl FnOnce(mpsc::Sender<T>) -> Request) -> Result<T, LogError> {
        let (tx, rx) = mpsc::channel();
        let gone = || LogError::Broker("the mock cluster thread ended".to_owned());
        self.requests
            .as_ref()
            .ok_or_else(gone)?
            .send(make(tx))
            .map_err(|_| gone())?;
        rx.recv().map_err(|_| gone())
    }

    /// Creates a topic (the mock has no admin API).
    ///
    /// # Errors
    ///
    /// The mock refused it.
    pub fn create_topic(&self, name: &str, partitions: u32) -> Result<(), LogError> {
        let n = i32::try_from(partitions)
            .map_err(|_| LogError::InvalidConfig(format!("{partitions} partitions")))?;
        self.ask(|tx| Request::CreateTopic(name.to_owned(), n, tx))?
            .map_err(|e| LogError::Broker(format!("creating {name:?} on the mock: {e}")))
    }

    /// Makes the next requests of one kind fail with the given errors, in order.
    ///
    /// # Errors
    ///
    /// The mock thread is gone.
    pub fn fail_requests(
        &self,
        api: RDKafkaApiKey,
        errors: Vec<RDKafkaRespErr>,
    ) -> Result<(), LogError> {
        self.ask(|tx| Request::FailRequests(api, errors, tx))
    }

    /// Takes the broker down (it refuses connections) or brings it back.
    ///
    /// # Errors
    ///
    /// The mock refused it.
    pub fn set_down(&self, down: bool) -> Result<(), LogError> {
        self.ask(|tx| Request::BrokerDown(down, tx))?
            .map_err(|e| LogError::Broker(format!("mock broker up/down: {e}")))
    }
}

impl TopicAdmin for MockBroker {
    fn create(&self, spec: &TopicSpec) -> Result<(), LogError> {
        self.create_topic(&spec.name, spec.partitions)
    }

    fn delete(&self, name: &str) -> Result<(), LogError> {
        Err(LogError::Broker(format!(
            "cannot delete {name:?}: the mock cluster has no DeleteTopics"
        )))
    }

    fn create_partitions(&self, name: &str, _partitions: u32) -> Result<(), LogError> {
        Err(LogError::Unsupported(format!(
            "growing {name:?}: the mock cluster has no CreatePartitions"
        )))
    }

    fn alter_config(&self, name: &str, _config: &kappa_log::TopicConfig) -> Result<(), LogError> {
        Err(LogError::Unsupported(format!(
            "altering {name:?}: the mock cluster has no AlterConfigs"
        )))
    }
}

impl Drop for MockBroker {
    fn drop(&mut self) {
        self.requests = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A tansu broker (a Kafka-compatible broker written in Rust) run as a
/// child process on a free loopback port, storing in memory; killed on drop.
///
/// It is found at `$KAPPA_TANSU`, else `$KAPPA_TOOLS/tansu/bin/tansu`
/// (`~/.cache/kappa-tools` by default, where `scripts/test.sh` installs it),
/// else on `PATH`.
pub struct Tansu {
    child: std::process::Child,
    port: u16,
}

impl Tansu {
    /// Starts a broker and waits until it accepts connections.
    ///
    /// # Errors
    ///
    /// The binary is missing (the message says how to install it) or the
    /// broker did not come up within 30 seconds.
    pub fn start() -> Result<Self, LogError> {
        Self::start_with(None)
    }

    /// As [`Tansu::start`], telling clients to reach the broker at
    /// `advertised` (`host:port`): something in front of it, such as a TLS
    /// terminator, relays to [`Tansu::bootstrap`].
    ///
    /// # Errors
    ///
    /// As [`Tansu::start`].
    pub fn start_advertising(advertised: &str) -> Result<Self, LogError> {
        Self::start_with(Some(format!("tcp://{advertised}")))
    }

    fn start_with(advertised: Option<String>) -> Result<Self, LogError> {
        let program = tansu_program().ok_or_else(|| {
            LogError::Broker(
                "the tansu broker is not installed; run scripts/test.sh, or: cargo install tansu \
                 --version 0.6.0 --locked --features dynostore,libsql --root ~/.cache/kappa-tools/tansu"
                    .to_owned(),
            )
        })?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| LogError::Broker(format!("finding a free port: {e}")))?
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised = advertised.unwrap_or_else(|| url.clone());
        let child = std::process::Command::new(&program)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised,
            ])
            .args(["--storage-engine", "memory://tansu/", "--silent"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| LogError::Broker(format!("starting {}: {e}", program.display())))?;
        let mut broker = Self { child, port };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        loop {
            if std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(200))
                .is_ok()
            {
                return Ok(broker);
            }
            if let Ok(Some(status)) = broker.child.try_wait() {
                return Err(LogError::Broker(format!("tansu exited at start: {status}")));
            }
            if std::time::Instant::now() >= deadline {
                return Err(LogError::Broker(
                    "tansu did not accept connections within 30 s".to_owned(),
                ));
            }
            // Between connection attempts while the broker binds its port.
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// `host:port` of the broker.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Settings for a log on this broker with state in `state_dir`, with
    /// its workarounds on (see [`crate::KafkaConfig::compat_tansu`]).
    pub fn config(&self, state_dir: &std::path::Path) -> crate::KafkaConfig {
        let mut c = crate::KafkaConfig::new(self.bootstrap(), state_dir);
        c.compat_tansu = true;
        c
    }
}

fn tansu_program() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("KAPPA_TANSU") {
        return Some(p.into());
    }
    let t = tools_dir().join("tansu/bin/tansu");
    if t.is_file() {
        return Some(t);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("tansu"))
            .find(|p| p.is_file())
    })
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Apache Kafka's version [`ApacheKafka`] runs (`scripts/packages.sh`
/// installs its jars from Maven Central and exports `KAPPA_KAFKA_LIBS`).
pub const APACHE_KAFKA_VERSION: &str = "4.1.1";

/// A single-node Apache Kafka (KRaft: one Java process as broker and
/// controller, replication factor 1) on free loopback ports, with its data
/// in a scratch directory; killed and removed on drop.
///
/// Its jars are found at `$KAPPA_KAFKA_LIBS`, else
/// `$KAPPA_TOOLS/kafka-VERSION/libs` (`~/.cache/kappa-tools` by default).
pub struct ApacheKafka {
    child: Option<std::process::Child>,
    bootstrap: String,
    dir: std::path::PathBuf,
    libs: std::path::PathBuf,
}

impl ApacheKafka {
    /// Formats a fresh data directory, starts the broker and waits until it
    /// answers a metadata request.
    ///
    /// # Errors
    ///
    /// The jars or Java are missing (the message says how to install them),
    /// or the broker did not answer within 90 seconds.
    pub fn start() -> Result<Self, LogError> {
        Self::start_with("")
    }

    /// As [`ApacheKafka::start`], with extra `server.properties` lines
    /// (for example `log.flush.interval.messages=1`, an fsync per batch).
    ///
    /// # Errors
    ///
    /// As [`ApacheKafka::start`].
    pub fn start_with(extra_properties: &str) -> Result<Self, LogError> {
        let libs = kafka_libs()?;
        let free_port = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .map_err(|e| LogError::Broker(format!("finding a free port: {e}")))
        };
        let (port, controller) = (free_port()?, free_port()?);
        let dir =
            std::env::temp_dir().join(format!("kappa-apache-kafka-{}-{port}", std::process::id()));
        let io = |e: std::io::Error| LogError::Broker(format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(&dir).map_err(io)?;
        let properties = format!(
            "process.roles=broker,controller\n\
             node.id=1\n\
             controller.quorum.voters=1@127.0.0.1:{controller}\n\
             listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n\
             controller.listener.names=CONTROLLER\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
             log.dirs={}\n\
             offsets.topic.replication.factor=1\n\
             offsets.topic.num.partitions=4\n\
             transaction.state.log.replication.factor=1\n\
             transaction.state.log.min.isr=1\n\
             transaction.state.log.num.partitions=4\n\
             transaction.abort.timed.out.transaction.cleanup.interval.ms=500\n\
             group.initial.rebalance.delay.ms=0\n\
             {extra_properties}\n",
            dir.join("data").display()
        );
        std::fs::write(dir.join("server.properties"), properties).map_err(io)?;
        copy_tree(&formatted_data(&libs)?, &dir.join("data")).map_err(io)?;
        let mut kafka = Self {
            child: None,
            bootstrap: format!("127.0.0.1:{port}"),
            dir,
            libs,
        };
        kafka.launch()?;
        Ok(kafka)
    }

    /// `host:port` of the broker.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Settings for a log on this broker with state in `state_dir` (as
    /// [`Tansu::config`], with nothing to work around).
    pub fn config(&self, state_dir: &std::path::Path) -> crate::KafkaConfig {
        crate::KafkaConfig::new(self.bootstrap(), state_dir)
    }

    /// Kills the broker with SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the broker and starts it again on its data and ports.
    ///
    /// # Errors
    ///
    /// As [`ApacheKafka::start`].
    pub fn restart(&mut self) -> Result<(), LogError> {
        self.kill();
        self.launch()
    }

    fn launch(&mut self) -> Result<(), LogError> {
        let out = std::fs::File::create(self.dir.join("kafka.out"))
            .and_then(|f| Ok((f.try_clone()?, f)))
            .map_err(|e| LogError::Broker(format!("{}: {e}", self.dir.display())))?;
        let child = std::process::Command::new("java")
            .args(["-Xmx512m", "-XX:+UseSerialGC"])
            .arg("-cp")
            .arg(self.libs.join("*"))
            .arg("kafka.Kafka")
            .arg(self.dir.join("server.properties"))
            .stdin(std::process::Stdio::null())
            .stdout(out.0)
            .stderr(out.1)
            .spawn()
            .map_err(|e| LogError::Broker(format!("starting Apache Kafka: {e}")))?;
        self.child = Some(child);
        // Ready once it answers metadata with itself in it; each attempt
        // waits up to two seconds by itself.
        let consumer: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("broker.address.family", "v4")
            .create()
            .map_err(|e| LogError::Broker(e.to_string()))?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
        loop {
            use rdkafka::consumer::Consumer;
            if consumer
                .fetch_metadata(None, std::time::Duration::from_secs(2))
                .is_ok_and(|m| !m.brokers().is_empty())
            {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(std::process::Child::try_wait) {
                return Err(LogError::Broker(format!(
                    "Apache Kafka exited at start ({status}); see {}",
                    self.dir.join("kafka.out").display()
                )));
            }
            if std::time::Instant::now() >= deadline {
                return Err(LogError::Broker(format!(
                    "Apache Kafka did not answer within 90 s; see {}",
                    self.dir.join("kafka.out").display()
                )));
            }
        }
    }
}

impl Drop for ApacheKafka {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The cluster every [`ApacheKafka`] formats (one node each; they never meet).
const CLUSTER_ID: &str = "4L6g3nShT-eMCtK--X86sw";

/// A data directory formatted by Kafka's `StorageTool`, once per machine
/// and version: formatting is a JVM start of its own, nearly as costly as
/// the broker's, so each broker starts on a copy instead. The data holds no
/// ports or paths (those are in `server.properties`).
fn formatted_data(libs: &std::path::Path) -> Result<std::path::PathBuf, LogError> {
    let template = std::env::temp_dir().join(format!(
        "kappa-apache-kafka-{APACHE_KAFKA_VERSION}-formatted"
    ));
    if template.join("data/meta.properties").is_file() {
        return Ok(template.join("data"));
    }
    // Made aside and renamed into place, so a concurrent start never sees
    // half a template (the loser of the race keeps the winner's).
    let scratch = std::env::temp_dir().join(format!(
        "kappa-apache-kafka-{APACHE_KAFKA_VERSION}-formatting-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let io = |e: std::io::Error| LogError::Broker(format!("{}: {e}", scratch.display()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).map_err(io)?;
    let properties = format!(
        "process.roles=broker,controller\n\
         node.id=1\n\
         controller.quorum.voters=1@127.0.0.1:9093\n\
         listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093\n\
         controller.listener.names=CONTROLLER\n\
         log.dirs={}\n",
        scratch.join("data").display()
    );
    std::fs::write(scratch.join("server.properties"), properties).map_err(io)?;
    let status = std::process::Command::new("java")
        .arg("-cp")
        .arg(libs.join("*"))
        .args(["kafka.tools.StorageTool", "format", "-t", CLUSTER_ID, "-c"])
        .arg(scratch.join("server.properties"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map_err(|e| {
            LogError::Broker(format!(
                "running java ({e}): install Java 17 (Debian's openjdk-17-jre-headless)"
            ))
        })?;
    if !status.success() {
        let _ = std::fs::remove_dir_all(&scratch);
        return Err(LogError::Broker(format!(
            "formatting Kafka's data directory failed: {status}"
        )));
    }
    if std::fs::rename(&scratch, &template).is_err() {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    if template.join("data/meta.properties").is_file() {
        Ok(template.join("data"))
    } else {
        Err(LogError::Broker(format!(
            "{} holds no formatted Kafka data directory",
            template.display()
        )))
    }
}

/// Copies the files under `from` to `to`, folders included.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

fn kafka_libs() -> Result<std::path::PathBuf, LogError> {
    let libs = std::env::var_os("KAPPA_KAFKA_LIBS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tools_dir().join(format!("kafka-{APACHE_KAFKA_VERSION}/libs")));
    if !libs.join(".complete").is_file() {
        return Err(LogError::Broker(format!(
            "Apache Kafka {APACHE_KAFKA_VERSION}'s jars are not installed; run scripts/test.sh \
             (need_apache_kafka in scripts/packages.sh fetches them from Maven Central)"
        )));
    }
    Ok(libs)
}

/// Where `scripts/test.sh` installs the tools tests use: `$KAPPA_TOOLS`,
/// else `~/.cache/kappa-tools`.
pub fn tools_dir() -> std::path::PathBuf {
    std::env::var_os("KAPPA_TOOLS").map_or_else(
        || {
            std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/kappa-tools")
        },
        std::path::PathBuf::from,
    )
}

/// The Python of the tools' virtualenv, which has the Kafka clients nobody
/// here wrote (`confluent-kafka`, `kafka-python`).
///
/// # Errors
///
/// The virtualenv is missing; the message says how to make it.
pub fn python() -> Result<std::path::PathBuf, LogError> {
    let python = tools_dir().join("py/bin/python");
    if !python.exists() {
        return Err(LogError::Broker(format!(
            "{} is missing: run scripts/test.sh, which makes the virtualenv with the Kafka clients \
             (need_python_kafka in scripts/packages.sh)",
            python.display()
        )));
    }
    Ok(python)
}
