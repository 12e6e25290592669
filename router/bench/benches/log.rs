//! Rows per second into the request log (issue 17, "the request log must keep up"): one
//! `insert_batch` transaction of 64, 256 and 1,024 rows shaped like the gateway's (one attempt,
//! four policies with one or two annotations each, no tags), and the [`Writer`] draining a full
//! queue of 10,000 rows. SQLite is a file in a temp dir opened by `Store::connect` (the
//! gateway's WAL settings); Postgres runs too when `SWITCHYARD_TEST_POSTGRES_URL` is set, each
//! benchmark in a fresh schema that is dropped afterwards (as the store's tests do).
//!
//!   cargo bench -p switchyard-bench --bench log
//!   SWITCHYARD_TEST_POSTGRES_URL=postgres://… cargo bench -p switchyard-bench --bench log
//!
//! Wall-clock time, building the rows left out: the figure is how many rows the writer's one
//! task can commit per second. Each benchmark starts on an empty database, which then grows
//! by every row it inserts (as the gateway's does).
#![allow(clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use sqlx::Connection;
use sqlx::postgres::PgConnection;
use switchyard_store::{
    AttemptRecord, PolicyRecord, RequestLog, RequestRecord, Store, StoreOptions, Writer,
    WriterConfig,
};
use tokio::runtime::Runtime;

/// Batch sizes of `insert_batch`: the writer's default (256), a quarter and four times it.
const BATCHES: [usize; 3] = [64, 256, 1_024];

/// Rows queued before the writer drains them (its default capacity).
const QUEUED: usize = 10_000;

/// A row id as the gateway makes them (`switchyard_types::new_id`: `req_` + 24 hex digits,
/// time-ordered). `SWITCHYARD_BENCH_IDS=random` gives the ids of before issue 17 (24 hex digits
/// in no order), to measure what the order is worth.
fn id(n: u64) -> String {
    static RANDOM: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if !*RANDOM.get_or_init(|| std::env::var("SWITCHYARD_BENCH_IDS").is_ok_and(|v| v == "random")) {
        return switchyard_types::new_id("req_");
    }
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    format!("req_{z:016x}{:08x}", n as u32)
}

/// One row as the gateway fills it for a chat completion with four policies on.
fn row(n: u64) -> RequestRecord {
    let policy = |name: &str, outcome: &str, annotations: &[&str]| PolicyRecord {
        policy: name.to_owned(),
        outcome: outcome.to_owned(),
        annotations: annotations.iter().map(|a| (*a).to_owned()).collect(),
    };
    RequestRecord {
        id: id(n),
        client_request_id: None,
        ts_ms: 1_764_892_800_000 + i64::try_from(n).unwrap_or(0),
        key_id: Some(format!("key_{:04}", n % 16)),
        endpoint: "/v1/chat/completions".to_owned(),
        route: "default".to_owned(),
        task: None,
        model: Some("gpt-4o-mini".to_owned()),
        provider: Some("openai".to_owned()),
        status: 200,
        error_code: None,
        stream: false,
        cache: "miss".to_owned(),
        prompt_tokens: 9,
        completion_tokens: 7,
        cached_tokens: 0,
        reasoning_tokens: 0,
        usage_estimated: false,
        cost_picousd: 5_550_000,
        latency_ms: 0.412 + (n % 7) as f64 * 0.01,
        ttft_ms: None,
        overhead_ms: 0.071,
        shadow_of: None,
        response_text: None,
        tags: Default::default(),
        billed: true,
        attempts: vec![AttemptRecord {
            model: "gpt-4o-mini".to_owned(),
            provider: "openai".to_owned(),
            outcome: "ok".to_owned(),
            status: Some(200),
            latency_ms: 0.33,
            detail: None,
            cost_picousd: None,
        }],
        policies: vec![
            policy("pii-redact", "continue", &["redacted: nothing found"]),
            policy(
                "context-budget",
                "continue",
                &["trim_skipped: fits the window", "tokens: 21"],
            ),
            policy("cost-cap", "continue", &["cost_cap: under the cap"]),
            policy(
                "prefer-local",
                "continue",
                &[
                    "prefer_local: no local candidate",
                    "candidates: openai/gpt-4o-mini",
                ],
            ),
        ],
    }
}

/// `n` fresh rows (ids never used before in this process).
fn rows(n: usize) -> Vec<RequestRecord> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let first = SEQ.fetch_add(n as u64, Ordering::Relaxed);
    (first..first + n as u64).map(row).collect()
}

/// An empty database and what to do to remove it.
struct Db {
    store: Store,
    cleanup: Cleanup,
}

enum Cleanup {
    Sqlite(tempfile::TempDir),
    Postgres { admin_url: String, schema: String },
}

impl Db {
    async fn sqlite() -> Db {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}/log.db", dir.path().display());
        let store = Store::connect(&url).await.expect("sqlite store");
        Db {
            store,
            cleanup: Cleanup::Sqlite(dir),
        }
    }

    /// A fresh schema of the test database (the statement is built by the server with
    /// `format('%I')`), with the store's migrations run in it.
    async fn postgres(admin_url: &str) -> Db {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let schema = format!(
            "bench_log_{}_{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        schema_ddl(admin_url, &schema, "CREATE SCHEMA %I").await;
        let sep = if admin_url.contains('?') { '&' } else { '?' };
        let url = format!("{admin_url}{sep}options[search_path]={schema}");
        let options = StoreOptions {
            max_connections: Some(4),
            ..StoreOptions::default()
        };
        let store = Store::connect_with(&url, &options)
            .await
            .expect("postgres store");
        Db {
            store,
            cleanup: Cleanup::Postgres {
                admin_url: admin_url.to_owned(),
                schema,
            },
        }
    }

    async fn finish(self) {
        self.store.close().await;
        match self.cleanup {
            Cleanup::Sqlite(dir) => drop(dir),
            Cleanup::Postgres { admin_url, schema } => {
                schema_ddl(&admin_url, &schema, "DROP SCHEMA %I CASCADE").await;
            }
        }
    }
}

/// Runs `ddl` (`CREATE SCHEMA %I` / `DROP SCHEMA %I CASCADE`) with the schema's name quoted
/// by the server.
async fn schema_ddl(admin_url: &str, schema: &str, ddl: &str) {
    let mut admin = PgConnection::connect(admin_url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to SWITCHYARD_TEST_POSTGRES_URL: {e}"));
    sqlx::query("SELECT set_config('switchyard.bench_schema', $1, false)")
        .bind(schema)
        .execute(&mut admin)
        .await
        .expect("set schema name");
    sqlx::query("SELECT set_config('switchyard.bench_ddl', $1, false)")
        .bind(ddl)
        .execute(&mut admin)
        .await
        .expect("set ddl");
    sqlx::query(
        "DO $$ BEGIN EXECUTE format(current_setting('switchyard.bench_ddl'), \
         current_setting('switchyard.bench_schema')); END $$",
    )
    .execute(&mut admin)
    .await
    .expect("schema ddl");
    admin.close().await.expect("close admin connection");
}

fn postgres_url() -> Option<String> {
    std::env::var("SWITCHYARD_TEST_POSTGRES_URL")
        .ok()
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty())
}

fn bench_backend<M: criterion::measurement::Measurement<Value = Duration>>(
    group: &mut BenchmarkGroup<'_, M>,
    rt: &Runtime,
    backend: &str,
    open: &dyn Fn() -> Db,
) {
    for n in BATCHES {
        let db = open();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("{backend}/insert_batch/{n}"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut spent = Duration::ZERO;
                    for _ in 0..iters {
                        let batch = rows(n);
                        let start = Instant::now();
                        let inserted = db.store.insert_batch(&batch).await.expect("insert");
                        spent += start.elapsed();
                        assert_eq!(inserted, n as u64);
                    }
                    spent
                })
            })
        });
        rt.block_on(db.finish());
    }

    // The writer's task with its default settings, from a full queue to the last commit.
    let db = open();
    group.throughput(Throughput::Elements(QUEUED as u64));
    group.bench_function(format!("{backend}/writer/{QUEUED}"), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let queued = rows(QUEUED);
                    let writer = Writer::spawn(db.store.clone(), WriterConfig::default());
                    let start = Instant::now();
                    for r in queued {
                        writer.record(r);
                    }
                    let stats = writer.shutdown().await;
                    spent += start.elapsed();
                    assert_eq!((stats.written, stats.dropped), (QUEUED as u64, 0));
                }
                spent
            })
        })
    });
    rt.block_on(db.finish());
}

fn log(c: &mut Criterion) {
    // One thread, as the writer is one task; SQLite's connection runs on a thread of sqlx's.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("log");
    group.measurement_time(Duration::from_secs(6));
    bench_backend(&mut group, &rt, "sqlite", &|| rt.block_on(Db::sqlite()));
    if let Some(url) = postgres_url() {
        bench_backend(&mut group, &rt, "postgres", &|| {
            rt.block_on(Db::postgres(&url))
        });
    } else {
        eprintln!("postgres skipped: SWITCHYARD_TEST_POSTGRES_URL is not set");
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .sample_size(10)
}

criterion_group! {
    name = benches;
    config = config();
    targets = log
}
criterion_main!(benches);
