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
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // SplitMix64 finaliser: cheap, well mixed, no RNG state to share.
    let mut z = nanos ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    format!("{prefix}{z:016x}{:08x}", n as u32)
}
