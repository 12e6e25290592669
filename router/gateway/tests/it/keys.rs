//! Virtual keys through the HTTP surface: the auth mode (keys or open), budgets reserved before
//! the call (50 concurrent requests never overspend by more than one estimate), RPM and TPM,
//! revocation at once, route and model allow-lists, the admin key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::sync::Arc;

use crate::common::{send, setup, setup_with};
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use serde_json::{Value, json};
use switchyard::Gateway;
use switchyard::config::AuthMode;
use switchyard_types::Usage;
use switchyard_types::ids::Secret;

const ADMIN: &str = "test-admin-key-0123456789";

async fn admin(
    gw: &Arc<Gateway>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {ADMIN}"))
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let (s, _, b) = send(gw, req).await;
    (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

/// Create a key; returns (id, secret).
async fn create(gw: &Arc<Gateway>, spec: Value) -> (String, String) {
    let (s, v) = admin(gw, Method::POST, "/admin/keys", Some(spec)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    (
        v["id"].as_str().unwrap().to_owned(),
        v["key"].as_str().unwrap().to_owned(),
    )
}

async fn chat(
    gw: &Arc<Gateway>,
    key: Option<&str>,
    body: &Value,
) -> (StatusCode, HeaderMap, Value) {
    let mut req = Request::post("/v1/chat/completions").header("content-type", "application/json");
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    let (s, h, b) = send(gw, req.body(Body::from(body.to_string())).unwrap()).await;
    (s, h, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

fn ask(model: &str, max_tokens: u32) -> Value {
    json!({
        "model": model,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": "what is the weather like"}],
    })
}

/// An admin key configured: `keys` mode, as a config file with one resolves to.
async fn with_admin() -> common::Setup {
    setup_with(|c| {
        c.auth.admin_key = Some(Secret::new(ADMIN));
        c.auth.mode = Some(AuthMode::Keys);
    })
    .await
}

#[tokio::test]
async fn fifty_concurrent_requests_never_overspend_by_more_than_one_estimate() {
    let t = with_admin().await;
    let budget_usd = 0.001;
    let (id, key) = create(
        &t.gw,
        json!({"name": "small", "budget_usd": budget_usd, "budget_period": "total"}),
    )
    .await;
    let body = ask("gpt-4o", 20);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let gw = t.gw.clone();
            let key = key.clone();
            let body = body.clone();
            tokio::spawn(async move { chat(&gw, Some(&key), &body).await })
        })
        .collect();
    let entry = &t.gw.config.models.get("gpt-4o").unwrap().entry;
    let (mut ok, mut refused, mut spent_by_answers) = (0, 0, 0i64);
    for task in tasks {
        let (s, _, v) = task.await.unwrap();
        match s {
            StatusCode::OK => {
                ok += 1;
                let usage: Usage = serde_json::from_value(v["usage"].clone()).unwrap();
                spent_by_answers += entry.usage_cost_pico(&usage);
            }
            StatusCode::PAYMENT_REQUIRED => {
                refused += 1;
                assert_eq!(v["error"]["type"], "insufficient_quota");
                assert_eq!(v["error"]["code"], "budget_exceeded");
            }
            other => panic!("unexpected {other}: {v}"),
        }
    }
    // One estimate: the prompt (a few tokens; 64 is generous) + max_tokens at gpt-4o's prices.
    let (_, spend) = admin(&t.gw, Method::GET, &format!("/admin/keys/{id}/spend"), None).await;
    let spent = spend["spent_picousd"].as_i64().unwrap();
    let budget = (budget_usd * 1e12) as i64;
    let one_estimate = entry.usage_cost_pico(&Usage::new(64, 20));
    eprintln!(
        "ok {ok}, refused {refused}, spent {spent} pUSD of {budget} (one estimate ≤ {one_estimate})"
    );
    assert!(ok >= 1 && refused >= 1, "ok {ok}, refused {refused}");
    // Spend is exactly what the provider usage says the answers cost.
    assert_eq!(spent, spent_by_answers);
    assert!(
        spent <= budget + one_estimate,
        "overspent: {spent} > {budget} + {one_estimate}"
    );
    assert_eq!(spend["reserved_usd"], 0.0, "every reservation was settled");
    // Spent out: the next request is refused at once.
    let (s, _, _) = chat(&t.gw, Some(&key), &body).await;
    assert!(spent < budget || s == StatusCode::PAYMENT_REQUIRED);
}

#[tokio::test]
async fn rpm_is_enforced_with_retry_after() {
    let t = with_admin().await;
    let (_, key) = create(&t.gw, json!({"name": "rpm", "rpm": 3})).await;
    let body = ask("gpt-4o-mini", 10);
    for _ in 0..3 {
        assert_eq!(chat(&t.gw, Some(&key), &body).await.0, StatusCode::OK);
    }
    let (s, h, v) = chat(&t.gw, Some(&key), &body).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    let wait: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait));
}

#[tokio::test]
async fn tpm_counts_reserved_then_actual_tokens() {
    let t = with_admin().await;
    let (_, key) = create(&t.gw, json!({"name": "tpm", "tpm": 100})).await;
    // Reserves prompt + 80 output tokens; the answer uses far fewer (the simulator writes 24).
    let body = ask("gpt-4o-mini", 80);
    let (s, _, first) = chat(&t.gw, Some(&key), &body).await;
    assert_eq!(s, StatusCode::OK);
    let used = first["usage"]["total_tokens"].as_u64().unwrap();
    assert!(used < 50, "{used}");
    // Another 80-token reservation cannot fit beside what was used this minute …
    let (s, h, v) = chat(&t.gw, Some(&key), &body).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tokens per minute")
    );
    assert!(h.contains_key("retry-after"));
    // … but a small one does: the first reservation was replaced by the actual usage.
    let (s, _, v) = chat(&t.gw, Some(&key), &ask("gpt-4o-mini", 5)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn a_revoked_key_is_refused_at_once() {
    let t = with_admin().await;
    let (id, key) = create(&t.gw, json!({"name": "soon gone"})).await;
    let body = ask("gpt-4o-mini", 10);
    assert_eq!(chat(&t.gw, Some(&key), &body).await.0, StatusCode::OK);
    let (s, v) = admin(&t.gw, Method::DELETE, &format!("/admin/keys/{id}"), None).await;
    assert_eq!((s, v["revoked"].clone()), (StatusCode::OK, json!(true)));
    let (s, _, v) = chat(&t.gw, Some(&key), &body).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(v["error"]["message"].as_str().unwrap().contains("revoked"));
    // Unknown ids are 404s naming the id.
    let (s, v) = admin(&t.gw, Method::DELETE, "/admin/keys/key_nope", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(v["error"]["message"].as_str().unwrap().contains("key_nope"));
}

#[tokio::test]
async fn keys_mode_needs_a_key_from_the_start_and_open_mode_none() {
    let t = with_admin().await;
    let body = ask("gpt-4o-mini", 10);
    assert_eq!(
        chat(&t.gw, None, &body).await.0,
        StatusCode::UNAUTHORIZED,
        "keys mode with no key yet"
    );
    let open = setup_with(|c| c.auth.mode = Some(AuthMode::Open)).await;
    assert_eq!(chat(&open.gw, None, &body).await.0, StatusCode::OK);
    assert_eq!(
        chat(&open.gw, Some("sk-whatever-the-sdk-sends"), &body)
            .await
            .0,
        StatusCode::OK
    );
    let (_, key) = create(&t.gw, json!({"name": "first"})).await;
    let (s, _, v) = chat(&t.gw, None, &body).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v["error"]["code"], "invalid_api_key");
    assert_eq!(
        chat(&t.gw, Some("sk-sy-wrong"), &body).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(chat(&t.gw, Some(&key), &body).await.0, StatusCode::OK);
    // Read views need a key too (or the admin key); health, metrics and the OpenAPI document
    // do not.
    let get = |path: &str, key: Option<&str>| {
        let mut r = Request::get(path);
        if let Some(k) = key {
            r = r.header("authorization", format!("Bearer {k}"));
        }
        r.body(Body::empty()).unwrap()
    };
    assert_eq!(
        send(&t.gw, get("/ai/models", None)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&t.gw, get("/ai/models", Some(&key))).await.0,
        StatusCode::OK
    );
    assert_eq!(
        send(&t.gw, get("/ai/models", Some(ADMIN))).await.0,
        StatusCode::OK
    );
    for public in ["/health", "/metrics", "/openapi.json"] {
        assert_eq!(
            send(&t.gw, get(public, None)).await.0,
            StatusCode::OK,
            "{public}"
        );
    }
    // The key is listed without its secret or hash.
    let (_, list) = admin(&t.gw, Method::GET, "/admin/keys", None).await;
    let text = list.to_string();
    assert!(!text.contains(&key));
    assert!(!text.contains(&switchyard::keys::hash_secret(&key)));
}

#[tokio::test]
async fn allow_lists_limit_routes_and_models() {
    let t = with_admin().await;
    let (_, routes_only) = create(&t.gw, json!({"name": "cheap only", "routes": ["cheap"]})).await;
    let (s, _, v) = chat(&t.gw, Some(&routes_only), &ask("gpt-4o", 10)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(v["error"]["code"], "permission_denied");
    assert_eq!(
        chat(&t.gw, Some(&routes_only), &ask("cheap", 10)).await.0,
        StatusCode::OK
    );

    let (_, mini_only) = create(&t.gw, json!({"name": "mini", "models": ["gpt-4o-mini"]})).await;
    let (s, h, _) = chat(&t.gw, Some(&mini_only), &ask("auto", 10)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["x-switchyard-model"], "gpt-4o-mini");
    let (s, _, v) = chat(&t.gw, Some(&mini_only), &ask("gpt-4o", 10)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");

    // Creating a key for an unknown route is a 400 naming it.
    let (s, v) = admin(
        &t.gw,
        Method::POST,
        "/admin/keys",
        Some(json!({"name": "x", "routes": ["nowhere"]})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["param"], "routes[0]");
}

#[tokio::test]
async fn the_admin_api_is_off_without_an_admin_key() {
    let t = setup().await;
    let req = Request::post("/admin/keys")
        .header("content-type", "application/json")
        .body(Body::from(json!({"name": "x"}).to_string()))
        .unwrap();
    let (s, _, b) = send(&t.gw, req).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(String::from_utf8_lossy(&b).contains("SWITCHYARD_ADMIN_KEY"));
}

#[tokio::test]
async fn request_ids_are_echoed_or_made_and_overhead_is_reported() {
    let t = setup().await;
    let req = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("x-request-id", "trace-42")
        .body(Body::from(ask("gpt-4o-mini", 5).to_string()))
        .unwrap();
    let (_, h, _) = send(&t.gw, req).await;
    assert_eq!(h["x-request-id"], "trace-42");
    let overhead: f64 = h["x-switchyard-overhead-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(overhead > 0.0);
    let (_, h, _) = chat(&t.gw, None, &ask("gpt-4o-mini", 5)).await;
    assert!(h["x-request-id"].to_str().unwrap().starts_with("req_"));
    // Errors carry it too.
    let (s, h, _) = chat(&t.gw, None, &json!({"model": "gpt-4o-mini"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(h.contains_key("x-request-id"));
}
