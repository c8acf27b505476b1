//! The HTTP face of a Kappa service.
//!
//! The write path: `POST /commands` validates a command against its action's
//! JSON Schema and writes it down to the `commands` topic — nothing else.
//! Command processors (topologies) answer with events whose `parent` is the
//! command id; `?sync=true` waits for them. The read path: the history of
//! commands and events (`GET /commands`, `/events`, by id), live streams
//! (`/commands/updates`, `/events/updates`, resumable), and the
//! application's stores as views (`/views/{store}/{key}`) that report the
//! log positions they reflect and can wait for a position first
//! (read-your-writes). `/openapi.json`, `/docs`, `/health`, `/ready` and
//! `/metrics` come with it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use kappa_gateway::{Gateway, GatewayConfig};
//! let log: Arc<dyn kappa_log::Log> = Arc::new(kappa_log::EmbeddedLog::open("./kappa-data")?);
//! let gateway = Gateway::builder(log, GatewayConfig::default())
//!     .action("ping", "Says hello", serde_json::json!({"type": "object"}))?
//!     .start()?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, gateway.router()).await?;
//! # Ok(()) }
//! ```

mod api;
mod console;
/// Authentication and authorization (the `kappa-auth` crate).
pub use kappa_auth as auth;
pub mod demo;
mod error;
pub mod forward;
mod gateway;
pub mod grpc;
mod idempotency;
pub mod index;
pub mod load;

mod metrics;
mod node_metrics;
mod outcomes;
mod rate;
mod schema;
mod serve;
pub mod testing;

/// HTTPS: a rustls configuration from PEM files, for
/// [`Gateway::serve_tls_until_interrupted`] and [`Gateway::serve`].
pub mod tls {
    pub use crate::serve::{server_config, server_config_from_files};
}
mod views;
mod writer;

pub use api::views::wait_for_position;
pub use console::ConsolePage;
pub use error::GatewayError;
pub use gateway::{Gateway, GatewayBuilder, GatewayConfig, ensure_topics};
pub use node_metrics::NodeMetrics;
pub use rate::RateLimit;
pub use schema::{Actions, Refusal, Violation};
pub use serve::interrupted;
pub use views::{KeyFormat, ValueFormat, View, ViewKind};

// The service vocabulary lives below the HTTP face (crate `kappa-service`);
// these keep the paths applications have always used.
pub use kappa_service::{
    Envelope, KEY_MAX_CHARS, MetricFamilies, MetricsSource, Problem, is_action_name, metric_label,
    position, registry,
};
