//! Stored descriptions of topics and partitions (fixed-width, little-endian).

use crate::error::LogError;
use crate::topic::{CleanupPolicy, TopicConfig, TopicSpec};

const TOPIC_META_FORMAT: u8 = 1;
const TOPIC_META_LEN: usize = 1 + 8 + 4 + 8 + 8 + 1 + 4 + 8;

/// A topic as stored: its spec plus the internal id its data keys use.
/// Ids are never reused, so a deleted topic's leftovers can't leak into a new one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TopicMeta {
    pub(crate) id: u64,
    pub(crate) spec: TopicSpec,
}

impl TopicMeta {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let c = &self.spec.config;
        let mut b = Vec::with_capacity(TOPIC_META_LEN);
        b.push(TOPIC_META_FORMAT);
        b.extend_from_slice(&self.id.to_le_bytes());
        b.extend_from_slice(&self.spec.partitions.to_le_bytes());
        b.extend_from_slice(&c.retention_ms.unwrap_or(-1).to_le_bytes());
        let retention_bytes = c
            .retention_bytes
            .map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX));
        b.extend_from_slice(&retention_bytes.to_le_bytes());
        b.push(match c.cleanup_policy {
            CleanupPolicy::Delete => 0,
            CleanupPolicy::Compact => 1,
        });
        b.extend_from_slice(&c.max_record_bytes.to_le_bytes());
        b.extend_from_slice(&c.delete_retention_ms.to_le_bytes());
        b
    }

    pub(crate) fn decode(name: &str, b: &[u8]) -> Result<Self, LogError> {
        let bad = |why: &str| LogError::CorruptMetadata(format!("topic {name:?}: {why}"));
        if b.len() != TOPIC_META_LEN {
            return Err(bad(&format!(
                "record is {} bytes, expected {TOPIC_META_LEN}",
                b.len()
            )));
        }
        if b[0] != TOPIC_META_FORMAT {
            return Err(bad(&format!("unknown topic record format {}", b[0])));
        }
        let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]));
        let i64_at = |at: usize| i64::from_le_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]));
        let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or([0; 4]));
        let retention_ms = i64_at(13);
        let retention_bytes = i64_at(21);
        let cleanup_policy = match b[29] {
            0 => CleanupPolicy::Delete,
            1 => CleanupPolicy::Compact,
            other => return Err(bad(&format!("unknown cleanup policy code {other}"))),
        };
        let spec = TopicSpec {
            name: name.to_owned(),
            partitions: u32_at(9),
            config: TopicConfig {
                retention_ms: (retention_ms >= 0).then_some(retention_ms),
                retention_bytes: u64::try_from(retention_bytes).ok(),
                cleanup_policy,
                max_record_bytes: u32_at(30),
                delete_retention_ms: i64_at(34),
            },
        };
        spec.validate().map_err(|e| bad(&e.to_string()))?;
        Ok(Self {
            id: u64_at(1),
            spec,
        })
    }
}

/// Per-partition facts that can't be derived from the batches alone:
/// the log start (advanced by retention) and a floor for the end offset
/// (so a partition emptied by retention or compaction keeps its offsets).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PartitionMeta {
    pub(crate) log_start: u64,
    pub(crate) end_floor: u64,
}

impl PartitionMeta {
    pub(crate) fn encode(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..8].copy_from_slice(&self.log_start.to_le_bytes());
        b[8..16].copy_from_slice(&self.end_floor.to_le_bytes());
        b
    }

    pub(crate) fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != 16 {
            return None;
        }
        Some(Self {
            log_start: u64::from_le_bytes(b[0..8].try_into().ok()?),
            end_floor: u64::from_le_bytes(b[8..16].try_into().ok()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_meta_round_trips() {
        let meta = TopicMeta {
            id: 42,
            spec: TopicSpec::new("t", 3)
                .with_retention_bytes(9)
                .with_retention_ms(5),
        };
        assert_eq!(TopicMeta::decode("t", &meta.encode()).unwrap(), meta);
        let compacted = TopicMeta {
            id: 7,
            spec: TopicSpec::new("c", 2).compacted(),
        };
        assert_eq!(
            TopicMeta::decode("c", &compacted.encode()).unwrap(),
            compacted
        );
        let plain = TopicMeta {
            id: 1,
            spec: TopicSpec::new("p", 1),
        };
        assert_eq!(TopicMeta::decode("p", &plain.encode()).unwrap(), plain);
    }

    #[test]
    fn damaged_topic_meta_is_an_error() {
        let meta = TopicMeta {
            id: 1,
            spec: TopicSpec::new("t", 1),
        };
        let mut b = meta.encode();
        b[29] = 9;
        assert!(matches!(
            TopicMeta::decode("t", &b),
            Err(LogError::CorruptMetadata(_))
        ));
        assert!(TopicMeta::decode("t", &b[..10]).is_err());
    }
}
