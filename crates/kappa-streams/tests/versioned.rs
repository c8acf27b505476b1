//! Versioned stores: values as of a time, history retention, read-only as-of queries.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::time::Duration;

use kappa_streams::{
    Json, Materialized, Processor, ProcessorContext, StreamsBuilder, StreamsError,
    TopologyTestDriver, Utf8, VersionedStoreHandle,
};

/// Values `set:N` / `delete` change a card's limit at the record's time;
/// `query` forwards the limit as of the record's time.
struct Limits(VersionedStoreHandle<String, i64>);

impl Processor<String, String, String, String> for Limits {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, String>,
        card: String,
        op: String,
    ) -> Result<(), StreamsError> {
        let t = ctx.timestamp();
        match op.split_once(':') {
            Some(("set", n)) => ctx.put_versioned(&self.0, &card, Some(&n.parse().unwrap()), t),
            _ if op == "delete" => ctx.put_versioned(&self.0, &card, None, t),
            _ => {
                let answer = match ctx.get_as_of(&self.0, &card, t)? {
                    Some((limit, from)) => format!("{limit}@{from}"),
                    None => "none".to_owned(),
                };
                ctx.forward(card, answer)
            }
        }
    }
}

fn driver(history: Duration) -> TopologyTestDriver {
    let b = StreamsBuilder::new();
    let store = b.add_versioned_store(
        Materialized::persistent("limits"),
        Utf8,
        Json::<i64>::new(),
        history,
    );
    let name = store.name().to_owned();
    b.stream("ops", Utf8, Utf8)
        .process(move || Limits(store.clone()), &[&name])
        .to("answers", Utf8, Utf8);
    TopologyTestDriver::new(b.build().unwrap(), 1).unwrap()
}

fn op(d: &mut TopologyTestDriver, value: &str, t: i64) {
    d.pipe(
        "ops",
        &Utf8,
        &"card-1".to_owned(),
        &Utf8,
        &value.to_owned(),
        t,
    )
    .unwrap();
}

fn answers(d: &mut TopologyTestDriver) -> Vec<String> {
    d.read_output("answers", &Utf8, &Utf8)
        .unwrap()
        .into_iter()
        .map(|(_, v, _)| v.unwrap())
        .collect()
}

#[test]
fn reads_as_of_a_time_see_the_value_valid_then() {
    let mut d = driver(Duration::from_secs(3600));
    op(&mut d, "set:100", 10);
    op(&mut d, "set:200", 20);
    op(&mut d, "delete", 30);
    op(&mut d, "set:150", 15); // out of order: valid from 15 until 20
    for t in [5, 12, 17, 25, 35] {
        op(&mut d, "query", t);
    }
    assert_eq!(
        answers(&mut d),
        ["none", "100@10", "150@15", "200@20", "none"]
    );
    // The same as-of reads on the committed store, as interactive queries do.
    let store = d.store("limits");
    assert_eq!(
        store
            .get_as_of(b"card-1", 17)
            .unwrap()
            .map(|(v, t)| (v.to_vec(), t)),
        Some((b"150".to_vec(), 15))
    );
    assert_eq!(store.get_as_of(b"card-1", 9).unwrap(), None);
}

#[test]
fn history_older_than_retention_is_dropped_but_the_edge_value_stays() {
    let mut d = driver(Duration::from_millis(20));
    op(&mut d, "set:1", 10);
    op(&mut d, "set:2", 50);
    op(&mut d, "set:3", 100); // stream time 100, edge 80: version 50 is still valid at 80
    op(&mut d, "query", 85);
    op(&mut d, "query", 60);
    op(&mut d, "query", 20); // before the kept history
    assert_eq!(answers(&mut d), ["2@50", "2@50", "none"]);
    assert_eq!(
        d.store("limits").all().unwrap().len(),
        2,
        "versions 50 and 100 remain"
    );
}
