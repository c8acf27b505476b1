//! The gateway over TLS: a client that trusts the certificate gets answers
//! (and a live stream); plain HTTP and clients that do not trust it get
//! nothing; bad certificate files are refused with the reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use kappa_gateway::GatewayConfig;
use kappa_log::{EmbeddedLog, Log};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The demo service on a scratch log, served by `Gateway::serve`.
struct Serving {
    addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    gateway: Arc<kappa_gateway::Gateway>,
    streams: Arc<kappa_streams::Streams>,
    _dir: tempfile::TempDir,
}

async fn serving(config: GatewayConfig, tls: Option<Arc<rustls::ServerConfig>>) -> Serving {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn Log> = Arc::new(EmbeddedLog::open(dir.path()).unwrap());
    let (gateway, streams) =
        kappa_gateway::demo::start(log, config, Duration::from_millis(2)).unwrap();
    let gateway = Arc::new(gateway);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(gateway.clone().serve(listener, tls, async {
        let _ = stopped.await;
    }));
    Serving {
        addr,
        stop,
        server,
        gateway,
        streams,
        _dir: dir,
    }
}

impl Serving {
    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.server.await.unwrap().unwrap();
        drop(self.gateway);
        drop(self.streams);
    }
}

/// Sends one request over a TLS connection that trusts `roots`; the response text.
async fn get(
    addr: std::net::SocketAddr,
    roots: rustls::RootCertStore,
    request: &str,
) -> std::io::Result<String> {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    tls.write_all(request.as_bytes()).await?;
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_over_tls_only_to_clients_that_trust_it() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_pem = cert.cert.pem();
    let key_pem = cert.signing_key.serialize_pem();
    assert!(kappa_gateway::tls::server_config(b"", key_pem.as_bytes()).is_err());
    assert!(kappa_gateway::tls::server_config(cert_pem.as_bytes(), b"not a key").is_err());
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let err = kappa_gateway::tls::server_config(
        cert_pem.as_bytes(),
        other.signing_key.serialize_pem().as_bytes(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("does not fit"), "{err}");
    let tls = kappa_gateway::tls::server_config(cert_pem.as_bytes(), key_pem.as_bytes()).unwrap();

    let s = serving(
        GatewayConfig {
            partitions: 1,
            ..GatewayConfig::default()
        },
        Some(tls),
    )
    .await;
    let addr = s.addr;

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(cert.cert.der().to_vec()))
        .unwrap();
    let answer = get(
        addr,
        roots.clone(),
        "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"status\":\"ok\""), "{answer}");
    let body = r#"{"action":"add","key":"acct-1","data":{"amount":3}}"#;
    let answer = get(
        addr,
        roots.clone(),
        &format!("POST /commands?sync=true HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()),
    )
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");

    // A client that does not trust the certificate, and plain HTTP, get nothing.
    let mut strangers = rustls::RootCertStore::empty();
    strangers
        .add(CertificateDer::from(other.cert.der().to_vec()))
        .unwrap();
    assert!(
        get(addr, strangers, "GET /health HTTP/1.1\r\n\r\n")
            .await
            .is_err()
    );
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = plain.read_to_end(&mut out).await;
    assert!(
        !String::from_utf8_lossy(&out).contains("200"),
        "plain HTTP answered: {out:?}"
    );

    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_slow_to_send_its_headers_is_cut_off() {
    let config = GatewayConfig {
        partitions: 1,
        header_read_timeout: Duration::from_millis(300),
        ..GatewayConfig::default()
    };
    let s = serving(config, None).await;
    let addr = s.addr;
    // A whole request is answered.
    let mut c = kappa_gateway::load::HttpClient::connect(addr)
        .await
        .unwrap();
    assert_eq!(c.get("/health").await.unwrap().status, 200);
    // Half a request is not waited for: the server closes the connection.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut out)).await;
    assert!(closed.is_ok(), "the connection was still open after 10 s");
    assert!(!String::from_utf8_lossy(&out).contains(" 200 "), "{out:?}");
    drop(c);
    s.stop().await;
}
