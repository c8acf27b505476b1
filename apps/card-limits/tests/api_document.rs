//! The HTTP API against its own document (`/openapi.json`): every route
//! the service registers is described there and nothing else is;
//! schemathesis (an OpenAPI conformance tool nobody here wrote) finds no
//! difference between what the document says and what the server does,
//! in development mode and under the example security settings; and a
//! Python client generated from the document by openapi-python-client
//! sends commands, gets their outcomes and reads a card.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::security::settings;
use common::service::{python, serve};
use kappa_gateway::load::HttpClient;
use serde_json::Value;

/// The operator's API key in the test settings (every right).
const OPERATOR: &str = "Bearer kk_ops.operator-secret";

/// Where the workspace's sources are.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A program of the virtualenv `scripts/test.sh` makes, installed there
/// from `tests/requirements.txt`.
fn tool(name: &str) -> PathBuf {
    let exe = python().with_file_name(name);
    assert!(
        exe.is_file(),
        "{} is missing: scripts/test.sh installs it into the test virtualenv; \
         or run `{} -m pip install -r apps/card-limits/tests/requirements.txt`",
        exe.display(),
        python().display()
    );
    exe
}

/// `(METHOD, path template)` of every route registered with `.route(...)`
/// in `source`, outside comments.
fn routes_in(source: &str) -> Vec<(String, String)> {
    let code: String = source
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find(".route(") {
        rest = &rest[at + ".route(".len()..];
        let Some(open) = rest.trim_start().strip_prefix('"') else {
            continue;
        };
        let Some(close) = open.find('"') else { break };
        let path = &open[..close];
        // The method router runs to the parenthesis closing `.route(`.
        let mut depth = 1;
        let mut end = close;
        for (i, c) in open[close..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                end = close + i;
                break;
            }
        }
        let methods = &open[close..end];
        for method in ["get", "post", "put", "patch", "delete"] {
            let called = methods.match_indices(&format!("{method}(")).any(|(i, _)| {
                i == 0
                    || !methods.as_bytes()[i - 1].is_ascii_alphanumeric()
                        && methods.as_bytes()[i - 1] != b'_'
            });
            if called {
                found.push((method.to_ascii_uppercase(), path.to_owned()));
            }
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The routes `card-limits serve` registers: the gateway's (its API and
/// the console), the search index's, and the service's card reads.
/// `services.rs` is left out: it is the face of the separate effect
/// services (`card-limits notifier`, …), another server with its own
/// routes.
fn registered_routes() -> BTreeSet<(String, String)> {
    let root = workspace();
    let mut files = Vec::new();
    rust_files(&root.join("crates/kappa-gateway/src"), &mut files);
    rust_files(&root.join("crates/kappa-effects/src/search"), &mut files);
    rust_files(&root.join("apps/card-limits/src"), &mut files);
    files.retain(|f| !f.ends_with("apps/card-limits/src/services.rs"));
    let mut routes = BTreeSet::new();
    for file in files {
        routes.extend(routes_in(&std::fs::read_to_string(&file).unwrap()));
    }
    routes
}

fn documented_routes(doc: &Value) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            routes.insert((method.to_ascii_uppercase(), path.clone()));
        }
    }
    routes
}

#[test]
fn the_route_reader_finds_methods_of_one_and_several_lines() {
    let source = r#"
        // .route("/commented", get(nothing))
        Router::new()
            .route(
                "/commands",
                post(commands::post).get(history::list_commands),
            )
            .route("/a/{id}", get(a::get))
            .route("/b", forget(b))
    "#;
    assert_eq!(
        routes_in(source),
        [
            ("GET".to_owned(), "/commands".to_owned()),
            ("POST".to_owned(), "/commands".to_owned()),
            ("GET".to_owned(), "/a/{id}".to_owned()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_registered_route_is_in_the_document_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = serve_searching(dir.path(), &[]);
    let mut c = HttpClient::connect(addr).await.unwrap();
    let doc = c.get("/openapi.json").await.unwrap().json();
    let registered = registered_routes();
    // Guards the reader: it must see the routes of each part.
    for part in [
        "/commands",
        "/console/api/topics",
        "/search/{index}",
        "/cards/{card}",
    ] {
        assert!(
            registered.iter().any(|(_, p)| p == part),
            "the source scan missed {part}: {registered:?}"
        );
    }
    let documented = documented_routes(&doc);
    let undocumented: Vec<_> = registered.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&registered).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from /openapi.json: {undocumented:?}"
    );
    assert!(
        unserved.is_empty(),
        "/openapi.json describes routes nobody registers: {unserved:?}"
    );
}

/// The number of operations `/openapi.json` describes at `addr`.
fn operations(addr: SocketAddr, authorization: Option<&str>) -> usize {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut c = HttpClient::connect(addr).await.unwrap();
        let headers: Vec<(&str, &str)> = authorization
            .iter()
            .map(|a| ("authorization", *a))
            .collect();
        let doc = c.get_with("/openapi.json", &headers).await.unwrap().json();
        documented_routes(&doc).len()
    })
}

/// Runs schemathesis with the project's settings (`schemathesis.toml`
/// beside this file) against the service at `addr`, sending
/// `authorization` with every request when given; fails with its report
/// when it finds anything, or tests fewer operations than the document has.
fn conformance(addr: SocketAddr, authorization: Option<&str>, reports: &Path) {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis.toml");
    let mut run = Command::new(tool("schemathesis"));
    // It keeps a cache in its working directory: the test's scratch one.
    run.current_dir(reports.parent().unwrap())
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("http://{addr}/openapi.json"))
        .args([
            "--checks",
            "all",
            "--max-examples",
            "100",
            "--seed",
            "20261207",
        ])
        // One worker: CPython 3.11's ast.parse, which hypothesis calls to
        // describe its filters, is not safe across threads ("AST
        // constructor recursion depth mismatch").
        .args([
            "--workers",
            "1",
            "--no-color",
            "--generation-database",
            "none",
        ])
        .arg("--report-dir")
        .arg(reports);
    if let Some(a) = authorization {
        run.args(["--header", &format!("Authorization: {a}")]);
    }
    let out = run.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "schemathesis found differences between /openapi.json and the server ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // schemathesis reads `GET /openapi.json` and tests every other operation.
    let tested = operations(addr, authorization) - 1;
    assert!(
        stdout.contains(&format!("Tested: {tested}\n")),
        "schemathesis did not test all {tested} operations:\n{stdout}"
    );
}

/// `card-limits serve` with an index to search, and `extra` arguments
/// (in development mode unless they give `--security`).
fn serve_searching(dir: &Path, extra: &[&str]) -> (common::service::Server, SocketAddr) {
    let search = dir.join("search");
    let mut args = vec!["--search-dir", search.to_str().unwrap()];
    args.extend(extra);
    serve(&dir.join("log"), &args)
}

#[test]
fn schemathesis_finds_nothing_in_development_mode() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = serve_searching(dir.path(), &[]);
    conformance(addr, None, &dir.path().join("reports"));
}

#[test]
fn schemathesis_finds_nothing_under_the_example_security_settings() {
    let dir = tempfile::tempdir().unwrap();
    let file = settings(dir.path());
    let (_server, addr) = serve_searching(dir.path(), &["--security", file.to_str().unwrap()]);
    conformance(addr, Some(OPERATOR), &dir.path().join("reports"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_client_generated_from_the_document_sends_commands_and_reads_a_card() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = serve_searching(dir.path(), &[]);
    let package = dir.path().join("generated/card_limits_client");
    let generated = Command::new(tool("openapi-python-client"))
        .current_dir(dir.path())
        .args(["generate", "--meta", "none", "--url"])
        .arg(format!("http://{addr}/openapi.json"))
        .arg("--output-path")
        .arg(&package)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&generated.stdout);
    assert!(
        generated.status.success(),
        "generating the client failed:\n{said}\n{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    // Every schema became a model: the generator drops what it cannot read
    // and says so ("Unable to process schema").
    assert!(!said.contains("Unable to process"), "{said}");
    let card = "py-card-1";
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/openapi_client.py");
    let ran = Command::new(python())
        .arg(&script)
        .arg(format!("http://{addr}"))
        .arg(card)
        .env("PYTHONPATH", package.parent().unwrap())
        .output()
        .unwrap();
    assert!(
        ran.status.success(),
        "the generated client failed:\n{}\n{}",
        String::from_utf8_lossy(&ran.stdout),
        String::from_utf8_lossy(&ran.stderr)
    );
    let seen: Value = serde_json::from_slice(&ran.stdout).unwrap();
    // The limit is 100.00; 25.00 fits, 90.00 then does not, 10.00 does.
    assert_eq!(seen["set_limit"], serde_json::json!([201, ["limit-set"]]));
    assert_eq!(
        seen["approved"],
        serde_json::json!([201, ["authorization-approved"]])
    );
    assert_eq!(seen["declined"][0], 201);
    assert_eq!(seen["declined"][1][0], "authorization-declined");
    assert_eq!(seen["accepted"], serde_json::json!([202, true]));
    assert_eq!(seen["command"], serde_json::json!([200, "authorize", card]));
    let read = &seen["card"];
    assert_eq!(
        (
            &read["limit"],
            &read["pending"],
            &read["spent"],
            &read["available"]
        ),
        (
            &Value::from(10_000),
            &Value::from(3_500),
            &Value::from(3_500),
            &Value::from(6_500)
        ),
        "{read}"
    );
    // The same card read without the generated client.
    let mut c = HttpClient::connect(addr).await.unwrap();
    assert_eq!(
        &c.get(&format!("/cards/{card}")).await.unwrap().json(),
        read
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_grpc_client_generated_from_the_proto_sends_commands_and_reads_a_card() {
    let dir = tempfile::tempdir().unwrap();
    let file = settings(dir.path());
    let (_server, addr) = serve_searching(dir.path(), &["--security", file.to_str().unwrap()]);
    let generated = dir.path().join("generated");
    std::fs::create_dir_all(&generated).unwrap();
    let card = "grpc-card-1";
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/grpc_client.py");
    let ran = Command::new(python())
        .arg(&script)
        .arg(addr.to_string())
        .arg(workspace().join("crates/kappa-gateway/proto"))
        .arg(&generated)
        .arg(card)
        .arg(OPERATOR)
        .output()
        .unwrap();
    assert!(
        ran.status.success(),
        "the generated gRPC client failed (grpcio-tools comes from \
         apps/card-limits/tests/requirements.txt, installed by scripts/test.sh):\n{}\n{}",
        String::from_utf8_lossy(&ran.stdout),
        String::from_utf8_lossy(&ran.stderr)
    );
    let seen: Value = serde_json::from_slice(&ran.stdout).unwrap();
    assert_eq!(seen["unauthenticated"], "UNAUTHENTICATED");
    let succeeded = |event: &str| serde_json::json!(["COMMAND_STATUS_SUCCEEDED", [event]]);
    assert_eq!(seen["set_limit"], succeeded("limit-set"));
    assert_eq!(seen["approved"], succeeded("authorization-approved"));
    assert_eq!(seen["declined"][1][0], "authorization-declined");
    assert_eq!(seen["accepted"], "COMMAND_STATUS_PENDING");
    assert_eq!(
        seen["command"],
        serde_json::json!(["authorize", card, "ops-robot"])
    );
    // Four commands on one card, one partition: streamed in order, once
    // each, across the resumption; the unauthenticated one was never written.
    let streamed: Vec<&str> = seen["streamed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m[1].as_str().unwrap())
        .collect();
    assert_eq!(
        streamed,
        ["set-limit", "authorize", "authorize", "authorize"]
    );
    assert_eq!(seen["streamed"][3][0], seen["sent_ids"][0]);
    assert_eq!(seen["health"], "SERVING");
    for service in ["kappa.gateway.v1.Gateway", "grpc.health.v1.Health"] {
        assert!(
            seen["services"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s == service),
            "{service} in {}",
            seen["services"]
        );
    }
    // The card as the same view reads over HTTP.
    let mut c = HttpClient::connect(addr).await.unwrap();
    let over_http = c
        .get_with(
            &format!("/views/cards/{card}"),
            &[("authorization", OPERATOR)],
        )
        .await
        .unwrap()
        .json();
    assert_eq!(seen["card"]["value"], over_http["value"], "{over_http}");
    assert_eq!(seen["card"]["value"]["limit"], 10_000, "{}", seen["card"]);
}
