//! Spend reports (migration 0006): sums of the billed rows per group and period, equal to the
//! sum of the rows by hand and to the ledger's totals; tags and `billed` round trip; the
//! SQLite plan is a covering index scan. The hourly rollup (migration 0008): for random rows
//! across hour edges, every grouping, period, key filter and range (on and off the hour) gives
//! the rows' own report, through duplicates, purges and the migration's backfill.

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
async fn sqlite_report_is_a_rollup_search_and_a_covering_index_scan() {
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
            // The whole hours: a range of the rollup's primary key, never a scan of it.
            assert!(
                plan.contains(
                    "SEARCH spend_rollup USING PRIMARY KEY (dim=? AND hour_ms>? AND hour_ms<?)"
                ),
                "{group_by:?}: {plan}"
            );
            assert!(
                plan.contains(
                    "SEARCH spend_rollup_keys USING PRIMARY KEY \
                     (dim=? AND key_id=? AND hour_ms>? AND hour_ms<?)"
                ),
                "{group_by:?}: {plan}"
            );
            assert!(!plan.contains("SCAN spend_rollup"), "{group_by:?}: {plan}");
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

// ---------------------------------------------------------------------------
// The hourly rollup (migration 0008): the same answers as the rows, whatever the range
// ---------------------------------------------------------------------------

/// `sqlite_NAME` and `postgres_NAME` for a test `NAME(&Store)` of this file.
macro_rules! on_both {
    ($($name:ident => $sqlite:ident, $postgres:ident;)+) => {
        $(
            #[tokio::test]
            async fn $sqlite() {
                let db = sqlite_db().await;
                $name(&db.store).await;
                db.finish().await;
            }

            #[tokio::test]
            async fn $postgres() {
                let Some(db) = postgres_db(stringify!($postgres)).await else {
                    return;
                };
                $name(&db.store).await;
                db.finish().await;
            }
        )+
    };
}

on_both! {
    rollup_reports_equal_the_rows => sqlite_rollup_reports_equal_the_rows,
        postgres_rollup_reports_equal_the_rows;
    rollup_ignores_duplicates => sqlite_rollup_ignores_duplicates,
        postgres_rollup_ignores_duplicates;
    rollup_follows_a_purge => sqlite_rollup_follows_a_purge,
        postgres_rollup_follows_a_purge;
}

/// splitmix64: the same "random" rows on every run and backend.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[usize::try_from(self.below(items.len() as u64)).unwrap()]
    }

    /// A time in [lo, hi).
    fn between(&mut self, lo: i64, hi: i64) -> i64 {
        lo + i64::try_from(self.below(u64::try_from(hi - lo).unwrap())).unwrap()
    }
}

/// `n` rows over three days from `D0 - 5 min`, most of them within a minute of an hour's edge,
/// with every nullable column sometimes NULL, unbilled shadows, tags (some names the rollup does
/// not keep), a few rows before 1970, and a key whose id is the empty string.
fn random_rows(rng: &mut Rng, prefix: &str, n: usize) -> Vec<RequestRecord> {
    (0..n)
        .map(|i| {
            let ts = match rng.below(10) {
                0 => -rng.between(1, 3 * HOUR),
                1..=6 => {
                    let edge = D0 + HOUR * rng.between(0, 72);
                    edge + rng.between(-60_000, 60_000)
                }
                _ => rng.between(D0 - 300_000, D0 + 3 * DAY),
            };
            let mut r = row(&format!("{prefix}{i}"), ts);
            r.key_id = match rng.below(6) {
                0 => None,
                1 => Some(String::new()),
                _ => Some(rng.pick(&["key_a", "key_b", "key_c"]).to_owned()),
            };
            r.route = rng.pick(&["auto", "cheap", "smart"]).to_owned();
            if rng.below(8) == 0 {
                r.model = None;
                r.provider = None;
                r.status = 502;
            } else {
                let (m, p) = [
                    ("gpt-4o-mini", "openai"),
                    ("claude-3-5-haiku", "anthropic"),
                    ("gemini-2.0-flash", "gemini"),
                ][usize::try_from(rng.below(3)).unwrap()];
                r.model = Some(m.to_owned());
                r.provider = Some(p.to_owned());
            }
            r.prompt_tokens = u32::try_from(rng.below(5_000)).unwrap();
            r.completion_tokens = u32::try_from(rng.below(2_000)).unwrap();
            r.cost_picousd = i64::try_from(rng.below(1 << 40)).unwrap();
            if rng.below(10) == 0 {
                r.shadow_of = Some("r_original".to_owned());
                r.billed = rng.below(2) == 0;
            }
            for (name, values) in [
                ("team", &["red", "blue", "green"][..]),
                ("cost-center_2", &["cc 1", "cc:2/x"][..]),
                ("Team", &["upper"][..]),
                ("a.b", &["dotted"][..]),
            ] {
                if rng.below(2) == 0 {
                    r.tags.insert(name.to_owned(), rng.pick(values).to_owned());
                }
            }
            r
        })
        .collect()
}

fn groupings() -> Vec<GroupBy> {
    vec![
        GroupBy::Key,
        GroupBy::Model,
        GroupBy::Route,
        GroupBy::Provider,
        GroupBy::Tag("team".into()),
        GroupBy::Tag("cost-center_2".into()),
        GroupBy::Tag("project".into()),
        GroupBy::Tag("Team".into()),
    ]
}

/// Ranges on and off hour boundaries, inside one hour, across 1970, and the whole log.
fn ranges(rng: &mut Rng) -> Vec<(i64, i64)> {
    let mut out = vec![
        (i64::MIN, i64::MAX),
        (-4 * HOUR, D0 + 4 * DAY),
        (D0, D0 + DAY),
        (D0 + HOUR, D0 + 2 * HOUR),
        (D0 + 10, D0 + HOUR - 10),
        (D0 + HOUR - 1, D0 + HOUR + 1),
        (-HOUR - 5, HOUR + 5),
        (D0 + DAY, D0),
        (D0 + 5, D0 + 5),
    ];
    for _ in 0..12 {
        let a = rng.between(D0 - HOUR, D0 + 3 * DAY);
        let b = rng.between(a, D0 + 3 * DAY + HOUR);
        out.push((a, b));
    }
    out
}

/// Every grouping, period, range and key filter: the rollup's answer is the rows' answer.
async fn assert_reports_equal_rows(store: &Store, rng: &mut Rng) -> usize {
    let mut compared = 0;
    for (from_ms, to_ms) in ranges(rng) {
        for group_by in groupings() {
            for period in [Period::Hour, Period::Day] {
                for key_id in [None, Some("key_a"), Some(""), Some("key_nobody")] {
                    let mut query = q(group_by.clone(), period, from_ms, to_ms);
                    query.key_id = key_id.map(str::to_owned);
                    let want = spend_report_from_rows(store, &query).await.unwrap();
                    let got = store.spend_report(&query).await.unwrap();
                    assert_eq!(got, want, "{query:?}");
                    compared += want.len();
                }
            }
        }
    }
    compared
}

/// Both rollup tables, every column, in key order.
async fn rollup_tables(store: &Store) -> Vec<String> {
    const ALL: &str = "SELECT dim, '', hour_ms, value, requests, prompt_tokens, \
         completion_tokens, cost_picousd FROM spend_rollup ORDER BY dim, hour_ms, value";
    const KEYS: &str = "SELECT dim, key_id, hour_ms, value, requests, prompt_tokens, \
         completion_tokens, cost_picousd FROM spend_rollup_keys \
         ORDER BY dim, key_id, hour_ms, value";
    type Row = (String, String, i64, String, i64, i64, i64, i64);
    let (all, keys): (Vec<Row>, Vec<Row>) = match store {
        Store::Sqlite(s) => (
            sqlx::query_as(ALL).fetch_all(s.pool()).await.unwrap(),
            sqlx::query_as(KEYS).fetch_all(s.pool()).await.unwrap(),
        ),
        Store::Postgres(s) => (
            sqlx::query_as(sqlx::AssertSqlSafe(ALL.replace("''", "''::TEXT")))
                .fetch_all(s.pool())
                .await
                .unwrap(),
            sqlx::query_as(KEYS).fetch_all(s.pool()).await.unwrap(),
        ),
    };
    all.iter()
        .map(|r| format!("all {r:?}"))
        .chain(keys.iter().map(|r| format!("keys {r:?}")))
        .collect()
}

/// The rollup kept by the writes equals the one rebuilt from the rows (migration 0008's
/// backfill), and holds no empty row.
async fn assert_rollup_is_its_rows(store: &Store) {
    let kept = rollup_tables(store).await;
    assert!(
        kept.iter().all(|r| !r.contains(", 0, 0, 0, 0)")),
        "an empty rollup row is left: {kept:?}"
    );
    rebuild_spend_rollup(store).await.unwrap();
    assert_eq!(kept, rollup_tables(store).await);
}

pub(super) async fn rollup_reports_equal_the_rows(store: &Store) {
    let mut rng = Rng(15);
    let mut billed = 0;
    for batch in 0..6 {
        let rows = random_rows(&mut rng, &format!("r_{batch}_"), 150);
        billed += rows.iter().filter(|r| r.billed).count();
        assert_eq!(store.insert_batch(&rows).await.unwrap(), 150);
    }
    // Not vacuous: the rollup holds rows, and the reports compared have lines.
    assert!(rollup_tables(store).await.len() > 100);
    assert!(assert_reports_equal_rows(store, &mut rng).await > 1_000);
    assert_rollup_is_its_rows(store).await;
    // The whole log by key per day: every billed row counted once.
    let all = store
        .spend_report(&q(GroupBy::Key, Period::Day, i64::MIN, i64::MAX))
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|r| r.requests).sum::<i64>(),
        i64::try_from(billed).unwrap()
    );
}

/// A batch written twice (a retry after a lost commit) and an id twice in one batch: the
/// rollup counts each stored row once, as the rows do.
pub(super) async fn rollup_ignores_duplicates(store: &Store) {
    let mut rng = Rng(16);
    let rows = random_rows(&mut rng, "r_dup_", 200);
    let billed = rows.iter().filter(|r| r.billed && r.ts_ms >= 0).count();
    assert_eq!(store.insert_batch(&rows).await.unwrap(), 200);
    let whole = q(GroupBy::Route, Period::Day, 0, i64::MAX);
    let before = store.spend_report(&whole).await.unwrap();
    assert_eq!(
        before.iter().map(|r| r.requests).sum::<i64>(),
        i64::try_from(billed).unwrap()
    );
    assert_eq!(store.insert_batch(&rows).await.unwrap(), 0);
    let mut again = random_rows(&mut Rng(99), "r_dup_new_", 3);
    again.push(rows[7].clone());
    again.push(again[0].clone());
    assert_eq!(store.insert_batch(&again).await.unwrap(), 3);
    let after = store.spend_report(&whole).await.unwrap();
    let added = again[..3]
        .iter()
        .filter(|r| r.billed && r.ts_ms >= 0)
        .count();
    assert_eq!(
        after.iter().map(|r| r.requests).sum::<i64>(),
        i64::try_from(billed + added).unwrap()
    );
    assert_eq!(after, spend_report_from_rows(store, &whole).await.unwrap());
    assert_rollup_is_its_rows(store).await;
    assert_reports_equal_rows(store, &mut rng).await;
}

/// Retention deletes rows before a time that is not on an hour: the rollup loses exactly those
/// rows (the hour cut in two keeps the rest), and hours left empty disappear.
pub(super) async fn rollup_follows_a_purge(store: &Store) {
    let mut rng = Rng(17);
    for batch in 0..4 {
        let rows = random_rows(&mut rng, &format!("r_p{batch}_"), 200);
        store.insert_batch(&rows).await.unwrap();
    }
    let cut = D0 + DAY + HOUR / 2 + 17;
    let gone = store.purge_before(cut).await.unwrap();
    assert!(gone > 100, "{gone}");
    assert_rollup_is_its_rows(store).await;
    let left = store
        .spend_report(&q(GroupBy::Key, Period::Hour, i64::MIN, cut))
        .await
        .unwrap();
    assert_eq!(
        left,
        spend_report_from_rows(store, &q(GroupBy::Key, Period::Hour, i64::MIN, cut))
            .await
            .unwrap()
    );
    assert!(
        left.is_empty(),
        "rows before the cut are reported: {left:?}"
    );
    assert_reports_equal_rows(store, &mut rng).await;
    // Everything purged: the rollup is empty.
    store.purge_before(i64::MAX).await.unwrap();
    assert_eq!(rollup_tables(store).await, Vec::<String>::new());
}

/// A store written before 0008 is backfilled by the migration: its reports equal its rows.
#[tokio::test]
async fn sqlite_0008_backfills_the_rollup() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let url = format!("sqlite://{}", path.display());
    let old = sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true),
    )
    .await
    .unwrap();
    sqlx::migrate!("migrations/sqlite")
        .run_to(7, &old)
        .await
        .unwrap();
    old.close().await;
    // Rows written through this build's insert (its rollup statements fail without the
    // tables, so the rows go in first, through a store that has them, and are copied).
    let source_url = format!("sqlite://{}", dir.path().join("new.db").display());
    let source = Store::connect(&source_url).await.unwrap();
    let mut rng = Rng(18);
    let rows = random_rows(&mut rng, "r_old_", 400);
    source.insert_batch(&rows).await.unwrap();
    let Store::Sqlite(src) = &source else {
        unreachable!()
    };
    // One connection: ATTACH is per connection.
    let mut conn = src.pool().acquire().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ATTACH DATABASE '{}' AS old",
        path.display()
    )))
    .execute(&mut *conn)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO old.requests (id, ts_ms, key_id, endpoint, route, model, provider, status, \
         error_code, stream, cache, prompt_tokens, completion_tokens, cached_tokens, \
         reasoning_tokens, usage_estimated, cost_picousd, latency_ms, ttft_ms, overhead_ms, \
         client_request_id, task, shadow_of, response_text, tags, billed) \
         SELECT id, ts_ms, key_id, endpoint, route, model, provider, status, error_code, stream, \
         cache, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, \
         usage_estimated, cost_picousd, latency_ms, ttft_ms, overhead_ms, client_request_id, \
         task, shadow_of, response_text, tags, billed FROM main.requests",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    drop(conn);
    let expected = rollup_tables(&source).await;
    source.close().await;

    let store = Store::connect(&url).await.unwrap();
    assert_eq!(store.count().await.unwrap(), 400);
    assert_eq!(rollup_tables(&store).await, expected);
    assert_reports_equal_rows(&store, &mut rng).await;
    store.close().await;
}
