//! Anthropic's prompt cache, simulated for its accounting: which input tokens a request writes
//! to the cache (`cache_creation_input_tokens`), reads from it (`cache_read_input_tokens`), and
//! which are plain input.
//!
//! A request is a sequence of blocks in Anthropic's order: tools, then system blocks, then each
//! message's content blocks. A block carrying `cache_control` is a breakpoint; the cached prefix
//! is everything up to and including the last one. The first time a model sees a prefix, its
//! tokens are written; seen again within its TTL (5 minutes, or 1 hour for `"ttl": "1h"`;
//! every read refreshes it), they are read. As Anthropic does, a miss looks back up to 20 block
//! boundaries for an earlier prefix that is cached (a conversation that moved its breakpoint
//! forward): that part is read and only the rest written. No breakpoint: nothing is cached.
//!
//! Tokens follow the sim's prompt estimate (`text::prompt_tokens`), split at block boundaries.
//! Prefixes are remembered as 64-bit hashes (of the model and the blocks' JSON without their
//! `cache_control`), at most `MAX_PREFIXES`, the least recently used evicted first. The lock is
//! held for a map lookup and insert only, never across an await.
//!
//! OpenAI's automatic caching is simulated on the same memory (`account_automatic`): a prompt
//! of at least `AUTO_MIN_TOKENS` caches its prefix (every message but the last) unasked, and
//! the same prefix seen again within the TTL is read, in whole `AUTO_STEP`-token steps
//! (`prompt_tokens_details.cached_tokens`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::text::{count_u32, text_chars};

/// The most prefixes remembered.
pub(crate) const MAX_PREFIXES: usize = 10_000;
/// How far back a miss looks for a cached prefix, in blocks.
const LOOKBACK: usize = 20;
const TTL: Duration = Duration::from_secs(5 * 60);
const TTL_LONG: Duration = Duration::from_secs(60 * 60);
/// The shortest prompt OpenAI caches, and the step its cached prefix grows by.
const AUTO_MIN_TOKENS: u32 = 1024;
const AUTO_STEP: u32 = 128;

/// One request's use of the cache, in tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CacheUse {
    pub(crate) read: u32,
    pub(crate) written: u32,
}

/// The end of one block: the hash of everything up to it, its prompt tokens so far, and the
/// TTL if the block is a breakpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Boundary {
    hash: u64,
    tokens: u32,
    breakpoint: Option<Duration>,
}

#[derive(Debug)]
struct Entry {
    expires: Instant,
    ttl: Duration,
    /// Position in `Inner::order` (last use).
    used: u64,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<u64, Entry>,
    /// Last-use order: use number → prefix hash.
    order: BTreeMap<u64, u64>,
    uses: u64,
}

impl Inner {
    fn alive(&mut self, hash: u64, now: Instant) -> bool {
        match self.entries.get(&hash) {
            Some(e) if e.expires > now => true,
            Some(e) => {
                let used = e.used;
                self.order.remove(&used);
                self.entries.remove(&hash);
                false
            }
            None => false,
        }
    }

    /// Writes or refreshes `hash` (a longer TTL is kept), evicting the least recently used.
    fn touch(&mut self, hash: u64, ttl: Duration, now: Instant) {
        self.uses += 1;
        let used = self.uses;
        if let Some(e) = self.entries.get_mut(&hash) {
            self.order.remove(&e.used);
            e.ttl = e.ttl.max(ttl);
            e.expires = now + e.ttl;
            e.used = used;
        } else {
            while self.entries.len() >= MAX_PREFIXES {
                let Some((_, oldest)) = self.order.pop_first() else {
                    break;
                };
                self.entries.remove(&oldest);
            }
            let expires = now + ttl;
            self.entries.insert(hash, Entry { expires, ttl, used });
        }
        self.order.insert(used, hash);
    }
}

/// The simulator's memory of cached prefixes, per model.
#[derive(Debug, Default)]
pub(crate) struct PromptCache {
    inner: Mutex<Inner>,
}

impl PromptCache {
    /// Accounts a Messages request whose prompt estimate is `total` tokens, and remembers its
    /// breakpoints' prefixes. `read + written <= total`.
    pub(crate) fn account(&self, model: &str, req: &Value, total: u32, now: Instant) -> CacheUse {
        let blocks = boundaries(model, req);
        let Some(last) = blocks.iter().rposition(|b| b.breakpoint.is_some()) else {
            return CacheUse::default();
        };
        let prefix = blocks[last].tokens.min(total);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let hit = (last.saturating_sub(LOOKBACK)..=last)
            .rev()
            .find(|&i| inner.alive(blocks[i].hash, now));
        let read = hit.map_or(0, |i| blocks[i].tokens.min(prefix));
        if let Some(i) = hit {
            let ttl = inner.entries.get(&blocks[i].hash).map_or(TTL, |e| e.ttl);
            inner.touch(blocks[i].hash, ttl, now);
        }
        for b in &blocks[..=last] {
            if let Some(ttl) = b.breakpoint {
                inner.touch(b.hash, ttl, now);
            }
        }
        CacheUse {
            read,
            written: prefix - read,
        }
    }

    /// Accounts an OpenAI-shaped request of `total` prompt tokens: the tokens read from the
    /// cache (0 on a miss, which caches the prefix).
    pub(crate) fn account_automatic(
        &self,
        model: &str,
        messages: &[Value],
        total: u32,
        now: Instant,
    ) -> u32 {
        let Some((_, prefix)) = messages.split_last() else {
            return 0;
        };
        if total < AUTO_MIN_TOKENS || prefix.is_empty() {
            return 0;
        }
        let mut hash = fnv(fnv(0xCBF2_9CE4_8422_2325, b"auto\0"), model.as_bytes());
        for m in prefix {
            hash = fnv(fnv(hash, b"\0"), m.to_string().as_bytes());
        }
        let tokens = super::text::prompt_tokens(None, prefix).min(total);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let hit = inner.alive(hash, now);
        inner.touch(hash, TTL, now);
        if hit {
            tokens / AUTO_STEP * AUTO_STEP
        } else {
            0
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entries
            .len()
    }
}

/// The tokens of the tools: ceil(chars / 4) + 3 each, chars as in the prompt estimate.
pub(crate) fn tool_tokens(req: &Value) -> u32 {
    let tools = req.get("tools").and_then(Value::as_array);
    count_u32(tools.into_iter().flatten().map(one_tool).sum())
}

fn one_tool(tool: &Value) -> usize {
    text_chars(tool).div_ceil(4) + 3
}

/// FNV-1a, continued over `bytes`.
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

/// A block's TTL if it is a breakpoint.
fn breakpoint(block: &Value) -> Option<Duration> {
    let control = block.get("cache_control")?;
    if control.is_null() {
        return None;
    }
    Some(match control.get("ttl").and_then(Value::as_str) {
        Some("1h") => TTL_LONG,
        _ => TTL,
    })
}

/// The block's JSON without its `cache_control`: moving a breakpoint keeps the prefix.
fn content_hash(h: u64, tag: &str, block: &Value) -> u64 {
    let text = match block {
        Value::Object(map) if map.contains_key("cache_control") => {
            let mut map = map.clone();
            map.remove("cache_control");
            Value::Object(map).to_string()
        }
        other => other.to_string(),
    };
    fnv(fnv(fnv(h, tag.as_bytes()), text.as_bytes()), b"\0")
}

/// Every block boundary of the request, in order: tools, system, messages.
fn boundaries(model: &str, req: &Value) -> Vec<Boundary> {
    let mut out = Vec::new();
    let mut hash = fnv(fnv(0xCBF2_9CE4_8422_2325, model.as_bytes()), b"\0");
    let mut base = 0usize;
    let mut push = |hash: u64, tokens: usize, block: &Value| {
        out.push(Boundary {
            hash,
            tokens: count_u32(tokens),
            breakpoint: breakpoint(block),
        });
    };
    for tool in req
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        hash = content_hash(hash, "tool:", tool);
        base += one_tool(tool);
        push(hash, base, tool);
    }
    // The system prompt and each message: ceil(chars / 4) + 3 (a system without text: 0).
    let so_far = |chars: usize, system: bool| {
        if system && chars == 0 {
            0
        } else {
            chars.div_ceil(4) + 3
        }
    };
    let mut turn = |tag: &str, content: Option<&Value>, system: bool| {
        let mut chars = 0;
        match content {
            Some(Value::Array(blocks)) => {
                for (i, block) in blocks.iter().enumerate() {
                    let tag = if i == 0 { tag } else { "" };
                    hash = content_hash(hash, tag, block);
                    chars += text_chars(block);
                    push(hash, base + so_far(chars, system), block);
                }
            }
            Some(other) => {
                hash = content_hash(hash, tag, other);
                chars = text_chars(other);
                push(hash, base + so_far(chars, system), &Value::Null);
            }
            None => {}
        }
        base += so_far(chars, system);
    };
    turn("system:", req.get("system"), true);
    for m in req
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let tag = match m.get("role").and_then(Value::as_str) {
            Some("assistant") => "assistant:",
            _ => "user:",
        };
        turn(tag, m.get("content"), false);
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::text::prompt_tokens;

    fn total(req: &Value) -> u32 {
        let messages = req["messages"].as_array().unwrap();
        prompt_tokens(req.get("system"), messages) + tool_tokens(req)
    }

    fn request(system: &str, question: &str) -> Value {
        json!({"model": "claude", "max_tokens": 10,
            "system": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": question}]})
    }

    #[test]
    fn boundaries_split_the_prompt_estimate() {
        let req = json!({"model": "m",
            "tools": [{"name": "lookup", "description": "Look it up",
                       "input_schema": {"type": "object"}}],
            "system": [{"type": "text", "text": "abcdefgh"}, {"type": "text", "text": "ijkl"}],
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "one two "}, {"type": "text", "text": "three"}]}]});
        let b = boundaries("m", &req);
        let tokens: Vec<u32> = b.iter().map(|b| b.tokens).collect();
        // tool: ceil(16/4)+3 = 7; system 8 then 12 chars: +5, +6; message 8 then 13: +5, +7.
        assert_eq!(tokens, vec![7, 12, 13, 18, 20]);
        // The last boundary plus the reply primer is the whole estimate.
        assert_eq!(b.last().unwrap().tokens + 3, total(&req));
        let hashes: std::collections::HashSet<u64> = b.iter().map(|b| b.hash).collect();
        assert_eq!(hashes.len(), 5);
        // Another model has other prefixes.
        assert_ne!(boundaries("n", &req)[0].hash, b[0].hash);
    }

    #[test]
    fn a_prefix_is_written_once_then_read_until_it_expires() {
        let cache = PromptCache::default();
        let now = Instant::now();
        let req = request(&"x".repeat(4000), "Summarise.");
        let t = total(&req);
        let first = cache.account("claude", &req, t, now);
        assert_eq!(
            first,
            CacheUse {
                read: 0,
                written: 1003
            }
        );
        let again = cache.account("claude", &req, t, now + Duration::from_secs(299));
        assert_eq!(
            again,
            CacheUse {
                read: 1003,
                written: 0
            }
        );
        // Each read refreshes: five more minutes from the last one.
        let later = cache.account("claude", &req, t, now + Duration::from_secs(598));
        assert_eq!(later.read, 1003);
        let expired = cache.account("claude", &req, t, now + Duration::from_secs(899));
        assert_eq!(
            expired,
            CacheUse {
                read: 0,
                written: 1003
            }
        );
        // Another model, or another prefix, starts cold; another question reads the prefix.
        assert_eq!(cache.account("other", &req, t, now).read, 0);
        let other = request(&"x".repeat(4000), "Translate it.");
        let use_other = cache.account(
            "claude",
            &other,
            total(&other),
            now + Duration::from_secs(900),
        );
        assert_eq!(
            use_other,
            CacheUse {
                read: 1003,
                written: 0
            }
        );
        let changed = request(&"y".repeat(4000), "Summarise.");
        assert_eq!(cache.account("claude", &changed, t, now).written, 1003);
    }

    #[test]
    fn no_breakpoint_no_cache_and_a_one_hour_ttl() {
        let cache = PromptCache::default();
        let now = Instant::now();
        let plain = json!({"system": "s", "messages": [{"role": "user", "content": "hi"}]});
        assert_eq!(cache.account("m", &plain, 10, now), CacheUse::default());
        assert_eq!(cache.len(), 0);
        let long = json!({"messages": [{"role": "user", "content": [{"type": "text",
            "text": "abcd", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}]});
        assert_eq!(cache.account("m", &long, 10, now).written, 4);
        let hit = cache.account("m", &long, 10, now + Duration::from_secs(3000));
        assert_eq!(
            hit,
            CacheUse {
                read: 4,
                written: 0
            }
        );
    }

    /// Turn two of a conversation moves the breakpoint to its new last message: the old prefix
    /// is read and only the new part written.
    #[test]
    fn a_moved_breakpoint_reads_the_earlier_prefix() {
        let cache = PromptCache::default();
        let now = Instant::now();
        let block = |text: &str, mark: bool| {
            let mut b = json!({"type": "text", "text": text});
            if mark {
                b["cache_control"] = json!({"type": "ephemeral"});
            }
            b
        };
        let turn1 = json!({"messages": [
            {"role": "user", "content": [block(&"a".repeat(400), true)]}]});
        let w = cache.account("m", &turn1, 1000, now).written;
        assert_eq!(w, 103);
        let turn2 = json!({"messages": [
            {"role": "user", "content": [block(&"a".repeat(400), false)]},
            {"role": "assistant", "content": [block("ok", false)]},
            {"role": "user", "content": [block(&"b".repeat(40), true)]}]});
        let u = cache.account("m", &turn2, 1000, now);
        assert_eq!(
            u,
            CacheUse {
                read: 103,
                written: 4 + 13
            }
        );
    }

    #[test]
    fn memory_is_bounded_and_the_least_recently_used_goes_first() {
        let cache = PromptCache::default();
        let now = Instant::now();
        let req = |i: usize| request(&format!("prefix {i}"), "q");
        cache.account("m", &req(0), 100, now);
        for i in 1..MAX_PREFIXES + 10 {
            cache.account("m", &req(i), 100, now);
            if i % 1000 == 0 {
                // Keep prefix 0 in use.
                assert!(cache.account("m", &req(0), 100, now).read > 0, "{i}");
            }
        }
        assert_eq!(cache.len(), MAX_PREFIXES);
        assert!(cache.account("m", &req(0), 100, now).read > 0);
        assert_eq!(cache.account("m", &req(1), 100, now).read, 0, "evicted");
    }

    #[test]
    fn read_and_written_never_exceed_the_total() {
        let cache = PromptCache::default();
        let req = request(&"x".repeat(4000), "Summarise.");
        let u = cache.account("claude", &req, 10, Instant::now());
        assert_eq!(u.written, 10);
    }

    #[test]
    fn openai_caches_a_long_prefix_unasked_in_whole_steps() {
        let cache = PromptCache::default();
        let now = Instant::now();
        let long = "word ".repeat(2000);
        let messages = [
            json!({"role": "user", "content": long}),
            json!({"role": "assistant", "content": "Noted."}),
            json!({"role": "user", "content": "Summarise."}),
        ];
        let total = prompt_tokens(None, &messages);
        assert!(total >= AUTO_MIN_TOKENS);
        assert_eq!(cache.account_automatic("m", &messages, total, now), 0);
        let read = cache.account_automatic("m", &messages, total, now);
        assert!(
            read >= AUTO_MIN_TOKENS && read % AUTO_STEP == 0 && read <= total,
            "{read}"
        );
        // Another model, another prefix, or a short prompt: nothing is read.
        assert_eq!(cache.account_automatic("n", &messages, total, now), 0);
        let mut other = messages.clone();
        other[1] = json!({"role": "assistant", "content": "Seen."});
        assert_eq!(cache.account_automatic("m", &other, total, now), 0);
        let short = [
            json!({"role": "user", "content": "hi"}),
            json!({"role": "user", "content": "x"}),
        ];
        cache.account_automatic("m", &short, 5, now);
        assert_eq!(cache.account_automatic("m", &short, 5, now), 0);
        // After the TTL the prefix is gone.
        let later = now + TTL + Duration::from_secs(1);
        assert_eq!(cache.account_automatic("m", &messages, total, later), 0);
    }
}
