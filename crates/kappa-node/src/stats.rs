//! The node's figures: connections, bytes, requests by API and error,
//! request latency, and groups by state.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, Weak};
use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::ApiKey;

use crate::groups::{Coordinator, GroupState};
use crate::versions::SUPPORTED_APIS;

/// Upper bounds of the latency buckets, in microseconds.
const LATENCY_BUCKETS_US: [u64; 14] = [
    250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 10_000_000,
];

/// How long one API's requests took, from decoded to answered.
#[derive(Debug, Default)]
struct Latency {
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Latency {
    fn observe(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        if let Some(i) = LATENCY_BUCKETS_US.iter().position(|b| us <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }
}

/// One line of the figures in Prometheus' text format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// The family it belongs to (its `# TYPE` line).
    pub family: &'static str,
    /// Prometheus' kind of the family: `gauge`, `counter` or `histogram`.
    pub kind: &'static str,
    /// The sample's own name: the family's, or a histogram's `_bucket`,
    /// `_sum` or `_count`.
    pub name: String,
    /// The text between the braces, empty for none.
    pub labels: String,
    /// The value, formatted.
    pub value: String,
}

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
    latency: [Latency; SUPPORTED_APIS.len()],
    /// Error codes answered (not 0), by API key and code.
    errors: Mutex<BTreeMap<(i16, i16), u64>>,
    groups: OnceLock<Weak<Coordinator>>,
}

impl NodeStats {
    pub(crate) fn count_request(&self, key: ApiKey) {
        if let Some(i) = SUPPORTED_APIS.iter().position(|a| a.key == key) {
            self.requests[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts the error codes of one answer, and how long it took.
    pub(crate) fn count_answer(
        &self,
        key: ApiKey,
        took: Duration,
        codes: impl FnOnce(&mut dyn FnMut(i16)),
    ) {
        if let Some(i) = SUPPORTED_APIS.iter().position(|a| a.key == key) {
            self.latency[i].observe(took);
        }
        // Codes are visited in place, so an answer without errors costs
        // neither an allocation nor the lock.
        let mut errors = None;
        codes(&mut |code| {
            if code != 0 {
                let errors = errors.get_or_insert_with(|| {
                    self.errors
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                });
                *errors.entry((key as i16, code)).or_insert(0) += 1;
            }
        });
    }

    /// Lets the figures show the coordinator's groups by state.
    pub(crate) fn watch_groups(&self, groups: Weak<Coordinator>) {
        let _ = self.groups.set(groups);
    }

    /// Answers of one API that carried `code` (per partition, topic or
    /// group, wherever the API puts its codes) since start.
    pub fn errors(&self, key: ApiKey, code: i16) -> u64 {
        self.errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&(key as i16, code))
            .copied()
            .unwrap_or(0)
    }

    /// Requests served of one API since start.
    pub fn requests(&self, key: ApiKey) -> u64 {
        SUPPORTED_APIS
            .iter()
            .position(|a| a.key == key)
            .map_or(0, |i| self.requests[i].load(Ordering::Relaxed))
    }

    /// Every figure, grouped by family, for a metrics endpoint to render.
    pub fn samples(&self) -> Vec<Sample> {
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
        let sample = |family, kind, name: &str, labels: String, value: String| Sample {
            family,
            kind,
            name: name.to_string(),
            labels,
            value,
        };
        let mut out: Vec<Sample> = plain
            .into_iter()
            .map(|(name, kind, v)| {
                sample(
                    name,
                    kind,
                    name,
                    String::new(),
                    v.load(Ordering::Relaxed).to_string(),
                )
            })
            .collect();
        for (api, n) in SUPPORTED_APIS.iter().zip(&self.requests) {
            let name = "kappa_node_requests_total";
            let labels = format!("api=\"{:?}\"", api.key);
            out.push(sample(
                name,
                "counter",
                name,
                labels,
                n.load(Ordering::Relaxed).to_string(),
            ));
        }
        let errors = self
            .errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        for ((key, code), n) in errors {
            let name = "kappa_node_errors_total";
            let api = ApiKey::try_from(key).map_or_else(|()| key.to_string(), |k| format!("{k:?}"));
            let error = ResponseError::try_from_code(code)
                .map_or_else(|| code.to_string(), |e| format!("{e:?}"));
            let labels = format!("api=\"{api}\",code=\"{code}\",error=\"{error}\"");
            out.push(sample(name, "counter", name, labels, n.to_string()));
        }
        let family = "kappa_node_request_seconds";
        for (api, latency) in SUPPORTED_APIS.iter().zip(&self.latency) {
            let count = latency.count.load(Ordering::Relaxed);
            if count == 0 {
                continue;
            }
            let api = format!("{:?}", api.key);
            let mut cumulative = 0;
            for (bound, n) in LATENCY_BUCKETS_US.iter().zip(&latency.buckets) {
                cumulative += n.load(Ordering::Relaxed);
                let le = *bound as f64 / 1e6;
                out.push(sample(
                    family,
                    "histogram",
                    "kappa_node_request_seconds_bucket",
                    format!("api=\"{api}\",le=\"{le}\""),
                    cumulative.to_string(),
                ));
            }
            out.push(sample(
                family,
                "histogram",
                "kappa_node_request_seconds_bucket",
                format!("api=\"{api}\",le=\"+Inf\""),
                count.to_string(),
            ));
            let sum = latency.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
            out.push(sample(
                family,
                "histogram",
                "kappa_node_request_seconds_sum",
                format!("api=\"{api}\""),
                sum.to_string(),
            ));
            out.push(sample(
                family,
                "histogram",
                "kappa_node_request_seconds_count",
                format!("api=\"{api}\""),
                count.to_string(),
            ));
        }
        if let Some(groups) = self.groups.get().and_then(Weak::upgrade) {
            let by_state = groups.count_by_state();
            for state in GroupState::ALL {
                let n = by_state.iter().filter(|s| **s == state).count();
                let name = "kappa_node_groups";
                out.push(sample(
                    name,
                    "gauge",
                    name,
                    format!("state=\"{}\"", state.name()),
                    n.to_string(),
                ));
            }
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
        for s in self.samples() {
            if s.family != last {
                let _ = writeln!(out, "# TYPE {} {}", s.family, s.kind);
                last = s.family;
            }
            if s.labels.is_empty() {
                let _ = writeln!(out, "{} {}", s.name, s.value);
            } else {
                let _ = writeln!(out, "{}{{{}}} {}", s.name, s.labels, s.value);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_counted_by_api_and_code_and_latency_lands_in_its_bucket() {
        let stats = NodeStats::default();
        stats.count_answer(ApiKey::Produce, Duration::from_micros(700), |f| {
            [0, 3, 3, 0].into_iter().for_each(f);
        });
        stats.count_answer(ApiKey::Produce, Duration::from_millis(3), |f| f(0));
        assert_eq!(stats.errors(ApiKey::Produce, 3), 2);
        assert_eq!(
            stats.errors(ApiKey::Produce, 0),
            0,
            "successes are not errors"
        );
        let text = stats.render_prometheus();
        assert!(text.contains(
            "kappa_node_errors_total{api=\"Produce\",code=\"3\",error=\"UnknownTopicOrPartition\"} 2"
        ), "{text}");
        assert_eq!(
            text.matches("# TYPE kappa_node_request_seconds histogram")
                .count(),
            1
        );
        for (le, n) in [
            ("0.0005", 0),
            ("0.001", 1),
            ("0.0025", 1),
            ("0.005", 2),
            ("+Inf", 2),
        ] {
            let line =
                format!("kappa_node_request_seconds_bucket{{api=\"Produce\",le=\"{le}\"}} {n}");
            assert!(text.contains(&line), "{line} in {text}");
        }
        assert!(text.contains("kappa_node_request_seconds_count{api=\"Produce\"} 2"));
        assert!(
            !text.contains("api=\"Fetch\",le"),
            "no histogram for an API never asked"
        );
    }
}
