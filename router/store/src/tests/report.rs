//! Spend reports (migration 0006): sums of the billed rows per group and period, equal to the
//! sum of the rows by hand and to the ledger's totals; tags and `billed` round trip; the
//! SQLite plan is a covering index scan.

use super::*;

const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;
/// 2026-12-04T00:00:00Z.
const D0: i64 = 1_796_342_400_000;

fn q(group_by: GroupBy, period: Period, from_ms: i64, to_ms: i64) -> ReportQuery {
    ReportQuery {
        group_by,
        period,
        from_ms,
        to_ms,
        key_id: None,
        limit: 1000,
    }
}

fn tagged(mut r: RequestRecord, tags: &[(&str, &str)]) -> RequestRecord {
    r.tags = tags
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    r
}

/// Rows over two days and two keys, with a cached answer (cost 0), a failure, an unbilled
/// shadow, a billed one, a row without a key and one outside the range.
fn fixture() -> Vec<RequestRecord> {
    let mut cached = with_key(row("r_cached", D0 + 10), "key_a", 0, 5, 7);
    cached.cache = "hit".to_owned();
    let mut failed = with_key(row("r_failed", D0 + HOUR + 1), "key_a", 1_234, 9, 0);
    failed.status = 502;
    failed.model = None;
    failed.provider = None;
    let mut unbilled = with_key(row("r_shadow", D0 + 20), "key_a", 50_000, 1, 1);
    unbilled.shadow_of = Some("r_a1".to_owned());
    unbilled.billed = false;
    let mut billed = with_key(row("r_shadow_b", D0 + 30), "key_b", 70, 1, 1);
    billed.shadow_of = Some("r_b1".to_owned());
    billed.model = Some("claude-3-5-haiku".to_owned());
    billed.provider = Some("anthropic".to_owned());
    vec![
        tagged(
            with_key(row("r_a1", D0 + 5), "key_a", 1_000_003, 10, 20),
            &[("team", "red")],
        ),
        tagged(
            with_key(row("r_a2", D0 + HOUR + 5), "key_a", 2_000_000, 1, 2),
            &[("team", "blue"), ("project", "x")],
        ),
        cached,
        failed,
        unbilled,
        tagged(
            with_key(row("r_b1", D0 + 2 * HOUR), "key_b", 7, 3, 4),
            &[("team", "red")],
        ),
        billed,
        with_key(row("r_b2", D0 + DAY + 1), "key_b", 11, 1, 1),
        row("r_open", D0 + 40),
        with_key(row("r_late", D0 + 3 * DAY), "key_a", 999, 1, 1),
    ]
}

fn line(group: Option<&str>, start: i64, n: i64, p: i64, c: i64, cost: i64) -> ReportRow {
    ReportRow {
        group: group.map(str::to_owned),
        period_start_ms: start,
        requests: n,
        prompt_tokens: p,
        completion_tokens: c,
        cost_picousd: cost,
    }
}

pub(super) async fn report_sums_billed_rows_per_group_and_period(store: &Store) {
    let rows = fixture();
    store.insert_batch(&rows).await.unwrap();
    let (from, to) = (D0, D0 + 2 * DAY);
    let by_key_day = store
        .spend_report(&q(GroupBy::Key, Period::Day, from, to))
        .await
        .unwrap();
    assert_eq!(
        by_key_day,
        vec![
            line(None, D0, 1, 0, 0, 0),
            line(
                Some("key_a"),
                D0,
                4,
                10 + 1 + 5 + 9,
                20 + 2 + 7,
                1_000_003 + 2_000_000 + 1_234
            ),
            line(Some("key_b"), D0, 2, 4, 5, 77),
            line(Some("key_b"), D0 + DAY, 1, 1, 1, 11),
        ]
    );
    // The report is the sum of the rows by hand: the billed rows in range.
    let by_hand: i64 = rows
        .iter()
        .filter(|r| r.billed && r.ts_ms >= from && r.ts_ms < to)
        .map(|r| r.cost_picousd)
        .sum();
    assert_eq!(
        by_key_day.iter().map(|r| r.cost_picousd).sum::<i64>(),
        by_hand
    );

    // It equals the ledger's totals for the same rows, to the picodollar.
    let ledger = Ledger::spawn(store.clone(), LedgerConfig::default());
    for r in rows.iter().filter(|r| r.billed) {
        if let Some(key) = &r.key_id {
            ledger.add(
                key,
                utc_day(r.ts_ms),
                totals(
                    r.cost_picousd,
                    1,
                    i64::from(r.prompt_tokens),
                    i64::from(r.completion_tokens),
                ),
            );
        }
    }
    ledger.shutdown().await;
    for r in by_key_day.iter().filter(|r| r.group.is_some()) {
        let spent = store
            .spend(r.group.as_deref().unwrap(), r.period_start_ms)
            .await
            .unwrap();
        assert_eq!(
            totals(
                r.cost_picousd,
                r.requests,
                r.prompt_tokens,
                r.completion_tokens
            ),
            spent,
            "{r:?}"
        );
    }

    let by_model_hour = store
        .spend_report(&q(GroupBy::Model, Period::Hour, D0, D0 + DAY))
        .await
        .unwrap();
    assert_eq!(
        by_model_hour,
        vec![
            line(Some("claude-3-5-haiku"), D0, 1, 1, 1, 70),
            line(Some("gpt-4o-mini"), D0, 3, 15, 27, 1_000_003),
            // NULL (no model answered) sorts first within its period.
            line(None, D0 + HOUR, 1, 9, 0, 1_234),
            line(Some("gpt-4o-mini"), D0 + HOUR, 1, 1, 2, 2_000_000),
            line(Some("gpt-4o-mini"), D0 + 2 * HOUR, 1, 3, 4, 7),
        ]
    );
    let by_provider = store
        .spend_report(&q(GroupBy::Provider, Period::Day, D0, D0 + DAY))
        .await
        .unwrap();
    assert_eq!(
        by_provider
            .iter()
            .map(|r| (r.group.as_deref(), r.requests))
            .collect::<Vec<_>>(),
        vec![(None, 1), (Some("anthropic"), 1), (Some("openai"), 5)]
    );
    let by_route = store
        .spend_report(&q(GroupBy::Route, Period::Day, D0, D0 + DAY))
        .await
        .unwrap();
    assert_eq!(by_route.len(), 1);
    assert_eq!(by_route[0].requests, 7);
    // The range is half-open and the limit holds.
    let mut cut = q(GroupBy::Key, Period::Day, D0 + 3 * DAY, D0 + 3 * DAY + 1);
    assert_eq!(store.spend_report(&cut).await.unwrap().len(), 1);
    cut.from_ms += 1;
    assert!(store.spend_report(&cut).await.unwrap().is_empty());
    let mut small = q(GroupBy::Key, Period::Day, from, to);
    small.limit = 2;
    assert_eq!(store.spend_report(&small).await.unwrap().len(), 2);
}

fn utc_day(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(DAY) * DAY
}

pub(super) async fn report_by_tag_and_for_one_key(store: &Store) {
    store.insert_batch(&fixture()).await.unwrap();
    let by_team = store
        .spend_report(&q(GroupBy::Tag("team".into()), Period::Day, D0, D0 + DAY))
        .await
        .unwrap();
    assert_eq!(
        by_team
            .iter()
            .map(|r| (r.group.as_deref(), r.requests, r.cost_picousd))
            .collect::<Vec<_>>(),
        vec![
            (None, 4, 1_234 + 70),
            (Some("blue"), 1, 2_000_000),
            (Some("red"), 2, 1_000_010),
        ]
    );
    let by_project = store
        .spend_report(&q(
            GroupBy::Tag("project".into()),
            Period::Day,
            D0,
            D0 + DAY,
        ))
        .await
        .unwrap();
    assert_eq!(
        by_project
            .iter()
            .map(|r| (r.group.as_deref(), r.requests))
            .collect::<Vec<_>>(),
        vec![(None, 6), (Some("x"), 1)]
    );
    // A name no row has is one untagged group; the name is a bound value, never SQL (the
    // gateway allows only letters, digits, `_` and `-` in names).
    for name in ["nope", "team' OR 1=1 --"] {
        let r = store
            .spend_report(&q(GroupBy::Tag(name.into()), Period::Day, D0, D0 + DAY))
            .await
            .unwrap();
        assert_eq!(r.len(), 1, "{name}: {r:?}");
        assert_eq!((r[0].group.as_deref(), r[0].requests), (None, 7), "{name}");
    }
    let mut mine = q(GroupBy::Model, Period::Day, D0, D0 + 2 * DAY);
    mine.key_id = Some("key_b".into());
    assert_eq!(
        store
            .spend_report(&mine)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.group.as_deref(), r.period_start_ms, r.cost_picousd))
            .collect::<Vec<_>>(),
        vec![
            (Some("claude-3-5-haiku"), D0, 70),
            (Some("gpt-4o-mini"), D0, 7),
            (Some("gpt-4o-mini"), D0 + DAY, 11),
        ]
    );
}

pub(super) async fn tags_and_billed_round_trip(store: &Store) {
    let full = full_row();
    let mut unbilled = tagged(row("r_unbilled", 5), &[("team", "a")]);
    unbilled.shadow_of = Some(full.id.clone());
    unbilled.billed = false;
    store
        .insert_batch(&[full.clone(), unbilled.clone()])
        .await
        .unwrap();
    assert_eq!(
        store.get_request(&full.id).await.unwrap(),
        Some(full.clone())
    );
    assert_eq!(store.shadows_of(&full.id).await.unwrap(), vec![unbilled]);
    // No tags is NULL, not "{}".
    let nulls: i64 = match store {
        Store::Sqlite(s) => sqlx::query_scalar("SELECT COUNT(*) FROM requests WHERE tags IS NULL")
            .fetch_one(s.pool())
            .await
            .unwrap(),
        Store::Postgres(s) => {
            sqlx::query_scalar("SELECT COUNT(*) FROM requests WHERE tags IS NULL")
                .fetch_one(s.pool())
                .await
                .unwrap()
        }
    };
    assert_eq!(nulls, 0);
    store.insert_batch(&[row("r_plain", 6)]).await.unwrap();
    let back = store.get_request("r_plain").await.unwrap().unwrap();
    assert!(back.tags.is_empty() && back.billed);
}

#[tokio::test]
async fn sqlite_report_is_a_covering_index_scan() {
    let db = sqlite_db().await;
    let Store::Sqlite(s) = &db.store else {
        unreachable!()
    };
    for group_by in [
        GroupBy::Key,
        GroupBy::Model,
        GroupBy::Route,
        GroupBy::Provider,
        GroupBy::Tag("team".into()),
    ] {
        for key_id in [None, Some("key_a".to_owned())] {
            let mut query = q(group_by.clone(), Period::Hour, D0, D0 + DAY);
            query.key_id = key_id;
            let plan = sqlite_plan(s, &query).await.unwrap();
            assert!(
                plan.contains("USING COVERING INDEX requests_report_idx (ts_ms>? AND ts_ms<?)"),
                "{group_by:?}: {plan}"
            );
            assert!(!plan.contains("SCAN requests"), "{group_by:?}: {plan}");
        }
    }
    db.finish().await;
}

/// A shadow row written before 0006 did not say whether it was billed: it is taken as
/// unbilled (the default of `shadow.bill`), every other old row as billed.
#[tokio::test]
async fn sqlite_0006_marks_old_shadow_rows_unbilled() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let old = sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true),
    )
    .await
    .unwrap();
    sqlx::migrate!("migrations/sqlite")
        .run_to(4, &old)
        .await
        .unwrap();
    for (id, shadow_of) in [("r_old", None), ("r_old_shadow", Some("r_old"))] {
        sqlx::query(
            "INSERT INTO requests (id, ts_ms, key_id, endpoint, route, model, provider, status, \
             stream, cache, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, \
             usage_estimated, cost_picousd, latency_ms, overhead_ms, shadow_of) VALUES \
             (?, 1, 'k', '/v1/chat/completions', 'r', 'm', 'p', 200, FALSE, 'miss', 1, 1, 0, 0, \
             FALSE, 5, 1.0, 0.1, ?)",
        )
        .bind(id)
        .bind(shadow_of)
        .execute(&old)
        .await
        .unwrap();
    }
    old.close().await;
    let store = Store::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    assert!(store.get_request("r_old").await.unwrap().unwrap().billed);
    assert!(
        !store
            .get_request("r_old_shadow")
            .await
            .unwrap()
            .unwrap()
            .billed
    );
    let report = store
        .spend_report(&q(GroupBy::Key, Period::Day, 0, DAY))
        .await
        .unwrap();
    assert_eq!((report[0].requests, report[0].cost_picousd), (1, 5));
    store.close().await;
}

/// On Postgres the report can be an index-only scan of `requests_report_idx` (with sequential
/// scans off: on a table this small the planner would rightly prefer one).
#[tokio::test]
async fn postgres_report_can_use_the_covering_index() {
    let Some(db) = postgres_db("postgres_report_can_use_the_covering_index").await else {
        return;
    };
    let Store::Postgres(pg) = &db.store else {
        unreachable!()
    };
    let mut conn = pg.pool().acquire().await.unwrap();
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    for group_by in [GroupBy::Key, GroupBy::Tag("team".into())] {
        let sql = format!("EXPLAIN {}", crate::report::postgres_statement(&group_by));
        let mut query = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql))
            .bind(HOUR)
            .bind(D0)
            .bind(D0 + DAY)
            .bind(None::<String>)
            .bind(10_i64);
        if let GroupBy::Tag(name) = &group_by {
            query = query.bind(name.clone());
        }
        let plan = query.fetch_all(&mut *conn).await.unwrap().join("\n");
        assert!(plan.contains("requests_report_idx"), "{group_by:?}: {plan}");
    }
    drop(conn);
    db.finish().await;
}
