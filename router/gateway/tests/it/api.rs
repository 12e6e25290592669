//! In-process tests of the HTTP surface (`tower::ServiceExt::oneshot` on `switchyard::app`),
//! against the real simulator on loopback: validation errors, status mapping of upstream
//! faults, and the streaming contract.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use switchyard::{Gateway, app, demo};
use switchyard_sim::FaultMode;
use tower::ServiceExt;

use crate::common::{send, setup, setup_with};

fn post(body: impl Into<Body>) -> Request<Body> {
    Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap()
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8})
}

/// Status and the parsed OpenAI error object, checking all four keys are there.
async fn error_of(gw: &Arc<Gateway>, req: Request<Body>) -> (StatusCode, Value) {
    let (status, _, body) = send(gw, req).await;
    let v: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&body)));
    let err = v["error"].clone();
    for key in ["message", "type", "param", "code"] {
        assert!(err.get(key).is_some(), "error without {key}: {v}");
    }
    (status, err)
}

#[tokio::test]
async fn malformed_json_is_a_400() {
    let s = setup().await;
    let (status, err) = error_of(&s.gw, post("{\"model\": ")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["type"], "invalid_request_error");
    assert_eq!(err["code"], "invalid_json");
}

#[tokio::test]
async fn missing_and_invalid_fields_are_named() {
    let s = setup().await;
    let cases = [
        (json!({"model": "gpt-4o-mini"}), "messages"),
        (
            json!({"messages": [{"role": "user", "content": "x"}]}),
            "model",
        ),
        (
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}),
            "temperature",
        ),
        (
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "temperature": 3.5}),
            "temperature",
        ),
        (
            json!({"model": "gpt-4o-mini", "messages": [{"role": "wizard", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"model": "gpt-4o-mini", "messages": [
                {"role": "user", "content": "x"},
                {"role": "tool", "content": "18C"}]}),
            "messages[1].tool_call_id",
        ),
        (json!({"model": "gpt-4o-mini", "messages": []}), "messages"),
        (
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1000000}),
            "max_tokens",
        ),
        (json!([1, 2, 3]), "body"),
    ];
    for (body, param) in cases {
        let (status, err) = error_of(&s.gw, post(body.to_string())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {err}");
        assert_eq!(err["param"], param, "{body}: {err}");
        assert!(
            err["message"].as_str().unwrap().contains(param),
            "message should name {param}: {err}"
        );
    }
}

#[tokio::test]
async fn unknown_models_are_a_404() {
    let s = setup().await;
    let (status, err) = error_of(&s.gw, post(chat("gpt-9-ultra").to_string())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(err["code"], "model_not_found");
    assert_eq!(err["param"], "model");
}

#[tokio::test]
async fn oversized_bodies_are_a_413() {
    let s = setup_with(|c| c.server.max_body_bytes = 2048).await;
    let mut body = chat("gpt-4o-mini");
    body["messages"][0]["content"] = Value::String("x".repeat(4096));
    let (status, err) = error_of(&s.gw, post(body.to_string())).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(err["code"], "request_too_large");
    // Under the limit the same endpoint works.
    let (status, _, _) = send(&s.gw, post(chat("gpt-4o-mini").to_string())).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn wrong_methods_and_paths_answer_in_openai_shape() {
    let s = setup().await;
    let get = Request::get("/v1/chat/completions")
        .body(Body::empty())
        .unwrap();
    let (status, _) = error_of(&s.gw, get).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let nowhere = Request::get("/v2/nothing").body(Body::empty()).unwrap();
    let (status, err) = error_of(&s.gw, nowhere).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(err["message"].as_str().unwrap().contains("/v2/nothing"));
}

#[tokio::test]
async fn health_and_models() {
    let s = setup().await;
    let (status, _, body) = send(&s.gw, Request::get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["status"],
        "ok"
    );
    let (status, _, body) = send(
        &s.gw,
        Request::get("/health/ready").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["status"],
        "ready"
    );
    let (_, _, body) = send(
        &s.gw,
        Request::get("/v1/models").body(Body::empty()).unwrap(),
    )
    .await;
    let list: Value = serde_json::from_slice(&body).unwrap();
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"claude-3-5-haiku") && ids.contains(&"llama3.2"),
        "{ids:?}"
    );
    let one = Request::get("/v1/models/gpt-4o-mini")
        .body(Body::empty())
        .unwrap();
    let (_, _, body) = send(&s.gw, one).await;
    let m: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(m["context_window"], 128000);
    assert_eq!(m["pricing"]["input_per_1m"], 0.15);
}

#[tokio::test]
async fn answers_carry_routing_headers_and_unknown_fields_pass_through() {
    let s = setup().await;
    let mut body = chat("gpt-4o-mini");
    body["metadata"] = json!({"team": "search"});
    let (status, headers, bytes) = send(&s.gw, post(body.to_string())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-switchyard-model"], "gpt-4o-mini");
    assert_eq!(headers["x-switchyard-provider"], "openai");
    assert_eq!(headers["x-switchyard-attempts"], "1");
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn upstream_rate_limits_keep_retry_after() {
    let s = setup().await;
    s.sim
        .sim
        .set_fault("gpt-4o-mini", "429:7", FaultMode::Count(1))
        .unwrap();
    let (status, headers, body) = send(&s.gw, post(chat("gpt-4o-mini").to_string())).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["retry-after"], "7");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
}

#[tokio::test]
async fn upstream_failures_map_to_gateway_statuses() {
    let s = setup().await;
    let cases = [
        (
            "claude-3-5-haiku-20241022",
            "claude-3-5-haiku",
            "529",
            503,
            "upstream_overloaded",
        ),
        ("gpt-4o-mini", "gpt-4o-mini", "500", 502, "upstream_error"),
        (
            "gemini-2.0-flash",
            "gemini-2.0-flash",
            "context",
            400,
            "context_length_exceeded",
        ),
        ("llama3.2", "llama3.2", "malformed", 502, "upstream_error"),
        (
            "gpt-4o-mini",
            "gpt-4o-mini",
            "quota",
            503,
            "upstream_quota_exhausted",
        ),
        (
            "claude-3-5-haiku-20241022",
            "claude-3-5-haiku",
            "401",
            502,
            "upstream_auth_error",
        ),
    ];
    for (upstream, model, fault, status, code) in cases {
        // Every attempt fails (a named model is retried once before the error surfaces).
        s.sim
            .sim
            .set_fault(upstream, fault, FaultMode::Rate(1.0))
            .unwrap();
        let (got, err) = error_of(&s.gw, post(chat(model).to_string())).await;
        s.sim.sim.clear_faults();
        assert_eq!(got.as_u16(), status, "{model} {fault}: {err}");
        assert_eq!(err["code"], code, "{model} {fault}: {err}");
    }
}

fn stream_body(model: &str) -> String {
    json!({"model": model, "stream": true, "max_tokens": 12,
           "messages": [{"role": "user", "content": "hello"}]})
    .to_string()
}

fn data_frames(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .split("\n\n")
        .filter_map(|f| f.strip_prefix("data: ").map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn a_failure_before_the_first_token_is_a_clean_http_error() {
    let s = setup().await;
    for (upstream, model) in [
        ("gpt-4o-mini", "gpt-4o-mini"),
        ("claude-3-5-haiku-20241022", "claude-3-5-haiku"),
        ("gemini-2.0-flash", "gemini-2.0-flash"),
        ("llama3.2", "llama3.2"),
    ] {
        for fault in ["reset", "cut:0", "503"] {
            s.sim
                .sim
                .set_fault(upstream, fault, FaultMode::Rate(1.0))
                .unwrap();
            let (status, headers, body) = send(&s.gw, post(stream_body(model))).await;
            s.sim.sim.clear_faults();
            assert!(
                status.is_server_error(),
                "{model} {fault}: got {status} {}",
                String::from_utf8_lossy(&body)
            );
            assert_eq!(
                headers["content-type"], "application/json",
                "{model} {fault}"
            );
        }
    }
}

#[tokio::test]
async fn a_cut_after_the_first_token_ends_with_an_error_event_never_done() {
    let s = setup().await;
    for (upstream, model) in [
        ("gpt-4o-mini", "gpt-4o-mini"),
        ("claude-3-5-haiku-20241022", "claude-3-5-haiku"),
        ("gemini-2.0-flash", "gemini-2.0-flash"),
        ("llama3.2", "llama3.2"),
    ] {
        s.sim
            .sim
            .set_fault(upstream, "cut:3", FaultMode::Count(1))
            .unwrap();
        let (status, _, body) = send(&s.gw, post(stream_body(model))).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{model}: {}",
            String::from_utf8_lossy(&body)
        );
        let frames = data_frames(&body);
        let last = frames.last().unwrap();
        assert!(last.contains("\"error\""), "{model}: last frame {last}");
        assert!(
            !frames.iter().any(|f| f == "[DONE]"),
            "{model}: [DONE] after a cut"
        );
        let content = frames.iter().filter(|f| f.contains("\"content\"")).count();
        assert!(content >= 1, "{model}: the first tokens were forwarded");
    }
    // And a clean stream ends with [DONE].
    let (_, _, body) = send(&s.gw, post(stream_body("gpt-4o-mini"))).await;
    assert_eq!(data_frames(&body).last().unwrap(), "[DONE]");
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_the_upstream_stream() {
    let s = setup().await;
    let body = json!({"model": "claude-3-5-haiku", "stream": true, "max_tokens": 200,
                      "messages": [{"role": "user", "content": "hello"}]});
    let req = post(body.to_string());
    let sim_url = format!("http://{}", s.sim.addr);
    let mut cfg = demo::config(&sim_url).unwrap();
    cfg.sim = Default::default();
    // Every provider call carries a header telling the simulator to pace tokens 50 ms apart,
    // so the upstream stream is still running when the client leaves.
    for p in cfg.providers.values_mut() {
        p.headers.push(("x-sim-tpot-ms".into(), "50".into()));
    }
    let gw = Gateway::new(cfg).unwrap();
    let resp = app(gw).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    drop(body);
    let upstream = "claude-3-5-haiku-20241022";
    for _ in 0..100 {
        if s.sim.sim.stats().model(upstream).streams_cancelled == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = s.sim.sim.stats().model(upstream);
    assert_eq!(stats.streams_cancelled, 1, "{stats:?}");
    assert_eq!(stats.streams_completed, 0, "{stats:?}");
}
