//! Live figures for the console: topic end offsets and rates, and per
//! application its processed records, rate and lag per task, and rates per
//! node of its dataflow.
//!
//! One sample is shared by every viewer and taken at most once a second,
//! so many open consoles cost the log no more than one.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use kappa_log::{Log, TopicPartition};
use kappa_streams::{Streams, TaskOwner};
use serde_json::{Value, json};

use super::api::{applications, topic_offsets};
use crate::api::{Shared, blocking, json as json_response};
use kappa_service::Problem;

/// How often a new sample may be taken.
const INTERVAL: Duration = Duration::from_secs(1);

/// The counters of one sample, kept to turn the next one's into rates.
struct Counters {
    at: Instant,
    /// Per topic: the sum of its partitions' end offsets.
    topic_ends: HashMap<String, u64>,
    /// Per application: records processed.
    processed: HashMap<String, u64>,
    /// Per application and input topic: the sum of committed positions.
    consumed: HashMap<(String, String), u64>,
}

/// The latest sample, shared by all viewers.
#[derive(Default)]
pub(crate) struct Sampler {
    last: Mutex<Option<(Counters, Value)>>,
}

impl Sampler {
    /// The latest sample, taking a new one when the last is a second old.
    fn sample(&self, state: &Shared) -> Result<Value, Problem> {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((c, v)) = &*last
            && c.at.elapsed() < INTERVAL
        {
            return Ok(v.clone());
        }
        let previous = last.take().map(|(c, _)| c);
        let (counters, value) = take(state, previous.as_ref())?;
        *last = Some((counters, value.clone()));
        Ok(value)
    }
}

fn rate(now: u64, before: Option<u64>, seconds: f64) -> Value {
    match before {
        Some(b) if seconds > 0.0 => {
            let per_second = now.saturating_sub(b) as f64 / seconds;
            json!((per_second * 10.0).round() / 10.0)
        }
        _ => Value::Null,
    }
}

fn take(state: &Shared, previous: Option<&Counters>) -> Result<(Counters, Value), Problem> {
    let log: &dyn Log = &*state.log;
    let at = Instant::now();
    let seconds = previous.map_or(0.0, |p| at.duration_since(p.at).as_secs_f64());
    let mut counters = Counters {
        at,
        topic_ends: HashMap::new(),
        processed: HashMap::new(),
        consumed: HashMap::new(),
    };
    let mut ends: HashMap<TopicPartition, u64> = HashMap::new();
    let mut topics = Vec::new();
    for (spec, ranges) in topic_offsets(log)? {
        let mut sum = 0;
        for (p, o) in (0u32..).zip(&ranges) {
            sum += o.end;
            ends.insert(TopicPartition::new(spec.name.as_str(), p), o.end);
        }
        let before = previous.and_then(|p| p.topic_ends.get(&spec.name).copied());
        topics.push(json!({"name": spec.name, "end": sum, "rate": rate(sum, before, seconds)}));
        counters.topic_ends.insert(spec.name, sum);
    }
    let mut apps = Vec::new();
    for app in applications(state) {
        apps.push(application(&app, &ends, previous, &mut counters, seconds));
    }
    let value = json!({
        "at": kappa_log::now_ms(),
        "interval_ms": INTERVAL.as_millis() as u64,
        "topics": topics,
        "applications": apps,
    });
    Ok((counters, value))
}

fn application(
    app: &Streams,
    ends: &HashMap<TopicPartition, u64>,
    previous: Option<&Counters>,
    counters: &mut Counters,
    seconds: f64,
) -> Value {
    let id = app.application_id().to_owned();
    let processed = app.metrics().records_processed;
    let processed_rate = rate(
        processed,
        previous.and_then(|p| p.processed.get(&id).copied()),
        seconds,
    );
    counters.processed.insert(id.clone(), processed);
    let committed = app.committed_positions();
    let state = app.task_state();
    let mut task_lag = vec![0u64; app.partitions() as usize];
    let mut consumed: HashMap<&str, u64> = HashMap::new();
    for (tp, position) in &committed {
        let end = ends.get(tp).copied().unwrap_or(*position);
        if let Some(l) = task_lag.get_mut(tp.partition as usize) {
            *l += end.saturating_sub(*position);
        }
        *consumed.entry(&*tp.topic).or_default() += position;
    }
    let mut topic_rates: HashMap<String, Value> = HashMap::new();
    for (topic, sum) in consumed {
        let key = (id.clone(), topic.to_owned());
        let before = previous.and_then(|p| p.consumed.get(&key).copied());
        topic_rates.insert(topic.to_owned(), rate(sum, before, seconds));
        counters.consumed.insert(key, sum);
    }
    let tasks: Vec<Value> = (0..app.partitions())
        .map(|t| {
            let (task_state, owner) = if state.restoring.contains(&t) {
                ("restoring", Value::Null)
            } else if state.running.contains(&t) {
                ("running", Value::Null)
            } else {
                match app.owner_of(t) {
                    TaskOwner::Local => ("running", Value::Null),
                    TaskOwner::Remote(url) => ("elsewhere", Value::from(url)),
                    TaskOwner::Unknown => ("unassigned", Value::Null),
                }
            };
            let here = task_state != "elsewhere" && task_state != "unassigned";
            json!({"task": t, "state": task_state, "owner": owner,
                "lag": if here { Value::from(task_lag[t as usize]) } else { Value::Null }})
        })
        .collect();
    let nodes = node_rates(app, &id, &topic_rates, previous.is_some());
    json!({
        "id": id, "processed": processed, "rate": processed_rate,
        "lag": task_lag.iter().sum::<u64>(), "tasks": tasks, "nodes": nodes,
    })
}

/// Records per second through each node: a source at the rate its topic is
/// consumed, any other node at the sum of its parents' rates (an upper
/// bound: filters drop some).
fn node_rates(
    app: &Streams,
    id: &str,
    consumed: &HashMap<String, Value>,
    have_rates: bool,
) -> Vec<Value> {
    let nodes = app.topology().nodes(id);
    let mut rates: HashMap<String, f64> = HashMap::new();
    let mut out = Vec::with_capacity(nodes.len());
    for n in &nodes {
        let r = match &n.topic {
            Some(t) if n.parents.is_empty() || n.kind.ends_with("source") => {
                consumed.get(t).and_then(Value::as_f64).unwrap_or(0.0)
            }
            _ => n.parents.iter().filter_map(|p| rates.get(p)).sum(),
        };
        rates.insert(n.name.clone(), r);
        let shown = if have_rates {
            json!((r * 10.0).round() / 10.0)
        } else {
            Value::Null
        };
        out.push(json!({"name": n.name, "rate": shown}));
    }
    out
}

pub(crate) async fn now(State(state): State<Shared>) -> Response {
    let s = state.clone();
    match blocking(move || s.sampler.sample(&s)).await {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(p) => p.into_response(),
    }
}

/// `event: stats` once a second until the client goes away.
pub(crate) async fn updates(State(state): State<Shared>) -> Response {
    let open = match crate::api::live::Open::new(&state) {
        Ok(o) => o,
        Err(p) => return p.into_response(),
    };
    let events =
        futures_util::stream::unfold((state, open, true), |(state, open, first)| async move {
            if !first {
                tokio::time::sleep(INTERVAL).await;
            }
            if state.closing.load(std::sync::atomic::Ordering::Acquire) {
                return None;
            }
            let s = state.clone();
            let event = match blocking(move || s.sampler.sample(&s)).await {
                Ok(v) => Event::default().event("stats").data(v.to_string()),
                Err(p) => {
                    tracing::warn!(?p, "console figures could not be sampled");
                    Event::default().event("error").data(
                        r#"{"detail":"the figures could not be read; see the service's log"}"#,
                    )
                }
            };
            Some((Ok::<_, Infallible>(event), (state, open, false)))
        });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
