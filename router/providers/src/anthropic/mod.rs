//! Anthropic Messages (`POST {base}/messages`): hub request → wire, wire answer → hub, the
//! named-event SSE parser and the error table (reference §2, §5).
//!
//! Anthropic has no `response_format`. JSON mode is emulated with an answer tool: the request
//! gains a tool whose `input_schema` is the wanted schema, tool choice makes the model call it,
//! and that one tool's input comes back to the client as plain JSON text with `finish_reason:
//! stop` (`WireRequest::json_tool` names it; nothing else is ever converted).

use http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::error::{kind_for_status, retry_after};
use super::{
    Call, ErrorKind, EventStream, ProviderError, ProviderSettings, join_url, post_json, read_json,
    sse_stream,
};
use switchyard_types::{
    ChatResponse, Choice, FinishReason, FunctionCall, Message, Role, ToolCall, Usage, unix_now,
};

mod request;
mod stream;
#[cfg(test)]
mod tests;

pub use request::{WireBody, WireRequest, native_body, to_wire};

pub use stream::EventParser;

const API_VERSION: &str = "2023-06-01";
/// Where a native request's answer keeps Anthropic's own content blocks (`ChatResponse.extra`).
pub const NATIVE_CONTENT: &str = "anthropic_content";
/// The answer tool for `response_format: json_object` (a json_schema names its own).
const JSON_OBJECT_TOOL: &str = "json_answer";

#[derive(Debug, Clone)]
pub struct AnthropicProvider {
    settings: ProviderSettings,
    http: reqwest::Client,
}

impl AnthropicProvider {
    pub fn new(settings: ProviderSettings, http: reqwest::Client) -> Self {
        AnthropicProvider { settings, http }
    }

    pub fn settings(&self) -> &ProviderSettings {
        &self.settings
    }

    fn post(&self) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .post(join_url(&self.settings.base_url, "messages"));
        if let Some(key) = &self.settings.api_key {
            request = request.header("x-api-key", key.expose());
        }
        let mut version_set = false;
        for (name, value) in &self.settings.headers {
            version_set |= name.eq_ignore_ascii_case("anthropic-version");
            request = request.header(name.as_str(), value.as_str());
        }
        if !version_set {
            request = request.header("anthropic-version", API_VERSION);
        }
        request
    }

    /// The request for one call: with a native body, the client's Anthropic headers
    /// (`anthropic-beta`) go too, after the configured ones.
    fn post_for(&self, wire: &WireBody, call: Call<'_>) -> reqwest::RequestBuilder {
        let mut request = self.post();
        if let (WireBody::Native(_), Some(native)) = (wire, &call.request.native) {
            for (name, value) in &native.headers {
                request = request.header(name.as_str(), value.as_str());
            }
        }
        request
    }

    pub async fn chat(&self, call: Call<'_>) -> Result<ChatResponse, ProviderError> {
        let (wire, json_tool) = WireBody::for_call(call, false)?;
        let response = post_json(call.traced(self.post_for(&wire, call)), &wire, map_error).await?;
        let raw: Box<RawValue> = read_json(
            response,
            "Anthropic message",
            self.settings.limits.max_response_bytes,
        )
        .await?;
        let answer: WireResponse = serde_json::from_str(raw.get())
            .map_err(|e| ProviderError::malformed("Anthropic message", e))?;
        let mut out = from_wire(answer, json_tool.as_deref(), call.upstream_model);
        if matches!(wire, WireBody::Native(_)) {
            // The answer's own blocks (thinking and its signature, citations…) for
            // `/v1/messages`, which returns them as they came.
            #[derive(Deserialize)]
            struct Blocks {
                #[serde(default)]
                content: Value,
            }
            if let Ok(b) = serde_json::from_str::<Blocks>(raw.get())
                && b.content.is_array()
            {
                out.extra.insert(NATIVE_CONTENT.into(), b.content);
            }
        }
        Ok(out)
    }

    pub async fn chat_stream(&self, call: Call<'_>) -> Result<EventStream, ProviderError> {
        let (wire, json_tool) = WireBody::for_call(call, true)?;
        let request = self
            .post_for(&wire, call)
            .header(http::header::ACCEPT, "text/event-stream");
        let response = post_json(call.traced(request), &wire, map_error).await?;
        let native = matches!(wire, WireBody::Native(_));
        Ok(sse_stream(
            response,
            EventParser::new(json_tool).forwarding(native),
            self.settings.limits,
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Response

/// A Messages API answer, leniently: unknown block types are skipped.
#[derive(Debug, Deserialize)]
pub struct WireResponse {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    content: Vec<WireBlock>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: WireUsage,
}

/// One content block, flat (a tagged enum could not keep `input` as raw text).
#[derive(Debug, Deserialize)]
struct WireBlock {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    /// Kept as the upstream's text, so key order survives (serde_json sorts parsed maps).
    #[serde(default)]
    input: Option<Box<RawValue>>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u32>,
    #[serde(default)]
    output_tokens: Option<u32>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u32>,
    #[serde(default)]
    cache_read_input_tokens: Option<u32>,
}

impl WireUsage {
    /// Later reports win field by field (`message_delta` repeats only what changed).
    fn merge(&mut self, later: WireUsage) {
        self.input_tokens = later.input_tokens.or(self.input_tokens);
        self.output_tokens = later.output_tokens.or(self.output_tokens);
        self.cache_creation_input_tokens = later
            .cache_creation_input_tokens
            .or(self.cache_creation_input_tokens);
        self.cache_read_input_tokens = later
            .cache_read_input_tokens
            .or(self.cache_read_input_tokens);
    }

    /// `input_tokens` excludes cached input: the hub's `prompt_tokens` is the sum of all three.
    fn to_usage(self) -> Usage {
        let read = self.cache_read_input_tokens.unwrap_or(0);
        let write = self.cache_creation_input_tokens.unwrap_or(0);
        let prompt = self
            .input_tokens
            .unwrap_or(0)
            .saturating_add(read)
            .saturating_add(write);
        Usage::new(prompt, self.output_tokens.unwrap_or(0)).with_cache(read, write)
    }
}

fn raw_text(raw: Option<&RawValue>) -> String {
    raw.map_or_else(|| "{}".to_owned(), |r| r.get().to_owned())
}

/// `stop_reason` → finish reason. A `tool_use` stop that called only the answer tool is a stop.
fn finish_reason(stop_reason: Option<&str>, called_client_tools: bool) -> FinishReason {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => FinishReason::Length,
        Some("tool_use") if called_client_tools => FinishReason::ToolCalls,
        Some("refusal") => FinishReason::ContentFilter,
        _ => FinishReason::Stop,
    }
}

/// A Messages API answer as a chat completion; `json_tool`'s input becomes the text.
pub fn from_wire(
    wire: WireResponse,
    json_tool: Option<&str>,
    upstream_model: &str,
) -> ChatResponse {
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in wire.content {
        match (block.kind.as_str(), block.name) {
            ("text", _) => text.push_str(block.text.as_deref().unwrap_or("")),
            ("tool_use", Some(name)) if json_tool == Some(name.as_str()) => {
                text.push_str(&raw_text(block.input.as_deref()));
            }
            ("tool_use", Some(name)) => calls.push(ToolCall {
                id: block.id.unwrap_or_default(),
                kind: "function".to_owned(),
                function: FunctionCall {
                    name,
                    arguments: raw_text(block.input.as_deref()),
                },
            }),
            _ => {}
        }
    }
    let finish = finish_reason(wire.stop_reason.as_deref(), !calls.is_empty());
    let mut message = Message::new(Role::Assistant, text);
    if !calls.is_empty() {
        if message.text().is_empty() {
            message.content = None;
        }
        message.tool_calls = Some(calls);
    }
    ChatResponse {
        id: wire.id,
        object: "chat.completion".to_owned(),
        created: unix_now(),
        model: if wire.model.is_empty() {
            upstream_model.to_owned()
        } else {
            wire.model
        },
        choices: vec![Choice {
            index: 0,
            message,
            finish_reason: finish,
            logprobs: None,
        }],
        usage: wire.usage.to_usage(),
        system_fingerprint: None,
        embeddings: None,
        extra: Default::default(),
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

#[derive(Debug, Default, Deserialize)]
struct ErrorEnvelope {
    #[serde(default)]
    error: Option<WireError>,
    #[serde(default)]
    request_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct WireError {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    details: Option<Value>,
}

/// The kind for an `error.type`, for errors that come without a status (stream `error` events).
fn kind_for_type(kind: &str) -> ErrorKind {
    match kind {
        "invalid_request_error" | "request_too_large" => ErrorKind::InvalidRequest,
        "authentication_error" => ErrorKind::Auth,
        "billing_error" => ErrorKind::QuotaExhausted,
        "permission_error" => ErrorKind::PermissionDenied,
        "not_found_error" => ErrorKind::NotFound,
        "rate_limit_error" => ErrorKind::RateLimited,
        "overloaded_error" => ErrorKind::Overloaded,
        "timeout_error" => ErrorKind::Timeout,
        _ => ErrorKind::Server,
    }
}

/// Spend limits and context overflows hide behind 400/429: tell them apart by code and wording.
fn refine(kind: ErrorKind, error: &WireError) -> ErrorKind {
    let code = error
        .details
        .as_ref()
        .and_then(|d| d.get("error_code"))
        .and_then(Value::as_str);
    if code == Some("enforced_spend_limit_reached") {
        return ErrorKind::QuotaExhausted;
    }
    if kind != ErrorKind::InvalidRequest || error.kind == "request_too_large" {
        return kind;
    }
    let m = error.message.to_ascii_lowercase();
    if m.contains("credit balance") || m.contains("spend limit") || m.contains("usage limits") {
        ErrorKind::QuotaExhausted
    } else if m.contains("prompt is too long")
        || (m.contains("context") && (m.contains("too long") || m.contains("exceed")))
    {
        ErrorKind::ContextLength
    } else {
        kind
    }
}

/// Classify a non-2xx answer (reference §2.2).
pub fn map_error(status: u16, headers: &HeaderMap, body: &[u8]) -> ProviderError {
    let envelope: ErrorEnvelope = serde_json::from_slice(body).unwrap_or_default();
    let error = envelope.error.unwrap_or_else(|| WireError {
        message: String::from_utf8_lossy(body).chars().take(500).collect(),
        ..WireError::default()
    });
    let kind = refine(kind_for_status(status), &error);
    let mut message = if error.message.is_empty() {
        format!("HTTP {status}")
    } else {
        error.message
    };
    if let Some(id) = envelope.request_id {
        message.push_str(&format!(" (request_id {id})"));
    }
    ProviderError::new(kind, message)
        .with_status(status)
        .with_retry_after(retry_after(headers))
}
