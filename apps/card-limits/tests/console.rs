//! The console in a real browser: the real binary under load, on the
//! embedded log and on Kafka (tansu), driven by
//! `tests/console/console.spec.mjs` in headless Chromium with
//! playwright-core. Screenshots land in `target/console/<test>/`.
//! With security settings, the console's data is behind the same tokens
//! and policy as the rest of the API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::Command as Process;

use bytes::Bytes;
use common::security::{settings, token};
use common::service::{Load, serve, serve_kafka};
use hyper::Method;
use kappa_effects::testing::{Reply, Webhook};
use kappa_gateway::load::HttpClient;
use kappa_kafka::testing::Tansu;
use serde_json::Value;

/// Commands the load may send while the browser runs (it is stopped
/// when the browser is done).
const LOAD_COMMANDS: u64 = 1_000_000;
const CARDS: u64 = 30;
const CONNECTIONS: u64 = 2;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs the spec against `url`; panics with its output unless it passed.
fn browse(name: &str, url: &str, backend: &str, token: Option<&str>) -> Value {
    let spec = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/console");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: install Debian's chromium package (scripts/test.sh does)"
    );
    assert!(
        spec.join("node_modules/playwright-core").is_dir(),
        "playwright-core is missing: run `npm ci --prefix apps/card-limits/tests/console` (scripts/test.sh does)"
    );
    let shots = workspace().join("target/console").join(name);
    // Only this run's screenshots stay for review.
    let _ = std::fs::remove_dir_all(&shots);
    let mut node = Process::new("node");
    node.arg(spec.join("console.spec.mjs"))
        .current_dir(&spec)
        .env("CONSOLE_URL", url)
        .env("SCREENSHOT_DIR", &shots)
        .env("EXPECT_BACKEND", backend)
        .env("CHROMIUM", &chromium);
    if let Some(t) = token {
        node.env("CONSOLE_TOKEN", t);
    }
    let out = node
        .output()
        .expect("node is missing: install Debian's nodejs package");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary: Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    assert!(
        out.status.success() && summary["ok"] == true,
        "the browser run failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert_eq!(summary["console_errors"], 0, "{summary}");
    let screenshots = summary["screenshots"].as_array().unwrap();
    assert_eq!(screenshots.len(), 9, "{summary}");
    for s in screenshots {
        let file = PathBuf::from(s.as_str().unwrap());
        assert!(
            std::fs::metadata(&file).unwrap().len() > 1000,
            "{file:?} is empty"
        );
    }
    summary
}

/// A webhook that takes every threshold notification.
async fn notifications() -> Webhook {
    Webhook::start(|_| Reply::status(204)).await.unwrap()
}

/// Runs the browser while `load` is sent to `addr`, then stops the load.
async fn browse_under_load(
    name: &str,
    addr: std::net::SocketAddr,
    backend: &str,
    load: Load,
    token: Option<String>,
) {
    let senders = load.send(addr, None);
    let (name, url, backend) = (
        name.to_owned(),
        format!("http://{addr}"),
        backend.to_owned(),
    );
    let summary =
        tokio::task::spawn_blocking(move || browse(&name, &url, &backend, token.as_deref()))
            .await
            .unwrap();
    let sent = load.acked();
    for s in senders {
        s.abort();
    }
    assert!(sent > 0, "the load ran while the browser did");
    println!("{summary}\ncommands sent meanwhile: {sent}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_on_the_embedded_log() {
    let hook = notifications().await;
    let dir = tempfile::tempdir().unwrap();
    let notify = hook.url("notify");
    let (_server, addr) = serve(dir.path(), &["--notify-url", &notify]);
    let load = Load::new(LOAD_COMMANDS, CARDS, CONNECTIONS);
    browse_under_load("embedded", addr, "embedded", load, None).await;
    assert!(!hook.calls().is_empty(), "notifications were delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_on_kafka() {
    let broker = Tansu::start().unwrap();
    let hook = notifications().await;
    let state = tempfile::tempdir().unwrap();
    let notify = hook.url("notify");
    let (_server, addr) = serve_kafka(
        &broker.bootstrap(),
        state.path(),
        &["--notify-url", &notify],
    );
    let load = Load::new(LOAD_COMMANDS, CARDS, CONNECTIONS);
    browse_under_load("kafka", addr, "kafka", load, None).await;
}

async fn status(c: &mut HttpClient, path: &str, auth: Option<&str>) -> u16 {
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", *a)).collect();
    c.request(Method::GET, path, &headers, Bytes::new())
        .await
        .unwrap()
        .status
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_honours_the_security_rules() {
    let dir = tempfile::tempdir().unwrap();
    let file = settings(dir.path());
    let file = file.to_string_lossy().into_owned();
    let hook = notifications().await;
    let notify = hook.url("notify");
    let (_server, addr) = serve(
        &dir.path().join("log"),
        &["--security", &file, "--notify-url", &notify],
    );
    let mut c = HttpClient::connect(addr).await.unwrap();
    // The page and its scripts hold no data: anyone may load them.
    for path in [
        "/console",
        "/console/assets/console.js",
        "/console/pages/cards.js",
    ] {
        assert_eq!(status(&mut c, path, None).await, 200, "{path}");
    }
    let customer = token("alice", &["customer"], &["card-1"]);
    let operator = token("olga", &["operator"], &[]);
    for path in [
        "/console/api/info",
        "/console/api/topology",
        "/console/api/topics",
        "/console/api/topics/commands/records",
        "/console/api/stats",
    ] {
        assert_eq!(
            status(&mut c, path, None).await,
            401,
            "{path} without a token"
        );
        assert_eq!(
            status(&mut c, path, Some("Bearer kk_old.old-secret")).await,
            401,
            "{path} with a revoked key"
        );
        assert_eq!(
            status(&mut c, path, Some(&customer)).await,
            403,
            "{path} as a customer"
        );
        assert_eq!(
            status(&mut c, path, Some(&operator)).await,
            200,
            "{path} as an operator"
        );
    }
    // The operator's whole tour, the load sent with the operator's API key.
    let load =
        Load::new(LOAD_COMMANDS, CARDS, CONNECTIONS).with_auth("Bearer kk_ops.operator-secret");
    browse_under_load("security", addr, "embedded", load, Some(operator)).await;
}
