//! Problem types: the problems a client can act on carry a `type` URI
//! naming what happened, every such URI resolves on the service (to the
//! type's title, status and what to do), and anyone may read them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::{Commands, assert_problem, body, fresh, start_secured};
use hyper::Method;
use kappa_gateway::auth::{ApiKey, Authenticator};
use kappa_gateway::load::{HttpClient, Reply};
use serde_json::{Value, json};

/// The problem's type, checked to resolve on the service to a page with
/// the problem's own title and status.
async fn resolved_type(c: &mut HttpClient, problem: &Value) -> String {
    let uri = problem["type"].as_str().unwrap().to_owned();
    assert!(uri.starts_with("/problems/"), "a typed problem: {problem}");
    let page = c.get(&uri).await.unwrap();
    assert_eq!(page.status, 200, "{uri} resolves");
    let page = page.json();
    assert_eq!(page["type"], uri);
    assert_eq!(page["title"], problem["title"], "{uri}");
    assert_eq!(page["status"], problem["status"], "{uri}");
    assert!(page["description"].as_str().unwrap().len() > 20, "{page}");
    uri
}

async fn post(c: &mut HttpClient, path: &str, headers: &[(&str, &str)], body: &Value) -> Reply {
    c.request(Method::POST, path, headers, Bytes::from(body.to_string()))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn problems_a_client_can_act_on_carry_a_type_that_resolves() {
    let (_dir, s, mut c) = fresh().await;
    let invalid = c.command("add", Some("k"), json!({"amount": -5})).await;
    let p = assert_problem(&invalid, 422);
    assert_eq!(resolved_type(&mut c, &p).await, "/problems/invalid-command");
    let unknown = c.command("no-such-action", None, json!({})).await;
    let p = assert_problem(&unknown, 422);
    assert_eq!(resolved_type(&mut c, &p).await, "/problems/invalid-command");

    // Nobody answers `ignore`: the wait ends, the command stays written.
    let timed_out = c
        .post(
            "/commands?sync=true&timeout_ms=50",
            &body("ignore", Some("k"), json!({})),
        )
        .await
        .unwrap();
    let p = assert_problem(&timed_out, 504);
    assert_eq!(resolved_type(&mut c, &p).await, "/problems/outcome-timeout");

    let first = body("add", Some("k"), json!({"amount": 1}));
    let key = [("idempotency-key", "same-key")];
    assert_eq!(post(&mut c, "/commands", &key, &first).await.status, 202);
    let other = body("add", Some("k"), json!({"amount": 2}));
    let reused = post(&mut c, "/commands", &key, &other).await;
    let p = assert_problem(&reused, 422);
    assert_eq!(
        resolved_type(&mut c, &p).await,
        "/problems/idempotency-key-reused"
    );

    let ends = s.ends("commands");
    let far = format!("commands/0/{}", ends[0] + 1000);
    let not_written = c
        .get(&format!("/views/totals/k?min_position={far}"))
        .await
        .unwrap();
    let p = assert_problem(&not_written, 404);
    assert_eq!(
        resolved_type(&mut c, &p).await,
        "/problems/position-not-written"
    );

    // A plain 404 says no more than its status.
    let missing = c.get("/views/no-such-view/k").await.unwrap();
    assert_eq!(assert_problem(&missing, 404)["type"], "about:blank");

    // Every listed type resolves, and nothing else does.
    let listed = c.get("/problems").await.unwrap().json();
    let types = listed["types"].as_array().unwrap();
    assert!(types.len() >= 10, "{listed}");
    for t in types {
        let page = c.get(t["type"].as_str().unwrap()).await.unwrap();
        assert_eq!(&page.json(), t);
    }
    assert_problem(&c.get("/problems/no-such-type").await.unwrap(), 404);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anyone_may_read_the_types_of_the_problems_they_get() {
    let dir = tempfile::tempdir().unwrap();
    let auth = Authenticator::new().api_key(ApiKey::from_secret(
        "ops",
        "kk_ops.secret",
        "ops",
        &["operator"],
    ));
    let s = start_secured(dir.path(), auth, None).await;
    let mut c = s.client().await;
    let refused = c.command("add", Some("k"), json!({"amount": 1})).await;
    let p = assert_problem(&refused, 401);
    assert_eq!(resolved_type(&mut c, &p).await, "/problems/unauthenticated");
    assert_eq!(c.get("/problems").await.unwrap().status, 200);
    s.stop().await;
}
