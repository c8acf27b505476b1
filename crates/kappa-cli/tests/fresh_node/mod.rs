//! The set-up most single-node broker tests start from, on top of `node`
//! (which each test file declares beside this module).

use crate::node::{Broker, Cluster, runtime};

/// A `kappa broker` on a fresh log directory, with `topic` made
/// (`partitions` wide) through the returned runtime.
///
/// Bind it as `let (rt, dir, broker) = ...`: bindings drop in reverse, so
/// the broker stops before its directory goes.
pub fn node_with_topic(
    topic: &str,
    partitions: i32,
) -> (tokio::runtime::Runtime, tempfile::TempDir, Broker) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    broker.create_topic(&rt, topic, partitions);
    (rt, dir, broker)
}
