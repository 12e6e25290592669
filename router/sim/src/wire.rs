//! Small HTTP and JSON helpers shared by the wire formats: responses, header values, clock
//! formatting and request-field readers. No format-specific knowledge lives here.

use axum::body::Body;
use axum::response::Response;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde_json::Value;

pub(crate) fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: Body,
    mut headers: HeaderMap,
) -> Response {
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

pub(crate) fn json_response(status: StatusCode, body: String, headers: HeaderMap) -> Response {
    respond(status, "application/json", Body::from(body), headers)
}

/// Inserts a header whose value is built at run time (skipped if it is not a valid value).
pub(crate) fn put(headers: &mut HeaderMap, name: &'static str, value: impl AsRef<str>) {
    if let Ok(v) = HeaderValue::from_str(value.as_ref()) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

pub(crate) use switchyard_types::clock::{rfc3339, unix_now};

/// The request's `stream` flag.
pub(crate) fn wants_stream(req: &Value) -> bool {
    req.get("stream").and_then(Value::as_bool).unwrap_or(false)
}

/// A JSON string literal (with quotes) for splicing into hand-built frames.
pub(crate) fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| String::from("\"\""))
}

/// A non-negative integer field that fits in u32 (larger values saturate).
pub(crate) fn uint(v: Option<&Value>) -> Option<u32> {
    v.and_then(Value::as_u64)
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
}
