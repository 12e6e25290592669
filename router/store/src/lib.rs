//! Persistence: the request log, virtual API keys and per-key spend, on SQLite
//! (the default, one file next to the gateway) or Postgres (shared by replicas).
//!
//! # What is stored
//!
//! * `requests`: one row per request the gateway answered ([`RequestRecord`]):
//!   who (virtual key), what (endpoint, route, the model and provider that
//!   answered), how it went (status, error code, cache outcome, latency, TTFT,
//!   gateway overhead), and what it cost (token counts and cost). Its `id` is
//!   the server's; the client's `x-request-id` is kept in `client_request_id`
//!   (indexed, not unique). Its upstream `attempts` (fallbacks, in order) and
//!   the WASM `policy_annotations` live in child tables keyed by
//!   `(request_id, idx)` and are deleted with it.
//!   Its `tags` (a JSON object, migration 0006) are the metadata tags the gateway's `[log]
//!   tags` allows, and `billed` is false on a shadow its route does not bill; the
//!   [`SpendReport`] sums the billed rows per key, model, route, provider or tag, to the
//!   same picodollars as the ledger: whole hours from the hourly rollup (`spend_rollup`,
//!   `spend_rollup_keys`, migration 0008, kept in each batch's transaction), the rest of the
//!   range through one covering index.
//! * `feedback`: at most one per request ([`FeedbackRecord`], [`FeedbackLog`]),
//!   deleted with it; the request's model, route and task tag are copied in.
//! * `api_keys`: virtual keys ([`KeyRecord`]). Only the hex SHA-256 of a secret
//!   and a short display prefix are stored, never the secret itself.
//! * `spend`: running totals per `(key_id, period_start_ms)` ([`SpendTotals`]),
//!   written by the [`Ledger`] through [`SpendStore::add_spend`], not with the
//!   log rows: a log row may be dropped, spend may not.
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
//! that fails is retried with backoff, then counted as `failed` and logged.
//!
//! # Spend is never dropped
//!
//! Spend is money, so it does not ride in the droppable rows. [`Ledger::add`]
//! sums a request's totals into an in-memory map keyed by `(key, period)`: it
//! never waits and never refuses, and the map is bounded by the number of keys
//! and periods, not by the request rate. A task writes the whole map every
//! `interval` with one [`SpendStore::add_spend`]; a failed write is put back and
//! retried until the store takes it. A synchronous increment per request would
//! be as safe but puts a database write on the request path: `benches/spend.rs`
//! measured 0.25–0.5 ms per request on a SQLite file and 3–5 ms on a local
//! Postgres, against about 0.5 µs per [`Ledger::add`] (1–2 µs with its flush
//! amortised over 1,000 adds). Coalescing turns thousands of requests per key
//! into one upsert.
//!
//! # Flushing on SIGTERM
//!
//! On SIGTERM the caller first lets the HTTP server drain (so no handler can
//! still be recording), then calls [`Writer::shutdown`] and [`Ledger::shutdown`]:
//! each closes its intake (a later `record` counts as dropped, a later `add` as
//! lost), writes everything it holds, waits for its task to exit and returns its
//! final counters ([`WriterStats`], [`LedgerStats`]). Then it calls
//! [`Store::close`]. Wrap the shutdowns in a timeout if the process must exit
//! within a deadline even while the database is down.
//!
//! # One implementation per backend
//!
//! [`SqliteStore`] and [`PgStore`] implement the query traits ([`RequestLog`],
//! [`KeyStore`], [`SpendStore`]) separately rather than through `sqlx::Any` or
//! generics over `sqlx::Database`: placeholders (`?` vs `$1`), types
//! (`BOOLEAN`, `SUM(bigint)` being `NUMERIC` on Postgres), bulk inserts
//! (`UNNEST` arrays on Postgres, prepared multi-row `VALUES` on SQLite)
//! and connection tuning differ, and every statement stays a plain literal
//! string that can be read and tested as-is. [`Store`] is the enum callers use;
//! it delegates to the backend chosen by the URL given to [`Store::connect`].
//! Each backend runs its own migrations (`migrations/sqlite`,
//! `migrations/postgres`, embedded with `sqlx::migrate!`) at connect time.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod backup;
mod error;
mod ledger;
mod postgres;
mod report;
mod rollup;
mod rows;
mod sqlite;
#[cfg(test)]
mod tests;
mod writer;

pub use backup::{BackupError, StoreSummary, backup_sqlite, inspect_sqlite, restore_sqlite};
pub use error::{StoreError, redacted_url};
use error::{conflict_or_query, connect_error, scheme_of};
pub use ledger::{Ledger, LedgerConfig, LedgerStats};
pub use postgres::PgStore;
pub use report::{
    GroupBy, Period, ReportQuery, ReportRow, SpendReport, spend_report_from_rows, sqlite_plan,
};
pub use rollup::rebuild_spend_rollup;
pub use rows::CLIENT_REQUEST_ID_MAX_CHARS;
use rows::*;
pub use sqlite::SqliteStore;
pub use writer::{Writer, WriterConfig, WriterStats, spawn_retention};

// ---------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------

/// One request answered by the gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Row id, generated by the server (primary key). Never the client's id: a client that
    /// could choose it could make its row, and anything keyed on it, collide with another.
    pub id: String,
    /// The client's `x-request-id`, as given (the gateway accepts at most
    /// [`CLIENT_REQUEST_ID_MAX_CHARS`] printable characters; the store cuts anything longer
    /// there too, so one oversized value cannot fail a batch on an index limit). Not unique.
    pub client_request_id: Option<String>,
    /// Unix epoch milliseconds when the request arrived.
    pub ts_ms: i64,
    /// Virtual key id; `None` when no key was presented (`open` mode).
    pub key_id: Option<String>,
    /// `/v1/chat/completions`, `/ai/route`, ...
    pub endpoint: String,
    pub route: String,
    /// The request's task tag (`metadata.task`), for quality from feedback.
    pub task: Option<String>,
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
    /// A shadow request's row (a route's `shadow`): the id of the request it copies. Its
    /// status, latency, tokens and cost are the shadow's own.
    #[serde(default)]
    pub shadow_of: Option<String>,
    /// The answer's text: kept only for a shadow whose route sets `log_text`.
    #[serde(default)]
    pub response_text: Option<String>,
    /// The request's metadata tags that `[log] tags` allows (name → value), checked by the
    /// gateway; empty when it has none (stored as NULL). The spend report groups by them.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// False only on a shadow's row whose route does not bill it (`shadow.bill = false`): its
    /// cost went to no key's spend, so the spend report leaves it out, as the ledger did.
    #[serde(default = "billed_by_default")]
    pub billed: bool,
    /// Upstream attempts, in order.
    pub attempts: Vec<AttemptRecord>,
    /// Policy outcomes, in order.
    pub policies: Vec<PolicyRecord>,
}

fn billed_by_default() -> bool {
    true
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
    /// What the provider may bill for this attempt, picodollars, when it is known apart from
    /// the row's total: a hedge's cancelled attempt (its estimate) or a failed attempt the
    /// provider may have billed. `None` on rows written before migration 0007, and on attempts
    /// whose cost is the row's own (the answer) or nothing (an error status, a skip).
    #[serde(default)]
    pub cost_picousd: Option<i64>,
}

/// What one policy decided for a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyRecord {
    pub policy: String,
    pub outcome: String,
    pub annotations: Vec<String>,
}

/// Feedback on one answered request (`POST /ai/feedback`): at most one per request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct FeedbackRecord {
    /// The server's id of the request (`req_…`).
    pub request_id: String,
    /// Unix epoch milliseconds when the feedback was given.
    pub ts_ms: i64,
    /// The key that gave it (the request's own); `None` in `open` mode without a key.
    pub key_id: Option<String>,
    /// Copied from the request: who answered, over which route, for which task.
    pub model: String,
    pub route: String,
    pub task: Option<String>,
    /// In [0, 1]: thumbs up is 1, down is 0.
    pub score: f64,
    pub comment: Option<String>,
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
    /// What the key may do beyond the defaults; empty = an ordinary key. `dashboard`: the
    /// live feed and read endpoints (migration 0005).
    pub scopes: Vec<String>,
}

/// Spend of one key in one period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct SpendTotals {
    pub cost_picousd: i64,
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
}

impl SpendTotals {
    /// Field-wise sum, saturating at the `i64` bounds (as the store's upserts do).
    #[must_use]
    pub fn saturating_add(self, other: SpendTotals) -> SpendTotals {
        SpendTotals {
            cost_picousd: self.cost_picousd.saturating_add(other.cost_picousd),
            requests: self.requests.saturating_add(other.requests),
            prompt_tokens: self.prompt_tokens.saturating_add(other.prompt_tokens),
            completion_tokens: self
                .completion_tokens
                .saturating_add(other.completion_tokens),
        }
    }
}

/// Spend to add to one key's totals in one period ([`SpendStore::add_spend`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendDelta {
    pub key_id: String,
    /// Start of the key's budget period (unix ms), as the caller computes it.
    pub period_start_ms: i64,
    pub totals: SpendTotals,
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

/// The request log.
pub trait RequestLog {
    /// Inserts requests with their attempts and policy rows, in one transaction. A request
    /// whose id is already stored (or repeated in the batch) is skipped with its children, so
    /// a batch retried after a lost commit is written once; ids are the server's, so no client
    /// can make a row be skipped. Spend is not touched ([`SpendStore::add_spend`] is).
    /// Returns the number of requests inserted.
    fn insert_batch(
        &self,
        rows: &[RequestRecord],
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Number of logged requests.
    fn count(&self) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// One request with its attempts and policies (in order).
    fn get_request(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<RequestRecord>, StoreError>> + Send;

    /// Every request logged with this client `x-request-id` (with attempts and policies),
    /// oldest first. For tests and operators: it is not bounded, a client may repeat an id.
    fn requests_by_client_id(
        &self,
        client_request_id: &str,
    ) -> impl Future<Output = Result<Vec<RequestRecord>, StoreError>> + Send;

    /// The shadow rows of request `id` (`shadow_of = id`, with attempts and policies), oldest
    /// first.
    fn shadows_of(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Vec<RequestRecord>, StoreError>> + Send;

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

/// Feedback on answered requests.
pub trait FeedbackLog {
    /// Stores feedback for its request. `Ok(false)` when that request already has feedback
    /// (the first is kept, not replaced). The request's row must exist (a foreign key).
    fn add_feedback(
        &self,
        feedback: &FeedbackRecord,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The feedback given on one request.
    fn get_feedback(
        &self,
        request_id: &str,
    ) -> impl Future<Output = Result<Option<FeedbackRecord>, StoreError>> + Send;

    /// Feedback with `ts_ms >= since_ms`, newest first, at most `limit` rows (comments left
    /// out: a rebuild of the estimates needs only the scores).
    fn recent_feedback(
        &self,
        since_ms: i64,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<FeedbackRecord>, StoreError>> + Send;
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
    /// Adds each delta to its `(key_id, period_start_ms)` totals (creating them at zero),
    /// all in one transaction: either every delta is added or none is. Deltas for the same
    /// key and period are summed first. Sums saturate at the `i64` bounds rather than fail,
    /// so one absurd total cannot block every other key's spend.
    fn add_spend(
        &self,
        deltas: &[SpendDelta],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

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
    async fn insert_batch(&self, rows: &[RequestRecord]) -> Result<u64, StoreError> {
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

    async fn requests_by_client_id(
        &self,
        client_request_id: &str,
    ) -> Result<Vec<RequestRecord>, StoreError> {
        match self {
            Store::Sqlite(s) => s.requests_by_client_id(client_request_id).await,
            Store::Postgres(s) => s.requests_by_client_id(client_request_id).await,
        }
    }

    async fn shadows_of(&self, id: &str) -> Result<Vec<RequestRecord>, StoreError> {
        match self {
            Store::Sqlite(s) => s.shadows_of(id).await,
            Store::Postgres(s) => s.shadows_of(id).await,
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

impl FeedbackLog for Store {
    async fn add_feedback(&self, feedback: &FeedbackRecord) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => s.add_feedback(feedback).await,
            Store::Postgres(s) => s.add_feedback(feedback).await,
        }
    }

    async fn get_feedback(&self, request_id: &str) -> Result<Option<FeedbackRecord>, StoreError> {
        match self {
            Store::Sqlite(s) => s.get_feedback(request_id).await,
            Store::Postgres(s) => s.get_feedback(request_id).await,
        }
    }

    async fn recent_feedback(
        &self,
        since_ms: i64,
        limit: i64,
    ) -> Result<Vec<FeedbackRecord>, StoreError> {
        match self {
            Store::Sqlite(s) => s.recent_feedback(since_ms, limit).await,
            Store::Postgres(s) => s.recent_feedback(since_ms, limit).await,
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
    async fn add_spend(&self, deltas: &[SpendDelta]) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.add_spend(deltas).await,
            Store::Postgres(s) => s.add_spend(deltas).await,
        }
    }

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

/// How many requests one purge statement deletes at most.
const PURGE_CHUNK: i64 = 5_000;
