//! Per-principal rate limits: a token bucket per authenticated subject.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many requests one principal may make.
///
/// ```
/// use kappa_gateway::RateLimit;
/// let limit = RateLimit { per_second: 50.0, burst: 100 };
/// assert!(limit.per_second > 0.0);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: f64,
    /// Requests allowed at once after a quiet spell.
    pub burst: u32,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Buckets not touched for this long are forgotten (they would be full).
const IDLE: Duration = Duration::from_secs(600);
/// Above this many buckets, idle ones are swept on the next request.
const SWEEP_ABOVE: usize = 10_000;

/// The buckets of every principal.
pub(crate) struct Limiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Limiter {
    pub(crate) fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `subject`'s bucket; when it is empty, how
    /// long until it holds one again.
    pub(crate) fn take(&self, subject: &str, now: Instant) -> Result<(), Duration> {
        let rate = self.limit.per_second.max(f64::MIN_POSITIVE);
        let burst = f64::from(self.limit.burst.max(1));
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > SWEEP_ABOVE {
            buckets.retain(|_, b| now.duration_since(b.at) < IDLE);
        }
        let bucket = match buckets.get_mut(subject) {
            Some(b) => b,
            None => buckets.entry(subject.to_owned()).or_insert(Bucket {
                tokens: burst,
                at: now,
            }),
        };
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refill_at_the_rate_and_are_per_subject() {
        let l = Limiter::new(RateLimit {
            per_second: 2.0,
            burst: 3,
        });
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.take("a", t0), Ok(()));
        }
        let wait = l.take("a", t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-9, "{wait:?}");
        assert_eq!(
            l.take("b", t0),
            Ok(()),
            "another subject has its own bucket"
        );
        assert_eq!(l.take("a", t0 + Duration::from_millis(500)), Ok(()));
        assert!(l.take("a", t0 + Duration::from_millis(500)).is_err());
        // A long quiet spell refills to the burst, not beyond.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(l.take("a", later), Ok(()));
        }
        assert!(l.take("a", later).is_err());
    }
}
