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

use http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::error::{kind_for_status, parse_proto_duration, retry_after};
use super::{
    Call, ErrorKind, EventStream, ProviderError, ProviderSettings, join_url, post_json, read_json,
    sse_stream,
};
use crate::types::{
    ChatResponse, Choice, Content, ContentPart, FinishReason, FunctionCall, Message,
    ResponseFormat, Role, ToolCall, ToolChoice, ToolChoiceMode, Usage, new_id, unix_now,
};

#[path = "gemini_stream.rs"]
mod stream;

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
        let model = model.strip_prefix("models/").unwrap_or(model);
        let path = if stream {
            format!("models/{model}:streamGenerateContent?alt=sse")
        } else {
            format!("models/{model}:generateContent")
        };
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
        let response = post_json(self.post(call.upstream_model, false), &body, map_error).await?;
        let answer: WireResponse = read_json(response, "Gemini GenerateContentResponse").await?;
        from_wire(answer, body.json_tool.as_deref(), call.upstream_model)
    }

    pub async fn chat_stream(&self, call: Call<'_>) -> Result<EventStream, ProviderError> {
        let body = to_wire(call)?;
        let request = self.post(call.upstream_model, true);
        let response = post_json(request, &body, map_error).await?;
        Ok(sse_stream(response, FrameParser::new(body.json_tool)))
    }
}

// ---------------------------------------------------------------------------------------------
// Request

/// A `GenerateContentRequest` body.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WireRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<WireContent>,
    contents: Vec<WireContent>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<Value>,
    generation_config: GenerationConfig,
    /// The JSON-mode answer function, when one was declared. Not sent as such.
    #[serde(skip)]
    pub json_tool: Option<String>,
}

#[derive(Debug, Serialize)]
struct WireContent {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    parts: Vec<Part>,
}

/// One part: an object with exactly one of these keys.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
enum Part {
    Text(String),
    InlineData(MediaRef),
    FileData(MediaRef),
    FunctionCall {
        name: String,
        /// The client's arguments text, checked to be a JSON object, sent byte for byte.
        args: Box<RawValue>,
    },
    FunctionResponse {
        name: String,
        response: Value,
    },
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct MediaRef {
    mime_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_uri: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct GenerationConfig {
    max_output_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stop_sequences: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_mime_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_schema: Option<Value>,
}

fn invalid(message: impl Into<String>) -> ProviderError {
    ProviderError::new(ErrorKind::InvalidRequest, message)
}

/// The canonical request as a `GenerateContentRequest`.
pub fn to_wire(call: Call<'_>) -> Result<WireRequest, ProviderError> {
    let request = call.request;
    let (system, contents) = contents(&request.messages)?;
    let mut declarations: Vec<Value> = request
        .tools
        .iter()
        .flatten()
        .map(|t| {
            declaration(
                &t.function.name,
                t.function.description.as_deref(),
                t.function.parameters.as_ref(),
            )
        })
        .collect();
    let schema = match &request.response_format {
        Some(ResponseFormat::JsonSchema { json_schema }) => Some(json_schema),
        _ => None,
    };
    let mut response_mime_type = request.wants_json().then_some("application/json");
    let mut response_schema = schema.and_then(|s| s.schema.as_ref()).map(clean_schema);
    let mut json_tool = None;
    if response_mime_type.is_some() && !declarations.is_empty() {
        // Without a schema with properties there is nothing to call: the JSON constraint is
        // dropped rather than have the request rejected.
        if let (Some(format), Some(params)) = (schema, response_schema.take())
            && !is_empty_object_schema(&params)
        {
            let mut name = format.name.clone();
            while request
                .tools
                .iter()
                .flatten()
                .any(|t| t.function.name == name)
            {
                name.push_str("_answer");
            }
            let description = format.description.as_deref().unwrap_or(
                "Give your final answer by calling this function: its arguments are the answer.",
            );
            declarations.push(declaration(&name, Some(description), Some(&params)));
            json_tool = Some(name);
        }
        response_mime_type = None;
    }
    let tool_config = if declarations.is_empty() {
        None
    } else {
        tool_config(request.tool_choice.as_ref(), json_tool.as_deref())
    };
    Ok(WireRequest {
        system_instruction: system,
        contents,
        tools: if declarations.is_empty() {
            Vec::new()
        } else {
            vec![json!({"functionDeclarations": declarations})]
        },
        tool_config,
        generation_config: GenerationConfig {
            max_output_tokens: call.max_tokens(),
            temperature: request.temperature,
            top_p: request.top_p,
            stop_sequences: request
                .stop
                .as_ref()
                .map(|s| s.to_vec())
                .unwrap_or_default(),
            seed: request.seed,
            response_mime_type,
            response_schema,
        },
        json_tool,
    })
}

fn declaration(name: &str, description: Option<&str>, parameters: Option<&Value>) -> Value {
    let mut d = json!({"name": name});
    if let Some(description) = description {
        d["description"] = json!(description);
    }
    if let Some(parameters) = parameters.map(clean_schema)
        && !is_empty_object_schema(&parameters)
    {
        d["parameters"] = parameters;
    }
    d
}

/// `functionCallingConfig` for the client's tool choice. With a JSON answer function the model
/// must call a function (`ANY`): only the answer function when the client's tools may not run.
fn tool_config(choice: Option<&ToolChoice>, json_tool: Option<&str>) -> Option<Value> {
    use ToolChoiceMode as M;
    let config = match (choice, json_tool) {
        (Some(ToolChoice::Named(named)), _) => {
            json!({"mode": "ANY", "allowedFunctionNames": [named.function.name]})
        }
        (Some(ToolChoice::Mode(M::None)), Some(answer)) => {
            json!({"mode": "ANY", "allowedFunctionNames": [answer]})
        }
        (_, Some(_)) | (Some(ToolChoice::Mode(M::Required)), None) => json!({"mode": "ANY"}),
        (Some(ToolChoice::Mode(M::None)), None) => json!({"mode": "NONE"}),
        (Some(ToolChoice::Mode(M::Auto)), None) => json!({"mode": "AUTO"}),
        (None, None) => return None,
    };
    Some(json!({"functionCallingConfig": config}))
}

/// Instructions → `systemInstruction`; the rest as alternating user/model turns.
fn contents(
    messages: &[Message],
) -> Result<(Option<WireContent>, Vec<WireContent>), ProviderError> {
    let mut system = Vec::new();
    let mut out: Vec<WireContent> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let (role, parts) = match m.role {
            Role::System | Role::Developer => {
                system.extend(Some(m.text()).filter(|t| !t.is_empty()).map(Part::Text));
                continue;
            }
            Role::User => ("user", parts(m.content.as_ref())?),
            Role::Assistant => ("model", model_parts(m)?),
            Role::Tool => ("user", vec![function_response(&messages[..i], m)?]),
        };
        if parts.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.role == Some(role) => last.parts.extend(parts),
            _ => out.push(WireContent {
                role: Some(role),
                parts,
            }),
        }
    }
    let system = (!system.is_empty()).then_some(WireContent {
        role: None,
        parts: system,
    });
    Ok((system, out))
}

fn parts(content: Option<&Content>) -> Result<Vec<Part>, ProviderError> {
    let mut out = Vec::new();
    for part in content.map(Content::parts).unwrap_or_default() {
        out.push(match part {
            ContentPart::Text { text } | ContentPart::Refusal { refusal: text } => {
                if text.is_empty() {
                    continue;
                }
                Part::Text(text)
            }
            ContentPart::ImageUrl { image_url } => media(&image_url.url)?,
            ContentPart::File { file } => match file.get("file_data").and_then(Value::as_str) {
                Some(uri) if data_uri(uri).is_some() => media(uri)?,
                _ => return Err(invalid("Gemini takes files only as file_data URIs")),
            },
            ContentPart::InputAudio { input_audio } => {
                let data = input_audio.get("data").and_then(Value::as_str);
                let format = input_audio.get("format").and_then(Value::as_str);
                match (data, format) {
                    (Some(data), Some(format)) => Part::InlineData(MediaRef {
                        mime_type: format!("audio/{format}"),
                        data: Some(data.to_owned()),
                        file_uri: None,
                    }),
                    _ => return Err(invalid("input_audio needs data and format")),
                }
            }
        });
    }
    Ok(out)
}

/// A data URI becomes `inlineData`; an http(s) URL is passed as `fileData` for Gemini to fetch
/// (its MIME type guessed from the extension), and Gemini's own answer decides if it can.
fn media(url: &str) -> Result<Part, ProviderError> {
    if let Some((mime_type, data)) = data_uri(url) {
        return Ok(Part::InlineData(MediaRef {
            mime_type: mime_type.to_owned(),
            data: Some(data.to_owned()),
            file_uri: None,
        }));
    }
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(invalid(
            "an image must be a base64 data: URI or an http(s) URL",
        ));
    }
    let path = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .to_ascii_lowercase();
    let ext = path.rsplit('.').next().unwrap_or("");
    let mime_type = match ext {
        "png" => "image/png",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        _ => "image/jpeg",
    };
    Ok(Part::FileData(MediaRef {
        mime_type: mime_type.to_owned(),
        data: None,
        file_uri: Some(url.to_owned()),
    }))
}

fn data_uri(url: &str) -> Option<(&str, &str)> {
    url.strip_prefix("data:")?.split_once(";base64,")
}

fn model_parts(m: &Message) -> Result<Vec<Part>, ProviderError> {
    let mut out = parts(m.content.as_ref())?;
    for call in m.tool_calls() {
        let args = call.function.arguments.trim();
        let args = if args.is_empty() { "{}" } else { args };
        let args = serde_json::from_str::<Box<RawValue>>(args)
            .ok()
            .filter(|raw| raw.get().starts_with('{'))
            .ok_or_else(|| {
                invalid(format!(
                    "tool call '{}': arguments are not a JSON object",
                    call.id
                ))
            })?;
        out.push(Part::FunctionCall {
            name: call.function.name.clone(),
            args,
        });
    }
    Ok(out)
}

/// A tool message as `functionResponse`: named after the earlier call it answers, its content
/// under `result` (as JSON when it parses, else as text).
fn function_response(earlier: &[Message], m: &Message) -> Result<Part, ProviderError> {
    let id = m.tool_call_id.as_deref().unwrap_or_default();
    let name = earlier
        .iter()
        .rev()
        .flat_map(Message::tool_calls)
        .find(|c| c.id == id)
        .map(|c| c.function.name.clone())
        .or_else(|| m.name.clone())
        .ok_or_else(|| invalid(format!("tool message answers unknown tool call '{id}'")))?;
    let text = m.text();
    let result = serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text));
    Ok(Part::FunctionResponse {
        name,
        response: json!({"result": result}),
    })
}

/// A JSON schema as Gemini's `Schema` accepts it: without `additionalProperties`, `$schema` and
/// `strict`, and with `"type": [T, "null"]` as `"type": T, "nullable": true`. Only schema
/// positions are rewritten: property names and `enum`/`default` values are left alone.
fn clean_schema(schema: &Value) -> Value {
    let Value::Object(map) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (key, value) in map {
        let cleaned = match key.as_str() {
            "additionalProperties" | "$schema" | "strict" => continue,
            "properties" | "$defs" | "definitions" => match value {
                Value::Object(props) => Value::Object(
                    props
                        .iter()
                        .map(|(k, v)| (k.clone(), clean_schema(v)))
                        .collect(),
                ),
                other => other.clone(),
            },
            "items" | "not" => clean_schema(value),
            "anyOf" | "oneOf" | "allOf" | "prefixItems" => match value {
                Value::Array(list) => Value::Array(list.iter().map(clean_schema).collect()),
                other => other.clone(),
            },
            "type" => match value.as_array().map(|t| t.as_slice()) {
                Some([a, b]) if a == "null" || b == "null" => {
                    out.insert("nullable".to_owned(), Value::Bool(true));
                    if a == "null" { b.clone() } else { a.clone() }
                }
                _ => value.clone(),
            },
            _ => value.clone(),
        };
        out.insert(key.clone(), cleaned);
    }
    Value::Object(out)
}

/// Gemini rejects an OBJECT schema without properties: a tool without arguments sends none.
fn is_empty_object_schema(schema: &Value) -> bool {
    schema.get("type").and_then(Value::as_str) == Some("object")
        && schema
            .get("properties")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::anthropic::fixtures::{assert_golden, check_error_table, fixture};
    use crate::types::ChatRequest;

    fn call(request: &ChatRequest) -> Call<'_> {
        Call {
            request,
            upstream_model: "gemini-2.5-flash",
            default_max_tokens: 65536,
        }
    }

    fn canonical_request() -> ChatRequest {
        serde_json::from_str(&fixture("canonical_request.json")).unwrap()
    }

    fn response(name: &str) -> WireResponse {
        serde_json::from_str(&fixture(name)).unwrap()
    }

    #[test]
    fn canonical_request_matches_the_golden_body() {
        let wire = to_wire(call(&canonical_request())).unwrap();
        assert_eq!(wire.json_tool.as_deref(), Some("weather_report"));
        assert_golden("gemini_request.json", &serde_json::to_value(&wire).unwrap());
    }

    #[test]
    fn json_mode_is_native_without_function_declarations() {
        let mut request = canonical_request();
        request.tools = None;
        request.messages.truncate(2);
        let wire = to_wire(call(&request)).unwrap();
        assert_eq!(wire.json_tool, None);
        let wire = serde_json::to_value(wire).unwrap();
        let config = &wire["generationConfig"];
        assert_eq!(config["responseMimeType"], "application/json");
        assert_eq!(
            config["responseSchema"]["properties"]["wind"],
            json!({"type": "string", "nullable": true})
        );
        assert!(
            config["responseSchema"]
                .get("additionalProperties")
                .is_none()
        );
        assert!(wire.get("toolConfig").is_none() && wire.get("tools").is_none());

        let mut request = canonical_request();
        request.tool_choice = Some(ToolChoice::Mode(ToolChoiceMode::None));
        let wire = serde_json::to_value(to_wire(call(&request)).unwrap()).unwrap();
        let forced = json!({"mode": "ANY", "allowedFunctionNames": ["weather_report"]});
        assert_eq!(wire["toolConfig"]["functionCallingConfig"], forced);
        request.response_format = Some(ResponseFormat::JsonObject);
        let wire = to_wire(call(&request)).unwrap();
        assert_eq!(wire.json_tool, None);
        let wire = serde_json::to_value(wire).unwrap();
        assert!(wire["generationConfig"].get("responseMimeType").is_none());
        assert_eq!(
            wire["toolConfig"]["functionCallingConfig"],
            json!({"mode": "NONE"})
        );
    }

    #[test]
    fn turns_media_and_tool_results() {
        let mut request: ChatRequest = serde_json::from_value(json!({
            "model": "m", "tool_choice": {"type": "function", "function": {"name": "f"}},
            "tools": [{"type": "function", "function": {"name": "f",
                "parameters": {"type": "object", "properties": {}}}}],
            "messages": [
                {"role": "system", "content": "One."}, {"role": "user", "content": "hi"},
                {"role": "user", "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/a.webp?s=1"}}]},
                {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                    "function": {"name": "f", "arguments": ""}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "{\"ok\":true}"},
                {"role": "tool", "tool_call_id": "c1", "content": "plain"}]
        }))
        .unwrap();
        let wire = serde_json::to_value(to_wire(call(&request)).unwrap()).unwrap();
        assert_eq!(
            wire["systemInstruction"],
            json!({"parts": [{"text": "One."}]})
        );
        let parts = &wire["contents"][0]["parts"];
        assert_eq!(parts[0], json!({"text": "hi"}));
        assert_eq!(
            parts[1],
            json!({"inlineData": {"mimeType": "image/png", "data": "AAAA"}})
        );
        let file = json!({"mimeType": "image/webp", "fileUri": "https://x.test/a.webp?s=1"});
        assert_eq!(parts[2]["fileData"], file);
        assert_eq!(wire["contents"][1]["role"], "model");
        assert_eq!(
            wire["contents"][1]["parts"][0]["functionCall"]["args"],
            json!({})
        );
        let results = &wire["contents"][2]["parts"];
        let response =
            |r: Value| json!({"functionResponse": {"name": "f", "response": {"result": r}}});
        assert_eq!(
            results,
            &json!([response(json!({"ok": true})), response(json!("plain"))])
        );
        assert_eq!(
            wire["tools"][0]["functionDeclarations"][0],
            json!({"name": "f"})
        );
        let named = json!({"mode": "ANY", "allowedFunctionNames": ["f"]});
        assert_eq!(wire["toolConfig"]["functionCallingConfig"], named);
        assert_eq!(wire["generationConfig"], json!({"maxOutputTokens": 65536}));

        request.messages[4].tool_call_id = Some("nope".into());
        assert_eq!(
            to_wire(call(&request)).unwrap_err().kind,
            ErrorKind::InvalidRequest
        );
        request.messages[3].tool_calls.as_mut().unwrap()[0]
            .function
            .arguments = "nope".into();
        assert_eq!(
            to_wire(call(&request)).unwrap_err().kind,
            ErrorKind::InvalidRequest
        );
    }

    #[test]
    fn schema_cleaning_keeps_property_names_and_values() {
        let schema = json!({"type": "object", "$schema": "x", "additionalProperties": false,
            "properties": {"strict": {"type": ["null", "boolean"]},
                "list": {"type": "array", "items": {"type": "object", "additionalProperties": {}}},
                "mode": {"anyOf": [{"type": "string", "strict": true}], "default": {"strict": 1}}}});
        let want = json!({"type": "object",
            "properties": {"strict": {"type": "boolean", "nullable": true},
                "list": {"type": "array", "items": {"type": "object"}},
                "mode": {"anyOf": [{"type": "string"}], "default": {"strict": 1}}}});
        assert_eq!(clean_schema(&schema), want);
    }

    #[test]
    fn from_wire_reads_text_thoughts_and_cache() {
        let r = from_wire(response("gemini_response_text.json"), None, "fallback").unwrap();
        assert_eq!(
            (r.id.as_str(), r.model.as_str()),
            ("abc123", "gemini-2.5-flash")
        );
        assert_eq!(r.message().unwrap().text(), "18C and cloudy.");
        assert_eq!(r.choices[0].finish_reason, FinishReason::Stop);
        let usage = Usage::new(1025, 6 + 120)
            .with_cache(1000, 0)
            .with_reasoning(120);
        assert_eq!(r.usage, usage);
    }

    #[test]
    fn from_wire_reads_function_calls_and_the_json_answer() {
        let r = from_wire(
            response("gemini_response_tool.json"),
            None,
            "gemini-2.5-pro",
        )
        .unwrap();
        assert_eq!(r.model, "gemini-2.5-pro");
        assert!(r.id.starts_with("chatcmpl-"));
        assert_eq!(r.choices[0].finish_reason, FinishReason::ToolCalls);
        let calls = r.message().unwrap().tool_calls();
        assert_eq!(calls.len(), 2);
        assert!(calls[0].id.starts_with("call_") && calls[0].id != calls[1].id);
        assert_eq!(
            calls[0].function.arguments,
            r#"{"city":"Paris","unit":"c"}"#
        );
        assert_eq!(calls[1].id, "fc_2");
        assert!(r.message().unwrap().content.is_none());

        let r = from_wire(
            response("gemini_response_tool.json"),
            Some("get_weather"),
            "m",
        )
        .unwrap();
        assert_eq!(
            r.message().unwrap().text(),
            r#"{"city":"Paris","unit":"c"}"#
        );
        assert_eq!(r.message().unwrap().tool_calls().len(), 1);
    }

    #[test]
    fn finish_reasons_and_blocked_prompts() {
        let blocked =
            r#"{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":9}}"#;
        let r = from_wire(serde_json::from_str(blocked).unwrap(), None, "m").unwrap();
        assert_eq!(r.choices[0].finish_reason, FinishReason::ContentFilter);
        assert_eq!(
            (r.message().unwrap().text(), r.usage),
            (String::new(), Usage::new(9, 0))
        );
        let empty = from_wire(serde_json::from_str("{}").unwrap(), None, "m");
        assert_eq!(empty.unwrap_err().kind, ErrorKind::MalformedResponse);
        let cases = [
            ("STOP", FinishReason::Stop),
            ("MAX_TOKENS", FinishReason::Length),
            ("SAFETY", FinishReason::ContentFilter),
            ("RECITATION", FinishReason::ContentFilter),
            ("BLOCKLIST", FinishReason::ContentFilter),
            ("PROHIBITED_CONTENT", FinishReason::ContentFilter),
            ("SPII", FinishReason::ContentFilter),
            ("IMAGE_SAFETY", FinishReason::ContentFilter),
            ("MALFORMED_FUNCTION_CALL", FinishReason::Stop),
            ("OTHER", FinishReason::Stop),
        ];
        for (reason, finish) in cases {
            assert_eq!(finish_reason(reason, false), finish, "{reason}");
        }
        assert_eq!(finish_reason("STOP", true), FinishReason::ToolCalls);
    }

    #[test]
    fn error_table() {
        check_error_table("gemini_errors.json", map_error);
        let wrapped = r#"[{"error":{"code":404,"message":"gone","status":"NOT_FOUND"}}]"#;
        assert_eq!(
            map_error(404, &HeaderMap::new(), wrapped.as_bytes()).message,
            "gone"
        );
    }
}
