//! Chat-prompt accounting: the OpenAI cookbook's framing, counted message by message.
//!
//! Each text piece is counted where it lies in the request; the prompt is never joined into one
//! string. Only tool definitions and the response schema are serialised (one small JSON string
//! each), because the request holds them as JSON values, not text.

use serde::Serialize;

use super::tables::Counter;
use switchyard_types::{ChatRequest, Content, ContentPart, Message, ResponseFormat};

/// Framing per message: `<|start|>{role}<|message|>…<|end|>` less the role itself (cookbook).
const TOKENS_PER_MESSAGE: u64 = 3;
/// A `name` adds its own tokens plus one separator (cookbook).
const TOKENS_PER_NAME: u64 = 1;
/// Each tool call adds one token beyond its name and arguments (tiktoken-rs' heuristic).
const TOKENS_PER_TOOL_CALL: u64 = 1;
/// Every reply is primed with `<|start|>assistant<|message|>` (cookbook).
const REPLY_PRIMING: u64 = 3;

/// An image at `detail: "high"` or `"auto"`: OpenAI charges 85 base tokens plus 170 per 512 px
/// tile after scaling; a 1024 × 1024 image is 4 tiles, so 85 + 4 × 170 = 765. Real images can be
/// larger or smaller; one fixed allowance keeps the check cheap (no fetching or decoding).
pub(super) const IMAGE_TOKENS_HIGH: u64 = 765;
/// An image at `detail: "low"`: a flat 85 tokens.
pub(super) const IMAGE_TOKENS_LOW: u64 = 85;
/// Audio and file parts: their size is unknown without decoding them, so they get the same
/// allowance as a high-detail image. A floor, not a measurement; the count says it is inexact.
pub(super) const OTHER_MEDIA_TOKENS: u64 = IMAGE_TOKENS_HIGH;

/// The prompt's tokens in the counter's encoding, before any family margin.
pub(super) struct Prompt {
    pub tokens: u64,
    /// Something was counted by allowance or as serialised JSON rather than as the model sees it.
    pub approximate: bool,
}

pub(super) fn count(counter: Counter, request: &ChatRequest) -> Prompt {
    let mut prompt = Prompt {
        tokens: REPLY_PRIMING,
        approximate: false,
    };
    for message in &request.messages {
        prompt.tokens += message_tokens(counter, message, &mut prompt.approximate);
    }
    for tool in request.tools.iter().flatten() {
        prompt.tokens += json_tokens(counter, &tool.function);
        prompt.approximate = true;
    }
    if let Some(ResponseFormat::JsonSchema { json_schema }) = &request.response_format {
        prompt.tokens += json_tokens(counter, json_schema);
        prompt.approximate = true;
    }
    prompt
}

fn message_tokens(counter: Counter, message: &Message, approximate: &mut bool) -> u64 {
    let mut tokens = TOKENS_PER_MESSAGE + counter.count(message.role.as_str());
    match &message.content {
        Some(Content::Text(text)) => tokens += counter.count(text),
        Some(Content::Parts(parts)) => {
            for part in parts {
                tokens += part_tokens(counter, part, approximate);
            }
        }
        None => {}
    }
    if let Some(name) = &message.name {
        tokens += counter.count(name) + TOKENS_PER_NAME;
    }
    for call in message.tool_calls() {
        tokens += counter.count(&call.function.name)
            + counter.count(&call.function.arguments)
            + TOKENS_PER_TOOL_CALL;
    }
    if let Some(refusal) = &message.refusal {
        tokens += counter.count(refusal);
    }
    tokens
}

/// Text parts are counted one by one (BPE merges across a part boundary are ignored).
fn part_tokens(counter: Counter, part: &ContentPart, approximate: &mut bool) -> u64 {
    match part {
        ContentPart::Text { text } => counter.count(text),
        ContentPart::Refusal { refusal } => counter.count(refusal),
        ContentPart::ImageUrl { image_url } => {
            *approximate = true;
            match image_url.detail.as_deref() {
                Some("low") => IMAGE_TOKENS_LOW,
                _ => IMAGE_TOKENS_HIGH,
            }
        }
        ContentPart::InputAudio { .. } | ContentPart::File { .. } => {
            *approximate = true;
            OTHER_MEDIA_TOKENS
        }
    }
}

/// Tokens of a value's compact JSON. Providers render tool definitions and schemas in their own
/// formats (OpenAI uses a TypeScript-like namespace); compact JSON is close and usually a little
/// longer, which errs on the safe side.
fn json_tokens(counter: Counter, value: &impl Serialize) -> u64 {
    match serde_json::to_string(value) {
        Ok(json) => counter.count(&json),
        // Unreachable for the JSON-shaped types we serialise; count nothing rather than fail.
        Err(_) => 0,
    }
}
