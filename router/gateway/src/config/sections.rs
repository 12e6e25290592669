//! The plain sections of the config: `[store]`, `[auth]`, `[policies]` and the validated
//! `[server]`, with their defaults.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use switchyard_types::ids::Secret;

/// `[store]`: where request logs, keys and spend are kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://PATH` (default `sqlite://.switchyard/switchyard.db`), `postgres://…`, or
    /// `none` (nothing persisted: no request log, keys live in memory only).
    #[serde(default = "default_store_url")]
    pub url: String,
    /// Request log rows older than this are deleted; 0 keeps them forever.
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// The writer flushes when this many rows are waiting …
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// … or this long after the first of them arrived.
    #[serde(default = "default_flush_ms")]
    pub flush_ms: u64,
    /// Rows that may wait for the writer; beyond it rows are dropped (and counted), never
    /// the request blocked.
    #[serde(default = "default_queue")]
    pub queue: usize,
}

fn default_store_url() -> String {
    "sqlite://.switchyard/switchyard.db".to_owned()
}
fn default_retention_days() -> u32 {
    30
}
fn default_batch_rows() -> usize {
    256
}
fn default_flush_ms() -> u64 {
    200
}
fn default_queue() -> usize {
    10_000
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: default_store_url(),
            retention_days: default_retention_days(),
            batch_rows: default_batch_rows(),
            flush_ms: default_flush_ms(),
            queue: default_queue(),
        }
    }
}

impl StoreConfig {
    pub fn enabled(&self) -> bool {
        self.url != "none"
    }
}

/// `[auth]`: the admin key (default: the `SWITCHYARD_ADMIN_KEY` environment variable). Virtual
/// keys themselves are made through the admin API and kept in the store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default)]
    pub admin_key: Option<Secret>,
    /// `keys` (every model call and read needs a virtual key) or `open` (no key needed).
    /// Default: `keys` when an admin key is configured or the listen address is not loopback;
    /// otherwise `open`. Resolved once at startup; nothing at run time changes it.
    #[serde(default)]
    pub mode: Option<AuthMode>,
    /// `open` on a non-loopback address is refused unless this is set.
    #[serde(default)]
    pub allow_open_on_network: bool,
    /// A request that fits the unspent budget but not the unreserved one waits this long for
    /// in-flight reservations to settle (default 2000).
    #[serde(default = "default_budget_wait_ms")]
    pub budget_wait_ms: u64,
}

fn default_budget_wait_ms() -> u64 {
    2000
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            admin_key: None,
            mode: None,
            allow_open_on_network: false,
            budget_wait_ms: default_budget_wait_ms(),
        }
    }
}

/// Whether requests need a virtual key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    Keys,
    Open,
}

impl AuthConfig {
    /// The mode resolved when the config was loaded (`keys` if it somehow was not).
    pub fn mode(&self) -> AuthMode {
        self.mode.unwrap_or(AuthMode::Keys)
    }
}

impl AuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Keys => "keys",
            AuthMode::Open => "open",
        }
    }
}

/// `[policies]`: the folder of WASM routing policies and how it is served.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoliciesConfig {
    /// A folder of policy folders (each with a `policy.toml`); none = no policies.
    pub dir: Option<std::path::PathBuf>,
    /// Reload when the folder changes.
    #[serde(default = "yes")]
    pub watch: bool,
    /// Where compiled policies are cached (default: `.switchyard/cwasm` in the working folder).
    pub cache_dir: Option<std::path::PathBuf>,
    /// Evaluations that may run at once (instance slots in the pool).
    #[serde(default = "default_policy_slots")]
    pub slots: u32,
}

fn yes() -> bool {
    true
}

fn default_policy_slots() -> u32 {
    128
}

impl Default for PoliciesConfig {
    fn default() -> Self {
        PoliciesConfig {
            dir: None,
            watch: true,
            cache_dir: None,
            slots: default_policy_slots(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Request bodies over this size get 413.
    pub max_body_bytes: usize,
    /// `Host` header values accepted (lower case, with or without a port); anything else is
    /// refused with 421, which stops DNS rebinding. Default: the listen address, `localhost`
    /// and `127.0.0.1` (and `[::1]`).
    pub allowed_hosts: Vec<String>,
    /// Origins whose cross-origin requests are served (`*` for any); other requests that carry
    /// an `Origin` header unlike the gateway's own are refused with 403. Default: none.
    pub cors_origins: Vec<String>,
    /// A client must send its request headers within this (`header_read_ms`, default 10 s) …
    pub header_read: Duration,
    /// … and its body within this (`body_read_ms`, default 30 s).
    pub body_read: Duration,
    /// An idle keep-alive connection is closed after this (`idle_ms`, default 60 s).
    pub idle: Duration,
    /// Requests served at once; beyond it, 503 with `retry-after` at once (default 1024).
    pub max_in_flight: usize,
    /// A stream whose client has not read for this long is closed (`write_stall_ms`, 30 s).
    pub write_stall: Duration,
    /// On SIGTERM, in-flight requests get this long to finish (`drain_ms`, default 10 s).
    pub drain: Duration,
    /// `[server.compression]`: gzip or brotli of large JSON answers; off by default.
    pub compression: CompressionConfig,
}

/// `[server.compression]`: which complete JSON answers are compressed, and how. Streams (SSE),
/// WebSocket upgrades, answers of unknown length and answers already encoded never are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressionConfig {
    /// Off by default: on loopback and behind a proxy that compresses, it only costs CPU.
    pub enabled: bool,
    /// Answers shorter than this are sent as they are (default 1024).
    pub min_bytes: u64,
    /// The encodings offered; brotli is chosen over gzip when a client accepts both equally.
    pub gzip: bool,
    pub br: bool,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        CompressionConfig {
            enabled: false,
            min_bytes: 1024,
            gzip: true,
            br: true,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCompression {
    enabled: Option<bool>,
    min_bytes: Option<u64>,
    algorithms: Option<Vec<String>>,
}

/// The most `min_bytes` may be: the largest body the gateway accepts is far below it.
const MAX_COMPRESSION_MIN_BYTES: u64 = 1 << 30;

pub(super) fn compression(
    raw: Option<RawCompression>,
    errors: &mut super::Errors,
) -> CompressionConfig {
    let defaults = CompressionConfig::default();
    let Some(raw) = raw else {
        return defaults;
    };
    let min_bytes = raw.min_bytes.unwrap_or(defaults.min_bytes);
    if !(1..=MAX_COMPRESSION_MIN_BYTES).contains(&min_bytes) {
        errors.push(
            "server.compression.min_bytes",
            format!("must be 1 to {MAX_COMPRESSION_MIN_BYTES}"),
        );
    }
    let mut config = CompressionConfig {
        enabled: raw.enabled.unwrap_or(defaults.enabled),
        min_bytes,
        ..defaults
    };
    if let Some(algorithms) = raw.algorithms {
        if algorithms.is_empty() {
            errors.push(
                "server.compression.algorithms",
                "must name at least one of \"br\", \"gzip\" (or set enabled = false)",
            );
        }
        config.gzip = false;
        config.br = false;
        for (i, a) in algorithms.iter().enumerate() {
            let seen = match a.as_str() {
                "gzip" => std::mem::replace(&mut config.gzip, true),
                "br" => std::mem::replace(&mut config.br, true),
                _ => {
                    errors.push(
                        format!("server.compression.algorithms[{i}]"),
                        format!("'{a}' is not one of \"br\", \"gzip\""),
                    );
                    continue;
                }
            };
            if seen {
                errors.push(
                    format!("server.compression.algorithms[{i}]"),
                    format!("'{a}' is listed twice"),
                );
            }
        }
    }
    config
}

/// `[providers.X] http2` and `pool_max_idle`, checked.
pub(super) fn connection(
    http2: Option<switchyard_providers::Http2>,
    pool_max_idle: Option<usize>,
    path: &str,
    errors: &mut super::Errors,
) -> switchyard_providers::Connection {
    let defaults = switchyard_providers::Connection::default();
    let pool_max_idle = pool_max_idle.unwrap_or(defaults.pool_max_idle);
    if pool_max_idle > switchyard_providers::MAX_POOL_MAX_IDLE {
        errors.push(
            format!("{path}.pool_max_idle"),
            format!(
                "must be at most {} idle connections",
                switchyard_providers::MAX_POOL_MAX_IDLE
            ),
        );
    }
    switchyard_providers::Connection {
        http2: http2.unwrap_or(defaults.http2),
        pool_max_idle,
    }
}

/// The hosts a gateway listening on `listen` answers to by default: the loopback names and the
/// listen address; any host on an unspecified address (`0.0.0.0`), which is reached by names
/// the gateway cannot know and where `keys` mode is the default (DNS rebinding is an attack on
/// loopback services that trust the browser's network position).
pub fn default_allowed_hosts(listen: SocketAddr) -> Vec<String> {
    if listen.ip().is_unspecified() {
        return vec!["*".to_owned()];
    }
    let mut hosts = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "[::1]".to_owned(),
    ];
    let ip = match listen.ip() {
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        v4 => v4.to_string(),
    };
    if !hosts.contains(&ip) {
        hosts.push(ip);
    }
    hosts
}

/// `[live]`: the live feed (`GET /ai/stream`).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveConfig {
    /// The share of requests whose routing decision is sent to the feed, 0 to 1 (default 1).
    #[serde(default = "LiveConfig::all")]
    pub decision_sample: f64,
}

impl LiveConfig {
    fn all() -> f64 {
        1.0
    }
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            decision_sample: 1.0,
        }
    }
}

/// `[metrics]`: who may scrape `/metrics`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// A scrape token: `/metrics` then needs `Authorization: Bearer <token>` (or the admin
    /// key). Without it, `/metrics` is public unless `require_admin` is set.
    #[serde(default)]
    pub token: Option<Secret>,
    /// `/metrics` needs the admin key (or the token).
    #[serde(default)]
    pub require_admin: bool,
}

/// `[redis]`: state shared by every replica. Without this section each replica keeps its own
/// counters and cache (one replica with SQLite is the default).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// The counters' server: budgets, RPM/TPM windows and key events (`redis://…`,
    /// `rediss://…`). It must never evict: `maxmemory-policy noeviction` (checked at start).
    pub url: String,
    /// The L2 response cache, on a server of its own (`maxmemory` with `allkeys-lru`), so that
    /// cache entries can never push out a budget. Without it the cache stays per replica.
    #[serde(default)]
    pub cache_url: Option<String>,
    /// The longest wait for one Redis call; beyond it the call counts as a failure.
    #[serde(default = "default_redis_timeout_ms")]
    pub timeout_ms: u64,
    /// A reservation not settled within this time (its replica died) is released.
    #[serde(default = "default_reservation_ttl_ms")]
    pub reservation_ttl_ms: u64,
    /// Prefix of every key, so that several gateways can share a server.
    #[serde(default = "default_redis_prefix")]
    pub prefix: String,
    /// What a limited request meets while Redis is unreachable: `local` (this replica's own
    /// counters, loudly) or `closed` (503). One value for both uses, or
    /// `{ budgets = "…", rates = "…" }`.
    #[serde(default)]
    pub on_failure: OnFailureSpec,
}

fn default_redis_timeout_ms() -> u64 {
    10
}
fn default_reservation_ttl_ms() -> u64 {
    300_000
}
fn default_redis_prefix() -> String {
    "sy".to_owned()
}

/// What to do while Redis is down, for one use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    #[default]
    Local,
    Closed,
}

impl OnFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            OnFailure::Local => "local",
            OnFailure::Closed => "closed",
        }
    }
}

/// `on_failure`: one mode, or one per use.
#[derive(Debug, Clone, Copy)]
pub enum OnFailureSpec {
    All(OnFailure),
    PerUse(PerUse),
}

impl<'de> Deserialize<'de> for OnFailureSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OnFailureSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "\"local\", \"closed\", or a table { budgets = …, rates = …, cache = … }",
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<OnFailureSpec, E> {
                OnFailure::deserialize(serde::de::value::StrDeserializer::new(v))
                    .map(OnFailureSpec::All)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<OnFailureSpec, A::Error> {
                PerUse::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(OnFailureSpec::PerUse)
            }
        }
        d.deserialize_any(V)
    }
}

impl Default for OnFailureSpec {
    fn default() -> Self {
        OnFailureSpec::All(OnFailure::Local)
    }
}

/// `on_failure = { budgets = "closed", rates = "local", cache = "local" }`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerUse {
    #[serde(default)]
    pub budgets: OnFailure,
    #[serde(default)]
    pub rates: OnFailure,
    /// A cache can only fall back to this replica's own entries: `local` is the one value.
    #[serde(default)]
    pub cache: OnFailure,
}

impl RedisConfig {
    pub fn budgets_on_failure(&self) -> OnFailure {
        match self.on_failure {
            OnFailureSpec::All(m) => m,
            OnFailureSpec::PerUse(p) => p.budgets,
        }
    }

    pub fn rates_on_failure(&self) -> OnFailure {
        match self.on_failure {
            OnFailureSpec::All(m) => m,
            OnFailureSpec::PerUse(p) => p.rates,
        }
    }

    /// Problems with the section, as (path, message).
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let scheme_ok = |u: &str| u.starts_with("redis://") || u.starts_with("rediss://");
        // Never echo a URL: it may hold a password.
        if !scheme_ok(&self.url) {
            out.push(("redis.url", "must be redis://… or rediss://…".to_owned()));
        }
        if let Some(c) = &self.cache_url {
            if !scheme_ok(c) {
                out.push((
                    "redis.cache_url",
                    "must be redis://… or rediss://…".to_owned(),
                ));
            } else if *c == self.url {
                out.push((
                    "redis.cache_url",
                    "must name another server (or database of a server whose policy evicts \
                     only cache keys): cache entries must never push out budget counters"
                        .to_owned(),
                ));
            }
        }
        if !(1..=10_000).contains(&self.timeout_ms) {
            out.push(("redis.timeout_ms", "must be between 1 and 10000".to_owned()));
        }
        if !(1_000..=86_400_000).contains(&self.reservation_ttl_ms) {
            out.push((
                "redis.reservation_ttl_ms",
                "must be between 1000 (1 s) and 86400000 (a day)".to_owned(),
            ));
        }
        let prefix_ok = !self.prefix.is_empty()
            && self.prefix.len() <= 32
            && self
                .prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !prefix_ok {
            out.push((
                "redis.prefix",
                "must be 1 to 32 letters, digits, '_' or '-'".to_owned(),
            ));
        }
        if let OnFailureSpec::PerUse(p) = self.on_failure
            && p.cache == OnFailure::Closed
        {
            out.push((
                "redis.on_failure.cache",
                "must be \"local\": without Redis the cache falls back to this replica's own \
                 entries (a miss is always a safe answer)"
                    .to_owned(),
            ));
        }
        out
    }
}
