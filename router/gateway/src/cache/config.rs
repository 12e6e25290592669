//! `[cache]` in the config file.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Off = every request bypasses the cache.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Memory the cached answers may take, bytes (weighted by each answer's JSON size).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Answers larger than this are not cached, bytes.
    #[serde(default = "default_max_entry_bytes")]
    pub max_entry_bytes: u64,
    /// Default lifetime of an entry, seconds.
    #[serde(default = "default_ttl_s")]
    pub ttl_s: u64,
    /// The longest lifetime a request may ask for (`cache.ttl_s`), seconds.
    #[serde(default = "default_max_ttl_s")]
    pub max_ttl_s: u64,
}

fn yes() -> bool {
    true
}
fn default_max_bytes() -> u64 {
    256 * 1024 * 1024
}
fn default_max_entry_bytes() -> u64 {
    1024 * 1024
}
fn default_ttl_s() -> u64 {
    3600
}
fn default_max_ttl_s() -> u64 {
    7 * 24 * 3600
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: true,
            max_bytes: default_max_bytes(),
            max_entry_bytes: default_max_entry_bytes(),
            ttl_s: default_ttl_s(),
            max_ttl_s: default_max_ttl_s(),
        }
    }
}

impl CacheConfig {
    /// Problems, as (field, message).
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.max_bytes < 1024 {
            out.push(("cache.max_bytes", "must be at least 1024".to_owned()));
        }
        if self.max_entry_bytes == 0 || self.max_entry_bytes > self.max_bytes {
            out.push((
                "cache.max_entry_bytes",
                "must be between 1 and cache.max_bytes".to_owned(),
            ));
        }
        if self.ttl_s == 0 || self.ttl_s > self.max_ttl_s {
            out.push((
                "cache.ttl_s",
                "must be between 1 and cache.max_ttl_s".to_owned(),
            ));
        }
        out
    }
}
