//! Shadow traffic end to end, in-process against the simulator, with a SQLite store: a shadow
//! never changes the answer (body, status, headers: compared with the same gateway without the
//! shadow, each on a fresh simulator, whose seeded answers are then equal), reaches its model,
//! and is logged in a row of its own that names the original; a failing shadow model changes
//! nothing; an unbilled shadow costs the key nothing and a billed one its own cost; shadows are
//! dropped when the pool of shadows in flight is full.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use serde_json::{Value, json};
use switchyard::config::{self, AuthMode, Config, Vars};
use switchyard::{Gateway, app};
use switchyard_sim::{self as sim, FaultMode, SimHandle};
use switchyard_store::{RequestLog, RequestRecord};
use switchyard_types::Usage;
use switchyard_types::ids::Secret;
use tower::ServiceExt;

use crate::common::send;

const MINI: &str = "gpt-4o-mini";
const HAIKU: &str = "claude-3-5-haiku-20241022";
const ADMIN: &str = "test-admin-key-0123456789";

fn config_text(sim_url: &str, routes: &str) -> String {
    let providers = crate::common::pair_providers(sim_url);
    format!(
        r#"
{providers}
{routes}
"#
    )
}

const SHADOWED: &str = r#"
[routes.r]
models = ["gpt-4o-mini"]
shadow = { model = "claude-3-5-haiku", sample = 1.0, log_text = true }
"#;

const PLAIN: &str = r#"
[routes.r]
models = ["gpt-4o-mini"]
"#;

struct T {
    sim: SimHandle,
    gw: Arc<Gateway>,
    _dir: tempfile::TempDir,
}

/// A gateway with a SQLite store (flushed every 5 ms) over a fresh simulator.
async fn start(routes: &str, edit: impl FnOnce(&mut Config)) -> T {
    let sim = sim::spawn(
        sim::SimConfig::default(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap();
    let text = config_text(&format!("http://{}", sim.addr), routes);
    let mut cfg = config::load_str(&text, &Vars::only(&[])).unwrap();
    let dir = tempfile::tempdir().unwrap();
    cfg.store.url = format!("sqlite://{}/log.db", dir.path().display());
    cfg.store.flush_ms = 5;
    edit(&mut cfg);
    let gw = Gateway::connect(cfg).await.unwrap();
    T { sim, gw, _dir: dir }
}

fn chat_request(body: &Value, key: Option<&str>) -> Request<Body> {
    let mut req = Request::post("/v1/chat/completions").header("content-type", "application/json");
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    req.body(Body::from(body.to_string())).unwrap()
}

fn ask(stream: bool) -> Value {
    json!({
        "model": "r",
        "max_tokens": 24,
        "stream": stream,
        "messages": [{"role": "user", "content": "Compare two models for me."}],
    })
}

/// The request's row id (the gateway's `x-request-id` when the client sent none).
fn request_id(h: &HeaderMap) -> String {
    h["x-request-id"].to_str().unwrap().to_owned()
}

/// Headers that differ between any two requests.
const PER_REQUEST: [&str; 3] = [
    "x-request-id",
    "x-switchyard-request-id",
    "x-switchyard-overhead-ms",
];

fn assert_same_headers(a: &HeaderMap, b: &HeaderMap) {
    let names = |h: &HeaderMap| {
        let mut n: Vec<String> = h.keys().map(|k| k.to_string()).collect();
        n.sort();
        n
    };
    assert_eq!(names(a), names(b));
    for (name, value) in a {
        if !PER_REQUEST.contains(&name.as_str()) {
            assert_eq!(Some(value), b.get(name), "{name}");
        }
    }
}

/// A complete answer without the fields every answer has of its own.
fn comparable(body: &[u8]) -> Value {
    let mut v: Value = serde_json::from_slice(body).unwrap();
    let o = v.as_object_mut().unwrap();
    o.remove("id");
    o.remove("created");
    v
}

/// A streamed answer's text and final usage.
fn streamed(body: &[u8]) -> (String, Value) {
    let text = String::from_utf8_lossy(body);
    let mut content = String::new();
    let mut usage = Value::Null;
    for data in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            continue;
        };
        if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
            content.push_str(c);
        }
        if !v["usage"].is_null() {
            usage = v["usage"].clone();
        }
    }
    (content, usage)
}

/// The shadow rows of `id`, once `n` are written (at most 10 s).
async fn shadows_of(gw: &Gateway, id: &str, n: usize) -> Vec<RequestRecord> {
    let store = gw.store.as_ref().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = store.shadows_of(id).await.unwrap();
        if rows.len() >= n {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "{} shadow rows of {id}",
            rows.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn row(gw: &Gateway, id: &str) -> RequestRecord {
    let store = gw.store.as_ref().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(r) = store.get_request(id).await.unwrap() {
            return r;
        }
        assert!(Instant::now() < deadline, "no row {id}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn price(gw: &Gateway, model: &str, r: &RequestRecord) -> i64 {
    let usage = Usage::new(r.prompt_tokens, r.completion_tokens);
    gw.config
        .models
        .get(model)
        .unwrap()
        .entry
        .usage_cost_pico(&usage)
}

async fn metrics(gw: &Arc<Gateway>) -> String {
    let req = Request::get("/metrics").body(Body::empty()).unwrap();
    let (_, _, body) = send(gw, req).await;
    String::from_utf8(body).unwrap()
}

/// The value of one sample (`name{labels}`), 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_shadow_changes_nothing_in_the_answer_reaches_its_model_and_is_logged() {
    let with = start(SHADOWED, |_| {}).await;
    let without = start(PLAIN, |_| {}).await;

    // A complete answer.
    let (sa, ha, ba) = send(&with.gw, chat_request(&ask(false), None)).await;
    let (sb, hb, bb) = send(&without.gw, chat_request(&ask(false), None)).await;
    assert_eq!(sa, StatusCode::OK, "{}", String::from_utf8_lossy(&ba));
    assert_eq!(sa, sb);
    assert_same_headers(&ha, &hb);
    assert_eq!(comparable(&ba), comparable(&bb));
    let id = request_id(&ha);
    let shadows = shadows_of(&with.gw, &id, 1).await;
    assert_eq!(shadows.len(), 1);
    let s = &shadows[0];
    assert_eq!(s.shadow_of.as_deref(), Some(id.as_str()));
    assert_ne!(s.id, id);
    assert_eq!(s.model.as_deref(), Some("claude-3-5-haiku"));
    assert_eq!((s.status, s.route.as_str(), s.stream), (200, "r", false));
    assert!(s.completion_tokens > 0);
    assert!(s.cost_picousd > 0);
    assert_eq!(s.cost_picousd, price(&with.gw, "claude-3-5-haiku", s));
    assert!(
        !s.response_text.as_deref().unwrap_or("").is_empty(),
        "{s:?}"
    );
    let real = row(&with.gw, &id).await;
    assert_eq!(real.shadow_of, None);
    assert_eq!(real.response_text, None);
    assert_eq!(real.model.as_deref(), Some("gpt-4o-mini"));
    assert_eq!(real.cost_picousd, price(&with.gw, "gpt-4o-mini", &real));
    assert_eq!(with.sim.sim.stats().model(HAIKU).requests, 1);
    assert_eq!(without.sim.sim.stats().model(HAIKU).requests, 0);

    // A stream: the shadow goes once the real stream has ended, as a stream of its own.
    let (sa, ha, ba) = send(&with.gw, chat_request(&ask(true), None)).await;
    let (sb, hb, bb) = send(&without.gw, chat_request(&ask(true), None)).await;
    assert_eq!((sa, sb), (StatusCode::OK, StatusCode::OK));
    assert_same_headers(&ha, &hb);
    let (text_a, usage_a) = streamed(&ba);
    assert!(!text_a.is_empty());
    assert_eq!((text_a, usage_a), streamed(&bb));
    let id = request_id(&ha);
    let shadows = shadows_of(&with.gw, &id, 1).await;
    let s = &shadows[0];
    assert_eq!(s.shadow_of.as_deref(), Some(id.as_str()));
    assert!(s.stream && s.ttft_ms.is_some(), "{s:?}");
    assert_eq!(s.status, 200);
    assert!(s.cost_picousd > 0);
    assert!(!s.response_text.as_deref().unwrap_or("").is_empty());
    assert_eq!(with.sim.sim.stats().model(HAIKU).requests, 2);
    assert_eq!(with.sim.sim.stats().model(MINI).requests, 2);

    // Shadows are counted in their own family, not as the gateway's requests.
    let m = metrics(&with.gw).await;
    assert_eq!(
        sample(
            &m,
            "switchyard_shadow_requests_total{route=\"r\",outcome=\"ok\"}"
        ),
        2.0,
        "{m}"
    );
    assert!(
        !m.lines().any(|l| l.starts_with("switchyard_requests_total")
            && l.contains("model=\"claude-3-5-haiku\"")),
        "{m}"
    );
}

#[tokio::test]
async fn a_failing_shadow_model_does_not_change_the_answer() {
    let with = start(SHADOWED, |_| {}).await;
    let without = start(PLAIN, |_| {}).await;
    with.sim
        .sim
        .set_fault(HAIKU, "500", FaultMode::Count(1))
        .unwrap();
    let (sa, ha, ba) = send(&with.gw, chat_request(&ask(false), None)).await;
    let (sb, hb, bb) = send(&without.gw, chat_request(&ask(false), None)).await;
    assert_eq!((sa, sb), (StatusCode::OK, StatusCode::OK));
    assert_same_headers(&ha, &hb);
    assert_eq!(comparable(&ba), comparable(&bb));
    let id = request_id(&ha);
    let s = shadows_of(&with.gw, &id, 1).await.remove(0);
    assert_eq!(s.status, 500, "{s:?}");
    assert!(s.error_code.is_some(), "{s:?}");
    assert_eq!(s.cost_picousd, 0);
    assert_eq!(with.sim.sim.stats().model(HAIKU).requests, 1);
    let m = metrics(&with.gw).await;
    assert_eq!(
        sample(
            &m,
            "switchyard_shadow_requests_total{route=\"r\",outcome=\"error\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn a_request_the_shadow_model_answered_itself_is_not_shadowed() {
    let t = start(
        r#"
[routes.r]
models = ["gpt-4o-mini", "claude-3-5-haiku"]
optimize = "cost"
retry = { max_per_model = 0 }
shadow = { model = "claude-3-5-haiku", sample = 1.0 }
"#,
        |_| {},
    )
    .await;
    t.sim
        .sim
        .set_fault(MINI, "500", FaultMode::Count(1))
        .unwrap();
    let (s, h, b) = send(&t.gw, chat_request(&ask(false), None)).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    assert_eq!(h["x-switchyard-model"], "claude-3-5-haiku");
    assert_eq!(t.sim.sim.stats().model(HAIKU).requests, 1);
    let m = metrics(&t.gw).await;
    assert_eq!(
        sample(
            &m,
            "switchyard_shadow_requests_total{route=\"r\",outcome=\"same_model\"}"
        ),
        1.0,
        "{m}"
    );
}

async fn admin(gw: &Arc<Gateway>, method: Method, path: &str, body: Option<Value>) -> Value {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {ADMIN}"))
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let (s, _, b) = send(gw, req).await;
    assert!(s.is_success(), "{s}: {}", String::from_utf8_lossy(&b));
    serde_json::from_slice(&b).unwrap()
}

/// The key's spend: what this process settled, and what the store's ledger holds.
async fn spend(gw: &Arc<Gateway>, id: &str) -> (i64, i64) {
    let v = admin(gw, Method::GET, &format!("/admin/keys/{id}/spend"), None).await;
    let ledger = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["spent_picousd"].as_i64().unwrap())
        .sum();
    (v["spent_picousd"].as_i64().unwrap(), ledger)
}

/// Until the ledger has written `want` (at most 10 s).
async fn ledger_reaches(gw: &Arc<Gateway>, id: &str, want: i64) -> (i64, i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = spend(gw, id).await;
        if s.1 >= want || Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_unbilled_shadow_costs_the_key_nothing_and_a_billed_one_its_own_cost() {
    let t = start(
        r#"
[routes.free]
models = ["gpt-4o-mini"]
shadow = { model = "claude-3-5-haiku", sample = 1.0 }
[routes.billed]
models = ["gpt-4o-mini"]
shadow = { model = "claude-3-5-haiku", sample = 1.0, bill = true }
"#,
        |c| {
            c.auth.admin_key = Some(Secret::new(ADMIN));
            c.auth.mode = Some(AuthMode::Keys);
        },
    )
    .await;
    let created = admin(
        &t.gw,
        Method::POST,
        "/admin/keys",
        Some(json!({"name": "shadowed", "budget_usd": 1.0})),
    )
    .await;
    let (key_id, key) = (
        created["id"].as_str().unwrap().to_owned(),
        created["key"].as_str().unwrap().to_owned(),
    );
    let mut body = ask(false);
    body["model"] = json!("free");
    let (s, h, b) = send(&t.gw, chat_request(&body, Some(&key))).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    let id = request_id(&h);
    let shadow = shadows_of(&t.gw, &id, 1).await.remove(0);
    assert!(shadow.cost_picousd > 0);
    // The row says whose request it shadows; the money stays out of the key's spend.
    assert_eq!(shadow.key_id.as_deref(), Some(key_id.as_str()));
    let real = row(&t.gw, &id).await.cost_picousd;
    assert!(real > 0);
    assert_eq!(ledger_reaches(&t.gw, &key_id, real).await, (real, real));

    body["model"] = json!("billed");
    let (s, h, _) = send(&t.gw, chat_request(&body, Some(&key))).await;
    assert_eq!(s, StatusCode::OK);
    let id = request_id(&h);
    let shadow = shadows_of(&t.gw, &id, 1).await.remove(0);
    let second = row(&t.gw, &id).await.cost_picousd;
    let want = real + second + shadow.cost_picousd;
    assert_eq!(ledger_reaches(&t.gw, &key_id, want).await, (want, want));
}

#[tokio::test]
async fn shadows_never_hold_up_the_answer_and_are_dropped_when_the_pool_is_full() {
    // max_in_flight / 64 = 2 shadows at a time.
    let t = start(SHADOWED, |c| c.server.max_in_flight = 128).await;
    assert_eq!(t.gw.shadows.available(), 2);
    // The first two shadows hang upstream (until the route's deadline) and hold both permits;
    // their answers, a complete one and a whole stream, came back all the same.
    t.sim
        .sim
        .set_fault(HAIKU, "hang", FaultMode::Count(2))
        .unwrap();
    let (s, _, _) = send(&t.gw, chat_request(&ask(false), None)).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, body) = send(&t.gw, chat_request(&ask(true), None)).await;
    assert_eq!(s, StatusCode::OK);
    let text = String::from_utf8_lossy(&body);
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert!(!streamed(&body).0.is_empty());
    let deadline = Instant::now() + Duration::from_secs(10);
    while t.sim.sim.stats().model(HAIKU).in_flight < 2 {
        assert!(
            Instant::now() < deadline,
            "the shadows never reached the simulator"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(t.gw.shadows.available(), 0);
    for stream in [false, true, false, true, false] {
        let (s, _, _) = send(&t.gw, chat_request(&ask(stream), None)).await;
        assert_eq!(s, StatusCode::OK);
    }
    let m = metrics(&t.gw).await;
    assert_eq!(
        sample(&m, "switchyard_shadow_dropped_total{route=\"r\"}"),
        5.0,
        "{m}"
    );
    assert_eq!(t.sim.sim.stats().model(HAIKU).requests, 2);
    assert_eq!(t.sim.sim.stats().model(MINI).requests, 7);
}

/// `POST /ai/route` on route `route`; status, headers and the answer.
async fn route_call(
    gw: &Arc<Gateway>,
    route: &str,
    stream: bool,
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let body = json!({
        "route": route,
        "prompt": "Compare two models for me.",
        "max_tokens": 24,
        "stream": stream,
    });
    let req = Request::post("/ai/route")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    send(gw, req).await
}

/// The explanation of a `/ai/route` answer: the JSON's `routing`, or a stream's `event: routing`.
fn routing_of(body: &[u8], stream: bool) -> Value {
    if !stream {
        let v: Value = serde_json::from_slice(body).unwrap();
        return v["routing"].clone();
    }
    let text = String::from_utf8_lossy(body);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("event: routing"), "{text}");
    let data = lines.next().and_then(|l| l.strip_prefix("data: ")).unwrap();
    serde_json::from_str(data).unwrap()
}

#[tokio::test]
async fn the_explanation_says_whether_a_request_was_sampled_for_a_shadow() {
    let t = start(
        r#"
[routes.r]
models = ["gpt-4o-mini"]
shadow = { model = "claude-3-5-haiku", sample = 1.0 }
[routes.never]
models = ["gpt-4o-mini"]
shadow = { model = "claude-3-5-haiku", sample = 0.0 }
[routes.plain]
models = ["gpt-4o-mini"]
"#,
        |_| {},
    )
    .await;
    for stream in [false, true] {
        // Sampled: said, and the copy is sent.
        let (s, h, b) = route_call(&t.gw, "r", stream).await;
        assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
        assert_eq!(
            routing_of(&b, stream)["shadow"],
            json!({"model": "claude-3-5-haiku", "sample": 1.0, "sampled": true})
        );
        assert_eq!(shadows_of(&t.gw, &request_id(&h), 1).await.len(), 1);
        // A route with a shadow whose draw left this request out says so too.
        let (s, _, b) = route_call(&t.gw, "never", stream).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(
            routing_of(&b, stream)["shadow"],
            json!({"model": "claude-3-5-haiku", "sample": 0.0, "sampled": false})
        );
        // No shadow, no entry.
        let (s, _, b) = route_call(&t.gw, "plain", stream).await;
        assert_eq!(s, StatusCode::OK);
        assert!(routing_of(&b, stream).get("shadow").is_none());
    }
    // Only the sampled requests reached the shadow model.
    assert_eq!(t.sim.sim.stats().model(HAIKU).requests, 2);
}

/// A steady profile: `ttft_ms` to the first token, 5 ms a token after it.
fn steady(ttft_ms: f64) -> sim::Profile {
    sim::Profile {
        ttft_ms: Some(sim::LatencyDist {
            mean: ttft_ms,
            ..Default::default()
        }),
        tpot_ms: Some(sim::LatencyDist {
            mean: 5.0,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The shadow's model takes this long to its first token: 30× the real model's.
const SHADOW_TTFT_MS: f64 = 3000.0;

/// A gateway without a store (so it runs on paused time) over a simulator where the real model
/// answers after 100 ms and the shadow model after `SHADOW_TTFT_MS`.
async fn start_timed(routes: &str) -> (SimHandle, Arc<Gateway>) {
    let mut sim_config = sim::SimConfig::default();
    sim_config.models.insert(MINI.into(), steady(100.0));
    sim_config
        .models
        .insert(HAIKU.into(), steady(SHADOW_TTFT_MS));
    let sim = sim::spawn(sim_config, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let text = config_text(&format!("http://{}", sim.addr), routes);
    let cfg = config::load_str(&text, &Vars::only(&[])).unwrap();
    (sim, Gateway::new(cfg).unwrap())
}

/// Status, body and virtual time of one whole answer (a stream: to its last byte).
async fn timed(gw: &Arc<Gateway>, stream: bool) -> (StatusCode, Vec<u8>, Duration) {
    let started = tokio::time::Instant::now();
    let (s, _, b) = send(gw, chat_request(&ask(stream), None)).await;
    (s, b, started.elapsed())
}

#[tokio::test(start_paused = true)]
async fn a_slow_shadow_never_changes_the_answer_its_status_or_its_latency() {
    // Paused time: every latency below is exact virtual time, so "beyond noise" is 1 ms.
    let (with_sim, with) = start_timed(SHADOWED).await;
    let (_without_sim, without) = start_timed(PLAIN).await;
    for round in 0..3 {
        for stream in [false, true] {
            let (sa, ba, took) = timed(&with, stream).await;
            let (sb, bb, alone) = timed(&without, stream).await;
            assert_eq!((sa, sb), (StatusCode::OK, StatusCode::OK));
            if stream {
                assert_eq!(streamed(&ba), streamed(&bb));
                assert!(
                    String::from_utf8_lossy(&ba)
                        .trim_end()
                        .ends_with("data: [DONE]")
                );
            } else {
                assert_eq!(comparable(&ba), comparable(&bb));
            }
            let noise = Duration::from_millis(1);
            assert!(
                took.abs_diff(alone) <= noise,
                "round {round}, stream {stream}: {took:?} with the shadow, {alone:?} without"
            );
            // Far less than the shadow alone takes: nothing waited for it.
            assert!(
                took < Duration::from_secs_f64(SHADOW_TTFT_MS / 1000.0 / 10.0),
                "{took:?}"
            );
        }
    }
    // Every shadow did go and ended well, each some 3 s after the answer it copies.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let ok = "switchyard_shadow_requests_total{route=\"r\",outcome=\"ok\"}";
    let mut m = metrics(&with).await;
    while sample(&m, ok) < 6.0 {
        assert!(tokio::time::Instant::now() < deadline, "{m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        m = metrics(&with).await;
    }
    assert_eq!(with_sim.sim.stats().model(HAIKU).requests, 6);
    assert_eq!(with_sim.sim.stats().model(MINI).requests, 6);
}

#[tokio::test]
async fn shadows_are_dropped_while_the_gateway_is_near_its_in_flight_limit() {
    // max_in_flight 8: shadows stop above 6 requests in flight (3/4); the pool holds 1.
    let t = start(
        r#"
[routes.r]
models = ["gpt-4o-mini"]
shadow = { model = "claude-3-5-haiku", sample = 1.0 }
[routes.plain]
models = ["gpt-4o-mini"]
"#,
        |c| c.server.max_in_flight = 8,
    )
    .await;
    // Six streams on a route without a shadow, held open by a client that has not read them.
    let mut held = Vec::new();
    for _ in 0..6 {
        let mut body = ask(true);
        body["model"] = json!("plain");
        let resp = app(t.gw.clone())
            .oneshot(chat_request(&body, None))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        held.push(resp);
    }
    let m = metrics(&t.gw).await;
    assert_eq!(sample(&m, "switchyard_in_flight_requests"), 6.0, "{m}");
    // The seventh request is answered as always; its shadow is dropped, and the explanation and
    // the metric say so.
    for stream in [false, true] {
        let (s, _, b) = route_call(&t.gw, "r", stream).await;
        assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
        assert_eq!(
            routing_of(&b, stream)["shadow"],
            json!({"model": "claude-3-5-haiku", "sample": 1.0, "sampled": true, "dropped": "load"})
        );
    }
    let m = metrics(&t.gw).await;
    assert_eq!(
        sample(&m, "switchyard_shadow_dropped_total{route=\"r\"}"),
        2.0,
        "{m}"
    );
    assert_eq!(t.sim.sim.stats().model(HAIKU).requests, 0);
    assert_eq!(
        t.gw.shadows.available(),
        1,
        "the pool was not what dropped them"
    );
    // Load gone: shadows go again.
    drop(held);
    let m = metrics(&t.gw).await;
    assert_eq!(sample(&m, "switchyard_in_flight_requests"), 0.0, "{m}");
    let (s, h, b) = route_call(&t.gw, "r", false).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(routing_of(&b, false)["shadow"]["sampled"], true);
    assert!(routing_of(&b, false)["shadow"].get("dropped").is_none());
    assert_eq!(shadows_of(&t.gw, &request_id(&h), 1).await.len(), 1);
    let m = metrics(&t.gw).await;
    assert_eq!(
        sample(&m, "switchyard_shadow_dropped_total{route=\"r\"}"),
        2.0,
        "{m}"
    );
}
