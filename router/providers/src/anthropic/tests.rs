use super::*;
use crate::fixtures::{assert_golden, check_error_table, fixture};
use serde_json::{Value, json};
use switchyard_types::{ChatRequest, ResponseFormat};

/// System prompt, user, assistant tool call, tool result, tools, JSON schema, sampling.
fn canonical_request() -> ChatRequest {
    serde_json::from_str(&fixture("canonical_request.json")).unwrap()
}

fn call(request: &ChatRequest) -> Call<'_> {
    Call {
        request,
        upstream_model: "claude-sonnet-4-20250514",
        default_max_tokens: 8192,
        traceparent: None,
    }
}

fn response(name: &str) -> WireResponse {
    serde_json::from_str(&fixture(name)).unwrap()
}

#[test]
fn canonical_request_matches_the_golden_body() {
    let request = canonical_request();
    let wire = to_wire(call(&request), false).unwrap();
    assert_eq!(wire.json_tool.as_deref(), Some("weather_report"));
    assert_golden(
        "anthropic_request.json",
        &serde_json::to_value(&wire).unwrap(),
    );
}

#[test]
fn json_mode_forces_the_answer_tool_when_no_client_tool_may_run() {
    let mut request = canonical_request();
    request.tools = None;
    request.messages.truncate(2);
    let wire = serde_json::to_value(to_wire(call(&request), true).unwrap()).unwrap();
    assert_eq!(
        wire["tool_choice"],
        json!({"type": "tool", "name": "weather_report"})
    );
    assert_eq!(wire["stream"], json!(true));
    request.response_format = Some(ResponseFormat::JsonObject);
    let wire = to_wire(call(&request), false).unwrap();
    assert_eq!(wire.json_tool.as_deref(), Some(JSON_OBJECT_TOOL));
    let wire = serde_json::to_value(wire).unwrap();
    assert_eq!(wire["tools"][0]["input_schema"], json!({"type": "object"}));
}

#[test]
fn merges_turns_maps_media_and_sampling() {
    let request: ChatRequest = serde_json::from_value(json!({
        "model": "m", "temperature": 1.7, "top_p": 0.9, "user": "u-42",
        "parallel_tool_calls": false, "tool_choice": "required",
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "messages": [
            {"role": "developer", "content": "One."}, {"role": "system", "content": "Two."},
            {"role": "user", "content": "a"},
            {"role": "user", "content": [{"type": "text", "text": "b"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "image_url", "image_url": {"url": "https://x.test/cat.jpg"}}]}]
    }))
    .unwrap();
    let wire = serde_json::to_value(to_wire(call(&request), false).unwrap()).unwrap();
    let content = &wire["messages"][0]["content"];
    assert_eq!(wire["messages"].as_array().unwrap().len(), 1);
    assert_eq!(wire["system"], "One.\n\nTwo.");
    assert_eq!(
        content[2]["source"],
        json!({"type": "base64", "media_type": "image/png", "data": "AAAA"})
    );
    assert_eq!(
        content[3]["source"],
        json!({"type": "url", "url": "https://x.test/cat.jpg"})
    );
    assert_eq!(
        (&wire["temperature"], wire.get("top_p")),
        (&json!(1.0), None)
    );
    assert_eq!(wire["max_tokens"], json!(8192));
    assert_eq!(wire["metadata"], json!({"user_id": "u-42"}));
    assert_eq!(wire["tools"][0]["input_schema"], json!({"type": "object"}));
    assert_eq!(
        wire["tool_choice"],
        json!({"type": "any", "disable_parallel_tool_use": true})
    );
}

#[test]
fn tool_results_join_the_next_user_turn_and_bad_arguments_are_rejected() {
    let mut request: ChatRequest = serde_json::from_value(json!({"model": "m", "messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "t1", "type": "function", "function": {"name": "f", "arguments": ""}},
            {"id": "t2", "type": "function", "function": {"name": "g", "arguments": "{\"b\":1,\"a\":2}"}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "one"},
        {"role": "tool", "tool_call_id": "t2", "content": "two"},
        {"role": "user", "content": "and?"}]}))
    .unwrap();
    let body = serde_json::to_string(&to_wire(call(&request), false).unwrap()).unwrap();
    assert!(
        body.contains(r#""input":{"b":1,"a":2}"#),
        "arguments kept byte for byte: {body}"
    );
    let wire: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(wire["messages"][1]["content"][0]["input"], json!({}));
    assert_eq!(
        wire["messages"][2]["content"],
        json!([{"type": "tool_result", "tool_use_id": "t1", "content": "one"},
               {"type": "tool_result", "tool_use_id": "t2", "content": "two"},
               {"type": "text", "text": "and?"}])
    );
    request.messages[1].tool_calls.as_mut().unwrap()[0]
        .function
        .arguments = "[1]".into();
    let err = to_wire(call(&request), false).unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidRequest);
}

#[test]
fn from_wire_reads_text_and_cache_usage() {
    let r = from_wire(response("anthropic_response_text.json"), None, "fallback");
    assert_eq!(r.id, "msg_01XFDUDYJgAACzvnptvVoYEL");
    assert_eq!(r.model, "claude-sonnet-4-20250514");
    assert_eq!(
        r.message().unwrap().text(),
        "It is 18C and cloudy in Paris."
    );
    assert_eq!(r.choices[0].finish_reason, FinishReason::Stop);
    assert_eq!(
        r.usage,
        Usage::new(412 + 2000 + 100, 12).with_cache(2000, 100)
    );
}

#[test]
fn from_wire_reads_tool_use_and_converts_the_json_answer() {
    let r = from_wire(response("anthropic_response_tool_use.json"), None, "m");
    let calls = r.message().unwrap().tool_calls();
    assert_eq!(r.choices[0].finish_reason, FinishReason::ToolCalls);
    assert_eq!(calls[0].id, "toolu_01");
    assert_eq!(
        calls[0].function.arguments,
        r#"{"city":"Paris","unit":"c"}"#
    );
    assert_eq!(r.message().unwrap().text(), "Let me check.");

    let answer = response("anthropic_response_json_answer.json");
    let r = from_wire(answer, Some("weather_report"), "m");
    assert_eq!(r.choices[0].finish_reason, FinishReason::Stop);
    assert_eq!(
        r.message().unwrap().text(),
        r#"{"summary":"Cloudy","temp_c":18}"#
    );
    assert!(r.message().unwrap().tool_calls.is_none());
    assert_eq!(r.usage, Usage::new(420, 30));
}

#[test]
fn stop_reasons() {
    let cases = [
        ("end_turn", FinishReason::Stop),
        ("stop_sequence", FinishReason::Stop),
        ("pause_turn", FinishReason::Stop),
        ("max_tokens", FinishReason::Length),
        ("model_context_window_exceeded", FinishReason::Length),
        ("refusal", FinishReason::ContentFilter),
    ];
    for (stop, finish) in cases {
        assert_eq!(finish_reason(Some(stop), false), finish, "{stop}");
    }
    assert_eq!(
        finish_reason(Some("tool_use"), true),
        FinishReason::ToolCalls
    );
}

#[test]
fn error_table() {
    check_error_table("anthropic_errors.json", map_error);
    let body =
        br#"{"type":"error","error":{"type":"api_error","message":"x"},"request_id":"req_9"}"#;
    assert!(
        map_error(500, &HeaderMap::new(), body)
            .message
            .contains("req_9")
    );
}

/// Cost golden: the fixture's usage priced with claude-sonnet-4-5's catalog prices, by hand:
/// 412 plain input × $3 + 2,000 cache reads × $0.30 + 100 cache writes × $3.75 + 12 output ×
/// $15, per million tokens.
#[test]
fn cost_golden_prices_cache_reads_and_writes_apart() {
    let r = from_wire(response("anthropic_response_text.json"), None, "m");
    let catalog = switchyard_routing::catalog::Catalog::builtin().unwrap();
    let entry = catalog.get("claude-sonnet-4-5").unwrap();
    let want = 412 * 3_000_000 + 2_000 * 300_000 + 100 * 3_750_000 + 12 * 15_000_000;
    assert_eq!(entry.usage_cost_pico(&r.usage), want);
    assert_eq!(want, 2_391_000_000); // $0.002391
    // The streamed answer: usage from message_start (input, cache) and message_delta (output).
    let streamed = Usage::new(12 + 30, 15).with_cache(30, 0);
    assert_eq!(
        entry.usage_cost_pico(&streamed),
        12 * 3_000_000 + 30 * 300_000 + 15 * 15_000_000
    );
}

/// A `/v1/messages` body attached to the hub request goes out as sent: member order, spacing
/// inside values, `cache_control`, thinking signatures and unknown members untouched; only
/// `model`, `max_tokens` and `stream` are the hub's.
#[test]
fn a_native_body_is_sent_byte_for_byte_but_for_model_max_tokens_and_stream() {
    use std::sync::Arc;
    use switchyard_types::{Native, NativeFormat, RawObject};
    let client = r#"{"stream":true,"model":"my-claude","system":[{"type":"text","text":"x","cache_control":{"type":"ephemeral"}}],"max_tokens":10,"messages":[{"role":"assistant","content":[{"type":"thinking","thinking":"t","signature":"c2ln"}]}],"future_member":{"a":  1}}"#;
    let body: RawObject = serde_json::from_str(client).unwrap();
    let mut request = canonical_request();
    request.max_tokens = Some(77);
    request.native = Some(Arc::new(Native {
        format: NativeFormat::AnthropicMessages,
        body,
        only_native: None,
        headers: vec![],
    }));
    let (wire, tool) = WireBody::for_call(call(&request), false).unwrap();
    assert!(tool.is_none());
    assert_eq!(
        serde_json::to_string(&wire).unwrap(),
        r#"{"model":"claude-sonnet-4-20250514","system":[{"type":"text","text":"x","cache_control":{"type":"ephemeral"}}],"max_tokens":77,"messages":[{"role":"assistant","content":[{"type":"thinking","thinking":"t","signature":"c2ln"}]}],"future_member":{"a":  1}}"#
    );
    let (wire, _) = WireBody::for_call(call(&request), true).unwrap();
    let text = serde_json::to_string(&wire).unwrap();
    assert!(
        text.starts_with(r#"{"stream":true,"model":"claude-sonnet-4-20250514""#),
        "{text}"
    );
    // Without a native body, the hub request is translated as before.
    request.native = None;
    assert!(matches!(
        WireBody::for_call(call(&request), false).unwrap().0,
        WireBody::Hub(_)
    ));
}

/// A native stream forwards each upstream event as received, beside the hub events.
#[test]
fn a_native_stream_forwards_the_upstreams_events() {
    let mut p = EventParser::new(None).forwarding(true);
    let event = |name: &str, data: &str| eventsource_stream::Event {
        event: name.into(),
        data: data.into(),
        id: String::new(),
        retry: None,
    };
    let data = r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hm"}}"#;
    let out = crate::StreamParser::item(&mut p, event("content_block_delta", data)).unwrap();
    assert_eq!(
        out,
        vec![switchyard_types::StreamEvent::Native {
            frame: format!("event: content_block_delta\ndata: {data}\n\n"),
            answer: true,
        }]
    );
    assert!(out[0].is_content(), "thinking is the answer starting");
    // A thinking block's start and its signature start the answer too; framing does not, and
    // text starts it through its own event.
    let cases = [
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}"#,
            true,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"c2ln"}}"#,
            true,
        ),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}"#,
            false,
        ),
        (
            "message_start",
            r#"{"type":"message_start","message":{"usage":{"input_tokens":3}}}"#,
            false,
        ),
        ("ping", r#"{"type":"ping"}"#, false),
    ];
    for (name, data, answer) in cases {
        let out = crate::StreamParser::item(&mut p, event(name, data)).unwrap();
        assert_eq!(out.len(), 1, "{name}: {out:?}");
        assert_eq!(out[0].is_content(), answer, "{name}: {data}");
    }
    let text =
        r#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Hi"}}"#;
    let out = crate::StreamParser::item(&mut p, event("content_block_delta", text)).unwrap();
    assert!(
        !out[0].is_content(),
        "the forwarded frame of text is not counted twice"
    );
    assert_eq!(out[1], switchyard_types::StreamEvent::Content("Hi".into()));
    let mut plain = EventParser::new(None);
    assert!(
        crate::StreamParser::item(&mut plain, event("content_block_delta", data))
            .unwrap()
            .is_empty()
    );
}

/// A native request's `anthropic-beta` headers go upstream with its body; a translated one
/// sends only the configured headers.
#[test]
fn a_native_requests_beta_header_goes_upstream() {
    use std::sync::Arc;
    use switchyard_types::ids::{ProviderId, Secret};
    use switchyard_types::{Native, NativeFormat, RawObject};
    let provider = AnthropicProvider::new(
        crate::ProviderSettings {
            id: ProviderId::new("a"),
            kind: crate::ProviderKind::Anthropic,
            dialect: crate::Dialect::Generic,
            base_url: "http://127.0.0.1:9/v1".into(),
            api_key: Some(Secret::new("k")),
            headers: vec![("x-configured".into(), "1".into())],
            limits: crate::Limits::default(),
            connection: crate::Connection::default(),
        },
        crate::http_client().unwrap(),
    );
    let mut request = canonical_request();
    request.native = Some(Arc::new(Native {
        format: NativeFormat::AnthropicMessages,
        body: serde_json::from_str::<RawObject>(r#"{"model":"m","max_tokens":5,"messages":[]}"#)
            .unwrap(),
        only_native: None,
        headers: vec![(
            "anthropic-beta".into(),
            "interleaved-thinking-2025-05-14".into(),
        )],
    }));
    let headers = |request: &ChatRequest| {
        let (wire, _) = WireBody::for_call(call(request), false).unwrap();
        provider
            .post_for(&wire, call(request))
            .build()
            .unwrap()
            .headers()
            .clone()
    };
    let sent = headers(&request);
    assert_eq!(sent["anthropic-beta"], "interleaved-thinking-2025-05-14");
    assert_eq!(sent["x-configured"], "1");
    assert_eq!(sent["anthropic-version"], "2023-06-01");
    request.native = None;
    assert!(!headers(&request).contains_key("anthropic-beta"));
}

#[test]
fn content_anthropic_cannot_express_is_unsupported_and_named() {
    let request: ChatRequest = serde_json::from_value(json!({
        "model": "m",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "first"},
            {"role": "user", "content": [
                {"type": "text", "text": "What is said here?"},
                {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
            ]}
        ]
    }))
    .unwrap();
    let err = to_wire(call(&request), false).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unsupported);
    assert!(err.kind.allows_fallback() && !err.retryable);
    assert_eq!(err.param.as_deref(), Some("messages[2].content[1]"));
    assert!(err.message.contains("audio"), "{err}");
    // A file by id (OpenAI's Files API) has no Anthropic form either.
    let request: ChatRequest = serde_json::from_value(json!({
        "model": "m",
        "messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}]
    }))
    .unwrap();
    let err = to_wire(call(&request), false).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unsupported);
    assert_eq!(err.param.as_deref(), Some("messages[0].content[0]"));
    // An image that is no URL at all is wrong everywhere: still invalid, no fallback.
    let request: ChatRequest = serde_json::from_value(json!({
        "model": "m",
        "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}]
    }))
    .unwrap();
    let err = to_wire(call(&request), false).unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidRequest);
}
