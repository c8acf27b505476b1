//! How far a runner or sink has made its work durable: the next offset per
//! partition, and waiting for it to pass given offsets.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kappa_log::{Log, LogError, TopicPartition};

/// The next offset per partition whose effect is durable.
pub(crate) struct Watermark {
    next: Mutex<Vec<u64>>,
    advanced: Condvar,
}

/// Waits are cut into slices this long, to notice a stop.
const SLICE: Duration = Duration::from_millis(200);

impl Watermark {
    pub(crate) fn new(next: Vec<u64>) -> Self {
        Self {
            next: Mutex::new(next),
            advanced: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<u64>> {
        self.next.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves the watermark and wakes the waiters.
    pub(crate) fn set(&self, next: Vec<u64>) {
        *self.lock() = next;
        self.advanced.notify_all();
    }

    /// Wakes the waiters without moving (they look at `stopped` again).
    pub(crate) fn wake(&self) {
        self.advanced.notify_all();
    }

    /// The next offset per partition.
    pub(crate) fn get(&self) -> Vec<u64> {
        self.lock().clone()
    }

    /// Partitions followed.
    pub(crate) fn partitions(&self) -> usize {
        self.lock().len()
    }

    /// Waits until each `(partition, next offset)` is reached; false on
    /// timeout, or once `stopped` says the work ended.
    pub(crate) fn wait_for(
        &self,
        targets: &[(u32, u64)],
        timeout: Duration,
        stopped: impl Fn() -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        let mut next = self.lock();
        loop {
            let reached = targets
                .iter()
                .all(|(p, want)| next.get(*p as usize).is_some_and(|n| n >= want));
            if reached {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || stopped() {
                return false;
            }
            next = self
                .advanced
                .wait_timeout(next, left.min(SLICE))
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// Waits until every partition reaches the end offset `topic` has now.
    pub(crate) fn wait_caught_up(
        &self,
        log: &dyn Log,
        topic: &str,
        timeout: Duration,
        stopped: impl Fn() -> bool,
    ) -> Result<bool, LogError> {
        let mut ends = Vec::new();
        for p in 0..self.partitions() as u32 {
            ends.push((p, log.offsets(&TopicPartition::new(topic, p))?.end));
        }
        Ok(self.wait_for(&ends, timeout, stopped))
    }
}
