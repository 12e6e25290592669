//! The wire under every provider: the one shared HTTP client, bounded body reads, SSE framing
//! with a bound per event, and the refusal of redirects. Nothing here knows a wire format.
//!
//! IMPORTANT: nothing an upstream sends is read without a bound. A complete body is refused
//! past `Limits::max_response_bytes` (before reading, when `content-length` says so), an SSE
//! event past `Limits::max_event_bytes` (counted on the raw bytes, before the SSE parser
//! buffers them), an error body is read up to `MAX_ERROR_BODY_BYTES` and the rest ignored.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http::HeaderMap;
use serde::{Deserialize, Serialize};

use crate::{ErrorKind, EventStream, ProviderError, StreamParser, over_limit, parse_stream};

/// Default bound on a complete answer's body (and on a streamed answer's content).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 32 << 20;
/// Default bound on one SSE event.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1 << 20;
/// Error bodies are read up to this; only their first words are ever used.
const MAX_ERROR_BODY_BYTES: usize = 64 << 10;

/// What one upstream may make the gateway read and hold (`[providers.NAME]`
/// `max_response_bytes`, `max_event_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A complete answer's body; also the text and tool arguments of a streamed answer.
    pub max_response_bytes: usize,
    /// One SSE event, all its lines together.
    pub max_event_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
        }
    }
}

/// Idle connections kept per upstream host by default (`[providers.X] pool_max_idle`).
pub const DEFAULT_POOL_MAX_IDLE: usize = 256;
/// The most `pool_max_idle` may be: beyond it, a typo holding sockets open.
pub const MAX_POOL_MAX_IDLE: usize = 10_000;

/// Which HTTP version a provider's connections speak (`[providers.X] http2`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Http2 {
    /// HTTP/2 when a TLS upstream offers it through ALPN; HTTP/1.1 otherwise (and always over
    /// plain `http://`).
    #[default]
    Auto,
    /// HTTP/2 with prior knowledge, also over plain `http://` (h2c): for upstreams known to
    /// speak it, such as a local server behind an h2c proxy. An HTTP/1-only upstream fails.
    Always,
    /// HTTP/1.1 only, even when the upstream offers HTTP/2.
    Never,
}

impl Http2 {
    pub fn as_str(self) -> &'static str {
        match self {
            Http2::Auto => "auto",
            Http2::Always => "always",
            Http2::Never => "never",
        }
    }
}

/// How the gateway connects to one upstream. Providers with equal settings share one client
/// (and so one pool).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Connection {
    pub http2: Http2,
    /// Idle keep-alive connections kept per host. Over HTTP/2 one connection carries many
    /// requests, so few are needed.
    pub pool_max_idle: usize,
}

impl Default for Connection {
    fn default() -> Self {
        Connection {
            http2: Http2::Auto,
            pool_max_idle: DEFAULT_POOL_MAX_IDLE,
        }
    }
}

/// The HTTP client providers share, with the default `Connection`.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    http_client_for(Connection::default())
}

/// The HTTP client of providers with `connection`: rustls, pooled keep-alive connections,
/// Nagle off. No overall timeout here: `execute` owns TTFT and total deadlines per attempt.
///
/// IMPORTANT: redirects are never followed. A followed redirect would send the request — and
/// the provider key in its headers — wherever the upstream points; a 3xx answer is a failed
/// attempt instead (`post_json`).
pub fn http_client_for(connection: Connection) -> Result<reqwest::Client, reqwest::Error> {
    let builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(connection.pool_max_idle)
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")));
    let builder = match connection.http2 {
        // reqwest offers `h2` and `http/1.1` through ALPN by default.
        Http2::Auto => builder,
        Http2::Always => builder.http2_prior_knowledge(),
        Http2::Never => builder.http1_only(),
    };
    builder.build()
}

/// A provider's error mapper: status, headers and body of a non-2xx answer → `ProviderError`.
pub type MapError = fn(u16, &HeaderMap, &[u8]) -> ProviderError;

/// POST a JSON body. A 2xx answer is returned unread; a redirect is refused; any other answer
/// is read (its first `MAX_ERROR_BODY_BYTES`) and mapped by the provider's `map_error`.
pub(crate) async fn post_json<B: Serialize + ?Sized>(
    request: reqwest::RequestBuilder,
    body: &B,
    map_error: MapError,
) -> Result<reqwest::Response, ProviderError> {
    let bytes = serde_json::to_vec(body)
        .map_err(|e| ProviderError::new(ErrorKind::InvalidRequest, e.to_string()))?;
    let response = request
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(bytes)
        .send()
        .await
        .map_err(|e| crate::error::from_reqwest(&e))?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    if status.is_redirection() {
        return Err(redirect_error(status.as_u16(), response.headers()));
    }
    let headers = response.headers().clone();
    let body = read_prefix(response, MAX_ERROR_BODY_BYTES).await;
    Err(map_error(status.as_u16(), &headers, &body))
}

/// Read a 2xx body under `limit` and parse it as `T`; a bad body is a `MalformedResponse`.
pub(crate) async fn read_json<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
    what: &str,
    limit: usize,
) -> Result<T, ProviderError> {
    let bytes = read_body(response, limit).await?;
    serde_json::from_slice(&bytes).map_err(|e| ProviderError::malformed(what, e))
}

/// The whole body, refused as soon as it is known to exceed `limit` bytes.
pub(crate) async fn read_body(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Bytes, ProviderError> {
    let too_large = || over_limit(format!("the answer's body exceeds {limit} bytes"));
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| crate::error::from_reqwest(&e))?
    {
        if chunk.len() > limit - body.len() {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// At most the first `limit` bytes of a body; a transport error ends it quietly.
async fn read_prefix(mut response: reqwest::Response, limit: usize) -> Bytes {
    let mut body = BytesMut::new();
    while body.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let take = chunk.len().min(limit - body.len());
                body.extend_from_slice(&chunk[..take]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    body.freeze()
}

/// A 3xx answer: a failed attempt that names where it pointed (host only), not retried.
fn redirect_error(status: u16, headers: &HeaderMap) -> ProviderError {
    let to = headers
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| "no location".to_owned(), location_host);
    let mut err = ProviderError::new(
        ErrorKind::MalformedResponse,
        format!(
            "the upstream answered HTTP {status}, a redirect to {to}; redirects are not \
             followed (the provider key stays with the configured host): check base_url"
        ),
    )
    .with_status(status);
    err.retryable = false;
    err
}

/// The host of a `Location`, without user info (it may hold credentials), path or query.
fn location_host(location: &str) -> String {
    let Some((_, rest)) = location.split_once("://") else {
        return "a path on the same host".to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("host {host}")
}

/// An SSE body as a stream of events; transport errors mid-body are `StreamCut`, an event
/// over `limits.max_event_bytes` or content over `limits.max_response_bytes` ends it as a
/// `MalformedResponse`.
pub(crate) fn sse_stream<P>(response: reqwest::Response, parser: P, limits: Limits) -> EventStream
where
    P: StreamParser<eventsource_stream::Event>,
{
    use eventsource_stream::{EventStreamError, Eventsource};

    let mut bound = EventBound::new(limits.max_event_bytes);
    let bytes = response.bytes_stream().map(move |chunk| {
        let chunk = chunk.map_err(|e| {
            let mut err = crate::error::from_reqwest(&e);
            if err.kind == ErrorKind::Connect {
                err.kind = ErrorKind::StreamCut;
            }
            err
        })?;
        bound.feed(&chunk)?;
        Ok::<_, ProviderError>(chunk)
    });
    let events = bytes.eventsource().map(|item| {
        item.map_err(|e| match e {
            EventStreamError::Transport(err) => err,
            other => ProviderError::malformed("SSE framing", other),
        })
    });
    parse_stream(events, parser, limits.max_response_bytes)
}

/// Counts the bytes of the SSE event being received, so that an event without end (or just a
/// huge one) is refused before the SSE parser has buffered more than `max` of it. An event
/// ends at a blank line; CR, LF and CRLF all end a line.
#[derive(Debug)]
pub(crate) struct EventBound {
    max: usize,
    /// Bytes of the current event, line ends excluded.
    current: usize,
    line_empty: bool,
    after_cr: bool,
}

impl EventBound {
    pub(crate) fn new(max: usize) -> Self {
        EventBound {
            max,
            current: 0,
            line_empty: true,
            after_cr: false,
        }
    }

    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Result<(), ProviderError> {
        for &b in bytes {
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\r' | b'\n' => {
                    self.after_cr = b == b'\r';
                    if self.line_empty {
                        self.current = 0;
                    }
                    self.line_empty = true;
                }
                _ => {
                    self.after_cr = false;
                    self.line_empty = false;
                    self.current += 1;
                    if self.current > self.max {
                        return Err(over_limit(format!(
                            "an SSE event exceeds {} bytes",
                            self.max
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "transport_tests.rs"]
mod net_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_bounded_across_chunks_and_line_ends() {
        let mut b = EventBound::new(10);
        // Two lines of one event: 6 + 4 bytes fit, one more does not.
        b.feed(b"data: ").unwrap();
        b.feed(b"\r\nabcd").unwrap();
        let err = b.feed(b"e").unwrap_err();
        assert_eq!(err.kind, ErrorKind::MalformedResponse);
        assert!(!err.retryable);
        assert!(err.message.contains("exceeds 10 bytes"), "{}", err.message);
    }

    #[test]
    fn a_blank_line_starts_a_new_event() {
        for end in ["\n\n", "\r\r", "\r\n\r\n", "\n\r\n"] {
            let mut b = EventBound::new(10);
            for _ in 0..100 {
                b.feed(format!("data: 1234{end}").as_bytes()).unwrap();
            }
        }
        // A lone CRLF is one line end, not a blank line: the event goes on.
        let mut b = EventBound::new(10);
        b.feed(b"data: 1234\r\n").unwrap();
        assert!(b.feed(b"x").is_err());
    }

    #[test]
    fn an_endless_line_fails_at_the_bound_not_later() {
        let mut b = EventBound::new(1 << 20);
        let chunk = vec![b'a'; 64 << 10];
        let fed = (0..100).take_while(|_| b.feed(&chunk).is_ok()).count();
        assert_eq!(fed, 16, "64 KiB chunks: the 17th crosses 1 MiB");
    }

    #[test]
    fn redirects_name_only_the_host() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::LOCATION,
            "https://user:pw@evil.example:8443/v1/steal?k=1"
                .parse()
                .unwrap(),
        );
        let err = redirect_error(307, &h);
        assert_eq!(err.kind, ErrorKind::MalformedResponse);
        assert_eq!(err.status, Some(307));
        assert!(!err.retryable && err.kind.allows_fallback());
        assert!(
            err.message.contains("host evil.example:8443"),
            "{}",
            err.message
        );
        assert!(!err.message.contains("pw") && !err.message.contains("steal"));
        assert!(
            redirect_error(302, &HeaderMap::new())
                .message
                .contains("no location")
        );
    }
}
