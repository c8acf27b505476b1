//! A generated history sent to a running service over HTTP with
//! `sync=true`: every outcome and the final balances compared with the oracle.

use std::net::SocketAddr;
use std::time::Duration;

use kappa_gateway::load::HttpClient;
use serde_json::{Value, json};

use super::{H, Oracle, history};

/// Sends `commands` commands of the history (seed 7, 40 cards) one at a
/// time to the service at `addr` and checks each answer, then every card's
/// views, against the oracle.
pub async fn check_history(addr: SocketAddr, commands: usize) {
    let mut c = HttpClient::connect(addr).await.unwrap();

    let mut oracle = Oracle::default();
    let mut last_position = std::collections::HashMap::new();
    for (i, command) in history(7, 40, commands).iter().enumerate() {
        let r = c
            .post("/commands?sync=true", &command.body())
            .await
            .unwrap();
        let body = r.json();
        assert!(
            r.status == 201 || r.status == 409,
            "command {i}: {} {body}",
            r.status
        );
        let got: Vec<(String, Value, bool)> = body["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["action"].as_str().unwrap().to_owned(),
                    e["data"].clone(),
                    e["error"].as_bool().unwrap(),
                )
            })
            .collect();
        let expected = oracle.apply(command);
        assert_eq!(got, expected, "command {i}: {command:?}");
        assert_eq!(
            r.status == 409,
            expected.iter().any(|(_, _, e)| *e),
            "command {i}"
        );
        last_position.insert(
            command.card().to_owned(),
            body["position"].as_str().unwrap().to_owned(),
        );
    }
    for (card, state) in &oracle.cards {
        let min = &last_position[card];
        let r = c
            .get_after(&format!("/cards/{card}"), min, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let v = r.json();
        let t = state.latest();
        let (settled, pending) = t.map_or((0, 0), |t| (state.settled(t), state.pending(t)));
        assert_eq!(v["as_of"], json!(t), "{card}");
        assert_eq!(
            (
                v["settled"].as_i64().unwrap(),
                v["pending"].as_i64().unwrap()
            ),
            (settled, pending),
            "{card}: {v}"
        );
        assert_eq!(v["spent"], settled + pending);
        assert_eq!(v["limit"], json!(state.limit));
        assert_eq!(
            v["available"],
            json!(state.limit.map(|l| l - settled - pending))
        );
        assert_eq!(v["period_days"], state.period());
        // The balance at other times, from the same panes.
        if let Some(t) = t {
            for back in [0, 3, 12, 45] {
                let at = t - back * H;
                let b = c
                    .get(&format!("/cards/{card}/balance?at={at}"))
                    .await
                    .unwrap()
                    .json();
                assert_eq!(b["settled"], state.settled(at), "{card} at {at}");
                assert_eq!(b["pending"], state.pending(at), "{card} at {at}");
            }
        }
        if let Some(t) = t {
            let r = c
                .get(&format!("/cards/{card}/balance?at={}", t - 401 * H))
                .await
                .unwrap();
            assert_eq!(r.status, 404, "older than the kept history");
            assert!(
                r.json()["detail"]
                    .as_str()
                    .unwrap()
                    .contains("no longer kept"),
                "{}",
                r.json()
            );
        }
        let pending: Vec<String> = c
            .get(&format!("/cards/{card}/authorizations?status=pending"))
            .await
            .unwrap()
            .json()["authorizations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["auth_id"].as_str().unwrap().to_owned())
            .collect();
        let mut open = state.open_holds();
        open.sort();
        let mut pending_sorted = pending.clone();
        pending_sorted.sort();
        assert_eq!(pending_sorted, open, "{card}");
    }
    // Bad input is the gateway's problem documents; reads refuse bad ids.
    let r = c.post("/commands", &json!({"action": "authorize", "key": "c", "data": {"auth_id": "a b", "card": "c", "amount": 0, "merchant": "m", "timestamp": 1}})).await.unwrap();
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["violations"].as_array().unwrap().len(),
        2,
        "{}",
        r.json()
    );
    assert_eq!(c.get("/cards/no%20such").await.unwrap().status, 400);
    assert_eq!(c.get("/cards/card-never-seen").await.unwrap().status, 404);
    assert_eq!(
        c.get("/cards/card-1/authorizations?status=lost")
            .await
            .unwrap()
            .status,
        400
    );
    assert_eq!(c.get("/cards/card-1/balance").await.unwrap().status, 400);
}
