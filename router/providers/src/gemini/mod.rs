//! Gemini generateContent (`POST {base}/models/{model}:generateContent`, and
//! `:streamGenerateContent?alt=sse`): hub request → wire, wire answer → hub, the frame parser
//! and the google.rpc.Status error table (reference §3, §5).
//!
//! Gemini matches tool results to calls by function name, not id: a `tool` message's name is
//! found by searching back for the assistant call with its `tool_call_id`.
//!
//! JSON mode is native (`responseMimeType`, `responseSchema`), except that Gemini 2.5 and older
//! reject it next to function declarations. With declarations, a json_schema answer is asked
//! for as Anthropic's is: an answer function named after the schema, whose call comes back to
//! the client as plain JSON text (`WireRequest::json_tool`).
//!
//! Embeddings (`:batchEmbedContents`) are in `embed.rs`.

use http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::error::{kind_for_status, parse_proto_duration, retry_after};
use super::{
    Call, ErrorKind, EventStream, ProviderError, ProviderSettings, join_url, post_json, read_json,
    sse_stream,
};
use switchyard_types::{
    ChatResponse, Choice, FinishReason, FunctionCall, Message, Role, ToolCall, Usage, new_id,
    unix_now,
};

pub mod embed;
mod request;
mod stream;
#[cfg(test)]
mod tests;

pub use request::{WireRequest, to_wire};

pub use stream::FrameParser;

#[derive(Debug, Clone)]
pub struct GeminiProvider {
    settings: ProviderSettings,
    http: reqwest::Client,
}

impl GeminiProvider {
    pub fn new(settings: ProviderSettings, http: reqwest::Client) -> Self {
        GeminiProvider { settings, http }
    }

    pub fn settings(&self) -> &ProviderSettings {
        &self.settings
    }

    fn post(&self, model: &str, stream: bool) -> reqwest::RequestBuilder {
        if stream {
            self.post_method(model, "streamGenerateContent?alt=sse")
        } else {
            self.post_method(model, "generateContent")
        }
    }

    /// `POST {base}/models/{model}:{method}`.
    fn post_method(&self, model: &str, method: &str) -> reqwest::RequestBuilder {
        let model = model.strip_prefix("models/").unwrap_or(model);
        let path = format!("models/{model}:{method}");
        let mut request = self.http.post(join_url(&self.settings.base_url, &path));
        if let Some(key) = &self.settings.api_key {
            request = request.header("x-goog-api-key", key.expose());
        }
        for (name, value) in &self.settings.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        request
    }

    pub async fn chat(&self, call: Call<'_>) -> Result<ChatResponse, ProviderError> {
        let body = to_wire(call)?;
        let request = call.traced(self.post(call.upstream_model, false));
        let response = post_json(request, &body, map_error).await?;
        let answer: WireResponse = read_json(
            response,
            "Gemini GenerateContentResponse",
            self.settings.limits.max_response_bytes,
        )
        .await?;
        from_wire(answer, body.json_tool.as_deref(), call.upstream_model)
    }

    pub async fn chat_stream(&self, call: Call<'_>) -> Result<EventStream, ProviderError> {
        let body = to_wire(call)?;
        let request = call.traced(self.post(call.upstream_model, true));
        let response = post_json(request, &body, map_error).await?;
        Ok(sse_stream(
            response,
            FrameParser::new(body.json_tool),
            self.settings.limits,
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Response

/// A `GenerateContentResponse` (also one stream frame, which may carry an `error` instead).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireResponse {
    #[serde(default)]
    candidates: Vec<Candidate>,
    #[serde(default)]
    prompt_feedback: Option<PromptFeedback>,
    #[serde(default)]
    usage_metadata: Option<UsageMetadata>,
    #[serde(default)]
    model_version: Option<String>,
    #[serde(default)]
    response_id: Option<String>,
    #[serde(default)]
    error: Option<RpcStatus>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    #[serde(default)]
    content: Option<CandidateContent>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CandidateContent {
    #[serde(default)]
    parts: Vec<WirePart>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePart {
    #[serde(default)]
    text: Option<String>,
    /// Thought summaries (only with `includeThoughts`) are not part of the answer.
    #[serde(default)]
    thought: bool,
    #[serde(default)]
    function_call: Option<WireFunctionCall>,
}

#[derive(Debug, Deserialize)]
struct WireFunctionCall {
    #[serde(default)]
    id: Option<String>,
    name: String,
    /// Kept as the upstream's text, so key order survives (serde_json sorts parsed maps).
    #[serde(default)]
    args: Option<Box<RawValue>>,
}

impl WireFunctionCall {
    fn into_tool_call(self) -> ToolCall {
        ToolCall {
            id: self.id.unwrap_or_else(|| new_id("call_")),
            kind: "function".to_owned(),
            function: FunctionCall {
                name: self.name,
                arguments: self
                    .args
                    .map_or_else(|| "{}".to_owned(), |a| a.get().to_owned()),
            },
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    #[serde(default)]
    block_reason: Option<String>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    #[serde(default)]
    prompt_token_count: u32,
    #[serde(default)]
    candidates_token_count: u32,
    #[serde(default)]
    cached_content_token_count: u32,
    #[serde(default)]
    thoughts_token_count: u32,
}

impl UsageMetadata {
    /// `promptTokenCount` already includes cached input; thoughts are billed as output.
    fn to_usage(self) -> Usage {
        let completion = self
            .candidates_token_count
            .saturating_add(self.thoughts_token_count);
        Usage::new(self.prompt_token_count, completion)
            .with_cache(self.cached_content_token_count, 0)
            .with_reasoning(self.thoughts_token_count)
    }
}

/// `finishReason` → finish reason. A function call finishes with `STOP`.
fn finish_reason(reason: &str, called_tools: bool) -> FinishReason {
    match reason {
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            FinishReason::ContentFilter
        }
        _ if called_tools => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    }
}

/// A `GenerateContentResponse` as a chat completion; `json_tool`'s call becomes the text. A
/// blocked prompt is a content-filtered empty answer, not an error.
pub fn from_wire(
    wire: WireResponse,
    json_tool: Option<&str>,
    upstream_model: &str,
) -> Result<ChatResponse, ProviderError> {
    let blocked = wire.prompt_feedback.and_then(|f| f.block_reason).is_some();
    let (text, calls, finish) = match wire.candidates.into_iter().next() {
        Some(candidate) => {
            let mut text = String::new();
            let mut calls = Vec::new();
            for part in candidate.content.map(|c| c.parts).unwrap_or_default() {
                if let Some(call) = part.function_call {
                    let call = call.into_tool_call();
                    if json_tool == Some(call.function.name.as_str()) {
                        text.push_str(&call.function.arguments);
                    } else {
                        calls.push(call);
                    }
                } else if let Some(t) = part.text.filter(|_| !part.thought) {
                    text.push_str(&t);
                }
            }
            let reason = candidate.finish_reason.unwrap_or_default();
            let finish = finish_reason(&reason, !calls.is_empty());
            (text, calls, finish)
        }
        None if blocked => (String::new(), Vec::new(), FinishReason::ContentFilter),
        None => return Err(ProviderError::malformed("Gemini answer", "no candidates")),
    };
    let mut message = Message::new(Role::Assistant, text);
    if !calls.is_empty() {
        if message.text().is_empty() {
            message.content = None;
        }
        message.tool_calls = Some(calls);
    }
    Ok(ChatResponse {
        id: wire.response_id.unwrap_or_else(|| new_id("chatcmpl-")),
        object: "chat.completion".to_owned(),
        created: unix_now(),
        model: wire
            .model_version
            .unwrap_or_else(|| upstream_model.to_owned()),
        choices: vec![Choice {
            index: 0,
            message,
            finish_reason: finish,
            logprobs: None,
        }],
        usage: wire.usage_metadata.unwrap_or_default().to_usage(),
        system_fingerprint: None,
        embeddings: None,
        extra: Default::default(),
    })
}

// ---------------------------------------------------------------------------------------------
// Errors

/// `google.rpc.Status`.
#[derive(Debug, Default, Deserialize)]
struct RpcStatus {
    #[serde(default)]
    code: u16,
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    details: Vec<Value>,
}

impl RpcStatus {
    fn detail(&self, kind: &str) -> impl Iterator<Item = &Value> {
        self.details.iter().filter(move |d| {
            d.get("@type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.ends_with(kind))
        })
    }

    /// `RetryInfo.retryDelay`, capped like `retry-after` headers.
    fn retry_delay(&self) -> Option<std::time::Duration> {
        self.detail("google.rpc.RetryInfo")
            .find_map(|d| d.get("retryDelay")?.as_str().and_then(parse_proto_duration))
            .filter(|wait| wait.as_secs() <= 120)
    }

    fn per_day_quota(&self) -> bool {
        self.detail("google.rpc.QuotaFailure")
            .filter_map(|d| d.get("violations")?.as_array())
            .flatten()
            .filter_map(|v| v.get("quotaId")?.as_str())
            .any(|id| id.contains("PerDay"))
    }

    fn reason_is(&self, reason: &str) -> bool {
        self.detail("google.rpc.ErrorInfo")
            .any(|d| d.get("reason").and_then(Value::as_str) == Some(reason))
    }
}

/// The HTTP status a google.rpc code name stands for (errors inside a 200 stream).
fn status_for_code(status: &str) -> u16 {
    match status {
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => 400,
        "UNAUTHENTICATED" => 401,
        "PERMISSION_DENIED" => 403,
        "NOT_FOUND" => 404,
        "RESOURCE_EXHAUSTED" => 429,
        "UNAVAILABLE" => 503,
        "DEADLINE_EXCEEDED" => 504,
        _ => 500,
    }
}

/// Kind and wait for a Status; `http` is the HTTP status when there was one.
fn classify(http: Option<u16>, error: &RpcStatus) -> ProviderError {
    let status = http
        .or((error.code >= 400).then_some(error.code))
        .unwrap_or_else(|| status_for_code(&error.status));
    let m = error.message.to_ascii_lowercase();
    let kind = match status {
        // An invalid key is a 400 INVALID_ARGUMENT: it must not read as a bad request.
        _ if error.reason_is("API_KEY_INVALID") => ErrorKind::Auth,
        400 if error.status == "FAILED_PRECONDITION" => ErrorKind::PermissionDenied,
        400 if (m.contains("token count") && m.contains("exceed"))
            || m.contains("exceeds the maximum number of tokens") =>
        {
            ErrorKind::ContextLength
        }
        429 if error.per_day_quota() => ErrorKind::QuotaExhausted,
        _ => kind_for_status(status),
    };
    let message = if error.message.is_empty() {
        format!("HTTP {status}")
    } else {
        error.message.clone()
    };
    ProviderError::new(kind, message).with_retry_after(error.retry_delay())
}

/// Classify a non-2xx answer (reference §3). The body is a Status under `error`, sometimes
/// wrapped in a one-element array.
pub fn map_error(status: u16, headers: &HeaderMap, body: &[u8]) -> ProviderError {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let value = value.as_array().and_then(|a| a.first()).unwrap_or(&value);
    let error = value
        .get("error")
        .and_then(|e| RpcStatus::deserialize(e).ok())
        .unwrap_or_else(|| RpcStatus {
            message: String::from_utf8_lossy(body).chars().take(500).collect(),
            ..RpcStatus::default()
        });
    let mut err = classify(Some(status), &error).with_status(status);
    if err.retry_after.is_none() {
        err.retry_after = retry_after(headers);
    }
    err
}
