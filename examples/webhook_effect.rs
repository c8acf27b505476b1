//! An effect runner posting events to a webhook: the imperative shell.
//! The runner follows the `events` topic, POSTs each `order-shipped` event to
//! the webhook (with an `Idempotency-Key` that is the same on every retry),
//! passes over other actions, and records each outcome as an event of its
//! own (`order-webhook-delivered`, `parent` = the event) exactly once.
//!
//! Run it with `cargo run -p kappa-examples --bin webhook-effect`. It starts
//! a small webhook receiver on a loopback port, writes four events (three
//! shipped orders and one placed order) to an embedded log in a scratch
//! directory, waits until the receiver has had the three calls, prints them
//! and the outcome of every event, and stops.

use std::collections::BTreeMap;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::bail;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::{Json, Router, routing::post};
use kappa_effects::{HttpEffect, HttpRequest, Runner, RunnerConfig};
use kappa_log::{EmbeddedLog, Log, ProducerRecord, TopicSpec};
use kappa_service::Envelope;
use serde_json::{Value, json};

/// The longest the program waits for the webhook's calls and the outcomes.
const WAIT: Duration = Duration::from_secs(30);

/// What the receiver got: the `Idempotency-Key` header and the body.
type Call = (String, Value);

/// The webhook: hands each call to `main` and answers 200.
async fn receive(
    State(calls): State<mpsc::Sender<Call>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> StatusCode {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    // Fails only once the program stopped listening; the answer is the same.
    let _ = calls.send((key.to_owned(), body));
    StatusCode::OK
}

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let log: Arc<dyn Log> = Arc::new(EmbeddedLog::open(dir.path())?);
    log.create_topic(&TopicSpec::new("events", 2))?;
    let runtime = tokio::runtime::Runtime::new()?;

    let (calls_tx, calls) = mpsc::channel::<Call>();
    let app: Router = Router::new()
        .route("/hooks/orders", post(receive))
        .with_state(calls_tx);
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let url: kappa_effects::reqwest::Url =
        format!("http://{}/hooks/orders", listener.local_addr()?).parse()?;
    // Serves until the runtime is dropped, at the end of `main`.
    let _receiver = runtime.spawn(async move { axum::serve(listener, app).await });

    let effect = HttpEffect::new(move |event: &Envelope| {
        Ok(HttpRequest::post(
            url.clone(),
            json!({"order": event.key, "event": event.action, "data": event.data}),
        ))
    })?;
    let config = RunnerConfig::new("order-webhook", &["order-shipped"]);
    let handle = runtime.handle().clone();
    let runner = Runner::start(log.clone(), config, Arc::new(effect), handle)?;

    let events = [
        event("order-1", "order-shipped", json!({"carrier": "DHL"})),
        event("order-2", "order-placed", json!({"items": 2})), // not subscribed
        event("order-3", "order-shipped", json!({"carrier": "UPS"})),
        event("order-4", "order-shipped", json!({"carrier": "DHL"})),
    ];
    let mut records = Vec::new();
    for e in &events {
        records.push(ProducerRecord::value(serde_json::to_vec(e)?).with_key(e.record_key()));
    }
    log.append("events", records)?;

    // Keyed by order: a repeat after a retry (same Idempotency-Key) replaces the first.
    let expected = events
        .iter()
        .filter(|e| e.action == "order-shipped")
        .count();
    let deadline = Instant::now() + WAIT;
    let mut received = BTreeMap::new();
    while received.len() < expected {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok((key, body)) = calls.recv_timeout(left) else {
            bail!(
                "the webhook had {} of {expected} calls after {WAIT:?}",
                received.len()
            );
        };
        received.insert(text(&body["order"]), (key, body));
    }
    println!("webhook received {} calls:", received.len());
    for (order, (key, body)) in &received {
        let via = text(&body["data"]["carrier"]);
        println!(
            "  {order}: {} via {via} (Idempotency-Key {key})",
            text(&body["event"])
        );
    }

    // Outcomes are committed a little after the calls answer.
    if !runner.wait_caught_up(WAIT)? {
        bail!("the runner did not record its outcomes within {WAIT:?}");
    }
    runner.close()?;
    let mut outcomes = Vec::new();
    for r in log.read_topic("events")? {
        let value = r.value.unwrap_or_default();
        outcomes.push(serde_json::from_slice::<Envelope>(&value)?);
    }
    for e in &events {
        let order = e.key.as_deref().unwrap_or_default();
        match outcomes.iter().find(|o| o.parent == Some(e.id)) {
            Some(o) => println!(
                "{order} {}: {} after {} attempt(s), status {}",
                e.action, o.action, o.data["attempts"], o.data["status"]
            ),
            None => println!("{order} {}: no outcome, not subscribed", e.action),
        }
    }
    Ok(())
}

/// An event as a command processor writes it: caused by a command, with its key.
fn event(order: &str, action: &str, data: Value) -> Envelope {
    Envelope::command("order-command", json!({}), Some(order.to_owned())).event(action, data)
}

/// A JSON string's text, or the JSON of anything else.
fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}
