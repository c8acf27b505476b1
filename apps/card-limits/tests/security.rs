//! The real binary with a security settings file: credentials are
//! required, a customer reaches only the cards named in their token, an
//! operator reaches everything, revoked API keys are refused, refusals
//! write nothing, and the log records who sent each command. Without
//! settings the service refuses to start unless development mode is asked
//! for, and then only on a loopback address.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::security::{settings, token};
use common::service::{interrupt, serve};
use hyper::Method;
use kappa_gateway::load::HttpClient;
use serde_json::{Value, json};

async fn call(
    c: &mut HttpClient,
    method: Method,
    path: &str,
    auth: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", *a)).collect();
    let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
    let r = c.request(method, path, &headers, body).await.unwrap();
    (
        r.status.as_u16(),
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

fn command(action: &str, card: &str, data: Value) -> Value {
    json!({"action": action, "key": card, "data": data})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_reach_only_their_cards() {
    let dir = tempfile::tempdir().unwrap();
    let file = settings(dir.path());
    let file = file.to_string_lossy().into_owned();
    let (server, addr) = serve(&dir.path().join("log"), &["--security", &file]);
    let mut c = HttpClient::connect(addr).await.unwrap();
    let alice = token("alice", &["customer"], &["card-1"]);
    let ops = "Bearer kk_ops.operator-secret";
    let limit = |card: &str| command("set-limit", card, json!({"card": card, "limit": 10_000}));
    let authorize = |card: &str| {
        command(
            "authorize",
            card,
            json!({"auth_id": "a1", "card": card, "amount": 100, "merchant": "Corner Coffee", "timestamp": 1_780_272_000_000_i64}),
        )
    };

    // Refused: no credentials, a revoked key, another customer's card.
    for (auth, body, status) in [
        (None, limit("card-1"), 401),
        (Some("Bearer kk_old.old-secret"), limit("card-1"), 401),
        (Some(alice.as_str()), limit("card-2"), 403),
        (Some(alice.as_str()), authorize("card-2"), 403),
    ] {
        let (got, problem) = call(&mut c, Method::POST, "/commands", auth, Some(body)).await;
        assert_eq!(got, status, "{problem}");
    }
    for path in [
        "/cards/card-2",
        "/cards/card-2/balance",
        "/cards/card-2/authorizations",
        "/views/cards/card-2",
        "/views/cards",
        "/events",
        "/commands",
        "/metrics",
    ] {
        let (got, _) = call(&mut c, Method::GET, path, Some(&alice), None).await;
        assert_eq!(got, 403, "{path}");
        let (got, _) = call(&mut c, Method::GET, path, None, None).await;
        assert_eq!(got, 401, "{path}");
    }

    // Allowed: her own card.
    let (status, answer) = call(
        &mut c,
        Method::POST,
        "/commands?sync=true",
        Some(&alice),
        Some(limit("card-1")),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["principal"], "alice");
    let position = answer["position"].as_str().unwrap().to_owned();
    let (status, card) = call(
        &mut c,
        Method::GET,
        &format!("/cards/card-1?min_position={position}&wait_ms=10000"),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(status, 200, "{card}");
    assert_eq!(card["limit"], 10_000);

    // The operator sees everything: exactly one command was written.
    let (status, list) = call(
        &mut c,
        Method::GET,
        &format!("/commands?min_position={position}&wait_ms=10000"),
        Some(ops),
        None,
    )
    .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["total"], 1, "refusals wrote nothing: {list}");
    assert_eq!(
        list["items"][0]["principal"], "alice",
        "the log shows who asked"
    );
    let (status, _) = call(&mut c, Method::GET, "/cards/card-1", Some(ops), None).await;
    assert_eq!(status, 200);
    let r = c
        .get_with("/metrics", &[("authorization", ops)])
        .await
        .unwrap();
    let metrics = String::from_utf8_lossy(&r.body).into_owned();
    assert!(
        metrics.contains("kappa_auth_denials_total{reason=\"forbidden\"} 10\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kappa_auth_denials_total{reason=\"revoked\"} 1\n"),
        "{metrics}"
    );
    interrupt(server);
}

#[test]
fn without_settings_only_an_explicit_loopback_development_mode_starts() {
    let dir = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_card-limits"))
            .args(["serve", "--log"])
            .arg(dir.path().join("log"))
            .args(extra)
            .env_remove("CARD_LIMITS_SECURITY")
            .output()
            .unwrap()
    };
    let out = run(&["--http", "127.0.0.1:0", "--demo-rate", "0"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--insecure-no-auth"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["--http", "0.0.0.0:0", "--insecure-no-auth"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("loopback"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"policy": {"rules": []}, "jwt": {"keys": [{"alg": "HS256", "secret_env": "NO_SUCH_VARIABLE_SET"}]}}"#).unwrap();
    let out = run(&[
        "--http",
        "127.0.0.1:0",
        "--security",
        &bad.to_string_lossy(),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("NO_SUCH_VARIABLE_SET"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
