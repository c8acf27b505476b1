//! The record model: what a log stores and what a reader gets back.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;

/// A named byte string attached to a record, as Kafka headers are.
///
/// Kappa uses headers for provenance (`kappa-source`, `kappa-correlation`,
/// `kappa-causation`); applications may add their own. The name is `Bytes`
/// (UTF-8, checked on write) so that static names and names read back from
/// a batch cost no allocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Header name (UTF-8, at most [`HEADER_NAME_BYTES_MAX`] bytes).
    pub name: Bytes,
    /// Header value.
    pub value: Bytes,
}

/// Longest header name accepted, in bytes.
pub const HEADER_NAME_BYTES_MAX: usize = 1024;
/// Most headers one record may carry.
pub const HEADERS_PER_RECORD_MAX: usize = 1024;

impl Header {
    /// Makes a header.
    ///
    /// ```
    /// let h = kappa_log::Header::new("kappa-source", "commands/0/42");
    /// assert_eq!(&h.value[..], b"commands/0/42");
    /// ```
    pub fn new(name: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }

    /// The name as text (names are checked to be UTF-8 when written).
    pub fn name_str(&self) -> &str {
        std::str::from_utf8(&self.name).unwrap_or("")
    }
}

/// A record as a writer hands it to the log: the log assigns its partition
/// (unless the writer names one) and its offset.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerRecord {
    /// Key; keyed records are partitioned by murmur2 of the key.
    pub key: Option<Bytes>,
    /// Value; `None` is a tombstone on compacted topics.
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<Header>,
    /// Event time in milliseconds since the epoch; `None` means "now" at commit.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    /// A record with a value and no key.
    ///
    /// ```
    /// let r = kappa_log::ProducerRecord::value("hello").with_key("k").with_timestamp(7);
    /// assert_eq!(r.timestamp, Some(7));
    /// ```
    pub fn value(value: impl Into<Bytes>) -> Self {
        Self {
            value: Some(value.into()),
            ..Self::default()
        }
    }

    /// Sets the key.
    #[must_use]
    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the event timestamp (ms since the epoch).
    #[must_use]
    pub fn with_timestamp(mut self, timestamp_ms: i64) -> Self {
        self.timestamp = Some(timestamp_ms);
        self
    }

    /// Adds a header.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        self.headers.push(Header::new(name, value));
        self
    }

    /// Bytes this record occupies in a stored batch; the size limits apply to it.
    pub fn encoded_len(&self) -> usize {
        crate::embedded::batch::record_encoded_len(
            self.key.as_deref(),
            self.value.as_deref(),
            &self.headers,
        )
    }
}

/// A record read back from the log, with its position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Topic it was read from.
    pub topic: Arc<str>,
    /// Partition within the topic.
    pub partition: u32,
    /// Offset within the partition.
    pub offset: u64,
    /// Event time in milliseconds since the epoch.
    pub timestamp: i64,
    /// Key, if any.
    pub key: Option<Bytes>,
    /// Value; `None` is a tombstone.
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<Header>,
}

impl Record {
    /// The record's position, usable as a read-your-writes token.
    pub fn position(&self) -> Position {
        Position {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.offset,
        }
    }

    /// The first header with this name, if any.
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers
            .iter()
            .find(|h| h.name == name.as_bytes())
            .map(|h| &h.value)
    }
}

/// A topic and partition number.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: Arc<str>,
    /// Partition number, `0..partitions`.
    pub partition: u32,
}

impl TopicPartition {
    /// Makes a topic-partition.
    pub fn new(topic: impl Into<Arc<str>>, partition: u32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// Where a record is: `(topic, partition, offset)`. Positions are Kappa's
/// logical time; their text form `topic/partition/offset` is the token that
/// writers hand to readers.
///
/// ```
/// let p: kappa_log::Position = "commands/3/42".parse().unwrap();
/// assert_eq!((p.partition, p.offset), (3, 42));
/// assert_eq!(p.to_string(), "commands/3/42");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    /// Topic name.
    pub topic: Arc<str>,
    /// Partition number.
    pub partition: u32,
    /// Offset within the partition.
    pub offset: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.topic, self.partition, self.offset)
    }
}

/// A position token that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid position {0:?}: expected TOPIC/PARTITION/OFFSET, for example orders/0/42")]
pub struct ParsePositionError(pub String);

impl FromStr for Position {
    type Err = ParsePositionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParsePositionError(s.to_owned());
        let (rest, offset) = s.rsplit_once('/').ok_or_else(bad)?;
        let (topic, partition) = rest.rsplit_once('/').ok_or_else(bad)?;
        if crate::topic::validate_topic_name(topic).is_err() {
            return Err(bad());
        }
        Ok(Self {
            topic: topic.into(),
            partition: partition.parse().map_err(|_| bad())?,
            offset: offset.parse().map_err(|_| bad())?,
        })
    }
}

/// The offsets a partition holds: `start..end` (`end` is the next offset to be written).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffsetRange {
    /// First offset still held (advanced by retention).
    pub start: u64,
    /// One past the last committed offset (the high watermark).
    pub end: u64,
}

/// Milliseconds since the Unix epoch, by the wall clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
