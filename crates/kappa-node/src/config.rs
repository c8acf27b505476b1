//! How a node listens and what it tells clients.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::security::NodeSecurity;

/// Largest request frame accepted, in bytes (Kafka's `socket.request.max.bytes`).
pub const FRAME_BYTES_MAX_DEFAULT: usize = 100 * 1024 * 1024;

/// A node's settings.
///
/// ```
/// let config = kappa_node::NodeConfig::new("127.0.0.1:9092".parse().unwrap())
///     .advertise("localhost:9092");
/// assert_eq!(config.advertised(), ("localhost".to_string(), 9092));
/// ```
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Address to listen on. Only loopback addresses are accepted unless
    /// `security` has TLS and SASL users.
    pub listen: SocketAddr,
    /// TLS, SASL users and their policy; `None` serves every client
    /// everything, on loopback only.
    pub security: Option<Arc<NodeSecurity>>,
    /// `host:port` clients are told to connect to; the listen address when `None`.
    pub advertise: Option<String>,
    /// Largest request frame accepted; a larger one closes the connection.
    pub frame_bytes_max: usize,
    /// Requests one connection may have in flight before the node stops
    /// reading from it (back-pressure on a client that does not read).
    pub in_flight_per_connection_max: usize,
    /// Connections served at once; more are closed on accept.
    pub connections_max: usize,
    /// Whether `Metadata` creates a topic a client names (Kafka's
    /// `auto.create.topics.enable`); off by default.
    pub auto_create_topics: bool,
    /// Partitions of an automatically created topic.
    pub auto_create_partitions: u32,
    /// How long the first rebalance of an empty group waits for more
    /// members (Kafka's `group.initial.rebalance.delay.ms`).
    pub group_initial_rebalance_delay: Duration,
    /// Shortest and longest session timeout a group member may ask for.
    pub group_session_timeout_min: Duration,
    /// See [`NodeConfig::group_session_timeout_min`].
    pub group_session_timeout_max: Duration,
    /// Produce requests merged into one commit at most.
    pub group_commit_requests_max: usize,
    /// Failed SASL authentications an address may make within
    /// [`NodeConfig::sasl_failure_window`]; past them its attempts are
    /// refused until the window ends.
    pub sasl_failures_max: u32,
    /// See [`NodeConfig::sasl_failures_max`].
    pub sasl_failure_window: Duration,
}

impl NodeConfig {
    /// Settings with the defaults, listening on `listen`.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            security: None,
            advertise: None,
            frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
            in_flight_per_connection_max: 64,
            connections_max: 4096,
            auto_create_topics: false,
            auto_create_partitions: 1,
            group_initial_rebalance_delay: Duration::ZERO,
            group_session_timeout_min: Duration::from_millis(1000),
            group_session_timeout_max: Duration::from_secs(30 * 60),
            group_commit_requests_max: 256,
            sasl_failures_max: 10,
            sasl_failure_window: Duration::from_secs(60),
        }
    }

    /// Sets the advertised `host:port`.
    #[must_use]
    pub fn advertise(mut self, host_port: impl Into<String>) -> Self {
        self.advertise = Some(host_port.into());
        self
    }

    /// The host and port clients are told to connect to.
    pub fn advertised(&self) -> (String, i32) {
        if let Some(hp) = &self.advertise
            && let Some((host, port)) = hp.rsplit_once(':')
            && let Ok(port) = port.parse::<u16>()
        {
            return (host.trim_matches(['[', ']']).to_string(), i32::from(port));
        }
        (self.listen.ip().to_string(), i32::from(self.listen.port()))
    }
}
