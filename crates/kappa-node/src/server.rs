//! The listener and its connections: frames in, responses out in request order.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, RequestKind, ResponseKind, SaslAuthenticateResponse, SaslHandshakeResponse,
};
use kappa_auth::Principal;
use kappa_log::{Commit, Log};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::apis::{self, Pending, RequestContext};
use crate::committer::Committer;
use crate::config::NodeConfig;
use crate::decode::{self, Refusal};
use crate::error::NodeError;
use crate::frame::{FrameError, read_frame};
use crate::groups::Coordinator;
use crate::logins::FailedLogins;
use crate::producers::{ProducerIds, Sequences};
use crate::security::{Exchange, Mechanism, Step};
use crate::stats::NodeStats;
use crate::transactions::Transactions;

const CLUSTER_ID_KEY: &[u8] = b"kafka-node/cluster-id";
/// A client that has not finished its TLS handshake by then is dropped, so
/// half-open handshakes cannot pile up.
const TLS_HANDSHAKE_MAX: std::time::Duration = std::time::Duration::from_secs(10);

/// What every connection of a node shares.
pub(crate) struct Shared {
    pub log: Arc<dyn Log>,
    pub config: NodeConfig,
    pub cluster_id: String,
    pub advertised: (String, i32),
    pub ids: Arc<ProducerIds>,
    pub committer: Committer,
    pub groups: Arc<Coordinator>,
    pub transactions: Arc<Transactions>,
    pub stats: Arc<NodeStats>,
    pub logins: FailedLogins,
}

/// A node bound to its address, ready to serve.
pub struct Node {
    listener: TcpListener,
    local_addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Node {
    /// Loads the node's state from `log` and binds the listener.
    ///
    /// # Errors
    ///
    /// A listen address that is not loopback, an advertised address that
    /// does not parse, a bind failure, or a log failure while loading.
    pub async fn bind(log: Arc<dyn Log>, config: NodeConfig) -> Result<Self, NodeError> {
        let secured = config.security.as_ref().is_some_and(|s| s.tls.is_some());
        if !config.listen.ip().is_loopback() && !secured {
            return Err(NodeError::NotLoopback(config.listen));
        }
        if let Some(a) = &config.advertise
            && !matches!(a.rsplit_once(':'), Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok())
        {
            return Err(NodeError::InvalidAdvertise(a.clone()));
        }
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| NodeError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| NodeError::Bind {
            addr: config.listen,
            source,
        })?;
        let mut config = config;
        // Port 0 binds a free port; clients must be told the real one.
        config.listen = local_addr;
        let cluster_id = cluster_id(&*log)?;
        let ids = Arc::new(ProducerIds::load(&*log)?);
        let sequences = Sequences::load(&*log)?;
        let stats = Arc::new(NodeStats::default());
        let committer =
            Committer::start(log.clone(), ids.clone(), sequences, &config, stats.clone());
        let groups = Coordinator::start(&config);
        stats.watch_groups(Arc::downgrade(&groups));
        let transactions = Arc::new(Transactions::load(log.clone(), ids.clone())?);
        tokio::spawn(crate::transactions::expire_forever(Arc::downgrade(
            &transactions,
        )));
        let advertised = config.advertised();
        let logins = FailedLogins::new(config.sasl_failures_max, config.sasl_failure_window);
        tracing::info!(addr = %local_addr, cluster_id, "serving the log over the Kafka protocol");
        Ok(Self {
            listener,
            local_addr,
            shared: Arc::new(Shared {
                log,
                config,
                cluster_id,
                advertised,
                ids,
                committer,
                groups,
                transactions,
                stats,
                logins,
            }),
        })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The node's figures, live.
    pub fn stats(&self) -> Arc<NodeStats> {
        self.shared.stats.clone()
    }

    /// Serves connections until `shutdown` completes.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let open = self.shared.stats.connections_open.load(Ordering::Relaxed);
                        if open >= self.shared.config.connections_max as u64 {
                            tracing::warn!(%peer, open, "refusing a connection: too many open");
                            continue;
                        }
                        tokio::spawn(accept(self.shared.clone(), stream, peer));
                    }
                    // Out of descriptors and the like: the next accept may work.
                    Err(e) => tracing::warn!(error = %e, "accepting a connection failed"),
                },
            }
        }
        self.shared.groups.stop();
    }
}

fn cluster_id(log: &dyn Log) -> Result<String, NodeError> {
    if let Some(id) = log.metadata(CLUSTER_ID_KEY)? {
        return Ok(String::from_utf8_lossy(&id).into_owned());
    }
    // Kafka's cluster ids are 22 characters of URL-safe base64 of a UUID.
    let id = base64_url(uuid::Uuid::now_v7().as_bytes());
    let mut commit = Commit::new();
    commit.put_metadata(CLUSTER_ID_KEY, id.clone().into_bytes());
    log.commit(commit)?;
    Ok(id)
}

fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + 2);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// Starts TLS when the node speaks it, then serves the connection.
async fn accept(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let tls = shared.config.security.as_ref().and_then(|s| s.tls.clone());
    match tls {
        None => connection(shared, stream, peer).await,
        Some(tls) => match tokio::time::timeout(
            TLS_HANDSHAKE_MAX,
            tokio_rustls::TlsAcceptor::from(tls).accept(stream),
        )
        .await
        .unwrap_or_else(|_| Err(std::io::Error::from(std::io::ErrorKind::TimedOut)))
        {
            Ok(stream) => connection(shared, stream, peer).await,
            Err(e) => {
                tracing::info!(%peer, error = %e, "closing a connection: the TLS handshake failed");
                shared
                    .stats
                    .requests_refused
                    .fetch_add(1, Ordering::Relaxed);
            }
        },
    }
}

/// One connection's identity: who authenticated, and a SASL exchange
/// under way.
#[derive(Default)]
struct Session {
    principal: Option<Arc<Principal>>,
    exchange: Option<Exchange>,
}

/// What to do after a request.
enum Next {
    Continue,
    /// Send the answer, then close (a failed authentication).
    Close,
}

async fn connection<S>(shared: Arc<Shared>, stream: S, peer: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let stats = shared.stats.clone();
    stats.connections_open.fetch_add(1, Ordering::Relaxed);
    stats.connections_total.fetch_add(1, Ordering::Relaxed);
    let (mut reader, mut writer) = tokio::io::split(stream);
    // Responses go out in request order, whatever order handlers finish in;
    // the bound stops reading from a client that does not read its answers.
    let (tx, mut rx) = mpsc::channel::<Pending>(shared.config.in_flight_per_connection_max.max(1));
    let out_stats = stats.clone();
    let writer_task = tokio::spawn(async move {
        while let Some(pending) = rx.recv().await {
            match pending.into_response().await {
                Ok(Some(bytes)) => {
                    if writer.write_all(&bytes).await.is_err() {
                        break;
                    }
                    out_stats
                        .bytes_out
                        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                }
                Ok(None) => {}
                Err(reason) => {
                    tracing::warn!(%peer, reason, "closing a connection: a response could not be made");
                    break;
                }
            }
        }
        let _ = writer.shutdown().await;
    });
    let mut session = Session::default();
    loop {
        let frame = match read_frame(&mut reader, shared.config.frame_bytes_max).await {
            Ok(frame) => frame,
            Err(FrameError::Closed) => break,
            Err(FrameError::Size(size)) => {
                tracing::warn!(%peer, size, limit = shared.config.frame_bytes_max, "closing a connection: frame size out of bounds");
                stats.requests_refused.fetch_add(1, Ordering::Relaxed);
                break;
            }
            Err(FrameError::Io(e)) => {
                tracing::debug!(%peer, error = %e, "connection ended mid-frame");
                break;
            }
        };
        stats
            .bytes_in
            .fetch_add(frame.len() as u64 + 4, Ordering::Relaxed);
        match request(&shared, &mut session, frame, peer) {
            Ok((pending, next)) => {
                if tx.send(pending).await.is_err() {
                    break;
                }
                if matches!(next, Next::Close) {
                    break;
                }
            }
            Err(reason) => {
                tracing::warn!(%peer, reason, "closing a connection: bad request");
                stats.requests_refused.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
    }
    drop(tx);
    let _ = writer_task.await;
    stats.connections_open.fetch_sub(1, Ordering::Relaxed);
}

/// Decodes one request and starts handling it. An `Err` closes the
/// connection, as Kafka does for requests it cannot parse, and for
/// requests other than the handshake's before a client authenticated.
fn request(
    shared: &Arc<Shared>,
    session: &mut Session,
    frame: Bytes,
    peer: SocketAddr,
) -> Result<(Pending, Next), String> {
    let r = match decode::request(frame) {
        Ok(r) => r,
        Err(Refusal::ApiVersionsTooNew { correlation_id }) => {
            return Ok((
                apis::cluster::api_versions_unsupported(correlation_id),
                Next::Continue,
            ));
        }
        Err(Refusal::Close(why)) => return Err(why),
    };
    shared.stats.count_request(r.api_key);
    let must_authenticate = shared.config.security.is_some() && session.principal.is_none();
    if must_authenticate
        && !matches!(
            r.api_key,
            ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
        )
    {
        return Err(format!("{:?} before SASL authentication", r.api_key));
    }
    let ctx = RequestContext {
        shared: shared.clone(),
        api_key: r.api_key,
        version: r.version,
        correlation_id: r.header.correlation_id,
        client_id: r
            .header
            .client_id
            .map(|c| c.to_string())
            .unwrap_or_default(),
        peer,
        started: std::time::Instant::now(),
        principal: session.principal.clone(),
    };
    Ok(match r.body {
        RequestKind::SaslHandshake(req) => {
            let (body, chosen) = sasl_handshake(shared, session, req.mechanism.as_str());
            session.exchange = chosen.map(Exchange::Started);
            (Pending::Ready(ctx.respond(&body)), Next::Continue)
        }
        RequestKind::SaslAuthenticate(req) => {
            let (body, next) = sasl_authenticate(shared, session, &req.auth_bytes, peer);
            (Pending::Ready(ctx.respond(&body)), next)
        }
        body => (apis::dispatch(ctx, body), Next::Continue),
    })
}

fn sasl_handshake(
    shared: &Shared,
    session: &Session,
    asked: &str,
) -> (ResponseKind, Option<Mechanism>) {
    let offered: Vec<Mechanism> = match &shared.config.security {
        Some(_) => Mechanism::ALL.to_vec(),
        None => Vec::new(),
    };
    let mut r = SaslHandshakeResponse::default()
        .with_mechanisms(offered.iter().map(|m| apis::text(m.name())).collect());
    let chosen = Mechanism::named(asked).filter(|m| offered.contains(m));
    r.error_code = if session.principal.is_some() {
        crate::codes::ILLEGAL_SASL_STATE
    } else if chosen.is_none() {
        crate::codes::UNSUPPORTED_SASL_MECHANISM
    } else {
        crate::codes::NONE
    };
    let chosen = chosen.filter(|_| r.error_code == crate::codes::NONE);
    (ResponseKind::SaslHandshake(r), chosen)
}

fn sasl_authenticate(
    shared: &Shared,
    session: &mut Session,
    message: &[u8],
    peer: SocketAddr,
) -> (ResponseKind, Next) {
    let mut r = SaslAuthenticateResponse::default();
    let (Some(security), Some(exchange)) = (&shared.config.security, session.exchange.take())
    else {
        r.error_code = crate::codes::ILLEGAL_SASL_STATE;
        r.error_message = Some(apis::text(
            "SaslAuthenticate before a SaslHandshake chose a mechanism",
        ));
        return (ResponseKind::SaslAuthenticate(r), Next::Close);
    };
    let now = std::time::Instant::now();
    if let Some(wait) = shared.logins.locked(peer.ip(), now) {
        tracing::debug!(%peer, "refused an authentication: too many failures from this address");
        r.error_code = crate::codes::SASL_AUTHENTICATION_FAILED;
        r.error_message = Some(apis::text(format!(
            "too many failed authentications from this address; try again in {} s",
            wait.as_secs().max(1)
        )));
        return (ResponseKind::SaslAuthenticate(r), Next::Close);
    }
    match exchange.step(security, message) {
        Ok(Step::Continue(reply, exchange)) => {
            r.auth_bytes = Bytes::from(reply);
            session.exchange = Some(exchange);
            (ResponseKind::SaslAuthenticate(r), Next::Continue)
        }
        Ok(Step::Done(reply, principal)) => {
            tracing::info!(%peer, user = %principal.subject, "a Kafka client authenticated");
            r.auth_bytes = Bytes::from(reply);
            session.principal = Some(Arc::new(principal));
            (ResponseKind::SaslAuthenticate(r), Next::Continue)
        }
        Err(refused) => {
            if shared.logins.failed(peer.ip(), now) {
                tracing::warn!(
                    %peer,
                    reason = %refused.0,
                    failures = shared.config.sasl_failures_max,
                    window_s = shared.config.sasl_failure_window.as_secs(),
                    "a Kafka client failed to authenticate; its address may not try again until the window ends"
                );
            } else {
                tracing::warn!(%peer, reason = %refused.0, "a Kafka client failed to authenticate");
            }
            r.error_code = crate::codes::SASL_AUTHENTICATION_FAILED;
            r.error_message = Some(apis::text(refused.0));
            (ResponseKind::SaslAuthenticate(r), Next::Close)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cluster_ids_are_22_characters_of_url_safe_base64() {
        let id = super::base64_url(&[0xfb; 16]);
        assert_eq!(id.len(), 22);
        assert_eq!(super::base64_url(b"Man"), "TWFu");
        assert_eq!(super::base64_url(b"Ma"), "TWE");
    }
}
