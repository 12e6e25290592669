//! State shared by every replica, on Redis: budgets, RPM/TPM windows, the L2 response cache and
//! key events. Without `[redis]` none of this exists and each replica counts on its own.
//!
//! - **Counters** live on the `url` server and change only through the Lua scripts of
//!   `scripts.rs` (atomic on the server). The Postgres spend ledger stays the record: a budget
//!   is seeded from it once (`HSETNX`), and raised to it (never lowered, never added to) after
//!   anything that may have lost a settle: an outage, a failed call, a lapsed reservation.
//! - **Every call has a deadline** (`timeout_ms`). A failed call marks Redis *down*: from then
//!   on no request waits for it; a prober pings it until it answers, then the replica re-syncs
//!   (releases what it still holds there, raises what it spent meanwhile) and uses it again.
//! - While down, `on_failure` decides per use: `local` (this replica's own counters, counted in
//!   `switchyard_redis_fallbacks_total` and logged) or `closed` (503 `limits_unavailable` for
//!   keys with a limit of that use).
//! - The L2 cache is on a server of its own (`cache_url`), so that its entries can never evict
//!   a counter; the counters' server must be `noeviction`, checked at start.

mod budget;
mod events;
mod l2;
mod scripts;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::time::Instant;

use crate::config::{OnFailure, RedisConfig};
use switchyard_store::{SpendStore, Store};

pub use budget::{Hold, Limits, Reply, SharedUsage};
pub use events::Event;
pub use l2::L2;

/// Redis did not answer (or is known to be down): the caller falls back or refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Down;

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct SharedStats {
    pub errors: AtomicU64,
    pub fallbacks_budgets: AtomicU64,
    pub fallbacks_rates: AtomicU64,
    pub refused: AtomicU64,
    pub seeds: AtomicU64,
    pub raised: AtomicU64,
    pub expired: AtomicU64,
    pub outages: AtomicU64,
    pub events_received: AtomicU64,
}

pub struct Shared {
    cfg: RedisConfig,
    counters: ConnectionManager,
    client: redis::Client,
    timeout: Duration,
    scripts: scripts::Scripts,
    up: AtomicBool,
    /// Tells this replica's reservations apart from the others'.
    replica: String,
    next_rid: AtomicU64,
    pub stats: SharedStats,
    store: Option<Store>,
    /// (key id, period start) → when to raise its shared spend to the ledger's.
    dirty: Mutex<HashMap<(String, i64), Instant>>,
    /// Reservations to release once Redis answers again: (budget hash, rid).
    releases: Mutex<Vec<(String, String)>>,
    pub l2: Option<Arc<L2>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("replica", &self.replica)
            .field("up", &self.is_up())
            .finish_non_exhaustive()
    }
}

/// At most this many releases wait for Redis to return; beyond it they lapse by their TTL.
const MAX_PENDING_RELEASES: usize = 100_000;

fn manager_config(timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_response_timeout(Some(timeout))
        .set_connection_timeout(Some(timeout.max(Duration::from_millis(250))))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(20))
        .set_max_delay(Duration::from_millis(200))
}

fn client(url: &str, what: &str) -> Result<redis::Client, String> {
    redis::Client::open(url)
        .map_err(|e| format!("{what} ({}): {e}", switchyard_store::redacted_url(url)))
}

impl Shared {
    /// Connect (lazily: an unreachable server at start is an outage like any other, handled
    /// by `on_failure`), load the scripts, check the counters' eviction policy, and start the
    /// prober, the reconciler and the event subscriber's connection.
    pub async fn connect(cfg: &RedisConfig, store: Option<Store>) -> Result<Arc<Shared>, String> {
        let timeout = Duration::from_millis(cfg.timeout_ms);
        let counters_client = client(&cfg.url, "redis.url")?;
        let counters = ConnectionManager::new_lazy_with_config(
            counters_client.clone(),
            manager_config(timeout),
        )
        .map_err(|e| format!("redis.url: {e}"))?;
        let l2 = match &cfg.cache_url {
            Some(url) => {
                let c = client(url, "redis.cache_url")?;
                let m = ConnectionManager::new_lazy_with_config(c, manager_config(timeout))
                    .map_err(|e| format!("redis.cache_url: {e}"))?;
                Some(Arc::new(L2::new(m, timeout, &cfg.prefix)))
            }
            None => None,
        };
        let shared = Arc::new(Shared {
            cfg: cfg.clone(),
            counters,
            client: counters_client,
            timeout,
            scripts: scripts::Scripts::new(),
            up: AtomicBool::new(true),
            replica: switchyard_types::new_id("r"),
            next_rid: AtomicU64::new(0),
            stats: SharedStats::default(),
            store,
            dirty: Mutex::default(),
            releases: Mutex::default(),
            l2,
        });
        // A slow first connection is allowed more than one call's deadline.
        let first = tokio::time::timeout(
            timeout.max(Duration::from_secs(2)),
            redis::cmd("CONFIG")
                .arg("GET")
                .arg("maxmemory-policy")
                .query_async::<Vec<String>>(&mut shared.counters.clone()),
        )
        .await;
        match first {
            Ok(Ok(pair)) => {
                let policy = pair.get(1).map_or("", String::as_str);
                if policy != "noeviction" {
                    return Err(format!(
                        "redis.url: the server's maxmemory-policy is '{policy}': it could evict \
                         budget and rate-limit counters. Set `maxmemory-policy noeviction` on the \
                         counters' server (put the cache on another one: redis.cache_url)"
                    ));
                }
            }
            // The server answered, but refused CONFIG (managed services often do).
            Ok(Err(e)) if e.code().is_some() => {
                tracing::warn!(
                    error = %e,
                    "redis: cannot read maxmemory-policy (CONFIG refused); make sure the \
                     counters' server never evicts (noeviction)"
                );
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "redis unreachable at start");
                shared.fail();
            }
            Err(_) => {
                tracing::error!("redis unreachable at start (no answer in time)");
                shared.fail();
            }
        }
        Self::spawn_reconciler(&shared);
        Ok(shared)
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    fn key(&self, key_id: &str, suffix: &str) -> String {
        format!("{}:{{{key_id}}}:{suffix}", self.cfg.prefix)
    }

    fn budget_key(&self, key_id: &str, period_start_ms: i64) -> String {
        self.key(key_id, &format!("b:{period_start_ms}"))
    }

    fn events_channel(&self) -> String {
        format!("{}:events", self.cfg.prefix)
    }

    /// A fresh reservation id, unique across replicas.
    fn rid(&self) -> String {
        let n = self.next_rid.fetch_add(1, Ordering::Relaxed);
        format!("{}.{n}", self.replica)
    }

    /// One call with the deadline. Refused at once while Redis is known to be down.
    async fn call<T>(
        self: &Arc<Self>,
        what: &'static str,
        f: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Down> {
        if !self.is_up() {
            return Err(Down);
        }
        match tokio::time::timeout(self.timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                tracing::warn!(op = what, error = %e, "redis call failed");
                self.fail();
                Err(Down)
            }
            Err(_) => {
                tracing::warn!(
                    op = what,
                    timeout_ms = self.cfg.timeout_ms,
                    "redis call timed out"
                );
                self.fail();
                Err(Down)
            }
        }
    }

    fn conn(&self) -> ConnectionManager {
        self.counters.clone()
    }

    /// Mark Redis down (once per outage: a log line, the metric, the prober).
    fn fail(self: &Arc<Self>) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        if !self.up.swap(false, Ordering::AcqRel) {
            return;
        }
        self.stats.outages.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            budgets = self.cfg.budgets_on_failure().as_str(),
            rates = self.cfg.rates_on_failure().as_str(),
            "redis unreachable: shared limits are DEGRADED (budgets and rates follow \
             [redis] on_failure; the cache is per replica) until it answers again"
        );
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let Some(me) = weak.upgrade() else { return };
                let ping = tokio::time::timeout(
                    me.timeout.max(Duration::from_millis(500)),
                    redis::cmd("PING").query_async::<String>(&mut me.conn()),
                )
                .await;
                if matches!(ping, Ok(Ok(_))) {
                    me.up.store(true, Ordering::Release);
                    tracing::warn!("redis reachable again: re-syncing shared counters");
                    me.resync().await;
                    return;
                }
            }
        });
    }

    /// After an outage: release what this replica still holds there, and raise every budget
    /// it spent from locally meanwhile (already marked dirty) to the ledger.
    async fn resync(self: &Arc<Self>) {
        let releases =
            std::mem::take(&mut *self.releases.lock().unwrap_or_else(|p| p.into_inner()));
        for (budget, rid) in releases {
            if self.release_only(&budget, &rid).await.is_err() {
                return;
            }
        }
        // Raise soon: the ledger's flush of the outage's spend may still be under way, so
        // every dirty key is raised again later as well (see `mark_dirty`).
        let now = Instant::now();
        if let Ok(mut d) = self.dirty.lock() {
            for due in d.values_mut() {
                *due = (*due).min(now);
            }
        }
    }

    /// Whether a key's limits of these uses may fall back to local counters now.
    pub fn on_failure(&self, has_budget: bool, has_rates: bool) -> OnFailure {
        let closed = (has_budget && self.cfg.budgets_on_failure() == OnFailure::Closed)
            || (has_rates && self.cfg.rates_on_failure() == OnFailure::Closed);
        if closed {
            OnFailure::Closed
        } else {
            OnFailure::Local
        }
    }

    /// Raise `(key_id, period)` to the ledger's spend after `delay` — and once more ten
    /// seconds later, when every replica's ledger buffer has surely been flushed.
    pub(crate) fn mark_dirty(&self, key_id: &str, period_start_ms: i64, delay: Duration) {
        let Ok(mut d) = self.dirty.lock() else { return };
        let due = Instant::now() + delay;
        d.entry((key_id.to_owned(), period_start_ms))
            .and_modify(|t| *t = (*t).min(due))
            .or_insert(due);
    }

    /// The reconciler: every 250 ms, raise the budgets that are due to the ledger's spend.
    fn spawn_reconciler(shared: &Arc<Shared>) {
        let weak = Arc::downgrade(shared);
        tokio::spawn(async move {
            let mut again: HashMap<(String, i64), Instant> = HashMap::new();
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let Some(me) = weak.upgrade() else { return };
                if !me.is_up() {
                    continue;
                }
                let now = Instant::now();
                let due: Vec<(String, i64)> = {
                    let Ok(mut d) = me.dirty.lock() else { continue };
                    let keys: Vec<_> = d
                        .iter()
                        .filter(|(_, t)| **t <= now)
                        .map(|(k, _)| k.clone())
                        .collect();
                    for k in &keys {
                        d.remove(k);
                    }
                    keys
                };
                let mut second: Vec<(String, i64)> = Vec::new();
                again.retain(|k, t| {
                    if *t <= now {
                        second.push(k.clone());
                        false
                    } else {
                        true
                    }
                });
                for (key_id, period) in due.iter().chain(second.iter()) {
                    if me.reconcile(key_id, *period).await.is_err() {
                        // Down again: try later.
                        me.mark_dirty(key_id, *period, Duration::from_secs(1));
                    }
                }
                for k in due {
                    again.insert(k, now + Duration::from_secs(10));
                }
            }
        });
    }

    /// The period's spend according to the ledger (the store).
    async fn ledger_spend(&self, key_id: &str, period_start_ms: i64) -> Option<i64> {
        let store = self.store.as_ref()?;
        match SpendStore::spend(store, key_id, period_start_ms).await {
            Ok(t) => Some(t.cost_picousd),
            Err(e) => {
                tracing::warn!(error = %e, key = key_id, "redis: cannot read the ledger");
                None
            }
        }
    }

    /// Start following key events (revocations, creations, cache clears) from every replica,
    /// calling `on_event` for each; reconnects by itself, and calls `on_reconnect` after
    /// each reconnection (events may have been missed).
    pub fn follow(
        self: &Arc<Self>,
        on_event: impl Fn(Event) + Send + Sync + 'static,
        on_reconnect: impl Fn() + Send + Sync + 'static,
    ) {
        events::follow(self, on_event, on_reconnect);
    }
}

#[cfg(test)]
mod tests;
