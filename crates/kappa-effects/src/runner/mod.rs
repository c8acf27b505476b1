//! Effect runners: one effect per subscribed event, retried with backoff,
//! guarded per target by a concurrency bound and a circuit breaker, with
//! every outcome written back to the log exactly once.
//!
//! Three threads of work:
//!
//! * the **reader** follows the input topic, skips events of other actions
//!   (and events finished before a restart), and starts one delivery task
//!   per subscribed event, at most `max_in_flight` at a time;
//! * **delivery tasks** (on the tokio runtime) make the attempts;
//! * the **committer** writes the finished outcomes, the dead letters and
//!   the runner's progress in one [`Commit`]. Progress names the offsets
//!   still running, so after a crash exactly the events without a recorded
//!   outcome are tried again, with the same idempotency key.

mod breaker;
mod delivery;
mod effect;
mod policy;
mod progress;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kappa_log::{Commit, Log, LogError, ProducerRecord, Record, TopicPartition, TopicSpec};
use kappa_service::{Envelope, MetricFamilies, MetricsSource, metric_label};
use kappa_streams::provenance::{CAUSATION_HEADER, CORRELATION_HEADER, SOURCE_HEADER};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

pub use breaker::Circuit;
pub use effect::{
    Attempt, Call, Done, Effect, Failure, FnEffect, HttpEffect, HttpRequest, RequestBuilder,
    http_client,
};
pub use policy::{BreakerPolicy, RetryPolicy};

use crate::error::EffectsError;
use crate::follower::Follower;
use crate::lock;
use crate::watermark::Watermark;
use breaker::Breaker;
use delivery::deliver;
use progress::Progress;

/// How often progress over events that need no effect is committed when
/// no outcome is.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// Settings of a runner.
///
/// ```
/// use kappa_effects::RunnerConfig;
/// let config = RunnerConfig::new("notification", &["limit-threshold-reached"]);
/// assert_eq!(config.dead_letter_topic, "notification-dead-letters");
/// ```
#[derive(Clone, Debug)]
pub struct RunnerConfig {
    /// The runner's name (kebab-case). Outcomes are `<name>-delivered` and
    /// `<name>-failed`; progress is stored under it.
    pub name: String,
    /// The topic whose events are followed.
    pub input_topic: String,
    /// Event actions that get the effect; others are passed over.
    pub actions: Vec<String>,
    /// Where outcome events go (the gateway's event topic, so they show in
    /// its history).
    pub outcomes_topic: String,
    /// Where events go after their last failed attempt (created when missing).
    pub dead_letter_topic: String,
    /// Attempts and waits.
    pub retry: RetryPolicy,
    /// When a target's circuit opens.
    pub breaker: BreakerPolicy,
    /// Attempts running at once against one target.
    pub concurrency_per_target: usize,
    /// Events being worked on at once, waits included.
    pub max_in_flight: usize,
    /// Finished outcomes wait this long to share a commit.
    pub commit_interval: Duration,
    /// On close, attempts in flight get this long to finish (and have their
    /// outcomes recorded) before they are abandoned, to be made again at
    /// the next start.
    pub drain_timeout: Duration,
}

impl RunnerConfig {
    /// A runner `name` for events with `actions` on the `events` topic.
    pub fn new(name: &str, actions: &[&str]) -> Self {
        Self {
            name: name.to_owned(),
            input_topic: "events".to_owned(),
            actions: actions.iter().map(|a| (*a).to_owned()).collect(),
            outcomes_topic: "events".to_owned(),
            dead_letter_topic: format!("{name}-dead-letters"),
            retry: RetryPolicy::default(),
            breaker: BreakerPolicy::default(),
            concurrency_per_target: 16,
            max_in_flight: 1024,
            commit_interval: Duration::from_millis(5),
            drain_timeout: Duration::from_secs(5),
        }
    }

    fn check(&self) -> Result<(), EffectsError> {
        let bad = |why: &str| {
            Err(EffectsError::Config(format!(
                "runner {:?}: {why}",
                self.name
            )))
        };
        if !kappa_service::is_action_name(&self.name) || self.name.len() > 50 {
            return bad("the name must be kebab-case, at most 50 bytes");
        }
        if self.actions.is_empty() {
            return bad("it subscribes to no action");
        }
        let own = [self.delivered_action(), self.failed_action()];
        if self.input_topic == self.outcomes_topic && self.actions.iter().any(|a| own.contains(a)) {
            return bad("it would follow its own outcomes");
        }
        if self.retry.max_attempts == 0
            || self.concurrency_per_target == 0
            || self.max_in_flight == 0
        {
            return bad("attempts, per-target concurrency and in-flight events must be at least 1");
        }
        if self.breaker.failures_to_open == 0 {
            return bad("failures_to_open must be at least 1");
        }
        Ok(())
    }

    /// The action of a success outcome.
    pub fn delivered_action(&self) -> String {
        format!("{}-delivered", self.name)
    }

    /// The action of a failure outcome.
    pub fn failed_action(&self) -> String {
        format!("{}-failed", self.name)
    }

    /// The consumer group whose positions show the runner's progress.
    pub fn group(&self) -> String {
        format!("kappa-effects-{}", self.name)
    }

    fn progress_key(&self, partition: u32) -> Vec<u8> {
        format!(
            "kappa-effects/runners/{}/progress/{}/{partition}",
            self.name, self.input_topic
        )
        .into_bytes()
    }
}

/// Per-target state: its circuit, its concurrency bound and its figures.
struct Target {
    breaker: Breaker,
    permits: Arc<Semaphore>,
    attempts: AtomicU64,
    failures: AtomicU64,
    attempt_micros: AtomicU64,
}

/// What the committer takes next.
#[derive(Default)]
struct Pending {
    progress: Vec<Progress>,
    dirty: Vec<bool>,
    outcomes: Vec<ProducerRecord>,
    dead_letters: Vec<ProducerRecord>,
}

#[derive(Default)]
struct Counters {
    events: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    dead_letters: AtomicU64,
    retries: AtomicU64,
    commits: AtomicU64,
    undecodable: AtomicU64,
}

struct Shared {
    config: RunnerConfig,
    log: Arc<dyn Log>,
    effect: Arc<dyn Effect>,
    runtime: tokio::runtime::Handle,
    partitions: u32,
    pending: Mutex<Pending>,
    wake: Condvar,
    /// Set by `close`: no new event is read.
    closing: AtomicBool,
    stopping: AtomicBool,
    failure: Mutex<Option<String>>,
    targets: Mutex<BTreeMap<String, Arc<Target>>>,
    in_flight: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
    counters: Counters,
    /// Per partition, the lowest unfinished offset as last committed.
    committed: Watermark,
}

/// A running effect runner.
///
/// ```no_run
/// # fn demo(log: std::sync::Arc<dyn kappa_log::Log>) -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use kappa_effects::{HttpEffect, HttpRequest, Runner, RunnerConfig};
/// let url: reqwest::Url = "http://127.0.0.1:9000/sms".parse()?;
/// let effect = HttpEffect::new(move |e| Ok(HttpRequest::post(url.clone(), e.data.clone())))?;
/// let runtime = tokio::runtime::Runtime::new()?;
/// let runner = Runner::start(
///     log,
///     RunnerConfig::new("sms", &["limit-threshold-reached"]),
///     Arc::new(effect),
///     runtime.handle().clone(),
/// )?;
/// // ... serve; its figures: gateway builder `.metrics(runner.metrics_source())`
/// runner.close()?;
/// # Ok(()) }
/// ```
pub struct Runner {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    reader: Option<JoinHandle<()>>,
    committer: Option<JoinHandle<()>>,
}

impl Runner {
    /// Starts following the input from the stored progress.
    ///
    /// # Errors
    ///
    /// Invalid settings, missing input or outcome topics, unreadable progress.
    pub fn start(
        log: Arc<dyn Log>,
        config: RunnerConfig,
        effect: Arc<dyn Effect>,
        runtime: tokio::runtime::Handle,
    ) -> Result<Self, EffectsError> {
        config.check()?;
        let partitions = log.describe_topic(&config.input_topic)?.spec.partitions;
        log.describe_topic(&config.outcomes_topic)?;
        match log.create_topic(&TopicSpec::new(&config.dead_letter_topic, partitions)) {
            Ok(()) | Err(LogError::TopicExists(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let mut progress = Vec::with_capacity(partitions as usize);
        for p in 0..partitions {
            let stored = match log.metadata(&config.progress_key(p))? {
                Some(v) => {
                    serde_json::from_slice(&v).map_err(|e| EffectsError::CorruptProgress {
                        what: format!("runner {:?} partition {p}", config.name),
                        detail: e.to_string(),
                    })?
                }
                None => Progress::default(),
            };
            progress.push(stored);
        }
        let redo: usize = progress.iter().map(Progress::running).sum();
        let starts: Vec<u64> = progress.iter().map(Progress::next).collect();
        tracing::info!(runner = %config.name, topic = %config.input_topic, partitions, redo, "effect runner starting");
        let (stop_tx, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
            config,
            log,
            effect,
            runtime,
            partitions,
            pending: Mutex::new(Pending {
                dirty: vec![false; progress.len()],
                progress,
                ..Pending::default()
            }),
            wake: Condvar::new(),
            closing: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            failure: Mutex::new(None),
            targets: Mutex::new(BTreeMap::new()),
            stop: stop_rx,
            counters: Counters::default(),
            committed: Watermark::new(starts),
        });
        let spawn = |what: &str, f: fn(&Arc<Shared>) -> Result<(), EffectsError>| {
            let s = shared.clone();
            std::thread::Builder::new()
                .name(format!("effects-{what}"))
                .spawn(move || {
                    if let Err(e) = f(&s) {
                        tracing::error!(runner = %s.config.name, error = %e, "effect runner stopped");
                        s.fail(e.to_string());
                    }
                })
                .map_err(|e| EffectsError::io("starting a runner thread", e))
        };
        let reader = spawn("reader", read_loop)?;
        let committer = spawn("committer", commit_loop)?;
        Ok(Self {
            shared,
            stop: stop_tx,
            reader: Some(reader),
            committer: Some(committer),
        })
    }

    /// Whether the runner is working (not stopped by a failure or `close`).
    pub fn is_running(&self) -> bool {
        !self.shared.stopping.load(Ordering::Acquire)
    }

    /// Why the runner stopped, if a failure stopped it.
    pub fn failure(&self) -> Option<String> {
        lock(&self.shared.failure).clone()
    }

    /// The runner's figures, for the gateway's `/metrics`.
    pub fn metrics_source(&self) -> Arc<dyn MetricsSource> {
        self.shared.clone()
    }

    /// Events whose outcome is not recorded yet, in all partitions.
    pub fn unfinished(&self) -> usize {
        let p = lock(&self.shared.pending);
        p.progress.iter().map(Progress::running).sum()
    }

    /// The runner's progress, for the service's announcement.
    pub fn progress(&self) -> Arc<dyn crate::progress::Progress> {
        self.shared.clone()
    }

    /// Waits until every event the input holds now has its outcome
    /// committed (or needs none); false on timeout or when the runner stopped.
    ///
    /// # Errors
    ///
    /// Log failures.
    pub fn wait_caught_up(&self, timeout: Duration) -> Result<bool, EffectsError> {
        let s = &self.shared;
        Ok(s.committed
            .wait_caught_up(&*s.log, &s.config.input_topic, timeout, || {
                s.stopping.load(Ordering::Acquire)
            })?)
    }

    /// Stops reading, lets the attempts in flight finish for up to
    /// `drain_timeout` (then abandons them: they are made again after a
    /// restart) and commits every outcome finished.
    ///
    /// # Errors
    ///
    /// The runner had stopped on a failure, which is returned.
    pub fn close(mut self) -> Result<(), EffectsError> {
        self.shutdown();
        match self.failure() {
            Some(f) => Err(EffectsError::Config(format!("the runner had failed: {f}"))),
            None => Ok(()),
        }
    }

    fn shutdown(&mut self) {
        let s = &self.shared;
        s.closing.store(true, Ordering::Release);
        if let Some(t) = self.reader.take() {
            let _ = t.join();
        }
        // Let the attempts in flight finish, so their calls are not made
        // again after the restart.
        let deadline = Instant::now() + s.config.drain_timeout;
        let mut pending = lock(&s.pending);
        while s.in_flight.available_permits() < s.config.max_in_flight
            && !s.stopping.load(Ordering::Acquire)
        {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::info!(runner = %s.config.name, "abandoning attempts still in flight; they are made again at the next start");
                break;
            }
            pending = s
                .wake
                .wait_timeout(pending, left.min(Duration::from_millis(50)))
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        drop(pending);
        s.stopping.store(true, Ordering::Release);
        let _ = self.stop.send(true);
        s.wake.notify_all();
        if let Some(t) = self.committer.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Shared {
    fn fail(&self, why: String) {
        lock(&self.failure).get_or_insert(why);
        self.stopping.store(true, Ordering::Release);
        self.wake.notify_all();
    }

    fn target(&self, name: &str) -> Arc<Target> {
        let mut targets = lock(&self.targets);
        if let Some(t) = targets.get(name) {
            return t.clone();
        }
        let t = Arc::new(Target {
            breaker: Breaker::new(self.config.breaker.clone()),
            permits: Arc::new(Semaphore::new(self.config.concurrency_per_target)),
            attempts: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            attempt_micros: AtomicU64::new(0),
        });
        targets.insert(name.to_owned(), t.clone());
        t
    }

    /// Records a finished event: its outcome (and dead letter) join the
    /// next commit together with the progress that marks it finished.
    fn finish(
        &self,
        partition: u32,
        offset: u64,
        outcome: ProducerRecord,
        dead_letter: Option<ProducerRecord>,
    ) {
        let mut p = lock(&self.pending);
        p.progress[partition as usize].finish(offset);
        p.dirty[partition as usize] = true;
        p.outcomes.push(outcome);
        p.dead_letters.extend(dead_letter);
        drop(p);
        // The committer, and a `close` waiting for the attempts in flight.
        self.wake.notify_all();
    }
}

/// The fields needed to choose events.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow)]
    action: std::borrow::Cow<'a, str>,
}

/// The event in `record` if the runner subscribes to its action.
fn subscribed(config: &RunnerConfig, record: &Record) -> Result<Option<Envelope>, String> {
    let Some(value) = record.value.as_deref() else {
        return Ok(None);
    };
    let head: Head<'_> = serde_json::from_slice(value).map_err(|e| e.to_string())?;
    if !config.actions.iter().any(|a| *a == head.action) {
        return Ok(None);
    }
    serde_json::from_slice(value)
        .map(Some)
        .map_err(|e| e.to_string())
}

fn read_loop(shared: &Arc<Shared>) -> Result<(), EffectsError> {
    let config = &shared.config;
    let starts: Vec<u64> = lock(&shared.pending)
        .progress
        .iter()
        .map(Progress::next)
        .collect();
    let mut follower = Follower::new(shared.log.clone(), &config.input_topic, |p| {
        starts.get(p as usize).copied().unwrap_or(0)
    })?;
    let mut batch = Vec::new();
    while !shared.closing.load(Ordering::Acquire) && !shared.stopping.load(Ordering::Acquire) {
        batch.clear();
        follower.next_batch(Duration::from_millis(200), &mut batch)?;
        for record in batch.drain(..) {
            let p = record.partition as usize;
            if lock(&shared.pending).progress[p].is_finished(record.offset) {
                continue;
            }
            let event = match subscribed(config, &record) {
                Ok(Some(event)) => event,
                Ok(None) => {
                    let mut pending = lock(&shared.pending);
                    pending.progress[p].skip(record.offset);
                    pending.dirty[p] = true;
                    continue;
                }
                Err(why) => {
                    shared.counters.undecodable.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(runner = %config.name, position = %record.position(), %why, "passing over a record that is not an envelope");
                    let mut pending = lock(&shared.pending);
                    pending.progress[p].skip(record.offset);
                    pending.dirty[p] = true;
                    continue;
                }
            };
            let Some(permit) = acquire(shared) else {
                return Ok(());
            };
            {
                let mut pending = lock(&shared.pending);
                pending.progress[p].start(record.offset);
                pending.dirty[p] = true;
            }
            shared.counters.events.fetch_add(1, Ordering::Relaxed);
            shared
                .runtime
                .spawn(deliver(shared.clone(), Arc::new(event), record, permit));
        }
        shared.wake.notify_all();
    }
    Ok(())
}

/// A place among the events in flight, or `None` once stopping.
fn acquire(shared: &Shared) -> Option<OwnedSemaphorePermit> {
    loop {
        if shared.closing.load(Ordering::Acquire) || shared.stopping.load(Ordering::Acquire) {
            return None;
        }
        let permits = shared.in_flight.clone();
        // The timer must be made inside the runtime.
        let wait = async move {
            tokio::time::timeout(Duration::from_millis(200), permits.acquire_owned()).await
        };
        if let Ok(Ok(permit)) = shared.runtime.block_on(wait) {
            return Some(permit);
        }
    }
}

fn commit_loop(shared: &Arc<Shared>) -> Result<(), EffectsError> {
    let config = &shared.config;
    let mut last_commit = Instant::now();
    loop {
        {
            // Outcomes are committed promptly. Progress over events that
            // need no effect only saves re-reading them after a crash, so
            // it waits for an outcome or PROGRESS_INTERVAL: a busy input
            // does not cost a commit (an fsync) every few milliseconds.
            let mut p = lock(&shared.pending);
            loop {
                if !p.outcomes.is_empty() || shared.stopping.load(Ordering::Acquire) {
                    break;
                }
                let due = PROGRESS_INTERVAL.saturating_sub(last_commit.elapsed());
                if p.dirty.contains(&true) && due.is_zero() {
                    break;
                }
                let wait = if p.dirty.contains(&true) {
                    due
                } else {
                    Duration::from_millis(500)
                };
                p = shared
                    .wake
                    .wait_timeout(p, wait)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
        }
        let stopping = shared.stopping.load(Ordering::Acquire);
        if !stopping {
            // Let outcomes finishing close together share one commit.
            std::thread::sleep(config.commit_interval);
        }
        let mut commit = Commit::new();
        let nexts: Vec<u64>;
        {
            let mut p = lock(&shared.pending);
            nexts = p.progress.iter().map(Progress::next).collect();
            let outcomes = std::mem::take(&mut p.outcomes);
            let dead_letters = std::mem::take(&mut p.dead_letters);
            if !outcomes.is_empty() {
                commit.append_all(&config.outcomes_topic, None, outcomes);
            }
            if !dead_letters.is_empty() {
                commit.append_all(&config.dead_letter_topic, None, dead_letters);
            }
            let group = config.group();
            for partition in 0..shared.partitions {
                let i = partition as usize;
                if !std::mem::take(&mut p.dirty[i]) {
                    continue;
                }
                let progress = &p.progress[i];
                let json = serde_json::to_vec(progress).unwrap_or_default();
                commit.put_metadata(config.progress_key(partition), json);
                commit.set_group_position(
                    &group,
                    TopicPartition::new(config.input_topic.as_str(), partition),
                    progress.next(),
                );
            }
        }
        if !commit.is_empty() {
            last_commit = Instant::now();
            shared.log.commit(commit)?;
            shared.counters.commits.fetch_add(1, Ordering::Relaxed);
            shared.committed.set(nexts);
        }
        if stopping {
            return Ok(());
        }
    }
}

impl crate::progress::Progress for Shared {
    fn reader(&self) -> String {
        self.config.group()
    }

    fn topic(&self) -> &str {
        &self.config.input_topic
    }

    fn writes(&self) -> Vec<String> {
        vec![
            self.config.outcomes_topic.clone(),
            self.config.dead_letter_topic.clone(),
        ]
    }

    fn committed(&self) -> Vec<u64> {
        self.committed.get()
    }
}

impl MetricsSource for Shared {
    fn collect(&self, f: &mut MetricFamilies) {
        let c = &self.counters;
        let r = format!("runner=\"{}\"", metric_label(&self.config.name));
        let counter = |v: &AtomicU64| v.load(Ordering::Relaxed);
        for (name, value) in [
            ("kappa_effects_events_total", &c.events),
            ("kappa_effects_delivered_total", &c.delivered),
            ("kappa_effects_failed_total", &c.failed),
            ("kappa_effects_dead_letters_total", &c.dead_letters),
            ("kappa_effects_retries_total", &c.retries),
            ("kappa_effects_commits_total", &c.commits),
            ("kappa_effects_undecodable_total", &c.undecodable),
        ] {
            f.add(name, "counter", &r, counter(value));
        }
        f.add(
            "kappa_effects_in_flight",
            "gauge",
            &r,
            self.config.max_in_flight - self.in_flight.available_permits(),
        );
        f.add(
            "kappa_effects_running",
            "gauge",
            &r,
            u8::from(!self.stopping.load(Ordering::Acquire)),
        );
        for (name, t) in lock(&self.targets).iter() {
            let l = format!("{r},target=\"{}\"", metric_label(name));
            let (circuit, opened) = t.breaker.state();
            f.add(
                "kappa_effects_attempts_total",
                "counter",
                &l,
                counter(&t.attempts),
            );
            f.add(
                "kappa_effects_attempt_failures_total",
                "counter",
                &l,
                counter(&t.failures),
            );
            f.add(
                "kappa_effects_attempt_seconds_total",
                "counter",
                &l,
                counter(&t.attempt_micros) as f64 / 1e6,
            );
            f.add("kappa_effects_circuit_state", "gauge", &l, circuit.gauge());
            f.add("kappa_effects_circuit_opened_total", "counter", &l, opened);
        }
        let nexts: Vec<u64> = lock(&self.pending)
            .progress
            .iter()
            .map(Progress::next)
            .collect();
        for (partition, next) in nexts.into_iter().enumerate() {
            let tp = TopicPartition::new(self.config.input_topic.as_str(), partition as u32);
            if let Ok(offsets) = self.log.offsets(&tp) {
                let l = format!(
                    "{r},topic=\"{}\",partition=\"{partition}\"",
                    metric_label(&self.config.input_topic)
                );
                f.add(
                    "kappa_effects_lag_records",
                    "gauge",
                    &l,
                    offsets.end.saturating_sub(next),
                );
            }
        }
    }
}
