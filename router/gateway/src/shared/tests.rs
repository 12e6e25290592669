//! The scripts against a real redis-server, several `Shared` standing for several replicas.

use std::sync::Arc;

use switchyard_e2e::RedisServer;
use switchyard_store::{SpendDelta, SpendStore, SpendTotals, Store};

use super::*;
use crate::config::{OnFailureSpec, RedisConfig};

fn config(url: &str, ttl_ms: u64) -> RedisConfig {
    RedisConfig {
        url: url.to_owned(),
        cache_url: None,
        // Generous: the test machine is shared and the build is a debug one.
        timeout_ms: 1000,
        reservation_ttl_ms: ttl_ms,
        prefix: format!("t{}", switchyard_e2e::random_hex(4)),
        on_failure: OnFailureSpec::default(),
    }
}

async fn replicas(cfg: &RedisConfig, n: usize, store: Option<Store>) -> Vec<Arc<Shared>> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(Shared::connect(cfg, store.clone()).await.unwrap());
    }
    out
}

fn budget(b: i64) -> Limits {
    Limits {
        budget_picousd: Some(b),
        rpm: None,
        tpm: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_reserving_at_once_overspend_by_at_most_one_estimate() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let cfg = config(&redis.url(), 60_000);
    let reps = replicas(&cfg, 3, None).await;
    let estimate = 1_000_000; // $0.000001
    // Ten and a half estimates: the eleventh request is admitted (spend + reservations are
    // below the budget) and overspends by half an estimate; no twelfth.
    let limit = estimate * 21 / 2;
    let mut tasks = Vec::new();
    for i in 0..60 {
        let r = reps[i % 3].clone();
        tasks.push(tokio::spawn(async move {
            loop {
                match r
                    .reserve("k1", 0, budget(limit), estimate, 0)
                    .await
                    .unwrap()
                {
                    Reply::Reserved { hold, .. } => {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        // Each costs its whole estimate: the worst case.
                        r.settle(hold, estimate, 0, 0);
                        return 1;
                    }
                    Reply::Full { .. } => tokio::time::sleep(Duration::from_millis(2)).await,
                    Reply::Spent { .. } => return 0,
                    other => panic!("{other:?}"),
                }
            }
        }));
    }
    let mut admitted = 0;
    for t in tasks {
        admitted += t.await.unwrap();
    }
    // Settles run in tasks: wait for the last.
    let mut u = SharedUsage::default();
    for _ in 0..100 {
        u = reps[0].usage("k1", 0, true).await.unwrap();
        if u.reserved == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(u.reserved, 0);
    assert_eq!(admitted, 11, "admitted while spend + reservations < budget");
    assert_eq!(u.spent, 11 * estimate);
    assert!(u.spent <= limit + estimate, "over by at most one estimate");
}

#[tokio::test]
async fn a_lapsed_reservation_is_released_after_its_ttl_and_a_late_settle_still_counts() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let cfg = config(&redis.url(), 1000);
    let r = &replicas(&cfg, 1, None).await[0];
    let Reply::Reserved { hold, .. } = r.reserve("k", 0, budget(100), 60, 0).await.unwrap() else {
        panic!("not reserved")
    };
    // A second reservation fills the budget (60 + 60 >= 100).
    assert!(matches!(
        r.reserve("k", 0, budget(100), 60, 0).await.unwrap(),
        Reply::Reserved { .. }
    ));
    assert!(matches!(
        r.reserve("k", 0, budget(100), 1, 0).await.unwrap(),
        Reply::Full { .. }
    ));
    // Their replica "died": nobody settles. After the TTL both are released.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let u = r.usage("k", 0, true).await.unwrap();
    assert_eq!((u.spent, u.reserved), (0, 0));
    // A settle that arrives after the lapse still adds its cost, once.
    r.settle(hold.clone(), 30, 0, 0);
    r.settle(hold, 0, 0, 0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let u = r.usage("k", 0, true).await.unwrap();
    assert_eq!((u.spent, u.reserved), (30, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_seeding_at_once_seed_once_from_the_ledger_and_raise_never_double_counts() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("s.db").display()))
        .await
        .unwrap();
    let start = 1_700_000_000_000;
    let delta = |cost| SpendDelta {
        key_id: "k".to_owned(),
        period_start_ms: start,
        totals: SpendTotals {
            cost_picousd: cost,
            ..SpendTotals::default()
        },
    };
    store.add_spend(&[delta(5_000)]).await.unwrap();
    let cfg = config(&redis.url(), 60_000);
    let reps = replicas(&cfg, 4, Some(store.clone())).await;
    let seeds = futures::future::join_all(reps.iter().map(|r| r.seed("k", start))).await;
    let won = seeds.iter().filter(|s| *s == &Ok(true)).count();
    assert_eq!(won, 1, "{seeds:?}");
    let u = reps[1].usage("k", start, true).await.unwrap();
    assert_eq!(u.spent, 5_000);

    // Redis takes a settle of 700; the ledger has 400 more it never saw (a lost settle).
    let Reply::Reserved { hold, .. } = reps[2]
        .reserve("k", start, budget(1_000_000), 700, 0)
        .await
        .unwrap()
    else {
        panic!()
    };
    reps[2].settle(hold, 700, 0, 0);
    tokio::time::sleep(Duration::from_millis(100)).await;
    store.add_spend(&[delta(700), delta(400)]).await.unwrap();
    // Raising twice, from two replicas: the ledger's 6,100, not more.
    reps[0].reconcile("k", start).await.unwrap();
    reps[3].reconcile("k", start).await.unwrap();
    assert_eq!(reps[0].usage("k", start, true).await.unwrap().spent, 6_100);
    // A ledger behind Redis (its flush still under way) lowers nothing.
    let Reply::Reserved { hold, .. } = reps[0]
        .reserve("k", start, budget(1_000_000), 50, 0)
        .await
        .unwrap()
    else {
        panic!()
    };
    reps[0].settle(hold, 50, 0, 0);
    tokio::time::sleep(Duration::from_millis(100)).await;
    reps[1].reconcile("k", start).await.unwrap();
    assert_eq!(reps[1].usage("k", start, true).await.unwrap().spent, 6_150);
    assert_eq!(
        SpendStore::spend(&store, "k", start)
            .await
            .unwrap()
            .cost_picousd,
        6_100
    );
}

#[tokio::test]
async fn rpm_and_tpm_windows_are_shared_and_tokens_are_corrected_after_the_call() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let cfg = config(&redis.url(), 60_000);
    let reps = replicas(&cfg, 2, None).await;
    let rpm = Limits {
        budget_picousd: None,
        rpm: Some(5),
        tpm: None,
    };
    let mut ok = 0;
    for i in 0..8 {
        match reps[i % 2].reserve("r", 0, rpm, 0, 0).await.unwrap() {
            Reply::Reserved { .. } => ok += 1,
            Reply::Rpm { wait } => assert!(wait.as_secs() >= 1 && wait.as_secs() <= 60),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(ok, 5, "five calls a minute over both replicas");

    let tpm = Limits {
        budget_picousd: None,
        rpm: None,
        tpm: Some(100),
    };
    let Reply::Reserved { hold, .. } = reps[0].reserve("t", 0, tpm, 0, 80).await.unwrap() else {
        panic!()
    };
    assert!(matches!(
        reps[1].reserve("t", 0, tpm, 0, 80).await.unwrap(),
        Reply::Tpm { used: 80, .. }
    ));
    // The call used 10 of its 80: the window is corrected, and 80 more fit.
    reps[0].settle(hold, 0, 80, 10);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        reps[1]
            .usage("t", 0, false)
            .await
            .unwrap()
            .tokens_last_minute,
        10
    );
    assert!(matches!(
        reps[1].reserve("t", 0, tpm, 0, 80).await.unwrap(),
        Reply::Reserved { .. }
    ));
}

#[tokio::test]
async fn a_dead_redis_is_detected_skipped_and_used_again_when_it_returns() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let mut cfg = config(&redis.url(), 60_000);
    cfg.timeout_ms = 200;
    let r = &replicas(&cfg, 1, None).await[0];
    assert!(r.is_up());
    redis.kill();
    assert_eq!(r.reserve("d", 0, budget(100), 1, 0).await, Err(Down));
    assert!(!r.is_up());
    // While down, nothing waits for Redis.
    let t = std::time::Instant::now();
    assert_eq!(r.reserve("d", 0, budget(100), 1, 0).await, Err(Down));
    assert!(t.elapsed() < Duration::from_millis(50));
    redis.restart();
    for _ in 0..100 {
        if r.is_up() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(r.is_up(), "the prober noticed Redis is back");
    assert!(matches!(
        r.reserve("d", 0, budget(100), 1, 0).await.unwrap(),
        Reply::Reserved { .. }
    ));
    assert_eq!(r.stats.outages.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn the_counters_server_must_not_evict() {
    let Some(redis) = RedisServer::start_with(&["--maxmemory-policy", "allkeys-lru"]) else {
        return;
    };
    let err = Shared::connect(&config(&redis.url(), 60_000), None)
        .await
        .unwrap_err();
    assert!(
        err.contains("noeviction") && err.contains("allkeys-lru"),
        "{err}"
    );
}

#[tokio::test]
async fn an_l2_entry_written_by_one_replica_is_read_by_another() {
    let (Some(counters), Some(cache)) = (
        RedisServer::start(),
        RedisServer::start_with(&["--maxmemory-policy", "allkeys-lru"]),
    ) else {
        return;
    };
    let mut cfg = config(&counters.url(), 60_000);
    cfg.cache_url = Some(cache.url());
    let reps = replicas(&cfg, 2, None).await;
    let (a, b) = (reps[0].l2.clone().unwrap(), reps[1].l2.clone().unwrap());
    let response: switchyard_types::ChatResponse = serde_json::from_value(serde_json::json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
    }))
    .unwrap();
    let key = [7u8; 32];
    let model = switchyard_types::ids::ModelId::new("m");
    let provider = switchyard_types::ids::ProviderId::new("p");
    a.put(&key, &model, &provider, &response, Duration::from_secs(30));
    let mut found = None;
    for _ in 0..50 {
        found = b.get(&key, 1 << 20).await;
        if found.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let found = found.expect("written by a, read by b");
    assert_eq!(found.response, response);
    assert!(found.ttl <= Duration::from_secs(30) && found.ttl > Duration::from_secs(20));
    // Too large for the reader's cap: a miss.
    assert!(b.get(&key, 10).await.is_none());
    assert_eq!(b.clear().await, 1);
    assert!(b.get(&key, 1 << 20).await.is_none());
}
