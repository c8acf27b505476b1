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
    /// Send over gRPC (`SendCommand` on the same address) instead of HTTP/1.1.
    #[arg(long)]
    grpc: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

impl LoadArgs {
    pub(crate) fn config(&self) -> anyhow::Result<LoadConfig> {
        Ok(LoadConfig::new(
            &self.url,
            self.connections,
            self.rate,
            Duration::from(self.duration),
            self.sync,
            kappa_gateway::load::amounts(&self.action, self.keys),
        )?)
    }
}

/// Runs the load and prints the report.
pub fn run(args: &LoadArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let report = if args.grpc {
        drive_grpc(&config)?
    } else {
        drive(&config)?
    };
    if args.json {
        println!("{}", report.to_json());
    } else {
        print_report("load", &config, &report);
    }
    Ok(())
}

/// Runs one load over HTTP on a runtime of its own.
pub(crate) fn drive(config: &LoadConfig) -> anyhow::Result<LoadReport> {
    Ok(runtime()?.block_on(kappa_gateway::load::run(config))?)
}

/// Runs one load over gRPC on a runtime of its own.
pub(crate) fn drive_grpc(config: &LoadConfig) -> anyhow::Result<LoadReport> {
    Ok(runtime()?.block_on(kappa_gateway::load::run_grpc(config))?)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the load runtime")
}

pub(crate) fn print_report(name: &str, config: &LoadConfig, r: &LoadReport) {
    let offered = config
        .rate
        .map_or(String::new(), |x| format!(" at {x:.0}/s offered"));
    println!(
        "{name}, {} connections{offered}: {}",
        config.connections,
        r.summary(config.sync)
    );
}
