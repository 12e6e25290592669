//! Postgres backend: shared by gateway replicas.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};

use super::{
    AttemptRow, FeedbackLog, FeedbackRecord, KeyRecord, KeyRow, KeyStore, ModelHistory,
    PURGE_CHUNK, PolicyRow, RequestLog, RequestRecord, RequestRow, SpendDelta, SpendRow,
    SpendStore, SpendTotals, StoreError, StoreOptions, assemble, clamp_client_id,
    conflict_or_query, connect_error, idx, json_list, json_tags, merge_deltas,
};
use crate::rollup::{POSTGRES_PURGE_CHUNK, PurgedRow, RollupDelta};

const BACKEND: &str = "postgres";

/// The Postgres implementation of the store traits. Cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the connect options: they hold the password.
        f.debug_struct("PgStore")
            .field("connections", &self.pool.size())
            .finish_non_exhaustive()
    }
}

/// Postgres `TEXT` cannot hold NUL; one stray byte in an upstream error body
/// must not fail a whole batch, so NUL becomes U+FFFD.
fn text(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(s)
    }
}

fn owned(s: &str) -> String {
    text(s).into_owned()
}

impl PgStore {
    /// Connects to `url` and runs the migrations (in the first schema of the
    /// connection's `search_path`, `public` unless the URL says otherwise).
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        let mut connect =
            PgConnectOptions::from_str(url).map_err(|e| connect_error(BACKEND, e, url))?;
        if connect.get_application_name().is_none() {
            connect = connect.application_name("switchyard");
        }
        let pool = match PgPoolOptions::new()
            .max_connections(options.max_connections.unwrap_or(10))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.clone())
            .await
        {
            Ok(pool) => pool,
            Err(sqlx::Error::PoolTimedOut) => {
                // The pool retries "connection refused" until the timeout and then
                // only says it timed out: try once more directly to name the cause.
                let cause = match tokio::time::timeout(
                    options.acquire_timeout,
                    PgConnection::connect_with(&connect),
                )
                .await
                {
                    Ok(Err(e)) => e.to_string(),
                    Ok(Ok(conn)) => {
                        let _ = conn.close().await;
                        "the server answered only after the timeout".to_owned()
                    }
                    Err(_) => "no answer".to_owned(),
                };
                return Err(connect_error(
                    BACKEND,
                    format!(
                        "gave up after {:?} on {}:{}: {cause}",
                        options.acquire_timeout,
                        connect.get_host(),
                        connect.get_port()
                    ),
                    url,
                ));
            }
            Err(e) => return Err(connect_error(BACKEND, e, url)),
        };
        sqlx::migrate!("migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Migrate(e.to_string()))?;
        Ok(Self { pool })
    }

    /// The underlying pool, for ad-hoc queries.
    pub fn pool(&self) -> &PgPool {
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
     shadow_of, response_text, CAST(tags AS TEXT) AS tags, billed FROM requests WHERE id = $1";

const REQUESTS_BY_CLIENT_ID: &str = "SELECT id, client_request_id, ts_ms, key_id, endpoint, route, model, provider, status, \
     error_code, stream, cache, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, \
     usage_estimated, cost_picousd, latency_ms, ttft_ms, overhead_ms, task, \
     shadow_of, response_text, CAST(tags AS TEXT) AS tags, billed FROM requests \
     WHERE client_request_id = $1 ORDER BY ts_ms, id";

const SHADOWS_OF: &str = "SELECT id, client_request_id, ts_ms, key_id, endpoint, route, model, provider, status, \
     error_code, stream, cache, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, \
     usage_estimated, cost_picousd, latency_ms, ttft_ms, overhead_ms, task, shadow_of, \
     response_text, CAST(tags AS TEXT) AS tags, billed FROM requests WHERE shadow_of = $1 \
     ORDER BY ts_ms, id";

const KEY_BY_ID: &str = "SELECT id, name, hash, prefix, created_ms, revoked_ms, routes, models, budget_picousd, \
     budget_period, rpm, tpm, scopes FROM api_keys WHERE id = $1";

const KEY_BY_HASH: &str = "SELECT id, name, hash, prefix, created_ms, revoked_ms, routes, models, budget_picousd, \
     budget_period, rpm, tpm, scopes FROM api_keys WHERE hash = $1";

/// Column arrays for one `UNNEST` insert into `requests`.
#[derive(Default)]
struct RequestColumns {
    id: Vec<String>,
    ts_ms: Vec<i64>,
    key_id: Vec<Option<String>>,
    endpoint: Vec<String>,
    route: Vec<String>,
    model: Vec<Option<String>>,
    provider: Vec<Option<String>>,
    status: Vec<i64>,
    error_code: Vec<Option<String>>,
    stream: Vec<bool>,
    cache: Vec<String>,
    prompt_tokens: Vec<i64>,
    completion_tokens: Vec<i64>,
    cached_tokens: Vec<i64>,
    reasoning_tokens: Vec<i64>,
    usage_estimated: Vec<bool>,
    cost_picousd: Vec<i64>,
    latency_ms: Vec<f64>,
    ttft_ms: Vec<Option<f64>>,
    overhead_ms: Vec<f64>,
    client_request_id: Vec<Option<String>>,
    task: Vec<Option<String>>,
    shadow_of: Vec<Option<String>>,
    response_text: Vec<Option<String>>,
    tags: Vec<Option<String>>,
    billed: Vec<bool>,
}

impl RequestColumns {
    fn push(&mut self, r: &RequestRecord) -> Result<(), StoreError> {
        self.id.push(owned(&r.id));
        self.ts_ms.push(r.ts_ms);
        self.key_id.push(r.key_id.as_deref().map(owned));
        self.endpoint.push(owned(&r.endpoint));
        self.route.push(owned(&r.route));
        self.model.push(r.model.as_deref().map(owned));
        self.provider.push(r.provider.as_deref().map(owned));
        self.status.push(i64::from(r.status));
        self.error_code.push(r.error_code.as_deref().map(owned));
        self.stream.push(r.stream);
        self.cache.push(owned(&r.cache));
        self.prompt_tokens.push(i64::from(r.prompt_tokens));
        self.completion_tokens.push(i64::from(r.completion_tokens));
        self.cached_tokens.push(i64::from(r.cached_tokens));
        self.reasoning_tokens.push(i64::from(r.reasoning_tokens));
        self.usage_estimated.push(r.usage_estimated);
        self.cost_picousd.push(r.cost_picousd);
        self.latency_ms.push(r.latency_ms);
        self.ttft_ms.push(r.ttft_ms);
        self.overhead_ms.push(r.overhead_ms);
        self.client_request_id.push(
            r.client_request_id
                .as_deref()
                .map(|c| owned(clamp_client_id(c))),
        );
        self.task.push(r.task.as_deref().map(owned));
        self.shadow_of.push(r.shadow_of.as_deref().map(owned));
        self.response_text
            .push(r.response_text.as_deref().map(owned));
        self.tags.push(json_tags(&r.tags)?.as_deref().map(owned));
        self.billed.push(r.billed);
        Ok(())
    }
}

#[derive(Default)]
struct AttemptColumns {
    request_id: Vec<String>,
    idx: Vec<i64>,
    model: Vec<String>,
    provider: Vec<String>,
    outcome: Vec<String>,
    status: Vec<Option<i64>>,
    latency_ms: Vec<f64>,
    detail: Vec<Option<String>>,
    cost_picousd: Vec<Option<i64>>,
}

#[derive(Default)]
struct PolicyColumns {
    request_id: Vec<String>,
    idx: Vec<i64>,
    policy: Vec<String>,
    outcome: Vec<String>,
    annotations: Vec<String>,
}

#[derive(Default)]
struct SpendColumns {
    key_id: Vec<String>,
    period_start_ms: Vec<i64>,
    cost_picousd: Vec<i64>,
    requests: Vec<i64>,
    prompt_tokens: Vec<i64>,
    completion_tokens: Vec<i64>,
}

impl RequestLog for PgStore {
    async fn insert_batch(&self, rows: &[RequestRecord]) -> Result<u64, StoreError> {
        if rows.is_empty() {
            return Ok(0);
        }
        // One statement per table: rows travel as arrays and are UNNESTed server-side.
        let mut req = RequestColumns::default();
        for r in rows {
            req.push(r)?;
        }
        let mut tx = self.pool.begin().await?;
        let mut new_ids: HashSet<String> = sqlx::query_scalar::<_, String>(
            "INSERT INTO requests (id, ts_ms, key_id, endpoint, route, model, provider, status, \
             error_code, stream, cache, prompt_tokens, completion_tokens, cached_tokens, \
             reasoning_tokens, usage_estimated, cost_picousd, latency_ms, ttft_ms, overhead_ms, \
             client_request_id, task, shadow_of, response_text, tags, billed) \
             SELECT * FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], \
             $6::TEXT[], $7::TEXT[], $8::BIGINT[], $9::TEXT[], $10::BOOLEAN[], $11::TEXT[], \
             $12::BIGINT[], $13::BIGINT[], $14::BIGINT[], $15::BIGINT[], $16::BOOLEAN[], \
             $17::BIGINT[], $18::DOUBLE PRECISION[], $19::DOUBLE PRECISION[], \
             $20::DOUBLE PRECISION[], $21::TEXT[], $22::TEXT[], $23::TEXT[], $24::TEXT[], \
             $25::TEXT[]::JSONB[], $26::BOOLEAN[]) \
             ON CONFLICT (id) DO NOTHING RETURNING id",
        )
        .bind(&req.id)
        .bind(&req.ts_ms)
        .bind(&req.key_id)
        .bind(&req.endpoint)
        .bind(&req.route)
        .bind(&req.model)
        .bind(&req.provider)
        .bind(&req.status)
        .bind(&req.error_code)
        .bind(&req.stream)
        .bind(&req.cache)
        .bind(&req.prompt_tokens)
        .bind(&req.completion_tokens)
        .bind(&req.cached_tokens)
        .bind(&req.reasoning_tokens)
        .bind(&req.usage_estimated)
        .bind(&req.cost_picousd)
        .bind(&req.latency_ms)
        .bind(&req.ttft_ms)
        .bind(&req.overhead_ms)
        .bind(&req.client_request_id)
        .bind(&req.task)
        .bind(&req.shadow_of)
        .bind(&req.response_text)
        .bind(&req.tags)
        .bind(&req.billed)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();

        // Rows whose id was already stored (or repeated in this batch) are skipped
        // with their children; the first occurrence claims the id.
        let mut inserted = 0usize;
        let mut rollup = RollupDelta::default();
        let mut att = AttemptColumns::default();
        let mut pol = PolicyColumns::default();
        for (r, id) in rows.iter().zip(&req.id) {
            if !new_ids.remove(id) {
                continue;
            }
            rollup.insert(r.into());
            for (i, a) in r.attempts.iter().enumerate() {
                att.request_id.push(id.clone());
                att.idx.push(idx(i));
                att.model.push(owned(&a.model));
                att.provider.push(owned(&a.provider));
                att.outcome.push(owned(&a.outcome));
                att.status.push(a.status.map(i64::from));
                att.latency_ms.push(a.latency_ms);
                att.detail.push(a.detail.as_deref().map(owned));
                att.cost_picousd.push(a.cost_picousd);
            }
            for (i, p) in r.policies.iter().enumerate() {
                pol.request_id.push(id.clone());
                pol.idx.push(idx(i));
                pol.policy.push(owned(&p.policy));
                pol.outcome.push(owned(&p.outcome));
                pol.annotations.push(json_list(&p.annotations)?);
            }
            inserted += 1;
        }

        if !att.request_id.is_empty() {
            sqlx::query(
                "INSERT INTO attempts (request_id, idx, model, provider, outcome, status, \
                 latency_ms, detail, cost_picousd) \
                 SELECT * FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], \
                 $5::TEXT[], $6::BIGINT[], $7::DOUBLE PRECISION[], $8::TEXT[], $9::BIGINT[])",
            )
            .bind(&att.request_id)
            .bind(&att.idx)
            .bind(&att.model)
            .bind(&att.provider)
            .bind(&att.outcome)
            .bind(&att.status)
            .bind(&att.latency_ms)
            .bind(&att.detail)
            .bind(&att.cost_picousd)
            .execute(&mut *tx)
            .await?;
        }
        if !pol.request_id.is_empty() {
            sqlx::query(
                "INSERT INTO policy_annotations (request_id, idx, policy, outcome, annotations) \
                 SELECT * FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[])",
            )
            .bind(&pol.request_id)
            .bind(&pol.idx)
            .bind(&pol.policy)
            .bind(&pol.outcome)
            .bind(&pol.annotations)
            .execute(&mut *tx)
            .await?;
        }

        // The spend rollup follows the rows actually inserted, in their transaction.
        rollup.write_postgres(&mut tx).await?;
        tx.commit().await?;
        Ok(u64::try_from(inserted).unwrap_or(u64::MAX))
    }

    async fn count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM requests")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn get_request(&self, id: &str) -> Result<Option<RequestRecord>, StoreError> {
        let id = text(id);
        // One snapshot for the three reads, so a concurrent purge cannot split them.
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await?;
        let Some(row) = sqlx::query_as::<_, RequestRow>(REQUEST_BY_ID)
            .bind(id.as_ref())
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let attempts = sqlx::query_as::<_, AttemptRow>(
            "SELECT request_id, model, provider, outcome, status, latency_ms, detail, cost_picousd \
             FROM attempts \
             WHERE request_id = $1 ORDER BY idx",
        )
        .bind(id.as_ref())
        .fetch_all(&mut *tx)
        .await?;
        let policies = sqlx::query_as::<_, PolicyRow>(
            "SELECT request_id, policy, outcome, annotations FROM policy_annotations \
             WHERE request_id = $1 ORDER BY idx",
        )
        .bind(id.as_ref())
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
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await?;
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
             WHERE request_id IN (SELECT id FROM requests WHERE client_request_id = $1) \
             ORDER BY request_id, idx",
        )
        .bind(client_id.as_ref())
        .fetch_all(&mut *tx)
        .await?;
        let policies = sqlx::query_as::<_, PolicyRow>(
            "SELECT request_id, policy, outcome, annotations FROM policy_annotations \
             WHERE request_id IN (SELECT id FROM requests WHERE client_request_id = $1) \
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
             WHERE request_id IN (SELECT id FROM requests WHERE shadow_of = $1) \
             ORDER BY request_id, idx",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let policies = sqlx::query_as::<_, PolicyRow>(
            "SELECT request_id, policy, outcome, annotations FROM policy_annotations \
             WHERE request_id IN (SELECT id FROM requests WHERE shadow_of = $1) \
             ORDER BY request_id, idx",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        assemble(requests, attempts, policies)
    }

    async fn model_history(&self, since_ms: i64) -> Result<Vec<ModelHistory>, StoreError> {
        // SUM(BIGINT) is NUMERIC on Postgres: cast back to BIGINT.
        Ok(sqlx::query_as::<_, ModelHistory>(
            "SELECT model, \
                COUNT(*) AS requests, \
                CAST(SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END) AS BIGINT) AS errors, \
                AVG(latency_ms) AS avg_latency_ms, \
                AVG(ttft_ms) AS avg_ttft_ms, \
                CAST(SUM(prompt_tokens) AS BIGINT) AS prompt_tokens, \
                CAST(SUM(completion_tokens) AS BIGINT) AS completion_tokens, \
                CAST(SUM(cost_picousd) AS BIGINT) AS cost_picousd, \
                CAST(SUM(CASE WHEN cache = 'hit' THEN 1 ELSE 0 END) AS BIGINT) AS cache_hits \
             FROM requests WHERE ts_ms >= $1 AND model IS NOT NULL \
             GROUP BY model ORDER BY model",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn purge_before(&self, ts_ms: i64) -> Result<u64, StoreError> {
        let mut total = 0u64;
        loop {
            // Attempts and policy rows are deleted by the same statement (they have no foreign
            // key on Postgres); the spend rollup loses the deleted rows in the same transaction.
            let mut tx = self.pool.begin().await?;
            let gone = sqlx::query_as::<_, PurgedRow>(POSTGRES_PURGE_CHUNK)
                .bind(ts_ms)
                .bind(PURGE_CHUNK)
                .fetch_all(&mut *tx)
                .await?;
            let mut rollup = RollupDelta::default();
            rollup.purge(&gone);
            rollup.write_postgres(&mut tx).await?;
            tx.commit().await?;
            let n = u64::try_from(gone.len()).unwrap_or(u64::MAX);
            total = total.saturating_add(n);
            if n < u64::try_from(PURGE_CHUNK).unwrap_or(u64::MAX) {
                return Ok(total);
            }
        }
    }
}

impl FeedbackLog for PgStore {
    async fn add_feedback(&self, f: &FeedbackRecord) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "INSERT INTO feedback (request_id, ts_ms, key_id, model, route, task, score, comment) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (request_id) DO NOTHING",
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
             WHERE request_id = $1",
        )
        .bind(text(request_id))
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn recent_feedback(
        &self,
        since_ms: i64,
        limit: i64,
    ) -> Result<Vec<FeedbackRecord>, StoreError> {
        Ok(sqlx::query_as::<_, FeedbackRecord>(
            "SELECT request_id, ts_ms, key_id, model, route, task, score, NULL::TEXT AS comment \
             FROM feedback WHERE ts_ms >= $1 ORDER BY ts_ms DESC, request_id LIMIT $2",
        )
        .bind(since_ms)
        .bind(limit.max(0))
        .fetch_all(&self.pool)
        .await?)
    }
}

impl KeyStore for PgStore {
    async fn create_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_keys (id, name, hash, prefix, created_ms, revoked_ms, routes, models, \
             budget_picousd, budget_period, rpm, tpm, scopes) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(text(&key.id).as_ref())
        .bind(text(&key.name).as_ref())
        .bind(text(&key.hash).as_ref())
        .bind(text(&key.prefix).as_ref())
        .bind(key.created_ms)
        .bind(key.revoked_ms)
        .bind(json_list(&key.routes)?)
        .bind(json_list(&key.models)?)
        .bind(key.budget_picousd)
        .bind(text(&key.budget_period).as_ref())
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
            .bind(text(id).as_ref())
            .fetch_optional(&self.pool)
            .await?
            .map(KeyRow::into_record)
            .transpose()
    }

    async fn key_by_hash(&self, hash: &str) -> Result<Option<KeyRecord>, StoreError> {
        sqlx::query_as::<_, KeyRow>(KEY_BY_HASH)
            .bind(text(hash).as_ref())
            .fetch_optional(&self.pool)
            .await?
            .map(KeyRow::into_record)
            .transpose()
    }

    async fn revoke_key(&self, id: &str, ts_ms: i64) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_ms = $1 WHERE id = $2 AND revoked_ms IS NULL")
                .bind(ts_ms)
                .bind(text(id).as_ref())
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }
}

impl SpendStore for PgStore {
    /// One `UNNEST` upsert (one statement, so one transaction), sums computed in `NUMERIC` and
    /// clamped to the `i64` bounds: a `BIGINT` overflow would fail the statement, and with it
    /// every other key's spend in the set, at every retry.
    async fn add_spend(&self, deltas: &[SpendDelta]) -> Result<(), StoreError> {
        if deltas.is_empty() {
            return Ok(());
        }
        let mut sp = SpendColumns::default();
        for ((key_id, period), t) in merge_deltas(deltas) {
            sp.key_id.push(owned(key_id));
            sp.period_start_ms.push(period);
            sp.cost_picousd.push(t.cost_picousd);
            sp.requests.push(t.requests);
            sp.prompt_tokens.push(t.prompt_tokens);
            sp.completion_tokens.push(t.completion_tokens);
        }
        sqlx::query(
            "INSERT INTO spend (key_id, period_start_ms, cost_picousd, requests, prompt_tokens, \
             completion_tokens) \
             SELECT * FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::BIGINT[], $4::BIGINT[], \
             $5::BIGINT[], $6::BIGINT[]) \
             ON CONFLICT (key_id, period_start_ms) DO UPDATE SET \
             cost_picousd = LEAST(GREATEST(spend.cost_picousd::NUMERIC + excluded.cost_picousd, \
             -9223372036854775808), 9223372036854775807)::BIGINT, \
             requests = LEAST(GREATEST(spend.requests::NUMERIC + excluded.requests, \
             -9223372036854775808), 9223372036854775807)::BIGINT, \
             prompt_tokens = LEAST(GREATEST(spend.prompt_tokens::NUMERIC + excluded.prompt_tokens, \
             -9223372036854775808), 9223372036854775807)::BIGINT, \
             completion_tokens = LEAST(GREATEST(spend.completion_tokens::NUMERIC \
             + excluded.completion_tokens, -9223372036854775808), 9223372036854775807)::BIGINT",
        )
        .bind(&sp.key_id)
        .bind(&sp.period_start_ms)
        .bind(&sp.cost_picousd)
        .bind(&sp.requests)
        .bind(&sp.prompt_tokens)
        .bind(&sp.completion_tokens)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn spend(&self, key_id: &str, period_start_ms: i64) -> Result<SpendTotals, StoreError> {
        Ok(sqlx::query_as::<_, SpendTotals>(
            "SELECT cost_picousd, requests, prompt_tokens, completion_tokens FROM spend \
             WHERE key_id = $1 AND period_start_ms = $2",
        )
        .bind(text(key_id).as_ref())
        .bind(period_start_ms)
        .fetch_optional(&self.pool)
        .await?
        .unwrap_or_default())
    }

    async fn spend_history(&self, key_id: &str) -> Result<Vec<(i64, SpendTotals)>, StoreError> {
        Ok(sqlx::query_as::<_, SpendRow>(
            "SELECT period_start_ms, cost_picousd, requests, prompt_tokens, completion_tokens \
             FROM spend WHERE key_id = $1 ORDER BY period_start_ms",
        )
        .bind(text(key_id).as_ref())
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| (r.period_start_ms, r.totals))
        .collect())
    }
}
