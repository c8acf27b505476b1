//! Re-grouped table aggregation with adder and subtractor (Kafka's KGroupedTable).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use common::json_table;

use std::collections::BTreeMap;

use kappa_log::ProducerRecord;
use kappa_streams::{I64, Json, Materialized, StreamsBuilder, TopologyTestDriver, Utf8};

fn set(d: &mut TopologyTestDriver, card: &str, row: Option<(&str, i64)>) {
    let record = ProducerRecord {
        key: Some(card.to_owned().into()),
        value: row.map(|(owner, limit)| serde_json::to_vec(&(owner, limit)).unwrap().into()),
        timestamp: Some(0),
        ..Default::default()
    };
    d.pipe_record("cards", record).unwrap();
}

#[test]
fn moving_a_row_subtracts_it_from_its_old_group_and_adds_it_to_the_new() {
    let b = StreamsBuilder::new();
    let cards = json_table::<(String, i64)>(&b, "cards", Materialized::in_memory("cards"));
    let by_owner = cards.group_by(
        "by-owner",
        |_card, (owner, limit): &(String, i64)| (owner.clone(), *limit),
        Utf8,
        Utf8,
        Json::<i64>::new(),
    );
    by_owner
        .count(Materialized::persistent("cards-per-owner"))
        .to("counts", Utf8, I64);
    by_owner
        .aggregate(
            Materialized::in_memory("limits-per-owner"),
            Json::<i64>::new(),
            || 0,
            |_, l, s| s + l,
            |_, l, s| s - l,
        )
        .to("limits", Utf8, Json::<i64>::new());
    let mut d = TopologyTestDriver::new(b.build().unwrap(), 2).unwrap();
    set(&mut d, "card-1", Some(("alice", 100)));
    set(&mut d, "card-2", Some(("alice", 50)));
    set(&mut d, "card-3", Some(("bob", 10)));
    set(&mut d, "card-2", Some(("bob", 70))); // moves and changes
    set(&mut d, "card-1", None); // deleted

    let latest = |d: &mut TopologyTestDriver, topic: &str| -> BTreeMap<String, i64> {
        let mut m = BTreeMap::new();
        for (k, v, _) in d.read_output(topic, &Utf8, &Json::<i64>::new()).unwrap() {
            m.insert(k, v.unwrap());
        }
        m
    };
    let mut counts = BTreeMap::new();
    for (k, v, _) in d.read_output("counts", &Utf8, &I64).unwrap() {
        counts.insert(k, v.unwrap());
    }
    assert_eq!(
        counts,
        BTreeMap::from([("alice".to_owned(), 0), ("bob".to_owned(), 2)])
    );
    assert_eq!(
        latest(&mut d, "limits"),
        BTreeMap::from([("alice".to_owned(), 0), ("bob".to_owned(), 80)])
    );
    assert_eq!(
        d.store("cards-per-owner").get(b"bob").unwrap().as_deref(),
        Some(&2i64.to_be_bytes()[..])
    );
}
