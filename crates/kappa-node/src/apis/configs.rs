//! DescribeConfigs: a topic's configuration and the node's, as Kafka
//! names them, so admin tools and Kafka UIs can show them. Nothing can be
//! altered through the protocol yet, so every entry is read-only.

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse, ResponseKind};
use kappa_log::{CleanupPolicy, TopicConfig};

use super::{RequestContext, text};
use crate::codes;

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
                            .with_read_only(true)
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
