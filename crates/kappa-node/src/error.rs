//! The node's errors: what stops it from starting or serving.

use std::net::SocketAddr;

/// Everything starting or running a node can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The listen address is not a loopback address.
    #[error(
        "refusing to serve the log on {0}: a listener on a non-loopback address needs TLS (a certificate and key) and SASL users in the security settings"
    )]
    NotLoopback(SocketAddr),
    /// The advertised address does not parse.
    #[error("invalid advertised address {0:?}: expected HOST:PORT")]
    InvalidAdvertise(String),
    /// Binding the listener failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The node's runtime could not be started.
    #[error("cannot start the node's runtime: {0}")]
    Runtime(std::io::Error),
    /// The log failed while the node loaded its state.
    #[error("log: {0}")]
    Log(#[from] kappa_log::LogError),
    /// The node's stored state does not decode.
    #[error("corrupt node state under metadata key {key:?}: {detail}")]
    CorruptState {
        /// The metadata key.
        key: String,
        /// What is wrong.
        detail: String,
    },
}
