//! AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit and EndTxn (the
//! coordinator is `crate::transactions`).

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, EndTxnRequest, EndTxnResponse, ResponseKind,
    TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};
use kappa_log::{TopicPartition, valid_group_name};

use super::RequestContext;
use crate::codes;

/// `PRODUCER_FENCED` as a client of `version` understands it: clients
/// older than KIP-588 (kafkajs 2, for one) do not know the code, so Kafka
/// answers them `INVALID_PRODUCER_EPOCH`, which they treat as fenced too.
fn fenced_as_known(code: i16, version: i16, knows_fenced_from: i16) -> i16 {
    if code == codes::PRODUCER_FENCED && version < knows_fenced_from {
        codes::INVALID_PRODUCER_EPOCH
    } else {
        code
    }
}

/// The coordinator's codes, one a partition in request order, handed out
/// as the response is built and as a client of `version` understands them.
struct Answers {
    codes: std::vec::IntoIter<i16>,
    version: i16,
    knows_fenced_from: i16,
}

impl Answers {
    fn new(codes: Vec<i16>, version: i16, knows_fenced_from: i16) -> Self {
        Self {
            codes: codes.into_iter(),
            version,
            knows_fenced_from,
        }
    }

    fn next(&mut self) -> i16 {
        let code = self.codes.next().unwrap_or(codes::UNKNOWN_SERVER_ERROR);
        fenced_as_known(code, self.version, self.knows_fenced_from)
    }
}

pub(crate) fn add_partitions(ctx: &RequestContext, req: AddPartitionsToTxnRequest) -> ResponseKind {
    let id = req.v3_and_below_transactional_id.0.as_str();
    let partitions: Vec<TopicPartition> = req
        .v3_and_below_topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                TopicPartition::new(t.name.0.as_str(), u32::try_from(*p).unwrap_or(u32::MAX))
            })
        })
        .collect();
    let refusal = if !ctx.may_transactional_id(id) {
        Some(codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    } else if partitions
        .iter()
        .any(|tp| !ctx.may_topic(&tp.topic, kappa_auth::TopicOperation::Write))
    {
        Some(codes::TOPIC_AUTHORIZATION_FAILED)
    } else {
        None
    };
    let results = match refusal {
        Some(code) => vec![code; partitions.len()],
        None => ctx.shared.transactions.add_partitions(
            id,
            req.v3_and_below_producer_id.0,
            req.v3_and_below_producer_epoch,
            &partitions,
        ),
    };
    let mut answers = Answers::new(results, ctx.version, 2);
    let topics = req.v3_and_below_topics.into_iter().map(|t| {
        let by_partition = t.partitions.iter().map(|&p| {
            AddPartitionsToTxnPartitionResult::default()
                .with_partition_index(p)
                .with_partition_error_code(answers.next())
        });
        AddPartitionsToTxnTopicResult::default()
            .with_name(t.name)
            .with_results_by_partition(by_partition.collect())
    });
    let r =
        AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(topics.collect());
    ResponseKind::AddPartitionsToTxn(r)
}

pub(crate) fn add_offsets(ctx: &RequestContext, req: AddOffsetsToTxnRequest) -> ResponseKind {
    let group = req.group_id.0.as_str();
    let code = if !ctx.may_transactional_id(req.transactional_id.0.as_str()) {
        codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    } else if !ctx.may_group(group) {
        codes::GROUP_AUTHORIZATION_FAILED
    } else if valid_group_name(group) {
        ctx.shared.transactions.add_offsets(
            req.transactional_id.0.as_str(),
            req.producer_id.0,
            req.producer_epoch,
            group,
        )
    } else {
        codes::INVALID_GROUP_ID
    };
    let code = fenced_as_known(code, ctx.version, 2);
    ResponseKind::AddOffsetsToTxn(AddOffsetsToTxnResponse::default().with_error_code(code))
}

pub(crate) fn commit_offsets(ctx: &RequestContext, req: TxnOffsetCommitRequest) -> ResponseKind {
    let group = req.group_id.0.to_string();
    // From v3 the member says who it is; a zombie of an old generation is
    // refused as in OffsetCommit.
    let refusal = if !valid_group_name(&group) {
        codes::INVALID_GROUP_ID
    } else if !ctx.may_transactional_id(req.transactional_id.0.as_str()) {
        codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    } else if !ctx.may_group(&group) {
        codes::GROUP_AUTHORIZATION_FAILED
    } else if req
        .topics
        .iter()
        .any(|t| !ctx.may_topic(t.name.0.as_str(), kappa_auth::TopicOperation::Read))
    {
        codes::TOPIC_AUTHORIZATION_FAILED
    } else if ctx.version >= 3 && req.generation_id >= 0 {
        ctx.shared
            .groups
            .check_commit(&group, req.generation_id, req.member_id.as_str())
    } else {
        codes::NONE
    };
    let offsets: Vec<(TopicPartition, i64)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    TopicPartition::new(
                        t.name.0.as_str(),
                        u32::try_from(p.partition_index).unwrap_or(u32::MAX),
                    ),
                    p.committed_offset,
                )
            })
        })
        .collect();
    let results = if refusal == codes::NONE {
        ctx.shared.transactions.commit_offsets(
            req.transactional_id.0.as_str(),
            req.producer_id.0,
            req.producer_epoch,
            &group,
            &offsets,
        )
    } else {
        vec![refusal; offsets.len()]
    };
    let mut answers = Answers::new(results, ctx.version, 3);
    let topics = req.topics.into_iter().map(|t| {
        let partitions = t.partitions.iter().map(|p| {
            TxnOffsetCommitResponsePartition::default()
                .with_partition_index(p.partition_index)
                .with_error_code(answers.next())
        });
        TxnOffsetCommitResponseTopic::default()
            .with_name(t.name)
            .with_partitions(partitions.collect())
    });
    let r = TxnOffsetCommitResponse::default().with_topics(topics.collect());
    ResponseKind::TxnOffsetCommit(r)
}

pub(crate) fn end(ctx: &RequestContext, req: EndTxnRequest) -> ResponseKind {
    let id = req.transactional_id.0.as_str();
    let code = if ctx.may_transactional_id(id) {
        ctx.shared
            .transactions
            .end(id, req.producer_id.0, req.producer_epoch, req.committed)
    } else {
        codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    };
    let code = fenced_as_known(code, ctx.version, 2);
    ResponseKind::EndTxn(EndTxnResponse::default().with_error_code(code))
}
