//! One suite, run on SQLite (a temp file) and on Postgres when
//! `SWITCHYARD_TEST_POSTGRES_URL` is set (each test in a fresh schema, dropped
//! afterwards). Without that variable the Postgres variants pass as skipped,
//! unless `SWITCHYARD_REQUIRE_POSTGRES=1` (CI), where they fail.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sqlx::Connection;
use sqlx::postgres::PgConnection;

use super::*;

mod connect;
mod feedback;
mod ledger;
mod records;
mod report;
mod scopes;
mod shadow;
mod spend;
mod writer;

use feedback::*;
use ledger::*;
use records::*;
use report::*;
use scopes::*;
use shadow::*;
use spend::*;
use writer::*;

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

struct TestDb {
    store: Store,
    cleanup: Cleanup,
}

enum Cleanup {
    Sqlite(tempfile::TempDir),
    Postgres { admin_url: String, schema: String },
}

impl TestDb {
    async fn finish(self) {
        self.store.close().await;
        match self.cleanup {
            Cleanup::Sqlite(dir) => drop(dir),
            Cleanup::Postgres { admin_url, schema } => {
                let mut admin = PgConnection::connect(&admin_url).await.unwrap();
                set_test_schema(&mut admin, &schema).await;
                sqlx::query(
                    "DO $$ BEGIN EXECUTE format('DROP SCHEMA %I CASCADE', \
                     current_setting('switchyard.test_schema')); END $$",
                )
                .execute(&mut admin)
                .await
                .unwrap();
                admin.close().await.unwrap();
            }
        }
    }
}

async fn sqlite_db() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/t.db", dir.path().display());
    let store = Store::connect(&url).await.unwrap();
    assert_eq!(store.backend(), "sqlite");
    TestDb {
        store,
        cleanup: Cleanup::Sqlite(dir),
    }
}

/// The admin URL, or `None` (after saying so) when Postgres tests are skipped.
fn postgres_url(test: &str) -> Option<String> {
    match std::env::var("SWITCHYARD_TEST_POSTGRES_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url.trim().to_owned()),
        _ => {
            if std::env::var("SWITCHYARD_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                panic!(
                    "SWITCHYARD_REQUIRE_POSTGRES=1 but SWITCHYARD_TEST_POSTGRES_URL is not set: \
                     start a server with `bash .ci/postgres.sh` and export its URL"
                );
            }
            eprintln!(
                "skipped: store::tests::postgres::{test} (SWITCHYARD_TEST_POSTGRES_URL not set)"
            );
            None
        }
    }
}

async fn set_test_schema(conn: &mut PgConnection, schema: &str) {
    sqlx::query("SELECT set_config('switchyard.test_schema', $1, false)")
        .bind(schema)
        .execute(&mut *conn)
        .await
        .unwrap();
}

fn unique_schema() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "t_{}_{nanos}_{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh schema `t_<pid>_<nanos>_<seq>` of the test database, created over an
/// admin connection (the statement is built by the server with `format('%I')`):
/// `(admin_url, schema, url)`, where `url` connects with `options[search_path]=<schema>`,
/// so migrations and every query run there. `None` when Postgres tests are skipped.
async fn postgres_schema(test: &str) -> Option<(String, String, String)> {
    let admin_url = postgres_url(test)?;
    let schema = unique_schema();
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to SWITCHYARD_TEST_POSTGRES_URL: {e}"));
    set_test_schema(&mut admin, &schema).await;
    sqlx::query(
        "DO $$ BEGIN EXECUTE format('CREATE SCHEMA %I', \
         current_setting('switchyard.test_schema')); END $$",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    admin.close().await.unwrap();
    let sep = if admin_url.contains('?') { '&' } else { '?' };
    let url = format!("{admin_url}{sep}options[search_path]={schema}");
    Some((admin_url, schema, url))
}

/// A store in a fresh schema (see [`postgres_schema`]).
async fn postgres_db(test: &str) -> Option<TestDb> {
    let (admin_url, schema, url) = postgres_schema(test).await?;
    let options = StoreOptions {
        max_connections: Some(4),
        ..StoreOptions::default()
    };
    let store = Store::connect_with(&url, &options).await.unwrap();
    assert_eq!(store.backend(), "postgres");
    let Store::Postgres(pg) = &store else {
        unreachable!()
    };
    let current: String = sqlx::query_scalar("SELECT current_schema()")
        .fetch_one(pg.pool())
        .await
        .unwrap();
    assert_eq!(current, schema);
    Some(TestDb {
        store,
        cleanup: Cleanup::Postgres { admin_url, schema },
    })
}

/// Generates `sqlite::NAME` and `postgres::NAME` for each shared test `NAME(&Store)`.
macro_rules! suite {
    ($($(#[$attr:meta])+ $name:ident;)+) => {
        mod sqlite {
            $(
                $(#[$attr])+
                async fn $name() {
                    let db = super::sqlite_db().await;
                    super::$name(&db.store).await;
                    db.finish().await;
                }
            )+
        }
        mod postgres {
            $(
                $(#[$attr])+
                async fn $name() {
                    let Some(db) = super::postgres_db(stringify!($name)).await else {
                        return;
                    };
                    super::$name(&db.store).await;
                    db.finish().await;
                }
            )+
        }
    };
}

suite! {
    #[tokio::test] round_trip;
    #[tokio::test] count_and_duplicates;
    #[tokio::test] same_client_id_twenty_times_makes_twenty_rows;
    #[tokio::test] client_request_id_is_cut_and_nul_safe;
    #[tokio::test] model_history;
    #[tokio::test] purge_before;
    #[tokio::test] nul_bytes_do_not_poison_a_batch;
    #[tokio::test] keys;
    #[tokio::test] key_scopes_round_trip_and_old_rows_have_none;
    #[tokio::test] feedback_round_trip_and_once_per_request;
    #[tokio::test] shadow_rows_name_their_original_and_keep_their_text;
    #[tokio::test] report_sums_billed_rows_per_group_and_period;
    #[tokio::test] report_by_tag_and_for_one_key;
    #[tokio::test] tags_and_billed_round_trip;
    #[tokio::test] recent_feedback_is_newest_first_bounded_and_purged_with_its_request;
    #[tokio::test] retention_purges_old_rows;
    #[tokio::test] spend_upsert_adds_exactly;
    #[tokio::test] spend_periods_are_separate;
    #[tokio::test] spend_saturates_instead_of_failing;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)] writer_5000_rows_from_many_tasks;
    #[tokio::test] writer_tiny_capacity_counts_drops;
    #[tokio::test] writer_tiny_queue_drops_rows_but_ledger_loses_nothing;
    #[tokio::test] writer_record_after_shutdown_is_dropped;
    #[tokio::test] writer_flushes_on_interval;
    #[tokio::test] writer_counts_failed_batches;
    #[tokio::test] writer_drains_a_backlog_in_adaptive_batches;
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)] ledger_10000_adds_from_many_tasks;
    #[tokio::test] ledger_flushes_on_interval;
    #[tokio::test] ledger_failed_flush_is_retried_and_nothing_lost;
    #[tokio::test] ledger_shutdown_with_dead_store_counts_lost;
    #[tokio::test] ledger_add_after_shutdown_is_lost;
    #[tokio::test] ledger_dropped_without_shutdown_still_writes;
}

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

fn row(id: &str, ts_ms: i64) -> RequestRecord {
    RequestRecord {
        id: id.to_owned(),
        client_request_id: None,
        ts_ms,
        key_id: None,
        endpoint: "/v1/chat/completions".to_owned(),
        route: "default".to_owned(),
        task: None,
        model: Some("gpt-4o-mini".to_owned()),
        provider: Some("openai".to_owned()),
        status: 200,
        error_code: None,
        stream: false,
        cache: "miss".to_owned(),
        prompt_tokens: 0,
        completion_tokens: 0,
        cached_tokens: 0,
        reasoning_tokens: 0,
        usage_estimated: false,
        cost_picousd: 0,
        latency_ms: 1.0,
        ttft_ms: None,
        overhead_ms: 0.5,
        shadow_of: None,
        response_text: None,
        tags: BTreeMap::new(),
        billed: true,
        attempts: Vec::new(),
        policies: Vec::new(),
    }
}

fn full_row() -> RequestRecord {
    RequestRecord {
        id: "req_01J9ZK3V8Q".to_owned(),
        client_request_id: Some("client-7f3a 'é' ✓ #42".to_owned()),
        ts_ms: 1_767_225_600_123,
        key_id: Some("key_abc".to_owned()),
        endpoint: "/ai/route".to_owned(),
        route: "smart".to_owned(),
        task: Some("code/sql".to_owned()),
        model: Some("claude-sonnet-4".to_owned()),
        provider: Some("anthropic".to_owned()),
        status: 200,
        error_code: Some("upstream_timeout".to_owned()),
        stream: true,
        cache: "bypass".to_owned(),
        prompt_tokens: 4_000_000_000,
        completion_tokens: 123,
        cached_tokens: 77,
        reasoning_tokens: 9,
        usage_estimated: true,
        cost_picousd: 9_007_199_254_740_993, // > 2^53: must not go through a float
        latency_ms: 1234.5678,
        ttft_ms: Some(87.25),
        overhead_ms: 0.125,
        shadow_of: None,
        response_text: None,
        tags: BTreeMap::from([
            ("team".to_owned(), "équipe ✓ \"q\"".to_owned()),
            ("project".to_owned(), "p-1".to_owned()),
        ]),
        billed: true,
        attempts: vec![
            AttemptRecord {
                model: "gpt-4o".to_owned(),
                provider: "openai".to_owned(),
                outcome: "timeout".to_owned(),
                status: None,
                latency_ms: 30_000.0,
                detail: Some("délai dépassé — 上游超时 🚦 \"quoted\" 'single'".to_owned()),
                // Billed as an estimate, beyond the row's answer (migration 0007).
                cost_picousd: Some(1_234_567_890_123),
            },
            AttemptRecord {
                model: "gpt-4o".to_owned(),
                provider: "azure".to_owned(),
                outcome: "error".to_owned(),
                status: Some(529),
                latency_ms: 12.5,
                detail: None,
                cost_picousd: None,
            },
            AttemptRecord {
                model: "claude-sonnet-4".to_owned(),
                provider: "anthropic".to_owned(),
                outcome: "ok".to_owned(),
                status: Some(200),
                latency_ms: 1100.0,
                detail: Some(String::new()),
                cost_picousd: None,
            },
        ],
        policies: vec![
            PolicyRecord {
                policy: "pii-redact".to_owned(),
                outcome: "modified".to_owned(),
                annotations: vec!["email×2".to_owned(), "phone: \"+33…\"".to_owned()],
            },
            PolicyRecord {
                policy: "budget".to_owned(),
                outcome: "allow".to_owned(),
                annotations: Vec::new(),
            },
        ],
    }
}

fn key(id: &str, hash: &str, created_ms: i64) -> KeyRecord {
    KeyRecord {
        id: id.to_owned(),
        name: format!("name of {id}"),
        hash: hash.to_owned(),
        prefix: "sk-sy-abcd".to_owned(),
        created_ms,
        revoked_ms: None,
        routes: Vec::new(),
        models: Vec::new(),
        budget_picousd: None,
        budget_period: "total".to_owned(),
        rpm: None,
        tpm: None,
        scopes: Vec::new(),
    }
}

fn with_key(
    mut r: RequestRecord,
    key_id: &str,
    cost: i64,
    prompt: u32,
    completion: u32,
) -> RequestRecord {
    r.key_id = Some(key_id.to_owned());
    r.cost_picousd = cost;
    r.prompt_tokens = prompt;
    r.completion_tokens = completion;
    r
}

async fn wait_for_count(store: &Store, want: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = store.count().await.unwrap();
        if n == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "count stayed {n}, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls `done` until it holds, for at most 30 s (generous: this is a bound, not a timing).
async fn eventually<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs one ad-hoc statement (fault injection) on either backend.
async fn exec(store: &Store, sql: &'static str) {
    match store {
        Store::Sqlite(s) => {
            sqlx::query(sql).execute(s.pool()).await.unwrap();
        }
        Store::Postgres(s) => {
            sqlx::query(sql).execute(s.pool()).await.unwrap();
        }
    }
}

fn totals(cost: i64, requests: i64, prompt: i64, completion: i64) -> SpendTotals {
    SpendTotals {
        cost_picousd: cost,
        requests,
        prompt_tokens: prompt,
        completion_tokens: completion,
    }
}

fn delta(key_id: &str, period_start_ms: i64, t: SpendTotals) -> SpendDelta {
    SpendDelta {
        key_id: key_id.to_owned(),
        period_start_ms,
        totals: t,
    }
}
