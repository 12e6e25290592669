//! `ApiError`: the one conversion from any failure to an HTTP answer, in OpenAI's error shape
//! `{"error":{"message","type","param","code"}}` so every OpenAI SDK understands it.
//!
//! Upstream details (their raw messages, credentials problems) go to the log; the client gets a
//! gateway-worded message that names the model and the class of failure.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::providers::{ErrorKind, ProviderError};

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
        let param = param.into();
        let mut e = ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            format!("Invalid '{param}': {message}"),
        )
        .code("invalid_value");
        e.param = Some(param);
        e
    }

    pub fn model_not_found(model: &str, available: &[&str]) -> Self {
        let mut e = ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!(
                "The model '{model}' does not exist or you do not have access to it. \
                 Available: {}.",
                available.join(", ")
            ),
        )
        .code("model_not_found");
        e.param = Some("model".into());
        e
    }

    /// Every candidate is out of service for now (breakers open, cooling down, disabled).
    pub fn unavailable(route: &str, detail: &str) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "api_error",
            format!("No model of {route} is available right now: {detail}"),
        )
        .code("no_model_available")
    }

    /// No candidate can serve this request as it is (capabilities, context, limits).
    pub fn no_eligible_model(route: &str, detail: &str) -> Self {
        let mut e = ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            format!("No model of route '{route}' can serve this request: {detail}"),
        )
        .code("no_eligible_model");
        e.param = Some("model".into());
        e
    }

    /// The prompt does not fit the model's context window (caught before any call).
    pub fn context_length(detail: &str) -> Self {
        let mut e = ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            format!("The prompt is too long: {detail}"),
        )
        .code("context_length_exceeded");
        e.param = Some("messages".into());
        e
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

    /// A routing policy refused the request (its own status, 4xx or 503).
    pub fn policy_denied(status: u16, policy: &str, code: &str, reason: &str) -> Self {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
        let kind = if status == StatusCode::SERVICE_UNAVAILABLE {
            "api_error"
        } else {
            "invalid_request_error"
        };
        ApiError::new(
            status,
            kind,
            format!("Policy '{policy}' denied the request ({code}): {reason}"),
        )
        .code("policy_denied")
    }

    /// A fail-closed policy could not run, so the request is refused rather than sent unchecked.
    pub fn policy_failed(policy: &str, detail: &str) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "api_error",
            format!("Policy '{policy}' could not run and fails closed: {detail}"),
        )
        .code("policy_error")
    }

    /// No usable credentials for the gateway itself (virtual key or admin key).
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "invalid_request_error", message)
            .code("invalid_api_key")
    }

    /// The key is valid but may not do this (a route or model outside its allow-list).
    pub fn forbidden(param: Option<String>, message: impl Into<String>) -> Self {
        let mut e = ApiError::new(StatusCode::FORBIDDEN, "permission_error", message)
            .code("permission_denied");
        e.param = param;
        e
    }

    /// The key's budget for the period is spent (or reserved by requests in flight).
    pub fn budget_exceeded(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::PAYMENT_REQUIRED, "insufficient_quota", message)
            .code("budget_exceeded")
    }

    /// Over the key's requests- or tokens-per-minute limit.
    pub fn rate_limited(message: impl Into<String>, retry_after: Duration) -> Self {
        let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", message)
            .code("rate_limit_exceeded");
        e.retry_after = Some(retry_after);
        e
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

    /// An upstream failure, as the client should see it.
    pub fn upstream(model: &str, err: &ProviderError) -> Self {
        use ErrorKind as K;
        let (status, kind, code, what) = match err.kind {
            K::RateLimited => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "rate_limit_exceeded",
                "is rate limited upstream",
            ),
            K::QuotaExhausted => (
                StatusCode::SERVICE_UNAVAILABLE,
                "api_error",
                "upstream_quota_exhausted",
                "has exhausted its upstream quota",
            ),
            K::Overloaded => (
                StatusCode::SERVICE_UNAVAILABLE,
                "api_error",
                "upstream_overloaded",
                "is overloaded upstream",
            ),
            K::Timeout => (
                StatusCode::GATEWAY_TIMEOUT,
                "api_error",
                "upstream_timeout",
                "did not answer in time",
            ),
            K::ContextLength => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "context_length_exceeded",
                "cannot fit this prompt in its context window",
            ),
            K::InvalidRequest => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "upstream_rejected_request",
                "rejected the request",
            ),
            K::Auth | K::PermissionDenied => (
                StatusCode::BAD_GATEWAY,
                "api_error",
                "upstream_auth_error",
                "refused the gateway's credentials",
            ),
            K::NotFound => (
                StatusCode::BAD_GATEWAY,
                "api_error",
                "upstream_model_not_found",
                "is not known to its provider",
            ),
            K::Server | K::Connect | K::StreamCut | K::MalformedResponse => (
                StatusCode::BAD_GATEWAY,
                "api_error",
                "upstream_error",
                "failed upstream",
            ),
        };
        // A client error is the client's to fix: show the provider's own words. For the rest
        // the provider's message stays in the log.
        let detail = if matches!(err.kind, K::InvalidRequest | K::ContextLength) {
            format!(": {}", err.message)
        } else {
            format!(" ({})", err.kind.label())
        };
        let mut e = ApiError::new(status, kind, format!("Model '{model}' {what}{detail}"));
        e.code = Some(code);
        e.retry_after = err.retry_after;
        e
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
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
