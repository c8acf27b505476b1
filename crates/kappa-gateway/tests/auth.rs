//! Authentication over real HTTP: missing, malformed, expired, wrongly
//! signed, wrong-audience and wrong-issuer tokens, unknown and revoked API
//! keys are refused with 401 problem+json and counted, and write nothing;
//! valid JWTs and API keys get in, and the command records who sent it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::{body, config, customer_policy, start_secured, start_with};
use hyper::Method;
use kappa_gateway::GatewayConfig;
use kappa_gateway::auth::jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use kappa_gateway::auth::{ApiKey, Authenticator, JwtKey};
use kappa_gateway::load::{HttpClient, Reply};
use serde_json::{Value, json};

const SECRET: &[u8] = b"a test secret that is long enough for HS256";
const AUDIENCE: &str = "kappa-demo";
const ISSUER: &str = "https://id.example";

fn now() -> i64 {
    kappa_log::now_ms() / 1000
}

fn jwt(alg: Algorithm, secret: &[u8], claims: Value) -> String {
    encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

fn claims(sub: &str) -> Value {
    json!({"sub": sub, "aud": AUDIENCE, "iss": ISSUER, "exp": now() + 600, "roles": ["customer"]})
}

/// `POST path` with `body`, sent with `credentials`.
async fn post_as(c: &mut HttpClient, path: &str, credentials: &str, body: Bytes) -> Reply {
    c.request(Method::POST, path, &[("authorization", credentials)], body)
        .await
        .unwrap()
}

/// Accepts HS256 tokens signed with `SECRET` for `AUDIENCE` from `ISSUER`,
/// and the API key `secret` (`kk_<id>.…`) of `subject`, an operator.
fn authenticator(id: &str, secret: &str, subject: &str) -> Authenticator {
    Authenticator::new()
        .jwt_key(JwtKey::hmac(Algorithm::HS256, SECRET).unwrap())
        .audience(AUDIENCE)
        .issuer(ISSUER)
        .api_key(ApiKey::from_secret(id, secret, subject, &["operator"]))
}

fn with(mut v: Value, field: &str, value: Value) -> Value {
    v[field] = value;
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_valid_credentials_get_in_and_refusals_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let auth = authenticator("ci", "kk_ci.secret-one", "ci-robot").api_key(
        ApiKey::from_hash("old", &ApiKey::hash("kk_old.secret-two"), "old-robot", &[])
            .unwrap()
            .revoked(),
    );
    let s = start_secured(dir.path(), auth, None).await;
    let mut c = s.client().await;
    let before = (s.ends("commands"), s.ends("events"));
    let command = Bytes::from(body("add", Some("acct-1"), json!({"amount": 5})).to_string());
    let bearer = |t: &str| format!("Bearer {t}");
    let refused: Vec<(Option<String>, &str)> = vec![
        (None, "missing"),
        (Some("Basic YWxpY2U6c2VjcmV0".into()), "malformed"),
        (Some("Bearer ".into()), "malformed"),
        (Some(bearer("not-a-jwt")), "malformed"),
        (
            Some(bearer(&jwt(
                Algorithm::HS256,
                SECRET,
                with(claims("alice"), "exp", json!(now() - 600)),
            ))),
            "expired",
        ),
        (
            Some(bearer(&jwt(
                Algorithm::HS256,
                SECRET,
                with(claims("alice"), "nbf", json!(now() + 600)),
            ))),
            "not-yet-valid",
        ),
        (
            Some(bearer(&jwt(
                Algorithm::HS256,
                b"another secret, also long enough!!",
                claims("alice"),
            ))),
            "bad-signature",
        ),
        (
            Some(bearer(&jwt(
                Algorithm::HS256,
                SECRET,
                with(claims("alice"), "aud", json!("another-service")),
            ))),
            "wrong-audience",
        ),
        (
            Some(bearer(&jwt(
                Algorithm::HS256,
                SECRET,
                with(claims("alice"), "iss", json!("https://evil.example")),
            ))),
            "wrong-issuer",
        ),
        (
            Some(bearer(&jwt(Algorithm::HS512, SECRET, claims("alice")))),
            "unknown-key",
        ),
        (
            Some(bearer(&jwt(
                Algorithm::HS256,
                SECRET,
                with(claims("alice"), "sub", json!("")),
            ))),
            "malformed",
        ),
        (Some(bearer("kk_nobody.secret")), "unknown-key"),
        (Some(bearer("kk_ci.wrong-secret")), "unknown-key"),
        (Some(bearer("kk_old.secret-two")), "revoked"),
    ];
    for (header, reason) in &refused {
        let headers: Vec<(&str, &str)> = header
            .iter()
            .map(|h| ("authorization", h.as_str()))
            .collect();
        for (method, path, payload) in [
            (Method::POST, "/commands", command.clone()),
            (Method::GET, "/views/totals/acct-1", Bytes::new()),
            (Method::GET, "/events?limit=1", Bytes::new()),
        ] {
            let r = c.request(method, path, &headers, payload).await.unwrap();
            assert_eq!(
                r.status,
                401,
                "{header:?} on {path}: {}",
                String::from_utf8_lossy(&r.body)
            );
            assert_eq!(r.header("content-type"), Some("application/problem+json"));
            assert!(
                r.header("www-authenticate")
                    .is_some_and(|h| h.starts_with("Bearer"))
            );
            assert_eq!(r.json()["reason"], *reason, "{header:?}");
        }
    }
    assert_eq!(
        (s.ends("commands"), s.ends("events")),
        before,
        "refusals write nothing"
    );
    for path in ["/health", "/ready"] {
        assert_eq!(c.get(path).await.unwrap().status, 200, "{path} is public");
    }

    // Valid credentials get in; the command records who sent it.
    let alice = bearer(&jwt(Algorithm::HS256, SECRET, claims("alice")));
    let robot = bearer("kk_ci.secret-one");
    for (credentials, subject) in [(&alice, "alice"), (&robot, "ci-robot")] {
        let r = c
            .request(
                Method::POST,
                "/commands",
                &[("authorization", credentials), ("idempotency-key", "k-1")],
                command.clone(),
            )
            .await
            .unwrap();
        if subject == "alice" {
            assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
            assert_eq!(r.json()["principal"], subject);
        } else {
            // Another principal cannot replay (and read) alice's idempotent command.
            assert_eq!(r.status, 422, "{}", String::from_utf8_lossy(&r.body));
            let r = post_as(&mut c, "/commands", credentials, command.clone()).await;
            assert_eq!(r.status, 202);
            assert_eq!(r.json()["principal"], subject);
        }
    }
    let r = c
        .get_with("/metrics", &[("authorization", &robot)])
        .await
        .unwrap();
    let metrics = String::from_utf8_lossy(&r.body).into_owned();
    for (reason, n) in [
        ("missing", 3),
        ("expired", 3),
        ("revoked", 3),
        ("unknown-key", 9),
        ("malformed", 12),
    ] {
        assert!(
            metrics.contains(&format!(
                "kappa_auth_denials_total{{reason=\"{reason}\"}} {n}\n"
            )),
            "{reason} {n}:\n{metrics}"
        );
    }
    let stored: Vec<Value> = (0..2)
        .flat_map(|p| {
            let mut out = Vec::new();
            s.log
                .fetch(
                    &[(kappa_log::TopicPartition::new("commands", p), 0)],
                    kappa_log::FetchLimits::default(),
                    &mut out,
                )
                .unwrap();
            out
        })
        .map(|r| serde_json::from_slice(r.value.as_ref().unwrap()).unwrap())
        .collect();
    let mut principals: Vec<&str> = stored
        .iter()
        .map(|v| v["principal"].as_str().unwrap())
        .collect();
    principals.sort();
    assert_eq!(principals, ["alice", "ci-robot"], "the log shows who asked");
    s.stop().await;
}

#[test]
fn keys_from_pem_and_jwks_are_checked() {
    assert!(JwtKey::hmac(Algorithm::HS256, b"short").is_err());
    assert!(JwtKey::hmac(Algorithm::RS256, SECRET).is_err());
    assert!(JwtKey::public_pem(Algorithm::RS256, b"not a pem").is_err());
    assert!(JwtKey::from_jwks("{}").is_err());
    assert!(JwtKey::from_jwks(r#"{"keys": []}"#).is_err());
    assert!(ApiKey::from_hash("x", "abc", "s", &[]).is_err());
    // An HMAC key in a JWKS document, chosen by kid.
    let k = "YSB0ZXN0IHNlY3JldCB0aGF0IGlzIGxvbmcgZW5vdWdoIGZvciBIUzI1Ng";
    let keys = JwtKey::from_jwks(&format!(
        r#"{{"keys": [{{"kty": "oct", "kid": "k1", "alg": "HS256", "k": "{k}"}}]}}"#
    ))
    .unwrap();
    assert_eq!(keys[0].kid.as_deref(), Some("k1"));
    let auth = keys
        .into_iter()
        .fold(Authenticator::new(), Authenticator::jwt_key);
    let bob_with_kid = |kid: &str| {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.into());
        let token = encode(
            &header,
            &json!({"sub": "bob", "exp": now() + 60}),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        auth.authenticate(Some(&format!("Bearer {token}")))
    };
    assert_eq!(bob_with_kid("k1").unwrap().subject, "bob");
    assert_eq!(bob_with_kid("k2").unwrap_err().reason(), "unknown-key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_limits_principals_to_their_actions_and_entities() {
    let dir = tempfile::tempdir().unwrap();
    let auth = authenticator("ops", "kk_ops.secret", "ops-robot");
    let s = start_secured(dir.path(), auth, Some(customer_policy())).await;
    let mut c = s.client().await;
    let alice = format!(
        "Bearer {}",
        jwt(
            Algorithm::HS256,
            SECRET,
            with(claims("alice"), "accounts", json!(["acct-1"]))
        )
    );
    let ops = "Bearer kk_ops.secret".to_owned();
    let send = |key: &str, action: &str| {
        Bytes::from(body(action, Some(key), json!({"amount": 2})).to_string())
    };
    let before = s.ends("commands");
    for (action, key) in [
        ("add", "acct-2"),
        ("ping", "acct-1"),
        ("add", "acct-1%2F..%2Facct-2"),
    ] {
        let r = post_as(&mut c, "/commands", &alice, send(key, action)).await;
        assert_eq!(r.status, 403, "{action} {key}");
        assert_eq!(r.json()["reason"], "forbidden");
    }
    assert_eq!(s.ends("commands"), before, "refused commands write nothing");
    for path in [
        "/views/totals/acct-2",
        "/views/totals/acct-1%2F..%2Facct-2",
        "/views/totals",
        "/events",
        "/events/updates",
        "/commands",
        "/metrics",
        "/docs",
    ] {
        let r = c
            .get_with(path, &[("authorization", &alice)])
            .await
            .unwrap();
        assert_eq!(r.status, 403, "{path}");
    }
    // Her own account, she may.
    let r = post_as(&mut c, "/commands?sync=true", &alice, send("acct-1", "add")).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let position = r.json()["position"].as_str().unwrap().to_owned();
    let r = c
        .get_with(
            &format!("/views/totals/acct-1?min_position={position}&wait_ms=10000"),
            &[("authorization", &alice)],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // The operator may do everything.
    for (path, status) in [
        ("/views/totals/acct-1", 200),
        ("/views/totals/acct-2", 404),
        ("/views/totals", 200),
        ("/events", 200),
        ("/metrics", 200),
        ("/docs", 200),
    ] {
        let r = c.get_with(path, &[("authorization", &ops)]).await.unwrap();
        assert_eq!(r.status, status, "{path}");
    }
    let r = c
        .get_with("/metrics", &[("authorization", &ops)])
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&r.body)
            .contains("kappa_auth_denials_total{reason=\"forbidden\"} 11\n")
    );
    s.stop().await;

    // A policy without an authenticator is refused.
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn kappa_log::Log> = Arc::new(kappa_log::EmbeddedLog::open(dir.path()).unwrap());
    let refused = kappa_gateway::Gateway::builder(
        log,
        GatewayConfig {
            policy: Some(Arc::new(kappa_gateway::auth::Policy::default())),
            ..config()
        },
    )
    .start();
    assert!(refused.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_principal_has_its_own_request_budget() {
    let dir = tempfile::tempdir().unwrap();
    let auth = Authenticator::new()
        .api_key(ApiKey::from_secret("a", "kk_a.first", "first", &[]))
        .api_key(ApiKey::from_secret("b", "kk_b.second", "second", &[]));
    let s = start_with(
        dir.path(),
        GatewayConfig {
            auth: Some(Arc::new(auth)),
            // One request per 100 s: nothing refills during the test.
            rate_limit: Some(kappa_gateway::RateLimit {
                per_second: 0.01,
                burst: 3,
            }),
            ..config()
        },
    )
    .await;
    let mut c = s.client().await;
    let get = async |c: &mut HttpClient, key: &str| {
        c.get_with("/views", &[("authorization", key)])
            .await
            .unwrap()
    };
    for _ in 0..3 {
        assert_eq!(get(&mut c, "Bearer kk_a.first").await.status, 200);
    }
    let r = get(&mut c, "Bearer kk_a.first").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["reason"], "rate-limited");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((90..=100).contains(&retry), "{retry}");
    assert_eq!(
        get(&mut c, "Bearer kk_b.second").await.status,
        200,
        "another principal is not limited"
    );
    assert_eq!(
        c.get("/health").await.unwrap().status,
        200,
        "probes are not limited"
    );
    s.stop().await;
}
