//! `ProviderError`: what went wrong upstream, as data — kind, retryability, server-given wait.
//!
//! Retry and fallback decisions read these fields; nothing downstream matches on message text.
//! The kind table follows ../shared/reference/providers-and-routing.md §1.4, §2.2, §3.

use std::time::{Duration, SystemTime};

use http::HeaderMap;

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
    /// itself (`InvalidRequest`) fails the whole call.
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
}

impl ProviderError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ProviderError {
            kind,
            retryable: kind.default_retryable(),
            retry_after: None,
            status: None,
            message: message.into(),
        }
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    pub fn with_retry_after(mut self, wait: Option<Duration>) -> Self {
        self.retry_after = wait;
        self
    }

    /// Classify a transport error from reqwest.
    pub fn from_reqwest(err: &reqwest::Error) -> Self {
        // reqwest calls a connection that drops mid-body a "decode" error; we never use its JSON
        // decoding (bodies are parsed here), so both mean the answer broke off.
        let kind = if err.is_timeout() {
            ErrorKind::Timeout
        } else if err.is_decode() || err.is_body() {
            ErrorKind::StreamCut
        } else {
            ErrorKind::Connect
        };
        // The Display of a reqwest error can contain the URL; that holds no secrets here (keys
        // travel in headers), but keep only the error chain's words.
        ProviderError::new(kind, error_chain(err))
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

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut src = err.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
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

/// The wait a response asks for: `retry-after-ms`, then `retry-after` (seconds, possibly
/// fractional, or an HTTP date). Waits over two minutes are ignored, as OpenAI's SDK does.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    const MAX: Duration = Duration::from_secs(120);
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let wait = if let Some(ms) = header("retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok())
    {
        Duration::try_from_secs_f64(ms / 1000.0).ok()
    } else if let Some(v) = header("retry-after") {
        let v = v.trim();
        match v.parse::<f64>() {
            Ok(secs) => Duration::try_from_secs_f64(secs).ok(),
            Err(_) => httpdate::parse_http_date(v)
                .ok()
                .map(|at| at.duration_since(SystemTime::now()).unwrap_or_default()),
        }
    } else {
        None
    }?;
    (wait <= MAX).then_some(wait)
}

/// OpenAI's `x-should-retry: true|false` overrides the status-derived decision.
pub fn should_retry_override(headers: &HeaderMap) -> Option<bool> {
    match headers.get("x-should-retry")?.to_str().ok()? {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// Parse a protobuf Duration string such as `"22s"` or `"1.5s"` (Gemini's RetryInfo).
pub fn parse_proto_duration(s: &str) -> Option<Duration> {
    let secs: f64 = s.trim().strip_suffix('s')?.parse().ok()?;
    Duration::try_from_secs_f64(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn retry_after_prefers_ms_then_seconds() {
        let h = headers(&[("retry-after-ms", "1500"), ("retry-after", "9")]);
        assert_eq!(retry_after(&h), Some(Duration::from_millis(1500)));
        let h = headers(&[("retry-after", "2.5")]);
        assert_eq!(retry_after(&h), Some(Duration::from_millis(2500)));
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn retry_after_ignores_waits_over_two_minutes() {
        assert_eq!(retry_after(&headers(&[("retry-after", "600")])), None);
    }

    #[test]
    fn retry_after_accepts_http_dates() {
        let at = SystemTime::now() + Duration::from_secs(30);
        let h = headers(&[("retry-after", &httpdate::fmt_http_date(at))]);
        let wait = retry_after(&h).unwrap();
        assert!(wait > Duration::from_secs(25) && wait <= Duration::from_secs(30));
    }

    #[test]
    fn status_table() {
        assert_eq!(kind_for_status(429), ErrorKind::RateLimited);
        assert_eq!(kind_for_status(529), ErrorKind::Overloaded);
        assert_eq!(kind_for_status(503), ErrorKind::Overloaded);
        assert_eq!(kind_for_status(500), ErrorKind::Server);
        assert_eq!(kind_for_status(401), ErrorKind::Auth);
        assert!(!ErrorKind::RateLimited.is_health_failure());
        assert!(ErrorKind::ContextLength.allows_fallback());
        assert!(!ErrorKind::InvalidRequest.allows_fallback());
    }

    #[test]
    fn proto_durations() {
        assert_eq!(parse_proto_duration("22s"), Some(Duration::from_secs(22)));
        assert_eq!(
            parse_proto_duration("1.5s"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_proto_duration("soon"), None);
    }
}
