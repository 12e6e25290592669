//! The spend ledger: exact sums under concurrency, periodic flushes, failures put back and
//! retried, and what shutdown counts as lost.

use std::collections::BTreeMap;

use super::*;

fn fast() -> LedgerConfig {
    LedgerConfig {
        interval: Duration::from_millis(5),
    }
}

/// All `(period, totals)` of `key` in the store, as a map.
async fn stored(store: &Store, key: &str) -> BTreeMap<i64, SpendTotals> {
    store
        .spend_history(key)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// 10,000 adds from 8 tasks on 4 threads, over 3 keys and 2 periods, while the task flushes
/// every 5 ms: the spend table ends with exactly the sum, per key and period.
pub(super) async fn ledger_10000_adds_from_many_tasks(store: &Store) {
    const TASKS: i64 = 8;
    const PER_TASK: i64 = 1_250;
    const KEYS: [&str; 3] = ["key_x", "key_y", "key_z"];
    const PERIODS: [i64; 2] = [1_767_225_600_000, 1_769_904_000_000];
    let ledger = Ledger::spawn(store.clone(), fast());
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let ledger = ledger.clone();
        handles.push(tokio::spawn(async move {
            let mut mine: BTreeMap<(&str, i64), SpendTotals> = BTreeMap::new();
            for i in 0..PER_TASK {
                let key = KEYS[usize::try_from((t + i) % 3).unwrap()];
                let period = PERIODS[usize::try_from(i % 2).unwrap()];
                // Large, uneven costs: a lost or doubled add cannot cancel out.
                let d = totals(1_000_003 * (i % 17 + 1) + t, 1, i % 100, 1 + i % 3);
                ledger.add(key, period, d);
                let e = mine.entry((key, period)).or_default();
                *e = e.saturating_add(d);
                if i % 50 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            mine
        }));
    }
    let mut want: BTreeMap<(&str, i64), SpendTotals> = BTreeMap::new();
    for h in handles {
        for (k, d) in h.await.unwrap() {
            let e = want.entry(k).or_default();
            *e = e.saturating_add(d);
        }
    }
    let total: i64 = want.values().map(|t| t.cost_picousd).sum();
    let stats = ledger.shutdown().await;
    eprintln!(
        "{}: ledger wrote 10000 adds in {} flushes",
        store.backend(),
        stats.flushes
    );
    assert_eq!(stats.written_picousd, total);
    assert_eq!(
        (
            stats.pending_picousd,
            stats.lost_picousd,
            stats.failed_flushes
        ),
        (0, 0, 0)
    );
    assert!(stats.flushes >= 1);
    let mut requests = 0;
    for key in KEYS {
        let got = stored(store, key).await;
        let expect: BTreeMap<i64, SpendTotals> = want
            .iter()
            .filter(|((k, _), _)| *k == key)
            .map(|((_, p), t)| (*p, *t))
            .collect();
        assert_eq!(got, expect, "{key}");
        requests += got.values().map(|t| t.requests).sum::<i64>();
    }
    assert_eq!(requests, TASKS * PER_TASK);
}

/// The task writes on its own, without shutdown, and an idle ledger does nothing.
pub(super) async fn ledger_flushes_on_interval(store: &Store) {
    let ledger = Ledger::spawn(store.clone(), fast());
    ledger.add("key_i", 0, totals(11, 1, 2, 3));
    // Counted once the task has seen the commit (the store may show it a moment before).
    eventually("the first add is written", || async {
        ledger.stats().written_picousd == 11
    })
    .await;
    assert_eq!(store.spend("key_i", 0).await.unwrap(), totals(11, 1, 2, 3));
    ledger.add("key_i", 0, totals(5, 1, 0, 0));
    eventually("the second add is written", || async {
        ledger.stats().written_picousd == 16
    })
    .await;
    assert_eq!(store.spend("key_i", 0).await.unwrap(), totals(16, 2, 2, 3));
    let flushes = ledger.stats().flushes;
    assert_eq!(flushes, 2, "one flush per add here, and none while idle");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let stats = ledger.shutdown().await;
    assert_eq!(stats.flushes, flushes, "nothing pending: no write");
    assert_eq!((stats.written_picousd, stats.pending_picousd), (16, 0));
}

/// The spend table disappears (renamed) while spend keeps coming: flushes fail, are counted,
/// and the spend waits in memory; once the table is back the next tick writes all of it.
pub(super) async fn ledger_failed_flush_is_retried_and_nothing_lost(store: &Store) {
    let ledger = Ledger::spawn(store.clone(), fast());
    ledger.add("key_r", 0, totals(100, 1, 1, 1));
    eventually("written before the fault", || async {
        ledger.stats().written_picousd == 100
    })
    .await;

    exec(store, "ALTER TABLE spend RENAME TO spend_away").await;
    let mut want = 100;
    for i in 0..50 {
        ledger.add("key_r", 0, totals(1_000 + i, 1, 1, 1));
        ledger.add("key_s", 7, totals(3, 1, 0, 0));
        want += 1_000 + i;
    }
    eventually("a flush fails", || async {
        ledger.stats().failed_flushes >= 2
    })
    .await;
    let during = ledger.stats();
    assert_eq!(during.pending_picousd, want - 100 + 150);
    assert_eq!((during.written_picousd, during.lost_picousd), (100, 0));
    // More spend while the failed deltas are back in the map: merged, not replaced.
    ledger.add("key_r", 0, totals(7, 1, 0, 0));
    want += 7;

    exec(store, "ALTER TABLE spend_away RENAME TO spend").await;
    eventually("everything is written once the table is back", || async {
        ledger.stats().pending_picousd == 0
    })
    .await;
    assert_eq!(
        store.spend("key_r", 0).await.unwrap(),
        totals(want, 52, 51, 51)
    );
    assert_eq!(
        store.spend("key_s", 7).await.unwrap(),
        totals(150, 50, 0, 0)
    );
    let stats = ledger.shutdown().await;
    assert_eq!(stats.written_picousd, want + 150);
    assert_eq!(stats.lost_picousd, 0);
    assert!(stats.failed_flushes >= 2);
}

/// Shutdown with a dead store: a few tries, then exactly what was pending is counted lost.
pub(super) async fn ledger_shutdown_with_dead_store_counts_lost(store: &Store) {
    let ledger = Ledger::spawn(
        store.clone(),
        LedgerConfig {
            // Long enough that only shutdown flushes, so the pending sum is known.
            interval: Duration::from_secs(3_600),
        },
    );
    ledger.add("key_d", 0, totals(123_456_789, 1, 0, 0));
    ledger.add("key_d", 86_400_000, totals(1, 1, 0, 0));
    ledger.add("key_e", 0, totals(42, 1, 0, 0));
    let pending = ledger.stats().pending_picousd;
    assert_eq!(pending, 123_456_789 + 1 + 42);
    store.close().await;
    let stats = ledger.shutdown().await;
    assert_eq!(
        (
            stats.lost_picousd,
            stats.pending_picousd,
            stats.written_picousd
        ),
        (pending, 0, 0)
    );
    assert_eq!(stats.flushes, 0);
    assert_eq!(stats.failed_flushes, 4, "one try and three retries");
    // Idempotent: the same final counters.
    assert_eq!(ledger.shutdown().await, stats);
}

/// After shutdown nothing is silently ignored: late spend is counted lost, never written.
pub(super) async fn ledger_add_after_shutdown_is_lost(store: &Store) {
    let ledger = Ledger::spawn(store.clone(), LedgerConfig::default());
    ledger.add("key_l", 0, totals(10, 1, 0, 0));
    let stats = ledger.shutdown().await;
    assert_eq!((stats.written_picousd, stats.lost_picousd), (10, 0));
    ledger.add("key_l", 0, totals(5, 1, 0, 0));
    ledger.clone().add("key_m", 0, totals(6, 1, 0, 0));
    let after = ledger.stats();
    assert_eq!(
        (
            after.written_picousd,
            after.lost_picousd,
            after.pending_picousd
        ),
        (10, 11, 0)
    );
    assert_eq!(ledger.shutdown().await, after);
    assert_eq!(store.spend("key_l", 0).await.unwrap(), totals(10, 1, 0, 0));
    assert_eq!(
        store.spend("key_m", 0).await.unwrap(),
        SpendTotals::default()
    );
}

/// Dropping every handle is not a way to lose spend: the task writes what is pending and exits.
pub(super) async fn ledger_dropped_without_shutdown_still_writes(store: &Store) {
    let ledger = Ledger::spawn(
        store.clone(),
        LedgerConfig {
            interval: Duration::from_secs(3_600),
        },
    );
    ledger.add("key_g", 0, totals(77, 1, 0, 0));
    let other = ledger.clone();
    drop(ledger);
    other.add("key_g", 0, totals(23, 1, 0, 0));
    drop(other);
    eventually("the last handle's drop flushes", || async {
        store.spend("key_g", 0).await.unwrap() == totals(100, 2, 0, 0)
    })
    .await;
}
