//! Errors of runners and sinks.

use kappa_log::LogError;

/// Why a runner or sink could not start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum EffectsError {
    /// The log refused a read or a commit.
    #[error(transparent)]
    Log(#[from] LogError),
    /// A setting is unusable; the message says which and why.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// PostgreSQL refused a statement or the connection failed.
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// The full-text index failed.
    #[error("full-text index: {0}")]
    Search(#[from] tantivy::TantivyError),
    /// Stored progress could not be read back.
    #[error("corrupt progress for {what}: {detail}")]
    CorruptProgress {
        /// Whose progress.
        what: String,
        /// What was wrong.
        detail: String,
    },
    /// A file or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
}

impl EffectsError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}
