//! Several instances of one application share its tasks through a Kafka
//! consumer group (on Apache Kafka and on tansu): the tasks are split between them, each task is
//! run by exactly one instance, the instance registry says who runs what,
//! and when an instance leaves the other takes its tasks over with their
//! stores and goes on — outputs exactly once and stores equal to a
//! recomputation.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use common::{
    collect, create_topics, decoded_sums, driven, recomputed_sums, runtime_config, topology,
    varied_inputs,
};

use std::sync::Arc;
use std::time::{Duration, Instant};

use kappa_kafka::testing::{ApacheKafka, Tansu};
use kappa_kafka::{KafkaConfig, KafkaLog};
use kappa_log::{Log, TopicPartition};
use kappa_streams::{Assignment, Streams, TaskOwner};

const PARTITIONS: u32 = 4;

/// Opens instance `name`'s log, its state in `state/name`, with the
/// broker's settings from `config`.
fn open(
    config: &dyn Fn(&std::path::Path) -> KafkaConfig,
    name: &str,
    state: &std::path::Path,
) -> Arc<dyn Log> {
    let mut kafka = config(&state.join(name));
    kafka.instance = name.to_owned();
    Arc::new(KafkaLog::open(kafka).unwrap())
}

fn start(log: &Arc<dyn Log>, name: &str) -> Streams {
    let mut config = runtime_config("shared", Duration::from_millis(20), 50);
    config.assignment = Assignment::Group;
    config.application_server = Some(format!("http://{name}"));
    Streams::start(log.clone(), topology(), config).unwrap()
}

/// Waits (bounded) until `done` holds, checking every 50 ms.
fn eventually(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until every input partition is processed by whichever instance runs it.
fn processed(log: &dyn Log, instances: &[&Streams]) {
    let ends: Vec<(TopicPartition, u64)> = (0..PARTITIONS)
        .map(|p| {
            let tp = TopicPartition::new("in", p);
            let end = log.offsets(&tp).unwrap().end;
            (tp, end)
        })
        .collect();
    eventually("every input is processed", Duration::from_secs(60), || {
        ends.iter().all(|(tp, end)| {
            instances.iter().any(|s| {
                s.task_state().running.contains(&tp.partition)
                    && s.committed_positions()
                        .iter()
                        .any(|(t, at)| t == tp && at >= end)
            })
        })
    });
}

#[test]
fn on_apache_kafka_instances_split_the_tasks_and_one_takes_over_when_the_other_leaves() {
    let kafka = ApacheKafka::start().unwrap_or_else(|e| panic!("{e}"));
    instances_split_the_tasks_and_one_takes_over_when_the_other_leaves(&|state| {
        kafka.config(state)
    });
}

#[test]
fn on_tansu_instances_split_the_tasks_and_one_takes_over_when_the_other_leaves() {
    let tansu = Tansu::start().unwrap();
    instances_split_the_tasks_and_one_takes_over_when_the_other_leaves(&|state| {
        tansu.config(state)
    });
}

fn instances_split_the_tasks_and_one_takes_over_when_the_other_leaves(
    config: &dyn Fn(&std::path::Path) -> KafkaConfig,
) {
    let state = tempfile::tempdir().unwrap();
    let input = varied_inputs(400, 11);
    let expected = collect(&**driven(&input, PARTITIONS).log(), PARTITIONS);

    let log_a = open(config, "a", state.path());
    create_topics(&*log_a, PARTITIONS);
    let a = start(&log_a, "a");
    let log_b = open(config, "b", state.path());
    let b = start(&log_b, "b");
    eventually(
        "the tasks are split between the two",
        Duration::from_secs(60),
        || {
            let (ta, tb) = (a.task_state().running, b.task_state().running);
            !ta.is_empty()
                && !tb.is_empty()
                && ta.len() + tb.len() == PARTITIONS as usize
                && ta.iter().all(|t| !tb.contains(t))
        },
    );
    // Each knows who runs every task, through the registry.
    let a_tasks = a.task_state().running;
    eventually("the registry names both", Duration::from_secs(30), || {
        (0..PARTITIONS).all(|p| {
            let want_a = a_tasks.contains(&p);
            let (on_a, on_b) = (a.owner_of(p), b.owner_of(p));
            if want_a {
                on_a == TaskOwner::Local && on_b == TaskOwner::Remote("http://a".to_owned())
            } else {
                on_b == TaskOwner::Local && on_a == TaskOwner::Remote("http://b".to_owned())
            }
        })
    });

    let (first, second) = input.split_at(input.len() / 2);
    for chunk in first.chunks(40) {
        log_a.append("in", chunk.to_vec()).unwrap();
    }
    processed(&*log_a, &[&a, &b]);

    // `a` leaves: `b` takes its tasks over, restoring their stores.
    a.close().unwrap();
    eventually("b runs every task", Duration::from_secs(60), || {
        b.task_state().running.len() == PARTITIONS as usize
    });
    for chunk in second.chunks(40) {
        log_b.append("in", chunk.to_vec()).unwrap();
    }
    b.wait_for_inputs().unwrap();
    assert!((0..PARTITIONS).all(|p| b.owner_of(p) == TaskOwner::Local));
    let sums = b.store("sums").all().unwrap();
    b.close().unwrap();

    assert_eq!(
        collect(&*log_b, PARTITIONS),
        expected,
        "outputs equal the driver's: each input once, across the handover"
    );
    assert_eq!(
        decoded_sums(sums),
        recomputed_sums(&input),
        "b's store equals a recomputation"
    );
}
