//! The figures of a Kafka-protocol node in a service's `/metrics`.

use std::sync::Arc;

use kappa_service::{MetricFamilies, MetricsSource};

/// A service that also serves its log over the Kafka protocol
/// (`--kafka-listen`) shows the node's figures (connections, requests by
/// API, refusals, groups) beside its own.
///
/// ```no_run
/// # async fn demo(
/// #     log: std::sync::Arc<dyn kappa_log::Log>,
/// #     builder: kappa_gateway::GatewayBuilder,
/// # ) -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// let addr = "127.0.0.1:9092".parse()?;
/// let node = kappa_node::Node::bind(log, kappa_node::NodeConfig::new(addr)).await?;
/// let builder = builder.metrics(Arc::new(kappa_gateway::NodeMetrics::new(node.stats())));
/// # Ok(()) }
/// ```
pub struct NodeMetrics(Arc<kappa_node::NodeStats>);

impl NodeMetrics {
    /// The figures of the node whose statistics are `stats`.
    pub fn new(stats: Arc<kappa_node::NodeStats>) -> Self {
        Self(stats)
    }
}

impl MetricsSource for NodeMetrics {
    fn collect(&self, families: &mut MetricFamilies) {
        for s in self.0.samples() {
            families.add_sample(s.family, s.kind, &s.name, &s.labels, s.value);
        }
    }
}
