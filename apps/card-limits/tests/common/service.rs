//! Running the `card-limits` binary and loading it over HTTP with
//! idempotent commands, for the tests that kill it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hyper::Method;
use kappa_gateway::load::{HttpClient, Reply};
use kappa_gateway::testing::sole;
use kappa_log::Log;

use std::collections::HashMap;

use kappa_gateway::Envelope;
use serde_json::{Value, json};

use super::{Command, Oracle};

/// A running service; killed when dropped, so a failing test leaves no
/// server behind.
pub struct Server(Child);

impl Server {
    /// SIGKILL, and wait for it to be gone.
    pub fn kill(&mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }

    pub fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `card-limits serve` on the log in `dir` (durability `always`),
/// with `extra` arguments, and waits until it says it is ready.
pub fn serve(dir: &Path, extra: &[&str]) -> (Server, SocketAddr) {
    let mut args = vec!["--http", "127.0.0.1:0", "--durability", "always", "--log"];
    let dir = dir.to_str().unwrap();
    args.push(dir);
    args.extend(extra);
    serve_with(&args, None)
}

/// As [`serve`], with the service's log lines (at info) kept in a file
/// under `state`, which is returned.
pub fn serve_logged(dir: &Path, state: &Path, extra: &[&str]) -> (Server, SocketAddr, PathBuf) {
    let mut args = vec!["--http", "127.0.0.1:0", "--durability", "always", "--log"];
    args.push(dir.to_str().unwrap());
    args.extend(extra);
    let served = serve_with(&args, Some(state));
    (served.0, served.1, state.join("instance-127.0.0.1-0.log"))
}

/// Starts one of several instances of `card-limits serve` on the tansu
/// broker at `bootstrap`, named `instance` (local state under
/// `state`), serving and advertising `127.0.0.1:port`.
pub fn serve_instance(
    bootstrap: &str,
    instance: &str,
    state: &Path,
    port: u16,
) -> (Server, SocketAddr) {
    let log = format!("kafka://{bootstrap}?kappa.instance={instance}&kappa.compat=tansu-0.6");
    let http = format!("127.0.0.1:{port}");
    let advertise = format!("http://{http}");
    serve_with(
        &["--http", &http, "--log", &log, "--advertise", &advertise],
        Some(state),
    )
}

/// Starts a single `card-limits serve` on the tansu broker at
/// `bootstrap` (local state under `state`), with `extra` arguments.
pub fn serve_kafka(bootstrap: &str, state: &Path, extra: &[&str]) -> (Server, SocketAddr) {
    let log = format!("kafka://{bootstrap}?kappa.instance=solo&kappa.compat=tansu-0.6");
    let mut args = vec!["--http", "127.0.0.1:0", "--log", &log];
    args.extend(extra);
    serve_with(&args, Some(state))
}

/// A loopback port nothing listens on now (the instances must know their
/// address before they start, to advertise it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn serve_with(args: &[&str], state: Option<&Path>) -> (Server, SocketAddr) {
    let (server, addr, _) = serve_saying(args, state);
    (server, addr)
}

/// Starts `card-limits serve` with `args`; returns it, its HTTP address
/// and the lines it printed before `ready`.
fn serve_saying(args: &[&str], state: Option<&Path>) -> (Server, SocketAddr, Vec<String>) {
    let mut process = Process::new(env!("CARGO_BIN_EXE_card-limits"));
    process.arg("serve").args(args);
    let mut stderr = Stdio::null();
    if let Some(state) = state {
        // Each instance's log, for when the test fails.
        std::fs::create_dir_all(state).unwrap();
        let port = args
            .iter()
            .find(|a| a.starts_with("127.0.0.1:"))
            .unwrap_or(&"x");
        let file =
            std::fs::File::create(state.join(format!("instance-{}.log", port.replace(':', "-"))))
                .unwrap();
        stderr = Stdio::from(file);
        process
            .env("KAPPA_STATE_DIR", state)
            .env("KAPPA_LOG_LEVEL", "info");
    }
    let extra = args;
    let mut child = process
        .args((!extra.contains(&"--security")).then_some("--insecure-no-auth"))
        .env_remove("KAPPA_LOG")
        .env_remove("CARD_LIMITS_POSTGRES")
        .env_remove("CARD_LIMITS_NOTIFY_URL")
        .env_remove("CARD_LIMITS_SECURITY")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr = first
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http://"))
        .unwrap()
        .parse()
        .unwrap();
    let mut said = Vec::new();
    loop {
        let line = lines.next().unwrap().unwrap();
        if line == "ready" {
            break;
        }
        said.push(line);
    }
    (Server(child), addr, said)
}

/// Starts `card-limits serve` on the log in `dir`, also serving it over
/// the Kafka protocol on a loopback port; returns it, its HTTP address and
/// the `kafka://` location of its log.
pub fn serve_node(dir: &Path, extra: &[&str]) -> (Server, SocketAddr, String) {
    let dir = dir.to_str().unwrap();
    let mut args = vec![
        "--http",
        "127.0.0.1:0",
        "--durability",
        "always",
        "--kafka-listen",
        "127.0.0.1:0",
        "--log",
        dir,
    ];
    args.extend(extra);
    let (server, addr, said) = serve_saying(&args, None);
    let kafka = said
        .iter()
        .find_map(|l| l.strip_prefix("serving the log to Kafka clients at "))
        .unwrap_or_else(|| panic!("no Kafka address in {said:?}"));
    (server, addr, format!("kafka://{kafka}"))
}

/// A running `card-limits notifier` or `card-limits views`.
pub struct Service {
    pub server: Server,
    /// Its HTTP face, when it was given `--http`.
    pub http: Option<SocketAddr>,
    /// What it said once caught up (`ready: caught up with …`).
    pub ready: String,
}

/// Starts `card-limits <kind> args` (local state under `state`, its
/// diagnostics in `state/<kind>-<n>.log`) and waits until it has caught up
/// with the log.
pub fn start_service(kind: &str, args: &[&str], state: &Path) -> Service {
    std::fs::create_dir_all(state).unwrap();
    let n = std::fs::read_dir(state).unwrap().count();
    let diagnostics = std::fs::File::create(state.join(format!("{kind}-{n}.log"))).unwrap();
    let mut child = Process::new(env!("CARGO_BIN_EXE_card-limits"))
        .arg(kind)
        .args(args)
        .env("KAPPA_STATE_DIR", state)
        .env("KAPPA_LOG_LEVEL", "info")
        .env_remove("KAPPA_LOG")
        .env_remove("CARD_LIMITS_POSTGRES")
        .env_remove("CARD_LIMITS_NOTIFY_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(diagnostics))
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines
        .next()
        .unwrap_or_else(|| panic!("{kind} said nothing: see {}", state.display()))
        .unwrap();
    let http = first
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http://"))
        .map(|a| a.parse().unwrap());
    let ready = lines
        .next()
        .unwrap_or_else(|| panic!("{kind} stopped before catching up: see {}", state.display()))
        .unwrap();
    assert!(ready.starts_with("ready: caught up with "), "{ready}");
    // Nothing more is said; keep the pipe open so it never writes to a closed one.
    std::thread::spawn(move || lines.for_each(drop));
    Service {
        server: Server(child),
        http,
        ready,
    }
}

/// The Python of the virtualenv `scripts/test.sh` makes with the Kafka clients.
pub fn python() -> std::path::PathBuf {
    kappa_kafka::testing::python().unwrap_or_else(|e| panic!("{e}"))
}

/// Stops a server with SIGINT (a graceful stop) and waits for it.
pub fn interrupt(mut server: Server) {
    let status = Process::new("kill")
        .args(["-INT", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = server.0.wait().unwrap();
    assert!(exit.success(), "{exit}");
}

/// A load of `commands` commands from the traffic stream over `cards`
/// cards, sent on `connections` connections; command `n` carries
/// idempotency key `n`, so a retry after a crash writes nothing twice.
#[derive(Clone)]
pub struct Load {
    pub commands: u64,
    pub cards: u64,
    pub connections: u64,
    /// `acked[n]` is 1 once command `n` was answered 202.
    pub acked: Arc<Vec<AtomicUsize>>,
    /// The `Authorization` header to send, if the service wants one.
    pub auth: Option<Arc<str>>,
}

impl Load {
    pub fn new(commands: u64, cards: u64, connections: u64) -> Self {
        Self {
            commands,
            cards,
            connections,
            acked: Arc::new((0..commands).map(|_| AtomicUsize::new(0)).collect()),
            auth: None,
        }
    }

    /// Sends every command with `authorization`.
    pub fn with_auth(mut self, authorization: &str) -> Self {
        self.auth = Some(Arc::from(authorization));
        self
    }

    pub fn command(&self, n: u64) -> Command {
        let (action, data) = card_limits::traffic::command(n, self.cards);
        Command { action, data }
    }

    pub fn acked(&self) -> usize {
        self.acked
            .iter()
            .filter(|a| a.load(Ordering::Acquire) == 1)
            .count()
    }

    /// Sends every command not yet acknowledged; with `budget`, each
    /// connection stops once that many more were acknowledged in all.
    /// Returns the senders (each ends at its first failure: the server died).
    pub fn send(
        &self,
        addr: SocketAddr,
        budget: Option<Arc<AtomicUsize>>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        self.send_spread(&[addr], budget)
    }

    /// As [`Load::send`], connection `c` going to `addrs[c % addrs.len()]`.
    pub fn send_spread(
        &self,
        addrs: &[SocketAddr],
        budget: Option<Arc<AtomicUsize>>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        (0..self.connections)
            .map(|conn| {
                let addr = addrs[conn as usize % addrs.len()];
                tokio::spawn(self.clone().connection(addr, conn, budget.clone()))
            })
            .collect()
    }

    async fn connection(self, addr: SocketAddr, conn: u64, budget: Option<Arc<AtomicUsize>>) {
        let Ok(mut c) = HttpClient::connect(addr).await else {
            return;
        };
        let mut n = conn;
        while n < self.commands {
            if self.acked[n as usize].load(Ordering::Acquire) == 0 {
                if budget
                    .as_ref()
                    .is_some_and(|s| s.load(Ordering::Acquire) == 0)
                {
                    return;
                }
                let key = n.to_string();
                let body = Bytes::from(self.command(n).body().to_string());
                let mut headers = vec![("idempotency-key", key.as_str())];
                if let Some(a) = &self.auth {
                    headers.push(("authorization", a));
                }
                match c.request(Method::POST, "/commands", &headers, body).await {
                    // A rate-limited client waits as it is told, then retries.
                    Ok(r) if r.status == 429 => {
                        let wait: u64 = r
                            .header("retry-after")
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(1);
                        tokio::time::sleep(Duration::from_secs(wait)).await;
                        continue;
                    }
                    Ok(r) if r.status == 202 => {
                        self.acked[n as usize].store(1, Ordering::Release);
                        if let Some(s) = &budget {
                            let _ = s.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                                v.checked_sub(1)
                            });
                        }
                    }
                    Ok(r) => panic!(
                        "command {n}: {} {}",
                        r.status,
                        String::from_utf8_lossy(&r.body)
                    ),
                    Err(_) => return,
                }
            }
            n += self.connections;
        }
    }

    /// One run killed with SIGKILL once `budget` more commands were
    /// acknowledged, while the others are in flight.
    pub async fn run_and_kill(&self, mut server: Server, addr: SocketAddr, budget: usize) {
        let left = Arc::new(AtomicUsize::new(budget));
        let senders = self.send(addr, Some(left.clone()));
        while left.load(Ordering::Acquire) > 0 {
            tokio::task::yield_now().await;
        }
        server.kill(); // SIGKILL
        for s in senders {
            s.await.unwrap();
        }
    }

    /// Sends everything not acknowledged yet, to the end.
    pub async fn finish(&self, addr: SocketAddr) {
        for s in self.send(addr, None) {
            s.await.unwrap();
        }
        assert_eq!(self.acked(), self.commands as usize);
    }
}

/// `arc` once every other reference is gone (see
/// [`kappa_gateway::testing::sole`]).
pub async fn unique<T: ?Sized>(arc: Arc<T>) -> Arc<T> {
    sole(arc, Duration::from_secs(30))
        .await
        .expect("still shared after 30 s")
}

/// Sends a sync `remove-limit` for `card`, waiting up to `timeout_ms` for
/// its outcome: once answered, every earlier command of the card is decided.
pub async fn remove_limit(c: &mut HttpClient, card: &str, timeout_ms: u64) -> Reply {
    c.post(
        &format!("/commands?sync=true&timeout_ms={timeout_ms}"),
        &json!({"action": "remove-limit", "key": card, "data": {"card": card}}),
    )
    .await
    .unwrap()
}

/// Checks the log against the oracle: every command in `commands` (applied
/// by the oracle in the log's order) is decided with exactly the oracle's
/// events, once, and the command carrying idempotency key `n` is `load`'s
/// command `n`. Returns how often each of `load`'s commands is in the log,
/// and the oracle (for the balances).
pub fn check_decisions(log: &dyn Log, load: &Load) -> (Vec<usize>, Oracle) {
    let mut seen = vec![0; load.commands as usize];
    let mut oracle = Oracle::default();
    let mut expected: HashMap<String, Vec<(String, Value, bool)>> = HashMap::new();
    for r in log.read_topic("commands").unwrap() {
        let e: Envelope = serde_json::from_slice(r.value.as_ref().unwrap()).unwrap();
        let c = Command {
            action: match e.action.as_str() {
                "set-limit" => "set-limit",
                "remove-limit" => "remove-limit",
                "authorize" => "authorize",
                _ => "settle",
            },
            data: e.data.clone(),
        };
        if let Some(k) = &e.idempotency_key {
            let n: usize = k.parse().unwrap();
            seen[n] += 1;
            assert_eq!(
                e.data,
                load.command(n as u64).data,
                "command {n} as written"
            );
        }
        expected.insert(e.id.to_string(), oracle.apply(&c));
    }
    let mut actual: HashMap<String, Vec<(String, Value, bool)>> = HashMap::new();
    for r in log.read_topic("events").unwrap() {
        let e: Envelope = serde_json::from_slice(r.value.as_ref().unwrap()).unwrap();
        actual
            .entry(e.parent.unwrap().to_string())
            .or_default()
            .push((e.action, e.data, e.error));
    }
    assert_eq!(actual.len(), expected.len(), "every command decided once");
    for (id, events) in &expected {
        assert_eq!(actual.get(id), Some(events), "command {id}");
    }
    (seen, oracle)
}

/// Checks a `/cards/{card}` answer against the oracle's balances.
pub fn check_view(oracle: &Oracle, card: &str, v: &Value) {
    let state = &oracle.cards[card];
    let t = state.latest().unwrap();
    assert_eq!(v["settled"], state.settled(t), "{card}: {v}");
    assert_eq!(v["pending"], state.pending(t), "{card}: {v}");
}
