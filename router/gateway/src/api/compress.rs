//! `[server.compression]`: gzip or brotli of large complete JSON answers (tower-http's
//! `CompressionLayer`), chosen from the client's `accept-encoding`.
//!
//! IMPORTANT: only answers whose length is known when the head is written are compressed: a
//! complete JSON body. Streams (SSE, whose events must reach the client as they come), the
//! WebSocket upgrade, answers already encoded and ranges never are. The compressed body is
//! still the one the connection's `Sending` wraps, so "answer sent" and the write-stall
//! timeout see it as any other body.

use axum::http::{Response, StatusCode, header};
use tower_http::compression::predicate::Predicate;
use tower_http::compression::{CompressionLayer, CompressionLevel};

use crate::config::CompressionConfig;

/// One level for both encodings: brotli's own default (11) costs tens of milliseconds on a
/// 100 KB answer; 4 keeps most of the ratio for a fraction of the CPU (gzip's 4 likewise).
const LEVEL: i32 = 4;

/// The layer, or `None` when compression is off (no wrapping at all then).
pub(super) fn layer(config: &CompressionConfig) -> Option<CompressionLayer<Worth>> {
    if !config.enabled {
        return None;
    }
    Some(
        CompressionLayer::new()
            .gzip(config.gzip)
            .br(config.br)
            .quality(CompressionLevel::Precise(LEVEL))
            .compress_when(Worth {
                min_bytes: config.min_bytes,
            }),
    )
}

/// Which answers are worth compressing: complete JSON of at least `min_bytes`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Worth {
    min_bytes: u64,
}

impl Predicate for Worth {
    fn should_compress<B>(&self, response: &Response<B>) -> bool
    where
        B: axum::body::HttpBody,
    {
        if response.status() == StatusCode::SWITCHING_PROTOCOLS
            || response.status() == StatusCode::NO_CONTENT
        {
            return false;
        }
        let json = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|t| is_json(t.trim()));
        // A body of unknown length is a stream: never compressed (its events would wait in
        // the encoder).
        json && response
            .body()
            .size_hint()
            .exact()
            .is_some_and(|n| n >= self.min_bytes)
    }
}

/// `application/json`, or a JSON-based type (`application/problem+json`).
fn is_json(media_type: &str) -> bool {
    let t = media_type.as_bytes();
    let prefix = b"application/";
    t.eq_ignore_ascii_case(b"application/json")
        || (t.len() > prefix.len() + 5
            && t[..prefix.len()].eq_ignore_ascii_case(prefix)
            && t[t.len() - 5..].eq_ignore_ascii_case(b"+json"))
}

#[cfg(test)]
mod tests {
    use super::is_json;

    #[test]
    fn json_media_types() {
        for yes in [
            "application/json",
            "Application/JSON",
            "application/problem+json",
        ] {
            assert!(is_json(yes), "{yes}");
        }
        for no in [
            "text/event-stream",
            "text/html",
            "application/+json",
            "+json",
            "json",
            "",
        ] {
            assert!(!is_json(no), "{no}");
        }
    }
}
