//! A small HTTP/1.1 client and a load generator over many keep-alive
//! connections, reporting throughput and latency percentiles.
//!
//! Open-loop runs (`rate`) schedule each request at a fixed time and measure
//! latency from that time, so a stalled server is not hidden by the
//! generator waiting for it (no coordinated omission).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

/// A client failure.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting or talking to the server failed.
    #[error("HTTP: {0}")]
    Http(String),
}

fn http(e: impl std::fmt::Display) -> ClientError {
    ClientError::Http(e.to_string())
}

/// An answer.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One keep-alive HTTP/1.1 connection.
///
/// ```no_run
/// # async fn demo() -> Result<(), kappa_gateway::load::ClientError> {
/// let mut c = kappa_gateway::load::HttpClient::connect("127.0.0.1:8080".parse().unwrap()).await?;
/// let r = c.get("/health").await?;
/// assert_eq!(r.status, 200);
/// # Ok(()) }
/// ```
pub struct HttpClient {
    sender: SendRequest<Full<Bytes>>,
    host: String,
}

impl HttpClient {
    /// Connects to `addr`.
    ///
    /// # Errors
    ///
    /// The connection fails.
    pub async fn connect(addr: SocketAddr) -> Result<Self, ClientError> {
        let stream = tokio::net::TcpStream::connect(addr).await.map_err(http)?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self {
            sender,
            host: addr.to_string(),
        })
    }

    /// Sends a request and returns the head and the unread body.
    ///
    /// # Errors
    ///
    /// The connection fails.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<hyper::Response<Incoming>, ClientError> {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host);
        if !body.is_empty() {
            b = b.header("content-type", "application/json");
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let request = b.body(Full::new(body)).map_err(http)?;
        self.sender.ready().await.map_err(http)?;
        self.sender.send_request(request).await.map_err(http)
    }

    /// Sends a request and reads the whole answer.
    ///
    /// # Errors
    ///
    /// The connection fails.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Reply, ClientError> {
        let response = self.send(method, path, headers, body).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(http)?.to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// `GET path`.
    ///
    /// # Errors
    ///
    /// The connection fails.
    pub async fn get(&mut self, path: &str) -> Result<Reply, ClientError> {
        self.request(Method::GET, path, &[], Bytes::new()).await
    }

    /// `GET path` with `headers` (credentials, `Last-Event-ID`).
    ///
    /// # Errors
    ///
    /// The connection fails.
    pub async fn get_with(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Reply, ClientError> {
        self.request(Method::GET, path, headers, Bytes::new()).await
    }

    /// `GET path` once the service has processed `min_position` (the
    /// positions a write answered with), waiting at most `wait`: a read of
    /// one's own writes, as the history and the views offer it.
    ///
    /// # Errors
    ///
    /// The connection fails.
    pub async fn get_after(
        &mut self,
        path: &str,
        min_position: &str,
        wait: Duration,
    ) -> Result<Reply, ClientError> {
        let sep = if path.contains('?') { '&' } else { '?' };
        self.get(&format!(
            "{path}{sep}min_position={min_position}&wait_ms={}",
            wait.as_millis()
        ))
        .await
    }

    /// `POST path` with a JSON body.
    ///
    /// # Errors
    ///
    /// The connection fails.
    pub async fn post(&mut self, path: &str, body: &Value) -> Result<Reply, ClientError> {
        self.request(Method::POST, path, &[], Bytes::from(body.to_string()))
            .await
    }
}

/// Makes the body of the n-th command of a run (n counts from 0 over all
/// connections). Called on the generator's threads, so keep it cheap.
pub type CommandMaker = Arc<dyn Fn(u64) -> Bytes + Send + Sync>;

/// Commands `{"action": action, "key": "key-<n mod keys>", "data": {"amount": 1 + n mod 100}}`.
///
/// ```
/// let make = kappa_gateway::load::amounts("add", 10);
/// let body: serde_json::Value = serde_json::from_slice(&make(12)).unwrap();
/// assert_eq!(body, serde_json::json!({"action": "add", "key": "key-2", "data": {"amount": 13}}));
/// ```
pub fn amounts(action: &str, keys: u64) -> CommandMaker {
    let action = Value::from(action).to_string();
    let keys = keys.max(1);
    Arc::new(move |n| {
        Bytes::from(format!(
            "{{\"action\":{action},\"key\":\"key-{}\",\"data\":{{\"amount\":{}}}}}",
            n % keys,
            1 + n % 100
        ))
    })
}

/// What to send and how hard.
#[derive(Clone)]
pub struct LoadConfig {
    /// The server.
    pub addr: SocketAddr,
    /// Keep-alive connections.
    pub connections: usize,
    /// Requests per second over all connections; `None` = as fast as possible.
    pub rate: Option<f64>,
    /// How long to send.
    pub duration: Duration,
    /// `?sync=true`: wait for each command's outcome.
    pub sync: bool,
    /// The commands to send.
    pub commands: CommandMaker,
}

impl LoadConfig {
    /// A load on the server at `url` (`http://host:port`), checked.
    ///
    /// # Errors
    ///
    /// The URL is not `http://host:port` or does not resolve, no
    /// connections, or a rate that is not positive.
    ///
    /// ```
    /// use kappa_gateway::load::{LoadConfig, amounts};
    /// use std::time::Duration;
    /// let c = LoadConfig::new("http://127.0.0.1:8080/", 4, Some(100.0), Duration::from_secs(1), false, amounts("add", 10));
    /// assert_eq!(c.unwrap().addr.port(), 8080);
    /// assert!(LoadConfig::new("127.0.0.1:8080", 4, None, Duration::from_secs(1), false, amounts("add", 10)).is_err());
    /// ```
    pub fn new(
        url: &str,
        connections: usize,
        rate: Option<f64>,
        duration: Duration,
        sync: bool,
        commands: CommandMaker,
    ) -> Result<Self, ClientError> {
        let bad = |m: String| ClientError::Http(m);
        let host = url
            .strip_prefix("http://")
            .ok_or_else(|| bad(format!("{url:?}: the URL must start with http://")))?
            .trim_end_matches('/');
        let addr = std::net::ToSocketAddrs::to_socket_addrs(host)
            .map_err(|e| bad(format!("resolving {host}: {e}")))?
            .next()
            .ok_or_else(|| bad(format!("{host} has no address")))?;
        if connections == 0 {
            return Err(bad("at least one connection is needed".to_owned()));
        }
        if rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
            return Err(bad("the rate must be positive".to_owned()));
        }
        Ok(Self {
            addr,
            connections,
            rate,
            duration,
            sync,
            commands,
        })
    }
}

impl std::fmt::Debug for LoadConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadConfig")
            .field("addr", &self.addr)
            .field("connections", &self.connections)
            .field("rate", &self.rate)
            .field("duration", &self.duration)
            .field("sync", &self.sync)
            .finish_non_exhaustive()
    }
}

/// What a run measured.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    /// Requests answered with 2xx.
    pub ok: u64,
    /// Requests answered otherwise, or failed.
    pub errors: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Latencies of answered requests, microseconds, sorted.
    pub latencies_us: Vec<u32>,
}

impl LoadReport {
    /// Successful requests per second.
    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// A latency percentile in milliseconds (`q` in 0..=1).
    pub fn percentile_ms(&self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies_us.len() - 1) as f64 * q).round() as usize;
        f64::from(self.latencies_us[i]) / 1000.0
    }

    /// The figures on one line: count, throughput, errors, latency percentiles.
    pub fn summary(&self, sync: bool) -> String {
        format!(
            "{} {} commands: {:.0}/s ok, {} errors; latency ms p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}",
            self.ok,
            if sync { "sync" } else { "async" },
            self.throughput(),
            self.errors,
            self.percentile_ms(0.5),
            self.percentile_ms(0.9),
            self.percentile_ms(0.99),
            self.percentile_ms(0.999),
            self.percentile_ms(1.0),
        )
    }

    /// The figures as JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "ok": self.ok,
            "errors": self.errors,
            "seconds": self.elapsed.as_secs_f64(),
            "throughput_per_s": self.throughput(),
            "latency_ms": {
                "p50": self.percentile_ms(0.50),
                "p90": self.percentile_ms(0.90),
                "p99": self.percentile_ms(0.99),
                "p999": self.percentile_ms(0.999),
                "max": self.percentile_ms(1.0),
            }
        })
    }
}

/// Sends commands per `config` over HTTP/1.1 (`POST /commands`), one
/// keep-alive connection per `connections`, and measures the answers.
///
/// # Errors
///
/// A connection could not be opened.
pub async fn run(config: &LoadConfig) -> Result<LoadReport, ClientError> {
    let mut clients = Vec::with_capacity(config.connections);
    for _ in 0..config.connections {
        clients.push(HttpSender {
            client: HttpClient::connect(config.addr).await?,
            path: if config.sync {
                "/commands?sync=true"
            } else {
                "/commands"
            },
        });
    }
    drive(config, clients).await
}

/// Sends commands per `config` over gRPC (`SendCommand`, with `wait` when
/// `sync`), one HTTP/2 connection per `connections` with one call in
/// flight on each, as [`run`] does over HTTP/1.1, and measures the answers.
///
/// # Errors
///
/// A connection could not be opened, or the commands `config` makes are
/// not `{"action", "key"?, "data"}` objects.
pub async fn run_grpc(config: &LoadConfig) -> Result<LoadReport, ClientError> {
    use crate::grpc::proto::gateway_client::GatewayClient;
    let mut clients = Vec::with_capacity(config.connections);
    for _ in 0..config.connections {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", config.addr))
            .map_err(http)?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(http)?;
        clients.push(GrpcSender {
            client: GatewayClient::new(channel),
            wait: config.sync,
        });
    }
    // A command the maker cannot describe fails here, not as errors later.
    if let Some(first) = clients.first() {
        first.request(&(config.commands)(0))?;
    }
    drive(config, clients).await
}

/// One connection's way of sending a command; true when it was accepted.
trait Sender: Send + 'static {
    fn send(
        &mut self,
        command: Bytes,
    ) -> impl std::future::Future<Output = Result<bool, ClientError>> + Send;
}

struct HttpSender {
    client: HttpClient,
    path: &'static str,
}

impl Sender for HttpSender {
    async fn send(&mut self, command: Bytes) -> Result<bool, ClientError> {
        let r = self
            .client
            .request(Method::POST, self.path, &[], command)
            .await?;
        Ok(r.status.is_success())
    }
}

struct GrpcSender {
    client: crate::grpc::proto::gateway_client::GatewayClient<tonic::transport::Channel>,
    wait: bool,
}

/// A command body as the HTTP API takes it, read for its parts.
#[derive(serde::Deserialize)]
struct CommandParts<'a> {
    #[serde(borrow)]
    action: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    data: &'a serde_json::value::RawValue,
    #[serde(default)]
    key: Option<String>,
}

impl GrpcSender {
    fn request(
        &self,
        command: &[u8],
    ) -> Result<crate::grpc::proto::SendCommandRequest, ClientError> {
        let parts: CommandParts<'_> = serde_json::from_slice(command).map_err(|e| {
            http(format!(
                "a command to send is not {{action, key, data}}: {e}"
            ))
        })?;
        Ok(crate::grpc::proto::SendCommandRequest {
            action: parts.action.into_owned(),
            data_json: parts.data.get().to_owned(),
            key: parts.key,
            wait: self.wait,
            ..Default::default()
        })
    }
}

impl Sender for GrpcSender {
    async fn send(&mut self, command: Bytes) -> Result<bool, ClientError> {
        let request = self.request(&command)?;
        match self.client.send_command(request).await {
            Ok(_) => Ok(true),
            // A refusal carries the service's problem and counts as an
            // error; without one the connection failed, which ends the caller.
            Err(status)
                if status
                    .metadata()
                    .get_bin(crate::grpc::PROBLEM_METADATA)
                    .is_none() =>
            {
                Err(http(status))
            }
            Err(_) => Ok(false),
        }
    }
}

/// Drives one caller per client for `config.duration`, at `config.rate`
/// when given (each request scheduled at a fixed time and measured from
/// it), and adds up what they measured.
async fn drive<S: Sender>(config: &LoadConfig, clients: Vec<S>) -> Result<LoadReport, ClientError> {
    let started = Instant::now();
    let deadline = started + config.duration;
    let per_connection = config.rate.map(|r| r / config.connections as f64);
    let mut tasks = Vec::with_capacity(config.connections);
    for (c, mut client) in clients.into_iter().enumerate() {
        let make = config.commands.clone();
        let stride = config.connections as u64;
        tasks.push(tokio::spawn(async move {
            let mut report = LoadReport::default();
            let interval = per_connection.map(|r| Duration::from_secs_f64(1.0 / r));
            // Connections start spread over one interval, not all at once.
            let mut next =
                started + interval.map_or(Duration::ZERO, |i| i.mul_f64(c as f64 / stride as f64));
            let mut n = c as u64;
            loop {
                let scheduled = match interval {
                    Some(i) => {
                        tokio::time::sleep_until(next.into()).await;
                        let s = next;
                        next += i;
                        s
                    }
                    None => Instant::now(),
                };
                if scheduled >= deadline {
                    break;
                }
                let body = make(n);
                n += stride;
                let result = client.send(body).await;
                let took = scheduled.elapsed();
                match result {
                    Ok(true) => {
                        report.ok += 1;
                        report
                            .latencies_us
                            .push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
                    }
                    Ok(false) => report.errors += 1,
                    Err(_) => {
                        report.errors += 1;
                        break;
                    }
                }
            }
            report
        }));
    }
    let mut total = LoadReport::default();
    for t in tasks {
        if let Ok(r) = t.await {
            total.ok += r.ok;
            total.errors += r.errors;
            total.latencies_us.extend(r.latencies_us);
        }
    }
    total.elapsed = started.elapsed();
    total.latencies_us.sort_unstable();
    Ok(total)
}
