//! Scale-out on a Kafka broker (tansu): two and then three card-limits
//! instances share the processor's tasks through one consumer group while
//! commands arrive at all of them; one is killed (SIGKILL) mid-load and the
//! others take its tasks over, restoring its stores from the changelogs
//! and finishing what it left half-committed. Every command is decided
//! with exactly the oracle's events, and a query for any card sent to any
//! live instance (forwarded to the card's owner) answers the oracle's
//! balances.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::service::{Load, check_decisions, check_view, free_port, remove_limit, serve_instance};
use kappa_gateway::load::HttpClient;
use kappa_kafka::KafkaLog;
use kappa_kafka::testing::Tansu;
use serde_json::Value;

const COMMANDS: u64 = 900;
const CARDS: u64 = 40;
const CONNECTIONS: u64 = 6;

/// Sends commands over `addrs` until `budget` more are acknowledged.
async fn run_until(load: &Load, addrs: &[SocketAddr], budget: usize) {
    let left = Arc::new(AtomicUsize::new(budget));
    for s in load.send_spread(addrs, Some(left.clone())) {
        s.await.unwrap();
    }
}

/// `/cards/{card}` from the instance at `addr`, as a client does it: a 503
/// (the card's task is moving between instances) is retried after its
/// Retry-After, for up to a minute.
async fn read_card(addr: SocketAddr, card: &str, position: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut client = HttpClient::connect(addr).await.unwrap();
        let v = client
            .get_after(&format!("/cards/{card}"), position, Duration::from_secs(60))
            .await
            .unwrap();
        if v.status == 503 && std::time::Instant::now() < deadline {
            let wait: u64 = v
                .headers
                .get("retry-after")
                .and_then(|h| h.to_str().ok()?.parse().ok())
                .unwrap();
            tokio::time::sleep(Duration::from_secs(wait)).await;
            continue;
        }
        assert_eq!(
            v.status,
            200,
            "{card} at {addr}: {}",
            String::from_utf8_lossy(&v.body)
        );
        return v.json();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_share_the_work_and_survive_one_killed_mid_load() {
    let broker = Tansu::start().unwrap();
    let bootstrap = broker.bootstrap();
    let state = tempfile::tempdir().unwrap();
    let load = Load::new(COMMANDS, CARDS, CONNECTIONS);

    // Two instances.
    let (a, a_addr) = serve_instance(&bootstrap, "a", state.path(), free_port());
    let (mut b, b_addr) = serve_instance(&bootstrap, "b", state.path(), free_port());
    run_until(&load, &[a_addr, b_addr], (COMMANDS / 3) as usize).await;

    // A third joins while the load goes on; then one is killed mid-load.
    let (c, c_addr) = serve_instance(&bootstrap, "c", state.path(), free_port());
    let left = Arc::new(AtomicUsize::new((COMMANDS / 3) as usize));
    let senders = load.send_spread(&[a_addr, b_addr, c_addr], Some(left.clone()));
    // (A sender ends early only by failing: then its join below says why.)
    while left.load(Ordering::Acquire) > 0 && !senders.iter().all(|s| s.is_finished()) {
        tokio::task::yield_now().await;
    }
    b.kill(); // SIGKILL, with commands in flight
    for s in senders {
        s.await.unwrap();
    }
    assert!(load.acked() < COMMANDS as usize);

    // The survivors finish the load (retrying what b never acknowledged).
    let live = [a_addr, c_addr];
    for s in load.send_spread(&live, None) {
        s.await.unwrap();
    }
    assert_eq!(load.acked(), COMMANDS as usize);

    // Each card's last command, sent synchronously to one survivor, is
    // decided after every earlier command of its card; then every survivor
    // answers for every card (forwarding to the owner when it is not it).
    // (A fresh connection per request: one idle while another waits may
    // be closed by the server's idle timeout.)
    let mut views: HashMap<String, Vec<Value>> = HashMap::new();
    for card in 0..CARDS {
        let name = format!("card-{card}");
        let mut sender = HttpClient::connect(live[card as usize % live.len()])
            .await
            .unwrap();
        let r = remove_limit(&mut sender, &name, 60_000).await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        let position = r.json()["position"].as_str().unwrap().to_owned();
        for addr in live {
            let v = read_card(addr, &name, &position).await;
            views.entry(name.clone()).or_default().push(v);
        }
    }
    drop((a, c));

    // The log: every command decided, with exactly the oracle's events
    // (the oracle applies the commands in the log's order, duplicates
    // included: a command b wrote but never acknowledged was sent again).
    let reader = {
        let mut config = broker.config(&state.path().join("checker"));
        config.instance = "checker".to_owned();
        KafkaLog::open(config).unwrap()
    };
    let (seen, oracle) = check_decisions(&reader, &load);
    assert!(seen.iter().all(|s| *s >= 1), "every command is in the log");
    // Every survivor's answer for every card equals the from-scratch computation.
    for (card, answers) in views {
        for v in answers {
            check_view(&oracle, &card, &v);
        }
    }
}
