//! `kappa demo`: the gateway's demo service (see `kappa_gateway::demo`) on
//! a log, for trying the HTTP API and benchmarking it; with
//! `--kafka-listen`, its log is served to other processes and Kafka
//! clients too, as `kappa broker` serves a log with no service.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use kappa_gateway::{GatewayBuilder, GatewayConfig, NodeMetrics};
use kappa_log::{EmbeddedOptions, Log};

use crate::location::LogLocation;

/// Arguments of `kappa demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// How often the demo processor commits (the floor of sync latency).
    #[arg(long, default_value_t = 2)]
    commit_interval_ms: u64,
    /// Partitions of the command and event topics, when they are created.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Run the gateway (and its index) only, without the demo processor:
    /// commands are written and indexed but never answered.
    #[arg(long)]
    no_processor: bool,
    /// Serve only a handler that answers `POST /commands` with 202 and
    /// writes nothing: the HTTP baseline of `kappa bench gateway`.
    #[arg(long, hide = true, conflicts_with = "kafka_listen")]
    baseline: bool,
    /// Also serve the log over the Kafka protocol at this address (port 0
    /// picks a free port), so other processes and any Kafka client read
    /// and write it while the service runs; the node's figures join
    /// `/metrics`. The embedded log only (a Kafka cluster serves itself).
    #[arg(long)]
    kafka_listen: Option<SocketAddr>,
}

/// The baseline server: HTTP and nothing else.
fn serve_baseline(runtime: &tokio::runtime::Runtime, http: SocketAddr) -> anyhow::Result<()> {
    use axum::http::StatusCode;
    let router = axum::Router::new().route(
        "/commands",
        axum::routing::post(|body: axum::body::Bytes| async move { (StatusCode::ACCEPTED, body) }),
    );
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(http).await?;
        println!("listening on http://{}", listener.local_addr()?);
        axum::serve(listener, router).await?;
        Ok(())
    })
}

/// Serves the log at `location` until interrupted; prints `listening on
/// http://ADDR` first, then, with `--kafka-listen`, `serving the log to
/// Kafka clients at ADDR`.
pub fn run(
    location: &LogLocation,
    options: EmbeddedOptions,
    args: &DemoArgs,
) -> anyhow::Result<()> {
    if let (Some(addr), LogLocation::Kafka(url)) = (args.kafka_listen, location) {
        bail!(
            "--kafka-listen {addr} serves an embedded log; --log {url} is a Kafka cluster already"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("kappa-http")
        .build()
        .context("starting the HTTP runtime")?;
    if args.baseline {
        return serve_baseline(&runtime, args.http);
    }
    let log: Arc<dyn Log> = Arc::from(location.open(options)?);
    let node = match args.kafka_listen {
        Some(addr) => Some(
            runtime
                .block_on(kappa_node::Node::bind(
                    log.clone(),
                    kappa_node::NodeConfig::new(addr),
                ))
                .with_context(|| format!("serving the log over the Kafka protocol at {addr}"))?,
        ),
        None => None,
    };
    let with_node_metrics = |b: GatewayBuilder| match &node {
        Some(n) => b.metrics(Arc::new(NodeMetrics::new(n.stats()))),
        None => b,
    };
    let config = GatewayConfig {
        partitions: args.partitions,
        title: "Kappa demo service".to_owned(),
        ..GatewayConfig::default()
    };
    let (gateway, streams) = if args.no_processor {
        let builder = kappa_gateway::Gateway::builder(log, config);
        let builder = with_node_metrics(kappa_gateway::demo::actions(builder)?);
        (builder.start()?, None)
    } else {
        let interval = Duration::from_millis(args.commit_interval_ms);
        let (g, s) = kappa_gateway::demo::start_with(log, config, interval, with_node_metrics)?;
        (g, Some(s))
    };
    let gateway = Arc::new(gateway);
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.http)
            .await
            .with_context(|| format!("binding {}", args.http))?;
        let addr = listener.local_addr()?;
        println!("listening on http://{addr} (API documentation at http://{addr}/docs)");
        if let Some(node) = node {
            println!("serving the log to Kafka clients at {}", node.local_addr());
            tokio::spawn(node.serve(std::future::pending()));
        }
        gateway.announce_ready();
        gateway
            .clone()
            .serve_until_interrupted(listener)
            .await
            .context("serving HTTP")
    })?;
    drop(gateway);
    if let Some(Ok(s)) = streams.map(Arc::try_unwrap) {
        s.close()?;
    }
    Ok(())
}
