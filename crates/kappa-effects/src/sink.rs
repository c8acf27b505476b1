//! What the PostgreSQL and full-text sinks share: a thread that follows a
//! topic from the positions stored in the sink's own system and applies
//! each batch together with the positions after it, so the external view
//! and its positions change in one transaction.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kappa_log::{Log, Record, TopicPartition};
use kappa_service::{MetricFamilies, MetricsSource, metric_label};

use crate::error::EffectsError;
use crate::follower::Follower;
use crate::lock;
use crate::watermark::Watermark;

/// What one applied batch changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Rows or documents written.
    pub upserted: u64,
    /// Rows or documents removed.
    pub deleted: u64,
    /// Records the sink's mapping passed over.
    pub skipped: u64,
}

/// A sink's storage: applies batches and stores the positions after them
/// in the same transaction. It may work on one batch while the next is
/// read (PostgreSQL) or hold changes for a later commit (tantivy).
pub(crate) trait Apply: Send + 'static {
    /// Applies `records`; `next` is the next offset of every partition once
    /// they are applied, to be made durable with them.
    fn apply(&mut self, records: &[Record], next: &[u64]) -> Result<Applied, EffectsError>;

    /// The positions whose changes became durable since the last call, if
    /// any. When `idle` (no records are waiting), everything applied is made
    /// durable first.
    fn durable(&mut self, idle: bool) -> Result<Option<Vec<u64>>, EffectsError>;

    /// Whether applied changes are not durable yet.
    fn holding(&self) -> bool;
}

pub(crate) struct Shared {
    name: String,
    kind: &'static str,
    topic: String,
    log: Arc<dyn Log>,
    committed: Watermark,
    stopping: AtomicBool,
    failure: Mutex<Option<String>>,
    records: AtomicU64,
    upserted: AtomicU64,
    deleted: AtomicU64,
    skipped: AtomicU64,
    batches: AtomicU64,
    restarts: AtomicU64,
}

/// What every running sink offers (both sinks dereference to it): its
/// progress, its health and its figures.
pub struct SinkHandle {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Makes a sink (a struct keeping its [`SinkHandle`] in `thread`)
/// dereference to the handle, so that the handle's methods are the sink's.
macro_rules! deref_to_handle {
    ($sink:ty) => {
        impl std::ops::Deref for $sink {
            type Target = $crate::sink::SinkHandle;

            fn deref(&self) -> &Self::Target {
                &self.thread
            }
        }
    };
}
pub(crate) use deref_to_handle;

/// Opens a sink's storage: its applier and the positions it has stored.
/// Called again after a failure (a lost connection, say).
pub(crate) type Open = Box<dyn FnMut() -> Result<(Box<dyn Apply>, Vec<u64>), EffectsError> + Send>;

/// Longest wait before opening a failed sink again.
const RETRY_MAX: Duration = Duration::from_secs(30);

impl SinkHandle {
    /// Opens the storage with `open` and follows `topic` from the positions
    /// it stored, applying batches of at most `batch_max` records. After a
    /// failure the storage is opened again (waiting 0.5 s, doubling to 30 s)
    /// and the sink resumes from the positions it stored.
    ///
    /// # Errors
    ///
    /// The first `open` failed, or the stored positions are past the end of
    /// the log (the state was built from another log).
    pub(crate) fn start(
        log: Arc<dyn Log>,
        kind: &'static str,
        name: &str,
        topic: &str,
        batch_max: usize,
        mut open: Open,
    ) -> Result<Self, EffectsError> {
        let (apply, start) = open()?;
        for (p, at) in start.iter().enumerate() {
            let end = log.offsets(&TopicPartition::new(topic, p as u32))?.end;
            if *at > end {
                return Err(EffectsError::Config(format!(
                    "{kind} sink {name:?} has seen {topic}/{p} up to offset {at}, but the log ends at {end}: \
                     it was built from another log; drop its state (rebuild) so it is built from this one"
                )));
            }
        }
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            kind,
            topic: topic.to_owned(),
            log,
            committed: Watermark::new(start.clone()),
            stopping: AtomicBool::new(false),
            failure: Mutex::new(None),
            records: AtomicU64::new(0),
            upserted: AtomicU64::new(0),
            deleted: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("{kind}-{name}"))
            .spawn(move || {
                let mut opened = Some((apply, start));
                let mut backoff = Duration::from_millis(500);
                while !s.stopping.load(Ordering::Acquire) {
                    let (mut apply, start) = match opened.take() {
                        Some(o) => o,
                        None => match open() {
                            Ok(o) => o,
                            Err(e) => {
                                s.wait_to_retry(&e, &mut backoff);
                                continue;
                            }
                        },
                    };
                    match s.run(&mut *apply, &start, batch_max, &mut backoff) {
                        Ok(()) => break,
                        Err(e) => {
                            s.restarts.fetch_add(1, Ordering::Relaxed);
                            // The storage is closed before it is opened again.
                            drop(apply);
                            s.wait_to_retry(&e, &mut backoff);
                        }
                    }
                }
                s.stopping.store(true, Ordering::Release);
                s.committed.wake();
            })
            .map_err(|e| EffectsError::io("starting a sink thread", e))?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// The sink's name (its figures' `sink` label).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Whether the sink runs (possibly recovering from a failure).
    pub fn is_running(&self) -> bool {
        !self.shared.stopping.load(Ordering::Acquire)
    }

    /// The failure the sink is recovering from (it opens its storage
    /// again with growing waits), if any.
    pub fn failure(&self) -> Option<String> {
        lock(&self.shared.failure).clone()
    }

    /// The next offset per partition that the external system reflects.
    pub fn committed(&self) -> Vec<u64> {
        self.shared.committed()
    }

    /// Waits until the external system reflects everything the topic holds
    /// now; false on timeout or when the sink stopped.
    ///
    /// # Errors
    ///
    /// Log failures.
    pub fn wait_caught_up(&self, timeout: Duration) -> Result<bool, EffectsError> {
        let s = &self.shared;
        Ok(s.committed.wait_caught_up(&*s.log, &s.topic, timeout, || {
            s.stopping.load(Ordering::Acquire)
        })?)
    }

    pub(crate) fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// The sink's figures, for the gateway's `/metrics`.
    pub fn metrics_source(&self) -> Arc<dyn MetricsSource> {
        self.shared.clone()
    }

    /// The sink's progress, for the service's announcement.
    pub fn progress(&self) -> Arc<dyn crate::progress::Progress> {
        self.shared.clone()
    }

    pub(crate) fn stop(&mut self) -> Result<(), EffectsError> {
        self.shared.stopping.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        match self.failure() {
            Some(f) => Err(EffectsError::Config(format!(
                "the sink was failing when stopped: {f}"
            ))),
            None => Ok(()),
        }
    }
}

impl Drop for SinkHandle {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

impl Shared {
    fn publish(&self, positions: Vec<u64>) {
        self.committed.set(positions);
    }

    /// Follows the topic from `start` until stopped (`Ok`) or a failure.
    fn run(
        &self,
        apply: &mut dyn Apply,
        start: &[u64],
        batch_max: usize,
        backoff: &mut Duration,
    ) -> Result<(), EffectsError> {
        let mut follower = Follower::new(self.log.clone(), &self.topic, |p| {
            start.get(p as usize).copied().unwrap_or(0)
        })?
        .batch_max(batch_max);
        self.publish(start.to_vec());
        let mut batch = Vec::new();
        while !self.stopping.load(Ordering::Acquire) {
            batch.clear();
            let wait = if apply.holding() {
                Duration::ZERO
            } else {
                Duration::from_millis(200)
            };
            follower.next_batch(wait, &mut batch)?;
            if !batch.is_empty() {
                let next: Vec<u64> = follower.positions().iter().map(|(_, o)| *o).collect();
                let applied = apply.apply(&batch, &next)?;
                self.records
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                self.upserted.fetch_add(applied.upserted, Ordering::Relaxed);
                self.deleted.fetch_add(applied.deleted, Ordering::Relaxed);
                self.skipped.fetch_add(applied.skipped, Ordering::Relaxed);
                self.batches.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(p) = apply.durable(batch.is_empty())? {
                self.publish(p);
                // Working again: a later failure starts its waits afresh.
                *backoff = Duration::from_millis(500);
                lock(&self.failure).take();
            }
        }
        // Whatever was applied is made durable before stopping.
        if let Some(p) = apply.durable(true)? {
            self.publish(p);
        }
        Ok(())
    }

    /// Records a failure and waits before the storage is opened again
    /// (less if the sink is stopped meanwhile).
    fn wait_to_retry(&self, e: &EffectsError, backoff: &mut Duration) {
        tracing::warn!(sink = %self.name, kind = self.kind, error = %e, retry_in = ?*backoff, "sink failed; opening it again");
        *lock(&self.failure) = Some(e.to_string());
        let until = Instant::now() + *backoff;
        while Instant::now() < until && !self.stopping.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(50));
        }
        *backoff = (*backoff * 2).min(RETRY_MAX);
    }

    /// The log followed.
    pub(crate) fn log(&self) -> &dyn Log {
        &*self.log
    }

    /// The topic followed.
    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    /// Partitions of the topic followed.
    pub(crate) fn partitions(&self) -> u32 {
        self.committed.partitions() as u32
    }

    /// The next offset per partition that the sink's storage reflects.
    pub(crate) fn committed(&self) -> Vec<u64> {
        self.committed.get()
    }

    /// Waits until each `(partition, next offset)` is committed; false on
    /// timeout or when the sink stopped.
    pub(crate) fn wait_for(&self, targets: &[(u32, u64)], timeout: Duration) -> bool {
        self.committed
            .wait_for(targets, timeout, || self.stopping.load(Ordering::Acquire))
    }
}

impl crate::progress::Progress for Shared {
    fn reader(&self) -> String {
        self.name.clone()
    }

    fn topic(&self) -> &str {
        &self.topic
    }

    fn writes(&self) -> Vec<String> {
        Vec::new()
    }

    fn committed(&self) -> Vec<u64> {
        Shared::committed(self)
    }
}

impl MetricsSource for Shared {
    fn collect(&self, f: &mut MetricFamilies) {
        let l = format!(
            "sink=\"{}\",kind=\"{}\"",
            metric_label(&self.name),
            self.kind
        );
        let mut counter =
            |name: &str, v: &AtomicU64| f.add(name, "counter", &l, v.load(Ordering::Relaxed));
        counter("kappa_sink_records_total", &self.records);
        counter("kappa_sink_upserted_total", &self.upserted);
        counter("kappa_sink_deleted_total", &self.deleted);
        counter("kappa_sink_skipped_total", &self.skipped);
        counter("kappa_sink_batches_total", &self.batches);
        counter("kappa_sink_restarts_total", &self.restarts);
        let failing = lock(&self.failure).is_some();
        f.add("kappa_sink_failing", "gauge", &l, u8::from(failing));
        let running = !self.stopping.load(Ordering::Acquire);
        f.add("kappa_sink_running", "gauge", &l, u8::from(running));
        let committed = self.committed.get();
        for (p, at) in committed.into_iter().enumerate() {
            let tp = TopicPartition::new(self.topic.as_str(), p as u32);
            if let Ok(o) = self.log.offsets(&tp) {
                let labels = format!(
                    "{l},topic=\"{}\",partition=\"{p}\"",
                    metric_label(&self.topic)
                );
                f.add(
                    "kappa_sink_lag_records",
                    "gauge",
                    &labels,
                    o.end.saturating_sub(at),
                );
            }
        }
    }
}
