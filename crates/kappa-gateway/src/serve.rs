//! Serving the gateway, over plain HTTP or TLS (rustls): one accept loop,
//! each connection (and its TLS handshake) on a task of its own, a bound on
//! how long a client may take to send its headers (slowloris), and a
//! graceful shutdown that ends live streams and lets answers complete.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::GatewayError;
use crate::gateway::Gateway;

/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Completes when the process is asked to stop: ctrl-c (SIGINT) or, on
/// Unix, SIGTERM (what service managers send).
///
/// ```no_run
/// # async fn demo() {
/// kappa_gateway::interrupted().await;
/// println!("stopping");
/// # }
/// ```
pub async fn interrupted() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// A TLS server configuration from a certificate chain and its private key,
/// both PEM. Offers HTTP/2 (gRPC needs it) and HTTP/1.1.
///
/// # Errors
///
/// No certificate, no key, or a key that does not match.
pub fn server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<rustls::ServerConfig>, GatewayError> {
    let bad = |what: String| GatewayError::Config(format!("TLS: {what}"));
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| bad(format!("reading the certificate chain: {e}")))?;
    if certs.is_empty() {
        return Err(bad("the certificate file holds no certificate".to_owned()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| bad(format!("reading the private key: {e}")))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| bad(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| bad(format!("the key does not fit the certificate: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// As [`server_config`], reading the certificate chain and key from PEM files.
///
/// # Errors
///
/// A file that cannot be read, and as [`server_config`].
pub fn server_config_from_files(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Arc<rustls::ServerConfig>, GatewayError> {
    let read = |p: &std::path::Path| {
        std::fs::read(p)
            .map_err(|e| GatewayError::Config(format!("TLS: reading {}: {e}", p.display())))
    };
    server_config(&read(cert)?, &read(key)?)
}

impl Gateway {
    /// Serves the gateway on `listener` (plain HTTP) until [`interrupted`],
    /// then shuts down gracefully: live streams end, answers in flight complete.
    ///
    /// # Errors
    ///
    /// The listener failed.
    pub async fn serve_until_interrupted(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
    ) -> std::io::Result<()> {
        self.serve(listener, None, interrupted()).await
    }

    /// Serves the gateway over TLS on `listener` until [`interrupted`],
    /// then shuts down gracefully: live streams end, answers in flight complete.
    ///
    /// # Errors
    ///
    /// The listener failed.
    pub async fn serve_tls_until_interrupted(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        tls: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<()> {
        self.serve(listener, Some(tls), interrupted()).await
    }

    /// Serves the gateway on `listener`, over TLS when `tls` is given,
    /// until `stop` completes; then ends live streams and waits for the
    /// answers in flight.
    ///
    /// ```no_run
    /// # async fn demo(gateway: std::sync::Arc<kappa_gateway::Gateway>) -> std::io::Result<()> {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    /// gateway.serve(listener, None, async { let _ = tokio::signal::ctrl_c().await; }).await
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// The listener failed.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        stop: impl std::future::Future<Output = ()>,
    ) -> std::io::Result<()> {
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let router = self.router();
        let header_timeout = self.header_read_timeout();
        let graceful = GracefulShutdown::new();
        let mut stop = std::pin::pin!(stop);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let tcp = match accepted {
                        Ok((tcp, _)) => tcp,
                        Err(e) => {
                            // Out of file descriptors, say: keep serving the others.
                            tracing::warn!(error = %e, "accepting a connection failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let acceptor = acceptor.clone();
                    let service = TowerToHyperService::new(router.clone());
                    let watcher = graceful.watcher();
                    tokio::spawn(async move {
                        let Some(acceptor) = acceptor else {
                            serve_connection(tcp, service, watcher, header_timeout).await;
                            return;
                        };
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(tls)) => serve_connection(tls, service, watcher, header_timeout).await,
                            Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                            Err(_) => tracing::debug!("TLS handshake timed out"),
                        }
                    });
                }
                () = &mut stop => break,
            }
        }
        self.close_live_streams();
        graceful.shutdown().await;
        Ok(())
    }
}

/// Serves one connection's requests until it closes or the server stops:
/// HTTP/1.1, or HTTP/2 (gRPC, and HTTP clients that speak it) when the
/// client opens with its preface or chose it in the TLS handshake.
async fn serve_connection<IO>(
    io: IO,
    service: TowerToHyperService<axum::Router>,
    watcher: hyper_util::server::graceful::Watcher,
    header_timeout: Duration,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .into_owned();
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, "connection ended");
    }
}
