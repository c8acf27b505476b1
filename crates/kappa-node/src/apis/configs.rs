//! A topic's configuration and the node's, as Kafka names them:
//! DescribeConfigs shows them, IncrementalAlterConfigs and AlterConfigs
//! change a topic's (the node's own are set on its command line, so they
//! are read-only).

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;
use kappa_log::{CleanupPolicy, TopicConfig, TopicSpec};

use super::topics::Refusal;
use super::{RequestContext, text};
use crate::codes;

/// Topic configs the log honours, by Kafka's names.
pub(crate) const APPLIED_CONFIGS: &[&str] = &[
    "retention.ms",
    "retention.bytes",
    "cleanup.policy",
    "max.message.bytes",
    "delete.retention.ms",
];

/// Kafka topic configs that mean nothing on one node with one log engine;
/// accepted so that tools which always send them work, and ignored.
pub(crate) const IGNORED_CONFIGS: &[&str] = &[
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

pub(crate) fn apply_config(config: &mut TopicConfig, key: &str, value: &str) -> Result<(), String> {
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

/// Kafka ignores retention on a compacted (not also deleting) topic; the
/// log refuses it, so it is dropped.
pub(crate) fn without_retention_if_compacted(config: &mut TopicConfig) {
    if config.cleanup_policy == CleanupPolicy::Compact {
        config.retention_ms = None;
        config.retention_bytes = None;
    }
}

/// Puts one config back to its default (IncrementalAlterConfigs' DELETE).
fn reset_config(config: &mut TopicConfig, key: &str) {
    let default = TopicConfig::default();
    match key {
        "retention.ms" => config.retention_ms = default.retention_ms,
        "retention.bytes" => config.retention_bytes = default.retention_bytes,
        "cleanup.policy" => config.cleanup_policy = default.cleanup_policy,
        "max.message.bytes" => config.max_record_bytes = default.max_record_bytes,
        "delete.retention.ms" => config.delete_retention_ms = default.delete_retention_ms,
        _ => {}
    }
}

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// Kafka's config sources.
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;
/// Kafka's config types (DescribeConfigs v3+).
const TYPE_BOOLEAN: i8 = 1;
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_LIST: i8 = 7;

/// One entry: name, value, whether it differs from the default, type.
type Entry = (&'static str, String, bool, i8);

fn topic_entries(config: &TopicConfig) -> Vec<Entry> {
    let default = TopicConfig::default();
    let ms = |v: Option<i64>| v.unwrap_or(-1).to_string();
    vec![
        (
            "cleanup.policy",
            config.cleanup_policy.to_string(),
            config.cleanup_policy != CleanupPolicy::Delete,
            TYPE_LIST,
        ),
        (
            "retention.ms",
            ms(config.retention_ms),
            config.retention_ms != default.retention_ms,
            TYPE_LONG,
        ),
        (
            "retention.bytes",
            config
                .retention_bytes
                .map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX))
                .to_string(),
            config.retention_bytes != default.retention_bytes,
            TYPE_LONG,
        ),
        (
            "max.message.bytes",
            config.max_record_bytes.to_string(),
            config.max_record_bytes != default.max_record_bytes,
            TYPE_INT,
        ),
        (
            "delete.retention.ms",
            config.delete_retention_ms.to_string(),
            config.delete_retention_ms != default.delete_retention_ms,
            TYPE_LONG,
        ),
        (
            "message.timestamp.type",
            "CreateTime".into(),
            false,
            TYPE_STRING,
        ),
        ("min.insync.replicas", "1".into(), false, TYPE_INT),
        ("compression.type", "producer".into(), false, TYPE_STRING),
    ]
}

fn broker_entries(ctx: &RequestContext) -> Vec<Entry> {
    let c = &ctx.shared.config;
    let ms = |d: std::time::Duration| d.as_millis().to_string();
    vec![
        ("node.id", "0".into(), true, TYPE_INT),
        (
            "auto.create.topics.enable",
            c.auto_create_topics.to_string(),
            true,
            TYPE_BOOLEAN,
        ),
        (
            "num.partitions",
            c.auto_create_partitions.to_string(),
            true,
            TYPE_INT,
        ),
        (
            "socket.request.max.bytes",
            c.frame_bytes_max.to_string(),
            true,
            TYPE_INT,
        ),
        (
            "group.initial.rebalance.delay.ms",
            ms(c.group_initial_rebalance_delay),
            true,
            TYPE_INT,
        ),
        (
            "group.min.session.timeout.ms",
            ms(c.group_session_timeout_min),
            true,
            TYPE_INT,
        ),
        (
            "group.max.session.timeout.ms",
            ms(c.group_session_timeout_max),
            true,
            TYPE_INT,
        ),
    ]
}

pub(crate) fn describe(ctx: &RequestContext, req: DescribeConfigsRequest) -> ResponseKind {
    let mut r = DescribeConfigsResponse::default();
    for resource in req.resources {
        let name = resource.resource_name.to_string();
        let mut result = DescribeConfigsResult::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name);
        let entries = match resource.resource_type {
            RESOURCE_TOPIC if !ctx.may_topic(&name, kappa_auth::TopicOperation::Describe) => Err((
                codes::TOPIC_AUTHORIZATION_FAILED,
                format!("not allowed to describe topic {name:?}"),
            )),
            RESOURCE_TOPIC => match ctx.shared.log.list_topics() {
                Ok(topics) => match topics.into_iter().find(|t| t.name == name) {
                    Some(spec) => Ok((topic_entries(&spec.config), SOURCE_DYNAMIC_TOPIC)),
                    None => Err((
                        codes::UNKNOWN_TOPIC_OR_PARTITION,
                        format!("unknown topic {name:?}"),
                    )),
                },
                Err(e) => Err((codes::for_log_error(&e), e.to_string())),
            },
            RESOURCE_BROKER if name == "0" || name.is_empty() => {
                Ok((broker_entries(ctx), SOURCE_STATIC_BROKER))
            }
            RESOURCE_BROKER => Err((
                codes::INVALID_REQUEST,
                format!("no broker {name:?}: this cluster is node 0"),
            )),
            other => Err((
                codes::INVALID_REQUEST,
                format!("resource type {other} is not described by this node"),
            )),
        };
        match entries {
            Ok((entries, set_source)) => {
                let wanted = resource
                    .configuration_keys
                    .map(|keys| keys.iter().map(ToString::to_string).collect::<Vec<_>>());
                result.configs = entries
                    .into_iter()
                    .filter(|(key, ..)| wanted.as_ref().is_none_or(|w| w.iter().any(|k| k == key)))
                    .map(|(key, value, set, kind)| {
                        let mut c = DescribeConfigsResourceResult::default()
                            .with_name(text(key))
                            .with_value(Some(text(value)))
                            .with_read_only(set_source == SOURCE_STATIC_BROKER)
                            .with_config_source(if set { set_source } else { SOURCE_DEFAULT });
                        if ctx.version >= 3 {
                            c.config_type = kind;
                        }
                        c
                    })
                    .collect();
            }
            Err((code, message)) => {
                result.error_code = code;
                result.error_message = Some(text(message));
            }
        }
        r.results.push(result);
    }
    ResponseKind::DescribeConfigs(r)
}

/// IncrementalAlterConfigs' operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// Changes one resource's configuration: starting from the topic's current
/// config (or the defaults, `from_default`), `change` edits it; the result
/// is checked whole and stored unless `validate_only`. Nothing changes on a
/// refusal.
fn alter_resource(
    ctx: &RequestContext,
    resource_type: i8,
    name: &str,
    validate_only: bool,
    from_default: bool,
    change: impl FnOnce(&mut TopicConfig) -> Result<(), Refusal>,
) -> Result<(), Refusal> {
    match resource_type {
        RESOURCE_TOPIC if !ctx.may_topic(name, kappa_auth::TopicOperation::Create) => {
            return Err((
                codes::TOPIC_AUTHORIZATION_FAILED,
                format!("not allowed to alter topic {name:?}"),
            ));
        }
        RESOURCE_TOPIC => {}
        RESOURCE_BROKER => {
            return Err((
                codes::INVALID_REQUEST,
                "a Kappa node's settings are given on its command line; they cannot be altered while it runs".into(),
            ));
        }
        other => {
            return Err((
                codes::INVALID_REQUEST,
                format!("resource type {other} has no configs this node can alter"),
            ));
        }
    }
    let log = &*ctx.shared.log;
    let mut spec: TopicSpec = log
        .describe_topic(name)
        .map_err(|e| (codes::for_log_error(&e), e.to_string()))?
        .spec;
    if from_default {
        spec.config = TopicConfig::default();
    }
    change(&mut spec.config)?;
    without_retention_if_compacted(&mut spec.config);
    spec.validate()
        .map_err(|e| (codes::INVALID_CONFIG, e.to_string()))?;
    if validate_only {
        return Ok(());
    }
    log.alter_topic_config(name, spec.config.clone())
        .map_err(|e| (codes::for_log_error(&e), e.to_string()))?;
    tracing::info!(topic = %name, config = ?spec.config, client = %ctx.client_id, "altered a topic's configs");
    Ok(())
}

/// Checks a config name and refuses a key given twice.
fn known_key<'k>(key: &'k str, seen: &mut Vec<&'k str>) -> Result<bool, Refusal> {
    if seen.contains(&key) {
        return Err((
            codes::INVALID_REQUEST,
            format!("config {key:?} is given twice"),
        ));
    }
    seen.push(key);
    if IGNORED_CONFIGS.contains(&key) {
        return Ok(false);
    }
    if !APPLIED_CONFIGS.contains(&key) {
        return Err((
            codes::INVALID_CONFIG,
            format!("unknown or unsupported topic config {key:?}"),
        ));
    }
    Ok(true)
}

fn set(config: &mut TopicConfig, key: &str, value: Option<&StrBytes>) -> Result<(), Refusal> {
    let value = value.ok_or_else(|| {
        (
            codes::INVALID_REQUEST,
            format!("config {key:?} is set without a value"),
        )
    })?;
    apply_config(config, key, value.as_str()).map_err(|why| {
        (
            codes::INVALID_CONFIG,
            format!("topic config {key}={value:?}: {why}"),
        )
    })
}

/// APPEND and SUBTRACT, which Kafka allows only on list configs; of those
/// the node honours `cleanup.policy`.
fn edit_list(
    config: &mut TopicConfig,
    key: &str,
    op: i8,
    value: Option<&StrBytes>,
) -> Result<(), Refusal> {
    if key != "cleanup.policy" {
        return Err((
            codes::INVALID_CONFIG,
            format!(
                "config {key:?} is not a list, so values cannot be appended to or subtracted from it"
            ),
        ));
    }
    let mut items = vec![config.cleanup_policy.to_string()];
    for v in value
        .map(|v| v.as_str())
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        if op == OP_APPEND {
            if !items.iter().any(|i| i == v) {
                items.push(v.to_string());
            }
        } else {
            items.retain(|i| i != v);
        }
    }
    match items.as_slice() {
        [one] => apply_config(config, key, one).map_err(|why| {
            (
                codes::INVALID_CONFIG,
                format!("cleanup.policy={one:?}: {why}"),
            )
        }),
        [] => Err((
            codes::INVALID_CONFIG,
            "cleanup.policy cannot be empty".into(),
        )),
        _ => Err((
            codes::INVALID_CONFIG,
            format!(
                "cleanup.policy={:?}: one of delete, compact (both at once is not supported)",
                items.join(",")
            ),
        )),
    }
}

pub(crate) fn incremental_alter(
    ctx: &RequestContext,
    req: IncrementalAlterConfigsRequest,
) -> ResponseKind {
    let responses = alter_resources(ctx, req.resources, req.validate_only, false);
    ResponseKind::IncrementalAlterConfigs(
        IncrementalAlterConfigsResponse::default().with_responses(responses),
    )
}

/// The older AlterConfigs: the configs given replace the topic's whole
/// configuration, anything not given goes back to its default. Served as
/// IncrementalAlterConfigs SETs on top of the defaults, so that both APIs
/// check a config alike.
pub(crate) fn alter(ctx: &RequestContext, req: AlterConfigsRequest) -> ResponseKind {
    use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse as Answer;
    let resources = req
        .resources
        .into_iter()
        .map(|resource| {
            let sets = resource
                .configs
                .into_iter()
                .map(|c| {
                    AlterableConfig::default()
                        .with_name(c.name)
                        .with_config_operation(OP_SET)
                        .with_value(c.value)
                })
                .collect();
            AlterConfigsResource::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name)
                .with_configs(sets)
        })
        .collect();
    let responses = alter_resources(ctx, resources, req.validate_only, true)
        .into_iter()
        .map(|a| {
            Answer::default()
                .with_error_code(a.error_code)
                .with_error_message(a.error_message)
                .with_resource_type(a.resource_type)
                .with_resource_name(a.resource_name)
        })
        .collect();
    ResponseKind::AlterConfigs(AlterConfigsResponse::default().with_responses(responses))
}

/// Alters each resource (see `alter_resource`) by its operations, in the
/// order given, and answers for each.
fn alter_resources(
    ctx: &RequestContext,
    resources: Vec<AlterConfigsResource>,
    validate_only: bool,
    from_default: bool,
) -> Vec<AlterConfigsResourceResponse> {
    resources
        .into_iter()
        .map(|resource| {
            let name = resource.resource_name.to_string();
            let outcome = alter_resource(
                ctx,
                resource.resource_type,
                &name,
                validate_only,
                from_default,
                |config| apply_operations(config, &resource.configs),
            );
            let mut result = AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name);
            if let Err((code, message)) = outcome {
                result.error_code = code;
                result.error_message = Some(text(message));
            }
            result
        })
        .collect()
}

/// Applies one resource's config operations in the order given.
fn apply_operations(config: &mut TopicConfig, configs: &[AlterableConfig]) -> Result<(), Refusal> {
    let mut seen = Vec::new();
    for c in configs {
        let key = c.name.as_str();
        if !known_key(key, &mut seen)? {
            continue;
        }
        match c.config_operation {
            OP_SET => set(config, key, c.value.as_ref())?,
            OP_DELETE => reset_config(config, key),
            OP_APPEND | OP_SUBTRACT => {
                edit_list(config, key, c.config_operation, c.value.as_ref())?
            }
            other => {
                return Err((
                    codes::INVALID_REQUEST,
                    format!(
                        "config operation {other} is not one of SET (0), DELETE (1), APPEND (2), SUBTRACT (3)"
                    ),
                ));
            }
        }
    }
    Ok(())
}
