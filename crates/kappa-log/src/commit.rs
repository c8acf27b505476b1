//! The atomic commit: appends, group positions and metadata that land together or not at all.

use std::sync::Arc;

use bytes::Bytes;

use crate::error::LogError;
use crate::record::{Position, ProducerRecord, TopicPartition};

/// Longest metadata key accepted, in bytes.
pub const METADATA_KEY_BYTES_MAX: usize = 16 * 1024;
/// Longest consumer group name, in bytes.
pub const GROUP_NAME_BYTES_MAX: usize = 255;

/// Records for one topic (and optionally one fixed partition) inside a commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicAppend {
    /// Destination topic.
    pub topic: Arc<str>,
    /// Fixed partition, or `None` to partition by key (murmur2) or round-robin.
    pub partition: Option<u32>,
    /// Records in order.
    pub records: Vec<ProducerRecord>,
}

/// A consumer group's next offset to read in one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupPosition {
    /// Group name.
    pub group: Arc<str>,
    /// The partition.
    pub partition: TopicPartition,
    /// The next offset the group will read.
    pub offset: u64,
}

/// One atomic step: appends to any partitions, consumer-group positions and
/// opaque metadata (state-store changes). On the embedded log it is one
/// storage write batch; on Kafka it is one transaction (appends are produced,
/// positions are sent with `send_offsets_to_transaction`, metadata goes to
/// changelog topics).
///
/// ```
/// use kappa_log::{Commit, ProducerRecord, TopicPartition};
/// let mut c = Commit::new();
/// c.append("events", ProducerRecord::value("card-1 approved").with_key("card-1"));
/// c.set_group_position("processor", TopicPartition::new("commands", 0), 17);
/// c.put_metadata("store/balances/card-1", "420");
/// assert_eq!(c.record_count(), 1);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Commit {
    /// Appends grouped by destination, in order.
    pub appends: Vec<TopicAppend>,
    /// Group positions to store.
    pub group_positions: Vec<GroupPosition>,
    /// Metadata writes: `Some` puts, `None` deletes.
    pub metadata: Vec<(Bytes, Option<Bytes>)>,
}

impl Commit {
    /// An empty commit.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a record, partitioned by key (or round-robin when keyless).
    pub fn append(&mut self, topic: &str, record: ProducerRecord) -> &mut Self {
        self.push(topic, None, record)
    }

    /// Appends a record to a fixed partition.
    pub fn append_to(&mut self, topic: &str, partition: u32, record: ProducerRecord) -> &mut Self {
        self.push(topic, Some(partition), record)
    }

    /// Appends many records to one topic (partitioned by key) without per-record bookkeeping.
    pub fn append_all(
        &mut self,
        topic: &str,
        partition: Option<u32>,
        records: impl IntoIterator<Item = ProducerRecord>,
    ) -> &mut Self {
        let group = self.group_for(topic, partition);
        group.records.extend(records);
        self
    }

    fn push(&mut self, topic: &str, partition: Option<u32>, record: ProducerRecord) -> &mut Self {
        self.group_for(topic, partition).records.push(record);
        self
    }

    fn group_for(&mut self, topic: &str, partition: Option<u32>) -> &mut TopicAppend {
        let reuse = matches!(self.appends.last(), Some(last) if &*last.topic == topic && last.partition == partition);
        if !reuse {
            self.appends.push(TopicAppend {
                topic: topic.into(),
                partition,
                records: Vec::new(),
            });
        }
        let last = self.appends.len() - 1;
        &mut self.appends[last]
    }

    /// Stores a consumer group's next offset for a partition.
    pub fn set_group_position(
        &mut self,
        group: &str,
        partition: TopicPartition,
        offset: u64,
    ) -> &mut Self {
        self.group_positions.push(GroupPosition {
            group: group.into(),
            partition,
            offset,
        });
        self
    }

    /// Puts a metadata key.
    pub fn put_metadata(&mut self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> &mut Self {
        self.metadata.push((key.into(), Some(value.into())));
        self
    }

    /// Deletes a metadata key.
    pub fn delete_metadata(&mut self, key: impl Into<Bytes>) -> &mut Self {
        self.metadata.push((key.into(), None));
        self
    }

    /// Adds everything `other` carries after what this commit carries.
    pub fn extend(&mut self, other: Commit) {
        self.appends.extend(other.appends);
        self.group_positions.extend(other.group_positions);
        self.metadata.extend(other.metadata);
    }

    /// Number of records to append.
    pub fn record_count(&self) -> usize {
        self.appends.iter().map(|a| a.records.len()).sum()
    }

    /// True when the commit carries nothing.
    pub fn is_empty(&self) -> bool {
        self.record_count() == 0 && self.group_positions.is_empty() && self.metadata.is_empty()
    }
}

/// What a successful commit returns: the position of every appended record,
/// in the order the records were added.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitReceipt {
    /// One position per appended record.
    pub positions: Vec<Position>,
}

/// Whether `name` is a valid consumer group name: 1 to
/// [`GROUP_NAME_BYTES_MAX`] bytes, no control characters.
pub fn valid_group_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= GROUP_NAME_BYTES_MAX && !name.chars().any(char::is_control)
}

/// [`valid_group_name`] as the error every backend returns for a bad name,
/// so they all refuse it the same way.
///
/// # Errors
///
/// [`LogError::InvalidGroupName`] naming `name`.
pub fn check_group_name(name: &str) -> Result<(), LogError> {
    if valid_group_name(name) {
        Ok(())
    } else {
        Err(LogError::InvalidGroupName(name.to_owned()))
    }
}
