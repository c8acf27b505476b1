//! `kappa consume TOPIC`: print records.

use std::collections::HashMap;
use std::io::{BufWriter, ErrorKind, Write};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use bytes::Bytes;
use clap::{Args, ValueEnum};
use kappa_log::{Commit, FetchLimits, Log, Record, TopicPartition};

/// How long one fetch waits for new records when following.
const FOLLOW_WAIT: Duration = Duration::from_millis(500);
/// Records per fetch.
const FETCH_RECORDS_MAX: usize = 10_000;

/// Output format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// The value alone, one per line.
    Value,
    /// One JSON object per line with topic, partition, offset, timestamp, key, value, headers.
    Json,
}

/// Arguments of `kappa consume`.
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Topic to read.
    topic: String,
    /// Start at the first offset held (ignoring the group's position).
    #[arg(long, conflicts_with_all = ["from_offset", "from_time"])]
    from_beginning: bool,
    /// Start at this offset in every partition read.
    #[arg(long, conflicts_with = "from_time")]
    from_offset: Option<u64>,
    /// Start at the first record at or after this time (RFC 3339, e.g. 2026-11-26T10:00:00Z).
    #[arg(long, value_parser = parse_time)]
    from_time: Option<i64>,
    /// Read only this partition.
    #[arg(long)]
    partition: Option<u32>,
    /// Stop after this many records.
    #[arg(long)]
    max: Option<u64>,
    /// Keep waiting for new records instead of stopping at the end.
    #[arg(long)]
    follow: bool,
    /// Consumer group: start from its committed positions and commit progress.
    #[arg(long)]
    group: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "value")]
    format: Format,
}

fn parse_time(s: &str) -> Result<i64, String> {
    let t = humantime::parse_rfc3339_weak(s)
        .map_err(|e| format!("{s:?} is not an RFC 3339 time: {e}"))?;
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| format!("{s:?} is before 1970"))?
        .as_millis();
    i64::try_from(ms).map_err(|_| format!("{s:?} is too far in the future"))
}

/// Runs `kappa consume`.
pub fn run(log: &dyn Log, args: ConsumeArgs) -> anyhow::Result<()> {
    let topic = log
        .describe_topic(&args.topic)
        .with_context(|| format!("consuming {:?}", args.topic))?;
    let partitions: Vec<u32> = match args.partition {
        Some(p) if p >= topic.spec.partitions => bail!(
            "partition {p} is out of range for topic {:?}, which has {} partition(s)",
            args.topic,
            topic.spec.partitions
        ),
        Some(p) => vec![p],
        None => (0..topic.spec.partitions).collect(),
    };
    let name: Arc<str> = args.topic.as_str().into();
    let committed: HashMap<u32, u64> = match &args.group {
        Some(g) => log
            .group_positions(g)?
            .into_iter()
            .filter(|(tp, _)| tp.topic == name)
            .map(|(tp, o)| (tp.partition, o))
            .collect(),
        None => HashMap::new(),
    };

    let mut cursors: Vec<(TopicPartition, u64)> = Vec::with_capacity(partitions.len());
    let mut stop_at: Vec<u64> = Vec::with_capacity(partitions.len());
    for p in partitions {
        let tp = TopicPartition::new(name.clone(), p);
        let range = log.offsets(&tp)?;
        let wanted = if args.from_beginning {
            range.start
        } else if let Some(o) = args.from_offset {
            o
        } else if let Some(ms) = args.from_time {
            log.offset_for_timestamp(&tp, ms)?.unwrap_or(range.end)
        } else {
            committed.get(&p).copied().unwrap_or(range.start)
        };
        let start = wanted.clamp(range.start, range.end);
        if start != wanted {
            eprintln!(
                "note: {tp} holds offsets {}..{}; starting at {start} instead of {wanted}",
                range.start, range.end
            );
        }
        cursors.push((tp, start));
        stop_at.push(range.end);
    }

    let mut out = BufWriter::with_capacity(256 * 1024, std::io::stdout().lock());
    let bar = super::progress("consuming");
    let mut records: Vec<Record> = Vec::with_capacity(FETCH_RECORDS_MAX);
    let mut printed = 0u64;
    let limit = args.max.unwrap_or(u64::MAX);
    while printed < limit {
        if !args.follow && cursors.iter().zip(&stop_at).all(|((_, at), end)| at >= end) {
            break;
        }
        records.clear();
        let remaining = usize::try_from(limit - printed).unwrap_or(usize::MAX);
        let limits = FetchLimits {
            records_max: FETCH_RECORDS_MAX.min(remaining),
            wait_max: if args.follow {
                FOLLOW_WAIT
            } else {
                Duration::ZERO
            },
            ..FetchLimits::default()
        };
        let outcome = log.fetch(&cursors, limits, &mut records)?;
        for r in &records {
            let written = match args.format {
                Format::Value => write_value(&mut out, r),
                Format::Json => write_json(&mut out, r),
            };
            match written {
                Err(e) if e.kind() == ErrorKind::BrokenPipe => return Ok(()),
                other => other?,
            }
        }
        printed += records.len() as u64;
        bar.set_position(printed);
        for ((_, at), next) in cursors.iter_mut().zip(&outcome.next_offsets) {
            *at = *next;
        }
        match out.flush() {
            Err(e) if e.kind() == ErrorKind::BrokenPipe => return Ok(()),
            other => other?,
        }
        if let Some(group) = &args.group
            && !records.is_empty()
        {
            let mut commit = Commit::new();
            for (tp, at) in &cursors {
                commit.set_group_position(group, tp.clone(), *at);
            }
            log.commit(commit)
                .context("committing the group's positions")?;
        }
    }
    bar.finish_and_clear();
    Ok(())
}

fn write_value(out: &mut impl Write, r: &Record) -> std::io::Result<()> {
    if let Some(v) = &r.value {
        out.write_all(v)?;
    }
    out.write_all(b"\n")
}

/// Text if it is UTF-8, else `{"base64": ...}`, so binary data survives.
fn bytes_json(b: &Bytes) -> serde_json::Value {
    match std::str::from_utf8(b) {
        Ok(s) => serde_json::Value::String(s.to_owned()),
        Err(_) => {
            serde_json::json!({ "base64": base64::engine::general_purpose::STANDARD.encode(b) })
        }
    }
}

/// One line of `--format json`; a struct so the fields keep this order.
#[derive(serde::Serialize)]
struct JsonRecord<'a> {
    topic: &'a str,
    partition: u32,
    offset: u64,
    timestamp: i64,
    key: Option<serde_json::Value>,
    value: Option<serde_json::Value>,
    headers: Vec<JsonHeader<'a>>,
}

/// A header in `--format json`; a list, not a map, since names may repeat.
#[derive(serde::Serialize)]
struct JsonHeader<'a> {
    name: &'a str,
    value: serde_json::Value,
}

fn write_json(out: &mut impl Write, r: &Record) -> std::io::Result<()> {
    let line = JsonRecord {
        topic: &r.topic,
        partition: r.partition,
        offset: r.offset,
        timestamp: r.timestamp,
        key: r.key.as_ref().map(bytes_json),
        value: r.value.as_ref().map(bytes_json),
        headers: r
            .headers
            .iter()
            .map(|h| JsonHeader {
                name: h.name_str(),
                value: bytes_json(&h.value),
            })
            .collect(),
    };
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")
}
