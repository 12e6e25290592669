//! The response cache through the HTTP surface: hit / miss / bypass, per-request control,
//! tenant isolation, streaming replay, and coalescing counted by the simulator.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::common::{post_json, post_request, send, setup, setup_with};
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use serde_json::{Value, json};
use switchyard::Gateway;
use switchyard_sim as sim;
use switchyard_types::ids::Secret;

const ADMIN: &str = "test-admin-key-0123456789";

fn chat(temperature: f64, text: &str) -> Value {
    json!({
        "model": "gpt-4o-mini",
        "temperature": temperature,
        "messages": [{"role": "user", "content": text}],
    })
}

fn cache_header(h: &HeaderMap) -> &str {
    h.get("x-switchyard-cache").unwrap().to_str().unwrap()
}

fn upstream_calls(gw_sim: &sim::SimHandle) -> u64 {
    gw_sim.sim.stats().model("gpt-4o-mini").requests
}

async fn call(gw: &Arc<Gateway>, body: &Value) -> (StatusCode, HeaderMap, Value) {
    let (s, h, b) = send(gw, post_request("/v1/chat/completions", body)).await;
    (s, h, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

#[tokio::test]
async fn deterministic_requests_hit_and_others_bypass() {
    let t = setup().await;
    let body = chat(0.0, "cache me");
    let (s, h, first) = call(&t.gw, &body).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(cache_header(&h), "miss");
    let (_, h, second) = call(&t.gw, &body).await;
    assert_eq!(cache_header(&h), "hit");
    assert_eq!(h["x-switchyard-attempts"], "0");
    assert_eq!(h["x-switchyard-cost-usd"], "0.00000000");
    assert_eq!(
        first["choices"][0]["message"],
        second["choices"][0]["message"]
    );
    assert_eq!(first["usage"], second["usage"]);
    assert_ne!(first["id"], second["id"], "a cached answer gets its own id");
    assert_eq!(upstream_calls(&t.sim), 1);

    // Not deterministic: never cached.
    let warm = chat(0.7, "cache me");
    for _ in 0..2 {
        let (_, h, _) = call(&t.gw, &warm).await;
        assert_eq!(cache_header(&h), "bypass");
    }
    assert_eq!(upstream_calls(&t.sim), 3);

    // A seed makes it deterministic; a different prompt is a different key.
    let mut seeded = chat(0.7, "other");
    seeded["seed"] = json!(42);
    let (_, h, _) = call(&t.gw, &seeded).await;
    assert_eq!(cache_header(&h), "miss");
    let (_, h, _) = call(&t.gw, &seeded).await;
    assert_eq!(cache_header(&h), "hit");
}

#[tokio::test]
async fn per_request_control_in_the_body_and_cache_control() {
    let t = setup().await;
    // Opt in while not deterministic, with a TTL.
    let mut on = chat(0.9, "opt in");
    on["cache"] = json!({"mode": "on", "ttl_s": 60});
    assert_eq!(cache_header(&call(&t.gw, &on).await.1), "miss");
    assert_eq!(cache_header(&call(&t.gw, &on).await.1), "hit");

    let base = chat(0.0, "controlled");
    let mut off = base.clone();
    off["cache"] = json!({"mode": "off"});
    assert_eq!(cache_header(&call(&t.gw, &off).await.1), "bypass");
    let mut read_only = base.clone();
    read_only["cache"] = json!({"mode": "read_only"});
    assert_eq!(cache_header(&call(&t.gw, &read_only).await.1), "miss");
    // read_only stored nothing:
    assert_eq!(cache_header(&call(&t.gw, &read_only).await.1), "miss");
    let mut write_only = base.clone();
    write_only["cache"] = json!({"mode": "write_only"});
    assert_eq!(cache_header(&call(&t.gw, &write_only).await.1), "miss");
    assert_eq!(cache_header(&call(&t.gw, &base).await.1), "hit");

    // Cache-Control: no-cache skips the lookup (and refreshes the entry).
    let req = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("cache-control", "no-cache")
        .body(Body::from(base.to_string()))
        .unwrap();
    let (_, h, _) = send(&t.gw, req).await;
    assert_eq!(cache_header(&h), "miss");

    // The `cache` field is Switchyard's: it never reaches the upstream.
    let sent = t.sim.sim.recent_requests();
    assert!(
        sent.iter().all(|r| !r.body.contains("\"cache\"")),
        "the cache control leaked upstream"
    );

    // A bad TTL is a 400 naming the field.
    let mut bad = base.clone();
    bad["cache"] = json!({"ttl_s": 0});
    let (s, v) = post_json(&t.gw, "/v1/chat/completions", bad).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["param"], "cache.ttl_s");
    let mut unknown = base;
    unknown["cache"] = json!({"mode": "sometimes"});
    let (s, v) = post_json(&t.gw, "/v1/chat/completions", unknown).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"]["param"].as_str().unwrap().starts_with("cache"));
}

async fn new_key(gw: &Arc<Gateway>, name: &str) -> String {
    let req = Request::post("/admin/keys")
        .header("authorization", format!("Bearer {ADMIN}"))
        .header("content-type", "application/json")
        .body(Body::from(json!({"name": name}).to_string()))
        .unwrap();
    let (s, _, b) = send(gw, req).await;
    assert_eq!(s, StatusCode::CREATED);
    let v: Value = serde_json::from_slice(&b).unwrap();
    v["key"].as_str().unwrap().to_owned()
}

async fn call_as(gw: &Arc<Gateway>, key: &str, body: &Value) -> HeaderMap {
    let req = Request::post("/v1/chat/completions")
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let (s, h, _) = send(gw, req).await;
    assert_eq!(s, StatusCode::OK);
    h
}

#[tokio::test]
async fn keys_never_share_cache_entries() {
    let t = setup_with(|c| c.auth.admin_key = Some(Secret::new(ADMIN))).await;
    let a = new_key(&t.gw, "tenant-a").await;
    let b = new_key(&t.gw, "tenant-b").await;
    let body = chat(0.0, "same question");
    assert_eq!(cache_header(&call_as(&t.gw, &a, &body).await), "miss");
    assert_eq!(cache_header(&call_as(&t.gw, &a, &body).await), "hit");
    assert_eq!(cache_header(&call_as(&t.gw, &b, &body).await), "miss");
    assert_eq!(cache_header(&call_as(&t.gw, &b, &body).await), "hit");
    assert_eq!(upstream_calls(&t.sim), 2);
}

/// Frames of an SSE body, `data:` payloads only.
fn sse_data(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .split("\n\n")
        .filter_map(|f| f.strip_prefix("data: ").map(str::to_owned))
        .collect()
}

fn streamed_text(frames: &[String]) -> String {
    frames
        .iter()
        .filter(|f| *f != "[DONE]")
        .filter_map(|f| serde_json::from_str::<Value>(f).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test]
async fn a_cached_answer_is_replayed_as_a_proper_stream_with_usage() {
    let t = setup().await;
    let mut body = chat(0.0, "stream me");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let (s, h, first) = send(&t.gw, post_request("/v1/chat/completions", &body)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(cache_header(&h), "miss");
    let (_, h, second) = send(&t.gw, post_request("/v1/chat/completions", &body)).await;
    assert_eq!(cache_header(&h), "hit");
    assert_eq!(h["content-type"], "text/event-stream");
    let (a, b) = (sse_data(&first), sse_data(&second));
    assert_eq!(b.last().unwrap(), "[DONE]");
    assert!(!streamed_text(&a).is_empty());
    assert_eq!(streamed_text(&a), streamed_text(&b));
    let usage = |frames: &[String]| {
        frames
            .iter()
            .filter_map(|f| serde_json::from_str::<Value>(f).ok())
            .find_map(|v| v.get("usage").filter(|u| !u.is_null()).cloned())
    };
    assert_eq!(usage(&a).unwrap(), usage(&b).unwrap());
    let finish = b
        .iter()
        .filter_map(|f| serde_json::from_str::<Value>(f).ok())
        .find_map(|v| v["choices"][0]["finish_reason"].as_str().map(str::to_owned));
    assert_eq!(finish.as_deref(), Some("stop"));
    assert_eq!(upstream_calls(&t.sim), 1);

    // The streamed answer fills the cache for a complete request too.
    body["stream"] = json!(false);
    body.as_object_mut().unwrap().remove("stream_options");
    let (_, h, v) = call(&t.gw, &body).await;
    assert_eq!(cache_header(&h), "hit");
    assert_eq!(
        v["choices"][0]["message"]["content"].as_str().unwrap(),
        streamed_text(&a)
    );
}

#[tokio::test]
async fn concurrent_identical_misses_call_the_upstream_once() {
    // A slow upstream, so the requests overlap.
    let sim_cfg: sim::SimConfig =
        toml::from_str("[models.\"gpt-4o-mini\"]\nttft_ms = { mean = 400, stddev = 1 }\n").unwrap();
    let sim = sim::spawn(sim_cfg, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let cfg = switchyard::demo::config(&format!("http://{}", sim.addr)).unwrap();
    let gw = Gateway::new(cfg).unwrap();
    let body = chat(0.0, "everyone asks this");
    let calls: Vec<_> = (0..12)
        .map(|_| {
            let gw = gw.clone();
            let body = body.clone();
            tokio::spawn(async move { call(&gw, &body).await })
        })
        .collect();
    let mut texts = Vec::new();
    let mut outcomes = Vec::new();
    for c in calls {
        let (s, h, v) = c.await.unwrap();
        assert_eq!(s, StatusCode::OK);
        outcomes.push(cache_header(&h).to_owned());
        texts.push(v["choices"][0]["message"]["content"].clone());
    }
    assert_eq!(sim.sim.stats().model("gpt-4o-mini").requests, 1);
    assert_eq!(outcomes.iter().filter(|o| *o == "miss").count(), 1);
    assert_eq!(outcomes.iter().filter(|o| *o == "hit").count(), 11);
    assert!(texts.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(gw.cache.stats().coalesced, 11);
}

#[tokio::test]
async fn stats_and_clearing_the_cache_need_the_admin_key() {
    let t = setup_with(|c| c.auth.admin_key = Some(Secret::new(ADMIN))).await;
    let body = chat(0.0, "to be cleared");
    call(&t.gw, &body).await;
    let (s, v) = common::get_json(&t.gw, "/ai/cache/stats").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["stats"]["entries"], 1);
    assert_eq!(v["stats"]["misses"], 1);
    let del = |auth: Option<&str>| {
        let mut r = Request::delete("/ai/cache");
        if let Some(a) = auth {
            r = r.header("authorization", format!("Bearer {a}"));
        }
        r.body(Body::empty()).unwrap()
    };
    assert_eq!(send(&t.gw, del(None)).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        send(&t.gw, del(Some("nope"))).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (s, _, b) = send(&t.gw, del(Some(ADMIN))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(serde_json::from_slice::<Value>(&b).unwrap()["cleared"], 1);
    assert_eq!(cache_header(&call(&t.gw, &body).await.1), "miss");
}

#[tokio::test]
async fn route_answers_say_when_they_came_from_the_cache() {
    let t = setup().await;
    let body = json!({"prompt": "hello", "route": "cheap", "temperature": 0});
    let (_, first) = post_json(&t.gw, "/ai/route", body.clone()).await;
    assert_eq!(first["cached"], false);
    assert_eq!(first["cache"], "miss");
    let (_, second) = post_json(&t.gw, "/ai/route", body).await;
    assert_eq!(second["cached"], true);
    assert_eq!(second["cost_usd"], 0.0);
    assert_eq!(second["message"], first["message"]);
}
