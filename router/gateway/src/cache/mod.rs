//! The response cache: exact-match answers, kept in memory (moka), weighed by their size.
//!
//! - **Key**: SHA-256 of the request *after* policies (so a trimmed or redacted prompt is what is
//!   matched), normalised (`stream`, `stream_options` and the cache control itself left out),
//!   with the target (route or model, `models`) and the caller's scope (virtual key id; `""`
//!   when no key was presented, in `open` mode). Two keys never share an entry.
//! - **What is cached**: complete, successful answers of deterministic requests (temperature 0
//!   or a seed), or of any request that opts in (`cache.mode = "on"`). Errors and cut streams
//!   never.
//! - **Control**: `cache: {mode, ttl_s}` in the body; `Cache-Control: no-cache` skips the lookup
//!   (the answer still refreshes the entry), `no-store` skips the write.
//! - **Expiry** is checked against tokio's clock at lookup (so tests run on paused time); moka's
//!   own per-entry expiry frees the memory.
//! - **Coalescing**: the first miss for a key *leads*; identical requests arriving while it runs
//!   wait for it (up to the route's deadline) and are then answered from the cache. A leader
//!   that fails (or whose answer may not be cached) just releases them to call upstream.

pub mod config;

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::shared::L2;
pub use config::CacheConfig;

pub use switchyard_types::cache_control::{CacheRequest, Mode};
use switchyard_types::ids::{ModelId, ProviderId};
use switchyard_types::{ChatRequest, ChatResponse};

/// A cache key: SHA-256 of scope, target and the normalised request.
pub type Key = [u8; 32];

/// How the cache treated a request (`x-switchyard-cache`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Hit,
    Miss,
    #[default]
    Bypass,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Miss => "miss",
            Outcome::Bypass => "bypass",
        }
    }
}

/// What the cache may do for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub read: bool,
    pub write: bool,
    pub ttl: Duration,
}

/// Decide what the cache may do: config, the body's `cache`, `Cache-Control`, determinism.
/// `None` = bypass.
pub fn plan(
    cfg: &CacheConfig,
    request: &ChatRequest,
    control: Option<&CacheRequest>,
    cache_control: Option<&str>,
) -> Option<Plan> {
    if !cfg.enabled {
        return None;
    }
    // An embedding is a function of its input: always deterministic.
    let deterministic =
        request.embed.is_some() || request.temperature == Some(0.0) || request.seed.is_some();
    let (mut read, mut write) = match control.and_then(|c| c.mode) {
        None => (deterministic, deterministic),
        Some(Mode::On) => (true, true),
        Some(Mode::Off) => (false, false),
        Some(Mode::ReadOnly) => (true, false),
        Some(Mode::WriteOnly) => (false, true),
    };
    if let Some(cc) = cache_control {
        for directive in cc.split(',').map(|d| d.trim().to_ascii_lowercase()) {
            match directive.as_str() {
                "no-cache" => read = false,
                "no-store" => write = false,
                _ => {}
            }
        }
    }
    if !read && !write {
        return None;
    }
    let ttl_s = control
        .and_then(|c| c.ttl_s)
        .unwrap_or(cfg.ttl_s)
        .min(cfg.max_ttl_s);
    Some(Plan {
        read,
        write,
        ttl: Duration::from_secs(ttl_s),
    })
}

/// The key for a request (after policies) in a scope, for a target.
pub fn key(scope: &str, target: &str, models: Option<&[String]>, request: &ChatRequest) -> Key {
    struct HashWriter(Sha256);
    impl Write for HashWriter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.update(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut h = HashWriter(Sha256::new());
    h.0.update(b"switchyard-cache-v1\0");
    for part in [scope, target] {
        h.0.update((part.len() as u64).to_le_bytes());
        h.0.update(part.as_bytes());
    }
    for m in models.unwrap_or_default() {
        h.0.update((m.len() as u64).to_le_bytes());
        h.0.update(m.as_bytes());
    }
    h.0.update(b"\0request\0");
    // `stream` and `stream_options` change the framing, not the answer; `model` is the target.
    let normalised = Normalised(request);
    if serde_json::to_writer(&mut h, &normalised).is_err() {
        // Serialising our own types cannot fail; make the key unique rather than shared.
        h.0.update(switchyard_types::new_id("unkeyable").as_bytes());
    }
    h.0.finalize().into()
}

/// The request as keyed: every field but the framing ones.
struct Normalised<'a>(&'a ChatRequest);

impl Serialize for Normalised<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let r = self.0;
        let mut st = s.serialize_struct("Req", 16)?;
        st.serialize_field("messages", &r.messages)?;
        st.serialize_field("max_tokens", &r.max_tokens)?;
        st.serialize_field("temperature", &r.temperature)?;
        st.serialize_field("top_p", &r.top_p)?;
        st.serialize_field("stop", &r.stop)?;
        st.serialize_field("tools", &r.tools)?;
        st.serialize_field("tool_choice", &r.tool_choice)?;
        st.serialize_field("parallel_tool_calls", &r.parallel_tool_calls)?;
        st.serialize_field("response_format", &r.response_format)?;
        st.serialize_field("seed", &r.seed)?;
        st.serialize_field("n", &r.n)?;
        st.serialize_field("user", &r.user)?;
        st.serialize_field("extra", &r.extra)?;
        // Embeddings of a text are not an answer to it; vectors of other lengths differ too.
        st.serialize_field("embed", &r.embed.map(|e| e.dimensions.unwrap_or(0)))?;
        // A native body's members the hub does not model (`thinking`, `top_k`, block fields)
        // can change the answer; the framing (`stream`) and the routed `model` do not.
        if let Some(native) = &r.native {
            let members: Vec<_> = native
                .body
                .0
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "model" | "stream" | "max_tokens"))
                .collect();
            st.serialize_field("native", &(members, &native.headers))?;
        } else {
            st.serialize_field("native", &None::<()>)?;
        }
        st.end()
    }
}

/// A cached answer.
#[derive(Debug)]
pub struct Entry {
    pub response: ChatResponse,
    pub model: ModelId,
    pub provider: ProviderId,
    pub expires: Instant,
    /// Approximate memory held (the answer's JSON size plus bookkeeping): the moka weight.
    pub bytes: u32,
    ttl: Duration,
}

impl Entry {
    pub fn new(
        response: ChatResponse,
        model: ModelId,
        provider: ProviderId,
        ttl: Duration,
    ) -> Entry {
        let json = serde_json::to_vec(&response).map_or(0, |v| v.len());
        let bytes = u32::try_from(json + 256).unwrap_or(u32::MAX);
        Entry {
            response,
            model,
            provider,
            expires: Instant::now() + ttl,
            bytes,
            ttl,
        }
    }
}

/// Counters for `GET /ai/cache/stats` and `/metrics`.
#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    bypasses: AtomicU64,
    inserts: AtomicU64,
    too_large: AtomicU64,
    evictions: AtomicU64,
    expirations: AtomicU64,
    coalesced: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub entries: u64,
    pub bytes: u64,
    pub max_bytes: u64,
    pub hits: u64,
    pub misses: u64,
    pub bypasses: u64,
    pub inserts: u64,
    pub too_large: u64,
    pub evictions: u64,
    pub expirations: u64,
    /// Requests answered by waiting for an identical request in flight.
    pub coalesced: u64,
}

type Inflight = Arc<Mutex<HashMap<Key, watch::Receiver<()>>>>;

pub struct ResponseCache {
    entries: moka::sync::Cache<Key, Arc<Entry>>,
    inflight: Inflight,
    counters: Arc<Counters>,
    cfg: CacheConfig,
    /// The entries every replica shares (`[redis] cache_url`), asked after this one's own.
    l2: Option<Arc<L2>>,
}

/// The result of a lookup.
pub enum Lookup {
    Hit(Arc<Entry>),
    /// Not cached; call upstream, and store the answer through the leader (if any).
    Miss(Option<Leader>),
}

/// Held by the one request that calls upstream for a key; identical requests wait until it is
/// dropped (after the answer is stored, or the attempt failed).
pub struct Leader {
    key: Key,
    inflight: Inflight,
    _done: watch::Sender<()>,
}

impl Leader {
    pub fn key(&self) -> &Key {
        &self.key
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if let Ok(mut map) = self.inflight.lock() {
            map.remove(&self.key);
        }
    }
}

struct PerEntryTtl;

impl moka::Expiry<Key, Arc<Entry>> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &Key,
        value: &Arc<Entry>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

impl ResponseCache {
    pub fn new(cfg: &CacheConfig) -> ResponseCache {
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let entries = moka::sync::Cache::builder()
            .max_capacity(cfg.max_bytes)
            .weigher(|_k: &Key, v: &Arc<Entry>| v.bytes)
            .expire_after(PerEntryTtl)
            .eviction_listener(move |_k, _v, cause| match cause {
                moka::notification::RemovalCause::Size => {
                    c.evictions.fetch_add(1, Ordering::Relaxed);
                }
                moka::notification::RemovalCause::Expired => {
                    c.expirations.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            })
            .build();
        ResponseCache {
            entries,
            inflight: Arc::default(),
            counters,
            cfg: cfg.clone(),
            l2: None,
        }
    }

    /// With a shared second level.
    pub fn with_l2(mut self, l2: Option<Arc<L2>>) -> ResponseCache {
        self.l2 = l2;
        self
    }

    pub fn l2(&self) -> Option<&Arc<L2>> {
        self.l2.as_ref()
    }

    /// An L2 entry (another replica's answer, or one of this replica's that L1 let go),
    /// copied into L1.
    async fn read_l2(&self, key: &Key) -> Option<Arc<Entry>> {
        let l2 = self.l2.as_ref()?;
        let found = l2.get(key, self.cfg.max_entry_bytes).await?;
        let entry = Arc::new(Entry::new(
            found.response,
            found.model,
            found.provider,
            found.ttl,
        ));
        self.entries.insert(*key, entry.clone());
        Some(entry)
    }

    pub fn config(&self) -> &CacheConfig {
        &self.cfg
    }

    /// The live entry for `key`, if any (an expired one is removed and counted).
    fn get(&self, key: &Key) -> Option<Arc<Entry>> {
        let e = self.entries.get(key)?;
        if Instant::now() >= e.expires {
            self.entries.invalidate(key);
            self.counters.expirations.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(e)
    }

    /// Look `key` up under `plan`. A miss that will write becomes the leader for its key, or
    /// waits (at most `wait`) for the leader already in flight and reads its answer.
    pub async fn lookup(&self, key: Key, plan: Plan, wait: Duration) -> Lookup {
        if plan.read
            && let Some(e) = self.get(&key)
        {
            self.counters.hits.fetch_add(1, Ordering::Relaxed);
            return Lookup::Hit(e);
        }
        /// What the in-flight table says, decided under its lock (never held across an await).
        enum Next {
            Wait(watch::Receiver<()>),
            Lead(Leader),
            AskL2,
            Miss,
        }
        let next = match self.inflight.lock() {
            Err(_) => Next::Miss,
            Ok(mut map) => match map.get(&key) {
                Some(rx) if plan.read => Next::Wait(rx.clone()),
                Some(_) => Next::Miss,
                None if plan.write => {
                    let (tx, rx) = watch::channel(());
                    map.insert(key, rx);
                    Next::Lead(Leader {
                        key,
                        inflight: self.inflight.clone(),
                        _done: tx,
                    })
                }
                None if plan.read => Next::AskL2,
                None => Next::Miss,
            },
        };
        let waiting = match next {
            Next::Wait(rx) => Some(rx),
            Next::Lead(leader) => {
                // Leading: ask L2 before calling upstream (the waiters then read L1).
                if plan.read
                    && let Some(e) = self.read_l2(&key).await
                {
                    drop(leader);
                    self.counters.hits.fetch_add(1, Ordering::Relaxed);
                    return Lookup::Hit(e);
                }
                return self.miss(Some(leader));
            }
            Next::AskL2 => {
                if let Some(e) = self.read_l2(&key).await {
                    self.counters.hits.fetch_add(1, Ordering::Relaxed);
                    return Lookup::Hit(e);
                }
                None
            }
            Next::Miss => None,
        };
        if let Some(mut rx) = waiting {
            // `changed` errs when the leader drops its sender: it is done, one way or another.
            let _ = tokio::time::timeout(wait, rx.changed()).await;
            if let Some(e) = self.get(&key) {
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                self.counters.coalesced.fetch_add(1, Ordering::Relaxed);
                return Lookup::Hit(e);
            }
        }
        self.miss(None)
    }

    fn miss(&self, leader: Option<Leader>) -> Lookup {
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
        Lookup::Miss(leader)
    }

    /// Count a request the cache did not take part in.
    pub fn bypassed(&self) {
        self.counters.bypasses.fetch_add(1, Ordering::Relaxed);
    }

    /// Store an answer (then drop the leader, releasing the waiters). Answers larger than
    /// `max_entry_bytes` are not stored.
    pub fn insert(&self, key: Key, entry: Entry) {
        if u64::from(entry.bytes) > self.cfg.max_entry_bytes {
            self.counters.too_large.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.counters.inserts.fetch_add(1, Ordering::Relaxed);
        if let Some(l2) = &self.l2 {
            l2.put(
                &key,
                &entry.model,
                &entry.provider,
                &entry.response,
                entry.ttl,
            );
        }
        self.entries.insert(key, Arc::new(entry));
    }

    /// Drop every entry (`DELETE /ai/cache`); returns how many there were.
    pub fn clear(&self) -> u64 {
        self.entries.run_pending_tasks();
        let n = self.entries.entry_count();
        self.entries.invalidate_all();
        self.entries.run_pending_tasks();
        n
    }

    pub fn stats(&self) -> Stats {
        self.entries.run_pending_tasks();
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            entries: self.entries.entry_count(),
            bytes: self.entries.weighted_size(),
            max_bytes: self.cfg.max_bytes,
            hits: load(&c.hits),
            misses: load(&c.misses),
            bypasses: load(&c.bypasses),
            inserts: load(&c.inserts),
            too_large: load(&c.too_large),
            evictions: load(&c.evictions),
            expirations: load(&c.expirations),
            coalesced: load(&c.coalesced),
        }
    }
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
