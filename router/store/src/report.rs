//! Spend and usage reports from the request log (`GET /ai/spend`): requests, tokens and cost
//! summed per group (key, model, route, provider or one tag) and per hour or UTC day.
//!
//! # The same numbers as the ledger
//!
//! A row's `cost_picousd` is the figure the exchange gave the spend ledger, so summing billed
//! rows gives a key's spend to the picodollar, on both backends (integer sums). Two cases
//! differ, by design: a shadow row its route does not bill (`billed = false`) is left out,
//! since the ledger never saw it; and a row the writer dropped under load (counted in
//! `switchyard_store_rows_dropped_total`) is in the ledger but not in the log.
//!
//! # Fast on a large log
//!
//! A report reads the whole hours of its range from the hourly rollup (migration 0008,
//! `rollup.rs`: per hour and grouping, over every key or for one), and only
//! the partial hours at its edges (and anything before 1970) from `requests`, through
//! `requests_report_idx` (migration 0006), which covers every column read. The rollup is the
//! sum of its rows at every commit, so any `from`/`to` gives the numbers the rows give
//! ([`spend_report_from_rows`], the reference the tests compare against). A tag's untagged
//! group is every row of the hour less the tagged ones. `benches/report.rs` times both on a
//! million rows. Each grouping is its own literal statement (`concat!`, never `format!`).

use std::future::Future;

use super::rollup::{HOUR_MS, plain_tag};
use super::{PgStore, SqliteStore, Store, StoreError};

/// What a report groups by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupBy {
    Key,
    Model,
    Route,
    Provider,
    /// One `[log] tags` name: rows without it are the `None` group.
    Tag(String),
}

/// The length of a report's period: hours, or UTC days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Hour,
    Day,
}

impl Period {
    pub fn ms(self) -> i64 {
        match self {
            Period::Hour => 3_600_000,
            Period::Day => 86_400_000,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Hour => "hour",
            Period::Day => "day",
        }
    }
}

/// One report: `from_ms <= ts_ms < to_ms`, optionally one key's rows only, at most `limit`
/// rows (the caller asks for one more than it shows, to tell a cut report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportQuery {
    pub group_by: GroupBy,
    pub period: Period,
    pub from_ms: i64,
    pub to_ms: i64,
    pub key_id: Option<String>,
    pub limit: i64,
}

/// One group in one period. `group` is `None` for rows without the value (no key in `open`
/// mode, no model on a request that failed before one answered, no such tag).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ReportRow {
    pub group: Option<String>,
    /// Start of the period (unix ms): a multiple of the period's length, so a UTC boundary.
    pub period_start_ms: i64,
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cost_picousd: i64,
}

/// Spend reports over the request log.
pub trait SpendReport {
    /// Rows ordered by period, then group (`None` first).
    fn spend_report(
        &self,
        query: &ReportQuery,
    ) -> impl Future<Output = Result<Vec<ReportRow>, StoreError>> + Send;
}

/// One SQLite statement over every row (the reference the rollup is checked against, and what a
/// tag name the rollup does not keep reads): `?1` the period length, `?2..?3` the range, `?4` the
/// key or NULL, `?5` the limit, `?6` the tag name (tag reports only).
macro_rules! sqlite_report {
    ($group:literal) => {
        concat!(
            "SELECT ",
            $group,
            " AS \"group\", (ts_ms / ?1) * ?1 AS period_start_ms, COUNT(*) AS requests, \
             SUM(prompt_tokens) AS prompt_tokens, SUM(completion_tokens) AS completion_tokens, \
             SUM(cost_picousd) AS cost_picousd FROM requests \
             WHERE ts_ms >= ?2 AND ts_ms < ?3 AND billed AND (?4 IS NULL OR key_id = ?4) \
             GROUP BY period_start_ms, \"group\" ORDER BY period_start_ms, \"group\" LIMIT ?5"
        )
    };
}

/// The Postgres twin of [`sqlite_report`]; `SUM(BIGINT)` is `NUMERIC` there, cast back.
macro_rules! postgres_report {
    ($group:literal) => {
        concat!(
            "SELECT ",
            $group,
            " AS \"group\", (ts_ms / $1) * $1 AS period_start_ms, COUNT(*) AS requests, \
             CAST(SUM(prompt_tokens) AS BIGINT) AS prompt_tokens, \
             CAST(SUM(completion_tokens) AS BIGINT) AS completion_tokens, \
             CAST(SUM(cost_picousd) AS BIGINT) AS cost_picousd FROM requests \
             WHERE ts_ms >= $2 AND ts_ms < $3 AND billed \
             AND ($4::TEXT IS NULL OR key_id = $4) \
             GROUP BY period_start_ms, \"group\" \
             ORDER BY period_start_ms, \"group\" NULLS FIRST LIMIT $5"
        )
    };
}

/// A nullable rollup column decoded (`''` is NULL, `'.'` precedes a value): SQLite and Postgres
/// spell it alike.
macro_rules! decoded {
    ($column:literal) => {
        concat!(
            "CASE WHEN ",
            $column,
            " = '' THEN NULL ELSE substr(",
            $column,
            ", 2) END"
        )
    };
}

/// The rollup's SQLite statement: the rows of `[?2, ?6)` and `[?7, ?3)` from `requests`, the
/// whole hours of `[?6, ?7)` from the rollup (`$rolled`, from [`sqlite_dims`] or the tag
/// branches), summed per group and period. `?1` the period length, `?4` the key or NULL, `?5`
/// the limit. `$rows` is the group in `requests`.
macro_rules! sqlite_rollup {
    ($rows:expr, $rolled:expr) => {
        concat!(
            "SELECT \"group\", (t / ?1) * ?1 AS period_start_ms, SUM(n) AS requests, \
             SUM(p) AS prompt_tokens, SUM(c) AS completion_tokens, SUM(cost) AS cost_picousd \
             FROM (SELECT ",
            $rows,
            " AS \"group\", ts_ms AS t, 1 AS n, prompt_tokens AS p, completion_tokens AS c, \
             cost_picousd AS cost FROM requests \
             WHERE ts_ms >= ?2 AND ts_ms < ?6 AND billed AND (?4 IS NULL OR key_id = ?4) \
             UNION ALL SELECT ",
            $rows,
            ", ts_ms, 1, prompt_tokens, completion_tokens, cost_picousd FROM requests \
             WHERE ts_ms >= ?7 AND ts_ms < ?3 AND billed AND (?4 IS NULL OR key_id = ?4)",
            $rolled,
            ") GROUP BY period_start_ms, \"group\" HAVING SUM(n) > 0 \
             ORDER BY period_start_ms, \"group\" LIMIT ?5"
        )
    };
}

/// The rollup branches of a fixed grouping: `spend_rollup`'s `$all` rows when the report is
/// for every key, `spend_rollup_keys`' `$one` rows (grouped as `$group`) when it is for `?4`.
macro_rules! sqlite_dims {
    ($all:literal, $one:literal, $group:expr) => {
        concat!(
            " UNION ALL SELECT ",
            decoded!("value"),
            ", hour_ms, requests, prompt_tokens, completion_tokens, cost_picousd \
             FROM spend_rollup WHERE ?4 IS NULL AND dim = '",
            $all,
            "' AND hour_ms >= ?6 AND hour_ms < ?7 UNION ALL SELECT ",
            $group,
            ", hour_ms, requests, prompt_tokens, completion_tokens, cost_picousd \
             FROM spend_rollup_keys WHERE dim = '",
            $one,
            "' AND key_id = '.' || ?4 AND hour_ms >= ?6 AND hour_ms < ?7"
        )
    };
}

/// The Postgres twin of [`sqlite_rollup`], with `$n` for `?n`.
macro_rules! postgres_rollup {
    ($rows:expr, $rolled:expr) => {
        concat!(
            "SELECT \"group\", (t / $1) * $1 AS period_start_ms, \
             CAST(SUM(n) AS BIGINT) AS requests, CAST(SUM(p) AS BIGINT) AS prompt_tokens, \
             CAST(SUM(c) AS BIGINT) AS completion_tokens, \
             CAST(SUM(cost) AS BIGINT) AS cost_picousd \
             FROM (SELECT ",
            $rows,
            " AS \"group\", ts_ms AS t, 1 AS n, prompt_tokens AS p, completion_tokens AS c, \
             cost_picousd AS cost FROM requests \
             WHERE ts_ms >= $2 AND ts_ms < $6 AND billed AND ($4::TEXT IS NULL OR key_id = $4) \
             UNION ALL SELECT ",
            $rows,
            ", ts_ms, 1, prompt_tokens, completion_tokens, cost_picousd FROM requests \
             WHERE ts_ms >= $7 AND ts_ms < $3 AND billed AND ($4::TEXT IS NULL OR key_id = $4)",
            $rolled,
            ") AS u GROUP BY period_start_ms, \"group\" HAVING SUM(n) > 0 \
             ORDER BY period_start_ms, \"group\" NULLS FIRST LIMIT $5"
        )
    };
}

/// The Postgres twin of [`sqlite_dims`].
macro_rules! postgres_dims {
    ($all:literal, $one:literal, $group:expr) => {
        concat!(
            " UNION ALL SELECT ",
            decoded!("value"),
            ", hour_ms, requests, prompt_tokens, completion_tokens, cost_picousd \
             FROM spend_rollup WHERE $4::TEXT IS NULL AND dim = '",
            $all,
            "' AND hour_ms >= $6 AND hour_ms < $7 UNION ALL SELECT ",
            $group,
            ", hour_ms, requests, prompt_tokens, completion_tokens, cost_picousd \
             FROM spend_rollup_keys WHERE dim = '",
            $one,
            "' AND key_id = '.' || $4 AND hour_ms >= $6 AND hour_ms < $7"
        )
    };
}

pub(crate) fn sqlite_statement(group_by: &GroupBy) -> &'static str {
    match group_by {
        GroupBy::Key => sqlite_report!("key_id"),
        GroupBy::Model => sqlite_report!("model"),
        GroupBy::Route => sqlite_report!("route"),
        GroupBy::Provider => sqlite_report!("provider"),
        GroupBy::Tag(_) => sqlite_report!("tags ->> ?6"),
    }
}

pub(crate) fn postgres_statement(group_by: &GroupBy) -> &'static str {
    match group_by {
        GroupBy::Key => postgres_report!("key_id"),
        GroupBy::Model => postgres_report!("model"),
        GroupBy::Route => postgres_report!("route"),
        GroupBy::Provider => postgres_report!("provider"),
        GroupBy::Tag(_) => postgres_report!("tags ->> $6"),
    }
}

/// The rollup statement of a grouping; `None` for a tag name the rollup does not keep.
pub(crate) fn sqlite_rollup_statement(group_by: &GroupBy) -> Option<&'static str> {
    Some(match group_by {
        // A key's own report: its hourly totals, under its id.
        GroupBy::Key => sqlite_rollup!("key_id", sqlite_dims!("key", "total", "?4")),
        GroupBy::Model => {
            sqlite_rollup!("model", sqlite_dims!("model", "model", decoded!("value")))
        }
        GroupBy::Route => {
            sqlite_rollup!("route", sqlite_dims!("route", "route", decoded!("value")))
        }
        GroupBy::Provider => sqlite_rollup!(
            "provider",
            sqlite_dims!("provider", "provider", decoded!("value"))
        ),
        // A tag's values come from its `t.NAME` rows; the untagged group is the hour's total
        // less them.
        GroupBy::Tag(name) if plain_tag(name) => sqlite_rollup!(
            "tags ->> ?8",
            concat!(
                " UNION ALL SELECT ",
                decoded!("value"),
                ", hour_ms, requests, prompt_tokens, completion_tokens, cost_picousd \
                 FROM spend_rollup WHERE ?4 IS NULL AND dim = 't.' || ?8 \
                 AND hour_ms >= ?6 AND hour_ms < ?7 \
                 UNION ALL SELECT NULL, hour_ms, -requests, -prompt_tokens, -completion_tokens, \
                 -cost_picousd FROM spend_rollup WHERE ?4 IS NULL AND dim = 't.' || ?8 \
                 AND hour_ms >= ?6 AND hour_ms < ?7 \
                 UNION ALL SELECT NULL, hour_ms, requests, prompt_tokens, completion_tokens, \
                 cost_picousd FROM spend_rollup WHERE ?4 IS NULL AND dim = 'total' \
                 AND hour_ms >= ?6 AND hour_ms < ?7 \
                 UNION ALL SELECT ",
                decoded!("value"),
                ", hour_ms, requests, prompt_tokens, completion_tokens, cost_picousd \
                 FROM spend_rollup_keys WHERE dim = 't.' || ?8 AND key_id = '.' || ?4 \
                 AND hour_ms >= ?6 AND hour_ms < ?7 \
                 UNION ALL SELECT NULL, hour_ms, -requests, -prompt_tokens, -completion_tokens, \
                 -cost_picousd FROM spend_rollup_keys WHERE dim = 't.' || ?8 \
                 AND key_id = '.' || ?4 AND hour_ms >= ?6 AND hour_ms < ?7 \
                 UNION ALL SELECT NULL, hour_ms, requests, prompt_tokens, completion_tokens, \
                 cost_picousd FROM spend_rollup_keys WHERE dim = 'total' AND key_id = '.' || ?4 \
                 AND hour_ms >= ?6 AND hour_ms < ?7"
            )
        ),
        GroupBy::Tag(_) => return None,
    })
}

pub(crate) fn postgres_rollup_statement(group_by: &GroupBy) -> Option<&'static str> {
    Some(match group_by {
        GroupBy::Key => postgres_rollup!("key_id", postgres_dims!("key", "total", "$4::TEXT")),
        GroupBy::Model => {
            postgres_rollup!("model", postgres_dims!("model", "model", decoded!("value")))
        }
        GroupBy::Route => {
            postgres_rollup!("route", postgres_dims!("route", "route", decoded!("value")))
        }
        GroupBy::Provider => postgres_rollup!(
            "provider",
            postgres_dims!("provider", "provider", decoded!("value"))
        ),
        GroupBy::Tag(name) if plain_tag(name) => postgres_rollup!(
            "tags ->> $8",
            concat!(
                " UNION ALL SELECT ",
                decoded!("value"),
                ", hour_ms, requests, prompt_tokens, completion_tokens, cost_picousd \
                 FROM spend_rollup WHERE $4::TEXT IS NULL AND dim = 't.' || $8 \
                 AND hour_ms >= $6 AND hour_ms < $7 \
                 UNION ALL SELECT NULL, hour_ms, -requests, -prompt_tokens, -completion_tokens, \
                 -cost_picousd FROM spend_rollup WHERE $4::TEXT IS NULL AND dim = 't.' || $8 \
                 AND hour_ms >= $6 AND hour_ms < $7 \
                 UNION ALL SELECT NULL, hour_ms, requests, prompt_tokens, completion_tokens, \
                 cost_picousd FROM spend_rollup WHERE $4::TEXT IS NULL AND dim = 'total' \
                 AND hour_ms >= $6 AND hour_ms < $7 \
                 UNION ALL SELECT ",
                decoded!("value"),
                ", hour_ms, requests, prompt_tokens, completion_tokens, cost_picousd \
                 FROM spend_rollup_keys WHERE dim = 't.' || $8 AND key_id = '.' || $4 \
                 AND hour_ms >= $6 AND hour_ms < $7 \
                 UNION ALL SELECT NULL, hour_ms, -requests, -prompt_tokens, -completion_tokens, \
                 -cost_picousd FROM spend_rollup_keys WHERE dim = 't.' || $8 \
                 AND key_id = '.' || $4 AND hour_ms >= $6 AND hour_ms < $7 \
                 UNION ALL SELECT NULL, hour_ms, requests, prompt_tokens, completion_tokens, \
                 cost_picousd FROM spend_rollup_keys WHERE dim = 'total' AND key_id = '.' || $4 \
                 AND hour_ms >= $6 AND hour_ms < $7"
            )
        ),
        GroupBy::Tag(_) => return None,
    })
}

/// The whole hours of `[from, to)` the rollup answers for, `[a, b)`; the rest of the range is
/// read from the rows. An empty `[to, to)` when there is no whole hour at or after 1970.
pub(crate) fn rollup_hours(from_ms: i64, to_ms: i64) -> (i64, i64) {
    let lo = from_ms.max(0);
    let a = match lo % HOUR_MS {
        0 => Some(lo),
        r => lo.checked_add(HOUR_MS - r),
    };
    let b = to_ms - to_ms.rem_euclid(HOUR_MS);
    match a {
        Some(a) if a < b => (a, b),
        _ => (to_ms, to_ms),
    }
}

/// A statement over the rows bound in the order both raw statements number their parameters:
/// period, from, to, key, limit, and the tag name for tag reports. (A macro, not a function:
/// sqlx's query types differ per database.)
macro_rules! bind_report {
    ($query:expr, $q:expr) => {{
        let q: &ReportQuery = $q;
        let query = $query
            .bind(q.period.ms())
            .bind(q.from_ms)
            .bind(q.to_ms)
            .bind(q.key_id.as_deref())
            .bind(q.limit.max(0));
        match &q.group_by {
            GroupBy::Tag(name) => query.bind(name.as_str()),
            _ => query,
        }
    }};
}

/// A rollup statement bound: the raw statement's first five, then the rollup's hours, then the
/// tag name for tag reports.
macro_rules! bind_rollup {
    ($query:expr, $q:expr) => {{
        let q: &ReportQuery = $q;
        let (a, b) = rollup_hours(q.from_ms, q.to_ms);
        let query = $query
            .bind(q.period.ms())
            .bind(q.from_ms)
            .bind(q.to_ms)
            .bind(q.key_id.as_deref())
            .bind(q.limit.max(0))
            .bind(a)
            .bind(b);
        match &q.group_by {
            GroupBy::Tag(name) => query.bind(name.as_str()),
            _ => query,
        }
    }};
}

impl SpendReport for SqliteStore {
    async fn spend_report(&self, q: &ReportQuery) -> Result<Vec<ReportRow>, StoreError> {
        let Some(sql) = sqlite_rollup_statement(&q.group_by) else {
            return sqlite_rows(self, q).await;
        };
        let query = sqlx::query_as::<_, ReportRow>(sql);
        Ok(bind_rollup!(query, q).fetch_all(self.pool()).await?)
    }
}

impl SpendReport for PgStore {
    async fn spend_report(&self, q: &ReportQuery) -> Result<Vec<ReportRow>, StoreError> {
        let Some(sql) = postgres_rollup_statement(&q.group_by) else {
            return postgres_rows(self, q).await;
        };
        let query = sqlx::query_as::<_, ReportRow>(sql);
        Ok(bind_rollup!(query, q).fetch_all(self.pool()).await?)
    }
}

impl SpendReport for Store {
    async fn spend_report(&self, q: &ReportQuery) -> Result<Vec<ReportRow>, StoreError> {
        match self {
            Store::Sqlite(s) => s.spend_report(q).await,
            Store::Postgres(s) => s.spend_report(q).await,
        }
    }
}

async fn sqlite_rows(s: &SqliteStore, q: &ReportQuery) -> Result<Vec<ReportRow>, StoreError> {
    let query = sqlx::query_as::<_, ReportRow>(sqlite_statement(&q.group_by));
    Ok(bind_report!(query, q).fetch_all(s.pool()).await?)
}

async fn postgres_rows(s: &PgStore, q: &ReportQuery) -> Result<Vec<ReportRow>, StoreError> {
    let query = sqlx::query_as::<_, ReportRow>(postgres_statement(&q.group_by));
    Ok(bind_report!(query, q).fetch_all(s.pool()).await?)
}

/// The same report from every row in the range, without the rollup: the reference the rollup
/// is tested and benchmarked against (it is what `spend_report` was before migration 0008).
pub async fn spend_report_from_rows(
    store: &Store,
    q: &ReportQuery,
) -> Result<Vec<ReportRow>, StoreError> {
    match store {
        Store::Sqlite(s) => sqlite_rows(s, q).await,
        Store::Postgres(s) => postgres_rows(s, q).await,
    }
}

/// The plan SQLite makes for a report (`EXPLAIN QUERY PLAN`), one line per step: for tests
/// and the benchmark, to show the index is used.
pub async fn sqlite_plan(store: &SqliteStore, q: &ReportQuery) -> Result<String, StoreError> {
    // A fixed prefix on one of the fixed statements: nothing from the query is in the text.
    let sql = sqlx::AssertSqlSafe(format!(
        "EXPLAIN QUERY PLAN {}",
        sqlite_rollup_statement(&q.group_by).unwrap_or(sqlite_statement(&q.group_by))
    ));
    let query = sqlx::query_as::<_, (i64, i64, i64, String)>(sql);
    let query = if sqlite_rollup_statement(&q.group_by).is_some() {
        bind_rollup!(query, q)
    } else {
        bind_report!(query, q)
    };
    let steps = query.fetch_all(store.pool()).await?;
    Ok(steps
        .into_iter()
        .map(|(_, _, _, detail)| detail)
        .collect::<Vec<_>>()
        .join("\n"))
}
