//! What a runner does for one event: an HTTP call or any async function.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use kappa_service::Envelope;

/// One attempt at an effect.
#[derive(Clone, Debug)]
pub struct Call {
    /// The event that asks for the effect.
    pub event: Arc<Envelope>,
    /// The same for every attempt at this event, and unique per runner and
    /// event: send it to the target so it can drop repeats.
    pub idempotency_key: String,
    /// 1 for the first attempt.
    pub attempt: u32,
}

/// A successful attempt.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Done {
    /// The target's status code, when it has one (HTTP).
    pub status: Option<u16>,
}

/// A failed attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// What went wrong, for the outcome's error history.
    pub message: String,
    /// The target's status code, when it answered.
    pub status: Option<u16>,
    /// Whether trying again may succeed (timeouts, 5xx, 429); a permanent
    /// failure (most 4xx) ends the event at once.
    pub retryable: bool,
    /// Whether the failure says the target is unhealthy (it counts toward
    /// opening its circuit); a 4xx for one bad event does not.
    pub target_unhealthy: bool,
    /// A wait the target asked for (`Retry-After`).
    pub retry_after: Option<Duration>,
}

impl Failure {
    /// A failure worth retrying that says the target is unhealthy.
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            status: None,
            retryable: true,
            target_unhealthy: true,
            retry_after: None,
        }
    }

    /// A failure no retry can fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            status: None,
            retryable: false,
            target_unhealthy: false,
            retry_after: None,
        }
    }
}

/// The future an attempt returns.
pub type Attempt = Pin<Box<dyn Future<Output = Result<Done, Failure>> + Send>>;

/// An effect a runner performs once per subscribed event.
///
/// ```
/// use std::sync::Arc;
/// use kappa_effects::{Call, Done, Effect, FnEffect};
/// let effect: Arc<dyn Effect> = Arc::new(FnEffect::new("audit-log", |call: Call| async move {
///     println!("{} (key {})", call.event.action, call.idempotency_key);
///     Ok(Done::default())
/// }));
/// ```
pub trait Effect: Send + Sync + 'static {
    /// Which target the event's effect calls. Each target has its own
    /// concurrency bound and circuit breaker, so a dead target does not
    /// stall the others. Called once per event.
    fn target(&self, event: &Envelope) -> String;

    /// Makes one attempt.
    fn attempt(&self, call: Call) -> Attempt;
}

/// An effect from an async function, with one fixed target name.
pub struct FnEffect<F> {
    target: String,
    f: F,
}

impl<F, Fut> FnEffect<F>
where
    F: Fn(Call) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Done, Failure>> + Send + 'static,
{
    /// Wraps `f`, whose calls all count against `target`.
    pub fn new(target: impl Into<String>, f: F) -> Self {
        Self {
            target: target.into(),
            f,
        }
    }
}

impl<F, Fut> Effect for FnEffect<F>
where
    F: Fn(Call) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Done, Failure>> + Send + 'static,
{
    fn target(&self, _event: &Envelope) -> String {
        self.target.clone()
    }

    fn attempt(&self, call: Call) -> Attempt {
        Box::pin((self.f)(call))
    }
}

/// The HTTP request an [`HttpEffect`] sends for one event.
#[derive(Clone, Debug)]
pub struct HttpRequest {
    /// Method (POST for webhooks).
    pub method: reqwest::Method,
    /// Where.
    pub url: reqwest::Url,
    /// The JSON body.
    pub body: serde_json::Value,
}

impl HttpRequest {
    /// A POST of `body` to `url`.
    pub fn post(url: reqwest::Url, body: serde_json::Value) -> Self {
        Self {
            method: reqwest::Method::POST,
            url,
            body,
        }
    }
}

/// Builds the request for an event; `Err` is a permanent failure (the
/// event cannot be sent anywhere).
pub type RequestBuilder = dyn Fn(&Envelope) -> Result<HttpRequest, String> + Send + Sync;

/// An HTTP call per event (a webhook), sent with `Idempotency-Key`.
///
/// 2xx is success. 408, 425, 429 and 5xx, timeouts and connection failures
/// are retried (honouring `Retry-After`); other statuses are permanent.
/// The target is the URL's authority (`host:port`).
///
/// ```
/// use kappa_effects::{HttpEffect, HttpRequest};
/// let url: reqwest::Url = "http://127.0.0.1:9000/notify".parse()?;
/// let effect = HttpEffect::new(move |event| {
///     Ok(HttpRequest::post(url.clone(), serde_json::json!({"id": event.id, "data": event.data})))
/// })?;
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// ```
pub struct HttpEffect {
    client: reqwest::Client,
    build: Box<RequestBuilder>,
}

impl HttpEffect {
    /// An effect that sends what `build` makes of each event.
    ///
    /// # Errors
    ///
    /// The HTTP client could not be built (no TLS roots).
    pub fn new(
        build: impl Fn(&Envelope) -> Result<HttpRequest, String> + Send + Sync + 'static,
    ) -> Result<Self, crate::EffectsError> {
        Ok(Self {
            client: http_client()?,
            build: Box::new(build),
        })
    }
}

/// The HTTP client effects use: HTTPS through rustls (ring), a 5 s connect
/// timeout, idle connections kept 30 s.
///
/// # Errors
///
/// The client could not be built (no TLS roots).
pub fn http_client() -> Result<reqwest::Client, crate::EffectsError> {
    // reqwest leaves the choice of cryptography to the application; an
    // application that installed another provider keeps it.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .user_agent(concat!("kappa-effects/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| crate::EffectsError::Config(format!("HTTP client: {e}")))
}

/// Whether an HTTP status is worth retrying.
fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 425 | 429) || status >= 500
}

impl Effect for HttpEffect {
    fn target(&self, event: &Envelope) -> String {
        match (self.build)(event) {
            Ok(r) => {
                let host = r.url.host_str().unwrap_or_default();
                match r.url.port_or_known_default() {
                    Some(port) => format!("{host}:{port}"),
                    None => host.to_owned(),
                }
            }
            Err(_) => "unroutable".to_owned(),
        }
    }

    fn attempt(&self, call: Call) -> Attempt {
        let request = (self.build)(&call.event);
        let client = self.client.clone();
        Box::pin(async move {
            let request = request.map_err(Failure::permanent)?;
            let body = serde_json::to_vec(&request.body)
                .map_err(|e| Failure::permanent(format!("body: {e}")))?;
            let answer = client
                .request(request.method, request.url)
                .header("idempotency-key", &call.idempotency_key)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .map_err(|e| Failure::transient(format!("sending: {}", error_chain(&e))))?;
            let status = answer.status().as_u16();
            if answer.status().is_success() {
                return Ok(Done {
                    status: Some(status),
                });
            }
            let retry_after = answer
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let retryable = retryable_status(status);
            Err(Failure {
                message: format!("answered {status}"),
                status: Some(status),
                retryable,
                target_unhealthy: retryable,
                retry_after,
            })
        })
    }
}

/// An error with its causes, which reqwest keeps in `source()`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}
