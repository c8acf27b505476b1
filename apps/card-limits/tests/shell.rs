//! The imperative shell of the real service under SIGKILL: threshold
//! notifications to a webhook that refuses, fails and hangs for a while,
//! PostgreSQL tables, and the full-text index. The service is killed twice
//! mid-load (with notifications in flight and sink batches open), then
//! finishes. Every threshold event has exactly one outcome, the dead
//! letters are the refused ones, the tables equal a recomputation from the
//! log (also after `card-limits rebuild`), and the index answers as the
//! log says (after the crashes, and rebuilt).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::service::{Load, interrupt, serve};
use common::views::{
    MERCHANT_WORDS, check_notifications, check_search, decide_everything, events, expected_tables,
    postgres, script, tables,
};
use kappa_effects::testing::Webhook;
use kappa_gateway::load::HttpClient;
use kappa_log::{EmbeddedLog, Log};
use serde_json::json;

const COMMANDS: u64 = 1800;
const CARDS: u64 = 24;
const CONNECTIONS: u64 = 6;

/// Waits until the notifier and the sinks have nothing left to do, as the
/// service's `/metrics` reports.
async fn settled(addr: std::net::SocketAddr) {
    let mut c = HttpClient::connect(addr).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let text = String::from_utf8(c.get("/metrics").await.unwrap().body.to_vec()).unwrap();
        let values = |prefix: &str| -> Vec<f64> {
            text.lines()
                .filter(|l| l.starts_with(prefix))
                .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
                .collect()
        };
        let lags: Vec<f64> = [
            "kappa_effects_lag_records",
            "kappa_sink_lag_records",
            "kappa_effects_in_flight",
        ]
        .iter()
        .flat_map(|p| values(p))
        .collect();
        // 4 partitions for the notifier and each of 3 sinks, plus in-flight.
        assert_eq!(lags.len(), 17, "{text}");
        if lags.iter().all(|v| *v == 0.0) {
            return;
        }
        assert!(Instant::now() < deadline, "effects not done: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Outcomes show in the gateway's event history and figures, and the
/// index answers at `/search`.
async fn visible_over_http(addr: std::net::SocketAddr) {
    let mut c = HttpClient::connect(addr).await.unwrap();
    let r = c
        .get("/events?action=notification-failed&limit=1")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let outcome = r.json()["items"][0].clone();
    assert_eq!(outcome["data"]["reason"], "permanent", "{outcome}");
    let parent = outcome["parent"].as_str().unwrap();
    let r = c.get(&format!("/events/{parent}")).await.unwrap();
    assert_eq!(r.json()["action"], "limit-threshold-reached");
    assert_eq!(
        r.json()["events"],
        json!([outcome["id"]]),
        "the threshold event lists its outcome"
    );
    let metrics = String::from_utf8(c.get("/metrics").await.unwrap().body.to_vec()).unwrap();
    for family in [
        "kappa_effects_delivered_total{runner=\"notification\"}",
        "kappa_effects_retries_total{runner=\"notification\"}",
        "kappa_effects_circuit_state{runner=\"notification\"",
        "kappa_sink_records_total{sink=\"card-limits-authorizations\",kind=\"postgres\"}",
    ] {
        assert!(metrics.contains(family), "{family} in\n{metrics}");
    }
    let r = c
        .get("/search/authorizations?q=merchant:coffee%20AND%20decision:approved&limit=5")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let body = r.json();
    assert!(body["total"].as_u64().unwrap() > 5, "{body}");
    assert_eq!(body["hits"].as_array().unwrap().len(), 5);
    for hit in body["hits"].as_array().unwrap() {
        assert!(
            hit["fields"]["merchant"]
                .as_str()
                .unwrap()
                .contains("Coffee"),
            "{hit}"
        );
        assert_eq!(hit["fields"]["decision"], "approved");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_and_repeats_no_outcome_and_the_views_equal_the_log() {
    let (_pg, url) = postgres();
    let hook = Webhook::start(script).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (log_dir, search_dir) = (dir.path().join("log"), dir.path().join("search"));
    let notify = hook.url("notify");
    let search = search_dir.to_string_lossy().into_owned();
    let args = [
        "--notify-url",
        &notify,
        "--notify-timeout",
        "300ms",
        "--postgres",
        &url,
        "--search-dir",
        &search,
    ];
    let load = Load::new(COMMANDS, CARDS, CONNECTIONS);

    for round in 1..=2 {
        let (server, addr) = serve(&log_dir, &args);
        load.run_and_kill(server, addr, (COMMANDS / 3) as usize)
            .await;
        assert!(load.acked() >= round * (COMMANDS / 3) as usize);
    }
    let (server, addr) = serve(&log_dir, &args);
    load.finish(addr).await;
    decide_everything(addr, CARDS).await;
    settled(addr).await;
    visible_over_http(addr).await;
    interrupt(server);

    let log: Arc<dyn Log> = Arc::new(EmbeddedLog::open(&log_dir).unwrap());
    let all = events(&*log);
    check_notifications(&*log, &all, &hook.calls());

    let expected = expected_tables(&all);
    assert!(
        expected.0.len() == 3 && expected.1.len() > 500,
        "{} {}",
        expected.0.len(),
        expected.1.len()
    );
    assert_eq!(
        tables(&url).await,
        expected,
        "the tables equal the log after the crashes"
    );
    check_search(log.clone(), &search_dir, &all, &MERCHANT_WORDS);
    drop(log);

    // Rebuilt from the log: the same tables and index.
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_card-limits"))
        .args([
            "rebuild",
            "--postgres",
            &url,
            "--search-dir",
            &search,
            "--log",
        ])
        .arg(&log_dir)
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        tables(&url).await.1.is_empty(),
        "rebuild empties the tables"
    );
    let (server, addr) = serve(&log_dir, &args);
    settled(addr).await;
    interrupt(server);
    let log: Arc<dyn Log> = Arc::new(EmbeddedLog::open(&log_dir).unwrap());
    let again = events(&*log);
    assert_eq!(again.len(), all.len(), "a rebuild writes no event");
    assert_eq!(
        tables(&url).await,
        expected,
        "the tables equal the log after a rebuild"
    );
    check_search(log, &search_dir, &all, &MERCHANT_WORDS);
}
