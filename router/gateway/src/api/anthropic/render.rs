//! Hub answer → Anthropic Messages: the `message` object, the named-event stream, the error
//! shape.

use axum::body::Bytes;
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use switchyard_types::{ChatResponse, FinishReason, StreamEvent, Usage};

use crate::api::ApiError;
use crate::api::sse::Render;

/// Anthropic's `stop_reason` for the hub's finish reason.
pub fn stop_reason(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Stop => "end_turn",
        FinishReason::Length => "max_tokens",
        FinishReason::ToolCalls | FinishReason::FunctionCall => "tool_use",
        FinishReason::ContentFilter => "refusal",
    }
}

/// Usage as Anthropic counts it: `input_tokens` excludes the cache's reads and writes, which
/// the hub's `prompt_tokens` includes.
#[derive(Debug, Serialize)]
pub struct WireUsage {
    pub input_tokens: u32,
    pub output_tokens: u32,
    pub cache_creation_input_tokens: u32,
    pub cache_read_input_tokens: u32,
}

impl From<&Usage> for WireUsage {
    fn from(u: &Usage) -> Self {
        let read = u.cached_tokens();
        let write = u.cache_write_tokens();
        WireUsage {
            input_tokens: u.prompt_tokens.saturating_sub(read).saturating_sub(write),
            output_tokens: u.completion_tokens,
            cache_creation_input_tokens: write,
            cache_read_input_tokens: read,
        }
    }
}

/// A tool call's arguments as Anthropic's `input` object: the model's text itself when it is a
/// JSON object, else (a model of another provider can emit broken JSON) that text, unchanged,
/// as `{"_raw_arguments": "…"}` rather than silently replaced.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ToolInput {
    Object(Box<RawValue>),
    Unparsed { _raw_arguments: String },
}

pub fn tool_input(arguments: &str) -> ToolInput {
    let trimmed = arguments.trim();
    let text = if trimmed.is_empty() { "{}" } else { trimmed };
    match serde_json::from_str::<Box<RawValue>>(text) {
        Ok(raw) if raw.get().starts_with('{') => ToolInput::Object(raw),
        _ => ToolInput::Unparsed {
            _raw_arguments: arguments.to_owned(),
        },
    }
}

/// The complete answer as an Anthropic `message`. An Anthropic upstream's own blocks (thinking
/// with its signature, citations…), kept by the provider for a native request, are returned as
/// they came.
pub fn message(response: &ChatResponse, id: &str, model: &str) -> Value {
    let mut content = Vec::new();
    let choice = response.choices.first();
    if let Some(Value::Array(blocks)) = response
        .extra
        .get(switchyard_providers::anthropic::NATIVE_CONTENT)
    {
        content.clone_from(blocks);
    } else if let Some(m) = choice.map(|c| &c.message) {
        let text = m.text();
        if !text.is_empty() {
            content.push(json!({"type": "text", "text": text}));
        }
        for call in m.tool_calls() {
            content.push(json!({
                "type": "tool_use",
                "id": call.id,
                "name": call.function.name,
                "input": tool_input(&call.function.arguments),
            }));
        }
    }
    let finish = choice.map_or(FinishReason::Stop, |c| c.finish_reason);
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(finish),
        "stop_sequence": null,
        "usage": WireUsage::from(&response.usage),
    })
}

/// Anthropic's error `type` for a status.
pub fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// The error in Anthropic's shape. The parameter leads the message, as Anthropic writes it.
pub fn error_body(e: &ApiError) -> Value {
    let message = match &e.param {
        Some(p) if !e.message.contains(p.as_str()) => format!("{p}: {}", e.message),
        _ => e.message.clone(),
    };
    json!({"type": "error", "error": {"type": error_type(e.status), "message": message}})
}

fn event<T: Serialize>(name: &str, data: &T) -> Bytes {
    let mut buf = Vec::with_capacity(128);
    buf.extend_from_slice(b"event: ");
    buf.extend_from_slice(name.as_bytes());
    buf.extend_from_slice(b"\ndata: ");
    if serde_json::to_writer(&mut buf, data).is_err() {
        buf.extend_from_slice(b"{}");
    }
    buf.extend_from_slice(b"\n\n");
    Bytes::from(buf)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Open {
    None,
    Text,
    /// A tool_use block for the hub's tool-call index.
    Tool(u32),
}

/// Renders hub stream events as Anthropic's named SSE events for one message. When the
/// upstream's own events come along (`StreamEvent::Native`: an Anthropic upstream answering a
/// native request), those are forwarded as they came and the hub events are not rendered.
pub struct EventRenderer {
    /// Forwarding the upstream's own events.
    forwarding: bool,
    id: String,
    model: String,
    /// The router's count of the prompt, for `message_start` (the real usage follows in
    /// `message_delta`).
    input_tokens: u32,
    started: bool,
    open: Open,
    next_index: u32,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
}

impl EventRenderer {
    pub fn new(id: String, model: String, input_tokens: u32) -> Self {
        EventRenderer {
            forwarding: false,
            id,
            model,
            input_tokens,
            started: false,
            open: Open::None,
            next_index: 0,
            finish: None,
            usage: None,
        }
    }

    fn close(&mut self, out: &mut Vec<Bytes>) {
        if self.open != Open::None {
            let index = self.next_index - 1;
            out.push(event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            ));
            self.open = Open::None;
        }
    }

    fn open_block(&mut self, kind: Open, block: Value, out: &mut Vec<Bytes>) -> u32 {
        self.close(out);
        let index = self.next_index;
        self.next_index += 1;
        self.open = kind;
        out.push(event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        ));
        index
    }
}

impl EventRenderer {
    /// An upstream event as it came, but for `message_start`, which names the gateway's
    /// message id and the model by its configured name (as the headers and complete answers
    /// do), not the upstream's.
    fn forwarded(&self, frame: &str) -> Bytes {
        let Some(data) = frame
            .strip_prefix("event: message_start\ndata: ")
            .map(str::trim_end)
        else {
            return Bytes::from(frame.to_owned());
        };
        let Ok(mut v) = serde_json::from_str::<Value>(data) else {
            return Bytes::from(frame.to_owned());
        };
        if let Some(message) = v.get_mut("message").and_then(Value::as_object_mut) {
            message.insert("id".into(), json!(self.id));
            message.insert("model".into(), json!(self.model));
        }
        event("message_start", &v)
    }

    fn message_start(&mut self) -> Vec<Bytes> {
        self.started = true;
        vec![
            event(
                "message_start",
                &json!({"type": "message_start", "message": {
                    "id": self.id, "type": "message", "role": "assistant", "model": self.model,
                    "content": [], "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": self.input_tokens, "output_tokens": 0,
                              "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
                }}),
            ),
            event("ping", &json!({"type": "ping"})),
        ]
    }
}

impl Render for EventRenderer {
    // `message_start` waits for the first event: whether it is the upstream's own decides
    // who writes it.

    fn event(&mut self, ev: &StreamEvent) -> Vec<Bytes> {
        if let StreamEvent::Native { frame, .. } = ev {
            if !self.started {
                self.started = true;
                self.forwarding = true;
            }
            return if self.forwarding {
                vec![self.forwarded(frame)]
            } else {
                Vec::new()
            };
        }
        if self.forwarding {
            return Vec::new();
        }
        let mut out = if self.started {
            Vec::new()
        } else {
            self.message_start()
        };
        match ev {
            StreamEvent::Content(text) => {
                if text.is_empty() {
                    return out;
                }
                if self.open != Open::Text {
                    self.open_block(Open::Text, json!({"type": "text", "text": ""}), &mut out);
                }
                out.push(event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": self.next_index - 1,
                            "delta": {"type": "text_delta", "text": text}}),
                ));
            }
            StreamEvent::ToolCall {
                index,
                id,
                name,
                arguments,
            } => {
                if self.open != Open::Tool(*index) {
                    let block = json!({"type": "tool_use",
                        "id": id.clone().unwrap_or_default(),
                        "name": name.clone().unwrap_or_default(),
                        "input": {}});
                    self.open_block(Open::Tool(*index), block, &mut out);
                }
                if !arguments.is_empty() {
                    out.push(event(
                        "content_block_delta",
                        &json!({"type": "content_block_delta", "index": self.next_index - 1,
                                "delta": {"type": "input_json_delta", "partial_json": arguments}}),
                    ));
                }
            }
            StreamEvent::Finish(f) => self.finish = Some(*f),
            StreamEvent::Usage(u) => self.usage = Some(*u),
            StreamEvent::Native { .. } => {}
        }
        out
    }

    fn done(&mut self) -> Vec<Bytes> {
        if self.forwarding {
            // The upstream's own `message_stop` has been forwarded.
            return Vec::new();
        }
        let mut out = if self.started {
            Vec::new()
        } else {
            self.message_start()
        };
        self.close(&mut out);
        let usage = WireUsage::from(&self.usage.unwrap_or_default());
        out.push(event(
            "message_delta",
            &json!({"type": "message_delta",
                    "delta": {"stop_reason": stop_reason(self.finish.unwrap_or(FinishReason::Stop)),
                              "stop_sequence": null},
                    "usage": usage}),
        ));
        out.push(event("message_stop", &json!({"type": "message_stop"})));
        out
    }

    fn error(&mut self, e: &ApiError) -> Bytes {
        event("error", &error_body(e))
    }
}
