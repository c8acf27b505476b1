//! The vocabulary of a Kappa service, below its HTTP face.
//!
//! Commands and events, the positions a write returns and a read waits for,
//! the problems a service answers with, its metric families and its
//! announcements on the log are what every part of a service speaks about:
//! the functional core's topologies, the imperative shell's effect runners
//! and sinks, and the HTTP gateway. They live here so that only the parts
//! that serve HTTP depend on the gateway. With the `logging` feature,
//! [`log_to_stderr`] sets up a binary's log lines the way Kappa's own do.
//!
//! ```
//! use kappa_service::{Envelope, position};
//! let command = Envelope::command("deposit", serde_json::json!({"amount": 5}), Some("acct-1".into()));
//! let event = command.event("deposited", serde_json::json!({"amount": 5}));
//! assert_eq!(event.parent, Some(command.id));
//! assert_eq!(position::parse_positions("commands/0/7").map(|p| p.len()), Ok(1));
//! ```

mod envelope;
mod error;
#[cfg(feature = "logging")]
mod logging;
mod metrics;
pub mod position;
mod problem;
pub mod problem_type;
mod progress;
pub mod registry;
#[cfg(feature = "logging")]
mod repeats;

pub use envelope::{Envelope, KEY_MAX_CHARS, is_action_name, key_problem};
pub use error::ServiceError;
#[cfg(feature = "logging")]
pub use logging::log_to_stderr;
pub use metrics::{MetricFamilies, MetricsSource, metric_label};
pub use problem::Problem;
pub use progress::{Progress, progress_line};
#[cfg(feature = "logging")]
pub use repeats::{FOLD_WINDOW, FoldRepeats, FoldedLine};
