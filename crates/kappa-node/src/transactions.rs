//! The transaction coordinator: Kafka transactions over a log whose
//! commits are atomic.
//!
//! A transaction's records and offsets are held by the node until `EndTxn`
//! and then written in one [`Commit`], so the log only ever holds committed
//! data: a `read_committed` consumer never meets an aborted or open record,
//! the last stable offset is the high watermark, and no control markers or
//! aborted-transaction lists are needed. An abort, a timeout, a fencing
//! producer or a node restart drops what was held; the producer's commit
//! then fails, so nothing of the transaction is ever visible.
//!
//! Each transactional id's producer id and epoch are kept in the log's
//! metadata, so a restarted node still fences a zombie.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use indexmap::IndexMap;
use kappa_log::{Commit, Log, LogError, ProducerRecord, TopicPartition};

use crate::codes;
use crate::error::NodeError;
use crate::producers::ProducerIds;
use crate::records::ProducedBatch;
use crate::ticker::Ticker;

/// Longest transaction timeout a producer may ask for (Kafka's
/// `transaction.max.timeout.ms`).
pub(crate) const TIMEOUT_MAX: Duration = Duration::from_secs(15 * 60);
/// Record bytes one open transaction may hold.
pub(crate) const HELD_BYTES_MAX: usize = 256 * 1024 * 1024;
const STATE_PREFIX: &str = "kafka-node/txn/";

/// Why a transactional request is refused: a Kafka error code.
pub(crate) type Code = i16;

struct Open {
    started: Instant,
    partitions: HashSet<TopicPartition>,
    groups: HashSet<String>,
    records: IndexMap<TopicPartition, Vec<ProducerRecord>>,
    offsets: IndexMap<(String, TopicPartition), u64>,
    bytes: usize,
}

struct Txn {
    producer_id: i64,
    epoch: i16,
    timeout: Duration,
    /// `(first, last)` sequence of the latest batch per partition in this epoch.
    sequences: HashMap<TopicPartition, (i32, i32)>,
    open: Option<Open>,
}

impl Txn {
    /// Refuses a producer that is not this transactional id's current one.
    fn check(&self, producer_id: i64, epoch: i16, fenced: Code) -> Result<(), Code> {
        if producer_id != self.producer_id {
            return Err(codes::INVALID_PRODUCER_ID_MAPPING);
        }
        if epoch != self.epoch {
            return Err(fenced);
        }
        Ok(())
    }
}

/// Every transactional id's state.
pub(crate) struct Transactions {
    log: Arc<dyn Log>,
    ids: Arc<ProducerIds>,
    txns: Mutex<HashMap<String, Txn>>,
}

impl Transactions {
    pub(crate) fn load(log: Arc<dyn Log>, ids: Arc<ProducerIds>) -> Result<Self, NodeError> {
        let mut txns = HashMap::new();
        for (key, value) in log.metadata_scan(STATE_PREFIX.as_bytes())? {
            let corrupt = || NodeError::CorruptState {
                key: String::from_utf8_lossy(&key).into_owned(),
                detail: "expected producer id, epoch and timeout".into(),
            };
            let id = std::str::from_utf8(&key[STATE_PREFIX.len()..]).map_err(|_| corrupt())?;
            if value.len() != 14 {
                return Err(corrupt());
            }
            let producer_id = i64::from_le_bytes(value[0..8].try_into().map_err(|_| corrupt())?);
            let epoch = i16::from_le_bytes(value[8..10].try_into().map_err(|_| corrupt())?);
            let timeout_ms = u32::from_le_bytes(value[10..14].try_into().map_err(|_| corrupt())?);
            txns.insert(
                id.to_string(),
                Txn {
                    producer_id,
                    epoch,
                    timeout: Duration::from_millis(u64::from(timeout_ms)),
                    sequences: HashMap::new(),
                    open: None,
                },
            );
        }
        Ok(Self {
            log,
            ids,
            txns: Mutex::new(txns),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Txn>> {
        self.txns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn persist(&self, id: &str, txn: &Txn) -> Result<(), LogError> {
        let mut value = Vec::with_capacity(14);
        value.extend_from_slice(&txn.producer_id.to_le_bytes());
        value.extend_from_slice(&txn.epoch.to_le_bytes());
        let timeout_ms = u32::try_from(txn.timeout.as_millis()).unwrap_or(u32::MAX);
        value.extend_from_slice(&timeout_ms.to_le_bytes());
        let mut commit = Commit::new();
        commit.put_metadata(Bytes::from(format!("{STATE_PREFIX}{id}")), value);
        self.log.commit(commit).map(|_| ())
    }

    /// InitProducerId for a transactional id: a new epoch (or a new
    /// producer id), fencing the previous holder and dropping its open
    /// transaction.
    pub(crate) fn init(&self, id: &str, timeout: Duration) -> Result<(i64, i16), Code> {
        if timeout.is_zero() || timeout > TIMEOUT_MAX {
            return Err(codes::INVALID_TRANSACTION_TIMEOUT);
        }
        let mut txns = self.lock();
        let (producer_id, epoch) = match txns.get(id) {
            Some(t) if t.epoch < i16::MAX - 1 => (t.producer_id, t.epoch + 1),
            _ => (
                self.ids
                    .allocate(&*self.log)
                    .map_err(|e| codes::for_log_error(&e))?,
                0,
            ),
        };
        let txn = Txn {
            producer_id,
            epoch,
            timeout,
            sequences: HashMap::new(),
            open: None,
        };
        self.persist(id, &txn)
            .map_err(|e| codes::for_log_error(&e))?;
        if txns.get(id).is_some_and(|t| t.open.is_some()) {
            tracing::info!(
                transactional_id = id,
                "a new producer fenced an open transaction; it is aborted"
            );
        }
        txns.insert(id.to_string(), txn);
        Ok((producer_id, epoch))
    }

    fn current<'a>(
        txns: &'a mut HashMap<String, Txn>,
        id: &str,
        producer_id: i64,
        epoch: i16,
    ) -> Result<&'a mut Txn, Code> {
        let txn = txns.get_mut(id).ok_or(codes::INVALID_PRODUCER_ID_MAPPING)?;
        txn.check(producer_id, epoch, codes::PRODUCER_FENCED)?;
        Ok(txn)
    }

    /// AddPartitionsToTxn: one code per partition.
    pub(crate) fn add_partitions(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[TopicPartition],
    ) -> Vec<Code> {
        let known: Vec<bool> = partitions
            .iter()
            .map(|tp| {
                self.log
                    .partition_count(&tp.topic)
                    .is_ok_and(|n| tp.partition < n)
            })
            .collect();
        let mut txns = self.lock();
        let txn = match Self::current(&mut txns, id, producer_id, epoch) {
            Ok(t) => t,
            Err(code) => return vec![code; partitions.len()],
        };
        if known.contains(&false) {
            // Kafka adds none when one is unknown.
            return known
                .iter()
                .map(|k| {
                    if *k {
                        codes::OPERATION_NOT_ATTEMPTED
                    } else {
                        codes::UNKNOWN_TOPIC_OR_PARTITION
                    }
                })
                .collect();
        }
        let open = txn.open.get_or_insert_with(Open::new);
        open.partitions.extend(partitions.iter().cloned());
        vec![codes::NONE; partitions.len()]
    }

    /// AddOffsetsToTxn.
    pub(crate) fn add_offsets(&self, id: &str, producer_id: i64, epoch: i16, group: &str) -> Code {
        let mut txns = self.lock();
        match Self::current(&mut txns, id, producer_id, epoch) {
            Ok(txn) => {
                txn.open
                    .get_or_insert_with(Open::new)
                    .groups
                    .insert(group.to_string());
                codes::NONE
            }
            Err(code) => code,
        }
    }

    /// Holds a transactional batch for `tp` until the transaction ends.
    pub(crate) fn produce(&self, id: &str, tp: &TopicPartition, batch: ProducedBatch) -> Code {
        let mut txns = self.lock();
        let Some(txn) = txns.get_mut(id) else {
            return codes::INVALID_PRODUCER_ID_MAPPING;
        };
        if let Err(code) = txn.check(
            batch.producer_id,
            batch.producer_epoch,
            codes::INVALID_PRODUCER_EPOCH,
        ) {
            return code;
        }
        let Some(open) = txn.open.as_mut().filter(|o| o.partitions.contains(tp)) else {
            return codes::INVALID_TXN_STATE;
        };
        let last = batch.last_sequence();
        match txn.sequences.get(tp) {
            Some(&(first, prev_last)) if first == batch.base_sequence && prev_last == last => {
                return codes::NONE; // a retry of the batch already held
            }
            Some(&(_, prev_last)) if batch.base_sequence != prev_last.wrapping_add(1) => {
                return codes::OUT_OF_ORDER_SEQUENCE_NUMBER;
            }
            None if batch.base_sequence != 0 => return codes::OUT_OF_ORDER_SEQUENCE_NUMBER,
            _ => {}
        }
        let bytes: usize = batch.records.iter().map(ProducerRecord::encoded_len).sum();
        if open.bytes + bytes > HELD_BYTES_MAX {
            return codes::RECORD_LIST_TOO_LARGE;
        }
        open.bytes += bytes;
        open.records
            .entry(tp.clone())
            .or_default()
            .extend(batch.records);
        txn.sequences
            .insert(tp.clone(), (batch.base_sequence, last));
        codes::NONE
    }

    /// TxnOffsetCommit: holds the offsets; one code per partition.
    pub(crate) fn commit_offsets(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
        offsets: &[(TopicPartition, i64)],
    ) -> Vec<Code> {
        let ends: Vec<Option<u64>> = offsets
            .iter()
            .map(|(tp, _)| self.log.offsets(tp).ok().map(|r| r.end))
            .collect();
        let mut txns = self.lock();
        let txn = match Self::current(&mut txns, id, producer_id, epoch) {
            Ok(t) => t,
            Err(code) => return vec![code; offsets.len()],
        };
        let Some(open) = txn.open.as_mut().filter(|o| o.groups.contains(group)) else {
            return vec![codes::INVALID_TXN_STATE; offsets.len()];
        };
        offsets
            .iter()
            .zip(ends)
            .map(|((tp, offset), end)| match (u64::try_from(*offset), end) {
                (_, None) => codes::UNKNOWN_TOPIC_OR_PARTITION,
                (Ok(o), Some(end)) if o <= end => {
                    open.offsets.insert((group.to_string(), tp.clone()), o);
                    codes::NONE
                }
                (Ok(_), Some(_)) => codes::OFFSET_OUT_OF_RANGE,
                (Err(_), _) => codes::INVALID_REQUEST,
            })
            .collect()
    }

    /// EndTxn: writes or drops what the transaction holds.
    pub(crate) fn end(&self, id: &str, producer_id: i64, epoch: i16, commit: bool) -> Code {
        let open = {
            let mut txns = self.lock();
            match Self::current(&mut txns, id, producer_id, epoch) {
                Ok(txn) => txn.open.take(),
                Err(code) => return code,
            }
        };
        let Some(open) = open else {
            return if commit {
                codes::INVALID_TXN_STATE
            } else {
                codes::NONE
            };
        };
        if !commit {
            return codes::NONE;
        }
        let mut c = Commit::new();
        for (tp, records) in open.records {
            c.append_all(&tp.topic, Some(tp.partition), records);
        }
        for ((group, tp), offset) in open.offsets {
            c.set_group_position(&group, tp, offset);
        }
        match self.log.commit(c) {
            Ok(_) => codes::NONE,
            Err(e) => {
                tracing::error!(transactional_id = id, error = %e, "committing a transaction failed; it is aborted");
                codes::for_log_error(&e)
            }
        }
    }

    /// Aborts transactions open past their timeout and fences their
    /// producers (a new epoch), as Kafka does.
    pub(crate) fn expire(&self, now: Instant) {
        let mut txns = self.lock();
        let expired: Vec<String> = txns
            .iter()
            .filter(|(_, t)| {
                t.open
                    .as_ref()
                    .is_some_and(|o| now.duration_since(o.started) > t.timeout)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            let Some(txn) = txns.get_mut(&id) else {
                continue;
            };
            txn.open = None;
            txn.sequences.clear();
            txn.epoch = txn.epoch.saturating_add(1);
            tracing::info!(transactional_id = %id, "a transaction passed its timeout and is aborted");
            if let Err(e) = self.persist(&id, txn) {
                tracing::error!(transactional_id = %id, error = %e, "recording a fenced epoch failed");
            }
        }
    }
}

impl Open {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            partitions: HashSet::new(),
            groups: HashSet::new(),
            records: IndexMap::new(),
            offsets: IndexMap::new(),
            bytes: 0,
        }
    }
}

/// How often open transactions are checked against their timeout.
pub(crate) const EXPIRY_TICK: Duration = Duration::from_millis(200);

/// Keeps `transactions` expiring until it is dropped.
pub(crate) async fn expire_forever(transactions: std::sync::Weak<Transactions>) {
    let mut ticker = Ticker::new(EXPIRY_TICK, transactions);
    while let Some(t) = ticker.tick().await {
        let now = Instant::now();
        // Persisting a fenced epoch writes to the log: off the async threads.
        let _ = tokio::task::spawn_blocking(move || t.expire(now)).await;
    }
}
