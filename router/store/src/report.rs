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
//! Every statement is a range scan of `requests_report_idx` (migration 0006), which covers
//! every column read, so a report reads no table page. `benches/report.rs` times it on a
//! million rows. Each grouping is its own literal statement (`concat!`, never `format!`).

use std::future::Future;

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

/// One SQLite statement: `?1` the period length, `?2..?3` the range, `?4` the key or NULL,
/// `?5` the limit, `?6` the tag name (tag reports only).
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

/// A report statement with its parameters bound in the order both statements number them:
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

impl SpendReport for SqliteStore {
    async fn spend_report(&self, q: &ReportQuery) -> Result<Vec<ReportRow>, StoreError> {
        let query = sqlx::query_as::<_, ReportRow>(sqlite_statement(&q.group_by));
        Ok(bind_report!(query, q).fetch_all(self.pool()).await?)
    }
}

impl SpendReport for PgStore {
    async fn spend_report(&self, q: &ReportQuery) -> Result<Vec<ReportRow>, StoreError> {
        let query = sqlx::query_as::<_, ReportRow>(postgres_statement(&q.group_by));
        Ok(bind_report!(query, q).fetch_all(self.pool()).await?)
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

/// The plan SQLite makes for a report (`EXPLAIN QUERY PLAN`), one line per step: for tests
/// and the benchmark, to show the index is used.
pub async fn sqlite_plan(store: &SqliteStore, q: &ReportQuery) -> Result<String, StoreError> {
    // A fixed prefix on one of the fixed statements: nothing from the query is in the text.
    let sql = sqlx::AssertSqlSafe(format!(
        "EXPLAIN QUERY PLAN {}",
        sqlite_statement(&q.group_by)
    ));
    let query = bind_report!(sqlx::query_as::<_, (i64, i64, i64, String)>(sql), q);
    let steps = query.fetch_all(store.pool()).await?;
    Ok(steps
        .into_iter()
        .map(|(_, _, _, detail)| detail)
        .collect::<Vec<_>>()
        .join("\n"))
}
