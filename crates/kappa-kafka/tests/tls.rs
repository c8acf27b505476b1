//! The Kafka backend over TLS: librdkafka is built with OpenSSL and the
//! security settings come through the log's URL. tansu speaks plain TCP,
//! so the test puts a TLS terminator (rustls) in front of it and has tansu
//! advertise the terminator's address: every connection a client makes,
//! bootstrap and leaders alike, is TLS. A client that does not trust the
//! certificate, or that does not speak TLS, gets no log.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kappa_kafka::testing::Tansu;
use kappa_kafka::{KafkaConfig, KafkaLog};
use kappa_log::{FetchLimits, Log, ProducerRecord, TopicPartition, TopicSpec};

/// Accepts TLS on `listener` and relays each connection's plaintext to
/// `upstream`; counts the completed handshakes.
async fn terminate(
    listener: tokio::net::TcpListener,
    upstream: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    handshakes: Arc<AtomicUsize>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let (acceptor, handshakes) = (acceptor.clone(), handshakes.clone());
        tokio::spawn(async move {
            // A client that fails the handshake (distrust, plain TCP) is dropped.
            let Ok(mut secure) = acceptor.accept(tcp).await else {
                return;
            };
            handshakes.fetch_add(1, Ordering::Relaxed);
            let Ok(mut plain) = tokio::net::TcpStream::connect(upstream).await else {
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut secure, &mut plain).await;
        });
    }
}

fn server_config(cert: &rcgen::CertifiedKey<rcgen::KeyPair>) -> Arc<rustls::ServerConfig> {
    let chain = vec![rustls::pki_types::CertificateDer::from(
        cert.cert.der().to_vec(),
    )];
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
    Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap(),
    )
}

/// A log's settings for the terminator at `port`: the URL an operator
/// would write, with a short timeout so refusals come quickly.
fn config(port: u16, query: &str, state: &std::path::Path) -> KafkaConfig {
    let url = format!(
        "kafka://localhost:{port}?{query}&broker.address.family=v4&kappa.compat=tansu-0.6&kappa.timeout.ms=5000"
    );
    KafkaConfig::from_url(&url, state).unwrap()
}

#[test]
fn the_log_works_over_tls_and_only_for_clients_that_trust_the_broker() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let broker = Tansu::start_advertising(&format!("localhost:{port}")).unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let handshakes = Arc::new(AtomicUsize::new(0));
    runtime.spawn(terminate(
        listener,
        broker.bootstrap().parse().unwrap(),
        server_config(&cert),
        handshakes.clone(),
    ));
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, cert.cert.pem()).unwrap();
    let stranger = dir.path().join("stranger.pem");
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(&stranger, other.cert.pem()).unwrap();

    let secure = format!("security.protocol=ssl&ssl.ca.location={}", ca.display());
    let log = KafkaLog::open(config(port, &secure, &dir.path().join("a"))).unwrap();
    log.create_topic(&TopicSpec::new("secure", 1)).unwrap();
    let written: Vec<String> = (0..5).map(|i| format!("over tls {i}")).collect();
    log.append(
        "secure",
        written
            .iter()
            .map(|v| ProducerRecord::value(v.clone()).with_key("k"))
            .collect(),
    )
    .unwrap();
    let mut read = Vec::new();
    log.fetch(
        &[(TopicPartition::new("secure", 0), 0)],
        FetchLimits {
            wait_max: Duration::from_secs(5),
            ..FetchLimits::default()
        },
        &mut read,
    )
    .unwrap();
    let values: Vec<String> = read
        .iter()
        .map(|r| String::from_utf8(r.value.as_ref().unwrap().to_vec()).unwrap())
        .collect();
    assert_eq!(values, written);
    assert!(
        handshakes.load(Ordering::Relaxed) > 0,
        "the clients spoke TLS"
    );
    drop(log);

    // A client that trusts another certificate, and one that speaks plain
    // TCP to the TLS port, are refused.
    let distrusting = format!(
        "security.protocol=ssl&ssl.ca.location={}",
        stranger.display()
    );
    let topics = |query: &str, state: &str| {
        KafkaLog::open(config(port, query, &dir.path().join(state))).and_then(|l| l.list_topics())
    };
    let refused = topics(&distrusting, "b");
    assert!(
        refused.is_err(),
        "a client that distrusts the broker listed topics: {refused:?}"
    );
    let plain = topics("security.protocol=plaintext", "c");
    assert!(
        plain.is_err(),
        "a plaintext client listed topics on the TLS port: {plain:?}"
    );
}
