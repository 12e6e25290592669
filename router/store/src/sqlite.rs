//! SQLite backend: a file next to the gateway (or `sqlite::memory:` for tests).

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use sqlx::Arguments;
use sqlx::sqlite::{
    Sqlite, SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool,
    SqlitePoolOptions, SqliteSynchronous,
};

use super::{
    AttemptRecord, AttemptRow, FeedbackLog, FeedbackRecord, KeyRecord, KeyRow, KeyStore,
    ModelHistory, PURGE_CHUNK, PolicyRecord, PolicyRow, RequestLog, RequestRecord, RequestRow,
    SpendDelta, SpendRow, SpendStore, SpendTotals, StoreError, StoreOptions, assemble,
    clamp_client_id, conflict_or_query, connect_error, idx, json_list, json_tags, merge_deltas,
};
use crate::rollup::{PurgedRow, RollupDelta, SQLITE_PURGE_CHUNK};

const BACKEND: &str = "sqlite";

/// The SQLite implementation of the store traits. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("connections", &self.pool.size())
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` and runs the migrations.
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        let rest = url
            .trim_start_matches("sqlite://")
            .trim_start_matches("sqlite:");
        let in_memory =
            rest == ":memory:" || rest.starts_with(":memory:?") || rest.contains("mode=memory");

        let mut connect = SqliteConnectOptions::from_str(url)
            .map_err(|e| connect_error(BACKEND, e, url))?
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool_options = if in_memory {
            // Every connection to `:memory:` would be its own database (or, with a
            // shared cache, fight over table locks): use exactly one, kept forever.
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            connect = connect
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                // The batch insert's `RETURNING` rows and the rollup's `json_each` work in
                // memory, not in a temp file (issue 17).
                .pragma("temp_store", "memory");
            if let Some(dir) = connect.get_filename().parent()
                && !dir.as_os_str().is_empty()
            {
                tokio::fs::create_dir_all(dir).await.map_err(|e| {
                    connect_error(
                        BACKEND,
                        format!("cannot create directory {}: {e}", dir.display()),
                        url,
                    )
                })?;
            }
            SqlitePoolOptions::new().max_connections(options.max_connections.unwrap_or(4))
        };
        let pool = pool_options
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(|e| connect_error(BACKEND, e, url))?;
        sqlx::migrate!("migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Migrate(e.to_string()))?;
        Ok(Self { pool })
    }

    /// The underlying pool, for ad-hoc queries.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

const REQUEST_BY_ID: &str = "SELECT id, client_request_id, ts_ms, key_id, endpoint, route, model, provider, status, \
     error_code, stream, cache, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, \
     usage_estimated, cost_picousd, latency_ms, ttft_ms, overhead_ms, task, \
     shadow_of, response_text, tags, billed FROM requests WHERE id = ?";

const REQUESTS_BY_CLIENT_ID: &str = "SELECT id, client_request_id, ts_ms, key_id, endpoint, route, model, provider, status, \
     error_code, stream, cache, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, \
     usage_estimated, cost_picousd, latency_ms, ttft_ms, overhead_ms, task, \
     shadow_of, response_text, tags, billed FROM requests \
     WHERE client_request_id = ? ORDER BY ts_ms, id";

const SHADOWS_OF: &str = "SELECT id, client_request_id, ts_ms, key_id, endpoint, route, model, provider, status, \
     error_code, stream, cache, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, \
     usage_estimated, cost_picousd, latency_ms, ttft_ms, overhead_ms, task, shadow_of, \
     response_text, tags, billed FROM requests WHERE shadow_of = ? ORDER BY ts_ms, id";

const KEY_BY_ID: &str = "SELECT id, name, hash, prefix, created_ms, revoked_ms, routes, models, budget_picousd, \
     budget_period, rpm, tpm, scopes FROM api_keys WHERE id = ?";

const KEY_BY_HASH: &str = "SELECT id, name, hash, prefix, created_ms, revoked_ms, routes, models, budget_picousd, \
     budget_period, rpm, tpm, scopes FROM api_keys WHERE hash = ?";

impl RequestLog for SqliteStore {
    /// One transaction of prepared multi-row `INSERT … VALUES (…), (…)` statements with bound
    /// parameters, at most 32 requests (or 128 child rows) each: a batch is cut into chunks of
    /// a power of two rows, so each table needs at most a handful of statements, which sqlx
    /// keeps prepared per connection. The `requests` insert skips ids already stored with
    /// `ON CONFLICT (id) DO NOTHING` and `RETURNING`s the ids it inserted; only their children
    /// follow. Through `json_each` over one JSON parameter per table (SQLite re-parsing the
    /// JSON for every column) a 256-row batch went at 4.5k rows/s against 6.5k now
    /// (`benches/log.rs`). Request ids are time-ordered (`switchyard_types::new_id`), so each
    /// batch appends at the right edge of the primary key and the children's indexes instead
    /// of dirtying a random page of each per row.
    async fn insert_batch(&self, rows: &[RequestRecord]) -> Result<u64, StoreError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let mut tx = self.pool.begin().await?;
        let mut new_ids: HashSet<String> = HashSet::with_capacity(rows.len());
        for (k, chunk) in chunks(rows, INSERT_REQUESTS.len()) {
            let mut args = SqliteArguments::default();
            for r in chunk {
                push_request(&mut args, r)?;
            }
            new_ids.extend(
                sqlx::query_scalar_with::<_, String, _>(INSERT_REQUESTS[k], args)
                    .fetch_all(&mut *tx)
                    .await?,
            );
        }
        // Already stored (a retried batch) or twice in this batch: skip it and its children.
        // Rows are inserted in order, so the first occurrence of an id is the one stored.
        let mut attempts = Vec::new();
        let mut policies = Vec::new();
        let mut inserted = 0usize;
        let mut rollup = RollupDelta::default();
        for r in rows {
            let id = text(&r.id);
            if !new_ids.remove(id.as_ref()) {
                continue;
            }
            inserted += 1;
            rollup.insert(r.into());
            attempts.extend(r.attempts.iter().enumerate().map(|(i, a)| (r, i, a)));
            policies.extend(r.policies.iter().enumerate().map(|(i, p)| (r, i, p)));
        }
        for (k, chunk) in chunks(&attempts, INSERT_ATTEMPTS.len()) {
            let mut args = SqliteArguments::default();
            for (r, i, a) in chunk {
                push_attempt(&mut args, r, *i, a)?;
            }
            sqlx::query_with(INSERT_ATTEMPTS[k], args)
                .execute(&mut *tx)
                .await?;
        }
        for (k, chunk) in chunks(&policies, INSERT_POLICIES.len()) {
            let mut args = SqliteArguments::default();
            for (r, i, p) in chunk {
                push_policy(&mut args, r, *i, p)?;
            }
            sqlx::query_with(INSERT_POLICIES[k], args)
                .execute(&mut *tx)
                .await?;
        }
        // The spend rollup follows the rows actually inserted, in their transaction.
        rollup.write_sqlite(&mut tx).await?;
        tx.commit().await?;
        Ok(u64::try_from(inserted).unwrap_or(u64::MAX))
    }

    async fn count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM requests")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn get_request(&self, id: &str) -> Result<Option<RequestRecord>, StoreError> {
        // One snapshot for the three reads, so a concurrent purge cannot split them.
        let mut tx = self.pool.begin().await?;
        let Some(row) = sqlx::query_as::<_, RequestRow>(REQUEST_BY_ID)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let attempts = sqlx::query_as::<_, AttemptRow>(
            "SELECT request_id, model, provider, outcome, status, latency_ms, detail, cost_picousd \
             FROM attempts \
             WHERE request_id = ? ORDER BY idx",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let policies = sqlx::query_as::<_, PolicyRow>(
            "SELECT request_id, policy, outcome, annotations FROM policy_annotations \
             WHERE request_id = ? ORDER BY idx",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        row.into_record(attempts, policies).map(Some)
    }

    async fn requests_by_client_id(
        &self,
        client_request_id: &str,
    ) -> Result<Vec<RequestRecord>, StoreError> {
        // Looked up as it was stored: cut, NUL replaced.
        let client_id = text(clamp_client_id(client_request_id));
        let mut tx = self.pool.begin().await?;
        let requests = sqlx::query_as::<_, RequestRow>(REQUESTS_BY_CLIENT_ID)
            .bind(client_id.as_ref())
            .fetch_all(&mut *tx)
            .await?;
        if requests.is_empty() {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        let attempts = sqlx::query_as::<_, AttemptRow>(
            "SELECT request_id, model, provider, outcome, status, latency_ms, detail, cost_picousd \
             FROM attempts \
             WHERE request_id IN (SELECT id FROM requests WHERE client_request_id = ?) \
             ORDER BY request_id, idx",
        )
        .bind(client_id.as_ref())
        .fetch_all(&mut *tx)
        .await?;
        let policies = sqlx::query_as::<_, PolicyRow>(
            "SELECT request_id, policy, outcome, annotations FROM policy_annotations \
             WHERE request_id IN (SELECT id FROM requests WHERE client_request_id = ?) \
             ORDER BY request_id, idx",
        )
        .bind(client_id.as_ref())
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        assemble(requests, attempts, policies)
    }

    async fn shadows_of(&self, id: &str) -> Result<Vec<RequestRecord>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let requests = sqlx::query_as::<_, RequestRow>(SHADOWS_OF)
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
        if requests.is_empty() {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        let attempts = sqlx::query_as::<_, AttemptRow>(
            "SELECT request_id, model, provider, outcome, status, latency_ms, detail, cost_picousd \
             FROM attempts \
             WHERE request_id IN (SELECT id FROM requests WHERE shadow_of = ?) \
             ORDER BY request_id, idx",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let policies = sqlx::query_as::<_, PolicyRow>(
            "SELECT request_id, policy, outcome, annotations FROM policy_annotations \
             WHERE request_id IN (SELECT id FROM requests WHERE shadow_of = ?) \
             ORDER BY request_id, idx",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        assemble(requests, attempts, policies)
    }

    async fn model_history(&self, since_ms: i64) -> Result<Vec<ModelHistory>, StoreError> {
        Ok(sqlx::query_as::<_, ModelHistory>(
            "SELECT model, \
                COUNT(*) AS requests, \
                SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END) AS errors, \
                AVG(latency_ms) AS avg_latency_ms, \
                AVG(ttft_ms) AS avg_ttft_ms, \
                SUM(prompt_tokens) AS prompt_tokens, \
                SUM(completion_tokens) AS completion_tokens, \
                SUM(cost_picousd) AS cost_picousd, \
                SUM(CASE WHEN cache = 'hit' THEN 1 ELSE 0 END) AS cache_hits \
             FROM requests WHERE ts_ms >= ? AND model IS NOT NULL \
             GROUP BY model ORDER BY model",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn purge_before(&self, ts_ms: i64) -> Result<u64, StoreError> {
        let mut total = 0u64;
        loop {
            // Attempts and policy rows go with ON DELETE CASCADE (foreign keys are on); the
            // spend rollup loses the deleted rows in the same transaction.
            let mut tx = self.pool.begin().await?;
            let gone = sqlx::query_as::<_, PurgedRow>(SQLITE_PURGE_CHUNK)
                .bind(ts_ms)
                .bind(PURGE_CHUNK)
                .fetch_all(&mut *tx)
                .await?;
            let mut rollup = RollupDelta::default();
            rollup.purge(&gone);
            rollup.write_sqlite(&mut tx).await?;
            tx.commit().await?;
            let n = u64::try_from(gone.len()).unwrap_or(u64::MAX);
            total = total.saturating_add(n);
            if n < u64::try_from(PURGE_CHUNK).unwrap_or(u64::MAX) {
                return Ok(total);
            }
        }
    }
}

impl FeedbackLog for SqliteStore {
    async fn add_feedback(&self, f: &FeedbackRecord) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "INSERT INTO feedback (request_id, ts_ms, key_id, model, route, task, score, comment) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (request_id) DO NOTHING",
        )
        .bind(text(&f.request_id))
        .bind(f.ts_ms)
        .bind(f.key_id.as_deref().map(text))
        .bind(text(&f.model))
        .bind(text(&f.route))
        .bind(f.task.as_deref().map(text))
        .bind(f.score)
        .bind(f.comment.as_deref().map(text))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    async fn get_feedback(&self, request_id: &str) -> Result<Option<FeedbackRecord>, StoreError> {
        Ok(sqlx::query_as::<_, FeedbackRecord>(
            "SELECT request_id, ts_ms, key_id, model, route, task, score, comment FROM feedback \
             WHERE request_id = ?",
        )
        .bind(request_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn recent_feedback(
        &self,
        since_ms: i64,
        limit: i64,
    ) -> Result<Vec<FeedbackRecord>, StoreError> {
        Ok(sqlx::query_as::<_, FeedbackRecord>(
            "SELECT request_id, ts_ms, key_id, model, route, task, score, NULL AS comment \
             FROM feedback WHERE ts_ms >= ? ORDER BY ts_ms DESC, request_id LIMIT ?",
        )
        .bind(since_ms)
        .bind(limit.max(0))
        .fetch_all(&self.pool)
        .await?)
    }
}

impl KeyStore for SqliteStore {
    async fn create_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_keys (id, name, hash, prefix, created_ms, revoked_ms, routes, models, \
             budget_picousd, budget_period, rpm, tpm, scopes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&key.id)
        .bind(&key.name)
        .bind(&key.hash)
        .bind(&key.prefix)
        .bind(key.created_ms)
        .bind(key.revoked_ms)
        .bind(json_list(&key.routes)?)
        .bind(json_list(&key.models)?)
        .bind(key.budget_picousd)
        .bind(&key.budget_period)
        .bind(key.rpm.map(i64::from))
        .bind(key.tpm.map(i64::from))
        .bind(json_list(&key.scopes)?)
        .execute(&self.pool)
        .await
        .map_err(|e| conflict_or_query(e, "an api key with this id or hash"))?;
        Ok(())
    }

    async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        sqlx::query_as::<_, KeyRow>(
            "SELECT id, name, hash, prefix, created_ms, revoked_ms, routes, models, budget_picousd, \
             budget_period, rpm, tpm, scopes FROM api_keys ORDER BY created_ms, id",
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(KeyRow::into_record)
        .collect()
    }

    async fn get_key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        sqlx::query_as::<_, KeyRow>(KEY_BY_ID)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(KeyRow::into_record)
            .transpose()
    }

    async fn key_by_hash(&self, hash: &str) -> Result<Option<KeyRecord>, StoreError> {
        sqlx::query_as::<_, KeyRow>(KEY_BY_HASH)
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?
            .map(KeyRow::into_record)
            .transpose()
    }

    async fn revoke_key(&self, id: &str, ts_ms: i64) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_ms = ? WHERE id = ? AND revoked_ms IS NULL")
                .bind(ts_ms)
                .bind(id)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }
}

impl SpendStore for SqliteStore {
    /// One statement for the whole set (unpacked with `json_each`). SQLite turns an integer
    /// sum that overflows into a REAL, and `CAST(… AS INTEGER)` clamps that REAL to the
    /// `i64` bounds: the sums saturate instead of failing, as on Postgres.
    async fn add_spend(&self, deltas: &[SpendDelta]) -> Result<(), StoreError> {
        if deltas.is_empty() {
            return Ok(());
        }
        let merged: Vec<_> = merge_deltas(deltas)
            .into_iter()
            .map(|((key_id, period), t)| {
                serde_json::json!([
                    text(key_id),
                    period,
                    t.cost_picousd,
                    t.requests,
                    t.prompt_tokens,
                    t.completion_tokens,
                ])
            })
            .collect();
        // One statement is one transaction: every delta is added or none is.
        // `WHERE true`: without it SQLite would read `ON CONFLICT` as a join's `ON`.
        sqlx::query(
            "INSERT INTO spend (key_id, period_start_ms, cost_picousd, requests, prompt_tokens, \
             completion_tokens) \
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5 \
             FROM json_each(?) WHERE true \
             ON CONFLICT (key_id, period_start_ms) DO UPDATE SET \
             cost_picousd = CAST(spend.cost_picousd + excluded.cost_picousd AS INTEGER), \
             requests = CAST(spend.requests + excluded.requests AS INTEGER), \
             prompt_tokens = CAST(spend.prompt_tokens + excluded.prompt_tokens AS INTEGER), \
             completion_tokens = CAST(spend.completion_tokens + excluded.completion_tokens \
             AS INTEGER)",
        )
        .bind(to_json(&merged)?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn spend(&self, key_id: &str, period_start_ms: i64) -> Result<SpendTotals, StoreError> {
        Ok(sqlx::query_as::<_, SpendTotals>(
            "SELECT cost_picousd, requests, prompt_tokens, completion_tokens FROM spend \
             WHERE key_id = ? AND period_start_ms = ?",
        )
        .bind(key_id)
        .bind(period_start_ms)
        .fetch_optional(&self.pool)
        .await?
        .unwrap_or_default())
    }

    async fn spend_history(&self, key_id: &str) -> Result<Vec<(i64, SpendTotals)>, StoreError> {
        Ok(sqlx::query_as::<_, SpendRow>(
            "SELECT period_start_ms, cost_picousd, requests, prompt_tokens, completion_tokens \
             FROM spend WHERE key_id = ? ORDER BY period_start_ms",
        )
        .bind(key_id)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| (r.period_start_ms, r.totals))
        .collect())
    }
}

// ---------------------------------------------------------------------------
// The request log's batch insert
// ---------------------------------------------------------------------------

/// `n` copies of a row's placeholders, comma-separated (`n` a power of two up to 128), as a
/// literal: every statement stays a plain string, built at compile time.
macro_rules! rows_of {
    (1, $t:tt) => {
        $t
    };
    (2, $t:tt) => {
        concat!($t, ", ", $t)
    };
    (4, $t:tt) => {
        concat!(rows_of!(2, $t), ", ", rows_of!(2, $t))
    };
    (8, $t:tt) => {
        concat!(rows_of!(4, $t), ", ", rows_of!(4, $t))
    };
    (16, $t:tt) => {
        concat!(rows_of!(8, $t), ", ", rows_of!(8, $t))
    };
    (32, $t:tt) => {
        concat!(rows_of!(16, $t), ", ", rows_of!(16, $t))
    };
    (64, $t:tt) => {
        concat!(rows_of!(32, $t), ", ", rows_of!(32, $t))
    };
    (128, $t:tt) => {
        concat!(rows_of!(64, $t), ", ", rows_of!(64, $t))
    };
}

macro_rules! insert_requests {
    ($n:tt) => {
        concat!(
            "INSERT INTO requests (id, ts_ms, key_id, endpoint, route, model, provider, status, \
             error_code, stream, cache, prompt_tokens, completion_tokens, cached_tokens, \
             reasoning_tokens, usage_estimated, cost_picousd, latency_ms, ttft_ms, overhead_ms, \
             client_request_id, task, shadow_of, response_text, tags, billed) VALUES ",
            rows_of!(
                $n,
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            " ON CONFLICT (id) DO NOTHING RETURNING id"
        )
    };
}

macro_rules! insert_attempts {
    ($n:tt) => {
        concat!(
            "INSERT INTO attempts (request_id, idx, model, provider, outcome, status, latency_ms, \
             detail, cost_picousd) VALUES ",
            rows_of!($n, "(?, ?, ?, ?, ?, ?, ?, ?, ?)")
        )
    };
}

macro_rules! insert_policies {
    ($n:tt) => {
        concat!(
            "INSERT INTO policy_annotations (request_id, idx, policy, outcome, annotations) VALUES ",
            rows_of!($n, "(?, ?, ?, ?, ?)")
        )
    };
}

/// `INSERT_REQUESTS[k]` inserts `2^k` requests: at most 32 × 26 = 832 parameters (SQLite
/// allows 32,766).
const INSERT_REQUESTS: [&str; 6] = [
    insert_requests!(1),
    insert_requests!(2),
    insert_requests!(4),
    insert_requests!(8),
    insert_requests!(16),
    insert_requests!(32),
];

/// `INSERT_ATTEMPTS[k]` inserts `2^k` attempts: at most 128 × 9 = 1,152 parameters.
const INSERT_ATTEMPTS: [&str; 8] = [
    insert_attempts!(1),
    insert_attempts!(2),
    insert_attempts!(4),
    insert_attempts!(8),
    insert_attempts!(16),
    insert_attempts!(32),
    insert_attempts!(64),
    insert_attempts!(128),
];

/// `INSERT_POLICIES[k]` inserts `2^k` policy rows: at most 128 × 5 = 640 parameters.
const INSERT_POLICIES: [&str; 8] = [
    insert_policies!(1),
    insert_policies!(2),
    insert_policies!(4),
    insert_policies!(8),
    insert_policies!(16),
    insert_policies!(32),
    insert_policies!(64),
    insert_policies!(128),
];

/// `items` cut into chunks of a power of two, largest first, each at most `2^(statements - 1)`
/// long: `(k, chunk)` with `chunk.len() == 2^k`. 256 rows are 8 chunks of 32; 37 are 32 + 4 + 1.
fn chunks<T>(items: &[T], statements: usize) -> impl Iterator<Item = (usize, &[T])> {
    let max = statements.saturating_sub(1);
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let k = usize::try_from(rest.len().ilog2()).unwrap_or(max).min(max);
        let (chunk, tail) = rest.split_at(1 << k);
        rest = tail;
        Some((k, chunk))
    })
}

fn push<'q, T: sqlx::Encode<'q, Sqlite> + sqlx::Type<Sqlite>>(
    args: &mut SqliteArguments,
    value: T,
) -> Result<(), StoreError> {
    args.add(value)
        .map_err(|e| StoreError::Decode(format!("cannot encode a batch: {e}")))
}

/// The 26 parameters of one request, in `INSERT_REQUESTS`' column order.
fn push_request(args: &mut SqliteArguments, r: &RequestRecord) -> Result<(), StoreError> {
    push(args, text(&r.id))?;
    push(args, r.ts_ms)?;
    push(args, r.key_id.as_deref().map(text))?;
    push(args, text(&r.endpoint))?;
    push(args, text(&r.route))?;
    push(args, r.model.as_deref().map(text))?;
    push(args, r.provider.as_deref().map(text))?;
    push(args, i64::from(r.status))?;
    push(args, r.error_code.as_deref().map(text))?;
    push(args, r.stream)?;
    push(args, text(&r.cache))?;
    push(args, i64::from(r.prompt_tokens))?;
    push(args, i64::from(r.completion_tokens))?;
    push(args, i64::from(r.cached_tokens))?;
    push(args, i64::from(r.reasoning_tokens))?;
    push(args, r.usage_estimated)?;
    push(args, r.cost_picousd)?;
    push(args, r.latency_ms)?;
    push(args, r.ttft_ms)?;
    push(args, r.overhead_ms)?;
    push(
        args,
        r.client_request_id
            .as_deref()
            .map(|c| text(clamp_client_id(c))),
    )?;
    push(args, r.task.as_deref().map(text))?;
    push(args, r.shadow_of.as_deref().map(text))?;
    push(args, r.response_text.as_deref().map(text))?;
    push(args, json_tags(&r.tags)?.map(|t| text(&t).into_owned()))?;
    push(args, r.billed)
}

/// The 8 parameters of attempt `i` of request `r`.
fn push_attempt(
    args: &mut SqliteArguments,
    r: &RequestRecord,
    i: usize,
    a: &AttemptRecord,
) -> Result<(), StoreError> {
    push(args, text(&r.id))?;
    push(args, idx(i))?;
    push(args, text(&a.model))?;
    push(args, text(&a.provider))?;
    push(args, text(&a.outcome))?;
    push(args, a.status.map(i64::from))?;
    push(args, a.latency_ms)?;
    push(args, a.detail.as_deref().map(text))?;
    push(args, a.cost_picousd)
}

/// The 5 parameters of policy row `i` of request `r`.
fn push_policy(
    args: &mut SqliteArguments,
    r: &RequestRecord,
    i: usize,
    p: &PolicyRecord,
) -> Result<(), StoreError> {
    push(args, text(&r.id))?;
    push(args, idx(i))?;
    push(args, text(&p.policy))?;
    push(args, text(&p.outcome))?;
    push(args, text(&json_list(&p.annotations)?).into_owned())
}

/// Text as SQLite stores it: NUL cannot be trusted to survive SQLite's string functions, so it
/// becomes U+FFFD (as on Postgres, whose TEXT cannot hold it at all).
fn text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        std::borrow::Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Decode(format!("cannot encode a batch: {e}")))
}
