//! The plain sections of the config: `[store]`, `[auth]`, `[policies]` and the validated
//! `[server]`, with their defaults.

use std::net::SocketAddr;

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
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default)]
    pub admin_key: Option<Secret>,
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
}
