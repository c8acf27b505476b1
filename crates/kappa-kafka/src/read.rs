//! Reading partitions from given offsets with assigned (group-less) consumers.
//!
//! A [`Reader`] remembers where its last fetch ended; a caller that asks
//! for exactly that again (a tailing worker) keeps the consumer's
//! prefetched records instead of reassigning, which would drop them.
//!
//! A fetch returns a write-ahead commit's records in a partition together
//! (`crate::commit_runs`): it waits for the rest of a commit it met in
//! part, and holds back what it has of one that is still incomplete when
//! it must return, for the next fetch to deliver whole.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kappa_log::{FetchLimits, FetchOutcome, Header, LogError, Record, TopicPartition};
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message, Timestamp};

use crate::client::{self, ReaderContext};
use crate::commit_runs::CommitRuns;
use crate::config::KafkaConfig;

/// How often a read that has seen no end reports asks the leaders itself.
/// A partition is at its end when nothing is queued locally and the read
/// position is at or past the leader's end: a fetch response's records are
/// queued together, so past the first record of the last batch (where
/// tansu puts its end) the whole batch has arrived.
const END_CHECK_INTERVAL: Duration = Duration::from_millis(20);
/// Longest a read waits for ends or records when it asked for no wait.
const SETTLE_MAX: Duration = Duration::from_secs(2);
/// Longest single wait for the rest of a commit met in part.
const TAIL_POLL: Duration = Duration::from_millis(20);
/// Longest a commit met in part is held back (or the producer timeout, if
/// shorter). A live writer's records of one commit land within
/// milliseconds of each other; past this its writer is taken to have died
/// mid-commit, and what arrived is delivered rather than stall the
/// partition until the writer's slot is recovered.
const HOLD_MAX: Duration = Duration::from_secs(2);

/// One assigned consumer and where its last fetch left each partition.
pub(crate) struct Reader {
    consumer: BaseConsumer<ReaderContext>,
    /// Asks the leaders for end offsets. Never assigned: a query through
    /// an assigned consumer waits behind its fetches (on tansu under load,
    /// up to the whole timeout), stalling the read that asked.
    ends: Arc<BaseConsumer<ReaderContext>>,
    /// The partitions assigned and the next offset the consumer will deliver.
    at: Vec<(TopicPartition, u64)>,
    /// For each assigned partition, whether it reported its end since its last record.
    eof: Vec<bool>,
    timeout: Duration,
    /// How far before the asked offsets to start (a broker workaround).
    rewind: u64,
    /// The write-ahead commits the current read met, per partition.
    runs: CommitRuns,
    /// Partitions whose last read held back an incomplete commit: from
    /// which offset, since when. The consumer's position is past the held
    /// records, so the next read reassigns.
    holding: Vec<(TopicPartition, u64, Instant)>,
}

impl Reader {
    fn new(config: &KafkaConfig, ends: Arc<BaseConsumer<ReaderContext>>) -> Result<Self, LogError> {
        let consumer: BaseConsumer<ReaderContext> = client::reader(config)
            .create_with_context(ReaderContext)
            .map_err(|e| client::broker("creating a consumer", &e))?;
        Ok(Self {
            consumer,
            ends,
            at: Vec::new(),
            eof: Vec::new(),
            timeout: config.timeout,
            rewind: if config.compat_tansu {
                crate::config::TANSU_REWIND
            } else {
                0
            },
            runs: CommitRuns::default(),
            holding: Vec::new(),
        })
    }

    fn assign(&mut self, from: &[(TopicPartition, u64)], rewind: bool) -> Result<(), LogError> {
        if self.at == from && self.holding.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::with_capacity(from.len());
        for (tp, offset) in from {
            // Records before the asked offset are dropped as they arrive.
            let start = if rewind && self.rewind > 0 {
                let (low, _) = self.watermarks(tp)?;
                offset.saturating_sub(self.rewind).max(low)
            } else {
                *offset
            };
            let offset = i64::try_from(start)
                .map_err(|_| LogError::InvalidConfig(format!("offset {offset} is too large")))?;
            tpl.add_partition_offset(
                &tp.topic,
                partition_i32(tp.partition)?,
                Offset::Offset(offset),
            )
            .map_err(|e| client::broker("assigning partitions", &e))?;
        }
        self.consumer
            .assign(&tpl)
            .map_err(|e| client::broker("assigning partitions", &e))?;
        self.at = from.to_vec();
        self.eof = vec![false; from.len()];
        Ok(())
    }

    /// As [`kappa_log::Log::fetch`].
    pub(crate) fn fetch(
        &mut self,
        from: &[(TopicPartition, u64)],
        limits: FetchLimits,
        out: &mut Vec<Record>,
    ) -> Result<FetchOutcome, LogError> {
        self.read(from, limits, out, false, true)
    }

    /// As [`Reader::fetch`], keeping the backend's write-ahead headers on
    /// each record when asked (to find what an interrupted commit already
    /// wrote), which also delivers a commit met in part as it is.
    /// `rewind: false` says every offset in `from` starts a record batch,
    /// so the broker workaround that reads from earlier is not needed.
    pub(crate) fn read(
        &mut self,
        from: &[(TopicPartition, u64)],
        limits: FetchLimits,
        out: &mut Vec<Record>,
        keep_commit_header: bool,
        rewind: bool,
    ) -> Result<FetchOutcome, LogError> {
        self.holding
            .retain(|(held, _, _)| from.iter().any(|(tp, _)| tp == held));
        self.assign(from, rewind)?;
        let whole_commits = !keep_commit_header;
        self.runs.clear();
        let first = out.len();
        let mut next: Vec<u64> = from.iter().map(|(_, o)| *o).collect();
        let started = Instant::now();
        // Until every partition has reported its end once, records may still
        // be on their way; after that, wait only as long as asked.
        let settle = started + self.timeout.min(SETTLE_MAX);
        let wait_until = started + limits.wait_max;
        let mut got = 0usize;
        let mut bytes = 0usize;
        let mut next_end_check = started + END_CHECK_INTERVAL;
        while got < limits.records_max && (got == 0 || bytes < limits.bytes_max) {
            let now = Instant::now();
            let all_eof = self.eof.iter().all(|e| *e);
            let mut last_look = false;
            let for_tail = whole_commits && self.runs.any_incomplete() && now < wait_until;
            let timeout = if got > 0 {
                if for_tail {
                    wait_until.saturating_duration_since(now).min(TAIL_POLL)
                } else {
                    Duration::ZERO
                }
            } else if all_eof {
                // The ends were seen before, but records fetched since then
                // may be waiting: always look once.
                last_look = now >= wait_until;
                wait_until.saturating_duration_since(now)
            } else {
                if now >= settle.max(wait_until) {
                    break;
                }
                Duration::from_millis(20)
            };
            match self.consumer.poll(timeout) {
                None => {
                    if (got > 0 && !for_tail) || last_look {
                        break;
                    }
                    // Some brokers never send what makes librdkafka report an
                    // end (tansu's end offsets lag the records): ask the
                    // leaders where the ends are.
                    if !all_eof && now >= next_end_check {
                        next_end_check = now + END_CHECK_INTERVAL;
                        for i in 0..from.len() {
                            if !self.eof[i]
                                && self
                                    .watermarks(&from[i].0)
                                    .is_ok_and(|(_, high)| next[i] >= high)
                            {
                                self.eof[i] = true;
                            }
                        }
                    }
                }
                Some(Ok(m)) => {
                    let Some(i) = from.iter().position(|(tp, _)| {
                        i64::from(tp.partition) == i64::from(m.partition())
                            && *tp.topic == *m.topic()
                    }) else {
                        continue;
                    };
                    let offset = u64::try_from(m.offset()).unwrap_or(0);
                    if offset < next[i] {
                        // Redelivered after a reassignment; already returned.
                        continue;
                    }
                    self.eof[i] = false;
                    if whole_commits {
                        self.runs.note(i, &m);
                    }
                    let record = to_record(&from[i].0, &m, keep_commit_header);
                    bytes += record.key.as_ref().map_or(0, Bytes::len)
                        + record.value.as_ref().map_or(0, Bytes::len);
                    out.push(record);
                    got += 1;
                    next[i] = offset + 1;
                }
                Some(Err(KafkaError::PartitionEOF(p))) => self.ended(from, &next, p),
                Some(Err(e)) => {
                    self.at.clear();
                    return Err(self.consumption_error(from, &e));
                }
            }
        }
        self.past_markers(from, &mut next);
        let stopped_by_limits = got >= limits.records_max || (got > 0 && bytes >= limits.bytes_max);
        if whole_commits {
            got -= self.hold_incomplete(from, &mut next, out, first, stopped_by_limits);
        }
        self.at = from
            .iter()
            .zip(&next)
            .map(|((tp, _), n)| (tp.clone(), *n))
            .collect();
        Ok(FetchOutcome {
            next_offsets: next,
            records: got,
        })
    }

    /// Takes back out of `out[first..]` each partition's records from the
    /// first commit met there in part, so the next read delivers it whole;
    /// returns how many were taken. A commit that cannot come whole is
    /// delivered as it is: one larger than a read may return, or one still
    /// incomplete [`HOLD_MAX`] after it was first held (its writer died
    /// mid-commit; the rest comes when the writer's slot is recovered).
    fn hold_incomplete(
        &mut self,
        from: &[(TopicPartition, u64)],
        next: &mut [u64],
        out: &mut Vec<Record>,
        first: usize,
        stopped_by_limits: bool,
    ) -> usize {
        let incomplete = self.runs.incomplete_from(from.len());
        let mut held: Vec<Option<u64>> = vec![None; from.len()];
        for (i, at) in incomplete.into_iter().enumerate() {
            let tp = &from[i].0;
            let before = self.holding.iter().position(|(t, _, _)| t == tp);
            let since = match (at, before) {
                (Some(at), Some(b)) if self.holding[b].1 == at => self.holding[b].2,
                _ => Instant::now(),
            };
            if let Some(b) = before {
                self.holding.swap_remove(b);
            }
            // Nothing before it to deliver, and the read stopped at its
            // limits: the commit is larger than a read may return.
            let Some(at) = at.filter(|at| !(stopped_by_limits && *at <= from[i].1)) else {
                continue;
            };
            if since.elapsed() >= self.timeout.min(HOLD_MAX) {
                tracing::warn!(
                    topic = %tp.topic,
                    partition = tp.partition,
                    offset = at,
                    "a write-ahead commit is still incomplete; delivering what arrived of it (its writer died mid-commit?)"
                );
                continue;
            }
            self.holding.push((tp.clone(), at, since));
            held[i] = Some(at);
            next[i] = at;
            self.eof[i] = false;
        }
        if held.iter().all(Option::is_none) {
            return 0;
        }
        let read = out.split_off(first);
        let before = read.len();
        out.extend(read.into_iter().filter(|r| {
            !from.iter().zip(&held).any(|((tp, _), at)| {
                at.is_some_and(|at| {
                    r.offset >= at && r.partition == tp.partition && r.topic == tp.topic
                })
            })
        }));
        before - (out.len() - first)
    }

    /// Moves each partition's next offset past the transaction markers the
    /// consumer read after its last record. Markers take offsets but are
    /// never delivered; librdkafka counts them in its position, and without
    /// this a partition that ends in a marker would stay one short of its
    /// end (a read to the end would never get there).
    fn past_markers(&self, from: &[(TopicPartition, u64)], next: &mut [u64]) {
        let Ok(positions) = self.consumer.position() else {
            return;
        };
        for ((tp, _), n) in from.iter().zip(next.iter_mut()) {
            let Ok(p) = partition_i32(tp.partition) else {
                continue;
            };
            if let Some(Offset::Offset(at)) =
                positions.find_partition(&tp.topic, p).map(|e| e.offset())
                && let Ok(at) = u64::try_from(at)
            {
                *n = (*n).max(at);
            }
        }
    }

    /// Notes an end-of-partition event. librdkafka names only the partition
    /// number; when several assigned topics share it, the leader's end
    /// offsets tell which of them are at their end.
    fn ended(&mut self, from: &[(TopicPartition, u64)], next: &[u64], p: i32) {
        let same: Vec<usize> = (0..from.len())
            .filter(|&i| i64::from(from[i].0.partition) == i64::from(p))
            .collect();
        if let [only] = same[..] {
            self.eof[only] = true;
            return;
        }
        for i in same {
            if let Ok((_, high)) = self.watermarks(&from[i].0)
                && next[i] >= high
            {
                self.eof[i] = true;
            }
        }
    }

    fn consumption_error(&self, from: &[(TopicPartition, u64)], e: &KafkaError) -> LogError {
        let out_of_range = matches!(
            e.rdkafka_error_code(),
            Some(RDKafkaErrorCode::OffsetOutOfRange | RDKafkaErrorCode::AutoOffsetReset)
        );
        if out_of_range {
            for (tp, offset) in from {
                if let Ok((low, high)) = self.watermarks(tp)
                    && (*offset < low || *offset > high)
                {
                    return LogError::OffsetOutOfRange {
                        topic: tp.topic.to_string(),
                        partition: tp.partition,
                        offset: *offset,
                        start: low,
                        end: high,
                    };
                }
            }
        }
        client::broker("reading", e)
    }

    /// A partition's first and next offsets, asked of its leader.
    pub(crate) fn watermarks(&self, tp: &TopicPartition) -> Result<(u64, u64), LogError> {
        let deadline = Instant::now() + self.timeout;
        let mut refreshed = false;
        let asked = loop {
            let asked =
                self.ends
                    .fetch_watermarks(&tp.topic, partition_i32(tp.partition)?, self.timeout);
            // A partition newer than this client's metadata (the topic
            // grew): ask for the topic's metadata once, then again.
            if !refreshed
                && asked.as_ref().is_err_and(|e| {
                    e.rdkafka_error_code() == Some(RDKafkaErrorCode::UnknownPartition)
                })
            {
                refreshed = true;
                let _ = self.ends.fetch_metadata(Some(&tp.topic), self.timeout);
                continue;
            }
            // Leadership moving (or a topic just made, not yet led): ask again.
            let moving = asked.as_ref().is_err_and(|e| {
                matches!(
                    e.rdkafka_error_code(),
                    Some(
                        RDKafkaErrorCode::NotLeaderForPartition
                            | RDKafkaErrorCode::LeaderNotAvailable
                    )
                )
            });
            if !moving || Instant::now() >= deadline {
                break asked;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let (low, high) = asked.map_err(|e| match e.rdkafka_error_code() {
            Some(
                RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownPartition,
            ) => LogError::UnknownTopic(tp.topic.to_string()),
            _ => client::broker(
                &format!("asking the offsets of {}/{}", tp.topic, tp.partition),
                &e,
            ),
        })?;
        Ok((
            u64::try_from(low).unwrap_or(0),
            u64::try_from(high).unwrap_or(0),
        ))
    }

    /// The first offset at or after `timestamp_ms`, as Kafka's ListOffsets by time.
    pub(crate) fn offset_for_timestamp(
        &self,
        tp: &TopicPartition,
        timestamp_ms: i64,
    ) -> Result<Option<u64>, LogError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(
            &tp.topic,
            partition_i32(tp.partition)?,
            Offset::Offset(timestamp_ms),
        )
        .map_err(|e| client::broker("asking offsets by time", &e))?;
        let found = self
            .consumer
            .offsets_for_times(tpl, self.timeout)
            .map_err(|e| client::broker("asking offsets by time", &e))?;
        let elem = found
            .elements()
            .into_iter()
            .next()
            .map(|e| (e.offset(), e.error().err()));
        match elem {
            Some((_, Some(e))) => Err(client::broker("asking offsets by time", &e)),
            Some((Offset::Offset(o), None)) => Ok(u64::try_from(o).ok()),
            _ => Ok(None),
        }
    }
}

/// Converts a fetched message, dropping the backend's own header.
fn to_record(tp: &TopicPartition, m: &BorrowedMessage<'_>, keep_commit_header: bool) -> Record {
    let timestamp = match m.timestamp() {
        Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) => t,
        Timestamp::NotAvailable => 0,
    };
    let headers = m.headers().map_or_else(Vec::new, |hs| {
        hs.iter()
            .filter(|h| keep_commit_header || !client::is_backend_header(h.key.as_bytes()))
            .map(|h| {
                Header::new(
                    Bytes::copy_from_slice(h.key.as_bytes()),
                    Bytes::copy_from_slice(h.value.unwrap_or_default()),
                )
            })
            .collect()
    });
    Record {
        topic: tp.topic.clone(),
        partition: tp.partition,
        offset: u64::try_from(m.offset()).unwrap_or(0),
        timestamp,
        key: m.key().map(Bytes::copy_from_slice),
        value: m.payload().map(Bytes::copy_from_slice),
        headers,
    }
}

pub(crate) fn partition_i32(p: u32) -> Result<i32, LogError> {
    i32::try_from(p).map_err(|_| LogError::InvalidConfig(format!("partition {p} is out of range")))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Readers not in use. A caller gets the one whose last fetch ended where
/// this one starts, so tailing keeps its prefetched records.
pub(crate) struct Readers {
    config: KafkaConfig,
    idle: Mutex<Vec<Reader>>,
    /// The end-offset client every reader shares, made with the first reader.
    ends: Mutex<Option<Arc<BaseConsumer<ReaderContext>>>>,
}

impl Readers {
    pub(crate) fn new(config: KafkaConfig) -> Self {
        Self {
            config,
            idle: Mutex::new(Vec::new()),
            ends: Mutex::new(None),
        }
    }

    fn ends(&self) -> Result<Arc<BaseConsumer<ReaderContext>>, LogError> {
        let mut ends = lock(&self.ends);
        if let Some(c) = &*ends {
            return Ok(c.clone());
        }
        let c: Arc<BaseConsumer<ReaderContext>> = Arc::new(
            client::reader(&self.config)
                .create_with_context(ReaderContext)
                .map_err(|e| client::broker("creating a consumer", &e))?,
        );
        *ends = Some(c.clone());
        Ok(c)
    }

    /// Runs `f` with a reader of its own, preferably one positioned at `from`.
    pub(crate) fn with<T>(
        &self,
        from: &[(TopicPartition, u64)],
        f: impl FnOnce(&mut Reader) -> Result<T, LogError>,
    ) -> Result<T, LogError> {
        let taken = {
            let mut idle = lock(&self.idle);
            let i = idle
                .iter()
                .position(|r| r.at == from)
                .or_else(|| (!idle.is_empty()).then_some(0));
            i.map(|i| idle.swap_remove(i))
        };
        let mut reader = match taken {
            Some(r) => r,
            None => Reader::new(&self.config, self.ends()?)?,
        };
        let result = f(&mut reader);
        lock(&self.idle).push(reader);
        result
    }
}
