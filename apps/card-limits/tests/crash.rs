//! SIGKILL in the middle of a load run, restart, finish the run (retrying
//! with the same idempotency keys): every command is in the log once, has
//! exactly the oracle's events, and the views equal the oracle's balances.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command as Process, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use common::{Command, Oracle};
use hyper::Method;
use kappa_gateway::Envelope;
use kappa_gateway::load::HttpClient;
use kappa_log::{EmbeddedLog, FetchLimits, Log, TopicPartition};
use serde_json::Value;

const COMMANDS: u64 = 1200;
const CARDS: u64 = 40;
const CONNECTIONS: u64 = 8;

/// Starts the service and waits until it says it is ready; returns it and its address.
fn serve(dir: &Path) -> (Child, SocketAddr) {
    let mut child = Process::new(env!("CARGO_BIN_EXE_card-limits"))
        .args([
            "serve",
            "--http",
            "127.0.0.1:0",
            "--durability",
            "always",
            "--log",
        ])
        .arg(dir)
        .env_remove("KAPPA_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr = first
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http://"))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    (child, addr)
}

fn command(n: u64) -> Command {
    let (action, data) = card_limits::traffic::command(n, CARDS);
    Command { action, data }
}

/// Sends commands `n` (those of this connection) not yet acknowledged, with
/// idempotency key `n`; stops at the first failure (the server died).
async fn send(
    addr: SocketAddr,
    conn: u64,
    acked: Arc<Vec<AtomicUsize>>,
    stop_after: Option<Arc<AtomicUsize>>,
) {
    let Ok(mut c) = HttpClient::connect(addr).await else {
        return;
    };
    let mut n = conn;
    while n < COMMANDS {
        if acked[n as usize].load(Ordering::Acquire) == 0 {
            if stop_after
                .as_ref()
                .is_some_and(|s| s.load(Ordering::Acquire) == 0)
            {
                return;
            }
            let key = n.to_string();
            let body = Bytes::from(command(n).body().to_string());
            match c
                .request(
                    Method::POST,
                    "/commands",
                    &[("idempotency-key", &key)],
                    body,
                )
                .await
            {
                Ok(r) if r.status == 202 => {
                    acked[n as usize].store(1, Ordering::Release);
                    if let Some(s) = &stop_after {
                        let _ = s.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                            v.checked_sub(1)
                        });
                    }
                }
                Ok(r) => panic!(
                    "command {n}: {} {}",
                    r.status,
                    String::from_utf8_lossy(&r.body)
                ),
                Err(_) => return,
            }
        }
        n += CONNECTIONS;
    }
}

fn read_all(log: &dyn Log, topic: &str) -> Vec<kappa_log::Record> {
    let mut out = Vec::new();
    for p in 0..4 {
        let tp = TopicPartition::new(topic, p);
        let end = log.offsets(&tp).unwrap().end;
        let mut at = 0;
        while at < end {
            let mut batch = Vec::new();
            log.fetch(
                &[(tp.clone(), at)],
                FetchLimits {
                    records_max: 10_000,
                    ..Default::default()
                },
                &mut batch,
            )
            .unwrap();
            at = batch.last().unwrap().offset + 1;
            out.extend(batch);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_load_loses_and_repeats_no_decision() {
    let dir = tempfile::tempdir().unwrap();
    let acked: Arc<Vec<AtomicUsize>> =
        Arc::new((0..COMMANDS).map(|_| AtomicUsize::new(0)).collect());

    // First run: killed once about a third of the commands are acknowledged,
    // while the others are in flight.
    let (mut server, addr) = serve(dir.path());
    let budget = Arc::new(AtomicUsize::new((COMMANDS / 3) as usize));
    let senders: Vec<_> = (0..CONNECTIONS)
        .map(|conn| tokio::spawn(send(addr, conn, acked.clone(), Some(budget.clone()))))
        .collect();
    while budget.load(Ordering::Acquire) > 0 {
        tokio::task::yield_now().await;
    }
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    for s in senders {
        s.await.unwrap();
    }
    let first = acked
        .iter()
        .filter(|a| a.load(Ordering::Acquire) == 1)
        .count();
    assert!(
        first >= (COMMANDS / 3) as usize && first < COMMANDS as usize,
        "{first}"
    );

    // Second run: finish, retrying everything not acknowledged.
    let (mut server, addr) = serve(dir.path());
    let senders: Vec<_> = (0..CONNECTIONS)
        .map(|conn| tokio::spawn(send(addr, conn, acked.clone(), None)))
        .collect();
    for s in senders {
        s.await.unwrap();
    }
    assert!(acked.iter().all(|a| a.load(Ordering::Acquire) == 1));
    // Wait until everything written is decided: a sync command per partition
    // is answered after every earlier command of its partition.
    let mut c = HttpClient::connect(addr).await.unwrap();
    let mut views = HashMap::new();
    for card in 0..CARDS {
        let card = format!("card-{card}");
        let r = c
            .post(
                "/commands?sync=true&timeout_ms=30000",
                &serde_json::json!({"action": "remove-limit", "key": card, "data": {"card": card}}),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 201);
        let position = r.json()["position"].as_str().unwrap().to_owned();
        let v = c
            .get(&format!(
                "/cards/{card}?min_position={position}&wait_ms=30000"
            ))
            .await
            .unwrap();
        assert_eq!(v.status, 200);
        views.insert(card, v.json());
    }
    server.kill().unwrap();
    server.wait().unwrap();

    // The log: each command once, each with exactly the oracle's events.
    let log = EmbeddedLog::open(dir.path()).unwrap();
    let mut seen = vec![0; COMMANDS as usize];
    let mut oracle = Oracle::default();
    let mut expected: HashMap<String, Vec<(String, Value, bool)>> = HashMap::new();
    for r in read_all(&log, "commands") {
        let e: Envelope = serde_json::from_slice(r.value.as_ref().unwrap()).unwrap();
        let c = Command {
            action: match e.action.as_str() {
                "set-limit" => "set-limit",
                "remove-limit" => "remove-limit",
                "authorize" => "authorize",
                _ => "settle",
            },
            data: e.data.clone(),
        };
        if let Some(k) = &e.idempotency_key {
            let n: usize = k.parse().unwrap();
            seen[n] += 1;
            assert_eq!(e.data, command(n as u64).data, "command {n} as written");
        }
        expected.insert(e.id.to_string(), oracle.apply(&c));
    }
    assert!(
        seen.iter().all(|s| *s == 1),
        "each command exactly once: {:?}",
        seen.iter()
            .enumerate()
            .filter(|(_, s)| **s != 1)
            .collect::<Vec<_>>()
    );
    let mut actual: HashMap<String, Vec<(String, Value, bool)>> = HashMap::new();
    for r in read_all(&log, "events") {
        let e: Envelope = serde_json::from_slice(r.value.as_ref().unwrap()).unwrap();
        actual
            .entry(e.parent.unwrap().to_string())
            .or_default()
            .push((e.action, e.data, e.error));
    }
    assert_eq!(actual.len(), expected.len(), "every command decided once");
    for (id, events) in &expected {
        assert_eq!(actual.get(id), Some(events), "command {id}");
    }
    // The views equal the from-scratch computation.
    for (card, v) in views {
        let state = &oracle.cards[&card];
        let t = state.latest().unwrap();
        assert_eq!(v["settled"], state.settled(t), "{card}");
        assert_eq!(v["pending"], state.pending(t), "{card}");
    }
}
