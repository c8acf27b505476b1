//! Interactive queries over registered stores, with read-your-writes.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{OriginalUri, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use kappa_log::TopicPartition;
use kappa_streams::Streams;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Shared, blocking, json as json_response, query};
use crate::views::{View, ViewKind};
use kappa_service::position::parse_positions;
use kappa_service::{Problem, problem_type};

/// Waits until `streams` has processed every record named in `min_position`
/// (comma-separated `topic/partition/offset`), for at most `wait`: the
/// read-your-writes check behind every view, for applications' own routes too.
///
/// # Errors
///
/// 400 when a position is malformed or names a topic the topology does not
/// read; 503 with `Retry-After` when the wait ends first.
pub async fn wait_for_position(
    streams: &Arc<Streams>,
    min_position: &str,
    wait: Duration,
) -> Result<(), Problem> {
    let positions = parse_positions(min_position).map_err(Problem::bad_request)?;
    let mut targets = Vec::with_capacity(positions.len());
    for p in positions {
        if !streams.input_topics().iter().any(|t| **t == *p.topic)
            || p.partition >= streams.partitions()
        {
            return Err(Problem::bad_request(format!(
                "min_position {p}: this view reads {} with {} partitions",
                streams.input_topics().join(", "),
                streams.partitions()
            )));
        }
        targets.push((TopicPartition::new(p.topic.clone(), p.partition), p.offset));
    }
    let s = streams.clone();
    let reached = blocking(move || {
        if let Some(why) = kappa_service::position::not_written(&**s.log(), &targets)? {
            return Err(Problem::not_found(why).typed(&problem_type::POSITION_NOT_WRITTEN));
        }
        Ok(s.wait_for_processed(&targets, wait)?)
    })
    .await?;
    if reached {
        Ok(())
    } else {
        Err(Problem::unavailable(
            format!(
                "the view has not processed {min_position} within {} ms; retry",
                wait.as_millis()
            ),
            1,
        )
        .typed(&problem_type::POSITION_NOT_REACHED)
        .with("min_position", min_position))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GetQuery {
    as_of: Option<i64>,
    min_position: Option<String>,
    wait_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScanQuery {
    prefix: Option<String>,
    from: Option<String>,
    to: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
    min_position: Option<String>,
    wait_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowQuery {
    from: Option<i64>,
    to: Option<i64>,
    min_position: Option<String>,
    wait_ms: Option<u64>,
}

fn find<'a>(state: &'a Shared, name: &str) -> Result<&'a View, Problem> {
    state
        .views
        .iter()
        .find(|v| v.name() == name)
        .ok_or_else(|| Problem::not_found(format!("no view {name:?}")))
}

/// Applies a request's optional `min_position` and `wait_ms` to `streams`
/// (waiting at most the configured maximum; one second by default).
pub(crate) async fn wait_if_asked(
    state: &Shared,
    streams: &Arc<Streams>,
    min_position: Option<&str>,
    wait_ms: Option<u64>,
) -> Result<(), Problem> {
    let Some(min) = min_position else {
        return Ok(());
    };
    let wait = wait_ms
        .map_or(Duration::from_secs(1), Duration::from_millis)
        .min(state.config.wait_max);
    wait_for_position(streams, min, wait).await
}

async fn ready_for(
    state: &Shared,
    view: &View,
    min_position: Option<&str>,
    wait_ms: Option<u64>,
) -> Result<(), Problem> {
    wait_if_asked(state, &view.streams, min_position, wait_ms).await
}

/// The positions a read of `view` reflects.
fn reflected(view: &View, partition: Option<u32>) -> String {
    kappa_service::position::reflected(&view.streams, partition)
}

/// A view as `/views` lists it.
pub(crate) fn described(v: &View) -> Value {
    json!({
        "name": v.name(),
        "store": v.store.name(),
        "kind": v.kind.name(),
        "application_id": v.streams.application_id(),
        "inputs": v.streams.input_topics(),
        "partitions": v.streams.partitions(),
        "position": reflected(v, None),
    })
}

pub(crate) async fn list(State(state): State<Shared>) -> Response {
    let views: Vec<Value> = state.views.iter().map(described).collect();
    json_response(StatusCode::OK, &json!({ "views": views }))
}

pub(crate) async fn get(
    State(state): State<Shared>,
    Path((name, key)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, Problem> {
    let q: GetQuery = query(&uri)?;
    let read = read_key(
        &state,
        &name,
        &key,
        q.as_of,
        q.min_position.as_deref(),
        q.wait_ms,
    )
    .await?;
    let mut body = json!({
        "view": name,
        "key": read.key,
        "value": read.value,
        "position": read.position,
    });
    if let Some(from) = read.valid_from {
        body["valid_from"] = Value::from(from);
    }
    Ok(json_response(StatusCode::OK, &body))
}

/// One key's value in a view.
pub(crate) struct KeyRead {
    /// The key as the view writes it.
    pub(crate) key: Value,
    pub(crate) value: Value,
    /// The positions the value reflects.
    pub(crate) position: String,
    /// Versioned views: since when the value holds.
    pub(crate) valid_from: Option<i64>,
}

/// Reads `key` of view `name` (as of a time, for versioned views), once
/// the view has processed `min_position`: `GET /views/{store}/{key}` and
/// gRPC's `GetView`.
pub(crate) async fn read_key(
    state: &Shared,
    name: &str,
    key: &str,
    as_of: Option<i64>,
    min_position: Option<&str>,
    wait_ms: Option<u64>,
) -> Result<KeyRead, Problem> {
    let view = find(state, name)?.clone();
    if as_of.is_some() && view.kind != ViewKind::Versioned {
        // A view without history holds no value at any earlier time.
        return Err(Problem::not_found(format!(
            "view {name:?} keeps no history (it is not versioned): nothing at as_of"
        )));
    }
    ready_for(state, &view, min_position, wait_ms).await?;
    let k = view.encode_key(key).map_err(Problem::bad_request)?;
    let partition = view.store.partition_of(&k);
    let key_json = view.decode_key(&k);
    // Positions first: the value read after them is at least as new.
    let position = reflected(&view, Some(partition));
    let v2 = view.clone();
    let found = blocking(move || {
        Ok(match as_of {
            Some(t) => v2.store.get_as_of(&k, t)?.map(|(v, from)| (v, Some(from))),
            // A versioned store answers with its latest version.
            None if v2.kind == ViewKind::Versioned => v2
                .store
                .get_as_of(&k, i64::MAX)?
                .map(|(v, from)| (v, Some(from))),
            None => v2.store.get(&k)?.map(|v| (v, None)),
        })
    })
    .await?;
    let Some((value, valid_from)) = found else {
        return Err(
            Problem::not_found(format!("no key {key:?} in view {name:?}"))
                .with("position", position),
        );
    };
    Ok(KeyRead {
        key: key_json,
        value: view.decode_value(&value),
        position,
        valid_from,
    })
}

pub(crate) async fn scan(
    State(state): State<Shared>,
    Path(name): Path<String>,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, Problem> {
    let q: ScanQuery = query(&uri)?;
    let page = scan_page(
        &state,
        &name,
        &Scan {
            prefix: q.prefix.as_deref(),
            from: q.from.as_deref(),
            to: q.to.as_deref(),
            after: q.after.as_deref(),
            limit: q.limit,
        },
        q.min_position.as_deref(),
        q.wait_ms,
    )
    .await?;
    let items: Vec<Value> = page
        .entries
        .into_iter()
        .map(|(key, value)| json!({"key": key, "value": value}))
        .collect();
    let mut body = json!({"view": name, "entries": items, "position": page.position});
    if let Some(next) = page.next_after {
        body["next_after"] = next;
    }
    Ok(json_response(StatusCode::OK, &body))
}

/// What a scan asks for: keys in key order with `prefix`, at or after
/// `from`, before `to`, after `after` (a page's `next_after`), at most `limit`.
pub(crate) struct Scan<'a> {
    pub(crate) prefix: Option<&'a str>,
    pub(crate) from: Option<&'a str>,
    pub(crate) to: Option<&'a str>,
    pub(crate) after: Option<&'a str>,
    pub(crate) limit: Option<usize>,
}

/// A page of a scan: keys and values as the view writes them.
pub(crate) struct ScanPage {
    pub(crate) entries: Vec<(Value, Value)>,
    /// The positions the page reflects.
    pub(crate) position: String,
    /// The key to pass as `after` for the next page, when there is one.
    pub(crate) next_after: Option<Value>,
}

/// Scans view `name` once it has processed `min_position`:
/// `GET /views/{store}` and gRPC's `ScanView`.
pub(crate) async fn scan_page(
    state: &Shared,
    name: &str,
    scan: &Scan<'_>,
    min_position: Option<&str>,
    wait_ms: Option<u64>,
) -> Result<ScanPage, Problem> {
    let view = find(state, name)?.clone();
    let limit = scan.limit.unwrap_or(100);
    if limit == 0 || limit > state.config.page_limit_max {
        return Err(Problem::bad_request(format!(
            "limit must be 1 to {}",
            state.config.page_limit_max
        )));
    }
    ready_for(state, &view, min_position, wait_ms).await?;
    let enc = |t: Option<&str>| -> Result<Option<Vec<u8>>, Problem> {
        t.map(|s| view.encode_key(s).map_err(Problem::bad_request))
            .transpose()
    };
    let (prefix, from, to, after) = (
        enc(scan.prefix)?,
        enc(scan.from)?,
        enc(scan.to)?,
        enc(scan.after)?,
    );
    let position = reflected(&view, None);
    let v2 = view.clone();
    let (entries, more) = blocking(move || {
        // A JSON-string prefix must not include its closing quote.
        let mut p = prefix.unwrap_or_default();
        if v2.keys == crate::views::KeyFormat::JsonString && p.ends_with(b"\"") {
            p.pop();
        }
        let start = match (&after, &from) {
            (Some(a), Some(f)) if a < f => None,
            (Some(a), _) => Some(a.clone()),
            _ => None,
        };
        let mut out = Vec::new();
        let mut cursor = start;
        // Pages until `limit` entries at or after `from` and before `to` are found.
        loop {
            let page = v2.store.page(&p, cursor.as_deref(), limit + 1)?;
            let exhausted = page.len() <= limit;
            for (k, v) in page {
                cursor = Some(k.to_vec());
                if from.as_ref().is_some_and(|f| &k[..] < f.as_slice()) {
                    continue;
                }
                if to.as_ref().is_some_and(|t| &k[..] >= t.as_slice()) {
                    return Ok((out, false));
                }
                if out.len() == limit {
                    return Ok((out, true));
                }
                out.push((k, v));
            }
            if exhausted {
                return Ok((out, false));
            }
        }
    })
    .await?;
    let next_after = more
        .then(|| entries.last().map(|(k, _)| view.decode_key(k)))
        .flatten();
    Ok(ScanPage {
        entries: entries
            .iter()
            .map(|(k, v)| (view.decode_key(k), view.decode_value(v)))
            .collect(),
        position,
        next_after,
    })
}

pub(crate) async fn windows(
    State(state): State<Shared>,
    Path((name, key)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, Problem> {
    let q: WindowQuery = query(&uri)?;
    let (windows, position) = read_windows(
        &state,
        &name,
        &key,
        (q.from, q.to),
        q.min_position.as_deref(),
        q.wait_ms,
    )
    .await?;
    let items: Vec<Value> = windows
        .into_iter()
        .map(|(start, value)| json!({"start": start, "value": value}))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"view": name, "key": key, "windows": items, "position": position}),
    ))
}

/// The windows (or panes) of `key` in windowed view `name` starting from
/// `from` to `to` (inclusive, ms), once the view has processed
/// `min_position`, with the positions they reflect:
/// `GET /views/{store}/{key}/windows` and gRPC's `GetWindows`.
pub(crate) async fn read_windows(
    state: &Shared,
    name: &str,
    key: &str,
    (from, to): (Option<i64>, Option<i64>),
    min_position: Option<&str>,
    wait_ms: Option<u64>,
) -> Result<(Vec<(i64, Value)>, String), Problem> {
    let view = find(state, name)?.clone();
    if view.kind != ViewKind::Windowed {
        return Err(Problem::not_found(format!(
            "view {name:?} is not windowed: it has no windows"
        )));
    }
    ready_for(state, &view, min_position, wait_ms).await?;
    let k = view.encode_key(key).map_err(Problem::bad_request)?;
    let (from, to) = (from.unwrap_or(i64::MIN), to.unwrap_or(i64::MAX));
    if from > to {
        return Err(Problem::bad_request("from must not be after to"));
    }
    let position = reflected(&view, Some(view.store.partition_of(&k)));
    let v2 = view.clone();
    let found = blocking(move || Ok(v2.store.fetch_windows(&k, from, to)?)).await?;
    let windows = found
        .iter()
        .map(|(start, v)| (*start, view.decode_value(v)))
        .collect();
    Ok((windows, position))
}
