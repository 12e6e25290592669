use super::*;
use crate::types::{Message, Role};

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
    assert_eq!(bad.validate(&cfg).unwrap_err().0, "cache.ttl_s");
    let zero = CacheRequest {
        mode: None,
        ttl_s: Some(0),
    };
    assert!(zero.validate(&cfg).is_err());
}
