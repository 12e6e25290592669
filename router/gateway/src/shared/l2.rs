//! The L2 response cache: entries every replica can read, on a Redis server of their own
//! (`[redis] cache_url`, `maxmemory` with `allkeys-lru`). L1 (moka, per replica) is asked
//! first; an L2 hit is copied into L1. Writes never make a request wait: they run in tasks,
//! at most `MAX_WRITES` at a time (more are skipped and counted). When the server fails, L2 is
//! skipped for a second at a time: a miss is always a safe answer.

use std::sync::atomic::AtomicI64;

use serde::{Deserialize, Serialize};
use switchyard_types::ChatResponse;
use switchyard_types::ids::{ModelId, ProviderId};
use tokio::sync::Semaphore;

use super::*;

const MAX_WRITES: usize = 64;
const FORMAT: u8 = 1;

/// Counters for `/metrics` and `GET /ai/cache/stats`.
#[derive(Debug, Default)]
pub struct L2Stats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub writes: AtomicU64,
    pub skipped: AtomicU64,
    pub errors: AtomicU64,
}

pub struct L2 {
    conn: ConnectionManager,
    timeout: Duration,
    prefix: String,
    writes: Arc<Semaphore>,
    /// Unix ms until which L2 is skipped after a failure.
    skip_until_ms: AtomicI64,
    pub stats: Arc<L2Stats>,
}

/// One entry as stored: JSON.
#[derive(Serialize, Deserialize)]
struct Stored {
    v: u8,
    model: ModelId,
    provider: ProviderId,
    response: ChatResponse,
}

/// An entry read from L2.
pub struct Found {
    pub model: ModelId,
    pub provider: ProviderId,
    pub response: ChatResponse,
    pub ttl: Duration,
}

impl L2 {
    pub(super) fn new(conn: ConnectionManager, timeout: Duration, prefix: &str) -> L2 {
        L2 {
            conn,
            timeout,
            prefix: prefix.to_owned(),
            writes: Arc::new(Semaphore::new(MAX_WRITES)),
            skip_until_ms: AtomicI64::new(0),
            stats: Arc::default(),
        }
    }

    fn name(&self, key: &[u8; 32]) -> String {
        format!("{}:c:v{FORMAT}:{}", self.prefix, crate::keys::hex(key))
    }

    fn skipping(&self) -> bool {
        switchyard_types::clock::now_ms() < self.skip_until_ms.load(Ordering::Relaxed)
    }

    fn failed(&self, what: &str, error: &dyn std::fmt::Display) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        let now = switchyard_types::clock::now_ms();
        let before = self.skip_until_ms.swap(now + 1000, Ordering::Relaxed);
        if before < now {
            tracing::warn!(op = what, error = %error, "redis cache (L2) failed: skipped for 1 s");
        }
    }

    /// The entry for `key`, if another replica (or this one) stored it and it is live. An
    /// entry that does not parse, or is larger than `max_bytes`, is a miss.
    pub async fn get(&self, key: &[u8; 32], max_bytes: u64) -> Option<Found> {
        if self.skipping() {
            return None;
        }
        let mut conn = self.conn.clone();
        let name = self.name(key);
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(&name).cmd("PTTL").arg(&name);
        let got = tokio::time::timeout(
            self.timeout,
            pipe.query_async::<(Option<Vec<u8>>, i64)>(&mut conn),
        )
        .await;
        let (bytes, pttl) = match got {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                self.failed("get", &e);
                return None;
            }
            Err(_) => {
                self.failed("get", &"timed out");
                return None;
            }
        };
        let found = bytes
            .filter(|b| b.len() as u64 <= max_bytes && pttl > 0)
            .and_then(|b| serde_json::from_slice::<Stored>(&b).ok())
            .filter(|s| s.v == FORMAT)
            .map(|s| Found {
                model: s.model,
                provider: s.provider,
                response: s.response,
                ttl: Duration::from_millis(pttl.unsigned_abs()),
            });
        let counter = if found.is_some() {
            &self.stats.hits
        } else {
            &self.stats.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Store an entry for `ttl`, in a task (skipped when `MAX_WRITES` are under way).
    pub fn put(
        self: &Arc<Self>,
        key: &[u8; 32],
        model: &ModelId,
        provider: &ProviderId,
        response: &ChatResponse,
        ttl: Duration,
    ) {
        if self.skipping() || ttl.is_zero() {
            return;
        }
        let Ok(permit) = self.writes.clone().try_acquire_owned() else {
            self.stats.skipped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let stored = Stored {
            v: FORMAT,
            model: model.clone(),
            provider: provider.clone(),
            response: response.clone(),
        };
        let Ok(body) = serde_json::to_vec(&stored) else {
            return;
        };
        let name = self.name(key);
        let me = self.clone();
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            let _permit = permit;
            let mut conn = me.conn.clone();
            let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
            let mut set = redis::cmd("SET");
            set.arg(&name).arg(body).arg("PX").arg(ms);
            match tokio::time::timeout(me.timeout, set.query_async::<()>(&mut conn)).await {
                Ok(Ok(())) => {
                    me.stats.writes.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Err(e)) => me.failed("set", &e),
                Err(_) => me.failed("set", &"timed out"),
            }
        });
    }

    pub fn stats(&self) -> serde_json::Value {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let s = &self.stats;
        serde_json::json!({
            "hits": load(&s.hits),
            "misses": load(&s.misses),
            "writes": load(&s.writes),
            "skipped": load(&s.skipped),
            "errors": load(&s.errors),
        })
    }

    /// Delete every L2 entry (of this prefix); returns how many.
    pub async fn clear(&self) -> u64 {
        let mut conn = self.conn.clone();
        let pattern = format!("{}:c:*", self.prefix);
        let mut cursor: u64 = 0;
        let mut deleted = 0u64;
        loop {
            let step = tokio::time::timeout(
                Duration::from_secs(2),
                redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(500)
                    .query_async::<(u64, Vec<String>)>(&mut conn),
            )
            .await;
            let Ok(Ok((next, names))) = step else {
                self.failed("clear", &"scan failed");
                return deleted;
            };
            if !names.is_empty() {
                let n = redis::cmd("UNLINK")
                    .arg(&names)
                    .query_async::<u64>(&mut conn)
                    .await
                    .unwrap_or(0);
                deleted += n;
            }
            if next == 0 {
                return deleted;
            }
            cursor = next;
        }
    }
}
