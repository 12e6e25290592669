//! The request log and the keys: rows, client ids, history, retention.

use std::collections::HashSet;

use super::*;
use switchyard_types::clock::now_ms;

pub(super) async fn round_trip(store: &Store) {
    let full = full_row();
    let mut bare = row("req_bare", 5);
    bare.model = None;
    bare.provider = None;
    bare.status = 502;
    bare.latency_ms = 0.0;
    assert_eq!(
        store
            .insert_batch(&[full.clone(), bare.clone()])
            .await
            .unwrap(),
        2
    );
    assert_eq!(store.get_request(&full.id).await.unwrap(), Some(full));
    assert_eq!(store.get_request("req_bare").await.unwrap(), Some(bare));
    assert_eq!(store.get_request("req_missing").await.unwrap(), None);
    assert_eq!(store.insert_batch(&[]).await.unwrap(), 0);
}

pub(super) async fn count_and_duplicates(store: &Store) {
    assert_eq!(store.count().await.unwrap(), 0);
    let batch: Vec<_> = (0..10)
        .map(|i| with_key(row(&format!("req_{i}"), i), "key_d", 5, 1, 1))
        .collect();
    assert_eq!(store.insert_batch(&batch).await.unwrap(), 10);
    assert_eq!(store.count().await.unwrap(), 10);
    // A retried batch (its commit lost) or a repeated id inside one is skipped, children
    // included. Ids are the server's, so this can no longer hide a client's request.
    assert_eq!(store.insert_batch(&batch).await.unwrap(), 0);
    let mut twice = row("req_twice", 1);
    twice.attempts.push(AttemptRecord {
        model: "m".to_owned(),
        provider: "p".to_owned(),
        outcome: "ok".to_owned(),
        status: Some(200),
        latency_ms: 1.0,
        detail: None,
        cost_picousd: None,
    });
    let twice = with_key(twice, "key_d", 5, 1, 1);
    assert_eq!(
        store
            .insert_batch(&[twice.clone(), twice.clone()])
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.count().await.unwrap(), 11);
    assert_eq!(store.get_request("req_twice").await.unwrap(), Some(twice));
    // Log rows carry no spend: only the ledger writes it.
    assert_eq!(
        store.spend("key_d", 0).await.unwrap(),
        SpendTotals::default()
    );
}

/// Issue 12, point 7: a client that repeats one `x-request-id` gets one row per request, each
/// with its own server id, and each request's spend counts (through the ledger).
pub(super) async fn same_client_id_twenty_times_makes_twenty_rows(store: &Store) {
    const COST: i64 = 1_000_007;
    let ledger = Ledger::spawn(store.clone(), LedgerConfig::default());
    // The gateway makes the ids; here they are distinct by construction. Timestamps are
    // shuffled so that "oldest first" is the store's doing, not the insertion order's.
    let rows: Vec<RequestRecord> = (0..20)
        .map(|i: i64| {
            let mut r = with_key(row(&format!("req_srv_{i:02}"), 0), "key_rep", COST, 3, 2);
            r.ts_ms = 1_000 + (i * 7) % 20;
            r.client_request_id = Some("same-id-every-time".to_owned());
            if i == 3 {
                r.attempts = full_row().attempts;
                r.policies = full_row().policies;
            }
            r
        })
        .collect();
    // Five in one batch, the rest one batch each (as across restarts or replicas).
    assert_eq!(store.insert_batch(&rows[..5]).await.unwrap(), 5);
    for r in &rows[5..] {
        assert_eq!(
            store.insert_batch(std::slice::from_ref(r)).await.unwrap(),
            1
        );
    }
    for r in &rows {
        ledger.add("key_rep", 0, totals(r.cost_picousd, 1, 3, 2));
    }
    let got = store
        .requests_by_client_id("same-id-every-time")
        .await
        .unwrap();
    assert_eq!(got.len(), 20);
    let ids: HashSet<&str> = got.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), 20, "every row has its own server id");
    let ts: Vec<i64> = got.iter().map(|r| r.ts_ms).collect();
    let mut sorted = ts.clone();
    sorted.sort_unstable();
    assert_eq!(ts, sorted, "oldest first");
    // Each record comes back whole, children on the right row only.
    for r in &rows {
        assert_eq!(got.iter().find(|g| g.id == r.id), Some(r));
    }
    // A retried batch (a lost commit) still adds nothing.
    assert_eq!(store.insert_batch(&rows[..5]).await.unwrap(), 0);
    assert_eq!(store.count().await.unwrap(), 20);
    assert_eq!(
        store
            .requests_by_client_id("same-id-every-tim")
            .await
            .unwrap(),
        Vec::new()
    );
    let stats = ledger.shutdown().await;
    assert_eq!((stats.written_picousd, stats.lost_picousd), (20 * COST, 0));
    assert_eq!(
        store.spend("key_rep", 0).await.unwrap(),
        totals(20 * COST, 20, 60, 40)
    );
}

/// A hostile or buggy client id cannot fail a batch: it is cut to
/// `CLIENT_REQUEST_ID_MAX_CHARS` characters (on a character boundary) and NUL is replaced; a
/// lookup is transformed the same way, so it finds what was stored.
pub(super) async fn client_request_id_is_cut_and_nul_safe(store: &Store) {
    // 3 000 characters, 9 000 bytes: above Postgres' B-tree entry limit if kept whole.
    let long: String = "é✓x".repeat(1_000);
    let cut: String = long.chars().take(CLIENT_REQUEST_ID_MAX_CHARS).collect();
    let mut a = row("req_long", 1);
    a.client_request_id = Some(long.clone());
    let mut b = row("req_nul", 2);
    b.client_request_id = Some("a\0b".to_owned());
    let mut exact = row("req_exact", 3);
    exact.client_request_id = Some(cut.clone());
    let ok = row("req_plain", 4);
    assert_eq!(
        store
            .insert_batch(&[a, b, exact.clone(), ok.clone()])
            .await
            .unwrap(),
        4
    );
    let got = store.get_request("req_long").await.unwrap().unwrap();
    assert_eq!(got.client_request_id.as_deref(), Some(cut.as_str()));
    assert_eq!(cut.chars().count(), CLIENT_REQUEST_ID_MAX_CHARS);
    // The whole value and its stored prefix both find both rows that hold that prefix.
    for probe in [&long, &cut] {
        let ids: Vec<String> = store
            .requests_by_client_id(probe)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["req_long", "req_exact"]);
    }
    assert_eq!(store.get_request("req_exact").await.unwrap(), Some(exact));
    let nul = store.requests_by_client_id("a\0b").await.unwrap();
    assert_eq!(nul.len(), 1);
    assert_eq!(nul[0].client_request_id.as_deref(), Some("a\u{FFFD}b"));
    assert_eq!(store.get_request("req_plain").await.unwrap(), Some(ok));
}

pub(super) async fn model_history(store: &Store) {
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
        r
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

pub(super) async fn purge_before(store: &Store) {
    let mut old = full_row();
    old.id = "req_old".to_owned();
    old.ts_ms = 100;
    let mut older = row("req_older", 50);
    older.policies = old.policies.clone();
    let mut edge = row("req_edge", 250);
    edge.attempts = old.attempts.clone();
    let new = row("req_new", 300);
    store
        .insert_batch(&[old.clone(), older, edge.clone(), new])
        .await
        .unwrap();
    store
        .add_spend(&[delta("key_abc", 0, totals(old.cost_picousd, 1, 4, 2))])
        .await
        .unwrap();
    let spend_before = store.spend("key_abc", 0).await.unwrap();
    assert_eq!(store.purge_before(250).await.unwrap(), 2);
    assert_eq!(store.count().await.unwrap(), 2);
    assert_eq!(store.get_request("req_old").await.unwrap(), None);
    assert_eq!(store.get_request("req_edge").await.unwrap(), Some(edge));
    assert_eq!(store.purge_before(250).await.unwrap(), 0);
    // Spend is budget state: retention keeps it.
    assert_ne!(spend_before, SpendTotals::default());
    assert_eq!(store.spend("key_abc", 0).await.unwrap(), spend_before);
    // The children went too: the same id with one attempt comes back with just that one.
    let mut again = old.clone();
    again.attempts.truncate(1);
    again.policies.clear();
    assert_eq!(
        store
            .insert_batch(std::slice::from_ref(&again))
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.get_request("req_old").await.unwrap(), Some(again));
    // More than one purge chunk.
    let many: Vec<_> = (0..(PURGE_CHUNK + 7))
        .map(|i| row(&format!("req_bulk_{i}"), 1_000 + i))
        .collect();
    for chunk in many.chunks(1000) {
        store.insert_batch(chunk).await.unwrap();
    }
    let purged = store.purge_before(1_000_000).await.unwrap();
    assert_eq!(purged, u64::try_from(PURGE_CHUNK).unwrap() + 7 + 3);
    assert_eq!(store.count().await.unwrap(), 0);
}

pub(super) async fn nul_bytes_do_not_poison_a_batch(store: &Store) {
    let mut r = row("req_nul", 1);
    r.error_code = Some("bad\0code".to_owned());
    r.attempts.push(AttemptRecord {
        model: "m".to_owned(),
        provider: "p".to_owned(),
        outcome: "error".to_owned(),
        status: Some(500),
        latency_ms: 1.0,
        detail: Some("upstream said \0\0 nothing".to_owned()),
        cost_picousd: Some(7),
    });
    r.policies.push(PolicyRecord {
        policy: "p".to_owned(),
        outcome: "allow".to_owned(),
        annotations: vec!["a\0b".to_owned()],
    });
    let ok = row("req_ok", 2);
    assert_eq!(
        store.insert_batch(&[r.clone(), ok.clone()]).await.unwrap(),
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

pub(super) async fn keys(store: &Store) {
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

pub(super) async fn retention_purges_old_rows(store: &Store) {
    let now = now_ms();
    store
        .insert_batch(&[row("req_ancient", now - 7_200_000), row("req_recent", now)])
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
