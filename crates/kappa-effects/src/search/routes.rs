//! `GET /search/{index}?q=&limit=&min_position=&wait_ms=`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kappa_service::position::parse_positions;
use kappa_service::{Problem, problem_type};
use serde::Deserialize;
use serde_json::json;

use super::{SearchError, SearchSink, Searchable};
use crate::sink::Shared;

/// Longest query accepted, in characters.
const QUERY_CHARS_MAX: usize = 1024;
/// Most hits one answer returns.
const LIMIT_MAX: usize = 1000;
/// Longest `wait_ms`.
const WAIT_MAX: Duration = Duration::from_secs(60);

type Indexes = Arc<Vec<(Arc<Searchable>, Arc<Shared>)>>;

/// Routes serving `sinks` at `/search/{name}`; merge them into the gateway
/// with `GatewayBuilder::routes`.
///
/// Parameters: `q` (tantivy's query language), `limit` (default 20, at most
/// 1000), and `min_position=topic/partition/offset,…` with `wait_ms` to
/// read your writes. Every answer carries the `position` it reflects.
pub fn routes(sinks: &[&SearchSink]) -> Router {
    let indexes: Indexes = Arc::new(
        sinks
            .iter()
            .map(|s| (s.searchable.clone(), s.thread.shared()))
            .collect(),
    );
    Router::new()
        .route("/search/{index}", get(search))
        .with_state(indexes)
}

/// The OpenAPI description of [`routes`] (an OpenAPI `paths` object, as
/// `GatewayBuilder::routes` takes it beside the router), naming `sinks`'
/// indexes.
pub fn paths(sinks: &[&SearchSink]) -> serde_json::Value {
    let names: Vec<&str> = sinks.iter().map(|s| s.searchable.name.as_str()).collect();
    // A position every index takes: of the topic they all read.
    let shared: Vec<Arc<Shared>> = sinks.iter().map(|s| s.thread.shared()).collect();
    let (topics, partitions) = match shared.split_first() {
        Some((first, rest)) if rest.iter().all(|s| s.topic() == first.topic()) => (
            vec![first.topic()],
            rest.iter()
                .map(|s| s.partitions())
                .fold(first.partitions(), u32::min),
        ),
        _ => (Vec::new(), 0),
    };
    let problem = Problem::openapi_response;
    json!({"/search/{index}": {"get": {
        "summary": "Full-text search of an index the service keeps",
        "description": "q is in tantivy's query language (field:term, AND, OR, quoted phrases); a query that does not parse is answered 400 with the parser's reason.",
        "parameters": [
            {"name": "index", "in": "path", "required": true, "description": "The index.",
                "schema": {"enum": names}},
            {"name": "q", "in": "query", "required": true, "description": "What to search for.",
                "schema": {"type": "string", "minLength": 1, "maxLength": QUERY_CHARS_MAX, "pattern": "\\S"}},
            {"name": "limit", "in": "query", "description": "Most hits (default 20).",
                "schema": {"type": "integer", "minimum": 1, "maximum": LIMIT_MAX}},
            kappa_service::position::min_position_parameter(&topics, partitions),
            {"name": "wait_ms", "in": "query", "description": "How long to wait for min_position (default 0).",
                "schema": {"type": "integer", "minimum": 0, "maximum": WAIT_MAX.as_secs() * 1000}}],
        "responses": {
            "200": {"description": "Hits, best first, and the positions they reflect", "content": {"application/json": {"schema":
                {"type": "object", "required": ["index", "query", "total", "hits", "position"], "properties": {
                    "index": {"type": "string"}, "query": {"type": "string"}, "total": {"type": "integer"},
                    "hits": {"type": "array"}, "position": {"type": "string"}}}}}},
            "400": problem("A parameter is missing, malformed or out of range, or q does not parse"),
            "404": problem("No such index"),
            "503": problem("min_position not reached within wait_ms; retry after Retry-After")}}}})
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchQuery {
    q: Option<String>,
    limit: Option<usize>,
    min_position: Option<String>,
    wait_ms: Option<u64>,
}

fn position(shared: &Shared) -> String {
    let committed: Vec<(kappa_log::TopicPartition, u64)> = shared
        .committed()
        .into_iter()
        .enumerate()
        .map(|(p, next)| {
            (
                kappa_log::TopicPartition::new(shared.topic(), p as u32),
                next,
            )
        })
        .collect();
    kappa_service::position::processed_token(&committed)
}

async fn search(
    State(indexes): State<Indexes>,
    Path(name): Path<String>,
    query: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let Query(query) = query.map_err(|e| Problem::bad_request(e.body_text()))?;
    let Some((searchable, shared)) = indexes.iter().find(|(s, _)| s.name == name).cloned() else {
        let known: Vec<&str> = indexes.iter().map(|(s, _)| s.name.as_str()).collect();
        return Err(Problem::not_found(format!(
            "no index {name:?}; there are {known:?}"
        )));
    };
    let q = query.q.unwrap_or_default();
    if q.trim().is_empty() {
        return Err(Problem::bad_request("q is required: what to search for"));
    }
    if q.chars().count() > QUERY_CHARS_MAX {
        return Err(Problem::bad_request(format!(
            "q is longer than {QUERY_CHARS_MAX} characters"
        )));
    }
    let limit = query.limit.unwrap_or(20);
    if limit == 0 || limit > LIMIT_MAX {
        return Err(Problem::bad_request(format!(
            "limit must be 1 to {LIMIT_MAX}"
        )));
    }
    let wait = Duration::from_millis(query.wait_ms.unwrap_or(0));
    if wait > WAIT_MAX {
        return Err(Problem::bad_request(format!(
            "wait_ms must be at most {}",
            WAIT_MAX.as_millis()
        )));
    }
    // Each position as a record (to check it was written) and as the
    // next offset the index must reach.
    let (mut written, mut targets) = (Vec::new(), Vec::new());
    if let Some(min) = &query.min_position {
        for p in parse_positions(min).map_err(Problem::bad_request)? {
            if *p.topic != *shared.topic() || p.partition >= shared.partitions() {
                return Err(Problem::bad_request(format!(
                    "min_position {p}: index {name:?} reads {} with {} partitions",
                    shared.topic(),
                    shared.partitions()
                )));
            }
            written.push((
                kappa_log::TopicPartition::new(shared.topic(), p.partition),
                p.offset,
            ));
            targets.push((p.partition, p.offset.saturating_add(1)));
        }
    }
    let answer = tokio::task::spawn_blocking(move || {
        if let Some(why) = kappa_service::position::not_written(shared.log(), &written)
            .map_err(Problem::internal)?
        {
            return Err(Problem::not_found(why).typed(&problem_type::POSITION_NOT_WRITTEN));
        }
        if !targets.is_empty() && !shared.wait_for(&targets, wait) {
            return Err(Problem::unavailable(
                format!(
                    "the index has not reached min_position within {} ms; retry",
                    wait.as_millis()
                ),
                1,
            )
            .typed(&problem_type::POSITION_NOT_REACHED));
        }
        let position = position(&shared);
        let hits = searchable.search(&q, limit).map_err(|e| match e {
            SearchError::Query(why) => Problem::bad_request(why),
            SearchError::Index(e) => Problem::internal(e),
        })?;
        Ok(json!({
            "index": searchable.name,
            "query": q,
            "total": hits.total,
            "hits": hits.hits,
            "position": position,
        }))
    })
    .await
    .map_err(Problem::internal)??;
    Ok((StatusCode::OK, axum::Json(answer)).into_response())
}
