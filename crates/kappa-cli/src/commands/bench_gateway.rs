//! `kappa bench gateway`: the command API under load. Starts `kappa demo`
//! as a separate process on a scratch log, then measures async commands as
//! fast as they are answered — by the gateway alone (written and indexed),
//! then the same over gRPC, then with the demo's trivial processor
//! answering each — and sync commands through that processor at a fixed
//! offered rate.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use kappa_gateway::load::{LoadConfig, LoadReport};
use serde_json::json;

use super::load::{drive, drive_grpc, print_report};

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
    /// Rounds, each with fresh servers; medians are reported, because a
    /// shared machine is noisy.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
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

/// How a scenario's commands travel.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Transport {
    Http,
    Grpc,
}

/// Runs `config` after a one-second warm-up (connection setup and first
/// allocations are not measured).
fn measure(
    config: &LoadConfig,
    transport: Transport,
) -> anyhow::Result<kappa_gateway::load::LoadReport> {
    let drive = match transport {
        Transport::Http => drive,
        Transport::Grpc => drive_grpc,
    };
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
    transport: Transport,
    config: impl FnOnce(std::net::SocketAddr) -> LoadConfig,
) -> anyhow::Result<(LoadConfig, kappa_gateway::load::LoadReport)> {
    let (server, addr) = spawn_demo(args, scratch, name, extra)?;
    let config = config(addr);
    let report = measure(&config, transport)?;
    drop(server);
    Ok((config, report))
}

/// Writes out what the file system of `scratch` holds unwritten, so that
/// the writeback of earlier scenarios is not measured in the next one.
fn settle_disk(scratch: &std::path::Path) -> anyhow::Result<()> {
    let dir =
        std::fs::File::open(scratch).with_context(|| format!("opening {}", scratch.display()))?;
    rustix::fs::syncfs(&dir)
        .with_context(|| format!("syncing the file system of {}", scratch.display()))
}

/// One round: every scenario on servers of its own.
struct Round {
    baseline: (LoadConfig, LoadReport),
    alone: (LoadConfig, LoadReport),
    grpc: (LoadConfig, LoadReport),
    processed: (LoadConfig, LoadReport),
    sync: (LoadConfig, LoadReport),
}

impl Round {
    fn ratio_to_baseline(&self) -> f64 {
        self.alone.1.throughput() / self.baseline.1.throughput().max(1e-9)
    }

    /// gRPC's async commands per second over HTTP's, both by the gateway alone.
    fn grpc_to_http(&self) -> f64 {
        self.grpc.1.throughput() / self.alone.1.throughput().max(1e-9)
    }

    fn to_json(&self, args: &GatewayBenchArgs) -> serde_json::Value {
        let alone = &self.alone.1;
        json!({
            "http_baseline": {"connections": args.connections, "report": self.baseline.1.to_json()},
            "async_gateway_alone": {"ratio_to_baseline": self.ratio_to_baseline(), "connections": args.connections, "target_per_s": 50_000, "ratio_to_target": alone.throughput() / 50_000.0, "report": alone.to_json()},
            "async_grpc_gateway_alone": {"ratio_to_http": self.grpc_to_http(), "connections": args.connections, "report": self.grpc.1.to_json()},
            "async_with_processor": {"connections": args.connections, "report": self.processed.1.to_json()},
            "sync": {"connections": args.sync_connections, "offered_per_s": args.sync_rate, "target_p99_ms": 10, "report": self.sync.1.to_json()},
        })
    }
}

fn round(args: &GatewayBenchArgs, scratch: &std::path::Path, n: usize) -> anyhow::Result<Round> {
    let duration = Duration::from(args.duration);
    let name = |scenario: &str| format!("{scenario}-{n}");
    // The baseline: the same HTTP round trips to a handler that does nothing.
    let baseline = on_demo(
        args,
        scratch,
        &name("baseline"),
        &["--baseline"],
        Transport::Http,
        |addr| LoadConfig {
            addr,
            connections: args.connections,
            rate: None,
            duration,
            sync: false,
            commands: kappa_gateway::load::amounts("add", 10_000),
        },
    )?;
    // The gateway alone: commands are written down and indexed, nobody answers.
    let alone = on_demo(
        args,
        scratch,
        &name("alone"),
        &["--no-processor"],
        Transport::Http,
        |addr| LoadConfig {
            addr,
            ..baseline.0.clone()
        },
    )?;
    // The same commands over gRPC, one call in flight per connection as above.
    let grpc = on_demo(
        args,
        scratch,
        &name("grpc"),
        &["--no-processor"],
        Transport::Grpc,
        |addr| LoadConfig {
            addr,
            ..baseline.0.clone()
        },
    )?;
    // With the demo's processor answering every command (and its events indexed).
    let processed = on_demo(
        args,
        scratch,
        &name("processed"),
        &[],
        Transport::Http,
        |addr| LoadConfig {
            addr,
            ..alone.0.clone()
        },
    )?;
    // Sync on a fresh server: the async run leaves work behind (indexing,
    // compaction) that would be measured as sync latency. So do the earlier
    // scenarios' writes still in the page cache: the kernel writes them
    // back while the sync scenario waits on its own fsyncs (a p99 of
    // 50-160 ms instead of 6-10 ms), so they are written out first.
    settle_disk(scratch)?;
    let sync = on_demo(args, scratch, &name("sync"), &[], Transport::Http, |addr| {
        LoadConfig {
            addr,
            connections: args.sync_connections,
            rate: Some(args.sync_rate),
            sync: true,
            ..processed.0.clone()
        }
    })?;
    Ok(Round {
        baseline,
        alone,
        grpc,
        processed,
        sync,
    })
}

pub fn run(args: &GatewayBenchArgs) -> anyhow::Result<()> {
    if args.rounds == 0 {
        bail!("--rounds must be positive");
    }
    let scratch = super::bench_scratch(&args.dir.clone().unwrap_or_else(std::env::temp_dir))?;
    let mut rounds = Vec::with_capacity(args.rounds);
    for n in 0..args.rounds {
        let r = round(args, scratch.path(), n)?;
        if !args.json {
            println!("round {}:", n + 1);
            print_report(
                "HTTP baseline (no-op handler)",
                &r.baseline.0,
                &r.baseline.1,
            );
            print_report("async, gateway alone", &r.alone.0, &r.alone.1);
            print_report("async over gRPC, gateway alone", &r.grpc.0, &r.grpc.1);
            print_report("async, with processor", &r.processed.0, &r.processed.1);
            print_report("sync, with processor", &r.sync.0, &r.sync.1);
        }
        rounds.push(r);
    }
    let median = |f: &dyn Fn(&Round) -> f64| super::bench::median(rounds.iter().map(f));
    let baseline = median(&|r| r.baseline.1.throughput());
    let alone = median(&|r| r.alone.1.throughput());
    let ratio = median(&|r| r.ratio_to_baseline());
    let grpc = median(&|r| r.grpc.1.throughput());
    let grpc_to_http = median(&|r| r.grpc_to_http());
    let processed = median(&|r| r.processed.1.throughput());
    let p99 = median(&|r| r.sync.1.percentile_ms(0.99));
    if args.json {
        println!(
            "{}",
            json!({
                "benchmark": "gateway",
                "durability": args.durability.to_string(),
                "rounds": args.rounds,
                "median": {"http_baseline_per_s": baseline, "async_gateway_alone_per_s": alone,
                    "async_ratio_to_baseline": ratio, "async_grpc_gateway_alone_per_s": grpc,
                    "async_grpc_ratio_to_http": grpc_to_http, "async_with_processor_per_s": processed,
                    "sync_p99_ms": p99, "sync_offered_per_s": args.sync_rate},
                "targets": {"async_gateway_alone_per_s": 50_000, "async_ratio_to_baseline": 0.5,
                    "async_with_processor_per_s": 40_000, "sync_p99_ms": 10},
                "runs": rounds.iter().map(|r| r.to_json(args)).collect::<Vec<_>>(),
            })
        );
    } else {
        println!(
            "median of {} rounds: HTTP baseline {baseline:.0}/s; async, gateway alone {alone:.0}/s (target 50000, {ratio:.2} of the baseline, target 0.5); over gRPC {grpc:.0}/s ({grpc_to_http:.2} of HTTP's); with processor {processed:.0}/s (target 40000); sync p99 {p99:.2} ms at {:.0}/s (target < 10 ms)",
            args.rounds, args.sync_rate
        );
    }
    Ok(())
}
