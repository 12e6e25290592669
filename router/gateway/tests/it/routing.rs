//! Routing end to end, in-process (`oneshot` on `switchyard::app`) against the real simulator
//! on loopback, with scripted faults: preference changes the choice, failures fall back
//! invisibly, rate limits cool a model down, hangs time out, breakers open and close, streams
//! fail over before their first token and never after, batches keep their order.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use switchyard::config::{self, Vars};
use switchyard::{Gateway, app};
use switchyard_routing::health::HealthConfig;
use switchyard_sim::{self as sim, FaultMode, SimHandle};
use tower::ServiceExt;

use crate::common;

/// Upstream ids in the simulator.
const MINI: &str = "gpt-4o-mini";
const HAIKU: &str = "claude-3-5-haiku-20241022";
const FLASH: &str = "gemini-2.0-flash";
const LLAMA: &str = "llama3.2";

fn config_text(sim_url: &str, extra: &str) -> String {
    let providers = crate::common::all_providers(sim_url);
    format!(
        r#"
{providers}

[routes.cheap]
models = ["gpt-4o-mini", "claude-3-5-haiku", "gemini-2.0-flash", "llama3.2"]
optimize = "cost"
[routes.fast]
models = ["gpt-4o-mini", "claude-3-5-haiku", "gemini-2.0-flash", "llama3.2"]
optimize = "latency"
# The preferred (cheaper) model and one alternate at another provider.
[routes.pair]
models = ["gpt-4o-mini", "claude-3-5-haiku"]
optimize = "cost"
max_attempts = 3
ttft_ms = 400
attempt_ms = 400
total_ms = 5000
retry = {{ max_per_model = 0 }}
{extra}
"#
    )
}

struct Setup {
    sim: SimHandle,
    gw: Arc<Gateway>,
}

/// Fast breaker timings so a test can watch one open and close.
fn quick_health() -> HealthConfig {
    HealthConfig {
        breaker_base: Duration::from_millis(300),
        breaker_max: Duration::from_millis(1200),
        ..HealthConfig::default()
    }
}

async fn setup_with(sim_config: sim::SimConfig, extra: &str) -> Setup {
    let sim = sim::spawn(sim_config, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let text = config_text(&format!("http://{}", sim.addr), extra);
    let cfg = config::load_str(&text, &Vars::only(&[])).unwrap();
    let gw = Gateway::with_health(cfg, quick_health()).unwrap();
    Setup { sim, gw }
}

async fn setup() -> Setup {
    setup_with(sim::SimConfig::default(), "").await
}

async fn post(
    gw: &Arc<Gateway>,
    path: &str,
    body: Value,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    common::send(gw, common::post_request(path, &body)).await
}

async fn route(gw: &Arc<Gateway>, body: Value) -> (StatusCode, Value) {
    let (status, _, bytes) = post(gw, "/ai/route", body).await;
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)));
    (status, v)
}

fn ask(route_name: &str) -> Value {
    json!({"route": route_name, "prompt": "Say hello.", "max_tokens": 8})
}

#[tokio::test]
async fn cost_and_latency_preferences_choose_different_models_and_say_why() {
    // Local llama is free but slow; gemini flash is fast.
    let mut sim_config = sim::SimConfig::default();
    let slow = sim::Profile {
        ttft_ms: Some(sim::LatencyDist {
            mean: 60.0,
            stddev: 0.0,
            ..Default::default()
        }),
        tpot_ms: Some(sim::LatencyDist {
            mean: 4.0,
            stddev: 0.0,
            ..Default::default()
        }),
        ..Default::default()
    };
    let fast = sim::Profile {
        ttft_ms: Some(sim::LatencyDist {
            mean: 5.0,
            stddev: 0.0,
            ..Default::default()
        }),
        tpot_ms: Some(sim::LatencyDist {
            mean: 0.5,
            stddev: 0.0,
            ..Default::default()
        }),
        ..Default::default()
    };
    let medium = sim::Profile {
        ttft_ms: Some(sim::LatencyDist {
            mean: 30.0,
            stddev: 0.0,
            ..Default::default()
        }),
        tpot_ms: Some(sim::LatencyDist {
            mean: 2.0,
            stddev: 0.0,
            ..Default::default()
        }),
        ..Default::default()
    };
    sim_config.models.insert(LLAMA.into(), slow);
    sim_config.models.insert(FLASH.into(), fast);
    sim_config.models.insert(MINI.into(), medium.clone());
    sim_config.models.insert(HAIKU.into(), medium);
    let s = setup_with(sim_config, "").await;
    // Warm up: every model answers a few times, so latency estimates come from observation.
    for model in [
        "gpt-4o-mini",
        "claude-3-5-haiku",
        "gemini-2.0-flash",
        "llama3.2",
    ] {
        for _ in 0..3 {
            let (status, _) = route(
                &s.gw,
                json!({"models": [model], "prompt": "hi", "max_tokens": 8}),
            )
            .await;
            assert_eq!(status, StatusCode::OK);
        }
    }
    let (status, cheap) = route(&s.gw, ask("cheap")).await;
    assert_eq!(status, StatusCode::OK, "{cheap}");
    let (status, fast) = route(&s.gw, ask("fast")).await;
    assert_eq!(status, StatusCode::OK, "{fast}");
    assert_eq!(cheap["model"], "llama3.2", "{}", cheap["routing"]);
    assert_eq!(fast["model"], "gemini-2.0-flash", "{}", fast["routing"]);
    for answer in [&cheap, &fast] {
        let routing = &answer["routing"];
        assert_eq!(routing["chosen"], answer["model"]);
        assert!(
            routing["reason"]
                .as_str()
                .unwrap()
                .contains(answer["model"].as_str().unwrap())
        );
        let candidates = routing["candidates"].as_array().unwrap();
        assert_eq!(candidates.len(), 4);
        assert_eq!(candidates[0]["model"], answer["model"]);
        for c in candidates {
            for key in ["score", "cost_usd", "latency_ms", "reliability", "terms"] {
                assert!(c.get(key).is_some(), "candidate without {key}: {c}");
            }
        }
        // Scores ascend: the chosen one is best.
        let scores: Vec<f64> = candidates
            .iter()
            .map(|c| c["score"].as_f64().unwrap())
            .collect();
        assert!(scores.windows(2).all(|w| w[0] <= w[1]), "{scores:?}");
    }
    assert_eq!(cheap["cost_usd"], 0.0);
}

#[tokio::test]
async fn a_failing_model_falls_back_invisibly_to_another_provider() {
    let s = setup().await;
    for fault in ["500", "503", "reset", "malformed", "529"] {
        s.sim
            .sim
            .set_fault(MINI, fault, FaultMode::Count(1))
            .unwrap();
        let (status, v) = route(&s.gw, ask("pair")).await;
        assert_eq!(status, StatusCode::OK, "{fault}: {v}");
        assert_eq!(v["model"], "claude-3-5-haiku", "{fault}");
        assert_eq!(v["attempts"], 2, "{fault}");
        let attempts = v["routing"]["attempts"].as_array().unwrap();
        assert_eq!(attempts[0]["model"], "gpt-4o-mini");
        assert_ne!(attempts[0]["outcome"], "ok");
        assert_eq!(attempts[1]["outcome"], "ok");
    }
}

#[tokio::test]
async fn a_bad_request_fails_fast_without_fallback() {
    let s = setup().await;
    s.sim
        .sim
        .set_fault(MINI, "400", FaultMode::Count(1))
        .unwrap();
    let (status, v) = route(&s.gw, ask("pair")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(s.sim.sim.stats().model(HAIKU).requests, 0);
}

#[tokio::test]
async fn a_rate_limited_model_cools_down_for_its_retry_after() {
    let s = setup().await;
    s.sim
        .sim
        .set_fault(MINI, "429:1", FaultMode::Count(1))
        .unwrap();
    let (status, v) = route(&s.gw, ask("pair")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["model"], "claude-3-5-haiku");
    // During the cool-down the model is filtered, not tried.
    let (_, v) = route(&s.gw, ask("pair")).await;
    assert_eq!(v["model"], "claude-3-5-haiku");
    let mini = v["routing"]["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["model"] == "gpt-4o-mini")
        .unwrap()
        .clone();
    assert_eq!(mini["filter"], "health", "{mini}");
    assert_eq!(s.sim.sim.stats().model(MINI).requests, 1);
    // After it, the cheaper model is back; a 429 did not count against its reliability.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, v) = route(&s.gw, ask("pair")).await;
    assert_eq!(v["model"], "gpt-4o-mini", "{}", v["routing"]);
}

#[tokio::test]
async fn a_hanging_model_times_out_and_the_next_answers() {
    let s = setup().await;
    s.sim
        .sim
        .set_fault(MINI, "hang", FaultMode::Count(1))
        .unwrap();
    let started = std::time::Instant::now();
    let (status, v) = route(&s.gw, ask("pair")).await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["model"], "claude-3-5-haiku");
    assert_eq!(v["routing"]["attempts"][0]["outcome"], "timeout");
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // The abandoned upstream request was closed, not leaked.
    for _ in 0..50 {
        if s.sim.sim.stats().model(MINI).streams_cancelled == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(s.sim.sim.stats().model(MINI).streams_cancelled, 1);
}

#[tokio::test]
async fn a_5xx_storm_opens_the_breaker_and_it_closes_after_the_fault_lifts() {
    let s = setup().await;
    s.sim
        .sim
        .set_fault(MINI, "500", FaultMode::Rate(1.0))
        .unwrap();
    for _ in 0..8 {
        let (status, v) = route(&s.gw, ask("pair")).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["model"], "claude-3-5-haiku");
    }
    // Five consecutive failures opened the breaker: the model is no longer called.
    assert_eq!(s.sim.sim.stats().model(MINI).requests, 5);
    let health = health_of(&s.gw, "gpt-4o-mini").await;
    assert!(health["breaker"].get("open").is_some(), "{health}");
    assert_eq!(health["consecutive_failures"], 5);
    // Lift the fault; after the open period one probe goes through, succeeds, and closes it.
    s.sim.sim.clear_faults();
    tokio::time::sleep(Duration::from_millis(350)).await;
    let mut back = false;
    for _ in 0..20 {
        let (_, v) = route(&s.gw, ask("pair")).await;
        if v["model"] == "gpt-4o-mini" {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back, "traffic never returned to the recovered model");
    let health = health_of(&s.gw, "gpt-4o-mini").await;
    assert_eq!(health["breaker"], "closed", "{health}");
}

async fn health_of(gw: &Arc<Gateway>, model: &str) -> Value {
    let req = Request::get("/health/detailed")
        .body(Body::empty())
        .unwrap();
    let resp = app(gw.clone()).oneshot(req).await.unwrap();
    let v: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    v["providers"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|p| p["models"].as_array().unwrap().clone())
        .find(|m| m["model"] == model)
        .unwrap()
}

fn frames(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .split("\n\n")
        .filter(|f| !f.is_empty())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn a_stream_cut_before_its_first_token_fails_over_invisibly() {
    let s = setup().await;
    for fault in ["cut:0", "reset", "503", "malformed"] {
        s.sim
            .sim
            .set_fault(MINI, fault, FaultMode::Count(1))
            .unwrap();
        let body = json!({"model": "pair", "stream": true, "max_tokens": 6,
                          "messages": [{"role": "user", "content": "hi"}]});
        let (status, headers, bytes) = post(&s.gw, "/v1/chat/completions", body).await;
        assert_eq!(status, StatusCode::OK, "{fault}");
        assert_eq!(headers["x-switchyard-model"], "claude-3-5-haiku", "{fault}");
        assert_eq!(headers["x-switchyard-attempts"], "2", "{fault}");
        let f = frames(&bytes);
        assert_eq!(f.last().unwrap(), "data: [DONE]", "{fault}");
        assert!(!f.iter().any(|x| x.contains("\"error\"")), "{fault}: {f:?}");
    }
}

#[tokio::test]
async fn a_stream_cut_after_its_first_token_ends_with_an_error_event() {
    let s = setup().await;
    s.sim
        .sim
        .set_fault(MINI, "cut:2", FaultMode::Count(1))
        .unwrap();
    let body = json!({"route": "pair", "stream": true, "max_tokens": 12, "prompt": "hi"});
    let (status, _, bytes) = post(&s.gw, "/ai/route", body).await;
    assert_eq!(status, StatusCode::OK);
    let f = frames(&bytes);
    assert!(f[0].starts_with("event: routing"), "{f:?}");
    assert!(f.last().unwrap().contains("\"error\""), "{f:?}");
    assert!(!f.iter().any(|x| x == "data: [DONE]"));
    // No second model was called after content had reached the client.
    assert_eq!(s.sim.sim.stats().model(HAIKU).requests, 0);
}

#[tokio::test]
async fn batches_keep_order_and_report_failures_per_item() {
    let s = setup().await;
    let body = json!({"requests": [
        {"prompt": "one", "models": ["gpt-4o-mini"], "max_tokens": 4},
        {"prompt": "two", "models": ["no-such-model"]},
        {"prompt": "three", "route": "fast", "max_tokens": 4},
        {"messages": [], "route": "fast"},
        {"prompt": "five", "models": ["llama3.2"], "max_tokens": 4, "metadata": {"n": 5}}
    ], "concurrency": 3});
    let (status, _, bytes) = post(&s.gw, "/ai/route/batch", body).await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 5);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["index"], i);
    }
    assert_eq!(results[0]["status"], 200);
    assert_eq!(results[0]["response"]["model"], "gpt-4o-mini");
    assert_eq!(results[1]["status"], 400);
    assert_eq!(results[1]["error"]["param"], "models[0]");
    assert_eq!(results[2]["status"], 200);
    assert_eq!(results[3]["status"], 400);
    assert_eq!(results[4]["response"]["metadata"]["n"], 5);
    assert_eq!(v["succeeded"], 3);
    assert_eq!(v["failed"], 2);
}

#[tokio::test]
async fn request_limits_filter_candidates_with_reasons() {
    let s = setup().await;
    // A tiny cost ceiling leaves only the free local model.
    let (status, v) = route(
        &s.gw,
        json!({"route": "fast", "prompt": "hi", "max_tokens": 100,
               "preferences": {"max_cost_usd": 0.0000001}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["model"], "llama3.2");
    let filtered: Vec<&Value> = v["routing"]["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["filter"] == "cost")
        .collect();
    assert_eq!(filtered.len(), 3);
    // Nothing fits a prompt longer than every window: a 400 that names why.
    let (status, v) = route(
        &s.gw,
        json!({"route": "fast", "prompt": "hi", "max_tokens": 1_000_000}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["code"], "no_eligible_model");
}

#[tokio::test]
async fn route_names_work_in_the_openai_endpoint_with_routing_headers() {
    let s = setup().await;
    let body =
        json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4});
    let (status, headers, _) = post(&s.gw, "/v1/chat/completions", body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-switchyard-route"], "fast");
    assert!(headers.contains_key("x-switchyard-cost-usd"));
    assert!(headers.contains_key("x-switchyard-provider"));
}
