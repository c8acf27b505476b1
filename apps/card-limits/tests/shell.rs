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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use card_limits::shell;
use common::service::{Load, interrupt, read_all, serve};
use kappa_effects::SearchSink;
use kappa_effects::postgres::TempCluster;
use kappa_effects::testing::{Reply, Webhook};
use kappa_gateway::Envelope;
use kappa_gateway::load::HttpClient;
use kappa_log::{EmbeddedLog, Log};
use serde_json::{Value, json};

const COMMANDS: u64 = 1800;
const CARDS: u64 = 24;
const CONNECTIONS: u64 = 6;

/// How the webhook treats a card's notifications.
fn class(card: &str) -> u64 {
    card.trim_start_matches("card-").parse::<u64>().unwrap() % 4
}

fn script(call: &kappa_effects::testing::Received) -> Reply {
    match class(call.body["card"].as_str().unwrap_or("card-3")) {
        0 => Reply::status(410),
        1 if call.nth <= 2 => Reply::status(503),
        2 if call.nth == 1 => Reply::after(Duration::from_secs(5), 200),
        _ => Reply::status(204),
    }
}

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

/// Sends a sync `remove-limit` per card: once answered, every earlier
/// command of the card is decided (and `card_limits` loses its rows).
async fn decide_everything(addr: std::net::SocketAddr) {
    let mut c = HttpClient::connect(addr).await.unwrap();
    for card in 0..CARDS {
        let card = format!("card-{card}");
        let r = c
            .post(
                "/commands?sync=true&timeout_ms=30000",
                &json!({"action": "remove-limit", "key": card, "data": {"card": card}}),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 201);
    }
    // Cards 0..3 get a limit again, so the table keeps a few rows.
    for card in 0..3 {
        let card = format!("card-{card}");
        let r = c
            .post(
                "/commands?sync=true&timeout_ms=30000",
                &json!({"action": "set-limit", "key": card, "data": {"card": card, "limit": 12_345, "period_days": 9}}),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 201);
    }
}

fn events(log: &dyn Log) -> Vec<Envelope> {
    read_all(log, "events")
        .iter()
        .map(|r| serde_json::from_slice(r.value.as_ref().unwrap()).unwrap())
        .collect()
}

type Rows = BTreeSet<Vec<String>>;

/// The two tables as the events say, recomputed here.
fn expected_tables(events: &[Envelope]) -> (Rows, Rows) {
    let mut limits: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut auths = BTreeSet::new();
    // In log order: one card's events are in one partition, in order.
    for e in events {
        let d = &e.data;
        let card = d["card"].as_str().unwrap_or_default().to_owned();
        match e.action.as_str() {
            "limit-set" => {
                limits.insert(
                    card.clone(),
                    vec![
                        card,
                        d["limit"].to_string(),
                        d["period_days"].to_string(),
                        e.timestamp.to_string(),
                    ],
                );
            }
            "limit-removed" => {
                limits.remove(&card);
            }
            "authorization-approved" | "authorization-declined" if d.get("duplicate").is_none() => {
                auths.insert(vec![
                    card,
                    d["auth_id"].as_str().unwrap().to_owned(),
                    d["amount"].to_string(),
                    d["merchant"].as_str().unwrap().to_owned(),
                    (e.action == "authorization-approved").to_string(),
                    d["spent"].to_string(),
                    d["limit"].to_string(),
                    e.timestamp.to_string(),
                    e.id.to_string(),
                ]);
            }
            _ => {}
        }
    }
    (limits.into_values().collect(), auths)
}

async fn tables(url: &str) -> (Rows, Rows) {
    {
        let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let limits = c
            .query("SELECT card, limit_cents::text, period_days::text, (extract(epoch from set_at) * 1000)::bigint::text FROM card_limits", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| (0..4).map(|i| r.get::<_, String>(i)).collect())
            .collect();
        let auths = c
            .query("SELECT card, auth_id, amount::text, merchant, approved::text, spent::text, coalesce(limit_cents::text, 'null'), (extract(epoch from decided_at) * 1000)::bigint::text, event_id FROM card_authorizations", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| (0..9).map(|i| r.get::<_, String>(i)).collect())
            .collect();
        (limits, auths)
    }
}

/// The index answers every merchant word, card and decision as the events say.
fn check_search(log: Arc<dyn Log>, dir: &Path, events: &[Envelope]) {
    let sink = SearchSink::start(
        log,
        shell::search_config(dir, "events"),
        shell::authorization_doc,
    )
    .unwrap();
    assert!(sink.wait_caught_up(Duration::from_secs(60)).unwrap());
    let decisions: Vec<&Envelope> = events
        .iter()
        .filter(|e| {
            e.action.starts_with("authorization-")
                && e.data.get("merchant").is_some()
                && e.data.get("duplicate").is_none()
        })
        .collect();
    let ids = |q: &str| -> BTreeSet<String> {
        let hits = sink.search(q, 10_000).unwrap();
        assert_eq!(hits.total, hits.hits.len(), "{q}");
        hits.hits.into_iter().map(|h| h.id).collect()
    };
    let id = |e: &Envelope| {
        format!(
            "{}/{}",
            e.data["card"].as_str().unwrap(),
            e.data["auth_id"].as_str().unwrap()
        )
    };
    assert_eq!(
        ids("*"),
        decisions.iter().map(|e| id(e)).collect(),
        "every decision once"
    );
    for word in ["coffee", "books", "fuel", "pharmacy"] {
        let expected: BTreeSet<String> = decisions
            .iter()
            .filter(|e| {
                e.data["merchant"]
                    .as_str()
                    .unwrap()
                    .to_lowercase()
                    .split(' ')
                    .any(|w| w == word)
            })
            .map(|e| id(e))
            .collect();
        assert!(!expected.is_empty(), "{word}");
        assert_eq!(ids(&format!("merchant:{word}")), expected, "{word}");
    }
    let declined: BTreeSet<String> = decisions
        .iter()
        .filter(|e| e.action == "authorization-declined")
        .map(|e| id(e))
        .collect();
    assert!(!declined.is_empty());
    assert_eq!(ids("decision:declined"), declined);
    sink.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_and_repeats_no_outcome_and_the_views_equal_the_log() {
    let pg = TempCluster::start().unwrap();
    let url = pg.url();
    let schema = std::process::Command::new(env!("CARGO_BIN_EXE_card-limits"))
        .args(["postgres-schema", "--postgres", &url])
        .output()
        .unwrap();
    assert!(
        schema.status.success(),
        "{}",
        String::from_utf8_lossy(&schema.stderr)
    );
    assert!(
        String::from_utf8_lossy(&schema.stdout)
            .contains("CREATE TABLE IF NOT EXISTS \"card_authorizations\"")
    );
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
    decide_everything(addr).await;
    settled(addr).await;
    visible_over_http(addr).await;
    interrupt(server);

    let log: Arc<dyn Log> = Arc::new(EmbeddedLog::open(&log_dir).unwrap());
    let all = events(&*log);
    let thresholds: Vec<&Envelope> = all
        .iter()
        .filter(|e| e.action == "limit-threshold-reached")
        .collect();
    let mut outcomes: HashMap<uuid::Uuid, Vec<&Envelope>> = HashMap::new();
    for e in all.iter().filter(|e| e.action.starts_with("notification-")) {
        outcomes.entry(e.parent.unwrap()).or_default().push(e);
    }
    assert!(thresholds.len() >= 20, "{} thresholds", thresholds.len());
    assert_eq!(
        outcomes.len(),
        thresholds.len(),
        "an outcome for every threshold event, for nothing else"
    );
    let calls = hook.calls();
    let mut failed = BTreeSet::new();
    for t in &thresholds {
        let got = &outcomes[&t.id];
        assert_eq!(got.len(), 1, "exactly one outcome for {}: {got:?}", t.id);
        let key = format!("notification:{}", t.id);
        let mine: Vec<_> = calls.iter().filter(|c| c.idempotency_key == key).collect();
        let card = t.data["card"].as_str().unwrap();
        match class(card) {
            0 => {
                assert_eq!(got[0].action, "notification-failed");
                assert_eq!(got[0].data["reason"], "permanent");
                failed.insert(t.id.to_string());
            }
            c => {
                assert_eq!(
                    got[0].action, "notification-delivered",
                    "{card}: {:?}",
                    got[0]
                );
                assert!(
                    mine.iter().any(|m| m.status < 300),
                    "a successful call with the event's key"
                );
                if c == 1 {
                    assert!(
                        mine.iter().filter(|m| m.status == 503).count() >= 2,
                        "retried: {mine:?}"
                    );
                }
            }
        }
        assert_eq!(mine[0].body["notification"], json!(t.id));
    }
    assert!(!failed.is_empty());
    let letters: BTreeSet<String> = read_all(&*log, "notification-dead-letters")
        .iter()
        .map(|r| {
            serde_json::from_slice::<Value>(r.value.as_ref().unwrap()).unwrap()["event"]["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        letters, failed,
        "dead letters are the refused notifications"
    );

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
    check_search(log.clone(), &search_dir, &all);
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
    check_search(log, &search_dir, &all);
}
