//! Upstream failures as they arrive: transport errors from reqwest, status codes, and the waits
//! providers ask for in headers. The classification itself (`ErrorKind`, `ProviderError`) is
//! `switchyard_types::error`, shared with routing.

use std::time::{Duration, SystemTime};

use http::HeaderMap;
pub use switchyard_types::error::{ErrorKind, ProviderError, kind_for_status};

/// Classify a transport error from reqwest.
pub fn from_reqwest(err: &reqwest::Error) -> ProviderError {
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
        // A request this provider cannot express goes elsewhere, is not retried here, and
        // says nothing about the model.
        let u = ProviderError::unsupported("messages[0].content[1]", "no audio");
        assert_eq!(u.kind, ErrorKind::Unsupported);
        assert!(u.kind.allows_fallback() && !u.retryable && !u.kind.is_health_failure());
        assert_eq!(u.kind.label(), "unsupported");
        assert_eq!(u.param.as_deref(), Some("messages[0].content[1]"));
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
