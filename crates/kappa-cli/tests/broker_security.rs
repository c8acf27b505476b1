//! A node that asks who its clients are: TLS, SASL (PLAIN, SCRAM-SHA-256,
//! SCRAM-SHA-512) and the policy of the security settings, through
//! librdkafka, and through kafka-python's and kafkajs' own SASL code. A listener on a non-loopback address is refused without
//! them; with them, each client may do what its principal is allowed and
//! gets Kafka's authorization error for the rest.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod node;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use node::{Broker, runtime};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

const WAIT: Duration = Duration::from_secs(20);

/// A certificate for `localhost`, the settings file and the users'
/// password files in `dir`; returns the CA file clients trust.
fn settings(dir: &Path) -> std::path::PathBuf {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(dir.join("node.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("node.key"), cert.signing_key.serialize_pem()).unwrap();
    std::fs::write(dir.join("writer.secret"), "write-secret").unwrap();
    std::fs::write(dir.join("reader.secret"), "read-secret").unwrap();
    std::fs::write(dir.join("watcher.secret"), "watch-secret").unwrap();
    let settings = serde_json::json!({
        "kafka_users": [
            {"name": "writer", "password_file": "writer.secret", "roles": ["producer"]},
            {"name": "reader", "password_file": "reader.secret", "roles": ["auditor"]},
            {"name": "watcher", "password_file": "watcher.secret", "roles": ["observer"]}
        ],
        "policy": {"rules": [
            {"roles": ["producer"], "topics": {"write": ["orders"], "create": ["orders"]},
             "transactional_ids": ["orders-tx-*"]},
            {"roles": ["auditor"], "topics": {"read": ["orders"]}, "groups": ["audit"]},
            {"roles": ["observer"], "topics": {"describe": ["orders"]}, "groups": ["unjoined"]}
        ]}
    });
    std::fs::write(dir.join("security.json"), settings.to_string()).unwrap();
    dir.join("node.pem")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn client(port: u16, ca: &Path, mechanism: &str, user: &str, password: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", format!("localhost:{port}"))
        .set("broker.address.family", "v4")
        .set("security.protocol", "sasl_ssl")
        .set("ssl.ca.location", ca.to_str().unwrap())
        .set("sasl.mechanisms", mechanism)
        .set("sasl.username", user)
        .set("sasl.password", password)
        .set("message.timeout.ms", "10000")
        .set("socket.timeout.ms", "10000");
    c
}

/// Creates `names`, a partition each, as the principal of `config`: each
/// topic's result.
fn create_topics(config: &ClientConfig, names: &[&str]) -> Vec<rdkafka::admin::TopicResult> {
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        config.create().unwrap();
    let topics: Vec<rdkafka::admin::NewTopic<'_>> = names
        .iter()
        .map(|name| {
            rdkafka::admin::NewTopic::new(name, 1, rdkafka::admin::TopicReplication::Fixed(1))
        })
        .collect();
    let options = rdkafka::admin::AdminOptions::new().operation_timeout(Some(WAIT));
    runtime()
        .block_on(admin.create_topics(&topics, &options))
        .unwrap()
}

fn send(config: &ClientConfig, topic: &str, value: &str) -> Result<(), KafkaError> {
    let producer: FutureProducer = config.create().unwrap();
    runtime()
        .block_on(producer.send(FutureRecord::<(), _>::to(topic).payload(value), WAIT))
        .map(|_| ())
        .map_err(|(e, _)| e)
}

/// The first `n` values of `orders` (one partition), read by `consumer`
/// from the start; the first error a poll returns ends the read.
fn read_orders(consumer: &BaseConsumer, n: usize) -> Result<Vec<String>, KafkaError> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("orders", 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut values = Vec::new();
    let deadline = Instant::now() + WAIT;
    while values.len() < n {
        assert!(Instant::now() < deadline, "read in time: {values:?}");
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            values.push(String::from_utf8(m?.payload().unwrap().to_vec()).unwrap());
        }
    }
    Ok(values)
}

#[test]
fn a_non_loopback_listener_needs_tls_and_sasl() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kappa"))
        .args(["--log", dir.path().join("log").to_str().unwrap()])
        .args(["broker", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a plain non-loopback listener is refused"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("needs TLS"), "{stderr}");
}

/// A node on every address with the settings of `settings` and `extra`
/// arguments; its port.
fn secured_broker(dir: &Path, extra: &[&str]) -> (Broker, u16) {
    let port = free_port();
    let security = dir.join("security.json");
    let (cert, key) = (dir.join("node.pem"), dir.join("node.key"));
    let advertise = format!("localhost:{port}");
    let mut args = vec![
        "--advertise",
        &advertise,
        "--security",
        security.to_str().unwrap(),
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let broker = Broker::start_with(&dir.join("log"), &format!("0.0.0.0:{port}"), &args);
    (broker, port)
}

#[test]
fn clients_authenticate_and_may_do_what_the_policy_allows_them() {
    let dir = tempfile::tempdir().unwrap();
    let ca = settings(dir.path());
    let (_broker, port) = secured_broker(dir.path(), &[]);

    let writer = client(port, &ca, "SCRAM-SHA-256", "writer", "write-secret");
    let created = create_topics(&writer, &["orders", "payroll"]);
    assert!(created[0].is_ok(), "{created:?}");
    assert_eq!(
        created[1].as_ref().err().map(|(_, c)| *c),
        Some(RDKafkaErrorCode::TopicAuthorizationFailed),
        "{created:?}"
    );

    for (mechanism, value) in [
        ("SCRAM-SHA-256", "by scram-256"),
        ("SCRAM-SHA-512", "by scram-512"),
        ("PLAIN", "by plain"),
    ] {
        let config = client(port, &ca, mechanism, "writer", "write-secret");
        send(&config, "orders", value).unwrap_or_else(|e| panic!("{mechanism}: {e}"));
    }

    let reader = client(port, &ca, "SCRAM-SHA-512", "reader", "read-secret");
    assert!(
        matches!(
            send(&reader, "orders", "not allowed"),
            Err(KafkaError::MessageProduction(
                RDKafkaErrorCode::TopicAuthorizationFailed
            ))
        ),
        "the reader may not write"
    );

    let read = |group: &str| -> Result<Vec<String>, KafkaError> {
        let consumer: BaseConsumer = reader
            .clone()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let values = read_orders(&consumer, 3)?;
        let mut at = TopicPartitionList::new();
        at.add_partition_offset("orders", 0, Offset::Offset(3))
            .unwrap();
        consumer.commit(&at, rdkafka::consumer::CommitMode::Sync)?;
        Ok(values)
    };
    assert_eq!(
        read("audit").unwrap(),
        ["by scram-256", "by scram-512", "by plain"]
    );
    assert!(
        matches!(read("elsewhere"), Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::GroupAuthorizationFailed)),
        "a group the reader is not given"
    );

    // A wrong password, and a client without TLS, get nothing.
    let wrong = client(port, &ca, "SCRAM-SHA-256", "writer", "guess");
    let refused: BaseConsumer = wrong.create().unwrap();
    assert!(
        refused
            .fetch_metadata(None, Duration::from_secs(5))
            .is_err()
    );
    let plain: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", format!("localhost:{port}"))
        .set("broker.address.family", "v4")
        .create()
        .unwrap();
    assert!(plain.fetch_metadata(None, Duration::from_secs(5)).is_err());
}

/// Describing a topic is a right of its own (seeing it, not reading or
/// writing it), and a transactional id is used only by principals given it.
#[test]
fn describe_and_transactional_id_rights_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let ca = settings(dir.path());
    let (_broker, port) = secured_broker(dir.path(), &[]);
    let writer = client(port, &ca, "SCRAM-SHA-256", "writer", "write-secret");
    let created = create_topics(&writer, &["orders"]);
    assert!(created[0].is_ok(), "{created:?}");
    send(&writer, "orders", "first").unwrap();

    let watcher = client(port, &ca, "SCRAM-SHA-256", "watcher", "watch-secret");
    // A group id only because librdkafka wants one to assign partitions;
    // the group is never joined.
    let looker: BaseConsumer = watcher
        .clone()
        .set("group.id", "unjoined")
        .create()
        .unwrap();
    let seen = looker.fetch_metadata(Some("orders"), WAIT).unwrap();
    let orders = &seen.topics()[0];
    assert_eq!(
        (orders.name(), orders.error(), orders.partitions().len()),
        ("orders", None, 1),
        "a topic the watcher may describe"
    );
    let hidden = looker.fetch_metadata(Some("payroll"), WAIT).unwrap();
    assert_eq!(
        hidden.topics()[0].error().map(RDKafkaErrorCode::from),
        Some(RDKafkaErrorCode::TopicAuthorizationFailed),
        "a topic the watcher may not describe"
    );
    assert!(
        matches!(
            send(&watcher, "orders", "not allowed"),
            Err(KafkaError::MessageProduction(
                RDKafkaErrorCode::TopicAuthorizationFailed
            ))
        ),
        "describing is not writing"
    );
    let read = read_orders(&looker, 1);
    assert!(
        matches!(
            &read,
            Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::TopicAuthorizationFailed)
        ),
        "describing is not reading: {read:?}"
    );

    let transactional = |id: &str| -> rdkafka::producer::BaseProducer {
        writer.clone().set("transactional.id", id).create().unwrap()
    };
    let given = transactional("orders-tx-1");
    given.init_transactions(WAIT).unwrap();
    given.begin_transaction().unwrap();
    given
        .send(rdkafka::producer::BaseRecord::<(), _>::to("orders").payload("in a transaction"))
        .map_err(|(e, _)| e)
        .unwrap();
    given.commit_transaction(WAIT).unwrap();
    let refused = transactional("payroll-tx-1").init_transactions(WAIT);
    assert_eq!(
        refused
            .as_ref()
            .err()
            .and_then(KafkaError::rdkafka_error_code),
        Some(RDKafkaErrorCode::TransactionalIdAuthorizationFailed),
        "{refused:?}"
    );

    let reader: BaseConsumer = client(port, &ca, "SCRAM-SHA-256", "reader", "read-secret")
        .set("group.id", "audit")
        .create()
        .unwrap();
    assert_eq!(
        read_orders(&reader, 2).unwrap(),
        ["first", "in a transaction"]
    );
}

/// Keeps what librdkafka reports (errors and logs), to read the broker's reasons.
#[derive(Default)]
struct Reasons(std::sync::Mutex<Vec<String>>);

impl Reasons {
    fn say(&self, what: &str) -> bool {
        self.0.lock().unwrap().iter().any(|r| r.contains(what))
    }
}

impl rdkafka::ClientContext for Reasons {
    fn log(&self, _: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.0.lock().unwrap().push(format!("{fac}: {message}"));
    }
    fn error(&self, error: KafkaError, reason: &str) {
        self.0.lock().unwrap().push(format!("{error}: {reason}"));
    }
}

impl rdkafka::producer::ProducerContext for Reasons {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, (): ()) {}
}

/// A producer that reports into [`Reasons`] (a producer's errors reach its
/// context with the broker's words; a consumer's come back bare).
fn reporting(config: &ClientConfig) -> rdkafka::producer::BaseProducer<Reasons> {
    config.create_with_context(Reasons::default()).unwrap()
}

/// Polls `producer` until its reasons say `what`, failing after [`WAIT`].
fn until_said(producer: &rdkafka::producer::BaseProducer<Reasons>, what: &str) {
    let deadline = Instant::now() + WAIT;
    while !producer.context().say(what) {
        assert!(
            Instant::now() < deadline,
            "never said {what:?}: {:?}",
            producer.context().0.lock().unwrap()
        );
        producer.poll(Duration::from_millis(100));
    }
}

#[test]
fn an_address_that_keeps_failing_to_authenticate_is_locked_out_even_with_the_right_password() {
    let dir = tempfile::tempdir().unwrap();
    let ca = settings(dir.path());
    let (_broker, port) = secured_broker(
        dir.path(),
        &["--sasl-failures-max", "3", "--sasl-failure-window", "1h"],
    );
    // librdkafka tries again by itself after each refusal: one client
    // guessing for a while makes the three failures.
    let guesser = reporting(
        client(port, &ca, "SCRAM-SHA-256", "writer", "guess")
            .set("reconnect.backoff.ms", "10")
            .set("reconnect.backoff.max.ms", "100"),
    );
    until_said(&guesser, "too many failed authentications");
    drop(guesser);

    let owner = reporting(&client(
        port,
        &ca,
        "SCRAM-SHA-512",
        "writer",
        "write-secret",
    ));
    until_said(&owner, "too many failed authentications");
    assert!(
        owner
            .client()
            .fetch_metadata(None, Duration::from_secs(2))
            .is_err(),
        "the right password from a locked address is refused too"
    );
}

/// kafka-python over SASL_SSL: its own SCRAM and PLAIN code, not librdkafka's.
const KAFKA_PYTHON_PRODUCE: &str = r#"
import sys
from kafka import KafkaProducer
bootstrap, ca, mechanism, user, password, value = sys.argv[1:7]
p = KafkaProducer(bootstrap_servers=bootstrap, security_protocol="SASL_SSL", ssl_cafile=ca,
                  sasl_mechanism=mechanism, sasl_plain_username=user, sasl_plain_password=password,
                  request_timeout_ms=20000, max_block_ms=20000)
p.send("orders", value.encode()).get(timeout=20)
p.close()
print("ok")
"#;

/// kafka-python's connection alone: how the node answered its SASL
/// exchange, as the error kafka-python made of the answer (class and Kafka
/// error code), or `connected`.
const KAFKA_PYTHON_CONNECT: &str = r#"
import socket, sys
from kafka.conn import BrokerConnection
host, port, ca, mechanism, user, password = sys.argv[1:7]
errors = []
close = BrokerConnection.close
def keep(self, error=None):
    if error is not None:
        errors.append(error)
    return close(self, error)
BrokerConnection.close = keep
conn = BrokerConnection(host, int(port), socket.AF_INET, security_protocol="SASL_SSL", ssl_cafile=ca,
                        sasl_mechanism=mechanism, sasl_plain_username=user, sasl_plain_password=password)
if conn.connect_blocking(timeout=20):
    print("connected")
for e in errors:
    print(type(e).__name__, getattr(e, "errno", None), e)
"#;

#[test]
fn kafka_python_and_kafkajs_authenticate_with_their_own_sasl_code() {
    let dir = tempfile::tempdir().unwrap();
    let ca = settings(dir.path());
    // Wrong passwords are tried below, more than the default limit allows.
    let (_broker, port) = secured_broker(dir.path(), &["--sasl-failures-max", "1000"]);
    let bootstrap = format!("localhost:{port}");
    let writer = client(port, &ca, "PLAIN", "writer", "write-secret");
    let created = create_topics(&writer, &["orders"]);
    assert!(created[0].is_ok(), "{created:?}");

    let python = |mechanism: &str, password: &str, value: &str| {
        Command::new(node::python())
            .args(["-c", KAFKA_PYTHON_PRODUCE, &bootstrap, ca.to_str().unwrap()])
            .args([mechanism, "writer", password, value])
            .output()
            .unwrap()
    };
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../kappa-node/tests/clients/node/sasl.mjs");
    assert!(
        script
            .with_file_name("node_modules")
            .join("kafkajs")
            .exists(),
        "kafkajs is missing: run scripts/test.sh, which runs npm ci in {}",
        script.parent().unwrap().display()
    );
    let kafkajs = |mechanism: &str, password: &str, value: &str| {
        Command::new("node")
            .arg(&script)
            .args(["--bootstrap", &bootstrap, "--ca", ca.to_str().unwrap()])
            .args([
                "--mechanism",
                mechanism,
                "--user",
                "writer",
                "--password",
                password,
            ])
            .args(["--value", value])
            .output()
            .unwrap()
    };
    let produce = |who: &str, mechanism: &str, password: &str, value: &str| match who {
        "kafka-python" => python(mechanism, password, value),
        "kafkajs" => kafkajs(mechanism, password, value),
        other => panic!("no client {other}"),
    };
    let mut sent = Vec::new();
    for (who, mechanism, value) in [
        ("kafka-python", "SCRAM-SHA-256", "py-256"),
        ("kafka-python", "SCRAM-SHA-512", "py-512"),
        ("kafka-python", "PLAIN", "py-plain"),
        ("kafkajs", "scram-sha-256", "js-256"),
        ("kafkajs", "scram-sha-512", "js-512"),
        ("kafkajs", "plain", "js-plain"),
    ] {
        let out = produce(who, mechanism, "write-secret", value);
        assert!(
            out.status.success(),
            "{who} {mechanism}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        sent.push(value);
    }
    // A wrong password or an unknown user: SASL_AUTHENTICATION_FAILED
    // (58), which each client reports as its own error for that code.
    let connect = |mechanism: &str, user: &str, password: &str| {
        let out = Command::new(node::python())
            .args(["-c", KAFKA_PYTHON_CONNECT, "localhost", &port.to_string()])
            .args([ca.to_str().unwrap(), mechanism, user, password])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(connect("SCRAM-SHA-512", "writer", "write-secret").starts_with("connected"));
    for (mechanism, user, password) in [
        ("SCRAM-SHA-256", "writer", "guess"),
        ("SCRAM-SHA-512", "nobody", "write-secret"),
        ("PLAIN", "writer", "guess"),
    ] {
        let said = connect(mechanism, user, password);
        assert!(
            said.starts_with("SaslAuthenticationFailedError 58 "),
            "kafka-python, {mechanism} as {user:?}: {said}"
        );
    }
    for mechanism in ["scram-sha-256", "plain"] {
        let out = kafkajs(mechanism, "guess", "never");
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            !out.status.success() && said.contains("KafkaJSSASLAuthenticationError"),
            "kafkajs, {mechanism}, a wrong password: {said}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let reader: BaseConsumer = client(port, &ca, "SCRAM-SHA-256", "reader", "read-secret")
        .set("group.id", "audit")
        .create()
        .unwrap();
    assert_eq!(
        read_orders(&reader, sent.len()).unwrap(),
        [
            "py-256", "py-512", "py-plain", "js-256", "js-512", "js-plain"
        ]
    );
}
