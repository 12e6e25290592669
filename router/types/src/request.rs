//! The canonical chat request: OpenAI's `CreateChatCompletionRequest`, with unknown fields kept.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A chat request as the gateway sees it after admission.
///
/// `max_tokens` is the hub's single output cap: at admission `max_completion_tokens` (OpenAI's
/// current name) is folded into it, and each provider renders it under its own name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing)]
    pub max_completion_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Switchyard's cache control (`{mode, ttl_s}`); never sent upstream.
    #[serde(default, skip_serializing, deserialize_with = "crate::strict::object")]
    pub cache: Option<crate::cache_control::CacheRequest>,
    /// The client's own body when it came through a native door (`/v1/messages`): sent as is
    /// to upstreams of that format. Not part of the hub's JSON.
    #[serde(skip)]
    pub native: Option<crate::native::SharedNative>,
    /// Set when the request is for embeddings (`/v1/embeddings`), not a chat.
    #[serde(skip)]
    pub embed: Option<crate::native::EmbedSpec>,
    /// Everything else the client sent (logprobs, metadata, reasoning_effort, …): passed through
    /// to OpenAI-shaped upstreams, ignored by the others.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `stop`: one string or up to four.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s.clone()],
            Stop::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::Developer => "developer",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }

    /// System and developer messages are both "instructions" to non-OpenAI providers.
    pub fn is_instruction(self) -> bool {
        matches!(self, Role::System | Role::Developer)
    }
}

/// One message. A flat struct rather than an enum per role so that translation code can read
/// any field without matching, and validation can name the exact field that is wrong.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Message {
    pub fn new(role: Role, text: impl Into<String>) -> Self {
        Message {
            role,
            content: Some(Content::Text(text.into())),
            name: None,
            tool_calls: None,
            tool_call_id: None,
            refusal: None,
            extra: Map::new(),
        }
    }

    /// The message's text: the string content, or its text parts joined.
    pub fn text(&self) -> String {
        self.content.as_ref().map(Content::text).unwrap_or_default()
    }

    pub fn tool_calls(&self) -> &[ToolCall] {
        self.tool_calls.as_deref().unwrap_or(&[])
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

impl Content {
    pub fn text(&self) -> String {
        match self {
            Content::Text(s) => s.clone(),
            Content::Parts(parts) => {
                let mut out = String::new();
                for part in parts {
                    if let ContentPart::Text { text } = part {
                        out.push_str(text);
                    }
                }
                out
            }
        }
    }

    pub fn parts(&self) -> Vec<ContentPart> {
        match self {
            Content::Text(s) => vec![ContentPart::Text { text: s.clone() }],
            Content::Parts(p) => p.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    Text { text: String },
    ImageUrl { image_url: ImageUrl },
    InputAudio { input_audio: Value },
    File { file: Value },
    Refusal { refusal: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageUrl {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `(mime, base64)` when a URL is a base64 `data:` URI (images and files in message parts).
pub fn data_uri(url: &str) -> Option<(&str, &str)> {
    url.strip_prefix("data:")?.split_once(";base64,")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    pub function: FunctionCall,
}

fn function_type() -> String {
    "function".to_owned()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    /// JSON text, as OpenAI sends it (a string, not an object).
    pub arguments: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    pub function: FunctionDef,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionDef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ToolChoice {
    Mode(ToolChoiceMode),
    Named(NamedToolChoice),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolChoiceMode {
    None,
    Auto,
    Required,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedToolChoice {
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    pub function: FunctionName,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionName {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema { json_schema: JsonSchemaFormat },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonSchemaFormat {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

impl ChatRequest {
    /// A minimal request, for tests and internal callers.
    pub fn new(model: impl Into<String>, messages: Vec<Message>) -> Self {
        ChatRequest {
            model: model.into(),
            messages,
            max_tokens: None,
            max_completion_tokens: None,
            temperature: None,
            top_p: None,
            stop: None,
            stream: false,
            stream_options: None,
            tools: None,
            tool_choice: None,
            parallel_tool_calls: None,
            response_format: None,
            seed: None,
            n: None,
            user: None,
            cache: None,
            native: None,
            embed: None,
            extra: Map::new(),
        }
    }

    /// Fold `max_completion_tokens` into `max_tokens` (the smaller wins when both are sent).
    pub fn normalise(&mut self) {
        if let Some(mct) = self.max_completion_tokens.take() {
            self.max_tokens = Some(self.max_tokens.map_or(mct, |mt| mt.min(mct)));
        }
    }

    pub fn has_tools(&self) -> bool {
        self.tools.as_ref().is_some_and(|t| !t.is_empty())
            && !matches!(
                self.tool_choice,
                Some(ToolChoice::Mode(ToolChoiceMode::None))
            )
    }

    pub fn wants_json(&self) -> bool {
        matches!(
            self.response_format,
            Some(ResponseFormat::JsonObject | ResponseFormat::JsonSchema { .. })
        )
    }

    /// Whether a streamed answer should end with a usage chunk for the client.
    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }

    /// Semantic checks serde cannot express. Returns the offending parameter path and why.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |p: &str, m: String| Err((p.to_owned(), m));
        if self.model.trim().is_empty() {
            return err("model", "must not be empty".into());
        }
        if self.messages.is_empty() {
            return err("messages", "must contain at least one message".into());
        }
        for (i, m) in self.messages.iter().enumerate() {
            validate_message(i, m)?;
        }
        if let Some(t) = self.temperature
            && !(0.0..=2.0).contains(&t)
        {
            return err("temperature", format!("{t} is out of range [0, 2]"));
        }
        if let Some(p) = self.top_p
            && !(0.0..=1.0).contains(&p)
        {
            return err("top_p", format!("{p} is out of range [0, 1]"));
        }
        if self.max_tokens == Some(0) {
            return err("max_tokens", "must be at least 1".into());
        }
        if let Some(n) = self.n
            && n != 1
        {
            return err("n", format!("only n = 1 is supported, got {n}"));
        }
        if let Some(Stop::Many(v)) = &self.stop
            && v.len() > 4
        {
            return err("stop", format!("at most 4 stop sequences, got {}", v.len()));
        }
        for (i, tool) in self.tools.iter().flatten().enumerate() {
            if tool.kind != "function" {
                return err(
                    &format!("tools[{i}].type"),
                    format!("unsupported tool type '{}'", tool.kind),
                );
            }
            if !valid_name(&tool.function.name) {
                return err(
                    &format!("tools[{i}].function.name"),
                    "must be 1-64 characters of a-z, A-Z, 0-9, '_' or '-'".into(),
                );
            }
        }
        if let Some(ToolChoice::Named(named)) = &self.tool_choice {
            let known = self
                .tools
                .iter()
                .flatten()
                .any(|t| t.function.name == named.function.name);
            if !known {
                return err(
                    "tool_choice.function.name",
                    format!(
                        "'{}' is not one of the request's tools",
                        named.function.name
                    ),
                );
            }
        }
        if let Some(ResponseFormat::JsonSchema { json_schema }) = &self.response_format
            && !valid_name(&json_schema.name)
        {
            return err(
                "response_format.json_schema.name",
                "must be 1-64 characters of a-z, A-Z, 0-9, '_' or '-'".into(),
            );
        }
        Ok(())
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn validate_message(i: usize, m: &Message) -> Result<(), (String, String)> {
    let path = |f: &str| format!("messages[{i}].{f}");
    match m.role {
        Role::Tool => {
            if m.tool_call_id.as_deref().is_none_or(str::is_empty) {
                return Err((path("tool_call_id"), "required for role 'tool'".into()));
            }
            if m.content.is_none() {
                return Err((path("content"), "required for role 'tool'".into()));
            }
        }
        Role::Assistant => {
            if m.content.is_none() && m.tool_calls().is_empty() && m.refusal.is_none() {
                return Err((
                    path("content"),
                    "an assistant message needs content or tool_calls".into(),
                ));
            }
        }
        Role::System | Role::Developer | Role::User => {
            if m.content.is_none() {
                return Err((
                    path("content"),
                    format!("required for role '{}'", m.role.as_str()),
                ));
            }
        }
    }
    if m.role != Role::Assistant && m.tool_calls.is_some() {
        return Err((
            path("tool_calls"),
            "only assistant messages carry tool_calls".into(),
        ));
    }
    Ok(())
}
