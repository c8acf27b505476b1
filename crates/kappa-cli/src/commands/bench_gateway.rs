//! `kappa bench gateway`: the command API under load. Starts `kappa demo`
//! as a separate process on a scratch log, then measures async commands as
//! fast as they are answered — by the gateway alone (written and indexed),
//! then with the demo's trivial processor answering each — and sync
//! commands through that processor at a fixed offered rate.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use kappa_gateway::load::LoadConfig;
use serde_json::json;

use super::load::{drive, print_report};

/// Arguments of `kappa bench gateway`.
#[derive(Debug, Args)]
pub struct GatewayBenchArgs {
    /// How long each scenario runs.
    #[arg(long, default_value = "10s")]
    duration: humantime::Duration,
    /// Connections of the async scenario.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Offered rate of the sync scenario, commands per second.
    #[arg(long, default_value_t = 2000.0)]
    sync_rate: f64,
    /// Connections of the sync scenario.
    #[arg(long, default_value_t = 64)]
    sync_connections: usize,
    /// Durability of the scratch log.
    #[arg(long, default_value = "always")]
    durability: kappa_log::Durability,
    /// Scratch directory (a fresh subdirectory is made and removed).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Kills the server when the benchmark ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `kappa demo` on a fresh log under `scratch`; returns it and its address.
fn spawn_demo(
    args: &GatewayBenchArgs,
    scratch: &std::path::Path,
    name: &str,
    extra: &[&str],
) -> anyhow::Result<(Server, std::net::SocketAddr)> {
    let exe = std::env::current_exe().context("finding the kappa binary")?;
    let mut child = Command::new(exe)
        .arg("--log")
        .arg(scratch.join(name))
        .arg("--durability")
        .arg(args.durability.to_string())
        .args(["demo", "--http", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting kappa demo")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let server = Server(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .context("reading the demo's address")?;
    let Some(addr) = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http://"))
    else {
        bail!("kappa demo did not print its address (got {line:?})");
    };
    let addr = addr.parse().with_context(|| format!("parsing {addr}"))?;
    Ok((server, addr))
}

/// Runs `config` after a one-second warm-up (connection setup and first
/// allocations are not measured).
fn measure(config: &LoadConfig) -> anyhow::Result<kappa_gateway::load::LoadReport> {
    drive(&LoadConfig {
        duration: Duration::from_secs(1),
        ..config.clone()
    })?;
    drive(config)
}

/// Starts `kappa demo` with `extra` arguments (see [`spawn_demo`]), measures
/// the load `config` makes for its address, and stops it; returns the
/// load measured and its report.
fn on_demo(
    args: &GatewayBenchArgs,
    scratch: &std::path::Path,
    name: &str,
    extra: &[&str],
    config: impl FnOnce(std::net::SocketAddr) -> LoadConfig,
) -> anyhow::Result<(LoadConfig, kappa_gateway::load::LoadReport)> {
    let (server, addr) = spawn_demo(args, scratch, name, extra)?;
    let config = config(addr);
    let report = measure(&config)?;
    drop(server);
    Ok((config, report))
}

pub fn run(args: &GatewayBenchArgs) -> anyhow::Result<()> {
    let scratch = match &args.dir {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .context("making a scratch directory")?;
    let duration = Duration::from(args.duration);
    // The baseline: the same HTTP round trips to a handler that does nothing.
    let (baseline_config, baseline) =
        on_demo(args, scratch.path(), "baseline", &["--baseline"], |addr| {
            LoadConfig {
                addr,
                connections: args.connections,
                rate: None,
                duration,
                sync: false,
                commands: kappa_gateway::load::amounts("add", 10_000),
            }
        })?;
    // The gateway alone: commands are written down and indexed, nobody answers.
    let (base, alone) = on_demo(args, scratch.path(), "alone", &["--no-processor"], |addr| {
        LoadConfig {
            addr,
            ..baseline_config.clone()
        }
    })?;
    // With the demo's processor answering every command (and its events indexed).
    let (processed_config, processed) =
        on_demo(args, scratch.path(), "processed", &[], |addr| LoadConfig {
            addr,
            ..base.clone()
        })?;
    // Sync on a fresh server: the async run leaves work behind (indexing,
    // compaction) that would be measured as sync latency.
    let (sync_config, sync_report) =
        on_demo(args, scratch.path(), "sync", &[], |addr| LoadConfig {
            addr,
            connections: args.sync_connections,
            rate: Some(args.sync_rate),
            sync: true,
            ..processed_config.clone()
        })?;
    if args.json {
        println!(
            "{}",
            json!({
                "durability": args.durability.to_string(),
                "http_baseline": {"connections": args.connections, "report": baseline.to_json()},
                "async_gateway_alone": {"ratio_to_baseline": alone.throughput() / baseline.throughput().max(1e-9), "connections": args.connections, "target_per_s": 50_000, "ratio_to_target": alone.throughput() / 50_000.0, "report": alone.to_json()},
                "async_with_processor": {"connections": args.connections, "report": processed.to_json()},
                "sync": {"connections": args.sync_connections, "offered_per_s": args.sync_rate, "target_p99_ms": 10, "report": sync_report.to_json()},
            })
        );
    } else {
        print_report("HTTP baseline (no-op handler)", &baseline_config, &baseline);
        print_report("async, gateway alone", &base, &alone);
        print_report("async, with processor", &processed_config, &processed);
        print_report("sync, with processor", &sync_config, &sync_report);
        println!(
            "targets: async >= 50000/s (gateway alone {:.0}/s, ratio {:.2} to target, {:.2} to the HTTP baseline; with processor {:.0}/s); sync p99 < 10 ms at {:.0}/s (reached {:.2} ms)",
            alone.throughput(),
            alone.throughput() / 50_000.0,
            alone.throughput() / baseline.throughput().max(1e-9),
            processed.throughput(),
            args.sync_rate,
            sync_report.percentile_ms(0.99)
        );
    }
    Ok(())
}
