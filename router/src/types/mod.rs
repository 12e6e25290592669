//! Canonical (hub) types: the OpenAI Chat Completions shape every provider translates to and from.
//!
//! Owns the request, message, response, usage and stream-event types. Fields the gateway does not
//! model are kept in `extra` maps and passed through to OpenAI-shaped upstreams unchanged. This
//! module never knows about any provider's wire format.

mod request;
mod response;
mod stream;

pub use request::{
    ChatRequest, Content, ContentPart, FunctionCall, FunctionDef, FunctionName, ImageUrl,
    JsonSchemaFormat, Message, NamedToolChoice, ResponseFormat, Role, Stop, StreamOptions, Tool,
    ToolCall, ToolChoice, ToolChoiceMode, data_uri,
};
pub use response::{
    ChatResponse, Choice, CompletionTokensDetails, FinishReason, PromptTokensDetails, Usage,
};
pub use stream::{ChunkRenderer, StreamAccumulator, StreamEvent, sse_json};

/// Nanoseconds since the Unix epoch (0 if the clock is before it): a seed, not a timestamp.
pub fn unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Seconds since the Unix epoch, for `created` fields.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A random 24-hex-digit identifier with a prefix, e.g. `chatcmpl-…`.
pub fn new_id(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // SplitMix64's finaliser over clock and counter: well mixed, no RNG state to share.
    let z = crate::rng::mix(unix_nanos() ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    format!("{prefix}{z:016x}{:08x}", n as u32)
}
