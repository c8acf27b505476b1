//! Kappa's log: the record model, the [`Log`] trait every backend
//! implements, and the embedded backend ([`EmbeddedLog`]).
//!
//! The log is the only source of truth in Kappa. Writers append records to
//! partitioned topics in atomic [`Commit`]s; readers fetch from positions and
//! tail without polling; every store and view is a cache of the log.

mod commit;
mod embedded;
mod error;
mod log;
mod memory;
mod partitioner;
mod record;
mod tasks;
mod topic;

pub use commit::{
    Commit, CommitReceipt, GROUP_NAME_BYTES_MAX, GroupPosition, METADATA_KEY_BYTES_MAX,
    TopicAppend, check_group_name, valid_group_name,
};
pub use embedded::{
    Durability, EmbeddedLog, EmbeddedOptions, EmbeddedStats, FORMAT_VERSION,
    MIN_FREE_BYTES_DEFAULT, MaintenanceReport, ParseDurabilityError, free_bytes,
};
pub use error::LogError;
pub use log::{FetchLimits, FetchOutcome, Log, metadata_page_from};
pub use memory::MemoryLog;
pub use partitioner::{murmur2, partition_for_key};
pub use record::{
    HEADER_NAME_BYTES_MAX, HEADERS_PER_RECORD_MAX, Header, OffsetRange, ParsePositionError,
    Position, ProducerRecord, Record, TopicPartition, now_ms,
};
pub use tasks::{GroupMembership, RebalanceListener, SoleMember, task_changelog};
pub use topic::{
    CleanupPolicy, DEFAULT_DELETE_RETENTION_MS, DEFAULT_MAX_RECORD_BYTES, PARTITIONS_MAX,
    PartitionDescription, TOPIC_NAME_BYTES_MAX, TopicConfig, TopicDescription, TopicSpec,
    validate_topic_name,
};
