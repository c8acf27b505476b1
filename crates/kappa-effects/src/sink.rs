//! What the PostgreSQL and full-text sinks share: a thread that follows a
//! topic from the positions stored in the sink's own system and applies
//! each batch together with the positions after it, so the external view
//! and its positions change in one transaction.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kappa_gateway::{MetricFamilies, MetricsSource, metric_label};
use kappa_log::{Log, Record, TopicPartition};

use crate::error::EffectsError;
use crate::follower::Follower;

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
    committed: Mutex<Vec<u64>>,
    advanced: Condvar,
    stopping: AtomicBool,
    failure: Mutex<Option<String>>,
    records: AtomicU64,
    upserted: AtomicU64,
    deleted: AtomicU64,
    skipped: AtomicU64,
    batches: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running sink's thread and what it has committed.
pub(crate) struct SinkThread {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl SinkThread {
    /// Follows `topic` from `start` (one offset per partition), applying
    /// batches of at most `batch_max` records with `apply`.
    pub(crate) fn start(
        log: Arc<dyn Log>,
        kind: &'static str,
        name: &str,
        topic: &str,
        start: Vec<u64>,
        batch_max: usize,
        mut apply: impl Apply,
    ) -> Result<Self, EffectsError> {
        for (p, at) in start.iter().enumerate() {
            let end = log.offsets(&TopicPartition::new(topic, p as u32))?.end;
            if *at > end {
                return Err(EffectsError::Config(format!(
                    "{kind} sink {name:?} has seen {topic}/{p} up to offset {at}, but the log ends at {end}: \
                     it was built from another log; drop its state (rebuild) so it is built from this one"
                )));
            }
        }
        let mut follower = Follower::new(log.clone(), topic, |p| {
            start.get(p as usize).copied().unwrap_or(0)
        })?
        .batch_max(batch_max);
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            kind,
            topic: topic.to_owned(),
            log,
            committed: Mutex::new(follower.positions().iter().map(|(_, o)| *o).collect()),
            advanced: Condvar::new(),
            stopping: AtomicBool::new(false),
            failure: Mutex::new(None),
            records: AtomicU64::new(0),
            upserted: AtomicU64::new(0),
            deleted: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            batches: AtomicU64::new(0),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("{kind}-{name}"))
            .spawn(move || {
                let mut batch = Vec::new();
                let publish = |positions: Vec<u64>| {
                    *lock(&s.committed) = positions;
                    s.advanced.notify_all();
                };
                let result = (|| -> Result<(), EffectsError> {
                    while !s.stopping.load(Ordering::Acquire) {
                        batch.clear();
                        let held = apply.holding();
                        let wait = if held {
                            Duration::ZERO
                        } else {
                            Duration::from_millis(200)
                        };
                        follower.next_batch(wait, &mut batch)?;
                        if batch.is_empty() {
                            if let Some(p) = apply.durable(true)? {
                                publish(p);
                            }
                            continue;
                        }
                        let next: Vec<u64> = follower.positions().iter().map(|(_, o)| *o).collect();
                        let applied = apply.apply(&batch, &next)?;
                        s.records.fetch_add(batch.len() as u64, Ordering::Relaxed);
                        s.upserted.fetch_add(applied.upserted, Ordering::Relaxed);
                        s.deleted.fetch_add(applied.deleted, Ordering::Relaxed);
                        s.skipped.fetch_add(applied.skipped, Ordering::Relaxed);
                        s.batches.fetch_add(1, Ordering::Relaxed);
                        if let Some(p) = apply.durable(false)? {
                            publish(p);
                        }
                    }
                    // Whatever was applied is made durable before stopping.
                    if let Some(p) = apply.durable(true)? {
                        publish(p);
                    }
                    Ok(())
                })();
                if let Err(e) = result {
                    tracing::error!(sink = %s.name, kind = s.kind, error = %e, "sink stopped");
                    lock(&s.failure).get_or_insert(e.to_string());
                }
                s.stopping.store(true, Ordering::Release);
                s.advanced.notify_all();
            })
            .map_err(|e| EffectsError::io("starting a sink thread", e))?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    pub(crate) fn is_running(&self) -> bool {
        !self.shared.stopping.load(Ordering::Acquire)
    }

    pub(crate) fn failure(&self) -> Option<String> {
        lock(&self.shared.failure).clone()
    }

    pub(crate) fn committed(&self) -> Vec<u64> {
        self.shared.committed()
    }

    /// Waits until every partition's committed position reaches the log's
    /// end offset as it is now; false on timeout or when the sink stopped.
    pub(crate) fn wait_caught_up(&self, timeout: Duration) -> Result<bool, EffectsError> {
        let mut ends = Vec::new();
        for p in 0..lock(&self.shared.committed).len() {
            let tp = TopicPartition::new(self.shared.topic.as_str(), p as u32);
            ends.push((p as u32, self.shared.log.offsets(&tp)?.end));
        }
        Ok(self.shared.wait_for(&ends, timeout))
    }

    pub(crate) fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    pub(crate) fn metrics_source(&self) -> Arc<dyn MetricsSource> {
        self.shared.clone()
    }

    pub(crate) fn stop(&mut self) -> Result<(), EffectsError> {
        self.shared.stopping.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        match self.failure() {
            Some(f) => Err(EffectsError::Config(format!("the sink had failed: {f}"))),
            None => Ok(()),
        }
    }
}

impl Drop for SinkThread {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

impl Shared {
    /// The topic followed.
    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    /// Partitions of the topic followed.
    pub(crate) fn partitions(&self) -> u32 {
        lock(&self.committed).len() as u32
    }

    /// The next offset per partition that the sink's storage reflects.
    pub(crate) fn committed(&self) -> Vec<u64> {
        lock(&self.committed).clone()
    }

    /// Waits until each `(partition, next offset)` is committed; false on
    /// timeout or when the sink stopped.
    pub(crate) fn wait_for(&self, targets: &[(u32, u64)], timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut committed = lock(&self.committed);
        loop {
            let reached = targets
                .iter()
                .all(|(p, next)| committed.get(*p as usize).is_some_and(|c| c >= next));
            if reached {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.stopping.load(Ordering::Acquire) {
                return false;
            }
            committed = self
                .advanced
                .wait_timeout(committed, left.min(Duration::from_millis(200)))
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }
}

impl MetricsSource for Shared {
    fn collect(&self, f: &mut MetricFamilies) {
        let l = format!(
            "sink=\"{}\",kind=\"{}\"",
            metric_label(&self.name),
            self.kind
        );
        let n = |v: &AtomicU64| v.load(Ordering::Relaxed);
        f.add("kappa_sink_records_total", "counter", &l, n(&self.records));
        f.add(
            "kappa_sink_upserted_total",
            "counter",
            &l,
            n(&self.upserted),
        );
        f.add("kappa_sink_deleted_total", "counter", &l, n(&self.deleted));
        f.add("kappa_sink_skipped_total", "counter", &l, n(&self.skipped));
        f.add("kappa_sink_batches_total", "counter", &l, n(&self.batches));
        f.add(
            "kappa_sink_running",
            "gauge",
            &l,
            u8::from(!self.stopping.load(Ordering::Acquire)),
        );
        let committed = lock(&self.committed).clone();
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
