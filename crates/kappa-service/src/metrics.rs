//! Metric families: figures from any part of a service, gathered into one
//! Prometheus text page without declaring a family twice.

use std::fmt::Write as _;

/// Escapes a label value for the Prometheus text format.
///
/// ```
/// assert_eq!(kappa_service::metric_label("a\"b"), "a\\\"b");
/// ```
pub fn metric_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Samples grouped by metric family, so each family is declared once and its
/// lines stay together, whoever contributes them.
///
/// ```
/// use kappa_service::MetricFamilies;
/// let mut f = MetricFamilies::default();
/// f.add("jobs_done_total", "counter", "runner=\"a\"", 3);
/// f.add("jobs_done_total", "counter", "runner=\"b\"", 4);
/// let mut out = String::new();
/// f.render(&mut out);
/// assert_eq!(out.matches("# TYPE jobs_done_total counter").count(), 1);
/// assert!(out.contains("jobs_done_total{runner=\"b\"} 4"));
/// ```
#[derive(Debug, Default)]
pub struct MetricFamilies {
    families: std::collections::BTreeMap<String, (&'static str, Vec<String>)>,
}

impl MetricFamilies {
    /// Adds one sample; `labels` is the text between the braces (may be empty).
    pub fn add(
        &mut self,
        name: &str,
        kind: &'static str,
        labels: &str,
        value: impl std::fmt::Display,
    ) {
        self.add_sample(name, kind, name, labels, value);
    }

    /// Adds one sample named other than its family: a histogram's
    /// `_bucket`, `_sum` and `_count` lines under the histogram's family.
    pub fn add_sample(
        &mut self,
        family: &str,
        kind: &'static str,
        name: &str,
        labels: &str,
        value: impl std::fmt::Display,
    ) {
        let lines = match self.families.get_mut(family) {
            Some(f) => &mut f.1,
            None => {
                &mut self
                    .families
                    .entry(family.to_owned())
                    .or_insert_with(|| (kind, Vec::new()))
                    .1
            }
        };
        lines.push(if labels.is_empty() {
            format!("{name} {value}")
        } else {
            format!("{name}{{{labels}}} {value}")
        });
    }

    /// Writes every family in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        for (name, (kind, lines)) in &self.families {
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for l in lines {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
}

/// Figures of a part of the service that its HTTP face does not own (an
/// effect runner, a sink), served in the gateway's `/metrics`.
pub trait MetricsSource: Send + Sync {
    /// Adds the current figures.
    fn collect(&self, families: &mut MetricFamilies);
}
