//! `kappa broker` killed with SIGKILL 20 times while an idempotent
//! librdkafka producer sends with `acks=all`: after each restart the
//! producer carries on, and at the end every acknowledged record is in the
//! log exactly once, at the offset its acknowledgement named, in the order
//! it was sent per partition; no record at all is in the log twice.
//!
//! Seeded; `KAPPA_CRASH_SEED=<seed>` replays the kill moments.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;
mod node;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::Rng;
use kappa_log::{EmbeddedLog, Log};
use node::{Broker, Cluster, runtime};
use rdkafka::producer::{FutureProducer, FutureRecord};

const KILLS: usize = 20;
const PARTITIONS: i32 = 3;
/// Sends not yet acknowledged at most, so that kills land mid-flight.
const IN_FLIGHT_MAX: usize = 64;

#[derive(Default)]
struct Acks {
    /// sequence number → (partition, offset) for every acknowledged send.
    acked: Mutex<BTreeMap<u64, (i32, i64)>>,
    changed: Condvar,
    failed: Mutex<Vec<(u64, String)>>,
}

#[test]
fn acknowledged_records_are_in_the_log_once_and_in_order_after_kills() {
    let mut rng = Rng::from_env("broker crash");
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path());
    broker.create_topic(&rt, "orders", PARTITIONS);
    let producer: FutureProducer = broker
        .client()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "120000")
        .set("reconnect.backoff.ms", "10")
        .set("reconnect.backoff.max.ms", "100")
        .create()
        .unwrap();

    let acks = Arc::new(Acks::default());
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let acks = acks.clone();
        let stop = stop.clone();
        let handle = rt.handle().clone();
        thread::spawn(move || {
            let mut pending = Vec::new();
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let value = format!("order-{seq}");
                let partition = (seq % PARTITIONS as u64) as i32;
                let f = producer
                    .send_result(
                        FutureRecord::<(), _>::to("orders")
                            .partition(partition)
                            .payload(&value),
                    )
                    .unwrap();
                pending.push((seq, f));
                seq += 1;
                if pending.len() >= IN_FLIGHT_MAX {
                    settle(&handle, &acks, pending.drain(..));
                }
            }
            settle(&handle, &acks, pending.drain(..));
            seq
        })
    };

    let mut seen = 0;
    for _ in 0..KILLS {
        // Kill after a random number of new acknowledgements.
        let target = seen + 20 + rng.below(200) as usize;
        wait_for_acks(&acks, target);
        seen = target;
        broker.restart();
    }
    wait_for_acks(&acks, seen + 100);
    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().unwrap();

    let acked = acks.acked.lock().unwrap().clone();
    let failed = acks.failed.lock().unwrap().clone();
    assert!(
        failed.is_empty(),
        "sends failed for good: {:?}",
        &failed[..failed.len().min(5)]
    );
    assert_eq!(
        acked.len() as u64,
        sent,
        "every send was acknowledged in the end"
    );

    broker.kill();
    let log = EmbeddedLog::open(dir.path()).unwrap();
    let mut in_log: HashMap<String, Vec<(i32, i64)>> = HashMap::new();
    let mut last_seq: HashMap<u32, u64> = HashMap::new();
    for r in log.read_topic("orders").unwrap() {
        let p = r.partition;
        let value = String::from_utf8(r.value.unwrap().to_vec()).unwrap();
        let seq: u64 = value.trim_start_matches("order-").parse().unwrap();
        let before = last_seq.insert(p, seq);
        assert!(
            before < Some(seq),
            "partition {p}: {value} after order-{before:?}: out of order"
        );
        in_log
            .entry(value)
            .or_default()
            .push((p as i32, r.offset as i64));
    }
    let twice: Vec<_> = in_log
        .iter()
        .filter(|(_, at)| at.len() > 1)
        .take(5)
        .collect();
    assert!(
        twice.is_empty(),
        "records in the log more than once: {twice:?}"
    );
    for (seq, (partition, offset)) in &acked {
        let at = in_log
            .get(&format!("order-{seq}"))
            .unwrap_or_else(|| panic!("acknowledged order-{seq} is missing"));
        assert_eq!(
            at,
            &vec![(*partition, *offset)],
            "order-{seq} is where its acknowledgement said"
        );
    }
    eprintln!("{} records acknowledged across {KILLS} kills", acked.len());
}

fn settle(
    handle: &tokio::runtime::Handle,
    acks: &Acks,
    pending: impl Iterator<Item = (u64, rdkafka::producer::DeliveryFuture)>,
) {
    for (seq, f) in pending {
        match handle.block_on(f) {
            Ok(Ok(d)) => {
                acks.acked
                    .lock()
                    .unwrap()
                    .insert(seq, (d.partition, d.offset));
                acks.changed.notify_all();
            }
            Ok(Err((e, _))) => acks.failed.lock().unwrap().push((seq, e.to_string())),
            Err(_) => acks
                .failed
                .lock()
                .unwrap()
                .push((seq, "delivery future cancelled".into())),
        }
    }
}

fn wait_for_acks(acks: &Acks, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut acked = acks.acked.lock().unwrap();
    while acked.len() < n {
        let now = Instant::now();
        assert!(
            now < deadline,
            "{} of {n} acknowledgements in time",
            acked.len()
        );
        acked = acks.changed.wait_timeout(acked, deadline - now).unwrap().0;
    }
}
