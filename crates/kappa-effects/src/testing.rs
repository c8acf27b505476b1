//! A scriptable webhook server for testing effect runners: it answers each
//! call as a script says (status, delay) and records every call.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;

use crate::error::EffectsError;
use crate::lock;

/// One call the webhook received.
#[derive(Clone, Debug)]
pub struct Received {
    /// The `Idempotency-Key` header (empty when missing).
    pub idempotency_key: String,
    /// Which call with this key it was (1 for the first).
    pub nth: usize,
    /// The JSON body (`Null` when it was not JSON).
    pub body: Value,
    /// The status the script chose.
    pub status: u16,
}

/// How to answer one call.
#[derive(Clone, Copy, Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Wait this long before answering (to make the caller time out).
    pub delay: Duration,
}

impl Reply {
    /// Answers `status` at once.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            delay: Duration::ZERO,
        }
    }

    /// Answers `status` after `delay`.
    pub fn after(delay: Duration, status: u16) -> Self {
        Self { status, delay }
    }
}

type Script = dyn Fn(&Received) -> Reply + Send + Sync;

struct WebhookState {
    script: Box<Script>,
    calls: Mutex<Vec<Received>>,
    per_key: Mutex<HashMap<String, usize>>,
    current: AtomicUsize,
    max: AtomicUsize,
}

/// A webhook server on a loopback port, serving `POST /{anything}`.
///
/// ```no_run
/// # async fn demo() -> Result<(), kappa_effects::EffectsError> {
/// use kappa_effects::testing::{Reply, Webhook};
/// // Fails the first two calls for each event, then accepts.
/// let hook = Webhook::start(|call| Reply::status(if call.nth <= 2 { 503 } else { 200 })).await?;
/// println!("POST to {}", hook.url("notify"));
/// # Ok(()) }
/// ```
pub struct Webhook {
    addr: SocketAddr,
    state: Arc<WebhookState>,
    server: tokio::task::JoinHandle<()>,
}

impl Webhook {
    /// Starts serving on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// No loopback port could be bound.
    pub async fn start(
        script: impl Fn(&Received) -> Reply + Send + Sync + 'static,
    ) -> Result<Self, EffectsError> {
        let state = Arc::new(WebhookState {
            script: Box::new(script),
            calls: Mutex::new(Vec::new()),
            per_key: Mutex::new(HashMap::new()),
            current: AtomicUsize::new(0),
            max: AtomicUsize::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| EffectsError::io("binding the webhook's port", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| EffectsError::io("reading the webhook's address", e))?;
        let app = Router::new()
            .route("/{*path}", post(receive))
            .with_state(state.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            addr,
            state,
            server,
        })
    }

    /// `http://127.0.0.1:PORT/{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    /// Every call so far, in arrival order.
    pub fn calls(&self) -> Vec<Received> {
        lock(&self.state.calls).clone()
    }

    /// The most calls that were being answered at once.
    pub fn max_concurrency(&self) -> usize {
        self.state.max.load(Ordering::Acquire)
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn receive(
    State(state): State<Arc<WebhookState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = state.current.fetch_add(1, Ordering::AcqRel) + 1;
    state.max.fetch_max(now, Ordering::AcqRel);
    // Counted down on drop: a caller that gives up drops this future.
    let _answering = Answering(&state.current);
    let idempotency_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let nth = {
        let mut per_key = lock(&state.per_key);
        let n = per_key.entry(idempotency_key.clone()).or_insert(0);
        *n += 1;
        *n
    };
    let mut received = Received {
        idempotency_key,
        nth,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        status: 0,
    };
    let reply = (state.script)(&received);
    received.status = reply.status;
    lock(&state.calls).push(received);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    StatusCode::from_u16(reply.status)
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        .into_response()
}

/// One call being answered.
struct Answering<'a>(&'a AtomicUsize);

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
