//! Gemini request translation: hub `ChatRequest` → wire body.

use crate::{Call, ErrorKind, ProviderError, arguments_object, in_message, unused_tool_name};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use switchyard_types::{
    Content, ContentPart, Message, ResponseFormat, Role, ToolChoice, ToolChoiceMode, data_uri,
};

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
            let name = unused_tool_name(request, &format.name);
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
            Role::User => ("user", parts(m.content.as_ref()).map_err(in_message(i))?),
            Role::Assistant => ("model", model_parts(m).map_err(in_message(i))?),
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
    for (j, part) in content
        .map(Content::parts)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
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
                _ => {
                    return Err(ProviderError::unsupported(
                        format!("content[{j}]"),
                        "Gemini takes files only as file_data URIs",
                    ));
                }
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

fn model_parts(m: &Message) -> Result<Vec<Part>, ProviderError> {
    let mut out = parts(m.content.as_ref())?;
    for call in m.tool_calls() {
        let args = arguments_object(call)?;
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
pub(super) fn clean_schema(schema: &Value) -> Value {
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
