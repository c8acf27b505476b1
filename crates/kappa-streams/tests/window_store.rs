//! Key-first window stores of the Processor API: per-key range fetches,
//! retention, and read-only fetches of committed windows.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::time::Duration;

use kappa_streams::{
    I64, Materialized, Processor, ProcessorContext, STORE_CACHE_BYTES_DEFAULT, StreamsBuilder,
    StreamsConfig, StreamsError, TopologyTestDriver, Utf8, WindowStoreHandle,
};
use proptest::prelude::*;

const DAY: i64 = 86_400_000;

/// Adds each amount to its day's pane and forwards the sum of the last three days' panes.
struct ThreeDaySum(WindowStoreHandle<String, i64>);

impl Processor<String, i64, String, i64> for ThreeDaySum {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, i64>,
        key: String,
        amount: i64,
    ) -> Result<(), StreamsError> {
        let day = ctx.timestamp().div_euclid(DAY) * DAY;
        let pane = ctx.window_get(&self.0, &key, day)?.unwrap_or(0) + amount;
        ctx.window_put(&self.0, &key, day, Some(&pane))?;
        let sum = ctx
            .window_fetch(&self.0, &key, day - 2 * DAY, day)?
            .into_iter()
            .map(|(_, v)| v)
            .sum();
        ctx.forward(key, sum)
    }
}

fn driver(retention_days: u64) -> TopologyTestDriver {
    driver_with_cache(retention_days, STORE_CACHE_BYTES_DEFAULT)
}

/// With `cache_bytes` of store cache for the worker (split over the two
/// partitions' stores).
fn driver_with_cache(retention_days: u64, cache_bytes: usize) -> TopologyTestDriver {
    let b = StreamsBuilder::new();
    let panes = b.add_window_store(
        Materialized::persistent("panes"),
        Utf8,
        I64,
        Duration::from_secs(retention_days * 86_400),
    );
    b.stream("amounts", Utf8, I64)
        .process(move || ThreeDaySum(panes.clone()), &["panes"])
        .to("sums", Utf8, I64);
    let mut config = StreamsConfig::new("test-driver");
    config.store_cache_bytes = cache_bytes;
    TopologyTestDriver::with_config(b.build().unwrap(), 2, config).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn sums_over_panes_equal_sums_over_the_records(
        records in prop::collection::vec((0..4usize, -DAY..(20 * DAY), 1..100i64), 1..60),
        // None, a cache that evicts on almost every read, the default.
        cache_bytes in prop::sample::select(vec![0, 400, STORE_CACHE_BYTES_DEFAULT]),
    ) {
        let mut d = driver_with_cache(365, cache_bytes);
        let keys = ["a", "ab", "b", "card-1"];
        let mut seen: Vec<(usize, i64, i64)> = Vec::new();
        for (k, t, amount) in records {
            d.pipe("amounts", &Utf8, &keys[k].to_owned(), &I64, &amount, t).unwrap();
            seen.push((k, t, amount));
            let day = t.div_euclid(DAY) * DAY;
            let expected: i64 = seen
                .iter()
                .filter(|(k2, t2, _)| *k2 == k && (day - 2 * DAY..=day).contains(&(t2.div_euclid(DAY) * DAY)))
                .map(|(_, _, a)| a)
                .sum();
            let out = d.read_output("sums", &Utf8, &I64).unwrap();
            prop_assert_eq!(out.len(), 1);
            prop_assert_eq!(out[0].1, Some(expected));
        }
        // Committed panes, read without the task, are the days' totals.
        let store = d.store("panes");
        for (k, key) in keys.iter().enumerate() {
            let mut model: BTreeMap<i64, i64> = BTreeMap::new();
            for (_, t, a) in seen.iter().filter(|(k2, _, _)| *k2 == k) {
                *model.entry(t.div_euclid(DAY) * DAY).or_default() += a;
            }
            let fetched: Vec<(i64, i64)> = store
                .fetch_key_windows(key.as_bytes(), i64::MIN, i64::MAX)
                .unwrap()
                .into_iter()
                .map(|(s, v)| (s, i64::from_be_bytes(v[..].try_into().unwrap())))
                .collect();
            prop_assert_eq!(fetched, model.clone().into_iter().collect::<Vec<_>>());
            let inner: Vec<i64> = store
                .fetch_key_windows(key.as_bytes(), 3 * DAY, 5 * DAY)
                .unwrap()
                .into_iter()
                .map(|(s, _)| s)
                .collect();
            prop_assert_eq!(inner, model.range(3 * DAY..=5 * DAY).map(|(s, _)| *s).collect::<Vec<_>>());
        }
    }
}

#[test]
fn windows_older_than_the_retention_are_dropped_when_their_key_is_written() {
    let mut d = driver(5);
    for day in 0..4 {
        d.pipe("amounts", &Utf8, &"k".to_owned(), &I64, &1, day * DAY)
            .unwrap();
    }
    d.pipe("amounts", &Utf8, &"other".to_owned(), &I64, &1, 30 * DAY)
        .unwrap();
    // Stream time is day 30, but "k" was not written since: its panes stay.
    assert_eq!(
        d.store("panes")
            .fetch_key_windows(b"k", i64::MIN, i64::MAX)
            .unwrap()
            .len(),
        4
    );
    d.pipe("amounts", &Utf8, &"k".to_owned(), &I64, &7, 31 * DAY)
        .unwrap();
    let left = d
        .store("panes")
        .fetch_key_windows(b"k", i64::MIN, i64::MAX)
        .unwrap();
    assert_eq!(left.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [31 * DAY]);
    assert_eq!(
        d.read_output("sums", &Utf8, &I64)
            .unwrap()
            .last()
            .unwrap()
            .1,
        Some(7)
    );
    // An empty or inverted range reads nothing.
    assert!(
        d.store("panes")
            .fetch_key_windows(b"k", 5, 4)
            .unwrap()
            .is_empty()
    );
}

/// One key with more daily panes than the store cache holds of one key:
/// its reads go to the log range by range, before and after it outgrows
/// the cache, and the sums stay right.
#[test]
fn a_key_with_more_windows_than_the_cache_holds_whole_reads_right() {
    for cache_bytes in [0, STORE_CACHE_BYTES_DEFAULT] {
        let mut d = driver_with_cache(3650, cache_bytes);
        for day in 0..300 {
            d.pipe("amounts", &Utf8, &"k".to_owned(), &I64, &1, day * DAY)
                .unwrap();
            let out = d.read_output("sums", &Utf8, &I64).unwrap();
            assert_eq!(out.len(), 1);
            assert_eq!(
                out[0].1,
                Some((day + 1).min(3)),
                "day {day}, cache {cache_bytes}"
            );
        }
        let m = d.metrics();
        if cache_bytes == 0 {
            assert_eq!((m.store_cache_hits, m.store_cache_misses), (0, 0));
        } else {
            // The first 256 days' panes are read from the cache.
            assert!(m.store_cache_hits >= 256, "{m:?}");
        }
        assert_eq!(
            d.store("panes")
                .fetch_key_windows(b"k", i64::MIN, i64::MAX)
                .unwrap()
                .len(),
            300
        );
    }
}
