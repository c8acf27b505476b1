//! Producing batches of records and learning each one's offset.
//!
//! A [`Sender`] is one idempotent producer; a commit takes one from the
//! [`Senders`] pool, so each producer carries one batch at a time and its
//! delivery reports map back to the batch by index.
//!
//! Each producer's own thread serves its delivery reports, and a batch's
//! sender is woken by the report that completes it. (Polling a
//! `BaseProducer` in rdkafka 0.39 waits out the whole timeout given, even
//! after a report arrived: a 20 ms poll per produce round put a fixed
//! 80 ms into every commit, two rounds of a write-ahead entry and its
//! records.)

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kappa_log::{LogError, ProducerRecord};
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};

use crate::client::{self, COMMIT_HEADER, PART_HEADER};
use crate::config::KafkaConfig;
use crate::writeahead::{self, Tag};

/// A record ready to produce: destination fixed, plus the header naming its
/// write-ahead entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Outgoing {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: u32,
    pub(crate) record: ProducerRecord,
}

/// Delivery reports of the batch in flight.
#[derive(Default)]
pub(crate) struct Deliveries {
    state: Mutex<DeliveryState>,
    /// Told when the batch's last report arrives.
    done: Condvar,
}

#[derive(Default)]
struct DeliveryState {
    offsets: Vec<i64>,
    pending: usize,
    first_error: Option<String>,
}

const NOT_DELIVERED: i64 = -1;
/// How long an open transaction may last before the broker aborts it: a
/// crashed holder's transaction holds back `read_committed` readers of its
/// partitions at most this long (unless the next holder fences it sooner).
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(10);

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, index: usize) {
        let mut s = lock(&self.state);
        s.pending = s.pending.saturating_sub(1);
        if s.pending == 0 {
            self.done.notify_all();
        }
        match result {
            Ok(m) => {
                if let Some(slot) = s.offsets.get_mut(index) {
                    *slot = m.offset();
                }
            }
            Err((e, m)) => {
                if s.first_error.is_none() {
                    s.first_error = Some(format!("{}/{}: {e}", m.topic(), m.partition()));
                }
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether an error says another producer of the same transactional id
/// took over (a newer holder of the task initialised it).
fn is_fencing(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::Fenced
            | RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch
    )
}

/// One idempotent producer, or a transactional one.
pub(crate) struct Sender {
    producer: ThreadedProducer<Deliveries>,
    timeout: Duration,
    transactional_id: Option<String>,
}

impl Sender {
    fn new(config: &KafkaConfig) -> Result<Self, LogError> {
        let producer = client::producer(config)
            .create_with_context(Deliveries::default())
            .map_err(|e| client::broker("creating a producer", &e))?;
        Ok(Self {
            producer,
            timeout: config.timeout,
            transactional_id: None,
        })
    }

    /// Produces `records` in order (per partition) and waits until every one
    /// is acknowledged by all in-sync replicas; returns their offsets.
    ///
    /// `tag` gives each record, by its index, the headers that tie it to
    /// its write-ahead entry, if any.
    pub(crate) fn send_all(
        &self,
        records: &[Outgoing],
        tag: &dyn Fn(usize) -> Option<Tag>,
    ) -> Result<Vec<u64>, LogError> {
        self.send_parts(&[records], tag)
    }

    /// A transactional producer for `transactional_id`, initialised: any
    /// earlier producer of the id is fenced, and its open transaction
    /// aborted, before this returns.
    pub(crate) fn transactional(
        config: &KafkaConfig,
        transactional_id: &str,
    ) -> Result<Self, LogError> {
        // librdkafka wants a request's and a record's timeouts within the
        // transaction's.
        let within = config
            .timeout
            .min(TRANSACTION_TIMEOUT)
            .as_millis()
            .to_string();
        let producer: ThreadedProducer<Deliveries> = client::producer(config)
            .set("transactional.id", transactional_id)
            .set(
                "transaction.timeout.ms",
                TRANSACTION_TIMEOUT.as_millis().to_string(),
            )
            .set("socket.timeout.ms", &within)
            .set("message.timeout.ms", &within)
            .create_with_context(Deliveries::default())
            .map_err(|e| client::broker("creating a transactional producer", &e))?;
        producer.init_transactions(config.timeout).map_err(|e| {
            client::broker(
                &format!("initialising transactional id {transactional_id:?}"),
                &e,
            )
        })?;
        Ok(Self {
            producer,
            timeout: config.timeout,
            transactional_id: Some(transactional_id.to_owned()),
        })
    }

    /// Produces `records` in one transaction of this transactional
    /// producer and commits it; returns the records' offsets where the
    /// broker reports them (a broker may assign offsets only when the
    /// transaction commits).
    ///
    /// On an error the transaction is aborted when it still can be; a
    /// fenced producer (another holder initialised the id) is done for.
    pub(crate) fn transact(&self, records: &[Outgoing]) -> Result<Vec<Option<u64>>, LogError> {
        // A fenced producer fails whatever it was doing (queued records
        // are purged, say): its fatal error says why.
        let fenced = || {
            self.producer
                .client()
                .fatal_error()
                .is_some_and(|(code, _)| is_fencing(code))
        };
        let txn_error = |doing: &str, e: &KafkaError| {
            if e.rdkafka_error_code().is_some_and(is_fencing) || fenced() {
                self.fenced()
            } else {
                client::broker(doing, e)
            }
        };
        self.producer
            .begin_transaction()
            .map_err(|e| txn_error("beginning a transaction", &e))?;
        let committed = self
            .send_raw(&[records], &|_| None, |o| Ok(u64::try_from(o).ok()))
            .map_err(|e| if fenced() { self.fenced() } else { e })
            .and_then(|offsets| {
                self.producer
                    .commit_transaction(self.timeout)
                    .map_err(|e| txn_error("committing a transaction", &e))?;
                Ok(offsets)
            });
        match committed {
            Ok(offsets) => Ok(offsets),
            Err(e) => {
                if let Err(abort) = self.producer.abort_transaction(self.timeout) {
                    tracing::debug!(error = %abort, "could not abort a failed transaction");
                }
                Err(e)
            }
        }
    }

    fn fenced(&self) -> LogError {
        LogError::Broker(format!(
            "fenced: transactional id {:?} was initialised by a newer holder of its task; this commit did not happen",
            self.transactional_id.as_deref().unwrap_or_default()
        ))
    }

    /// As [`Sender::send_all`] for the records of several slices, as if
    /// concatenated (indexes count through all of them).
    pub(crate) fn send_parts(
        &self,
        parts: &[&[Outgoing]],
        tag: &dyn Fn(usize) -> Option<Tag>,
    ) -> Result<Vec<u64>, LogError> {
        self.send_raw(parts, tag, |o| {
            u64::try_from(o)
                .map_err(|_| LogError::Broker("a delivery report carried no offset".to_owned()))
        })
    }

    /// Produces and waits for every acknowledgement; returns each record's
    /// offset as reported (negative where the broker gave none) through
    /// `offset`.
    fn send_raw<T>(
        &self,
        parts: &[&[Outgoing]],
        tag: &dyn Fn(usize) -> Option<Tag>,
        offset: impl Fn(i64) -> Result<T, LogError>,
    ) -> Result<Vec<T>, LogError> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        {
            let mut s = lock(&self.producer.context().state);
            s.offsets.clear();
            s.offsets.resize(total, NOT_DELIVERED);
            s.pending = total;
            s.first_error = None;
        }
        let deadline = Instant::now() + self.timeout;
        let mut part_buf = [0u8; writeahead::PART_BYTES_MAX];
        for (i, out) in parts.iter().flat_map(|p| p.iter()).enumerate() {
            let tag = tag(i);
            let mut headers = OwnedHeaders::new_with_capacity(out.record.headers.len() + 2);
            for h in &out.record.headers {
                headers = headers.insert(Header {
                    key: h.name_str(),
                    value: Some(&h.value[..]),
                });
            }
            if let Some(tag) = &tag {
                headers = headers.insert(Header {
                    key: COMMIT_HEADER,
                    value: Some(tag.id.as_bytes()),
                });
                if let Some(part) = tag.part {
                    let len = writeahead::write_part(&mut part_buf, part);
                    headers = headers.insert(Header {
                        key: PART_HEADER,
                        value: Some(&part_buf[..len]),
                    });
                }
            }
            let partition = i32::try_from(out.partition).map_err(|_| {
                LogError::InvalidConfig(format!("partition {} is out of range", out.partition))
            })?;
            let mut record: BaseRecord<'_, [u8], [u8], usize> =
                BaseRecord::with_opaque_to(&out.topic, i)
                    .partition(partition)
                    .headers(headers);
            if let Some(k) = &out.record.key {
                record = record.key(&k[..]);
            }
            if let Some(v) = &out.record.value {
                record = record.payload(&v[..]);
            }
            if let Some(t) = out.record.timestamp {
                record = record.timestamp(t);
            }
            let mut record = record;
            let mut refreshed = false;
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((
                        KafkaError::MessageProduction(RDKafkaErrorCode::UnknownPartition),
                        back,
                    )) if !refreshed => {
                        // The log routes by a partition count newer than this
                        // producer's metadata (the topic grew): ask once more.
                        refreshed = true;
                        record = back;
                        let _ = self
                            .producer
                            .client()
                            .fetch_metadata(Some(&out.topic), self.timeout);
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        if Instant::now() >= deadline {
                            return Err(LogError::Broker(
                                "the producer queue stayed full past the request timeout"
                                    .to_owned(),
                            ));
                        }
                        // The producer's thread drains the queue meanwhile.
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err((e, _)) => {
                        // What was queued still completes; wait so the next batch starts clean.
                        let _ = self.producer.flush(self.timeout);
                        return Err(client::broker(&format!("producing to {}", out.topic), &e));
                    }
                }
            }
        }
        let deliveries = self.producer.context();
        let mut s = lock(&deliveries.state);
        while s.pending > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                drop(s);
                let _ = self.producer.flush(self.timeout);
                return Err(LogError::Broker(
                    "records were not acknowledged within the request timeout".to_owned(),
                ));
            }
            s = deliveries
                .done
                .wait_timeout(s, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        if let Some(e) = &s.first_error {
            return Err(LogError::Broker(format!("a record was not delivered: {e}")));
        }
        // Read in place: the report buffer keeps its capacity for the next batch.
        s.offsets.iter().map(|&o| offset(o)).collect()
    }
}

/// Producers not in use, reused by the next commit.
pub(crate) struct Senders {
    config: KafkaConfig,
    idle: Mutex<Vec<Sender>>,
}

impl Senders {
    pub(crate) fn new(config: KafkaConfig) -> Self {
        Self {
            config,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `f` with a producer of its own.
    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&Sender) -> Result<T, LogError>,
    ) -> Result<T, LogError> {
        let taken = lock(&self.idle).pop();
        let sender = match taken {
            Some(s) => s,
            None => Sender::new(&self.config)?,
        };
        let result = f(&sender);
        lock(&self.idle).push(sender);
        result
    }
}
