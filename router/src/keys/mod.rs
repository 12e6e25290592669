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
//! - **RPM / TPM** are sliding 60-second windows of one-second buckets. Tokens are reserved
//!   (prompt + output cap) at admission and corrected to the actual usage afterwards.
//! - Money is integer picodollars (1e-12 USD), so spend sums are exact.
//!
//! Counters live in this process. N replicas behind one Postgres each enforce the limits on
//! their own share (documented in the README; shared counters are Redis's job).

pub mod window;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;

use crate::api::ApiError;
use crate::store::{KeyRecord, KeyStore, SpendStore, SpendTotals, Store};
use window::Window;

/// Picodollars per USD.
pub const PICO: f64 = 1e12;

pub fn usd_to_pico(usd: f64) -> i64 {
    (usd * PICO).round() as i64
}

pub fn pico_to_usd(p: i64) -> f64 {
    p as f64 / PICO
}

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
        const DAY: i64 = 86_400_000;
        match self {
            Period::Total => 0,
            Period::Day => ts_ms.div_euclid(DAY) * DAY,
            Period::Month => {
                let days = ts_ms.div_euclid(DAY);
                let (y, m, _) = civil_from_days(days);
                days_from_civil(y, m, 1) * DAY
            }
        }
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Hex SHA-256 of a secret.
pub fn hash_secret(secret: &str) -> String {
    switchyard_plugins::engine::sha256_hex(secret.as_bytes())
}

/// 32 bytes from the operating system's CSPRNG.
fn random_bytes() -> Result<[u8; 32], String> {
    use std::io::Read;
    let mut buf = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    Ok(buf)
}

/// A new secret: `sk-sy-` and 64 hex digits (256 random bits).
fn new_secret() -> Result<String, String> {
    Ok(format!(
        "sk-sy-{}",
        switchyard_plugins::engine::hex(&random_bytes()?)
    ))
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
}

impl NewKey {
    /// A key with a name and no limits.
    pub fn default_named(name: &str) -> NewKey {
        NewKey {
            name: name.to_owned(),
            ..NewKey::default()
        }
    }
}

/// One key's live state.
#[derive(Debug)]
pub struct KeyState {
    pub record: KeyRecord,
    pub period: Period,
    revoked: AtomicBool,
    live: Mutex<Live>,
}

#[derive(Debug)]
struct Live {
    period_start_ms: i64,
    spent: i64,
    reserved: i64,
    requests: Window,
    tokens: Window,
}

/// A budget and token reservation, released (and replaced by the actual figures) by `settle`.
#[derive(Debug)]
pub struct Reservation {
    key: Arc<KeyState>,
    cost: i64,
    tokens: u64,
    at_s: i64,
    settled: bool,
}

impl Reservation {
    /// Replace the reservation by what the request cost and used.
    pub fn settle(mut self, cost: i64, tokens: u64) {
        self.release(cost, tokens);
    }

    fn release(&mut self, cost: i64, tokens: u64) {
        if self.settled {
            return;
        }
        self.settled = true;
        if let Ok(mut live) = self.key.live.lock() {
            live.reserved -= self.cost;
            live.spent += cost;
            live.tokens.adjust(self.at_s, self.tokens, tokens);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // Never settled (the request failed before any usage): nothing was spent.
        self.release(0, 0);
    }
}

/// Spend and limits of a key, for `GET /admin/keys/{id}/spend`.
#[derive(Debug, Clone, Serialize)]
pub struct Usage {
    pub period: &'static str,
    pub period_start_ms: i64,
    pub spent_usd: f64,
    pub spent_picousd: i64,
    pub reserved_usd: f64,
    pub budget_usd: Option<f64>,
    pub remaining_usd: Option<f64>,
    pub requests_last_minute: u64,
    pub tokens_last_minute: u64,
}

impl KeyState {
    fn new(record: KeyRecord, spent: i64, period_start_ms: i64) -> KeyState {
        let period = Period::parse(&record.budget_period).unwrap_or(Period::Month);
        let revoked = record.revoked_ms.is_some();
        KeyState {
            record,
            period,
            revoked: AtomicBool::new(revoked),
            live: Mutex::new(Live {
                period_start_ms,
                spent,
                reserved: 0,
                requests: Window::default(),
                tokens: Window::default(),
            }),
        }
    }

    pub fn id(&self) -> &str {
        &self.record.id
    }

    pub fn is_revoked(&self) -> bool {
        self.revoked.load(Ordering::Acquire)
    }

    /// Count a request against the RPM limit, or refuse it.
    pub fn admit(&self, now_s: i64) -> Result<(), ApiError> {
        let Ok(mut live) = self.live.lock() else {
            return Ok(());
        };
        if let Some(rpm) = self.record.rpm {
            let used = live.requests.sum(now_s);
            if used >= u64::from(rpm) {
                let wait = live.requests.wait_for(now_s, used + 1 - u64::from(rpm));
                return Err(ApiError::rate_limited(
                    format!(
                        "Key '{}' is over its limit of {rpm} requests per minute",
                        self.record.id
                    ),
                    wait,
                ));
            }
        }
        live.requests.add(now_s, 1);
        Ok(())
    }

    /// Reserve `cost` (picodollars) and `tokens`, or refuse with 402 / 429.
    pub fn reserve(
        self: &Arc<Self>,
        now_ms: i64,
        cost: i64,
        tokens: u64,
    ) -> Result<Reservation, ApiError> {
        let now_s = now_ms.div_euclid(1000);
        let Ok(mut live) = self.live.lock() else {
            return Err(ApiError::internal("key state poisoned"));
        };
        let start = self.period.start(now_ms);
        if start != live.period_start_ms {
            // A new period: what was spent belongs to the old one.
            live.period_start_ms = start;
            live.spent = 0;
        }
        if let Some(budget) = self.record.budget_picousd
            && live.spent + live.reserved >= budget
        {
            let detail = if live.spent >= budget {
                "spent"
            } else {
                "spent or reserved by requests in flight"
            };
            return Err(ApiError::budget_exceeded(format!(
                "Key '{}' has {detail} its budget of ${:.6} for this {}",
                self.record.id,
                pico_to_usd(budget),
                if self.period == Period::Total {
                    "key".to_owned()
                } else {
                    self.period.as_str().to_owned()
                },
            )));
        }
        if let Some(tpm) = self.record.tpm {
            let used = live.tokens.sum(now_s);
            if used + tokens > u64::from(tpm) {
                let need = (used + tokens).saturating_sub(u64::from(tpm));
                let wait = if tokens > u64::from(tpm) {
                    Duration::from_secs(60)
                } else {
                    live.tokens.wait_for(now_s, need)
                };
                return Err(ApiError::rate_limited(
                    format!(
                        "Key '{}' is over its limit of {tpm} tokens per minute ({used} used, \
                         this request needs up to {tokens})",
                        self.record.id
                    ),
                    wait,
                ));
            }
        }
        live.reserved += cost;
        live.tokens.add(now_s, tokens);
        Ok(Reservation {
            key: self.clone(),
            cost,
            tokens,
            at_s: now_s,
            settled: false,
        })
    }

    pub fn usage(&self, now_ms: i64) -> Usage {
        let now_s = now_ms.div_euclid(1000);
        let (start, spent, reserved, req, tok) = match self.live.lock() {
            Ok(mut l) => {
                let start = self.period.start(now_ms);
                if start != l.period_start_ms {
                    l.period_start_ms = start;
                    l.spent = 0;
                }
                (
                    l.period_start_ms,
                    l.spent,
                    l.reserved,
                    l.requests.sum(now_s),
                    l.tokens.sum(now_s),
                )
            }
            Err(_) => (0, 0, 0, 0, 0),
        };
        let budget = self.record.budget_picousd;
        Usage {
            period: self.period.as_str(),
            period_start_ms: start,
            spent_usd: pico_to_usd(spent),
            spent_picousd: spent,
            reserved_usd: pico_to_usd(reserved),
            budget_usd: budget.map(pico_to_usd),
            remaining_usd: budget.map(|b| pico_to_usd((b - spent).max(0))),
            requests_last_minute: req,
            tokens_last_minute: tok,
        }
    }

    /// Whether the key may use `route` / `model` (empty lists allow all).
    pub fn allows_route(&self, route: &str) -> bool {
        self.record.routes.is_empty() || self.record.routes.iter().any(|r| r == route)
    }

    pub fn allows_model(&self, model: &str) -> bool {
        self.record.models.is_empty() || self.record.models.iter().any(|m| m == model)
    }
}

/// All virtual keys, and the admin key.
#[derive(Debug)]
pub struct Keys {
    store: Option<Store>,
    by_hash: RwLock<HashMap<String, Arc<KeyState>>>,
    /// Keys not revoked: auth is on when there is at least one.
    active: AtomicUsize,
    admin_hash: Option<String>,
}

/// Why a request was not authenticated.
pub enum Auth {
    /// No keys exist: the gateway is open (and listens on loopback by default).
    Open,
    Key(Arc<KeyState>),
}

impl Keys {
    /// Keys kept in memory only (no store).
    pub fn in_memory(admin_key: Option<&str>) -> Keys {
        Keys {
            store: None,
            by_hash: RwLock::default(),
            active: AtomicUsize::new(0),
            admin_hash: admin_key.filter(|k| !k.is_empty()).map(hash_secret),
        }
    }

    /// Load every key from the store, with its spend for the current period.
    pub async fn load(store: Store, admin_key: Option<&str>) -> Result<Keys, String> {
        let mut keys = Keys::in_memory(admin_key);
        let records = KeyStore::list_keys(&store)
            .await
            .map_err(|e| format!("cannot load keys: {e}"))?;
        let now = now_ms();
        for r in records {
            keys.remember(Arc::new(load_state(&store, r, now).await?));
        }
        keys.store = Some(store);
        Ok(keys)
    }

    /// Keep `state` unless its key is already held; returns the one held. Counts active keys.
    fn remember(&self, state: Arc<KeyState>) -> Arc<KeyState> {
        let Ok(mut map) = self.by_hash.write() else {
            return state;
        };
        if let Some(held) = map.get(&state.record.hash) {
            return held.clone();
        }
        if !state.is_revoked() {
            self.active.fetch_add(1, Ordering::AcqRel);
        }
        map.insert(state.record.hash.clone(), state.clone());
        state
    }

    /// Whether requests must carry a key.
    pub fn auth_required(&self) -> bool {
        self.active.load(Ordering::Acquire) > 0
    }

    pub fn admin_configured(&self) -> bool {
        self.admin_hash.is_some()
    }

    /// Check the admin key (compared as SHA-256 digests, so timing reveals nothing of it).
    pub fn check_admin(&self, presented: Option<&str>) -> Result<(), ApiError> {
        let Some(want) = &self.admin_hash else {
            return Err(ApiError::forbidden(
                None,
                "The admin API is disabled: start the gateway with SWITCHYARD_ADMIN_KEY set",
            ));
        };
        match presented {
            Some(p) if &hash_secret(p) == want => Ok(()),
            Some(_) => Err(ApiError::unauthorized("Invalid admin key")),
            None => Err(ApiError::unauthorized(
                "The admin API needs the admin key: Authorization: Bearer <SWITCHYARD_ADMIN_KEY>",
            )),
        }
    }

    /// Authenticate a request's key (`None` when it sent none).
    pub async fn authenticate(&self, presented: Option<&str>) -> Result<Auth, ApiError> {
        if !self.auth_required() && presented.is_none() {
            return Ok(Auth::Open);
        }
        let Some(secret) = presented else {
            return Err(ApiError::unauthorized(
                "This gateway requires an API key: Authorization: Bearer <key>",
            ));
        };
        let hash = hash_secret(secret);
        let found = self.by_hash.read().ok().and_then(|m| m.get(&hash).cloned());
        let state = match found {
            Some(s) => Some(s),
            None => self.fetch(&hash).await,
        };
        match state {
            Some(s) if s.is_revoked() => Err(ApiError::unauthorized(format!(
                "API key '{}' has been revoked",
                s.record.id
            ))),
            Some(s) => Ok(Auth::Key(s)),
            None if !self.auth_required() => Ok(Auth::Open),
            None => Err(ApiError::unauthorized("Invalid API key")),
        }
    }

    /// A key made by another replica: look it up in the store.
    async fn fetch(&self, hash: &str) -> Option<Arc<KeyState>> {
        let store = self.store.as_ref()?;
        let record = KeyStore::key_by_hash(store, hash).await.ok()??;
        let state = Arc::new(load_state(store, record, now_ms()).await.ok()?);
        // Another request may have fetched it meanwhile: use the one held, so that both
        // reserve against the same budget.
        Some(self.remember(state))
    }

    /// Create a key; returns its record and the secret (shown once, never stored).
    pub async fn create(&self, new: NewKey) -> Result<(Arc<KeyState>, String), ApiError> {
        validate_new(&new)?;
        let secret = new_secret().map_err(ApiError::internal)?;
        let record = KeyRecord {
            id: crate::types::new_id("key_"),
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
        };
        if let Some(store) = &self.store {
            KeyStore::create_key(store, &record)
                .await
                .map_err(|e| ApiError::internal(format!("cannot store the key: {e}")))?;
        }
        let now = now_ms();
        let period = Period::parse(&record.budget_period).unwrap_or(Period::Month);
        let state = self.remember(Arc::new(KeyState::new(record, 0, period.start(now))));
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
    pub async fn revoke(&self, id: &str) -> Result<bool, ApiError> {
        let Some(state) = self.get(id) else {
            return Ok(false);
        };
        if state.revoked.swap(true, Ordering::AcqRel) {
            return Ok(false);
        }
        self.active.fetch_sub(1, Ordering::AcqRel);
        if let Some(store) = &self.store {
            KeyStore::revoke_key(store, id, now_ms())
                .await
                .map_err(|e| ApiError::internal(format!("cannot store the revocation: {e}")))?;
        }
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
                    if r.revoked_ms.is_some() && !k.revoked.swap(true, Ordering::AcqRel) {
                        self.active.fetch_sub(1, Ordering::AcqRel);
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

    /// The spend period a request row of `key_id` at `ts_ms` belongs to.
    pub fn period_start(&self, key_id: &str, ts_ms: i64) -> Option<i64> {
        let map = self.by_hash.read().ok()?;
        let k = map.values().find(|k| k.record.id == key_id)?;
        Some(k.period.start(ts_ms))
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

fn validate_new(new: &NewKey) -> Result<(), ApiError> {
    if new.name.trim().is_empty() || new.name.len() > 200 {
        return Err(ApiError::invalid_param(
            "name",
            "must be 1 to 200 characters",
        ));
    }
    if let Some(b) = new.budget_usd
        && !(b.is_finite() && b > 0.0 && b < 1e6)
    {
        return Err(ApiError::invalid_param(
            "budget_usd",
            "must be a positive number of dollars below 1,000,000",
        ));
    }
    for (name, v) in [("rpm", new.rpm), ("tpm", new.tpm)] {
        if v == Some(0) {
            return Err(ApiError::invalid_param(name, "must be at least 1"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
