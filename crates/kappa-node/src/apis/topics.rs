//! Creating, growing and deleting topics.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, ResponseKind,
};
use kappa_log::{TopicConfig, TopicSpec};

use super::configs::{
    APPLIED_CONFIGS, IGNORED_CONFIGS, apply_config, without_retention_if_compacted,
};
use super::{RequestContext, text};
use crate::codes;

pub(crate) fn create(ctx: &RequestContext, req: CreateTopicsRequest) -> ResponseKind {
    let mut r = CreateTopicsResponse::default();
    for topic in req.topics {
        let name = topic.name.0.to_string();
        let mut result = CreatableTopicResult::default().with_name(topic.name.clone());
        let allowed = if ctx.may_topic(&name, kappa_auth::TopicOperation::Create) {
            Ok(())
        } else {
            Err((
                codes::TOPIC_AUTHORIZATION_FAILED,
                format!("not allowed to create topic {name:?}"),
            ))
        };
        let outcome = allowed
            .and_then(|()| spec_for(&name, topic.num_partitions, topic.replication_factor, topic.assignments.len(), &topic.configs))
            .and_then(|spec| {
                spec.validate().map_err(|e| (codes::for_log_error(&e), e.to_string()))?;
                if req.validate_only {
                    if ctx.shared.log.partition_count(&name).is_ok() {
                        return Err((codes::TOPIC_ALREADY_EXISTS, format!("topic {name:?} already exists")));
                    }
                } else {
                    ctx.shared
                        .log
                        .create_topic(&spec)
                        .map_err(|e| (codes::for_log_error(&e), e.to_string()))?;
                    tracing::info!(topic = %name, partitions = spec.partitions, client = %ctx.client_id, "created a topic");
                }
                Ok(spec)
            });
        match outcome {
            Ok(spec) => {
                if ctx.version >= 5 {
                    result.num_partitions = spec.partitions as i32;
                    result.replication_factor = 1;
                }
            }
            Err((code, message)) => {
                result.error_code = code;
                result.error_message = Some(text(message));
            }
        }
        r.topics.push(result);
    }
    ResponseKind::CreateTopics(r)
}

pub(crate) type Refusal = (i16, String);

fn spec_for(
    name: &str,
    partitions: i32,
    replication_factor: i16,
    assignments: usize,
    configs: &[kafka_protocol::messages::create_topics_request::CreatableTopicConfig],
) -> Result<TopicSpec, Refusal> {
    if replication_factor != -1 && replication_factor != 1 {
        return Err((
            codes::INVALID_REPLICATION_FACTOR,
            format!(
                "replication factor {replication_factor}: this cluster is one node, so it must be 1 (or -1 for the default)"
            ),
        ));
    }
    let partitions = match (partitions, assignments) {
        (-1, 0) => 1,
        (-1, n) => n as i32,
        (n, 0) if n > 0 => n,
        (n, _) => {
            return Err((
                codes::INVALID_PARTITIONS,
                format!("{n} partitions: give a positive count, or -1 with replica assignments"),
            ));
        }
    };
    let mut config = TopicConfig::default();
    for c in configs {
        let key = c.name.as_str();
        let value = c.value.as_ref().map(|v| v.as_str().to_string());
        if IGNORED_CONFIGS.contains(&key) {
            continue;
        }
        if !APPLIED_CONFIGS.contains(&key) {
            return Err((
                codes::INVALID_CONFIG,
                format!("unknown or unsupported topic config {key:?}"),
            ));
        }
        let Some(value) = value else {
            continue;
        };
        apply_config(&mut config, key, &value).map_err(|why| {
            (
                codes::INVALID_CONFIG,
                format!("topic config {key}={value:?}: {why}"),
            )
        })?;
    }
    without_retention_if_compacted(&mut config);
    let mut spec = TopicSpec::new(name, partitions as u32);
    spec.config = config;
    Ok(spec)
}

pub(crate) fn delete(ctx: &RequestContext, req: DeleteTopicsRequest) -> ResponseKind {
    let mut r = DeleteTopicsResponse::default();
    for name in req.topic_names {
        let mut result = DeletableTopicResult::default().with_name(Some(name.clone()));
        if !ctx.may_topic(name.0.as_str(), kappa_auth::TopicOperation::Create) {
            result.error_code = codes::TOPIC_AUTHORIZATION_FAILED;
        } else if let Err(e) = ctx.shared.log.delete_topic(name.0.as_str()) {
            result.error_code = codes::for_log_error(&e);
            if ctx.version >= 5 {
                result.error_message = Some(text(e.to_string()));
            }
        } else {
            tracing::info!(topic = %name.0, client = %ctx.client_id, "deleted a topic");
        }
        r.responses.push(result);
    }
    ResponseKind::DeleteTopics(r)
}

/// CreatePartitions: grows topics, refusing what Kafka refuses (fewer or
/// as many partitions as now, replica assignments that do not fit one node).
pub(crate) fn create_partitions(
    ctx: &RequestContext,
    req: CreatePartitionsRequest,
) -> ResponseKind {
    let mut r = CreatePartitionsResponse::default();
    let mut seen = std::collections::HashSet::new();
    let duplicates: std::collections::HashSet<String> = req
        .topics
        .iter()
        .map(|t| t.name.0.to_string())
        .filter(|name| !seen.insert(name.clone()))
        .collect();
    for topic in req.topics {
        let name = topic.name.0.to_string();
        let outcome = if duplicates.contains(&name) {
            Err((codes::INVALID_REQUEST, "Duplicate topic name.".to_string()))
        } else if !ctx.may_topic(&name, kappa_auth::TopicOperation::Create) {
            Err((
                codes::TOPIC_AUTHORIZATION_FAILED,
                format!("not allowed to alter topic {name:?}"),
            ))
        } else {
            grow(
                ctx,
                &name,
                topic.count,
                topic.assignments.as_deref(),
                req.validate_only,
            )
        };
        let mut result = CreatePartitionsTopicResult::default().with_name(topic.name);
        if let Err((code, message)) = outcome {
            result.error_code = code;
            result.error_message = Some(text(message));
        }
        r.results.push(result);
    }
    ResponseKind::CreatePartitions(r)
}

fn grow(
    ctx: &RequestContext,
    name: &str,
    count: i32,
    assignments: Option<
        &[kafka_protocol::messages::create_partitions_request::CreatePartitionsAssignment],
    >,
    validate_only: bool,
) -> Result<(), Refusal> {
    let log = &*ctx.shared.log;
    let current = log
        .partition_count(name)
        .map_err(|e| (codes::for_log_error(&e), e.to_string()))?;
    let current = i64::from(current);
    let count = i64::from(count);
    if count < current {
        return Err((
            codes::INVALID_PARTITIONS,
            format!(
                "Topic currently has {current} partitions, which is higher than the requested {count}."
            ),
        ));
    }
    if count == current {
        return Err((
            codes::INVALID_PARTITIONS,
            format!("Topic already has {current} partitions."),
        ));
    }
    if let Some(assignments) = assignments {
        if assignments.len() as i64 != count - current {
            return Err((
                codes::INVALID_REPLICA_ASSIGNMENT,
                format!(
                    "Increasing the number of partitions by {} but {} assignments provided.",
                    count - current,
                    assignments.len()
                ),
            ));
        }
        if let Some(bad) = assignments
            .iter()
            .find(|a| a.broker_ids.iter().map(|b| b.0).collect::<Vec<_>>() != [0])
        {
            return Err((
                codes::INVALID_REPLICA_ASSIGNMENT,
                format!(
                    "replica assignment {:?}: this cluster is node 0 alone",
                    bad.broker_ids.iter().map(|b| b.0).collect::<Vec<_>>()
                ),
            ));
        }
    }
    let count = u32::try_from(count)
        .map_err(|_| (codes::INVALID_PARTITIONS, format!("{count} partitions")))?;
    if validate_only {
        return TopicSpec::new(name, count)
            .validate()
            .map_err(|e| (codes::INVALID_PARTITIONS, e.to_string()));
    }
    log.create_partitions(name, count).map_err(|e| {
        let code = match e {
            kappa_log::LogError::InvalidConfig(_) => codes::INVALID_PARTITIONS,
            ref other => codes::for_log_error(other),
        };
        (code, e.to_string())
    })?;
    tracing::info!(topic = %name, partitions = count, client = %ctx.client_id, "grew a topic");
    Ok(())
}
