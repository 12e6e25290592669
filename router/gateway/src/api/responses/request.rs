//! OpenAI Responses request (the stateless subset) → hub `ChatRequest`.
//!
//! Stateful features are refused with a 400 that says so, never ignored: `store: true`,
//! `previous_response_id`, `conversation`, `background: true`, stored prompts and item
//! references. Reasoning items in `input` are dropped (their encrypted content belongs to the
//! provider that made them), and so are members that only tune OpenAI's own service
//! (`include`, `truncation`, `service_tier`, `prompt_cache_key`, `safety_identifier`,
//! `stream_options`, `top_logprobs`); the README lists them.

use serde::Deserialize;
use serde_json::{Map, Value};

use switchyard_types::{
    ChatRequest, Content, ContentPart, FunctionCall, FunctionDef, FunctionName, ImageUrl,
    JsonSchemaFormat, Message, NamedToolChoice, ResponseFormat, Role, Tool, ToolCall, ToolChoice,
    ToolChoiceMode,
};

use crate::api::ApiError;
use crate::api::text_or::TextOr;

#[derive(Debug, Deserialize)]
pub struct ResponsesRequest {
    pub model: String,
    pub input: Input,
    #[serde(default)]
    pub instructions: Option<String>,
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    #[serde(default)]
    pub tool_choice: Option<Value>,
    #[serde(default, deserialize_with = "switchyard_types::strict::object")]
    pub text: Option<TextConfig>,
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default, deserialize_with = "switchyard_types::strict::object")]
    pub reasoning: Option<Reasoning>,
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default)]
    pub store: Option<bool>,
    #[serde(default)]
    pub previous_response_id: Option<String>,
    #[serde(default)]
    pub conversation: Option<Value>,
    #[serde(default)]
    pub background: Option<bool>,
    #[serde(default)]
    pub prompt: Option<Value>,
    #[serde(default)]
    pub stream: bool,
    #[serde(default, deserialize_with = "switchyard_types::strict::object")]
    pub cache: Option<switchyard_types::cache_control::CacheRequest>,
}

pub type Input = TextOr<Value>;

#[derive(Debug, Deserialize)]
pub struct TextConfig {
    #[serde(default)]
    pub format: Option<Format>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Format {
    Text,
    JsonObject,
    JsonSchema {
        name: String,
        #[serde(default)]
        description: Option<String>,
        schema: Value,
        #[serde(default)]
        strict: Option<bool>,
    },
}

#[derive(Debug, Clone, Deserialize)]
pub struct Reasoning {
    #[serde(default)]
    pub effort: Option<String>,
}

#[derive(Debug, Deserialize)]
struct MessageItem {
    role: ItemRole,
    content: ItemContent,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ItemRole {
    User,
    Assistant,
    System,
    Developer,
}

type ItemContent = TextOr<Part>;

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Part {
    InputText {
        text: String,
    },
    OutputText {
        text: String,
    },
    Refusal {
        refusal: String,
    },
    InputImage {
        #[serde(default)]
        image_url: Option<String>,
        #[serde(default)]
        detail: Option<String>,
    },
    InputFile {
        #[serde(default)]
        file_data: Option<String>,
        #[serde(default)]
        filename: Option<String>,
    },
}

#[derive(Debug, Deserialize)]
struct FunctionCallItem {
    call_id: String,
    name: String,
    arguments: String,
}

#[derive(Debug, Deserialize)]
struct FunctionOutputItem {
    call_id: String,
    output: ItemContent,
}

#[derive(Debug, Deserialize)]
struct FunctionTool {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
    #[serde(default)]
    strict: Option<bool>,
}

/// What the handler needs back besides the hub request: the members the answer echoes.
pub struct Parsed {
    pub hub: ChatRequest,
    pub echo: Echo,
    pub stream: bool,
}

/// Request members the Responses object repeats in its answer.
#[derive(Debug, Clone, Default)]
pub struct Echo {
    pub instructions: Option<String>,
    pub tools: Vec<Value>,
    pub tool_choice: Option<Value>,
    pub text_format: Option<Value>,
    pub max_output_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub parallel_tool_calls: Option<bool>,
    pub metadata: Map<String, Value>,
    pub reasoning_effort: Option<String>,
    pub user: Option<String>,
}

fn bad(param: impl Into<String>, message: impl std::fmt::Display) -> ApiError {
    ApiError::invalid_param(param, message)
}

fn stateful(param: &str, what: &str) -> ApiError {
    bad(
        param,
        format!(
            "{what}: stateful mode is not supported; Switchyard's Responses API is stateless \
             (send the whole conversation in `input`, and `store: false`)"
        ),
    )
}

/// Parse and translate a `/v1/responses` body.
pub fn parse(bytes: &[u8]) -> Result<Parsed, ApiError> {
    let r: ResponsesRequest = crate::api::chat::parse_json(bytes)?;
    if r.store == Some(true) {
        return Err(stateful("store", "responses are not stored"));
    }
    if r.previous_response_id.is_some() {
        return Err(stateful(
            "previous_response_id",
            "no response is kept to continue",
        ));
    }
    if r.conversation.is_some() {
        return Err(stateful("conversation", "conversations are not kept"));
    }
    if r.background == Some(true) {
        return Err(stateful("background", "background responses are not kept"));
    }
    if r.prompt.is_some() {
        return Err(stateful("prompt", "stored prompt templates are not kept"));
    }
    if r.max_output_tokens == Some(0) {
        return Err(bad("max_output_tokens", "must be at least 1"));
    }
    if let Some(meta) = &r.metadata {
        if meta.len() > 16 {
            return Err(bad("metadata", "at most 16 keys"));
        }
        if let Some((k, _)) = meta
            .iter()
            .find(|(k, v)| k.chars().count() > 64 || !v.is_string())
        {
            return Err(bad(
                format!("metadata.{k}"),
                "keys are at most 64 characters and values are strings",
            ));
        }
    }
    let mut messages = Vec::new();
    if let Some(text) = r.instructions.as_deref().filter(|t| !t.is_empty()) {
        messages.push(Message::new(Role::Developer, text));
    }
    match r.input {
        TextOr::Text(text) => messages.push(Message::new(Role::User, text)),
        TextOr::Items(items) => {
            for (i, item) in items.into_iter().enumerate() {
                input_item(i, item, &mut messages)?;
            }
        }
    }
    if messages.iter().all(|m| m.role.is_instruction()) {
        return Err(bad("input", "must contain at least one message"));
    }
    let echo_tools = r.tools.clone().unwrap_or_default();
    let mut tools = Vec::new();
    for (i, t) in r.tools.into_iter().flatten().enumerate() {
        let kind = t.get("type").and_then(Value::as_str).unwrap_or("");
        if kind != "function" {
            return Err(bad(
                format!("tools[{i}].type"),
                format!("only function tools are supported, got '{kind}'"),
            ));
        }
        let f: FunctionTool = serde_json::from_value(t)
            .map_err(|e| bad(format!("tools[{i}]"), strip_position(&e)))?;
        tools.push(Tool {
            kind: "function".into(),
            function: FunctionDef {
                name: f.name,
                description: f.description,
                parameters: f.parameters,
                strict: f.strict,
            },
        });
    }
    let tool_choice = r.tool_choice.as_ref().map(tool_choice).transpose()?;
    let format = r.text.and_then(|t| t.format);
    let response_format = format.clone().map(|f| match f {
        Format::Text => ResponseFormat::Text,
        Format::JsonObject => ResponseFormat::JsonObject,
        Format::JsonSchema {
            name,
            description,
            schema,
            strict,
        } => ResponseFormat::JsonSchema {
            json_schema: JsonSchemaFormat {
                name,
                description,
                schema: Some(schema),
                strict,
            },
        },
    });
    let mut hub = ChatRequest::new(r.model, messages);
    hub.stream = r.stream;
    hub.max_tokens = r.max_output_tokens;
    hub.temperature = r.temperature;
    hub.top_p = r.top_p;
    hub.tools = (!tools.is_empty()).then_some(tools);
    hub.tool_choice = tool_choice;
    hub.parallel_tool_calls = r.parallel_tool_calls;
    hub.response_format = response_format;
    hub.user = r.user.clone();
    hub.cache = r.cache;
    let effort = r.reasoning.and_then(|x| x.effort);
    if let Some(effort) = &effort {
        // Chat Completions' name for it: OpenAI-shaped upstreams take it, others ignore it.
        hub.extra
            .insert("reasoning_effort".into(), Value::String(effort.clone()));
    }
    hub.validate()
        .map_err(|(param, message)| bad(door_param(&param), message))?;
    let echo = Echo {
        instructions: r.instructions,
        tools: echo_tools,
        tool_choice: r.tool_choice,
        text_format: format.map(format_json),
        max_output_tokens: r.max_output_tokens,
        temperature: r.temperature,
        top_p: r.top_p,
        parallel_tool_calls: r.parallel_tool_calls,
        metadata: r.metadata.unwrap_or_default(),
        reasoning_effort: effort,
        user: r.user,
    };
    Ok(Parsed {
        stream: hub.stream,
        hub,
        echo,
    })
}

fn format_json(f: Format) -> Value {
    match f {
        Format::Text => serde_json::json!({"type": "text"}),
        Format::JsonObject => serde_json::json!({"type": "json_object"}),
        Format::JsonSchema {
            name,
            description,
            schema,
            strict,
        } => serde_json::json!({"type": "json_schema", "name": name,
            "description": description, "schema": schema, "strict": strict}),
    }
}

/// A hub parameter path as `/v1/responses` names it.
fn door_param(hub: &str) -> String {
    if let Some(rest) = hub.strip_prefix("tools[")
        && let Some((i, field)) = rest.split_once("].function.")
    {
        return format!("tools[{i}].{field}");
    }
    match hub {
        "max_tokens" => "max_output_tokens".into(),
        "tool_choice.function.name" => "tool_choice.name".into(),
        "response_format.json_schema.name" => "text.format.name".into(),
        // Hub messages and input items do not line up one to one.
        h if h.starts_with("messages") => "input".into(),
        h => h.to_owned(),
    }
}

fn strip_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    text.split(" at line ").next().unwrap_or(&text).to_owned()
}

fn tool_choice(v: &Value) -> Result<ToolChoice, ApiError> {
    match v {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(ToolChoice::Mode(ToolChoiceMode::Auto)),
            "none" => Ok(ToolChoice::Mode(ToolChoiceMode::None)),
            "required" => Ok(ToolChoice::Mode(ToolChoiceMode::Required)),
            other => Err(bad(
                "tool_choice",
                format!("'{other}' is not one of auto, none, required"),
            )),
        },
        Value::Object(o) => {
            let kind = o.get("type").and_then(Value::as_str).unwrap_or("");
            let name = o.get("name").and_then(Value::as_str);
            match (kind, name) {
                ("function", Some(name)) => Ok(ToolChoice::Named(NamedToolChoice {
                    kind: "function".into(),
                    function: FunctionName { name: name.into() },
                })),
                ("function", None) => Err(bad("tool_choice.name", "is required")),
                _ => Err(bad(
                    "tool_choice.type",
                    format!("only function tool choices are supported, got '{kind}'"),
                )),
            }
        }
        _ => Err(bad("tool_choice", "must be a string or an object")),
    }
}

fn from_item<T: serde::de::DeserializeOwned>(i: usize, item: Value) -> Result<T, ApiError> {
    serde_json::from_value(item).map_err(|e| {
        let text = strip_position(&e);
        match text.strip_prefix("missing field `") {
            Some(rest) => bad(
                format!("input[{i}].{}", rest.trim_end_matches('`')),
                "is required",
            ),
            None => bad(format!("input[{i}]"), text),
        }
    })
}

fn input_item(i: usize, item: Value, out: &mut Vec<Message>) -> Result<(), ApiError> {
    if !item.is_object() {
        return Err(bad(format!("input[{i}]"), "must be an object"));
    }
    let kind = item
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message")
        .to_owned();
    match kind.as_str() {
        "message" => {
            let m: MessageItem = from_item(i, item)?;
            let role = match m.role {
                ItemRole::User => Role::User,
                ItemRole::Assistant => Role::Assistant,
                ItemRole::System => Role::System,
                ItemRole::Developer => Role::Developer,
            };
            let content = match m.content {
                TextOr::Text(t) => Content::Text(t),
                TextOr::Items(parts) => Content::Parts(
                    parts
                        .into_iter()
                        .enumerate()
                        .map(|(j, p)| part(i, j, p))
                        .collect::<Result<_, _>>()?,
                ),
            };
            let mut msg = Message::new(role, "");
            msg.content = Some(content);
            out.push(msg);
        }
        "function_call" => {
            let c: FunctionCallItem = from_item(i, item)?;
            let call = ToolCall {
                id: c.call_id,
                kind: "function".into(),
                function: FunctionCall {
                    name: c.name,
                    arguments: c.arguments,
                },
            };
            // Consecutive calls (and the text before them) are one assistant turn.
            match out.last_mut() {
                Some(last) if last.role == Role::Assistant => {
                    last.tool_calls.get_or_insert_with(Vec::new).push(call);
                }
                _ => {
                    let mut m = Message::new(Role::Assistant, "");
                    m.content = None;
                    m.tool_calls = Some(vec![call]);
                    out.push(m);
                }
            }
        }
        "function_call_output" => {
            let o: FunctionOutputItem = from_item(i, item)?;
            let mut m = Message::new(Role::Tool, "");
            m.tool_call_id = Some(o.call_id);
            m.content = Some(match o.output {
                TextOr::Text(t) => Content::Text(t),
                TextOr::Items(parts) => Content::Parts(
                    parts
                        .into_iter()
                        .enumerate()
                        .map(|(j, p)| part(i, j, p))
                        .collect::<Result<_, _>>()?,
                ),
            });
            out.push(m);
        }
        // A reasoning item's content is the provider's own (encrypted); stateless, it is
        // dropped, as the README says.
        "reasoning" => {}
        "item_reference" => return Err(stateful(&format!("input[{i}]"), "item references")),
        other => {
            return Err(bad(
                format!("input[{i}].type"),
                format!(
                    "unsupported input item type '{other}' (message, function_call, \
                     function_call_output and reasoning are)"
                ),
            ));
        }
    }
    Ok(())
}

fn part(i: usize, j: usize, p: Part) -> Result<ContentPart, ApiError> {
    let here = format!("input[{i}].content[{j}]");
    Ok(match p {
        Part::InputText { text } | Part::OutputText { text } => ContentPart::Text { text },
        Part::Refusal { refusal } => ContentPart::Refusal { refusal },
        Part::InputImage { image_url, detail } => match image_url {
            Some(url) => ContentPart::ImageUrl {
                image_url: ImageUrl { url, detail },
            },
            None => {
                return Err(bad(
                    format!("{here}.image_url"),
                    "is required (uploaded file ids are not supported)",
                ));
            }
        },
        Part::InputFile {
            file_data,
            filename,
        } => match file_data {
            Some(data) => {
                let mut file = Map::new();
                file.insert("file_data".into(), Value::String(data));
                if let Some(name) = filename {
                    file.insert("filename".into(), Value::String(name));
                }
                ContentPart::File {
                    file: Value::Object(file),
                }
            }
            None => {
                return Err(bad(
                    format!("{here}.file_data"),
                    "is required (uploaded file ids are not supported)",
                ));
            }
        },
    })
}
