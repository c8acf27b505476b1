//! The log's errors. Each variant says what went wrong in words an operator can act on.

use std::path::PathBuf;

/// Everything a log operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// A topic name breaks the naming rules.
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName {
        /// The name given.
        name: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// A configuration value or request argument is out of bounds.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The topic does not exist.
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    /// The topic exists already.
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    /// A partition number is not below the topic's partition count.
    #[error(
        "partition {partition} is out of range for topic {topic:?}, which has {partitions} partition(s)"
    )]
    PartitionOutOfRange {
        /// Topic name.
        topic: String,
        /// Partition asked for.
        partition: u32,
        /// Partitions the topic has.
        partitions: u32,
    },
    /// A read asked for an offset the partition does not hold.
    #[error("offset {offset} is out of range for {topic}/{partition}, which holds {start}..{end}")]
    OffsetOutOfRange {
        /// Topic name.
        topic: String,
        /// Partition.
        partition: u32,
        /// Offset asked for.
        offset: u64,
        /// First offset held.
        start: u64,
        /// Next offset to be written.
        end: u64,
    },
    /// A record is larger than the topic allows.
    #[error("record of {size} bytes is larger than topic {topic:?} allows ({max} bytes)")]
    RecordTooLarge {
        /// Topic name.
        topic: String,
        /// Encoded size of the record.
        size: usize,
        /// The topic's `max_record_bytes`.
        max: u32,
    },
    /// A compacted topic received a record without a key.
    #[error("topic {0:?} is compacted, so every record needs a key")]
    MissingKey(String),
    /// A consumer group name is not acceptable.
    #[error("invalid group name {0:?}: 1 to 255 bytes, no control characters")]
    InvalidGroupName(String),
    /// Stored data failed its checksum or does not decode.
    #[error("corrupt data in {topic}/{partition} near offset {offset}: {detail}")]
    Corrupt {
        /// Topic name.
        topic: String,
        /// Partition.
        partition: u32,
        /// Base offset of the damaged batch.
        offset: u64,
        /// What check failed.
        detail: String,
    },
    /// Stored log metadata (not record data) failed to decode.
    #[error("corrupt log metadata: {0}")]
    CorruptMetadata(String),
    /// Another process has the log directory open.
    #[error("log directory {} is already in use by another process (lock file {})", .dir.display(), .lock.display())]
    AlreadyInUse {
        /// The log directory.
        dir: PathBuf,
        /// The lock file held.
        lock: PathBuf,
    },
    /// The directory was written by a newer, unknown format.
    #[error("log directory {} has format version {found}; this build reads up to {supported}", .dir.display())]
    UnsupportedFormat {
        /// The log directory.
        dir: PathBuf,
        /// Version found on disk.
        found: u32,
        /// Newest version this build understands.
        supported: u32,
    },
    /// An earlier write or fsync failed; the log refuses writes until reopened,
    /// because what reached the disk is unknown.
    #[error(
        "the log is poisoned by an earlier storage failure and refuses writes; reopen it to recover"
    )]
    Poisoned,
    /// The file system holding the log has less free space than the
    /// log's floor ([`crate::EmbeddedOptions::min_free_bytes`]): the write is
    /// refused before the disk fills, nothing is written, and writes are
    /// taken again once space is freed.
    #[error(
        "the disk holding the log has {free} bytes free, under the floor of {floor}: writes are refused until space is freed"
    )]
    DiskFull {
        /// Free bytes at the last reading.
        free: u64,
        /// The floor the write was held to.
        floor: u64,
    },
    /// The log has been closed.
    #[error("the log is closed")]
    Closed,
    /// The backend does not offer this operation.
    #[error("not supported: {0}")]
    Unsupported(String),
    /// A Kafka broker refused or failed a request (the Kafka backend).
    #[error("Kafka: {0}")]
    Broker(String),
    /// The storage engine failed.
    #[error("storage failure: {0}")]
    Storage(String),
    /// A file-system operation failed.
    #[error("I/O error on {}: {source}", .path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl From<fjall::Error> for LogError {
    fn from(e: fjall::Error) -> Self {
        match e {
            fjall::Error::Poisoned => Self::Poisoned,
            other => Self::Storage(describe_fjall(&other)),
        }
    }
}

/// fjall's `Display` is its `Debug`; add the words a reader of our errors needs.
pub(crate) fn describe_fjall(e: &fjall::Error) -> String {
    match e {
        fjall::Error::JournalRecovery(r) => format!(
            "the write-ahead journal is damaged ({r:?}) beyond its last batch; refusing to open rather than lose data"
        ),
        fjall::Error::Locked => "the storage engine is locked by another process".to_owned(),
        fjall::Error::Storage(fjall::LsmError::ChecksumMismatch { .. }) => {
            "a stored block failed its checksum (the data file is damaged)".to_owned()
        }
        other => format!("{other:?}"),
    }
}
