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
