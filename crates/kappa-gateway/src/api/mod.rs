//! The HTTP routes. Each submodule is one part of the API; this one wires
//! them into a router with the shared limits, metrics and error shapes.

pub(crate) mod commands;
pub(crate) mod history;
pub(crate) mod live;
pub(crate) mod openapi;
pub(crate) mod ops;
pub(crate) mod problems;
pub(crate) mod views;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Query, Request};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use kappa_log::Position;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::gateway::State;
use kappa_service::{Problem, problem_type};

pub(crate) type Shared = Arc<State>;

/// The gateway's routes, plus the application's own, and the same API over gRPC.
pub(crate) fn router(state: Shared, app: Option<Router>) -> Router {
    let limit = state.config.body_limit_bytes;
    let mut r = Router::new()
        .route(
            "/commands",
            post(commands::post).get(history::list_commands),
        )
        .route("/commands/updates", get(live::commands))
        .route("/commands/{id}", get(history::get_command))
        .route("/events", get(history::list_events))
        .route("/events/updates", get(live::events))
        .route("/events/{id}", get(history::get_event))
        .route("/views", get(views::list))
        .route("/views/{store}", get(views::scan))
        .route("/views/{store}/{key}", get(views::get))
        .route("/views/{store}/{key}/windows", get(views::windows))
        .route("/openapi.json", get(openapi::document))
        .route("/docs", get(openapi::page))
        .route("/problems", get(problems::list))
        .route("/problems/{name}", get(problems::get))
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready_handler))
        .route("/metrics", get(ops::metrics))
        .with_state(state.clone())
        .merge(crate::console::routes(state.clone()));
    if let Some(app) = app {
        r = r.merge(app);
    }
    let for_405 = state.clone();
    let for_grpc = state.clone();
    let http = r
        .fallback(not_found)
        .method_not_allowed_fallback(move |request: Request| {
            method_not_allowed(for_405.clone(), request)
        })
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            refuse_unknown_query_parameters,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(middleware::from_fn_with_state(state, track));
    crate::grpc::routes(&for_grpc, http)
}

/// What a request asks to do, owned (percent-decoded keys).
enum Asked<'a> {
    View(&'a str, Option<String>),
    Stream(&'static str),
    Route(&'a str),
}

impl Asked<'_> {
    fn as_access(&self) -> crate::auth::Access<'_> {
        use crate::auth::Access;
        match self {
            Asked::View(store, key) => Access::View {
                store,
                key: key.as_deref(),
            },
            Asked::Stream(name) => Access::Stream { name },
            Asked::Route(path) => Access::Route { path },
        }
    }
}

/// The access a request needs, from its method and path; `None` for
/// `POST /commands`, which its handler checks once it knows the action and key.
fn access_of<'a>(method: &axum::http::Method, path: &'a str) -> Option<Asked<'a>> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["commands"] if method == axum::http::Method::POST => None,
        ["commands", ..] => Some(Asked::Stream("commands")),
        ["events", ..] => Some(Asked::Stream("events")),
        ["views", store] => Some(Asked::View(store, None)),
        ["views", store, key] | ["views", store, key, "windows"] => {
            Some(Asked::View(store, Some(crate::auth::decode_segment(key))))
        }
        _ => Some(Asked::Route(path)),
    }
}

/// 403 for an authenticated principal the policy does not allow.
pub(crate) fn forbidden(state: &State, principal: &crate::auth::Principal, what: &str) -> Problem {
    state.metrics.auth_denied("forbidden");
    tracing::info!(subject = %principal.subject, %what, "refused by the policy");
    Problem::new(
        StatusCode::FORBIDDEN,
        format!("{} may not do this: {what}", principal.subject),
    )
    .typed(&problem_type::FORBIDDEN)
    .with("reason", "forbidden")
}

/// Routes anyone may call: a load balancer's probes.
const PUBLIC_PATHS: [&str; 2] = ["/health", "/ready"];

/// Paths anyone may call, whatever the security settings: the probes, the
/// console's pages (not its API) and the problem types' pages.
pub(crate) fn is_public(path: &str) -> bool {
    PUBLIC_PATHS.contains(&path) || crate::console::is_public(path) || problems::is_public(path)
}

/// Who sends a request, from its `Authorization` header, when the gateway
/// authenticates (`None` when it does not): 401 without valid credentials,
/// 403 when the policy does not allow `access` (`None`: the handler checks),
/// 429 over the principal's request budget. The HTTP and gRPC faces both
/// admit requests here, so the two answer alike.
pub(crate) fn admit(
    state: &State,
    authorization: Option<&str>,
    access: Option<crate::auth::Access<'_>>,
    what: &str,
) -> Result<Option<crate::auth::Principal>, Problem> {
    let Some(auth) = &state.config.auth else {
        return Ok(None);
    };
    let principal = auth.authenticate(authorization).map_err(|e| {
        state.metrics.auth_denied(e.reason());
        Problem::new(StatusCode::UNAUTHORIZED, e.to_string())
            .typed(&problem_type::UNAUTHENTICATED)
            .with("reason", e.reason())
    })?;
    if let Some(policy) = &state.config.policy
        && let Some(access) = access
        && !policy.allows(&principal, &access)
    {
        return Err(forbidden(state, &principal, what));
    }
    if let Some(limiter) = &state.limiter
        && let Err(wait) = limiter.take(&principal.subject, Instant::now())
    {
        state.metrics.auth_denied("rate-limited");
        return Err(Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("{} is sending too many requests", principal.subject),
        )
        .typed(&problem_type::RATE_LIMITED)
        .with("reason", "rate-limited")
        .retry_after(wait.as_secs().max(1)));
    }
    Ok(Some(principal))
}

/// Refuses requests without valid credentials (401) when the gateway
/// authenticates; otherwise hands the [`Principal`](crate::auth::Principal)
/// to the handlers.
async fn authenticate(
    axum::extract::State(state): axum::extract::State<Shared>,
    mut request: Request,
    next: Next,
) -> Response {
    if state.config.auth.is_none() || is_public(request.uri().path()) {
        return next.run(request).await;
    }
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("\u{fffd}"));
    let asked = access_of(request.method(), request.uri().path());
    match admit(
        &state,
        header,
        asked.as_ref().map(Asked::as_access),
        request.uri().path(),
    ) {
        Ok(principal) => {
            if let Some(principal) = principal {
                request.extensions_mut().insert(principal);
            }
            next.run(request).await
        }
        Err(problem) => {
            let unauthorized = problem.status() == StatusCode::UNAUTHORIZED;
            let mut r = problem.into_response();
            if unauthorized {
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"kappa\""),
                );
            }
            r
        }
    }
}

/// 400 for a query parameter the operation's document does not list, so
/// that every route, the application's too, treats unknown parameters
/// alike: refused, never silently ignored.
async fn refuse_unknown_query_parameters(
    axum::extract::State(state): axum::extract::State<Shared>,
    request: Request,
    next: Next,
) -> Response {
    if request.uri().query().is_some()
        && let Some(path) = request.extensions().get::<MatchedPath>()
        && let Some(name) =
            openapi::unknown_query_parameter(&state, request.method(), path.as_str(), request.uri())
    {
        return Problem::bad_request(format!(
            "unknown query parameter {name:?} for {} {}: see /openapi.json",
            request.method(),
            path.as_str()
        ))
        .into_response();
    }
    next.run(request).await
}

async fn not_found(uri: Uri) -> Problem {
    Problem::not_found(format!("nothing at {}", uri.path()))
}

/// 405, with `Allow` naming the methods `/openapi.json` lists for the path.
async fn method_not_allowed(state: Shared, request: Request) -> Response {
    let mut r = Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    )
    .into_response();
    let allowed = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| openapi::allowed_methods(&state, m.as_str()))
        .unwrap_or_default();
    if let Ok(v) = HeaderValue::from_str(&allowed) {
        r.headers_mut().insert(header::ALLOW, v);
    }
    r
}

/// Counts every answer by route and status, with its latency.
async fn track(
    axum::extract::State(state): axum::extract::State<Shared>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    state.metrics.request(
        &route,
        &method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// Parses the query string into `T`, as a 400 problem when it does not fit.
pub(crate) fn query<T: DeserializeOwned>(uri: &Uri) -> Result<T, Problem> {
    Query::<T>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| Problem::bad_request(format!("invalid query: {}", e.body_text())))
}

/// A stored envelope as a JSON object with its position fields added.
pub(crate) fn with_position(
    json: &[u8],
    position: &Position,
) -> Result<Map<String, Value>, Problem> {
    let mut m: Map<String, Value> = serde_json::from_slice(json).map_err(|e| {
        Problem::internal(format!("stored record {position} is not an object: {e}"))
    })?;
    m.insert("topic".to_owned(), Value::from(&*position.topic));
    m.insert("partition".to_owned(), Value::from(position.partition));
    m.insert("offset".to_owned(), Value::from(position.offset));
    m.insert("position".to_owned(), Value::from(position.to_string()));
    Ok(m)
}

/// The same as [`with_position`], as text, without parsing `json`: the
/// position members are spliced in before its closing brace. `json` must
/// be an object the gateway serialized (no trailing whitespace).
pub(crate) fn with_position_text(json: &[u8], position: &Position) -> Option<Vec<u8>> {
    use std::io::Write as _;
    let body = json.strip_suffix(b"}")?;
    let mut out = Vec::with_capacity(json.len() + 96);
    out.extend_from_slice(body);
    if body.len() > 1 {
        out.push(b',');
    }
    out.extend_from_slice(b"\"topic\":");
    serde_json::to_writer(&mut out, &*position.topic).ok()?;
    write!(
        out,
        ",\"partition\":{},\"offset\":{},\"position\":",
        position.partition, position.offset
    )
    .ok()?;
    serde_json::to_writer(&mut out, &position.to_string()).ok()?;
    out.push(b'}');
    Some(out)
}

/// A JSON answer.
pub(crate) fn json(status: StatusCode, body: &Value) -> Response {
    json_bytes(status, Bytes::from(body.to_string()))
}

/// A JSON answer already serialized.
pub(crate) fn json_bytes(status: StatusCode, body: Bytes) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Runs a blocking store read off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Problem> + Send + 'static,
) -> Result<T, Problem> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Problem::internal(format!("query task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spliced_positions_equal_parsed_ones() {
        let position: Position = "commands/3/17".parse().unwrap();
        for json in [
            &br#"{"id":"x","data":{"a":[1,{"b":"}"}]}}"#[..],
            br#"{}"#,
            br#"{"key":"quote\" }"}"#,
        ] {
            let spliced: Value =
                serde_json::from_slice(&with_position_text(json, &position).unwrap()).unwrap();
            assert_eq!(
                spliced,
                Value::Object(with_position(json, &position).unwrap())
            );
        }
        assert!(with_position_text(b"[1]", &position).is_none());
    }
}
