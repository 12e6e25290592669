//! A request's own say over the cache: `cache: {mode, ttl_s}` in the body. The gateway's cache
//! reads it; it lives here because it is part of the request.

use serde::{Deserialize, Serialize};

/// `cache` in a request body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheRequest {
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Lifetime of the entry this answer creates, seconds (at most the configured `max_ttl_s`).
    #[serde(default)]
    pub ttl_s: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Read and write, whether or not the request is deterministic.
    On,
    /// Neither read nor write.
    Off,
    /// Answer from the cache when possible; never write.
    ReadOnly,
    /// Never answer from the cache; store the answer (refresh).
    WriteOnly,
}

impl CacheRequest {
    /// Check `ttl_s` against the configured ceiling; the error names the field.
    pub fn validate(&self, max_ttl_s: u64) -> Result<(), (String, String)> {
        if let Some(t) = self.ttl_s
            && (t == 0 || t > max_ttl_s)
        {
            return Err((
                "cache.ttl_s".into(),
                format!("must be between 1 and {max_ttl_s} seconds"),
            ));
        }
        Ok(())
    }
}
