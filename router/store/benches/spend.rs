//! Which is cheaper per request (issue 12, point 8): a synchronous spend increment, or the
//! coalescing ledger?
//!
//! * `sync_add_spend`: one awaited `add_spend` of one delta, as a handler would do before
//!   answering: one upsert statement, one transaction.
//! * `ledger_add_only`: `Ledger::add` alone, what the request path pays; the task flushes
//!   every 200 ms (the default) in the background meanwhile.
//! * `ledger_add/N`: `Ledger::add` N times, then one flush (spawn a ledger, N adds, `shutdown`,
//!   which writes once): the flush and the task's start and stop are amortised over the N adds.
//!   N = 1 is the worst case (one write per add); at the default 200 ms interval a key sees
//!   hundreds or thousands of adds per flush under load.
//!
//! Keys cycle over 16 ids, one period. SQLite is a WAL file in a temp dir (the gateway's
//! default). With `SWITCHYARD_TEST_POSTGRES_URL` set, the same runs on Postgres, in a schema
//! `switchyard_bench` that is dropped at the end.
//!
//! Criterion reports wall time per add. The process CPU per add (every thread, sqlx's SQLite
//! worker and the runtime included) is printed after each group from `/proc/self/stat`.
//!
//! `cargo bench --workspace --bench spend -- --measurement-time 3 --warm-up-time 1`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use sqlx::Connection;
use sqlx::postgres::PgConnection;
use switchyard_store::{Ledger, LedgerConfig, SpendDelta, SpendStore, SpendTotals, Store};
use tokio::runtime::Runtime;

const KEYS: usize = 16;
const PERIOD: i64 = 1_767_225_600_000;
const BATCHES: [u64; 3] = [1, 100, 1_000];

fn key_ids() -> Vec<String> {
    (0..KEYS).map(|i| format!("key_bench_{i:02}")).collect()
}

fn totals(i: u64) -> SpendTotals {
    SpendTotals {
        cost_picousd: 1_000_003 + i64::try_from(i % 97).unwrap(),
        requests: 1,
        prompt_tokens: 120,
        completion_tokens: 40,
    }
}

/// Process CPU time (user + system, all threads), from `/proc/self/stat`.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // The kernel's USER_HZ is 100 on every Linux this runs on.
    Some(Duration::from_millis((utime + stime) * 10))
}

/// Runs `op(n)` until about 2 s of wall time have passed and prints CPU and wall per add.
fn report_cpu(label: &str, adds_per_call: u64, mut op: impl FnMut(u64)) {
    let (Some(cpu0), wall0) = (cpu_time(), Instant::now()) else {
        return;
    };
    let mut adds = 0u64;
    let mut i = 0u64;
    while wall0.elapsed() < Duration::from_secs(2) {
        op(i);
        adds += adds_per_call;
        i += 1;
    }
    let wall = wall0.elapsed();
    let cpu = cpu_time().unwrap_or(cpu0).saturating_sub(cpu0);
    let per = |d: Duration| d.as_secs_f64() * 1e6 / adds as f64;
    println!(
        "cpu {label}: {:.2} µs CPU / add, {:.2} µs wall / add ({adds} adds)",
        per(cpu),
        per(wall)
    );
}

fn sync_add(rt: &Runtime, store: &Store, keys: &[String], i: u64) {
    let delta = SpendDelta {
        key_id: keys[usize::try_from(i).unwrap() % KEYS].clone(),
        period_start_ms: PERIOD,
        totals: totals(i),
    };
    rt.block_on(store.add_spend(&[delta])).unwrap();
}

/// N adds into a fresh ledger, then its one flush (`shutdown`).
fn ledger_batch(rt: &Runtime, store: &Store, keys: &[String], n: u64) {
    let ledger = {
        let _in_runtime = rt.enter();
        Ledger::spawn(
            store.clone(),
            LedgerConfig {
                // Only `shutdown` flushes: one write per batch of N.
                interval: Duration::from_secs(3_600),
            },
        )
    };
    for i in 0..n {
        ledger.add(&keys[usize::try_from(i).unwrap() % KEYS], PERIOD, totals(i));
    }
    let stats = rt.block_on(ledger.shutdown());
    assert_eq!(stats.lost_picousd, 0);
}

fn bench_backend(c: &mut Criterion, rt: &Runtime, name: &str, store: &Store) {
    let keys = key_ids();
    let mut g = c.benchmark_group(format!("spend_per_request/{name}"));
    g.bench_function("sync_add_spend", |b| {
        let mut i = 0u64;
        b.iter(|| {
            sync_add(rt, store, &keys, i);
            i += 1;
        });
    });
    // What the request path itself pays: the add alone, the flushes left to the task.
    let ledger = {
        let _in_runtime = rt.enter();
        Ledger::spawn(store.clone(), LedgerConfig::default())
    };
    g.bench_function("ledger_add_only", |b| {
        let mut i = 0u64;
        b.iter(|| {
            ledger.add(&keys[usize::try_from(i).unwrap() % KEYS], PERIOD, totals(i));
            i += 1;
        });
    });
    for n in BATCHES {
        g.bench_with_input(BenchmarkId::new("ledger_add", n), &n, |b, &n| {
            // One criterion iteration = one add; the batches' flushes are included.
            b.iter_custom(|iters| {
                let started = Instant::now();
                let mut left = iters;
                while left > 0 {
                    let now = left.min(n);
                    ledger_batch(rt, store, &keys, now);
                    left -= now;
                }
                started.elapsed()
            });
        });
    }
    g.finish();
    report_cpu(&format!("{name} sync_add_spend"), 1, |i| {
        sync_add(rt, store, &keys, i);
    });
    report_cpu(&format!("{name} ledger_add_only"), 1, |i| {
        ledger.add(&keys[usize::try_from(i).unwrap() % KEYS], PERIOD, totals(i));
    });
    let stats = rt.block_on(ledger.shutdown());
    assert_eq!((stats.lost_picousd, stats.pending_picousd), (0, 0));
    for n in BATCHES {
        report_cpu(&format!("{name} ledger_add/{n}"), n, |_| {
            ledger_batch(rt, store, &keys, n);
        });
    }
}

fn spend(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/bench.db", dir.path().display());
    let sqlite = rt.block_on(Store::connect(&url)).unwrap();
    bench_backend(c, &rt, "sqlite_file", &sqlite);
    rt.block_on(sqlite.close());

    let Ok(admin_url) = std::env::var("SWITCHYARD_TEST_POSTGRES_URL") else {
        println!("postgres: skipped (SWITCHYARD_TEST_POSTGRES_URL not set)");
        return;
    };
    // A plain connection: a `Store` would run the migrations in the admin's own schema.
    let mut admin = rt.block_on(PgConnection::connect(&admin_url)).unwrap();
    rt.block_on(sqlx::query("DROP SCHEMA IF EXISTS switchyard_bench CASCADE").execute(&mut admin))
        .unwrap();
    rt.block_on(sqlx::query("CREATE SCHEMA switchyard_bench").execute(&mut admin))
        .unwrap();
    let sep = if admin_url.contains('?') { '&' } else { '?' };
    let url = format!("{admin_url}{sep}options[search_path]=switchyard_bench");
    let pg = rt.block_on(Store::connect(&url)).unwrap();
    bench_backend(c, &rt, "postgres", &pg);
    rt.block_on(pg.close());
    rt.block_on(sqlx::query("DROP SCHEMA switchyard_bench CASCADE").execute(&mut admin))
        .unwrap();
    rt.block_on(admin.close()).unwrap();
}

criterion_group!(benches, spend);
criterion_main!(benches);
