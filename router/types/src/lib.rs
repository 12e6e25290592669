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

/// A 24-hex-digit identifier with a prefix, e.g. `req_…`, `chatcmpl-…`: time-ordered, like a
/// UUIDv7 or a ULID. The first 11 digits are the Unix time in milliseconds (44 bits: good until
/// the year 2527), the last 13 a per-process random start plus a per-process counter (52 bits).
///
/// - Unique: within a process the counter alone never repeats (2^52 ids), whatever the clock
///   does; two processes (replicas) collide only if they make ids in the same millisecond with
///   counters that happen to line up on their random starts.
/// - Sortable: ids made later sort after earlier ones (to the millisecond, and within one
///   process in the order they were made). The request log inserts its rows in this order at the
///   right edge of each index (its primary key and its children's), so a batch dirties a few
///   pages instead of a random page of each index per row (issue 17: an earlier experiment went
///   from 6.5k to 28k rows/s with time-ordered ids and in-memory temp storage; not yet
///   re-measured on this writer).
///
/// Not secret and not a random draw: nothing may use an id as a coin (the ids say when they
/// were made, and consecutive ones differ by one).
pub fn new_id(prefix: &str) -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static START: OnceLock<u64> = OnceLock::new();
    let start = *START.get_or_init(|| {
        // SplitMix64's finaliser over the clock, the process id and an address (ASLR).
        let here = &COUNTER as *const AtomicU64 as u64;
        rng::mix(unix_nanos() ^ (u64::from(std::process::id()) << 40) ^ rng::mix(here))
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    ordered_id(prefix, clock::now_ms(), start.wrapping_add(n))
}

/// Bits of [`new_id`]'s time part and of its sequence part.
const ID_MS_BITS: u32 = 44;
const ID_SEQ_BITS: u32 = 52;

/// `prefix`, then `ms` in 11 hex digits (clamped to 0 ..= 2^44 - 1), then the low 52 bits of
/// `seq` in 13.
fn ordered_id(prefix: &str, ms: i64, seq: u64) -> String {
    let ms = u64::try_from(ms).unwrap_or(0).min((1 << ID_MS_BITS) - 1);
    let seq = seq & ((1 << ID_SEQ_BITS) - 1);
    format!("{prefix}{ms:011x}{seq:013x}")
}

#[cfg(test)]
mod id_tests {
    use super::{new_id, ordered_id};

    #[test]
    fn ids_are_the_prefix_and_24_lowercase_hex_digits() {
        for prefix in ["req_", "chatcmpl-", "key_", ""] {
            let id = new_id(prefix);
            let rest = id.strip_prefix(prefix).unwrap();
            assert_eq!(rest.len(), 24, "{id}");
            assert!(
                rest.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "{id}"
            );
        }
        assert_eq!(ordered_id("req_", 0, 0), "req_000000000000000000000000");
        assert_eq!(
            ordered_id("req_", 1_764_892_800_123, 0xABC),
            format!("req_{:011x}0000000000abc", 1_764_892_800_123_u64)
        );
        // Out of range: clamped and masked, never longer.
        assert_eq!(ordered_id("", -5, 0).len(), 24);
        assert_eq!(ordered_id("", i64::MAX, u64::MAX), "f".repeat(24));
    }

    #[test]
    fn ids_sort_by_time_then_sequence() {
        let t = 1_764_892_800_000;
        let ids = [
            ordered_id("req_", t, (1 << 52) - 1),
            ordered_id("req_", t + 1, 0),
            ordered_id("req_", t + 1, 1),
            ordered_id("req_", t + 1, 0xFF_FFFF),
            ordered_id("req_", t + 1_000, 2),
            ordered_id("req_", t + 3_600_000, 0),
        ];
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    }

    #[test]
    fn ids_made_in_a_row_are_unique_and_in_order() {
        // One thread: each id sorts after the one before (the clock may repeat a millisecond,
        // the counter never repeats), as the request log's indexes want them.
        let ids: Vec<String> = (0..20_000).map(|_| new_id("req_")).collect();
        let before = ids.len();
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), before, "no id twice");
        let out_of_order = ids.windows(2).filter(|w| w[0] >= w[1]).count();
        // Only the sequence wrapping around its 52 bits (once in 2^52 ids) could reorder two.
        assert!(out_of_order <= 1, "{out_of_order} ids out of order");
    }

    #[test]
    fn ids_from_many_threads_are_unique() {
        let threads: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..10_000).map(|_| new_id("req_")).collect::<Vec<_>>()))
            .collect();
        let mut all: Vec<String> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 40_000);
    }
}
