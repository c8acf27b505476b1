//! Group commit: produce requests that arrive together share one commit.
//!
//! One thread owns the log's produce path. It takes every produce request
//! waiting for it (up to [`NodeConfig::group_commit_requests_max`]), checks
//! each partition's batches (topic, partition, record limits, producer
//! sequence), and writes all that passed in one [`Commit`], so concurrent
//! producers cost one fsync between them. Each record is checked before the
//! commit, so one bad request is refused alone and the others still land.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;

use kappa_log::{Commit, Log, TopicPartition, TopicSpec};
use tokio::sync::oneshot;

use crate::codes;
use crate::config::NodeConfig;
use crate::producers::{PartitionSequence, ProducerIds, SequenceCheck, Sequences};
use crate::records::{ProducedBatch, offset_i64};
use crate::stats::NodeStats;

/// Produce requests queued for the committer at most; producers wait beyond.
const QUEUE_REQUESTS_MAX: usize = 1024;

/// One partition's share of a produce request.
pub(crate) struct PartitionAppend {
    pub partition: TopicPartition,
    pub batches: Vec<ProducedBatch>,
}

/// What became of one partition's share.
#[derive(Clone, Debug)]
pub(crate) struct AppendOutcome {
    pub error_code: i16,
    pub error_message: Option<String>,
    /// Offset of the first record (of the first batch), or -1.
    pub base_offset: i64,
}

impl AppendOutcome {
    fn refused(code: i16, message: impl Into<String>) -> Self {
        Self {
            error_code: code,
            error_message: Some(message.into()),
            base_offset: -1,
        }
    }
}

struct Job {
    parts: Vec<PartitionAppend>,
    reply: oneshot::Sender<Vec<AppendOutcome>>,
}

/// The handle producers queue their appends through.
pub(crate) struct Committer {
    queue: mpsc::SyncSender<Job>,
}

impl Committer {
    pub(crate) fn start(
        log: Arc<dyn Log>,
        ids: Arc<ProducerIds>,
        sequences: Sequences,
        config: &NodeConfig,
        stats: Arc<NodeStats>,
    ) -> Self {
        let (queue, jobs) = mpsc::sync_channel(QUEUE_REQUESTS_MAX);
        let mut worker = Worker {
            log,
            ids,
            sequences,
            stats,
            requests_max: config.group_commit_requests_max.max(1),
        };
        // The thread ends when the last handle is dropped.
        let spawned = std::thread::Builder::new()
            .name("kappa-node-commit".into())
            .spawn(move || worker.run(&jobs));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the produce committer; produce requests will fail");
        }
        Self { queue }
    }

    /// Queues `parts` for the next commit. The receiver answers once the
    /// commit is durable, in the order of `parts`. Queueing happens now, so
    /// requests read from one connection are committed in the order read.
    pub(crate) fn submit(
        &self,
        parts: Vec<PartitionAppend>,
    ) -> oneshot::Receiver<Vec<AppendOutcome>> {
        let (reply, answer) = oneshot::channel();
        // A full queue blocks the connection's reader briefly: back-pressure.
        if let Err(mpsc::SendError(job)) = self.queue.send(Job { parts, reply }) {
            let n = job.parts.len();
            let _ = job.reply.send(vec![
                AppendOutcome::refused(
                    codes::KAFKA_STORAGE_ERROR,
                    "the node is shutting down"
                );
                n
            ]);
        }
        answer
    }
}

struct Worker {
    log: Arc<dyn Log>,
    ids: Arc<ProducerIds>,
    sequences: Sequences,
    stats: Arc<NodeStats>,
    requests_max: usize,
}

/// An idempotent batch whose staged base offset is checked after the commit.
struct Fixup {
    partition: TopicPartition,
    producer_id: i64,
    first_sequence: i32,
    /// Index of its first record among the commit's positions.
    index: usize,
}

/// Where one partition share's answer comes from after the commit.
enum Planned {
    Done(AppendOutcome),
    /// Index of its first record among the commit's positions, or the
    /// base offset of a duplicate first batch.
    Appended(usize),
    Duplicate(u64),
}

impl Worker {
    fn run(&mut self, jobs: &mpsc::Receiver<Job>) {
        while let Ok(first) = jobs.recv() {
            let mut round = vec![first];
            while round.len() < self.requests_max {
                match jobs.try_recv() {
                    Ok(job) => round.push(job),
                    Err(_) => break,
                }
            }
            self.commit_round(round);
        }
    }

    fn commit_round(&mut self, round: Vec<Job>) {
        let mut specs: HashMap<Arc<str>, Option<TopicSpec>> = HashMap::new();
        let mut staged = HashMap::new();
        let mut commit = Commit::new();
        let mut records = 0usize;
        let mut fixups = Vec::new();
        let mut plans: Vec<Vec<Planned>> = Vec::with_capacity(round.len());
        let mut replies = Vec::with_capacity(round.len());
        for job in round {
            let mut plan = Vec::with_capacity(job.parts.len());
            for part in job.parts {
                let spec = specs
                    .entry(part.partition.topic.clone())
                    .or_insert_with(|| {
                        self.log.list_topics().ok().and_then(|all| {
                            all.into_iter().find(|s| *s.name == *part.partition.topic)
                        })
                    });
                plan.push(self.plan(
                    spec.as_ref(),
                    part,
                    &mut staged,
                    &mut commit,
                    &mut records,
                    &mut fixups,
                ));
            }
            plans.push(plan);
            replies.push(job.reply);
        }
        let result = if commit.is_empty() {
            Ok(Vec::new())
        } else {
            self.log.commit(commit).map(|r| r.positions)
        };
        match result {
            Ok(positions) => {
                let mut corrections = Commit::new();
                for f in &fixups {
                    if let Some(p) = positions.get(f.index) {
                        Sequences::correct_offset(
                            &mut staged,
                            &f.partition,
                            f.producer_id,
                            f.first_sequence,
                            p.offset,
                            &mut corrections,
                        );
                    }
                }
                if !corrections.is_empty()
                    && let Err(e) = self.log.commit(corrections)
                {
                    // Only the offset reported for a retry after a restart
                    // is affected; the records are durable.
                    tracing::warn!(error = %e, "correcting producer state offsets failed");
                }
                self.sequences.apply(staged);
                self.stats
                    .produce_commits
                    .fetch_add(u64::from(!positions.is_empty()), Ordering::Relaxed);
                self.stats
                    .produce_requests_committed
                    .fetch_add(plans.len() as u64, Ordering::Relaxed);
                self.stats
                    .records_produced
                    .fetch_add(positions.len() as u64, Ordering::Relaxed);
                for (plan, reply) in plans.into_iter().zip(replies) {
                    let outcomes = plan
                        .into_iter()
                        .map(|p| match p {
                            Planned::Done(o) => o,
                            Planned::Appended(i) => AppendOutcome {
                                error_code: codes::NONE,
                                error_message: None,
                                base_offset: positions.get(i).map_or(-1, |p| offset_i64(p.offset)),
                            },
                            Planned::Duplicate(offset) => AppendOutcome {
                                error_code: codes::NONE,
                                error_message: None,
                                base_offset: offset_i64(offset),
                            },
                        })
                        .collect();
                    let _ = reply.send(outcomes);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "a produce commit failed; its requests are refused");
                let code = codes::for_log_error(&e);
                for (plan, reply) in plans.into_iter().zip(replies) {
                    let outcomes = plan
                        .into_iter()
                        .map(|p| match p {
                            Planned::Done(o) => o,
                            _ => AppendOutcome::refused(code, e.to_string()),
                        })
                        .collect();
                    let _ = reply.send(outcomes);
                }
            }
        }
    }

    /// Checks one partition's batches and adds what passes to `commit`.
    fn plan(
        &self,
        spec: Option<&TopicSpec>,
        part: PartitionAppend,
        staged: &mut HashMap<(i64, TopicPartition), PartitionSequence>,
        commit: &mut Commit,
        records: &mut usize,
        fixups: &mut Vec<Fixup>,
    ) -> Planned {
        let tp = part.partition;
        let Some(spec) = spec else {
            return Planned::Done(AppendOutcome::refused(
                codes::UNKNOWN_TOPIC_OR_PARTITION,
                format!("unknown topic {:?}", tp.topic),
            ));
        };
        if tp.partition >= spec.partitions {
            return Planned::Done(AppendOutcome::refused(
                codes::UNKNOWN_TOPIC_OR_PARTITION,
                format!(
                    "{:?} has {} partitions; {} is out of range",
                    tp.topic, spec.partitions, tp.partition
                ),
            ));
        }
        for batch in &part.batches {
            if batch.transactional {
                return Planned::Done(AppendOutcome::refused(
                    codes::INVALID_TXN_STATE,
                    "a transactional batch must come in a request that names its transactional id",
                ));
            }
            if let Some(e) = batch
                .records
                .iter()
                .find_map(|r| spec.check_record(r).err())
            {
                return Planned::Done(AppendOutcome::refused(
                    codes::for_log_error(&e),
                    e.to_string(),
                ));
            }
        }
        // All batches are checked before any is staged, so that a refused
        // batch leaves nothing of its partition share in the commit.
        let checks: Vec<SequenceCheck> = if part.batches.len() == 1 {
            vec![
                self.sequences
                    .check(staged, &self.ids, &tp, &part.batches[0]),
            ]
        } else {
            let mut local = staged.clone();
            let mut scratch = Commit::new();
            part.batches
                .iter()
                .map(|batch| {
                    let check = self.sequences.check(&local, &self.ids, &tp, batch);
                    if check == SequenceCheck::Append {
                        self.sequences
                            .stage(&mut local, &tp, batch, 0, &mut scratch);
                    }
                    check
                })
                .collect()
        };
        if let Some((batch, code)) = part.batches.iter().zip(&checks).find_map(|(b, c)| match c {
            SequenceCheck::Refuse(code) => Some((b, *code)),
            _ => None,
        }) {
            return Planned::Done(AppendOutcome::refused(
                code,
                format!(
                    "producer {} epoch {} sequence {} refused for {tp}",
                    batch.producer_id, batch.producer_epoch, batch.base_sequence
                ),
            ));
        }
        let mut first = None;
        let mut next_index = *records;
        for (batch, check) in part.batches.into_iter().zip(checks) {
            match check {
                SequenceCheck::Duplicate(offset) => {
                    first.get_or_insert(Planned::Duplicate(offset));
                }
                _ => {
                    first.get_or_insert(Planned::Appended(next_index));
                    let count = batch.records.len();
                    // The base offset is known only after the commit: the
                    // state is staged with a guess (the partition's end plus
                    // what this commit appends before it) and corrected then.
                    let guess =
                        self.log.offsets(&tp).map(|o| o.end).unwrap_or(0) + pending_in(commit, &tp);
                    self.sequences.stage(staged, &tp, &batch, guess, commit);
                    if batch.producer_id >= 0 {
                        fixups.push(Fixup {
                            partition: tp.clone(),
                            producer_id: batch.producer_id,
                            first_sequence: batch.base_sequence,
                            index: next_index,
                        });
                    }
                    commit.append_all(&tp.topic, Some(tp.partition), batch.records);
                    next_index += count;
                }
            }
        }
        *records = next_index;
        first.unwrap_or(Planned::Done(AppendOutcome {
            error_code: codes::NONE,
            error_message: None,
            base_offset: -1,
        }))
    }
}

/// Records `commit` already appends to `tp`.
fn pending_in(commit: &Commit, tp: &TopicPartition) -> u64 {
    commit
        .appends
        .iter()
        .filter(|a| a.topic == tp.topic && a.partition == Some(tp.partition))
        .map(|a| a.records.len() as u64)
        .sum()
}
