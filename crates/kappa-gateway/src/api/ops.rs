//! Operations: liveness, readiness and metrics.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kappa_streams::Streams;
use serde_json::json;

use super::{Shared, json as json_response};
use crate::gateway::State as GatewayState;
use kappa_service::Problem;
use kappa_service::{MetricFamilies, metric_label as label};

/// Alive unless the log has failed in a way only a restart mends (a
/// poisoned log): then 503, so a supervisor restarts the process. A disk
/// short of space is not that: it passes by itself.
pub(crate) async fn health(State(state): State<Shared>) -> Response {
    match state.log.health() {
        Ok(()) => json_response(StatusCode::OK, &json!({"status": "ok"})),
        Err(e) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the log cannot go on: {e}"),
        )
        .into_response(),
    }
}

/// Ready once the index and every view's topology have caught up with what
/// the log held at start (their stores are restored) and all are running.
pub(crate) fn ready(state: &GatewayState) -> Result<(), String> {
    let index = state.index.streams();
    if !index.is_running() {
        return Err("the index topology stopped".to_owned());
    }
    for v in &state.views {
        if !v.streams.is_running() {
            return Err(format!("the topology of view {:?} stopped", v.name()));
        }
    }
    index_caught_up(state)?;
    for (view, ends) in state.views.iter().zip(&state.view_start_ends) {
        caught_up(&view.streams, ends)
            .map_err(|lag| format!("view {:?} is restoring: {lag}", view.name()))?;
    }
    Ok(())
}

/// Whether `streams` has processed up to `ends` in the tasks it runs
/// (other instances answer for the others); else where it is behind.
fn caught_up(streams: &Streams, ends: &[(kappa_log::TopicPartition, u64)]) -> Result<(), String> {
    let tasks = streams.task_state();
    if tasks.rebalances == 0 {
        return Err("waiting to be given its tasks".to_owned());
    }
    if !tasks.restoring.is_empty() {
        return Err(format!("restoring tasks {:?}", tasks.restoring));
    }
    let committed = streams.committed_positions();
    for (tp, end) in ends {
        if !tasks.running.contains(&tp.partition) {
            continue;
        }
        let at = committed
            .iter()
            .find(|(c, _)| c == tp)
            .map_or(0, |(_, o)| *o);
        if at < *end {
            return Err(format!("{tp} at {at} of {end}"));
        }
    }
    Ok(())
}

/// Whether the index has processed what the log held when the gateway
/// started (until then it may miss commands written before the start).
pub(crate) fn index_caught_up(state: &GatewayState) -> Result<(), String> {
    caught_up(state.index.streams(), &state.start_ends)
        .map_err(|lag| format!("the index is catching up: {lag}"))
}

pub(crate) async fn ready_handler(State(state): State<Shared>) -> Response {
    match ready(&state) {
        Ok(()) => json_response(StatusCode::OK, &json!({"status": "ready"})),
        Err(why) => Problem::unavailable(why, 1)
            .typed(&kappa_service::problem_type::NOT_READY)
            .into_response(),
    }
}

/// Processed and committed counts and lag per task of one topology.
fn render_streams(f: &mut MetricFamilies, state: &GatewayState, streams: &Streams) {
    let app = label(streams.application_id());
    let m = streams.metrics();
    let mut add = |name: &'static str, kind: &'static str, labels: String, value: u64| {
        f.add(name, kind, &labels, value);
    };
    let a = format!("application=\"{app}\"");
    let tasks = streams.task_state();
    add(
        "kappa_streams_tasks_running",
        "gauge",
        a.clone(),
        tasks.running.len() as u64,
    );
    add(
        "kappa_streams_tasks_restoring",
        "gauge",
        a.clone(),
        tasks.restoring.len() as u64,
    );
    add(
        "kappa_streams_rebalances_total",
        "counter",
        a.clone(),
        tasks.rebalances,
    );
    add(
        "kappa_streams_last_restore_milliseconds",
        "gauge",
        a.clone(),
        tasks.last_restore_ms,
    );
    add(
        "kappa_streams_records_processed_total",
        "counter",
        a.clone(),
        m.records_processed,
    );
    add(
        "kappa_streams_commits_total",
        "counter",
        a.clone(),
        m.commits,
    );
    add(
        "kappa_streams_late_records_total",
        "counter",
        a.clone(),
        m.late_records,
    );
    add(
        "kappa_streams_store_cache_hits_total",
        "counter",
        a.clone(),
        m.store_cache_hits,
    );
    add(
        "kappa_streams_store_cache_misses_total",
        "counter",
        a.clone(),
        m.store_cache_misses,
    );
    add(
        "kappa_streams_running",
        "gauge",
        a.clone(),
        u64::from(streams.is_running()),
    );
    for (tp, at) in streams.committed_positions() {
        let Ok(offsets) = state.log.offsets(&tp) else {
            continue;
        };
        let labels = format!(
            "{a},topic=\"{}\",partition=\"{}\"",
            label(&tp.topic),
            tp.partition
        );
        add(
            "kappa_streams_lag_records",
            "gauge",
            labels,
            offsets.end.saturating_sub(at),
        );
    }
}

pub(crate) async fn metrics(State(state): State<Shared>) -> Response {
    let s = state.clone();
    let text = super::blocking(move || {
        let mut out = String::new();
        s.metrics.render(&mut out);
        let mut families = MetricFamilies::default();
        render_streams(&mut families, &s, s.index.streams());
        let mut seen = vec![s.index.streams().application_id().to_owned()];
        for v in &s.views {
            if !seen.iter().any(|a| a == v.streams.application_id()) {
                seen.push(v.streams.application_id().to_owned());
                render_streams(&mut families, &s, &v.streams);
            }
        }
        for source in &s.metric_sources {
            source.collect(&mut families);
        }
        families.render(&mut out);
        let _ = writeln!(
            out,
            "# TYPE kappa_ready gauge\nkappa_ready {}",
            u8::from(ready(&s).is_ok())
        );
        Ok(out)
    })
    .await;
    match text {
        Ok(text) => {
            let mut r = (StatusCode::OK, text).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        Err(p) => p.into_response(),
    }
}
