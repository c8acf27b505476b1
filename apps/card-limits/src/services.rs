//! The shell's parts as services of their own: `card-limits notifier` and
//! `card-limits views` each run in a process of their own on the shared
//! log (a Kappa node's, `card-limits serve --kafka-listen`, or a Kafka
//! cluster), keep their own progress there, and answer on a small HTTP
//! face: `GET /health`, `GET /metrics` and, for the views, the full-text
//! index at `GET /search/authorizations`. They know nothing of the
//! decision service but the event topic.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use kappa_effects::EffectsError;
use kappa_log::{Log, LogError};
use kappa_service::MetricFamilies;

use crate::shell::Shell;

/// `location` with `kappa.instance=<instance>` added when it names no
/// instance, so each service owns its commit topic and its local state
/// directory (`$KAPPA_STATE_DIR/<instance>`) without being told.
///
/// ```
/// use card_limits::services::with_instance;
/// assert_eq!(with_instance("kafka://h:9092", "notifier"), "kafka://h:9092?kappa.instance=notifier");
/// assert_eq!(with_instance("kafka://h:9092?a=b", "notifier"), "kafka://h:9092?a=b&kappa.instance=notifier");
/// assert_eq!(with_instance("kafka://h:9092?kappa.instance=n2", "notifier"), "kafka://h:9092?kappa.instance=n2");
/// ```
pub fn with_instance(location: &str, instance: &str) -> String {
    match location.split_once('?') {
        _ if named_instance(location).is_some() => location.to_owned(),
        Some((_, "")) => format!("{location}kappa.instance={instance}"),
        Some(_) => format!("{location}&kappa.instance={instance}"),
        None => format!("{location}?kappa.instance={instance}"),
    }
}

/// The `kappa.instance` a location names, if it names one.
///
/// ```
/// use card_limits::services::named_instance;
/// assert_eq!(named_instance("kafka://h:9092?a=b&kappa.instance=blue"), Some("blue"));
/// assert_eq!(named_instance("kafka://h:9092"), None);
/// ```
pub fn named_instance(location: &str) -> Option<&str> {
    let (_, query) = location.split_once('?')?;
    query
        .split('&')
        .find_map(|p| p.strip_prefix("kappa.instance="))
}

/// A `kafka://` location without its query, which may hold credentials:
/// what a service says about where it runs.
pub fn without_query(location: &str) -> &str {
    location.split_once('?').map_or(location, |(l, _)| l)
}

/// Waits until `topic` exists: the decision service creates it, and a
/// service started before it waits instead of failing. Returns its
/// partition count.
///
/// # Errors
///
/// The topic did not appear within `timeout`, or the log failed.
pub fn wait_for_topic(log: &dyn Log, topic: &str, timeout: Duration) -> Result<u32, LogError> {
    let deadline = Instant::now() + timeout;
    let mut said = false;
    loop {
        match log.partition_count(topic) {
            Ok(n) => return Ok(n),
            Err(LogError::UnknownTopic(_)) if Instant::now() < deadline => {
                if !said {
                    tracing::warn!(
                        topic,
                        "waiting for the topic to be created (start `card-limits serve`)"
                    );
                    said = true;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(e),
        }
    }
}

/// How a service caught up with the log when it started.
#[derive(Clone, Copy, Debug)]
pub struct CatchUp {
    /// Records of the event topic every part made durable meanwhile.
    pub records: u64,
    /// How long it took.
    pub took: Duration,
}

impl CatchUp {
    /// Records per second.
    pub fn rate(&self) -> f64 {
        self.records as f64 / self.took.as_secs_f64().max(1e-9)
    }
}

impl std::fmt::Display for CatchUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "caught up with {} records in {:.2} s ({:.0} records/s)",
            self.records,
            self.took.as_secs_f64(),
            self.rate()
        )
    }
}

/// Waits until every part of `shell` has reflected all the event topic
/// held at some moment, and measures how long that took; `None` once
/// `stop` is set first. A terminal shows how far the parts are through
/// what `log` held at the start meanwhile.
///
/// # Errors
///
/// Log failures.
pub fn catch_up(
    log: &dyn Log,
    shell: &Shell,
    stop: &AtomicBool,
) -> Result<Option<CatchUp>, EffectsError> {
    let before = shell.progress();
    let started = Instant::now();
    let parts = shell.progress_parts();
    let ends = kappa_effects::progress::ends(log, &parts)?;
    let _shown = kappa_service::Progress::follow("catching up", move || {
        kappa_effects::progress::through(&parts, &ends)
    });
    // In slices, to notice `stop`; each slice aims at the end as it is then.
    while !shell.wait_caught_up(Duration::from_millis(500))? {
        if stop.load(Ordering::Acquire) {
            return Ok(None);
        }
    }
    Ok(Some(CatchUp {
        records: shell.progress().saturating_sub(before),
        took: started.elapsed(),
    }))
}

/// The service's HTTP face: `/health` (200, or 503 naming the parts that
/// failed), `/metrics` (the parts' figures) and the index's `/search` when
/// the shell keeps one.
pub fn router(shell: Arc<Shell>) -> Router {
    let search = shell
        .search
        .as_ref()
        .map(|s| kappa_effects::search::routes(&[s]));
    let face = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(shell);
    match search {
        Some(search) => face.merge(search),
        None => face,
    }
}

async fn health(State(shell): State<Arc<Shell>>) -> impl IntoResponse {
    let failures = shell.failures();
    if failures.is_empty() {
        (StatusCode::OK, "ok\n".to_owned())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{}\n", failures.join("\n")),
        )
    }
}

async fn metrics(State(shell): State<Arc<Shell>>) -> impl IntoResponse {
    let mut families = MetricFamilies::default();
    for source in shell.metrics_sources() {
        source.collect(&mut families);
    }
    let mut text = String::new();
    families.render(&mut text);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
