//! Anthropic Messages request (as the official SDKs send it) → hub `ChatRequest`.
//!
//! The body is read twice: as an ordered `RawObject` (kept byte for byte for Anthropic
//! upstreams: `cache_control`, thinking signatures, citations and unknown blocks survive), and
//! as the typed request below, which becomes the hub request every other provider is
//! translated from. What only Anthropic can serve marks the request `only_native`, so routing
//! keeps it on Anthropic models; what the hub drops for other providers is listed in the README
//! (`thinking` and its blocks, `cache_control`, `top_k`, `is_error`).

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value};

use switchyard_types::{
    ChatRequest, Content, ContentPart, FunctionCall, FunctionDef, FunctionName, ImageUrl, Message,
    NamedToolChoice, Native, NativeFormat, RawObject, Role, Stop, Tool, ToolCall, ToolChoice,
    ToolChoiceMode,
};

use crate::api::ApiError;
use crate::api::text_or::TextOr;

/// `POST /v1/messages`, typed. Unknown top-level members are allowed (they reach Anthropic
/// upstreams in the native body).
#[derive(Debug, Deserialize)]
pub struct MessagesRequest {
    pub model: String,
    /// Required by `/v1/messages`; `count_tokens` takes none.
    #[serde(default)]
    pub max_tokens: Option<u32>,
    pub messages: Vec<InMessage>,
    #[serde(default)]
    pub system: Option<System>,
    #[serde(default)]
    pub tools: Option<Vec<InTool>>,
    #[serde(default, deserialize_with = "switchyard_types::strict::object")]
    pub tool_choice: Option<InToolChoice>,
    #[serde(default)]
    pub stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default, deserialize_with = "switchyard_types::strict::object")]
    pub metadata: Option<Metadata>,
    #[serde(default)]
    pub thinking: Option<Thinking>,
    #[serde(default)]
    pub stream: bool,
    /// Switchyard's cache control, as on chat.
    #[serde(default, deserialize_with = "switchyard_types::strict::object")]
    pub cache: Option<switchyard_types::cache_control::CacheRequest>,
}

pub type System = TextOr<SystemBlock>;

#[derive(Debug, Deserialize)]
pub struct SystemBlock {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InRole {
    User,
    Assistant,
}

#[derive(Debug, Deserialize)]
pub struct InMessage {
    pub role: InRole,
    pub content: InContent,
}

/// Blocks are read as JSON values first: a block type the hub does not model is kept, as its
/// JSON text, for counting (the request then goes to Anthropic only, in the native body).
pub type InContent = TextOr<Value>;

/// A content block. Types the hub does not model parse as `Other` (kept in the native body).
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    Text {
        text: String,
        #[serde(default)]
        citations: Option<Value>,
    },
    Image {
        source: Source,
    },
    Document {
        source: Source,
        #[serde(default)]
        citations: Option<Value>,
        #[serde(default)]
        title: Option<String>,
        /// Read only to check its type: it reaches Anthropic in the native body.
        #[serde(default, rename = "context")]
        _context: Option<String>,
    },
    ToolUse {
        id: String,
        name: String,
        /// A `Value`, not raw text: an internally tagged enum buffers its members, and raw
        /// text cannot come out of that buffer. Anthropic upstreams get the client's own bytes
        /// (the native body); others get this object re-serialised.
        input: Value,
    },
    ToolResult {
        tool_use_id: String,
        #[serde(default)]
        content: Option<ToolResultContent>,
    },
    /// The model's own reasoning (kept for Anthropic in the native body, dropped elsewhere).
    Thinking {},
    RedactedThinking {},
}

/// The block types `Block` models.
const KNOWN_BLOCKS: &[&str] = &[
    "text",
    "image",
    "document",
    "tool_use",
    "tool_result",
    "thinking",
    "redacted_thinking",
];

/// One content block: a modelled `Block`, or another type kept as its JSON text.
enum Item {
    Known(Block),
    Other(String),
}

/// Read one block. A type the hub does not model is noted (the request is then for Anthropic
/// only) and kept as its JSON text, so that it still counts.
fn parse_block(here: &str, v: Value, note: &mut OnlyNative) -> Result<Item, ApiError> {
    let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
    if kind.is_empty() {
        return Err(bad(format!("{here}.type"), "is required"));
    }
    if !KNOWN_BLOCKS.contains(&kind) {
        note.note(
            format!("{here}.type"),
            "a block type the hub does not model",
        );
        return Ok(Item::Other(v.to_string()));
    }
    serde_json::from_value(v).map(Item::Known).map_err(|e| {
        let text = e.to_string();
        let text = text.split(" at line ").next().unwrap_or(&text).to_owned();
        match text.strip_prefix("missing field `") {
            Some(rest) => bad(
                format!("{here}.{}", rest.trim_end_matches('`')),
                "is required",
            ),
            None => bad(here.to_owned(), text),
        }
    })
}

pub type ToolResultContent = TextOr<Value>;

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Source {
    Base64 {
        media_type: String,
        data: String,
    },
    Url {
        url: String,
    },
    Text {
        data: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
pub struct InTool {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub input_schema: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct InToolChoice {
    #[serde(rename = "type")]
    pub kind: ChoiceKind,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub disable_parallel_tool_use: Option<bool>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChoiceKind {
    Auto,
    Any,
    Tool,
    None,
}

#[derive(Debug, Deserialize)]
pub struct Metadata {
    #[serde(default)]
    pub user_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Thinking {
    Enabled { budget_tokens: u32 },
    Disabled,
}

/// What the door parsed: the hub request and whether the client asked for a stream.
pub struct Parsed {
    pub hub: ChatRequest,
    pub stream: bool,
}

/// Parse a `/v1/messages` body (`count_tokens`: `max_tokens` is not required) into the hub
/// request, with the native body attached.
pub fn parse(bytes: &[u8], count_only: bool) -> Result<Parsed, ApiError> {
    let typed: MessagesRequest = crate::api::chat::parse_json(bytes)?;
    // The same bytes, member by member: a body that parsed above is a JSON object.
    let body: RawObject = serde_json::from_slice(bytes).map_err(ApiError::invalid_json)?;
    let stream = typed.stream && !count_only;
    let hub = to_hub(typed, body, count_only)?;
    Ok(Parsed { hub, stream })
}

fn bad(param: impl Into<String>, message: impl std::fmt::Display) -> ApiError {
    ApiError::invalid_param(param, message)
}

fn to_hub(r: MessagesRequest, body: RawObject, count_only: bool) -> Result<ChatRequest, ApiError> {
    let max_tokens = match r.max_tokens {
        Some(0) => return Err(bad("max_tokens", "must be at least 1")),
        Some(n) => Some(n),
        None if count_only => None,
        None => return Err(bad("max_tokens", "is required")),
    };
    if let Some(t) = r.temperature
        && !(0.0..=1.0).contains(&t)
    {
        return Err(bad("temperature", format!("{t} is out of range [0, 1]")));
    }
    if let Some(p) = r.top_p
        && !(0.0..=1.0).contains(&p)
    {
        return Err(bad("top_p", format!("{p} is out of range [0, 1]")));
    }
    if let Some(Thinking::Enabled { budget_tokens }) = r.thinking {
        if budget_tokens < 1024 {
            return Err(bad("thinking.budget_tokens", "must be at least 1024"));
        }
        if let Some(max) = max_tokens
            && budget_tokens >= max
        {
            return Err(bad(
                "thinking.budget_tokens",
                format!("must be less than max_tokens ({max})"),
            ));
        }
    }
    if r.messages.is_empty() {
        return Err(bad("messages", "must contain at least one message"));
    }
    let mut only = OnlyNative::default();
    let mut messages = Vec::with_capacity(r.messages.len() + 1);
    match r.system {
        Some(TextOr::Text(text)) if !text.is_empty() => {
            messages.push(Message::new(Role::System, text));
        }
        Some(TextOr::Items(blocks)) => {
            let mut parts = Vec::with_capacity(blocks.len());
            for (i, b) in blocks.into_iter().enumerate() {
                if b.kind != "text" {
                    return Err(bad(
                        format!("system[{i}].type"),
                        format!("system blocks must be text, got '{}'", b.kind),
                    ));
                }
                parts.push(ContentPart::Text { text: b.text });
            }
            if !parts.is_empty() {
                let mut m = Message::new(Role::System, "");
                m.content = Some(Content::Parts(parts));
                messages.push(m);
            }
        }
        _ => {}
    }
    for (i, m) in r.messages.into_iter().enumerate() {
        let path = format!("messages[{i}].content");
        let blocks = match m.content {
            TextOr::Text(text) => vec![Item::Known(Block::Text {
                text,
                citations: None,
            })],
            TextOr::Items(values) if values.is_empty() => {
                return Err(bad(path, "must contain at least one content block"));
            }
            TextOr::Items(values) => values
                .into_iter()
                .enumerate()
                .map(|(j, v)| parse_block(&format!("{path}[{j}]"), v, &mut only))
                .collect::<Result<_, _>>()?,
        };
        match m.role {
            InRole::User => user_turn(&path, blocks, &mut messages, &mut only)?,
            InRole::Assistant => assistant_turn(&path, blocks, &mut messages, &mut only)?,
        }
    }
    let mut tools = Vec::new();
    for (i, t) in r.tools.into_iter().flatten().enumerate() {
        match t.kind.as_deref() {
            None | Some("custom") => {}
            Some(other) => {
                only.note(
                    format!("tools[{i}].type"),
                    &format!("the Anthropic server tool '{other}'"),
                );
                continue;
            }
        }
        let Some(schema) = t.input_schema else {
            return Err(bad(format!("tools[{i}].input_schema"), "is required"));
        };
        if !schema.is_object() {
            return Err(bad(
                format!("tools[{i}].input_schema"),
                "must be a JSON object",
            ));
        }
        tools.push(Tool {
            kind: "function".into(),
            function: FunctionDef {
                name: t.name,
                description: t.description,
                parameters: Some(schema),
                strict: None,
            },
        });
    }
    let mut parallel_tool_calls = None;
    let tool_choice = match r.tool_choice {
        None => None,
        Some(c) => {
            if c.disable_parallel_tool_use == Some(true) {
                parallel_tool_calls = Some(false);
            }
            Some(match c.kind {
                ChoiceKind::Auto => ToolChoice::Mode(ToolChoiceMode::Auto),
                ChoiceKind::Any => ToolChoice::Mode(ToolChoiceMode::Required),
                ChoiceKind::None => ToolChoice::Mode(ToolChoiceMode::None),
                ChoiceKind::Tool => {
                    let Some(name) = c.name else {
                        return Err(bad("tool_choice.name", "is required for type 'tool'"));
                    };
                    ToolChoice::Named(NamedToolChoice {
                        kind: "function".into(),
                        function: FunctionName { name },
                    })
                }
            })
        }
    };
    let stop = r.stop_sequences.filter(|s| !s.is_empty());
    if let Some(s) = &stop
        && s.len() > 4
    {
        // Anthropic takes more; OpenAI-shaped upstreams take four.
        only.note("stop_sequences".into(), "more than four stop sequences");
    }
    let mut hub = ChatRequest::new(r.model, messages);
    hub.max_tokens = max_tokens;
    hub.temperature = r.temperature;
    hub.top_p = r.top_p;
    hub.stop = stop.map(Stop::Many);
    hub.tools = (!tools.is_empty()).then_some(tools);
    hub.tool_choice = tool_choice;
    hub.parallel_tool_calls = parallel_tool_calls;
    hub.user = r.metadata.and_then(|m| m.user_id);
    hub.cache = r.cache;
    let only = only.0;
    if only.is_some() && hub.messages.iter().all(|m| m.role.is_instruction()) {
        // Everything the client sent is for Anthropic only (the native body carries it); the
        // hub still needs a turn to count and route.
        hub.messages.push(Message::new(Role::User, ""));
    }
    validate_hub(&hub, only.is_some())?;
    let mut body = body;
    // Switchyard's own member is never sent upstream.
    body.remove("cache");
    hub.native = Some(Arc::new(Native {
        format: NativeFormat::AnthropicMessages,
        body,
        only_native: only,
        headers: Vec::new(),
    }));
    Ok(hub)
}

/// The hub's own checks, with parameter names as this door spells them.
fn validate_hub(hub: &ChatRequest, only_native: bool) -> Result<(), ApiError> {
    match hub.validate() {
        Ok(()) => Ok(()),
        // More than four stop sequences: only Anthropic will be asked.
        Err((param, _)) if param == "stop" && only_native => Ok(()),
        Err((param, message)) => Err(bad(door_param(&param), message)),
    }
}

/// A hub parameter path as `/v1/messages` names it.
fn door_param(hub: &str) -> String {
    if hub == "stop" {
        return "stop_sequences".into();
    }
    if let Some(rest) = hub.strip_prefix("tools[")
        && let Some((i, field)) = rest.split_once("].function.")
    {
        return format!("tools[{i}].{field}");
    }
    if hub == "tool_choice.function.name" {
        return "tool_choice.name".into();
    }
    hub.to_owned()
}

/// The first part of a request that only Anthropic upstreams can serve.
#[derive(Default)]
struct OnlyNative(Option<(String, String)>);

impl OnlyNative {
    fn note(&mut self, param: String, what: &str) {
        if self.0.is_none() {
            self.0 = Some((param, what.to_owned()));
        }
    }
}

/// A user turn: tool results become hub `tool` messages (in order, first), the rest one user
/// message.
fn user_turn(
    path: &str,
    blocks: Vec<Item>,
    out: &mut Vec<Message>,
    note: &mut OnlyNative,
) -> Result<(), ApiError> {
    let mut parts = Vec::new();
    for (j, item) in blocks.into_iter().enumerate() {
        let here = format!("{path}[{j}]");
        let block = match item {
            Item::Known(b) => b,
            Item::Other(json) => {
                parts.push(ContentPart::Text { text: json });
                continue;
            }
        };
        match block {
            Block::ToolResult {
                tool_use_id,
                content,
            } => {
                if tool_use_id.is_empty() {
                    return Err(bad(format!("{here}.tool_use_id"), "must not be empty"));
                }
                let inner = match content {
                    None => Vec::new(),
                    Some(TextOr::Text(t)) => vec![ContentPart::Text { text: t }],
                    Some(TextOr::Items(bs)) => {
                        let mut inner = Vec::new();
                        for (k, v) in bs.into_iter().enumerate() {
                            let p = format!("{here}.content[{k}]");
                            match parse_block(&p, v, note)? {
                                Item::Known(b) => inner.extend(simple_part(&p, b, note)?),
                                Item::Other(json) => inner.push(ContentPart::Text { text: json }),
                            }
                        }
                        inner
                    }
                };
                let mut m = Message::new(Role::Tool, "");
                m.tool_call_id = Some(tool_use_id);
                m.content = Some(match inner.as_slice() {
                    [ContentPart::Text { .. }] | [] => Content::Text(
                        inner
                            .iter()
                            .map(|p| match p {
                                ContentPart::Text { text } => text.as_str(),
                                _ => "",
                            })
                            .collect(),
                    ),
                    _ => Content::Parts(inner),
                });
                out.push(m);
            }
            Block::ToolUse { .. } => {
                return Err(bad(
                    format!("{here}.type"),
                    "tool_use blocks belong in assistant turns",
                ));
            }
            other => {
                if let Some(part) = simple_part(&here, other, note)? {
                    parts.push(part);
                }
            }
        }
    }
    if !parts.is_empty() {
        let mut m = Message::new(Role::User, "");
        m.content = Some(match parts.as_slice() {
            [ContentPart::Text { text }] => Content::Text(text.clone()),
            _ => Content::Parts(parts),
        });
        out.push(m);
    }
    Ok(())
}

/// An assistant turn: text, and tool calls. Thinking blocks are the model's own; other
/// providers cannot take them back, so they are dropped there (kept for Anthropic).
fn assistant_turn(
    path: &str,
    blocks: Vec<Item>,
    out: &mut Vec<Message>,
    note: &mut OnlyNative,
) -> Result<(), ApiError> {
    let mut text = String::new();
    let mut calls = Vec::new();
    for (j, item) in blocks.into_iter().enumerate() {
        let here = format!("{path}[{j}]");
        let block = match item {
            Item::Known(b) => b,
            Item::Other(json) => {
                text.push_str(&json);
                continue;
            }
        };
        match block {
            Block::Text { text: t, citations } => {
                if citations.is_some() {
                    note.note(format!("{here}.citations"), "citations");
                }
                text.push_str(&t);
            }
            Block::ToolUse { id, name, input } => {
                if !input.is_object() {
                    return Err(bad(format!("{here}.input"), "must be a JSON object"));
                }
                calls.push(ToolCall {
                    id,
                    kind: "function".into(),
                    function: FunctionCall {
                        name,
                        arguments: input.to_string(),
                    },
                });
            }
            Block::Thinking { .. } | Block::RedactedThinking { .. } => {}
            Block::ToolResult { .. } => {
                return Err(bad(
                    format!("{here}.type"),
                    "tool_result blocks belong in user turns",
                ));
            }
            Block::Image { .. } | Block::Document { .. } => {
                return Err(bad(
                    format!("{here}.type"),
                    "assistant turns carry text, tool_use and thinking blocks only",
                ));
            }
        }
    }
    if text.is_empty() && calls.is_empty() {
        // Only thinking (or nothing): keep the turn so user/assistant still alternate.
        out.push(Message::new(Role::Assistant, ""));
        return Ok(());
    }
    let mut m = Message::new(Role::Assistant, text);
    if m.text().is_empty() {
        m.content = None;
    }
    if !calls.is_empty() {
        m.tool_calls = Some(calls);
    }
    out.push(m);
    Ok(())
}

/// A text, image or document block as a hub part (`None`: nothing for the hub).
fn simple_part(
    here: &str,
    block: Block,
    note: &mut OnlyNative,
) -> Result<Option<ContentPart>, ApiError> {
    Ok(Some(match block {
        Block::Text { text, citations } => {
            if citations.is_some() {
                note.note(format!("{here}.citations"), "citations");
            }
            ContentPart::Text { text }
        }
        Block::Image { source } => match source {
            Source::Base64 { media_type, data } => ContentPart::ImageUrl {
                image_url: ImageUrl {
                    url: format!("data:{media_type};base64,{data}"),
                    detail: None,
                },
            },
            Source::Url { url } => ContentPart::ImageUrl {
                image_url: ImageUrl { url, detail: None },
            },
            Source::Text { .. } | Source::Other => {
                return Err(bad(
                    format!("{here}.source.type"),
                    "an image source is base64 or url",
                ));
            }
        },
        Block::Document {
            source,
            citations,
            title,
            ..
        } => {
            if citations.is_some() {
                note.note(format!("{here}.citations"), "document citations");
            }
            match source {
                Source::Base64 { media_type, data } => {
                    let mut file = Map::new();
                    file.insert(
                        "file_data".into(),
                        Value::String(format!("data:{media_type};base64,{data}")),
                    );
                    file.insert(
                        "filename".into(),
                        Value::String(title.unwrap_or_else(|| "document.pdf".into())),
                    );
                    ContentPart::File {
                        file: Value::Object(file),
                    }
                }
                Source::Text { data } => {
                    note.note(format!("{here}.source"), "a plain-text document");
                    ContentPart::Text { text: data }
                }
                Source::Url { url } => {
                    note.note(format!("{here}.source"), "a document by URL");
                    ContentPart::Text { text: url }
                }
                Source::Other => {
                    note.note(
                        format!("{here}.source"),
                        "a document source the hub does not model",
                    );
                    return Ok(None);
                }
            }
        }
        Block::Thinking { .. } | Block::RedactedThinking { .. } => {
            return Err(bad(
                format!("{here}.type"),
                "thinking blocks belong in assistant turns",
            ));
        }
        Block::ToolUse { .. } | Block::ToolResult { .. } => {
            return Err(bad(
                format!("{here}.type"),
                "tool blocks cannot be nested here",
            ));
        }
    }))
}
