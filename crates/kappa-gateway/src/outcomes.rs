//! Waiting for a command's outcome: one thread follows the event topics from
//! their end and hands each event whose `parent` is awaited to its waiter.
//!
//! A waiter registers before its command is written, so no outcome can slip
//! past between the write and the wait. The events of one processing step
//! are committed together and become visible together, so a waiter is woken
//! once with every event of the step that answered its command.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use kappa_log::{FetchLimits, Log, LogError, Position, TopicPartition};
use serde::Deserialize;
use tokio::sync::oneshot;
use uuid::Uuid;

/// An outcome event: its position and JSON.
pub(crate) type Outcome = (Position, Bytes);

#[derive(Default)]
struct Waiters {
    map: HashMap<Uuid, oneshot::Sender<Vec<Outcome>>>,
}

/// Follows the event topics and wakes waiters.
pub(crate) struct OutcomeWatcher {
    waiters: Arc<Mutex<Waiters>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A registered wait; dropping it unregisters.
pub(crate) struct Wait {
    id: Uuid,
    waiters: Arc<Mutex<Waiters>>,
    rx: Option<oneshot::Receiver<Vec<Outcome>>>,
}

impl Wait {
    /// The outcome events, or `None` after `timeout`.
    pub(crate) async fn outcome(mut self, timeout: Duration) -> Option<Vec<Outcome>> {
        let rx = self.rx.take()?;
        tokio::time::timeout(timeout, rx).await.ok()?.ok()
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        lock(&self.waiters).map.remove(&self.id);
    }
}

fn lock(m: &Mutex<Waiters>) -> MutexGuard<'_, Waiters> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Deserialize)]
struct ParentOnly {
    #[serde(default)]
    parent: Option<Uuid>,
}

impl OutcomeWatcher {
    /// Starts following `topics` (each with `partitions` partitions) from their ends.
    pub(crate) fn start(
        log: Arc<dyn Log>,
        topics: &[String],
        partitions: u32,
    ) -> Result<Self, LogError> {
        let cursors = crate::gateway::ends_of(&*log, topics, partitions)?;
        let waiters = Arc::new(Mutex::new(Waiters::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (w, s) = (waiters.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("kappa-gateway-outcomes".to_owned())
            .spawn(move || follow(&*log, cursors, &w, &s))
            .map_err(|e| LogError::Storage(e.to_string()))?;
        Ok(Self {
            waiters,
            stop,
            thread: Some(thread),
        })
    }

    /// Registers interest in the outcome of command `id`.
    pub(crate) fn register(&self, id: Uuid) -> Wait {
        let (tx, rx) = oneshot::channel();
        lock(&self.waiters).map.insert(id, tx);
        Wait {
            id,
            waiters: self.waiters.clone(),
            rx: Some(rx),
        }
    }
}

impl Drop for OutcomeWatcher {
    /// Stops the thread and waits for it, so the log is released.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn follow(
    log: &dyn Log,
    mut cursors: Vec<(TopicPartition, u64)>,
    waiters: &Mutex<Waiters>,
    stop: &AtomicBool,
) {
    let mut records = Vec::new();
    let mut found: HashMap<Uuid, Vec<Outcome>> = HashMap::new();
    let limits = FetchLimits {
        records_max: 100_000,
        bytes_max: 64 << 20,
        // Bounded so a stop request is seen promptly.
        wait_max: Duration::from_millis(100),
    };
    while !stop.load(Ordering::Acquire) {
        records.clear();
        let outcome = match log.fetch(&cursors, limits, &mut records) {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, "outcome watcher stopped: sync commands will time out");
                return;
            }
        };
        for ((_, at), next) in cursors.iter_mut().zip(&outcome.next_offsets) {
            *at = *next;
        }
        if lock(waiters).map.is_empty() {
            continue;
        }
        for r in &records {
            let Some(value) = &r.value else { continue };
            let Ok(ParentOnly {
                parent: Some(parent),
            }) = serde_json::from_slice(value)
            else {
                continue;
            };
            found
                .entry(parent)
                .or_default()
                .push((r.position(), value.clone()));
        }
        if found.is_empty() {
            continue;
        }
        let mut w = lock(waiters);
        for (parent, events) in found.drain() {
            if let Some(tx) = w.map.remove(&parent) {
                let _ = tx.send(events);
            }
        }
    }
}
