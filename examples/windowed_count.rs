//! Windowed counting: page views per user per minute, in tumbling one-minute
//! windows with 30 s of grace. An out-of-order view inside the grace is
//! counted; a view whose window has closed is late: not counted, but kept on
//! a topic of its own instead of vanishing.
//!
//! Run it with `cargo run -p kappa-examples --bin windowed-count`. It writes
//! nine timestamped views to an embedded log in a scratch directory, runs the
//! topology until it has processed them, and prints each window's count per
//! user, then the late view.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, ensure};
use kappa_log::{EmbeddedLog, Log, ProducerRecord, TopicPartition, TopicSpec};
use kappa_streams::{
    ERROR_HEADER, I64, Materialized, Serde, Streams, StreamsBuilder, StreamsConfig, TimeWindows,
    Utf8, Windowed, WindowedSerde,
};

const MINUTE: Duration = Duration::from_secs(60);
const GRACE: Duration = Duration::from_secs(30);
/// 2026-01-01T10:00:00Z, in ms since the epoch (a whole minute, so windows start on it).
const TEN_OCLOCK_MS: i64 = 1_767_261_600_000;
/// The longest the program waits for the topology.
const WAIT: Duration = Duration::from_secs(30);

/// (user, page, seconds after 10:00:00), in the order they reach the log.
const VIEWS: [(&str, &str, i64); 9] = [
    ("alice", "/home", 5),
    ("bob", "/home", 20),
    ("alice", "/pricing", 40),
    ("alice", "/docs", 70),
    ("bob", "/pricing", 75),
    // Out of order: stream time is 10:01:15, and [10:00, 10:01) accepts
    // records until 10:01:00 + 30 s of grace, so this one counts.
    ("alice", "/signup", 50),
    // Stream time moves to 10:01:45: [10:00, 10:01) closes.
    ("carol", "/home", 105),
    // Late: its only window is closed.
    ("bob", "/docs", 55),
    ("alice", "/home", 125),
];

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let log: Arc<dyn Log> = Arc::new(EmbeddedLog::open(dir.path())?);
    // One partition: stream time, which decides what is late, is kept per partition.
    for topic in ["page-views", "views-per-minute", "late-page-views"] {
        log.create_topic(&TopicSpec::new(topic, 1))?;
    }

    let b = StreamsBuilder::new();
    b.stream("page-views", Utf8, Utf8)
        .group_by_key(Utf8)
        .windowed_by(TimeWindows::of_size_with_grace(MINUTE, GRACE))
        .late_records_to("late-page-views")
        .count(Materialized::in_memory("counts"))
        .to("views-per-minute", WindowedSerde::new(Utf8, MINUTE), I64);
    let config = StreamsConfig::new("windowed-count");
    let streams = Streams::start(log.clone(), b.build()?, config)?;

    let views: Vec<ProducerRecord> = VIEWS
        .iter()
        .map(|&(user, page, seconds)| {
            ProducerRecord::value(page)
                .with_key(user)
                .with_timestamp(TEN_OCLOCK_MS + seconds * 1000)
        })
        .collect();
    let last = log
        .append("page-views", views)?
        .pop()
        .context("no view written")?;
    let last = [(TopicPartition::new(last.topic, last.partition), last.offset)];
    let processed = streams.wait_for_processed(&last, WAIT)?;
    ensure!(
        processed,
        "the topology did not process the views within {WAIT:?}"
    );
    let late_records = streams.metrics().late_records;
    streams.close()?;

    // Emit-on-update: each output is a window's count so far, in order, so
    // the last one per window and user is the window's count.
    let serde = WindowedSerde::new(Utf8, MINUTE);
    let updates = log.read_topic("views-per-minute")?;
    let mut counts = BTreeMap::new();
    for r in &updates {
        let windowed: Windowed<String> = serde.deserialize(r.key.as_deref().unwrap_or_default())?;
        let count: i64 = I64.deserialize(r.value.as_deref().unwrap_or_default())?;
        let window = windowed.window;
        counts.insert((window.start, windowed.key), (window.end, count));
    }
    println!(
        "{} updates on views-per-minute; the last per window and user is its count:",
        updates.len()
    );
    for ((start, user), (end, count)) in &counts {
        println!("[{}, {}) {user}: {count}", clock(*start), clock(*end));
    }
    for r in log.read_topic("late-page-views")? {
        println!(
            "late, not counted: {} viewed {} at {}",
            text(r.key.as_deref()),
            text(r.value.as_deref()),
            clock(r.timestamp)
        );
        println!("  reason: {}", text(r.header(ERROR_HEADER).map(|v| &v[..])));
    }
    println!("late records: {late_records}");
    Ok(())
}

fn text(bytes: Option<&[u8]>) -> String {
    String::from_utf8_lossy(bytes.unwrap_or_default()).into_owned()
}

/// `hh:mm:ss` (UTC) of a time in ms since the epoch.
fn clock(ms: i64) -> String {
    let s = ms.div_euclid(1000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}
