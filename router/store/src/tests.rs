//! One suite, run on SQLite (a temp file) and on Postgres when
//! `SWITCHYARD_TEST_POSTGRES_URL` is set (each test in a fresh schema, dropped
//! afterwards). Without that variable the Postgres variants pass as skipped,
//! unless `SWITCHYARD_REQUIRE_POSTGRES=1` (CI), where they fail.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sqlx::Connection;
use sqlx::postgres::PgConnection;

use super::*;
use crate::error::redact;
use switchyard_types::clock::now_ms;

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

/// A store in a fresh schema `t_<pid>_<nanos>_<seq>` of the test database:
/// the schema is created over an admin connection (the statement is built by
/// the server with `format('%I')`), and the store connects with
/// `options[search_path]=<schema>`, so the migrations and every query run there.
async fn postgres_db(test: &str) -> Option<TestDb> {
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
    #[tokio::test] model_history;
    #[tokio::test] spend_upsert_adds_exactly;
    #[tokio::test] spend_periods_are_separate;
    #[tokio::test] purge_before;
    #[tokio::test] nul_bytes_do_not_poison_a_batch;
    #[tokio::test] keys;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)] writer_5000_rows_from_many_tasks;
    #[tokio::test] writer_tiny_capacity_counts_drops;
    #[tokio::test] writer_record_after_shutdown_is_dropped;
    #[tokio::test] writer_flushes_on_interval;
    #[tokio::test] writer_counts_failed_batches;
    #[tokio::test] retention_purges_old_rows;
}

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

fn row(id: &str, ts_ms: i64) -> RequestRecord {
    RequestRecord {
        id: id.to_owned(),
        ts_ms,
        key_id: None,
        endpoint: "/v1/chat/completions".to_owned(),
        route: "default".to_owned(),
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
        attempts: Vec::new(),
        policies: Vec::new(),
    }
}

fn full_row() -> RequestRecord {
    RequestRecord {
        id: "req_01J9ZK3V8Q".to_owned(),
        ts_ms: 1_767_225_600_123,
        key_id: Some("key_abc".to_owned()),
        endpoint: "/ai/route".to_owned(),
        route: "smart".to_owned(),
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
        attempts: vec![
            AttemptRecord {
                model: "gpt-4o".to_owned(),
                provider: "openai".to_owned(),
                outcome: "timeout".to_owned(),
                status: None,
                latency_ms: 30_000.0,
                detail: Some("délai dépassé — 上游超时 🚦 \"quoted\" 'single'".to_owned()),
            },
            AttemptRecord {
                model: "gpt-4o".to_owned(),
                provider: "azure".to_owned(),
                outcome: "error".to_owned(),
                status: Some(529),
                latency_ms: 12.5,
                detail: None,
            },
            AttemptRecord {
                model: "claude-sonnet-4".to_owned(),
                provider: "anthropic".to_owned(),
                outcome: "ok".to_owned(),
                status: Some(200),
                latency_ms: 1100.0,
                detail: Some(String::new()),
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

fn no_period() -> PeriodFn {
    Arc::new(|_: &RequestRecord| None)
}

// ---------------------------------------------------------------------------
// The shared suite
// ---------------------------------------------------------------------------

async fn round_trip(store: &Store) {
    let full = full_row();
    let mut bare = row("req_bare", 5);
    bare.model = None;
    bare.provider = None;
    bare.status = 502;
    bare.latency_ms = 0.0;
    assert_eq!(
        store
            .insert_batch(&[(full.clone(), Some(0)), (bare.clone(), None)])
            .await
            .unwrap(),
        2
    );
    assert_eq!(store.get_request(&full.id).await.unwrap(), Some(full));
    assert_eq!(store.get_request("req_bare").await.unwrap(), Some(bare));
    assert_eq!(store.get_request("req_missing").await.unwrap(), None);
    assert_eq!(store.insert_batch(&[]).await.unwrap(), 0);
}

async fn count_and_duplicates(store: &Store) {
    assert_eq!(store.count().await.unwrap(), 0);
    let batch: Vec<_> = (0..10)
        .map(|i| {
            (
                with_key(row(&format!("req_{i}"), i), "key_d", 5, 1, 1),
                Some(0),
            )
        })
        .collect();
    assert_eq!(store.insert_batch(&batch).await.unwrap(), 10);
    assert_eq!(store.count().await.unwrap(), 10);
    // A retried batch (or a repeated id inside one) is skipped, spend included.
    assert_eq!(store.insert_batch(&batch).await.unwrap(), 0);
    let mut twice = row("req_twice", 1);
    twice.attempts.push(AttemptRecord {
        model: "m".to_owned(),
        provider: "p".to_owned(),
        outcome: "ok".to_owned(),
        status: Some(200),
        latency_ms: 1.0,
        detail: None,
    });
    let twice = with_key(twice, "key_d", 5, 1, 1);
    assert_eq!(
        store
            .insert_batch(&[(twice.clone(), Some(0)), (twice.clone(), Some(0))])
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.count().await.unwrap(), 11);
    assert_eq!(store.get_request("req_twice").await.unwrap(), Some(twice));
    let spend = store.spend("key_d", 0).await.unwrap();
    assert_eq!(spend.requests, 11);
    assert_eq!(spend.cost_picousd, 55);
}

async fn model_history(store: &Store) {
    let mk = |id: &str,
              model: Option<&str>,
              ts: i64,
              status: u16,
              lat: f64,
              ttft: Option<f64>,
              p: u32,
              c: u32,
              cost: i64,
              cache: &str| {
        let mut r = row(id, ts);
        r.model = model.map(str::to_owned);
        r.status = status;
        r.latency_ms = lat;
        r.ttft_ms = ttft;
        r.prompt_tokens = p;
        r.completion_tokens = c;
        r.cost_picousd = cost;
        r.cache = cache.to_owned();
        (r, None)
    };
    let rows = vec![
        mk(
            "r1",
            Some("gpt-a"),
            1000,
            200,
            100.0,
            Some(10.0),
            10,
            20,
            1_000,
            "miss",
        ),
        mk("r2", Some("gpt-a"), 2000, 500, 300.0, None, 5, 0, 0, "miss"),
        mk(
            "r3",
            Some("gpt-a"),
            3000,
            200,
            50.0,
            Some(30.0),
            7,
            3,
            2_500,
            "hit",
        ),
        mk(
            "r4",
            Some("claude-b"),
            1500,
            429,
            20.0,
            None,
            1,
            1,
            7,
            "bypass",
        ),
        mk("r5", None, 1500, 502, 5.0, None, 0, 0, 0, "miss"),
        mk(
            "r6",
            Some("gpt-a"),
            500,
            404,
            1.0,
            Some(2.0),
            100,
            100,
            100,
            "hit",
        ),
    ];
    store.insert_batch(&rows).await.unwrap();

    let claude = ModelHistory {
        model: "claude-b".to_owned(),
        requests: 1,
        errors: 1,
        avg_latency_ms: Some(20.0),
        avg_ttft_ms: None,
        prompt_tokens: 1,
        completion_tokens: 1,
        cost_picousd: 7,
        cache_hits: 0,
    };
    let gpt = ModelHistory {
        model: "gpt-a".to_owned(),
        requests: 3,
        errors: 1,
        avg_latency_ms: Some(150.0),
        avg_ttft_ms: Some(20.0),
        prompt_tokens: 22,
        completion_tokens: 23,
        cost_picousd: 3_500,
        cache_hits: 1,
    };
    assert_eq!(
        store.model_history(1000).await.unwrap(),
        vec![claude.clone(), gpt]
    );

    // From 0, r6 (status 404, a hit) counts too.
    let gpt_all = ModelHistory {
        model: "gpt-a".to_owned(),
        requests: 4,
        errors: 2,
        avg_latency_ms: Some(112.75),
        avg_ttft_ms: Some(14.0),
        prompt_tokens: 122,
        completion_tokens: 123,
        cost_picousd: 3_600,
        cache_hits: 2,
    };
    assert_eq!(store.model_history(0).await.unwrap(), vec![claude, gpt_all]);
    assert_eq!(store.model_history(3001).await.unwrap(), Vec::new());
}

async fn spend_upsert_adds_exactly(store: &Store) {
    const P: i64 = 1_767_225_600_000;
    let a = 1_234_567_890_123_i64;
    let b = 9_876_543_210_987_i64;
    let c = 4_611_686_018_427_387_904_i64; // 2^62: exact only as an integer
    let batch1 = vec![
        (with_key(row("s1", 1), "key_s", a, 10, 1), Some(P)),
        (with_key(row("s2", 2), "key_s", b, 20, 2), Some(P)),
        (with_key(row("s3", 3), "key_s", 999, 1, 1), None), // no budget period: no spend
        (row("s4", 4), Some(P)),                            // no key: no spend
    ];
    store.insert_batch(&batch1).await.unwrap();
    assert_eq!(
        store.spend("key_s", P).await.unwrap(),
        SpendTotals {
            cost_picousd: a + b,
            requests: 2,
            prompt_tokens: 30,
            completion_tokens: 3,
        }
    );
    let batch2 = vec![(with_key(row("s5", 5), "key_s", c, u32::MAX, 4), Some(P))];
    store.insert_batch(&batch2).await.unwrap();
    assert_eq!(
        store.spend("key_s", P).await.unwrap(),
        SpendTotals {
            cost_picousd: a + b + c,
            requests: 3,
            prompt_tokens: 30 + i64::from(u32::MAX),
            completion_tokens: 7,
        }
    );
    assert_eq!(
        store.spend("key_unknown", P).await.unwrap(),
        SpendTotals::default()
    );
}

async fn spend_periods_are_separate(store: &Store) {
    const DAY: i64 = 86_400_000;
    let batch = vec![
        (with_key(row("p1", 10), "key_p", 100, 1, 2), Some(DAY)),
        (with_key(row("p2", 20), "key_p", 200, 3, 4), Some(2 * DAY)),
        (with_key(row("p3", 30), "key_p", 300, 5, 6), Some(DAY)),
        (with_key(row("p4", 40), "key_q", 400, 7, 8), Some(DAY)),
    ];
    store.insert_batch(&batch).await.unwrap();
    let t = |cost, requests, prompt, completion| SpendTotals {
        cost_picousd: cost,
        requests,
        prompt_tokens: prompt,
        completion_tokens: completion,
    };
    assert_eq!(store.spend("key_p", DAY).await.unwrap(), t(400, 2, 6, 8));
    assert_eq!(
        store.spend("key_p", 2 * DAY).await.unwrap(),
        t(200, 1, 3, 4)
    );
    assert_eq!(store.spend("key_p", 3 * DAY).await.unwrap(), t(0, 0, 0, 0));
    assert_eq!(store.spend("key_q", DAY).await.unwrap(), t(400, 1, 7, 8));
    assert_eq!(
        store.spend_history("key_p").await.unwrap(),
        vec![(DAY, t(400, 2, 6, 8)), (2 * DAY, t(200, 1, 3, 4))]
    );
    assert_eq!(store.spend_history("key_none").await.unwrap(), Vec::new());
}

async fn purge_before(store: &Store) {
    let mut old = full_row();
    old.id = "req_old".to_owned();
    old.ts_ms = 100;
    let mut older = row("req_older", 50);
    older.policies = old.policies.clone();
    let mut edge = row("req_edge", 250);
    edge.attempts = old.attempts.clone();
    let new = row("req_new", 300);
    store
        .insert_batch(&[
            (old.clone(), Some(0)),
            (older, None),
            (edge.clone(), None),
            (new, None),
        ])
        .await
        .unwrap();
    let spend_before = store.spend("key_abc", 0).await.unwrap();
    assert_eq!(store.purge_before(250).await.unwrap(), 2);
    assert_eq!(store.count().await.unwrap(), 2);
    assert_eq!(store.get_request("req_old").await.unwrap(), None);
    assert_eq!(store.get_request("req_edge").await.unwrap(), Some(edge));
    assert_eq!(store.purge_before(250).await.unwrap(), 0);
    // Spend is budget state: retention keeps it.
    assert_eq!(store.spend("key_abc", 0).await.unwrap(), spend_before);
    // The children went too: the same id with one attempt comes back with just that one.
    let mut again = old.clone();
    again.attempts.truncate(1);
    again.policies.clear();
    assert_eq!(
        store.insert_batch(&[(again.clone(), None)]).await.unwrap(),
        1
    );
    assert_eq!(store.get_request("req_old").await.unwrap(), Some(again));
    // More than one purge chunk.
    let many: Vec<_> = (0..(PURGE_CHUNK + 7))
        .map(|i| (row(&format!("req_bulk_{i}"), 1_000 + i), None))
        .collect();
    for chunk in many.chunks(1000) {
        store.insert_batch(chunk).await.unwrap();
    }
    let purged = store.purge_before(1_000_000).await.unwrap();
    assert_eq!(purged, u64::try_from(PURGE_CHUNK).unwrap() + 7 + 3);
    assert_eq!(store.count().await.unwrap(), 0);
}

async fn nul_bytes_do_not_poison_a_batch(store: &Store) {
    let mut r = row("req_nul", 1);
    r.error_code = Some("bad\0code".to_owned());
    r.attempts.push(AttemptRecord {
        model: "m".to_owned(),
        provider: "p".to_owned(),
        outcome: "error".to_owned(),
        status: Some(500),
        latency_ms: 1.0,
        detail: Some("upstream said \0\0 nothing".to_owned()),
    });
    r.policies.push(PolicyRecord {
        policy: "p".to_owned(),
        outcome: "allow".to_owned(),
        annotations: vec!["a\0b".to_owned()],
    });
    let ok = row("req_ok", 2);
    assert_eq!(
        store
            .insert_batch(&[(r.clone(), None), (ok.clone(), None)])
            .await
            .unwrap(),
        2
    );
    let got = store.get_request("req_nul").await.unwrap().unwrap();
    // Neither backend keeps NUL in text columns (Postgres TEXT cannot hold it; SQLite batches
    // travel through JSON functions): it becomes U+FFFD.
    let expect = |s: &str| s.replace('\0', "\u{FFFD}");
    assert_eq!(
        got.error_code.as_deref(),
        Some(expect("bad\0code").as_str())
    );
    assert_eq!(
        got.attempts[0].detail.as_deref(),
        Some(expect("upstream said \0\0 nothing").as_str())
    );
    // Annotations are JSON text: NUL is escaped and survives on both.
    assert_eq!(got.policies, r.policies);
    assert_eq!(store.get_request("req_ok").await.unwrap(), Some(ok));
}

async fn keys(store: &Store) {
    assert_eq!(store.list_keys().await.unwrap(), Vec::new());
    let mut k1 = key("key_1", "aa11", 2_000);
    k1.routes = vec!["default".to_owned(), "smart".to_owned()];
    k1.models = vec!["gpt-4o-mini".to_owned()];
    k1.budget_picousd = Some(5_000_000_000_000);
    k1.budget_period = "month".to_owned();
    k1.rpm = Some(60);
    k1.tpm = Some(u32::MAX);
    let k2 = key("key_2", "bb22", 1_000);
    let k3 = key("key_3", "cc33", 3_000);
    for k in [&k1, &k2, &k3] {
        store.create_key(k).await.unwrap();
    }
    assert_eq!(
        store.list_keys().await.unwrap(),
        vec![k2.clone(), k1.clone(), k3.clone()]
    );
    assert_eq!(store.get_key("key_1").await.unwrap(), Some(k1.clone()));
    assert_eq!(store.get_key("key_x").await.unwrap(), None);
    assert_eq!(store.key_by_hash("bb22").await.unwrap(), Some(k2.clone()));
    assert_eq!(store.key_by_hash("ffff").await.unwrap(), None);

    assert!(store.revoke_key("key_1", 9_000).await.unwrap());
    assert!(!store.revoke_key("key_1", 9_999).await.unwrap());
    assert!(!store.revoke_key("key_x", 9_000).await.unwrap());
    let revoked = store.get_key("key_1").await.unwrap().unwrap();
    assert_eq!(revoked.revoked_ms, Some(9_000));
    assert_eq!(
        store.key_by_hash("aa11").await.unwrap().unwrap().revoked_ms,
        Some(9_000)
    );

    let dup_hash = store.create_key(&key("key_4", "aa11", 4_000)).await;
    assert!(
        matches!(dup_hash, Err(StoreError::Conflict(_))),
        "duplicate hash: {dup_hash:?}"
    );
    let dup_id = store.create_key(&key("key_2", "dd44", 4_000)).await;
    assert!(
        matches!(dup_id, Err(StoreError::Conflict(_))),
        "duplicate id: {dup_id:?}"
    );
    assert_eq!(store.list_keys().await.unwrap().len(), 3);
}

async fn writer_5000_rows_from_many_tasks(store: &Store) {
    const TASKS: usize = 5;
    const PER_TASK: usize = 1_000;
    let started = Instant::now();
    let writer = Writer::spawn(
        store.clone(),
        WriterConfig::default(),
        Arc::new(|r: &RequestRecord| r.key_id.as_ref().map(|_| 0)),
    );
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let writer = writer.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..PER_TASK {
                writer.record(with_key(row(&format!("req_w{t}_{i}"), 1), "key_w", 3, 2, 1));
                if i % 100 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let stats = writer.shutdown().await;
    let elapsed = started.elapsed();
    eprintln!(
        "{}: writer wrote 5000 rows from {TASKS} tasks in {elapsed:?} ({} batches)",
        store.backend(),
        stats.batches
    );
    assert_eq!(stats.dropped, 0);
    assert_eq!(stats.failed, 0);
    assert_eq!(stats.written, 5_000);
    assert_eq!(stats.queued, 0);
    assert!(stats.batches >= 5_000 / 256);
    assert_eq!(store.count().await.unwrap(), 5_000);
    assert_eq!(
        store.spend("key_w", 0).await.unwrap(),
        SpendTotals {
            cost_picousd: 15_000,
            requests: 5_000,
            prompt_tokens: 10_000,
            completion_tokens: 5_000,
        }
    );
}

async fn writer_tiny_capacity_counts_drops(store: &Store) {
    const PUSHED: u64 = 1_000;
    let writer = Writer::spawn(
        store.clone(),
        WriterConfig {
            capacity: 4,
            batch_rows: 2,
            interval: Duration::from_millis(10),
        },
        no_period(),
    );
    // Synchronously, on a current-thread runtime: the task cannot drain meanwhile.
    for i in 0..PUSHED {
        writer.record(row(&format!("req_t{i}"), 1));
    }
    let during = writer.stats();
    assert_eq!(during.queued, 4);
    assert_eq!(during.dropped, PUSHED - 4);
    let stats = writer.shutdown().await;
    assert_eq!(stats.written + stats.dropped, PUSHED);
    assert_eq!(stats.written, 4);
    assert_eq!(stats.failed, 0);
    assert_eq!(stats.queued, 0);
    assert_eq!(store.count().await.unwrap(), 4);
}

async fn writer_record_after_shutdown_is_dropped(store: &Store) {
    let writer = Writer::spawn(store.clone(), WriterConfig::default(), no_period());
    for i in 0..3 {
        writer.record(row(&format!("req_a{i}"), 1));
    }
    let stats = writer.shutdown().await;
    assert_eq!((stats.written, stats.dropped), (3, 0));
    writer.record(row("req_late", 1));
    writer.clone().record(row("req_later", 1));
    let again = writer.shutdown().await;
    assert_eq!((again.written, again.dropped, again.queued), (3, 2, 0));
    assert_eq!(store.count().await.unwrap(), 3);
    assert_eq!(store.get_request("req_late").await.unwrap(), None);
}

async fn writer_flushes_on_interval(store: &Store) {
    let writer = Writer::spawn(
        store.clone(),
        WriterConfig {
            capacity: 100,
            batch_rows: 1_000,
            interval: Duration::from_millis(30),
        },
        no_period(),
    );
    for i in 0..3 {
        writer.record(row(&format!("req_i{i}"), 1));
    }
    // Far below batch_rows: only the interval can flush these.
    wait_for_count(store, 3).await;
    writer.record(row("req_i3", 1));
    wait_for_count(store, 4).await;
    let stats = writer.shutdown().await;
    assert_eq!((stats.written, stats.batches), (4, 2));
}

async fn writer_counts_failed_batches(store: &Store) {
    // A closed pool makes every insert fail: after the retries the rows count as failed.
    store.close().await;
    let writer = Writer::spawn(store.clone(), WriterConfig::default(), no_period());
    for i in 0..10 {
        writer.record(row(&format!("req_f{i}"), 1));
    }
    let started = Instant::now();
    let stats = writer.shutdown().await;
    assert_eq!(
        (stats.written, stats.failed, stats.dropped, stats.queued),
        (0, 10, 0, 0)
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1_000),
        "retried with backoff"
    );
}

async fn retention_purges_old_rows(store: &Store) {
    let now = now_ms();
    store
        .insert_batch(&[
            (row("req_ancient", now - 7_200_000), None),
            (row("req_recent", now), None),
        ])
        .await
        .unwrap();
    let task = spawn_retention(
        store.clone(),
        Duration::from_secs(3_600),
        Duration::from_millis(20),
    );
    wait_for_count(store, 1).await;
    task.abort();
    assert!(store.get_request("req_recent").await.unwrap().is_some());
}

// ---------------------------------------------------------------------------
// Backend-independent
// ---------------------------------------------------------------------------

#[test]
fn urls_are_shown_without_their_password() {
    assert_eq!(
        redacted_url("postgres://u:hunter2@127.0.0.1:5432/db"),
        "postgres://u:***@127.0.0.1:5432/db"
    );
    assert_eq!(
        redacted_url("sqlite://.switchyard/x.db"),
        "sqlite://.switchyard/x.db"
    );
}

#[tokio::test]
async fn connect_error_never_shows_the_password() {
    let options = StoreOptions {
        max_connections: None,
        acquire_timeout: Duration::from_millis(500),
    };
    for url in [
        "postgres://u:hunter2@127.0.0.1:1/db",
        "postgresql://u:hunter2@127.0.0.1:1/db?sslmode=disable",
    ] {
        let err = Store::connect_with(url, &options).await.unwrap_err();
        assert!(matches!(err, StoreError::Connect { .. }), "{err:?}");
        let shown = format!("{err} / {err:?}");
        eprintln!("connect error: {err}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("127.0.0.1:1"), "{shown}");
    }
    // A URL sqlx cannot parse.
    let err = Store::connect("postgres://u:hunter2@[::1/db")
        .await
        .unwrap_err();
    let shown = format!("{err} / {err:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[tokio::test]
async fn wrong_password_error_never_shows_it() {
    let Some(url) = postgres_url("wrong_password_error_never_shows_it") else {
        return;
    };
    // postgres://user:password@host/...: swap the password for a wrong one.
    let (scheme, rest) = url.split_once("://").unwrap();
    let (userinfo, hostpart) = rest.split_once('@').unwrap();
    let user = userinfo.split(':').next().unwrap();
    let bad = format!("{scheme}://{user}:hunter2-wrong@{hostpart}");
    let err = Store::connect(&bad).await.unwrap_err();
    let shown = format!("{err} / {err:?}");
    assert!(matches!(err, StoreError::Connect { .. }), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[tokio::test]
async fn unsupported_scheme_is_named() {
    let err = Store::connect("mysql://root:s3cret@localhost/db")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Url(s) if s == "mysql"),
        "{err:?}"
    );
    let shown = err.to_string();
    assert!(
        shown.contains("`mysql`") && !shown.contains("s3cret"),
        "{shown}"
    );
    assert!(matches!(
        Store::connect("").await.unwrap_err(),
        StoreError::Url(s) if s == "<none>"
    ));
}

#[tokio::test]
async fn sqlite_memory_store_is_shared_and_works() {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    assert_eq!(store.backend(), "sqlite");
    // Concurrent users all see the same (single-connection) database.
    let mut handles = Vec::new();
    for i in 0..4 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            store
                .insert_batch(&[(row(&format!("req_m{i}"), i), None)])
                .await
                .unwrap();
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    assert_eq!(store.count().await.unwrap(), 4);
    store.create_key(&key("key_m", "mm", 1)).await.unwrap();
    assert_eq!(store.list_keys().await.unwrap().len(), 1);
    store.close().await;
}

#[tokio::test]
async fn sqlite_creates_missing_directories_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/a/b/gateway.db", dir.path().display());
    let store = Store::connect(&url).await.unwrap();
    store.insert_batch(&[(full_row(), Some(0))]).await.unwrap();
    store.close().await;
    // Reopening runs the (already applied) migrations again and keeps the data.
    let store = Store::connect(&url).await.unwrap();
    assert_eq!(
        store.get_request(&full_row().id).await.unwrap(),
        Some(full_row())
    );
    let Store::Sqlite(s) = &store else {
        unreachable!()
    };
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(s.pool())
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(s.pool())
        .await
        .unwrap();
    assert_eq!(fk, 1);
    store.close().await;
}

#[test]
fn redact_removes_raw_and_decoded_password() {
    let url = "postgres://user:p%40ss%2Fw0rd@db:5432/x";
    assert_eq!(
        redact("a p%40ss%2Fw0rd b p@ss/w0rd c", url),
        "a *** b *** c"
    );
    assert_eq!(redact("nothing here", "postgres://db/x"), "nothing here");
    assert_eq!(redact("user only", "postgres://user@db/x"), "user only");
}
