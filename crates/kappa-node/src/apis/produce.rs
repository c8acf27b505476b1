//! Produce and InitProducerId: records into the log through the committer.

use std::sync::Arc;

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse, ProducerId,
    ResponseKind,
};
use kappa_auth::TopicOperation;
use kappa_log::{LogError, TopicPartition, TopicSpec};

use super::{Pending, RequestContext, text};
use crate::codes;
use crate::committer::{AppendOutcome, PartitionAppend};
use crate::records::decode_batches;

/// Where each partition's answer comes from.
enum Slot {
    Now(AppendOutcome),
    /// Index into the committer's answers.
    Committed(usize),
}

pub(crate) fn produce(ctx: RequestContext, req: ProduceRequest) -> Pending {
    if let Some(id) = req
        .transactional_id
        .as_ref()
        .map(|t| t.0.to_string())
        .filter(|t| !t.is_empty())
    {
        if req.acks == 0 {
            tokio::task::spawn_blocking(move || produce_transactional(&ctx, &id, req));
            return Pending::Ready(Ok(None));
        }
        return Pending::blocking(ctx, req, move |ctx, req| {
            produce_transactional(ctx, &id, req)
        });
    }
    let acks = req.acks;
    let valid_acks = matches!(acks, -1..=1);
    // Under pressure (the disk near full) the log takes no new batches;
    // KAFKA_STORAGE_ERROR is retriable, so clients back off and resend.
    let admitted = ctx.shared.log.admit_writes();
    let mut parts = Vec::new();
    let mut layout = Vec::with_capacity(req.topic_data.len());
    for topic in req.topic_data {
        let name: Arc<str> = Arc::from(topic.name.0.as_str());
        let writable = ctx.may_topic(&name, TopicOperation::Write);
        let mut slots = Vec::with_capacity(topic.partition_data.len());
        for data in topic.partition_data {
            let refuse = |code, message: String| {
                Slot::Now(AppendOutcome {
                    error_code: code,
                    error_message: Some(message),
                    base_offset: -1,
                })
            };
            let slot = if !valid_acks {
                refuse(
                    codes::INVALID_REQUIRED_ACKS,
                    format!("acks={acks}: use 0, 1 or -1 (all)"),
                )
            } else if !writable {
                refuse(
                    codes::TOPIC_AUTHORIZATION_FAILED,
                    format!("not allowed to write to topic {name:?}"),
                )
            } else if let Err(e) = &admitted {
                refuse(codes::for_log_error(e), format!("not written: {e}"))
            } else if data.index < 0 {
                refuse(
                    codes::UNKNOWN_TOPIC_OR_PARTITION,
                    format!("partition {} does not exist", data.index),
                )
            } else {
                match decode_batches(data.records.unwrap_or_default()) {
                    Ok(batches) => {
                        parts.push(PartitionAppend {
                            partition: TopicPartition::new(name.clone(), data.index as u32),
                            batches,
                        });
                        Slot::Committed(parts.len() - 1)
                    }
                    Err(why) => {
                        let code = if why.contains("compression") {
                            codes::UNSUPPORTED_COMPRESSION_TYPE
                        } else {
                            codes::CORRUPT_MESSAGE
                        };
                        tracing::debug!(peer = %ctx.peer, topic = %name, partition = data.index, why, "refused a record batch");
                        refuse(code, format!("record batch refused: {why}"))
                    }
                }
            };
            slots.push((data.index, slot));
        }
        layout.push((topic.name, slots));
    }
    // Queued now, so a connection's produce requests commit in the order read.
    let answer = (!parts.is_empty()).then(|| ctx.shared.committer.submit(parts));
    if acks == 0 {
        return Pending::Ready(Ok(None));
    }
    Pending::spawned(async move {
        let outcomes = match answer {
            Some(answer) => answer
                .await
                .map_err(|_| "the produce committer stopped".to_string())?,
            None => Vec::new(),
        };
        let mut r = ProduceResponse::default();
        for (name, slots) in layout {
            let mut t = TopicProduceResponse::default().with_name(name);
            for (index, slot) in slots {
                let outcome = match slot {
                    Slot::Now(o) => o,
                    Slot::Committed(i) => outcomes.get(i).cloned().unwrap_or(AppendOutcome {
                        error_code: codes::UNKNOWN_SERVER_ERROR,
                        error_message: Some("no answer for this partition".into()),
                        base_offset: -1,
                    }),
                };
                let mut p = PartitionProduceResponse::default()
                    .with_index(index)
                    .with_error_code(outcome.error_code)
                    .with_base_offset(outcome.base_offset)
                    .with_log_append_time_ms(-1);
                if ctx.version >= 8 {
                    p.error_message = outcome.error_message.map(text);
                }
                t.partition_responses.push(p);
            }
            r.responses.push(t);
        }
        ctx.respond(&ResponseKind::Produce(r))
    })
}

/// Produce in a transaction: each partition's batches are held by the
/// transaction coordinator until EndTxn; their offsets are not known yet
/// (-1), as the records get them only when the transaction commits.
fn produce_transactional(ctx: &RequestContext, id: &str, req: ProduceRequest) -> ResponseKind {
    let specs = ctx.shared.log.list_topics().unwrap_or_default();
    // Once per request, as for produce outside a transaction.
    let admitted = ctx.shared.log.admit_writes();
    let mut r = ProduceResponse::default();
    for topic in req.topic_data {
        let spec = specs.iter().find(|s| s.name == topic.name.0.as_str());
        let mut t = TopicProduceResponse::default().with_name(topic.name.clone());
        for data in topic.partition_data {
            let (code, message) = hold(
                ctx,
                id,
                admitted.as_ref().err(),
                spec,
                topic.name.0.as_str(),
                data.index,
                data.records,
            );
            let mut p = PartitionProduceResponse::default()
                .with_index(data.index)
                .with_error_code(code)
                .with_base_offset(-1)
                .with_log_append_time_ms(-1);
            if ctx.version >= 8 {
                p.error_message = message.map(text);
            }
            t.partition_responses.push(p);
        }
        r.responses.push(t);
    }
    ResponseKind::Produce(r)
}

fn hold(
    ctx: &RequestContext,
    id: &str,
    refused: Option<&LogError>,
    spec: Option<&TopicSpec>,
    topic: &str,
    index: i32,
    records: Option<bytes::Bytes>,
) -> (i16, Option<String>) {
    if !ctx.may_transactional_id(id) {
        return (
            codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            Some(format!("not allowed to use transactional id {id:?}")),
        );
    }
    if !ctx.may_topic(topic, TopicOperation::Write) {
        return (
            codes::TOPIC_AUTHORIZATION_FAILED,
            Some(format!("not allowed to write to topic {topic:?}")),
        );
    }
    let Some(spec) = spec.filter(|s| u32::try_from(index).is_ok_and(|i| i < s.partitions)) else {
        return (
            codes::UNKNOWN_TOPIC_OR_PARTITION,
            Some(format!("{topic}/{index} does not exist")),
        );
    };
    if let Some(e) = refused {
        return (codes::for_log_error(e), Some(format!("not held: {e}")));
    }
    let batches = match decode_batches(records.unwrap_or_default()) {
        Ok(b) => b,
        Err(why) => {
            return (
                codes::CORRUPT_MESSAGE,
                Some(format!("record batch refused: {why}")),
            );
        }
    };
    let tp = TopicPartition::new(topic, index as u32);
    for batch in batches {
        if !batch.transactional {
            return (
                codes::INVALID_RECORD,
                Some("a transactional producer's batches must be transactional".into()),
            );
        }
        if let Some(e) = batch
            .records
            .iter()
            .find_map(|r| spec.check_record(r).err())
        {
            return (codes::for_log_error(&e), Some(e.to_string()));
        }
        let code = ctx.shared.transactions.produce(id, &tp, batch);
        if code != codes::NONE {
            return (code, Some(format!("transactional batch for {tp} refused")));
        }
    }
    (codes::NONE, None)
}

pub(crate) fn init_producer_id(ctx: &RequestContext, req: InitProducerIdRequest) -> ResponseKind {
    let mut r = InitProducerIdResponse::default();
    if let Some(id) = req
        .transactional_id
        .as_ref()
        .map(|t| t.0.as_str())
        .filter(|t| !t.is_empty())
    {
        if !ctx.may_transactional_id(id) {
            r.error_code = codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
            r.producer_id = ProducerId(-1);
            r.producer_epoch = -1;
            return ResponseKind::InitProducerId(r);
        }
        let timeout = std::time::Duration::from_millis(
            u64::try_from(req.transaction_timeout_ms).unwrap_or(0),
        );
        match ctx.shared.transactions.init(id, timeout) {
            Ok((producer_id, epoch)) => {
                r.producer_id = ProducerId(producer_id);
                r.producer_epoch = epoch;
            }
            Err(code) => {
                r.error_code = code;
                r.producer_id = ProducerId(-1);
                r.producer_epoch = -1;
            }
        }
        return ResponseKind::InitProducerId(r);
    }
    // An idempotent producer that asks again (after a fatal sequence
    // error) gets a fresh id: its old sequences start over with it.
    match ctx.shared.ids.allocate(&*ctx.shared.log) {
        Ok(id) => {
            r.producer_id = ProducerId(id);
            r.producer_epoch = 0;
        }
        Err(e) => {
            tracing::error!(error = %e, "allocating a producer id failed");
            r.error_code = codes::for_log_error(&e);
            r.producer_id = ProducerId(-1);
            r.producer_epoch = -1;
        }
    }
    ResponseKind::InitProducerId(r)
}
