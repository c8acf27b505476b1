//! Deleting the service's stores and restarting rebuilds identical views
//! from the log, and decides nothing again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::history;
use kappa_gateway::GatewayConfig;
use kappa_gateway::load::HttpClient;
use kappa_log::{EmbeddedLog, Log, TopicPartition};
use serde_json::Value;
use tokio::sync::oneshot;

fn config() -> GatewayConfig {
    GatewayConfig {
        partitions: 2,
        ..GatewayConfig::default()
    }
}

/// Runs the service on `dir` while `f` talks to it, then stops it.
async fn with_service<T>(dir: &Path, f: impl AsyncFnOnce(&mut HttpClient) -> T) -> T {
    let log: Arc<dyn Log> = Arc::new(EmbeddedLog::open(dir).unwrap());
    let ours = log.clone();
    let service = card_limits::service::start(log, config(), Duration::from_millis(2)).unwrap();
    assert!(
        service.gateway.wait_ready(Duration::from_secs(60)).unwrap(),
        "not ready"
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(listener, service.gateway.router())
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .into_future(),
    );
    let mut c = HttpClient::connect(addr).await.unwrap();
    let out = f(&mut c).await;
    drop(c);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    drop(service.gateway);
    // The router's state holds the views' topology and, with the index,
    // the log: the next open of this directory waits for the last of them.
    let streams = common::service::unique(service.streams).await;
    Arc::try_unwrap(streams).ok().unwrap().close().unwrap();
    drop(common::service::unique(ours).await);
    out
}

/// Everything the views answer, for every card, once the index has
/// processed the records at `min_position`.
async fn views(c: &mut HttpClient, min_position: &str) -> Vec<Value> {
    let r = c
        .get_after("/events?limit=1", min_position, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let mut out = Vec::new();
    for card in 0..20 {
        for path in [
            format!("/cards/card-{card}"),
            format!("/cards/card-{card}/authorizations"),
        ] {
            out.push(c.get(&path).await.unwrap().json());
        }
    }
    out.push(c.get("/events?limit=1000").await.unwrap().json());
    out.push(c.get("/commands?limit=1000").await.unwrap().json());
    out
}

fn ends(dir: &Path) -> Vec<u64> {
    let log = EmbeddedLog::open(dir).unwrap();
    (0..2)
        .flat_map(|p| {
            ["commands", "events"].map(|t| log.offsets(&TopicPartition::new(t, p)).unwrap().end)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_stores_are_rebuilt_identically_without_new_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let before = with_service(dir.path(), async |c: &mut HttpClient| {
        let mut last = std::collections::BTreeMap::new();
        for command in history(11, 20, 600) {
            let r = c
                .post("/commands?sync=true", &command.body())
                .await
                .unwrap();
            assert!(r.status == 201 || r.status == 409);
            let body = r.json();
            let events = body["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["position"].clone());
            for p in std::iter::once(body["position"].clone()).chain(events) {
                let p: kappa_log::Position = p.as_str().unwrap().parse().unwrap();
                let at = last.entry((p.topic.to_string(), p.partition)).or_insert(0);
                *at = p.offset.max(*at);
            }
        }
        let min: Vec<String> = last
            .iter()
            .map(|((t, p), o)| format!("{t}/{p}/{o}"))
            .collect();
        views(c, &min.join(",")).await
    })
    .await;
    let log_ends = ends(dir.path());
    {
        let log = EmbeddedLog::open(dir.path()).unwrap();
        let dropped = card_limits::service::rebuild(&log, &config()).unwrap();
        assert!(dropped > 100, "{dropped}");
    }
    // Ready means restored: no position to wait for.
    let after = with_service(dir.path(), async |c: &mut HttpClient| views(c, "").await).await;
    assert_eq!(after.len(), before.len());
    for (i, (a, b)) in after.iter().zip(&before).enumerate() {
        if a != b {
            let (a, b) = (a.to_string(), b.to_string());
            let at = a
                .bytes()
                .zip(b.bytes())
                .position(|(x, y)| x != y)
                .unwrap_or(0);
            panic!(
                "answer {i} differs at byte {at}: rebuilt {:?} vs {:?}",
                &a[at.saturating_sub(80)..(at + 80).min(a.len())],
                &b[at.saturating_sub(80)..(at + 80).min(b.len())]
            );
        }
    }
    assert_eq!(
        ends(dir.path()),
        log_ends,
        "a rebuild decided commands again"
    );
}
