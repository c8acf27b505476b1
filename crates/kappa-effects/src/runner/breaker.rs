//! One circuit breaker per target: after repeated failures a target is left
//! alone for a while, then probed by a single attempt.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::policy::BreakerPolicy;

/// The state of a target's circuit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Circuit {
    /// Attempts go through.
    Closed,
    /// Attempts wait until the instant given.
    Open,
    /// One probe attempt is out; the others wait for its result.
    HalfOpen,
}

impl Circuit {
    /// The value exported in `/metrics` (0 closed, 1 open, 2 half-open).
    pub fn gauge(self) -> u8 {
        match self {
            Circuit::Closed => 0,
            Circuit::Open => 1,
            Circuit::HalfOpen => 2,
        }
    }
}

#[derive(Debug)]
struct Inner {
    circuit: Circuit,
    consecutive_failures: u32,
    open_until: Instant,
    opened_total: u64,
}

/// A circuit breaker.
#[derive(Debug)]
pub(crate) struct Breaker {
    policy: BreakerPolicy,
    inner: Mutex<Inner>,
}

/// How long a waiting attempt sleeps before asking a half-open circuit again.
const PROBE_POLL: Duration = Duration::from_millis(50);

impl Breaker {
    pub(crate) fn new(policy: BreakerPolicy) -> Self {
        Self {
            policy,
            inner: Mutex::new(Inner {
                circuit: Circuit::Closed,
                consecutive_failures: 0,
                open_until: Instant::now(),
                opened_total: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `None` when an attempt may go now (a half-open circuit lets exactly
    /// one through); otherwise how long to wait before asking again.
    pub(crate) fn admit(&self, now: Instant) -> Option<Duration> {
        let mut s = self.lock();
        match s.circuit {
            Circuit::Closed => None,
            Circuit::Open if now >= s.open_until => {
                s.circuit = Circuit::HalfOpen;
                None
            }
            Circuit::Open => Some(s.open_until - now),
            Circuit::HalfOpen => Some(PROBE_POLL),
        }
    }

    /// Records an attempt that reached a healthy target.
    pub(crate) fn success(&self) {
        let mut s = self.lock();
        s.circuit = Circuit::Closed;
        s.consecutive_failures = 0;
    }

    /// Records an attempt that failed because of the target.
    pub(crate) fn failure(&self, now: Instant) {
        let mut s = self.lock();
        s.consecutive_failures = s.consecutive_failures.saturating_add(1);
        let open = match s.circuit {
            Circuit::HalfOpen => true,
            Circuit::Closed => s.consecutive_failures >= self.policy.failures_to_open,
            Circuit::Open => false,
        };
        if open {
            s.circuit = Circuit::Open;
            s.open_until = now + self.policy.open_for;
            s.opened_total += 1;
        }
    }

    /// The circuit now, and how many times it opened.
    pub(crate) fn state(&self) -> (Circuit, u64) {
        let s = self.lock();
        (s.circuit, s.opened_total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_and_probes_once() {
        let b = Breaker::new(BreakerPolicy {
            failures_to_open: 3,
            open_for: Duration::from_secs(10),
        });
        let t0 = Instant::now();
        for _ in 0..2 {
            assert_eq!(b.admit(t0), None);
            b.failure(t0);
        }
        b.success();
        for _ in 0..3 {
            assert_eq!(b.admit(t0), None);
            b.failure(t0);
        }
        assert_eq!(b.state(), (Circuit::Open, 1));
        assert_eq!(
            b.admit(t0 + Duration::from_secs(4)),
            Some(Duration::from_secs(6))
        );
        let later = t0 + Duration::from_secs(10);
        assert_eq!(b.admit(later), None, "the probe goes");
        assert_eq!(b.admit(later), Some(PROBE_POLL), "others wait for it");
        b.failure(later);
        assert_eq!(b.state(), (Circuit::Open, 2), "a failed probe reopens");
        let again = later + Duration::from_secs(10);
        assert_eq!(b.admit(again), None);
        b.success();
        assert_eq!(b.state().0, Circuit::Closed);
        assert_eq!(b.admit(again), None);
    }
}
