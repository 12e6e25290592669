//! The classification of an upstream failure, as data: kind, retryability, server-given wait.
//!
//! Routing (health, breaker, windows) and providers (who produce it) both read it; retry and
//! fallback decisions read these fields, and nothing downstream matches on message text. The
//! kind table follows ../shared/reference/providers-and-routing.md §1.4, §2.2, §3.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// 429 rate limit: wait (retry-after) and retry, or use another deployment. Not a failure.
    RateLimited,
    /// Quota or credit exhausted (429 `insufficient_quota`, Gemini per-day quota, Anthropic spend
    /// limit, 402 billing): do not retry; disable the deployment and fall back.
    QuotaExhausted,
    /// 503 / 529: provider overloaded. Retry with backoff, count as a failure.
    Overloaded,
    /// 500 / 502 / 504 and other 5xx.
    Server,
    /// No answer in time (connect, TTFT or total timeout; 408; Gemini DEADLINE_EXCEEDED).
    Timeout,
    /// Could not connect, or the connection broke before a response.
    Connect,
    /// The stream ended before the model finished (no terminator), or broke mid-body.
    StreamCut,
    /// The upstream answered, but not in its documented format.
    MalformedResponse,
    /// The prompt does not fit this model's context window: another model may take it.
    ContextLength,
    /// 400: the request itself is wrong. The same request fails everywhere: fail fast.
    InvalidRequest,
    /// 401: bad credentials for this provider.
    Auth,
    /// 403 / region / precondition: this provider will not serve it.
    PermissionDenied,
    /// 404: the model does not exist at this provider.
    NotFound,
    /// This provider cannot express something the request carries (audio input for
    /// Anthropic, a file by id for Anthropic or Gemini): refused before any call. Another
    /// model may take it, so it allows fallback; the same model would refuse it again, so it is
    /// not retried; and it says nothing about the model's health.
    Unsupported,
}

impl ErrorKind {
    /// Retry the same deployment (after a backoff) by default?
    pub fn default_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::RateLimited
                | ErrorKind::Overloaded
                | ErrorKind::Server
                | ErrorKind::Timeout
                | ErrorKind::Connect
                | ErrorKind::StreamCut
                | ErrorKind::MalformedResponse
        )
    }

    /// May another model answer where this one could not? Only a request that is wrong in
    /// itself (`InvalidRequest`) fails the whole call; one this provider cannot express
    /// (`Unsupported`) goes to the next candidate.
    pub fn allows_fallback(self) -> bool {
        !matches!(self, ErrorKind::InvalidRequest)
    }

    /// Does this count against the model's reliability (breaker, success rate)? Client errors
    /// and rate limits do not: 429 is a cool-down, not a failure.
    pub fn is_health_failure(self) -> bool {
        matches!(
            self,
            ErrorKind::Overloaded
                | ErrorKind::Server
                | ErrorKind::Timeout
                | ErrorKind::Connect
                | ErrorKind::StreamCut
                | ErrorKind::MalformedResponse
        )
    }

    /// Low-cardinality label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::QuotaExhausted => "quota_exhausted",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::Server => "server_error",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Connect => "connect_error",
            ErrorKind::StreamCut => "stream_cut",
            ErrorKind::MalformedResponse => "malformed_response",
            ErrorKind::ContextLength => "context_length_exceeded",
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::Auth => "auth_error",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Unsupported => "unsupported",
        }
    }
}

/// An upstream failure.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{kind:?} (status {status:?}): {message}")]
pub struct ProviderError {
    pub kind: ErrorKind,
    pub retryable: bool,
    /// The wait the provider asked for (retry-after, retry-after-ms, RetryInfo.retryDelay).
    pub retry_after: Option<Duration>,
    /// HTTP status when the upstream answered with one.
    pub status: Option<u16>,
    /// The upstream's own message (for logs; the client sees a gateway-worded summary).
    pub message: String,
    /// The request field a refusal of the request names (`messages[1].content[0]`), when the
    /// refusal is the gateway's own (`Unsupported`); the client is told which field to change.
    pub param: Option<String>,
}

impl ProviderError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ProviderError {
            kind,
            retryable: kind.default_retryable(),
            retry_after: None,
            status: None,
            message: message.into(),
            param: None,
        }
    }

    /// A request this provider cannot express, naming the field that carries it.
    pub fn unsupported(param: impl Into<String>, message: impl Into<String>) -> Self {
        let mut e = ProviderError::new(ErrorKind::Unsupported, message);
        e.param = Some(param.into());
        e
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    pub fn with_retry_after(mut self, wait: Option<Duration>) -> Self {
        self.retry_after = wait;
        self
    }

    /// A body that could not be parsed as the provider's documented JSON.
    pub fn malformed(what: &str, err: impl std::fmt::Display) -> Self {
        ProviderError::new(ErrorKind::MalformedResponse, format!("{what}: {err}"))
    }

    /// A stream that ended without its terminator.
    pub fn cut(what: &str) -> Self {
        ProviderError::new(ErrorKind::StreamCut, what.to_owned())
    }
}

/// The kind for an HTTP status when the body says nothing more specific. Shared by every
/// provider; each refines 400 and 429 from its own error body.
pub fn kind_for_status(status: u16) -> ErrorKind {
    match status {
        400 | 413 | 415 | 422 => ErrorKind::InvalidRequest,
        401 => ErrorKind::Auth,
        402 => ErrorKind::QuotaExhausted,
        403 => ErrorKind::PermissionDenied,
        404 => ErrorKind::NotFound,
        408 => ErrorKind::Timeout,
        409 => ErrorKind::Server,
        429 => ErrorKind::RateLimited,
        503 | 529 => ErrorKind::Overloaded,
        504 => ErrorKind::Timeout,
        _ if status >= 500 => ErrorKind::Server,
        _ => ErrorKind::InvalidRequest,
    }
}
