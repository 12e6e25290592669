//! Admission through the HTTP surface: the key in `x-api-key` (as Anthropic SDKs and coding
//! agents send it) wherever `Authorization: Bearer` is taken, credentials that disagree, and
//! the client's `x-request-id` held to its documented form.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::sync::Arc;

use crate::common::{send, setup_with};
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use serde_json::{Value, json};
use switchyard::Gateway;
use switchyard::config::AuthMode;
use switchyard_types::ids::Secret;

const ADMIN: &str = "test-admin-key-0123456789";

async fn keys_mode() -> common::Setup {
    setup_with(|c| {
        c.auth.admin_key = Some(Secret::new(ADMIN));
        c.auth.mode = Some(AuthMode::Keys);
    })
    .await
}

/// One request with `headers` (name, value) on `method path`; a JSON body for POSTs.
async fn call(
    gw: &Arc<Gateway>,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (StatusCode, HeaderMap, Value) {
    let mut req = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = match body {
        Some(b) => req
            .header("content-type", "application/json")
            .body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .unwrap();
    let (s, h, b) = send(gw, req).await;
    (s, h, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

fn ask() -> Value {
    json!({
        "model": "gpt-4o-mini",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "hello"}],
    })
}

async fn chat(gw: &Arc<Gateway>, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, Value) {
    call(
        gw,
        Method::POST,
        "/v1/chat/completions",
        headers,
        Some(ask()),
    )
    .await
}

/// A key made through the admin API (with the admin key in `x-api-key`): (id, secret).
async fn create(gw: &Arc<Gateway>) -> (String, String) {
    let (s, _, v) = call(
        gw,
        Method::POST,
        "/admin/keys",
        &[("x-api-key", ADMIN)],
        Some(json!({"name": "sdk"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    (
        v["id"].as_str().unwrap().to_owned(),
        v["key"].as_str().unwrap().to_owned(),
    )
}

fn message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn x_api_key_is_taken_wherever_bearer_is() {
    let t = keys_mode().await;
    let (_, key) = create(&t.gw).await;
    let (s, _, v) = chat(&t.gw, &[("x-api-key", &key)]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Read views, with a virtual key or the admin key.
    for path in ["/v1/models", "/ai/models", "/health/detailed"] {
        for k in [key.as_str(), ADMIN] {
            let (s, _, v) = call(&t.gw, Method::GET, path, &[("x-api-key", k)], None).await;
            assert_eq!(s, StatusCode::OK, "{path}: {v}");
        }
    }
    // The admin API, with the admin key only.
    let (s, _, v) = call(
        &t.gw,
        Method::GET,
        "/admin/keys",
        &[("x-api-key", ADMIN)],
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, _, _) = call(
        &t.gw,
        Method::GET,
        "/admin/keys",
        &[("x-api-key", &key)],
        None,
    )
    .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "a virtual key is not the admin key"
    );
    let (s, _, v) = call(
        &t.gw,
        Method::DELETE,
        "/ai/cache",
        &[("x-api-key", ADMIN)],
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Unknown keys are refused as with bearer.
    let (s, _, v) = chat(&t.gw, &[("x-api-key", "sk-sy-not-a-key")]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v["error"]["code"], "invalid_api_key");
    // The same key in both headers is one key.
    let bearer = format!("Bearer {key}");
    let (s, _, v) = chat(&t.gw, &[("authorization", &bearer), ("x-api-key", &key)]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // The scheme is case-insensitive.
    let lower = format!("BEARER {key}");
    assert_eq!(
        chat(&t.gw, &[("authorization", &lower)]).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_revoked_key_in_x_api_key_is_refused() {
    let t = keys_mode().await;
    let (id, key) = create(&t.gw).await;
    assert_eq!(chat(&t.gw, &[("x-api-key", &key)]).await.0, StatusCode::OK);
    let path = format!("/admin/keys/{id}");
    let (s, _, v) = call(&t.gw, Method::DELETE, &path, &[("x-api-key", ADMIN)], None).await;
    assert_eq!((s, v["revoked"].clone()), (StatusCode::OK, json!(true)));
    let (s, _, v) = chat(&t.gw, &[("x-api-key", &key)]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(message(&v).contains("revoked"), "{v}");
    let (s, _, _) = call(
        &t.gw,
        Method::GET,
        "/ai/models",
        &[("x-api-key", &key)],
        None,
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn credentials_that_disagree_are_refused_never_picked() {
    let t = keys_mode().await;
    let (_, key) = create(&t.gw).await;
    let (_, other) = create(&t.gw).await;
    let bearer = format!("Bearer {key}");
    let admin_bearer = format!("Bearer {ADMIN}");
    let conflicts: [&[(&str, &str)]; 4] = [
        &[("authorization", &bearer), ("x-api-key", &other)],
        &[("authorization", &bearer), ("api-key", &other)],
        &[("x-api-key", &key), ("x-api-key", &other)],
        // A valid key beside a wrong one is not a way in either.
        &[("authorization", &bearer), ("x-api-key", "sk-sy-garbage")],
    ];
    for headers in conflicts {
        let (s, _, v) = chat(&t.gw, headers).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{headers:?}: {v}");
        assert!(message(&v).contains("Conflicting credentials"), "{v}");
        let (s, _, v) = call(&t.gw, Method::GET, "/ai/models", headers, None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{headers:?}: {v}");
    }
    // The admin key beside another key, on admin paths and read views.
    for (method, path) in [(Method::GET, "/admin/keys"), (Method::GET, "/ai/models")] {
        let headers = [
            ("authorization", admin_bearer.as_str()),
            ("x-api-key", key.as_str()),
        ];
        let (s, _, v) = call(&t.gw, method.clone(), path, &headers, None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}: {v}");
        assert!(message(&v).contains("authorization and x-api-key"), "{v}");
        let headers = [("x-api-key", key.as_str()), ("api-key", ADMIN)];
        let (s, _, _) = call(&t.gw, method, path, &headers, None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}");
    }
    // Neither secret is repeated in the refusal.
    let (_, _, v) = chat(&t.gw, &[("authorization", &bearer), ("x-api-key", &other)]).await;
    assert!(!v.to_string().contains(&key) && !v.to_string().contains(&other));
}

#[tokio::test]
async fn the_admin_key_in_x_api_key_keeps_the_attempt_limit() {
    let t = keys_mode().await;
    for _ in 0..10 {
        let (s, _, _) = call(
            &t.gw,
            Method::GET,
            "/admin/keys",
            &[("x-api-key", "wrong-admin-key")],
            None,
        )
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let (s, h, _) = call(
        &t.gw,
        Method::GET,
        "/admin/keys",
        &[("x-api-key", ADMIN)],
        None,
    )
    .await;
    assert_eq!(
        s,
        StatusCode::TOO_MANY_REQUESTS,
        "limited before the key is compared"
    );
    assert!(h.contains_key("retry-after"));
}

#[tokio::test]
async fn request_ids_outside_the_documented_form_are_refused() {
    let t = keys_mode().await;
    let (_, key) = create(&t.gw).await;
    let longest = "a".repeat(128);
    let (s, h, v) = chat(&t.gw, &[("x-api-key", &key), ("x-request-id", &longest)]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(h["x-request-id"], longest.as_str());
    let too_long = "a".repeat(129);
    for bad in [too_long.as_str(), "has space", "", "tab\there"] {
        for (method, path) in [
            (Method::POST, "/v1/chat/completions"),
            (Method::GET, "/ai/models"),
            (Method::GET, "/admin/keys"),
        ] {
            let headers = [("x-api-key", ADMIN), ("x-request-id", bad)];
            let body = (method == Method::POST).then(ask);
            let (s, h, v) = call(&t.gw, method, path, &headers, body).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{path} {bad:?}: {v}");
            assert_eq!(v["error"]["type"], "invalid_request_error");
            assert_eq!(v["error"]["param"], "x-request-id");
            // The answer still names the request, by an id of the server's.
            assert!(h["x-request-id"].to_str().unwrap().starts_with("req_"));
        }
    }
    // Bytes beyond ASCII (obs-text) are not printable ASCII.
    let req = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("x-api-key", key.as_str())
        .header(
            "x-request-id",
            HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        )
        .body(Body::from(ask().to_string()))
        .unwrap();
    let (s, _, b) = send(&t.gw, req).await;
    assert_eq!(
        s,
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(&b)
    );
    // Probes are answered whatever they send, with an id of the server's.
    let (s, h, _) = call(
        &t.gw,
        Method::GET,
        "/health",
        &[("x-request-id", &too_long)],
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(h["x-request-id"].to_str().unwrap().starts_with("req_"));
}
