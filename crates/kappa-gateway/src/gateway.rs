//! Configuring and starting a gateway: topics, the index, the writer, the
//! outcome watcher, and the router that serves them.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use kappa_log::{Log, LogError, TopicPartition, TopicSpec};
use serde_json::Value;

use crate::api;
use crate::error::GatewayError;
use crate::idempotency::Idempotency;
use crate::index::Index;
use crate::metrics::Metrics;
use crate::outcomes::OutcomeWatcher;
use crate::schema::Actions;
use crate::views::View;
use crate::writer::Writer;
use kappa_service::MetricsSource;

/// Settings of a gateway; `GatewayConfig::default()` suits most services.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Where commands are written.
    pub commands_topic: String,
    /// Where command processors write events (listed, indexed and streamed).
    pub event_topics: Vec<String>,
    /// Partitions of the topics the gateway creates when they are missing.
    pub partitions: u32,
    /// Largest request body accepted (413 above).
    pub body_limit_bytes: usize,
    /// How long an `Idempotency-Key` keeps answering with its first command.
    pub idempotency_window: Duration,
    /// How long `?sync=true` waits when the request names no `timeout_ms`.
    pub sync_timeout: Duration,
    /// The longest wait a request may ask for (`timeout_ms`, `wait_ms`).
    pub wait_max: Duration,
    /// Most live streams (SSE and gRPC) open at once (503, or gRPC `UNAVAILABLE`, above).
    pub sse_connections_max: usize,
    /// Largest page of a listing or scan.
    pub page_limit_max: usize,
    /// Application id of the index topology (its state lives under it).
    pub index_application_id: String,
    /// The service's name, shown in the API documentation.
    pub title: String,
    /// Checks every request's bearer token (all but `/health` and
    /// `/ready`); `None` serves everyone.
    pub auth: Option<Arc<crate::auth::Authenticator>>,
    /// What each authenticated principal may do (403 otherwise); `None`
    /// lets every authenticated principal do everything. Needs `auth`.
    pub policy: Option<Arc<crate::auth::Policy>>,
    /// Requests each authenticated principal may make (429 with
    /// `Retry-After` above it); `None`: no limit.
    pub rate_limit: Option<crate::RateLimit>,
    /// A connection whose request headers take longer than this to arrive
    /// is closed (slow clients holding connections open).
    pub header_read_timeout: Duration,
    /// Announce the service in the log's registry
    /// ([`kappa_service::registry::SERVICES_TOPIC`]) as this, with the topics it
    /// reads (and its lag on each) and writes filled in, so a console on
    /// any instance draws it; `None`: not announced.
    pub announce: Option<kappa_service::registry::Announcement>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            commands_topic: "commands".to_owned(),
            event_topics: vec!["events".to_owned()],
            partitions: 4,
            body_limit_bytes: 256 * 1024,
            idempotency_window: Duration::from_secs(24 * 60 * 60),
            sync_timeout: Duration::from_secs(5),
            wait_max: Duration::from_secs(60),
            sse_connections_max: 256,
            page_limit_max: 1000,
            index_application_id: "kappa-gateway-index".to_owned(),
            title: "Kappa service".to_owned(),
            auth: None,
            policy: None,
            rate_limit: None,
            header_read_timeout: Duration::from_secs(10),
            announce: None,
        }
    }
}

/// Everything the handlers share.
pub(crate) struct State {
    pub(crate) log: Arc<dyn Log>,
    pub(crate) config: GatewayConfig,
    pub(crate) actions: Actions,
    pub(crate) views: Vec<View>,
    pub(crate) writer: Writer,
    pub(crate) index: Index,
    pub(crate) outcomes: OutcomeWatcher,
    pub(crate) idempotency: Idempotency,
    pub(crate) metrics: Metrics,
    /// Figures of parts the application runs beside the gateway.
    pub(crate) metric_sources: Vec<Arc<dyn MetricsSource>>,
    pub(crate) partitions: u32,
    /// End offsets of the indexed topics at start: ready once indexed.
    pub(crate) start_ends: Vec<(TopicPartition, u64)>,
    /// Per view (same order): its inputs' end offsets at start; the view
    /// is restored once its topology has processed them.
    pub(crate) view_start_ends: Vec<Vec<(TopicPartition, u64)>>,
    /// Per-principal request budgets.
    pub(crate) limiter: Option<crate::rate::Limiter>,
    /// The OpenAPI path items of the application's own routes.
    pub(crate) app_paths: serde_json::Map<String, Value>,
    /// The methods and query parameters of `/openapi.json`'s operations,
    /// read from it at the first request that needs them.
    pub(crate) operations: std::sync::OnceLock<api::openapi::Operations>,
    /// Set when the service shuts down: live streams end.
    pub(crate) closing: Arc<std::sync::atomic::AtomicBool>,
    /// The application's own console pages.
    pub(crate) console_pages: Vec<crate::console::ConsolePage>,
    /// The console's shared figures.
    pub(crate) sampler: crate::console::stats::Sampler,
}

/// Builds a gateway: register actions, views and routes, then start it.
///
/// ```no_run
/// # async fn demo(log: std::sync::Arc<dyn kappa_log::Log>) -> Result<(), Box<dyn std::error::Error>> {
/// use kappa_gateway::{Gateway, GatewayConfig};
/// let gateway = Gateway::builder(log, GatewayConfig::default())
///     .action("set-limit", "Sets a card's spending limit", serde_json::json!({
///         "type": "object", "required": ["limit"],
///         "properties": {"limit": {"type": "integer", "minimum": 0}}
///     }))?
///     .start()?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// axum::serve(listener, gateway.router()).await?;
/// # Ok(()) }
/// ```
pub struct GatewayBuilder {
    log: Arc<dyn Log>,
    config: GatewayConfig,
    actions: Actions,
    views: Vec<View>,
    routes: Option<Router>,
    app_paths: Vec<(String, Value)>,
    metric_sources: Vec<Arc<dyn MetricsSource>>,
    console_pages: Vec<crate::console::ConsolePage>,
    announcers: Vec<Announcer>,
}

/// Adds what a part of the service reads and writes to its announcement.
type Announcer = Box<dyn Fn(&dyn Log, &mut kappa_service::registry::Announcement) + Send + Sync>;

/// A started gateway.
pub struct Gateway {
    state: Arc<State>,
    routes: Option<Router>,
    /// Says the service stopped when the gateway is dropped.
    _beacon: Option<kappa_service::registry::Beacon>,
}

impl Gateway {
    /// Starts building a gateway over `log`.
    pub fn builder(log: Arc<dyn Log>, config: GatewayConfig) -> GatewayBuilder {
        GatewayBuilder {
            log,
            config,
            actions: Actions::new(),
            views: Vec::new(),
            routes: None,
            app_paths: Vec::new(),
            metric_sources: Vec::new(),
            console_pages: Vec::new(),
            announcers: Vec::new(),
        }
    }

    /// The HTTP service: the gateway's routes plus the application's own.
    pub fn router(&self) -> Router {
        api::router(self.state.clone(), self.routes.clone())
    }

    /// The index of commands and events.
    pub fn index(&self) -> &Index {
        &self.state.index
    }

    /// Waits up to `timeout` for [`Gateway::is_ready`]; returns whether it became ready.
    ///
    /// # Errors
    ///
    /// The index topology stopped.
    pub fn wait_ready(&self, timeout: std::time::Duration) -> Result<bool, GatewayError> {
        let deadline = std::time::Instant::now() + timeout;
        let index = self.state.index.streams();
        if !index.wait_for_processed(&last_records(&self.state.start_ends), timeout)? {
            return Ok(false);
        }
        // Views are ready once the tasks this instance runs caught up; with
        // tasks shared by several instances, they arrive (and may move)
        // while this waits.
        loop {
            if self.is_ready() {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            let step = left.min(std::time::Duration::from_millis(200));
            let mut waited = false;
            for (view, ends) in self.state.views.iter().zip(&self.state.view_start_ends) {
                let running = view.streams.task_state().running;
                let targets: Vec<(TopicPartition, u64)> = last_records(ends)
                    .into_iter()
                    .filter(|(tp, _)| running.contains(&tp.partition))
                    .collect();
                if !targets.is_empty() && !view.streams.wait_for_processed(&targets, step)? {
                    waited = true;
                }
            }
            if !waited {
                // Nothing to wait on yet (tasks not given, or restoring).
                std::thread::sleep(step.min(std::time::Duration::from_millis(50)));
            }
        }
    }

    /// Ends every live stream (within a second), so a graceful shutdown of
    /// the HTTP server does not wait for streaming clients forever.
    ///
    /// ```no_run
    /// # async fn demo(gateway: kappa_gateway::Gateway, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    /// let gateway = std::sync::Arc::new(gateway);
    /// let closer = gateway.clone();
    /// axum::serve(listener, gateway.router())
    ///     .with_graceful_shutdown(async move {
    ///         let _ = tokio::signal::ctrl_c().await;
    ///         closer.close_live_streams();
    ///     })
    ///     .await
    /// # }
    /// ```
    pub fn close_live_streams(&self) {
        self.state
            .closing
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// How long a client may take to send a request's headers.
    pub(crate) fn header_read_timeout(&self) -> std::time::Duration {
        self.state.config.header_read_timeout
    }

    /// Says `ready` on standard output once [`Gateway::is_ready`], drawing a
    /// "catching up" progress line on a terminal meanwhile (see
    /// [`kappa_service::Progress`]), from a thread of its own: what a
    /// service binary does at start, however long its log.
    pub fn announce_ready(self: &Arc<Self>) {
        let (waiter, probe) = (self.clone(), self.clone());
        let spawned = std::thread::Builder::new()
            .name("kappa-ready".into())
            .spawn(move || {
                let shown =
                    kappa_service::Progress::follow("catching up", move || probe.catch_up());
                let ready = waiter.wait_ready(Duration::from_secs(3600));
                drop(shown);
                match ready {
                    // Not println!: whoever started the service may have
                    // stopped reading its output, and that is no failure.
                    Ok(true) => {
                        use std::io::Write;
                        let _ = writeln!(std::io::stdout().lock(), "ready");
                    }
                    Ok(false) => tracing::warn!("not ready after an hour"),
                    Err(e) => tracing::error!(error = %e, "the views stopped"),
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot follow the catch-up; /ready still tells");
        }
    }

    /// How far the index and the views are through the records the log
    /// held at start (what [`wait_ready`](Self::wait_ready) waits for), as
    /// (records done, records in all): for a progress line.
    pub fn catch_up(&self) -> (u64, u64) {
        let (mut done, mut total) = (0, 0);
        let mut count = |streams: &kappa_streams::Streams, ends: &[(TopicPartition, u64)]| {
            let at: std::collections::HashMap<TopicPartition, u64> =
                streams.committed_positions().into_iter().collect();
            for (tp, end) in ends {
                total += end;
                done += at.get(tp).copied().unwrap_or(0).min(*end);
            }
        };
        count(self.state.index.streams().as_ref(), &self.state.start_ends);
        for (view, ends) in self.state.views.iter().zip(&self.state.view_start_ends) {
            count(view.streams.as_ref(), ends);
        }
        (done, total)
    }

    /// Whether the index and every view's topology have caught up with what
    /// the log held at start (their stores are restored) and all are
    /// running: `/ready`.
    pub fn is_ready(&self) -> bool {
        api::ops::ready(&self.state).is_ok()
    }
}

impl GatewayBuilder {
    /// Accepts commands with `action`, whose `data` must match `schema`.
    ///
    /// # Errors
    ///
    /// The name is not kebab-case or repeats, or the schema is invalid.
    pub fn action(
        mut self,
        action: &str,
        description: &str,
        schema: Value,
    ) -> Result<Self, GatewayError> {
        self.actions.register(action, description, schema)?;
        Ok(self)
    }

    /// Serves a store at `/views/{name}`.
    pub fn view(mut self, view: View) -> Self {
        self.views.push(view);
        self
    }

    /// Adds the application's own routes (merged into the gateway's router,
    /// behind the same authentication, metrics and limits), with their
    /// OpenAPI description: `paths` is an OpenAPI `paths` object holding a
    /// path item for every route of `routes`, served in `/openapi.json`
    /// and `/docs` beside the gateway's own. The methods it lists are what
    /// a request with another method is told in `Allow`.
    ///
    /// ```
    /// # fn demo(builder: kappa_gateway::GatewayBuilder) -> kappa_gateway::GatewayBuilder {
    /// use axum::routing::get;
    /// builder.routes(
    ///     axum::Router::new().route("/hello", get(|| async { "hello" })),
    ///     serde_json::json!({"/hello": {"get": {"summary": "Says hello",
    ///         "responses": {"200": {"description": "A greeting",
    ///             "content": {"text/plain": {}}}}}}}),
    /// )
    /// # }
    /// ```
    ///
    /// [`GatewayBuilder::start`] refuses a `paths` that is not an object of
    /// path items, or that describes a path twice.
    pub fn routes(mut self, routes: Router, paths: Value) -> Self {
        self.routes = Some(match self.routes.take() {
            Some(r) => r.merge(routes),
            None => routes,
        });
        match paths {
            Value::Object(items) => self.app_paths.extend(items),
            other => self.app_paths.push((String::new(), other)),
        }
        self
    }

    /// Adds `page` to the console's menu (see [`ConsolePage`](crate::ConsolePage)).
    pub fn console_page(mut self, page: crate::console::ConsolePage) -> Self {
        self.console_pages.push(page);
        self
    }

    /// Serves the figures of `source` (an effect runner, a sink) in `/metrics`.
    pub fn metrics(mut self, source: Arc<dyn MetricsSource>) -> Self {
        self.metric_sources.push(source);
        self
    }

    /// Adds to the service's announcement (when [`GatewayConfig::announce`]
    /// is set) what a part the gateway does not own reads and writes: an
    /// effect runner, a sink. Called every announcement, after the
    /// gateway's own applications are filled in.
    pub fn announce_with(
        mut self,
        announcer: impl Fn(&dyn Log, &mut kappa_service::registry::Announcement) + Send + Sync + 'static,
    ) -> Self {
        self.announcers.push(Box::new(announcer));
        self
    }

    /// Creates missing topics, starts the index, the writer and the outcome
    /// watcher.
    ///
    /// # Errors
    ///
    /// Topics with unequal partition counts, duplicate view names, or log
    /// failures.
    pub fn start(self) -> Result<Gateway, GatewayError> {
        let GatewayBuilder {
            log,
            config,
            actions,
            views,
            routes,
            app_paths,
            metric_sources,
            console_pages,
            announcers,
        } = self;
        let app_paths = crate::api::openapi::application_paths(app_paths)?;
        if config.event_topics.is_empty() {
            return Err(GatewayError::Config("no event topics".to_owned()));
        }
        if config.policy.is_some() && config.auth.is_none() {
            return Err(GatewayError::Config(
                "a policy needs an authenticator: without one nobody is known".to_owned(),
            ));
        }
        for (i, p) in console_pages.iter().enumerate() {
            if !kappa_service::is_action_name(p.id()) {
                return Err(GatewayError::Config(format!(
                    "console page id {:?}: use a kebab-case name, at most 64 bytes",
                    p.id()
                )));
            }
            if console_pages[..i].iter().any(|q| q.id() == p.id()) {
                return Err(GatewayError::Config(format!(
                    "console page {:?} is added twice",
                    p.id()
                )));
            }
        }
        for (i, v) in views.iter().enumerate() {
            if views[..i].iter().any(|w| w.name() == v.name()) {
                return Err(GatewayError::Config(format!(
                    "view {:?} is registered twice",
                    v.name()
                )));
            }
        }
        let partitions = ensure_topics(&*log, &config)?;
        let mut topics = vec![config.commands_topic.clone()];
        topics.extend(config.event_topics.iter().cloned());
        let start_ends = ends_of(&*log, &topics, partitions)?;
        let mut view_start_ends = Vec::with_capacity(views.len());
        for v in &views {
            view_start_ends.push(ends_of(
                &*log,
                v.streams.input_topics(),
                v.streams.partitions(),
            )?);
        }
        let index = Index::start(
            log.clone(),
            &config.index_application_id,
            &config.commands_topic,
            &config.event_topics,
            config.idempotency_window,
        )?;
        let outcomes = OutcomeWatcher::start(log.clone(), &config.event_topics, partitions)?;
        let writer = Writer::start(log.clone(), config.commands_topic.clone())?;
        tracing::info!(
            commands = %config.commands_topic,
            events = ?config.event_topics,
            partitions,
            actions = actions.names().count(),
            views = views.len(),
            "gateway started"
        );
        let limiter = config.rate_limit.map(crate::rate::Limiter::new);
        let state = Arc::new(State {
            log,
            config,
            actions,
            views,
            writer,
            index,
            outcomes,
            idempotency: Idempotency::default(),
            metrics: Metrics::default(),
            metric_sources,
            limiter,
            partitions,
            start_ends,
            view_start_ends,
            app_paths,
            operations: std::sync::OnceLock::new(),
            closing: Arc::default(),
            console_pages,
            sampler: crate::console::stats::Sampler::default(),
        });
        let beacon = match state.config.announce.clone() {
            Some(base) => {
                let weak = Arc::downgrade(&state);
                Some(kappa_service::registry::Beacon::start(
                    state.log.clone(),
                    base,
                    move |a| {
                        if let Some(state) = weak.upgrade() {
                            refresh_announcement(&state, a);
                            for announcer in &announcers {
                                announcer(&*state.log, a);
                            }
                            a.writes.sort();
                            a.writes.dedup();
                        }
                    },
                )?)
            }
            None => None,
        };
        Ok(Gateway {
            state,
            routes,
            _beacon: beacon,
        })
    }
}

/// What the gateway's service reads and writes: commands, and whatever its
/// applications (but the gateway's own index) read and write.
fn refresh_announcement(state: &Arc<State>, a: &mut kappa_service::registry::Announcement) {
    let mut reads = Vec::new();
    let mut writes = vec![state.config.commands_topic.clone()];
    for app in crate::console::api::applications(state) {
        let id = app.application_id();
        if id == state.config.index_application_id {
            continue;
        }
        match kappa_service::registry::lag_of(&*state.log, id, &app.committed_positions()) {
            Ok(r) => reads.extend(r),
            // The last announcement's figures stand until the log answers.
            Err(e) => {
                tracing::warn!(error = %e, application = id, "measuring the lag to announce failed");
                return;
            }
        }
        writes.extend(app.topology().sink_topics(id));
    }
    a.reads = reads;
    a.writes = writes;
}

/// Creates the command and event topics when missing; returns their
/// partition count, which must be the same for all. [`GatewayBuilder::start`]
/// does this too; call it first when a topology must start before the gateway.
///
/// # Errors
///
/// Unequal partition counts, or log failures.
pub fn ensure_topics(log: &dyn Log, config: &GatewayConfig) -> Result<u32, GatewayError> {
    let mut topics = vec![config.commands_topic.clone()];
    topics.extend(config.event_topics.iter().cloned());
    let mut partitions = None;
    for t in &topics {
        let n = ensure_topic(log, t, config.partitions)?;
        match partitions {
            Some(p) if p != n => {
                return Err(GatewayError::Config(format!(
                    "topic {t:?} has {n} partitions and {:?} has {p}: commands and events must be co-partitioned",
                    topics[0]
                )));
            }
            _ => partitions = Some(n),
        }
    }
    Ok(partitions.unwrap_or(config.partitions))
}

/// The end offset of each of the `partitions` partitions of every topic
/// in `topics`, as they are now.
pub(crate) fn ends_of<'a>(
    log: &dyn Log,
    topics: impl IntoIterator<Item = &'a String>,
    partitions: u32,
) -> Result<Vec<(TopicPartition, u64)>, LogError> {
    let mut ends = Vec::new();
    for topic in topics {
        for p in 0..partitions {
            let tp = TopicPartition::new(topic.as_str(), p);
            let end = log.offsets(&tp)?.end;
            ends.push((tp, end));
        }
    }
    Ok(ends)
}

/// The last record of each partition among `ends` (an empty one has
/// none): a reader that has processed them all has seen every record
/// written before the ends were read.
pub(crate) fn last_records(ends: &[(TopicPartition, u64)]) -> Vec<(TopicPartition, u64)> {
    ends.iter()
        .filter(|(_, end)| *end > 0)
        .map(|(tp, end)| (tp.clone(), end - 1))
        .collect()
}

/// Creates `topic` when missing; returns its partition count.
fn ensure_topic(log: &dyn Log, topic: &str, partitions: u32) -> Result<u32, LogError> {
    match log.describe_topic(topic) {
        Ok(d) => Ok(d.spec.partitions),
        Err(LogError::UnknownTopic(_)) => {
            match log.create_topic(&TopicSpec::new(topic, partitions)) {
                Ok(()) | Err(LogError::TopicExists(_)) => {
                    Ok(log.describe_topic(topic)?.spec.partitions)
                }
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}
