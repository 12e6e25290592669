//! The other front doors through the one pipeline, against the simulator on loopback:
//! Anthropic Messages (`/v1/messages`, `count_tokens`), OpenAI Responses (`/v1/responses`) and
//! embeddings (`/v1/embeddings`) — routing across providers, pass-through to Anthropic byte for
//! byte, failover before the first token, the door's own error event after it, the cache.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::sync::Arc;

use crate::common::{post_json, post_request, send, setup, setup_with};
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use serde_json::{Value, json};
use switchyard::Gateway;
use switchyard::config::AuthMode;
use switchyard_sim::FaultMode;
use switchyard_types::ids::Secret;

pub(crate) fn message_body(model: &str, text: &str) -> Value {
    json!({"model": model, "max_tokens": 64,
           "messages": [{"role": "user", "content": text}]})
}

/// `(event, data)` of every frame of an SSE body with named events.
pub(crate) fn events(body: &[u8]) -> Vec<(String, Value)> {
    String::from_utf8_lossy(body)
        .split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|f| {
            let mut name = String::new();
            let mut data = Value::Null;
            for line in f.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = n.to_owned();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(d).unwrap_or_else(|_| panic!("data: {d}"));
                }
            }
            (name, data)
        })
        .collect()
}

pub(crate) fn names(ev: &[(String, Value)]) -> Vec<&str> {
    ev.iter().map(|(n, _)| n.as_str()).collect()
}

/// A valid Anthropic stream: message_start, blocks opened and closed in order, message_delta
/// with usage, message_stop last. Returns the text.
pub(crate) fn check_anthropic_stream(ev: &[(String, Value)]) -> String {
    assert_eq!(ev.first().unwrap().0, "message_start", "{:?}", names(ev));
    assert_eq!(ev.last().unwrap().0, "message_stop", "{:?}", names(ev));
    let mut open: Option<u64> = None;
    let mut next = 0;
    let mut text = String::new();
    for (name, data) in ev {
        assert_eq!(data["type"], name.as_str());
        match name.as_str() {
            "content_block_start" => {
                assert!(open.is_none());
                assert_eq!(data["index"], next);
                open = Some(next);
                next += 1;
            }
            "content_block_delta" => {
                assert_eq!(data["index"].as_u64(), open);
                if let Some(t) = data["delta"]["text"].as_str() {
                    text.push_str(t);
                }
            }
            "content_block_stop" => {
                assert_eq!(data["index"].as_u64(), open);
                open = None;
            }
            "message_delta" => {
                assert!(data["usage"]["output_tokens"].as_u64().unwrap() > 0);
                assert!(data["delta"]["stop_reason"].is_string());
            }
            _ => {}
        }
    }
    assert!(!text.is_empty());
    text
}

/// The last request the simulator received on `path`.
pub(crate) fn last_upstream_body(s: &common::Setup, path: &str) -> String {
    s.sim
        .sim
        .recent_requests()
        .into_iter()
        .rev()
        .find(|r| r.path.contains(path))
        .unwrap_or_else(|| panic!("no upstream request on {path}"))
        .body
}

#[tokio::test]
async fn messages_reach_anthropic_byte_for_byte() {
    let s = setup().await;
    // Spacing and member order as a client might write them; unknown members and blocks too.
    let system = r#"[{"type":"text","text":"You are terse.","cache_control":{"type":"ephemeral","ttl":"5m"}}]"#;
    let tools = r#"[{"name":"lookup","description":"Look up","input_schema":{"type":"object","properties":{"q":{"type":"string"}}},"cache_control":{"type":"ephemeral"}}]"#;
    let messages = r#"[{"role":"user","content":[{"type":"text","text":"hi","cache_control":{"type":"ephemeral"}}]},{"role":"assistant","content":[{"type":"thinking","thinking":"...","signature":"c2lnbmF0dXJl"},{"type":"text","text":"hello"}]},{"role":"user","content":"go on"}]"#;
    let body = format!(
        r#"{{"model":"claude-3-5-haiku","max_tokens":50,"system":{system},"tools":{tools},"messages":{messages},"top_k":3,"thinking":{{"type":"disabled"}}}}"#
    );
    let req = Request::post("/v1/messages")
        .header("content-type", "application/json")
        .header("anthropic-version", "2023-06-01")
        .body(Body::from(body))
        .unwrap();
    let (status, headers, bytes) = send(&s.gw, req).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    assert_eq!(headers["x-switchyard-model"], "claude-3-5-haiku");
    let sent = last_upstream_body(&s, "/anthropic/v1/messages");
    for part in [
        system,
        tools,
        messages,
        r#""top_k":3"#,
        r#""thinking":{"type":"disabled"}"#,
    ] {
        assert!(sent.contains(part), "upstream body lacks {part}:\n{sent}");
    }
    assert!(
        sent.contains(r#""model":"claude-3-5-haiku-20241022""#),
        "{sent}"
    );
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["model"], "claude-3-5-haiku");
    assert!(!v["content"].as_array().unwrap().is_empty(), "{v}");
    assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn an_anthropic_upstreams_own_events_and_blocks_reach_the_client() {
    let s = setup().await;
    let mut body = message_body("claude-3-5-haiku", "stream me something");
    body["stream"] = json!(true);
    let (status, _, bytes) = send(&s.gw, post_request("/v1/messages", &body)).await;
    assert_eq!(status, StatusCode::OK);
    let ev = events(&bytes);
    check_anthropic_stream(&ev);
    // Forwarded as the upstream sent them (the simulator writes `"type": "ping"`, spaced), but
    // `message_start` names the model as configured and the gateway's message id.
    assert!(String::from_utf8_lossy(&bytes).contains(r#"{"type": "ping"}"#));
    assert_eq!(ev[0].1["message"]["model"], "claude-3-5-haiku");
    assert!(
        ev[0].1["message"]["id"]
            .as_str()
            .unwrap()
            .starts_with("msg_")
    );
    // Through another door, or to another provider, the gateway writes the events itself.
    let body = json!({"model": "gpt-4o-mini", "max_tokens": 20, "stream": true,
                      "messages": [{"role": "user", "content": "hi"}]});
    let (_, _, bytes) = send(&s.gw, post_request("/v1/messages", &body)).await;
    let ev = events(&bytes);
    check_anthropic_stream(&ev);
    assert_eq!(ev[0].1["message"]["model"], "gpt-4o-mini");

    // A complete answer: the upstream's blocks as they came.
    let (_, _, bytes) = send(
        &s.gw,
        post_request("/v1/messages", &message_body("claude-3-5-haiku", "hello")),
    )
    .await;
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["model"], "claude-3-5-haiku");
    assert_eq!(v["content"][0]["type"], "text");
}

#[tokio::test]
async fn messages_route_to_other_providers_and_answer_in_anthropics_shape() {
    let s = setup().await;
    for model in ["gpt-4o-mini", "gemini-2.0-flash", "llama3.2"] {
        let mut body = message_body(model, "hello there");
        body["system"] = json!("Be brief.");
        body["tools"] = json!([{"name": "lookup", "input_schema": {"type": "object"},
                                "cache_control": {"type": "ephemeral"}}]);
        let (status, headers, bytes) = send(&s.gw, post_request("/v1/messages", &body)).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{model}: {}",
            String::from_utf8_lossy(&bytes)
        );
        assert_eq!(headers["x-switchyard-model"], model);
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["type"], "message", "{model}: {v}");
        assert_eq!(v["role"], "assistant");
        assert_eq!(v["model"], model);
        assert!(v["stop_reason"].is_string());
        assert!(v["usage"]["output_tokens"].as_u64().unwrap() > 0);
    }
    // The upstream got a translation, not the Anthropic body.
    let sent = last_upstream_body(&s, "/ollama/v1/chat/completions");
    assert!(sent.contains(r#""role":"system""#), "{sent}");
    assert!(!sent.contains("cache_control"), "{sent}");
    assert!(!sent.contains("input_schema"), "{sent}");
}

#[tokio::test]
async fn anthropic_only_content_stays_on_anthropic_or_is_refused_by_name() {
    let s = setup().await;
    let content = json!([{"type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": "The sky is blue."},
        "citations": {"enabled": true}}, {"type": "text", "text": "What colour is the sky?"}]);
    let body = json!({"model": "gpt-4o-mini", "max_tokens": 20,
                      "messages": [{"role": "user", "content": content.clone()}]});
    let (status, v) = post_json(&s.gw, "/v1/messages", body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("messages[0].content[0]"), "{message}");
    assert!(message.contains("only Anthropic models"), "{message}");
    // A route with an Anthropic model serves it there.
    let body = json!({"model": "auto", "max_tokens": 20,
                      "messages": [{"role": "user", "content": content}]});
    let (status, headers, bytes) = send(&s.gw, post_request("/v1/messages", &body)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    assert!(
        headers["x-switchyard-provider"]
            .to_str()
            .unwrap()
            .contains("anthropic")
    );
}

/// The route's candidates, best first (`/ai/route`'s explanation, without calling anything).
pub(crate) fn ranking(gw: &Arc<Gateway>, route: &str) -> Vec<String> {
    let body = json!({"route": route, "messages": [{"role": "user", "content": "hi"}]});
    let v = switchyard::api::explain(gw, body.to_string().as_bytes()).unwrap();
    v["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["filtered"].is_null())
        .map(|c| c["model"].as_str().unwrap().to_owned())
        .collect()
}

pub(crate) fn upstream_of(model: &str) -> &str {
    match model {
        "claude-3-5-haiku" => "claude-3-5-haiku-20241022",
        m => m,
    }
}

/// A gateway whose route `cheap` fails on its first choice (every attempt, 503), and that
/// model's name.
async fn first_choice_fails() -> (common::Setup, String) {
    let s = setup().await;
    let first = ranking(&s.gw, "cheap").remove(0);
    s.sim
        .sim
        .set_fault(upstream_of(&first), "503", FaultMode::Rate(1.0))
        .unwrap();
    (s, first)
}

#[tokio::test]
async fn a_stream_that_fails_before_its_first_token_moves_on_invisibly() {
    // One gateway per door: the first request opens the failing model's breaker.
    let (s, first) = first_choice_fails().await;
    let mut body = message_body("cheap", "tell me a story");
    body["stream"] = json!(true);
    let (status, headers, bytes) = send(&s.gw, post_request("/v1/messages", &body)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_ne!(headers["x-switchyard-model"], first.as_str());
    let attempts: usize = headers["x-switchyard-attempts"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(attempts >= 2, "attempts {attempts}");
    check_anthropic_stream(&events(&bytes));

    let (s, first) = first_choice_fails().await;
    let body = json!({"model": "cheap", "input": "tell me a story", "stream": true});
    let (status, headers, bytes) = send(&s.gw, post_request("/v1/responses", &body)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let served = headers["x-switchyard-model"].to_str().unwrap();
    assert_ne!(served, first.as_str());
    assert_ne!(headers["x-switchyard-attempts"], "1");
    let ev = events(&bytes);
    assert_eq!(ev[0].0, "response.created");
    assert_eq!(
        ev.last().unwrap().0,
        "response.completed",
        "{:?}",
        names(&ev)
    );
    assert_eq!(ev.last().unwrap().1["response"]["model"], served);
}

#[tokio::test]
async fn a_cut_after_the_first_token_is_the_doors_own_error_event() {
    let s = setup().await;
    s.sim
        .sim
        .set_fault("claude-3-5-haiku-20241022", "cut:3", FaultMode::Count(1))
        .unwrap();
    let mut body = message_body("claude-3-5-haiku", "tell me a long story");
    body["stream"] = json!(true);
    let (status, _, bytes) = send(&s.gw, post_request("/v1/messages", &body)).await;
    assert_eq!(status, StatusCode::OK);
    let ev = events(&bytes);
    let (name, data) = ev.last().unwrap();
    assert_eq!(name, "error", "{:?}", names(&ev));
    assert_eq!(data["type"], "error");
    assert!(data["error"]["type"].is_string());
    assert!(!names(&ev).contains(&"message_stop"));
    assert!(names(&ev).contains(&"content_block_delta"));

    s.sim
        .sim
        .set_fault("gpt-4o-mini", "cut:3", FaultMode::Count(1))
        .unwrap();
    let body = json!({"model": "gpt-4o-mini", "input": "tell me a long story", "stream": true});
    let (status, _, bytes) = send(&s.gw, post_request("/v1/responses", &body)).await;
    assert_eq!(status, StatusCode::OK);
    let ev = events(&bytes);
    let (name, data) = ev.last().unwrap();
    assert_eq!(name, "error", "{:?}", names(&ev));
    assert!(data["error"]["message"].is_string());
    assert!(!names(&ev).contains(&"response.completed"));
}

#[tokio::test]
async fn a_deterministic_message_is_cached_and_replayed_as_anthropic_events() {
    let s = setup().await;
    let mut body = message_body("claude-3-5-haiku", "cache this one");
    body["temperature"] = json!(0);
    body["stream"] = json!(true);
    let (_, h1, b1) = send(&s.gw, post_request("/v1/messages", &body)).await;
    assert_eq!(h1["x-switchyard-cache"], "miss");
    let (_, h2, b2) = send(&s.gw, post_request("/v1/messages", &body)).await;
    assert_eq!(h2["x-switchyard-cache"], "hit");
    assert_eq!(h2["x-switchyard-attempts"], "0");
    let first = check_anthropic_stream(&events(&b1));
    let second = check_anthropic_stream(&events(&b2));
    assert_eq!(first, second);
    // The complete form of the same request is served from the same entry.
    body["stream"] = json!(false);
    let (_, h3, b3) = send(&s.gw, post_request("/v1/messages", &body)).await;
    assert_eq!(h3["x-switchyard-cache"], "hit");
    let v: Value = serde_json::from_slice(&b3).unwrap();
    assert_eq!(v["content"][0]["text"], first.as_str());
    // A change the hub does not model (`top_k`) is another request.
    body["top_k"] = json!(2);
    let (_, h4, _) = send(&s.gw, post_request("/v1/messages", &body)).await;
    assert_eq!(h4["x-switchyard-cache"], "miss");
}

#[tokio::test]
async fn repeated_cached_prefixes_report_and_price_cache_reads() {
    let s = setup().await;
    let long = "The quick brown fox jumps over the lazy dog. ".repeat(200);
    let body = json!({"model": "claude-3-5-haiku", "max_tokens": 20,
        "system": [{"type": "text", "text": long, "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "Summarise."}]});
    let (_, h1, b1) = send(&s.gw, post_request("/v1/messages", &body)).await;
    let (_, h2, b2) = send(&s.gw, post_request("/v1/messages", &body)).await;
    let (v1, v2): (Value, Value) = (
        serde_json::from_slice(&b1).unwrap(),
        serde_json::from_slice(&b2).unwrap(),
    );
    let written = v1["usage"]["cache_creation_input_tokens"].as_u64().unwrap();
    let read = v2["usage"]["cache_read_input_tokens"].as_u64().unwrap();
    assert!(written > 500, "{v1}");
    assert_eq!(read, written, "{v2}");
    assert_eq!(v2["usage"]["cache_creation_input_tokens"], 0);
    // Reads cost a tenth of input, writes 1.25×: the second call is much cheaper.
    let cost = |h: &HeaderMap| -> f64 {
        h["x-switchyard-cost-usd"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(
        cost(&h2) < cost(&h1) / 3.0,
        "{} vs {}",
        cost(&h2),
        cost(&h1)
    );
}

#[tokio::test]
async fn count_tokens_is_the_routers_own_count_with_its_margin() {
    let s = setup().await;
    let body = json!({"model": "claude-3-5-haiku",
                      "messages": [{"role": "user", "content": "Count these words, please."}]});
    let (status, v) = post_json(&s.gw, "/v1/messages/count_tokens", body).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(v["input_tokens"].as_u64().unwrap() > 5);
    assert_eq!(v["tokenizer"], "claude");
    assert_eq!(v["margin"], 1.25);
    assert_eq!(v["exact"], false);
    let (status, v) = post_json(
        &s.gw,
        "/v1/messages/count_tokens",
        json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(v["error"]["type"], "not_found_error");
}

#[tokio::test]
async fn messages_errors_take_anthropics_shape_even_from_admission() {
    let s = setup_with(|c| {
        c.auth.admin_key = Some(Secret::new("admin-key-0123456789abcdef"));
        c.auth.mode = Some(AuthMode::Keys);
    })
    .await;
    let (status, v) = post_json(&s.gw, "/v1/messages", message_body("claude-3-5-haiku", "x")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "authentication_error");
    let req = Request::post("/v1/messages")
        .header("content-type", "text/plain")
        .body(Body::from("hi"))
        .unwrap();
    let (status, _, bytes) = send(&s.gw, req).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    // Chat keeps OpenAI's shape.
    let (status, v) = post_json(
        &s.gw,
        "/v1/chat/completions",
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(v["error"]["code"].is_string());
}

#[tokio::test]
async fn models_list_speaks_anthropic_when_asked() {
    let s = setup().await;
    let req = Request::get("/v1/models")
        .header("anthropic-version", "2023-06-01")
        .body(Body::empty())
        .unwrap();
    let (_, _, bytes) = send(&s.gw, req).await;
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["has_more"], false);
    assert_eq!(v["data"][0]["type"], "model");
    assert!(v["data"][0]["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(v["first_id"], v["data"][0]["id"]);
    let (_, v) = common::get_json(&s.gw, "/v1/models").await;
    assert_eq!(v["object"], "list");
}

#[tokio::test]
async fn responses_complete_with_tools_and_json_schema() {
    let s = setup().await;
    let body = json!({"model": "gpt-4o-mini", "instructions": "Answer in JSON.",
        "input": [{"role": "user", "content": "Give me a city."}],
        "text": {"format": {"type": "json_schema", "name": "city",
                 "schema": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}}}});
    let (status, v) = post_json(&s.gw, "/v1/responses", body).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    let text = v["output"][0]["content"][0]["text"].as_str().unwrap();
    assert!(serde_json::from_str::<Value>(text).is_ok(), "{text}");
    assert_eq!(v["text"]["format"]["type"], "json_schema");
    let sent = last_upstream_body(&s, "/openai/v1/chat/completions");
    assert!(sent.contains(r#""role":"developer""#), "{sent}");
    assert!(sent.contains("json_schema"), "{sent}");

    let (status, v) = post_json(
        &s.gw,
        "/v1/responses",
        json!({"model": "gpt-4o-mini", "input": "x", "store": true}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["param"], "store");
}

#[tokio::test]
async fn embeddings_route_among_one_vector_length_fail_over_and_cache() {
    let s = setup().await;
    let body = json!({"model": "embed", "input": ["alpha", "beta"]});
    let (status, headers, bytes) = send(&s.gw, post_request("/v1/embeddings", &body)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][1]["index"], 1);
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 1536);
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    let first = headers["x-switchyard-model"].to_str().unwrap().to_owned();

    // The first choice fails: the other model of the same length answers.
    s.sim
        .sim
        .set_fault(&first, "500", FaultMode::Rate(1.0))
        .unwrap();
    let body = json!({"model": "embed", "input": "gamma"});
    let (status, headers, bytes) = send(&s.gw, post_request("/v1/embeddings", &body)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    assert_ne!(headers["x-switchyard-model"].to_str().unwrap(), first);
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 1536);
    s.sim.sim.clear_faults();

    // A length no model of the route outputs is a 400 naming `dimensions`.
    let (status, v) = post_json(
        &s.gw,
        "/v1/embeddings",
        json!({"model": "embed", "input": "x", "dimensions": 7}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["param"], "dimensions");
    // A chat model is not an embedding model, nor the reverse.
    let (status, v) = post_json(
        &s.gw,
        "/v1/embeddings",
        json!({"model": "gpt-4o-mini", "input": "x"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let (status, _) = post_json(
        &s.gw,
        "/v1/chat/completions",
        json!({"model": "text-embedding-3-small", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Deterministic by nature, so cached without asking; base64 on request.
    let body = json!({"model": "text-embedding-3-small", "input": "delta",
                      "encoding_format": "base64"});
    let (_, h1, b1) = send(&s.gw, post_request("/v1/embeddings", &body)).await;
    let (_, h2, b2) = send(&s.gw, post_request("/v1/embeddings", &body)).await;
    assert_eq!(h1["x-switchyard-cache"], "miss");
    assert_eq!(h2["x-switchyard-cache"], "hit");
    let (v1, v2): (Value, Value) = (
        serde_json::from_slice(&b1).unwrap(),
        serde_json::from_slice(&b2).unwrap(),
    );
    assert_eq!(v1["data"][0]["embedding"], v2["data"][0]["embedding"]);
    // 1536 f32s are 6144 bytes, 8192 characters of base64.
    assert_eq!(v1["data"][0]["embedding"].as_str().unwrap().len(), 8192);
}
