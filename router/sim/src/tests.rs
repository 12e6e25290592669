//! In-process tests (`oneshot` on `Sim::router`) of the OpenAI and Ollama dialects (answer shape,
//! honest usage, stream framing, tools, JSON mode), determinism, latency on paused time and the
//! control API. Shared helpers for the other test files live here too.

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

/// 25 chars: ceil(25/4) + 3 + 3 = 13 prompt tokens.
pub(super) const HELLO: &str = "Hello there, how are you?";

fn weather_tool_openai() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "required": ["city"],
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}}])
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
    let body = json!({"model": "gpt-4o-mini", "messages": user(HELLO), "stream": true,
        "stream_options": {"include_usage": true}});
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
    let tools = weather_tool_openai();
    let body = json!({"model": "gpt-4o", "messages": user("Weather in Paris?"), "tools": tools});
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
    let body = json!({"model": "gpt-4o-mini", "messages": user("json please"),
        "response_format": {"type": "json_object"}});
    let v = openai(&sim, body, &[]).await.json();
    let content: Value =
        serde_json::from_str(v["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert_eq!(content["answer"].as_str().unwrap().split(' ').count(), 16);
    let schema = json!({"type": "object", "additionalProperties": false,
        "properties": {"title": {"type": "string"}, "score": {"type": "number"},
            "tags": {"type": "array", "items": {"type": "string"}}},
        "required": ["title", "score", "tags"]});
    let body = json!({"model": "gpt-4o-mini", "messages": user("json please"),
        "response_format": {"type": "json_schema",
            "json_schema": {"name": "answer", "strict": true, "schema": schema}}});
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
async fn ollama_quirks_usage_chunk_and_max_tokens() {
    let sim = Sim::new(SimConfig::default());
    let body = json!({"model": "llama3.2", "messages": user(HELLO), "max_completion_tokens": 2});
    let v = ollama(&sim, body, &[]).await.json();
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 13, "completion_tokens": 16, "total_tokens": 29})
    );
    assert_eq!(v["system_fingerprint"], "fp_ollama");
    let body = json!({"model": "llama3.2", "messages": user(HELLO), "max_tokens": 2,
        "stream": true, "stream_options": {"include_usage": true}});
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
        json!({"error": {"message": "[] is too short - 'messages'",
            "type": "invalid_request_error", "param": null, "code": null}})
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
            ..Default::default()
        }),
        tpot_ms: Some(LatencyDist {
            mean: 10.0,
            stddev: 0.0,
            ..Default::default()
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
async fn error_rate_and_config_validation() {
    let mut cfg = SimConfig {
        seed: 1,
        ..SimConfig::default()
    };
    cfg.defaults.error_rate = Some(1.0);
    cfg.defaults.error_fault = Some("503".into());
    let sim = Sim::new(cfg.clone());
    let got: Got = openai(
        &sim,
        json!({"model": "gpt-4o-mini", "messages": user("hello")}),
        &[],
    )
    .await;
    assert_eq!(got.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(got.header("retry-after"), "1");
    assert!(cfg.validate().is_ok());
    cfg.defaults.error_fault = Some("teapot".into());
    cfg.models.insert(
        "m".into(),
        Profile {
            error_rate: Some(2.0),
            ..Default::default()
        },
    );
    assert_eq!(cfg.validate().unwrap_err().len(), 2);
    let parsed: Result<SimConfig, _> =
        serde_json::from_value(json!({"defaults": {"ttft_ms": {"mean": 5}}, "extra": 1}));
    assert!(parsed.is_err(), "unknown fields are refused");
}
