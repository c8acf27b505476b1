//! The Kafka backend of Kappa's [`kappa_log::Log`] trait, on librdkafka
//! (built statically by the `rdkafka` crate; no system library needed).
//!
//! Application code does not change: open a [`KafkaLog`] instead of an
//! embedded log and hand it to the same topologies, gateway and effect
//! runners. See `docs/kafka.md` for how commits stay exactly-once and where
//! state lives.

mod admin;
mod cache;
mod client;
mod commit_runs;
mod config;
mod group;
mod log;
mod offsets;
mod produce;
mod read;
pub mod testing;
mod writeahead;

pub use admin::TopicAdmin;
pub use client::ReaderContext;
pub use config::{CommitProtocol, KafkaConfig, TANSU_REWIND};
pub use log::{COMMIT_SLOTS, KafkaLog, METADATA_TOPIC, RestoreStats, TASKS_TOPIC_PREFIX};

use std::path::Path;

use kappa_log::{EmbeddedLog, EmbeddedOptions, Log, LogError};

/// Where the binaries keep Kafka instances' local state: `$KAPPA_STATE_DIR`,
/// or `./kappa-state`; each instance uses its own subdirectory.
pub fn state_base_from_env() -> std::path::PathBuf {
    std::env::var_os("KAPPA_STATE_DIR").map_or_else(|| "kappa-state".into(), Into::into)
}

/// Opens the log a `--log` value names: `kafka://…` is a Kafka cluster
/// (local state under `state_base/<instance>`), anything else a directory
/// holding an embedded log opened with `embedded`.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let log = kappa_kafka::open_location(
///     dir.path().to_str().unwrap(),
///     kappa_log::EmbeddedOptions::default(),
///     std::path::Path::new("kappa-state"),
/// )?;
/// assert!(log.list_topics()?.is_empty());
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// A malformed `kafka://` address, an unreachable cluster, or the embedded
/// log's own errors.
pub fn open_location(
    location: &str,
    embedded: EmbeddedOptions,
    state_base: &Path,
) -> Result<Box<dyn Log>, LogError> {
    if location.starts_with("kafka://") {
        let config = KafkaConfig::from_location(location, state_base)?;
        return Ok(Box::new(KafkaLog::open(config)?));
    }
    if location.contains("://") {
        return Err(LogError::InvalidConfig(format!(
            "{location:?}: unknown scheme; use a directory path or kafka://host:port"
        )));
    }
    Ok(Box::new(EmbeddedLog::open_with(location, embedded)?))
}
