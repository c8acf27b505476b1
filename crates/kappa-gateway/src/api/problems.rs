//! The problem types' own pages, so that every `type` URI a problem
//! carries resolves on the service: `GET /problems` lists them,
//! `GET /problems/{name}` describes one. Anyone may read them, as a client
//! refused for its credentials must be able to look up why.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use kappa_service::Problem;
use kappa_service::problem_type::{ALL, PREFIX, ProblemType};
use serde_json::{Value, json};

use super::json as json_response;

/// A type as its page shows it.
pub(crate) fn described(t: &ProblemType) -> Value {
    json!({"type": t.uri(), "name": t.name, "title": t.title, "status": t.status,
        "description": t.description})
}

pub(crate) async fn list() -> Response {
    let types: Vec<Value> = ALL.iter().map(described).collect();
    json_response(StatusCode::OK, &json!({ "types": types }))
}

pub(crate) async fn get(Path(name): Path<String>) -> Result<Response, Problem> {
    ProblemType::named(&name)
        .map(|t| json_response(StatusCode::OK, &described(t)))
        .ok_or_else(|| Problem::not_found(format!("no problem type {name:?}")))
}

/// Whether `path` is one of these pages.
pub(crate) fn is_public(path: &str) -> bool {
    path == PREFIX.trim_end_matches('/') || path.starts_with(PREFIX)
}
