//! Topics: names, partition counts and configuration.

use std::fmt;
use std::str::FromStr;

use crate::error::LogError;
use crate::record::OffsetRange;

/// Longest topic name, as in Kafka.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;
/// Most partitions one topic may have.
pub const PARTITIONS_MAX: u32 = 10_000;
/// Default largest record (key + value + headers, encoded), as Kafka's `max.message.bytes`.
pub const DEFAULT_MAX_RECORD_BYTES: u32 = 1024 * 1024;
/// Largest `max_record_bytes` a topic may be configured with.
pub const MAX_RECORD_BYTES_LIMIT: u32 = 64 * 1024 * 1024;
/// Default time a compacted topic keeps a tombstone before removing it (Kafka: 1 day).
pub const DEFAULT_DELETE_RETENTION_MS: i64 = 24 * 60 * 60 * 1000;

/// What happens to old records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CleanupPolicy {
    /// Whole batches are deleted once they pass the retention time or size.
    #[default]
    Delete,
    /// Only the latest record per key is kept (tombstones expire after
    /// `delete_retention_ms`).
    Compact,
}

impl fmt::Display for CleanupPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Delete => "delete",
            Self::Compact => "compact",
        })
    }
}

impl FromStr for CleanupPolicy {
    type Err = LogError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "delete" => Ok(Self::Delete),
            "compact" => Ok(Self::Compact),
            other => Err(LogError::InvalidConfig(format!(
                "cleanup policy {other:?} is not one of: delete, compact"
            ))),
        }
    }
}

/// A topic's configuration.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TopicConfig {
    /// Delete batches whose newest record is older than this; `None` keeps forever.
    pub retention_ms: Option<i64>,
    /// Delete the oldest batches while the partition stays at least this large
    /// without them; `None` means no size limit.
    pub retention_bytes: Option<u64>,
    /// Delete or compact.
    pub cleanup_policy: CleanupPolicy,
    /// Largest encoded record accepted.
    pub max_record_bytes: u32,
    /// How long a compacted topic keeps tombstones.
    pub delete_retention_ms: i64,
}

impl Default for TopicConfig {
    fn default() -> Self {
        Self {
            retention_ms: None,
            retention_bytes: None,
            cleanup_policy: CleanupPolicy::Delete,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            delete_retention_ms: DEFAULT_DELETE_RETENTION_MS,
        }
    }
}

/// What a topic is: its name, partition count and configuration.
///
/// ```
/// use kappa_log::{TopicSpec, CleanupPolicy};
/// let spec = TopicSpec::new("card-balances", 4).compacted();
/// assert_eq!(spec.config.cleanup_policy, CleanupPolicy::Compact);
/// assert!(spec.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TopicSpec {
    /// Topic name: 1 to 249 of `[A-Za-z0-9._-]`, not `.` or `..`.
    pub name: String,
    /// Number of partitions, 1 to [`PARTITIONS_MAX`].
    pub partitions: u32,
    /// Configuration.
    pub config: TopicConfig,
}

impl TopicSpec {
    /// A topic with default configuration (delete policy, infinite retention).
    pub fn new(name: impl Into<String>, partitions: u32) -> Self {
        Self {
            name: name.into(),
            partitions,
            config: TopicConfig::default(),
        }
    }

    /// Switches the cleanup policy to compaction.
    #[must_use]
    pub fn compacted(mut self) -> Self {
        self.config.cleanup_policy = CleanupPolicy::Compact;
        self
    }

    /// Sets the retention time.
    #[must_use]
    pub fn with_retention_ms(mut self, ms: i64) -> Self {
        self.config.retention_ms = Some(ms);
        self
    }

    /// Sets the retention size per partition.
    #[must_use]
    pub fn with_retention_bytes(mut self, bytes: u64) -> Self {
        self.config.retention_bytes = Some(bytes);
        self
    }

    /// Checks the name, partition count and configuration.
    ///
    /// # Errors
    ///
    /// [`LogError::InvalidTopicName`] or [`LogError::InvalidConfig`] saying what is wrong.
    pub fn validate(&self) -> Result<(), LogError> {
        validate_topic_name(&self.name)?;
        if self.partitions == 0 || self.partitions > PARTITIONS_MAX {
            return Err(LogError::InvalidConfig(format!(
                "topic {:?}: partitions must be between 1 and {PARTITIONS_MAX}, got {}",
                self.name, self.partitions
            )));
        }
        let c = &self.config;
        if let Some(ms) = c.retention_ms
            && ms <= 0
        {
            return Err(LogError::InvalidConfig(format!(
                "topic {:?}: retention_ms must be positive, got {ms}",
                self.name
            )));
        }
        if c.retention_bytes == Some(0) {
            return Err(LogError::InvalidConfig(format!(
                "topic {:?}: retention_bytes must be positive",
                self.name
            )));
        }
        if c.max_record_bytes == 0 || c.max_record_bytes > MAX_RECORD_BYTES_LIMIT {
            return Err(LogError::InvalidConfig(format!(
                "topic {:?}: max_record_bytes must be between 1 and {MAX_RECORD_BYTES_LIMIT}, got {}",
                self.name, c.max_record_bytes
            )));
        }
        if c.cleanup_policy == CleanupPolicy::Compact
            && (c.retention_ms.is_some() || c.retention_bytes.is_some())
        {
            return Err(LogError::InvalidConfig(format!(
                "topic {:?}: compacted topics keep the latest record per key and take no retention_ms or retention_bytes",
                self.name
            )));
        }
        if c.delete_retention_ms < 0 {
            return Err(LogError::InvalidConfig(format!(
                "topic {:?}: delete_retention_ms must not be negative",
                self.name
            )));
        }
        Ok(())
    }
}

/// Checks a topic name against Kafka's rules.
///
/// # Errors
///
/// [`LogError::InvalidTopicName`] naming the rule that failed.
pub fn validate_topic_name(name: &str) -> Result<(), LogError> {
    let invalid = |reason: &str| LogError::InvalidTopicName {
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    if name.is_empty() {
        return Err(invalid("it is empty"));
    }
    if name.len() > TOPIC_NAME_BYTES_MAX {
        return Err(invalid("it is longer than 249 characters"));
    }
    if name == "." || name == ".." {
        return Err(invalid("'.' and '..' are reserved"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(invalid(
            "only ASCII letters, digits, '.', '_' and '-' are allowed",
        ));
    }
    Ok(())
}

/// Checks one record against a topic's limits: size, key for compacted
/// topics, header count and names.
pub(crate) fn validate_record(
    spec: &TopicSpec,
    r: &crate::record::ProducerRecord,
) -> Result<(), LogError> {
    use crate::record::{HEADER_NAME_BYTES_MAX, HEADERS_PER_RECORD_MAX};
    let size = r.encoded_len();
    if size > spec.config.max_record_bytes as usize {
        return Err(LogError::RecordTooLarge {
            topic: spec.name.clone(),
            size,
            max: spec.config.max_record_bytes,
        });
    }
    if spec.config.cleanup_policy == CleanupPolicy::Compact && r.key.is_none() {
        return Err(LogError::MissingKey(spec.name.clone()));
    }
    if r.headers.len() > HEADERS_PER_RECORD_MAX {
        return Err(LogError::InvalidConfig(format!(
            "a record for {:?} has {} headers; at most {HEADERS_PER_RECORD_MAX} are allowed",
            spec.name,
            r.headers.len()
        )));
    }
    if let Some(h) = r
        .headers
        .iter()
        .find(|h| h.name.len() > HEADER_NAME_BYTES_MAX || std::str::from_utf8(&h.name).is_err())
    {
        return Err(LogError::InvalidConfig(format!(
            "header names must be UTF-8 of at most {HEADER_NAME_BYTES_MAX} bytes; got {} bytes",
            h.name.len()
        )));
    }
    Ok(())
}

impl TopicSpec {
    /// Checks one record against this topic's limits (size, a key on a
    /// compacted topic, header count and names) as a commit would, so a
    /// writer that merges several requests into one commit can refuse a
    /// bad record alone instead of failing the whole commit.
    ///
    /// ```
    /// use kappa_log::{CleanupPolicy, ProducerRecord, TopicSpec};
    /// let mut spec = TopicSpec::new("latest", 1);
    /// spec.config.cleanup_policy = CleanupPolicy::Compact;
    /// assert!(spec.check_record(&ProducerRecord::value("no key")).is_err());
    /// assert!(spec.check_record(&ProducerRecord::value("v").with_key("k")).is_ok());
    /// ```
    ///
    /// # Errors
    ///
    /// [`LogError::RecordTooLarge`], [`LogError::MissingKey`] or
    /// [`LogError::InvalidConfig`] (headers).
    pub fn check_record(&self, record: &crate::record::ProducerRecord) -> Result<(), LogError> {
        validate_record(self, record)
    }
}

/// A topic as it is now: its spec and each partition's offsets and size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicDescription {
    /// The topic's spec.
    pub spec: TopicSpec,
    /// One entry per partition, in partition order.
    pub partitions: Vec<PartitionDescription>,
}

impl TopicDescription {
    /// Describes `spec` from its partitions in order, `state` giving each
    /// one's offsets and size, so backends number partitions alike.
    pub(crate) fn of<P>(
        spec: &TopicSpec,
        partitions: &[P],
        state: impl Fn(&P) -> (OffsetRange, u64),
    ) -> Self {
        Self {
            spec: spec.clone(),
            partitions: (0u32..)
                .zip(partitions)
                .map(|(partition, p)| {
                    let (offsets, size_bytes) = state(p);
                    PartitionDescription {
                        partition,
                        start_offset: offsets.start,
                        end_offset: offsets.end,
                        size_bytes,
                    }
                })
                .collect(),
        }
    }
}

/// One partition's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionDescription {
    /// Partition number.
    pub partition: u32,
    /// First offset held.
    pub start_offset: u64,
    /// Next offset to be written.
    pub end_offset: u64,
    /// Bytes of stored batches.
    pub size_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kafka_rules() {
        for ok in ["a", "commands", "card-limits.events_v1", &"x".repeat(249)] {
            assert!(validate_topic_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a b", "a/b", "ümlaut", &"x".repeat(250)] {
            assert!(
                matches!(
                    validate_topic_name(bad),
                    Err(LogError::InvalidTopicName { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn config_bounds_are_checked() {
        assert!(TopicSpec::new("t", 0).validate().is_err());
        assert!(TopicSpec::new("t", PARTITIONS_MAX + 1).validate().is_err());
        assert!(
            TopicSpec::new("t", 1)
                .with_retention_ms(0)
                .validate()
                .is_err()
        );
        assert!(
            TopicSpec::new("t", 1)
                .with_retention_bytes(0)
                .validate()
                .is_err()
        );
        assert!(
            TopicSpec::new("t", 1)
                .with_retention_ms(1)
                .validate()
                .is_ok()
        );
    }
}
