//! card-limits as the article draws it: the decisions (`card-limits serve
//! --kafka-listen`), the notifier and the external views each in a process
//! of their own, connected only by the topics of one log served over the
//! Kafka protocol; and a fourth service in Python with a stock Kafka
//! client and no Kappa code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::service::{Load, Server, Service, interrupt, python, serve_node, start_service};
use common::views::{
    MERCHANT_WORDS, check_notifications, check_search, decide_everything, events, expected_tables,
    postgres, script, tables,
};
use kappa_effects::testing::{Reply, Webhook};
use kappa_gateway::Envelope;
use kappa_log::{EmbeddedLog, Log};
use serde_json::Value;

/// The notifier's arguments (its webhook slow to answer once per card of
/// one class, so attempts are in flight when it is killed).
fn notifier_args<'a>(kafka: &'a str, notify: &'a str) -> [&'a str; 8] {
    [
        "--log",
        kafka,
        "--notify-url",
        notify,
        "--notify-timeout",
        "300ms",
        "--http",
        "127.0.0.1:0",
    ]
}

fn views_args<'a>(kafka: &'a str, postgres: &'a str, search: &'a str) -> [&'a str; 8] {
    [
        "--log",
        kafka,
        "--postgres",
        postgres,
        "--search-dir",
        search,
        "--http",
        "127.0.0.1:0",
    ]
}

fn as_strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// The decisions serving their log on a node, a PostgreSQL server with the
/// service's tables, and a webhook answering as `script` says: what the
/// notifier and the views run against.
struct Setup {
    _pg: kappa_effects::postgres::TempCluster,
    url: String,
    hook: Webhook,
    _dir: tempfile::TempDir,
    log_dir: std::path::PathBuf,
    state: std::path::PathBuf,
    search: String,
    serve: Server,
    addr: std::net::SocketAddr,
    kafka: String,
}

impl Setup {
    async fn start() -> Self {
        let (pg, url) = postgres();
        let hook = Webhook::start(script).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (log_dir, state) = (dir.path().join("log"), dir.path().join("state"));
        let search = dir.path().join("search").to_string_lossy().into_owned();
        let (serve, addr, kafka) = serve_node(&log_dir, &[]);
        Self {
            _pg: pg,
            url,
            hook,
            _dir: dir,
            log_dir,
            state,
            search,
            serve,
            addr,
            kafka,
        }
    }
}

/// Stops a service with SIGINT, checking that it stops cleanly.
fn stop(service: Service) {
    interrupt(service.server);
}

/// Once nothing but the notifier's outcomes is written any more: a fresh
/// notifier catches up (every threshold has its outcome in the log), then
/// fresh views (every event, outcomes too, is in the tables and the
/// index); then everything stops and the log is opened to check it.
fn settle_and_stop(
    serve: Server,
    (notifier, views): (Service, Service),
    (notifier_args, views_args): (&[&str], &[&str]),
    state: &Path,
    log_dir: &Path,
) -> Arc<dyn Log> {
    stop(notifier);
    stop(start_service("notifier", notifier_args, state));
    stop(views);
    stop(start_service("views", views_args, state));
    interrupt(serve);
    Arc::new(EmbeddedLog::open(log_dir).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_notifier_and_the_views_in_processes_of_their_own_the_oracle_history_passes() {
    let s = Setup::start().await;
    let notify = s.hook.url("notify");
    let (n_args, v_args) = (
        notifier_args(&s.kafka, &notify),
        views_args(&s.kafka, &s.url, &s.search),
    );
    let notifier = start_service("notifier", &n_args, &s.state);
    let views = start_service("views", &v_args, &s.state);
    assert!(views.http.is_some() && notifier.http.is_some());

    common::history_http::check_history(s.addr, 1500).await;

    let log = settle_and_stop(
        s.serve,
        (notifier, views),
        (&n_args, &v_args),
        &s.state,
        &s.log_dir,
    );
    let all = events(&*log);
    check_notifications(&*log, &all, &s.hook.calls());
    assert_eq!(tables(&s.url).await, expected_tables(&all));
    check_search(log, Path::new(&s.search), &all, &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notifier_and_the_views_killed_and_restarted_during_a_load_notify_once_and_equal_the_log()
 {
    const COMMANDS: u64 = 2400;
    const CARDS: u64 = 24;
    let s = Setup::start().await;
    let notify = s.hook.url("notify");
    let n_args: Vec<String> = notifier_args(&s.kafka, &notify).map(str::to_owned).into();
    let v_args: Vec<String> = views_args(&s.kafka, &s.url, &s.search)
        .map(str::to_owned)
        .into();

    // On a thread of its own, while the load runs: each service in turn is
    // killed (SIGKILL) a moment after it caught up, and started again.
    let loaded = Arc::new(AtomicBool::new(false));
    let killer = {
        let (loaded, state) = (loaded.clone(), s.state.clone());
        let (n_args, v_args) = (n_args.clone(), v_args.clone());
        std::thread::spawn(move || {
            let mut services = [
                start_service("notifier", &as_strs(&n_args), &state),
                start_service("views", &as_strs(&v_args), &state),
            ];
            let mut kills = 0;
            while kills < 6 || !loaded.load(Ordering::Acquire) {
                // A schedule of faults, not a wait for anything.
                std::thread::sleep(Duration::from_millis(300));
                let (kind, a) = if kills % 2 == 0 {
                    ("notifier", &n_args)
                } else {
                    ("views", &v_args)
                };
                let s = &mut services[kills % 2];
                s.server.kill();
                *s = start_service(kind, &as_strs(a), &state);
                kills += 1;
            }
            (services, kills)
        })
    };
    let load = Load::new(COMMANDS, CARDS, 6);
    load.finish(s.addr).await;
    decide_everything(s.addr, CARDS).await;
    loaded.store(true, Ordering::Release);
    let ([notifier, views], kills) = tokio::task::spawn_blocking(move || killer.join().unwrap())
        .await
        .unwrap();
    assert!(kills >= 6, "{kills}");

    let log = settle_and_stop(
        s.serve,
        (notifier, views),
        (&as_strs(&n_args), &as_strs(&v_args)),
        &s.state,
        &s.log_dir,
    );
    let all = events(&*log);
    check_notifications(&*log, &all, &s.hook.calls());
    let expected = expected_tables(&all);
    assert!(expected.1.len() > 500, "{}", expected.1.len());
    assert_eq!(tables(&s.url).await, expected);
    check_search(log, Path::new(&s.search), &all, &MERCHANT_WORDS);
}

/// Writes `n` commands of the traffic stream straight to the log in `dir`
/// (as the gateway would), before anything serves it.
fn write_commands(dir: &Path, n: u64, cards: u64) {
    let log = EmbeddedLog::open(dir).unwrap();
    let config = kappa_gateway::GatewayConfig::default();
    kappa_gateway::ensure_topics(&log, &config).unwrap();
    let mut at = 0;
    while at < n {
        let end = (at + 10_000).min(n);
        let records: Vec<kappa_log::ProducerRecord> = (at..end)
            .map(|i| {
                let (action, data) = card_limits::traffic::command(i, cards);
                let card = data["card"].as_str().unwrap().to_owned();
                let e = Envelope::command(action, data, Some(card.clone()));
                kappa_log::ProducerRecord::value(serde_json::to_vec(&e).unwrap()).with_key(card)
            })
            .collect();
        let mut commit = kappa_log::Commit::new();
        commit.append_all(&config.commands_topic, None, records);
        log.commit(commit).unwrap();
        at = end;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notifier_first_started_after_100000_commands_catches_up_and_notifies_each_threshold_once()
 {
    const CARDS: u64 = 1000;
    let dir = tempfile::tempdir().unwrap();
    let (log_dir, state) = (dir.path().join("log"), dir.path().join("state"));
    write_commands(&log_dir, 100_000, CARDS);
    let (serve, addr, kafka) = serve_node(&log_dir, &[]);
    // Once each card's last command is answered, the card's earlier ones are decided.
    decide_everything(addr, CARDS).await;

    let hook = Webhook::start(|_| Reply::status(204)).await.unwrap();
    let notify = hook.url("notify");
    let notifier = start_service("notifier", &notifier_args(&kafka, &notify), &state);
    // `ready: caught up with N records in S s (R records/s)`
    let words: Vec<&str> = notifier.ready.split([' ', '(']).collect();
    let (records, seconds): (u64, f64) = (words[4].parse().unwrap(), words[7].parse().unwrap());
    assert!(records > 100_000, "{}", notifier.ready);
    println!(
        "{}",
        serde_json::json!({"notifier_catch_up": {"commands": 100_000, "records": records,
            "seconds": seconds, "records_per_s": records as f64 / seconds}})
    );
    stop(notifier);
    interrupt(serve);

    let log = EmbeddedLog::open(&log_dir).unwrap();
    let all = events(&log);
    let thresholds: Vec<&Envelope> = all
        .iter()
        .filter(|e| e.action == "limit-threshold-reached")
        .collect();
    assert!(thresholds.len() >= 100, "{} thresholds", thresholds.len());
    let mut outcomes: BTreeMap<uuid::Uuid, usize> = BTreeMap::new();
    for e in all.iter().filter(|e| e.action == "notification-delivered") {
        *outcomes.entry(e.parent.unwrap()).or_default() += 1;
    }
    let mut calls: BTreeMap<String, usize> = BTreeMap::new();
    for c in hook.calls() {
        *calls.entry(c.idempotency_key).or_default() += 1;
    }
    assert_eq!(outcomes.len(), thresholds.len());
    assert_eq!(calls.len(), thresholds.len());
    for t in thresholds {
        assert_eq!(outcomes.get(&t.id), Some(&1), "{}", t.id);
        // No crash: not even a repeated call.
        assert_eq!(calls.get(&format!("notification:{}", t.id)), Some(&1));
    }
}

/// Runs `merchant_totals.py --once` against `bootstrap` with its totals in
/// `db`: it catches up with the events topic, prints the totals and the
/// offsets they include, and exits.
fn merchant_totals_once(bootstrap: &str, db: &Path) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("merchant-totals/merchant_totals.py");
    let out = Process::new(python())
        .arg(script)
        .args(["--bootstrap", bootstrap, "--once", "--db"])
        .arg(db)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", out.status);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let last = stdout.lines().last().unwrap();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// The totals recomputed from the events below `offsets` (next offset per partition).
fn recomputed_totals(log: &dyn Log, offsets: &Value) -> Vec<Value> {
    let mut totals: BTreeMap<(String, String), (i64, i64, i64)> = BTreeMap::new();
    for r in log.read_topic("events").unwrap() {
        let next = offsets[r.partition.to_string()].as_u64().unwrap_or(0);
        if r.offset >= next {
            continue;
        }
        let e: Envelope = serde_json::from_slice(r.value.as_ref().unwrap()).unwrap();
        let approved = match e.action.as_str() {
            "authorization-approved" => true,
            "authorization-declined" => false,
            _ => continue,
        };
        if e.data.get("duplicate").is_some() {
            continue;
        }
        let day = e.timestamp.div_euclid(86_400_000);
        let date = civil_date(day);
        let t = totals
            .entry((e.data["merchant"].as_str().unwrap().to_owned(), date))
            .or_default();
        if approved {
            t.0 += e.data["amount"].as_i64().unwrap();
            t.1 += 1;
        } else {
            t.2 += 1;
        }
    }
    totals
        .into_iter()
        .map(|((merchant, day), (cents, approved, declined))| {
            serde_json::json!({"merchant": merchant, "day": day, "approved_cents": cents, "approved": approved, "declined": declined})
        })
        .collect()
}

/// `YYYY-MM-DD` of a day counted from 1970-01-01 (Howard Hinnant's civil_from_days).
fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_service_keeps_per_merchant_daily_totals_equal_to_a_recomputation_from_the_events()
 {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let db = dir.path().join("totals.sqlite");
    let (serve, addr, kafka) = serve_node(&log_dir, &[]);
    let bootstrap = kafka.trim_start_matches("kafka://").to_owned();
    let load = Load::new(3000, 40, 4);
    let mut runs = Vec::new();
    // Twice: the second run goes on from the offsets kept with the totals.
    for commands in [1200, 3000] {
        let mut part = load.clone();
        part.commands = commands;
        part.finish(addr).await;
        decide_everything(addr, 40).await;
        let db = db.clone();
        let bootstrap = bootstrap.clone();
        runs.push(
            tokio::task::spawn_blocking(move || merchant_totals_once(&bootstrap, &db))
                .await
                .unwrap(),
        );
    }
    interrupt(serve);
    let log = EmbeddedLog::open(&log_dir).unwrap();
    for run in &runs {
        let got = run["totals"].as_array().unwrap();
        assert!(got.len() > 30, "{run}");
        assert_eq!(*got, recomputed_totals(&log, &run["offsets"]));
    }
    assert_ne!(runs[0]["offsets"], runs[1]["offsets"]);
    assert_eq!(civil_date(0), "1970-01-01");
    assert_eq!(civil_date(20_608), "2026-06-04");
}

/// `GET /console/api/system` until `done` holds for it (at most a minute).
async fn system_until(
    addr: std::net::SocketAddr,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let mut c = kappa_gateway::load::HttpClient::connect(addr)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let r = c.get("/console/api/system").await.unwrap();
        assert_eq!(r.status, 200);
        let system = r.json();
        if done(&system) {
            return system;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: {system:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The service named `name` in a system answer.
fn service<'a>(system: &'a Value, name: &str) -> Option<&'a Value> {
    system["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == name)
}

/// Whether every reading of `entry` is on `topic` with no lag, and there are `n`.
fn caught_up_on(entry: Option<&Value>, topic: &str, n: usize) -> bool {
    entry.is_some_and(|e| {
        let reads = e["reads"].as_array().unwrap();
        reads.len() == n && reads.iter().all(|r| r["topic"] == topic && r["lag"] == 0)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_draws_each_service_and_group_with_the_topics_it_reads_and_writes_and_its_lag()
{
    let dir = tempfile::tempdir().unwrap();
    let (log_dir, state) = (dir.path().join("log"), dir.path().join("state"));
    let search = dir.path().join("search").to_string_lossy().into_owned();
    let (serve, addr, kafka) = serve_node(&log_dir, &[]);
    let hook = Webhook::start(|_| Reply::status(204)).await.unwrap();
    let notify = hook.url("notify");
    let notifier = start_service("notifier", &notifier_args(&kafka, &notify), &state);
    let views = start_service("views", &["--log", &kafka, "--search-dir", &search], &state);
    let load = Load::new(1500, 24, 4);
    load.finish(addr).await;
    decide_everything(addr, 24).await;

    // Once the notifier wrote its outcomes, every Kappa reader is at the end.
    let system = system_until(addr, "every service caught up", |s| {
        let running = |n: &str| service(s, n).is_some_and(|e| e["state"] == "running");
        running("decisions")
            && running("notifier")
            && running("views")
            && caught_up_on(service(s, "decisions"), "commands", 1)
            && caught_up_on(service(s, "notifier"), "events", 1)
            && caught_up_on(service(s, "views"), "events", 1)
    })
    .await;
    let decisions = service(&system, "decisions").unwrap();
    assert_eq!(decisions["http"], format!("http://{addr}"));
    assert_eq!(
        decisions["writes"],
        serde_json::json!(["commands", "events"])
    );
    let notifier_entry = service(&system, "notifier").unwrap();
    assert_eq!(notifier_entry["instance"], "notifier");
    assert_eq!(
        notifier_entry["reads"][0]["reader"],
        "kappa-effects-notification"
    );
    assert_eq!(
        notifier_entry["writes"],
        serde_json::json!(["events", "notification-dead-letters"])
    );
    assert_eq!(
        notifier_entry["http"],
        format!("http://{}", notifier.http.unwrap())
    );
    assert_eq!(
        service(&system, "views").unwrap()["writes"],
        serde_json::json!([])
    );
    let events = system["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "events")
        .unwrap();
    assert!(events["records"].as_u64().unwrap() > 1500, "{events}");

    // The Python service announces nothing: its Kafka group is drawn from its offsets.
    let db = dir.path().join("totals.sqlite");
    let bootstrap = kafka.trim_start_matches("kafka://").to_owned();
    tokio::task::spawn_blocking(move || merchant_totals_once(&bootstrap, &db))
        .await
        .unwrap();
    system_until(addr, "the Python group at the end", |s| {
        let group = s["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["group"] == "merchant-totals");
        caught_up_on(group, "events", 1)
    })
    .await;

    // A stopped service says so; a killed one goes silent.
    stop(notifier);
    let mut views = views;
    views.server.kill();
    system_until(addr, "stopped and silent", |s| {
        service(s, "notifier").is_some_and(|e| e["state"] == "stopped")
            && service(s, "views").is_some_and(|e| e["state"] == "silent")
    })
    .await;
    interrupt(serve);
}
