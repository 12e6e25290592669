//! Who is calling: the auth mode, the admin key and its attempt limit, and the cheap refusal
//! of unknown keys.
//!
//! - **The mode is fixed at startup** (`[auth] mode`): in `keys` mode a request without a
//!   known, unrevoked key gets 401, however many keys exist (none at all included); in `open`
//!   mode no key is needed. Nothing at run time (creating or revoking the last key) changes it.
//! - **An unknown key costs one store lookup at most**: the answer "not found" is remembered
//!   for `NEGATIVE_TTL`, concurrent first sightings of one key share one lookup, and lookups of
//!   distinct unknown keys are rate-limited gateway-wide (a key made by another replica is
//!   picked up by the periodic refresh anyway). In `open` mode nothing is looked up.
//! - **Failed admin attempts are limited per client address** and logged without the secret.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio::time::Instant;

use super::{KeyState, Keys, hash_secret};
use crate::config::AuthMode;
use crate::error::Error;

/// How long "no such key" is remembered.
const NEGATIVE_TTL: Duration = Duration::from_secs(30);
/// Unknown keys remembered at most (an attacker sending random keys cannot grow memory).
const NEGATIVE_CAPACITY: u64 = 10_000;
/// Store lookups of distinct unknown keys: a burst of this many, refilled at `LOOKUP_RATE`/s.
const LOOKUP_BURST: f64 = 50.0;
const LOOKUP_RATE: f64 = 20.0;
/// Failed admin attempts allowed per client address per minute.
pub const ADMIN_FAILURES_PER_MINUTE: u32 = 10;

/// Who a request was admitted as.
#[derive(Clone)]
pub enum Auth {
    /// `open` mode, and no known key was presented.
    Open,
    Key(Arc<KeyState>),
}

/// The caller of a read endpoint, as the handler sees it (a request extension): only the
/// admin sees error texts in full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Admin,
    Other,
}

/// One store lookup of a key, shared by every request that presents it meanwhile.
type Lookup = OnceCell<Option<Arc<KeyState>>>;

/// The authentication state of [`Keys`] that is not the keys themselves.
pub(super) struct Gate {
    pub(super) mode: AuthMode,
    pub(super) unknown: moka::sync::Cache<String, ()>,
    /// First sightings of a key being looked up: later arrivals wait for the same answer.
    pending: Mutex<HashMap<String, Arc<Lookup>>>,
    lookups: Mutex<Bucket>,
    admin_failures: moka::sync::Cache<Option<IpAddr>, Arc<Mutex<Bucket>>>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// A token bucket.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
    burst: f64,
    per_s: f64,
}

impl Bucket {
    fn new(burst: f64, per_s: f64) -> Bucket {
        Bucket {
            tokens: burst,
            at: Instant::now(),
            burst,
            per_s,
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let gained = now.duration_since(self.at).as_secs_f64() * self.per_s;
        self.tokens = (self.tokens + gained).min(self.burst);
        self.at = now;
    }

    fn has_token(&mut self) -> bool {
        self.refill();
        self.tokens >= 1.0
    }

    fn take(&mut self) -> bool {
        let ok = self.has_token();
        if ok {
            self.tokens -= 1.0;
        }
        ok
    }

    /// Until the next token.
    fn wait(&self) -> Duration {
        Duration::from_secs_f64(((1.0 - self.tokens) / self.per_s).max(0.0))
    }
}

impl Gate {
    pub(super) fn new(mode: AuthMode) -> Gate {
        Gate {
            mode,
            unknown: moka::sync::Cache::builder()
                .max_capacity(NEGATIVE_CAPACITY)
                .time_to_live(NEGATIVE_TTL)
                .build(),
            pending: Mutex::default(),
            lookups: Mutex::new(Bucket::new(LOOKUP_BURST, LOOKUP_RATE)),
            admin_failures: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_idle(Duration::from_secs(120))
                .build(),
        }
    }
}

fn revoked(key: &KeyState) -> Error {
    Error::unauthorized(format!("API key '{}' has been revoked", key.record.id))
}

impl Keys {
    pub fn mode(&self) -> AuthMode {
        self.gate.mode
    }

    /// Whether `presented` is the admin key (compared as SHA-256 digests).
    pub fn is_admin(&self, presented: Option<&str>) -> bool {
        matches!((&self.admin_hash, presented), (Some(want), Some(p)) if &hash_secret(p) == want)
    }

    /// Check the admin key of a request from `peer`. A client address that failed
    /// `ADMIN_FAILURES_PER_MINUTE` times is refused with 429 before its key is even compared.
    pub fn check_admin(&self, presented: Option<&str>, peer: Option<IpAddr>) -> Result<(), Error> {
        if self.admin_hash.is_none() {
            return Err(Error::forbidden(
                None,
                "The admin API is disabled: start the gateway with SWITCHYARD_ADMIN_KEY set",
            ));
        }
        let failures = self.gate.admin_failures.get_with(peer, || {
            let per_minute = f64::from(ADMIN_FAILURES_PER_MINUTE);
            Arc::new(Mutex::new(Bucket::new(per_minute, per_minute / 60.0)))
        });
        let Ok(mut bucket) = failures.lock() else {
            return Err(Error::internal("admin attempt limiter poisoned"));
        };
        if !bucket.has_token() {
            return Err(Error::rate_limited(
                format!(
                    "Too many failed admin key attempts from this address (at most \
                     {ADMIN_FAILURES_PER_MINUTE} a minute)"
                ),
                bucket.wait(),
            ));
        }
        if self.is_admin(presented) {
            return Ok(());
        }
        bucket.take();
        let peer = peer.map_or_else(|| "unknown".to_owned(), |p| p.to_string());
        tracing::warn!(
            %peer,
            presented = presented.is_some(),
            "admin API: refused a request with a missing or wrong admin key"
        );
        Err(match presented {
            Some(_) => Error::unauthorized("Invalid admin key"),
            None => Error::unauthorized(
                "The admin API needs the admin key: Authorization: Bearer <SWITCHYARD_ADMIN_KEY>",
            ),
        })
    }

    /// Authenticate a request's key (`None` when it sent none).
    pub async fn authenticate(&self, presented: Option<&str>) -> Result<Auth, Error> {
        if self.gate.mode == AuthMode::Open {
            return self.open_auth(presented);
        }
        let Some(secret) = presented else {
            return Err(Error::unauthorized(
                "This gateway requires an API key: Authorization: Bearer <key>",
            ));
        };
        let hash = hash_secret(secret);
        let state = match self.held(&hash) {
            Some(s) => Some(s),
            None => self.look_up(hash).await,
        };
        match state {
            Some(s) if s.is_revoked() => Err(revoked(&s)),
            Some(s) => Ok(Auth::Key(s)),
            None => Err(Error::unauthorized("Invalid API key")),
        }
    }

    /// `open` mode: a key held in memory still brings its limits (and a revoked one is still
    /// refused); nothing is looked up in the store.
    fn open_auth(&self, presented: Option<&str>) -> Result<Auth, Error> {
        let Some(secret) = presented else {
            return Ok(Auth::Open);
        };
        if self.by_hash.read().is_ok_and(|m| m.is_empty()) {
            return Ok(Auth::Open);
        }
        match self.held(&hash_secret(secret)) {
            Some(s) if s.is_revoked() => Err(revoked(&s)),
            Some(s) => Ok(Auth::Key(s)),
            None => Ok(Auth::Open),
        }
    }

    pub(super) fn held(&self, hash: &str) -> Option<Arc<KeyState>> {
        self.by_hash.read().ok().and_then(|m| m.get(hash).cloned())
    }

    /// A key not in memory: made by another replica, or unknown. One store lookup per key.
    async fn look_up(&self, hash: String) -> Option<Arc<KeyState>> {
        self.store.as_ref()?;
        if self.gate.unknown.contains_key(&hash) {
            return None;
        }
        let cell = {
            let Ok(mut pending) = self.gate.pending.lock() else {
                return None;
            };
            if let Some(cell) = pending.get(&hash) {
                cell.clone()
            } else {
                let allowed = self.gate.lookups.lock().is_ok_and(|mut b| b.take());
                if !allowed {
                    // Too many distinct unknown keys: refuse without asking the store.
                    return None;
                }
                let cell = Arc::new(OnceCell::new());
                pending.insert(hash.clone(), cell.clone());
                cell
            }
        };
        let found = cell
            .get_or_init(|| async {
                self.lookups_made.fetch_add(1, Ordering::Relaxed);
                match self.fetch(&hash).await {
                    Ok(found) => {
                        if found.is_none() {
                            self.gate.unknown.insert(hash.clone(), ());
                        }
                        found
                    }
                    // The store failed: refuse this time, but remember nothing.
                    Err(()) => None,
                }
            })
            .await
            .clone();
        if let Ok(mut pending) = self.gate.pending.lock() {
            pending.remove(&hash);
        }
        found
    }

    /// Store lookups of keys not held in memory, since startup (`/metrics`).
    pub fn store_lookups(&self) -> u64 {
        self.lookups_made.load(Ordering::Relaxed)
    }
}
