//! `grpc.health.v1.Health`, answered from the service's own state at each
//! call: the server (`""`) is serving while its log can go on (as
//! `/health`), the gateway service (`kappa.gateway.v1.Gateway`) once it is
//! ready (as `/ready`).

use std::pin::Pin;
use std::time::Duration;

use futures_util::Stream;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

use crate::api::Shared;

/// The gateway service's name, as health checks ask for it.
const GATEWAY_SERVICE: &str = "kappa.gateway.v1.Gateway";

/// How often a watch looks at the status again: the readiness it follows
/// (restores catching up, a topology stopping) changes over seconds.
const WATCH_EVERY: Duration = Duration::from_secs(1);

pub(crate) struct Health {
    state: Shared,
}

impl Health {
    pub(crate) fn new(state: &Shared) -> Self {
        Self {
            state: state.clone(),
        }
    }
}

/// The status of `service` now; `None` for a service this server does not have.
fn status_of(state: &Shared, service: &str) -> Option<ServingStatus> {
    let closing = state.closing.load(std::sync::atomic::Ordering::Acquire);
    let up = match service {
        "" => !closing && state.log.health().is_ok(),
        GATEWAY_SERVICE => !closing && crate::api::ops::ready(state).is_ok(),
        _ => return None,
    };
    Some(if up {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    })
}

fn response(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse {
        status: status.into(),
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl tonic_health::pb::health_server::Health for Health {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let service = &request.get_ref().service;
        status_of(&self.state, service)
            .map(|s| Response::new(response(s)))
            .ok_or_else(|| Status::not_found(format!("no service {service:?} here")))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let service = request.into_inner().service;
        let state = self.state.clone();
        // The current status at once, then each change; an unknown service
        // stays SERVICE_UNKNOWN (the protocol keeps the call open). When
        // the service shuts down the watch says NOT_SERVING and ends, so
        // that it does not hold the graceful shutdown.
        let changes = futures_util::stream::unfold(Some(None), move |last| {
            let state = state.clone();
            let service = service.clone();
            async move {
                let last = last?;
                loop {
                    let now = status_of(&state, &service).unwrap_or(ServingStatus::ServiceUnknown);
                    let closing = state.closing.load(std::sync::atomic::Ordering::Acquire);
                    if last != Some(now) || closing {
                        let next = (!closing).then_some(Some(now));
                        return Some((Ok(response(now)), next));
                    }
                    tokio::time::sleep(WATCH_EVERY).await;
                }
            }
        });
        Ok(Response::new(Box::pin(changes)))
    }
}
