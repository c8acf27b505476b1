//! `kappa bench streams`: topologies on one worker thread with exactly-once
//! commits on the embedded log, against a raw read of the same input in the
//! same run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use kappa_log::{
    Commit, Durability, EmbeddedLog, EmbeddedOptions, FetchLimits, Log, ProducerRecord,
    TopicPartition, TopicSpec,
};
use kappa_streams::{
    Emit, I64, Json, Materialized, Streams, StreamsBuilder, StreamsConfig, TimeWindows, Topology,
    Utf8, WindowedSerde,
};
use serde::Serialize;

/// Input records appended per commit while preparing.
const PREFILL_BATCH: usize = 10_000;

/// Arguments of `kappa bench streams`.
#[derive(Debug, Args)]
pub struct StreamsBenchArgs {
    /// Input records per scenario.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Durability of the log (exactly-once commits fsync under `always`).
    #[arg(long, default_value = "always")]
    durability: Durability,
    /// Scratch directory (a fresh subdirectory is made and removed).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Run only these scenarios (comma-separated names).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Days of event time the input spans; with 30-day windows advancing
    /// daily, a longer span closes more windows and emits more results.
    #[arg(long, default_value_t = 90)]
    span_days: i64,
    /// Rounds per scenario, each on a fresh log; the raw read and the
    /// topology alternate within a round and medians are reported,
    /// because a shared machine is noisy.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

#[derive(Debug, Serialize)]
struct ScenarioResult {
    scenario: &'static str,
    records: u64,
    distinct_keys: u64,
    /// The median of the rounds.
    records_per_s: f64,
    /// Each round's, in order.
    rounds_records_per_s: Vec<f64>,
    /// Records the topology wrote (in each round).
    outputs: u64,
    raw_read_records_per_s: f64,
    ratio_to_raw_read: f64,
    target_records_per_s: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    benchmark: &'static str,
    durability: String,
    threads: usize,
    span_days: i64,
    rounds: usize,
    results: Vec<ScenarioResult>,
}

/// One round of `scenario` on a fresh log in `dir`: the topology's
/// records per second, a plain read's of the same input, and the records
/// the topology wrote.
fn run_scenario(
    args: &StreamsBenchArgs,
    scenario: &str,
    keys: u64,
    dir: &std::path::Path,
) -> anyhow::Result<(f64, f64, u64)> {
    let log: Arc<dyn Log> = Arc::new(EmbeddedLog::open_with(
        dir,
        EmbeddedOptions::default().durability(args.durability),
    )?);
    prefill(&*log, args.records, keys, args.span_days.max(1))?;
    let raw = raw_read(&*log, args.records)?;
    let topology = match scenario {
        "filter-map" => filter_map(),
        "keyed-count" => keyed_count(Materialized::persistent("counts")),
        "keyed-count-mem" => keyed_count(Materialized::in_memory("counts")),
        _ => hopping_sum(),
    }?;
    let mut config = StreamsConfig::new(scenario);
    config.num_threads = 1;
    let started = Instant::now();
    let streams = Arc::new(Streams::start(log.clone(), topology, config)?);
    let (probe, total) = (streams.clone(), args.records);
    let shown = kappa_service::Progress::follow(scenario.to_owned(), move || {
        (probe.metrics().records_processed, total)
    });
    streams.wait_for_inputs()?;
    let elapsed = started.elapsed();
    // Drawn to the end, and the probe's hold on the topology let go.
    drop(shown);
    Arc::try_unwrap(streams)
        .map_err(|_| anyhow::anyhow!("the topology is still shared after its run"))?
        .close()?;
    // Check the work was done: filter-map keeps even values, counts emit one per input.
    let produced = log.offsets(&TopicPartition::new("output", 0))?.end;
    let expected = match scenario {
        "filter-map" => Some(args.records.div_ceil(2)),
        // Final results: one per key and closed window, which depends on the spread.
        "hopping-sum" => None,
        _ => Some(args.records),
    };
    if expected.is_some_and(|e| e != produced) || produced == 0 {
        bail!("{scenario} wrote {produced} records, expected {expected:?}");
    }
    Ok((
        args.records as f64 / elapsed.as_secs_f64(),
        args.records as f64 / raw.as_secs_f64(),
        produced,
    ))
}

/// Runs the streams benchmarks.
pub fn run(args: &StreamsBenchArgs) -> anyhow::Result<()> {
    if args.records == 0 || args.rounds == 0 {
        bail!("--records and --rounds must be positive");
    }
    let scratch = super::bench_scratch(args.dir.as_deref().unwrap_or(std::path::Path::new(".")))?;
    let mut report = Report {
        benchmark: "streams",
        durability: args.durability.to_string(),
        threads: 1,
        span_days: args.span_days,
        rounds: args.rounds,
        results: Vec::new(),
    };
    let scenarios: [(&'static str, u64, f64); 4] = [
        ("filter-map", 1000, 1_000_000.0),
        ("keyed-count", args.records, 500_000.0),
        ("keyed-count-mem", args.records, 500_000.0),
        // The target issue 24 sets for final results of 30-day windows.
        ("hopping-sum", HOPPING_KEYS.min(args.records), 150_000.0),
    ];
    for (scenario, keys, target) in scenarios {
        if !args.only.is_empty() && !args.only.iter().any(|o| o == scenario) {
            continue;
        }
        let mut rates = Vec::with_capacity(args.rounds);
        let mut raw_rates = Vec::with_capacity(args.rounds);
        let mut outputs = 0;
        for round in 0..args.rounds {
            let dir = scratch.path().join(format!("{scenario}-{round}"));
            let (rate, raw_rate, produced) = run_scenario(args, scenario, keys, &dir)?;
            rates.push(rate);
            raw_rates.push(raw_rate);
            outputs = produced;
            std::fs::remove_dir_all(&dir).ok();
        }
        let rate = super::bench::median(rates.iter().copied());
        let raw_rate = super::bench::median(raw_rates.iter().copied());
        report.results.push(ScenarioResult {
            scenario,
            records: args.records,
            distinct_keys: keys,
            records_per_s: rate,
            rounds_records_per_s: rates,
            outputs,
            raw_read_records_per_s: raw_rate,
            ratio_to_raw_read: rate / raw_rate,
            target_records_per_s: target,
        });
    }
    super::print_bench_report(&report, args.json, || {
        println!(
            "durability: {}, one worker thread, exactly-once commits every 100 ms, median of {} rounds",
            report.durability, report.rounds
        );
        println!(
            "{:<16} {:>9} {:>9} {:>12} {:>10} {:>14} {:>7} {:>10}",
            "scenario",
            "records",
            "keys",
            "records/s",
            "outputs",
            "raw read r/s",
            "ratio",
            "target"
        );
        for r in &report.results {
            println!(
                "{:<16} {:>9} {:>9} {:>12.0} {:>10} {:>14.0} {:>7.3} {:>10.0}",
                r.scenario,
                r.records,
                r.distinct_keys,
                r.records_per_s,
                r.outputs,
                r.raw_read_records_per_s,
                r.ratio_to_raw_read,
                r.target_records_per_s
            );
        }
    })
}

fn filter_map() -> anyhow::Result<Topology> {
    let b = StreamsBuilder::new();
    b.stream("input", Utf8, Json::<i64>::new())
        .filter(|_, v| v % 2 == 0)
        .map_values(|v| v + 1)
        .to("output", Utf8, Json::<i64>::new());
    Ok(b.build()?)
}

fn keyed_count(store: Materialized) -> anyhow::Result<Topology> {
    let b = StreamsBuilder::new();
    b.stream("input", Utf8, Json::<i64>::new())
        .group_by_key(Utf8)
        .count(store)
        .to("output", Utf8, I64);
    Ok(b.build()?)
}

/// Keys of the hopping-window scenario.
const HOPPING_KEYS: u64 = 100_000;
const DAY_MS: i64 = 86_400_000;

/// Sum per key over 30-day windows advancing by a day, emitted when final.
fn hopping_sum() -> anyhow::Result<Topology> {
    let day = Duration::from_millis(DAY_MS as u64);
    let b = StreamsBuilder::new();
    b.stream("input", Utf8, Json::<i64>::new())
        .group_by_key(Utf8)
        .windowed_by(TimeWindows::of_size_with_grace(day * 30, day * 2).advance_by(day))
        .emit(Emit::Final)
        .aggregate_combinable(
            Materialized::in_memory("sums"),
            Json::<i64>::new(),
            || 0,
            |_, v, s| s + v,
            |a, b| a + b,
        )
        .to(
            "output",
            WindowedSerde::new(Utf8, day * 30),
            Json::<i64>::new(),
        );
    Ok(b.build()?)
}

fn prefill(log: &dyn Log, records: u64, keys: u64, span_days: i64) -> anyhow::Result<()> {
    log.create_topic(&TopicSpec::new("input", 1))?;
    log.create_topic(&TopicSpec::new("output", 1))?;
    let bar = super::progress("preparing input");
    let mut i = 0u64;
    while i < records {
        let n = (records - i).min(PREFILL_BATCH as u64);
        let mut c = Commit::new();
        c.append_all(
            "input",
            Some(0),
            (i..i + n).map(|j| {
                // Event times rise through the input, so the windowed
                // scenario keeps closing windows.
                let t = (j as i64) * span_days * DAY_MS / records as i64;
                ProducerRecord::value(j.to_string())
                    .with_key(format!("k{}", j % keys))
                    .with_timestamp(t)
            }),
        );
        log.commit(c)?;
        i += n;
        bar.set_position(i);
    }
    bar.finish_and_clear();
    Ok(())
}

/// The floor: reading the input with the same fetch sizes, doing nothing.
fn raw_read(log: &dyn Log, records: u64) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut at = 0;
    let mut out = Vec::with_capacity(10_000);
    let limits = FetchLimits::default();
    while at < records {
        out.clear();
        at = log
            .fetch(&[(TopicPartition::new("input", 0), at)], limits, &mut out)?
            .next_offsets[0];
    }
    Ok(started.elapsed())
}
