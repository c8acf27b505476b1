//! SIGKILL in the middle of a load run, restart, finish the run (retrying
//! with the same idempotency keys): every command is in the log once, has
//! exactly the oracle's events, and the views equal the oracle's balances.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::service::{Load, check_decisions, check_view, remove_limit, serve};
use kappa_gateway::load::HttpClient;
use kappa_log::EmbeddedLog;

const COMMANDS: u64 = 1200;
const CARDS: u64 = 40;
const CONNECTIONS: u64 = 8;
/// How long a read waits for the last command of its card.
const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_load_loses_and_repeats_no_decision() {
    let dir = tempfile::tempdir().unwrap();
    let load = Load::new(COMMANDS, CARDS, CONNECTIONS);

    // First run: killed once about a third of the commands are acknowledged,
    // while the others are in flight.
    let (server, addr) = serve(dir.path(), &[]);
    load.run_and_kill(server, addr, (COMMANDS / 3) as usize)
        .await;
    let first = load.acked();
    assert!(
        first >= (COMMANDS / 3) as usize && first < COMMANDS as usize,
        "{first}"
    );

    // Second run: finish, retrying everything not acknowledged.
    let (mut server, addr) = serve(dir.path(), &[]);
    load.finish(addr).await;
    // Wait until everything written is decided: a sync command per partition
    // is answered after every earlier command of its partition.
    let mut c = HttpClient::connect(addr).await.unwrap();
    let mut views = HashMap::new();
    for card in 0..CARDS {
        let card = format!("card-{card}");
        let r = remove_limit(&mut c, &card, 30_000).await;
        assert_eq!(r.status, 201);
        let position = r.json()["position"].as_str().unwrap().to_owned();
        let v = c
            .get_after(&format!("/cards/{card}"), &position, WAIT)
            .await
            .unwrap();
        assert_eq!(v.status, 200);
        views.insert(card, v.json());
    }
    server.kill();

    // The log: each command once, each with exactly the oracle's events.
    let log = EmbeddedLog::open(dir.path()).unwrap();
    let (seen, oracle) = check_decisions(&log, &load);
    assert!(
        seen.iter().all(|s| *s == 1),
        "each command exactly once: {:?}",
        seen.iter()
            .enumerate()
            .filter(|(_, s)| **s != 1)
            .collect::<Vec<_>>()
    );
    // The views equal the from-scratch computation.
    for (card, v) in views {
        check_view(&oracle, &card, &v);
    }
}
