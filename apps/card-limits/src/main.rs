//! `card-limits`: run the card spending-limit service, or drive one.
//!
//! ```text
//! card-limits serve [--log ./kappa-data] [--http 127.0.0.1:8080] [--demo-rate 200]
//!     [--notify-url http://127.0.0.1:9000/notify] [--postgres "host=… user=…"] [--search-dir ./kappa-search]
//!     [--kafka-listen 127.0.0.1:9092]
//! card-limits notifier --log kafka://127.0.0.1:9092 --notify-url http://127.0.0.1:9000/notify [--http 127.0.0.1:8081]
//! card-limits views --log kafka://127.0.0.1:9092 [--postgres "host=… user=…"] [--search-dir ./kappa-search] [--http 127.0.0.1:8082]
//! card-limits postgres-schema --postgres "host=… user=…"
//! card-limits load --cards 1000 --rate 2000 --duration 10s [--sync] [--url http://127.0.0.1:8080]
//! card-limits load --direct --cards 1000 --commands 200000
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use kappa_gateway::GatewayConfig;
use kappa_log::{Commit, Durability, EmbeddedOptions, Log, ProducerRecord};
use kappa_service::Envelope;

/// Many small, short-lived allocations per command (JSON, keys, records);
/// mimalloc serves them faster than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The card spending-limit service.
#[derive(Debug, Parser)]
#[command(
    name = "card-limits",
    version,
    about = "Card spending limits on a Kappa log"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service: gateway, processor and views in one process.
    Serve(Box<ServeArgs>),
    /// Deliver each limit-threshold-reached to a webhook, as a service of
    /// its own on the shared log (`serve --kafka-listen`'s, or Kafka).
    Notifier(NotifierArgs),
    /// Keep the external views (PostgreSQL tables, full-text index), as a
    /// service of its own on the shared log (`serve --kafka-listen`'s, or Kafka).
    Views(ViewsArgs),
    /// Send commands to a running service (or, with --direct, straight to a log) and measure.
    Load(LoadArgs),
    /// Drop the service's stores (and its PostgreSQL tables and full-text
    /// index, when named) so its next start rebuilds them from the log
    /// (run it while the service is stopped).
    Rebuild(RebuildArgs),
    /// Create the PostgreSQL tables the service keeps (when missing) and print their SQL.
    PostgresSchema(PostgresArgs),
}

#[derive(Debug, Args)]
struct RebuildArgs {
    /// The log directory.
    #[arg(long, env = "KAPPA_LOG", default_value = "./kappa-data")]
    log: String,
    /// Also empty the PostgreSQL tables.
    #[arg(long, env = "CARD_LIMITS_POSTGRES")]
    postgres: Option<String>,
    /// Also drop the full-text index in this directory.
    #[arg(long)]
    search_dir: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
struct SharedLogArgs {
    /// The shared log: kafka://host:port[,…][?property=value&…], the address
    /// of `card-limits serve --kafka-listen` or of a Kafka cluster. Unless it
    /// sets kappa.instance, the service's name is its instance (local state
    /// under $KAPPA_STATE_DIR/<instance>, default ./kappa-state).
    #[arg(long, env = "KAPPA_LOG")]
    log: String,
    /// Answer /health and /metrics (and the views' /search) at this
    /// loopback address.
    #[arg(long)]
    http: Option<SocketAddr>,
    /// Wait this long for the event topic to exist (the decision service creates it).
    #[arg(long, default_value = "5m")]
    topic_wait: humantime::Duration,
}

#[derive(Debug, Args)]
struct NotifierArgs {
    #[command(flatten)]
    shared: SharedLogArgs,
    /// The webhook that receives each limit-threshold-reached (POST, JSON, Idempotency-Key).
    #[arg(long, env = "CARD_LIMITS_NOTIFY_URL")]
    notify_url: kappa_effects::reqwest::Url,
    /// A notification attempt with no answer within this long fails (and is retried).
    #[arg(long, default_value = "10s")]
    notify_timeout: humantime::Duration,
}

#[derive(Debug, Args)]
struct ViewsArgs {
    #[command(flatten)]
    shared: SharedLogArgs,
    /// Keep the card_limits and card_authorizations tables in this PostgreSQL
    /// database (create them first with `card-limits postgres-schema`).
    #[arg(long, env = "CARD_LIMITS_POSTGRES")]
    postgres: Option<String>,
    /// Keep a full-text index of authorizations in this directory, served at /search/authorizations?q=.
    #[arg(long)]
    search_dir: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
struct PostgresArgs {
    /// PostgreSQL connection string (`host=… port=… user=… dbname=…` or a URL).
    #[arg(long, env = "CARD_LIMITS_POSTGRES")]
    postgres: String,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// The log: a directory (embedded) or kafka://host:port[,…][?property=value&…] (local state under $KAPPA_STATE_DIR, default ./kappa-state).
    #[arg(long, env = "KAPPA_LOG", default_value = "./kappa-data")]
    log: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// Embedded log durability: always, interval:<ms>, never.
    #[arg(long, default_value = "interval:20")]
    durability: Durability,
    /// Embedded log free-space floor in MiB: with less free on its disk,
    /// commands are refused with 507 until space is freed (reads go on); 0 turns it off.
    #[arg(long, env = "KAPPA_MIN_FREE_MIB", default_value_t = kappa_log::MIN_FREE_BYTES_DEFAULT >> 20)]
    min_free_mib: u64,
    /// Also send a steady demo stream of commands to itself, per second (0: none).
    #[arg(long, default_value_t = 0)]
    demo_rate: u64,
    /// Cards in the demo stream.
    #[arg(long, default_value_t = 2000)]
    demo_cards: u64,
    /// How often the processor commits (the floor of a sync command's latency).
    #[arg(long, default_value_t = 2)]
    commit_interval_ms: u64,
    /// Worker threads of the processor (its tasks, one per command
    /// partition, are spread over them); default: one per core.
    #[arg(long, default_value_t = card_limits::processor::default_threads())]
    processor_threads: std::num::NonZeroUsize,
    /// Deliver each limit-threshold-reached to this webhook (POST, JSON, Idempotency-Key).
    #[arg(long, env = "CARD_LIMITS_NOTIFY_URL")]
    notify_url: Option<kappa_effects::reqwest::Url>,
    /// A notification attempt with no answer within this long fails (and is retried).
    #[arg(long, default_value = "10s")]
    notify_timeout: humantime::Duration,
    /// Keep the card_limits and card_authorizations tables in this PostgreSQL
    /// database (create them first with `card-limits postgres-schema`).
    #[arg(long, env = "CARD_LIMITS_POSTGRES")]
    postgres: Option<String>,
    /// Keep a full-text index of authorizations in this directory, served at /search/authorizations?q=.
    #[arg(long)]
    search_dir: Option<std::path::PathBuf>,
    /// Security settings (token keys, API keys, policy): a JSON file, see
    /// docs/security.md. Required unless --insecure-no-auth.
    #[arg(long, env = "CARD_LIMITS_SECURITY")]
    security: Option<std::path::PathBuf>,
    /// Development only: serve everyone without credentials, on a loopback address only.
    #[arg(long, conflicts_with = "security")]
    insecure_no_auth: bool,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Requests per second each authenticated principal may make (429 above; 0: no limit).
    #[arg(long, default_value_t = 200.0)]
    rate_per_principal: f64,
    /// Requests a principal may make at once after a quiet spell.
    #[arg(long, default_value_t = 400)]
    rate_burst: u32,
    /// Share the work with the service's other instances on this Kafka
    /// log, telling them this instance is reachable at URL
    /// (http://host:port); card reads for cards another instance runs are
    /// forwarded to it. Give each instance its own kappa.instance in --log.
    #[arg(long, value_name = "URL")]
    advertise: Option<String>,
    /// With --advertise: keep warm copies of the other instances' stores
    /// (any number above 0 follows them all; see docs/kafka.md).
    #[arg(long, default_value_t = 0, requires = "advertise")]
    standby_replicas: u32,
    /// Serve the embedded log over the Kafka protocol at this address
    /// (127.0.0.1:9092 when given bare), so that the notifier, the views
    /// and any Kafka client share it (`--log kafka://ADDR`, kcat, …; see
    /// docs/node.md). With --security, clients authenticate as its
    /// `kafka_users` and the same policy applies; with --tls-cert too, the
    /// listener speaks TLS and may be non-loopback.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:9092")]
    kafka_listen: Option<SocketAddr>,
}

#[derive(Debug, Args)]
struct LoadArgs {
    /// The service.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Distinct cards.
    #[arg(long, default_value_t = 1000)]
    cards: u64,
    /// Commands per second (default: as fast as answered).
    #[arg(long)]
    rate: Option<f64>,
    /// How long to send.
    #[arg(long, default_value = "10s")]
    duration: humantime::Duration,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Wait for each decision (?sync=true).
    #[arg(long)]
    sync: bool,
    /// Measure processing alone: write --commands commands to a scratch log,
    /// then time the processor through them (no HTTP).
    #[arg(long)]
    direct: bool,
    /// Commands for --direct.
    #[arg(long, default_value_t = 200_000)]
    commands: u64,
    /// Rounds of --direct, each on a fresh log; the median is reported,
    /// because a shared machine is noisy.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Worker threads of the processor under --direct, as `serve
    /// --processor-threads`; default: one per core.
    #[arg(long, default_value_t = card_limits::processor::default_threads())]
    processor_threads: std::num::NonZeroUsize,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

fn main() -> anyhow::Result<()> {
    kappa_service::log_to_stderr();
    match Cli::parse().command {
        Command::Serve(args) => serve(&args),
        Command::Notifier(args) => {
            let config = shell_config(None, None);
            let config = card_limits::shell::ShellConfig {
                notify_url: Some(args.notify_url),
                notify_timeout: args.notify_timeout.into(),
                ..config
            };
            run_service(card_limits::shell::NOTIFIER_SERVICE, &args.shared, &config)
        }
        Command::Views(args) => {
            anyhow::ensure!(
                args.postgres.is_some() || args.search_dir.is_some(),
                "name the views to keep: --postgres CONNINFO, --search-dir DIR, or both"
            );
            let config = shell_config(args.postgres, args.search_dir);
            run_service(card_limits::shell::VIEWS_SERVICE, &args.shared, &config)
        }
        Command::Load(args) if args.direct => direct(&args),
        Command::Load(args) => load(&args),
        Command::Rebuild(args) => {
            let log = open_log(&args.log, Durability::Always)?;
            let dropped = card_limits::service::rebuild(&*log, &GatewayConfig::default())?;
            card_limits::shell::rebuild(args.postgres.as_deref(), args.search_dir.as_deref())?;
            println!("dropped {dropped} store entries; the next start rebuilds them from the log");
            Ok(())
        }
        Command::PostgresSchema(args) => {
            print!(
                "{}",
                card_limits::shell::create_postgres_schema(&args.postgres)?
            );
            Ok(())
        }
    }
}

fn open_log(location: &str, durability: Durability) -> anyhow::Result<Arc<dyn Log>> {
    open_log_with(location, EmbeddedOptions::default().durability(durability))
}

fn open_log_with(location: &str, options: EmbeddedOptions) -> anyhow::Result<Arc<dyn Log>> {
    let log = kappa_kafka::open_location(location, options, &kappa_kafka::state_base_from_env())
        .with_context(|| format!("opening the log at {location}"))?;
    Ok(Arc::from(log))
}

/// The shell's settings with no notifier.
fn shell_config(
    postgres: Option<String>,
    search_dir: Option<std::path::PathBuf>,
) -> card_limits::shell::ShellConfig {
    card_limits::shell::ShellConfig {
        notify_url: None,
        notify_timeout: Duration::from_secs(10),
        postgres,
        search_dir,
        events_topic: GatewayConfig::default().event_topics[0].clone(),
    }
}

/// The `kappa.instance` a location names, or `0` (the Kafka backend's
/// default; an embedded log has one process).
fn instance_of(location: &str) -> &str {
    card_limits::services::named_instance(location).unwrap_or("0")
}

/// Runs part of the shell as a service of its own on the shared log,
/// until SIGINT or SIGTERM (or until a part stops for good).
fn run_service(
    name: &str,
    args: &SharedLogArgs,
    config: &card_limits::shell::ShellConfig,
) -> anyhow::Result<()> {
    use card_limits::services;
    anyhow::ensure!(
        args.log.starts_with("kafka://"),
        "--log {}: the {name} shares the decision service's log over the Kafka protocol; give it kafka://ADDR of `card-limits serve --kafka-listen ADDR` (a log directory belongs to one process)",
        args.log
    );
    if let Some(addr) = args.http {
        anyhow::ensure!(
            addr.ip().is_loopback(),
            "--http {addr}: the {name} answers on loopback addresses only (its /search carries no access control)"
        );
    }
    let location = services::with_instance(&args.log, name);
    let log = open_log(&location, Durability::Always)?;
    let partitions = services::wait_for_topic(&*log, &config.events_topic, args.topic_wait.into())
        .with_context(|| format!("waiting for the topic {}", config.events_topic))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let shell = Arc::new(card_limits::shell::Shell::start(
        &log,
        config,
        runtime.handle().clone(),
    )?);
    let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let outcome = runtime.block_on(async {
        let face = match args.http {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding --http {addr}"))?;
                Some(listener)
            }
            None => None,
        };
        let face_addr = face.as_ref().map(|l| l.local_addr()).transpose()?;
        let answering = match face_addr {
            Some(a) => format!(", answering at http://{a} /health /metrics"),
            None => String::new(),
        };
        // Tests and scripts read the address from this first line.
        println!(
            "card-limits {name} following {} ({partitions} partitions) on {}{answering}",
            config.events_topic,
            services::without_query(&location),
        );
        let mut base = kappa_service::registry::Announcement::new(name, instance_of(&location));
        base.http = face_addr.map(|a| format!("http://{a}"));
        let (parts, reader) = (shell.progress_parts(), log.clone());
        let beacon = kappa_service::registry::Beacon::start(log.clone(), base, move |a| {
            a.writes.clear();
            card_limits::shell::announce_parts(&*reader, &parts, a);
        })?;
        let (stop_face, face_stopped) = tokio::sync::watch::channel(false);
        let face = face.map(|listener| {
            let app = services::router(shell.clone());
            let mut stop = face_stopped.clone();
            tokio::spawn(async move {
                let stopped = async move {
                    let _ = stop.changed().await;
                };
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(stopped)
                    .await
                {
                    tracing::error!(error = %e, "the HTTP face stopped");
                }
            })
        });
        let (waiter, stop, at) = (shell.clone(), stopping.clone(), log.clone());
        let catching_up =
            tokio::task::spawn_blocking(move || match services::catch_up(&*at, &waiter, &stop) {
                Ok(Some(c)) => {
                    // A reader that stopped listening is no failure.
                    use std::io::Write;
                    let _ = writeln!(std::io::stdout().lock(), "ready: {c}");
                }
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "catching up failed"),
            });
        let mut watch = tokio::time::interval(Duration::from_secs(1));
        let outcome = tokio::select! {
            () = kappa_gateway::interrupted() => Ok(()),
            failure = async {
                loop {
                    watch.tick().await;
                    // Sinks recover by themselves; a stopped notifier does not.
                    if let Some(n) = &shell.notifier
                        && !n.is_running()
                    {
                        return n.failure().unwrap_or_else(|| "stopped".to_owned());
                    }
                }
            } => Err(anyhow::anyhow!("the {name} stopped: {failure}")),
        };
        // Everything that shares the shell lets go of it before it closes.
        stopping.store(true, std::sync::atomic::Ordering::Release);
        let _ = stop_face.send(true);
        if let Some(face) = face
            && tokio::time::timeout(Duration::from_secs(5), face)
                .await
                .is_err()
        {
            tracing::warn!("HTTP requests still open after 5 s; closing anyway");
        }
        let _ = catching_up.await;
        drop(beacon);
        outcome
    });
    let closed = match Arc::try_unwrap(shell) {
        Ok(shell) => shell.close().map_err(anyhow::Error::from),
        Err(_) => Err(anyhow::anyhow!(
            "the {name}'s parts are still in use; their progress is redone at the next start"
        )),
    };
    outcome?;
    closed
}

fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let mut config = GatewayConfig {
        title: "Card spending limits".to_owned(),
        ..GatewayConfig::default()
    };
    match (&args.security, args.insecure_no_auth) {
        (Some(file), _) => {
            let (auth, policy) = kappa_gateway::auth::config::load(file, |v| std::env::var(v).ok())
                .with_context(|| format!("loading the security settings {}", file.display()))?;
            config.auth = Some(Arc::new(auth));
            config.policy = Some(Arc::new(policy));
            anyhow::ensure!(
                args.rate_per_principal >= 0.0 && args.rate_per_principal.is_finite(),
                "--rate-per-principal must be a non-negative number"
            );
            if args.rate_per_principal > 0.0 {
                config.rate_limit = Some(kappa_gateway::RateLimit {
                    per_second: args.rate_per_principal,
                    burst: args.rate_burst.max(1),
                });
            }
        }
        (None, true) => {
            anyhow::ensure!(
                args.http.ip().is_loopback(),
                "--insecure-no-auth serves only a loopback address, not {}",
                args.http
            );
            eprintln!(
                "WARNING: --insecure-no-auth: anyone who can reach {} may send any command and read every view",
                args.http
            );
        }
        (None, false) => anyhow::bail!(
            "choose who may use the service: --security FILE (see docs/security.md), or --insecure-no-auth for development on a loopback address"
        ),
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            anyhow::ensure!(
                args.demo_rate == 0,
                "the demo stream speaks plain HTTP: run it without --tls-cert"
            );
            Some(kappa_gateway::tls::server_config_from_files(cert, key)?)
        }
        _ => None,
    };
    let scale_out = match &args.advertise {
        Some(url) => {
            anyhow::ensure!(
                url.starts_with("http://") && url.len() > "http://".len(),
                "--advertise takes the http://host:port other instances reach this one at, not {url:?}"
            );
            anyhow::ensure!(
                args.log.starts_with("kafka://"),
                "--advertise shares the work of instances on one Kafka log; --log {} is a directory only this process can use",
                args.log
            );
            // Effects would run once per instance: keep them on one.
            anyhow::ensure!(
                args.notify_url.is_none() && args.postgres.is_none() && args.search_dir.is_none(),
                "--notify-url, --postgres and --search-dir run in a single instance; start that one without --advertise"
            );
            Some(card_limits::service::ScaleOut {
                advertised_url: url.trim_end_matches('/').to_owned(),
                standby_replicas: args.standby_replicas,
            })
        }
        None => None,
    };
    let log = open_log_with(
        &args.log,
        EmbeddedOptions::default()
            .durability(args.durability)
            .min_free_bytes(args.min_free_mib.saturating_mul(1 << 20)),
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // Bound first, so the service announces where it answers.
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(args.http))
        .with_context(|| format!("binding {}", args.http))?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut announcement =
        kappa_service::registry::Announcement::new("decisions", instance_of(&args.log));
    announcement.http = Some(format!("{scheme}://{addr}"));
    config.announce = Some(announcement);
    kappa_gateway::ensure_topics(&*log, &config)?;
    let node = match args.kafka_listen {
        Some(addr) => {
            anyhow::ensure!(
                !args.log.starts_with("kafka://"),
                "--kafka-listen serves an embedded log; --log {} is a Kafka cluster already",
                args.log
            );
            let mut node_config = kappa_node::NodeConfig::new(addr);
            if let Some(file) = &args.security {
                let (users, policy) =
                    kappa_gateway::auth::config::load_kafka(file, |v| std::env::var(v).ok())
                        .with_context(|| {
                            format!("loading the security settings {}", file.display())
                        })?;
                node_config.security = Some(Arc::new(kappa_node::NodeSecurity::new(
                    users,
                    policy,
                    tls.clone(),
                )));
            }
            let node = runtime
                .block_on(kappa_node::Node::bind(log.clone(), node_config))
                .context("serving the log over the Kafka protocol")?;
            Some(node)
        }
        None => None,
    };
    let node_metrics = node.as_ref().map(|n| {
        Arc::new(kappa_gateway::NodeMetrics::new(n.stats()))
            as Arc<dyn kappa_service::MetricsSource>
    });
    let shell_config = card_limits::shell::ShellConfig {
        notify_url: args.notify_url.clone(),
        notify_timeout: args.notify_timeout.into(),
        postgres: args.postgres.clone(),
        search_dir: args.search_dir.clone(),
        events_topic: config.event_topics[0].clone(),
    };
    let shell = card_limits::shell::Shell::start(&log, &shell_config, runtime.handle().clone())?;
    let processing = card_limits::processor::Processing {
        commit_interval: Duration::from_millis(args.commit_interval_ms),
        threads: args.processor_threads,
    };
    let service = card_limits::service::start_scaled(log, config, processing, scale_out, |b| {
        let b = shell.register(b);
        match &node_metrics {
            Some(m) => b.metrics(m.clone()),
            None => b,
        }
    })?;
    let gateway = Arc::new(service.gateway);
    runtime.block_on(async {
        println!("card-limits listening on {scheme}://{addr} (API documentation at {scheme}://{addr}/docs, cards at {scheme}://{addr}/cards/card-1)");
        if let Some(node) = node {
            println!("serving the log to Kafka clients at {}", node.local_addr());
            tokio::spawn(node.serve(std::future::pending()));
        }
        // Said once the views have caught up with the log (what /ready reports).
        gateway.announce_ready();
        if args.demo_rate > 0 {
            let config = kappa_gateway::load::LoadConfig {
                addr,
                connections: 4,
                rate: Some(args.demo_rate as f64),
                duration: Duration::from_secs(365 * 86_400),
                sync: false,
                commands: card_limits::traffic::bodies(args.demo_cards),
            };
            tokio::spawn(async move {
                if let Err(e) = kappa_gateway::load::run(&config).await {
                    tracing::warn!(error = %e, "the demo stream stopped");
                }
            });
            println!("sending {} demo commands/s over {} cards", args.demo_rate, args.demo_cards);
        }
        match tls {
            Some(tls) => gateway
                .clone()
                .serve_tls_until_interrupted(listener, tls)
                .await
                .context("serving HTTPS"),
            None => gateway
                .clone()
                .serve_until_interrupted(listener)
                .await
                .context("serving HTTP"),
        }
    })?;
    drop(gateway);
    shell.close()?;
    if let Ok(s) = Arc::try_unwrap(service.streams) {
        s.close()?;
    }
    Ok(())
}

fn load(args: &LoadArgs) -> anyhow::Result<()> {
    let config = kappa_gateway::load::LoadConfig::new(
        &args.url,
        args.connections,
        args.rate,
        args.duration.into(),
        args.sync,
        card_limits::traffic::bodies(args.cards),
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(kappa_gateway::load::run(&config))?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        println!("{}", report.summary(args.sync));
    }
    Ok(())
}

/// Processing throughput without HTTP: commands are written to a scratch
/// log first, then the processor is timed until it has committed them all.
fn direct(args: &LoadArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.rounds > 0, "--rounds must be positive");
    let mut rates = Vec::with_capacity(args.rounds);
    let mut processed = 0;
    for _ in 0..args.rounds {
        let (commands, took) = direct_round(args)?;
        processed = commands;
        rates.push(commands as f64 / took.as_secs_f64());
    }
    let mut sorted = rates.clone();
    sorted.sort_by(f64::total_cmp);
    let rate = sorted[sorted.len() / 2];
    if args.json {
        println!(
            "{}",
            serde_json::json!({"commands": processed, "cards": args.cards, "rounds": args.rounds,
                "processor_threads": args.processor_threads, "per_s": rate, "rounds_per_s": rates, "target_per_s": 200_000, "ratio_to_target": rate / 200_000.0})
        );
    } else {
        let each: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
        println!(
            "direct: {processed} commands over {} cards, {} processor threads, median of {} rounds {rate:.0}/s ({}/s; target 200000/s, ratio {:.2})",
            args.cards,
            args.processor_threads,
            args.rounds,
            each.join(", "),
            rate / 200_000.0
        );
    }
    Ok(())
}

/// Writes the commands to a fresh scratch log, then times the processor
/// through them: the commands processed and how long it took.
fn direct_round(args: &LoadArgs) -> anyhow::Result<(u64, Duration)> {
    let dir = tempfile::tempdir().context("making a scratch directory")?;
    let log = open_log(
        &dir.path().to_string_lossy(),
        Durability::Interval(Duration::from_millis(100)),
    )?;
    let config = GatewayConfig::default();
    kappa_gateway::ensure_topics(&*log, &config)?;
    let mut n = 0;
    while n < args.commands {
        let mut commit = Commit::new();
        let end = (n + 10_000).min(args.commands);
        let records: Vec<ProducerRecord> = (n..end)
            .map(|i| {
                let (action, data) = card_limits::traffic::command(i, args.cards);
                let card = data["card"].as_str().unwrap_or_default().to_owned();
                let e = Envelope::command(action, data, Some(card.clone()));
                ProducerRecord::value(serde_json::to_vec(&e).unwrap_or_default()).with_key(card)
            })
            .collect();
        commit.append_all(&config.commands_topic, None, records);
        log.commit(commit)?;
        n = end;
    }
    let started = Instant::now();
    let processing = card_limits::processor::Processing {
        commit_interval: Duration::from_millis(100),
        threads: args.processor_threads,
    };
    let streams = card_limits::processor::start(
        log.clone(),
        &config.commands_topic,
        &config.event_topics[0],
        processing,
    )?;
    let (probe, total) = (streams.clone(), args.commands);
    let shown = kappa_service::Progress::follow("processing", move || {
        (probe.metrics().records_processed, total)
    });
    streams.wait_for_inputs()?;
    let took = started.elapsed();
    drop(shown);
    let processed = streams.metrics().records_processed;
    if let Ok(s) = Arc::try_unwrap(streams) {
        s.close()?;
    }
    drop(log);
    Ok((processed, took))
}
