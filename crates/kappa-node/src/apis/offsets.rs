//! OffsetCommit, OffsetFetch and OffsetDelete: a group's committed offsets are the log's
//! group positions, so Kappa's own readers and Kafka consumers of the same
//! group name share them.

use std::collections::HashMap;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse, ResponseKind, TopicName,
};
use kappa_auth::TopicOperation;
use kappa_log::{Commit, TopicPartition, valid_group_name};

use super::{RequestContext, text};
use crate::codes;
use crate::groups::OffsetsInUse;
use crate::records::offset_i64;

pub(crate) fn commit(ctx: &RequestContext, req: OffsetCommitRequest) -> ResponseKind {
    let log = &*ctx.shared.log;
    let group = req.group_id.0.to_string();
    let refusal = if !valid_group_name(&group) {
        codes::INVALID_GROUP_ID
    } else if !ctx.may_group(&group) {
        codes::GROUP_AUTHORIZATION_FAILED
    } else {
        ctx.shared.groups.check_commit(
            &group,
            req.generation_id_or_member_epoch,
            req.member_id.as_str(),
        )
    };
    let mut commit = Commit::new();
    let mut r = OffsetCommitResponse::default();
    let mut counts: HashMap<String, Option<u32>> = HashMap::new();
    for topic in req.topics {
        let name = topic.name.0.to_string();
        let partitions = *counts
            .entry(name.clone())
            .or_insert_with(|| log.partition_count(&name).ok());
        let readable = ctx.may_topic(&name, TopicOperation::Read);
        let mut t = OffsetCommitResponseTopic::default().with_name(topic.name);
        for p in topic.partitions {
            let code = if refusal != codes::NONE {
                refusal
            } else if !readable {
                codes::TOPIC_AUTHORIZATION_FAILED
            } else if partitions
                .is_none_or(|n| p.partition_index < 0 || p.partition_index as u32 >= n)
            {
                codes::UNKNOWN_TOPIC_OR_PARTITION
            } else {
                let tp = TopicPartition::new(name.as_str(), p.partition_index as u32);
                match u64::try_from(p.committed_offset) {
                    // The log keeps group positions within what a partition
                    // holds (Kafka would store any offset): past the end is
                    // refused alone, the rest of the request still lands.
                    Ok(offset) if log.offsets(&tp).is_ok_and(|r| offset <= r.end) => {
                        commit.set_group_position(&group, tp, offset);
                        codes::NONE
                    }
                    Ok(_) => codes::OFFSET_OUT_OF_RANGE,
                    Err(_) => codes::INVALID_REQUEST,
                }
            };
            t.partitions.push(
                OffsetCommitResponsePartition::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(code),
            );
        }
        r.topics.push(t);
    }
    if !commit.group_positions.is_empty()
        && let Err(e) = log.commit(commit)
    {
        tracing::error!(group, error = %e, "committing group offsets failed");
        let code = codes::for_log_error(&e);
        for p in r.topics.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
            if p.error_code == codes::NONE {
                p.error_code = code;
            }
        }
    }
    ResponseKind::OffsetCommit(r)
}

/// Offsets by topic: `(partition, committed offset or -1, error code)`.
type Committed = Vec<(TopicName, Vec<(i32, i64, i16)>)>;

/// One group's committed offsets for the partitions asked (all when
/// `None`, less the topics the client may not describe).
fn committed(
    ctx: &RequestContext,
    group: &str,
    topics: Option<Vec<(TopicName, Vec<i32>)>>,
) -> Result<Committed, i16> {
    let log = &*ctx.shared.log;
    if !valid_group_name(group) {
        return Err(codes::INVALID_GROUP_ID);
    }
    if !ctx.may_group(group) {
        return Err(codes::GROUP_AUTHORIZATION_FAILED);
    }
    let positions = log
        .group_positions(group)
        .map_err(|e| codes::for_log_error(&e))?;
    let lookup: HashMap<(&str, u32), u64> = positions
        .iter()
        .map(|(tp, o)| ((&*tp.topic, tp.partition), *o))
        .collect();
    Ok(match topics {
        Some(topics) => topics
            .into_iter()
            .map(|(name, partitions)| {
                let visible = ctx.may_topic(name.0.as_str(), TopicOperation::Describe);
                let offsets = partitions
                    .into_iter()
                    .map(|p| {
                        if !visible {
                            return (p, -1, codes::TOPIC_AUTHORIZATION_FAILED);
                        }
                        let key = (name.0.as_str(), u32::try_from(p).unwrap_or(u32::MAX));
                        (
                            p,
                            lookup.get(&key).map_or(-1, |o| offset_i64(*o)),
                            codes::NONE,
                        )
                    })
                    .collect();
                (name, offsets)
            })
            .collect(),
        None => {
            let mut by_topic: Committed = Vec::new();
            for (tp, offset) in &positions {
                if !ctx.may_topic(&tp.topic, TopicOperation::Describe) {
                    continue;
                }
                let entry = (tp.partition as i32, offset_i64(*offset), codes::NONE);
                match by_topic.last_mut() {
                    Some((name, list)) if name.0.as_str() == &*tp.topic => list.push(entry),
                    _ => by_topic.push((TopicName(text(tp.topic.to_string())), vec![entry])),
                }
            }
            by_topic
        }
    })
}

pub(crate) fn fetch(ctx: &RequestContext, req: OffsetFetchRequest) -> ResponseKind {
    // `Committed` as the response's topics: v8 moved them into a list per
    // group, of other generated types with the same fields.
    macro_rules! answers {
        ($committed:expr, $topic:ident, $partition:ident) => {
            $committed
                .into_iter()
                .map(|(name, offsets)| {
                    let partitions = offsets.into_iter().map(|(p, o, code)| {
                        $partition::default()
                            .with_partition_index(p)
                            .with_committed_offset(o)
                            .with_error_code(code)
                            .with_metadata(Some(text("")))
                    });
                    $topic::default()
                        .with_name(name)
                        .with_partitions(partitions.collect())
                })
                .collect()
        };
    }
    let mut r = OffsetFetchResponse::default();
    if ctx.version >= 8 {
        for g in req.groups {
            let topics = g.topics.map(|ts| {
                ts.into_iter()
                    .map(|t| (t.name, t.partition_indexes))
                    .collect()
            });
            let mut out = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
            match committed(ctx, g.group_id.0.as_str(), topics) {
                Ok(list) => {
                    out.topics = answers!(
                        list,
                        OffsetFetchResponseTopics,
                        OffsetFetchResponsePartitions
                    );
                }
                Err(code) => out.error_code = code,
            }
            r.groups.push(out);
        }
        return ResponseKind::OffsetFetch(r);
    }
    let topics = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name, t.partition_indexes))
            .collect()
    });
    match committed(ctx, req.group_id.0.as_str(), topics) {
        Ok(list) => {
            r.topics = answers!(list, OffsetFetchResponseTopic, OffsetFetchResponsePartition)
        }
        Err(code) if ctx.version >= 2 => r.error_code = code,
        Err(_) => {}
    }
    ResponseKind::OffsetFetch(r)
}

/// OffsetDelete: forgets a group's offsets for some partitions, unless its
/// members consume those topics now (Kafka's rule).
pub(crate) fn delete(ctx: &RequestContext, req: OffsetDeleteRequest) -> ResponseKind {
    let log = &*ctx.shared.log;
    let group = req.group_id.0.to_string();
    let mut r = OffsetDeleteResponse::default();
    if !valid_group_name(&group) {
        r.error_code = codes::INVALID_GROUP_ID;
        return ResponseKind::OffsetDelete(r);
    }
    if !ctx.may_group(&group) {
        r.error_code = codes::GROUP_AUTHORIZATION_FAILED;
        return ResponseKind::OffsetDelete(r);
    }
    let in_use = ctx.shared.groups.offsets_in_use(&group);
    let positions = match log.group_positions(&group) {
        Ok(p) => p,
        Err(e) => {
            r.error_code = codes::for_log_error(&e);
            return ResponseKind::OffsetDelete(r);
        }
    };
    match in_use {
        OffsetsInUse::Unknown if positions.is_empty() => {
            r.error_code = codes::GROUP_ID_NOT_FOUND;
            return ResponseKind::OffsetDelete(r);
        }
        OffsetsInUse::NonEmpty => {
            r.error_code = codes::NON_EMPTY_GROUP;
            return ResponseKind::OffsetDelete(r);
        }
        _ => {}
    }
    let mut doomed = Vec::new();
    for topic in req.topics {
        let name = topic.name.0.to_string();
        let partitions = log.partition_count(&name).ok();
        let subscribed = match &in_use {
            OffsetsInUse::Subscribed(Some(topics)) => topics.contains(&name),
            OffsetsInUse::Subscribed(None) => true,
            _ => false,
        };
        let mut t = OffsetDeleteResponseTopic::default().with_name(topic.name);
        for p in topic.partitions {
            let code = match u32::try_from(p.partition_index) {
                Ok(index) if partitions.is_some_and(|n| index < n) => {
                    if subscribed {
                        codes::GROUP_SUBSCRIBED_TO_TOPIC
                    } else {
                        doomed.push(TopicPartition::new(name.as_str(), index));
                        codes::NONE
                    }
                }
                _ => codes::UNKNOWN_TOPIC_OR_PARTITION,
            };
            t.partitions.push(
                OffsetDeleteResponsePartition::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(code),
            );
        }
        r.topics.push(t);
    }
    if !doomed.is_empty() {
        match log.delete_group_positions(&group, Some(&doomed)) {
            Ok(removed) => {
                tracing::info!(group, removed, client = %ctx.client_id, "deleted group offsets");
            }
            Err(e) => {
                tracing::error!(group, error = %e, "deleting group offsets failed");
                r.error_code = codes::for_log_error(&e);
            }
        }
    }
    ResponseKind::OffsetDelete(r)
}
