//! The requests the node serves, one module per family of APIs.

pub(crate) mod cluster;
mod configs;
mod fetch;
mod groups;
mod offsets;
mod outcomes;
mod produce;
mod topics;
mod transactions;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Encodable, StrBytes};

use crate::server::Shared;

/// One request, decoded, with what its handler needs.
pub(crate) struct RequestContext {
    pub shared: Arc<Shared>,
    pub api_key: ApiKey,
    pub version: i16,
    pub correlation_id: i32,
    pub client_id: String,
    pub peer: SocketAddr,
    /// When the request was decoded, for the latency figures.
    pub started: std::time::Instant,
    /// Who sent it, when the node asks clients to authenticate.
    pub principal: Option<Arc<kappa_auth::Principal>>,
}

impl RequestContext {
    /// Whether the client may do `access`: always on a node without
    /// security settings, else as their policy says.
    pub(crate) fn allows(&self, access: &kappa_auth::Access<'_>) -> bool {
        self.shared
            .config
            .security
            .as_ref()
            .is_none_or(|s| s.allows(self.principal.as_deref(), access))
    }

    pub(crate) fn may_topic(&self, name: &str, operation: kappa_auth::TopicOperation) -> bool {
        self.allows(&kappa_auth::Access::Topic { name, operation })
    }

    pub(crate) fn may_group(&self, name: &str) -> bool {
        self.allows(&kappa_auth::Access::Group { name })
    }

    pub(crate) fn may_transactional_id(&self, id: &str) -> bool {
        self.allows(&kappa_auth::Access::TransactionalId { id })
    }

    /// Frames the answer to this request, counting its error codes and
    /// how long it took.
    pub(crate) fn respond(&self, body: &ResponseKind) -> Result<Option<Bytes>, String> {
        self.shared
            .stats
            .count_answer(self.api_key, self.started.elapsed(), |f| {
                outcomes::error_codes(body, f);
            });
        encode(self.api_key, self.version, self.correlation_id, body).map(Some)
    }
}

type ResponseFuture = Pin<Box<dyn Future<Output = Result<Option<Bytes>, String>> + Send>>;

/// A response on its way: ready, being made, or never sent (`acks=0`).
pub(crate) enum Pending {
    Ready(Result<Option<Bytes>, String>),
    Later(ResponseFuture),
}

impl Pending {
    pub(crate) async fn into_response(self) -> Result<Option<Bytes>, String> {
        match self {
            Self::Ready(r) => r,
            Self::Later(f) => f.await,
        }
    }

    /// A response made now.
    fn now(ctx: &RequestContext, body: ResponseKind) -> Self {
        Self::Ready(ctx.respond(&body))
    }

    /// The response `handler` makes to `request` on the blocking pool (it
    /// reads or writes the log).
    fn blocking<R: Send + 'static>(
        ctx: RequestContext,
        request: R,
        handler: impl FnOnce(&RequestContext, R) -> ResponseKind + Send + 'static,
    ) -> Self {
        Self::spawned(async move {
            let (ctx, body) = tokio::task::spawn_blocking(move || {
                let body = handler(&ctx, request);
                (ctx, body)
            })
            .await
            .map_err(|e| format!("a request handler failed: {e}"))?;
            ctx.respond(&body)
        })
    }

    /// A response made by an asynchronous handler, running now on its own
    /// task so that later requests of the connection proceed meanwhile.
    fn spawned(work: impl Future<Output = Result<Option<Bytes>, String>> + Send + 'static) -> Self {
        let handle = tokio::spawn(work);
        Self::Later(Box::pin(async move {
            handle
                .await
                .map_err(|e| format!("a request handler failed: {e}"))?
        }))
    }
}

/// Starts handling one request.
pub(crate) fn dispatch(ctx: RequestContext, request: RequestKind) -> Pending {
    match request {
        RequestKind::ApiVersions(_) => Pending::now(&ctx, cluster::api_versions()),
        RequestKind::Metadata(r) => Pending::blocking(ctx, r, cluster::metadata),
        RequestKind::FindCoordinator(r) => Pending::now(&ctx, cluster::find_coordinator(&ctx, r)),
        RequestKind::DescribeCluster(r) => Pending::now(&ctx, cluster::describe_cluster(&ctx, r)),
        RequestKind::DescribeConfigs(r) => Pending::blocking(ctx, r, configs::describe),
        RequestKind::IncrementalAlterConfigs(r) => {
            Pending::blocking(ctx, r, configs::incremental_alter)
        }
        RequestKind::AlterConfigs(r) => Pending::blocking(ctx, r, configs::alter),
        RequestKind::CreatePartitions(r) => Pending::blocking(ctx, r, topics::create_partitions),
        RequestKind::CreateTopics(r) => Pending::blocking(ctx, r, topics::create),
        RequestKind::DeleteTopics(r) => Pending::blocking(ctx, r, topics::delete),
        RequestKind::Produce(r) => produce::produce(ctx, r),
        RequestKind::InitProducerId(r) => Pending::blocking(ctx, r, produce::init_producer_id),
        RequestKind::Fetch(r) => Pending::blocking(ctx, r, fetch::fetch),
        RequestKind::ListOffsets(r) => Pending::blocking(ctx, r, fetch::list_offsets),
        RequestKind::OffsetCommit(r) => Pending::blocking(ctx, r, offsets::commit),
        RequestKind::OffsetFetch(r) => Pending::blocking(ctx, r, offsets::fetch),
        RequestKind::AddPartitionsToTxn(r) => {
            Pending::blocking(ctx, r, transactions::add_partitions)
        }
        RequestKind::AddOffsetsToTxn(r) => Pending::blocking(ctx, r, transactions::add_offsets),
        RequestKind::TxnOffsetCommit(r) => Pending::blocking(ctx, r, transactions::commit_offsets),
        RequestKind::EndTxn(r) => Pending::blocking(ctx, r, transactions::end),
        RequestKind::JoinGroup(r) => groups::join(ctx, r),
        RequestKind::SyncGroup(r) => groups::sync(ctx, r),
        RequestKind::Heartbeat(r) => Pending::now(&ctx, groups::heartbeat(&ctx, r)),
        RequestKind::LeaveGroup(r) => Pending::now(&ctx, groups::leave(&ctx, r)),
        RequestKind::ListGroups(r) => Pending::blocking(ctx, r, groups::list),
        RequestKind::DescribeGroups(r) => Pending::blocking(ctx, r, groups::describe),
        RequestKind::DeleteGroups(r) => Pending::blocking(ctx, r, groups::delete),
        RequestKind::OffsetDelete(r) => Pending::blocking(ctx, r, offsets::delete),
        _ => Pending::Ready(Err(format!("{:?} is decoded but not served", ctx.api_key))),
    }
}

/// Frames one response: size, header, body.
pub(crate) fn encode(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<Bytes, String> {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, api_key.response_header_version(version))
        .map_err(|e| format!("{api_key:?} v{version} response header: {e:#}"))?;
    body.encode(&mut buf, version)
        .map_err(|e| format!("{api_key:?} v{version} response: {e:#}"))?;
    let size = i32::try_from(buf.len() - 4).map_err(|_| "response over 2 GiB".to_string())?;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}

/// A string for a response field.
pub(crate) fn text(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}
