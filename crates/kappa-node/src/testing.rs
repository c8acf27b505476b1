//! A node for tests and benchmarks: serves a log on a free loopback port
//! from a runtime of its own, until dropped.

use std::sync::Arc;

use kappa_log::Log;

use crate::{Node, NodeConfig, NodeError, NodeStats};

/// A node serving a log in the background.
///
/// ```
/// use std::sync::Arc;
/// let log = Arc::new(kappa_log::MemoryLog::new());
/// let node = kappa_node::testing::TestNode::start(log)?;
/// assert!(node.bootstrap().starts_with("127.0.0.1:"));
/// # Ok::<_, kappa_node::NodeError>(())
/// ```
pub struct TestNode {
    bootstrap: String,
    stats: Arc<NodeStats>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TestNode {
    /// Starts serving `log` on `127.0.0.1` and a free port.
    ///
    /// # Errors
    ///
    /// The runtime or the listener cannot be made, or the log fails while
    /// the node loads its state.
    pub fn start(log: Arc<dyn Log>) -> Result<Self, NodeError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kappa-test-node")
            .enable_all()
            .build()
            .map_err(NodeError::Runtime)?;
        let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let node = runtime.block_on(Node::bind(log, NodeConfig::new(loopback)))?;
        let bootstrap = node.local_addr().to_string();
        let stats = node.stats();
        runtime.spawn(node.serve(std::future::pending()));
        Ok(Self {
            bootstrap,
            stats,
            runtime: Some(runtime),
        })
    }

    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// The node's figures.
    pub fn stats(&self) -> &NodeStats {
        &self.stats
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
