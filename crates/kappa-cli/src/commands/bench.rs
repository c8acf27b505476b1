//! `kappa bench log`: append and read-back throughput of the embedded log,
//! against a raw `write` + `fsync` of the same bytes measured in the same run.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::Bytes;
use clap::{Args, Subcommand};
use kappa_log::{
    Commit, Durability, EmbeddedLog, EmbeddedOptions, FetchLimits, Log, ProducerRecord,
    TopicPartition, TopicSpec,
};
use serde::Serialize;

/// Largest `--batch`.
const BATCH_RECORDS_MAX: usize = 100_000;
/// Largest value size: the default `max_record_bytes` of a topic, less room for the record's framing.
const VALUE_BYTES_MAX: usize = 1024 * 1024 - 64;

/// Largest payload of one commit, which the benchmark holds in memory.
const BATCH_PAYLOAD_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Sequential append and full read-back of the embedded log.
    Log(LogBenchArgs),
    /// Topologies on one worker thread with exactly-once commits.
    Streams(super::bench_streams::StreamsBenchArgs),
    /// The HTTP command API: async throughput and sync latency.
    Gateway(super::bench_gateway::GatewayBenchArgs),
    /// The PostgreSQL sink against a batched binary COPY of the same rows.
    Postgres(super::bench_postgres::PostgresBenchArgs),
    /// The Kafka backend on Apache Kafka (or tansu): filter+map against a plain rdkafka loop, and restore speed.
    Kafka(super::bench_kafka::KafkaBenchArgs),
    /// librdkafka through the Kafka-protocol node against direct appends, and latency through it.
    Broker(super::bench_broker::BrokerBenchArgs),
}

/// Arguments of `kappa bench log`.
#[derive(Debug, Args)]
pub struct LogBenchArgs {
    /// Records to append per value size (capped by --bytes-max).
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Value sizes in bytes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "100,1024")]
    value_sizes: Vec<usize>,
    /// Records per commit.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Rounds per value size; raw baseline and log alternate within each
    /// round and medians are reported, because a shared machine is noisy.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Most value bytes appended per value size.
    #[arg(long, default_value_t = 512 * 1024 * 1024)]
    bytes_max: u64,
    /// Durability of the log under test.
    #[arg(long, default_value = "always")]
    durability: Durability,
    /// Scratch directory (a fresh subdirectory is made and removed).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct SizeResult {
    value_bytes: usize,
    records: u64,
    batch_records: usize,
    rounds: usize,
    raw_write_fsync_mb_per_s: f64,
    append_records_per_s: f64,
    append_mb_per_s: f64,
    append_vs_raw_ratio: f64,
    read_records_per_s: f64,
    read_mb_per_s: f64,
    /// Per-round seconds: (raw, append, read).
    samples_s: Vec<(f64, f64, f64)>,
}

#[derive(Debug, Serialize)]
struct Report {
    benchmark: &'static str,
    durability: String,
    results: Vec<SizeResult>,
}

/// Runs a benchmark.
pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Log(args) => bench_log(&args),
        BenchCommand::Streams(args) => super::bench_streams::run(&args),
        BenchCommand::Gateway(args) => super::bench_gateway::run(&args),
        BenchCommand::Postgres(args) => super::bench_postgres::run(&args),
        BenchCommand::Kafka(args) => super::bench_kafka::run(&args),
        BenchCommand::Broker(args) => super::bench_broker::run(&args),
    }
}

fn bench_log(args: &LogBenchArgs) -> anyhow::Result<()> {
    if args.batch == 0 || args.records == 0 || args.rounds == 0 || args.value_sizes.contains(&0) {
        bail!("--records, --batch, --rounds and every --value-sizes entry must be positive");
    }
    if args.batch > BATCH_RECORDS_MAX || args.value_sizes.iter().any(|&v| v > VALUE_BYTES_MAX) {
        bail!(
            "--batch may be at most {BATCH_RECORDS_MAX} and each value size at most {VALUE_BYTES_MAX} bytes"
        );
    }
    if args
        .value_sizes
        .iter()
        .any(|&v| v * args.batch > BATCH_PAYLOAD_BYTES_MAX)
    {
        bail!("--batch times a value size must be at most {BATCH_PAYLOAD_BYTES_MAX} bytes");
    }
    let scratch = super::bench_scratch(args.dir.as_deref().unwrap_or(std::path::Path::new(".")))?;
    let mut report = Report {
        benchmark: "log",
        durability: args.durability.to_string(),
        results: Vec::new(),
    };
    for &size in &args.value_sizes {
        let records = args.records.min((args.bytes_max / size as u64).max(1));
        let payload = payload(size, args.batch);
        let mut samples = Vec::with_capacity(args.rounds);
        for round in 0..args.rounds {
            let raw = raw_baseline(
                &scratch.path().join(format!("raw-{size}")),
                &payload,
                records,
                args.batch,
            )?;
            let dir = scratch.path().join(format!("log-{size}-{round}"));
            let (append, read) = log_run(&dir, args, &payload, size, records)?;
            std::fs::remove_dir_all(&dir).ok();
            samples.push((raw.as_secs_f64(), append.as_secs_f64(), read.as_secs_f64()));
        }
        let raw = median(samples.iter().map(|s| s.0));
        let append = median(samples.iter().map(|s| s.1));
        let read = median(samples.iter().map(|s| s.2));
        let ratio = median(samples.iter().map(|s| s.0 / s.1));
        let mb = (records * size as u64) as f64 / 1e6;
        report.results.push(SizeResult {
            value_bytes: size,
            records,
            batch_records: args.batch,
            rounds: args.rounds,
            raw_write_fsync_mb_per_s: mb / raw,
            append_records_per_s: records as f64 / append,
            append_mb_per_s: mb / append,
            append_vs_raw_ratio: ratio,
            read_records_per_s: records as f64 / read,
            read_mb_per_s: mb / read,
            samples_s: samples,
        });
    }
    super::print_bench_report(&report, args.json, || {
        println!("durability: {}", report.durability);
        println!(
            "{:>6} {:>9} {:>14} {:>11} {:>11} {:>7} {:>14} {:>10}",
            "value",
            "records",
            "append rec/s",
            "append MB/s",
            "raw MB/s",
            "ratio",
            "read rec/s",
            "read MB/s"
        );
        for r in &report.results {
            println!(
                "{:>6} {:>9} {:>14.0} {:>11.1} {:>11.1} {:>7.2} {:>14.0} {:>10.1}",
                r.value_bytes,
                r.records,
                r.append_records_per_s,
                r.append_mb_per_s,
                r.raw_write_fsync_mb_per_s,
                r.append_vs_raw_ratio,
                r.read_records_per_s,
                r.read_mb_per_s
            );
        }
    })
}

pub(crate) fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One batch worth of incompressible value bytes (xorshift), sliced per record.
fn payload(size: usize, batch: usize) -> Bytes {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut v = Vec::with_capacity(size * batch);
    while v.len() < size * batch {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(size * batch);
    Bytes::from(v)
}

/// The floor: the same value bytes, one `write` + `fsync` per batch.
fn raw_baseline(
    path: &Path,
    payload: &Bytes,
    records: u64,
    batch: usize,
) -> anyhow::Result<Duration> {
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)?;
    let size = payload.len() / batch;
    let started = Instant::now();
    let mut left = records;
    while left > 0 {
        let n = left.min(batch as u64) as usize;
        f.write_all(&payload[..n * size])?;
        f.sync_all()?;
        left -= n as u64;
    }
    let elapsed = started.elapsed();
    drop(f);
    std::fs::remove_file(path).ok();
    Ok(elapsed)
}

fn log_run(
    dir: &Path,
    args: &LogBenchArgs,
    payload: &Bytes,
    size: usize,
    records: u64,
) -> anyhow::Result<(Duration, Duration)> {
    let log = EmbeddedLog::open_with(dir, EmbeddedOptions::default().durability(args.durability))?;
    log.create_topic(&TopicSpec::new("bench", 1))?;
    let bar = super::progress("appending");
    let started = Instant::now();
    let mut left = records;
    let timestamp = kappa_log::now_ms();
    while left > 0 {
        let n = left.min(args.batch as u64) as usize;
        let mut commit = Commit::new();
        commit.append_all(
            "bench",
            Some(0),
            (0..n).map(|i| {
                ProducerRecord::value(payload.slice(i * size..(i + 1) * size))
                    .with_timestamp(timestamp)
            }),
        );
        log.commit(commit)?;
        left -= n as u64;
        bar.inc(n as u64);
    }
    let append = started.elapsed();
    bar.finish_and_clear();

    let started = Instant::now();
    let mut out = Vec::with_capacity(100_000);
    let mut at = 0u64;
    let mut seen = 0u64;
    let tp = [(TopicPartition::new("bench", 0), 0u64)];
    let limits = FetchLimits {
        records_max: 100_000,
        bytes_max: 64 * 1024 * 1024,
        wait_max: Duration::ZERO,
    };
    let mut cursor = tp;
    while at < records {
        out.clear();
        cursor[0].1 = at;
        let outcome = log.fetch(&cursor, limits, &mut out)?;
        if out.is_empty() {
            bail!("read-back stopped at offset {at} of {records}");
        }
        seen += out.len() as u64;
        at = outcome.next_offsets[0];
    }
    let read = started.elapsed();
    if seen != records {
        bail!("read back {seen} records, appended {records}");
    }
    Ok((append, read))
}
