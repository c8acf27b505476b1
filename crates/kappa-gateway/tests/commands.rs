//! The command API and the history over real HTTP, on the embedded log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use common::{Commands, WAIT, add_or_fail, assert_problem, body, fresh, send, start};
use hyper::Method;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_command_is_written_down_and_indexed() {
    let (_dir, s, mut c) = fresh().await;
    let r = c.command("add", Some("acct-1"), json!({"amount": 5})).await;
    assert_eq!(r.status, 202);
    let cmd = r.json();
    let id = cmd["id"].as_str().unwrap().to_owned();
    assert_eq!(
        r.header("location"),
        Some(format!("/commands/{id}").as_str())
    );
    assert_eq!(cmd["action"], "add");
    assert_eq!(cmd["key"], "acct-1");
    assert_eq!(cmd["parent"], Value::Null);
    assert_eq!(cmd["error"], false);
    assert_eq!(id.chars().nth(14), Some('7'), "a UUIDv7: {id}");
    let position = cmd["position"].as_str().unwrap();
    assert_eq!(
        position,
        format!("commands/{}/{}", cmd["partition"], cmd["offset"])
    );
    // The record in the log is the command as answered, keyed by the entity key.
    let p: kappa_log::Position = position.parse().unwrap();
    let mut records = Vec::new();
    s.log
        .fetch(
            &[(
                kappa_log::TopicPartition::new("commands", p.partition),
                p.offset,
            )],
            kappa_log::FetchLimits {
                records_max: 1,
                ..Default::default()
            },
            &mut records,
        )
        .unwrap();
    assert_eq!(records[0].key.as_deref(), Some(&b"acct-1"[..]));
    let stored: Value = serde_json::from_slice(records[0].value.as_ref().unwrap()).unwrap();
    assert_eq!(stored["id"], cmd["id"]);
    assert_eq!(stored["data"], json!({"amount": 5}));

    // Read-your-writes on the history: wait for the index to pass the position.
    let r = c
        .get_after(&format!("/commands/{id}"), position, WAIT)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["id"], cmd["id"]);
    s.stop().await;
}

/// The `Location` of an accepted command answers at once, without a
/// `min_position`: a GET sent the moment the 202 arrives finds the command
/// (pending or decided) even when the index has not reached it yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_location_of_an_accepted_command_resolves_at_once() {
    let (_dir, s, mut c) = fresh().await;
    let mut reader = s.client().await;
    for n in 0..300 {
        let r = c
            .command(
                "add",
                Some(&format!("acct-{}", n % 7)),
                json!({"amount": 1}),
            )
            .await;
        assert_eq!(r.status, 202);
        let location = r.header("location").unwrap().to_owned();
        let found = reader.get(&location).await.unwrap();
        assert_eq!(
            found.status,
            200,
            "command {n}: {}",
            String::from_utf8_lossy(&found.body)
        );
        assert_eq!(found.json()["id"], r.json()["id"]);
        assert!(
            ["pending", "succeeded"].contains(&found.json()["status"].as_str().unwrap()),
            "{}",
            found.json()
        );
    }
    // An id never written is still unknown.
    let unknown = reader
        .get("/commands/0190a8e4-5c3d-7000-8000-000000000000")
        .await
        .unwrap();
    assert_problem(&unknown, 404);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_commands_answer_with_their_events_or_409_or_504() {
    let (_dir, s, mut c) = fresh().await;

    let r = c.sync("add", Some("a"), json!({"amount": 3})).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let answer = r.json();
    let events = answer["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["action"], "added");
    assert_eq!(events[0]["parent"], answer["id"]);
    assert_eq!(events[0]["data"]["total"], 3);
    // The index reads commands and events: wait for both records.
    let both = with_first_event(&answer);
    let command = format!("/commands/{}", answer["id"].as_str().unwrap());
    let r = c.get_after(&command, &both, WAIT).await.unwrap();
    let status = r.json();
    assert_eq!(status["status"], "succeeded");
    assert_eq!(status["events"], json!([events[0]["id"]]));
    let event = format!("/events/{}", events[0]["id"].as_str().unwrap());
    let r = c.get_after(&event, &both, WAIT).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["parent_record"]["id"], answer["id"]);

    // A rejecting outcome: 409, with the command and its events.
    let r = c.sync("fail", None, json!({})).await;
    let p = assert_problem(&r, 409);
    assert_eq!(p["events"][0]["error"], true);
    assert_eq!(p["events"][0]["parent"], p["id"]);
    let failed = format!("/commands/{}", p["id"].as_str().unwrap());
    let r = c
        .get_after(&failed, &with_first_event(&p), WAIT)
        .await
        .unwrap();
    assert_eq!(r.json()["status"], "failed");

    // No outcome: 504, and the command stays in the log, pending.
    let before = s.ends("commands");
    let r = send(
        &mut c,
        "/commands?sync=true&timeout_ms=150",
        "ignore",
        None,
        json!({}),
    )
    .await;
    let p = assert_problem(&r, 504);
    let location = p["location"].as_str().unwrap().to_owned();
    assert_eq!(r.header("location"), None);
    let after = s.ends("commands");
    assert_eq!(after.iter().sum::<u64>(), before.iter().sum::<u64>() + 1);
    let r = c
        .get_after(&location, p["position"].as_str().unwrap(), WAIT)
        .await
        .unwrap();
    assert_eq!(r.json()["status"], "pending");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_retries_write_once_even_across_a_restart() {
    let (dir, s, mut c) = fresh().await;
    let payload = Bytes::from(body("add", Some("k"), json!({"amount": 9})).to_string());
    let key = [("idempotency-key", "order-42")];
    let first = c
        .request(Method::POST, "/commands", &key, payload.clone())
        .await
        .unwrap();
    assert_eq!(first.status, 202);
    let ends = s.ends("commands");
    let again = c
        .request(Method::POST, "/commands", &key, payload.clone())
        .await
        .unwrap();
    assert_eq!(again.status, 202);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.json()["id"], first.json()["id"]);
    assert_eq!(again.json()["position"], first.json()["position"]);
    // Same key, different command: refused, nothing written.
    let other = Bytes::from(body("add", Some("k"), json!({"amount": 10})).to_string());
    let r = c
        .request(Method::POST, "/commands", &key, other)
        .await
        .unwrap();
    assert_problem(&r, 422);
    // A sync retry answers with the outcome of the first command.
    let r = c
        .request(Method::POST, "/commands?sync=true", &key, payload.clone())
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["id"], first.json()["id"]);
    assert_eq!(r.json()["events"][0]["data"]["total"], 9);
    assert_eq!(s.ends("commands"), ends);
    s.stop().await;

    // The index remembers the key after a restart.
    let s = start(dir.path()).await;
    let mut c = s.client().await;
    let r = c
        .request(Method::POST, "/commands", &key, payload)
        .await
        .unwrap();
    assert_eq!(r.status, 202);
    assert_eq!(r.json()["id"], first.json()["id"]);
    assert_eq!(s.ends("commands"), ends);
    s.stop().await;
}

/// A sync answer's position and its first event's, comma-separated: the
/// index reads both topics.
fn with_first_event(answer: &Value) -> String {
    format!(
        "{},{}",
        answer["position"].as_str().unwrap(),
        answer["events"][0]["position"].as_str().unwrap()
    )
}

async fn all_ids(
    c: &mut kappa_gateway::load::HttpClient,
    path: &str,
    limit: usize,
) -> (Vec<String>, u64) {
    let mut ids = Vec::new();
    let mut offset = 0;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let r = c
            .get(&format!("{path}{sep}offset={offset}&limit={limit}"))
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let page = r.json();
        let total = page["total"].as_u64().unwrap();
        let items = page["items"].as_array().unwrap();
        if items.is_empty() {
            return (ids, total);
        }
        ids.extend(items.iter().map(|i| i["id"].as_str().unwrap().to_owned()));
        offset += items.len();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_by_offset_and_by_cursor_and_filters_events_by_action() {
    let (_dir, s, mut c) = fresh().await;
    let mut sent = Vec::new();
    let mut last_event = String::new();
    for i in 0..23 {
        let (action, data) = add_or_fail(i % 4 == 3, 1);
        let r = c.sync(action, Some(&format!("k{}", i % 5)), data).await;
        let answer = r.json();
        sent.push(answer["id"].as_str().unwrap().to_owned());
        last_event = answer["events"][0]["position"].as_str().unwrap().to_owned();
    }
    // Wait until the index has every command and event of every partition.
    let mut all = Vec::new();
    for topic in ["commands", "events"] {
        for (p, end) in s.ends(topic).iter().enumerate() {
            if *end > 0 {
                all.push(format!("{topic}/{p}/{}", end - 1));
            }
        }
    }
    assert!(all.contains(&last_event));
    let r = c
        .get_after("/events?limit=1", &all.join(","), WAIT)
        .await
        .unwrap();
    assert_eq!(r.status, 200);

    let (ids, total) = all_ids(&mut c, "/commands", 10).await;
    assert_eq!(total, 23);
    assert_eq!(ids, sent, "oldest first, each once");
    // By cursor: the same order.
    let mut by_cursor = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("/commands?limit=7&after={a}"),
            None => "/commands?limit=7".to_owned(),
        };
        let page = c.get(&path).await.unwrap().json();
        by_cursor.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_owned()),
        );
        match page["next_after"].as_str() {
            Some(n) => after = Some(n.to_owned()),
            None => break,
        }
    }
    assert_eq!(by_cursor, sent);
    let (failed, failed_total) = all_ids(&mut c, "/events?action=failed", 4).await;
    assert_eq!(failed_total, 5);
    assert_eq!(failed.len(), 5);
    let (added, added_total) = all_ids(&mut c, "/events?action=added", 100).await;
    assert_eq!((added.len(), added_total), (18, 18));
    let (events, events_total) = all_ids(&mut c, "/events", 6).await;
    assert_eq!((events.len(), events_total), (23, 23));
    let r = c.get("/events?action=nothing-like-this").await.unwrap();
    assert_eq!(r.json()["total"], 0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_read_your_writes_and_report_their_positions() {
    let (_dir, s, mut c) = fresh().await;
    let mut position = String::new();
    for amount in [4, 5, 6] {
        let r = c
            .command("add", Some("acct"), json!({"amount": amount}))
            .await;
        position = r.json()["position"].as_str().unwrap().to_owned();
    }
    let r = c
        .get_after("/views/totals/acct", &position, WAIT)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert_eq!(v["value"], 15);
    let written: kappa_log::Position = position.parse().unwrap();
    let reflected =
        kappa_gateway::position::parse_positions(v["position"].as_str().unwrap()).unwrap();
    assert!(
        reflected
            .iter()
            .any(|p| p.partition == written.partition && p.offset >= written.offset),
        "{reflected:?} does not cover {written}"
    );
    // A scan sees it too.
    let r = c
        .get(&format!("/views/totals?prefix=ac&min_position={position}"))
        .await
        .unwrap();
    assert_eq!(r.json()["entries"], json!([{"key": "acct", "value": 15}]));
    // A position nobody wrote (past its partition's end): 404 at once,
    // not a wait; `kappa-effects`' search test shows the 503 of a
    // position written but not reached in time.
    let unwritten = format!("commands/{}/{}", written.partition, written.offset + 1000);
    let r = c
        .get_after("/views/totals/acct", &unwritten, Duration::from_secs(30))
        .await
        .unwrap();
    let problem = assert_problem(&r, 404);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("nothing was written"),
        "{problem}"
    );
    // A position of a topic the view does not read: 400.
    let r = c
        .get("/views/totals/acct?min_position=events/0/0")
        .await
        .unwrap();
    assert_problem(&r, 400);
    let r = c.get("/views/totals/nobody").await.unwrap();
    assert_problem(&r, 404);
    let r = c.get("/views/nothing/acct").await.unwrap();
    assert_problem(&r, 404);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_is_rebuilt_identically_from_the_log() {
    let (dir, s, mut c) = fresh().await;
    for i in 0..12 {
        let (action, data) = add_or_fail(i % 3 == 0, i + 1);
        let r = c.sync(action, Some(&format!("k{i}")), data).await;
        assert!(r.status == 201 || r.status == 409);
    }
    s.stop().await;
    let before = history_after_restart(dir.path()).await;
    assert_eq!(before[0]["total"], 12);
    // Drop the index's state and positions; the next start replays the topics.
    let log = kappa_log::EmbeddedLog::open(dir.path()).unwrap();
    let report = kappa_streams::reset_application(&log, "kappa-gateway-index").unwrap();
    assert!(report.store_entries_dropped > 0, "{report:?}");
    drop(log);
    assert_eq!(history_after_restart(dir.path()).await, before);
}

/// The whole history as a service started on `dir` answers it: commands,
/// events, failed events.
async fn history_after_restart(dir: &Path) -> Vec<Value> {
    let s = start(dir).await;
    let mut c = s.client().await;
    let mut pages = Vec::new();
    for path in [
        "/commands?limit=1000",
        "/events?limit=1000",
        "/events?action=failed&limit=1000",
    ] {
        pages.push(c.get(path).await.unwrap().json());
    }
    s.stop().await;
    pages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_endpoints_answer() {
    let (_dir, s, mut c) = fresh().await;
    assert_eq!(c.get("/health").await.unwrap().status, 200);
    assert_eq!(c.get("/ready").await.unwrap().status, 200);
    let r = c.sync("add", Some("m"), json!({"amount": 1})).await;
    assert_eq!(r.status, 201);
    let metrics = c.get("/metrics").await.unwrap();
    assert_eq!(metrics.status, 200);
    let text = String::from_utf8(metrics.body.to_vec()).unwrap();
    assert!(
        text.contains("kappa_commands_total{action=\"add\"} 1"),
        "{text}"
    );
    assert!(
        text.contains(
            "kappa_http_requests_total{route=\"/commands\",method=\"POST\",status=\"201\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("kappa_streams_lag_records{application=\"kappa-demo\",topic=\"commands\",partition=\"0\"}"), "{text}");
    assert!(
        text.contains("kappa_http_request_duration_seconds_bucket{route=\"/ready\",le=\"+Inf\"} 1"),
        "{text}"
    );
    // Every metric family is declared once, before its samples.
    let mut declared = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split_whitespace().next().unwrap();
            assert!(declared.insert(name.to_owned()), "{name} declared twice");
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .fold(name, |n, s| n.strip_suffix(s).unwrap_or(n));
            assert!(declared.contains(family), "{name} has no TYPE before it");
        }
    }
    let doc = c.get("/openapi.json").await.unwrap().json();
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/commands",
        "/commands/{id}",
        "/commands/updates",
        "/events",
        "/events/{id}",
        "/events/updates",
        "/views/{store}/{key}",
        "/metrics",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing");
    }
    // One named schema per action, as generated clients want them.
    let schemas = &doc["components"]["schemas"];
    let variants = schemas["CommandRequest"]["oneOf"].as_array().unwrap();
    assert!(variants.contains(&json!({"$ref": "#/components/schemas/AddCommand"})));
    assert_eq!(schemas["AddCommand"]["title"], "add");
    assert_eq!(
        schemas["AddCommand"]["properties"]["data"]["$ref"],
        "#/components/schemas/AddData"
    );
    assert_eq!(schemas["AddData"]["required"], json!(["amount"]));
    let page = c.get("/docs").await.unwrap();
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(String::from_utf8_lossy(&page.body).contains("/openapi.json"));
    s.stop().await;
}
