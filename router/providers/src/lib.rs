//! Egress: one file per wire format, each translating only to and from the hub types.
//!
//! Every provider file has the same skeleton: settings → `to_wire` → `from_wire` → stream
//! parser → `map_error(status, headers, body) -> ProviderError` → tests on fixtures. This module
//! holds what they share: settings, the call description and the stream driver; `transport`
//! holds the HTTP client, bounded body reads and SSE framing. It never imports `api` and never
//! retries: retries and fallback belong to `execute`.
//!
//! Every upstream is treated as hostile: bodies, SSE events, a streamed answer's content and
//! tool-call indices are bounded (`Limits`, `MAX_TOOL_CALLS`), redirects are never followed,
//! and going over a bound is a failed attempt (`MalformedResponse`, not retried on the same
//! model), so the attempt loop falls back to the next candidate.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod anthropic;
mod embed;
#[cfg(test)]
mod embed_tests;
pub mod error;
#[cfg(test)]
mod fixtures;
pub mod gemini;
pub mod openai;
mod transport;

use std::collections::VecDeque;
use std::pin::Pin;

use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};

pub use error::{ErrorKind, ProviderError};
pub use transport::{
    Connection, DEFAULT_MAX_EVENT_BYTES, DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_POOL_MAX_IDLE, Http2,
    Limits, MAX_POOL_MAX_IDLE, MapError, http_client, http_client_for,
};
pub(crate) use transport::{post_json, read_json, sse_stream};

use switchyard_types::ids::{ProviderId, Secret};
use switchyard_types::{ChatRequest, ChatResponse, StreamEvent};

/// A provider's stream of canonical events. It ends after `Finish` (and `Usage`) on success,
/// or with one `Err` when the upstream broke; it never ends silently mid-answer.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, ProviderError>> + Send>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProviderKind {
    #[serde(rename = "openai")]
    OpenAi,
    #[serde(rename = "anthropic")]
    Anthropic,
    #[serde(rename = "gemini")]
    Gemini,
    #[serde(rename = "openai-compatible")]
    OpenAiCompatible,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Gemini => "gemini",
            ProviderKind::OpenAiCompatible => "openai-compatible",
        }
    }

    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            ProviderKind::OpenAi => Some("https://api.openai.com/v1"),
            ProviderKind::Anthropic => Some("https://api.anthropic.com/v1"),
            ProviderKind::Gemini => Some("https://generativelanguage.googleapis.com/v1beta"),
            ProviderKind::OpenAiCompatible => None,
        }
    }

    /// Whether calls fail without an API key (local servers take none).
    pub fn needs_api_key(self) -> bool {
        !matches!(self, ProviderKind::OpenAiCompatible)
    }
}

/// Which OpenAI-compatible server is on the other end (see `openai::Quirks`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dialect {
    #[default]
    Generic,
    Ollama,
    Vllm,
    LlamaCpp,
}

/// Resolved provider settings (from `[providers.NAME]`).
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    pub id: ProviderId,
    pub kind: ProviderKind,
    pub dialect: Dialect,
    /// Base URL without a trailing slash, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    pub api_key: Option<Secret>,
    /// Extra static headers sent on every call (organisation ids, test fault scripts).
    pub headers: Vec<(String, String)>,
    /// What this upstream may make the gateway read and hold.
    pub limits: Limits,
    /// How the gateway connects to it: HTTP/2 or not, idle connections kept.
    pub connection: Connection,
}

/// One upstream call: the canonical request and the model id the provider knows.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub request: &'a ChatRequest,
    pub upstream_model: &'a str,
    /// The output cap to send when the request has none and the provider requires one
    /// (Anthropic's `max_tokens` is mandatory): the model's catalog max output.
    pub default_max_tokens: u32,
    /// The W3C trace context to send upstream (`traceparent`), naming this attempt's span;
    /// `None` when the gateway does not trace.
    pub traceparent: Option<TraceParent>,
}

impl Call<'_> {
    pub fn max_tokens(&self) -> u32 {
        self.request.max_tokens.unwrap_or(self.default_max_tokens)
    }

    /// `request` with this call's `traceparent` header, if it has one.
    pub(crate) fn traced(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self.traceparent {
            Some(t) => request.header("traceparent", t.to_string()),
            None => request,
        }
    }
}

/// A W3C trace context (`traceparent`, version `00`): the trace, the span the upstream's work
/// is a child of, and whether the trace is sampled. Rendered from these bytes, never copied
/// from a client's header, so nothing a client sent reaches an upstream through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

impl std::fmt::Display for TraceParent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("00-")?;
        for b in self.trace_id {
            write!(f, "{b:02x}")?;
        }
        f.write_str("-")?;
        for b in self.span_id {
            write!(f, "{b:02x}")?;
        }
        f.write_str(if self.sampled { "-01" } else { "-00" })
    }
}

/// A configured upstream. An enum, not a trait object: four known wire formats, static dispatch.
#[derive(Debug, Clone)]
pub enum Provider {
    OpenAi(Box<openai::OpenAiProvider>),
    Anthropic(anthropic::AnthropicProvider),
    Gemini(gemini::GeminiProvider),
}

impl Provider {
    pub fn new(settings: ProviderSettings, http: reqwest::Client) -> Self {
        match settings.kind {
            ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => {
                Provider::OpenAi(Box::new(openai::OpenAiProvider::new(settings, http)))
            }
            ProviderKind::Anthropic => {
                Provider::Anthropic(anthropic::AnthropicProvider::new(settings, http))
            }
            ProviderKind::Gemini => Provider::Gemini(gemini::GeminiProvider::new(settings, http)),
        }
    }

    pub fn settings(&self) -> &ProviderSettings {
        match self {
            Provider::OpenAi(p) => p.settings(),
            Provider::Anthropic(p) => p.settings(),
            Provider::Gemini(p) => p.settings(),
        }
    }

    /// A complete (non-streaming) answer; for an embeddings request (`call.request.embed`),
    /// its vectors (`embed`).
    pub async fn chat(&self, call: Call<'_>) -> Result<ChatResponse, ProviderError> {
        if call.request.embed.is_some() {
            return self.embed(call).await;
        }
        match self {
            Provider::OpenAi(p) => p.chat(call).await,
            Provider::Anthropic(p) => p.chat(call).await,
            Provider::Gemini(p) => p.chat(call).await,
        }
    }

    /// A streamed answer. Resolves once the upstream accepted the request (status 2xx);
    /// errors before that are returned here, errors after it arrive in the stream.
    pub async fn chat_stream(&self, call: Call<'_>) -> Result<EventStream, ProviderError> {
        if call.request.embed.is_some() {
            return Err(embed::no_stream());
        }
        match self {
            Provider::OpenAi(p) => p.chat_stream(call).await,
            Provider::Anthropic(p) => p.chat_stream(call).await,
            Provider::Gemini(p) => p.chat_stream(call).await,
        }
    }
}

impl Provider {
    /// The vectors of an embeddings request: a `ChatResponse` with no choices, `object:
    /// "list"` and `embeddings`, one vector per input (message) in input order, checked against
    /// the request (`embed.rs`). `usage.prompt_tokens` is the upstream's count, 0 when it
    /// reports none (Gemini): the gateway then uses its own. Anthropic has no embeddings API.
    pub async fn embed(&self, call: Call<'_>) -> Result<ChatResponse, ProviderError> {
        match self {
            Provider::OpenAi(p) => p.embed(call).await,
            Provider::Gemini(p) => p.embed(call).await,
            // Another model of the route may embed: not the request's fault.
            Provider::Anthropic(_) => Err(ProviderError::new(
                ErrorKind::Unsupported,
                "Anthropic has no embeddings API: route embeddings to an OpenAI, Gemini or \
                 OpenAI-compatible model",
            )),
        }
    }
}

/// Turns one provider's stream items (SSE events, parsed chunks) into canonical events.
pub(crate) trait StreamParser<I>: Send + 'static {
    fn item(&mut self, item: I) -> Result<Vec<StreamEvent>, ProviderError>;
    /// The body ended. Returns the closing events, or `StreamCut` when the provider's
    /// terminator never came.
    fn end(&mut self) -> Result<Vec<StreamEvent>, ProviderError>;
}

/// Drive a stream of provider items through a parser into canonical events. After the first
/// error the stream ends. Dropping the returned stream drops `items`, and with it the upstream
/// connection: that is how a client disconnect cancels the call.
///
/// The answer's content (text and tool-call arguments) is bounded by `max_content` bytes:
/// whatever a stream claims its `max_tokens` was, a hostile upstream cannot make the gateway
/// accumulate more than a complete answer could hold.
pub(crate) fn parse_stream<I, S, P>(items: S, parser: P, max_content: usize) -> EventStream
where
    I: Send + 'static,
    S: Stream<Item = Result<I, ProviderError>> + Send + 'static,
    P: StreamParser<I>,
{
    struct State<S, P> {
        items: Pin<Box<S>>,
        parser: P,
        pending: VecDeque<StreamEvent>,
        content_left: usize,
        done: bool,
    }

    let state = State {
        items: Box::pin(items),
        parser,
        pending: VecDeque::new(),
        content_left: max_content,
        done: false,
    };
    Box::pin(futures::stream::unfold(state, move |mut st| async move {
        loop {
            if let Some(ev) = st.pending.pop_front() {
                return Some((Ok(ev), st));
            }
            if st.done {
                return None;
            }
            let step = match st.items.next().await {
                Some(Ok(item)) => st.parser.item(item),
                Some(Err(e)) => Err(e),
                None => {
                    st.done = true;
                    st.parser.end()
                }
            };
            let step = step.and_then(|events| {
                let size: usize = events.iter().map(content_bytes).sum();
                match st.content_left.checked_sub(size) {
                    Some(left) => {
                        st.content_left = left;
                        Ok(events)
                    }
                    None => Err(over_limit(format!(
                        "the streamed answer exceeds {max_content} bytes"
                    ))),
                }
            });
            match step {
                Ok(events) => st.pending.extend(events),
                Err(e) => {
                    st.done = true;
                    st.pending.clear();
                    return Some((Err(e), st));
                }
            }
        }
    }))
}

fn content_bytes(event: &StreamEvent) -> usize {
    match event {
        StreamEvent::Content(text) => text.len(),
        StreamEvent::ToolCall {
            id,
            name,
            arguments,
            ..
        } => {
            arguments.len()
                + id.as_ref().map_or(0, String::len)
                + name.as_ref().map_or(0, String::len)
        }
        // Forwarded as they come, never accumulated; each is bounded by `max_event_bytes`.
        StreamEvent::Finish(_) | StreamEvent::Usage(_) | StreamEvent::Native { .. } => 0,
    }
}

/// The most tool calls one answer may make. A stream's tool-call index becomes the position in
/// a vector (the client's, and the accumulator's), so it is checked before anything grows.
pub const MAX_TOOL_CALLS: u32 = 256;

/// A tool call's index from the wire, refused beyond `MAX_TOOL_CALLS`.
pub(crate) fn tool_index(index: u32) -> Result<u32, ProviderError> {
    if index < MAX_TOOL_CALLS {
        Ok(index)
    } else {
        Err(over_limit(format!(
            "tool call index {index} is beyond the limit of {MAX_TOOL_CALLS} tool calls"
        )))
    }
}

/// An upstream that went over one of the gateway's bounds: a protocol error of this attempt.
/// Not retried on the same model (it would most likely do it again); other models may answer.
pub(crate) fn over_limit(message: String) -> ProviderError {
    let mut err = ProviderError::new(ErrorKind::MalformedResponse, message);
    err.retryable = false;
    err
}

/// A translator's refusal inside message `i`: its field (`content[1]`) becomes the request's
/// (`messages[3].content[1]`), so the client is told exactly what to change.
pub(crate) fn in_message(i: usize) -> impl Fn(ProviderError) -> ProviderError {
    move |mut e| {
        if let Some(field) = e.param.take() {
            e.param = Some(format!("messages[{i}].{field}"));
        }
        e
    }
}

/// A tool call's arguments as a JSON object, for wire formats that carry them as an object
/// rather than OpenAI's JSON string (Anthropic `input`, Gemini `args`). Kept as raw text so the
/// client's key order survives. An empty string is `{}`.
pub(crate) fn arguments_object(
    call: &switchyard_types::ToolCall,
) -> Result<Box<serde_json::value::RawValue>, ProviderError> {
    let args = call.function.arguments.trim();
    let args = if args.is_empty() { "{}" } else { args };
    serde_json::from_str::<Box<serde_json::value::RawValue>>(args)
        .ok()
        .filter(|raw| raw.get().starts_with('{'))
        .ok_or_else(|| {
            ProviderError::new(
                ErrorKind::InvalidRequest,
                format!("tool call '{}': arguments are not a JSON object", call.id),
            )
        })
}

/// A name for the tool or function that carries an emulated JSON answer (Anthropic, and Gemini
/// next to function declarations): `base`, with `_answer` appended until no client tool has it.
pub(crate) fn unused_tool_name(request: &ChatRequest, base: &str) -> String {
    let mut name = base.to_owned();
    while request
        .tools
        .iter()
        .flatten()
        .any(|t| t.function.name == name)
    {
        name.push_str("_answer");
    }
    name
}

/// Join a base URL and a path with exactly one slash.
pub(crate) fn join_url(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}
