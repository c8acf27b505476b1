//! The API over gRPC, served beside HTTP on the same address: the same
//! commands give the same events, live streams resume exactly, refused
//! calls get gRPC's codes and write nothing, health and reflection answer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;

use common::{Commands, customer_policy, fresh, start_secured};
use futures_util::StreamExt as _;
use kappa_gateway::auth::jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use kappa_gateway::auth::{ApiKey, Authenticator, JwtKey};
use kappa_gateway::grpc::PROBLEM_METADATA;
use kappa_gateway::grpc::proto::gateway_client::GatewayClient;
use kappa_gateway::grpc::proto::{
    CommandStatus, GetCommandRequest, GetViewRequest, ListViewsRequest, Record, ScanViewRequest,
    SendCommandRequest, SendCommandResponse, StreamRequest,
};
use serde_json::{Value, json};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

async fn grpc(addr: std::net::SocketAddr) -> GatewayClient<Channel> {
    GatewayClient::connect(format!("http://{addr}"))
        .await
        .expect("connect over HTTP/2")
}

fn command(action: &str, key: &str, data: Value, wait: bool) -> SendCommandRequest {
    SendCommandRequest {
        action: action.to_owned(),
        data_json: data.to_string(),
        key: Some(key.to_owned()),
        wait,
        ..Default::default()
    }
}

async fn send(c: &mut GatewayClient<Channel>, r: SendCommandRequest) -> SendCommandResponse {
    c.send_command(r)
        .await
        .expect("send the command")
        .into_inner()
}

/// An event as both faces describe it, without what differs by nature
/// between two commands (ids, times, positions).
fn essence(action: &str, data: &Value, key: Option<&str>, error: bool) -> Value {
    json!({"action": action, "data": data, "key": key, "error": error})
}

fn essence_of_record(r: &Record) -> Value {
    let data: Value = serde_json::from_str(&r.data_json).unwrap();
    essence(&r.action, &data, r.key.as_deref(), r.error)
}

fn essence_of_json(e: &Value) -> Value {
    essence(
        e["action"].as_str().unwrap(),
        &e["data"],
        e["key"].as_str(),
        e["error"].as_bool().unwrap(),
    )
}

/// The problem a refusal carries, as the HTTP API would answer it.
fn problem(status: &Status) -> Value {
    let bytes = status
        .metadata()
        .get_bin(PROBLEM_METADATA)
        .expect("the problem travels with the status")
        .to_bytes()
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_command_gives_the_same_events_over_grpc_and_http() {
    let (_dir, s, mut http) = fresh().await;
    let mut c = grpc(s.addr).await;
    for (action, data) in [
        ("add", json!({"amount": 7})),
        ("add", json!({"amount": 3})),
        ("fail", json!({})),
    ] {
        let over_http = http.sync(action, Some("over-http"), data.clone()).await;
        let over_http = over_http.json();
        let over_grpc = send(&mut c, command(action, "over-grpc", data, true)).await;
        let strip_key = |mut v: Value| {
            v["key"] = Value::Null;
            v
        };
        let from_http: Vec<Value> = over_http["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| strip_key(essence_of_json(e)))
            .collect();
        let from_grpc: Vec<Value> = over_grpc
            .events
            .iter()
            .map(|e| strip_key(essence_of_record(e)))
            .collect();
        assert!(!from_grpc.is_empty(), "{action}: the outcome came");
        assert_eq!(from_grpc, from_http, "{action}");
        // Each event is its command's, under the command's key.
        let command = over_grpc.command.as_ref().unwrap();
        for e in &over_grpc.events {
            assert_eq!(e.parent.as_deref(), Some(command.id.as_str()));
            assert_eq!(e.key.as_deref(), Some("over-grpc"));
        }
        let expected = if action == "fail" {
            CommandStatus::Failed
        } else {
            CommandStatus::Succeeded
        };
        assert_eq!(over_grpc.status(), expected, "{action}");
        // gRPC's record of the command is what HTTP reads back by id.
        let by_http = http
            .get(&format!("/commands/{}", command.id))
            .await
            .unwrap();
        let by_http = by_http.json();
        assert_eq!(by_http["position"], command.position);
        assert_eq!(
            by_http["data"],
            serde_json::from_str::<Value>(&command.data_json).unwrap()
        );
        assert_eq!(
            by_http["status"],
            if action == "fail" {
                "failed"
            } else {
                "succeeded"
            }
        );
        let by_grpc = c
            .get_command(GetCommandRequest {
                id: command.id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(by_grpc.status(), expected);
        assert_eq!(by_grpc.command.as_ref(), Some(command));
        assert_eq!(
            Value::from(by_grpc.event_ids.clone()),
            by_http["events"],
            "the same outcome events"
        );
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_live_stream_loses_and_repeats_nothing() {
    let (_dir, s, _http) = fresh().await;
    let mut c = grpc(s.addr).await;
    let mut written = Vec::new();
    for i in 0..10 {
        let r = send(
            &mut c,
            command("add", &format!("k{}", i % 4), json!({"amount": 1}), false),
        )
        .await;
        assert_eq!(r.status(), CommandStatus::Pending);
        written.push(r.command.unwrap().id);
    }
    let from_beginning = StreamRequest {
        from_beginning: true,
        ..Default::default()
    };
    let mut stream = c
        .stream_commands(from_beginning)
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    let mut cursor = String::new();
    for _ in 0..4 {
        let m = stream.next().await.expect("a record").unwrap();
        seen.push(m.record.unwrap().id);
        cursor = m.cursor;
    }
    drop(stream);
    for i in 10..20 {
        let r = send(
            &mut c,
            command("add", &format!("k{}", i % 4), json!({"amount": 1}), false),
        )
        .await;
        written.push(r.command.unwrap().id);
    }
    let resumed = StreamRequest {
        cursor: Some(cursor),
        ..Default::default()
    };
    let mut stream = c.stream_commands(resumed).await.unwrap().into_inner();
    while seen.len() < written.len() {
        let m = stream.next().await.expect("a record").unwrap();
        seen.push(m.record.unwrap().id);
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no record repeats: {seen:?}");
    assert_eq!(
        unique,
        written.iter().collect::<HashSet<_>>(),
        "every record written, and nothing else"
    );
    // The stream is at the end: the next record is the next one written.
    let next = send(&mut c, command("add", "k0", json!({"amount": 1}), false)).await;
    let m = stream.next().await.expect("a record").unwrap();
    assert_eq!(m.record.unwrap().id, next.command.unwrap().id);

    // A cursor this service did not give is refused.
    for (cursor, code) in [
        ("not a cursor", Code::InvalidArgument),
        ("commands@999999.999999", Code::NotFound),
    ] {
        let r = c
            .stream_commands(StreamRequest {
                cursor: Some(cursor.to_owned()),
                ..Default::default()
            })
            .await;
        match r {
            Err(status) => assert_eq!(status.code(), code, "{cursor}: {status:?}"),
            Ok(_) => panic!("{cursor} was accepted"),
        }
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_invalid_argument_and_writes_nothing() {
    let (_dir, s, _http) = fresh().await;
    let mut c = grpc(s.addr).await;
    let before = s.ends("commands");
    let not_json = SendCommandRequest {
        data_json: "{amount: 1".to_owned(),
        ..command("add", "k", json!({}), false)
    };
    let bad_idempotency_key = SendCommandRequest {
        idempotency_key: Some("has space".to_owned()),
        ..command("add", "k", json!({"amount": 1}), false)
    };
    for (what, r) in [
        (
            "unknown action",
            command("no-such-action", "k", json!({}), false),
        ),
        ("data not JSON", not_json),
        (
            "data against the schema",
            command("add", "k", json!({"amount": -1}), true),
        ),
        (
            "a control character in the key",
            command("add", "k\u{7}", json!({"amount": 1}), false),
        ),
        ("a malformed idempotency key", bad_idempotency_key),
    ] {
        let status = c.send_command(r).await.expect_err(what);
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert!(!status.message().is_empty(), "{what}");
        let p = problem(&status);
        assert!(
            p["status"] == 400 || p["status"] == 422,
            "{what}: the HTTP API's answer: {p}"
        );
    }
    let status = c
        .send_command(command("add", "k", json!({"amount": 0}), false))
        .await
        .unwrap_err();
    assert_eq!(problem(&status)["violations"][0]["pointer"], "/data/amount");
    assert_eq!(s.ends("commands"), before, "refused commands write nothing");

    let get = |id: &str| GetCommandRequest { id: id.to_owned() };
    let status = c.get_command(get("not-a-uuid")).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = c
        .get_command(get("0192e4a0-0000-7000-8000-000000000000"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let view = |view: &str, key: &str| GetViewRequest {
        view: view.to_owned(),
        key: key.to_owned(),
        ..Default::default()
    };
    let status = c.get_view(view("no-such-view", "k")).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = c
        .get_view(GetViewRequest {
            min_position: Some("commands/0/not-an-offset".to_owned()),
            ..view("totals", "k")
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_and_idempotent_retries_answer_as_over_http() {
    let (_dir, s, mut http) = fresh().await;
    let mut c = grpc(s.addr).await;
    let first = SendCommandRequest {
        idempotency_key: Some("retry-1".to_owned()),
        ..command("add", "acct-9", json!({"amount": 40}), false)
    };
    let sent = send(&mut c, first.clone()).await;
    assert!(!sent.replayed);
    let ends = s.ends("commands");
    let again = send(&mut c, first).await;
    assert!(again.replayed, "the retry finds the first command");
    assert_eq!(again.command, sent.command);
    assert_eq!(s.ends("commands"), ends, "a retry writes nothing");

    // Read-your-writes: the view waits for the command's position.
    let position = sent.command.unwrap().position;
    let read = c
        .get_view(GetViewRequest {
            view: "totals".to_owned(),
            key: "acct-9".to_owned(),
            min_position: Some(position.clone()),
            wait_ms: Some(10_000),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let over_http = http
        .get(&format!(
            "/views/totals/acct-9?min_position={position}&wait_ms=10000"
        ))
        .await
        .unwrap()
        .json();
    assert_eq!(serde_json::from_str::<Value>(&read.value_json).unwrap(), 40);
    assert_eq!(
        serde_json::from_str::<Value>(&read.value_json).unwrap(),
        over_http["value"]
    );
    assert_eq!(
        serde_json::from_str::<Value>(&read.key_json).unwrap(),
        over_http["key"]
    );
    assert_eq!(read.position, over_http["position"].as_str().unwrap());

    // A scan paged over gRPC is the scan HTTP answers in one page.
    for n in 1..=5 {
        send(
            &mut c,
            command("add", &format!("scan-{n}"), json!({"amount": n}), true),
        )
        .await;
    }
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = c
            .scan_view(ScanViewRequest {
                view: "totals".to_owned(),
                prefix: Some("scan-".to_owned()),
                after: after.take(),
                limit: Some(2),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.entries.len() <= 2);
        for e in page.entries {
            let key: Value = serde_json::from_str(&e.key_json).unwrap();
            let value: Value = serde_json::from_str(&e.value_json).unwrap();
            paged.push(json!({"key": key, "value": value}));
        }
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let whole = http.get("/views/totals?prefix=scan-").await.unwrap().json();
    assert_eq!(Value::from(paged), whole["entries"]);
    assert_eq!(whole["entries"].as_array().unwrap().len(), 5);

    let views = c
        .list_views(ListViewsRequest {})
        .await
        .unwrap()
        .into_inner();
    let listed = http.get("/views").await.unwrap().json();
    let names: Vec<&str> = views.views.iter().map(|v| v.name.as_str()).collect();
    let http_names: Vec<&str> = listed["views"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, http_names);
    assert_eq!(
        views.views[0].kind,
        listed["views"][0]["kind"].as_str().unwrap()
    );
    s.stop().await;
}

fn with_token<T>(message: T, credentials: Option<&str>) -> Request<T> {
    let mut r = Request::new(message);
    if let Some(c) = credentials {
        r.metadata_mut().insert("authorization", c.parse().unwrap());
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_calls_get_unauthenticated_or_permission_denied_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    const SECRET: &[u8] = b"a test secret that is long enough for HS256";
    let auth = Authenticator::new()
        .jwt_key(JwtKey::hmac(Algorithm::HS256, SECRET).unwrap())
        .api_key(ApiKey::from_secret(
            "ops",
            "kk_ops.secret",
            "ops-robot",
            &["operator"],
        ));
    let claims = json!({"sub": "alice", "exp": kappa_log::now_ms() / 1000 + 600,
        "roles": ["customer"], "accounts": ["acct-1"]});
    let token = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    let alice = format!("Bearer {token}");
    let alice = Some(alice.as_str());
    let s = start_secured(dir.path(), auth, Some(customer_policy())).await;
    let mut c = grpc(s.addr).await;
    let before = s.ends("commands");
    let add = |key: &str| command("add", key, json!({"amount": 2}), false);
    for (credentials, key, code) in [
        (None, "acct-1", Code::Unauthenticated),
        (
            Some("Bearer kk_nobody.secret"),
            "acct-1",
            Code::Unauthenticated,
        ),
        (Some("Basic YWxpY2U6eA=="), "acct-1", Code::Unauthenticated),
        (alice, "acct-2", Code::PermissionDenied),
    ] {
        let status = c
            .send_command(with_token(add(key), credentials))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), code, "{credentials:?} {key}: {status:?}");
        let reason = problem(&status)["reason"].clone();
        if code == Code::PermissionDenied {
            assert_eq!(reason, "forbidden");
        } else {
            assert!(reason.is_string(), "{reason}");
        }
    }
    let forbidden_ping = command("ping", "acct-1", json!({}), false);
    let status = c
        .send_command(with_token(forbidden_ping, alice))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(s.ends("commands"), before, "refused commands write nothing");

    // Reads: a customer may read her own entity only, and no stream.
    let view = |key: &str| GetViewRequest {
        view: "totals".to_owned(),
        key: key.to_owned(),
        ..Default::default()
    };
    let status = c
        .get_view(with_token(view("acct-2"), alice))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = c
        .get_view(with_token(view("acct-1"), None))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = c
        .stream_events(with_token(StreamRequest::default(), alice))
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = c
        .list_views(with_token(ListViewsRequest {}, alice))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    // Allowed: the command records its sender.
    let sent = c
        .send_command(with_token(add("acct-1"), alice))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sent.command.unwrap().principal.as_deref(), Some("alice"));
    let ops = c
        .stream_events(with_token(
            StreamRequest::default(),
            Some("Bearer kk_ops.secret"),
        ))
        .await;
    assert!(ops.is_ok(), "an operator may follow the events");

    // Health is public, like /health; reflection is not.
    let channel = Channel::from_shared(format!("http://{}", s.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let check = |service: &str| tonic_health::pb::HealthCheckRequest {
        service: service.to_owned(),
    };
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving;
    for service in ["", "kappa.gateway.v1.Gateway"] {
        let r = health.check(check(service)).await.unwrap().into_inner();
        assert_eq!(r.status(), serving, "{service:?}");
    }
    let status = health.check(check("no.such.Service")).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let mut watch = health
        .watch(check("kappa.gateway.v1.Gateway"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(watch.next().await.unwrap().unwrap().status(), serving);

    let list = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            ),
        ),
    };
    let mut reflection =
        tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(channel);
    let refused = reflection
        .server_reflection_info(with_token(futures_util::stream::iter([list.clone()]), None))
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    let mut answers = reflection
        .server_reflection_info(with_token(
            futures_util::stream::iter([list]),
            Some("Bearer kk_ops.secret"),
        ))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.next().await.unwrap().unwrap();
    let Some(
        tonic_reflection::pb::v1::server_reflection_response::MessageResponse::ListServicesResponse(
            services,
        ),
    ) = answer.message_response
    else {
        panic!("not a list of services: {answer:?}");
    };
    let names: HashSet<String> = services.service.into_iter().map(|s| s.name).collect();
    for name in ["kappa.gateway.v1.Gateway", "grpc.health.v1.Health"] {
        assert!(names.contains(name), "{name} in {names:?}");
    }
    s.stop().await;
}
