//! `kappa produce TOPIC`: one record per line of standard input.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Instant;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use kappa_log::{Commit, Log, ProducerRecord};

/// Most records per commit accepted by `--batch-size`.
const BATCH_SIZE_MAX: usize = 100_000;

/// Arguments of `kappa produce`.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Topic to append to.
    topic: String,
    /// Key for every record.
    #[arg(long, conflicts_with = "key_separator")]
    key: Option<String>,
    /// Split each line at the first SEP into key and value.
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
    /// Append to this partition instead of partitioning by key.
    #[arg(long)]
    partition: Option<u32>,
    /// Records per commit (when stdin is a terminal every line commits at once).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=BATCH_SIZE_MAX as u64))]
    batch_size: u64,
    /// Print the position (topic/partition/offset) of every record once its commit is durable.
    #[arg(long)]
    print_positions: bool,
}

/// Runs `kappa produce`.
pub fn run(log: &dyn Log, args: ProduceArgs) -> anyhow::Result<()> {
    // Fail before reading input if the destination is wrong.
    let topic = log
        .describe_topic(&args.topic)
        .with_context(|| format!("producing to {:?}", args.topic))?;
    if let Some(p) = args.partition
        && p >= topic.spec.partitions
    {
        bail!(
            "partition {p} is out of range for topic {:?}, which has {} partition(s)",
            args.topic,
            topic.spec.partitions
        );
    }
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    let batch_size = if interactive {
        1
    } else {
        args.batch_size as usize
    };
    let fixed_key = args
        .key
        .as_ref()
        .map(|k| Bytes::copy_from_slice(k.as_bytes()));
    let started = Instant::now();
    let mut out = Batcher {
        log,
        args: &args,
        pending: Vec::with_capacity(batch_size),
        produced: 0,
        commits: 0,
        bar: super::progress("producing"),
        stdout: std::io::stdout().lock(),
    };
    let mut reader = stdin.lock();
    let mut line = Vec::new();
    let mut line_no = 0u64;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .context("reading standard input")?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        let record = match (&args.key_separator, &fixed_key) {
            (Some(sep), _) => {
                let Some(at) = find(&line, sep.as_bytes()) else {
                    out.flush(line_no - 1)?;
                    bail!(
                        "line {line_no} has no key separator {sep:?}; the {} records before it were committed",
                        out.produced
                    );
                };
                ProducerRecord::value(Bytes::copy_from_slice(&line[at + sep.len()..]))
                    .with_key(Bytes::copy_from_slice(&line[..at]))
            }
            (None, Some(key)) => {
                ProducerRecord::value(Bytes::copy_from_slice(&line)).with_key(key.clone())
            }
            (None, None) => ProducerRecord::value(Bytes::copy_from_slice(&line)),
        };
        out.pending.push(record);
        if out.pending.len() >= batch_size {
            out.flush(line_no)?;
        }
    }
    out.flush(line_no)?;
    out.bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "produced {} records to {} in {} commit(s) in {secs:.2}s ({:.0} records/s)",
        out.produced,
        args.topic,
        out.commits,
        out.produced as f64 / secs.max(1e-9)
    );
    Ok(())
}

/// Collects lines into commits.
struct Batcher<'a> {
    log: &'a dyn Log,
    args: &'a ProduceArgs,
    pending: Vec<ProducerRecord>,
    produced: u64,
    commits: u64,
    bar: indicatif::ProgressBar,
    stdout: std::io::StdoutLock<'static>,
}

impl Batcher<'_> {
    /// Commits the pending records; `last_line` is the input line of the last one.
    fn flush(&mut self, last_line: u64) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let count = self.pending.len() as u64;
        let mut commit = Commit::new();
        commit.append_all(
            &self.args.topic,
            self.args.partition,
            self.pending.drain(..),
        );
        let receipt = self.log.commit(commit).with_context(|| {
            format!(
                "committing lines {}..={last_line}; the {} records before them were committed",
                last_line + 1 - count,
                self.produced
            )
        })?;
        self.produced += count;
        self.commits += 1;
        self.bar.set_position(self.produced);
        if self.args.print_positions {
            for p in &receipt.positions {
                writeln!(self.stdout, "{p}")?;
            }
            self.stdout.flush()?;
        }
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}
