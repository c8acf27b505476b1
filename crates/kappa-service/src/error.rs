//! Why a service-level facility (the registry's beacon) could not start.

/// Why announcing a service could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The log failed.
    #[error(transparent)]
    Log(#[from] kappa_log::LogError),
    /// A thread could not be started.
    #[error("starting a thread: {0}")]
    Io(#[from] std::io::Error),
}
