//! Bad input gets a problem document and writes nothing; fuzzed requests
//! never make the server fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::body::Body;
use axum::http::Request;
use bytes::Bytes;
use common::{Commands, assert_problem, config, fresh, start, start_on};
use http_body_util::BodyExt;
use hyper::Method;
use proptest::prelude::*;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tower::ServiceExt;

/// Method, path, headers, body, expected status.
type Case = (
    Method,
    &'static str,
    Vec<(&'static str, &'static str)>,
    Bytes,
    u16,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_of_bad_request_gets_its_status_and_writes_nothing() {
    let (_dir, s, mut c) = fresh().await;
    let before = s.ends("commands");
    let post = |b: &str| Bytes::from(b.to_owned());
    let cases: Vec<Case> = vec![
        (
            Method::POST,
            "/commands",
            vec![],
            post("{\"action\": \"add\""),
            400,
        ),
        (Method::POST, "/commands", vec![], post("not json"), 400),
        (Method::POST, "/commands", vec![], post(""), 400),
        (Method::POST, "/commands", vec![], post("[1,2]"), 422),
        (
            Method::POST,
            "/commands",
            vec![],
            post("{\"action\": \"add\"}"),
            422,
        ),
        (
            Method::POST,
            "/commands",
            vec![],
            post("{\"action\": \"add\", \"data\": {}, \"extra\": 1}"),
            422,
        ),
        (
            Method::POST,
            "/commands",
            vec![],
            post("{\"action\": \"launch\", \"data\": {}}"),
            422,
        ),
        (
            Method::POST,
            "/commands",
            vec![],
            post("{\"action\": \"add\", \"data\": {\"amount\": 1}, \"key\": \"\"}"),
            422,
        ),
        (
            Method::POST,
            "/commands",
            vec![],
            post("{\"action\": \"add\", \"data\": {\"amount\": 1}, \"key\": \"a\\u0000b\"}"),
            422,
        ),
        (
            Method::POST,
            "/commands",
            vec![],
            Bytes::from(vec![b' '; 5000]),
            413,
        ),
        (
            Method::POST,
            "/commands?sync=maybe",
            vec![],
            post("{\"action\": \"ping\", \"data\": {}}"),
            400,
        ),
        (
            Method::POST,
            "/commands?colour=red",
            vec![],
            post("{\"action\": \"ping\", \"data\": {}}"),
            400,
        ),
        (
            Method::POST,
            "/commands",
            vec![("idempotency-key", "")],
            post("{\"action\": \"ping\", \"data\": {}}"),
            400,
        ),
        (
            Method::POST,
            "/commands",
            vec![("idempotency-key", "a b")],
            post("{\"action\": \"ping\", \"data\": {}}"),
            400,
        ),
        (Method::DELETE, "/commands", vec![], Bytes::new(), 405),
        (Method::PUT, "/events", vec![], Bytes::new(), 405),
        (Method::GET, "/nowhere", vec![], Bytes::new(), 404),
        (
            Method::GET,
            "/commands/not-a-uuid",
            vec![],
            Bytes::new(),
            400,
        ),
        (
            Method::GET,
            "/commands/01890000-0000-7000-8000-000000000000",
            vec![],
            Bytes::new(),
            404,
        ),
        (Method::GET, "/commands?limit=0", vec![], Bytes::new(), 400),
        (
            Method::GET,
            "/commands?limit=100000",
            vec![],
            Bytes::new(),
            400,
        ),
        (
            Method::GET,
            "/commands?offset=-1",
            vec![],
            Bytes::new(),
            400,
        ),
        (
            Method::GET,
            "/events?action=Not_Kebab",
            vec![],
            Bytes::new(),
            400,
        ),
        (
            Method::GET,
            "/views/totals/a?min_position=garbage",
            vec![],
            Bytes::new(),
            400,
        ),
        (
            Method::GET,
            "/views/totals/a?as_of=5",
            vec![],
            Bytes::new(),
            404,
        ),
        (
            Method::GET,
            "/views/totals?prefix=a&from=b&bogus=1",
            vec![],
            Bytes::new(),
            400,
        ),
        // Unknown query parameters are refused on every route alike, on
        // those that take none too.
        (Method::GET, "/views?verbose=1", vec![], Bytes::new(), 400),
        (
            Method::GET,
            "/console/api/info?x=",
            vec![],
            Bytes::new(),
            400,
        ),
    ];
    for (method, path, headers, body, status) in cases {
        let r = c
            .request(method.clone(), path, &headers, body.clone())
            .await
            .unwrap();
        assert_eq!(
            r.status.as_u16(),
            status,
            "{method} {path} {:?}: {}",
            String::from_utf8_lossy(&body),
            String::from_utf8_lossy(&r.body)
        );
        assert_problem(&r, status);
        if status == 413 {
            // The connection may be closed after an oversized body.
            c = s.client().await;
        }
    }
    assert_eq!(
        s.ends("commands"),
        before,
        "a refused request wrote to the log"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_violations_are_all_listed_with_their_pointers() {
    let (_dir, s, mut c) = fresh().await;
    let r = c
        .post(
            "/commands",
            &json!({"action": "add", "data": {"amount": 0, "memo": "x"}}),
        )
        .await
        .unwrap();
    let p = assert_problem(&r, 422);
    let pointers: Vec<&str> = p["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(pointers, ["/data", "/data/amount"], "{p}");
    let r = c
        .post("/commands", &json!({"action": "launch", "data": {}}))
        .await
        .unwrap();
    let p = assert_problem(&r, 422);
    assert_eq!(p["violations"][0]["pointer"], "/action");
    assert!(
        p["violations"][0]["message"]
            .as_str()
            .unwrap()
            .contains("add"),
        "lists known actions: {p}"
    );
    s.stop().await;
}

/// Arbitrary JSON values, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z]{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Request bodies: mostly near-valid commands, some raw bytes.
fn request_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        (
            prop_oneof![
                Just("add".to_owned()),
                Just("ping".to_owned()),
                Just("fail".to_owned()),
                "[a-z-]{0,10}"
            ],
            json_value(),
            proptest::option::of(".{0,8}")
        )
            .prop_map(|(a, d, k)| {
                let mut b = json!({"action": a, "data": d});
                if let Some(k) = k {
                    b["key"] = Value::from(k);
                }
                b.to_string().into_bytes()
            }),
        json_value().prop_map(|v| v.to_string().into_bytes()),
    ]
}

#[test]
fn fuzzed_requests_get_answers_never_failures() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let s = runtime.block_on(start(dir.path()));
    let router = s.gateway.router();
    let mut config = ProptestConfig::with_cases(300);
    config.failure_persistence = None;
    proptest!(config, |(
        body in request_body(),
        path in prop_oneof![Just("/commands".to_owned()), "/[a-z/{}?=&%.-]{0,24}"],
        query in prop_oneof![Just(String::new()), "\\?[a-z_=&0-9%]{0,16}"],
        idem in proptest::option::of("[ -~]{0,12}"),
    )| {
        let before = s.ends("commands");
        let mut request = Request::builder().method("POST").uri(format!("{path}{query}"));
        if let Some(k) = &idem {
            request = request.header("idempotency-key", k.as_str());
        }
        let Ok(request) = request.body(Body::from(body.clone())) else {
            // Not a valid URI: the HTTP layer refuses it before the gateway sees it.
            return Ok(());
        };
        let response = runtime.block_on(router.clone().oneshot(request)).unwrap();
        let status = response.status().as_u16();
        prop_assert!(status < 500, "{} for {:?}", status, String::from_utf8_lossy(&body));
        let bytes = runtime.block_on(response.into_body().collect()).unwrap().to_bytes();
        let written = s.ends("commands").iter().sum::<u64>() - before.iter().sum::<u64>();
        if status == 202 {
            prop_assert_eq!(written, 1);
            let answer: Value = serde_json::from_slice(&bytes).unwrap();
            prop_assert!(answer["position"].is_string());
        } else {
            prop_assert_eq!(written, 0, "{} wrote to the log", status);
            let problem: Value = serde_json::from_slice(&bytes).unwrap();
            prop_assert_eq!(problem["status"].as_u64(), Some(u64::from(status)));
        }
    });
    drop(router);
    runtime.block_on(s.stop());
}

#[test]
fn schema_violation_pointers_point_into_the_data() {
    let mut actions = kappa_gateway::Actions::new();
    actions
        .register(
            "shape",
            "A nested schema",
            json!({
                "type": "object",
                "required": ["a"],
                "properties": {
                    "a": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "integer", "maximum": 10}}}},
                    "b": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5},
                    "c": {"enum": [1, 2, 3]}
                },
                "additionalProperties": {"type": "boolean"}
            }),
        )
        .unwrap();
    proptest!(ProptestConfig { failure_persistence: None, ..ProptestConfig::with_cases(500) }, |(data in json_value())| {
        match actions.validate("shape", &data) {
            Ok(()) => {}
            Err(kappa_gateway::Refusal::Invalid(violations)) => {
                prop_assert!(!violations.is_empty());
                for v in violations {
                    prop_assert!(data.pointer(&v.pointer).is_some(), "{} is not in {}", v.pointer, data);
                    prop_assert!(!v.message.is_empty());
                }
            }
            Err(kappa_gateway::Refusal::UnknownAction) => prop_assert!(false, "the action is registered"),
        }
    });
}

/// The embedded log, except that while `short` is on a commit that
/// appends to the command topic fails as the log's hard floor refuses it:
/// free space fell between the gateway's admission check and its commit.
struct SpaceRunsOut {
    log: kappa_log::EmbeddedLog,
    short: AtomicBool,
}

impl kappa_log::Log for SpaceRunsOut {
    fn admit_writes(&self) -> Result<(), kappa_log::LogError> {
        self.log.admit_writes()
    }
    fn create_topic(&self, spec: &kappa_log::TopicSpec) -> Result<(), kappa_log::LogError> {
        self.log.create_topic(spec)
    }
    fn delete_topic(&self, name: &str) -> Result<(), kappa_log::LogError> {
        self.log.delete_topic(name)
    }
    fn list_topics(&self) -> Result<Vec<kappa_log::TopicSpec>, kappa_log::LogError> {
        self.log.list_topics()
    }
    fn describe_topic(
        &self,
        name: &str,
    ) -> Result<kappa_log::TopicDescription, kappa_log::LogError> {
        self.log.describe_topic(name)
    }
    fn commit(
        &self,
        commit: kappa_log::Commit,
    ) -> Result<kappa_log::CommitReceipt, kappa_log::LogError> {
        if self.short.load(Ordering::SeqCst)
            && commit.appends.iter().any(|a| &*a.topic == "commands")
        {
            return Err(kappa_log::LogError::DiskFull {
                free: 1 << 20,
                floor: 256 << 20,
            });
        }
        self.log.commit(commit)
    }
    fn fetch(
        &self,
        from: &[(kappa_log::TopicPartition, u64)],
        limits: kappa_log::FetchLimits,
        out: &mut Vec<kappa_log::Record>,
    ) -> Result<kappa_log::FetchOutcome, kappa_log::LogError> {
        self.log.fetch(from, limits, out)
    }
    fn offsets(
        &self,
        partition: &kappa_log::TopicPartition,
    ) -> Result<kappa_log::OffsetRange, kappa_log::LogError> {
        self.log.offsets(partition)
    }
    fn offset_for_timestamp(
        &self,
        partition: &kappa_log::TopicPartition,
        timestamp_ms: i64,
    ) -> Result<Option<u64>, kappa_log::LogError> {
        self.log.offset_for_timestamp(partition, timestamp_ms)
    }
    fn group_positions(
        &self,
        group: &str,
    ) -> Result<Vec<(kappa_log::TopicPartition, u64)>, kappa_log::LogError> {
        self.log.group_positions(group)
    }
    fn metadata(&self, key: &[u8]) -> Result<Option<Bytes>, kappa_log::LogError> {
        self.log.metadata(key)
    }
    fn metadata_scan(&self, prefix: &[u8]) -> Result<Vec<(Bytes, Bytes)>, kappa_log::LogError> {
        self.log.metadata_scan(prefix)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_refused_for_space_after_admission_is_answered_507_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(SpaceRunsOut {
        log: kappa_log::EmbeddedLog::open(dir.path()).unwrap(),
        short: AtomicBool::new(false),
    });
    let s = start_on(log.clone(), config()).await;
    let mut c = s.client().await;
    assert_eq!(
        c.command("add", Some("a"), json!({"amount": 1}))
            .await
            .status,
        202
    );
    let before = s.ends("commands");

    log.short.store(true, Ordering::SeqCst);
    let r = c.command("add", Some("a"), json!({"amount": 2})).await;
    let p = assert_problem(&r, 507);
    assert_eq!(r.header("retry-after"), Some("5"), "{p}");
    assert_eq!(s.ends("commands"), before, "a refused command was written");

    // Space is back: the same service takes commands again.
    log.short.store(false, Ordering::SeqCst);
    assert_eq!(
        c.command("add", Some("a"), json!({"amount": 3}))
            .await
            .status,
        202
    );
    // The service's stop waits to hold the log alone.
    drop(log);
    s.stop().await;
}
