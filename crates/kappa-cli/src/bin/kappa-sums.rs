//! `kappa-sums`: a one-binary service on the embedded log or Kafka. It appends each
//! line of standard input (`KEY AMOUNT`) to the `numbers` topic, and a
//! topology keeps a running sum per key, writing every new sum to `sums`,
//! and counts each key's numbers per 50 ms window (by append time),
//! writing each window's final count to `window-counts`.
//! After each input commit it prints `appended N` (N in total so far) on
//! standard output. When standard input ends it waits until every number is
//! processed and committed, then exits.
//!
//! ```text
//! printf 'a 5\nb 2\na 1\n' | kappa-sums --log ./sums-data
//! ```
//!
//! With `--log kafka://host:port` its local state goes to `$KAPPA_STATE_DIR`
//! (default `./kappa-state`). With `--kafka-listen ADDR` (embedded log
//! only) it serves its log to other processes and Kafka clients while it
//! runs, and says where first: `serving the log to Kafka clients at ADDR`.
//! It is also the child process of the exactly-once crash test, on both
//! backends.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kappa_log::{Commit, EmbeddedOptions, Log, LogError, ProducerRecord, TopicSpec};
use kappa_streams::{
    Emit, I64, Json, Materialized, Streams, StreamsBuilder, StreamsConfig, TimeWindows, Utf8,
    WindowedSerde,
};

/// Size of the counting windows.
const WINDOW: Duration = Duration::from_millis(50);

/// Lines appended per input commit.
const INPUT_BATCH_LINES_MAX: usize = 100;

fn main() -> std::process::ExitCode {
    // Warnings and errors (a refused commit, say) go to standard error.
    kappa_service::log_to_stderr();
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut dir = None;
    let mut threads = 1usize;
    let mut partitions = 4u32;
    let mut kafka_listen: Option<SocketAddr> = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--log" => dir = args.next(),
            "--threads" => threads = args.next().ok_or("--threads needs a number")?.parse()?,
            "--partitions" => partitions = args.next().ok_or("--partitions needs a number")?.parse()?,
            "--kafka-listen" => kafka_listen = Some(args.next().ok_or("--kafka-listen needs HOST:PORT")?.parse()?),
            other => return Err(format!("unknown argument {other:?}; usage: kappa-sums --log DIR|kafka://host:port [--threads N] [--partitions N] [--kafka-listen HOST:PORT]").into()),
        }
    }
    let location = dir.ok_or("--log DIR|kafka://host:port is required")?;
    if let Some(addr) = kafka_listen
        && location.starts_with("kafka://")
    {
        return Err(format!("--kafka-listen {addr} serves an embedded log; --log {location} is a Kafka cluster already").into());
    }
    let state = kappa_kafka::state_base_from_env();
    let log: Arc<dyn Log> = Arc::from(kappa_kafka::open_location(
        &location,
        EmbeddedOptions::default(),
        &state,
    )?);
    for topic in ["numbers", "sums", "window-counts"] {
        match log.create_topic(&TopicSpec::new(topic, partitions)) {
            Ok(()) | Err(LogError::TopicExists(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }

    // Kept until the end: dropping the runtime stops the node.
    let _node = match kafka_listen {
        Some(addr) => Some(serve_over_kafka(log.clone(), addr)?),
        None => None,
    };

    let builder = StreamsBuilder::new();
    let by_key = builder
        .stream("numbers", Utf8, Json::<i64>::new())
        .group_by_key(Utf8);
    by_key
        .windowed_by(TimeWindows::of_size_no_grace(WINDOW))
        .emit(Emit::Final)
        .count(Materialized::persistent("window-counts"))
        .to("window-counts", WindowedSerde::new(Utf8, WINDOW), I64);
    by_key
        .aggregate(
            Materialized::persistent("sums"),
            Json::<i64>::new(),
            || 0,
            |_, n, sum| sum + n,
        )
        .to("sums", Utf8, Json::<i64>::new());
    let mut config = StreamsConfig::new("kappa-sums");
    config.num_threads = threads;
    config.commit_interval = Duration::from_millis(20);
    let streams = Streams::start(log.clone(), builder.build()?, config)?;

    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    let mut appended = 0u64;
    let mut batch = Vec::with_capacity(INPUT_BATCH_LINES_MAX);
    for line in stdin.lock().lines() {
        let line = line?;
        let (key, amount) = line
            .split_once(' ')
            .ok_or_else(|| format!("expected `KEY AMOUNT`, got {line:?}"))?;
        let amount: i64 = amount
            .trim()
            .parse()
            .map_err(|_| format!("{amount:?} is not an integer"))?;
        batch.push(ProducerRecord::value(amount.to_string()).with_key(key.to_owned()));
        if batch.len() >= INPUT_BATCH_LINES_MAX {
            appended += append(&*log, &mut batch)?;
            writeln!(stdout, "appended {appended}")?;
            stdout.flush()?;
        }
    }
    appended += append(&*log, &mut batch)?;
    writeln!(stdout, "appended {appended}")?;
    if let Err(e) = streams.wait_for_inputs() {
        // Closing says why a worker stopped.
        return Err(match streams.close() {
            Err(why) => format!("{e}: {why}").into(),
            Ok(()) => e.into(),
        });
    }
    streams.close()?;
    Ok(())
}

/// Serves `log` over the Kafka protocol at `addr` on a runtime of its own,
/// until the runtime is dropped.
fn serve_over_kafka(
    log: Arc<dyn Log>,
    addr: SocketAddr,
) -> Result<tokio::runtime::Runtime, Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let node = runtime
        .block_on(kappa_node::Node::bind(
            log,
            kappa_node::NodeConfig::new(addr),
        ))
        .map_err(|e| format!("serving the log over the Kafka protocol at {addr}: {e}"))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "serving the log to Kafka clients at {}",
        node.local_addr()
    )?;
    stdout.flush()?;
    runtime.spawn(node.serve(std::future::pending()));
    Ok(runtime)
}

/// Appends the batch in one commit; returns how many records it held.
fn append(log: &dyn Log, batch: &mut Vec<ProducerRecord>) -> Result<u64, LogError> {
    if batch.is_empty() {
        return Ok(0);
    }
    let n = batch.len() as u64;
    let mut c = Commit::new();
    c.append_all("numbers", None, batch.drain(..));
    log.commit(c)?;
    Ok(n)
}
