//! How often and how patiently a runner tries an effect.

use std::time::Duration;

/// Retries with exponential backoff and full jitter.
///
/// ```
/// use std::time::Duration;
/// use kappa_effects::RetryPolicy;
/// let p = RetryPolicy::default();
/// for attempt in 1..10 {
///     let wait = p.backoff(attempt);
///     assert!(wait <= p.max_backoff);
///     assert!(wait >= p.initial_backoff.min(p.max_backoff) / 2);
/// }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Calls made at most for one event (the first one included).
    pub max_attempts: u32,
    /// Wait after the first failure.
    pub initial_backoff: Duration,
    /// Longest wait between two attempts.
    pub max_backoff: Duration,
    /// Each wait is this many times the previous one (before jitter).
    pub multiplier: f64,
    /// One attempt is abandoned (and counts as failed) after this long.
    pub attempt_timeout: Duration,
    /// An event is given up after this long even with attempts left, counting
    /// time spent waiting for an open circuit.
    pub give_up_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            multiplier: 2.0,
            attempt_timeout: Duration::from_secs(10),
            give_up_after: Duration::from_secs(15 * 60),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1-based): the
    /// exponential step, capped, then drawn uniformly from its upper half
    /// so that many events failing together do not retry together.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(64) as i32;
        let step = self.initial_backoff.as_secs_f64() * self.multiplier.max(1.0).powi(exponent);
        let capped = step.min(self.max_backoff.as_secs_f64());
        Duration::from_secs_f64(capped * (0.5 + fastrand::f64() * 0.5))
    }
}

/// When a target's circuit opens and how it recovers.
#[derive(Clone, Debug, PartialEq)]
pub struct BreakerPolicy {
    /// Consecutive failed attempts that open the circuit.
    pub failures_to_open: u32,
    /// How long an open circuit refuses attempts before one probe may go.
    pub open_for: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            failures_to_open: 5,
            open_for: Duration::from_secs(5),
        }
    }
}
