//! The console's data: what the service is (`info`), its dataflow
//! (`topology`), its topics with their offsets and lag (`topics`), and a
//! record browser over any topic (`records`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::extract::{OriginalUri, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use kappa_log::{
    CleanupPolicy, FetchLimits, Log, LogError, OffsetRange, Record, TopicPartition, TopicSpec,
};
use kappa_streams::Streams;
use kappa_streams::provenance::{CAUSATION_HEADER, CORRELATION_HEADER, SOURCE_HEADER};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{Shared, blocking, json as json_response, query};
use kappa_service::Problem;

/// Most records one page of the browser returns.
pub(crate) const RECORDS_MAX: usize = 500;

/// Every topology the gateway knows of, once each: its index and the
/// topologies behind its views.
pub(crate) fn applications(state: &Shared) -> Vec<Arc<Streams>> {
    let mut apps: Vec<Arc<Streams>> = vec![state.index.streams().clone()];
    for v in &state.views {
        if !apps
            .iter()
            .any(|a| a.application_id() == v.streams.application_id())
        {
            apps.push(v.streams.clone());
        }
    }
    apps
}

pub(crate) async fn info(State(state): State<Shared>) -> Response {
    let actions: Vec<Value> = state
        .actions
        .iter()
        .map(|(name, description, schema)| {
            json!({"name": name, "description": description, "schema": schema})
        })
        .collect();
    let views: Vec<Value> = state
        .views
        .iter()
        .map(crate::api::views::described)
        .collect();
    let pages: Vec<Value> = state
        .console_pages
        .iter()
        .map(|p| {
            json!({"id": p.id(), "title": p.title(), "script": format!("/console/pages/{}.js", p.id())})
        })
        .collect();
    json_response(
        StatusCode::OK,
        &json!({
            "title": state.config.title,
            "backend": state.log.backend(),
            "commands_topic": state.config.commands_topic,
            "event_topics": state.config.event_topics,
            "partitions": state.partitions,
            "actions": actions,
            "views": views,
            "pages": pages,
        }),
    )
}

pub(crate) async fn topology(State(state): State<Shared>) -> Response {
    let applications: Vec<Value> = applications(&state)
        .iter()
        .map(|app| {
            let id = app.application_id();
            let topology = app.topology();
            let nodes: Vec<Value> = topology
                .nodes(id)
                .into_iter()
                .map(|n| {
                    json!({"name": n.name, "kind": n.kind, "label": n.label, "parents": n.parents,
                        "topic": n.topic, "stores": n.stores})
                })
                .collect();
            let stores: Vec<Value> = topology
                .stores()
                .iter()
                .map(|s| {
                    let view = state
                        .views
                        .iter()
                        .find(|v| v.streams.application_id() == id && v.store.name() == s.name);
                    json!({"name": s.name, "kind": format!("{:?}", s.kind).to_lowercase(),
                        "view": view.map(|v| v.name())})
                })
                .collect();
            let instances: Vec<Value> = app
                .instances()
                .into_iter()
                .map(|(url, tasks)| json!({"url": url, "tasks": tasks}))
                .collect();
            json!({"id": id, "partitions": app.partitions(), "inputs": app.input_topics(),
                "outputs": topology.sink_topics(id), "nodes": nodes, "stores": stores,
                "instances": instances})
        })
        .collect();
    json_response(StatusCode::OK, &json!({"applications": applications}))
}

/// Names Kappa gives the topics it makes for itself.
fn is_internal(name: &str) -> bool {
    name.ends_with("-changelog")
        || name.ends_with("-repartition")
        || name.starts_with("__")
        || name.starts_with("kappa-")
}

/// Every topic, by name, with its partitions' offsets (partition `i` at
/// index `i`); a topic deleted while listing is left out.
pub(crate) fn topic_offsets(log: &dyn Log) -> Result<Vec<(TopicSpec, Vec<OffsetRange>)>, LogError> {
    let mut specs = log.list_topics()?;
    specs.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = Vec::with_capacity(specs.len());
    'topics: for spec in specs {
        let mut ranges = Vec::with_capacity(spec.partitions as usize);
        for p in 0..spec.partitions {
            match log.offsets(&TopicPartition::new(spec.name.as_str(), p)) {
                Ok(o) => ranges.push(o),
                Err(LogError::UnknownTopic(_)) => continue 'topics,
                Err(e) => return Err(e),
            }
        }
        out.push((spec, ranges));
    }
    Ok(out)
}

/// The log's groups; none on a log that does not list them.
fn group_names(log: &dyn Log) -> Result<Vec<String>, LogError> {
    match log.group_names() {
        Err(LogError::Unsupported(_)) => Ok(Vec::new()),
        listed => listed,
    }
}

pub(crate) async fn topics(State(state): State<Shared>) -> Result<Response, Problem> {
    let s = state.clone();
    let answer = blocking(move || {
        let listed = topic_offsets(&*s.log)?;
        // The groups' lag is measured against the same ends the topics show.
        let mut ends: HashMap<TopicPartition, u64> = HashMap::new();
        let mut topics = Vec::with_capacity(listed.len());
        for (spec, ranges) in &listed {
            let mut partitions = Vec::with_capacity(ranges.len());
            for (p, o) in (0u32..).zip(ranges) {
                ends.insert(TopicPartition::new(spec.name.as_str(), p), o.end);
                partitions.push(json!({"partition": p, "start": o.start, "end": o.end}));
            }
            topics.push(json!({
                "name": spec.name, "partitions": partitions,
                "compacted": spec.config.cleanup_policy != CleanupPolicy::Delete,
                "internal": is_internal(&spec.name),
            }));
        }
        let mut groups = Vec::new();
        let mut lag = |group: &str, kind: &str, tp: TopicPartition, position: u64| {
            let end = match ends.get(&tp) {
                Some(e) => *e,
                None => s.log.offsets(&tp)?.end,
            };
            groups.push(json!({
                "group": group, "kind": kind, "topic": &*tp.topic, "partition": tp.partition,
                "position": position, "end": end, "lag": end.saturating_sub(position),
            }));
            Ok::<_, LogError>(())
        };
        let apps = applications(&s);
        for app in &apps {
            for (tp, position) in app.committed_positions() {
                lag(app.application_id(), "application", tp, position)?;
            }
        }
        // Every other group with positions in the log: effect runners and
        // sinks, and Kafka consumer groups of a log served over the Kafka
        // protocol (their committed offsets are the log's group positions).
        let others = group_names(&*s.log)?;
        for name in others
            .iter()
            .filter(|n| !apps.iter().any(|a| a.application_id() == n.as_str()))
        {
            for (tp, position) in s.log.group_positions(name)? {
                lag(name, "consumer group", tp, position)?;
            }
        }
        Ok(json!({"topics": topics, "groups": groups}))
    })
    .await?;
    Ok(json_response(StatusCode::OK, &answer))
}

/// The system on this log, as the article draws it: every service that
/// announced itself (`crate::registry`), with what it reads (and its lag)
/// and writes; the Kafka consumer groups of processes that use the log
/// with a stock client and announce nothing; and the topics between them.
pub(crate) async fn system(State(state): State<Shared>) -> Result<Response, Problem> {
    let s = state.clone();
    let answer = blocking(move || {
        let services = kappa_service::registry::announced(&*s.log)?;
        let mut known: HashSet<&str> = services
            .iter()
            .flat_map(|a| a.announcement.reads.iter().map(|r| r.reader.as_str()))
            .collect();
        let apps = applications(&s);
        known.extend(apps.iter().map(|a| a.application_id()));
        let names = group_names(&*s.log)?;
        let mut groups = Vec::new();
        for name in names.iter().filter(|n| !known.contains(n.as_str())) {
            let positions = s.log.group_positions(name)?;
            let reads = kappa_service::registry::lag_of(&*s.log, name, &positions)?;
            groups.push(json!({"group": name, "reads": reads}));
        }
        let topics: Vec<Value> = topic_offsets(&*s.log)?
            .iter()
            .filter(|(spec, _)| !is_internal(&spec.name))
            .map(|(spec, ranges)| {
                let records: u64 = ranges.iter().map(|r| r.end - r.start).sum();
                json!({"name": spec.name, "partitions": spec.partitions, "records": records})
            })
            .collect();
        Ok(json!({"services": services, "groups": groups, "topics": topics}))
    })
    .await?;
    Ok(json_response(StatusCode::OK, &answer))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordsQuery {
    partition: Option<u32>,
    /// Start at this offset.
    offset: Option<u64>,
    /// Start at the first record at or after this time (ms since the epoch).
    time: Option<i64>,
    /// `latest`: the last `limit` records.
    from: Option<String>,
    limit: Option<usize>,
}

pub(crate) async fn records(
    State(state): State<Shared>,
    Path(topic): Path<String>,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, Problem> {
    let q: RecordsQuery = query(&uri)?;
    let limit = q.limit.unwrap_or(50);
    if limit == 0 || limit > RECORDS_MAX {
        return Err(Problem::bad_request(format!(
            "limit={limit}: between 1 and {RECORDS_MAX}"
        )));
    }
    let starts = [q.offset.is_some(), q.time.is_some(), q.from.is_some()];
    if starts.iter().filter(|s| **s).count() > 1 {
        return Err(Problem::bad_request(
            "give one of offset=, time= and from=latest",
        ));
    }
    if let Some(from) = q.from.as_deref()
        && from != "latest"
    {
        return Err(Problem::bad_request(format!(
            "from={from:?}: only from=latest"
        )));
    }
    let s = state.clone();
    let page = blocking(move || {
        let partitions = match s.log.partition_count(&topic) {
            Ok(n) => n,
            Err(LogError::UnknownTopic(_)) => {
                return Err(Problem::not_found(format!("no topic {topic:?}")));
            }
            Err(e) => return Err(e.into()),
        };
        let partition = q.partition.unwrap_or(0);
        if partition >= partitions {
            return Err(Problem::bad_request(format!(
                "partition={partition}: {topic:?} has {partitions} partitions"
            )));
        }
        let tp = TopicPartition::new(topic.as_str(), partition);
        let range = s.log.offsets(&tp)?;
        let from = if let Some(o) = q.offset {
            if o < range.start || o > range.end {
                return Err(Problem::bad_request(format!(
                    "offset={o}: {topic}/{partition} holds {}..{}",
                    range.start, range.end
                )));
            }
            o
        } else if let Some(t) = q.time {
            s.log.offset_for_timestamp(&tp, t)?.unwrap_or(range.end)
        } else if q.from.is_some() {
            range.end.saturating_sub(limit as u64).max(range.start)
        } else {
            range.start
        };
        let mut out = Vec::with_capacity(limit.min(64));
        let mut next = from;
        // A fetch may stop early (at a batch's end); read until the page is
        // full or the partition's end.
        while out.len() < limit && next < range.end {
            let limits = FetchLimits {
                records_max: limit - out.len(),
                bytes_max: 4 * 1024 * 1024,
                wait_max: std::time::Duration::ZERO,
            };
            let fetched = s.log.fetch(&[(tp.clone(), next)], limits, &mut out)?;
            let after = fetched.next_offsets.first().copied().unwrap_or(next);
            if after <= next {
                break;
            }
            next = after;
        }
        out.retain(|r| r.offset >= from);
        out.truncate(limit);
        let next_offset = out.last().map_or(from, |r| r.offset + 1);
        let records: Vec<Value> = out.iter().map(describe_record).collect();
        Ok(json!({
            "topic": topic, "partition": partition, "start": range.start, "end": range.end,
            "from": from, "records": records, "next_offset": next_offset,
        }))
    })
    .await?;
    Ok(json_response(StatusCode::OK, &page))
}

/// Bytes shown as JSON when they parse, as text when UTF-8, else as hex.
fn shown(bytes: Option<&[u8]>) -> (Value, &'static str) {
    let Some(b) = bytes else {
        return (Value::Null, "null");
    };
    if let Ok(v) = serde_json::from_slice::<Value>(b)
        && (v.is_object() || v.is_array())
    {
        return (v, "json");
    }
    match std::str::from_utf8(b) {
        Ok(text) => (Value::from(text), "text"),
        Err(_) => {
            use std::fmt::Write as _;
            let mut hex = String::with_capacity(b.len() * 2);
            for byte in b {
                let _ = write!(hex, "{byte:02x}");
            }
            (Value::from(hex), "hex")
        }
    }
}

fn describe_record(r: &Record) -> Value {
    let (key, key_format) = shown(r.key.as_deref());
    let (value, value_format) = shown(r.value.as_deref());
    let mut provenance = Vec::new();
    let headers: Vec<Value> = r
        .headers
        .iter()
        .map(|h| {
            let name = String::from_utf8_lossy(&h.name);
            let text = String::from_utf8_lossy(&h.value);
            if [SOURCE_HEADER, CAUSATION_HEADER, CORRELATION_HEADER].contains(&&*name)
                && let Ok(p) = text.parse::<kappa_log::Position>()
            {
                provenance.push(json!({"header": name, "topic": &*p.topic,
                    "partition": p.partition, "offset": p.offset}));
            }
            json!({"name": name, "value": text})
        })
        .collect();
    json!({
        "offset": r.offset, "timestamp": r.timestamp,
        "key": key, "key_format": key_format, "value": value, "value_format": value_format,
        "headers": headers, "provenance": provenance,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_shown_in_the_plainest_faithful_form() {
        assert_eq!(shown(Some(br#"{"a":1}"#)), (json!({"a": 1}), "json"));
        assert_eq!(shown(Some(b"card-1")), (json!("card-1"), "text"));
        // A bare JSON scalar is text: a key like `42` reads as it is written.
        assert_eq!(shown(Some(b"42")), (json!("42"), "text"));
        assert_eq!(shown(Some(&[0xff, 0x00])), (json!("ff00"), "hex"));
        assert_eq!(shown(None), (Value::Null, "null"));
    }

    #[test]
    fn kappa_topics_are_internal() {
        assert!(is_internal("card-limits-cards-changelog"));
        assert!(is_internal("kappa-gateway-index-registry"));
        assert!(!is_internal("commands"));
    }
}
