use super::*;
use switchyard_types::{Message, Role};

fn req(temperature: Option<f64>) -> ChatRequest {
    let mut r = ChatRequest::new("auto", vec![Message::new(Role::User, "hi")]);
    r.temperature = temperature;
    r
}

#[test]
fn only_deterministic_requests_are_cached_unless_asked() {
    let cfg = CacheConfig::default();
    assert!(plan(&cfg, &req(None), None, None).is_none());
    assert!(plan(&cfg, &req(Some(0.7)), None, None).is_none());
    let p = plan(&cfg, &req(Some(0.0)), None, None).unwrap();
    assert!(p.read && p.write);
    let mut seeded = req(Some(1.0));
    seeded.seed = Some(7);
    assert!(plan(&cfg, &seeded, None, None).is_some());
    let on = CacheRequest {
        mode: Some(Mode::On),
        ttl_s: Some(5),
    };
    let p = plan(&cfg, &req(Some(0.9)), Some(&on), None).unwrap();
    assert_eq!(p.ttl, Duration::from_secs(5));
    let off = CacheRequest {
        mode: Some(Mode::Off),
        ttl_s: None,
    };
    assert!(plan(&cfg, &req(Some(0.0)), Some(&off), None).is_none());
}

#[test]
fn cache_control_headers_turn_reads_and_writes_off() {
    let cfg = CacheConfig::default();
    let r = req(Some(0.0));
    let p = plan(&cfg, &r, None, Some("no-cache")).unwrap();
    assert!(!p.read && p.write);
    let p = plan(&cfg, &r, None, Some("max-age=0, No-Store")).unwrap();
    assert!(p.read && !p.write);
    assert!(plan(&cfg, &r, None, Some("no-cache, no-store")).is_none());
    let ro = CacheRequest {
        mode: Some(Mode::ReadOnly),
        ttl_s: None,
    };
    let p = plan(&cfg, &req(None), Some(&ro), None).unwrap();
    assert!(p.read && !p.write);
}

#[test]
fn keys_ignore_framing_but_not_content_scope_or_target() {
    let a = req(Some(0.0));
    let mut streamed = a.clone();
    streamed.stream = true;
    streamed.cache = Some(CacheRequest::default());
    assert_eq!(key("", "auto", None, &a), key("", "auto", None, &streamed));
    assert_ne!(key("", "auto", None, &a), key("key_1", "auto", None, &a));
    assert_ne!(key("", "auto", None, &a), key("", "cheap", None, &a));
    let models = ["gpt-4o-mini".to_owned()];
    assert_ne!(
        key("", "auto", None, &a),
        key("", "auto", Some(&models), &a)
    );
    let mut other = a.clone();
    other.max_tokens = Some(10);
    assert_ne!(key("", "auto", None, &a), key("", "auto", None, &other));
    // Length-prefixed parts: ("ab", "c") and ("a", "bc") differ.
    assert_ne!(key("ab", "c", None, &a), key("a", "bc", None, &a));
}

#[test]
fn ttl_above_the_ceiling_is_refused_naming_the_field() {
    let cfg = CacheConfig::default();
    let bad = CacheRequest {
        mode: None,
        ttl_s: Some(cfg.max_ttl_s + 1),
    };
    assert_eq!(bad.validate(cfg.max_ttl_s).unwrap_err().0, "cache.ttl_s");
    let zero = CacheRequest {
        mode: None,
        ttl_s: Some(0),
    };
    assert!(zero.validate(cfg.max_ttl_s).is_err());
}

fn answer(text: &str) -> ChatResponse {
    switchyard_types::StreamAccumulator {
        text: text.to_owned(),
        ..Default::default()
    }
    .into_response("id".into(), "m".into())
}

fn entry(text: &str, ttl: Duration) -> Entry {
    Entry::new(answer(text), ModelId::new("m"), ProviderId::new("p"), ttl)
}

fn rw(ttl: Duration) -> Plan {
    Plan {
        read: true,
        write: true,
        ttl,
    }
}

#[tokio::test(start_paused = true)]
async fn entries_expire_after_their_ttl_on_tokio_time() {
    let cache = ResponseCache::new(&CacheConfig::default());
    let k = key("", "auto", None, &req(Some(0.0)));
    cache.insert(k, entry("a", Duration::from_secs(10)));
    tokio::time::advance(Duration::from_secs(9)).await;
    assert!(matches!(
        cache
            .lookup(k, rw(Duration::from_secs(10)), Duration::ZERO)
            .await,
        Lookup::Hit(_)
    ));
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(matches!(
        cache
            .lookup(k, rw(Duration::from_secs(10)), Duration::ZERO)
            .await,
        Lookup::Miss(Some(_))
    ));
    let s = cache.stats();
    assert_eq!((s.hits, s.misses, s.expirations), (1, 1, 1));
}

#[tokio::test]
async fn identical_misses_wait_for_the_leader_and_read_its_answer() {
    let cache = Arc::new(ResponseCache::new(&CacheConfig::default()));
    let k = key("", "auto", None, &req(Some(0.0)));
    let plan = rw(Duration::from_secs(60));
    let Lookup::Miss(Some(leader)) = cache.lookup(k, plan, Duration::ZERO).await else {
        panic!("the first miss leads");
    };
    let waiters: Vec<_> = (0..8)
        .map(|_| {
            let c = cache.clone();
            tokio::spawn(async move {
                matches!(
                    c.lookup(k, plan, Duration::from_secs(5)).await,
                    Lookup::Hit(_)
                )
            })
        })
        .collect();
    tokio::task::yield_now().await;
    cache.insert(k, entry("answer", Duration::from_secs(60)));
    drop(leader);
    for w in waiters {
        assert!(w.await.unwrap(), "a waiter got the leader's answer");
    }
    let s = cache.stats();
    assert_eq!(s.coalesced, 8);
    assert_eq!(s.misses, 1);
}

#[tokio::test]
async fn a_failed_leader_releases_its_waiters_to_call_upstream() {
    let cache = Arc::new(ResponseCache::new(&CacheConfig::default()));
    let k = key("", "auto", None, &req(Some(0.0)));
    let plan = rw(Duration::from_secs(60));
    let Lookup::Miss(Some(leader)) = cache.lookup(k, plan, Duration::ZERO).await else {
        panic!("the first miss leads");
    };
    let c = cache.clone();
    let waiter = tokio::spawn(async move { c.lookup(k, plan, Duration::from_secs(5)).await });
    tokio::task::yield_now().await;
    drop(leader); // failed: nothing stored
    assert!(matches!(waiter.await.unwrap(), Lookup::Miss(None)));
}

#[test]
fn the_cache_stays_within_its_byte_budget_and_counts_evictions() {
    let cfg = CacheConfig {
        max_bytes: 64 * 1024,
        max_entry_bytes: 8 * 1024,
        ..CacheConfig::default()
    };
    let cache = ResponseCache::new(&cfg);
    let text = "x".repeat(3000);
    for i in 0..200 {
        let mut r = req(Some(0.0));
        r.seed = Some(i);
        cache.insert(
            key("", "auto", None, &r),
            entry(&text, Duration::from_secs(60)),
        );
    }
    let s = cache.stats();
    assert!(s.bytes <= cfg.max_bytes, "{} > {}", s.bytes, cfg.max_bytes);
    assert!(s.evictions > 0);
    // An answer above max_entry_bytes is not stored at all.
    cache.insert([9; 32], entry(&"y".repeat(10_000), Duration::from_secs(60)));
    assert_eq!(cache.stats().too_large, 1);
}
