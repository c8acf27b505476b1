//! The processor against the oracle, in memory (the test driver): every
//! event of a generated history, in order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Oracle, history};
use kappa_gateway::Envelope;
use kappa_streams::{Json, TopologyTestDriver, Utf8};

#[test]
fn every_event_of_a_generated_history_matches_the_oracle() {
    for seed in [1, 2, 3] {
        let topology = card_limits::processor::topology("commands", "events").unwrap();
        let mut driver = TopologyTestDriver::new(topology, 3).unwrap();
        let mut oracle = Oracle::default();
        let commands = history(seed, 25, 2500);
        let mut counts = std::collections::BTreeMap::<String, usize>::new();
        for (i, c) in commands.iter().enumerate() {
            let envelope = Envelope::command(c.action, c.data.clone(), Some(c.card().to_owned()));
            driver
                .pipe(
                    "commands",
                    &Utf8,
                    &c.card().to_owned(),
                    &Json::<Envelope>::new(),
                    &envelope,
                    envelope.timestamp,
                )
                .unwrap();
            let got: Vec<(String, serde_json::Value, bool)> = driver
                .read_output("events", &Utf8, &Json::<Envelope>::new())
                .unwrap()
                .into_iter()
                .map(|(_, e, _)| {
                    let e = e.unwrap();
                    assert_eq!(e.parent, Some(envelope.id));
                    (e.action, e.data, e.error)
                })
                .collect();
            let expected = oracle.apply(c);
            assert_eq!(got, expected, "seed {seed}, command {i}: {c:?}");
            for (action, _, _) in &got {
                *counts.entry(action.clone()).or_default() += 1;
            }
        }
        // The history exercises every rule.
        for action in [
            "limit-set",
            "limit-removed",
            "authorization-approved",
            "authorization-declined",
            "authorization-rejected",
            "transaction-settled",
            "settlement-duplicate",
            "settlement-rejected",
            "limit-threshold-reached",
        ] {
            assert!(
                counts.get(action).copied().unwrap_or(0) > 0,
                "seed {seed}: no {action} in {counts:?}"
            );
        }
    }
}

/// `card-limits load --direct` (the processor alone, timed) runs its rounds
/// and reports their median.
#[test]
fn the_direct_benchmark_reports_the_median_of_its_rounds() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_card-limits"))
        .args(["load", "--direct", "--commands", "3000", "--cards", "50"])
        .args(["--rounds", "3", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["commands"], 3000, "{report}");
    let mut rounds: Vec<f64> = report["rounds_per_s"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(rounds.len(), 3, "{report}");
    rounds.sort_by(f64::total_cmp);
    assert!(rounds[0] > 0.0, "{report}");
    assert_eq!(report["per_s"].as_f64().unwrap(), rounds[1], "{report}");
}
