//! `ApiError`: the one conversion from any failure to an HTTP answer, in OpenAI's error shape
//! `{"error":{"message","type","param","code"}}` so every OpenAI SDK understands it.
//!
//! The layers below `api/` return the domain `crate::error::Error`; `From<Error>` here is the
//! only place that decides its status, `type` and `code`. Upstream details (their raw
//! messages, credentials problems) go to the log; the client gets a gateway-worded message that
//! names the model and the class of failure.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use switchyard_types::error::ErrorKind;

use crate::error::Error;

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's `type`: invalid_request_error, rate_limit_error, api_error, …
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
    pub retry_after: Option<Duration>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            retry_after: None,
        }
    }

    fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub fn invalid_json(detail: impl std::fmt::Display) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            format!("The request body is not valid JSON: {detail}"),
        )
        .code("invalid_json")
    }

    /// A missing or invalid field, named by its path (`messages[1].content`).
    pub fn invalid_param(param: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Error::invalid_param(param, message).into()
    }

    pub fn payload_too_large(limit: usize) -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!("The request body is larger than the gateway's limit of {limit} bytes."),
        )
        .code("request_too_large")
    }

    pub fn not_found(path: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("Unknown endpoint: {path}"),
        )
        .code("unknown_url")
    }

    pub fn method_not_allowed() -> Self {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            "Method not allowed for this endpoint.",
        )
        .code("method_not_allowed")
    }

    /// A model-calling endpoint was sent a body that is not `application/json`.
    pub fn unsupported_media_type(got: Option<&str>) -> Self {
        let got = got.map_or_else(
            || "no Content-Type".to_owned(),
            |g| format!("Content-Type '{}'", g.chars().take(100).collect::<String>()),
        );
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request_error",
            format!("This endpoint takes a JSON body (Content-Type: application/json); got {got}."),
        )
        .code("unsupported_media_type")
    }

    /// The `Host` header is not one of `server.allowed_hosts` (DNS rebinding, or a misroute).
    pub fn host_not_allowed(host: &str) -> Self {
        ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            "invalid_request_error",
            format!(
                "Host '{}' is not served here: add it to [server] allowed_hosts",
                host.chars().take(100).collect::<String>()
            ),
        )
        .code("host_not_allowed")
    }

    /// A cross-origin request from an origin `server.cors_origins` does not allow.
    pub fn origin_not_allowed(origin: &str) -> Self {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "invalid_request_error",
            format!(
                "Cross-origin requests from '{}' are not allowed: add the origin to [server] \
                 cors_origins",
                origin.chars().take(100).collect::<String>()
            ),
        )
        .code("origin_not_allowed")
    }

    /// A resource of the gateway's own API (a key id) does not exist.
    pub fn no_such(what: &str, id: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("No {what} with id '{id}'"),
        )
        .code("not_found")
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "api_error", message).code("internal")
    }

    fn param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// The error object alone, for an in-stream error event.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        use StatusCode as S;
        let message = e.to_string();
        let retry_after = e.retry_after();
        let invalid = "invalid_request_error";
        let mut api = match e {
            Error::InvalidParam { param, .. } => ApiError::new(S::BAD_REQUEST, invalid, message)
                .code("invalid_value")
                .param(param),
            Error::ModelNotFound { .. } => ApiError::new(S::NOT_FOUND, invalid, message)
                .code("model_not_found")
                .param("model"),
            Error::Unavailable { .. } => {
                ApiError::new(S::SERVICE_UNAVAILABLE, "api_error", message)
                    .code("no_model_available")
            }
            // The same answer as an upstream 429 passed on: SDKs raise their rate-limit error
            // and wait `retry-after`.
            Error::CoolingDown { .. } => {
                ApiError::new(S::TOO_MANY_REQUESTS, "rate_limit_error", message)
                    .code("rate_limit_exceeded")
            }
            Error::NoEligibleModel { .. } => ApiError::new(S::BAD_REQUEST, invalid, message)
                .code("no_eligible_model")
                .param("model"),
            Error::ContextLength { .. } => ApiError::new(S::BAD_REQUEST, invalid, message)
                .code("context_length_exceeded")
                .param("messages"),
            Error::PolicyDenied { status, .. } => {
                let status = S::from_u16(status).unwrap_or(S::FORBIDDEN);
                let kind = if status == S::SERVICE_UNAVAILABLE {
                    "api_error"
                } else {
                    invalid
                };
                ApiError::new(status, kind, message).code("policy_denied")
            }
            Error::PolicyFailed { .. } => {
                ApiError::new(S::SERVICE_UNAVAILABLE, "api_error", message).code("policy_error")
            }
            Error::PolicyInputTooLarge { .. } => {
                ApiError::new(S::PAYLOAD_TOO_LARGE, invalid, message)
                    .code("policy_input_too_large")
                    .param("messages")
            }
            Error::Unauthorized(_) => {
                ApiError::new(S::UNAUTHORIZED, invalid, message).code("invalid_api_key")
            }
            Error::Forbidden { param, .. } => {
                let mut api = ApiError::new(S::FORBIDDEN, "permission_error", message)
                    .code("permission_denied");
                api.param = param;
                api
            }
            Error::BudgetExceeded(_) => {
                ApiError::new(S::PAYMENT_REQUIRED, "insufficient_quota", message)
                    .code("budget_exceeded")
            }
            Error::RateLimited { .. } => {
                ApiError::new(S::TOO_MANY_REQUESTS, "rate_limit_error", message)
                    .code("rate_limit_exceeded")
            }
            Error::Upstream { error, .. } => {
                let (status, kind, code) = upstream_status(error.kind);
                let mut api = ApiError::new(status, kind, message).code(code);
                // Only the gateway's own refusals name a field; an upstream's do not.
                if error.kind == ErrorKind::Unsupported {
                    api.param = Some(error.param.unwrap_or_else(|| "model".to_owned()));
                }
                api
            }
            Error::LimitsUnavailable(_) => {
                ApiError::new(S::SERVICE_UNAVAILABLE, "api_error", message)
                    .code("limits_unavailable")
            }
            Error::Internal(_) => ApiError::internal(message),
        };
        api.retry_after = retry_after;
        api
    }
}

/// The status, OpenAI `type` and `code` of an upstream failure.
fn upstream_status(kind: ErrorKind) -> (StatusCode, &'static str, &'static str) {
    use ErrorKind as K;
    use StatusCode as S;
    match kind {
        K::RateLimited => (
            S::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "rate_limit_exceeded",
        ),
        K::QuotaExhausted => (
            S::SERVICE_UNAVAILABLE,
            "api_error",
            "upstream_quota_exhausted",
        ),
        K::Overloaded => (S::SERVICE_UNAVAILABLE, "api_error", "upstream_overloaded"),
        K::Timeout => (S::GATEWAY_TIMEOUT, "api_error", "upstream_timeout"),
        K::ContextLength => (
            S::BAD_REQUEST,
            "invalid_request_error",
            "context_length_exceeded",
        ),
        K::InvalidRequest => (
            S::BAD_REQUEST,
            "invalid_request_error",
            "upstream_rejected_request",
        ),
        K::Auth | K::PermissionDenied => (S::BAD_GATEWAY, "api_error", "upstream_auth_error"),
        K::NotFound => (S::BAD_GATEWAY, "api_error", "upstream_model_not_found"),
        // No candidate could express the request: the client's to change, named by `param`.
        K::Unsupported => (S::BAD_REQUEST, "invalid_request_error", "unsupported_value"),
        K::Server | K::Connect | K::StreamCut | K::MalformedResponse => {
            (S::BAD_GATEWAY, "api_error", "upstream_error")
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        // Doors with their own error shape (`/v1/messages`) re-render from this.
        response.extensions_mut().insert(self.clone());
        if let Some(code) = self.code {
            response
                .extensions_mut()
                .insert(super::admit::ErrorCode(code));
        }
        if let Some(wait) = self.retry_after {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}
