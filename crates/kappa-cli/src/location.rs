//! Where the log lives, as given by `--log`.

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{Context, bail};
use kappa_log::{Durability, EmbeddedLog, EmbeddedOptions, Log};

/// A parsed `--log` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogLocation {
    /// A directory holding an embedded log.
    Embedded(PathBuf),
    /// A Kafka bootstrap list.
    Kafka(Vec<String>),
}

impl FromStr for LogLocation {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        if let Some(rest) = s.strip_prefix("kafka://") {
            let brokers: Vec<String> = rest
                .split(',')
                .filter(|b| !b.is_empty())
                .map(str::to_owned)
                .collect();
            if brokers.is_empty() {
                bail!("--log {s:?} names no broker; expected kafka://host:port[,host:port...]");
            }
            return Ok(Self::Kafka(brokers));
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
    /// Opens the log.
    pub fn open(&self, durability: Durability) -> anyhow::Result<Box<dyn Log>> {
        match self {
            Self::Embedded(dir) => {
                let log =
                    EmbeddedLog::open_with(dir, EmbeddedOptions::default().durability(durability))
                        .with_context(|| format!("opening the log in {}", dir.display()))?;
                Ok(Box::new(log))
            }
            Self::Kafka(brokers) => bail!(
                "the Kafka backend is not built yet (brokers {}); use a directory for the embedded log",
                brokers.join(",")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_locations() {
        assert_eq!(
            "kafka://a:9092,b:9092".parse::<LogLocation>().unwrap(),
            LogLocation::Kafka(vec!["a:9092".into(), "b:9092".into()])
        );
        assert_eq!(
            "./data".parse::<LogLocation>().unwrap(),
            LogLocation::Embedded("./data".into())
        );
        assert!("kafka://".parse::<LogLocation>().is_err());
        assert!("s3://bucket".parse::<LogLocation>().is_err());
    }
}
