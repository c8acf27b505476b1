//! Idempotent producers: ids, epochs and per-partition sequence numbers.
//!
//! Kafka's rule: within one producer id and epoch, each partition's batches
//! carry consecutive sequence numbers. A batch that repeats one of the last
//! [`RECENT_BATCHES_MAX`] batches is a retry and is acknowledged with the
//! offset it got the first time, without being appended again; a gap is
//! refused with `OUT_OF_ORDER_SEQUENCE_NUMBER`; an older epoch with
//! `INVALID_PRODUCER_EPOCH`. The state is kept in the log's metadata and
//! written in the same commit as the records it admits, so it survives a
//! restart exactly as far as the records do.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;
use kappa_log::{Commit, Log, LogError, TopicPartition, now_ms};

use crate::codes;
use crate::error::NodeError;
use crate::records::ProducedBatch;

/// Batches per producer and partition remembered for spotting retries
/// (Kafka's `max.in.flight.requests.per.connection` bound for idempotence).
pub(crate) const RECENT_BATCHES_MAX: usize = 5;
/// A producer's partition state unused this long is dropped at start
/// (Kafka's `producer.id.expiration.ms` is one day).
const IDLE_EXPIRY_MS: i64 = 7 * 24 * 60 * 60 * 1000;

const NEXT_ID_KEY: &[u8] = b"kafka-node/next-producer-id";
const STATE_PREFIX: &str = "kafka-node/producer/";

/// Hands out producer ids, durably: an id is never handed out twice.
pub(crate) struct ProducerIds {
    next: Mutex<i64>,
}

impl ProducerIds {
    pub(crate) fn load(log: &dyn Log) -> Result<Self, NodeError> {
        let next = match log.metadata(NEXT_ID_KEY)? {
            None => 0,
            Some(v) => decode_i64(&v).ok_or_else(|| NodeError::CorruptState {
                key: String::from_utf8_lossy(NEXT_ID_KEY).into_owned(),
                detail: format!("{} bytes, expected 8", v.len()),
            })?,
        };
        Ok(Self {
            next: Mutex::new(next),
        })
    }

    /// A new producer id; durable before it is returned.
    pub(crate) fn allocate(&self, log: &dyn Log) -> Result<i64, LogError> {
        let mut next = self
            .next
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let id = *next;
        let mut commit = Commit::new();
        commit.put_metadata(NEXT_ID_KEY, (id + 1).to_le_bytes().to_vec());
        log.commit(commit)?;
        *next = id + 1;
        Ok(id)
    }

    /// Whether `id` was ever handed out.
    pub(crate) fn issued(&self, id: i64) -> bool {
        id >= 0
            && id
                < *self
                    .next
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One producer's state in one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PartitionSequence {
    epoch: i16,
    last_sequence: i32,
    /// `(first sequence, last sequence, base offset)` of the latest batches.
    recent: VecDeque<(i32, i32, u64)>,
    last_write_ms: i64,
}

/// What to do with a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SequenceCheck {
    /// Not idempotent, or the next in sequence: append it.
    Append,
    /// A retry of a batch already appended at this base offset.
    Duplicate(u64),
    /// Refused with this Kafka error code.
    Refuse(i16),
}

type Key = (i64, TopicPartition);

/// Sequence state of every idempotent producer, owned by the committer.
pub(crate) struct Sequences {
    by_partition: HashMap<Key, PartitionSequence>,
}

impl Sequences {
    pub(crate) fn load(log: &dyn Log) -> Result<Self, NodeError> {
        let mut by_partition = HashMap::new();
        let mut expired = Commit::new();
        let now = now_ms();
        for (key, value) in log.metadata_scan(STATE_PREFIX.as_bytes())? {
            let corrupt = |detail: &str| NodeError::CorruptState {
                key: String::from_utf8_lossy(&key).into_owned(),
                detail: detail.to_string(),
            };
            let (id, tp) = parse_key(&key).ok_or_else(|| corrupt("unparsable key"))?;
            let state = decode_state(&value).ok_or_else(|| corrupt("unparsable state"))?;
            if now - state.last_write_ms > IDLE_EXPIRY_MS {
                expired.delete_metadata(key);
                continue;
            }
            by_partition.insert((id, tp), state);
        }
        if !expired.is_empty() {
            log.commit(expired)?;
        }
        Ok(Self { by_partition })
    }

    /// Checks `batch` for partition `tp`, with `staged` holding the
    /// changes of batches admitted earlier in the same commit.
    pub(crate) fn check(
        &self,
        staged: &HashMap<Key, PartitionSequence>,
        ids: &ProducerIds,
        tp: &TopicPartition,
        batch: &ProducedBatch,
    ) -> SequenceCheck {
        if batch.producer_id < 0 {
            return SequenceCheck::Append;
        }
        if !ids.issued(batch.producer_id) {
            return SequenceCheck::Refuse(codes::UNKNOWN_PRODUCER_ID);
        }
        let key = (batch.producer_id, tp.clone());
        let Some(state) = staged.get(&key).or_else(|| self.by_partition.get(&key)) else {
            return if batch.base_sequence == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::Refuse(codes::OUT_OF_ORDER_SEQUENCE_NUMBER)
            };
        };
        if batch.producer_epoch < state.epoch {
            return SequenceCheck::Refuse(codes::INVALID_PRODUCER_EPOCH);
        }
        if batch.producer_epoch > state.epoch {
            return if batch.base_sequence == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::Refuse(codes::OUT_OF_ORDER_SEQUENCE_NUMBER)
            };
        }
        if let Some(&(_, _, offset)) = state.recent.iter().find(|(first, last, _)| {
            *first == batch.base_sequence && *last == batch.last_sequence()
        }) {
            return SequenceCheck::Duplicate(offset);
        }
        if batch.base_sequence == next_sequence(state.last_sequence) {
            SequenceCheck::Append
        } else {
            SequenceCheck::Refuse(codes::OUT_OF_ORDER_SEQUENCE_NUMBER)
        }
    }

    /// Records that `batch` was given `base_offset`, in `staged`, and adds
    /// the new state to `commit`.
    pub(crate) fn stage(
        &self,
        staged: &mut HashMap<Key, PartitionSequence>,
        tp: &TopicPartition,
        batch: &ProducedBatch,
        base_offset: u64,
        commit: &mut Commit,
    ) {
        if batch.producer_id < 0 {
            return;
        }
        let key = (batch.producer_id, tp.clone());
        let mut state = staged
            .get(&key)
            .or_else(|| self.by_partition.get(&key))
            .filter(|s| s.epoch == batch.producer_epoch)
            .cloned()
            .unwrap_or(PartitionSequence {
                epoch: batch.producer_epoch,
                last_sequence: -1,
                recent: VecDeque::new(),
                last_write_ms: 0,
            });
        state.last_sequence = batch.last_sequence();
        state.last_write_ms = now_ms();
        if state.recent.len() == RECENT_BATCHES_MAX {
            state.recent.pop_front();
        }
        state
            .recent
            .push_back((batch.base_sequence, batch.last_sequence(), base_offset));
        commit.put_metadata(state_key(batch.producer_id, tp), encode_state(&state));
        staged.insert(key, state);
    }

    /// Sets the base offset staged for `batch` to the one the commit gave
    /// it, adding the corrected state to `commit` when it differs (another
    /// writer appended to the partition between the guess and the commit).
    pub(crate) fn correct_offset(
        staged: &mut HashMap<Key, PartitionSequence>,
        tp: &TopicPartition,
        producer_id: i64,
        first_sequence: i32,
        offset: u64,
        commit: &mut Commit,
    ) {
        let Some(state) = staged.get_mut(&(producer_id, tp.clone())) else {
            return;
        };
        if let Some(entry) = state
            .recent
            .iter_mut()
            .find(|(first, _, _)| *first == first_sequence)
            && entry.2 != offset
        {
            entry.2 = offset;
            commit.put_metadata(state_key(producer_id, tp), encode_state(state));
        }
    }

    /// Makes staged changes current once their commit is durable.
    pub(crate) fn apply(&mut self, staged: HashMap<Key, PartitionSequence>) {
        self.by_partition.extend(staged);
    }
}

fn next_sequence(last: i32) -> i32 {
    if last == i32::MAX { 0 } else { last + 1 }
}

fn state_key(id: i64, tp: &TopicPartition) -> Bytes {
    Bytes::from(format!(
        "{STATE_PREFIX}{id:020}/{}/{}",
        tp.topic, tp.partition
    ))
}

fn parse_key(key: &[u8]) -> Option<(i64, TopicPartition)> {
    let rest = std::str::from_utf8(key).ok()?.strip_prefix(STATE_PREFIX)?;
    let (id, rest) = rest.split_once('/')?;
    let (topic, partition) = rest.rsplit_once('/')?;
    Some((
        id.parse().ok()?,
        TopicPartition::new(topic, partition.parse().ok()?),
    ))
}

fn encode_state(s: &PartitionSequence) -> Vec<u8> {
    let mut out = Vec::with_capacity(15 + s.recent.len() * 16);
    out.extend_from_slice(&s.epoch.to_le_bytes());
    out.extend_from_slice(&s.last_sequence.to_le_bytes());
    out.extend_from_slice(&s.last_write_ms.to_le_bytes());
    out.push(s.recent.len() as u8);
    for (first, last, offset) in &s.recent {
        out.extend_from_slice(&first.to_le_bytes());
        out.extend_from_slice(&last.to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
    }
    out
}

fn decode_state(b: &[u8]) -> Option<PartitionSequence> {
    let epoch = i16::from_le_bytes(b.get(0..2)?.try_into().ok()?);
    let last_sequence = i32::from_le_bytes(b.get(2..6)?.try_into().ok()?);
    let last_write_ms = i64::from_le_bytes(b.get(6..14)?.try_into().ok()?);
    let n = usize::from(*b.get(14)?);
    let mut recent = VecDeque::with_capacity(n);
    for i in 0..n {
        let at = 15 + i * 16;
        let first = i32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?);
        let last = i32::from_le_bytes(b.get(at + 4..at + 8)?.try_into().ok()?);
        let offset = u64::from_le_bytes(b.get(at + 8..at + 16)?.try_into().ok()?);
        recent.push_back((first, last, offset));
    }
    (b.len() == 15 + n * 16).then_some(PartitionSequence {
        epoch,
        last_sequence,
        recent,
        last_write_ms,
    })
}

fn decode_i64(b: &[u8]) -> Option<i64> {
    Some(i64::from_le_bytes(b.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kappa_log::{MemoryLog, ProducerRecord};

    fn batch(id: i64, epoch: i16, seq: i32, n: usize) -> ProducedBatch {
        ProducedBatch {
            producer_id: id,
            producer_epoch: epoch,
            base_sequence: seq,
            transactional: false,
            records: vec![ProducerRecord::value("v"); n],
        }
    }

    #[test]
    fn sequences_admit_the_next_batch_spot_retries_and_refuse_gaps_and_old_epochs() {
        let log = MemoryLog::new();
        let ids = ProducerIds::load(&log).unwrap();
        let id = ids.allocate(&log).unwrap();
        let mut seqs = Sequences::load(&log).unwrap();
        let tp = TopicPartition::new("t", 0);
        let mut staged = HashMap::new();
        let mut commit = Commit::new();

        assert_eq!(
            seqs.check(&staged, &ids, &tp, &batch(id, 0, 1, 1)),
            SequenceCheck::Refuse(codes::OUT_OF_ORDER_SEQUENCE_NUMBER)
        );
        let first = batch(id, 0, 0, 3);
        assert_eq!(
            seqs.check(&staged, &ids, &tp, &first),
            SequenceCheck::Append
        );
        seqs.stage(&mut staged, &tp, &first, 10, &mut commit);
        // Staged state is seen by later batches of the same commit.
        assert_eq!(
            seqs.check(&staged, &ids, &tp, &first),
            SequenceCheck::Duplicate(10)
        );
        seqs.apply(std::mem::take(&mut staged));
        assert_eq!(
            seqs.check(&staged, &ids, &tp, &batch(id, 0, 3, 2)),
            SequenceCheck::Append
        );
        assert_eq!(
            seqs.check(&staged, &ids, &tp, &batch(id, 0, 4, 2)),
            SequenceCheck::Refuse(codes::OUT_OF_ORDER_SEQUENCE_NUMBER)
        );
        seqs.stage(&mut staged, &tp, &batch(id, 1, 0, 1), 13, &mut commit);
        seqs.apply(std::mem::take(&mut staged));
        assert_eq!(
            seqs.check(&staged, &ids, &tp, &batch(id, 0, 3, 1)),
            SequenceCheck::Refuse(codes::INVALID_PRODUCER_EPOCH)
        );
        assert_eq!(
            seqs.check(&staged, &ids, &tp, &batch(id + 1, 0, 0, 1)),
            SequenceCheck::Refuse(codes::UNKNOWN_PRODUCER_ID)
        );
    }

    #[test]
    fn state_survives_a_reload_from_the_log() {
        let log = MemoryLog::new();
        let ids = ProducerIds::load(&log).unwrap();
        let id = ids.allocate(&log).unwrap();
        let seqs = Sequences::load(&log).unwrap();
        let tp = TopicPartition::new("orders.v1", 2);
        let mut staged = HashMap::new();
        let mut commit = Commit::new();
        let b = batch(id, 0, 0, 4);
        seqs.stage(&mut staged, &tp, &b, 7, &mut commit);
        log.commit(commit).unwrap();

        let ids = ProducerIds::load(&log).unwrap();
        assert!(ids.issued(id) && !ids.issued(id + 1));
        let reloaded = Sequences::load(&log).unwrap();
        assert_eq!(
            reloaded.check(&HashMap::new(), &ids, &tp, &b),
            SequenceCheck::Duplicate(7)
        );
        assert_eq!(
            reloaded.check(&HashMap::new(), &ids, &tp, &batch(id, 0, 4, 1)),
            SequenceCheck::Append
        );
    }
}
