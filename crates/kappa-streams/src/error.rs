//! Errors of building and running topologies.

use kappa_log::{LogError, Position};

/// Everything a topology can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamsError {
    /// The topology is not valid; the message says what to change.
    #[error("invalid topology: {0}")]
    Topology(String),
    /// The log refused an operation.
    #[error(transparent)]
    Log(#[from] LogError),
    /// An input record could not be decoded and the policy is to fail.
    #[error("cannot decode the {what} of {position}: {detail}")]
    Deserialize {
        /// Which record.
        position: Position,
        /// "key" or "value".
        what: &'static str,
        /// The serde's message.
        detail: String,
    },
    /// A value could not be encoded for a store or an output topic.
    #[error("cannot encode a {what} while processing {position}: {detail}")]
    Serialize {
        /// The input record being processed.
        position: Position,
        /// What was being encoded.
        what: &'static str,
        /// The serde's message.
        detail: String,
    },
    /// A stored value does not decode (the store and its serde disagree).
    #[error("store {store:?} holds a value that does not decode: {detail}")]
    Store {
        /// Store name.
        store: String,
        /// The serde's message.
        detail: String,
    },
    /// A worker thread stopped with an error or panicked.
    #[error("worker thread failed: {0}")]
    Worker(String),
}
