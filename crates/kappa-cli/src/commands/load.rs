//! `kappa load`: drive a running gateway with commands over many keep-alive
//! connections and report throughput and latency percentiles.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use kappa_gateway::load::{LoadConfig, LoadReport};

/// Arguments of `kappa load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The gateway, as http://host:port.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Commands per second over all connections (default: as fast as answered).
    #[arg(long)]
    rate: Option<f64>,
    /// How long to send, e.g. 10s.
    #[arg(long, default_value = "10s")]
    duration: humantime::Duration,
    /// Wait for each command's outcome (?sync=true).
    #[arg(long)]
    sync: bool,
    /// The action to send.
    #[arg(long, default_value = "add")]
    action: String,
    /// Distinct entity keys.
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

impl LoadArgs {
    pub(crate) fn config(&self) -> anyhow::Result<LoadConfig> {
        let host = self
            .url
            .strip_prefix("http://")
            .context("--url must start with http://")?
            .trim_end_matches('/');
        let addr = std::net::ToSocketAddrs::to_socket_addrs(host)
            .with_context(|| format!("resolving {host}"))?
            .next()
            .with_context(|| format!("{host} has no address"))?;
        anyhow::ensure!(self.connections > 0, "--connections must be at least 1");
        if let Some(r) = self.rate {
            anyhow::ensure!(r > 0.0 && r.is_finite(), "--rate must be positive");
        }
        Ok(LoadConfig {
            addr,
            connections: self.connections,
            rate: self.rate,
            duration: Duration::from(self.duration),
            sync: self.sync,
            commands: kappa_gateway::load::amounts(&self.action, self.keys),
        })
    }
}

/// Runs the load and prints the report.
pub fn run(args: &LoadArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let report = drive(&config)?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        print_report("load", &config, &report);
    }
    Ok(())
}

/// Runs one load on a runtime of its own.
pub(crate) fn drive(config: &LoadConfig) -> anyhow::Result<LoadReport> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the load runtime")?;
    Ok(runtime.block_on(kappa_gateway::load::run(config))?)
}

pub(crate) fn print_report(name: &str, config: &LoadConfig, r: &LoadReport) {
    println!(
        "{name}: {} {} commands over {} connections{}: {:.0}/s ok, {} errors; latency ms p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}",
        r.ok,
        if config.sync { "sync" } else { "async" },
        config.connections,
        config
            .rate
            .map_or(String::new(), |x| format!(" at {x:.0}/s offered")),
        r.throughput(),
        r.errors,
        r.percentile_ms(0.5),
        r.percentile_ms(0.9),
        r.percentile_ms(0.99),
        r.percentile_ms(0.999),
        r.percentile_ms(1.0),
    );
}
