//! `/v1/messages` to an Anthropic upstream as the upstream speaks: extended thinking streamed
//! and complete (signatures byte for byte), blocks the hub does not model reaching the upstream
//! unchanged, and what the other providers make of them; the smaller translations of the doors
//! (`reasoning.effort`, a stream that opens and dies before its first token).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::http::StatusCode;
use serde_json::{Value, json};
use switchyard_sim::FaultMode;

use switchyard::config::{RouteConfig, Weights};
use switchyard_types::ids::ModelId;

use crate::common::{post_request, send, setup, setup_with};
use crate::doors::{
    check_anthropic_stream, events, last_upstream_body, message_body, names, ranking, upstream_of,
};

/// The simulator's thinking for a budget: `budget / 8` pieces `step i; `.
fn expected_thinking(budget: u32) -> String {
    (0..budget / 8).map(|i| format!("step {i}; ")).collect()
}

/// A signature as the simulator writes it: base64 with `+` and `/`, which a re-encoding could
/// escape.
fn is_sim_signature(s: &str) -> bool {
    s.len() == 47
        && s.starts_with("Eu")
        && s.ends_with("+/Q==")
        && s[2..42].bytes().all(|b| b.is_ascii_hexdigit())
}

fn thinking_body(model: &str, budget: u32, stream: bool) -> Value {
    json!({"model": model, "max_tokens": budget + 1000, "stream": stream,
           "thinking": {"type": "enabled", "budget_tokens": budget},
           "messages": [{"role": "user", "content": "think hard about this"}]})
}

#[tokio::test]
async fn a_long_thinking_stream_reaches_the_client_in_order_with_its_signature() {
    let s = setup().await;
    // 375 thinking deltas before the first text: more than a stream may send before its
    // answer starts, if thinking did not count as the answer.
    let budget = 3000;
    let body = thinking_body("claude-3-5-haiku", budget, true);
    let (status, headers, bytes) = send(&s.gw, post_request("/v1/messages", &body)).await;
    let raw = String::from_utf8_lossy(&bytes).into_owned();
    assert_eq!(status, StatusCode::OK, "{raw}");
    assert_eq!(headers["x-switchyard-model"], "claude-3-5-haiku");
    assert_eq!(headers["x-switchyard-attempts"], "1");
    let ev = events(&bytes);
    let text = check_anthropic_stream(&ev);
    assert!(!text.is_empty());
    assert!(!names(&ev).contains(&"error"), "{:?}", names(&ev));
    let (_, first_block) = ev.iter().find(|(n, _)| n == "content_block_start").unwrap();
    assert_eq!(first_block["content_block"]["type"], "thinking");
    let deltas: Vec<&Value> = ev
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, d)| &d["delta"])
        .collect();
    let thinking: Vec<&str> = deltas
        .iter()
        .filter(|d| d["type"] == "thinking_delta")
        .map(|d| d["thinking"].as_str().unwrap())
        .collect();
    assert_eq!(thinking.len(), 375);
    assert_eq!(thinking.concat(), expected_thinking(budget));
    let signatures: Vec<&str> = deltas
        .iter()
        .filter(|d| d["type"] == "signature_delta")
        .map(|d| d["signature"].as_str().unwrap())
        .collect();
    assert_eq!(signatures.len(), 1);
    assert!(is_sim_signature(signatures[0]), "{}", signatures[0]);
    // The upstream's frame as it came: the signature not re-escaped.
    assert!(
        raw.contains(&format!(r#""signature":"{}""#, signatures[0])),
        "{raw}"
    );
    // Thinking first, then the text, each block closed before the next opens.
    let last_thinking = deltas
        .iter()
        .rposition(|d| d["type"] == "signature_delta")
        .unwrap();
    let first_text = deltas
        .iter()
        .position(|d| d["type"] == "text_delta")
        .unwrap();
    assert!(last_thinking < first_text);
}

#[tokio::test]
async fn a_complete_thinking_answer_returns_the_thinking_block_as_it_came() {
    let s = setup().await;
    let budget = 1024;
    let body = thinking_body("claude-3-5-haiku", budget, false);
    let (status, _, bytes) = send(&s.gw, post_request("/v1/messages", &body)).await;
    let raw = String::from_utf8_lossy(&bytes).into_owned();
    assert_eq!(status, StatusCode::OK, "{raw}");
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    let content = v["content"].as_array().unwrap();
    assert_eq!(content.len(), 2, "{v}");
    let block = content[0].as_object().unwrap();
    let mut keys: Vec<&str> = block.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["signature", "thinking", "type"]);
    assert_eq!(block["type"], "thinking");
    assert_eq!(block["thinking"], expected_thinking(budget).as_str());
    let signature = block["signature"].as_str().unwrap();
    assert!(is_sim_signature(signature), "{signature}");
    assert!(
        raw.contains(&format!(r#""signature":"{signature}""#)),
        "{raw}"
    );
    assert_eq!(content[1]["type"], "text");
    // Thinking tokens are output tokens.
    assert!(v["usage"]["output_tokens"].as_u64().unwrap() >= u64::from(budget / 8));
    // The client's `thinking` went upstream as sent.
    let sent = last_upstream_body(&s, "/anthropic/v1/messages");
    assert!(
        sent.contains(r#""thinking":{"budget_tokens":1024,"type":"enabled"}"#),
        "{sent}"
    );
}

#[tokio::test]
async fn thinking_is_dropped_for_other_providers_as_documented() {
    let s = setup().await;
    for stream in [false, true] {
        let body = thinking_body("gpt-4o-mini", 2048, stream);
        let (status, headers, bytes) = send(&s.gw, post_request("/v1/messages", &body)).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&bytes)
        );
        assert_eq!(headers["x-switchyard-model"], "gpt-4o-mini");
        let sent = last_upstream_body(&s, "/openai/v1/chat/completions");
        assert!(!sent.contains("thinking"), "{sent}");
        assert!(!sent.contains("budget_tokens"), "{sent}");
        if stream {
            let ev = events(&bytes);
            check_anthropic_stream(&ev);
            assert!(
                ev.iter()
                    .all(|(_, d)| d["content_block"]["type"] != "thinking")
            );
        } else {
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(v["content"][0]["type"], "text", "{v}");
        }
    }
}

#[tokio::test]
async fn unknown_blocks_and_cited_documents_reach_anthropic_byte_for_byte() {
    let s = setup().await;
    let future = r#"{"type":"future_block","x":1}"#;
    let document = r#"{"type":"document","source":{"type":"text","media_type":"text/plain","data":"The sky is blue."},"title":"Sky","citations":{"enabled":true},"context":"a fact"}"#;
    let cited = r#"{"type":"text","text":"It is blue.","citations":[{"type":"char_location","cited_text":"The sky is blue.","document_index":0,"document_title":"Sky","start_char_index":0,"end_char_index":16}]}"#;
    let messages = format!(
        r#"[{{"role":"user","content":[{document},{{"type":"text","text":"What colour?"}}]}},{{"role":"assistant","content":[{cited}]}},{{"role":"user","content":[{future},{{"type":"text","text":"And at night?"}}]}}]"#
    );
    let body = format!(r#"{{"model":"claude-3-5-haiku","max_tokens":40,"messages":{messages}}}"#);
    let req = axum::http::Request::post("/v1/messages")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body))
        .unwrap();
    let (status, _, bytes) = send(&s.gw, req).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let sent = last_upstream_body(&s, "/anthropic/v1/messages");
    assert!(
        sent.contains(&messages),
        "upstream body lacks the messages:\n{sent}"
    );
}

#[tokio::test]
async fn reasoning_effort_reaches_an_openai_upstream() {
    let s = setup().await;
    let body = json!({"model": "gpt-4o-mini", "input": "think", "reasoning": {"effort": "high"}});
    let (status, _, bytes) = send(&s.gw, post_request("/v1/responses", &body)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let sent = last_upstream_body(&s, "/openai/v1/chat/completions");
    assert!(sent.contains(r#""reasoning_effort":"high""#), "{sent}");
}

/// A route over `models`, ranked by price alone.
fn cheapest_first(name: &str, models: &[&str]) -> RouteConfig {
    let mut r = RouteConfig::default_over(models.iter().map(|m| ModelId::new(*m)).collect());
    r.name = name.to_owned();
    r.optimize = None;
    r.weights = Weights {
        cost: 1.0,
        latency: 0.0,
        reliability: 0.0,
        quality: 0.0,
    };
    r
}

#[tokio::test]
async fn a_stream_that_opens_and_dies_before_content_moves_on_invisibly() {
    let s = setup_with(|c| {
        let route = cheapest_first("claude-first", &["claude-3-5-haiku", "gpt-4o"]);
        c.routes.insert("claude-first".into(), route);
    })
    .await;
    assert_eq!(
        ranking(&s.gw, "claude-first"),
        ["claude-3-5-haiku", "gpt-4o"]
    );
    // Anthropic's stream opens (message_start, the block's start, a ping) and the connection
    // drops before any text.
    s.sim
        .sim
        .set_fault(
            upstream_of("claude-3-5-haiku"),
            "cut:0",
            FaultMode::Rate(1.0),
        )
        .unwrap();
    let mut body = message_body("claude-first", "tell me a story");
    body["stream"] = json!(true);
    let (status, headers, bytes) = send(&s.gw, post_request("/v1/messages", &body)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    assert_eq!(headers["x-switchyard-model"], "gpt-4o");
    let attempts: u32 = headers["x-switchyard-attempts"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(attempts >= 2, "attempts {attempts}");
    assert!(
        s.sim
            .sim
            .recent_requests()
            .iter()
            .any(|r| r.path.contains("/anthropic/v1/messages")),
        "Anthropic was tried first"
    );
    let ev = events(&bytes);
    check_anthropic_stream(&ev);
    // Nothing of the dead stream reached the client: one message_start, the one that served.
    assert_eq!(
        ev.iter().filter(|(n, _)| n == "message_start").count(),
        1,
        "{:?}",
        names(&ev)
    );
    assert_eq!(ev[0].1["message"]["model"], "gpt-4o");
}

#[tokio::test]
async fn an_openai_cache_read_is_shown_as_anthropics_cache_read() {
    let s = setup().await;
    let long = "The quick brown fox jumps over the lazy dog. ".repeat(200);
    let body = json!({"model": "gpt-4o-mini", "max_tokens": 20, "messages": [
        {"role": "user", "content": long}, {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "Summarise."}]});
    let (_, _, b1) = send(&s.gw, post_request("/v1/messages", &body)).await;
    let (status, headers, b2) = send(&s.gw, post_request("/v1/messages", &body)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-switchyard-model"], "gpt-4o-mini");
    let (v1, v2): (Value, Value) = (
        serde_json::from_slice(&b1).unwrap(),
        serde_json::from_slice(&b2).unwrap(),
    );
    assert_eq!(v1["usage"]["cache_read_input_tokens"], 0, "{v1}");
    let read = v2["usage"]["cache_read_input_tokens"].as_u64().unwrap();
    assert!(read >= 1024 && read % 128 == 0, "{v2}");
    assert_eq!(v2["usage"]["cache_creation_input_tokens"], 0);
    // Input excludes the read: the two add up to the first call's input.
    assert_eq!(
        v2["usage"]["input_tokens"].as_u64().unwrap() + read,
        v1["usage"]["input_tokens"].as_u64().unwrap(),
        "{v1} {v2}"
    );
    // And upstream it was OpenAI's own field.
    let sent = last_upstream_body(&s, "/openai/v1/chat/completions");
    assert!(!sent.contains("cache_control"), "{sent}");
}

#[tokio::test]
async fn thinking_ends_the_wait_for_the_first_token() {
    let s = setup().await;
    // Thinking paced 4 ms a piece: 375 pieces, 1.5 s before the first text, five times the
    // route's first-token limit. The first thinking event comes at once.
    let mut cfg = switchyard::demo::config(&format!("http://{}", s.sim.addr)).unwrap();
    cfg.sim = Default::default();
    cfg.providers
        .get_mut("anthropic")
        .unwrap()
        .headers
        .push(("x-sim-tpot-ms".into(), "4".into()));
    let mut route = cheapest_first("thinker", &["claude-3-5-haiku"]);
    route.ttft = std::time::Duration::from_millis(300);
    cfg.routes.insert("thinker".into(), route);
    let gw = switchyard::Gateway::new(cfg).unwrap();
    let body = thinking_body("thinker", 3000, true);
    let (status, headers, bytes) = send(&gw, post_request("/v1/messages", &body)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    assert_eq!(headers["x-switchyard-attempts"], "1");
    let ev = events(&bytes);
    check_anthropic_stream(&ev);
    let thinking = ev
        .iter()
        .filter(|(_, d)| d["delta"]["type"] == "thinking_delta")
        .count();
    assert_eq!(thinking, 375);
}
