//! Anthropic Messages (`POST {base}/messages`): hub request → wire, wire answer → hub, the
//! named-event SSE parser and the error table (reference §2, §5).
//!
//! Anthropic has no `response_format`. JSON mode is emulated with an answer tool: the request
//! gains a tool whose `input_schema` is the wanted schema, tool choice makes the model call it,
//! and that one tool's input comes back to the client as plain JSON text with `finish_reason:
//! stop` (`WireRequest::json_tool` names it; nothing else is ever converted).

use http::HeaderMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::error::{kind_for_status, retry_after};
use super::{
    Call, ErrorKind, EventStream, ProviderError, ProviderSettings, join_url, post_json, read_json,
    sse_stream,
};
use crate::types::{
    ChatRequest, ChatResponse, Choice, Content, ContentPart, FinishReason, FunctionCall, Message,
    ResponseFormat, Role, ToolCall, ToolChoice, ToolChoiceMode, Usage, unix_now,
};

#[path = "anthropic_stream.rs"]
mod stream;

pub use stream::EventParser;

const API_VERSION: &str = "2023-06-01";
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

    pub async fn chat(&self, call: Call<'_>) -> Result<ChatResponse, ProviderError> {
        let wire = to_wire(call, false)?;
        let response = post_json(self.post(), &wire, map_error).await?;
        let answer: WireResponse = read_json(response, "Anthropic message").await?;
        Ok(from_wire(
            answer,
            wire.json_tool.as_deref(),
            call.upstream_model,
        ))
    }

    pub async fn chat_stream(&self, call: Call<'_>) -> Result<EventStream, ProviderError> {
        let wire = to_wire(call, true)?;
        let request = self
            .post()
            .header(http::header::ACCEPT, "text/event-stream");
        let response = post_json(request, &wire, map_error).await?;
        Ok(sse_stream(response, EventParser::new(wire.json_tool)))
    }
}

// ---------------------------------------------------------------------------------------------
// Request

/// A Messages API request body.
#[derive(Debug, Serialize)]
pub struct WireRequest {
    model: String,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    messages: Vec<WireMessage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stop_sequences: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<WireTool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Value>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    /// The JSON-mode answer tool, when `response_format` asked for JSON. Not sent as such.
    #[serde(skip)]
    pub json_tool: Option<String>,
}

#[derive(Debug, Serialize)]
struct WireMessage {
    role: &'static str,
    /// A lone text block goes out as a plain string, as Anthropic's own examples do.
    #[serde(serialize_with = "blocks_or_text")]
    content: Vec<Block>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block {
    Text {
        text: String,
    },
    Image {
        source: Source,
    },
    Document {
        source: Source,
    },
    ToolUse {
        id: String,
        name: String,
        /// The client's arguments text, checked to be a JSON object, sent byte for byte.
        input: Box<RawValue>,
    },
    ToolResult {
        tool_use_id: String,
        #[serde(serialize_with = "blocks_or_text")]
        content: Vec<Block>,
    },
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Source {
    Base64 { media_type: String, data: String },
    Url { url: String },
}

#[derive(Debug, Serialize)]
struct WireTool {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    input_schema: Value,
}

fn blocks_or_text<S: Serializer>(blocks: &[Block], s: S) -> Result<S::Ok, S::Error> {
    match blocks {
        [Block::Text { text }] => s.serialize_str(text),
        [] => s.serialize_str(""),
        _ => blocks.serialize(s),
    }
}

fn invalid(message: impl Into<String>) -> ProviderError {
    ProviderError::new(ErrorKind::InvalidRequest, message)
}

/// The canonical request as a Messages API body.
pub fn to_wire(call: Call<'_>, stream: bool) -> Result<WireRequest, ProviderError> {
    let request = call.request;
    let (system, messages) = messages(&request.messages)?;
    let mut tools: Vec<WireTool> = request
        .tools
        .iter()
        .flatten()
        .map(|t| WireTool {
            name: t.function.name.clone(),
            description: t.function.description.clone(),
            input_schema: t
                .function
                .parameters
                .clone()
                .unwrap_or_else(|| json!({"type": "object"})),
        })
        .collect();
    let client_tools = !tools.is_empty();
    let json_tool = answer_tool(request);
    let json_name = json_tool.as_ref().map(|t| t.name.clone());
    tools.extend(json_tool);
    let tool_choice = if tools.is_empty() {
        None
    } else {
        tool_choice(request, client_tools, json_name.as_deref())
    };
    let temperature = request.temperature.map(|t| t.clamp(0.0, 1.0));
    Ok(WireRequest {
        model: call.upstream_model.to_owned(),
        max_tokens: call.max_tokens(),
        system,
        messages,
        temperature,
        // Recent Claude models reject temperature and top_p together; temperature wins.
        top_p: request.top_p.filter(|_| temperature.is_none()),
        stop_sequences: request
            .stop
            .as_ref()
            .map(|s| s.to_vec())
            .unwrap_or_default(),
        tools,
        tool_choice,
        metadata: request.user.as_ref().map(|u| json!({"user_id": u})),
        stream,
        json_tool: json_name,
    })
}

/// The JSON-mode answer tool, named after the schema (renamed if a client tool has that name).
fn answer_tool(request: &ChatRequest) -> Option<WireTool> {
    let (mut name, description, schema) = match &request.response_format {
        Some(ResponseFormat::JsonSchema { json_schema }) => (
            json_schema.name.clone(),
            json_schema.description.clone(),
            json_schema.schema.clone(),
        ),
        Some(ResponseFormat::JsonObject) => (JSON_OBJECT_TOOL.to_owned(), None, None),
        Some(ResponseFormat::Text) | None => return None,
    };
    while request
        .tools
        .iter()
        .flatten()
        .any(|t| t.function.name == name)
    {
        name.push_str("_answer");
    }
    let description = description.unwrap_or_else(|| {
        "Give your final answer by calling this tool: its input is the answer.".to_owned()
    });
    Some(WireTool {
        name,
        description: Some(description),
        input_schema: schema.unwrap_or_else(|| json!({"type": "object"})),
    })
}

/// The client's tool choice; with JSON emulation the answer tool is forced when no client tool
/// may be called, and `any` (some tool, the answer tool included) when one may.
fn tool_choice(
    request: &ChatRequest,
    client_tools: bool,
    json_tool: Option<&str>,
) -> Option<Value> {
    use ToolChoiceMode as M;
    let callable = client_tools && request.tool_choice != Some(ToolChoice::Mode(M::None));
    let mut choice = match (&request.tool_choice, json_tool) {
        (Some(ToolChoice::Named(named)), _) => json!({"type": "tool", "name": named.function.name}),
        (Some(ToolChoice::Mode(M::Required)), _) => json!({"type": "any"}),
        (_, Some(answer)) if !callable => json!({"type": "tool", "name": answer}),
        (_, Some(_)) => json!({"type": "any"}),
        (Some(ToolChoice::Mode(M::None)), None) => return Some(json!({"type": "none"})),
        (Some(ToolChoice::Mode(M::Auto)), None) => json!({"type": "auto"}),
        (None, None) if request.parallel_tool_calls == Some(false) => json!({"type": "auto"}),
        (None, None) => return None,
    };
    if request.parallel_tool_calls == Some(false) {
        choice["disable_parallel_tool_use"] = Value::Bool(true);
    }
    Some(choice)
}

/// Instructions → `system`; the rest as alternating user/assistant turns.
fn messages(messages: &[Message]) -> Result<(Option<String>, Vec<WireMessage>), ProviderError> {
    let mut system = Vec::new();
    let mut out: Vec<WireMessage> = Vec::new();
    for m in messages {
        let (role, blocks) = match m.role {
            Role::System | Role::Developer => {
                system.push(m.text());
                continue;
            }
            Role::User => ("user", content_blocks(m.content.as_ref())?),
            Role::Assistant => ("assistant", assistant_blocks(m)?),
            Role::Tool => ("user", vec![tool_result(m)?]),
        };
        if blocks.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.role == role => last.content.extend(blocks),
            _ => out.push(WireMessage {
                role,
                content: blocks,
            }),
        }
    }
    system.retain(|s| !s.is_empty());
    let system = (!system.is_empty()).then(|| system.join("\n\n"));
    Ok((system, out))
}

fn content_blocks(content: Option<&Content>) -> Result<Vec<Block>, ProviderError> {
    let mut blocks = Vec::new();
    for part in content.map(Content::parts).unwrap_or_default() {
        let block = match part {
            ContentPart::Text { text } | ContentPart::Refusal { refusal: text } => {
                if text.is_empty() {
                    continue;
                }
                Block::Text { text }
            }
            ContentPart::ImageUrl { image_url } => Block::Image {
                source: source(&image_url.url)?,
            },
            ContentPart::File { file } => {
                let data = file.get("file_data").and_then(Value::as_str);
                match data.and_then(data_uri) {
                    Some((media_type, data)) => Block::Document {
                        source: Source::Base64 {
                            media_type: media_type.to_owned(),
                            data: data.to_owned(),
                        },
                    },
                    None => return Err(invalid("Anthropic takes files only as file_data URIs")),
                }
            }
            ContentPart::InputAudio { .. } => {
                return Err(invalid("Anthropic does not accept audio input"));
            }
        };
        blocks.push(block);
    }
    Ok(blocks)
}

fn assistant_blocks(m: &Message) -> Result<Vec<Block>, ProviderError> {
    let mut blocks = content_blocks(m.content.as_ref())?;
    if blocks.is_empty()
        && let Some(refusal) = m.refusal.as_ref().filter(|r| !r.is_empty())
    {
        blocks.push(Block::Text {
            text: refusal.clone(),
        });
    }
    for call in m.tool_calls() {
        let args = call.function.arguments.trim();
        let args = if args.is_empty() { "{}" } else { args };
        let input = serde_json::from_str::<Box<RawValue>>(args)
            .ok()
            .filter(|raw| raw.get().starts_with('{'))
            .ok_or_else(|| {
                invalid(format!(
                    "tool call '{}': arguments are not a JSON object",
                    call.id
                ))
            })?;
        blocks.push(Block::ToolUse {
            id: call.id.clone(),
            name: call.function.name.clone(),
            input,
        });
    }
    Ok(blocks)
}

fn tool_result(m: &Message) -> Result<Block, ProviderError> {
    let content = match &m.content {
        Some(Content::Parts(_)) => content_blocks(m.content.as_ref())?,
        _ => vec![Block::Text { text: m.text() }],
    };
    Ok(Block::ToolResult {
        tool_use_id: m.tool_call_id.clone().unwrap_or_default(),
        content,
    })
}

fn source(url: &str) -> Result<Source, ProviderError> {
    if let Some((media_type, data)) = data_uri(url) {
        Ok(Source::Base64 {
            media_type: media_type.to_owned(),
            data: data.to_owned(),
        })
    } else if url.starts_with("https://") || url.starts_with("http://") {
        Ok(Source::Url {
            url: url.to_owned(),
        })
    } else {
        Err(invalid(
            "an image must be a base64 data: URI or an http(s) URL",
        ))
    }
}

/// `(media type, base64)` of a `data:<type>;base64,<data>` URI.
fn data_uri(url: &str) -> Option<(&str, &str)> {
    url.strip_prefix("data:")?.split_once(";base64,")
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

/// Wire-fixture helpers shared by the provider adapters' tests: fixture files, golden bodies,
/// error tables and SSE playback through the real framing and driver.
#[cfg(test)]
pub(super) mod fixtures {
    use std::path::PathBuf;

    use futures::StreamExt;

    use http::HeaderMap;
    use serde_json::Value;

    use crate::providers::{MapError, ProviderError, StreamParser, parse_stream};
    use crate::types::StreamEvent;

    fn fixture_path(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/wire")
            .join(name)
    }

    pub(crate) fn fixture(name: &str) -> String {
        std::fs::read_to_string(fixture_path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// Compare with a golden file, or rewrite it when `UPDATE_FIXTURES=1`.
    pub(crate) fn assert_golden(name: &str, actual: &Value) {
        if std::env::var("UPDATE_FIXTURES").as_deref() == Ok("1") {
            let text = serde_json::to_string_pretty(actual).unwrap() + "\n";
            std::fs::create_dir_all(fixture_path("")).unwrap();
            std::fs::write(fixture_path(name), text).unwrap();
            return;
        }
        let expected: Value = serde_json::from_str(&fixture(name)).unwrap();
        let mut diffs = Vec::new();
        json_diff("", &expected, actual, &mut diffs);
        let diffs = diffs.join("\n");
        assert!(
            diffs.is_empty(),
            "{name} (UPDATE_FIXTURES=1 rewrites it):\n{diffs}"
        );
    }

    fn json_diff(path: &str, expected: &Value, actual: &Value, out: &mut Vec<String>) {
        match (expected, actual) {
            (Value::Object(e), Value::Object(a)) => {
                for key in e.keys().chain(a.keys().filter(|k| !e.contains_key(*k))) {
                    let p = format!("{path}/{key}");
                    match (e.get(key), a.get(key)) {
                        (Some(e), Some(a)) => json_diff(&p, e, a, out),
                        (Some(e), None) => out.push(format!("{p}: missing (expected {e})")),
                        (None, Some(a)) => out.push(format!("{p}: unexpected {a}")),
                        (None, None) => {}
                    }
                }
            }
            (Value::Array(e), Value::Array(a)) if e.len() == a.len() => {
                for (i, (e, a)) in e.iter().zip(a).enumerate() {
                    json_diff(&format!("{path}/{i}"), e, a, out);
                }
            }
            _ if expected != actual => {
                out.push(format!("{path}: expected {expected}, got {actual}"))
            }
            _ => {}
        }
    }

    /// Every case of an error-table fixture: `{status, headers?, body, kind, retryable,
    /// retry_after?}`, the body a JSON value or (as a string) the raw text.
    pub(crate) fn check_error_table(name: &str, map_error: MapError) {
        let cases: Vec<Value> = serde_json::from_str(&fixture(name)).unwrap();
        for case in cases {
            let mut headers = HeaderMap::new();
            for (k, v) in case["headers"].as_object().into_iter().flatten() {
                let name = http::HeaderName::from_bytes(k.as_bytes()).unwrap();
                headers.insert(name, v.as_str().unwrap().parse().unwrap());
            }
            let body = match &case["body"] {
                Value::String(raw) => raw.clone(),
                other => other.to_string(),
            };
            let status = case["status"].as_u64().unwrap() as u16;
            let err = map_error(status, &headers, body.as_bytes());
            let wait = err.retry_after.map(|d| d.as_secs());
            let got = (err.kind.label(), err.retryable, wait, err.status);
            let want = (
                case["kind"].as_str().unwrap(),
                case["retryable"].as_bool().unwrap(),
                case["retry_after"].as_u64(),
                Some(status),
            );
            assert_eq!(got, want, "{name}: {case}");
        }
    }

    /// Run SSE text through the real framing and driver, in small chunks.
    pub(crate) fn run_sse<P>(text: &str, parser: P) -> (Vec<StreamEvent>, Option<ProviderError>)
    where
        P: StreamParser<eventsource_stream::Event>,
    {
        use eventsource_stream::Eventsource;
        let chunks: Vec<Result<Vec<u8>, std::convert::Infallible>> =
            text.as_bytes().chunks(17).map(|c| Ok(c.to_vec())).collect();
        let items = futures::stream::iter(chunks)
            .eventsource()
            .map(|r| r.map_err(|e| ProviderError::malformed("sse", e)));
        let results = futures::executor::block_on(parse_stream(items, parser).collect::<Vec<_>>());
        let (mut events, mut error) = (Vec::new(), None);
        for r in results {
            match r {
                Ok(e) => events.push(e),
                Err(e) => error = Some(e),
            }
        }
        (events, error)
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{assert_golden, check_error_table, fixture};
    use super::*;

    /// System prompt, user, assistant tool call, tool result, tools, JSON schema, sampling.
    fn canonical_request() -> ChatRequest {
        serde_json::from_str(&fixture("canonical_request.json")).unwrap()
    }

    fn call(request: &ChatRequest) -> Call<'_> {
        Call {
            request,
            upstream_model: "claude-sonnet-4-20250514",
            default_max_tokens: 8192,
        }
    }

    fn response(name: &str) -> WireResponse {
        serde_json::from_str(&fixture(name)).unwrap()
    }

    #[test]
    fn canonical_request_matches_the_golden_body() {
        let request = canonical_request();
        let wire = to_wire(call(&request), false).unwrap();
        assert_eq!(wire.json_tool.as_deref(), Some("weather_report"));
        assert_golden(
            "anthropic_request.json",
            &serde_json::to_value(&wire).unwrap(),
        );
    }

    #[test]
    fn json_mode_forces_the_answer_tool_when_no_client_tool_may_run() {
        let mut request = canonical_request();
        request.tools = None;
        request.messages.truncate(2);
        let wire = serde_json::to_value(to_wire(call(&request), true).unwrap()).unwrap();
        assert_eq!(
            wire["tool_choice"],
            json!({"type": "tool", "name": "weather_report"})
        );
        assert_eq!(wire["stream"], json!(true));
        request.response_format = Some(ResponseFormat::JsonObject);
        let wire = to_wire(call(&request), false).unwrap();
        assert_eq!(wire.json_tool.as_deref(), Some(JSON_OBJECT_TOOL));
        let wire = serde_json::to_value(wire).unwrap();
        assert_eq!(wire["tools"][0]["input_schema"], json!({"type": "object"}));
    }

    #[test]
    fn merges_turns_maps_media_and_sampling() {
        let request: ChatRequest = serde_json::from_value(json!({
            "model": "m", "temperature": 1.7, "top_p": 0.9, "user": "u-42",
            "parallel_tool_calls": false, "tool_choice": "required",
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "messages": [
                {"role": "developer", "content": "One."}, {"role": "system", "content": "Two."},
                {"role": "user", "content": "a"},
                {"role": "user", "content": [{"type": "text", "text": "b"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/cat.jpg"}}]}]
        }))
        .unwrap();
        let wire = serde_json::to_value(to_wire(call(&request), false).unwrap()).unwrap();
        let content = &wire["messages"][0]["content"];
        assert_eq!(wire["messages"].as_array().unwrap().len(), 1);
        assert_eq!(wire["system"], "One.\n\nTwo.");
        assert_eq!(
            content[2]["source"],
            json!({"type": "base64", "media_type": "image/png", "data": "AAAA"})
        );
        assert_eq!(
            content[3]["source"],
            json!({"type": "url", "url": "https://x.test/cat.jpg"})
        );
        assert_eq!(
            (&wire["temperature"], wire.get("top_p")),
            (&json!(1.0), None)
        );
        assert_eq!(wire["max_tokens"], json!(8192));
        assert_eq!(wire["metadata"], json!({"user_id": "u-42"}));
        assert_eq!(wire["tools"][0]["input_schema"], json!({"type": "object"}));
        assert_eq!(
            wire["tool_choice"],
            json!({"type": "any", "disable_parallel_tool_use": true})
        );
    }

    #[test]
    fn tool_results_join_the_next_user_turn_and_bad_arguments_are_rejected() {
        let mut request: ChatRequest = serde_json::from_value(json!({"model": "m", "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "f", "arguments": ""}},
                {"id": "t2", "type": "function", "function": {"name": "g", "arguments": "{\"b\":1,\"a\":2}"}}]},
            {"role": "tool", "tool_call_id": "t1", "content": "one"},
            {"role": "tool", "tool_call_id": "t2", "content": "two"},
            {"role": "user", "content": "and?"}]}))
        .unwrap();
        let body = serde_json::to_string(&to_wire(call(&request), false).unwrap()).unwrap();
        assert!(
            body.contains(r#""input":{"b":1,"a":2}"#),
            "arguments kept byte for byte: {body}"
        );
        let wire: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(wire["messages"][1]["content"][0]["input"], json!({}));
        assert_eq!(
            wire["messages"][2]["content"],
            json!([{"type": "tool_result", "tool_use_id": "t1", "content": "one"},
                   {"type": "tool_result", "tool_use_id": "t2", "content": "two"},
                   {"type": "text", "text": "and?"}])
        );
        request.messages[1].tool_calls.as_mut().unwrap()[0]
            .function
            .arguments = "[1]".into();
        let err = to_wire(call(&request), false).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidRequest);
    }

    #[test]
    fn from_wire_reads_text_and_cache_usage() {
        let r = from_wire(response("anthropic_response_text.json"), None, "fallback");
        assert_eq!(r.id, "msg_01XFDUDYJgAACzvnptvVoYEL");
        assert_eq!(r.model, "claude-sonnet-4-20250514");
        assert_eq!(
            r.message().unwrap().text(),
            "It is 18C and cloudy in Paris."
        );
        assert_eq!(r.choices[0].finish_reason, FinishReason::Stop);
        assert_eq!(
            r.usage,
            Usage::new(412 + 2000 + 100, 12).with_cache(2000, 100)
        );
    }

    #[test]
    fn from_wire_reads_tool_use_and_converts_the_json_answer() {
        let r = from_wire(response("anthropic_response_tool_use.json"), None, "m");
        let calls = r.message().unwrap().tool_calls();
        assert_eq!(r.choices[0].finish_reason, FinishReason::ToolCalls);
        assert_eq!(calls[0].id, "toolu_01");
        assert_eq!(
            calls[0].function.arguments,
            r#"{"city":"Paris","unit":"c"}"#
        );
        assert_eq!(r.message().unwrap().text(), "Let me check.");

        let answer = response("anthropic_response_json_answer.json");
        let r = from_wire(answer, Some("weather_report"), "m");
        assert_eq!(r.choices[0].finish_reason, FinishReason::Stop);
        assert_eq!(
            r.message().unwrap().text(),
            r#"{"summary":"Cloudy","temp_c":18}"#
        );
        assert!(r.message().unwrap().tool_calls.is_none());
        assert_eq!(r.usage, Usage::new(420, 30));
    }

    #[test]
    fn stop_reasons() {
        let cases = [
            ("end_turn", FinishReason::Stop),
            ("stop_sequence", FinishReason::Stop),
            ("pause_turn", FinishReason::Stop),
            ("max_tokens", FinishReason::Length),
            ("model_context_window_exceeded", FinishReason::Length),
            ("refusal", FinishReason::ContentFilter),
        ];
        for (stop, finish) in cases {
            assert_eq!(finish_reason(Some(stop), false), finish, "{stop}");
        }
        assert_eq!(
            finish_reason(Some("tool_use"), true),
            FinishReason::ToolCalls
        );
    }

    #[test]
    fn error_table() {
        check_error_table("anthropic_errors.json", map_error);
        let body =
            br#"{"type":"error","error":{"type":"api_error","message":"x"},"request_id":"req_9"}"#;
        assert!(
            map_error(500, &HeaderMap::new(), body)
                .message
                .contains("req_9")
        );
    }
}
