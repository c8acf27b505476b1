//! `kappa bench kafka`: a stateless filter+map topology on the Kafka
//! backend against a plain rdkafka consume-filter-map-produce loop over
//! the same data, each on a fresh broker (Apache Kafka by default, or
//! tansu) in the same run; and the speed of restoring store state from a
//! changelog topic.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use kappa_kafka::testing::{ApacheKafka, Tansu};
use kappa_kafka::{CommitProtocol, KafkaConfig, KafkaLog};
use kappa_log::{Commit, Log, TopicSpec};
use kappa_streams::{Streams, StreamsBuilder, StreamsConfig, Utf8};
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::ToBytes;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use super::bench::median;

/// Arguments of `kappa bench kafka`.
#[derive(Debug, Args)]
pub struct KafkaBenchArgs {
    /// Input records for the filter+map comparison.
    #[arg(long, default_value_t = 200_000)]
    records: u64,
    /// Partitions of the input and output topics.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Rounds; baseline and Kappa alternate, each on a fresh broker, and
    /// medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Store entries written to a changelog and then restored.
    #[arg(long, default_value_t = 500_000)]
    restore_records: u64,
    /// The topology's commit interval.
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    commit_interval: Duration,
    /// The broker each measurement starts afresh.
    #[arg(long, value_enum, default_value_t = BrokerKind::ApacheKafka)]
    broker: BrokerKind,
    /// How the topology's task commits are made atomic: `kappa.commit`'s
    /// `auto`, `transactions` or `write-ahead`.
    #[arg(long, default_value = "auto", value_parser = parse_commit)]
    commit: CommitProtocol,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// `--commit` by the log's own parser of `kappa.commit`.
fn parse_commit(value: &str) -> Result<CommitProtocol, String> {
    let mut c = KafkaConfig::new("", "");
    c.set("kappa.commit", value).map_err(|e| e.to_string())?;
    Ok(c.commit)
}

/// Which broker the benchmark runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BrokerKind {
    /// Apache Kafka (one KRaft node, its jars installed by `scripts/test.sh`).
    ApacheKafka,
    /// tansu 0.6 with memory storage (`kappa.compat=tansu-0.6`).
    Tansu,
}

impl BrokerKind {
    fn describe(self) -> &'static str {
        match self {
            Self::ApacheKafka => "Apache Kafka (one KRaft node), a fresh broker per measurement",
            Self::Tansu => "tansu 0.6 (memory storage), a fresh broker per measurement",
        }
    }

    fn start(self) -> anyhow::Result<Broker> {
        Ok(match self {
            Self::ApacheKafka => Broker::Apache(ApacheKafka::start()?),
            Self::Tansu => Broker::Tansu(Tansu::start()?),
        })
    }
}

/// A running broker of either kind.
enum Broker {
    Apache(ApacheKafka),
    Tansu(Tansu),
}

impl Broker {
    fn bootstrap(&self) -> String {
        match self {
            Self::Apache(k) => k.bootstrap().to_owned(),
            Self::Tansu(t) => t.bootstrap(),
        }
    }

    /// A log's settings on this broker, its state in `state`.
    fn config(&self, state: &std::path::Path) -> KafkaConfig {
        match self {
            Self::Apache(k) => k.config(state),
            Self::Tansu(t) => t.config(state),
        }
    }
}

#[derive(Debug, Serialize)]
struct Report {
    benchmark: &'static str,
    broker: &'static str,
    records: u64,
    partitions: u32,
    rounds: usize,
    commit_interval_ms: u128,
    /// `kappa.commit` of the topology's log.
    commit: String,
    baseline_records_per_s: f64,
    kappa_records_per_s: f64,
    kappa_vs_baseline_ratio: f64,
    /// Records/s after the topology's first commit (start-up excluded).
    kappa_steady_records_per_s: f64,
    kappa_steady_vs_baseline_ratio: f64,
    target_ratio: f64,
    restore_records: u64,
    restore_records_per_s: f64,
    restore_raw_read_records_per_s: f64,
    restore_target_records_per_s: f64,
    /// Per round: (baseline seconds, kappa seconds, kappa records/s after its first commit).
    samples: Vec<(f64, f64, f64)>,
}

/// Kappa's whole run against the plain loop's (the Kafka path's target).
const TARGET_RATIO: f64 = 0.9;

fn value(i: u64) -> String {
    format!("order-{i}:amount={}", i * 7919 % 10_000)
}

/// The work both sides do per record.
fn keep(v: &str) -> bool {
    !v.ends_with('0')
}

fn transform(v: &str) -> String {
    v.to_uppercase()
}

fn client(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap).set("log_level", "3");
    c
}

/// Loads the broker's group and transaction coordinators (not measured).
/// A broker in service has them loaded; a fresh one creates their topics
/// on first use, seconds that would be charged to Kappa's side only (the
/// baseline uses neither a group nor transactions).
fn warm_coordinators(bootstrap: &str) -> anyhow::Result<()> {
    let producer: BaseProducer = client(bootstrap)
        .set("transactional.id", "bench-warm-up")
        .create()?;
    producer
        .init_transactions(Duration::from_secs(60))
        .context("loading the transaction coordinator")?;
    let consumer: BaseConsumer = client(bootstrap)
        .set("group.id", "bench-warm-up")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition("in", 0);
    consumer
        .committed_offsets(tpl, Duration::from_secs(60))
        .context("loading the group coordinator")?;
    Ok(())
}

/// Sends `record`; while `producer` refuses it (its queue is full), polls
/// for `poll` and tries again.
fn send_until_queued<K, P>(
    producer: &BaseProducer,
    mut record: BaseRecord<'_, K, P>,
    poll: Duration,
) where
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
{
    while let Err((_, back)) = producer.send(record) {
        record = back;
        producer.poll(poll);
    }
}

/// Fills `in` with the input (not measured).
fn prefill(bootstrap: &str, args: &KafkaBenchArgs) -> anyhow::Result<()> {
    let producer: BaseProducer = client(bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()?;
    for i in 0..args.records {
        let key = format!("k{}", i % 1000);
        let v = value(i);
        let p = kappa_log::partition_for_key(key.as_bytes(), args.partitions);
        let record = BaseRecord::<String, String>::to("in")
            .key(&key)
            .payload(&v)
            .partition(i32::try_from(p)?);
        send_until_queued(&producer, record, Duration::from_millis(5));
    }
    producer.flush(Duration::from_secs(60))?;
    Ok(())
}

fn topics(log: &dyn Log, partitions: u32) -> anyhow::Result<()> {
    for t in ["in", "out"] {
        log.create_topic(&TopicSpec::new(t, partitions))?;
    }
    Ok(())
}

/// A plain rdkafka loop: consume every input partition, filter, map,
/// produce with an idempotent producer, until everything is read and acknowledged.
fn baseline(args: &KafkaBenchArgs) -> anyhow::Result<f64> {
    let broker = args.broker.start()?;
    let bootstrap = broker.bootstrap();
    let state = tempfile::tempdir()?;
    let log = KafkaLog::open(broker.config(state.path()))?;
    topics(&log, args.partitions)?;
    prefill(&bootstrap, args)?;
    let started = Instant::now();
    let consumer: BaseConsumer = client(&bootstrap)
        .set("group.id", "bench-baseline")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..args.partitions {
        tpl.add_partition_offset("in", i32::try_from(p)?, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let producer: BaseProducer = client(&bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .create()?;
    let mut read = 0u64;
    let deadline = Instant::now() + Duration::from_secs(600);
    while read < args.records {
        if Instant::now() > deadline {
            bail!(
                "the baseline read only {read} of {} records in 10 minutes",
                args.records
            );
        }
        let Some(m) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = m?;
        read += 1;
        let v = String::from_utf8_lossy(m.payload().unwrap_or_default());
        if !keep(&v) {
            continue;
        }
        let out = transform(&v);
        let key = m.key().unwrap_or_default().to_vec();
        let record = BaseRecord::<Vec<u8>, String>::to("out")
            .key(&key)
            .payload(&out)
            .partition(m.partition());
        send_until_queued(&producer, record, Duration::from_millis(1));
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60))?;
    Ok(started.elapsed().as_secs_f64())
}

/// The same filter and map as a Kappa topology on the Kafka backend:
/// seconds in all, and records/s after the first commit.
fn kappa(args: &KafkaBenchArgs) -> anyhow::Result<(f64, f64)> {
    let broker = args.broker.start()?;
    let bootstrap = broker.bootstrap();
    let state = tempfile::tempdir()?;
    let mut config = broker.config(state.path());
    config.commit = args.commit;
    let log: Arc<dyn Log> = Arc::new(KafkaLog::open(config)?);
    topics(&*log, args.partitions)?;
    prefill(&bootstrap, args)?;
    if args.broker == BrokerKind::ApacheKafka {
        warm_coordinators(&bootstrap)?;
    }
    let started = Instant::now();
    let b = StreamsBuilder::new();
    b.stream("in", Utf8, Utf8)
        .filter(|_, v: &String| keep(v))
        .map_values(|v: String| transform(&v))
        .to("out", Utf8, Utf8);
    let mut config = StreamsConfig::new("bench-filter-map");
    config.num_threads = 1;
    config.commit_interval = args.commit_interval;
    let streams = Streams::start(log.clone(), b.build()?, config)?;
    let deadline = Instant::now() + Duration::from_secs(600);
    // The first commit marks the end of start-up (topic checks, restores,
    // assignment): what follows is the steady state.
    let mut first: Option<(Instant, u64)> = None;
    loop {
        let processed = streams.metrics().records_processed;
        if processed >= args.records {
            break;
        }
        if first.is_none() && processed > 0 {
            first = Some((Instant::now(), processed));
        }
        if Instant::now() > deadline || !streams.is_running() {
            bail!(
                "the topology processed {processed} of {} records",
                args.records
            );
        }
        // Sampling the committed counter; the benchmark, not a test.
        std::thread::sleep(Duration::from_millis(2));
    }
    let seconds = started.elapsed().as_secs_f64();
    let steady = first.map_or(f64::NAN, |(at, done)| {
        (args.records - done) as f64 / at.elapsed().as_secs_f64()
    });
    streams.close()?;
    Ok((seconds, steady))
}

/// Writes store entries through a declared changelog, then times a fresh
/// instance restoring them; and a plain read of the same topic.
fn restore(args: &KafkaBenchArgs) -> anyhow::Result<(f64, f64)> {
    let broker = args.broker.start()?;
    let bootstrap = broker.bootstrap();
    let prefix = b"kappa-streams/bench/store/".to_vec();
    {
        let state = tempfile::tempdir()?;
        let log = KafkaLog::open(broker.config(state.path()))?;
        log.declare_changelog(&prefix, "bench-store-changelog", args.partitions)?;
        let mut i = 0;
        while i < args.restore_records {
            let mut c = Commit::new();
            for n in i..(i + 20_000).min(args.restore_records) {
                let p = u32::try_from(n % u64::from(args.partitions))?;
                let mut key = prefix.clone();
                key.extend_from_slice(&p.to_be_bytes());
                key.extend_from_slice(format!("/card-{n:09}").as_bytes());
                c.put_metadata(key, format!("{{\"limit\":{n},\"used\":{}}}", n % 977));
            }
            log.commit(c)?;
            i += 20_000;
        }
    }
    let state = tempfile::tempdir()?;
    let log = KafkaLog::open(broker.config(state.path()))?;
    let stats = log.restore_stats();
    anyhow::ensure!(
        stats.records >= args.restore_records,
        "restored {} of {} records",
        stats.records,
        args.restore_records
    );
    let restore_rate = stats.records as f64 / stats.seconds;
    // A plain consumer reading the same changelog, for reference.
    let started = Instant::now();
    let consumer: BaseConsumer<kappa_kafka::ReaderContext> = client(&bootstrap)
        .set("group.id", "bench-raw")
        .set("enable.partition.eof", "true")
        .create_with_context(kappa_kafka::ReaderContext)?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..args.partitions {
        tpl.add_partition_offset(
            "bench-store-changelog",
            i32::try_from(p)?,
            Offset::Beginning,
        )?;
    }
    consumer.assign(&tpl)?;
    let (mut read, mut ended) = (0u64, 0u32);
    while ended < args.partitions {
        match consumer.poll(Duration::from_secs(10)) {
            Some(Ok(_)) => read += 1,
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => ended += 1,
            Some(Err(e)) => return Err(e).context("reading the changelog"),
            None => bail!("the plain read stalled after {read} records"),
        }
    }
    let raw_rate = read as f64 / started.elapsed().as_secs_f64();
    Ok((restore_rate, raw_rate))
}

pub fn run(args: &KafkaBenchArgs) -> anyhow::Result<()> {
    if args.records == 0 || args.rounds == 0 || args.partitions == 0 || args.restore_records == 0 {
        bail!("--records, --rounds, --partitions and --restore-records must be positive");
    }
    let mut samples = Vec::with_capacity(args.rounds);
    for round in 0..args.rounds {
        // Alternate which side runs first: the machine is shared and noisy.
        let (b, (k, steady)) = if round % 2 == 0 {
            let b = baseline(args)?;
            (b, kappa(args)?)
        } else {
            let k = kappa(args)?;
            (baseline(args)?, k)
        };
        eprintln!(
            "round {round}: baseline {b:.2} s, kappa {k:.2} s (after its first commit {steady:.0} records/s)"
        );
        samples.push((b, k, steady));
    }
    let records = args.records as f64;
    let baseline_rate = median(samples.iter().map(|s| records / s.0));
    let kappa_rate = median(samples.iter().map(|s| records / s.1));
    let steady_rate = median(samples.iter().map(|s| s.2));
    let (restore_rate, raw_rate) = restore(args)?;
    let report = Report {
        benchmark: "kafka",
        broker: args.broker.describe(),
        records: args.records,
        partitions: args.partitions,
        rounds: args.rounds,
        commit_interval_ms: args.commit_interval.as_millis(),
        commit: format!("{:?}", args.commit),
        baseline_records_per_s: baseline_rate,
        kappa_records_per_s: kappa_rate,
        kappa_vs_baseline_ratio: kappa_rate / baseline_rate,
        kappa_steady_records_per_s: steady_rate,
        kappa_steady_vs_baseline_ratio: steady_rate / baseline_rate,
        target_ratio: TARGET_RATIO,
        restore_records: args.restore_records,
        restore_records_per_s: restore_rate,
        restore_raw_read_records_per_s: raw_rate,
        restore_target_records_per_s: 500_000.0,
        samples,
    };
    super::print_bench_report(&report, args.json, || {
        println!(
            "kafka ({:?}): filter+map over {} records, {} partitions, median of {} rounds\n  baseline rdkafka loop:  {:>10.0} records/s\n  kappa topology:         {:>10.0} records/s  ratio {:.2} (target {TARGET_RATIO:.2})\n    after its start-up:   {:>10.0} records/s  ratio {:.2}\n  restore from changelog: {:>10.0} records/s  (target 500000; plain read {:.0}/s)",
            args.broker,
            report.records,
            report.partitions,
            report.rounds,
            baseline_rate,
            kappa_rate,
            report.kappa_vs_baseline_ratio,
            steady_rate,
            report.kappa_steady_vs_baseline_ratio,
            restore_rate,
            raw_rate
        );
    })
}
