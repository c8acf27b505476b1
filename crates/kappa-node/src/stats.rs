//! The node's figures: connections, bytes and requests.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use kafka_protocol::messages::ApiKey;

use crate::versions::SUPPORTED_APIS;

/// Live counters of a node.
#[derive(Debug, Default)]
pub struct NodeStats {
    /// Connections open now.
    pub connections_open: AtomicU64,
    /// Connections accepted since start.
    pub connections_total: AtomicU64,
    /// Request bytes read, frames included.
    pub bytes_in: AtomicU64,
    /// Response bytes written, frames included.
    pub bytes_out: AtomicU64,
    /// Requests that closed their connection (bad frames, unknown APIs).
    pub requests_refused: AtomicU64,
    /// Records appended by produce requests.
    pub records_produced: AtomicU64,
    /// Commits made for produce requests (each may carry many requests).
    pub produce_commits: AtomicU64,
    /// Produce requests carried by those commits.
    pub produce_requests_committed: AtomicU64,
    /// Records returned by fetches.
    pub records_fetched: AtomicU64,
    requests: [AtomicU64; SUPPORTED_APIS.len()],
}

impl NodeStats {
    pub(crate) fn count_request(&self, key: ApiKey) {
        if let Some(i) = SUPPORTED_APIS.iter().position(|a| a.key == key) {
            self.requests[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Requests served of one API since start.
    pub fn requests(&self, key: ApiKey) -> u64 {
        SUPPORTED_APIS
            .iter()
            .position(|a| a.key == key)
            .map_or(0, |i| self.requests[i].load(Ordering::Relaxed))
    }

    /// Every figure as `(name, kind, labels, value)`, for a metrics
    /// endpoint to render (`kind` is Prometheus' `gauge` or `counter`).
    pub fn samples(&self) -> Vec<(&'static str, &'static str, String, u64)> {
        let plain: [(&'static str, &'static str, &AtomicU64); 9] = [
            (
                "kappa_node_connections_open",
                "gauge",
                &self.connections_open,
            ),
            (
                "kappa_node_connections_total",
                "counter",
                &self.connections_total,
            ),
            ("kappa_node_bytes_in_total", "counter", &self.bytes_in),
            ("kappa_node_bytes_out_total", "counter", &self.bytes_out),
            (
                "kappa_node_requests_refused_total",
                "counter",
                &self.requests_refused,
            ),
            (
                "kappa_node_records_produced_total",
                "counter",
                &self.records_produced,
            ),
            (
                "kappa_node_produce_commits_total",
                "counter",
                &self.produce_commits,
            ),
            (
                "kappa_node_produce_requests_committed_total",
                "counter",
                &self.produce_requests_committed,
            ),
            (
                "kappa_node_records_fetched_total",
                "counter",
                &self.records_fetched,
            ),
        ];
        let mut out: Vec<_> = plain
            .into_iter()
            .map(|(name, kind, v)| (name, kind, String::new(), v.load(Ordering::Relaxed)))
            .collect();
        for (api, n) in SUPPORTED_APIS.iter().zip(&self.requests) {
            out.push((
                "kappa_node_requests_total",
                "counter",
                format!("api=\"{:?}\"", api.key),
                n.load(Ordering::Relaxed),
            ));
        }
        out
    }

    /// The figures in Prometheus' text format.
    ///
    /// ```
    /// let stats = kappa_node::NodeStats::default();
    /// let text = stats.render_prometheus();
    /// assert!(text.contains("kappa_node_connections_open 0"));
    /// assert!(text.contains("kappa_node_requests_total{api=\"Produce\"} 0"));
    /// ```
    pub fn render_prometheus(&self) -> String {
        let mut out = String::new();
        let mut last = "";
        for (name, kind, labels, value) in self.samples() {
            if name != last {
                let _ = writeln!(out, "# TYPE {name} {kind}");
                last = name;
            }
            if labels.is_empty() {
                let _ = writeln!(out, "{name} {value}");
            } else {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        }
        out
    }
}
