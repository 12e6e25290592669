//! In-process tests of the four wire formats (`oneshot` on `Sim::router`): answer shapes, honest
//! usage, stream framing, tools, JSON mode, determinism, latency on paused time, control API.
//! Shared helpers for `tests_faults.rs` live here too.

use std::sync::Arc;

use axum::body::Body;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{LatencyDist, Profile, Sim, SimConfig};

pub(super) struct Got {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// Err when the body was aborted (reset / cut).
    pub body: Result<Vec<u8>, String>,
    /// What arrived before an abort.
    pub partial: Vec<u8>,
}

impl Got {
    pub fn json(&self) -> Value {
        serde_json::from_slice(self.body.as_ref().expect("body")).expect("json body")
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.partial).into_owned()
    }
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

pub(super) async fn send(
    sim: &Arc<Sim>,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> Got {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let body = if body.is_null() {
        Body::empty()
    } else {
        Body::from(body.to_string())
    };
    let resp = sim.router().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let mut body = resp.into_body();
    let mut partial = Vec::new();
    let mut result = Ok(());
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => partial.extend_from_slice(f.data_ref().map(|b| &b[..]).unwrap_or_default()),
            Err(e) => {
                result = Err(e.to_string());
                break;
            }
        }
    }
    let body = result.map(|()| partial.clone());
    Got {
        status,
        headers,
        body,
        partial,
    }
}

fn with<'a>(base: &[(&'a str, &'a str)], extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    base.iter().chain(extra).copied().collect()
}

pub(super) async fn openai(sim: &Arc<Sim>, body: Value, extra: &[(&str, &str)]) -> Got {
    let h = with(&[("authorization", "Bearer sk-test")], extra);
    send(sim, "POST", "/openai/v1/chat/completions", &h, body).await
}

pub(super) async fn ollama(sim: &Arc<Sim>, body: Value, extra: &[(&str, &str)]) -> Got {
    send(sim, "POST", "/ollama/v1/chat/completions", extra, body).await
}

pub(super) async fn anthropic(sim: &Arc<Sim>, body: Value, extra: &[(&str, &str)]) -> Got {
    let h = with(
        &[
            ("x-api-key", "sk-ant-test"),
            ("anthropic-version", "2023-06-01"),
        ],
        extra,
    );
    send(sim, "POST", "/anthropic/v1/messages", &h, body).await
}

pub(super) async fn gemini(
    sim: &Arc<Sim>,
    model: &str,
    stream: bool,
    body: Value,
    extra: &[(&str, &str)],
) -> Got {
    let uri = if stream {
        format!("/gemini/v1beta/models/{model}:streamGenerateContent?alt=sse")
    } else {
        format!("/gemini/v1beta/models/{model}:generateContent")
    };
    let h = with(&[("x-goog-api-key", "AIza-test")], extra);
    send(sim, "POST", &uri, &h, body).await
}

/// `data:` payloads of an SSE body whose events end with `sep`.
pub(super) fn sse_data(text: &str, sep: &str) -> Vec<String> {
    text.split(sep)
        .filter(|e| !e.is_empty())
        .map(|e| e.strip_prefix("data: ").unwrap_or(e).to_owned())
        .collect()
}

/// (event name, data) pairs of an Anthropic stream.
pub(super) fn events(text: &str) -> Vec<(String, String)> {
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (ev, data) = e.split_once('\n').unwrap();
            (
                ev.strip_prefix("event: ").unwrap().to_owned(),
                data.strip_prefix("data: ").unwrap().to_owned(),
            )
        })
        .collect()
}

pub(super) fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

const HELLO: &str = "Hello there, how are you?"; // 25 chars: ceil(25/4) + 3 + 3 = 13 prompt tokens

fn weather_tool_openai() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]}}}])
}

#[tokio::test]
async fn openai_answer_has_real_shape_and_honest_usage() {
    let sim = Sim::new(SimConfig::default());
    let got = openai(
        &sim,
        json!({"model": "gpt-4o-mini", "messages": user(HELLO)}),
        &[],
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
    let v = got.json();
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(content.split(' ').count(), 16);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 13);
    assert_eq!(v["usage"]["completion_tokens"], 16);
    assert_eq!(v["usage"]["total_tokens"], 29);
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    assert_eq!(
        v["usage"]["completion_tokens_details"]["reasoning_tokens"],
        0
    );
    assert!(got.header("x-request-id").starts_with("req_"));
    assert_eq!(got.header("x-ratelimit-limit-requests"), "10000");
    assert_eq!(got.header("x-ratelimit-reset-requests"), "6ms");
    assert!(!got.header("openai-processing-ms").is_empty());

    let got = openai(
        &sim,
        json!({"model": "gpt-4o-mini", "messages": user(HELLO), "max_completion_tokens": 5}),
        &[],
    )
    .await;
    let v = got.json();
    assert_eq!(v["usage"]["completion_tokens"], 5);
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    let got = openai(
        &sim,
        json!({"model": "m", "messages": user(HELLO)}),
        &[("x-sim-tokens", "3")],
    )
    .await;
    assert_eq!(got.json()["usage"]["completion_tokens"], 3);
}

#[tokio::test]
async fn openai_stream_is_data_frames_then_done() {
    let sim = Sim::new(SimConfig::default());
    let body = json!({"model": "gpt-4o-mini", "messages": user(HELLO), "stream": true, "stream_options": {"include_usage": true}});
    let got = openai(&sim, body, &[]).await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(got.header("content-type").starts_with("text/event-stream"));
    let text = got.text();
    assert!(text.ends_with("data: [DONE]\n\n"));
    let data = sse_data(&text, "\n\n");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let words: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(words.split(' ').count(), 16);
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert_eq!(finish["choices"][0]["delta"], json!({}));
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 16);
    assert!(
        chunks[..chunks.len() - 1]
            .iter()
            .all(|c| c["usage"].is_null() && c["object"] == "chat.completion.chunk")
    );
    assert_eq!(sim.stats().model("gpt-4o-mini").streams_completed, 1);
}

#[tokio::test]
async fn openai_tool_calls_and_text_after_tool_result() {
    let sim = Sim::new(SimConfig::default());
    let body = json!({"model": "gpt-4o", "messages": user("Weather in Paris?"), "tools": weather_tool_openai()});
    let v = openai(&sim, body.clone(), &[]).await.json();
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert!(v["choices"][0]["message"]["content"].is_null());
    assert!(call["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "sample", "days": 1}));

    let mut stream = body.clone();
    stream["stream"] = json!(true);
    let text = openai(&sim, stream, &[]).await.text();
    let data = sse_data(&text, "\n\n");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(
        chunks[0]["choices"][0]["delta"]["tool_calls"][0]["function"]["name"],
        "get_weather"
    );
    let joined: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(serde_json::from_str::<Value>(&joined).unwrap(), args);
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );

    let mut after = body.clone();
    after["messages"] = json!([{"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": null, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "18C"}]);
    let v = openai(&sim, after, &[]).await.json();
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["choices"][0]["message"]["content"].is_string());
    let mut none = body;
    none["tool_choice"] = json!("none");
    assert!(openai(&sim, none, &[]).await.json()["choices"][0]["message"]["tool_calls"].is_null());
}

#[tokio::test]
async fn openai_json_modes_produce_valid_json() {
    let sim = Sim::new(SimConfig::default());
    let body = json!({"model": "gpt-4o-mini", "messages": user("json please"), "response_format": {"type": "json_object"}});
    let v = openai(&sim, body, &[]).await.json();
    let content: Value =
        serde_json::from_str(v["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert_eq!(content["answer"].as_str().unwrap().split(' ').count(), 16);
    let schema = json!({"type": "object", "properties": {"title": {"type": "string"}, "score": {"type": "number"},
        "tags": {"type": "array", "items": {"type": "string"}}}, "required": ["title", "score", "tags"], "additionalProperties": false});
    let body = json!({"model": "gpt-4o-mini", "messages": user("json please"),
        "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "strict": true, "schema": schema}}});
    let v = openai(&sim, body, &[]).await.json();
    let content: Value =
        serde_json::from_str(v["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert!(
        content["title"].is_string()
            && content["score"] == 1
            && content["tags"].as_array().unwrap().len() == 1
    );
}

#[tokio::test]
async fn anthropic_answer_shape_and_validation() {
    let sim = Sim::new(SimConfig::default());
    let body = json!({"model": "claude-3-5-haiku-20241022", "max_tokens": 1024, "system": "Be terse.", "messages": user(HELLO)});
    let got = anthropic(&sim, body.clone(), &[]).await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(got.header("request-id").starts_with("req_"));
    assert_eq!(got.header("anthropic-ratelimit-requests-limit"), "4000");
    assert!(
        got.header("anthropic-ratelimit-requests-reset")
            .ends_with('Z')
    );
    let v = got.json();
    assert_eq!(v["type"], "message");
    assert_eq!(v["content"][0]["type"], "text");
    assert_eq!(v["stop_reason"], "end_turn");
    // system "Be terse." = ceil(9/4) + 3 = 6; message 7 + 3 = 10; + 3
    assert_eq!(
        v["usage"],
        json!({"input_tokens": 19, "output_tokens": 16, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0})
    );
    let mut short = body.clone();
    short["max_tokens"] = json!(4);
    let v = anthropic(&sim, short, &[]).await.json();
    assert_eq!(
        (
            v["stop_reason"].as_str(),
            v["usage"]["output_tokens"].as_u64()
        ),
        (Some("max_tokens"), Some(4))
    );

    let h = [("x-api-key", "k")];
    let got = send(&sim, "POST", "/anthropic/v1/messages", &h, body.clone()).await;
    assert_eq!(got.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        got.json()["error"]["message"],
        "anthropic-version: header is required"
    );
    let got = send(
        &sim,
        "POST",
        "/anthropic/v1/messages",
        &[("anthropic-version", "2023-06-01")],
        body.clone(),
    )
    .await;
    assert_eq!(got.status, StatusCode::UNAUTHORIZED);
    assert_eq!(got.json()["error"]["type"], "authentication_error");
    let mut no_max = body;
    no_max.as_object_mut().unwrap().remove("max_tokens");
    let got = anthropic(&sim, no_max, &[]).await;
    let v = got.json();
    assert_eq!(got.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        (v["type"].as_str(), v["error"]["type"].as_str()),
        (Some("error"), Some("invalid_request_error"))
    );
    assert!(v["request_id"].as_str().unwrap().starts_with("req_"));
    let empty = json!({"model": "claude-3-5-haiku-20241022", "max_tokens": 10, "messages": []});
    assert_eq!(
        anthropic(&sim, empty, &[]).await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn anthropic_stream_events_in_order() {
    let sim = Sim::new(SimConfig::default());
    let body = json!({"model": "claude-3-5-haiku-20241022", "max_tokens": 1024, "stream": true, "messages": user(HELLO)});
    let ev = events(&anthropic(&sim, body, &[("x-sim-tokens", "3")]).await.text());
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let start: Value = serde_json::from_str(&ev[0].1).unwrap();
    assert_eq!(start["message"]["usage"]["input_tokens"], 13);
    let delta: Value = serde_json::from_str(&ev[7].1).unwrap();
    assert_eq!(delta["usage"]["output_tokens"], 3);
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    for (_, data) in &ev {
        serde_json::from_str::<Value>(data).unwrap();
    }
}

#[tokio::test]
async fn anthropic_tool_use_block_and_stream() {
    let sim = Sim::new(SimConfig::default());
    let tools = json!([{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}}}}]);
    let body = json!({"model": "claude-3-5-haiku-20241022", "max_tokens": 100, "messages": user("Weather?"), "tools": tools});
    let v = anthropic(&sim, body.clone(), &[]).await.json();
    assert_eq!(v["stop_reason"], "tool_use");
    let block = &v["content"][0];
    assert_eq!(
        (block["type"].as_str(), block["name"].as_str()),
        (Some("tool_use"), Some("get_weather"))
    );
    assert!(block["id"].as_str().unwrap().starts_with("toolu_"));
    assert_eq!(block["input"], json!({"city": "sample", "unit": "c"}));

    let mut stream = body.clone();
    stream["stream"] = json!(true);
    let ev = events(&anthropic(&sim, stream, &[]).await.text());
    let start: Value = serde_json::from_str(&ev[1].1).unwrap();
    assert_eq!(start["content_block"]["type"], "tool_use");
    let json: String = ev
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, d)| {
            serde_json::from_str::<Value>(d).unwrap()["delta"]["partial_json"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&json).unwrap(),
        block["input"]
    );

    let mut after = body;
    after["messages"] = json!([{"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": [block]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block["id"], "content": "18C"}]}]);
    assert_eq!(
        anthropic(&sim, after, &[]).await.json()["content"][0]["type"],
        "text"
    );
}

#[tokio::test]
async fn gemini_answer_stream_tools_and_json() {
    let sim = Sim::new(SimConfig::default());
    let body = json!({"contents": [{"role": "user", "parts": [{"text": HELLO}]}], "generationConfig": {"maxOutputTokens": 4}});
    let got = gemini(&sim, "gemini-2.0-flash", false, body.clone(), &[]).await;
    let v = got.json();
    assert_eq!(v["candidates"][0]["content"]["role"], "model");
    assert_eq!(v["candidates"][0]["finishReason"], "MAX_TOKENS");
    assert_eq!(v["usageMetadata"]["promptTokenCount"], 13);
    assert_eq!(v["usageMetadata"]["candidatesTokenCount"], 4);
    assert_eq!(v["usageMetadata"]["totalTokenCount"], 17);
    assert_eq!(v["modelVersion"], "gemini-2.0-flash");

    let got = gemini(&sim, "gemini-2.0-flash", true, body.clone(), &[]).await;
    assert!(got.header("content-type").starts_with("text/event-stream"));
    let text = got.text();
    assert!(!text.contains("[DONE]") && text.ends_with("\r\n\r\n"));
    let frames: Vec<Value> = sse_data(&text, "\r\n\r\n")
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(frames.len(), 4);
    assert!(
        frames
            .iter()
            .all(|f| f["usageMetadata"]["promptTokenCount"] == 13)
    );
    assert!(
        frames[..3]
            .iter()
            .all(|f| f["candidates"][0].get("finishReason").is_none())
    );
    assert_eq!(frames[3]["candidates"][0]["finishReason"], "MAX_TOKENS");
    assert_eq!(frames[3]["usageMetadata"]["candidatesTokenCount"], 4);

    let tools = json!([{"functionDeclarations": [{"name": "get_weather", "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}}}]}]);
    let mut call = body.clone();
    call["tools"] = tools;
    let v = gemini(&sim, "gemini-2.0-flash", false, call.clone(), &[])
        .await
        .json();
    assert_eq!(
        v["candidates"][0]["content"]["parts"][0]["functionCall"],
        json!({"name": "get_weather", "args": {"city": "sample"}})
    );
    assert_eq!(v["candidates"][0]["finishReason"], "STOP");
    call["contents"] = json!([{"role": "user", "parts": [{"text": "w?"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"result": "18C"}}}]}]);
    let v = gemini(&sim, "gemini-2.0-flash", false, call, &[])
        .await
        .json();
    assert!(v["candidates"][0]["content"]["parts"][0]["text"].is_string());

    let mut js = body;
    js["generationConfig"] = json!({"responseMimeType": "application/json",
        "responseSchema": {"type": "OBJECT", "properties": {"name": {"type": "STRING"}, "n": {"type": "INTEGER"}}}});
    let v = gemini(&sim, "gemini-2.0-flash", false, js, &[])
        .await
        .json();
    let out: Value = serde_json::from_str(
        v["candidates"][0]["content"]["parts"][0]["text"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert!(out["name"].is_string() && out["n"] == 1);

    let got = send(
        &sim,
        "POST",
        "/gemini/v1beta/models/gemini-2.0-flash:generateContent",
        &[],
        json!({"contents": []}),
    )
    .await;
    assert_eq!(got.status, StatusCode::FORBIDDEN);
    assert_eq!(got.json()["error"]["status"], "PERMISSION_DENIED");
    let got = gemini(
        &sim,
        "gemini-2.0-flash",
        false,
        json!({"contents": []}),
        &[],
    )
    .await;
    assert_eq!(
        (got.status, got.json()["error"]["status"].as_str()),
        (StatusCode::BAD_REQUEST, Some("INVALID_ARGUMENT"))
    );
}

#[tokio::test]
async fn ollama_quirks_usage_chunk_and_max_tokens() {
    let sim = Sim::new(SimConfig::default());
    let body = json!({"model": "llama3.2", "messages": user(HELLO), "max_completion_tokens": 2});
    let v = ollama(&sim, body, &[]).await.json();
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 13, "completion_tokens": 16, "total_tokens": 29})
    );
    assert_eq!(v["system_fingerprint"], "fp_ollama");
    let body = json!({"model": "llama3.2", "messages": user(HELLO), "max_tokens": 2, "stream": true, "stream_options": {"include_usage": true}});
    let text = ollama(&sim, body.clone(), &[]).await.text();
    assert!(text.ends_with("data: [DONE]\n\n"));
    let data = sse_data(&text, "\n\n");
    let usage: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(usage["usage"]["completion_tokens"], 2);
    let finish: Value = serde_json::from_str(&data[data.len() - 3]).unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "length");
    let mut plain = body;
    plain.as_object_mut().unwrap().remove("stream_options");
    assert!(!ollama(&sim, plain, &[]).await.text().contains("\"usage\""));
    let got = ollama(&sim, json!({"model": "llama3.2", "messages": []}), &[]).await;
    assert_eq!(got.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        got.json(),
        json!({"error": {"message": "[] is too short - 'messages'", "type": "invalid_request_error", "param": null, "code": null}})
    );
}

#[tokio::test]
async fn same_seed_same_text() {
    let text = |sim: Arc<Sim>, seed: Option<&'static str>| async move {
        let h: Vec<(&str, &str)> = seed.map(|s| ("x-sim-seed", s)).into_iter().collect();
        let v = openai(
            &sim,
            json!({"model": "gpt-4o-mini", "messages": user("hi")}),
            &h,
        )
        .await
        .json();
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let cfg = SimConfig {
        seed: 42,
        ..SimConfig::default()
    };
    let (a, b) = (Sim::new(cfg.clone()), Sim::new(cfg));
    assert_eq!(text(a.clone(), None).await, text(b.clone(), None).await);
    assert_eq!(text(a.clone(), None).await, text(b.clone(), None).await);
    let first = text(a.clone(), None).await;
    assert_ne!(
        first,
        text(a.clone(), None).await,
        "the per-model counter moves the sequence on"
    );
    assert_eq!(text(a.clone(), Some("7")).await, text(b, Some("7")).await);
    assert_ne!(text(a.clone(), Some("7")).await, text(a, Some("8")).await);
}

#[tokio::test(start_paused = true)]
async fn latency_follows_the_profile() {
    let profile = Profile {
        ttft_ms: Some(LatencyDist {
            mean: 100.0,
            stddev: 0.0,
        }),
        tpot_ms: Some(LatencyDist {
            mean: 10.0,
            stddev: 0.0,
        }),
        output_tokens: Some(4),
        ..Profile::default()
    };
    let sim = Sim::new(SimConfig {
        models: [("slow".to_owned(), profile)].into(),
        ..SimConfig::default()
    });
    let t0 = tokio::time::Instant::now();
    openai(&sim, json!({"model": "slow", "messages": user("hi")}), &[]).await;
    assert_eq!(t0.elapsed().as_millis(), 140);

    let t0 = tokio::time::Instant::now();
    let req = Request::post("/openai/v1/chat/completions")
        .header("authorization", "Bearer k")
        .body(Body::from(
            json!({"model": "slow", "messages": user("hi"), "stream": true}).to_string(),
        ))
        .unwrap();
    let resp = sim.router().oneshot(req).await.unwrap();
    assert_eq!(t0.elapsed().as_millis(), 0, "headers are sent at once");
    let mut body = resp.into_body();
    let mut at = Vec::new();
    while let Some(frame) = body.frame().await {
        frame.unwrap();
        at.push(t0.elapsed().as_millis());
    }
    // role chunk at ttft, 4 words (gaps of tpot after the first), finish, [DONE]
    assert_eq!(at, [100, 100, 110, 120, 130, 130, 130]);

    let t0 = tokio::time::Instant::now();
    let zero = [("x-sim-ttft-ms", "0"), ("x-sim-tpot-ms", "0")];
    openai(
        &sim,
        json!({"model": "slow", "messages": user("hi")}),
        &zero,
    )
    .await;
    assert_eq!(t0.elapsed().as_millis(), 0);
}

#[tokio::test]
async fn control_api_scripts_faults_and_reports_stats() {
    let sim = Sim::new(SimConfig::default());
    let got = send(
        &sim,
        "POST",
        "/_sim/faults",
        &[],
        json!({"model": "gpt-4o-mini", "fault": "500", "count": 2}),
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
    let ask = json!({"model": "gpt-4o-mini", "messages": user("hi")});
    assert_eq!(
        openai(&sim, ask.clone(), &[]).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        openai(&sim, ask.clone(), &[]).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(openai(&sim, ask.clone(), &[]).await.status, StatusCode::OK);
    let bad = send(
        &sim,
        "POST",
        "/_sim/faults",
        &[],
        json!({"model": "*", "fault": "teapot", "rate": 1.0}),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    send(
        &sim,
        "POST",
        "/_sim/faults",
        &[],
        json!({"model": "*", "fault": "429", "rate": 1.0}),
    )
    .await;
    assert_eq!(
        openai(&sim, ask.clone(), &[]).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        send(&sim, "DELETE", "/_sim/faults", &[], Value::Null)
            .await
            .json()["cleared"],
        1
    );
    assert_eq!(openai(&sim, ask, &[]).await.status, StatusCode::OK);
    let stats = send(&sim, "GET", "/_sim/stats", &[], Value::Null)
        .await
        .json();
    assert_eq!(stats["models"]["gpt-4o-mini"]["requests"], 5);
    assert_eq!(stats["models"]["gpt-4o-mini"]["faults_injected"], 3);
    assert_eq!(stats["models"]["gpt-4o-mini"]["in_flight"], 0);

    let list = send(
        &sim,
        "GET",
        "/openai/v1/models",
        &[("authorization", "Bearer k")],
        Value::Null,
    )
    .await
    .json();
    assert_eq!(list["object"], "list");
    assert!(
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "gpt-4o-mini")
    );
    let list = send(&sim, "GET", "/ollama/v1/models", &[], Value::Null)
        .await
        .json();
    assert!(
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "llama3.2")
    );
}
