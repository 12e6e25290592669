//! Canonical (hub) types: the OpenAI Chat Completions shape every provider translates to and from.
//!
//! Owns the request, message, response, usage and stream-event types, the identities (`ids`),
//! money in integer picodollars (`money`), the clock helpers (`clock`), and the classification of
//! an upstream failure (`error`) that routing and providers both read. Fields the gateway does not
//! model are kept in `extra` maps and passed through to OpenAI-shaped upstreams unchanged. This
//! crate does no I/O and never knows about any provider's wire format.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod cache_control;
pub mod clock;
pub mod error;
pub mod ids;
pub mod money;
pub mod native;
mod request;
mod response;
pub mod rng;
mod stream;
pub mod strict;

pub use request::{
    ChatRequest, Content, ContentPart, FunctionCall, FunctionDef, FunctionName, ImageUrl,
    JsonSchemaFormat, Message, NamedToolChoice, ResponseFormat, Role, Stop, StreamOptions, Tool,
    ToolCall, ToolChoice, ToolChoiceMode, data_uri,
};
pub use response::{
    ChatResponse, Choice, CompletionTokensDetails, FinishReason, PromptTokensDetails, Usage,
};
pub use stream::{ChunkRenderer, StreamAccumulator, StreamEvent, sse_json};

pub use native::{EmbedSpec, Native, NativeFormat, RawObject};

pub use clock::{unix_nanos, unix_now};

/// A random 24-hex-digit identifier with a prefix, e.g. `chatcmpl-…`.
pub fn new_id(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // SplitMix64's finaliser over clock and counter: well mixed, no RNG state to share.
    let z = rng::mix(unix_nanos() ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    format!("{prefix}{z:016x}{:08x}", n as u32)
}
