//! Fetch (a tail read that waits for a commit) and ListOffsets.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{
    FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse, ResponseKind,
};
use kappa_auth::TopicOperation;
use kappa_log::{FetchLimits, Log, TopicPartition};

use super::RequestContext;
use crate::codes;
use crate::records::{encode_records, offset_i64};

/// Longest a fetch waits for records, whatever the client asks
/// (clients ask for 500 ms by default).
const FETCH_WAIT_MAX: Duration = Duration::from_secs(30);
/// Records read from one partition for one fetch at most.
const FETCH_RECORDS_MAX: usize = 10_000;
/// `ListOffsets` timestamps with a special meaning.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

struct Wanted {
    partition: TopicPartition,
    index: i32,
    offset: i64,
    bytes_max: usize,
}

pub(crate) fn fetch(ctx: &RequestContext, req: FetchRequest) -> ResponseKind {
    let log = &*ctx.shared.log;
    let wait =
        Duration::from_millis(u64::try_from(req.max_wait_ms).unwrap_or(0)).min(FETCH_WAIT_MAX);
    let deadline = Instant::now() + wait;
    let max_bytes = usize::try_from(req.max_bytes)
        .ok()
        .filter(|b| *b > 0)
        .unwrap_or(usize::MAX);
    let min_bytes = usize::try_from(req.min_bytes).unwrap_or(0);
    let topics: Vec<(kafka_protocol::messages::TopicName, Vec<Wanted>)> = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.topic.0.to_string();
            let wanted = t
                .partitions
                .into_iter()
                .map(|p| Wanted {
                    partition: TopicPartition::new(
                        name.as_str(),
                        u32::try_from(p.partition).unwrap_or(u32::MAX),
                    ),
                    index: p.partition,
                    offset: p.fetch_offset,
                    bytes_max: usize::try_from(p.partition_max_bytes).unwrap_or(0),
                })
                .collect();
            (t.topic, wanted)
        })
        .collect();
    loop {
        let mut total = 0usize;
        let mut records = 0usize;
        let mut failed = false;
        let mut at_end = Vec::new();
        let mut r = FetchResponse::default();
        for (name, wanted) in &topics {
            let mut t = FetchableTopicResponse::default().with_topic(name.clone());
            let readable = ctx.may_topic(name.0.as_str(), TopicOperation::Read);
            for w in wanted {
                let mut p = PartitionData::default().with_partition_index(w.index);
                let read = if readable {
                    read_partition(log, w, max_bytes.saturating_sub(total), &mut p)
                } else {
                    Err(codes::TOPIC_AUTHORIZATION_FAILED)
                };
                match read {
                    Ok(Read::Records { bytes, count }) => {
                        total += bytes;
                        records += count;
                    }
                    Ok(Read::AtEnd(end)) => at_end.push((w.partition.clone(), end)),
                    Err(code) => {
                        p.error_code = code;
                        failed = true;
                    }
                }
                t.partitions.push(p);
            }
            r.responses.push(t);
        }
        let now = Instant::now();
        let satisfied = total >= min_bytes && (total > 0 || min_bytes == 0);
        if satisfied || failed || at_end.is_empty() || now >= deadline {
            ctx.shared
                .stats
                .records_fetched
                .fetch_add(records as u64, Ordering::Relaxed);
            return ResponseKind::Fetch(r);
        }
        // Nothing yet: wait for a commit to any of the partitions, then read again.
        let mut scratch = Vec::new();
        let limits = FetchLimits {
            records_max: 1,
            bytes_max: 1,
            wait_max: deadline - now,
        };
        if log.fetch(&at_end, limits, &mut scratch).is_err() {
            // A topic deleted meanwhile: the next pass reports it.
            continue;
        }
    }
}

enum Read {
    Records { bytes: usize, count: usize },
    AtEnd(u64),
}

fn read_partition(
    log: &dyn Log,
    w: &Wanted,
    budget: usize,
    p: &mut PartitionData,
) -> Result<Read, i16> {
    let range = log
        .offsets(&w.partition)
        .map_err(|e| codes::for_log_error(&e))?;
    p.high_watermark = offset_i64(range.end);
    p.last_stable_offset = offset_i64(range.end);
    p.log_start_offset = offset_i64(range.start);
    let offset = u64::try_from(w.offset).map_err(|_| codes::OFFSET_OUT_OF_RANGE)?;
    if offset < range.start || offset > range.end {
        return Err(codes::OFFSET_OUT_OF_RANGE);
    }
    if offset == range.end || budget == 0 {
        return Ok(Read::AtEnd(offset));
    }
    let mut out = Vec::new();
    let limits = FetchLimits {
        records_max: FETCH_RECORDS_MAX,
        bytes_max: w.bytes_max.min(budget).max(1),
        wait_max: Duration::ZERO,
    };
    log.fetch(&[(w.partition.clone(), offset)], limits, &mut out)
        .map_err(|e| codes::for_log_error(&e))?;
    if out.is_empty() {
        return Ok(Read::AtEnd(offset));
    }
    let mut buf = BytesMut::new();
    encode_records(&out, &mut buf);
    let bytes = buf.len();
    p.records = Some(buf.freeze());
    Ok(Read::Records {
        bytes,
        count: out.len(),
    })
}

pub(crate) fn list_offsets(ctx: &RequestContext, req: ListOffsetsRequest) -> ResponseKind {
    let log = &*ctx.shared.log;
    let mut r = ListOffsetsResponse::default();
    for topic in req.topics {
        let mut t = ListOffsetsTopicResponse::default().with_name(topic.name.clone());
        for part in topic.partitions {
            let mut p = ListOffsetsPartitionResponse::default()
                .with_partition_index(part.partition_index)
                .with_timestamp(-1)
                .with_offset(-1);
            let tp = TopicPartition::new(
                topic.name.0.as_str(),
                u32::try_from(part.partition_index).unwrap_or(u32::MAX),
            );
            let found = if ctx.may_topic(&tp.topic, TopicOperation::Describe) {
                offset_for(log, &tp, part.timestamp)
            } else {
                Err(codes::TOPIC_AUTHORIZATION_FAILED)
            };
            match found {
                Ok((offset, timestamp)) => {
                    p.offset = offset;
                    p.timestamp = timestamp;
                }
                Err(code) => p.error_code = code,
            }
            t.partitions.push(p);
        }
        r.topics.push(t);
    }
    ResponseKind::ListOffsets(r)
}

/// The offset (and its record's timestamp) a `ListOffsets` query names.
fn offset_for(log: &dyn Log, tp: &TopicPartition, timestamp: i64) -> Result<(i64, i64), i16> {
    let range = log.offsets(tp).map_err(|e| codes::for_log_error(&e))?;
    match timestamp {
        LATEST => Ok((offset_i64(range.end), -1)),
        EARLIEST => Ok((offset_i64(range.start), -1)),
        t if t < 0 => Err(codes::INVALID_REQUEST),
        t => match log
            .offset_for_timestamp(tp, t)
            .map_err(|e| codes::for_log_error(&e))?
        {
            None => Ok((-1, -1)),
            Some(offset) => {
                let mut out = Vec::new();
                let one = FetchLimits {
                    records_max: 1,
                    bytes_max: 1,
                    wait_max: Duration::ZERO,
                };
                log.fetch(&[(tp.clone(), offset)], one, &mut out)
                    .map_err(|e| codes::for_log_error(&e))?;
                Ok((offset_i64(offset), out.first().map_or(-1, |r| r.timestamp)))
            }
        },
    }
}
