//! OpenAI Chat Completions — and every OpenAI-compatible server (Ollama, vLLM, llama.cpp)
//! through the same code with a small `Quirks` table.
//!
//! Requests go out on the shared client (`transport`), like every other provider's: bounded
//! body reads, an SSE parser that refuses oversized events, no redirects. (An SDK client was
//! used here before; its stream reader buffers the upstream into an unbounded queue ahead of
//! the consumer and reads bodies whole, which a hostile upstream can turn into unbounded
//! memory.) Our hub types go over the wire as they are, so unknown fields pass through.
//!
//! Embeddings (`POST {base}/embeddings`) go through the same client and error table; the
//! vectors are checked by `embed` before they become a hub answer.

use http::HeaderMap;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::error::{kind_for_status, retry_after, should_retry_override};
use super::{
    Call, Dialect, ErrorKind, EventStream, ProviderError, ProviderKind, ProviderSettings,
    StreamParser, embed, join_url, post_json, read_json, sse_stream, tool_index,
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
    /// Whether `/embeddings` takes `dimensions`. Where it does not, it is not sent and the
    /// returned length is checked against the one asked for instead.
    pub embed_dimensions: bool,
}

impl Quirks {
    pub fn for_provider(kind: ProviderKind, dialect: Dialect) -> Quirks {
        match (kind, dialect) {
            (ProviderKind::OpenAi, _) => Quirks {
                max_tokens_field: "max_completion_tokens",
                unsupported: &[],
                stream_usage: true,
                embed_dimensions: true,
            },
            (_, Dialect::Ollama) => Quirks {
                max_tokens_field: "max_tokens",
                unsupported: &["tool_choice", "logit_bias", "user", "n"],
                stream_usage: true,
                embed_dimensions: false,
            },
            // vLLM shortens Matryoshka models' vectors (`dimensions`) and refuses it elsewhere.
            (_, Dialect::Vllm) => Quirks {
                max_tokens_field: "max_tokens",
                unsupported: &[],
                stream_usage: true,
                embed_dimensions: true,
            },
            (_, Dialect::LlamaCpp) => Quirks {
                max_tokens_field: "max_tokens",
                unsupported: &["user", "n"],
                stream_usage: true,
                embed_dimensions: false,
            },
            (_, Dialect::Generic) => Quirks {
                max_tokens_field: "max_tokens",
                unsupported: &[],
                stream_usage: true,
                embed_dimensions: false,
            },
        }
    }
}

#[derive(Debug, Clone)]
pub struct OpenAiProvider {
    settings: ProviderSettings,
    quirks: Quirks,
    http: reqwest::Client,
}

impl OpenAiProvider {
    pub fn new(settings: ProviderSettings, http: reqwest::Client) -> Self {
        OpenAiProvider {
            quirks: Quirks::for_provider(settings.kind, settings.dialect),
            settings,
            http,
        }
    }

    pub fn settings(&self) -> &ProviderSettings {
        &self.settings
    }

    fn post(&self) -> reqwest::RequestBuilder {
        self.post_to("chat/completions")
    }

    fn post_to(&self, path: &str) -> reqwest::RequestBuilder {
        let mut request = self.http.post(join_url(&self.settings.base_url, path));
        if let Some(key) = &self.settings.api_key {
            request = request.bearer_auth(key.expose());
        }
        for (name, value) in &self.settings.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        request
    }

    pub async fn chat(&self, call: Call<'_>) -> Result<ChatResponse, ProviderError> {
        let body = to_wire(call, self.quirks, false);
        let response = post_json(call.traced(self.post()), &body, map_error).await?;
        let limit = self.settings.limits.max_response_bytes;
        let answer: ChatResponse = read_json(response, "chat completion JSON", limit).await?;
        from_wire(answer)
    }

    pub async fn chat_stream(&self, call: Call<'_>) -> Result<EventStream, ProviderError> {
        let body = to_wire(call, self.quirks, true);
        let request = self
            .post()
            .header(http::header::ACCEPT, "text/event-stream");
        let response = post_json(call.traced(request), &body, map_error).await?;
        Ok(sse_stream(
            response,
            ChunkParser::default(),
            self.settings.limits,
        ))
    }

    /// An embeddings request (`call.request.embed` is set): `POST {base}/embeddings`. The
    /// upstream's `usage.prompt_tokens` is the answer's; a server that reports none gives 0,
    /// and the gateway then uses its own count.
    pub async fn embed(&self, call: Call<'_>) -> Result<ChatResponse, ProviderError> {
        let inputs = embed::inputs(call.request)?;
        let body = embed_to_wire(call, self.quirks, &inputs);
        let response = post_json(call.traced(self.post_to("embeddings")), &body, map_error).await?;
        let limit = self.settings.limits.max_response_bytes;
        let answer: WireEmbeddings = read_json(response, "embeddings list JSON", limit).await?;
        embed_from_wire(answer, call, inputs.len())
    }
}

/// An embeddings request as this server wants it: always floats (the door encodes base64).
pub fn embed_to_wire(call: Call<'_>, quirks: Quirks, inputs: &[String]) -> Value {
    let mut map = Map::new();
    map.insert("model".into(), json!(call.upstream_model));
    map.insert("input".into(), json!(inputs));
    map.insert("encoding_format".into(), json!("float"));
    if quirks.embed_dimensions
        && let Some(n) = embed::dimensions(call)
    {
        map.insert("dimensions".into(), json!(n));
    }
    if let Some(user) = &call.request.user
        && !quirks.unsupported.contains(&"user")
    {
        map.insert("user".into(), json!(user));
    }
    Value::Object(map)
}

/// An OpenAI embeddings list: `{"data":[{"index","embedding"}],"model","usage"}`.
#[derive(Debug, Deserialize)]
pub struct WireEmbeddings {
    data: Vec<WireEmbedding>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    usage: Option<WireEmbeddingUsage>,
}

#[derive(Debug, Deserialize)]
struct WireEmbedding {
    /// Servers that leave it out list the vectors in input order.
    #[serde(default)]
    index: Option<u64>,
    embedding: Vec<f32>,
}

#[derive(Debug, Deserialize)]
struct WireEmbeddingUsage {
    #[serde(default)]
    prompt_tokens: u32,
}

/// The longest model name taken from an answer; a longer one is replaced by the configured id.
const MAX_MODEL_NAME: usize = 256;

/// Checks an embeddings list against the call and puts its vectors in input order.
pub fn embed_from_wire(
    wire: WireEmbeddings,
    call: Call<'_>,
    count: usize,
) -> Result<ChatResponse, ProviderError> {
    const WHAT: &str = "embeddings list";
    let items = wire
        .data
        .into_iter()
        .enumerate()
        .map(|(i, d)| (d.index.unwrap_or(i as u64), d.embedding));
    let vectors = embed::place(WHAT, count, items)?;
    let vectors = embed::check(WHAT, count, embed::dimensions(call), vectors)?;
    let model = wire
        .model
        .filter(|m| !m.is_empty() && m.len() <= MAX_MODEL_NAME)
        .unwrap_or_else(|| call.upstream_model.to_owned());
    let prompt = wire.usage.map_or(0, |u| u.prompt_tokens);
    Ok(embed::answer(&model, vectors, prompt))
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

/// `data:` chunks → canonical events. `[DONE]` ends the stream; a stream that ends without a
/// `finish_reason` was cut.
#[derive(Debug, Default)]
pub struct ChunkParser {
    finished: bool,
    done: bool,
}

impl StreamParser<eventsource_stream::Event> for ChunkParser {
    fn item(
        &mut self,
        event: eventsource_stream::Event,
    ) -> Result<Vec<StreamEvent>, ProviderError> {
        if self.done || event.event == "keepalive" {
            return Ok(Vec::new());
        }
        if event.data == "[DONE]" {
            self.done = true;
            return Ok(Vec::new());
        }
        let chunk: WireChunk = serde_json::from_str(&event.data)
            .map_err(|e| ProviderError::malformed("chat.completion.chunk", e))?;
        self.chunk(chunk)
    }

    fn end(&mut self) -> Result<Vec<StreamEvent>, ProviderError> {
        if self.finished {
            Ok(Vec::new())
        } else {
            Err(ProviderError::cut("stream ended before a finish_reason"))
        }
    }
}

impl ChunkParser {
    fn chunk(&mut self, chunk: WireChunk) -> Result<Vec<StreamEvent>, ProviderError> {
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
                    index: tool_index(call.index)?,
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

#[cfg(test)]
#[path = "openai_tests.rs"]
mod tests;
