//! The service's imperative shell: the notifier that delivers each
//! `limit-threshold-reached` to a webhook (standing in for the SMS or push
//! provider), the PostgreSQL tables kept from the events, and the
//! full-text index of authorizations by merchant.

use std::path::Path;
use std::sync::Arc;

use kappa_effects::postgres::{self, Change, ColumnType, PostgresSinkConfig, Table};
use kappa_effects::progress::Progress;
use kappa_effects::search::{Doc, FieldKind, SearchConfig};
use kappa_effects::{
    EffectsError, HttpEffect, HttpRequest, PostgresSink, Runner, RunnerConfig, SearchSink,
    SinkHandle,
};
use kappa_gateway::{Envelope, GatewayBuilder, MetricsSource};
use kappa_log::{Log, Record};
use kappa_service::registry::Announcement;
use serde_json::{Map, Value, json};

/// The notifier's name: its outcomes are `notification-delivered` and
/// `notification-failed`, its dead letters go to `notification-dead-letters`.
pub const NOTIFIER: &str = "notification";
/// The full-text index's name: `GET /search/authorizations?q=`.
pub const SEARCH_INDEX: &str = "authorizations";
/// The notifier as a service of its own (`card-limits notifier`): its
/// instance on the shared log.
pub const NOTIFIER_SERVICE: &str = "notifier";
/// The external views as a service of their own (`card-limits views`):
/// their instance on the shared log.
pub const VIEWS_SERVICE: &str = "views";

/// Where the shell's parts are, when they run.
#[derive(Clone, Debug)]
pub struct ShellConfig {
    /// The webhook that receives threshold notifications.
    pub notify_url: Option<kappa_effects::reqwest::Url>,
    /// How long one notification attempt may take.
    pub notify_timeout: std::time::Duration,
    /// PostgreSQL connection string for the tables.
    pub postgres: Option<String>,
    /// Directory of the full-text index.
    pub search_dir: Option<std::path::PathBuf>,
    /// The event topic.
    pub events_topic: String,
}

/// The running shell.
#[derive(Default)]
pub struct Shell {
    /// The notifier.
    pub notifier: Option<Runner>,
    /// The PostgreSQL sinks.
    pub sinks: Vec<PostgresSink>,
    /// The full-text index.
    pub search: Option<SearchSink>,
}

impl Shell {
    /// Starts the configured parts. The notifier's attempts run on `runtime`.
    ///
    /// # Errors
    ///
    /// A part could not start (a missing PostgreSQL table: run
    /// `card-limits postgres-schema` first).
    pub fn start(
        log: &Arc<dyn Log>,
        config: &ShellConfig,
        runtime: tokio::runtime::Handle,
    ) -> Result<Self, EffectsError> {
        let mut shell = Shell::default();
        if let Some(url) = &config.notify_url {
            let mut c = RunnerConfig::new(NOTIFIER, &["limit-threshold-reached"]);
            c.input_topic = config.events_topic.clone();
            c.outcomes_topic = config.events_topic.clone();
            c.retry.attempt_timeout = config.notify_timeout;
            shell.notifier = Some(Runner::start(
                log.clone(),
                c,
                Arc::new(notifier(url.clone())?),
                runtime,
            )?);
        }
        if let Some(url) = &config.postgres {
            for (name, table, mapping) in tables() {
                let c = PostgresSinkConfig::new(name, &config.events_topic, table);
                shell
                    .sinks
                    .push(PostgresSink::start(log.clone(), url, c, mapping)?);
            }
        }
        if let Some(dir) = &config.search_dir {
            shell.search = Some(SearchSink::start(
                log.clone(),
                search_config(dir, &config.events_topic),
                authorization_doc,
            )?);
        }
        Ok(shell)
    }

    /// Serves the shell's figures in `/metrics` and the index at `/search`,
    /// and adds the parts to the service's announcement.
    pub fn register(&self, mut builder: GatewayBuilder) -> GatewayBuilder {
        for source in self.metrics_sources() {
            builder = builder.metrics(source);
        }
        let parts = self.progress_parts();
        if !parts.is_empty() {
            builder = builder.announce_with(move |log, a| announce_parts(log, &parts, a));
        }
        if let Some(s) = &self.search {
            builder = builder.routes(
                kappa_effects::search::routes(&[s]),
                kappa_effects::search::paths(&[s]),
            );
        }
        builder
    }

    /// The figures of every part.
    pub fn metrics_sources(&self) -> Vec<Arc<dyn MetricsSource>> {
        let notifier = self.notifier.iter().map(Runner::metrics_source);
        notifier
            .chain(self.sink_handles().map(SinkHandle::metrics_source))
            .collect()
    }

    /// Why parts are stopped or recovering, one line each (empty: all well).
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(n) = &self.notifier {
            if let Some(f) = n.failure() {
                out.push(format!("{NOTIFIER}: {f}"));
            } else if !n.is_running() {
                out.push(format!("{NOTIFIER}: stopped"));
            }
        }
        for sink in self.sink_handles() {
            if let Some(f) = sink.failure() {
                out.push(format!("{}: {f}", sink.name()));
            } else if !sink.is_running() {
                out.push(format!("{}: stopped", sink.name()));
            }
        }
        out
    }

    fn sink_handles(&self) -> impl Iterator<Item = &SinkHandle> {
        let tables = self.sinks.iter().map(|s| &**s);
        tables.chain(self.search.iter().map(|s| &**s))
    }

    /// Records of the event topic every part has made durable (the least
    /// of the parts, each summed over partitions): its growth over a while
    /// is the shell's rate.
    pub fn progress(&self) -> u64 {
        self.progress_parts()
            .iter()
            .map(|p| p.committed().iter().sum::<u64>())
            .min()
            .unwrap_or(0)
    }

    /// Every part's progress, for the service's announcement.
    pub fn progress_parts(&self) -> Vec<Arc<dyn Progress>> {
        let notifier = self.notifier.iter().map(Runner::progress);
        notifier
            .chain(self.sink_handles().map(SinkHandle::progress))
            .collect()
    }

    /// Waits until every part reflects everything the event topic holds
    /// now; false on timeout or when a part stopped.
    ///
    /// # Errors
    ///
    /// Log failures.
    pub fn wait_caught_up(&self, timeout: std::time::Duration) -> Result<bool, EffectsError> {
        let deadline = std::time::Instant::now() + timeout;
        let left = || deadline.saturating_duration_since(std::time::Instant::now());
        if let Some(n) = &self.notifier
            && !n.wait_caught_up(left())?
        {
            return Ok(false);
        }
        for sink in self.sink_handles() {
            if !sink.wait_caught_up(left())? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Stops every part; outcomes already finished are committed.
    ///
    /// # Errors
    ///
    /// The first part that had failed.
    pub fn close(self) -> Result<(), EffectsError> {
        let mut first = Ok(());
        if let Some(n) = self.notifier {
            first = first.and(n.close());
        }
        for s in self.sinks {
            first = first.and(s.close());
        }
        if let Some(s) = self.search {
            first = first.and(s.close());
        }
        first
    }
}

/// Adds what `parts` read (with their lag) and write to an announcement;
/// when the log cannot say how far they are, the last figures stand.
pub fn announce_parts(log: &dyn Log, parts: &[Arc<dyn Progress>], a: &mut Announcement) {
    match kappa_effects::progress::readings(log, parts) {
        Ok(reads) => {
            a.reads
                .retain(|r| !reads.iter().any(|n| n.reader == r.reader));
            a.reads.extend(reads);
        }
        Err(e) => tracing::warn!(error = %e, "measuring the lag to announce failed"),
    }
    a.writes.extend(kappa_effects::progress::writes(parts));
}

/// The notifier's effect: a POST of the notification to `url`.
///
/// # Errors
///
/// The HTTP client could not be built.
pub fn notifier(url: kappa_effects::reqwest::Url) -> Result<HttpEffect, EffectsError> {
    HttpEffect::new(move |event: &Envelope| {
        let d = &event.data;
        Ok(HttpRequest::post(
            url.clone(),
            json!({
                "notification": event.id, "card": d["card"], "threshold": d["threshold"],
                "spent": d["spent"], "limit": d["limit"], "day": d["day"], "at": event.timestamp,
            }),
        ))
    })
}

/// The envelope in a record of the event topic.
fn envelope(record: &Record) -> Result<Option<Envelope>, String> {
    match record.value.as_deref() {
        None => Ok(None),
        Some(v) => serde_json::from_slice(v)
            .map(Some)
            .map_err(|e| e.to_string()),
    }
}

/// `card_limits`: one row per card with a limit; `limit-removed` deletes it.
pub fn limits_table() -> Table {
    Table::new("card_limits", &["card"])
        .column("card", ColumnType::Text)
        .column("limit_cents", ColumnType::BigInt)
        .column("period_days", ColumnType::BigInt)
        .column("set_at", ColumnType::TimestampMs)
}

fn limits_change(record: &Record) -> Result<Change, String> {
    let Some(e) = envelope(record)? else {
        return Ok(Change::Skip);
    };
    let d = &e.data;
    Ok(match e.action.as_str() {
        "limit-set" => Change::Upsert(vec![
            d["card"].clone(),
            d["limit"].clone(),
            d["period_days"].clone(),
            json!(e.timestamp),
        ]),
        "limit-removed" => Change::Delete(vec![d["card"].clone()]),
        _ => Change::Skip,
    })
}

/// `card_authorizations`: one row per decided authorization.
pub fn authorizations_table() -> Table {
    Table::new("card_authorizations", &["card", "auth_id"])
        .column("card", ColumnType::Text)
        .column("auth_id", ColumnType::Text)
        .column("amount", ColumnType::BigInt)
        .column("merchant", ColumnType::Text)
        .column("approved", ColumnType::Boolean)
        .column("spent", ColumnType::BigInt)
        .nullable("limit_cents", ColumnType::BigInt)
        .column("decided_at", ColumnType::TimestampMs)
        .column("event_id", ColumnType::Text)
}

/// Whether an event is a first decision on an authorization (not a repeat).
fn decision(e: &Envelope) -> Option<bool> {
    let approved = match e.action.as_str() {
        "authorization-approved" => true,
        "authorization-declined" => false,
        _ => return None,
    };
    (e.data.get("duplicate").is_none()).then_some(approved)
}

fn authorizations_change(record: &Record) -> Result<Change, String> {
    let Some(e) = envelope(record)? else {
        return Ok(Change::Skip);
    };
    let Some(approved) = decision(&e) else {
        return Ok(Change::Skip);
    };
    let d = &e.data;
    Ok(Change::Upsert(vec![
        d["card"].clone(),
        d["auth_id"].clone(),
        d["amount"].clone(),
        d["merchant"].clone(),
        json!(approved),
        d["spent"].clone(),
        d["limit"].clone(),
        json!(e.timestamp),
        json!(e.id.to_string()),
    ]))
}

/// A record's change to one table.
type TableMapping = fn(&Record) -> Result<Change, String>;

/// The PostgreSQL sinks: (name, table, mapping).
pub fn tables() -> [(&'static str, Table, TableMapping); 2] {
    [
        ("card-limits-limits", limits_table(), limits_change),
        (
            "card-limits-authorizations",
            authorizations_table(),
            authorizations_change,
        ),
    ]
}

/// Creates the PostgreSQL tables (when missing); returns the SQL applied.
///
/// # Errors
///
/// PostgreSQL refused.
pub fn create_postgres_schema(url: &str) -> Result<String, EffectsError> {
    let mut sql = String::new();
    for (_, table, _) in tables() {
        postgres::create_schema(url, &table)?;
        sql.push_str(&postgres::schema_sql(&table)?);
    }
    Ok(sql)
}

/// Empties the PostgreSQL tables and drops the full-text index, so the
/// next start rebuilds them from the log. Run it while the service is stopped.
///
/// # Errors
///
/// PostgreSQL refused, or the index could not be removed.
pub fn rebuild(postgres_url: Option<&str>, search_dir: Option<&Path>) -> Result<(), EffectsError> {
    if let Some(url) = postgres_url {
        for (name, table, _) in tables() {
            postgres::rebuild(url, name, &table)?;
        }
    }
    if let Some(dir) = search_dir {
        kappa_effects::search::rebuild(dir)?;
    }
    Ok(())
}

/// The index: authorizations by merchant, card, decision and amount.
pub fn search_config(dir: &Path, events_topic: &str) -> SearchConfig {
    SearchConfig::new(SEARCH_INDEX, events_topic, dir)
        .field("merchant", FieldKind::Text)
        .field("card", FieldKind::Keyword)
        .field("auth_id", FieldKind::Keyword)
        .field("decision", FieldKind::Keyword)
        .field("amount", FieldKind::Integer)
}

/// An authorization's document, id `card/auth_id`.
pub fn authorization_doc(record: &Record) -> Result<Doc, String> {
    let Some(e) = envelope(record)? else {
        return Ok(Doc::Skip);
    };
    let Some(approved) = decision(&e) else {
        return Ok(Doc::Skip);
    };
    let d = &e.data;
    let text = |k: &str| d[k].as_str().map(|s| Value::from(s.to_owned()));
    let (Some(card), Some(auth)) = (text("card"), text("auth_id")) else {
        return Err("a decision without card or auth_id".to_owned());
    };
    let mut fields = Map::new();
    fields.insert("card".into(), card.clone());
    fields.insert("auth_id".into(), auth.clone());
    fields.insert("merchant".into(), text("merchant").unwrap_or_default());
    fields.insert(
        "decision".into(),
        Value::from(if approved { "approved" } else { "declined" }),
    );
    fields.insert("amount".into(), d["amount"].clone());
    Ok(Doc::Upsert {
        id: format!(
            "{}/{}",
            card.as_str().unwrap_or_default(),
            auth.as_str().unwrap_or_default()
        ),
        fields,
    })
}
