//! Where the log lives, as given by `--log`.

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{Context, bail};
use kappa_kafka::KafkaConfig;
use kappa_log::{EmbeddedOptions, Log};

/// A parsed `--log` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogLocation {
    /// A directory holding an embedded log.
    Embedded(PathBuf),
    /// A Kafka cluster: `kafka://host:port[,host:port...][?property=value&...]`.
    Kafka(String),
}

impl FromStr for LogLocation {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        if s.starts_with("kafka://") {
            // Checked now so a bad address fails before anything else runs.
            KafkaConfig::from_url(s, "").map_err(|e| anyhow::anyhow!("--log: {e}"))?;
            return Ok(Self::Kafka(s.to_owned()));
        }
        if s.contains("://") {
            bail!("--log {s:?}: unknown scheme; use a directory path or kafka://host:port");
        }
        if s.is_empty() {
            bail!("--log is empty; give a directory path or kafka://host:port");
        }
        Ok(Self::Embedded(PathBuf::from(s)))
    }
}

impl LogLocation {
    /// Opens the log (Kafka: local state under `$KAPPA_STATE_DIR`, default `./kappa-state`).
    pub fn open(&self, options: EmbeddedOptions) -> anyhow::Result<Box<dyn Log>> {
        let (location, what) = match self {
            Self::Embedded(dir) => (dir.to_string_lossy().into_owned(), "the log in"),
            Self::Kafka(url) => (url.clone(), "the Kafka log at"),
        };
        kappa_kafka::open_location(&location, options, &kappa_kafka::state_base_from_env())
            .with_context(|| format!("opening {what} {location}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_locations() {
        assert_eq!(
            "kafka://a:9092,b:9092".parse::<LogLocation>().unwrap(),
            LogLocation::Kafka("kafka://a:9092,b:9092".into())
        );
        assert_eq!(
            "./data".parse::<LogLocation>().unwrap(),
            LogLocation::Embedded("./data".into())
        );
        assert!("kafka://".parse::<LogLocation>().is_err());
        assert!("s3://bucket".parse::<LogLocation>().is_err());
    }
}
