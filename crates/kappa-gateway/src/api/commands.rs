//! `POST /commands`: validate, write the command down, and optionally wait
//! for its outcome.

use std::time::Duration;

use axum::extract::rejection::BytesRejection;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use kappa_log::{LogError, ProducerRecord};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Shared, json as json_response, query, with_position};
use crate::gateway::{ends_of, last_records};
use crate::idempotency::Claim;
use crate::index::{Kind, Stored};
use crate::outcomes::Outcome;
use crate::schema::{Refusal, Violation};
use kappa_service::{Envelope, key_problem};
use kappa_service::{Problem, problem_type};

/// The request body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandRequest {
    action: String,
    data: Value,
    #[serde(default)]
    key: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PostQuery {
    #[serde(default)]
    sync: bool,
    timeout_ms: Option<u64>,
}

/// Longest `Idempotency-Key` accepted.
const IDEMPOTENCY_KEY_MAX: usize = 255;

pub(crate) async fn post(
    State(state): State<Shared>,
    OriginalUri(uri): OriginalUri,
    principal: Option<axum::Extension<crate::auth::Principal>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let principal = principal.map(|p| p.0);
    match handle(&state, &uri, &headers, principal.as_ref(), body).await {
        Ok(r) => r,
        Err((reason, problem)) => {
            state.metrics.rejected(reason);
            problem.into_response()
        }
    }
}

fn invalid(violations: Vec<Violation>) -> Problem {
    let n = violations.len();
    Problem::unprocessable(format!("the command breaks {n} rule(s)"))
        .typed(&problem_type::INVALID_COMMAND)
        .with(
            "violations",
            serde_json::to_value(violations).unwrap_or_default(),
        )
}

fn violation(pointer: &str, message: impl Into<String>) -> Vec<Violation> {
    vec![Violation {
        pointer: pointer.to_owned(),
        message: message.into(),
    }]
}

/// Parses and validates the body into a command, or says why not.
pub(crate) fn parse_command(
    actions: &crate::schema::Actions,
    body: &[u8],
) -> Result<Envelope, (&'static str, Problem)> {
    let request: CommandRequest = serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            ("invalid", invalid(violation("", e.to_string())))
        } else {
            (
                "malformed",
                Problem::bad_request(format!("the body is not JSON: {e}")),
            )
        }
    })?;
    validate_command(actions, &request.action, request.data, request.key)
}

/// A new command of `action` from its parts, once they keep the action's
/// rules (the key's and the schema's), or says which they break.
pub(crate) fn validate_command(
    actions: &crate::schema::Actions,
    action: &str,
    data: Value,
    key: Option<String>,
) -> Result<Envelope, (&'static str, Problem)> {
    if let Some(k) = &key
        && let Some(why) = key_problem(k)
    {
        return Err((
            "invalid",
            invalid(violation("/key", format!("the key {why}"))),
        ));
    }
    match actions.validate(action, &data) {
        Ok(()) => {}
        Err(Refusal::UnknownAction) => {
            let known: Vec<&str> = actions.names().collect();
            return Err((
                "unknown-action",
                invalid(violation(
                    "/action",
                    format!("unknown action {action:?}; known: {}", known.join(", ")),
                )),
            ));
        }
        Err(Refusal::Invalid(v)) => {
            let v = v
                .into_iter()
                .map(|x| Violation {
                    pointer: format!("/data{}", x.pointer),
                    message: x.message,
                })
                .collect();
            return Err(("invalid", invalid(v)));
        }
    }
    Ok(Envelope::command(action, data, key))
}

/// Checks an idempotency key's form: 1 to 255 visible ASCII characters.
pub(crate) fn idempotency_key(text: &str) -> Result<String, (&'static str, Problem)> {
    if !text.is_empty()
        && text.len() <= IDEMPOTENCY_KEY_MAX
        && text.bytes().all(|b| b.is_ascii_graphic())
    {
        return Ok(text.to_owned());
    }
    Err((
        "malformed",
        Problem::bad_request("Idempotency-Key must be 1 to 255 visible ASCII characters"),
    ))
}

/// A valid command and how its sender wants it handled.
pub(crate) struct Submission {
    pub(crate) command: Envelope,
    pub(crate) idempotency_key: Option<String>,
    /// Wait this long for the outcome events; `None`: answer once written.
    pub(crate) wait: Option<Duration>,
}

/// A command written down (or found by its idempotency key).
pub(crate) struct Submitted {
    /// The command as written (the first one, for a replay).
    pub(crate) command: Envelope,
    /// The command as stored, and where it is.
    pub(crate) stored: Stored,
    /// Its outcome events, when the sender waited for them.
    pub(crate) events: Option<Vec<Outcome>>,
    /// True when an idempotency key found an earlier command: nothing was written.
    pub(crate) replayed: bool,
}

impl Submitted {
    /// Where the command can be looked up.
    pub(crate) fn location(&self) -> String {
        location_of(&self.command.id)
    }
}

/// Where a command can be looked up.
fn location_of(id: &uuid::Uuid) -> String {
    format!("/commands/{id}")
}

/// The timeout a request asks for, within the configured bounds.
pub(crate) fn sync_timeout(state: &Shared, asked_ms: Option<u64>) -> Duration {
    asked_ms
        .map_or(state.config.sync_timeout, Duration::from_millis)
        .min(state.config.wait_max)
}

async fn handle(
    state: &Shared,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    principal: Option<&crate::auth::Principal>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, (&'static str, Problem)> {
    let q: PostQuery = query(uri).map_err(|p| ("malformed", p))?;
    let body = body.map_err(|e| {
        let status = e.status();
        let reason = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "too-large"
        } else {
            "malformed"
        };
        (reason, Problem::new(status, e.body_text()))
    })?;
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(idempotency_key(v.to_str().unwrap_or_default())?),
    };
    let command = parse_command(&state.actions, &body)?;
    let submitted = submit(
        state,
        principal,
        Submission {
            command,
            idempotency_key,
            wait: q.sync.then(|| sync_timeout(state, q.timeout_ms)),
        },
    )
    .await?;
    let location = submitted.location();
    let Some(events) = &submitted.events else {
        if submitted.replayed {
            let body = with_position(&submitted.stored.json, &submitted.stored.position)
                .map_err(|p| ("failed", p))?;
            return Ok(located(
                StatusCode::ACCEPTED,
                &Value::Object(body),
                &location,
                true,
            ));
        }
        // The hot path: splice the position in rather than re-parse the command.
        let stored = &submitted.stored;
        let text = super::with_position_text(&stored.json, &stored.position).ok_or_else(|| {
            (
                "failed",
                Problem::internal("a command did not serialize as an object"),
            )
        })?;
        let mut r = super::json_bytes(StatusCode::ACCEPTED, Bytes::from(text));
        if let Ok(v) = HeaderValue::from_str(&location) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        return Ok(r);
    };
    let mut body = with_position(&submitted.stored.json, &submitted.stored.position)
        .map_err(|p| ("failed", p))?;
    let (status, list) = outcome_body(events)?;
    body.insert("events".to_owned(), list);
    Ok(answered(status, body, &location, submitted.replayed))
}

/// Writes a valid command down for `principal`, once the policy allows it,
/// and waits for its outcome if asked: what `POST /commands` and gRPC's
/// `SendCommand` do. A retry with a known idempotency key writes nothing
/// and answers with the first command.
pub(crate) async fn submit(
    state: &Shared,
    principal: Option<&crate::auth::Principal>,
    submission: Submission,
) -> Result<Submitted, (&'static str, Problem)> {
    let Submission {
        mut command,
        idempotency_key,
        wait: timeout,
    } = submission;
    if let (Some(p), Some(policy)) = (principal, &state.config.policy) {
        let access = crate::auth::Access::Command {
            action: &command.action,
            key: command.key.as_deref(),
        };
        if !policy.allows(p, &access) {
            state.metrics.auth_denied("forbidden");
            tracing::info!(subject = %p.subject, action = %command.action, key = ?command.key, "command refused by the policy");
            return Err((
                "forbidden",
                Problem::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "{} may not send {} for {}",
                        p.subject,
                        command.action,
                        command.key.as_deref().unwrap_or("no key")
                    ),
                )
                .typed(&problem_type::FORBIDDEN)
                .with("reason", "forbidden"),
            ));
        }
    }
    // The log shows who asked for what.
    command.principal = principal.map(|p| p.subject.clone());
    let now = command.timestamp;
    let window_ms = i64::try_from(state.config.idempotency_window.as_millis()).unwrap_or(i64::MAX);
    let mut claim = None;
    if let Some(k) = &idempotency_key {
        match state.idempotency.claim(k, now, window_ms) {
            Claim::InFlight => {
                return Err((
                    "idempotency-in-flight",
                    Problem::new(
                        StatusCode::CONFLICT,
                        "a request with this Idempotency-Key is still being handled; retry",
                    )
                    .typed(&problem_type::IDEMPOTENCY_KEY_IN_FLIGHT)
                    .retry_after(1),
                ));
            }
            Claim::Written(stored) => {
                return replay(state, &command, stored, timeout).await;
            }
            Claim::Mine(guard) => {
                // Keys of commands written before this start are only known
                // once the index has caught up with them.
                if let Err(why) = super::ops::index_caught_up(state) {
                    return Err((
                        "not-ready",
                        Problem::unavailable(
                            format!("idempotent commands wait for the index: {why}"),
                            1,
                        )
                        .typed(&problem_type::NOT_READY),
                    ));
                }
                let s = state.clone();
                let key = k.clone();
                let found = super::blocking(move || {
                    Ok(s.index.idempotent_command(&key, now, window_ms)?)
                })
                .await
                .map_err(|p| ("failed", p))?;
                if let Some(stored) = found {
                    guard.finish(stored.clone(), now);
                    return replay(state, &command, stored, timeout).await;
                }
                claim = Some(guard);
            }
        }
        command.idempotency_key = Some(k.clone());
    }
    // Under pressure (the disk near full) the log takes no new work while
    // the services finish what they accepted; reads go on.
    if let Err(e) = state.log.admit_writes() {
        return Err(refused_write(&e));
    }
    let value = Bytes::from(serde_json::to_vec(&command).map_err(|e| {
        (
            "failed",
            Problem::internal(format!("encoding a command: {e}")),
        )
    })?);
    let record = ProducerRecord::value(value.clone())
        .with_key(command.record_key())
        .with_timestamp(command.timestamp);
    let waiter = timeout.map(|_| state.outcomes.register(command.id));
    let stored = match claim {
        None => write(state, record, value).await?,
        Some(guard) => {
            // Finished on a task of its own: a client that hangs up must not
            // free the key between the write and its record in the table.
            let s = state.clone();
            tokio::spawn(async move {
                let stored = write(&s, record, value).await?;
                guard.finish(stored.clone(), now);
                s.idempotency
                    .sweep(&s.index.streams().committed_positions());
                Ok(stored)
            })
            .await
            .map_err(|e| ("failed", Problem::internal(format!("write task: {e}"))))??
        }
    };
    state.metrics.command(&command.action);
    let (Some(waiter), Some(timeout)) = (waiter, timeout) else {
        return Ok(Submitted {
            command,
            stored,
            events: None,
            replayed: false,
        });
    };
    match waiter.outcome(timeout).await {
        Some(events) => Ok(Submitted {
            command,
            stored,
            events: Some(events),
            replayed: false,
        }),
        None => Err(("sync-timeout", timed_out(&command.id, &stored, timeout))),
    }
}

/// Writes a command down; returns where it landed.
async fn write(
    state: &Shared,
    record: ProducerRecord,
    json: Bytes,
) -> Result<Stored, (&'static str, Problem)> {
    let position = state
        .writer
        .write(record)
        .await
        .map_err(|e| refused_write(&e))?;
    Ok(Stored { position, json })
}

/// Seconds a client is asked to wait before sending again to a log that
/// is short of disk: long enough for space to be freed, short enough to
/// notice soon.
const DISK_FULL_RETRY_AFTER_S: u64 = 5;

/// The answer to a command the log does not take now: 507 while the disk
/// is short of space (it passes by itself), else 503.
fn refused_write(e: &LogError) -> (&'static str, Problem) {
    let detail = format!("the command was not written: {e}");
    match e {
        LogError::DiskFull { .. } => (
            "disk-full",
            Problem::new(StatusCode::INSUFFICIENT_STORAGE, detail)
                .typed(&problem_type::DISK_FULL)
                .retry_after(DISK_FULL_RETRY_AFTER_S),
        ),
        _ => (
            "log-unavailable",
            Problem::unavailable(detail, 1).typed(&problem_type::LOG_UNAVAILABLE),
        ),
    }
}

fn timed_out(id: &uuid::Uuid, stored: &Stored, timeout: Duration) -> Problem {
    let location = location_of(id);
    Problem::new(
        StatusCode::GATEWAY_TIMEOUT,
        format!(
            "no outcome within {} ms; the command is in the log: poll {location}",
            timeout.as_millis()
        ),
    )
    .typed(&problem_type::OUTCOME_TIMEOUT)
    .with("location", location.as_str())
    .with("position", stored.position.to_string())
}

/// 201 with the events, or 409 when one of them rejects the command.
fn outcome_body(events: &[Outcome]) -> Result<(StatusCode, Value), (&'static str, Problem)> {
    let mut failed = false;
    let mut list = Vec::with_capacity(events.len());
    for (position, json) in events {
        let m = with_position(json, position).map_err(|p| ("failed", p))?;
        failed |= m.get("error").and_then(Value::as_bool).unwrap_or(false);
        list.push(Value::Object(m));
    }
    let status = if failed {
        StatusCode::CONFLICT
    } else {
        StatusCode::CREATED
    };
    Ok((status, Value::Array(list)))
}

/// The answer to a command with its outcome: 201, or a 409 problem that
/// carries the same members (the command and its events).
fn answered(
    status: StatusCode,
    body: serde_json::Map<String, Value>,
    location: &str,
    replayed: bool,
) -> Response {
    if status != StatusCode::CONFLICT {
        return located(status, &Value::Object(body), location, replayed);
    }
    let mut p = Problem::new(StatusCode::CONFLICT, "an outcome rejected the command");
    for (k, v) in body {
        p = p.with(&k, v);
    }
    let mut r = p.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn located(status: StatusCode, body: &Value, location: &str, replayed: bool) -> Response {
    let mut r = json_response(status, body);
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    if replayed {
        r.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    r
}

/// Answers a retried request with the command its key first wrote.
async fn replay(
    state: &Shared,
    request: &Envelope,
    stored: Stored,
    timeout: Option<Duration>,
) -> Result<Submitted, (&'static str, Problem)> {
    let original: Envelope = serde_json::from_slice(&stored.json)
        .map_err(|e| ("failed", Problem::internal(format!("stored command: {e}"))))?;
    if original.action != request.action
        || original.data != request.data
        || original.key != request.key
        // Another principal's key must not replay (and reveal) a command.
        || original.principal != request.principal
    {
        return Err((
            "idempotency-mismatch",
            Problem::unprocessable(
                "this Idempotency-Key was used for a different command (action, key, data or sender differ)",
            )
            .typed(&problem_type::IDEMPOTENCY_KEY_REUSED)
            .with("id", original.id.to_string()),
        ));
    }
    let Some(timeout) = timeout else {
        return Ok(Submitted {
            command: original,
            stored,
            events: None,
            replayed: true,
        });
    };
    // Outcomes written from now on reach the waiter; those written before
    // are below the current end offsets, so the index has them once it has
    // processed up to those ends.
    let wait = state.outcomes.register(original.id);
    let s = state.clone();
    let id = original.id;
    let indexed = super::blocking(move || {
        let targets = last_records(&ends_of(&*s.log, &s.config.event_topics, s.partitions)?);
        if !s.index.streams().wait_for_processed(&targets, timeout)? {
            return Ok(Vec::new());
        }
        let mut events = Vec::new();
        for (event_id, _) in s.index.outcomes(&id)? {
            let Ok(event_id) = event_id.parse() else {
                continue;
            };
            if let Some(e) = s.index.get(Kind::Event, &event_id)? {
                events.push((e.position, e.json));
            }
        }
        Ok(events)
    })
    .await
    .map_err(|p| ("failed", p))?;
    let events = if indexed.is_empty() {
        wait.outcome(timeout).await
    } else {
        Some(indexed)
    };
    match events {
        Some(events) => Ok(Submitted {
            command: original,
            stored,
            events: Some(events),
            replayed: true,
        }),
        None => Err(("sync-timeout", timed_out(&id, &stored, timeout))),
    }
}

/// What `key_problem` allows, for JSON Schema: no control characters (Unicode's Cc).
const KEY_PATTERN: &str = "^[^\\x00-\\x1f\\x7f-\\x9f]*$";

/// The name an action's schemas go by in the document: `set-limit` →
/// `SetLimit` (`SetLimitCommand`, `SetLimitData`).
fn pascal(action: &str) -> String {
    action
        .split('-')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

/// The request bodies of `POST /commands` as named schemas, so that
/// generated clients get one type per action: per action `{Name}Command`
/// (the body) and `{Name}Data` (its `data`), and `CommandRequest`, one of
/// the commands, told apart by `action`.
pub(crate) fn request_schemas(actions: &crate::schema::Actions) -> Map<String, Value> {
    let mut schemas = Map::new();
    let mut variants = Vec::new();
    let mut mapping = Map::new();
    for (name, description, schema) in actions.iter() {
        let command = format!("{}Command", pascal(name));
        let data = format!("{}Data", pascal(name));
        let reference = format!("#/components/schemas/{command}");
        schemas.insert(data.clone(), schema.clone());
        schemas.insert(
            command.clone(),
            json!({
                "title": name,
                "description": description,
                "type": "object",
                "required": ["action", "data"],
                "additionalProperties": false,
                "properties": {
                    "action": {"type": "string", "const": name},
                    "data": {"$ref": format!("#/components/schemas/{data}")},
                    "key": {"type": ["string", "null"], "minLength": 1, "maxLength": kappa_service::KEY_MAX_CHARS,
                        "pattern": KEY_PATTERN, "description": "The entity the command is about: its commands are decided in order"},
                }
            }),
        );
        mapping.insert(name.to_owned(), Value::from(reference.clone()));
        variants.push(json!({"$ref": reference}));
    }
    schemas.insert(
        "CommandRequest".to_owned(),
        json!({"oneOf": variants, "discriminator": {"propertyName": "action", "mapping": mapping}}),
    );
    schemas
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published schema of `key` and the rule the server applies agree
    /// on every code point up to U+0200 and on the length bounds.
    #[test]
    fn the_documented_key_schema_is_the_rule_the_server_applies() {
        let schema = json!({"type": "string", "minLength": 1,
            "maxLength": kappa_service::KEY_MAX_CHARS, "pattern": KEY_PATTERN});
        let validator = jsonschema::validator_for(&schema).unwrap();
        let mut keys: Vec<String> = (0u32..0x200)
            .filter_map(char::from_u32)
            .map(|c| format!("k{c}"))
            .collect();
        keys.extend([
            String::new(),
            "é".repeat(kappa_service::KEY_MAX_CHARS),
            "é".repeat(kappa_service::KEY_MAX_CHARS + 1),
        ]);
        for key in keys {
            assert_eq!(
                validator.is_valid(&Value::from(key.as_str())),
                key_problem(&key).is_none(),
                "{key:?}"
            );
        }
    }
}
