//! A demo service on an embedded log in a scratch directory, served on a
//! loopback port, and helpers to talk to it.
#![allow(dead_code)]

pub mod sse;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kappa_gateway::load::{HttpClient, Reply};
use kappa_gateway::testing::sole;
use kappa_gateway::{Gateway, GatewayConfig};
use kappa_log::{EmbeddedLog, Log, TopicPartition};
use kappa_streams::Streams;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// A running demo service.
pub struct Service {
    pub addr: SocketAddr,
    pub log: Arc<dyn Log>,
    pub gateway: Arc<Gateway>,
    pub streams: Arc<Streams>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

/// How long a read of one's own writes waits for them.
pub const WAIT: Duration = Duration::from_secs(10);

pub fn config() -> GatewayConfig {
    GatewayConfig {
        partitions: 2,
        body_limit_bytes: 4096,
        ..GatewayConfig::default()
    }
}

/// Starts the demo service on the log in `dir`, and waits until it is ready.
pub async fn start(dir: &Path) -> Service {
    start_with(dir, config()).await
}

/// Starts the demo service on a log in a new scratch directory, with a
/// client; the directory is deleted when the first item drops.
pub async fn fresh() -> (tempfile::TempDir, Service, HttpClient) {
    let dir = tempfile::tempdir().expect("scratch directory");
    let service = start(dir.path()).await;
    let client = service.client().await;
    (dir, service, client)
}

/// Posts a command to `path` (the request itself must not fail).
pub async fn send(
    c: &mut HttpClient,
    path: &str,
    action: &str,
    key: Option<&str>,
    data: Value,
) -> Reply {
    c.post(path, &body(action, key, data))
        .await
        .expect("post the command")
}

/// Sending commands in one line: `c.sync("add", Some("a"), json!({...}))`.
#[allow(async_fn_in_trait)] // used only here, on one runtime
pub trait Commands {
    /// `POST /commands`.
    async fn command(&mut self, action: &str, key: Option<&str>, data: Value) -> Reply;
    /// `POST /commands?sync=true`.
    async fn sync(&mut self, action: &str, key: Option<&str>, data: Value) -> Reply;
}

impl Commands for HttpClient {
    async fn command(&mut self, action: &str, key: Option<&str>, data: Value) -> Reply {
        send(self, "/commands", action, key, data).await
    }

    async fn sync(&mut self, action: &str, key: Option<&str>, data: Value) -> Reply {
        send(self, "/commands?sync=true", action, key, data).await
    }
}

/// Starts the demo service on the log in `dir` with `auth` (and `policy`).
pub async fn start_secured(
    dir: &Path,
    auth: kappa_gateway::auth::Authenticator,
    policy: Option<kappa_gateway::auth::Policy>,
) -> Service {
    let config = GatewayConfig {
        auth: Some(Arc::new(auth)),
        policy: policy.map(Arc::new),
        ..config()
    };
    start_with(dir, config).await
}

/// A customer may add to and read the accounts her `accounts` claim
/// lists, nothing else; an operator may do anything.
pub fn customer_policy() -> kappa_gateway::auth::Policy {
    serde_json::from_value(json!({"rules": [
        {"roles": ["customer"], "commands": ["add"], "views": ["totals"], "keys_from_claim": "accounts"},
        {"roles": ["operator"], "commands": ["*"], "views": ["*"], "streams": ["*"], "routes": ["/**"]}
    ]}))
    .expect("the policy")
}

pub async fn start_with(dir: &Path, config: GatewayConfig) -> Service {
    start_on(Arc::new(EmbeddedLog::open(dir).expect("open log")), config).await
}

/// Starts the demo service on `log`, and waits until it is ready.
pub async fn start_on(log: Arc<dyn Log>, config: GatewayConfig) -> Service {
    let (gateway, streams) =
        kappa_gateway::demo::start(log.clone(), config, Duration::from_millis(2)).expect("start");
    assert!(
        gateway.wait_ready(Duration::from_secs(30)).expect("index"),
        "the index never caught up"
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = gateway.router();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    Service {
        addr,
        log,
        gateway: Arc::new(gateway),
        streams,
        stop: Some(stop),
        server: Some(server),
    }
}

impl Service {
    pub async fn client(&self) -> HttpClient {
        HttpClient::connect(self.addr).await.expect("connect")
    }

    /// Stops serving and releases the log (so the directory can be reopened).
    pub async fn stop(mut self) {
        // As the real server does: live streams end, so the graceful
        // shutdown does not wait for their clients.
        self.gateway.close_live_streams();
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.server.take() {
            h.await.expect("server task");
        }
        let Service {
            gateway,
            streams,
            log,
            ..
        } = self;
        drop(gateway);
        // A connection task can still be dropping its router (and with it
        // the gateway's state) just after the server returns.
        let streams = unique(streams).await;
        if let Ok(s) = Arc::try_unwrap(streams) {
            s.close().expect("close demo processor");
        }
        drop(unique(log).await);
    }

    /// End offsets of every partition of `topic`.
    pub fn ends(&self, topic: &str) -> Vec<u64> {
        (0..2)
            .map(|p| {
                self.log
                    .offsets(&TopicPartition::new(topic, p))
                    .expect("offsets")
                    .end
            })
            .collect()
    }
}

pub fn body(action: &str, key: Option<&str>, data: Value) -> Value {
    let mut b = json!({"action": action, "data": data});
    if let Some(k) = key {
        b["key"] = Value::from(k);
    }
    b
}

/// Asserts an answer is a problem document with `status`.
pub fn assert_problem(r: &Reply, status: u16) -> Value {
    assert_eq!(
        r.status.as_u16(),
        status,
        "body: {}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let p = r.json();
    assert_eq!(p["status"], status);
    assert!(p["detail"].as_str().is_some_and(|d| !d.is_empty()));
    p
}

/// `arc` once every other reference is gone (see [`sole`]).
pub async fn unique<T: ?Sized>(arc: Arc<T>) -> Arc<T> {
    sole(arc, Duration::from_secs(30))
        .await
        .expect("still shared after 30 s")
}

/// A demo command: `fail` (which the demo processor rejects), or `add`
/// of `amount`.
pub fn add_or_fail(fail: bool, amount: i64) -> (&'static str, Value) {
    if fail {
        ("fail", json!({}))
    } else {
        ("add", json!({"amount": amount}))
    }
}
