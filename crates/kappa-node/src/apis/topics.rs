//! Creating and deleting topics.

use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    ResponseKind,
};
use kappa_log::{CleanupPolicy, TopicConfig, TopicSpec};

use super::{RequestContext, text};
use crate::codes;

/// Topic configs the log honours, by Kafka's names.
const APPLIED_CONFIGS: &[&str] = &[
    "retention.ms",
    "retention.bytes",
    "cleanup.policy",
    "max.message.bytes",
    "delete.retention.ms",
];

/// Kafka topic configs that mean nothing on one node with one log engine;
/// accepted so that tools which always send them work, and ignored.
const IGNORED_CONFIGS: &[&str] = &[
    "min.insync.replicas",
    "unclean.leader.election.enable",
    "segment.bytes",
    "segment.ms",
    "segment.jitter.ms",
    "segment.index.bytes",
    "index.interval.bytes",
    "flush.messages",
    "flush.ms",
    "preallocate",
    "file.delete.delay.ms",
    "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms",
    "max.compaction.lag.ms",
    "message.downconversion.enable",
];

pub(crate) fn create(ctx: &RequestContext, req: CreateTopicsRequest) -> ResponseKind {
    let mut r = CreateTopicsResponse::default();
    for topic in req.topics {
        let name = topic.name.0.to_string();
        let mut result = CreatableTopicResult::default().with_name(topic.name.clone());
        let outcome = spec_for(&name, topic.num_partitions, topic.replication_factor, topic.assignments.len(), &topic.configs)
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

type Refusal = (i16, String);

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
    if config.cleanup_policy == CleanupPolicy::Compact {
        // Kafka ignores retention on a compacted (not also deleting) topic;
        // the log refuses it, so it is dropped here.
        config.retention_ms = None;
        config.retention_bytes = None;
    }
    let mut spec = TopicSpec::new(name, partitions as u32);
    spec.config = config;
    Ok(spec)
}

fn apply_config(config: &mut TopicConfig, key: &str, value: &str) -> Result<(), String> {
    let int = || {
        value
            .parse::<i64>()
            .map_err(|_| "not a whole number".to_string())
    };
    match key {
        "retention.ms" => config.retention_ms = Some(int()?).filter(|v| *v >= 0),
        "retention.bytes" => config.retention_bytes = u64::try_from(int()?).ok(),
        "delete.retention.ms" => {
            config.delete_retention_ms = Some(int()?)
                .filter(|v| *v >= 0)
                .ok_or("must not be negative")?;
        }
        "max.message.bytes" => {
            config.max_record_bytes = u32::try_from(int()?).map_err(|_| "out of range")?;
        }
        "cleanup.policy" => {
            config.cleanup_policy = match value {
                "delete" => CleanupPolicy::Delete,
                "compact" => CleanupPolicy::Compact,
                _ => return Err("one of delete, compact (both at once is not supported)".into()),
            };
        }
        _ => return Err("unknown".into()),
    }
    Ok(())
}

pub(crate) fn delete(ctx: &RequestContext, req: DeleteTopicsRequest) -> ResponseKind {
    let mut r = DeleteTopicsResponse::default();
    for name in req.topic_names {
        let mut result = DeletableTopicResult::default().with_name(Some(name.clone()));
        if let Err(e) = ctx.shared.log.delete_topic(name.0.as_str()) {
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
