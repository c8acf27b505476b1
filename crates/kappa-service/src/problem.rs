//! Errors as RFC 9457 `application/problem+json` responses.

use axum_core::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Map, Value, json};

use crate::problem_type::ProblemType;

/// One problem: a status, a short title, a detail for this occurrence, and
/// any extension members (for example the list of schema violations).
///
/// ```
/// use http::StatusCode;
/// use kappa_service::Problem;
/// let p = Problem::new(StatusCode::NOT_FOUND, "no such command").with("id", "0190…");
/// assert_eq!(p.status(), StatusCode::NOT_FOUND);
/// ```
#[derive(Debug, Clone)]
pub struct Problem {
    status: StatusCode,
    detail: String,
    extensions: Map<String, Value>,
    retry_after_s: Option<u64>,
    kind: Option<&'static ProblemType>,
}

impl Problem {
    /// An OpenAPI response object for answers that are problems: `description`,
    /// and a body of the document's `Problem` schema (`#/components/schemas/Problem`,
    /// which the gateway's document defines).
    ///
    /// ```
    /// let r = kappa_service::Problem::openapi_response("No such card");
    /// assert_eq!(r["description"], "No such card");
    /// ```
    pub fn openapi_response(description: &str) -> Value {
        json!({"description": description, "content": {"application/problem+json":
            {"schema": {"$ref": "#/components/schemas/Problem"}}}})
    }

    /// A problem with a status and a human-readable detail.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            extensions: Map::new(),
            retry_after_s: None,
            kind: None,
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    /// 404: nothing at this address.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    /// 422: well-formed but invalid.
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
    }

    /// 500: the service failed; the detail is logged, not shown.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the service failed to answer; see its log",
        )
    }

    /// 503: try again later, after `retry_after_s` seconds.
    pub fn unavailable(detail: impl Into<String>, retry_after_s: u64) -> Self {
        Self {
            retry_after_s: Some(retry_after_s),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, detail)
        }
    }

    /// Adds an extension member.
    #[must_use]
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.extensions.insert(name.to_owned(), value.into());
        self
    }

    /// Names the problem's type (its `type` URI and `title`); without one a
    /// problem is `about:blank`, its status saying all there is.
    ///
    /// ```
    /// use kappa_service::{Problem, problem_type::DISK_FULL};
    /// let p = Problem::new(http::StatusCode::INSUFFICIENT_STORAGE, "not written").typed(&DISK_FULL);
    /// assert_eq!(p.body()["type"], "/problems/disk-full");
    /// ```
    #[must_use]
    pub fn typed(mut self, kind: &'static ProblemType) -> Self {
        self.kind = Some(kind);
        self
    }

    /// The problem's type, when it has one.
    pub fn kind(&self) -> Option<&'static ProblemType> {
        self.kind
    }

    /// Sets `Retry-After`.
    #[must_use]
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_s = Some(seconds);
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The detail text.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The problem document.
    pub fn body(&self) -> Value {
        let (kind, title) = match self.kind {
            Some(k) => (k.uri(), k.title),
            None => (
                "about:blank".to_owned(),
                self.status.canonical_reason().unwrap_or("Error"),
            ),
        };
        let mut body = json!({
            "type": kind,
            "title": title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if let Value::Object(m) = &mut body {
            for (k, v) in &self.extensions {
                m.insert(k.clone(), v.clone());
            }
        }
        body
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = self.body().to_string();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(s) = self.retry_after_s {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}

impl From<kappa_log::LogError> for Problem {
    fn from(e: kappa_log::LogError) -> Self {
        Problem::internal(e)
    }
}

impl From<kappa_streams::StreamsError> for Problem {
    fn from(e: kappa_streams::StreamsError) -> Self {
        Problem::internal(e)
    }
}
