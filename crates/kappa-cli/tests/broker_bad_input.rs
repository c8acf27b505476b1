//! Bad input to `kappa broker`, written byte by byte: truncated, oversized
//! and negative frames, unknown API keys and versions, record batches that
//! fail their CRC, unknown topics and partitions, a client that stops
//! reading. Each gets Kafka's error code or a closed connection; the log
//! is unchanged and other clients are unaffected. The refusals show in
//! the node's figures, with request latency and groups by state.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod fresh_node;
mod node;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use kappa_log::{EmbeddedLog, Log, ProducerRecord, TopicPartition, TopicSpec};
use node::{Broker, Cluster, runtime, scrape};
use rdkafka::producer::{FutureProducer, FutureRecord};

const API_PRODUCE: i16 = 0;
const API_METADATA: i16 = 3;
const API_VERSIONS: i16 = 18;

fn connect(broker: &Broker) -> TcpStream {
    let s = TcpStream::connect(&broker.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// A request frame with a v1 header (no tagged fields).
fn frame(api: i16, version: i16, correlation: i32, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&api.to_be_bytes());
    b.extend_from_slice(&version.to_be_bytes());
    b.extend_from_slice(&correlation.to_be_bytes());
    string(&mut b, "bad-input-test");
    b.extend_from_slice(body);
    let mut out = (b.len() as i32).to_be_bytes().to_vec();
    out.extend(b);
    out
}

fn string(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(&(s.len() as i16).to_be_bytes());
    b.extend_from_slice(s.as_bytes());
}

fn read_response(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut size = [0u8; 4];
    s.read_exact(&mut size).ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    s.read_exact(&mut body).ok()?;
    Some(body)
}

/// Whether the node closed the connection (a read sees the end, not a timeout).
fn closed(s: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(s.read(&mut byte), Ok(0))
        || matches!(s.read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
}

fn zigzag(b: &mut Vec<u8>, v: i64) {
    let mut n = ((v << 1) ^ (v >> 63)) as u64;
    while n >= 0x80 {
        b.push((n as u8) | 0x80);
        n >>= 7;
    }
    b.push(n as u8);
}

/// A v2 record batch holding one keyless record.
fn batch(value: &[u8]) -> Vec<u8> {
    let mut record = vec![0u8]; // attributes
    zigzag(&mut record, 0); // timestamp delta
    zigzag(&mut record, 0); // offset delta
    zigzag(&mut record, -1); // no key
    zigzag(&mut record, value.len() as i64);
    record.extend_from_slice(value);
    zigzag(&mut record, 0); // no headers
    let mut after_crc = Vec::new();
    after_crc.extend_from_slice(&0i16.to_be_bytes()); // attributes
    after_crc.extend_from_slice(&0i32.to_be_bytes()); // last offset delta
    after_crc.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
    after_crc.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
    after_crc.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    after_crc.extend_from_slice(&(-1i16).to_be_bytes());
    after_crc.extend_from_slice(&(-1i32).to_be_bytes());
    after_crc.extend_from_slice(&1i32.to_be_bytes()); // one record
    zigzag(&mut after_crc, record.len() as i64);
    after_crc.extend(record);
    let mut b = Vec::new();
    b.extend_from_slice(&0i64.to_be_bytes()); // base offset
    b.extend_from_slice(&((4 + 1 + 4 + after_crc.len()) as i32).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes()); // leader epoch
    b.push(2); // magic
    b.extend_from_slice(&crc32c::crc32c(&after_crc).to_be_bytes());
    b.extend(after_crc);
    b
}

/// Produce v3 of `records` to one partition; returns the partition's error code.
fn produce(s: &mut TcpStream, topic: &str, partition: i32, records: &[u8]) -> i16 {
    let mut body = Vec::new();
    body.extend_from_slice(&(-1i16).to_be_bytes()); // no transactional id
    body.extend_from_slice(&(-1i16).to_be_bytes()); // acks=all
    body.extend_from_slice(&10_000i32.to_be_bytes());
    body.extend_from_slice(&1i32.to_be_bytes());
    string(&mut body, topic);
    body.extend_from_slice(&1i32.to_be_bytes());
    body.extend_from_slice(&partition.to_be_bytes());
    body.extend_from_slice(&(records.len() as i32).to_be_bytes());
    body.extend_from_slice(records);
    s.write_all(&frame(API_PRODUCE, 3, 7, &body)).unwrap();
    let r = read_response(s).expect("a produce response");
    assert_eq!(
        i32::from_be_bytes(r[0..4].try_into().unwrap()),
        7,
        "correlation id"
    );
    // correlation, topic count, topic name, partition count, index, error code.
    let name_len = i16::from_be_bytes(r[8..10].try_into().unwrap()) as usize;
    let at = 10 + name_len + 4 + 4;
    i16::from_be_bytes(r[at..at + 2].try_into().unwrap())
}

fn end_offsets(dir: &std::path::Path, topic: &str, partitions: u32) -> Vec<u64> {
    let log = EmbeddedLog::open(dir).unwrap();
    (0..partitions)
        .map(|p| log.offsets(&TopicPartition::new(topic, p)).unwrap().end)
        .collect()
}

/// A node whose disk is under its free-space floor refuses produce with
/// KAFKA_STORAGE_ERROR (retriable: clients back off and send again) and
/// writes nothing, instead of filling the disk and failing half-way.
#[test]
fn a_node_under_its_free_space_floor_refuses_produce_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = EmbeddedLog::open(dir.path()).unwrap();
        log.create_topic(&TopicSpec::new("ledger", 1)).unwrap();
        log.append("ledger", vec![ProducerRecord::value("before")])
            .unwrap();
    }
    // Half again the free space: produce is past the floor, while the
    // node's own commits (down to half the floor) go on.
    let free_mib = kappa_log::free_bytes(dir.path()).unwrap() >> 20;
    let floor_mib = (free_mib + free_mib / 2).to_string();
    let mut broker = Broker::start_with(dir.path(), "127.0.0.1:0", &["--min-free-mib", &floor_mib]);
    let mut s = connect(&broker);
    assert_eq!(
        produce(&mut s, "ledger", 0, &batch(b"refused")),
        56,
        "KAFKA_STORAGE_ERROR"
    );
    drop(s);
    broker.kill();
    assert_eq!(end_offsets(dir.path(), "ledger", 1), vec![1]);
}

#[test]
fn bad_requests_get_kafka_errors_or_a_closed_connection_and_change_nothing() {
    let (rt, dir, mut broker) = fresh_node::node_with_topic("ledger", 2);

    // A good batch lands, so the checks below can tell "refused" from "broken".
    let mut s = connect(&broker);
    assert_eq!(produce(&mut s, "ledger", 0, &batch(b"good")), 0);

    // A batch whose CRC does not match its bytes.
    let mut corrupt = batch(b"flipped");
    let last = corrupt.len() - 2;
    corrupt[last] ^= 0x40;
    assert_eq!(produce(&mut s, "ledger", 0, &corrupt), 2, "CORRUPT_MESSAGE");
    // A batch cut short.
    let good = batch(b"cut");
    assert_eq!(
        produce(&mut s, "ledger", 1, &good[..good.len() - 3]),
        2,
        "CORRUPT_MESSAGE"
    );
    // Unknown topic and partition.
    assert_eq!(
        produce(&mut s, "no-such-topic", 0, &batch(b"x")),
        3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );
    assert_eq!(
        produce(&mut s, "ledger", 9, &batch(b"x")),
        3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );
    assert_eq!(
        produce(&mut s, "ledger", -1, &batch(b"x")),
        3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );

    // ApiVersions newer than served: error 35 and the served versions, in v0 form.
    s.write_all(&frame(API_VERSIONS, 99, 11, &[])).unwrap();
    let r = read_response(&mut s).unwrap();
    assert_eq!(i32::from_be_bytes(r[0..4].try_into().unwrap()), 11);
    assert_eq!(
        i16::from_be_bytes(r[4..6].try_into().unwrap()),
        35,
        "UNSUPPORTED_VERSION"
    );
    assert!(
        i32::from_be_bytes(r[6..10].try_into().unwrap()) > 10,
        "the served APIs are listed"
    );

    // Each of these closes its connection.
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("an unknown API key", frame(999, 0, 1, &[])),
        (
            "an unserved version of a served API",
            frame(API_METADATA, 99, 1, &[]),
        ),
        ("a negative frame size", (-5i32).to_be_bytes().to_vec()),
        (
            "a frame over the size limit",
            (1i32 << 30).to_be_bytes().to_vec(),
        ),
        (
            "a frame shorter than a header",
            [&3i32.to_be_bytes()[..], &[0, 3, 0]].concat(),
        ),
        (
            "a body that does not decode",
            frame(API_PRODUCE, 3, 1, &[0xff, 0xff, 0x7f]),
        ),
    ];
    for (what, bytes) in cases {
        let mut c = connect(&broker);
        c.write_all(&bytes).unwrap();
        assert!(closed(&mut c), "{what} closes the connection");
    }
    // A frame that stops halfway, then the client goes away.
    let mut c = connect(&broker);
    c.write_all(&100i32.to_be_bytes()).unwrap();
    c.write_all(&[0u8; 10]).unwrap();
    drop(c);

    // A client that sends and never reads does not hold up others.
    let mut hog = connect(&broker);
    let metadata = frame(API_METADATA, 1, 1, &(-1i32).to_be_bytes());
    for _ in 0..2000 {
        if hog.write_all(&metadata).is_err() {
            break;
        }
        hog.set_write_timeout(Some(Duration::from_millis(50)))
            .unwrap();
    }
    let producer: FutureProducer = broker.client().create().unwrap();
    let d = rt
        .block_on(
            producer.send(
                FutureRecord::<(), _>::to("ledger")
                    .partition(1)
                    .payload("after"),
                Duration::from_secs(10),
            ),
        )
        .map_err(|(e, _)| e)
        .unwrap();
    assert_eq!(
        (d.partition, d.offset),
        (1, 0),
        "another client still produces"
    );
    drop(hog);
    drop(producer);

    broker.kill();
    assert_eq!(
        end_offsets(dir.path(), "ledger", 2),
        vec![1, 1],
        "only the two good records are in the log"
    );
}

/// The value of the line of `text` that starts with `prefix`.
fn figure(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit_once(' '))
        .map(|(_, v)| v.parse().unwrap())
}

#[test]
fn refusals_latency_and_groups_show_in_the_figures() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_with_metrics(dir.path());
    let metrics = broker.metrics.clone().unwrap();
    broker.create_topic(&rt, "ledger", 1);
    let mut s = connect(&broker);
    assert_eq!(produce(&mut s, "ledger", 0, &batch(b"good")), 0);
    assert_eq!(produce(&mut s, "no-such-topic", 0, &batch(b"x")), 3);
    assert_eq!(produce(&mut s, "no-such-topic", 0, &batch(b"y")), 3);
    let mut corrupt = batch(b"flipped");
    let last = corrupt.len() - 2;
    corrupt[last] ^= 0x40;
    assert_eq!(produce(&mut s, "ledger", 0, &corrupt), 2);

    let member: rdkafka::consumer::BaseConsumer = broker
        .client()
        .set("group.id", "watched")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    rdkafka::consumer::Consumer::subscribe(&member, &["ledger"]).unwrap();
    // Joined, assigned, and the good record fetched.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the member read the record in time"
        );
        if let Some(m) = rdkafka::consumer::BaseConsumer::poll(&member, Duration::from_millis(100))
        {
            assert_eq!(rdkafka::Message::payload(&m.unwrap()), Some(&b"good"[..]));
            break;
        }
    }

    let text = scrape(&metrics);
    let errors = |code: &str| {
        figure(
            &text,
            &format!("kappa_node_errors_total{{api=\"Produce\",code=\"{code}\""),
        )
    };
    assert_eq!(errors("3"), Some(2.0), "{text}");
    assert_eq!(errors("2"), Some(1.0), "{text}");
    assert_eq!(
        figure(&text, "kappa_node_request_seconds_count{api=\"Produce\"}"),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        figure(
            &text,
            "kappa_node_request_seconds_bucket{api=\"Produce\",le=\"+Inf\"}"
        ),
        Some(4.0)
    );
    assert_eq!(
        figure(&text, "kappa_node_groups{state=\"Stable\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        text.matches("# TYPE kappa_node_request_seconds histogram")
            .count(),
        1
    );
    let at_least = |name: &str, floor: f64| {
        let v = figure(&text, name).unwrap_or_else(|| panic!("no {name}: {text}"));
        assert!(v >= floor, "{name} {v} < {floor}: {text}");
        v
    };
    // The raw connection and the member's: at least two, all still open.
    let open = at_least("kappa_node_connections_open ", 2.0);
    at_least("kappa_node_connections_total ", open);
    // Four produce requests of at least a batch each came in.
    at_least(
        "kappa_node_bytes_in_total ",
        4.0 * batch(b"good").len() as f64,
    );
    at_least("kappa_node_bytes_out_total ", 1.0);
    assert_eq!(
        figure(&text, "kappa_node_records_produced_total "),
        Some(1.0),
        "only the good record was appended: {text}"
    );
    at_least("kappa_node_records_fetched_total ", 1.0);
    at_least("kappa_node_request_seconds_count{api=\"Fetch\"}", 1.0);
    at_least(
        "kappa_node_request_seconds_bucket{api=\"Fetch\",le=\"+Inf\"}",
        1.0,
    );
    // One commit per produce request at most (group commit makes fewer).
    let requests = at_least("kappa_node_produce_requests_committed_total ", 1.0);
    let commits = at_least("kappa_node_produce_commits_total ", 1.0);
    assert!(commits <= requests, "{text}");
}
