//! The cluster as clients see it: one node (id 0) that leads every
//! partition and coordinates every group.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, DescribeClusterRequest, DescribeClusterResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, MetadataRequest, MetadataResponse,
    ResponseKind, TopicName,
};
use kappa_log::{LogError, TopicSpec, validate_topic_name};

use super::{Pending, RequestContext, encode, text};
use crate::codes;
use crate::versions::SUPPORTED_APIS;

/// The node's id: the only broker of its cluster.
pub(crate) const NODE_ID: i32 = 0;

pub(crate) fn api_versions() -> ResponseKind {
    let mut r = ApiVersionsResponse::default();
    r.api_keys = SUPPORTED_APIS
        .iter()
        .map(|a| {
            ApiVersion::default()
                .with_api_key(a.key as i16)
                .with_min_version(a.min)
                .with_max_version(a.max)
        })
        .collect();
    ResponseKind::ApiVersions(r)
}

/// The answer to an `ApiVersions` request newer than the node serves.
pub(crate) fn api_versions_unsupported(correlation_id: i32) -> Pending {
    let ResponseKind::ApiVersions(mut r) = api_versions() else {
        unreachable!("api_versions makes an ApiVersions response")
    };
    r.error_code = codes::UNSUPPORTED_VERSION;
    Pending::Ready(
        encode(
            ApiKey::ApiVersions,
            0,
            correlation_id,
            &ResponseKind::ApiVersions(r),
        )
        .map(Some),
    )
}

pub(crate) fn metadata(ctx: &RequestContext, req: MetadataRequest) -> ResponseKind {
    let shared = &ctx.shared;
    let (host, port) = shared.advertised.clone();
    let mut r = MetadataResponse::default();
    r.brokers = vec![
        MetadataResponseBroker::default()
            .with_node_id(BrokerId(NODE_ID))
            .with_host(text(host))
            .with_port(port),
    ];
    if ctx.version >= 2 {
        r.cluster_id = Some(text(shared.cluster_id.clone()));
    }
    if ctx.version >= 1 {
        r.controller_id = BrokerId(NODE_ID);
    }
    // v0 asks for every topic with an empty list; later versions with null.
    let names: Vec<Option<String>> = match req.topics {
        Some(topics) if !(topics.is_empty() && ctx.version == 0) => topics
            .into_iter()
            .map(|t| t.name.map(|n| n.0.to_string()))
            .collect(),
        // Every topic: those the client may not describe are left out.
        _ => match shared.log.list_topics() {
            Ok(all) => all
                .into_iter()
                .filter(|s| ctx.may_topic(&s.name, kappa_auth::TopicOperation::Describe))
                .map(|s| Some(s.name))
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "listing topics for a metadata request failed");
                Vec::new()
            }
        },
    };
    let auto_create =
        shared.config.auto_create_topics && (ctx.version < 4 || req.allow_auto_topic_creation);
    r.topics = names
        .into_iter()
        .map(|name| topic_metadata(ctx, name, auto_create))
        .collect();
    ResponseKind::Metadata(r)
}

fn topic_metadata(
    ctx: &RequestContext,
    name: Option<String>,
    auto_create: bool,
) -> MetadataResponseTopic {
    let log = &ctx.shared.log;
    let mut t = MetadataResponseTopic::default();
    let Some(name) = name else {
        t.error_code = codes::UNKNOWN_TOPIC_OR_PARTITION;
        return t;
    };
    t.name = Some(TopicName(text(name.clone())));
    if validate_topic_name(&name).is_err() {
        t.error_code = codes::INVALID_TOPIC_EXCEPTION;
        return t;
    }
    if !ctx.may_topic(&name, kappa_auth::TopicOperation::Describe) {
        t.error_code = codes::TOPIC_AUTHORIZATION_FAILED;
        return t;
    }
    let mut count = log.partition_count(&name);
    if auto_create
        && matches!(count, Err(LogError::UnknownTopic(_)))
        && ctx.may_topic(&name, kappa_auth::TopicOperation::Create)
    {
        let spec = TopicSpec::new(
            name.clone(),
            ctx.shared.config.auto_create_partitions.max(1),
        );
        match log.create_topic(&spec) {
            Ok(()) | Err(LogError::TopicExists(_)) => {
                tracing::info!(topic = %name, client = %ctx.client_id, "created a topic a client asked for");
            }
            Err(e) => {
                tracing::warn!(topic = %name, error = %e, "creating a topic a client asked for failed")
            }
        }
        count = log.partition_count(&name);
    }
    match count {
        Ok(n) => {
            t.partitions = (0..n)
                .map(|p| {
                    let mut m = MetadataResponsePartition::default()
                        .with_partition_index(p as i32)
                        .with_leader_id(BrokerId(NODE_ID))
                        .with_replica_nodes(vec![BrokerId(NODE_ID)])
                        .with_isr_nodes(vec![BrokerId(NODE_ID)]);
                    if ctx.version >= 7 {
                        m.leader_epoch = 0;
                    }
                    m
                })
                .collect();
        }
        Err(e) => t.error_code = codes::for_log_error(&e),
    }
    t
}

/// Every group and every transactional id is coordinated by this node.
pub(crate) fn find_coordinator(ctx: &RequestContext, req: FindCoordinatorRequest) -> ResponseKind {
    let (host, port) = ctx.shared.advertised.clone();
    let mut r = FindCoordinatorResponse::default();
    // Key type 1 is a transactional id, 0 a group.
    let refusal = |key: &str| match req.key_type {
        1 if !ctx.may_transactional_id(key) => codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        1 => codes::NONE,
        _ if !ctx.may_group(key) => codes::GROUP_AUTHORIZATION_FAILED,
        _ => codes::NONE,
    };
    if ctx.version >= 4 {
        r.coordinators = req
            .coordinator_keys
            .iter()
            .map(|key| {
                let c = Coordinator::default()
                    .with_key(key.clone())
                    .with_error_code(refusal(key.as_str()));
                if c.error_code != codes::NONE {
                    return c.with_node_id(BrokerId(-1)).with_port(-1);
                }
                c.with_node_id(BrokerId(NODE_ID))
                    .with_host(text(host.clone()))
                    .with_port(port)
            })
            .collect();
    } else {
        r.error_code = refusal(req.key.as_str());
        if r.error_code == codes::NONE {
            r.node_id = BrokerId(NODE_ID);
            r.host = text(host);
            r.port = port;
        } else {
            r.node_id = BrokerId(-1);
            r.port = -1;
        }
    }
    ResponseKind::FindCoordinator(r)
}

pub(crate) fn describe_cluster(ctx: &RequestContext, _req: DescribeClusterRequest) -> ResponseKind {
    let (host, port) = ctx.shared.advertised.clone();
    let mut r = DescribeClusterResponse::default();
    r.cluster_id = text(ctx.shared.cluster_id.clone());
    r.controller_id = BrokerId(NODE_ID);
    r.brokers = vec![
        DescribeClusterBroker::default()
            .with_broker_id(BrokerId(NODE_ID))
            .with_host(text(host))
            .with_port(port),
    ];
    ResponseKind::DescribeCluster(r)
}
