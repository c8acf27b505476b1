//! Helpers for the tests of services built on the gateway.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// `arc` once it is the last reference, or `None` if it is still shared
/// after `within`.
///
/// Why: just after a server returns, a connection task can still be
/// dropping its router, and with it the gateway's state (the views'
/// topologies, the log). A test that closes the topologies or reopens the
/// log's directory waits for that first.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::sync::Arc;
/// use std::time::Duration;
/// let shared = Arc::new(5);
/// let other = shared.clone();
/// tokio::spawn(async move { drop(other) });
/// let only = kappa_gateway::testing::sole(shared, Duration::from_secs(5)).await;
/// assert_eq!(only.map(|a| *a), Some(5));
/// # }
/// ```
pub async fn sole<T: ?Sized>(mut arc: Arc<T>, within: Duration) -> Option<Arc<T>> {
    let deadline = Instant::now() + within;
    while Arc::get_mut(&mut arc).is_none() {
        if Instant::now() >= deadline {
            return None;
        }
        tokio::task::yield_now().await;
    }
    Some(arc)
}
