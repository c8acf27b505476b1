//! How far each part of the shell has got, for the service's announcement
//! in the log's registry (`kappa_service::registry`): which topic it
//! reads, under which name, what it writes, and how far behind the end it is.

use std::sync::Arc;

use kappa_log::{Log, LogError, TopicPartition};
use kappa_service::registry::{Reading, lag_of};

/// A running runner's or sink's progress; cheap to keep (it shares the
/// part's state, not the part), so an announcement can outlive the part.
pub trait Progress: Send + Sync {
    /// The name it reads under: a runner's group, a sink's name.
    fn reader(&self) -> String;
    /// The topic it reads.
    fn topic(&self) -> &str;
    /// The topics it writes into the log (outcomes, dead letters).
    fn writes(&self) -> Vec<String>;
    /// The next offset per partition it has made durable.
    fn committed(&self) -> Vec<u64>;
}

/// What `parts` read, each with its lag: the log's end minus its committed
/// offset, summed over partitions.
///
/// # Errors
///
/// Log failures.
pub fn readings(log: &dyn Log, parts: &[Arc<dyn Progress>]) -> Result<Vec<Reading>, LogError> {
    let mut out = Vec::with_capacity(parts.len());
    for part in parts {
        let positions: Vec<(TopicPartition, u64)> = (0u32..)
            .zip(part.committed())
            .map(|(p, next)| (TopicPartition::new(part.topic(), p), next))
            .collect();
        out.extend(lag_of(log, &part.reader(), &positions)?);
    }
    Ok(out)
}

/// Each part's topic's end offsets now, by partition: what
/// [`through`] measures a catch-up against.
///
/// # Errors
///
/// Log failures.
pub fn ends(log: &dyn Log, parts: &[Arc<dyn Progress>]) -> Result<Vec<Vec<u64>>, LogError> {
    parts
        .iter()
        .map(|part| {
            (0u32..)
                .zip(part.committed())
                .map(|(p, _)| Ok(log.offsets(&TopicPartition::new(part.topic(), p))?.end))
                .collect()
        })
        .collect()
}

/// How far `parts` are through `ends` (from [`ends`]): records done and
/// records in all, summed over parts and partitions, for a progress line.
pub fn through(parts: &[Arc<dyn Progress>], ends: &[Vec<u64>]) -> (u64, u64) {
    let (mut done, mut total) = (0, 0);
    for (part, ends) in parts.iter().zip(ends) {
        for (next, end) in part.committed().into_iter().zip(ends) {
            total += end;
            done += next.min(*end);
        }
    }
    (done, total)
}

/// The topics `parts` write, each once, sorted.
pub fn writes(parts: &[Arc<dyn Progress>]) -> Vec<String> {
    let mut out: Vec<String> = parts.iter().flat_map(|p| p.writes()).collect();
    out.sort();
    out.dedup();
    out
}
