//! The gateway's typed errors (start-up and configuration; request errors are [`crate::Problem`]s).

/// Why the gateway could not start or be configured.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The configuration is inconsistent.
    #[error("gateway configuration: {0}")]
    Config(String),
    /// The log failed.
    #[error(transparent)]
    Log(#[from] kappa_log::LogError),
    /// The index topology failed.
    #[error(transparent)]
    Streams(#[from] kappa_streams::StreamsError),
    /// The listener failed.
    #[error("HTTP listener: {0}")]
    Io(#[from] std::io::Error),
}

impl From<kappa_service::ServiceError> for GatewayError {
    fn from(e: kappa_service::ServiceError) -> Self {
        match e {
            kappa_service::ServiceError::Log(e) => Self::Log(e),
            kappa_service::ServiceError::Io(e) => Self::Io(e),
            other => Self::Config(other.to_string()),
        }
    }
}
