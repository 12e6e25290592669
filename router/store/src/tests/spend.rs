//! `SpendStore`: exact integer sums, periods, saturation.

use super::*;

pub(super) async fn spend_upsert_adds_exactly(store: &Store) {
    const P: i64 = 1_767_225_600_000;
    let a = 1_234_567_890_123_i64;
    let b = 9_876_543_210_987_i64;
    let c = 4_611_686_018_427_387_904_i64; // 2^62: exact only as an integer
    // The same key and period twice in one call: summed, not one update lost.
    store
        .add_spend(&[
            delta("key_s", P, totals(a, 1, 10, 1)),
            delta("key_s", P, totals(b, 1, 20, 2)),
        ])
        .await
        .unwrap();
    assert_eq!(
        store.spend("key_s", P).await.unwrap(),
        totals(a + b, 2, 30, 3)
    );
    store
        .add_spend(&[delta("key_s", P, totals(c, 1, i64::from(u32::MAX), 4))])
        .await
        .unwrap();
    assert_eq!(
        store.spend("key_s", P).await.unwrap(),
        totals(a + b + c, 3, 30 + i64::from(u32::MAX), 7)
    );
    store.add_spend(&[]).await.unwrap();
    assert_eq!(
        store.spend("key_s", P).await.unwrap(),
        totals(a + b + c, 3, 30 + i64::from(u32::MAX), 7)
    );
    assert_eq!(
        store.spend("key_unknown", P).await.unwrap(),
        SpendTotals::default()
    );
}

pub(super) async fn spend_periods_are_separate(store: &Store) {
    const DAY: i64 = 86_400_000;
    store
        .add_spend(&[
            delta("key_p", DAY, totals(100, 1, 1, 2)),
            delta("key_p", 2 * DAY, totals(200, 1, 3, 4)),
            delta("key_p", DAY, totals(300, 1, 5, 6)),
            delta("key_q", DAY, totals(400, 1, 7, 8)),
        ])
        .await
        .unwrap();
    assert_eq!(
        store.spend("key_p", DAY).await.unwrap(),
        totals(400, 2, 6, 8)
    );
    assert_eq!(
        store.spend("key_p", 2 * DAY).await.unwrap(),
        totals(200, 1, 3, 4)
    );
    assert_eq!(
        store.spend("key_p", 3 * DAY).await.unwrap(),
        totals(0, 0, 0, 0)
    );
    assert_eq!(
        store.spend("key_q", DAY).await.unwrap(),
        totals(400, 1, 7, 8)
    );
    assert_eq!(
        store.spend_history("key_p").await.unwrap(),
        vec![(DAY, totals(400, 2, 6, 8)), (2 * DAY, totals(200, 1, 3, 4))]
    );
    assert_eq!(store.spend_history("key_none").await.unwrap(), Vec::new());
}

/// An overflowing sum would fail the statement, and every retry of it, taking every other
/// key's spend in the same flush down with it: sums saturate instead, in SQL (when adding to
/// a stored total) and in Rust (when merging deltas of one call).
pub(super) async fn spend_saturates_instead_of_failing(store: &Store) {
    store
        .add_spend(&[delta("key_big", 0, totals(i64::MAX - 5, 1, 0, 0))])
        .await
        .unwrap();
    store
        .add_spend(&[
            delta("key_big", 0, totals(10, 1, 0, 0)),
            delta("key_other", 0, totals(42, 1, 1, 1)),
        ])
        .await
        .unwrap();
    assert_eq!(
        store.spend("key_big", 0).await.unwrap(),
        totals(i64::MAX, 2, 0, 0)
    );
    assert_eq!(
        store.spend("key_other", 0).await.unwrap(),
        totals(42, 1, 1, 1)
    );
    // Two halves in one call merge to the bound as well, and the negative bound holds.
    store
        .add_spend(&[
            delta("key_merge", 0, totals(i64::MAX, 0, 0, 0)),
            delta("key_merge", 0, totals(i64::MAX, 0, 0, 0)),
            delta("key_neg", 0, totals(i64::MIN + 1, 0, 0, 0)),
        ])
        .await
        .unwrap();
    store
        .add_spend(&[delta("key_neg", 0, totals(-2, 0, 0, 0))])
        .await
        .unwrap();
    assert_eq!(
        store.spend("key_merge", 0).await.unwrap().cost_picousd,
        i64::MAX
    );
    assert_eq!(
        store.spend("key_neg", 0).await.unwrap().cost_picousd,
        i64::MIN
    );
    // Below the bounds the sum is exact again.
    store
        .add_spend(&[delta("key_big", 0, totals(-7, 0, 0, 0))])
        .await
        .unwrap();
    assert_eq!(
        store.spend("key_big", 0).await.unwrap().cost_picousd,
        i64::MAX - 7
    );
}
