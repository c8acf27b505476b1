//! Options of the embedded log.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// When commits reach the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// fsync every commit before it returns (the default): a commit that
    /// returned survives a power cut.
    #[default]
    Always,
    /// Hand each commit to the OS (survives a process crash) and fsync every
    /// interval (a power cut loses at most that window).
    Interval(Duration),
    /// Hand each commit to the OS; fsync only on close.
    Never,
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Always => f.write_str("always"),
            Self::Interval(d) => write!(f, "interval:{}", d.as_millis()),
            Self::Never => f.write_str("never"),
        }
    }
}

/// A durability setting that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid durability {0:?}: expected always, never or interval:<ms> (for example interval:100)"
)]
pub struct ParseDurabilityError(pub String);

impl FromStr for Durability {
    type Err = ParseDurabilityError;

    /// ```
    /// use kappa_log::Durability;
    /// use std::time::Duration;
    /// assert_eq!("interval:50".parse(), Ok(Durability::Interval(Duration::from_millis(50))));
    /// assert!("sometimes".parse::<Durability>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "always" => Ok(Self::Always),
            "never" => Ok(Self::Never),
            other => other
                .strip_prefix("interval:")
                .and_then(|ms| ms.parse::<u64>().ok())
                .filter(|ms| (1..=3_600_000).contains(ms))
                .map(|ms| Self::Interval(Duration::from_millis(ms)))
                .ok_or_else(|| ParseDurabilityError(s.to_owned())),
        }
    }
}

/// How the embedded log runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmbeddedOptions {
    /// When commits are fsynced.
    pub durability: Durability,
    /// How often retention and compaction run in the background.
    pub maintenance_interval: Duration,
    /// Block cache size of the storage engine.
    pub cache_bytes: u64,
    /// The free-space floor: with less free space on the log's file system,
    /// writes from outside are refused ([`crate::LogError::DiskFull`]) and the
    /// log's own commits go on down to half of it, so the disk never fills
    /// under the log. 0 turns the floor off.
    pub min_free_bytes: u64,
}

/// The default free-space floor, 256 MiB.
pub const MIN_FREE_BYTES_DEFAULT: u64 = 256 * 1024 * 1024;

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            durability: Durability::Always,
            maintenance_interval: Duration::from_secs(60),
            cache_bytes: 64 * 1024 * 1024,
            min_free_bytes: MIN_FREE_BYTES_DEFAULT,
        }
    }
}

impl EmbeddedOptions {
    /// Sets the durability mode.
    #[must_use]
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Sets the free-space floor (see [`EmbeddedOptions::min_free_bytes`]).
    ///
    /// ```
    /// use kappa_log::EmbeddedOptions;
    /// let options = EmbeddedOptions::default().min_free_bytes(64 << 20);
    /// assert_eq!(options.min_free_bytes, 64 << 20);
    /// ```
    #[must_use]
    pub fn min_free_bytes(mut self, bytes: u64) -> Self {
        self.min_free_bytes = bytes;
        self
    }

    /// Sets how often background retention and compaction run.
    #[must_use]
    pub fn maintenance_interval(mut self, every: Duration) -> Self {
        self.maintenance_interval = every;
        self
    }
}
