//! Live streams over real HTTP: resumable from the exact position.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;

use common::sse::{first_frames, open};
use common::{Commands, add_or_fail, assert_problem, fresh};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_stream_loses_nothing_and_repeats_nothing() {
    let (_dir, s, mut c) = fresh().await;
    let mut expected = Vec::new();
    for i in 0..10 {
        let r = c
            .sync("add", Some(&format!("k{i}")), json!({"amount": 1}))
            .await;
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
            .sync("add", Some(&format!("k{i}")), json!({"amount": 1}))
            .await;
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
    let r = c.sync("ping", None, json!({"n": 1})).await;
    let newest = r.json()["events"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(frames.next().await.data["id"].as_str().unwrap(), newest);
    drop(frames);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_filter_by_action_and_refuse_bad_cursors() {
    let (_dir, s, mut c) = fresh().await;
    for i in 0..6 {
        let (action, data) = add_or_fail(i % 2 == 0, 2);
        c.sync(action, None, data).await;
    }
    let failed = "/events/updates?from=beginning&action=failed";
    for f in first_frames(s.client().await, failed, 3).await {
        assert_eq!(f.data["action"], "failed");
    }
    let added = "/commands/updates?from=beginning&action=add";
    for f in first_frames(s.client().await, added, 3).await {
        assert_eq!(f.event, "command");
        assert_eq!(f.data["action"], "add");
    }
    for bad in ["nonsense", "events@1", "commands@0.0", "events@x.0"] {
        let r = c
            .get_with("/events/updates", &[("last-event-id", bad)])
            .await
            .unwrap();
        assert_problem(&r, 400);
    }
    let r = c.get("/events/updates?from=middle").await.unwrap();
    assert_problem(&r, 400);
    s.stop().await;
}
