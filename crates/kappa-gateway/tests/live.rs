//! Live streams over real HTTP: resumable from the exact position.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::{assert_problem, body, start};
use http_body_util::BodyExt;
use hyper::Method;
use hyper::body::Incoming;
use serde_json::{Value, json};

/// Reads server-sent events off a response body.
struct Frames {
    body: Incoming,
    buffer: BytesMut,
}

struct Frame {
    id: String,
    event: String,
    data: Value,
}

impl Frames {
    /// The next frame with data (keep-alive comments are skipped).
    async fn next(&mut self) -> Frame {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let raw = self.buffer.split_to(end + 2);
                let text = String::from_utf8(raw.to_vec()).unwrap();
                let (mut id, mut event, mut data) = (String::new(), String::new(), String::new());
                for line in text.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        event = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    }
                }
                if data.is_empty() {
                    continue;
                }
                return Frame {
                    id,
                    event,
                    data: serde_json::from_str(&data).unwrap(),
                };
            }
            let frame = tokio::time::timeout(Duration::from_secs(20), self.body.frame())
                .await
                .expect("no event within 20 s")
                .expect("stream ended")
                .unwrap();
            if let Ok(d) = frame.into_data() {
                self.buffer.extend_from_slice(&d);
            }
        }
    }
}

async fn open(
    c: &mut kappa_gateway::load::HttpClient,
    path: &str,
    last_id: Option<&str>,
) -> Frames {
    let headers: Vec<(&str, &str)> = last_id
        .map(|id| ("last-event-id", id))
        .into_iter()
        .collect();
    let r = c
        .send(Method::GET, path, &headers, Bytes::new())
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    Frames {
        body: r.into_body(),
        buffer: BytesMut::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_stream_loses_nothing_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let mut c = s.client().await;
    let mut expected = Vec::new();
    for i in 0..10 {
        let r = c
            .post(
                "/commands?sync=true",
                &body("add", Some(&format!("k{i}")), json!({"amount": 1})),
            )
            .await
            .unwrap();
        expected.push(r.json()["events"][0]["id"].as_str().unwrap().to_owned());
    }
    let mut seen = Vec::new();
    let last_id;
    {
        let mut sse = s.client().await;
        let mut frames = open(&mut sse, "/events/updates?from=beginning", None).await;
        let mut last = String::new();
        for _ in 0..4 {
            let f = frames.next().await;
            assert_eq!(f.event, "event");
            seen.push(f.data["id"].as_str().unwrap().to_owned());
            last = f.id;
        }
        last_id = last;
        // The connection drops here, mid-stream.
    }
    for i in 10..15 {
        let r = c
            .post(
                "/commands?sync=true",
                &body("add", Some(&format!("k{i}")), json!({"amount": 1})),
            )
            .await
            .unwrap();
        expected.push(r.json()["events"][0]["id"].as_str().unwrap().to_owned());
    }
    let mut sse = s.client().await;
    let mut frames = open(&mut sse, "/events/updates", Some(&last_id)).await;
    for _ in 4..15 {
        seen.push(frames.next().await.data["id"].as_str().unwrap().to_owned());
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "an event was repeated: {seen:?}");
    assert_eq!(unique, expected.iter().collect::<HashSet<_>>());
    // The stream is live: the next frame is the next new event, not an old one.
    let r = c
        .post("/commands?sync=true", &body("ping", None, json!({"n": 1})))
        .await
        .unwrap();
    let newest = r.json()["events"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(frames.next().await.data["id"].as_str().unwrap(), newest);
    drop(frames);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_filter_by_action_and_refuse_bad_cursors() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let mut c = s.client().await;
    for i in 0..6 {
        let action = if i % 2 == 0 { "fail" } else { "add" };
        let data = if action == "add" {
            json!({"amount": 2})
        } else {
            json!({})
        };
        c.post("/commands?sync=true", &body(action, None, data))
            .await
            .unwrap();
    }
    let mut sse = s.client().await;
    let mut frames = open(
        &mut sse,
        "/events/updates?from=beginning&action=failed",
        None,
    )
    .await;
    for _ in 0..3 {
        let f = frames.next().await;
        assert_eq!(f.data["action"], "failed");
    }
    drop(frames);
    let mut commands = s.client().await;
    let mut frames = open(
        &mut commands,
        "/commands/updates?from=beginning&action=add",
        None,
    )
    .await;
    for _ in 0..3 {
        let f = frames.next().await;
        assert_eq!(f.event, "command");
        assert_eq!(f.data["action"], "add");
    }
    drop(frames);
    for bad in ["nonsense", "events@1", "commands@0.0", "events@x.0"] {
        let r = c
            .request(
                Method::GET,
                "/events/updates",
                &[("last-event-id", bad)],
                Bytes::new(),
            )
            .await
            .unwrap();
        assert_problem(&r, 400);
    }
    let r = c.get("/events/updates?from=middle").await.unwrap();
    assert_problem(&r, 400);
    s.stop().await;
}
