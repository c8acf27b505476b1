//! `kappa bench broker`: librdkafka producing through the Kafka-protocol
//! node (idempotent, `acks=all`) against the embedded log's direct append
//! on the same disk, in the same run; with `--kafka`, the same producer
//! against Apache Kafka (an fsync per batch, and its unflushed default) in
//! the same run; and produce→consume latency through the node at a fixed
//! rate.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use kappa_kafka::testing::{APACHE_KAFKA_VERSION, ApacheKafka};
use kappa_log::{Commit, Durability, EmbeddedLog, EmbeddedOptions, Log, ProducerRecord, TopicSpec};
use kappa_node::testing::TestNode;
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use super::bench::median;

/// The send time the warm-up record carries.
const WARM_UP: u64 = u64::MAX;
/// Records per commit of the direct-append baseline.
const DIRECT_BATCH_RECORDS: usize = 1000;
const TOPIC: &str = "bench";

/// Arguments of `kappa bench broker`.
#[derive(Debug, Args)]
pub struct BrokerBenchArgs {
    /// Records produced per value size and round.
    #[arg(long, default_value_t = 200_000)]
    records: u64,
    /// Value sizes in bytes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "100,1024")]
    value_sizes: Vec<usize>,
    /// Rounds; direct append and the node alternate, medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Offered rate of the latency run, records per second.
    #[arg(long, default_value_t = 10_000)]
    latency_rate: u64,
    /// Length of the latency run.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    latency_duration: Duration,
    /// Durability of the log behind the node and of the baseline.
    #[arg(long, default_value = "always")]
    durability: Durability,
    /// Scratch directory (fresh subdirectories are made and removed).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Also measure Apache Kafka (its jars from scripts/packages.sh) on the same disk.
    #[arg(long)]
    kafka: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct SizeResult {
    value_bytes: usize,
    records: u64,
    direct_append_records_per_s: f64,
    node_produce_records_per_s: f64,
    node_vs_direct_ratio: f64,
    node_produce_commits: u64,
    node_produce_requests: u64,
    target_ratio: f64,
    /// The same producer against Apache Kafka with an fsync per batch
    /// (`log.flush.interval.messages=1`), and with its default (no fsync).
    kafka_flushed_records_per_s: Option<f64>,
    kafka_unflushed_records_per_s: Option<f64>,
    node_vs_kafka_flushed_ratio: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Latency {
    offered_per_s: u64,
    records: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    target_p99_ms: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    benchmark: &'static str,
    durability: String,
    rounds: usize,
    sizes: Vec<SizeResult>,
    latency: Latency,
}

/// Runs the benchmark and prints its figures.
///
/// # Errors
///
/// Bad arguments, a scratch directory or log that cannot be made, a node
/// that cannot start, or a client error.
pub fn run(args: &BrokerBenchArgs) -> anyhow::Result<()> {
    if args.records == 0 || args.rounds == 0 || args.value_sizes.is_empty() {
        bail!("--records, --rounds and --value-sizes must not be zero or empty");
    }
    if let Some(&size) = args
        .value_sizes
        .iter()
        .find(|s| **s == 0 || **s > 900 * 1024)
    {
        bail!("--value-sizes: {size} is outside 1..=921600 bytes");
    }
    if args.latency_rate == 0 || args.latency_rate > 1_000_000 {
        bail!("--latency-rate must be within 1..=1000000");
    }
    let scratch = super::bench_scratch(&args.dir.clone().unwrap_or_else(std::env::temp_dir))?;
    // Started once each; every round writes a topic of its own.
    let kafkas = if args.kafka {
        let flushed = ApacheKafka::start_with("log.flush.interval.messages=1")?;
        let unflushed = ApacheKafka::start()?;
        Some((flushed, unflushed))
    } else {
        None
    };
    let mut sizes = Vec::new();
    let mut run_id = 0;
    for &size in &args.value_sizes {
        let value = vec![b'v'; size];
        let (mut direct, mut node, mut commits, mut requests) = (Vec::new(), Vec::new(), 0, 0);
        let (mut flushed, mut unflushed) = (Vec::new(), Vec::new());
        for round in 0..args.rounds {
            run_id += 1;
            let d = direct_append(
                &scratch.path().join(format!("direct-{run_id}")),
                args,
                &value,
            )?;
            let (n, c, r) =
                through_node(&scratch.path().join(format!("node-{run_id}")), args, &value)?;
            eprintln!(
                "{size} B round {}: direct {d:.0}/s, node {n:.0}/s ({c} commits for {r} requests)",
                round + 1
            );
            if let Some((f, u)) = &kafkas {
                let topic = format!("bench-{run_id}");
                let kf = through_kafka(f, &topic, args.records, &value)?;
                let ku = through_kafka(u, &topic, args.records, &value)?;
                eprintln!(
                    "{size} B round {}: Apache Kafka flushed {kf:.0}/s, unflushed {ku:.0}/s",
                    round + 1
                );
                flushed.push(kf);
                unflushed.push(ku);
            }
            direct.push(d);
            node.push(n);
            (commits, requests) = (c, r);
        }
        let ratio = median(node.iter().zip(&direct).map(|(n, d)| n / d));
        let vs_flushed =
            (!flushed.is_empty()).then(|| median(node.iter().zip(&flushed).map(|(n, k)| n / k)));
        sizes.push(SizeResult {
            value_bytes: size,
            records: args.records,
            direct_append_records_per_s: median(direct.into_iter()),
            node_produce_records_per_s: median(node.into_iter()),
            node_vs_direct_ratio: ratio,
            node_produce_commits: commits,
            node_produce_requests: requests,
            target_ratio: 0.5,
            kafka_flushed_records_per_s: (!flushed.is_empty()).then(|| median(flushed.into_iter())),
            kafka_unflushed_records_per_s: (!unflushed.is_empty())
                .then(|| median(unflushed.into_iter())),
            node_vs_kafka_flushed_ratio: vs_flushed,
        });
    }
    let latency = latency(&scratch.path().join("latency"), args)?;
    let report = Report {
        benchmark: "broker",
        durability: args.durability.to_string(),
        rounds: args.rounds,
        sizes,
        latency,
    };
    super::print_bench_report(&report, args.json, || {
        println!(
            "{:>8} {:>14} {:>14} {:>8} {:>16}",
            "value B", "direct rec/s", "node rec/s", "ratio", "commits/requests"
        );
        for s in &report.sizes {
            println!(
                "{:>8} {:>14.0} {:>14.0} {:>8.2} {:>9}/{:<6}",
                s.value_bytes,
                s.direct_append_records_per_s,
                s.node_produce_records_per_s,
                s.node_vs_direct_ratio,
                s.node_produce_commits,
                s.node_produce_requests
            );
            if let (Some(f), Some(u), Some(r)) = (
                s.kafka_flushed_records_per_s,
                s.kafka_unflushed_records_per_s,
                s.node_vs_kafka_flushed_ratio,
            ) {
                println!(
                    "{:>8} Apache Kafka {APACHE_KAFKA_VERSION}: flushed {f:.0} rec/s (node/flushed {r:.2}), unflushed {u:.0} rec/s",
                    s.value_bytes
                );
            }
        }
        let l = &report.latency;
        println!(
            "produce→consume at {}/s: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} records)",
            l.offered_per_s, l.p50_ms, l.p99_ms, l.max_ms, l.records
        );
    })
}

fn open(dir: &std::path::Path, durability: Durability) -> anyhow::Result<Arc<EmbeddedLog>> {
    let log = EmbeddedLog::open_with(dir, EmbeddedOptions::default().durability(durability))
        .with_context(|| format!("opening a log in {}", dir.display()))?;
    log.create_topic(&TopicSpec::new(TOPIC, 1))?;
    Ok(Arc::new(log))
}

/// Records/s of `Log::commit` with 1000-record commits.
fn direct_append(
    dir: &std::path::Path,
    args: &BrokerBenchArgs,
    value: &[u8],
) -> anyhow::Result<f64> {
    let log = open(dir, args.durability)?;
    let value = bytes::Bytes::copy_from_slice(value);
    let start = Instant::now();
    let mut left = args.records;
    while left > 0 {
        let n = left.min(DIRECT_BATCH_RECORDS as u64);
        let mut commit = Commit::new();
        commit.append_all(
            TOPIC,
            Some(0),
            (0..n).map(|_| ProducerRecord::value(value.clone())),
        );
        log.commit(commit)?;
        left -= n;
    }
    Ok(args.records as f64 / start.elapsed().as_secs_f64())
}

fn producer(bootstrap: &str, linger_ms: &str) -> anyhow::Result<BaseProducer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", linger_ms)
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .create()?)
}

/// Records/s produced through a node, and its commits and produce requests.
fn through_node(
    dir: &std::path::Path,
    args: &BrokerBenchArgs,
    value: &[u8],
) -> anyhow::Result<(f64, u64, u64)> {
    let node = TestNode::start(open(dir, args.durability)?)?;
    let rate = produce_all(node.bootstrap(), TOPIC, args.records, value)?;
    let stats = node.stats();
    Ok((
        rate,
        stats.produce_commits.load(Ordering::Relaxed),
        stats.produce_requests_committed.load(Ordering::Relaxed),
    ))
}

/// Records/s of one idempotent `acks=all` librdkafka producer sending
/// `records` copies of `value` to partition 0 of `topic`.
fn produce_all(bootstrap: &str, topic: &str, records: u64, value: &[u8]) -> anyhow::Result<f64> {
    let producer = producer(bootstrap, "5")?;
    // One record first: the producer id and the partition's leader are
    // found before the clock starts (Kafka's coordinator may still load).
    producer
        .send(
            BaseRecord::<(), [u8]>::to(topic)
                .partition(0)
                .payload(value),
        )
        .map_err(|(e, _)| e)?;
    producer.flush(Duration::from_secs(60))?;
    let start = Instant::now();
    for _ in 0..records {
        let mut record = BaseRecord::<(), [u8]>::to(topic)
            .partition(0)
            .payload(value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, r))
                    if e.rdkafka_error_code()
                        == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
                {
                    producer.poll(Duration::from_millis(1));
                    record = r;
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(records as f64 / start.elapsed().as_secs_f64())
}

/// Records/s of the same producer against Apache Kafka, on a new topic.
fn through_kafka(
    kafka: &ApacheKafka,
    topic: &str,
    records: u64,
    value: &[u8],
) -> anyhow::Result<f64> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap())
        .create()?;
    let created = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(admin.create_topics(
            &[NewTopic::new(topic, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        ))?;
    for r in created {
        r.map_err(|(t, e)| anyhow::anyhow!("creating {t} on Apache Kafka: {e}"))?;
    }
    produce_all(kafka.bootstrap(), topic, records, value)
}

/// Produce→consume latency through a node at `--latency-rate`.
fn latency(dir: &std::path::Path, args: &BrokerBenchArgs) -> anyhow::Result<Latency> {
    let node = TestNode::start(open(dir, args.durability)?)?;
    let bootstrap = node.bootstrap();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench-latency")
        .set("fetch.wait.max.ms", "500")
        .set("fetch.min.bytes", "1")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, Offset::Beginning)?;
    consumer.assign(&tpl)?;
    let epoch = Instant::now();
    let total = (args.latency_rate as f64 * args.latency_duration.as_secs_f64()) as u64;
    if total == 0 {
        bail!("--latency-rate × --latency-duration is less than one record");
    }
    let done = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let reader = {
        let done = done.clone();
        thread::spawn(move || -> anyhow::Result<Vec<f64>> {
            let mut latencies = Vec::with_capacity(total as usize);
            while (latencies.len() as u64) < total && !done.load(Ordering::Relaxed) {
                if let Some(m) = consumer.poll(Duration::from_millis(100)) {
                    let m = m?;
                    let sent = m
                        .payload()
                        .and_then(|p| p.get(..8))
                        .map(|b| u64::from_be_bytes(b.try_into().unwrap_or_default()))
                        .unwrap_or_default();
                    if sent == WARM_UP {
                        let _ = ready_tx.send(());
                        continue;
                    }
                    let now = epoch.elapsed().as_nanos() as u64;
                    latencies.push(now.saturating_sub(sent) as f64 / 1e6);
                }
            }
            Ok(latencies)
        })
    };
    let producer = producer(bootstrap, "0")?;
    // The clock starts once a first record made the whole trip: connecting
    // and finding the partition's start are not latency.
    producer
        .send(
            BaseRecord::<(), [u8]>::to(TOPIC)
                .partition(0)
                .payload(&WARM_UP.to_be_bytes()[..]),
        )
        .map_err(|(e, _)| e)?;
    producer.flush(Duration::from_secs(30))?;
    ready
        .recv_timeout(Duration::from_secs(30))
        .context("the warm-up record did not come back through the node within 30 s")?;
    let start = epoch.elapsed();
    let interval = Duration::from_secs_f64(1.0 / args.latency_rate as f64);
    for i in 0..total {
        // Paced by the schedule, not by the previous send, so a slow
        // moment is not hidden (no coordinated omission on the producer).
        let due = start + interval * i as u32;
        if let Some(wait) = due.checked_sub(epoch.elapsed()) {
            thread::sleep(wait);
        }
        let mut payload = (epoch.elapsed().as_nanos() as u64).to_be_bytes().to_vec();
        payload.resize(100, b'v');
        producer
            .send(
                BaseRecord::<(), [u8]>::to(TOPIC)
                    .partition(0)
                    .payload(&payload),
            )
            .map_err(|(e, _)| e)?;
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !reader.is_finished() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    done.store(true, Ordering::Relaxed);
    let mut latencies = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the latency reader panicked"))??;
    if (latencies.len() as u64) < total {
        bail!(
            "only {} of {total} records came back through the node",
            latencies.len()
        );
    }
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    Ok(Latency {
        offered_per_s: args.latency_rate,
        records: total,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: at(1.0),
        target_p99_ms: 5.0,
    })
}
