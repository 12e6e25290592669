//! Virtual keys: who may call the gateway, on which routes and models, how fast, for how much.
//!
//! - Keys are created by the admin API and shown once; the store keeps only their SHA-256.
//!   Every key in use is held in memory (`by_hash`), so authentication is one hash and one
//!   map lookup; a key not in memory is looked up in the store (another replica made it).
//! - **Budgets are reserved before the call and reconciled after it.** A request is admitted
//!   while `spent + reserved` is below the budget; it reserves its estimate (the dearest
//!   eligible candidate's cost, output capped by `max_tokens`), and when it ends the
//!   reservation is replaced by what the provider's usage says it cost. So concurrent requests
//!   can overspend by at most one request's estimate — never by "all of them at once".
//! - **402 means spent.** A request that fits the unspent budget but not the unreserved one
//!   waits (`[auth] budget_wait_ms`) for reservations to settle, then is admitted or gets 429
//!   with `retry-after`.
//! - **RPM / TPM** are sliding 60-second windows of one-second buckets, counted per upstream
//!   call (each item of a batch), not per HTTP request. Tokens are reserved (prompt + output
//!   cap) with the call and corrected to the actual usage afterwards.
//! - Money is integer picodollars (1e-12 USD), so spend sums are exact.
//!
//! Without `[redis]` the counters live in this process. With it, keys that have a limit are
//! counted on Redis for every replica (`shared.rs`, `crate::shared`), with this process's
//! counters as the mirror it falls back to when Redis is down.

mod auth;
mod key;
pub mod rate;
mod shared;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};
use switchyard_types::clock::{now_ms, utc_day_start_ms, utc_month_start_ms};
use switchyard_types::money::{pico_to_usd, usd_to_pico};

use crate::config::AuthMode;
use crate::error::Error;
pub use auth::{ADMIN_FAILURES_PER_MINUTE, Auth, Caller};
pub use key::{KeyState, Refusal, Reservation, Usage};
use switchyard_store::{KeyRecord, KeyStore, SpendStore, SpendTotals, Store};

/// Budget periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Total,
    Day,
    Month,
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Total => "total",
            Period::Day => "day",
            Period::Month => "month",
        }
    }

    pub fn parse(s: &str) -> Option<Period> {
        match s {
            "total" => Some(Period::Total),
            "day" => Some(Period::Day),
            "month" => Some(Period::Month),
            _ => None,
        }
    }

    /// The start of the period holding `ts_ms` (UTC), unix ms.
    pub fn start(self, ts_ms: i64) -> i64 {
        match self {
            Period::Total => 0,
            Period::Day => utc_day_start_ms(ts_ms),
            Period::Month => utc_month_start_ms(ts_ms),
        }
    }
}

/// Hex SHA-256 of a secret.
pub fn hash_secret(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// A new secret: `sk-sy-` and 64 hex digits (256 random bits from the operating system).
fn new_secret() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no random bytes from the system: {e}"))?;
    Ok(format!("sk-sy-{}", hex(&bytes)))
}

/// What the admin asks for when creating a key.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    pub name: String,
    #[serde(default)]
    pub routes: Vec<String>,
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub budget_usd: Option<f64>,
    #[serde(default)]
    pub budget_period: Option<Period>,
    #[serde(default)]
    pub rpm: Option<u32>,
    #[serde(default)]
    pub tpm: Option<u32>,
    /// `[]`: an ordinary key. `["dashboard"]`: the live feed and read endpoints, no model
    /// calls; `["dashboard", "models"]`: both.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// The scope that lets a key watch the live feed (`GET /ai/stream`) and read.
pub const SCOPE_DASHBOARD: &str = "dashboard";
/// The scope that lets a key with other scopes call models too (implied by no scopes).
pub const SCOPE_MODELS: &str = "models";
/// Every scope a key may have.
pub const SCOPES: [&str; 2] = [SCOPE_DASHBOARD, SCOPE_MODELS];

impl NewKey {
    /// A key with a name and no limits.
    pub fn default_named(name: &str) -> NewKey {
        NewKey {
            name: name.to_owned(),
            ..NewKey::default()
        }
    }
}

/// All virtual keys, the admin key, and the auth mode.
#[derive(Debug)]
pub struct Keys {
    store: Option<Store>,
    by_hash: RwLock<HashMap<String, Arc<KeyState>>>,
    admin_hash: Option<String>,
    gate: auth::Gate,
    lookups_made: AtomicU64,
    /// Shared counters and key events (`[redis]`).
    shared: Option<Arc<crate::shared::Shared>>,
}

impl Keys {
    /// Keys kept in memory only (no store).
    pub fn in_memory(mode: AuthMode, admin_key: Option<&str>) -> Keys {
        Keys {
            store: None,
            by_hash: RwLock::default(),
            admin_hash: admin_key.filter(|k| !k.is_empty()).map(hash_secret),
            gate: auth::Gate::new(mode),
            lookups_made: AtomicU64::new(0),
            shared: None,
        }
    }

    /// Load every key from the store, with its spend for the current period; with `shared`,
    /// seed the shared budgets from the ledger (each once over all replicas).
    pub async fn load(
        store: Store,
        mode: AuthMode,
        admin_key: Option<&str>,
        shared: Option<Arc<crate::shared::Shared>>,
    ) -> Result<Keys, String> {
        let mut keys = Keys::in_memory(mode, admin_key);
        keys.shared = shared;
        let records = KeyStore::list_keys(&store)
            .await
            .map_err(|e| format!("cannot load keys: {e}"))?;
        let now = now_ms();
        for r in records {
            keys.remember(Arc::new(load_state(&store, r, now).await?));
        }
        keys.store = Some(store);
        keys.seed_shared().await;
        Ok(keys)
    }

    /// Keep `state` unless its key is already held; returns the one held.
    fn remember(&self, state: Arc<KeyState>) -> Arc<KeyState> {
        let Ok(mut map) = self.by_hash.write() else {
            return state;
        };
        if let Some(held) = map.get(&state.record.hash) {
            return held.clone();
        }
        map.insert(state.record.hash.clone(), state.clone());
        state
    }

    /// A key made by another replica: look it up in the store. `Err` when the store failed.
    async fn fetch(&self, hash: &str) -> Result<Option<Arc<KeyState>>, ()> {
        let Some(store) = self.store.as_ref() else {
            return Ok(None);
        };
        let record = match KeyStore::key_by_hash(store, hash).await {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(None),
            Err(e) => {
                tracing::warn!(error = %e, "key lookup failed");
                return Err(());
            }
        };
        let state = load_state(store, record, now_ms()).await.map_err(|e| {
            tracing::warn!(error = %e, "key lookup failed");
        })?;
        // Another request may have fetched it meanwhile: use the one held, so that both
        // reserve against the same budget.
        Ok(Some(self.remember(Arc::new(state))))
    }

    /// Create a key; returns its record and the secret (shown once, never stored).
    pub async fn create(&self, new: NewKey) -> Result<(Arc<KeyState>, String), Error> {
        validate_new(&new)?;
        let secret = new_secret().map_err(Error::internal)?;
        let record = KeyRecord {
            id: switchyard_types::new_id("key_"),
            name: new.name,
            hash: hash_secret(&secret),
            prefix: secret.chars().take(12).collect(),
            created_ms: now_ms(),
            revoked_ms: None,
            routes: new.routes,
            models: new.models,
            budget_picousd: new.budget_usd.map(usd_to_pico),
            budget_period: new
                .budget_period
                .unwrap_or(Period::Month)
                .as_str()
                .to_owned(),
            rpm: new.rpm,
            tpm: new.tpm,
            scopes: new.scopes,
        };
        if let Some(store) = &self.store {
            KeyStore::create_key(store, &record)
                .await
                .map_err(|e| Error::internal(format!("cannot store the key: {e}")))?;
        }
        let now = now_ms();
        let period = Period::parse(&record.budget_period).unwrap_or(Period::Month);
        let state = self.remember(Arc::new(KeyState::new(record, 0, period.start(now))));
        self.publish(crate::shared::Event::Create {
            hash: state.record.hash.clone(),
        })
        .await;
        Ok((state, secret))
    }

    pub fn list(&self) -> Vec<Arc<KeyState>> {
        let mut v: Vec<_> = self
            .by_hash
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        v.sort_by(|a, b| {
            (a.record.created_ms, &a.record.id).cmp(&(b.record.created_ms, &b.record.id))
        });
        v
    }

    pub fn get(&self, id: &str) -> Option<Arc<KeyState>> {
        self.by_hash
            .read()
            .ok()?
            .values()
            .find(|k| k.record.id == id)
            .cloned()
    }

    /// Revoke a key: refused from the next request on. `false` if unknown or already revoked.
    pub async fn revoke(&self, id: &str) -> Result<bool, Error> {
        let Some(state) = self.get(id) else {
            return Ok(false);
        };
        if state.revoked.swap(true, Ordering::AcqRel) {
            return Ok(false);
        }
        if let Some(store) = &self.store {
            KeyStore::revoke_key(store, id, now_ms())
                .await
                .map_err(|e| Error::internal(format!("cannot store the revocation: {e}")))?;
        }
        self.publish(crate::shared::Event::Revoke {
            id: state.record.id.clone(),
            hash: state.record.hash.clone(),
        })
        .await;
        Ok(true)
    }

    /// Pick up keys made and revoked by other replicas sharing the store.
    pub async fn refresh(&self) -> Result<(), String> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let records = KeyStore::list_keys(store)
            .await
            .map_err(|e| format!("cannot refresh keys: {e}"))?;
        for r in records {
            let known = self
                .by_hash
                .read()
                .ok()
                .and_then(|m| m.get(&r.hash).cloned());
            match known {
                Some(k) => {
                    if r.revoked_ms.is_some() {
                        k.revoked.store(true, Ordering::Release);
                    }
                }
                None => {
                    self.remember(Arc::new(load_state(store, r, now_ms()).await?));
                }
            }
        }
        Ok(())
    }

    /// Refresh every `every` for as long as `keys` lives.
    pub fn spawn_refresh(keys: &Arc<Keys>, every: Duration) {
        let weak = Arc::downgrade(keys);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(keys) = weak.upgrade() else { return };
                if let Err(e) = keys.refresh().await {
                    tracing::warn!(error = %e, "key refresh failed");
                }
            }
        });
    }

    /// Past periods' spend from the store.
    pub async fn history(&self, id: &str) -> Vec<(i64, SpendTotals)> {
        match &self.store {
            Some(store) => SpendStore::spend_history(store, id)
                .await
                .unwrap_or_default(),
            None => Vec::new(),
        }
    }
}

async fn load_state(store: &Store, record: KeyRecord, now: i64) -> Result<KeyState, String> {
    let period = Period::parse(&record.budget_period).unwrap_or(Period::Month);
    let start = period.start(now);
    let spent = SpendStore::spend(store, &record.id, start)
        .await
        .map_err(|e| format!("cannot load the spend of key {}: {e}", record.id))?;
    Ok(KeyState::new(record, spent.cost_picousd, start))
}

fn validate_new(new: &NewKey) -> Result<(), Error> {
    if new.name.trim().is_empty() || new.name.chars().count() > 200 {
        return Err(Error::invalid_param("name", "must be 1 to 200 characters"));
    }
    if let Some(b) = new.budget_usd
        && !(b.is_finite() && b > 0.0 && b < 1e6)
    {
        return Err(Error::invalid_param(
            "budget_usd",
            "must be a positive number of dollars below 1,000,000",
        ));
    }
    for (name, v) in [("rpm", new.rpm), ("tpm", new.tpm)] {
        if v == Some(0) {
            return Err(Error::invalid_param(name, "must be at least 1"));
        }
    }
    for (i, scope) in new.scopes.iter().enumerate() {
        if !SCOPES.contains(&scope.as_str()) {
            return Err(Error::invalid_param(
                format!("scopes[{i}]"),
                format!("unknown scope '{scope}': one of {}", SCOPES.join(", ")),
            ));
        }
        if new.scopes[..i].contains(scope) {
            return Err(Error::invalid_param(
                format!("scopes[{i}]"),
                format!("'{scope}' is listed twice"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
