//! HTTP problems as gRPC statuses.

use axum::http::StatusCode;
use kappa_service::Problem;
use tonic::{Code, Status};

/// The metadata entry that carries a refusal's problem document (RFC 9457
/// JSON), the same the HTTP API answers.
pub const PROBLEM_METADATA: &str = "kappa-problem-bin";

/// The gRPC code of an HTTP status, as gRPC's own HTTP mapping reads it
/// and with the gateway's meanings: 409 is a retry (`ABORTED`), 422 an
/// invalid argument, 507 (disk short of space) like 429 `RESOURCE_EXHAUSTED`.
pub(crate) fn code_of(status: StatusCode) -> Code {
    match status.as_u16() {
        400 | 413 | 422 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        409 => Code::Aborted,
        429 | 507 => Code::ResourceExhausted,
        503 => Code::Unavailable,
        504 => Code::DeadlineExceeded,
        _ => Code::Internal,
    }
}

/// The gRPC status of a problem: its code, its detail as the message, and
/// the whole problem in [`PROBLEM_METADATA`].
pub(crate) fn status_of(problem: &Problem) -> Status {
    let mut status = Status::new(code_of(problem.status()), problem.detail());
    let body = problem.body().to_string();
    status.metadata_mut().insert_bin(
        PROBLEM_METADATA,
        tonic::metadata::MetadataValue::from_bytes(body.as_bytes()),
    );
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_carries_its_problem() {
        let problem =
            Problem::new(StatusCode::FORBIDDEN, "alice may not").with("reason", "forbidden");
        let status = status_of(&problem);
        assert_eq!(status.code(), Code::PermissionDenied);
        assert_eq!(status.message(), "alice may not");
        let carried = status
            .metadata()
            .get_bin(PROBLEM_METADATA)
            .and_then(|v| v.to_bytes().ok())
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&carried).unwrap();
        assert_eq!(body["status"], 403);
        assert_eq!(body["reason"], "forbidden");
    }
}
