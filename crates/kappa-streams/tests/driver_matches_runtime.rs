//! The test driver and the real runtime (threads, embedded log) give the
//! same outputs for the same inputs: per key, the same values in the same
//! order (Kafka Streams' ordering guarantee; order across keys may differ).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use common::{collect, create_topics, driven, open_embedded, runtime_config, topology};

use std::time::Duration;

use kappa_log::ProducerRecord;
use kappa_streams::Streams;
use proptest::prelude::*;

const PARTITIONS: u32 = 2;

fn input_record(key: u8, value: i64, ts: i64) -> ProducerRecord {
    ProducerRecord::value(value.to_string())
        .with_key(format!("k{key}"))
        .with_timestamp(ts)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn driver_and_runtime_agree(inputs in prop::collection::vec((0..6u8, -50..50i64, 0..1000i64), 1..120)) {
        let records: Vec<ProducerRecord> = inputs.iter().map(|&(k, v, ts)| input_record(k, v, ts)).collect();
        let driver = driven(&records, PARTITIONS);
        let expected = collect(&**driver.log(), PARTITIONS);
        prop_assert!(expected.keys().any(|(t, _)| t == "sums"));

        let dir = tempfile::tempdir().unwrap();
        let log = open_embedded(dir.path());
        create_topics(&*log, PARTITIONS);
        let config = runtime_config("agree", Duration::from_millis(5), 7);
        let streams = Streams::start(log.clone(), topology(), config).unwrap();
        for chunk in records.chunks(10) {
            log.append("in", chunk.to_vec()).unwrap();
        }
        streams.wait_for_inputs().unwrap();
        let sums = streams.store("sums");
        streams.close().unwrap();
        prop_assert_eq!(collect(&*log, PARTITIONS), expected);
        // The store agrees with the last sum emitted per key.
        for (k, v) in sums.all().unwrap() {
            let emitted = driver.store("sums").get(&k).unwrap();
            prop_assert_eq!(Some(v), emitted);
        }
    }
}
