//! `kappa bench gateway`: the command API under load. Starts `kappa demo`
//! as a separate process on a scratch log, then measures async commands as
//! fast as they are answered, and sync commands (through the demo's
//! trivial processor) at a fixed offered rate.

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

pub fn run(args: &GatewayBenchArgs) -> anyhow::Result<()> {
    let scratch = match &args.dir {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .context("making a scratch directory")?;
    let exe = std::env::current_exe().context("finding the kappa binary")?;
    let mut child = Command::new(exe)
        .arg("--log")
        .arg(scratch.path().join("log"))
        .arg("--durability")
        .arg(args.durability.to_string())
        .args(["demo", "--http", "127.0.0.1:0"])
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
    let duration = Duration::from(args.duration);
    let base = LoadConfig {
        addr,
        connections: args.connections,
        rate: None,
        duration,
        sync: false,
        action: "add".to_owned(),
        keys: 10_000,
    };
    // A short warm-up so connection setup and first allocations are not measured.
    drive(&LoadConfig {
        duration: Duration::from_secs(1),
        ..base.clone()
    })?;
    let async_report = drive(&base)?;
    let sync_config = LoadConfig {
        connections: args.sync_connections,
        rate: Some(args.sync_rate),
        sync: true,
        ..base.clone()
    };
    let sync_report = drive(&sync_config)?;
    drop(server);
    if args.json {
        println!(
            "{}",
            json!({
                "durability": args.durability.to_string(),
                "async": {"connections": args.connections, "target_per_s": 50_000, "report": async_report.to_json()},
                "sync": {"connections": args.sync_connections, "offered_per_s": args.sync_rate, "target_p99_ms": 10, "report": sync_report.to_json()},
            })
        );
    } else {
        print_report("async", &base, &async_report);
        print_report("sync", &sync_config, &sync_report);
        println!(
            "targets: async >= 50000/s (reached {:.0}/s, ratio {:.2}); sync p99 < 10 ms at {:.0}/s (reached {:.2} ms)",
            async_report.throughput(),
            async_report.throughput() / 50_000.0,
            args.sync_rate,
            sync_report.percentile_ms(0.99)
        );
    }
    Ok(())
}
