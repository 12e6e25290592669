//! Anthropic request translation: hub `ChatRequest` → wire body.

use super::JSON_OBJECT_TOOL;
use crate::{Call, ErrorKind, ProviderError, arguments_object, in_message, unused_tool_name};
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use switchyard_types::{
    ChatRequest, Content, ContentPart, Message, NativeFormat, RawObject, ResponseFormat, Role,
    ToolChoice, ToolChoiceMode, data_uri,
};

/// What goes on the wire: the translation of the hub request, or the client's own Messages
/// body when it came through `/v1/messages` and no policy edited it.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum WireBody {
    Hub(Box<WireRequest>),
    Native(RawObject),
}

impl WireBody {
    /// The body for a call, and the JSON-mode answer tool if the translation added one.
    pub fn for_call(
        call: Call<'_>,
        stream: bool,
    ) -> Result<(WireBody, Option<String>), ProviderError> {
        if let Some(body) = native_body(call, stream)? {
            return Ok((WireBody::Native(body), None));
        }
        let wire = to_wire(call, stream)?;
        let tool = wire.json_tool.clone();
        Ok((WireBody::Hub(Box::new(wire)), tool))
    }
}

/// The client's own body, member by member as sent (`cache_control`, thinking signatures,
/// citations, block types the hub does not model all reach Anthropic unchanged), with the
/// hub's `model` (the upstream id), `max_tokens` and `stream` in place of the client's.
pub fn native_body(call: Call<'_>, stream: bool) -> Result<Option<RawObject>, ProviderError> {
    let Some(native) = &call.request.native else {
        return Ok(None);
    };
    if native.format != NativeFormat::AnthropicMessages {
        return Ok(None);
    }
    let raw = |v: Value| {
        serde_json::value::to_raw_value(&v)
            .map_err(|e| invalid(format!("could not encode the request: {e}")))
    };
    let mut body = native.body.clone();
    body.set("model", raw(Value::String(call.upstream_model.to_owned()))?);
    body.set("max_tokens", raw(json!(call.max_tokens()))?);
    if stream {
        body.set("stream", raw(Value::Bool(true))?);
    } else {
        body.remove("stream");
    }
    Ok(Some(body))
}

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
    let (name, description, schema) = match &request.response_format {
        Some(ResponseFormat::JsonSchema { json_schema }) => (
            json_schema.name.clone(),
            json_schema.description.clone(),
            json_schema.schema.clone(),
        ),
        Some(ResponseFormat::JsonObject) => (JSON_OBJECT_TOOL.to_owned(), None, None),
        Some(ResponseFormat::Text) | None => return None,
    };
    let name = unused_tool_name(request, &name);
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
    for (i, m) in messages.iter().enumerate() {
        let translated = match m.role {
            Role::System | Role::Developer => {
                system.push(m.text());
                continue;
            }
            Role::User => content_blocks(m.content.as_ref()).map(|b| ("user", b)),
            Role::Assistant => assistant_blocks(m).map(|b| ("assistant", b)),
            Role::Tool => tool_result(m).map(|b| ("user", vec![b])),
        };
        let (role, blocks) = translated.map_err(in_message(i))?;
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
    for (j, part) in content
        .map(Content::parts)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
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
                    None => {
                        return Err(ProviderError::unsupported(
                            format!("content[{j}]"),
                            "Anthropic takes files only as file_data URIs",
                        ));
                    }
                }
            }
            ContentPart::InputAudio { .. } => {
                return Err(ProviderError::unsupported(
                    format!("content[{j}]"),
                    "Anthropic does not accept audio input",
                ));
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
        let input = arguments_object(call)?;
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
