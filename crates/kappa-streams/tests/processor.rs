//! The Processor API: stores, forwarding, punctuators on stream and wall-clock time.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use common::processor;

use std::time::Duration;

use kappa_streams::provenance::SOURCE_HEADER;
use kappa_streams::{
    I64, Json, Materialized, Processor, ProcessorContext, Punctuation, StoreHandle, StreamsBuilder,
    StreamsError, TopologyTestDriver, Utf8,
};

/// Counts per key in a store; on each punctuation emits every key's total.
struct Totals {
    store: StoreHandle<String, i64>,
    kind: Punctuation,
    every: Duration,
}

impl Processor<String, String, String, i64> for Totals {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, String, i64>) -> Result<(), StreamsError> {
        ctx.schedule(self.every, self.kind);
        Ok(())
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, i64>,
        key: String,
        _: String,
    ) -> Result<(), StreamsError> {
        let n = ctx.get(&self.store, &key)?.unwrap_or(0);
        ctx.put(&self.store, &key, &(n + 1))
    }

    fn punctuate(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, i64>,
        _: Punctuation,
        _: i64,
    ) -> Result<(), StreamsError> {
        for (k, n) in ctx.all(&self.store)? {
            ctx.forward(k, n)?;
        }
        Ok(())
    }
}

fn driver(kind: Punctuation, every: Duration) -> TopologyTestDriver {
    let b = StreamsBuilder::new();
    let store = b.add_state_store(Materialized::in_memory("totals"), Utf8, Json::<i64>::new());
    let name = store.name().to_owned();
    b.stream("in", Utf8, Utf8)
        .process(
            move || Totals {
                store: store.clone(),
                kind,
                every,
            },
            &[&name],
        )
        .to("out", Utf8, I64);
    TopologyTestDriver::new(b.build().unwrap(), 1).unwrap()
}

/// A driver for `in` → the processor `make` builds on a new state store
/// `store` → `out`, the processor connected to the stores named in `connected`.
fn store_driver<P>(
    store: Materialized,
    connected: &[&str],
    make: impl Fn(StoreHandle<String, i64>) -> P + Send + Sync + 'static,
) -> TopologyTestDriver
where
    P: Processor<String, String, String, String>,
{
    let b = StreamsBuilder::new();
    let store = b.add_state_store(store, Utf8, Json::<i64>::new());
    b.stream("in", Utf8, Utf8)
        .process(move || make(store.clone()), connected)
        .to("out", Utf8, Utf8);
    TopologyTestDriver::new(b.build().unwrap(), 1).unwrap()
}

fn pipe(d: &mut TopologyTestDriver, key: &str, ts: i64) {
    d.pipe("in", &Utf8, &key.to_owned(), &Utf8, &"x".to_owned(), ts)
        .unwrap();
}

#[test]
fn stream_time_punctuation_fires_when_stream_time_passes_each_interval() {
    let mut d = driver(Punctuation::StreamTime, Duration::from_millis(10));
    pipe(&mut d, "a", 1);
    pipe(&mut d, "b", 5);
    assert!(
        d.read_records("out").unwrap().is_empty(),
        "stream time 5 has not reached 10"
    );
    pipe(&mut d, "a", 12);
    let out = d.read_records("out").unwrap();
    let got: Vec<(String, i64)> = out
        .iter()
        .map(|r| {
            let k = String::from_utf8(r.key.as_ref().unwrap().to_vec()).unwrap();
            (
                k,
                i64::from_be_bytes(r.value.as_deref().unwrap().try_into().unwrap()),
            )
        })
        .collect();
    assert_eq!(got, [("a".to_owned(), 2), ("b".to_owned(), 1)]);
    assert_eq!(
        out[0].header(SOURCE_HEADER).map(|v| &v[..]),
        Some(&b"punctuation/stream-time/12"[..])
    );
    assert_eq!(out[0].timestamp, 12);
    // An out-of-order record does not move stream time: no new punctuation.
    pipe(&mut d, "c", 3);
    assert!(d.read_records("out").unwrap().is_empty());
}

#[test]
fn wall_clock_punctuation_follows_the_drivers_clock() {
    let mut d = driver(Punctuation::WallClockTime, Duration::from_secs(1));
    pipe(&mut d, "a", 100);
    d.advance_wall_clock(Duration::from_millis(500)).unwrap();
    assert!(d.read_records("out").unwrap().is_empty());
    d.advance_wall_clock(Duration::from_millis(600)).unwrap();
    let out = d.read_output("out", &Utf8, &I64).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].0.as_str(), out[0].1), ("a", Some(1)));
    // Several missed intervals fire once.
    d.advance_wall_clock(Duration::from_secs(5)).unwrap();
    assert_eq!(d.read_records("out").unwrap().len(), 1);
}

#[test]
fn a_processor_store_commits_with_the_task() {
    let mut d = driver(Punctuation::StreamTime, Duration::from_secs(3600));
    pipe(&mut d, "a", 1);
    pipe(&mut d, "a", 2);
    assert_eq!(
        d.store("totals").get(b"a").unwrap().as_deref(),
        Some(&b"2"[..])
    );
}

#[test]
fn a_store_the_processor_was_not_given_is_an_error() {
    // Reads a store it is not connected to.
    let mut d = store_driver(Materialized::in_memory("s"), &[], |store| {
        processor(store, |store, ctx, k: String, _: String| {
            ctx.get(store, &k).map(|_| ())
        })
    });
    let err = d
        .pipe("in", &Utf8, &"k".to_owned(), &Utf8, &"v".to_owned(), 0)
        .unwrap_err();
    assert!(err.to_string().contains("not connected"), "{err}");
}

#[test]
fn stores_answer_prefix_and_range_scans() {
    // Forwards, after each record, every key seen so far that starts with "card-".
    let mut d = store_driver(Materialized::persistent("seen"), &["seen"], |store| {
        processor(store, |store, ctx, k: String, _: String| {
            ctx.put(store, &k, &1)?;
            let cards: Vec<String> = ctx
                .prefix(store, &"card-".to_owned())?
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            ctx.forward(k, cards.join(","))
        })
    });
    for k in ["card-2", "acct-1", "card-1"] {
        d.pipe("in", &Utf8, &k.to_owned(), &Utf8, &"x".to_owned(), 0)
            .unwrap();
    }
    let last = d.read_output("out", &Utf8, &Utf8).unwrap().pop().unwrap();
    assert_eq!(last.1.as_deref(), Some("card-1,card-2"));
    let store = d.store("seen");
    let keys = |entries: Vec<(bytes::Bytes, bytes::Bytes)>| -> Vec<String> {
        entries
            .into_iter()
            .map(|(k, _)| String::from_utf8(k.to_vec()).unwrap())
            .collect()
    };
    assert_eq!(keys(store.prefix(b"card-").unwrap()), ["card-1", "card-2"]);
    assert_eq!(
        keys(store.range(b"acct-1", b"card-2").unwrap()),
        ["acct-1", "card-1"]
    );
}
