//! Failed SASL authentications, counted per client address.
//!
//! Past [`crate::NodeConfig::sasl_failures_max`] failures within
//! [`crate::NodeConfig::sasl_failure_window`], an address's further attempts
//! are refused without looking at their credentials until that window ends,
//! so a password cannot be guessed at the speed of the network. Counting
//! is per address, not per user: one guesser cannot lock a user out
//! everywhere, and trying many users from one address is slowed as much as
//! trying many passwords. A success does not clear the count (a guesser
//! holding one valid account could otherwise keep resetting it).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses remembered before the expired ones are dropped.
const REMEMBERED_MAX: usize = 10_000;

/// Failures per address within the current window.
pub(crate) struct FailedLogins {
    max: u32,
    window: Duration,
    by_address: Mutex<HashMap<IpAddr, Tally>>,
}

#[derive(Clone, Copy)]
struct Tally {
    /// When the address's first failure of this window happened.
    since: Instant,
    failures: u32,
}

impl FailedLogins {
    pub(crate) fn new(max: u32, window: Duration) -> Self {
        Self {
            max,
            window,
            by_address: Mutex::new(HashMap::new()),
        }
    }

    fn tallies(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Tally>> {
        self.by_address
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How long `address` must wait before it may try again; `None` when
    /// it may try now.
    pub(crate) fn locked(&self, address: IpAddr, now: Instant) -> Option<Duration> {
        let tally = *self.tallies().get(&address)?;
        let ends = tally.since + self.window;
        (tally.failures >= self.max && now < ends).then(|| ends - now)
    }

    /// Counts a failure of `address`; `true` when this failure is the one
    /// that locks it.
    pub(crate) fn failed(&self, address: IpAddr, now: Instant) -> bool {
        let mut tallies = self.tallies();
        if tallies.len() >= REMEMBERED_MAX {
            let window = self.window;
            tallies.retain(|_, t| now < t.since + window);
        }
        let tally = tallies.entry(address).or_insert(Tally {
            since: now,
            failures: 0,
        });
        if now >= tally.since + self.window {
            *tally = Tally {
                since: now,
                failures: 0,
            };
        }
        tally.failures = tally.failures.saturating_add(1);
        tally.failures == self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_locked_after_its_failures_until_the_window_ends() {
        let logins = FailedLogins::new(3, Duration::from_secs(60));
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        let t0 = Instant::now();
        assert!(!logins.failed(a, t0));
        assert!(!logins.failed(a, t0 + Duration::from_secs(1)));
        assert_eq!(logins.locked(a, t0 + Duration::from_secs(2)), None);
        assert!(
            logins.failed(a, t0 + Duration::from_secs(2)),
            "the third locks"
        );
        assert_eq!(
            logins.locked(a, t0 + Duration::from_secs(10)),
            Some(Duration::from_secs(50))
        );
        assert_eq!(logins.locked(b, t0), None, "another address may try");
        assert_eq!(logins.locked(a, t0 + Duration::from_secs(60)), None);
        // A new window counts afresh.
        assert!(!logins.failed(a, t0 + Duration::from_secs(61)));
        assert_eq!(logins.locked(a, t0 + Duration::from_secs(62)), None);
    }

    #[test]
    fn failures_spread_over_windows_never_lock() {
        let logins = FailedLogins::new(2, Duration::from_secs(10));
        let a: IpAddr = [10, 0, 0, 1].into();
        let t0 = Instant::now();
        for i in 0..10 {
            let now = t0 + Duration::from_secs(11 * i);
            assert!(!logins.failed(a, now));
            assert_eq!(logins.locked(a, now), None);
        }
    }
}
