//! Resetting an application so a restart reprocesses its inputs from the
//! start: the log is the source of truth, stores are caches of it.

use kappa_log::{Commit, Log, LogError};

use crate::store::{app_prefix, replay_mark_key, replay_mark_prefix};

/// What a reset did.
///
/// The whole store is dropped in one commit, so its size is bounded by memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResetReport {
    /// Input partitions whose position went back to their start offset.
    pub positions_reset: usize,
    /// Store entries dropped.
    pub store_entries_dropped: usize,
    /// Internal topics deleted (recreated empty on the next start).
    pub internal_topics_deleted: Vec<String>,
}

/// Drops an application's stores and internal topics and moves its input
/// positions back to the start, so that the next `Streams::start`
/// recomputes everything from the log. Run it while the application is
/// stopped. Internal topics are recognised by name (`<app>-…-repartition`),
/// so give applications ids that are not prefixes of each other.
///
/// ```
/// # use kappa_log::MemoryLog;
/// let log = MemoryLog::new();
/// let report = kappa_streams::reset_application(&log, "card-limits")?;
/// assert_eq!(report.positions_reset, 0);
/// # Ok::<_, kappa_log::LogError>(())
/// ```
///
/// # Errors
///
/// Log failures; a reset that fails part-way can be run again.
pub fn reset_application(log: &dyn Log, application_id: &str) -> Result<ResetReport, LogError> {
    reset(log, application_id, false)
}

/// Like [`reset_application`], but the restarted application rebuilds its
/// stores without writing its outputs again: up to the positions it had
/// reached, records are processed for their state only (outputs to its
/// own repartition topics still flow, so downstream state is rebuilt too);
/// after them it carries on as usual. Use it when stores are lost or must
/// be recomputed and the outputs already in the log must not repeat.
///
/// ```
/// # use kappa_log::MemoryLog;
/// let log = MemoryLog::new();
/// let report = kappa_streams::rebuild_application(&log, "card-limits")?;
/// assert_eq!(report.store_entries_dropped, 0);
/// # Ok::<_, kappa_log::LogError>(())
/// ```
///
/// # Errors
///
/// Log failures; a rebuild that fails part-way can be run again.
pub fn rebuild_application(log: &dyn Log, application_id: &str) -> Result<ResetReport, LogError> {
    reset(log, application_id, true)
}

fn reset(log: &dyn Log, application_id: &str, keep_outputs: bool) -> Result<ResetReport, LogError> {
    let mut report = ResetReport::default();
    let internal_prefix = format!("{application_id}-");
    let mut reset = Commit::new();
    let is_internal =
        |topic: &str| topic.starts_with(&internal_prefix) && topic.ends_with("-repartition");
    let mut replay = Vec::new();
    for (tp, at) in log.group_positions(application_id)? {
        let range = match log.offsets(&tp) {
            Ok(range) => range,
            Err(LogError::UnknownTopic(_)) => continue,
            Err(e) => return Err(e),
        };
        if is_internal(&tp.topic) {
            // Skip what is already there: the reprocessed inputs write it again.
            reset.set_group_position(application_id, tp, range.end);
        } else {
            reset.set_group_position(application_id, tp.clone(), range.start);
            report.positions_reset += 1;
            if keep_outputs && at > range.start {
                replay.push((tp, at));
            }
        }
    }
    // One commit: positions back to the start and every store entry gone
    // together, so a crash can't leave stores that disagree with positions.
    let marks = replay_mark_prefix(application_id);
    for (k, _) in log.metadata_scan(&app_prefix(application_id))? {
        if k.starts_with(&marks) {
            // Replaced below when rebuilding; dropped by a plain reset.
            if !keep_outputs {
                reset.delete_metadata(k);
            }
            continue;
        }
        reset.delete_metadata(k);
        report.store_entries_dropped += 1;
    }
    for (tp, at) in replay {
        // A mark already there (an unfinished rebuild) is further along: keep it.
        let key = replay_mark_key(application_id, &tp.topic, tp.partition);
        let previous = log
            .metadata(&key)?
            .and_then(|m| m[..].try_into().ok())
            .map_or(0, u64::from_be_bytes);
        reset.put_metadata(key, at.max(previous).to_be_bytes().to_vec());
    }
    log.commit(reset)?;
    // Then the internal topics: if this is cut short, the restarted
    // application reads them from their ends, which is consistent; running
    // the reset again finishes the job.
    for spec in log.list_topics()? {
        if is_internal(&spec.name) {
            log.delete_topic(&spec.name)?;
            report.internal_topics_deleted.push(spec.name);
        }
    }
    Ok(report)
}
