//! Which write-ahead commits a read has met only in part.
//!
//! A write-ahead commit's records are produced as ordinary records, so a
//! fetch can end between two of them (they went out in two produce
//! batches, say). Each record that shares its partition with others of
//! the same commit says so (`kappa-commit-part: k/n`, see
//! [`crate::client::PART_HEADER`]), and the reader uses these runs to
//! wait for, or hold back, the rest: a commit's records in one partition
//! are delivered together, as the embedded log does.

use std::collections::HashMap;

use rdkafka::message::{BorrowedMessage, Headers, Message};

use crate::client::{COMMIT_HEADER, PART_HEADER};
use crate::writeahead;

/// One commit's records met in one partition.
struct Run {
    first_offset: u64,
    n: u32,
    min_k: u32,
    max_k: u32,
    seen: u32,
}

impl Run {
    /// Whether every record from the first one met to the commit's last
    /// has been met. (A read that starts inside a commit never meets its
    /// head: what it can still get is the tail.)
    fn whole(&self) -> bool {
        self.max_k + 1 == self.n && self.seen == self.n - self.min_k
    }
}

/// The runs of one read: by partition index, then by commit.
#[derive(Default)]
pub(crate) struct CommitRuns {
    runs: Vec<HashMap<Box<[u8]>, Run>>,
    incomplete: usize,
}

impl CommitRuns {
    pub(crate) fn clear(&mut self) {
        for runs in &mut self.runs {
            runs.clear();
        }
        self.incomplete = 0;
    }

    /// Notes `m`, read for partition index `partition`, if it is one of
    /// several records of a write-ahead commit in its partition.
    pub(crate) fn note(&mut self, partition: usize, m: &BorrowedMessage<'_>) {
        let Some((commit, k, n)) = commit_part(m) else {
            return;
        };
        let offset = u64::try_from(m.offset()).unwrap_or(0);
        if self.runs.len() <= partition {
            self.runs.resize_with(partition + 1, HashMap::new);
        }
        let runs = &mut self.runs[partition];
        match runs.get_mut(commit) {
            Some(run) => {
                let was_whole = run.whole();
                run.first_offset = run.first_offset.min(offset);
                run.min_k = run.min_k.min(k);
                run.max_k = run.max_k.max(k);
                run.seen += 1;
                match (was_whole, run.whole()) {
                    (false, true) => self.incomplete -= 1,
                    (true, false) => self.incomplete += 1,
                    _ => {}
                }
            }
            None => {
                let run = Run {
                    first_offset: offset,
                    n,
                    min_k: k,
                    max_k: k,
                    seen: 1,
                };
                if !run.whole() {
                    self.incomplete += 1;
                }
                runs.insert(Box::from(commit), run);
            }
        }
    }

    /// Whether a commit met so far is missing records.
    pub(crate) fn any_incomplete(&self) -> bool {
        self.incomplete > 0
    }

    /// For each of `partitions` partition indexes, the first offset of a
    /// commit met there only in part.
    pub(crate) fn incomplete_from(&self, partitions: usize) -> Vec<Option<u64>> {
        let mut from = vec![None; partitions];
        if self.incomplete == 0 {
            return from;
        }
        for (runs, at) in self.runs.iter().zip(from.iter_mut()) {
            *at = runs
                .values()
                .filter(|run| !run.whole())
                .map(|run| run.first_offset)
                .min();
        }
        from
    }
}

/// The commit a record belongs to (its `kappa-commit` header without the
/// record's index) and its place `k` of `n` there, when `n` > 1.
fn commit_part<'m>(m: &'m BorrowedMessage<'_>) -> Option<(&'m [u8], u32, u32)> {
    let headers = m.headers()?;
    let (mut id, mut part) = (None, None);
    for h in headers.iter() {
        if h.key == COMMIT_HEADER {
            id = h.value;
        } else if h.key == PART_HEADER {
            part = h.value.and_then(writeahead::parse_part);
        }
    }
    let (id, (k, n)) = (id?, part?);
    let cut = id.iter().rposition(|b| *b == b'/')?;
    Some((&id[..cut], k, n))
}
