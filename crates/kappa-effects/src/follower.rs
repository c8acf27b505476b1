//! Reading every partition of a topic from given offsets, waiting for new
//! records without polling: the input side of runners and sinks.

use std::sync::Arc;
use std::time::Duration;

use kappa_log::{FetchLimits, Log, LogError, Record, TopicPartition};

/// Follows all partitions of one topic.
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use kappa_log::{Log, MemoryLog, ProducerRecord, TopicSpec};
/// use kappa_effects::Follower;
/// let log: Arc<dyn Log> = Arc::new(MemoryLog::new());
/// log.create_topic(&TopicSpec::new("events", 2))?;
/// log.append("events", vec![ProducerRecord::value("a").with_key("k")])?;
/// let mut follower = Follower::new(log.clone(), "events", |_| 0)?;
/// let mut out = Vec::new();
/// follower.next_batch(Duration::from_millis(10), &mut out)?;
/// assert_eq!(out.len(), 1);
/// assert_eq!(follower.positions().iter().map(|(_, o)| o).sum::<u64>(), 1);
/// # Ok::<_, kappa_log::LogError>(())
/// ```
pub struct Follower {
    log: Arc<dyn Log>,
    from: Vec<(TopicPartition, u64)>,
    limits: FetchLimits,
}

impl Follower {
    /// Follows `topic` from `start(partition)` in each partition.
    ///
    /// # Errors
    ///
    /// Unknown topic.
    pub fn new(
        log: Arc<dyn Log>,
        topic: &str,
        start: impl Fn(u32) -> u64,
    ) -> Result<Self, LogError> {
        let partitions = log.describe_topic(topic)?.spec.partitions;
        let from = (0..partitions)
            .map(|p| (TopicPartition::new(topic, p), start(p)))
            .collect();
        Ok(Self {
            log,
            from,
            limits: FetchLimits {
                records_max: 2_000,
                bytes_max: 4 * 1024 * 1024,
                wait_max: Duration::ZERO,
            },
        })
    }

    /// The next offset to read in each partition.
    pub fn positions(&self) -> &[(TopicPartition, u64)] {
        &self.from
    }

    /// Most records one batch returns.
    pub fn batch_max(mut self, records: usize) -> Self {
        self.limits.records_max = records.max(1);
        self
    }

    /// Appends the next records to `out`, waiting up to `wait` when none
    /// are there. A partition whose next offset was removed by retention
    /// resumes at its first record, with a warning.
    ///
    /// # Errors
    ///
    /// Log failures.
    pub fn next_batch(&mut self, wait: Duration, out: &mut Vec<Record>) -> Result<(), LogError> {
        let limits = FetchLimits {
            wait_max: wait,
            ..self.limits
        };
        let outcome = match self.log.fetch(&self.from, limits, out) {
            Err(LogError::OffsetOutOfRange {
                topic,
                partition,
                offset,
                start,
                end,
            }) if offset < start => {
                tracing::warn!(%topic, partition, offset, start, end, "records were removed before they were read; resuming at the first one left");
                if let Some(f) = self
                    .from
                    .iter_mut()
                    .find(|(tp, _)| *tp.topic == *topic && tp.partition == partition)
                {
                    f.1 = start;
                }
                return Ok(());
            }
            other => other?,
        };
        for (f, next) in self.from.iter_mut().zip(outcome.next_offsets) {
            f.1 = next;
        }
        Ok(())
    }
}
