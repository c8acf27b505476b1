//! The gateway's API over gRPC: commands, command status, views and live
//! streams (`proto/kappa/gateway/v1/gateway.proto`), with server reflection
//! and the standard health service, on the same address as the HTTP API.
//!
//! Requests go through the same code as their HTTP twins (validation,
//! authentication, the policy, idempotency, read-your-writes), so the two
//! faces answer alike; a refusal is the gRPC status of the HTTP problem,
//! which travels along in the `kappa-problem-bin` metadata entry.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use kappa_gateway::grpc::proto::{SendCommandRequest, gateway_client::GatewayClient};
//! let mut client = GatewayClient::connect("http://127.0.0.1:8080").await?;
//! let sent = client
//!     .send_command(SendCommandRequest {
//!         action: "add".into(),
//!         data_json: r#"{"amount": 5}"#.into(),
//!         key: Some("k1".into()),
//!         wait: true,
//!         ..Default::default()
//!     })
//!     .await?
//!     .into_inner();
//! println!("{} event(s)", sent.events.len());
//! # Ok(()) }
//! ```

mod health;
mod service;
mod status;

use axum::Router;
use tonic::service::interceptor::InterceptedService;

use crate::api::Shared;

/// The messages and the generated client and server of
/// `kappa.gateway.v1` (see the `.proto` for what each field means).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("kappa.gateway.v1");

    /// The encoded file descriptor set of `gateway.proto` (server reflection).
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("kappa_gateway_v1");
}

pub use status::PROBLEM_METADATA;

/// Adds the gRPC services to `router`: the gateway, health, and
/// reflection (v1 and v1alpha, which older tools still ask for). Added
/// after the HTTP layers, so HTTP's authentication, query checks and
/// problem answers do not wrap them: each gRPC call admits its sender and
/// answers in gRPC's terms.
pub(crate) fn routes(state: &Shared, mut router: Router) -> Router {
    let gateway = proto::gateway_server::GatewayServer::new(service::GatewayService::new(state))
        .max_decoding_message_size(state.config.body_limit_bytes);
    router = add(router, gateway);
    router = add(
        router,
        tonic_health::pb::health_server::HealthServer::new(health::Health::new(state)),
    );
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    // The descriptor sets are compiled in; building from them fails only
    // if they are broken, and then the API serves without reflection.
    match (reflection().build_v1(), reflection().build_v1alpha()) {
        (Ok(v1), Ok(v1alpha)) => {
            router = add(
                router,
                InterceptedService::new(
                    v1,
                    service::admitted(state, "/grpc.reflection.v1.ServerReflection"),
                ),
            );
            router = add(
                router,
                InterceptedService::new(
                    v1alpha,
                    service::admitted(state, "/grpc.reflection.v1alpha.ServerReflection"),
                ),
            );
        }
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "gRPC server reflection is off: its descriptors do not load");
        }
    }
    router
}

/// Routes every method of a gRPC service (`/{package.Service}/{method}`) to it.
fn add<S>(router: Router, service: S) -> Router
where
    S: tower::Service<axum::http::Request<tonic::body::Body>, Error = std::convert::Infallible>
        + tonic::server::NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Response: axum::response::IntoResponse,
    S::Future: Send + 'static,
{
    use tower::ServiceExt as _;
    router.route_service(
        &format!("/{}/{{*rest}}", S::NAME),
        service.map_request(|r: axum::extract::Request| r.map(tonic::body::Body::new)),
    )
}
