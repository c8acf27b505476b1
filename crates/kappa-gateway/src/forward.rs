//! Interactive queries across instances: a read for a key whose task
//! another instance runs is forwarded to that instance (as the instance
//! registry names it), so a client may ask any instance.
//!
//! A forwarded request carries [`FORWARDED_HEADER`]; an instance that
//! receives one for a task it does not run answers 503 with Retry-After
//! instead of forwarding again (ownership is moving), as it does when the
//! owner is unknown or unreachable (it may have died: its tasks move once
//! the group notices).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use kappa_streams::{Streams, TaskOwner};

use kappa_service::Problem;

/// Marks a request forwarded by another instance (its value: that instance's URL).
pub const FORWARDED_HEADER: &str = "kappa-forwarded";
/// Longest a forwarded request may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request body forwarded (reads carry none).
const BODY_BYTES_MAX: usize = 64 * 1024;

/// Runs `local` when this instance runs `task`, and otherwise forwards
/// `request` to the instance that does.
///
/// # Errors
///
/// 503 (with Retry-After) when the owner is unknown, unreachable, or the
/// request was already forwarded once.
pub async fn to_owner<F>(streams: &Arc<Streams>, task: u32, request: Request, local: F) -> Response
where
    F: AsyncFnOnce(Request) -> Response,
{
    match streams.owner_of(task) {
        TaskOwner::Local => local(request).await,
        TaskOwner::Unknown => Problem::unavailable(
            format!("no instance runs task {task} yet (instances are starting or rebalancing)"),
            1,
        )
        .into_response(),
        TaskOwner::Remote(url) => {
            if request.headers().contains_key(FORWARDED_HEADER) {
                return Problem::unavailable(
                    format!(
                        "task {task} is moving between instances (this one was told {url} runs it)"
                    ),
                    1,
                )
                .into_response();
            }
            match tokio::time::timeout(FORWARD_TIMEOUT, send(&url, request)).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    tracing::warn!(task, owner = %url, error = %e, "forwarding a query failed");
                    Problem::unavailable(
                        format!("the instance running task {task} ({url}) did not answer: {e}"),
                        1,
                    )
                    .into_response()
                }
                Err(_) => Problem::unavailable(
                    format!("the instance running task {task} ({url}) did not answer in time"),
                    1,
                )
                .into_response(),
            }
        }
    }
}

/// Sends `request` to the instance at `base` (`http://host:port`) and
/// returns its answer.
async fn send(base: &str, request: Request) -> Result<Response, String> {
    let authority = base
        .strip_prefix("http://")
        .ok_or_else(|| format!("{base:?} is not an http:// URL"))?
        .trim_end_matches('/');
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let (mut parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, BODY_BYTES_MAX)
        .await
        .map_err(|e| e.to_string())?;
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    parts.uri = path
        .parse()
        .map_err(|e: axum::http::uri::InvalidUri| e.to_string())?;
    parts.headers.insert(
        axum::http::header::HOST,
        authority
            .parse()
            .map_err(|_| format!("{authority:?} is not a host"))?,
    );
    parts
        .headers
        .insert(FORWARDED_HEADER, axum::http::HeaderValue::from_static("1"));
    let outgoing = hyper::Request::from_parts(parts, http_body_util::Full::new(body));
    let answer = sender
        .send_request(outgoing)
        .await
        .map_err(|e| e.to_string())?;
    let (parts, body) = answer.into_parts();
    let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Response::from_parts(parts, Body::from(bytes)))
}
