//! The whole service in one process: the gateway with the card actions, the
//! processor, and the card views (`/cards/...` plus the generic `/views`).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRequestParts, OriginalUri, Path, Query, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kappa_gateway::{
    ConsolePage, Gateway, GatewayBuilder, GatewayConfig, GatewayError, Problem, View,
};
use kappa_log::Log;
use kappa_streams::{Assignment, Streams};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::model::{AuthRecord, Balance, Card, DAY_MS, HOLD_MS, day, limit_fields};
use crate::processor::{self, Processing, stores};

/// Ids: cards, authorizations, transactions.
const ID: &str = "^[A-Za-z0-9-]{1,64}$";
/// Largest amount or limit, cents.
pub const AMOUNT_MAX: i64 = 1_000_000_000_000;

/// Registers the four commands with their schemas.
///
/// # Errors
///
/// Never for these schemas.
pub fn actions(builder: GatewayBuilder) -> Result<GatewayBuilder, GatewayError> {
    let id = json!({"type": "string", "pattern": ID});
    let amount = json!({"type": "integer", "minimum": 1, "maximum": AMOUNT_MAX});
    let time = json!({"type": "integer", "minimum": 0});
    builder
        .action(
            "set-limit",
            "Sets a card's spending limit (cents) over a period of days (default 30)",
            json!({"type": "object", "additionalProperties": false, "required": ["card", "limit"],
                "properties": {"card": id, "limit": {"type": "integer", "minimum": 0, "maximum": AMOUNT_MAX},
                    "period_days": {"type": "integer", "minimum": 1, "maximum": processor::PERIOD_DAYS_MAX}}}),
        )?
        .action(
            "remove-limit",
            "Removes a card's limit (its history stays)",
            json!({"type": "object", "additionalProperties": false, "required": ["card"], "properties": {"card": id}}),
        )?
        .action(
            "authorize",
            "Asks to approve a card payment against the card's limit",
            json!({"type": "object", "additionalProperties": false,
                "required": ["auth_id", "card", "amount", "merchant", "timestamp"],
                "properties": {"auth_id": id, "card": id, "amount": amount,
                    "merchant": {"type": "string", "minLength": 1, "maxLength": 128}, "timestamp": time}}),
        )?
        .action(
            "settle",
            "Records a settled transaction, releasing the authorization it names",
            json!({"type": "object", "additionalProperties": false,
                "required": ["txn_id", "card", "amount", "timestamp"],
                "properties": {"txn_id": id, "card": id, "amount": amount, "timestamp": time, "auth_id": id}}),
        )
}

/// A running service.
pub struct Service {
    /// The gateway (serve `gateway.router()`).
    pub gateway: Gateway,
    /// The processor's runtime.
    pub streams: Arc<Streams>,
}

/// Starts the processor and the gateway on `log`.
///
/// # Errors
///
/// Log or topology failures.
pub fn start(
    log: Arc<dyn Log>,
    config: GatewayConfig,
    commit_interval: Duration,
) -> Result<Service, GatewayError> {
    start_with(log, config, commit_interval, |b| b)
}

/// As [`start`], letting `extend` add to the gateway (the shell's routes
/// and figures) before it starts.
///
/// # Errors
///
/// Log or topology failures.
pub fn start_with(
    log: Arc<dyn Log>,
    config: GatewayConfig,
    commit_interval: Duration,
    extend: impl FnOnce(GatewayBuilder) -> GatewayBuilder,
) -> Result<Service, GatewayError> {
    let processing = Processing::single_threaded(commit_interval);
    start_scaled(log, config, processing, None, extend)
}

/// How one of several instances sharing the processor's work runs.
#[derive(Clone, Debug)]
pub struct ScaleOut {
    /// The URL the other instances reach this one's HTTP server at.
    pub advertised_url: String,
    /// Warm copies of other instances' stores to keep (see
    /// [`kappa_streams::Assignment::Group`]).
    pub standby_replicas: u32,
}

/// As [`start_with`]; with `scale_out`, this instance shares the
/// processor's tasks with the other instances of the service (a consumer
/// group on Kafka), and forwards card reads to the instance that runs the
/// card's task.
///
/// # Errors
///
/// Log or topology failures.
pub fn start_scaled(
    log: Arc<dyn Log>,
    mut config: GatewayConfig,
    processing: Processing,
    scale_out: Option<ScaleOut>,
    extend: impl FnOnce(GatewayBuilder) -> GatewayBuilder,
) -> Result<Service, GatewayError> {
    let mut streams_config = processing.streams_config();
    if let Some(s) = &scale_out {
        streams_config.assignment = Assignment::Group;
        streams_config.application_server = Some(s.advertised_url.clone());
        streams_config.num_standby_replicas = s.standby_replicas;
        // Each instance keeps a whole index of the commands and events of
        // its own (the index serves lookups by id, which any instance answers).
        let suffix: String = s
            .advertised_url
            .trim_start_matches("http://")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        config.index_application_id = format!("{}-{suffix}", config.index_application_id);
    }
    let commands = config.commands_topic.clone();
    let events = config
        .event_topics
        .first()
        .cloned()
        .unwrap_or_else(|| "events".to_owned());
    let builder = actions(Gateway::builder(log.clone(), config.clone()))?;
    // The processor reads the topics, so they must exist before it starts.
    kappa_gateway::ensure_topics(&*log, &config)?;
    let streams = processor::start_configured(log, &commands, &events, streams_config)?;
    let gateway = extend(builder)
        .view(View::new(stores::CARDS, &streams, stores::CARDS))
        .view(View::new(stores::AUTHS, &streams, stores::AUTHS))
        .routes(routes(streams.clone()), paths(&streams))
        .console_page(ConsolePage::new(
            "cards",
            "Card limits",
            include_str!("console/cards.js"),
        ))
        .start()?;
    Ok(Service { gateway, streams })
}

/// Drops the service's stores (the processor's and the gateway index's) so
/// that the next start rebuilds them from the log, without deciding any
/// command again. Run it while the service is stopped.
///
/// # Errors
///
/// Log failures; a rebuild cut short can be run again.
pub fn rebuild(log: &dyn Log, config: &GatewayConfig) -> Result<usize, kappa_log::LogError> {
    let mut dropped =
        kappa_streams::rebuild_application(log, processor::APPLICATION_ID)?.store_entries_dropped;
    dropped += kappa_streams::rebuild_application(log, &config.index_application_id)?
        .store_entries_dropped;
    Ok(dropped)
}

/// `/cards/...`: balances and authorizations of one card.
pub fn routes(streams: Arc<Streams>) -> Router {
    Router::new()
        .route("/cards/{card}", get(card))
        .route("/cards/{card}/balance", get(balance))
        .route("/cards/{card}/authorizations", get(authorizations))
        .route_layer(axum::middleware::from_fn_with_state(
            streams.clone(),
            to_owner,
        ))
        .with_state(streams)
}

/// The OpenAPI description of [`routes`] over `streams` (the processor,
/// whose inputs a `min_position` names).
pub fn paths(streams: &Streams) -> Value {
    let inputs: Vec<&str> = streams.input_topics().iter().map(String::as_str).collect();
    let card = json!({"name": "card", "in": "path", "required": true, "description": "Card id.",
        "schema": {"type": "string", "pattern": ID}});
    let read_your_writes = [
        kappa_gateway::position::min_position_parameter(&inputs, streams.partitions()),
        json!({"name": "wait_ms", "in": "query", "description": "How long to wait for min_position (default 1000; longer than 60000 is cut to it).",
            "schema": {"type": "integer", "minimum": 0, "maximum": u64::MAX}}),
    ];
    let with = |more: Vec<Value>| -> Vec<Value> {
        let mut params = vec![card.clone()];
        params.extend(more);
        params.extend(read_your_writes.iter().cloned());
        params
    };
    let money = json!({"type": ["integer", "null"]});
    let balance = json!({"type": "object", "required": ["card", "settled", "pending", "spent", "position"], "properties": {
        "card": {"type": "string"}, "limit": money, "period_days": {"type": "integer"},
        "settled": {"type": "integer"}, "pending": {"type": "integer"}, "spent": {"type": "integer"},
        "available": money, "as_of": {"type": ["integer", "null"]},
        "position": {"type": "string", "description": "The positions of the card's task the answer reflects."}}});
    let authorizations = json!({"type": "object", "required": ["card", "authorizations", "position"], "properties": {
        "card": {"type": "string"}, "position": {"type": "string"},
        "authorizations": {"type": "array", "items": {"type": "object", "properties": {
            "auth_id": {"type": "string"}, "amount": {"type": "integer"}, "merchant": {"type": "string"},
            "timestamp": {"type": "integer"}, "status": {"enum": ["pending", "settled", "declined"]},
            "decision": {}}}}}});
    let problem = Problem::openapi_response;
    let ok = |description: &str, schema: &Value| json!({"description": description, "content": {"application/json": {"schema": schema}}});
    json!({
        "/cards/{card}": {"get": {"summary": "A card's limit and its balance now",
            "parameters": with(Vec::new()),
            "responses": {"200": ok("The card", &balance), "404": problem("No such card")}}},
        "/cards/{card}/balance": {"get": {"summary": "A card's balance at a time",
            "parameters": with(vec![json!({"name": "at", "in": "query", "required": true,
                "description": "The time (ms since the epoch).", "schema": {"type": "integer", "minimum": i64::MIN, "maximum": i64::MAX}})]),
            "responses": {"200": ok("The balance at that time", &balance),
                "404": problem(&format!("No such card, or at is more than {} days before the card's latest event (older panes are not kept)",
                    processor::BALANCE_HISTORY_MS / DAY_MS))}}},
        "/cards/{card}/authorizations": {"get": {"summary": "A card's authorizations",
            "parameters": with(vec![json!({"name": "status", "in": "query", "description": "Only these.",
                "schema": {"enum": ["pending", "settled", "declined"]}})]),
            "responses": {"200": ok("The authorizations, oldest id first", &authorizations)}}},
    })
}

/// Sends a card read to the instance that runs the card's task.
async fn to_owner(
    State(streams): State<Arc<Streams>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let card = request
        .uri()
        .path()
        .strip_prefix("/cards/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default();
    let task = streams.store(stores::CARDS).partition_of(card.as_bytes());
    kappa_gateway::forward::to_owner(&streams, task, request, async |r| next.run(r).await).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Read {
    at: Option<i64>,
    status: Option<String>,
    min_position: Option<String>,
    wait_ms: Option<u64>,
}

/// A read of one card, as every `/cards/{card}/...` route takes it: the
/// query parsed, the card id checked, and `min_position` waited for if
/// asked, before the handler runs.
struct CardRead {
    streams: Arc<Streams>,
    card: String,
    query: Read,
}

impl FromRequestParts<Arc<Streams>> for CardRead {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        streams: &Arc<Streams>,
    ) -> Result<Self, Response> {
        let Path(card) = Path::<String>::from_request_parts(parts, streams)
            .await
            .map_err(IntoResponse::into_response)?;
        let OriginalUri(uri) = OriginalUri::from_request_parts(parts, streams)
            .await
            .map_err(IntoResponse::into_response)?;
        let query = prepare(streams, &card, &uri)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Self {
            streams: streams.clone(),
            card,
            query,
        })
    }
}

/// Parses the query, checks the card id, and waits for `min_position` if asked.
async fn prepare(
    streams: &Arc<Streams>,
    card: &str,
    uri: &axum::http::Uri,
) -> Result<Read, Problem> {
    let q: Read = Query::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| Problem::bad_request(format!("invalid query: {}", e.body_text())))?;
    let valid = !card.is_empty()
        && card.len() <= 64
        && card.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !valid {
        return Err(Problem::bad_request(format!(
            "{card:?} is not a card id (1 to 64 of A-Z a-z 0-9 -)"
        )));
    }
    if let Some(min) = &q.min_position {
        let wait = Duration::from_millis(q.wait_ms.unwrap_or(1000).min(60_000));
        kappa_gateway::wait_for_position(streams, min, wait).await?;
    }
    Ok(q)
}

/// Positions of the card's task that the answer reflects.
fn position(streams: &Streams, card: &str) -> String {
    let partition = streams.store(stores::CARDS).partition_of(card.as_bytes());
    kappa_gateway::position::reflected(streams, Some(partition))
}

fn pane_sum(
    streams: &Streams,
    store: &str,
    card: &str,
    from: i64,
    to: i64,
) -> Result<i64, Problem> {
    let panes = streams
        .store(store)
        .fetch_key_windows(card.as_bytes(), from, to)
        .map_err(Problem::internal)?;
    Ok(panes
        .iter()
        .filter_map(|(_, v)| v[..].try_into().ok().map(i64::from_be_bytes))
        .sum())
}

/// The card's state and its balance at `t` (its latest event time if none).
fn card_balance(streams: &Streams, card: &str, at: Option<i64>) -> Result<Value, Problem> {
    let position = position(streams, card);
    let state: Card = match streams
        .store(stores::CARDS)
        .get(card.as_bytes())
        .map_err(Problem::internal)?
    {
        Some(bytes) => serde_json::from_slice(&bytes).map_err(Problem::internal)?,
        None => {
            return Err(Problem::not_found(format!("no card {card:?}")).with("position", position));
        }
    };
    let t = at.or(state.latest);
    if let (Some(at), Some(latest)) = (at, state.latest)
        && at < latest.saturating_sub(processor::BALANCE_HISTORY_MS)
    {
        return Err(Problem::not_found(format!(
            "the balance at={at} is no longer kept: it is more than {} days before the card's latest event ({latest})",
            processor::BALANCE_HISTORY_MS / DAY_MS
        )));
    }
    let balance = match t {
        Some(t) => {
            let today = day(t);
            Balance {
                settled: pane_sum(
                    streams,
                    stores::SETTLED,
                    card,
                    today - state.period_days() * DAY_MS + DAY_MS,
                    today,
                )?,
                pending: pane_sum(
                    streams,
                    stores::PENDING,
                    card,
                    today - HOLD_MS + DAY_MS,
                    today,
                )?,
            }
        }
        None => Balance::default(),
    };
    let (limit, available) = limit_fields(state.limit, balance.spent());
    Ok(json!({
        "card": card, "limit": limit, "period_days": state.period_days(),
        "settled": balance.settled, "pending": balance.pending, "spent": balance.spent(),
        "available": available, "as_of": t, "position": position,
    }))
}

async fn card(read: CardRead) -> Result<axum::Json<Value>, Problem> {
    if read.query.at.is_some() || read.query.status.is_some() {
        return Err(Problem::bad_request(
            "use /cards/{card}/balance?at= or /authorizations?status=",
        ));
    }
    blocking(move || card_balance(&read.streams, &read.card, None)).await
}

async fn balance(read: CardRead) -> Result<axum::Json<Value>, Problem> {
    let Some(at) = read.query.at else {
        return Err(Problem::bad_request("at=MS is required"));
    };
    blocking(move || card_balance(&read.streams, &read.card, Some(at))).await
}

async fn authorizations(read: CardRead) -> Result<axum::Json<Value>, Problem> {
    let wanted = match read.query.status.as_deref() {
        None => None,
        Some(s @ ("pending" | "settled" | "declined")) => Some(s.to_owned()),
        Some(other) => {
            return Err(Problem::bad_request(format!(
                "status={other:?}: use pending, settled or declined"
            )));
        }
    };
    blocking(move || {
        let CardRead { streams, card, .. } = read;
        let position = position(&streams, &card);
        let prefix = format!("{card}/");
        let mut list = Vec::new();
        for (k, v) in streams
            .store(stores::AUTHS)
            .prefix(prefix.as_bytes())
            .map_err(Problem::internal)?
        {
            let record: AuthRecord = serde_json::from_slice(&v).map_err(Problem::internal)?;
            let status = serde_json::to_value(record.status).map_err(Problem::internal)?;
            if wanted.as_deref().is_some_and(|w| status != w) {
                continue;
            }
            list.push(json!({
                "auth_id": String::from_utf8_lossy(&k[prefix.len()..]),
                "amount": record.amount, "merchant": record.merchant, "timestamp": record.timestamp,
                "status": status, "decision": record.decision,
            }));
        }
        Ok(json!({"card": card, "authorizations": list, "position": position}))
    })
    .await
}

async fn blocking(
    f: impl FnOnce() -> Result<Value, Problem> + Send + 'static,
) -> Result<axum::Json<Value>, Problem> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(Problem::internal)?
        .map(axum::Json)
}
