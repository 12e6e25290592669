//! Canary splits end to end, in-process against the simulator: the split holds its shares
//! within a binomial bound and says so in the explanation (`routing.split`) and per arm in
//! `/ai/performance`; a key stays on its arm; a filtered arm's requests go to the other arm; an
//! arm that fails is counted with the fallback that answered for it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use switchyard::Gateway;
use switchyard::config::{self, AuthMode, Vars};
use switchyard_sim::{self as sim, FaultMode, SimHandle};
use switchyard_types::ids::Secret;

use crate::common::{get_json, send};

const HAIKU: &str = "claude-3-5-haiku-20241022";
const ADMIN: &str = "test-admin-key-0123456789";

const ROUTES: &str = r#"
[routes.canary]
models = ["gpt-4o-mini", "claude-3-5-haiku", "gemini-2.0-flash"]
optimize = "cost"
split = { "gpt-4o-mini" = 70, "claude-3-5-haiku" = 30 }
split_by = "random"
[routes.sticky]
models = ["gpt-4o-mini", "claude-3-5-haiku"]
split = { "gpt-4o-mini" = 50, "claude-3-5-haiku" = 50 }
[routes.by_user]
models = ["gpt-4o-mini", "claude-3-5-haiku"]
split = { "gpt-4o-mini" = 50, "claude-3-5-haiku" = 50 }
split_by = "user"
[routes.by_team]
models = ["gpt-4o-mini", "claude-3-5-haiku"]
split = { "gpt-4o-mini" = 50, "claude-3-5-haiku" = 50 }
split_by = "metadata.team"
[routes.small]
models = ["gpt-4o-mini", "llama3.2"]
split = { "gpt-4o-mini" = 50, "llama3.2" = 50 }
split_by = "random"
[routes.pinned]
models = ["gpt-4o-mini", "claude-3-5-haiku"]
optimize = "cost"
retry = { max_per_model = 0 }
split = { "claude-3-5-haiku" = 1 }
"#;

fn config_text(sim_url: &str) -> String {
    let providers = crate::common::all_providers(sim_url);
    format!(
        r#"
{providers}
{ROUTES}
"#
    )
}

struct T {
    sim: SimHandle,
    gw: Arc<Gateway>,
}

async fn start(keys: bool) -> T {
    let sim = sim::spawn(
        sim::SimConfig::default(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap();
    let mut cfg = config::load_str(
        &config_text(&format!("http://{}", sim.addr)),
        &Vars::only(&[]),
    )
    .unwrap();
    if keys {
        cfg.auth.admin_key = Some(Secret::new(ADMIN));
        cfg.auth.mode = Some(AuthMode::Keys);
    }
    T {
        gw: Gateway::new(cfg).unwrap(),
        sim,
    }
}

async fn post(
    gw: &Arc<Gateway>,
    path: &str,
    key: Option<&str>,
    body: &Value,
) -> (StatusCode, Value) {
    let mut req = Request::post(path).header("content-type", "application/json");
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    let (s, _, b) = send(gw, req.body(Body::from(body.to_string())).unwrap()).await;
    let v = serde_json::from_slice(&b)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&b)));
    (s, v)
}

async fn route(gw: &Arc<Gateway>, key: Option<&str>, body: Value) -> Value {
    let (s, v) = post(gw, "/ai/route", key, &body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

fn within_binomial(count: u64, n: u64, p: f64) -> bool {
    let (n, c) = (n as f64, count as f64);
    (c - n * p).abs() <= 4.5 * (n * p * (1.0 - p)).sqrt()
}

#[tokio::test]
async fn a_split_holds_its_shares_and_is_explained_and_counted_per_arm() {
    let t = start(false).await;
    const N: u64 = 300;
    let mut counts = BTreeMap::<String, u64>::new();
    for _ in 0..N {
        let v = route(
            &t.gw,
            None,
            json!({"route": "canary", "prompt": "hi", "max_tokens": 8}),
        )
        .await;
        let routing = &v["routing"];
        let split = &routing["split"];
        let arm = split["arm"].as_str().unwrap().to_owned();
        assert_eq!(v["model"], arm.as_str(), "{routing}");
        assert_eq!(routing["candidates"][0]["model"], arm.as_str());
        assert_eq!(split["by"], "random");
        assert_eq!(split["sticky"], false);
        let share = if arm == "gpt-4o-mini" { 0.7 } else { 0.3 };
        assert!(
            (split["share"].as_f64().unwrap() - share).abs() < 1e-12,
            "{split}"
        );
        let reason = routing["reason"].as_str().unwrap();
        assert!(
            reason.starts_with(&arm) && reason.contains("split"),
            "{reason}"
        );
        // The fallbacks keep the score's order: the rest of the route's models follow.
        assert_eq!(routing["candidates"].as_array().unwrap().len(), 3);
        *counts.entry(arm).or_default() += 1;
    }
    let haiku = counts.get("claude-3-5-haiku").copied().unwrap_or(0);
    assert_eq!(counts.values().sum::<u64>(), N);
    assert!(within_binomial(haiku, N, 0.3), "{counts:?}");
    assert_eq!(counts.get("gemini-2.0-flash"), None);

    let (s, perf) = get_json(&t.gw, "/ai/performance").await;
    assert_eq!(s, StatusCode::OK);
    let canary = &perf["splits"]["canary"];
    assert_eq!(canary["split_by"], "random");
    assert_eq!(canary["requests"], N);
    for (model, share) in [("gpt-4o-mini", 0.7), ("claude-3-5-haiku", 0.3)] {
        let arm = &canary["arms"][model];
        let n = counts[model];
        assert_eq!(arm["requests"], n, "{arm}");
        assert_eq!(arm["successes"], n);
        assert_eq!(
            (arm["fallbacks"].as_u64(), arm["failures"].as_u64()),
            (Some(0), Some(0))
        );
        assert!((arm["share"].as_f64().unwrap() - share).abs() < 1e-12);
        let observed = arm["observed_share"].as_f64().unwrap();
        assert!((observed - n as f64 / N as f64).abs() < 1e-12);
        assert_eq!(arm["success_rate"], 1.0);
        assert!(arm["avg_latency_ms"].as_f64().unwrap() >= 0.0);
        assert!(arm["cost_usd"].as_f64().unwrap() > 0.0, "{arm}");
    }
    // Routes without a split have no entry.
    assert!(perf["splits"].get("auto").is_none());
}

#[tokio::test]
async fn a_key_stays_on_its_arm_and_keys_spread_over_the_arms() {
    let t = start(true).await;
    let mut arms = BTreeMap::<String, u64>::new();
    for i in 0..12 {
        let (s, created) = {
            let req = Request::builder()
                .method(Method::POST)
                .uri("/admin/keys")
                .header("authorization", format!("Bearer {ADMIN}"))
                .header("content-type", "application/json")
                .body(Body::from(json!({"name": format!("k{i}")}).to_string()))
                .unwrap();
            let (s, _, b) = send(&t.gw, req).await;
            (s, serde_json::from_slice::<Value>(&b).unwrap())
        };
        assert_eq!(s, StatusCode::CREATED, "{created}");
        let key = created["key"].as_str().unwrap().to_owned();
        let mut first = None;
        for _ in 0..6 {
            let v = route(
                &t.gw,
                Some(&key),
                json!({"route": "sticky", "prompt": "hi", "max_tokens": 8}),
            )
            .await;
            let split = &v["routing"]["split"];
            assert_eq!(
                (split["by"].as_str(), split["sticky"].as_bool()),
                (Some("key"), Some(true))
            );
            let arm = split["arm"].as_str().unwrap().to_owned();
            assert_eq!(
                *first.get_or_insert_with(|| arm.clone()),
                arm,
                "key {i} moved"
            );
        }
        *arms.entry(first.unwrap()).or_default() += 1;
    }
    // Twelve random key ids on a 50/50 split: both arms (all on one: p = 2^-11).
    assert_eq!(arms.len(), 2, "{arms:?}");

    // By the request's `user`, through the chat door (no explanation there: the model header).
    let t = start(false).await;
    for user in ["alice", "bob", "carol"] {
        let mut first = None;
        for _ in 0..5 {
            let body = json!({
                "model": "by_user", "user": user, "max_tokens": 8,
                "messages": [{"role": "user", "content": "hi"}],
            });
            let req = Request::post("/v1/chat/completions")
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap();
            let (s, h, _) = send(&t.gw, req).await;
            assert_eq!(s, StatusCode::OK);
            let model = h["x-switchyard-model"].to_str().unwrap().to_owned();
            assert_eq!(
                *first.get_or_insert_with(|| model.clone()),
                model,
                "{user} moved"
            );
        }
    }
}

#[tokio::test]
async fn a_filtered_arm_gives_way_and_a_failing_arm_is_counted_with_its_fallback() {
    let t = start(false).await;
    // llama3.2 outputs at most 8192 tokens: a request for more filters it.
    for _ in 0..20 {
        let v = route(
            &t.gw,
            None,
            json!({"route": "small", "prompt": "hi", "max_tokens": 10000}),
        )
        .await;
        let split = &v["routing"]["split"];
        assert_eq!(split["arm"], "gpt-4o-mini", "{split}");
        assert_eq!(v["model"], "gpt-4o-mini");
        if let Some(other) = split.get("instead_of") {
            assert_eq!(other, "llama3.2");
        }
    }

    // The pinned arm fails once: the other model answers, and the arm counts a fallback.
    t.sim
        .sim
        .set_fault(HAIKU, "500", FaultMode::Count(1))
        .unwrap();
    let v = route(
        &t.gw,
        None,
        json!({"route": "pinned", "prompt": "hi", "max_tokens": 8}),
    )
    .await;
    assert_eq!(v["routing"]["split"]["arm"], "claude-3-5-haiku");
    assert_eq!(v["model"], "gpt-4o-mini");
    let v = route(
        &t.gw,
        None,
        json!({"route": "pinned", "prompt": "hi", "max_tokens": 8}),
    )
    .await;
    assert_eq!(v["model"], "claude-3-5-haiku");
    let (_, perf) = get_json(&t.gw, "/ai/performance").await;
    let arm = &perf["splits"]["pinned"]["arms"]["claude-3-5-haiku"];
    assert_eq!(
        (
            arm["requests"].as_u64(),
            arm["successes"].as_u64(),
            arm["fallbacks"].as_u64()
        ),
        (Some(2), Some(1), Some(1)),
        "{arm}"
    );
    assert_eq!(arm["success_rate"], 0.5);
    assert_eq!(
        perf["splits"]["small"]["arms"]["gpt-4o-mini"]["requests"],
        20
    );
    assert_eq!(perf["splits"]["small"]["arms"]["llama3.2"]["requests"], 0);
}

/// The model that answered a chat request on `by_team` with this `metadata` (none: no field).
async fn team_model(gw: &Arc<Gateway>, metadata: Option<Value>) -> String {
    let mut body = json!({
        "model": "by_team", "max_tokens": 8,
        "messages": [{"role": "user", "content": "hi"}],
    });
    if let Some(m) = metadata {
        body["metadata"] = m;
    }
    let req = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let (s, h, b) = send(gw, req).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    h["x-switchyard-model"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_metadata_field_keeps_its_value_on_one_arm_and_a_missing_one_is_drawn_at_random() {
    let t = start(false).await;
    let mut arms = BTreeMap::<String, u64>::new();
    // Strings and numbers alike: the same value, the same arm, every time.
    let teams: Vec<Value> = (0..10)
        .map(|i| json!(format!("team-{i}")))
        .chain([json!(7), json!(12.5)])
        .collect();
    for team in &teams {
        let mut first = None;
        for _ in 0..5 {
            let model = team_model(&t.gw, Some(json!({"team": team, "other": "x"}))).await;
            assert_eq!(
                *first.get_or_insert_with(|| model.clone()),
                model,
                "team {team} moved"
            );
        }
        *arms.entry(first.unwrap()).or_default() += 1;
    }
    // A number is its text: 7 and "7" are one value.
    assert_eq!(
        team_model(&t.gw, Some(json!({"team": 7}))).await,
        team_model(&t.gw, Some(json!({"team": "7"}))).await
    );
    // The point is a stable hash of (route, value): twelve values on 50/50 reach both arms.
    assert_eq!(arms.len(), 2, "{arms:?}");
    // Another field, an empty value, a value that is not a string or number, no metadata at all:
    // the split_by value is missing, and the request is placed at random (README, "Canary
    // splits"), so 40 such requests reach both arms (all on one: p = 2^-39).
    let mut seen = BTreeMap::<String, u64>::new();
    for i in 0..40 {
        let metadata = match i % 4 {
            0 => Some(json!({"other": "team-1"})),
            1 => Some(json!({"team": ""})),
            2 => Some(json!({"team": {"nested": "team-1"}})),
            _ => None,
        };
        *seen.entry(team_model(&t.gw, metadata).await).or_default() += 1;
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.values().all(|&n| n >= 5), "{seen:?}");
}
