//! The timer behind the node's housekeeping tasks (expiring group sessions,
//! timing out transactions), which must end with what they keep.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::{Interval, MissedTickBehavior};

/// Ticks every `period` while `target` has an owner; holding only a weak
/// reference lets the node drop its state, and so stop the task, on shutdown.
pub(crate) struct Ticker<T> {
    interval: Interval,
    target: Weak<T>,
}

impl<T> Ticker<T> {
    /// Must be called inside the runtime: the first tick is immediate.
    pub(crate) fn new(period: Duration, target: Weak<T>) -> Self {
        let mut interval = tokio::time::interval(period);
        // A late tick is not caught up with a burst: one sweep covers it.
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self { interval, target }
    }

    /// Waits for the next tick; `None` once the target is dropped.
    pub(crate) async fn tick(&mut self) -> Option<Arc<T>> {
        self.interval.tick().await;
        self.target.upgrade()
    }
}
