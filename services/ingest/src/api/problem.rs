//! RFC 9457 problem documents: every API error has a stable `type`, a human `detail` and, when
//! a field is at fault, its name.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use hookstream_model::ValidationError;
use hookstream_store::StoreError;

/// An API error, rendered as `application/problem+json`.
#[derive(Debug)]
pub struct Problem {
    status: StatusCode,
    /// Stable machine-readable kind; the `type` URI ends with it.
    kind: &'static str,
    title: &'static str,
    detail: String,
    field: Option<String>,
    /// Seconds to send in `Retry-After`.
    retry_after: Option<u64>,
}

impl Problem {
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            kind,
            title,
            detail: detail.into(),
            field: None,
            retry_after: None,
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// Names the field at fault as part of `prefix` (`events[3].type`; `events[3]` for the
    /// whole item).
    pub fn nested_under(mut self, prefix: &str) -> Self {
        self.field = Some(match self.field.as_deref() {
            Some("") | None => prefix.to_owned(),
            Some(field) => format!("{prefix}.{field}"),
        });
        self
    }

    /// The field at fault, if one is.
    #[cfg(test)]
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    #[cfg(test)]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid-request",
            "Invalid request",
            detail,
        )
        .with_field(field)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
            format!("{what} not found"),
        )
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
            "send a valid API token as `Authorization: Bearer <token>`",
        )
    }

    /// A token that was recognised but is no longer (or never was) good, with why.
    pub fn unauthorized_because(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
            detail,
        )
    }

    /// The caller is who it says, but this is not for its key: admin routes for a tenant key,
    /// or another tenant named in a body or query.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "Payload too large",
            format!("the request body is over the limit of {limit} bytes"),
        )
    }

    /// The tenant sent events faster than its rate allows; try again after `wait`.
    pub fn rate_limited(tenant: &str, wait: std::time::Duration) -> Self {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut problem = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many requests",
            format!("tenant `{tenant}` is over its event rate; try again in {seconds} s"),
        );
        problem.retry_after = Some(seconds.max(1));
        problem
    }

    /// The tenant has as many requests in progress as it may; try again in a second.
    pub fn tenant_busy(tenant: &str) -> Self {
        let mut problem = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "tenant-busy",
            "Too many requests in progress",
            format!(
                "tenant `{tenant}` has as many requests in progress as it may; try again shortly"
            ),
        );
        problem.retry_after = Some(1);
        problem
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            detail,
        )
    }
}

impl From<ValidationError> for Problem {
    fn from(err: ValidationError) -> Self {
        Self::invalid(err.field.clone(), err.to_string())
    }
}

impl From<StoreError> for Problem {
    fn from(err: StoreError) -> Self {
        if let StoreError::InvalidCursor(_) = &err {
            return Self::invalid("after", err.to_string());
        }
        tracing::error!(error = %err, "store operation failed");
        Self::unavailable("the store is not available; try again")
    }
}

impl Problem {
    /// The problem document, for embedding (one item's problem in a batch answer).
    pub fn document(&self) -> serde_json::Value {
        let mut body = json!({
            "type": format!("urn:hookstream:problem:{}", self.kind),
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if let Some(field) = &self.field {
            body["field"] = json!(field);
        }
        body
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.document().to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        } else if self.status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}
