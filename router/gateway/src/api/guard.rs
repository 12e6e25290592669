//! Browser attacks on a gateway reachable from a browser (above all, one on loopback):
//!
//! - **DNS rebinding**: a page on `evil.example` re-points its name at 127.0.0.1 and calls the
//!   gateway as same-origin. Its requests carry `Host: evil.example`, so only the hosts of
//!   `server.allowed_hosts` are served (421 otherwise).
//! - **Cross-site requests**: any request with an `Origin` other than the gateway's own is
//!   refused (403) unless `server.cors_origins` allows it; allowed ones get CORS headers.
//! - **Simple requests**: a form or `fetch` without preflight can only send `text/plain`, form
//!   or multipart bodies, so model-calling endpoints take `application/json` only (415).

use axum::http::{HeaderMap, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::ApiError;
use crate::config::ServerConfig;

/// The `Host` a request names: its `Host` header, or the URI's authority (HTTP/2).
fn host<'a>(headers: &'a HeaderMap, uri: &'a axum::http::Uri) -> Option<&'a str> {
    headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
}

/// `host[:port]` without the port, lower case (`[::1]:8080` → `[::1]`).
fn without_port(host: &str) -> &str {
    match host.rfind(':') {
        Some(i)
            if !host[i..].contains(']') && host[i + 1..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            &host[..i]
        }
        _ => host,
    }
}

/// Whether `host` (a `Host` header value) is one of `allowed` (names, or `name:port`; `*` = any).
pub fn host_allowed(allowed: &[String], host: &str) -> bool {
    let host = host.trim().to_ascii_lowercase();
    let name = without_port(&host);
    allowed
        .iter()
        .any(|a| a == "*" || *a == host || ((!a.contains(':') || a.ends_with(']')) && a == name))
}

/// Refuse a request that names a host not served, or comes from an origin not allowed.
pub fn check(
    server: &ServerConfig,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let host = host(headers, uri);
    if let Some(h) = host
        && !host_allowed(&server.allowed_hosts, h)
    {
        return Err(ApiError::host_not_allowed(h));
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("(not printable)");
    if origin_allowed(server, origin) {
        return Ok(());
    }
    // The gateway's own page (same scheme-less host and port) is not cross-origin, except for
    // a preflight, which only a cross-origin request sends.
    let same = host.is_some_and(|h| {
        let rest = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        rest.is_some_and(|r| r.eq_ignore_ascii_case(h))
    });
    if same && method != Method::OPTIONS {
        return Ok(());
    }
    Err(ApiError::origin_not_allowed(origin))
}

fn origin_allowed(server: &ServerConfig, origin: &str) -> bool {
    server
        .cors_origins
        .iter()
        .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
}

/// CORS headers and preflight answers for the allowed origins (`None`: no origin allowed).
pub fn cors(server: &ServerConfig) -> Option<CorsLayer> {
    if server.cors_origins.is_empty() {
        return None;
    }
    let origin = if server.cors_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            server
                .cors_origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok()),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(origin)
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::CACHE_CONTROL,
                header::HeaderName::from_static("x-request-id"),
                header::HeaderName::from_static("x-api-key"),
            ])
            .expose_headers([
                header::HeaderName::from_static("x-request-id"),
                header::HeaderName::from_static("x-switchyard-request-id"),
                header::HeaderName::from_static("x-switchyard-model"),
                header::HeaderName::from_static("x-switchyard-cost-usd"),
            ]),
    )
}

/// A model-calling endpoint's body must be JSON (`application/json`, parameters allowed).
pub fn json_body(headers: &HeaderMap) -> Result<(), ApiError> {
    let ct = headers.get(header::CONTENT_TYPE).map(|v| v.to_str());
    match ct {
        Some(Ok(v)) => {
            let media = v.split(';').next().unwrap_or("").trim();
            if media.eq_ignore_ascii_case("application/json") {
                Ok(())
            } else {
                Err(ApiError::unsupported_media_type(Some(v)))
            }
        }
        Some(Err(_)) => Err(ApiError::unsupported_media_type(Some("(not printable)"))),
        None => Err(ApiError::unsupported_media_type(None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        let allowed: Vec<String> = ["localhost", "127.0.0.1", "[::1]", "gw.example:8443"]
            .map(str::to_owned)
            .to_vec();
        for ok in [
            "localhost",
            "LOCALHOST:8080",
            "127.0.0.1:9",
            "[::1]:8080",
            "[::1]",
            "gw.example:8443",
        ] {
            assert!(host_allowed(&allowed, ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "gw.example",
            "gw.example:80",
            "",
        ] {
            assert!(!host_allowed(&allowed, bad), "{bad}");
        }
        assert!(host_allowed(&["*".to_owned()], "anything:1"));
    }

    #[test]
    fn json_only() {
        let mut h = HeaderMap::new();
        assert!(json_body(&h).is_err());
        for (v, ok) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
            ("multipart/form-data; boundary=x", false),
            ("application/jsonp", false),
        ] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(v));
            assert_eq!(json_body(&h).is_ok(), ok, "{v}");
        }
    }
}
