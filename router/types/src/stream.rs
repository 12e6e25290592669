//! Canonical stream events, and their rendering as OpenAI `chat.completion.chunk` SSE frames.
//!
//! Providers turn their wire streams into `StreamEvent`s; the API layer renders them for the
//! client. An upstream that ends without `Finish` was cut: the renderer never invents a clean end.

use bytes::Bytes;
use serde::Serialize;

use super::{ChatResponse, Choice, FinishReason, FunctionCall, Message, Role, ToolCall, Usage};

#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// A piece of the assistant's text.
    Content(String),
    /// A fragment of a tool call: `id` and `name` come on the first fragment of each index,
    /// `arguments` is appended string-wise.
    ToolCall {
        index: u32,
        id: Option<String>,
        name: Option<String>,
        arguments: String,
    },
    /// The model stopped; no more content follows (usage may).
    Finish(FinishReason),
    /// Final token usage.
    Usage(Usage),
    /// One event of the upstream's own wire format, as received (`event: …\ndata: …\n\n`),
    /// sent alongside the hub events when the request came through the door of that format with
    /// its native body (an Anthropic stream for `/v1/messages`). That door forwards it, so the
    /// client sees what only the format carries (thinking and its signatures, citations);
    /// every other consumer ignores it. `answer`: the event carries part of the answer the hub
    /// does not model (a thinking block's start or delta, its signature, a citation): the
    /// client sees bytes, so the answer has started, as with text (failover is no longer
    /// invisible after it, and it ends the wait for the first token).
    Native { frame: String, answer: bool },
}

impl StreamEvent {
    /// Whether this event carries something the client will see as the answer starting.
    pub fn is_content(&self) -> bool {
        match self {
            StreamEvent::Content(s) => !s.is_empty(),
            StreamEvent::ToolCall { .. } => true,
            StreamEvent::Native { answer, .. } => *answer,
            StreamEvent::Finish(_) | StreamEvent::Usage(_) => false,
        }
    }
}

/// Renders events as OpenAI SSE frames for one response.
#[derive(Debug)]
pub struct ChunkRenderer {
    id: String,
    created: u64,
    model: String,
    role_sent: bool,
    include_usage: bool,
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: &'a [ChunkChoice<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<&'a Usage>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    finish_reason: Option<FinishReason>,
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCallDelta<'a>; 1]>,
}

#[derive(Serialize)]
struct ToolCallDelta<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionDelta<'a>,
}

#[derive(Serialize)]
struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

impl ChunkRenderer {
    pub fn new(id: String, model: String, include_usage: bool) -> Self {
        ChunkRenderer {
            id,
            created: super::unix_now(),
            model,
            role_sent: false,
            include_usage,
        }
    }

    /// The SSE frame for one event, or `None` when the client did not ask for it (usage).
    pub fn render(&mut self, event: &StreamEvent) -> Option<Bytes> {
        let mut delta = Delta::default();
        let mut finish_reason = None;
        let mut tool_delta;
        match event {
            StreamEvent::Content(text) => delta.content = Some(text),
            StreamEvent::ToolCall {
                index,
                id,
                name,
                arguments,
            } => {
                tool_delta = Some([ToolCallDelta {
                    index: *index,
                    id: id.as_deref(),
                    kind: id.as_ref().map(|_| "function"),
                    function: FunctionDelta {
                        name: name.as_deref(),
                        arguments,
                    },
                }]);
                delta.tool_calls = tool_delta.take();
            }
            StreamEvent::Finish(reason) => finish_reason = Some(*reason),
            StreamEvent::Usage(usage) => {
                if !self.include_usage {
                    return None;
                }
                return Some(self.frame(&[], Some(usage)));
            }
            StreamEvent::Native { .. } => return None,
        }
        if !self.role_sent {
            delta.role = Some("assistant");
            self.role_sent = true;
        }
        let choice = [ChunkChoice {
            index: 0,
            delta,
            finish_reason,
        }];
        Some(self.frame(&choice, None))
    }

    fn frame(&self, choices: &[ChunkChoice<'_>], usage: Option<&Usage>) -> Bytes {
        let chunk = Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices,
            usage,
        };
        sse_json(&chunk)
    }

    /// The terminator of a complete stream.
    pub fn done() -> Bytes {
        Bytes::from_static(b"data: [DONE]\n\n")
    }
}

/// `data: <json>\n\n`.
pub fn sse_json<T: Serialize>(value: &T) -> Bytes {
    let mut buf = Vec::with_capacity(256);
    buf.extend_from_slice(b"data: ");
    // Serialising our own plain structs cannot fail; an empty object is a safe fallback.
    if serde_json::to_writer(&mut buf, value).is_err() {
        buf.extend_from_slice(b"{}");
    }
    buf.extend_from_slice(b"\n\n");
    Bytes::from(buf)
}

/// Folds a stream of events back into one response (tests, and cache fills in later issues).
#[derive(Debug, Default)]
pub struct StreamAccumulator {
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    pub finish: Option<FinishReason>,
    pub usage: Option<Usage>,
}

impl StreamAccumulator {
    pub fn push(&mut self, event: StreamEvent) {
        match event {
            StreamEvent::Content(s) => self.text.push_str(&s),
            StreamEvent::ToolCall {
                index,
                id,
                name,
                arguments,
            } => {
                let i = index as usize;
                while self.tool_calls.len() <= i {
                    self.tool_calls.push(ToolCall {
                        id: String::new(),
                        kind: "function".into(),
                        function: FunctionCall {
                            name: String::new(),
                            arguments: String::new(),
                        },
                    });
                }
                let call = &mut self.tool_calls[i];
                if let Some(id) = id {
                    call.id = id;
                }
                if let Some(name) = name {
                    call.function.name = name;
                }
                call.function.arguments.push_str(&arguments);
            }
            StreamEvent::Finish(f) => self.finish = Some(f),
            StreamEvent::Usage(u) => self.usage = Some(u),
            StreamEvent::Native { .. } => {}
        }
    }

    pub fn into_response(self, id: String, model: String) -> ChatResponse {
        let mut message = Message::new(Role::Assistant, self.text);
        if !self.tool_calls.is_empty() {
            if message.text().is_empty() {
                message.content = None;
            }
            message.tool_calls = Some(self.tool_calls);
        }
        ChatResponse {
            id,
            object: "chat.completion".into(),
            created: super::unix_now(),
            model,
            choices: vec![Choice {
                index: 0,
                message,
                finish_reason: self.finish.unwrap_or(FinishReason::Stop),
                logprobs: None,
            }],
            usage: self.usage.unwrap_or_default(),
            system_fingerprint: None,
            embeddings: None,
            extra: Default::default(),
        }
    }
}
