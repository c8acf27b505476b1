//! `kappa demo`: the gateway's demo service (see `kappa_gateway::demo`) on
//! a log, for trying the HTTP API and benchmarking it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use kappa_gateway::GatewayConfig;
use kappa_log::Log;

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
    #[arg(long, hide = true)]
    baseline: bool,
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

/// Serves until interrupted; prints `listening on http://ADDR` first.
pub fn run(log: Arc<dyn Log>, args: &DemoArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("kappa-http")
        .build()
        .context("starting the HTTP runtime")?;
    if args.baseline {
        return serve_baseline(&runtime, args.http);
    }
    let config = GatewayConfig {
        partitions: args.partitions,
        title: "Kappa demo service".to_owned(),
        ..GatewayConfig::default()
    };
    let (gateway, streams) = if args.no_processor {
        let builder = kappa_gateway::Gateway::builder(log, config);
        (kappa_gateway::demo::actions(builder)?.start()?, None)
    } else {
        let interval = Duration::from_millis(args.commit_interval_ms);
        let (g, s) = kappa_gateway::demo::start(log, config, interval)?;
        (g, Some(s))
    };
    let gateway = Arc::new(gateway);
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.http)
            .await
            .with_context(|| format!("binding {}", args.http))?;
        let addr = listener.local_addr()?;
        println!("listening on http://{addr} (API documentation at http://{addr}/docs)");
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
