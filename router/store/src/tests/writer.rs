//! The request-log writer: batching, drops, shutdown, failures; and the ledger beside it.

use super::*;

pub(super) async fn writer_5000_rows_from_many_tasks(store: &Store) {
    const TASKS: usize = 5;
    const PER_TASK: usize = 1_000;
    let started = Instant::now();
    let writer = Writer::spawn(store.clone(), WriterConfig::default());
    let ledger = Ledger::spawn(store.clone(), LedgerConfig::default());
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let writer = writer.clone();
        let ledger = ledger.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..PER_TASK {
                writer.record(with_key(row(&format!("req_w{t}_{i}"), 1), "key_w", 3, 2, 1));
                ledger.add("key_w", 0, totals(3, 1, 2, 1));
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
    let spent = ledger.shutdown().await;
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
    // Adaptive batches: never more than `max_batch_rows` rows in one transaction.
    let max = u64::try_from(crate::writer::max_batch_rows(
        WriterConfig::default().batch_rows,
    ))
    .unwrap();
    assert!(
        stats.largest_batch >= 1 && stats.largest_batch <= max,
        "{stats:?}"
    );
    assert!(stats.batches >= 5_000_u64.div_ceil(max), "{stats:?}");
    assert_eq!(store.count().await.unwrap(), 5_000);
    assert_eq!((spent.written_picousd, spent.lost_picousd), (15_000, 0));
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

pub(super) async fn writer_tiny_capacity_counts_drops(store: &Store) {
    const PUSHED: u64 = 1_000;
    let writer = Writer::spawn(
        store.clone(),
        WriterConfig {
            capacity: 4,
            batch_rows: 2,
            interval: Duration::from_millis(10),
        },
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

/// Issue 12, point 8: a full log queue drops rows (counted), and the spend of those very
/// requests, fed to the ledger alongside as the gateway does, is all written.
pub(super) async fn writer_tiny_queue_drops_rows_but_ledger_loses_nothing(store: &Store) {
    const PUSHED: i64 = 1_000;
    let writer = Writer::spawn(
        store.clone(),
        WriterConfig {
            capacity: 4,
            batch_rows: 2,
            interval: Duration::from_millis(10),
        },
    );
    let ledger = Ledger::spawn(
        store.clone(),
        LedgerConfig {
            interval: Duration::from_millis(10),
        },
    );
    let mut want = 0;
    // Synchronously, on a current-thread runtime: neither task can drain meanwhile.
    for i in 0..PUSHED {
        let cost = 1_000_000_007 + i;
        want += cost;
        let key = if i % 3 == 0 { "key_a" } else { "key_b" };
        writer.record(with_key(row(&format!("req_q{i}"), 1), key, cost, 5, 1));
        ledger.add(key, 0, totals(cost, 1, 5, 1));
    }
    assert_eq!(writer.stats().dropped, 996);
    assert_eq!(ledger.stats().pending_picousd, want);
    let rows = writer.shutdown().await;
    let spent = ledger.shutdown().await;
    assert_eq!((rows.written, rows.dropped), (4, 996));
    assert_eq!(store.count().await.unwrap(), 4);
    assert_eq!(
        spent,
        LedgerStats {
            pending_picousd: 0,
            written_picousd: want,
            lost_picousd: 0,
            flushes: spent.flushes,
            failed_flushes: 0,
        }
    );
    let a = store.spend("key_a", 0).await.unwrap();
    let b = store.spend("key_b", 0).await.unwrap();
    assert_eq!(a.cost_picousd + b.cost_picousd, want);
    assert_eq!((a.requests, b.requests), (334, 666));
    assert_eq!(a.prompt_tokens + b.prompt_tokens, 5 * PUSHED);
}

pub(super) async fn writer_record_after_shutdown_is_dropped(store: &Store) {
    let writer = Writer::spawn(store.clone(), WriterConfig::default());
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

pub(super) async fn writer_flushes_on_interval(store: &Store) {
    let writer = Writer::spawn(
        store.clone(),
        WriterConfig {
            capacity: 100,
            batch_rows: 1_000,
            interval: Duration::from_millis(30),
        },
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

pub(super) async fn writer_counts_failed_batches(store: &Store) {
    // A closed pool makes every insert fail: after the retries the rows count as failed.
    store.close().await;
    let writer = Writer::spawn(store.clone(), WriterConfig::default());
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

/// Issue 17: rows that queued up while the writer was busy go into one larger batch (up to
/// `MAX_BATCH_FACTOR` × `batch_rows`), so a backlog costs few transactions; every row is
/// written once.
pub(super) async fn writer_drains_a_backlog_in_adaptive_batches(store: &Store) {
    const PUSHED: usize = 3_000;
    let writer = Writer::spawn(
        store.clone(),
        WriterConfig {
            capacity: 10_000,
            batch_rows: 100,
            interval: Duration::from_secs(3_600),
        },
    );
    // Synchronously, on a current-thread runtime: all 3,000 are queued before the task runs.
    for i in 0..PUSHED {
        writer.record(row(&format!("req_b{i:05}"), 1));
    }
    let stats = writer.shutdown().await;
    let max = u64::try_from(crate::writer::max_batch_rows(100)).unwrap();
    assert_eq!(max, 1_600);
    assert_eq!((stats.written, stats.dropped, stats.failed), (3_000, 0, 0));
    // 1,600 + 1,400, where fixed batches of 100 would have been 30 transactions.
    assert_eq!((stats.batches, stats.largest_batch), (2, max), "{stats:?}");
    assert_eq!(store.count().await.unwrap(), 3_000);
    assert!(store.get_request("req_b02999").await.unwrap().is_some());
}
