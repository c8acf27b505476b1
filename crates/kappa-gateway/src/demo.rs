//! A trivial service for trying the gateway, its tests and its benchmarks:
//! a command processor that answers every command at once.
//!
//! | action | outcome |
//! |---|---|
//! | `ping` | `ping-done` echoing `data` |
//! | `add` `{amount}` (key required) | `added` `{amount, total}`; the running total per key is the view `totals` |
//! | `fail` | `failed` with `error: true` (the command is rejected) |
//! | `ignore` | no outcome at all (a sync wait times out) |

use std::sync::Arc;
use std::time::Duration;

use kappa_log::Log;
use kappa_streams::{
    Json, Materialized, Processor, ProcessorContext, StoreHandle, Streams, StreamsBuilder,
    StreamsConfig, StreamsError, Utf8,
};
use serde_json::{Value, json};

use crate::error::GatewayError;
use crate::gateway::{Gateway, GatewayBuilder, GatewayConfig};
use crate::views::View;
use kappa_service::Envelope;

/// Name of the running-total store (and view).
pub const TOTALS: &str = "totals";

struct Answer {
    totals: StoreHandle<String, i64>,
}

impl Processor<String, Envelope, String, Envelope> for Answer {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, Envelope>,
        key: String,
        command: Envelope,
    ) -> Result<(), StreamsError> {
        let event = match command.action.as_str() {
            "ignore" => return Ok(()),
            "fail" => command.reject("failed", json!({"reason": "asked to fail"})),
            "add" => {
                let amount = command
                    .data
                    .get("amount")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                let total = ctx.get(&self.totals, &key)?.unwrap_or(0) + amount;
                ctx.put(&self.totals, &key, &total)?;
                command.event("added", json!({"amount": amount, "total": total}))
            }
            other => command.event(&format!("{other}-done"), command.data.clone()),
        };
        ctx.forward(key, event)
    }
}

/// Registers the demo's actions on a gateway builder.
///
/// # Errors
///
/// Never for these schemas; kept fallible like [`GatewayBuilder::action`].
pub fn actions(builder: GatewayBuilder) -> Result<GatewayBuilder, GatewayError> {
    builder
        .action("ping", "Answers with ping-done", json!({"type": "object"}))?
        .action(
            "add",
            "Adds an amount to the key's running total",
            json!({
                "type": "object",
                "required": ["amount"],
                "additionalProperties": false,
                "properties": {"amount": {"type": "integer", "minimum": 1, "maximum": 1000000}}
            }),
        )?
        .action("fail", "Is always rejected", json!({"type": "object"}))?
        .action("ignore", "Is never answered", json!({"type": "object"}))
}

/// Starts the demo processor on `log` (topics must exist).
///
/// # Errors
///
/// Missing topics or log failures.
pub fn processor(
    log: Arc<dyn Log>,
    config: &GatewayConfig,
    commit_interval: Duration,
) -> Result<Arc<Streams>, StreamsError> {
    let b = StreamsBuilder::new();
    let totals = b.add_state_store(Materialized::persistent(TOTALS), Utf8, kappa_streams::I64);
    b.stream(&config.commands_topic, Utf8, Json::<Envelope>::new())
        .process(
            move || Answer {
                totals: totals.clone(),
            },
            &[TOTALS],
        )
        .to(&config.event_topics[0], Utf8, Json::<Envelope>::new());
    let mut streams_config = StreamsConfig::new("kappa-demo");
    streams_config.commit_interval = commit_interval;
    Ok(Arc::new(Streams::start(log, b.build()?, streams_config)?))
}

/// The whole demo service: gateway, processor, and the `totals` view.
///
/// # Errors
///
/// Log or topology failures.
pub fn start(
    log: Arc<dyn Log>,
    config: GatewayConfig,
    commit_interval: Duration,
) -> Result<(Gateway, Arc<Streams>), GatewayError> {
    start_with(log, config, commit_interval, |b| b)
}

/// As [`start`], with `extend` adding to the gateway before it starts (a
/// metrics source, say).
///
/// # Errors
///
/// As [`start`].
pub fn start_with(
    log: Arc<dyn Log>,
    config: GatewayConfig,
    commit_interval: Duration,
    extend: impl FnOnce(GatewayBuilder) -> GatewayBuilder,
) -> Result<(Gateway, Arc<Streams>), GatewayError> {
    // The gateway creates the topics; the processor reads them.
    let gateway = extend(actions(Gateway::builder(log.clone(), config.clone()))?);
    crate::ensure_topics(&*log, &config)?;
    let streams = processor(log, &config, commit_interval)?;
    let view = View::new(TOTALS, &streams, TOTALS).values(crate::views::ValueFormat::I64);
    Ok((gateway.view(view).start()?, streams))
}
