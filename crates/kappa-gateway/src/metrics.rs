//! Request and command figures in Prometheus' text format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use kappa_service::metric_label as label;

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            self.counts[i] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }
}

/// Figures of one route.
#[derive(Default)]
struct RouteStats {
    /// Answers by (method, status).
    answers: Vec<(String, u16, u64)>,
    latency: Histogram,
}

/// The gateway's counters.
#[derive(Default)]
pub struct Metrics {
    routes: Mutex<BTreeMap<String, RouteStats>>,
    commands: Mutex<BTreeMap<String, u64>>,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
    auth_denied: Mutex<BTreeMap<&'static str, u64>>,
    sse_open: AtomicI64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Metrics {
    /// Counts one answered request (allocates only for a new route or status).
    pub fn request(&self, route: &str, method: &str, status: u16, took: Duration) {
        let mut routes = lock(&self.routes);
        if !routes.contains_key(route) {
            routes.insert(route.to_owned(), RouteStats::default());
        }
        let Some(stats) = routes.get_mut(route) else {
            return;
        };
        match stats
            .answers
            .iter_mut()
            .find(|(m, s, _)| m == method && *s == status)
        {
            Some((_, _, n)) => *n += 1,
            None => stats.answers.push((method.to_owned(), status, 1)),
        }
        stats.latency.observe(took.as_secs_f64());
    }

    /// Counts one accepted command.
    pub fn command(&self, action: &str) {
        if let Some(n) = lock(&self.commands).get_mut(action) {
            *n += 1;
            return;
        }
        lock(&self.commands).insert(action.to_owned(), 1);
    }

    /// Counts one refused command by reason.
    pub fn rejected(&self, reason: &'static str) {
        *lock(&self.rejected).entry(reason).or_default() += 1;
    }

    /// Counts one request refused for its credentials.
    pub fn auth_denied(&self, reason: &'static str) {
        *lock(&self.auth_denied).entry(reason).or_default() += 1;
    }

    /// A live stream opened (+1) or closed (-1).
    pub fn sse(&self, delta: i64) -> i64 {
        self.sse_open.fetch_add(delta, Ordering::AcqRel) + delta
    }

    /// Open live streams.
    pub fn sse_open(&self) -> i64 {
        self.sse_open.load(Ordering::Acquire)
    }

    /// Appends the figures in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let routes = lock(&self.routes);
        out.push_str("# HELP kappa_http_requests_total HTTP requests answered.\n# TYPE kappa_http_requests_total counter\n");
        for (route, stats) in routes.iter() {
            let route = label(route);
            let mut answers = stats.answers.clone();
            answers.sort();
            for (method, status, n) in answers {
                let _ = writeln!(
                    out,
                    "kappa_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP kappa_http_request_duration_seconds Time to answer (to the first byte for streams).\n# TYPE kappa_http_request_duration_seconds histogram\n");
        for (route, stats) in routes.iter() {
            let h = &stats.latency;
            let route = label(route);
            let mut cumulative = 0;
            for (bound, n) in BUCKETS.iter().zip(h.counts) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "kappa_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "kappa_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}\nkappa_http_request_duration_seconds_sum{{route=\"{route}\"}} {}\nkappa_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count, h.sum, h.count
            );
        }
        drop(routes);
        out.push_str("# HELP kappa_commands_total Commands accepted, by action.\n# TYPE kappa_commands_total counter\n");
        for (action, n) in lock(&self.commands).iter() {
            let _ = writeln!(
                out,
                "kappa_commands_total{{action=\"{}\"}} {n}",
                label(action)
            );
        }
        out.push_str("# HELP kappa_commands_rejected_total Commands refused, by reason.\n# TYPE kappa_commands_rejected_total counter\n");
        for (reason, n) in lock(&self.rejected).iter() {
            let _ = writeln!(
                out,
                "kappa_commands_rejected_total{{reason=\"{reason}\"}} {n}"
            );
        }
        out.push_str("# HELP kappa_auth_denials_total Requests refused for their credentials, by reason.\n# TYPE kappa_auth_denials_total counter\n");
        for (reason, n) in lock(&self.auth_denied).iter() {
            let _ = writeln!(out, "kappa_auth_denials_total{{reason=\"{reason}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP kappa_sse_connections Open live streams (server-sent events and gRPC streams).\n# TYPE kappa_sse_connections gauge\nkappa_sse_connections {}",
            self.sse_open()
        );
    }
}
