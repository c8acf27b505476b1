//! What the shell's parts must have done, checked against the log: every
//! threshold event notified once (the webhook script decides which are
//! refused, retried or slow), the PostgreSQL tables and the full-text index
//! equal to a recomputation from the events.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use card_limits::shell;
use kappa_effects::SearchSink;
use kappa_effects::postgres::TempCluster;
use kappa_effects::testing::{Received, Reply};
use kappa_gateway::Envelope;
use kappa_gateway::load::HttpClient;
use kappa_log::Log;
use serde_json::{Value, json};

use super::service::remove_limit;

/// Words of the traffic stream's merchant names (`card_limits::traffic`).
pub const MERCHANT_WORDS: [&str; 4] = ["coffee", "books", "fuel", "pharmacy"];

/// How the webhook treats a card's notifications.
pub fn class(card: &str) -> u64 {
    card.trim_start_matches("card-").parse::<u64>().unwrap() % 4
}

pub fn script(call: &Received) -> Reply {
    match class(call.body["card"].as_str().unwrap_or("card-3")) {
        0 => Reply::status(410),
        1 if call.nth <= 2 => Reply::status(503),
        2 if call.nth == 1 => Reply::after(Duration::from_secs(5), 200),
        _ => Reply::status(204),
    }
}

pub fn events(log: &dyn Log) -> Vec<Envelope> {
    log.read_topic("events")
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice(r.value.as_ref().unwrap()).unwrap())
        .collect()
}

pub type Rows = BTreeSet<Vec<String>>;

/// The two tables as the events say, recomputed here.
pub fn expected_tables(events: &[Envelope]) -> (Rows, Rows) {
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

pub async fn tables(url: &str) -> (Rows, Rows) {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let rows = async |sql: &str| -> Rows {
        c.query(sql, &[])
            .await
            .unwrap()
            .iter()
            .map(|r| (0..r.len()).map(|i| r.get::<_, String>(i)).collect())
            .collect()
    };
    let limits = rows("SELECT card, limit_cents::text, period_days::text, (extract(epoch from set_at) * 1000)::bigint::text FROM card_limits").await;
    let auths = rows("SELECT card, auth_id, amount::text, merchant, approved::text, spent::text, coalesce(limit_cents::text, 'null'), (extract(epoch from decided_at) * 1000)::bigint::text, event_id FROM card_authorizations").await;
    (limits, auths)
}

/// The index holds every decision once and answers each of `words` (in
/// merchant names) and the declined ones as the events say.
pub fn check_search(log: Arc<dyn Log>, dir: &Path, events: &[Envelope], words: &[&str]) {
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
    for word in words {
        let expected: BTreeSet<String> = decisions
            .iter()
            .filter(|e| {
                e.data["merchant"]
                    .as_str()
                    .unwrap()
                    .to_lowercase()
                    .split(' ')
                    .any(|w| w == *word)
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

/// A private PostgreSQL server with the service's tables (made by
/// `card-limits postgres-schema`), and its connection string.
pub fn postgres() -> (TempCluster, String) {
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
    (pg, url)
}

/// Every threshold event in `all` has exactly one outcome, as the webhook
/// script (`script`) dictates, the webhook got each deliverable one under
/// its idempotency key, and the dead letters are the refused ones.
pub fn check_notifications(log: &dyn Log, all: &[Envelope], calls: &[Received]) {
    let thresholds: Vec<&Envelope> = all
        .iter()
        .filter(|e| e.action == "limit-threshold-reached")
        .collect();
    let mut outcomes: HashMap<uuid::Uuid, Vec<&Envelope>> = HashMap::new();
    for e in all.iter().filter(|e| e.action.starts_with("notification-")) {
        outcomes.entry(e.parent.unwrap()).or_default().push(e);
    }
    assert!(thresholds.len() >= 20, "{} thresholds", thresholds.len());
    // What a receiver that deduplicates by key took: each threshold once.
    let delivered: BTreeSet<&str> = calls
        .iter()
        .filter(|c| c.status < 300)
        .map(|c| c.idempotency_key.as_str())
        .collect();
    let expected: BTreeSet<String> = thresholds
        .iter()
        .filter(|t| class(t.data["card"].as_str().unwrap()) != 0)
        .map(|t| format!("notification:{}", t.id))
        .collect();
    assert_eq!(
        delivered,
        expected.iter().map(String::as_str).collect(),
        "each deliverable threshold event reached the webhook under its key, and nothing else did"
    );
    assert_eq!(
        outcomes.len(),
        thresholds.len(),
        "an outcome for every threshold event, for nothing else"
    );
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
    let letters: BTreeSet<String> = log
        .read_topic("notification-dead-letters")
        .unwrap()
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
}

/// Sends a sync `remove-limit` per card: once answered, every earlier
/// command of the card is decided (and `card_limits` loses its rows).
pub async fn decide_everything(addr: SocketAddr, cards: u64) {
    let mut c = HttpClient::connect(addr).await.unwrap();
    for card in 0..cards {
        let r = remove_limit(&mut c, &format!("card-{card}"), 30_000).await;
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
