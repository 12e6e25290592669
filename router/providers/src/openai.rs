//! OpenAI Chat Completions, through async-openai — and every OpenAI-compatible server (Ollama,
//! vLLM, llama.cpp) through the same code with a small `Quirks` table.
//!
//! async-openai is used in "bring your own types" mode (our hub types go over the wire, so
//! unknown fields pass through) with its retries off (it has none unless its retry middleware
//! is installed; Switchyard owns retries). Its own error path drops response headers, so a
//! tower transport (`CaptureErrors`) reads non-2xx answers whole — status, headers, body — and
//! `map_error` classifies them here, keeping `retry-after`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;
use futures::StreamExt;
use http::HeaderMap;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::error::{kind_for_status, retry_after, should_retry_override};
use super::{
    Call, Dialect, ErrorKind, EventStream, ProviderError, ProviderKind, ProviderSettings,
    StreamParser, parse_stream,
};
use switchyard_types::{ChatResponse, FinishReason, StreamEvent, Usage};

/// How one OpenAI-compatible server differs from OpenAI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quirks {
    /// The field that carries the output cap. OpenAI deprecated `max_tokens` (and o-series
    /// models reject it); Ollama reads only `max_tokens`.
    pub max_tokens_field: &'static str,
    /// Request fields the server rejects or ignores: removed before sending.
    pub unsupported: &'static [&'static str],
    /// Whether `stream_options.include_usage` is honoured (else usage is estimated).
    pub stream_usage: bool,
}

impl Quirks {
    pub fn for_provider(kind: ProviderKind, dialect: Dialect) -> Quirks {
        match (kind, dialect) {
            (ProviderKind::OpenAi, _) => Quirks {
                max_tokens_field: "max_completion_tokens",
                unsupported: &[],
                stream_usage: true,
            },
            (_, Dialect::Ollama) => Quirks {
                max_tokens_field: "max_tokens",
                unsupported: &["tool_choice", "logit_bias", "user", "n"],
                stream_usage: true,
            },
            (_, Dialect::Vllm) => Quirks {
                max_tokens_field: "max_tokens",
                unsupported: &[],
                stream_usage: true,
            },
            (_, Dialect::LlamaCpp) => Quirks {
                max_tokens_field: "max_tokens",
                unsupported: &["user", "n"],
                stream_usage: true,
            },
            (_, Dialect::Generic) => Quirks {
                max_tokens_field: "max_tokens",
                unsupported: &[],
                stream_usage: true,
            },
        }
    }
}

#[derive(Clone)]
pub struct OpenAiProvider {
    settings: ProviderSettings,
    quirks: Quirks,
    client: async_openai::Client<OpenAIConfig>,
}

impl std::fmt::Debug for OpenAiProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiProvider")
            .field("settings", &self.settings)
            .field("quirks", &self.quirks)
            .finish_non_exhaustive()
    }
}

impl OpenAiProvider {
    pub fn new(settings: ProviderSettings, http: reqwest::Client) -> Self {
        let mut config = OpenAIConfig::new().with_api_base(settings.base_url.clone());
        if let Some(key) = &settings.api_key {
            config = config.with_api_key(key.expose());
        }
        for (name, value) in &settings.headers {
            // Header names and values were validated when the config was loaded.
            let Ok(name) = http::HeaderName::from_bytes(name.as_bytes()) else {
                continue;
            };
            if let Ok(c) = config.clone().with_header(name, value.as_str()) {
                config = c;
            }
        }
        let client = async_openai::Client::with_config(config)
            .with_http_service(CaptureErrors { http: http.clone() });
        OpenAiProvider {
            quirks: Quirks::for_provider(settings.kind, settings.dialect),
            settings,
            client,
        }
    }

    pub fn settings(&self) -> &ProviderSettings {
        &self.settings
    }

    pub async fn chat(&self, call: Call<'_>) -> Result<ChatResponse, ProviderError> {
        let body = to_wire(call, self.quirks, false);
        let response: ChatResponse = self
            .client
            .chat()
            .create_byot(body)
            .await
            .map_err(from_openai_error)?;
        from_wire(response)
    }

    pub async fn chat_stream(&self, call: Call<'_>) -> Result<EventStream, ProviderError> {
        let body = to_wire(call, self.quirks, true);
        let chunks = self
            .client
            .chat()
            .create_stream_byot::<Value, WireChunk>(body)
            .await
            .map_err(from_openai_error)?;
        let items = chunks.map(|item| item.map_err(from_openai_error));
        Ok(parse_stream(items, ChunkParser::default()))
    }
}

/// The canonical request as this server wants it.
pub fn to_wire(call: Call<'_>, quirks: Quirks, stream: bool) -> Value {
    let mut map = match serde_json::to_value(call.request) {
        Ok(Value::Object(map)) => map,
        // A ChatRequest always serialises to an object.
        _ => Map::new(),
    };
    map.insert(
        "model".into(),
        Value::String(call.upstream_model.to_owned()),
    );
    map.remove("max_tokens");
    if let Some(max) = call.request.max_tokens {
        map.insert(quirks.max_tokens_field.into(), json!(max));
    }
    if stream {
        map.insert("stream".into(), Value::Bool(true));
        if quirks.stream_usage {
            // Always ask for usage: spend is counted from it even if the client did not ask.
            let mut options = match map.remove("stream_options") {
                Some(Value::Object(o)) => o,
                _ => Map::new(),
            };
            options.insert("include_usage".into(), Value::Bool(true));
            map.insert("stream_options".into(), Value::Object(options));
        }
    } else {
        map.remove("stream");
        map.remove("stream_options");
    }
    for field in quirks.unsupported {
        map.remove(*field);
    }
    Value::Object(map)
}

/// Checks an answer the upstream sent in our own (hub) shape.
pub fn from_wire(response: ChatResponse) -> Result<ChatResponse, ProviderError> {
    if response.choices.is_empty() {
        return Err(ProviderError::malformed(
            "chat.completion",
            "no choices in the answer",
        ));
    }
    Ok(response)
}

/// One `chat.completion.chunk`, leniently: every field may be missing, and an `error` object
/// may arrive instead (a mid-stream failure after HTTP 200).
#[derive(Debug, Deserialize)]
pub struct WireChunk {
    #[serde(default)]
    choices: Vec<WireChunkChoice>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct WireChunkChoice {
    #[serde(default)]
    delta: WireDelta,
    #[serde(default)]
    finish_reason: Option<FinishReason>,
}

#[derive(Debug, Default, Deserialize)]
struct WireDelta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<WireToolCallDelta>,
}

#[derive(Debug, Deserialize)]
struct WireToolCallDelta {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<WireFunctionDelta>,
}

#[derive(Debug, Deserialize)]
struct WireFunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

/// Chunks → canonical events. A stream that ends without a `finish_reason` was cut.
#[derive(Debug, Default)]
pub struct ChunkParser {
    finished: bool,
}

impl StreamParser<WireChunk> for ChunkParser {
    fn item(&mut self, chunk: WireChunk) -> Result<Vec<StreamEvent>, ProviderError> {
        if let Some(error) = chunk.error {
            return Err(in_stream_error(&error));
        }
        let mut events = Vec::new();
        for choice in chunk.choices {
            if let Some(text) = choice.delta.content
                && !text.is_empty()
            {
                events.push(StreamEvent::Content(text));
            }
            for call in choice.delta.tool_calls {
                let (name, arguments) = match call.function {
                    Some(f) => (f.name, f.arguments.unwrap_or_default()),
                    None => (None, String::new()),
                };
                events.push(StreamEvent::ToolCall {
                    index: call.index,
                    id: call.id,
                    name,
                    arguments,
                });
            }
            if let Some(reason) = choice.finish_reason {
                self.finished = true;
                events.push(StreamEvent::Finish(reason));
            }
        }
        if let Some(usage) = chunk.usage {
            events.push(StreamEvent::Usage(usage));
        }
        Ok(events)
    }

    fn end(&mut self) -> Result<Vec<StreamEvent>, ProviderError> {
        if self.finished {
            Ok(Vec::new())
        } else {
            Err(ProviderError::cut("stream ended before a finish_reason"))
        }
    }
}

/// An `{"error": {...}}` object inside a 200 stream.
fn in_stream_error(error: &Value) -> ProviderError {
    let parsed = ErrorBody::from_value(error);
    let kind = match parsed.kind.as_deref().or(parsed.code.as_deref()) {
        Some("rate_limit_exceeded" | "rate_limit_error") => ErrorKind::RateLimited,
        Some("server_is_overloaded" | "overloaded_error" | "service_unavailable_error") => {
            ErrorKind::Overloaded
        }
        _ => ErrorKind::Server,
    };
    ProviderError::new(kind, format!("error event in stream: {}", parsed.message))
}

/// The parts of an OpenAI-style error body, from any of the shapes compatible servers use:
/// `{"error":{"message","type","param","code"}}` (OpenAI, Ollama /v1, new vLLM),
/// `{"object":"error","message","type","code":400}` (old vLLM), `{"error":"text"}` (Ollama native).
#[derive(Debug, Default, PartialEq)]
struct ErrorBody {
    message: String,
    kind: Option<String>,
    code: Option<String>,
}

impl ErrorBody {
    fn parse(body: &[u8]) -> ErrorBody {
        match serde_json::from_slice::<Value>(body) {
            Ok(v) => match v.get("error") {
                Some(inner) => ErrorBody::from_value(inner),
                None => ErrorBody::from_value(&v),
            },
            Err(_) => ErrorBody {
                message: String::from_utf8_lossy(body).chars().take(500).collect(),
                ..ErrorBody::default()
            },
        }
    }

    fn from_value(v: &Value) -> ErrorBody {
        if let Value::String(s) = v {
            return ErrorBody {
                message: s.clone(),
                ..ErrorBody::default()
            };
        }
        let text = |key: &str| match v.get(key) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        ErrorBody {
            message: text("message").unwrap_or_default(),
            kind: text("type"),
            code: text("code"),
        }
    }
}

/// Classify a non-2xx answer (reference §1.4).
pub fn map_error(status: u16, headers: &HeaderMap, body: &[u8]) -> ProviderError {
    let parsed = ErrorBody::parse(body);
    let code = parsed.code.as_deref().unwrap_or("");
    let lower = parsed.message.to_ascii_lowercase();
    let kind = match status {
        400 | 413
            if code == "context_length_exceeded"
                || lower.contains("maximum context length")
                || lower.contains("context window")
                || lower.contains("context length") =>
        {
            ErrorKind::ContextLength
        }
        429 if matches!(
            code,
            "insufficient_quota" | "credit_balance_exhausted" | "billing_hard_limit_reached"
        ) || lower.contains("exceeded your current quota")
            // Ollama's hosted models: "you have reached your weekly usage limit".
            || lower.contains("usage limit") =>
        {
            ErrorKind::QuotaExhausted
        }
        _ => kind_for_status(status),
    };
    let message = if parsed.message.is_empty() {
        format!("HTTP {status}")
    } else {
        parsed.message
    };
    let mut err = ProviderError::new(kind, message)
        .with_status(status)
        .with_retry_after(retry_after(headers));
    if kind != ErrorKind::QuotaExhausted
        && let Some(retry) = should_retry_override(headers)
    {
        err.retryable = retry;
    }
    err
}

/// A non-2xx answer, carried whole through async-openai to `from_openai_error`.
#[derive(Debug)]
struct UpstreamHttpError {
    status: u16,
    headers: HeaderMap,
    body: bytes::Bytes,
}

impl std::fmt::Display for UpstreamHttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "upstream answered HTTP {}", self.status)
    }
}

impl std::error::Error for UpstreamHttpError {}

fn from_openai_error(err: OpenAIError) -> ProviderError {
    match err {
        OpenAIError::Boxed(inner) => match inner.downcast::<UpstreamHttpError>() {
            Ok(http) => map_error(http.status, &http.headers, &http.body),
            Err(other) => ProviderError::new(ErrorKind::Connect, other.to_string()),
        },
        OpenAIError::Reqwest(e) => crate::error::from_reqwest(&e),
        OpenAIError::JSONDeserialize(e, _) => ProviderError::malformed("chat completion JSON", e),
        OpenAIError::StreamError(e) => ProviderError::new(ErrorKind::StreamCut, e.to_string()),
        OpenAIError::ApiError(api) => {
            let status = api.status_code.as_u16();
            ProviderError::new(kind_for_status(status), api.api_error.message).with_status(status)
        }
        OpenAIError::InvalidArgument(msg) => ProviderError::new(ErrorKind::InvalidRequest, msg),
        other => ProviderError::new(ErrorKind::Connect, other.to_string()),
    }
}

/// async-openai's HTTP transport: sends with the shared reqwest client; a non-2xx answer is read
/// whole and returned as an error so headers survive.
#[derive(Clone)]
struct CaptureErrors {
    http: reqwest::Client,
}

impl tower::Service<HttpRequestFactory> for CaptureErrors {
    type Response = reqwest::Response;
    type Error = OpenAIError;
    type Future = Pin<Box<dyn Future<Output = Result<reqwest::Response, OpenAIError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, factory: HttpRequestFactory) -> Self::Future {
        let http = self.http.clone();
        Box::pin(async move {
            let request = factory.build().await?;
            let response = http.execute(request).await?;
            if response.status().is_success() {
                return Ok(response);
            }
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = response.bytes().await.unwrap_or_default();
            Err(OpenAIError::Boxed(Box::new(UpstreamHttpError {
                status,
                headers,
                body,
            })))
        })
    }
}

#[cfg(test)]
#[path = "openai_tests.rs"]
mod tests;
