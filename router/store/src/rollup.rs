//! The spend report's hourly rollup (migration 0008): per UTC hour, the sums of the billed rows
//! with `ts_ms >= 0`, one row per grouping (`dim`: `key`, `model`, `route`, `provider`, `total`,
//! `t.NAME` for a tag) and value, in `spend_rollup` over every key and in `spend_rollup_keys` per
//! key. A report reads one grouping's rows and nothing else: over the whole million-row log of
//! the benchmark that is 36,000 rows for `key` and 4,320 for `model`, against 108,000 in one
//! table keyed by (hour, key, model, route, provider), whose `GROUP BY` alone cost ~120 ms.
//!
//! # Always the sum of its rows
//!
//! Every change to `requests` changes the rollup in the same transaction: the writer's batch
//! adds the rows it actually inserted (a duplicate id, skipped by `ON CONFLICT DO NOTHING`, adds
//! nothing), and a purge takes away the rows its `DELETE … RETURNING` gave back. Nothing else
//! changes a row's cost, tokens, key, model, route, provider, tags or `billed` after its insert
//! (a backup or restore copies the whole file, rollup included; an old store is backfilled by
//! the migration). Additions commute, so concurrent writers and purges need no lock beyond the
//! rollup rows' own; each batch touches its rows in key order, so two cannot deadlock.
//! [`rebuild_spend_rollup`] recomputes it from the rows, for the benchmark (whose million rows
//! are made by one `INSERT … SELECT`) and for an operator who edited rows by hand.
//!
//! # What it never holds
//!
//! A row before 1970 (`ts_ms < 0`: SQL's division truncates towards zero there, so its hour
//! would not be a floor) and a tag whose name a gateway cannot configure (not a lower-case
//! letter followed by lower-case letters, digits, `_` or `-`: SQLite's `->>` would read `a.b` as
//! a path) or whose value is not a string. A report over such rows reads them from `requests`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use sqlx::{PgConnection, SqliteConnection};

use super::{PgStore, RequestRecord, SqliteStore, Store, StoreError, parse_tags};

pub(crate) const HOUR_MS: i64 = 3_600_000;

/// A tag name the rollup keeps: what `[log] tags` accepts, minus its length limit.
pub(crate) fn plain_tag(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// A nullable column as the rollup's key stores it: `''` for NULL, `'.'` before a value.
fn nullable(v: Option<&str>) -> String {
    v.map_or_else(String::new, |s| {
        let mut out = String::with_capacity(s.len() + 1);
        out.push('.');
        out.push_str(&stored(s));
        out
    })
}

/// Text as both backends store it in `requests` (NUL becomes U+FFFD).
fn stored(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(s)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Sums {
    requests: i64,
    prompt_tokens: i64,
    completion_tokens: i64,
    cost_picousd: i64,
}

impl Sums {
    fn add(&mut self, sign: i64, prompt: i64, completion: i64, cost: i64) {
        self.requests = self.requests.saturating_add(sign);
        self.prompt_tokens = self
            .prompt_tokens
            .saturating_add(sign.saturating_mul(prompt));
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(sign.saturating_mul(completion));
        self.cost_picousd = self.cost_picousd.saturating_add(sign.saturating_mul(cost));
    }
}

/// One log row, as the rollup reads it (from a record being inserted or a row being purged).
pub(crate) struct RollupRow<'a> {
    pub ts_ms: i64,
    pub key_id: Option<&'a str>,
    pub model: Option<&'a str>,
    pub route: &'a str,
    pub provider: Option<&'a str>,
    pub billed: bool,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cost_picousd: i64,
    pub tags: &'a BTreeMap<String, String>,
}

impl<'a> From<&'a RequestRecord> for RollupRow<'a> {
    fn from(r: &'a RequestRecord) -> Self {
        RollupRow {
            ts_ms: r.ts_ms,
            key_id: r.key_id.as_deref(),
            model: r.model.as_deref(),
            route: &r.route,
            provider: r.provider.as_deref(),
            billed: r.billed,
            prompt_tokens: i64::from(r.prompt_tokens),
            completion_tokens: i64::from(r.completion_tokens),
            cost_picousd: r.cost_picousd,
            tags: &r.tags,
        }
    }
}

/// What a purge's `DELETE … RETURNING` gives back (`tags` as JSON text on both backends).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct PurgedRow {
    ts_ms: i64,
    key_id: Option<String>,
    model: Option<String>,
    route: String,
    provider: Option<String>,
    billed: bool,
    prompt_tokens: i64,
    completion_tokens: i64,
    cost_picousd: i64,
    tags: Option<String>,
}

/// (grouping, hour, value) of `spend_rollup`.
type AllKey = (String, i64, String);
/// (grouping, key, hour, value) of `spend_rollup_keys`.
type KeyKey = (String, String, i64, String);

/// The change one batch makes to the rollup, summed per rollup row.
#[derive(Debug, Default)]
pub(crate) struct RollupDelta {
    all: BTreeMap<AllKey, Sums>,
    keys: BTreeMap<KeyKey, Sums>,
    /// Some rows were taken away: rollup rows left at zero requests are deleted.
    removes: bool,
}

impl RollupDelta {
    /// Adds a row just inserted.
    pub(crate) fn insert(&mut self, row: RollupRow<'_>) {
        self.apply(1, row);
    }

    /// Takes away the rows a purge deleted.
    pub(crate) fn purge(&mut self, rows: &[PurgedRow]) {
        for r in rows {
            // A tag that is not a JSON object of strings was never in the rollup.
            let tags = parse_tags(r.tags.as_deref()).unwrap_or_default();
            self.removes = true;
            self.apply(
                -1,
                RollupRow {
                    ts_ms: r.ts_ms,
                    key_id: r.key_id.as_deref(),
                    model: r.model.as_deref(),
                    route: &r.route,
                    provider: r.provider.as_deref(),
                    billed: r.billed,
                    prompt_tokens: r.prompt_tokens,
                    completion_tokens: r.completion_tokens,
                    cost_picousd: r.cost_picousd,
                    tags: &tags,
                },
            );
        }
    }

    fn apply(&mut self, sign: i64, r: RollupRow<'_>) {
        if !r.billed || r.ts_ms < 0 {
            return;
        }
        let hour = r.ts_ms - r.ts_ms % HOUR_MS;
        let key = nullable(r.key_id);
        let mut groups = vec![
            ("total".to_owned(), String::new()),
            ("model".to_owned(), nullable(r.model)),
            ("route".to_owned(), nullable(Some(r.route))),
            ("provider".to_owned(), nullable(r.provider)),
        ];
        for (name, value) in r.tags.iter().filter(|(name, _)| plain_tag(name)) {
            // Tag values are stored as given (inside JSON), not as columns: no NUL rewrite.
            groups.push((format!("t.{name}"), format!(".{value}")));
        }
        let add = |s: &mut Sums| s.add(sign, r.prompt_tokens, r.completion_tokens, r.cost_picousd);
        add(self
            .all
            .entry(("key".to_owned(), hour, key.clone()))
            .or_default());
        for (dim, value) in groups {
            add(self
                .keys
                .entry((dim.clone(), key.clone(), hour, value.clone()))
                .or_default());
            add(self.all.entry((dim, hour, value)).or_default());
        }
    }

    fn all_json(&self) -> Result<String, StoreError> {
        let rows: Vec<_> = self
            .all
            .iter()
            .map(|((dim, hour, value), s)| {
                serde_json::json!([
                    dim,
                    hour,
                    value,
                    s.requests,
                    s.prompt_tokens,
                    s.completion_tokens,
                    s.cost_picousd
                ])
            })
            .collect();
        to_json(&rows)
    }

    fn keys_json(&self) -> Result<String, StoreError> {
        let rows: Vec<_> = self
            .keys
            .iter()
            .map(|((dim, key, hour, value), s)| {
                serde_json::json!([
                    dim,
                    key,
                    hour,
                    value,
                    s.requests,
                    s.prompt_tokens,
                    s.completion_tokens,
                    s.cost_picousd
                ])
            })
            .collect();
        to_json(&rows)
    }

    /// Writes the delta in the caller's transaction (SQLite).
    pub(crate) async fn write_sqlite(&self, tx: &mut SqliteConnection) -> Result<(), StoreError> {
        if self.is_empty() {
            return Ok(());
        }
        let all = self.all_json()?;
        let keys = self.keys_json()?;
        sqlx::query(SQLITE_ADD_ALL)
            .bind(&all)
            .execute(&mut *tx)
            .await?;
        sqlx::query(SQLITE_ADD_KEYS)
            .bind(&keys)
            .execute(&mut *tx)
            .await?;
        if self.removes {
            sqlx::query(SQLITE_DROP_EMPTY_ALL)
                .bind(&all)
                .execute(&mut *tx)
                .await?;
            sqlx::query(SQLITE_DROP_EMPTY_KEYS)
                .bind(&keys)
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }

    /// Writes the delta in the caller's transaction (Postgres).
    pub(crate) async fn write_postgres(&self, tx: &mut PgConnection) -> Result<(), StoreError> {
        if self.is_empty() {
            return Ok(());
        }
        let mut a = Columns::default();
        for ((dim, hour, value), s) in &self.all {
            a.dim.push(dim.clone());
            a.hour.push(*hour);
            a.value.push(value.clone());
            a.push(s);
        }
        let mut k = Columns::default();
        for ((dim, key, hour, value), s) in &self.keys {
            k.dim.push(dim.clone());
            k.key.push(key.clone());
            k.hour.push(*hour);
            k.value.push(value.clone());
            k.push(s);
        }
        sqlx::query(POSTGRES_ADD_ALL)
            .bind(&a.dim)
            .bind(&a.hour)
            .bind(&a.value)
            .bind(&a.requests)
            .bind(&a.prompt)
            .bind(&a.completion)
            .bind(&a.cost)
            .execute(&mut *tx)
            .await?;
        sqlx::query(POSTGRES_ADD_KEYS)
            .bind(&k.dim)
            .bind(&k.key)
            .bind(&k.hour)
            .bind(&k.value)
            .bind(&k.requests)
            .bind(&k.prompt)
            .bind(&k.completion)
            .bind(&k.cost)
            .execute(&mut *tx)
            .await?;
        if self.removes {
            sqlx::query(POSTGRES_DROP_EMPTY_ALL)
                .bind(&a.dim)
                .bind(&a.hour)
                .bind(&a.value)
                .execute(&mut *tx)
                .await?;
            sqlx::query(POSTGRES_DROP_EMPTY_KEYS)
                .bind(&k.dim)
                .bind(&k.key)
                .bind(&k.hour)
                .bind(&k.value)
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }

    fn is_empty(&self) -> bool {
        self.all.is_empty()
    }
}

/// A delta as Postgres arrays (`key` empty for `spend_rollup`).
#[derive(Default)]
struct Columns {
    dim: Vec<String>,
    key: Vec<String>,
    hour: Vec<i64>,
    value: Vec<String>,
    requests: Vec<i64>,
    prompt: Vec<i64>,
    completion: Vec<i64>,
    cost: Vec<i64>,
}

impl Columns {
    fn push(&mut self, s: &Sums) {
        self.requests.push(s.requests);
        self.prompt.push(s.prompt_tokens);
        self.completion.push(s.completion_tokens);
        self.cost.push(s.cost_picousd);
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Decode(format!("cannot encode a rollup: {e}")))
}

// `WHERE true`: without it SQLite would read `ON CONFLICT` as a join's `ON`.
const SQLITE_ADD_ALL: &str = "INSERT INTO spend_rollup (dim, hour_ms, value, requests, \
     prompt_tokens, completion_tokens, cost_picousd) \
     SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, \
     value ->> 6 FROM json_each(?) WHERE true \
     ON CONFLICT (dim, hour_ms, value) DO UPDATE SET \
     requests = spend_rollup.requests + excluded.requests, \
     prompt_tokens = spend_rollup.prompt_tokens + excluded.prompt_tokens, \
     completion_tokens = spend_rollup.completion_tokens + excluded.completion_tokens, \
     cost_picousd = spend_rollup.cost_picousd + excluded.cost_picousd";

const SQLITE_ADD_KEYS: &str = "INSERT INTO spend_rollup_keys (dim, key_id, hour_ms, value, \
     requests, prompt_tokens, completion_tokens, cost_picousd) \
     SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, \
     value ->> 6, value ->> 7 FROM json_each(?) WHERE true \
     ON CONFLICT (dim, key_id, hour_ms, value) DO UPDATE SET \
     requests = spend_rollup_keys.requests + excluded.requests, \
     prompt_tokens = spend_rollup_keys.prompt_tokens + excluded.prompt_tokens, \
     completion_tokens = spend_rollup_keys.completion_tokens + excluded.completion_tokens, \
     cost_picousd = spend_rollup_keys.cost_picousd + excluded.cost_picousd";

const SQLITE_DROP_EMPTY_ALL: &str = "DELETE FROM spend_rollup WHERE requests = 0 AND \
     (dim, hour_ms, value) IN \
     (SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?))";

const SQLITE_DROP_EMPTY_KEYS: &str = "DELETE FROM spend_rollup_keys WHERE requests = 0 AND \
     (dim, key_id, hour_ms, value) IN \
     (SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3 FROM json_each(?))";

const POSTGRES_ADD_ALL: &str = "INSERT INTO spend_rollup (dim, hour_ms, value, requests, \
     prompt_tokens, completion_tokens, cost_picousd) \
     SELECT * FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::BIGINT[], $5::BIGINT[], \
     $6::BIGINT[], $7::BIGINT[]) \
     ON CONFLICT (dim, hour_ms, value) DO UPDATE SET \
     requests = spend_rollup.requests + EXCLUDED.requests, \
     prompt_tokens = spend_rollup.prompt_tokens + EXCLUDED.prompt_tokens, \
     completion_tokens = spend_rollup.completion_tokens + EXCLUDED.completion_tokens, \
     cost_picousd = spend_rollup.cost_picousd + EXCLUDED.cost_picousd";

const POSTGRES_ADD_KEYS: &str = "INSERT INTO spend_rollup_keys (dim, key_id, hour_ms, value, \
     requests, prompt_tokens, completion_tokens, cost_picousd) \
     SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::BIGINT[], $4::TEXT[], $5::BIGINT[], \
     $6::BIGINT[], $7::BIGINT[], $8::BIGINT[]) \
     ON CONFLICT (dim, key_id, hour_ms, value) DO UPDATE SET \
     requests = spend_rollup_keys.requests + EXCLUDED.requests, \
     prompt_tokens = spend_rollup_keys.prompt_tokens + EXCLUDED.prompt_tokens, \
     completion_tokens = spend_rollup_keys.completion_tokens + EXCLUDED.completion_tokens, \
     cost_picousd = spend_rollup_keys.cost_picousd + EXCLUDED.cost_picousd";

const POSTGRES_DROP_EMPTY_ALL: &str = "DELETE FROM spend_rollup AS r \
     USING UNNEST($1::TEXT[], $2::BIGINT[], $3::TEXT[]) AS d (dim, hour_ms, value) \
     WHERE r.requests = 0 AND r.dim = d.dim AND r.hour_ms = d.hour_ms AND r.value = d.value";

const POSTGRES_DROP_EMPTY_KEYS: &str = "DELETE FROM spend_rollup_keys AS r \
     USING UNNEST($1::TEXT[], $2::TEXT[], $3::BIGINT[], $4::TEXT[]) \
     AS d (dim, key_id, hour_ms, value) \
     WHERE r.requests = 0 AND r.dim = d.dim AND r.key_id = d.key_id \
     AND r.hour_ms = d.hour_ms AND r.value = d.value";

/// A purge chunk: deletes at most `?2` rows older than `?1` and gives back what the rollup
/// needs to take them away.
pub(crate) const SQLITE_PURGE_CHUNK: &str = "DELETE FROM requests WHERE id IN \
     (SELECT id FROM requests WHERE ts_ms < ? ORDER BY ts_ms LIMIT ?) \
     RETURNING ts_ms, key_id, model, route, provider, billed, prompt_tokens, \
     completion_tokens, cost_picousd, tags";

/// On Postgres the children have no foreign key (migration 0009): they are deleted with their
/// requests in the same statement.
pub(crate) const POSTGRES_PURGE_CHUNK: &str = "WITH gone AS (DELETE FROM requests WHERE id IN \
     (SELECT id FROM requests WHERE ts_ms < $1 ORDER BY ts_ms LIMIT $2) \
     RETURNING id, ts_ms, key_id, model, route, provider, billed, prompt_tokens, \
     completion_tokens, cost_picousd, tags), \
     a AS (DELETE FROM attempts WHERE request_id IN (SELECT id FROM gone)), \
     p AS (DELETE FROM policy_annotations WHERE request_id IN (SELECT id FROM gone)) \
     SELECT ts_ms, key_id, model, route, provider, billed, prompt_tokens, \
     completion_tokens, cost_picousd, tags::TEXT AS tags FROM gone";

// The backfill of migration 0008, statement for statement (the tests check the two agree).
const SQLITE_REBUILD_ALL: &str = "WITH j AS MATERIALIZED (SELECT (ts_ms / 3600000) * 3600000 AS h, CASE WHEN key_id IS \
     NULL THEN '' ELSE '.' || key_id END AS k, CASE WHEN model IS NULL THEN '' ELSE '.' || \
     model END AS m, '.' || route AS r, CASE WHEN provider IS NULL THEN '' ELSE '.' || \
     provider END AS p, COUNT(*) AS n, SUM(prompt_tokens) AS pt, SUM(completion_tokens) AS \
     ct, SUM(cost_picousd) AS c FROM requests WHERE billed AND ts_ms >= 0 GROUP BY 1, 2, 3, \
     4, 5), t AS MATERIALIZED (SELECT (r.ts_ms / 3600000) * 3600000 AS h, CASE WHEN \
     r.key_id IS NULL THEN '' ELSE '.' || r.key_id END AS k, 't.' || e.key AS d, '.' || \
     e.value AS v, COUNT(*) AS n, SUM(r.prompt_tokens) AS pt, SUM(r.completion_tokens) AS \
     ct, SUM(r.cost_picousd) AS c FROM requests AS r, json_each(r.tags) AS e WHERE r.tags \
     IS NOT NULL AND json_type(r.tags) = 'object' AND r.billed AND r.ts_ms >= 0 AND e.type \
     = 'text' AND e.key GLOB '[a-z]*' AND NOT e.key GLOB '*[^a-z0-9_-]*' GROUP BY 1, 2, 3, \
     4), u AS (SELECT 'total' AS d, k, h, '' AS v, n, pt, ct, c FROM j UNION ALL SELECT \
     'model', k, h, m, n, pt, ct, c FROM j UNION ALL SELECT 'route', k, h, r, n, pt, ct, c \
     FROM j UNION ALL SELECT 'provider', k, h, p, n, pt, ct, c FROM j UNION ALL SELECT d, \
     k, h, v, n, pt, ct, c FROM t) INSERT INTO spend_rollup (dim, hour_ms, value, requests, \
     prompt_tokens, completion_tokens, cost_picousd) SELECT d, h, v, SUM(n), SUM(pt), \
     SUM(ct), SUM(c) FROM (SELECT d, k, h, v, n, pt, ct, c FROM u UNION ALL SELECT 'key', \
     k, h, k, n, pt, ct, c FROM j) AS a GROUP BY d, h, v";

const SQLITE_REBUILD_KEYS: &str = "WITH j AS MATERIALIZED (SELECT (ts_ms / 3600000) * 3600000 AS h, CASE WHEN key_id IS \
     NULL THEN '' ELSE '.' || key_id END AS k, CASE WHEN model IS NULL THEN '' ELSE '.' || \
     model END AS m, '.' || route AS r, CASE WHEN provider IS NULL THEN '' ELSE '.' || \
     provider END AS p, COUNT(*) AS n, SUM(prompt_tokens) AS pt, SUM(completion_tokens) AS \
     ct, SUM(cost_picousd) AS c FROM requests WHERE billed AND ts_ms >= 0 GROUP BY 1, 2, 3, \
     4, 5), t AS MATERIALIZED (SELECT (r.ts_ms / 3600000) * 3600000 AS h, CASE WHEN \
     r.key_id IS NULL THEN '' ELSE '.' || r.key_id END AS k, 't.' || e.key AS d, '.' || \
     e.value AS v, COUNT(*) AS n, SUM(r.prompt_tokens) AS pt, SUM(r.completion_tokens) AS \
     ct, SUM(r.cost_picousd) AS c FROM requests AS r, json_each(r.tags) AS e WHERE r.tags \
     IS NOT NULL AND json_type(r.tags) = 'object' AND r.billed AND r.ts_ms >= 0 AND e.type \
     = 'text' AND e.key GLOB '[a-z]*' AND NOT e.key GLOB '*[^a-z0-9_-]*' GROUP BY 1, 2, 3, \
     4), u AS (SELECT 'total' AS d, k, h, '' AS v, n, pt, ct, c FROM j UNION ALL SELECT \
     'model', k, h, m, n, pt, ct, c FROM j UNION ALL SELECT 'route', k, h, r, n, pt, ct, c \
     FROM j UNION ALL SELECT 'provider', k, h, p, n, pt, ct, c FROM j UNION ALL SELECT d, \
     k, h, v, n, pt, ct, c FROM t) INSERT INTO spend_rollup_keys (dim, key_id, hour_ms, \
     value, requests, prompt_tokens, completion_tokens, cost_picousd) SELECT d, k, h, v, \
     SUM(n), SUM(pt), SUM(ct), SUM(c) FROM u GROUP BY d, k, h, v";

const POSTGRES_REBUILD_ALL: &str = "WITH j AS MATERIALIZED (SELECT (ts_ms / 3600000) * 3600000 AS h, CASE WHEN key_id IS \
     NULL THEN '' ELSE '.' || key_id END AS k, CASE WHEN model IS NULL THEN '' ELSE '.' || \
     model END AS m, '.' || route AS r, CASE WHEN provider IS NULL THEN '' ELSE '.' || \
     provider END AS p, COUNT(*) AS n, SUM(prompt_tokens) AS pt, SUM(completion_tokens) AS \
     ct, SUM(cost_picousd) AS c FROM requests WHERE billed AND ts_ms >= 0 GROUP BY 1, 2, 3, \
     4, 5), t AS MATERIALIZED (SELECT (r.ts_ms / 3600000) * 3600000 AS h, CASE WHEN \
     r.key_id IS NULL THEN '' ELSE '.' || r.key_id END AS k, 't.' || e.key AS d, '.' || \
     (e.value #>> '{}') AS v, COUNT(*) AS n, SUM(r.prompt_tokens) AS pt, \
     SUM(r.completion_tokens) AS ct, SUM(r.cost_picousd) AS c FROM requests AS r, \
     jsonb_each(r.tags) AS e WHERE jsonb_typeof(r.tags) = 'object' AND r.billed AND r.ts_ms \
     >= 0 AND jsonb_typeof(e.value) = 'string' AND e.key ~ \
     '^[abcdefghijklmnopqrstuvwxyz][abcdefghijklmnopqrstuvwxyz0123456789_-]*$' GROUP BY 1, \
     2, 3, 4), u AS (SELECT 'total' AS d, k, h, '' AS v, n, pt, ct, c FROM j UNION ALL \
     SELECT 'model', k, h, m, n, pt, ct, c FROM j UNION ALL SELECT 'route', k, h, r, n, pt, \
     ct, c FROM j UNION ALL SELECT 'provider', k, h, p, n, pt, ct, c FROM j UNION ALL \
     SELECT d, k, h, v, n, pt, ct, c FROM t) INSERT INTO spend_rollup (dim, hour_ms, value, \
     requests, prompt_tokens, completion_tokens, cost_picousd) SELECT d, h, v, SUM(n), \
     SUM(pt), SUM(ct), SUM(c) FROM (SELECT d, k, h, v, n, pt, ct, c FROM u UNION ALL SELECT \
     'key', k, h, k, n, pt, ct, c FROM j) AS a GROUP BY d, h, v";

const POSTGRES_REBUILD_KEYS: &str = "WITH j AS MATERIALIZED (SELECT (ts_ms / 3600000) * 3600000 AS h, CASE WHEN key_id IS \
     NULL THEN '' ELSE '.' || key_id END AS k, CASE WHEN model IS NULL THEN '' ELSE '.' || \
     model END AS m, '.' || route AS r, CASE WHEN provider IS NULL THEN '' ELSE '.' || \
     provider END AS p, COUNT(*) AS n, SUM(prompt_tokens) AS pt, SUM(completion_tokens) AS \
     ct, SUM(cost_picousd) AS c FROM requests WHERE billed AND ts_ms >= 0 GROUP BY 1, 2, 3, \
     4, 5), t AS MATERIALIZED (SELECT (r.ts_ms / 3600000) * 3600000 AS h, CASE WHEN \
     r.key_id IS NULL THEN '' ELSE '.' || r.key_id END AS k, 't.' || e.key AS d, '.' || \
     (e.value #>> '{}') AS v, COUNT(*) AS n, SUM(r.prompt_tokens) AS pt, \
     SUM(r.completion_tokens) AS ct, SUM(r.cost_picousd) AS c FROM requests AS r, \
     jsonb_each(r.tags) AS e WHERE jsonb_typeof(r.tags) = 'object' AND r.billed AND r.ts_ms \
     >= 0 AND jsonb_typeof(e.value) = 'string' AND e.key ~ \
     '^[abcdefghijklmnopqrstuvwxyz][abcdefghijklmnopqrstuvwxyz0123456789_-]*$' GROUP BY 1, \
     2, 3, 4), u AS (SELECT 'total' AS d, k, h, '' AS v, n, pt, ct, c FROM j UNION ALL \
     SELECT 'model', k, h, m, n, pt, ct, c FROM j UNION ALL SELECT 'route', k, h, r, n, pt, \
     ct, c FROM j UNION ALL SELECT 'provider', k, h, p, n, pt, ct, c FROM j UNION ALL \
     SELECT d, k, h, v, n, pt, ct, c FROM t) INSERT INTO spend_rollup_keys (dim, key_id, \
     hour_ms, value, requests, prompt_tokens, completion_tokens, cost_picousd) SELECT d, k, \
     h, v, SUM(n), SUM(pt), SUM(ct), SUM(c) FROM u GROUP BY d, k, h, v";

/// Recomputes the rollup from `requests`, in one transaction (migration 0008's backfill).
/// On Postgres the rollup is locked against writers for that transaction: a batch that
/// inserted its rows before the lock adds them after it, so each row is counted once.
pub async fn rebuild_spend_rollup(store: &Store) -> Result<(), StoreError> {
    match store {
        Store::Sqlite(s) => rebuild_sqlite(s).await,
        Store::Postgres(s) => rebuild_postgres(s).await,
    }
}

async fn rebuild_sqlite(s: &SqliteStore) -> Result<(), StoreError> {
    let mut tx = s.pool().begin().await?;
    // The first statement writes, so the transaction holds SQLite's one write lock throughout.
    sqlx::query("DELETE FROM spend_rollup")
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM spend_rollup_keys")
        .execute(&mut *tx)
        .await?;
    sqlx::query(SQLITE_REBUILD_ALL).execute(&mut *tx).await?;
    sqlx::query(SQLITE_REBUILD_KEYS).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

async fn rebuild_postgres(s: &PgStore) -> Result<(), StoreError> {
    let mut tx = s.pool().begin().await?;
    sqlx::query("LOCK TABLE spend_rollup, spend_rollup_keys IN EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM spend_rollup")
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM spend_rollup_keys")
        .execute(&mut *tx)
        .await?;
    sqlx::query(POSTGRES_REBUILD_ALL).execute(&mut *tx).await?;
    sqlx::query(POSTGRES_REBUILD_KEYS).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}
