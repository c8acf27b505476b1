//! `kappa bench postgres`: the PostgreSQL sink's throughput (rows/s from
//! the log into a table, exactly once) against a plain batched binary
//! `COPY` of the same rows into the same kind of table, in the same run.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Args;
use kappa_effects::PostgresSink;
use kappa_effects::postgres::{self, Change, ColumnType, PostgresSinkConfig, Table, TempCluster};
use kappa_log::{Durability, EmbeddedLog, EmbeddedOptions, Log, ProducerRecord, TopicSpec};
use serde::Serialize;

use super::bench::median;
use serde_json::{Value, json};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;

/// Arguments of `kappa bench postgres`.
#[derive(Debug, Args)]
pub struct PostgresBenchArgs {
    /// Rows (records on the topic, one row each).
    #[arg(long, default_value_t = 200_000)]
    rows: u64,
    /// Rows per transaction, for both the sink and the COPY baseline.
    #[arg(long, default_value_t = 5_000)]
    batch: usize,
    /// Rounds; baseline and sink alternate and medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// An existing server's connection string (default: a private server
    /// started for the run from Debian's PostgreSQL programs).
    #[arg(long)]
    postgres: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    rows: u64,
    batch_rows: usize,
    rounds: usize,
    copy_rows_per_s: f64,
    sink_rows_per_s: f64,
    sink_vs_copy_ratio: f64,
    target_ratio: f64,
    /// The sink again over a table that holds every row already (each
    /// row an update: the upsert path instead of COPY).
    sink_update_rows_per_s: f64,
    sink_update_vs_copy_ratio: f64,
    /// Per-round seconds: (copy, sink, sink over a full table).
    samples_s: Vec<(f64, f64, f64)>,
}

fn table(name: &str) -> Table {
    Table::new(name, &["id"])
        .column("id", ColumnType::Text)
        .column("owner", ColumnType::Text)
        .column("cents", ColumnType::BigInt)
        .column("active", ColumnType::Boolean)
        .column("opened", ColumnType::TimestampMs)
        .column("score", ColumnType::Double)
}

/// The row of record `i`, as JSON (what both sides start from).
fn row(i: u64) -> Value {
    json!({
        "owner": format!("owner {}", i % 1000),
        "cents": (i.wrapping_mul(2_654_435_761) % 1_000_000_000) as i64,
        "active": !i.is_multiple_of(3),
        "opened": 1_700_000_000_000_i64 + (i as i64) * 1000,
        "score": (i % 997) as f64 / 4.0,
    })
}

fn mapping(r: &kappa_log::Record) -> Result<Change, String> {
    let id = String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned();
    let v: Value = serde_json::from_slice(r.value.as_deref().unwrap_or_default())
        .map_err(|e| e.to_string())?;
    Ok(Change::Upsert(vec![
        json!(id),
        v["owner"].clone(),
        v["cents"].clone(),
        v["active"].clone(),
        v["opened"].clone(),
        v["score"].clone(),
    ]))
}

pub fn run(args: &PostgresBenchArgs) -> anyhow::Result<()> {
    if args.rows == 0 || args.batch == 0 || args.rounds == 0 {
        bail!("--rows, --batch and --rounds must be positive");
    }
    let (cluster, url) = match &args.postgres {
        Some(url) => (None, url.clone()),
        None => {
            let c = TempCluster::start().context("starting a private PostgreSQL server")?;
            let url = c.url();
            (Some(c), url)
        }
    };
    let dir = tempfile::tempdir()?;
    let log: Arc<dyn Log> = Arc::new(EmbeddedLog::open_with(
        dir.path(),
        EmbeddedOptions::default().durability(Durability::Never),
    )?);
    log.create_topic(&TopicSpec::new("rows", 4))?;
    let mut i = 0;
    while i < args.rows {
        let end = (i + 10_000).min(args.rows);
        let records = (i..end)
            .map(|n| ProducerRecord::value(row(n).to_string()).with_key(format!("row-{n:09}")))
            .collect();
        log.append("rows", records)?;
        i = end;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        Ok::<_, tokio_postgres::Error>(client)
    })?;
    let copy_table = table("bench_copy");
    let sink_table = table("bench_sink");
    let mut samples = Vec::new();
    for round in 0..args.rounds {
        let copy_first = round % 2 == 0;
        let mut copy_s = 0.0;
        let mut sink_s = (0.0, 0.0);
        for step in 0..2 {
            if (step == 0) == copy_first {
                copy_s = runtime.block_on(copy_baseline(&client, &copy_table, args))?;
            } else {
                sink_s = sink_run(&runtime, &client, &url, &log, &sink_table, args)?;
            }
        }
        samples.push((copy_s, sink_s.0, sink_s.1));
    }
    let copy = args.rows as f64 / median(samples.iter().map(|s| s.0));
    let sink = args.rows as f64 / median(samples.iter().map(|s| s.1));
    let update = args.rows as f64 / median(samples.iter().map(|s| s.2));
    let report = Report {
        rows: args.rows,
        batch_rows: args.batch,
        rounds: args.rounds,
        copy_rows_per_s: copy,
        sink_rows_per_s: sink,
        sink_vs_copy_ratio: sink / copy,
        target_ratio: 0.5,
        sink_update_rows_per_s: update,
        sink_update_vs_copy_ratio: update / copy,
        samples_s: samples,
    };
    super::print_bench_report(&report, args.json, || {
        println!(
            "postgres: {} rows, {} per transaction, median of {} rounds\n  baseline binary COPY:         {:>10.0} rows/s\n  sink, new rows:               {:>10.0} rows/s  ratio {:.2} (target 0.50)\n  sink, every row an update:    {:>10.0} rows/s  ratio {:.2}",
            report.rows,
            report.batch_rows,
            report.rounds,
            copy,
            sink,
            report.sink_vs_copy_ratio,
            update,
            report.sink_update_vs_copy_ratio
        );
    })?;
    drop(cluster);
    Ok(())
}

/// An empty table of the benchmark's shape.
async fn reset(client: &tokio_postgres::Client, table: &Table) -> anyhow::Result<()> {
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {};\n{}",
            table.name,
            table.create_sql()?
        ))
        .await?;
    Ok(())
}

/// Seconds to parse the same JSON rows and COPY them in `batch`-row transactions.
async fn copy_baseline(
    client: &tokio_postgres::Client,
    table: &Table,
    args: &PostgresBenchArgs,
) -> anyhow::Result<f64> {
    reset(client, table).await?;
    let values: Vec<(String, String)> = (0..args.rows)
        .map(|n| (format!("row-{n:09}"), row(n).to_string()))
        .collect();
    let types = [
        Type::TEXT,
        Type::TEXT,
        Type::INT8,
        Type::BOOL,
        Type::TIMESTAMPTZ,
        Type::FLOAT8,
    ];
    let started = Instant::now();
    for chunk in values.chunks(args.batch) {
        let copy = client
            .copy_in(&format!(
                "COPY {} (id, owner, cents, active, opened, score) FROM STDIN BINARY",
                table.name
            ))
            .await?;
        let mut writer = std::pin::pin!(BinaryCopyInWriter::new(copy, &types));
        for (id, json) in chunk {
            let v: Value = serde_json::from_str(json)?;
            let owner = v["owner"].as_str().unwrap_or_default();
            let cents = v["cents"].as_i64().unwrap_or_default();
            let active = v["active"].as_bool().unwrap_or_default();
            let opened =
                UNIX_EPOCH + Duration::from_millis(v["opened"].as_u64().unwrap_or_default());
            let score = v["score"].as_f64().unwrap_or_default();
            writer
                .as_mut()
                .write(&[id, &owner, &cents, &active, &opened as &SystemTime, &score])
                .await?;
        }
        writer.as_mut().finish().await?;
    }
    let took = started.elapsed().as_secs_f64();
    count(client, table, args.rows).await?;
    Ok(took)
}

async fn count(client: &tokio_postgres::Client, table: &Table, rows: u64) -> anyhow::Result<()> {
    let n: i64 = client
        .query_one(&format!("SELECT count(*) FROM {}", table.name), &[])
        .await?
        .get(0);
    if n as u64 != rows {
        bail!("{} holds {n} rows, not {rows}", table.name);
    }
    Ok(())
}

/// Seconds for the sink to bring the whole topic into an empty table, then
/// again into the full table (its positions dropped, so every row is an update).
fn sink_run(
    runtime: &tokio::runtime::Runtime,
    client: &tokio_postgres::Client,
    url: &str,
    log: &Arc<dyn Log>,
    table: &Table,
    args: &PostgresBenchArgs,
) -> anyhow::Result<(f64, f64)> {
    runtime.block_on(reset(client, table))?;
    postgres::create_schema(url, table)?;
    postgres::rebuild(url, "bench-sink", table)?;
    let new = time_sink(url, log, table, args)?;
    runtime.block_on(count(client, table, args.rows))?;
    runtime.block_on(client.execute(
        &format!(
            "DELETE FROM {} WHERE sink = 'bench-sink'",
            postgres::POSITIONS_TABLE
        ),
        &[],
    ))?;
    let update = time_sink(url, log, table, args)?;
    runtime.block_on(count(client, table, args.rows))?;
    Ok((new, update))
}

fn time_sink(
    url: &str,
    log: &Arc<dyn Log>,
    table: &Table,
    args: &PostgresBenchArgs,
) -> anyhow::Result<f64> {
    let mut config = PostgresSinkConfig::new("bench-sink", "rows", table.clone());
    config.batch_max = args.batch;
    let started = Instant::now();
    let sink = PostgresSink::start(log.clone(), url, config, mapping)?;
    if !sink.wait_caught_up(Duration::from_secs(3600))? {
        bail!("the sink stopped: {:?}", sink.failure());
    }
    let took = started.elapsed().as_secs_f64();
    sink.close()?;
    Ok(took)
}
