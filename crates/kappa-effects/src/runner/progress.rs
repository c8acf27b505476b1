//! A runner's progress in one partition, stored with every commit of its
//! outcomes so that a restart redoes exactly the unfinished events.
//!
//! Effects finish out of order, so a single "next offset" is not enough:
//! the stored state is the lowest unfinished offset, how far the runner
//! had read, and the offsets still running in between. Everything else
//! below `read_end` is finished, and its outcome is in the log.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// Progress in one partition.
///
/// ```text
///   finished        running  finished   running   not read
/// [0 ........ next)   next     ...        o2     [read_end ...
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Progress {
    /// Offsets read so far end here.
    read_end: u64,
    /// Offsets below `read_end` whose effect has not finished.
    running: BTreeSet<u64>,
}

impl Progress {
    /// The lowest unfinished offset: where reading resumes after a restart.
    pub(crate) fn next(&self) -> u64 {
        self.running.first().copied().unwrap_or(self.read_end)
    }

    /// Whether the event at `offset` already has its outcome recorded.
    pub(crate) fn is_finished(&self, offset: u64) -> bool {
        offset < self.read_end && !self.running.contains(&offset)
    }

    /// An effect starts for `offset` (again, after a restart, if it was running).
    pub(crate) fn start(&mut self, offset: u64) {
        self.running.insert(offset);
        self.read_end = self.read_end.max(offset + 1);
    }

    /// `offset` needs no effect (another action, or unreadable).
    pub(crate) fn skip(&mut self, offset: u64) {
        self.read_end = self.read_end.max(offset + 1);
    }

    /// The effect for `offset` finished; its outcome goes into the same commit.
    pub(crate) fn finish(&mut self, offset: u64) {
        self.running.remove(&offset);
    }

    /// Effects running now.
    pub(crate) fn running(&self) -> usize {
        self.running.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever order effects finish in, a restart from any stored
        /// snapshot redoes exactly the events without a recorded outcome.
        #[test]
        fn restart_redoes_exactly_the_unfinished(
            kinds in proptest::collection::vec(any::<bool>(), 1..60),
            order in proptest::collection::vec(any::<u16>(), 60),
            snapshot_at in 0usize..120,
        ) {
            let mut p = Progress::default();
            let mut running = Vec::new();
            let mut recorded = BTreeSet::new();
            let mut snapshot = (p.clone(), recorded.clone());
            let mut step = 0;
            let mut read = 0u64;
            let mut order = order.into_iter();
            while read < kinds.len() as u64 || !running.is_empty() {
                if step == snapshot_at {
                    snapshot = (p.clone(), recorded.clone());
                }
                step += 1;
                let pick = order.next().unwrap_or(0) as usize;
                if read < kinds.len() as u64 && (running.is_empty() || pick.is_multiple_of(2)) {
                    if kinds[read as usize] { p.start(read); running.push(read); } else { p.skip(read); recorded.insert(read); }
                    read += 1;
                } else {
                    let o = running.remove(pick % running.len());
                    p.finish(o);
                    recorded.insert(o);
                }
            }
            let (stored, recorded_then) = snapshot;
            for o in 0..kinds.len() as u64 {
                let redo = o >= stored.next() && !stored.is_finished(o);
                prop_assert_eq!(redo, !recorded_then.contains(&o), "offset {}", o);
            }
            let json = serde_json::to_string(&stored).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back: Progress = serde_json::from_str(&json).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(back, stored);
        }
    }
}
