//! In-process tests of the Anthropic and Gemini formats: answer shape, honest usage, header and
//! body validation, named-event / `\r\n\r\n` stream framing, tool calls and Gemini JSON mode.

use http::StatusCode;
use serde_json::{Value, json};

use super::tests::{HELLO, anthropic, events, gemini, send, sse_data, user};
use super::{Sim, SimConfig};

#[tokio::test]
async fn anthropic_answer_shape_and_validation() {
    let sim = Sim::new(SimConfig::default());
    let body = json!({"model": "claude-3-5-haiku-20241022", "max_tokens": 1024,
        "system": "Be terse.", "messages": user(HELLO)});
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
        json!({"input_tokens": 19, "output_tokens": 16,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0})
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
    let body = json!({"model": "claude-3-5-haiku-20241022", "max_tokens": 1024, "stream": true,
        "messages": user(HELLO)});
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
    let tools = json!([{"name": "get_weather", "input_schema": {"type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}}}}]);
    let body = json!({"model": "claude-3-5-haiku-20241022", "max_tokens": 100,
        "messages": user("Weather?"), "tools": tools});
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
        {"role": "user",
            "content": [{"type": "tool_result", "tool_use_id": block["id"], "content": "18C"}]}]);
    assert_eq!(
        anthropic(&sim, after, &[]).await.json()["content"][0]["type"],
        "text"
    );
}

#[tokio::test]
async fn gemini_answer_stream_tools_and_json() {
    let sim = Sim::new(SimConfig::default());
    let body = json!({"contents": [{"role": "user", "parts": [{"text": HELLO}]}],
        "generationConfig": {"maxOutputTokens": 4}});
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

    let params = json!({"type": "OBJECT", "properties": {"city": {"type": "STRING"}}});
    let tools = json!([{"functionDeclarations": [{"name": "get_weather", "parameters": params}]}]);
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
        {"role": "model",
            "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]},
        {"role": "user", "parts": [{"functionResponse":
            {"name": "get_weather", "response": {"result": "18C"}}}]}]);
    let v = gemini(&sim, "gemini-2.0-flash", false, call, &[])
        .await
        .json();
    assert!(v["candidates"][0]["content"]["parts"][0]["text"].is_string());

    let mut js = body;
    js["generationConfig"] = json!({"responseMimeType": "application/json",
        "responseSchema": {"type": "OBJECT",
            "properties": {"name": {"type": "STRING"}, "n": {"type": "INTEGER"}}}});
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
async fn gemini_stream_without_alt_sse_is_one_json_array() {
    let sim = Sim::new(SimConfig::default());
    let body = json!({"contents": [{"role": "user", "parts": [{"text": HELLO}]}]});
    let uri = "/gemini/v1beta/models/gemini-2.0-flash:streamGenerateContent?key=AIza-test";
    let got = send(&sim, "POST", uri, &[("x-sim-tokens", "3")], body).await;
    assert_eq!(got.status, StatusCode::OK);
    let items: Vec<Value> = serde_json::from_slice(got.body.as_ref().unwrap()).unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[2]["candidates"][0]["finishReason"], "STOP");
    assert_eq!(items[2]["usageMetadata"]["candidatesTokenCount"], 3);
}
