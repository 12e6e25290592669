//! Persistence: the request log, virtual API keys and per-key spend, on SQLite
//! (the default, one file next to the gateway) or Postgres (shared by replicas).
//!
//! # What is stored
//!
//! * `requests`: one row per request the gateway answered ([`RequestRecord`]):
//!   who (virtual key), what (endpoint, route, the model and provider that
//!   answered), how it went (status, error code, cache outcome, latency, TTFT,
//!   gateway overhead), and what it cost (token counts and cost). Its upstream
//!   `attempts` (fallbacks, in order) and the WASM `policy_annotations` live in
//!   child tables keyed by `(request_id, idx)` and are deleted with it.
//! * `api_keys`: virtual keys ([`KeyRecord`]). Only the hex SHA-256 of a secret
//!   and a short display prefix are stored, never the secret itself.
//! * `spend`: running totals per `(key_id, period_start_ms)` ([`SpendTotals`]),
//!   upserted in the same transaction as the request rows they come from, so
//!   budgets and the log never disagree.
//!
//! # Money is an integer
//!
//! Costs are `i64` picodollars (1e-12 USD). Sums in SQL and in Rust are then
//! exact and identical on both backends, with no float rounding drift between
//! a budget check and the log; `i64` holds about 9.2 million USD per sum.
//!
//! # The writer never blocks a request
//!
//! Handlers never touch the database. They hand a finished [`RequestRecord`] to
//! the [`Writer`] with [`Writer::record`], a non-blocking `try_send` into a
//! bounded channel. One background task batches rows (by count or by time)
//! and writes each batch in one transaction. If the database is slow or down
//! and the channel fills up, rows are *dropped and counted*
//! ([`WriterStats::dropped`]) instead of adding latency or memory growth to the
//! request path: the log is telemetry, serving traffic comes first. A batch
//! that fails is retried with backoff, then counted as `failed`.
//!
//! # Flushing on SIGTERM
//!
//! On SIGTERM the caller first lets the HTTP server drain (so no handler can
//! still be recording), then calls [`Writer::shutdown`]: it closes the intake
//! (a later `record` counts as dropped), writes everything already queued or
//! buffered in the task, waits for the task to exit and returns the final
//! [`WriterStats`]. Then it calls [`Store::close`]. Wrap `shutdown` in a timeout
//! if the process must exit within a deadline even while the database is down.
//!
//! # One implementation per backend
//!
//! [`SqliteStore`] and [`PgStore`] implement the query traits ([`RequestLog`],
//! [`KeyStore`], [`SpendStore`]) separately rather than through `sqlx::Any` or
//! generics over `sqlx::Database`: placeholders (`?` vs `$1`), types
//! (`BOOLEAN`, `SUM(bigint)` being `NUMERIC` on Postgres), bulk inserts
//! (`UNNEST` arrays on Postgres, prepared per-row inserts on in-process SQLite)
//! and connection tuning differ, and every statement stays a plain literal
//! string that can be read and tested as-is. [`Store`] is the enum callers use;
//! it delegates to the backend chosen by the URL given to [`Store::connect`].
//! Each backend runs its own migrations (`migrations/sqlite`,
//! `migrations/postgres`, embedded with `sqlx::migrate!`) at connect time.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod postgres;
mod sqlite;
#[cfg(test)]
mod tests;
mod writer;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;
pub use writer::{PeriodFn, Writer, WriterConfig, WriterStats, spawn_retention};

// ---------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------

/// One request answered by the gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Request id, e.g. `req_...` (primary key).
    pub id: String,
    /// Unix epoch milliseconds when the request arrived.
    pub ts_ms: i64,
    /// Virtual key id; `None` when auth is off.
    pub key_id: Option<String>,
    /// `/v1/chat/completions`, `/ai/route`, ...
    pub endpoint: String,
    pub route: String,
    /// The model that answered (`None` on failure before any answer).
    pub model: Option<String>,
    pub provider: Option<String>,
    /// HTTP status returned to the client.
    pub status: u16,
    pub error_code: Option<String>,
    pub stream: bool,
    /// `"hit"` | `"miss"` | `"bypass"`.
    pub cache: String,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub cached_tokens: u32,
    pub reasoning_tokens: u32,
    /// True when a stream ended without upstream usage and tokens were estimated.
    pub usage_estimated: bool,
    /// Cost in picodollars (1e-12 USD), exact.
    pub cost_picousd: i64,
    pub latency_ms: f64,
    pub ttft_ms: Option<f64>,
    pub overhead_ms: f64,
    /// Upstream attempts, in order.
    pub attempts: Vec<AttemptRecord>,
    /// Policy outcomes, in order.
    pub policies: Vec<PolicyRecord>,
}

/// One upstream attempt of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub model: String,
    pub provider: String,
    pub outcome: String,
    pub status: Option<u16>,
    pub latency_ms: f64,
    pub detail: Option<String>,
}

/// What one policy decided for a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyRecord {
    pub policy: String,
    pub outcome: String,
    pub annotations: Vec<String>,
}

/// A virtual API key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// Public id, e.g. `key_...`.
    pub id: String,
    pub name: String,
    /// Hex SHA-256 of the secret (the secret itself is never stored). Unique.
    pub hash: String,
    /// First characters of the secret, for display (`sk-sy-abcd`).
    pub prefix: String,
    pub created_ms: i64,
    pub revoked_ms: Option<i64>,
    /// Allowed routes; empty = all.
    pub routes: Vec<String>,
    /// Allowed models; empty = all.
    pub models: Vec<String>,
    pub budget_picousd: Option<i64>,
    /// `"total"` | `"day"` | `"month"`, stored as given.
    pub budget_period: String,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
}

/// Spend of one key in one period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct SpendTotals {
    pub cost_picousd: i64,
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
}

/// Aggregates for one model over the logged requests since some time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ModelHistory {
    pub model: String,
    pub requests: i64,
    /// Requests whose status was >= 400.
    pub errors: i64,
    pub avg_latency_ms: Option<f64>,
    /// Average over the requests that have a TTFT (streams); `None` if none do.
    pub avg_ttft_ms: Option<f64>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cost_picousd: i64,
    /// Requests with `cache == "hit"`.
    pub cache_hits: i64,
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Errors of the store. Messages never contain a connection URL or password.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL's scheme is not one of ours.
    #[error(
        "unsupported store URL scheme `{0}` (expected sqlite://PATH, sqlite::memory:, postgres:// or postgresql://)"
    )]
    Url(String),
    /// The database could not be opened or reached.
    #[error("cannot connect to the {backend} store: {message}")]
    Connect {
        backend: &'static str,
        message: String,
    },
    /// Running the embedded migrations failed.
    #[error("store migrations failed: {0}")]
    Migrate(String),
    /// A statement failed.
    #[error("store query failed: {0}")]
    Query(#[source] sqlx::Error),
    /// A unique constraint was violated (duplicate key id or hash).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A stored value cannot be turned back into a record (bad JSON, out of range).
    #[error("invalid stored value: {0}")]
    Decode(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Query(e)
    }
}

/// A unique violation becomes [`StoreError::Conflict`], anything else [`StoreError::Query`].
fn conflict_or_query(e: sqlx::Error, what: &str) -> StoreError {
    if let sqlx::Error::Database(db) = &e
        && db.is_unique_violation()
    {
        return StoreError::Conflict(format!("{what} already exists ({})", db.message()));
    }
    StoreError::Query(e)
}

/// Builds a [`StoreError::Connect`] whose message cannot leak the URL's password.
fn connect_error(backend: &'static str, message: impl fmt::Display, url: &str) -> StoreError {
    StoreError::Connect {
        backend,
        message: redact(&message.to_string(), url),
    }
}

/// `url` with its password replaced by `***`, for messages.
pub fn redacted_url(url: &str) -> String {
    redact(url, url)
}

/// Replaces the password of `url` (raw and percent-decoded) in `message` by `***`.
fn redact(message: &str, url: &str) -> String {
    let Some((_, rest)) = url.split_once("://") else {
        return message.to_owned();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let Some((userinfo, _)) = authority.rsplit_once('@') else {
        return message.to_owned();
    };
    let Some((_, password)) = userinfo.split_once(':') else {
        return message.to_owned();
    };
    let mut out = message.to_owned();
    for secret in [password.to_owned(), percent_decode(password)] {
        if !secret.is_empty() {
            out = out.replace(&secret, "***");
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The scheme of `url`, for error messages (never the rest of it).
fn scheme_of(url: &str) -> String {
    let scheme = url.split_once(':').map_or("", |(s, _)| s);
    if scheme.is_empty() {
        return "<none>".to_owned();
    }
    scheme.chars().take(32).collect()
}

// ---------------------------------------------------------------------------
// Query traits
// ---------------------------------------------------------------------------

/// The request log.
pub trait RequestLog {
    /// Inserts requests with their attempts and policy rows, and adds each row
    /// that has a `key_id` and a period start (the `Option<i64>`, computed by
    /// the caller from the key's budget period) to that key's spend, all in
    /// one transaction. A request whose id is already stored is skipped
    /// (with its attempts and spend), which makes retrying a batch safe.
    /// Returns the number of requests inserted.
    fn insert_batch(
        &self,
        rows: &[(RequestRecord, Option<i64>)],
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Number of logged requests.
    fn count(&self) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// One request with its attempts and policies (in order).
    fn get_request(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<RequestRecord>, StoreError>> + Send;

    /// Per-model aggregates of requests with `ts_ms >= since_ms` and a model,
    /// ordered by model.
    fn model_history(
        &self,
        since_ms: i64,
    ) -> impl Future<Output = Result<Vec<ModelHistory>, StoreError>> + Send;

    /// Deletes requests with `ts_ms < ts_ms` (and their attempts and policy
    /// rows), in chunks so a large purge never holds a long write lock.
    /// Returns the number of requests deleted. Spend is kept.
    fn purge_before(&self, ts_ms: i64) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// Virtual API keys.
pub trait KeyStore {
    /// Stores a new key; a duplicate id or hash is [`StoreError::Conflict`].
    fn create_key(&self, key: &KeyRecord) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// All keys (revoked ones too), oldest first.
    fn list_keys(&self) -> impl Future<Output = Result<Vec<KeyRecord>, StoreError>> + Send;

    fn get_key(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<KeyRecord>, StoreError>> + Send;

    /// The key whose secret hashes to `hash` (revoked or not: check `revoked_ms`).
    fn key_by_hash(
        &self,
        hash: &str,
    ) -> impl Future<Output = Result<Option<KeyRecord>, StoreError>> + Send;

    /// Marks a key revoked at `ts_ms`. False if it is unknown or already revoked.
    fn revoke_key(
        &self,
        id: &str,
        ts_ms: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// Per-key spend.
pub trait SpendStore {
    /// Spend of `key_id` in the period starting at `period_start_ms` (zeros if none).
    fn spend(
        &self,
        key_id: &str,
        period_start_ms: i64,
    ) -> impl Future<Output = Result<SpendTotals, StoreError>> + Send;

    /// All periods of `key_id`, oldest first.
    fn spend_history(
        &self,
        key_id: &str,
    ) -> impl Future<Output = Result<Vec<(i64, SpendTotals)>, StoreError>> + Send;
}

// ---------------------------------------------------------------------------
// Store
// ---------------------------------------------------------------------------

/// Connection settings beyond the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Pool size; `None` = the backend's default (SQLite file 4, Postgres 10;
    /// an in-memory SQLite database always uses exactly one connection).
    pub max_connections: Option<u32>,
    /// How long to wait for a connection, including at start-up while the
    /// database is still coming up (connection refused is retried until then).
    pub acquire_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: None,
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

/// The store the gateway uses: one of the backends, chosen by URL.
/// Cheap to clone (the connection pool is shared).
#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl Store {
    /// Opens the store at `url` with default [`StoreOptions`] and runs its migrations.
    ///
    /// * `sqlite://PATH` (`sqlite:///abs/path.db`, `sqlite://rel/path.db`): the file
    ///   (and its directory) is created if missing; WAL journal, `synchronous=NORMAL`,
    ///   5 s busy timeout, foreign keys on.
    /// * `sqlite::memory:`: a private in-memory database on a single connection (tests).
    /// * `postgres://` / `postgresql://`: any libpq-style URL sqlx accepts, e.g.
    ///   `?sslmode=require` or `?options[search_path]=switchyard` to use a schema
    ///   (which must exist) other than `public`.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Self::connect_with(url, &StoreOptions::default()).await
    }

    /// [`Store::connect`] with explicit pool settings.
    pub async fn connect_with(url: &str, options: &StoreOptions) -> Result<Store, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Store::Sqlite(SqliteStore::connect(url, options).await?))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Store::Postgres(PgStore::connect(url, options).await?))
        } else {
            Err(StoreError::Url(scheme_of(url)))
        }
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        match self {
            Store::Sqlite(s) => s.close().await,
            Store::Postgres(s) => s.close().await,
        }
    }
}

impl RequestLog for Store {
    async fn insert_batch(&self, rows: &[(RequestRecord, Option<i64>)]) -> Result<u64, StoreError> {
        match self {
            Store::Sqlite(s) => s.insert_batch(rows).await,
            Store::Postgres(s) => s.insert_batch(rows).await,
        }
    }

    async fn count(&self) -> Result<i64, StoreError> {
        match self {
            Store::Sqlite(s) => s.count().await,
            Store::Postgres(s) => s.count().await,
        }
    }

    async fn get_request(&self, id: &str) -> Result<Option<RequestRecord>, StoreError> {
        match self {
            Store::Sqlite(s) => s.get_request(id).await,
            Store::Postgres(s) => s.get_request(id).await,
        }
    }

    async fn model_history(&self, since_ms: i64) -> Result<Vec<ModelHistory>, StoreError> {
        match self {
            Store::Sqlite(s) => s.model_history(since_ms).await,
            Store::Postgres(s) => s.model_history(since_ms).await,
        }
    }

    async fn purge_before(&self, ts_ms: i64) -> Result<u64, StoreError> {
        match self {
            Store::Sqlite(s) => s.purge_before(ts_ms).await,
            Store::Postgres(s) => s.purge_before(ts_ms).await,
        }
    }
}

impl KeyStore for Store {
    async fn create_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.create_key(key).await,
            Store::Postgres(s) => s.create_key(key).await,
        }
    }

    async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        match self {
            Store::Sqlite(s) => s.list_keys().await,
            Store::Postgres(s) => s.list_keys().await,
        }
    }

    async fn get_key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        match self {
            Store::Sqlite(s) => s.get_key(id).await,
            Store::Postgres(s) => s.get_key(id).await,
        }
    }

    async fn key_by_hash(&self, hash: &str) -> Result<Option<KeyRecord>, StoreError> {
        match self {
            Store::Sqlite(s) => s.key_by_hash(hash).await,
            Store::Postgres(s) => s.key_by_hash(hash).await,
        }
    }

    async fn revoke_key(&self, id: &str, ts_ms: i64) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => s.revoke_key(id, ts_ms).await,
            Store::Postgres(s) => s.revoke_key(id, ts_ms).await,
        }
    }
}

impl SpendStore for Store {
    async fn spend(&self, key_id: &str, period_start_ms: i64) -> Result<SpendTotals, StoreError> {
        match self {
            Store::Sqlite(s) => s.spend(key_id, period_start_ms).await,
            Store::Postgres(s) => s.spend(key_id, period_start_ms).await,
        }
    }

    async fn spend_history(&self, key_id: &str) -> Result<Vec<(i64, SpendTotals)>, StoreError> {
        match self {
            Store::Sqlite(s) => s.spend_history(key_id).await,
            Store::Postgres(s) => s.spend_history(key_id).await,
        }
    }
}

// ---------------------------------------------------------------------------
// Shared row types and helpers (both backends decode the same column names)
// ---------------------------------------------------------------------------

/// Spend to add per `(key_id, period_start_ms)` for the given (inserted) rows.
/// Sorted by key, so concurrent writers lock spend rows in the same order.
fn spend_deltas<'a>(
    rows: impl IntoIterator<Item = &'a (RequestRecord, Option<i64>)>,
) -> BTreeMap<(&'a str, i64), SpendTotals> {
    let mut out: BTreeMap<(&'a str, i64), SpendTotals> = BTreeMap::new();
    for (row, period) in rows {
        let (Some(key), Some(period)) = (row.key_id.as_deref(), *period) else {
            continue;
        };
        let t = out.entry((key, period)).or_default();
        t.cost_picousd = t.cost_picousd.saturating_add(row.cost_picousd);
        t.requests = t.requests.saturating_add(1);
        t.prompt_tokens = t.prompt_tokens.saturating_add(i64::from(row.prompt_tokens));
        t.completion_tokens = t
            .completion_tokens
            .saturating_add(i64::from(row.completion_tokens));
    }
    out
}

/// A list index as a column value.
fn idx(i: usize) -> i64 {
    i64::try_from(i).unwrap_or(i64::MAX)
}

fn json_list(v: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Decode(format!("cannot encode list: {e}")))
}

fn parse_list(s: &str, column: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(s)
        .map_err(|e| StoreError::Decode(format!("{column} is not a JSON list of strings: {e}")))
}

fn narrow<T: TryFrom<i64>>(v: i64, column: &str) -> Result<T, StoreError> {
    T::try_from(v).map_err(|_| StoreError::Decode(format!("{column} = {v} is out of range")))
}

fn narrow_opt<T: TryFrom<i64>>(v: Option<i64>, column: &str) -> Result<Option<T>, StoreError> {
    v.map(|v| narrow(v, column)).transpose()
}

#[derive(sqlx::FromRow)]
struct RequestRow {
    id: String,
    ts_ms: i64,
    key_id: Option<String>,
    endpoint: String,
    route: String,
    model: Option<String>,
    provider: Option<String>,
    status: i64,
    error_code: Option<String>,
    stream: bool,
    cache: String,
    prompt_tokens: i64,
    completion_tokens: i64,
    cached_tokens: i64,
    reasoning_tokens: i64,
    usage_estimated: bool,
    cost_picousd: i64,
    latency_ms: f64,
    ttft_ms: Option<f64>,
    overhead_ms: f64,
}

impl RequestRow {
    fn into_record(
        self,
        attempts: Vec<AttemptRow>,
        policies: Vec<PolicyRow>,
    ) -> Result<RequestRecord, StoreError> {
        Ok(RequestRecord {
            id: self.id,
            ts_ms: self.ts_ms,
            key_id: self.key_id,
            endpoint: self.endpoint,
            route: self.route,
            model: self.model,
            provider: self.provider,
            status: narrow(self.status, "requests.status")?,
            error_code: self.error_code,
            stream: self.stream,
            cache: self.cache,
            prompt_tokens: narrow(self.prompt_tokens, "requests.prompt_tokens")?,
            completion_tokens: narrow(self.completion_tokens, "requests.completion_tokens")?,
            cached_tokens: narrow(self.cached_tokens, "requests.cached_tokens")?,
            reasoning_tokens: narrow(self.reasoning_tokens, "requests.reasoning_tokens")?,
            usage_estimated: self.usage_estimated,
            cost_picousd: self.cost_picousd,
            latency_ms: self.latency_ms,
            ttft_ms: self.ttft_ms,
            overhead_ms: self.overhead_ms,
            attempts: attempts
                .into_iter()
                .map(AttemptRow::into_record)
                .collect::<Result<_, _>>()?,
            policies: policies
                .into_iter()
                .map(PolicyRow::into_record)
                .collect::<Result<_, _>>()?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct AttemptRow {
    model: String,
    provider: String,
    outcome: String,
    status: Option<i64>,
    latency_ms: f64,
    detail: Option<String>,
}

impl AttemptRow {
    fn into_record(self) -> Result<AttemptRecord, StoreError> {
        Ok(AttemptRecord {
            model: self.model,
            provider: self.provider,
            outcome: self.outcome,
            status: narrow_opt(self.status, "attempts.status")?,
            latency_ms: self.latency_ms,
            detail: self.detail,
        })
    }
}

#[derive(sqlx::FromRow)]
struct PolicyRow {
    policy: String,
    outcome: String,
    annotations: String,
}

impl PolicyRow {
    fn into_record(self) -> Result<PolicyRecord, StoreError> {
        Ok(PolicyRecord {
            annotations: parse_list(&self.annotations, "policy_annotations.annotations")?,
            policy: self.policy,
            outcome: self.outcome,
        })
    }
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    id: String,
    name: String,
    hash: String,
    prefix: String,
    created_ms: i64,
    revoked_ms: Option<i64>,
    routes: String,
    models: String,
    budget_picousd: Option<i64>,
    budget_period: String,
    rpm: Option<i64>,
    tpm: Option<i64>,
}

impl KeyRow {
    fn into_record(self) -> Result<KeyRecord, StoreError> {
        Ok(KeyRecord {
            routes: parse_list(&self.routes, "api_keys.routes")?,
            models: parse_list(&self.models, "api_keys.models")?,
            rpm: narrow_opt(self.rpm, "api_keys.rpm")?,
            tpm: narrow_opt(self.tpm, "api_keys.tpm")?,
            id: self.id,
            name: self.name,
            hash: self.hash,
            prefix: self.prefix,
            created_ms: self.created_ms,
            revoked_ms: self.revoked_ms,
            budget_picousd: self.budget_picousd,
            budget_period: self.budget_period,
        })
    }
}

#[derive(sqlx::FromRow)]
struct SpendRow {
    period_start_ms: i64,
    #[sqlx(flatten)]
    totals: SpendTotals,
}

/// How many requests one purge statement deletes at most.
const PURGE_CHUNK: i64 = 5_000;
