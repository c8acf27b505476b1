//! Effect runners against a webhook that fails, times out and answers 5xx:
//! every event gets exactly one recorded outcome, retries are visible,
//! permanent failures become dead letters, a restart redoes nothing, and a
//! dead target does not stall a live one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kappa_effects::testing::{Reply, Webhook};
use kappa_effects::{
    BreakerPolicy, Follower, HttpEffect, HttpRequest, RetryPolicy, Runner, RunnerConfig,
};
use kappa_log::{EmbeddedLog, Log, Record, TopicPartition, TopicSpec};
use kappa_service::{Envelope, MetricFamilies};
use serde_json::{Value, json};

const KINDS: [&str; 5] = ["ok", "flaky", "slow", "gone", "down"];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn open(dir: &std::path::Path) -> Arc<dyn Log> {
    with_events(Arc::new(EmbeddedLog::open(dir).unwrap()))
}

fn with_events(log: Arc<dyn Log>) -> Arc<dyn Log> {
    log.create_topic(&TopicSpec::new("events", 3)).unwrap();
    log
}

/// Writes `n` events of `action` per kind, keyed `<kind>-<i>`; returns their ids by key.
fn write_events(log: &dyn Log, action: &str, n: usize) -> HashMap<String, Envelope> {
    let mut out = HashMap::new();
    let mut records = Vec::new();
    for i in 0..n {
        for kind in KINDS {
            let key = format!("{kind}-{i}");
            let e = Envelope::command("cause", json!({}), Some(key.clone()))
                .event(action, json!({"kind": kind, "i": i}));
            records.push(
                kappa_log::ProducerRecord::value(serde_json::to_vec(&e).unwrap())
                    .with_key(key.clone()),
            );
            out.insert(key, e);
        }
    }
    log.append("events", records).unwrap();
    out
}

fn envelopes(records: &[Record]) -> Vec<Envelope> {
    records
        .iter()
        .map(|r| serde_json::from_slice(r.value.as_deref().unwrap()).unwrap())
        .collect()
}

/// A webhook that answers every call with 200, `delay` after it came.
fn answering_after(rt: &tokio::runtime::Runtime, delay: Duration) -> Webhook {
    rt.block_on(Webhook::start(move |_| Reply::after(delay, 200)))
        .unwrap()
}

/// Starts a runner that posts each event's id and data to `hook`'s
/// "notify" path.
fn start_notifying(
    log: &Arc<dyn Log>,
    config: RunnerConfig,
    hook: &Webhook,
    rt: &tokio::runtime::Runtime,
) -> Runner {
    let url: kappa_effects::reqwest::Url = hook.url("notify").parse().unwrap();
    let effect = HttpEffect::new(move |e: &Envelope| {
        Ok(HttpRequest::post(
            url.clone(),
            json!({"id": e.id, "data": e.data}),
        ))
    })
    .unwrap();
    Runner::start(log.clone(), config, Arc::new(effect), rt.handle().clone()).unwrap()
}

fn metric(source: &Arc<dyn kappa_service::MetricsSource>, line_prefix: &str) -> f64 {
    let mut f = MetricFamilies::default();
    source.collect(&mut f);
    let mut text = String::new();
    f.render(&mut text);
    text.lines()
        .find_map(|l| {
            l.strip_prefix(line_prefix)
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no {line_prefix} in\n{text}"))
}

/// The runner only uses the `Log` trait: the same test on each backend.
#[test]
fn every_event_gets_one_outcome_with_retries_and_dead_letters_on_the_embedded_log() {
    let dir = tempfile::tempdir().unwrap();
    every_event_gets_one_outcome_with_retries_and_dead_letters(open(dir.path()));
}

#[test]
fn every_event_gets_one_outcome_with_retries_and_dead_letters_in_memory() {
    every_event_gets_one_outcome_with_retries_and_dead_letters(with_events(Arc::new(
        kappa_log::MemoryLog::new(),
    )));
}

fn every_event_gets_one_outcome_with_retries_and_dead_letters(log: Arc<dyn Log>) {
    let rt = runtime();
    let hook = rt
        .block_on(Webhook::start(|call| {
            let kind = call.body["data"]["kind"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            match kind.as_str() {
                "ok" => Reply::status(200),
                "flaky" if call.nth <= 2 => Reply::status(503),
                "flaky" => Reply::status(201),
                "slow" if call.nth == 1 => Reply::after(Duration::from_secs(3), 200),
                "slow" => Reply::status(200),
                "gone" => Reply::status(410),
                _ => Reply::status(500),
            }
        }))
        .unwrap();
    let events = write_events(&*log, "limit-threshold-reached", 12);
    let ignored = write_events(&*log, "limit-set", 4);
    let mut config = RunnerConfig::new("notify", &["limit-threshold-reached"]);
    config.retry = RetryPolicy {
        max_attempts: 4,
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        attempt_timeout: Duration::from_millis(400),
        ..RetryPolicy::default()
    };
    config.breaker = BreakerPolicy {
        failures_to_open: 10_000,
        ..BreakerPolicy::default()
    };
    let runner = start_notifying(&log, config.clone(), &hook, &rt);
    assert!(
        runner.wait_caught_up(Duration::from_secs(60)).unwrap(),
        "{:?}",
        runner.failure()
    );
    let source = runner.metrics_source();
    assert_eq!(
        metric(&source, "kappa_effects_delivered_total{runner=\"notify\"}"),
        36.0
    );
    assert_eq!(
        metric(&source, "kappa_effects_failed_total{runner=\"notify\"}"),
        24.0
    );
    assert_eq!(
        metric(
            &source,
            "kappa_effects_dead_letters_total{runner=\"notify\"}"
        ),
        24.0
    );
    // flaky: 2 retries each, slow: 1, down: 3.
    assert_eq!(
        metric(&source, "kappa_effects_retries_total{runner=\"notify\"}"),
        72.0
    );
    runner.close().unwrap();

    let check = |log: &Arc<dyn Log>| {
        let all = envelopes(&log.read_topic("events").unwrap());
        let mut outcomes: HashMap<uuid::Uuid, Vec<&Envelope>> = HashMap::new();
        for e in &all {
            if e.action.starts_with("notify-") {
                outcomes.entry(e.parent.unwrap()).or_default().push(e);
            }
        }
        assert_eq!(
            outcomes.len(),
            events.len(),
            "one outcome per subscribed event"
        );
        for e in ignored.values() {
            assert!(
                !outcomes.contains_key(&e.id),
                "no outcome for other actions"
            );
        }
        for (key, event) in &events {
            let got = &outcomes[&event.id];
            assert_eq!(got.len(), 1, "{key}: {got:?}");
            let o = got[0];
            assert_eq!(o.key.as_deref(), Some(key.as_str()));
            let d = &o.data;
            let kind = key.split('-').next().unwrap();
            let errors = d["errors"].as_array().unwrap();
            let statuses: Vec<Value> = errors.iter().map(|e| e["status"].clone()).collect();
            match kind {
                "ok" => {
                    (
                        assert_eq!(o.action, "notify-delivered"),
                        assert_eq!(d["attempts"], 1),
                        assert_eq!(d["status"], 200),
                    )
                        .2
                }
                "flaky" => {
                    assert_eq!(o.action, "notify-delivered");
                    assert_eq!(d["attempts"], 3);
                    assert_eq!(d["status"], 201);
                    assert_eq!(statuses, vec![json!(503), json!(503)]);
                }
                "slow" => {
                    assert_eq!(o.action, "notify-delivered");
                    assert_eq!(d["attempts"], 2);
                    let first_error = d["errors"][0]["error"].as_str().unwrap();
                    assert!(first_error.contains("no answer within 400 ms"), "{d}");
                }
                "gone" => {
                    assert_eq!(o.action, "notify-failed");
                    assert!(o.error);
                    assert_eq!(d["attempts"], 1);
                    assert_eq!(d["reason"], "permanent");
                    assert_eq!(statuses, vec![json!(410)]);
                }
                _ => {
                    assert_eq!(o.action, "notify-failed");
                    assert_eq!(d["attempts"], 4);
                    assert_eq!(d["reason"], "attempts exhausted");
                    assert_eq!(statuses, vec![json!(500); 4]);
                }
            }
        }
        let letters = envelopes_of_letters(&log.read_topic("notify-dead-letters").unwrap());
        let mut expected: Vec<String> = events
            .iter()
            .filter(|(k, _)| k.starts_with("gone") || k.starts_with("down"))
            .map(|(_, e)| e.id.to_string())
            .collect();
        expected.sort();
        assert_eq!(
            letters, expected,
            "dead letters are the permanently failing events"
        );
    };
    check(&log);

    // Every attempt carried the event's idempotency key; each event was
    // called as often as its outcome says.
    let mut calls: HashMap<String, usize> = HashMap::new();
    for c in hook.calls() {
        *calls.entry(c.idempotency_key).or_default() += 1;
    }
    let expected_calls: HashMap<String, usize> = events
        .iter()
        .map(|(k, e)| {
            let n = match k.split('-').next().unwrap() {
                "ok" | "gone" => 1,
                "slow" => 2,
                "flaky" => 3,
                _ => 4,
            };
            (format!("notify:{}", e.id), n)
        })
        .collect();
    assert_eq!(calls, expected_calls);

    // A restart finds every event finished: no call, no outcome.
    let ends = |log: &Arc<dyn Log>| -> Vec<u64> {
        (0..3)
            .map(|p| log.offsets(&TopicPartition::new("events", p)).unwrap().end)
            .collect()
    };
    let before = ends(&log);
    let runner = start_notifying(&log, config, &hook, &rt);
    assert!(runner.wait_caught_up(Duration::from_secs(30)).unwrap());
    assert_eq!(runner.unfinished(), 0);
    runner.close().unwrap();
    assert_eq!(ends(&log), before, "nothing recorded again");
    assert_eq!(
        hook.calls().len(),
        expected_calls.values().sum::<usize>(),
        "nothing called again"
    );
    check(&log);
}

fn envelopes_of_letters(records: &[Record]) -> Vec<String> {
    let mut ids: Vec<String> = records
        .iter()
        .map(|r| {
            let v: Value = serde_json::from_slice(r.value.as_deref().unwrap()).unwrap();
            assert!(
                v["outcome"]["errors"]
                    .as_array()
                    .is_some_and(|e| !e.is_empty()),
                "{v}"
            );
            v["event"]["id"].as_str().unwrap().to_owned()
        })
        .collect();
    ids.sort();
    ids
}

#[test]
fn a_dead_target_does_not_stall_a_live_one() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let live = answering_after(&rt, Duration::from_millis(15));
    // A port nobody listens on: every call is refused.
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = open(dir.path());
    let mut records = Vec::new();
    let mut live_ids = Vec::new();
    for i in 0..120 {
        let target = if i % 4 == 0 { "dead" } else { "live" };
        let e = Envelope::command("cause", json!({}), Some(format!("k{i}")))
            .event("ping", json!({"target": target}));
        if target == "live" {
            live_ids.push(e.id);
        }
        records.push(
            kappa_log::ProducerRecord::value(serde_json::to_vec(&e).unwrap())
                .with_key(format!("k{i}")),
        );
    }
    log.append("events", records).unwrap();
    let live_url: kappa_effects::reqwest::Url = live.url("hook").parse().unwrap();
    let dead_url: kappa_effects::reqwest::Url = format!("http://127.0.0.1:{dead_port}/hook")
        .parse()
        .unwrap();
    let effect = HttpEffect::new(move |e: &Envelope| {
        let url = if e.data["target"] == "dead" {
            &dead_url
        } else {
            &live_url
        };
        Ok(HttpRequest::post(url.clone(), json!({})))
    })
    .unwrap();
    let mut config = RunnerConfig::new("relay", &["ping"]);
    config.concurrency_per_target = 3;
    config.drain_timeout = Duration::from_millis(100);
    config.retry = RetryPolicy {
        max_attempts: 1_000,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        ..RetryPolicy::default()
    };
    config.breaker = BreakerPolicy {
        failures_to_open: 3,
        open_for: Duration::from_millis(250),
    };
    let runner = Runner::start(log.clone(), config, Arc::new(effect), rt.handle().clone()).unwrap();

    // Follow the outcomes until every live event has one.
    let mut follower = Follower::new(log.clone(), "events", |_| 0).unwrap();
    let mut delivered = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    while delivered.len() < live_ids.len() {
        assert!(
            Instant::now() < deadline,
            "live events not delivered: {} of {}",
            delivered.len(),
            live_ids.len()
        );
        seen.clear();
        follower
            .next_batch(Duration::from_millis(500), &mut seen)
            .unwrap();
        for e in envelopes(&seen) {
            if e.action.starts_with("relay-") {
                assert_eq!(e.action, "relay-delivered", "{e:?}");
                delivered.push(e.parent.unwrap());
            }
        }
    }
    delivered.sort();
    live_ids.sort();
    assert_eq!(
        delivered, live_ids,
        "every live event, and only those, delivered"
    );
    assert_eq!(
        runner.unfinished(),
        30,
        "the dead target's events are still being retried"
    );
    assert!(
        live.max_concurrency() <= 3,
        "per-target bound: {}",
        live.max_concurrency()
    );
    let source = runner.metrics_source();
    let dead = format!("target=\"127.0.0.1:{dead_port}\"}}");
    assert!(
        metric(
            &source,
            &format!("kappa_effects_circuit_opened_total{{runner=\"relay\",{dead}")
        ) >= 1.0
    );
    assert_eq!(
        metric(
            &source,
            &format!(
                "kappa_effects_circuit_opened_total{{runner=\"relay\",target=\"127.0.0.1:{}\"}}",
                live.url("")
                    .split(':')
                    .nth(2)
                    .unwrap()
                    .trim_end_matches('/')
            )
        ),
        0.0
    );
    runner.close().unwrap();
}

#[test]
fn close_lets_attempts_in_flight_finish() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let hook = answering_after(&rt, Duration::from_millis(400));
    let log = open(dir.path());
    let events = write_events(&*log, "limit-threshold-reached", 2);
    let runner = start_notifying(
        &log,
        RunnerConfig::new("notify", &["limit-threshold-reached"]),
        &hook,
        &rt,
    );
    // Close once every call is being answered (each takes 400 ms).
    let deadline = Instant::now() + Duration::from_secs(30);
    while hook.calls().len() < events.len() {
        assert!(Instant::now() < deadline, "calls: {}", hook.calls().len());
        std::thread::yield_now();
    }
    runner.close().unwrap();
    let outcomes = envelopes(&log.read_topic("events").unwrap())
        .into_iter()
        .filter(|e| e.action == "notify-delivered")
        .count();
    assert_eq!(
        outcomes,
        events.len(),
        "the attempts in flight finished and were recorded"
    );
    assert_eq!(hook.calls().len(), events.len());
}
