//! `kappa broker`: serve an embedded log over the Kafka protocol, so other
//! processes and any Kafka client (librdkafka, kafka-python, kafkajs, Java,
//! kcat) can share it.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use kappa_log::{EmbeddedOptions, Log};
use kappa_node::{Node, NodeConfig, NodeSecurity};

use crate::location::LogLocation;

/// Arguments of `kappa broker`.
#[derive(Debug, clap::Args)]
pub struct BrokerArgs {
    /// Address to listen on; a non-loopback address needs --security and --tls-cert.
    #[arg(long, default_value = "127.0.0.1:9092")]
    listen: SocketAddr,
    /// Security settings (a JSON file, see docs/security.md): clients
    /// authenticate with SASL as one of its `kafka_users` and may do what
    /// its policy allows them.
    #[arg(long, value_name = "FILE")]
    security: Option<std::path::PathBuf>,
    /// Speak TLS with this certificate chain (PEM); needs --tls-key and --security.
    #[arg(long, requires_all = ["tls_key", "security"])]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// HOST:PORT clients are told to connect to (default: the listen address).
    #[arg(long)]
    advertise: Option<String>,
    /// Create a topic when a client's metadata request names an unknown one.
    #[arg(long)]
    auto_create_topics: bool,
    /// Partitions of an automatically created topic.
    #[arg(long, default_value_t = 1)]
    auto_create_partitions: u32,
    /// Failed SASL authentications one client address may make within
    /// --sasl-failure-window; past them its attempts are refused until the
    /// window ends.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    sasl_failures_max: u32,
    /// See --sasl-failures-max.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    sasl_failure_window: std::time::Duration,
    /// Address to serve the node's figures on, in Prometheus' text format
    /// at `/metrics`; loopback only, as the figures carry no authentication.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
}

/// Serves the log until interrupted (ctrl-c or SIGTERM).
///
/// # Errors
///
/// A Kafka `--log`, a log that cannot be opened, or a listener that cannot be bound.
pub fn run(
    location: &LogLocation,
    options: EmbeddedOptions,
    args: &BrokerArgs,
) -> anyhow::Result<()> {
    if let LogLocation::Kafka(url) = location {
        bail!("kappa broker serves an embedded log; --log {url} is already a Kafka cluster");
    }
    if let Some(addr) = args.metrics_listen
        && !addr.ip().is_loopback()
    {
        bail!("--metrics-listen {addr}: the figures are served on loopback addresses only");
    }
    let security = match &args.security {
        Some(file) => {
            let (users, policy) =
                kappa_gateway::auth::config::load_kafka(file, |v| std::env::var(v).ok())
                    .with_context(|| format!("loading the security settings {}", file.display()))?;
            if users.is_empty() {
                tracing::warn!(file = %file.display(), "the security settings name no kafka_users: no Kafka client can authenticate");
            }
            let tls = match (&args.tls_cert, &args.tls_key) {
                (Some(cert), Some(key)) => {
                    Some(kappa_gateway::tls::server_config_from_files(cert, key)?)
                }
                _ => None,
            };
            Some(Arc::new(NodeSecurity::new(users, policy, tls)))
        }
        None => None,
    };
    let log: Arc<dyn Log> = Arc::from(location.open(options)?);
    let mut config = NodeConfig::new(args.listen);
    config.security = security;
    config.advertise.clone_from(&args.advertise);
    config.auto_create_topics = args.auto_create_topics;
    config.auto_create_partitions = args.auto_create_partitions;
    config.sasl_failures_max = args.sasl_failures_max;
    config.sasl_failure_window = args.sasl_failure_window;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the broker's runtime")?;
    runtime.block_on(async {
        let node = Node::bind(log, config).await?;
        // Tests and scripts read the bound port from this line.
        println!("listening on {}", node.local_addr());
        if let Some(addr) = args.metrics_listen {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding --metrics-listen {addr}"))?;
            println!("metrics on http://{}/metrics", listener.local_addr()?);
            let stats = node.stats();
            let app = axum::Router::new().route(
                "/metrics",
                axum::routing::get(move || {
                    let text = stats.render_prometheus();
                    async move {
                        (
                            [(
                                axum::http::header::CONTENT_TYPE,
                                "text/plain; version=0.0.4",
                            )],
                            text,
                        )
                    }
                }),
            );
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!(error = %e, "serving the node's figures failed");
                }
            });
        }
        node.serve(kappa_gateway::interrupted()).await;
        anyhow::Ok(())
    })
}
