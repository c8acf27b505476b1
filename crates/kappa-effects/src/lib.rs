//! The imperative shell of a Kappa service.
//!
//! * [`Runner`]: performs one side effect per subscribed event (a webhook,
//!   an SMS, any async call) with retries, per-target concurrency bounds,
//!   circuit breakers and dead letters, and records each outcome as an
//!   event exactly once.
//! * [`PostgresSink`]: keeps a PostgreSQL table equal to a topic, exactly
//!   once, with its positions in the same transaction as its rows.
//! * [`SearchSink`]: keeps a full-text index (tantivy) of a topic, served
//!   at `GET /search/{index}?q=`.
//!
//! All of them read through the `Log` trait, so they run on any backend,
//! and all of them rebuild from the log when their state is dropped.

mod error;
mod follower;
pub mod postgres;
pub mod progress;
pub mod runner;
pub mod search;
mod sink;
pub mod testing;
mod watermark;

/// The HTTP client effects use (its `Url`, `Method`), re-exported so
/// applications build requests with the same version.
pub use reqwest;

pub use error::EffectsError;
pub use follower::Follower;
pub use postgres::PostgresSink;
pub use runner::{
    BreakerPolicy, Call, Circuit, Done, Effect, Failure, FnEffect, HttpEffect, HttpRequest,
    RetryPolicy, Runner, RunnerConfig, http_client,
};
pub use search::SearchSink;
pub use sink::{Applied, SinkHandle};

/// Locks `m` even if a thread panicked holding it: what the crate keeps
/// under its locks (queues, counters, a failure message) stays usable, and
/// the panic is reported where it happened.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
