//! The sim's control API (`/_sim/stats`, `/_sim/faults`) and the model listings. Its bodies are
//! the sim's own plain JSON, not any provider's: only tests and operators read them.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::json;

use super::wire::json_response;
use super::{FaultMode, Sim, WireFormat};

/// Middleware: keep a copy of every model request's body (not the control API's).
pub(super) async fn remember(
    State(sim): State<Arc<Sim>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if request.uri().path().starts_with("/_sim/") || request.method() != http::Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, super::BODY_LIMIT).await {
        Ok(b) => b,
        Err(e) => {
            return json_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"error": {"message": e.to_string()}}).to_string(),
                HeaderMap::new(),
            );
        }
    };
    let traceparent = parts
        .headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok());
    sim.remember(parts.uri.path(), &bytes, traceparent, parts.version);
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(bytes),
    ))
    .await
}

/// `/_sim/redirected`, where the `redirect` fault points: counts who followed, and whether
/// credentials came along. Answers 200 with a JSON note, so a follower reads a "success".
pub(super) async fn redirected(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Response {
    use std::sync::atomic::Ordering;
    sim.redirects[0].fetch_add(1, Ordering::Relaxed);
    let credentials = ["authorization", "x-api-key", "x-goog-api-key"];
    if credentials.iter().any(|h| headers.contains_key(*h)) {
        sim.redirects[1].fetch_add(1, Ordering::Relaxed);
    }
    json_response(
        StatusCode::OK,
        json!({"redirected": true}).to_string(),
        HeaderMap::new(),
    )
}

/// `GET /_sim/requests`: the last request bodies received, oldest first.
pub(super) async fn recent(State(sim): State<Arc<Sim>>) -> Response {
    json_response(
        StatusCode::OK,
        json!({"requests": sim.recent_requests()}).to_string(),
        HeaderMap::new(),
    )
}

/// Models every listing shows even with an empty config.
const BUILT_IN: [(&str, WireFormat); 6] = [
    ("gpt-4o-mini", WireFormat::OpenAi),
    ("gpt-4o", WireFormat::OpenAi),
    ("claude-3-5-haiku-20241022", WireFormat::Anthropic),
    ("gemini-2.0-flash", WireFormat::Gemini),
    ("llama3.2", WireFormat::Ollama),
    ("qwen2.5:0.5b", WireFormat::Ollama),
];

/// The format a model id most likely belongs to, from its family prefix.
fn format_of(model: &str) -> WireFormat {
    let openai = [
        "gpt-", "o1", "o3", "o4", "chatgpt-", "text-", "davinci", "babbage",
    ];
    if openai.iter().any(|p| model.starts_with(p)) {
        WireFormat::OpenAi
    } else if model.starts_with("claude") {
        WireFormat::Anthropic
    } else if model.starts_with("gemini") || model.starts_with("gemma") {
        WireFormat::Gemini
    } else {
        WireFormat::Ollama
    }
}

impl Sim {
    /// Built-in and configured models of `format`, without duplicates, built-ins first.
    pub(crate) fn listed_models(&self, format: WireFormat) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let built_in = BUILT_IN
            .iter()
            .filter(|(_, f)| *f == format)
            .map(|(m, _)| *m);
        let configured = self
            .configured
            .iter()
            .map(String::as_str)
            .filter(|m| format_of(m) == format);
        for m in built_in.chain(configured) {
            if !out.iter().any(|o| o == m) {
                out.push(m.to_owned());
            }
        }
        out
    }
}

pub(super) async fn stats(State(sim): State<Arc<Sim>>) -> Response {
    match serde_json::to_string(&sim.stats()) {
        Ok(body) => json_response(StatusCode::OK, body, HeaderMap::new()),
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultRequest {
    model: String,
    fault: String,
    rate: Option<f64>,
    count: Option<u32>,
}

/// `{"model","fault","rate"}` or `{"model","fault","count"}`; `"model":"*"` for all models.
pub(super) async fn set_fault(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let req: FaultRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return problem(StatusCode::BAD_REQUEST, &format!("invalid body: {e}")),
    };
    let mode = match (req.rate, req.count) {
        (Some(rate), None) => FaultMode::Rate(rate),
        (None, Some(count)) => FaultMode::Count(count),
        _ => {
            return problem(
                StatusCode::BAD_REQUEST,
                "give exactly one of `rate` or `count`",
            );
        }
    };
    match sim.set_fault(&req.model, &req.fault, mode) {
        Ok(()) => {
            let body = json!({"ok": true, "model": req.model, "fault": req.fault,
                "rate": req.rate, "count": req.count});
            json_response(StatusCode::OK, body.to_string(), HeaderMap::new())
        }
        Err(e) => problem(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

pub(super) async fn clear_faults(State(sim): State<Arc<Sim>>) -> Response {
    let body = json!({"cleared": sim.clear_faults()});
    json_response(StatusCode::OK, body.to_string(), HeaderMap::new())
}

fn problem(status: StatusCode, message: &str) -> Response {
    json_response(
        status,
        json!({"error": message}).to_string(),
        HeaderMap::new(),
    )
}
