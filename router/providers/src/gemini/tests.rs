use super::request::clean_schema;
use super::*;
use crate::fixtures::{assert_golden, check_error_table, fixture};
use serde_json::{Value, json};
use switchyard_types::ChatRequest;
use switchyard_types::{ResponseFormat, ToolChoice, ToolChoiceMode};

fn call(request: &ChatRequest) -> Call<'_> {
    Call {
        request,
        upstream_model: "gemini-2.5-flash",
        default_max_tokens: 65536,
        traceparent: None,
    }
}

fn canonical_request() -> ChatRequest {
    serde_json::from_str(&fixture("canonical_request.json")).unwrap()
}

fn response(name: &str) -> WireResponse {
    serde_json::from_str(&fixture(name)).unwrap()
}

#[test]
fn canonical_request_matches_the_golden_body() {
    let wire = to_wire(call(&canonical_request())).unwrap();
    assert_eq!(wire.json_tool.as_deref(), Some("weather_report"));
    assert_golden("gemini_request.json", &serde_json::to_value(&wire).unwrap());
}

#[test]
fn json_mode_is_native_without_function_declarations() {
    let mut request = canonical_request();
    request.tools = None;
    request.messages.truncate(2);
    let wire = to_wire(call(&request)).unwrap();
    assert_eq!(wire.json_tool, None);
    let wire = serde_json::to_value(wire).unwrap();
    let config = &wire["generationConfig"];
    assert_eq!(config["responseMimeType"], "application/json");
    assert_eq!(
        config["responseSchema"]["properties"]["wind"],
        json!({"type": "string", "nullable": true})
    );
    assert!(
        config["responseSchema"]
            .get("additionalProperties")
            .is_none()
    );
    assert!(wire.get("toolConfig").is_none() && wire.get("tools").is_none());

    let mut request = canonical_request();
    request.tool_choice = Some(ToolChoice::Mode(ToolChoiceMode::None));
    let wire = serde_json::to_value(to_wire(call(&request)).unwrap()).unwrap();
    let forced = json!({"mode": "ANY", "allowedFunctionNames": ["weather_report"]});
    assert_eq!(wire["toolConfig"]["functionCallingConfig"], forced);
    request.response_format = Some(ResponseFormat::JsonObject);
    let wire = to_wire(call(&request)).unwrap();
    assert_eq!(wire.json_tool, None);
    let wire = serde_json::to_value(wire).unwrap();
    assert!(wire["generationConfig"].get("responseMimeType").is_none());
    assert_eq!(
        wire["toolConfig"]["functionCallingConfig"],
        json!({"mode": "NONE"})
    );
}

#[test]
fn turns_media_and_tool_results() {
    let mut request: ChatRequest = serde_json::from_value(json!({
        "model": "m", "tool_choice": {"type": "function", "function": {"name": "f"}},
        "tools": [{"type": "function", "function": {"name": "f",
            "parameters": {"type": "object", "properties": {}}}}],
        "messages": [
            {"role": "system", "content": "One."}, {"role": "user", "content": "hi"},
            {"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "image_url", "image_url": {"url": "https://x.test/a.webp?s=1"}}]},
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                "function": {"name": "f", "arguments": ""}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "{\"ok\":true}"},
            {"role": "tool", "tool_call_id": "c1", "content": "plain"}]
    }))
    .unwrap();
    let wire = serde_json::to_value(to_wire(call(&request)).unwrap()).unwrap();
    assert_eq!(
        wire["systemInstruction"],
        json!({"parts": [{"text": "One."}]})
    );
    let parts = &wire["contents"][0]["parts"];
    assert_eq!(parts[0], json!({"text": "hi"}));
    assert_eq!(
        parts[1],
        json!({"inlineData": {"mimeType": "image/png", "data": "AAAA"}})
    );
    let file = json!({"mimeType": "image/webp", "fileUri": "https://x.test/a.webp?s=1"});
    assert_eq!(parts[2]["fileData"], file);
    assert_eq!(wire["contents"][1]["role"], "model");
    assert_eq!(
        wire["contents"][1]["parts"][0]["functionCall"]["args"],
        json!({})
    );
    let results = &wire["contents"][2]["parts"];
    let response = |r: Value| json!({"functionResponse": {"name": "f", "response": {"result": r}}});
    assert_eq!(
        results,
        &json!([response(json!({"ok": true})), response(json!("plain"))])
    );
    assert_eq!(
        wire["tools"][0]["functionDeclarations"][0],
        json!({"name": "f"})
    );
    let named = json!({"mode": "ANY", "allowedFunctionNames": ["f"]});
    assert_eq!(wire["toolConfig"]["functionCallingConfig"], named);
    assert_eq!(wire["generationConfig"], json!({"maxOutputTokens": 65536}));

    request.messages[4].tool_call_id = Some("nope".into());
    assert_eq!(
        to_wire(call(&request)).unwrap_err().kind,
        ErrorKind::InvalidRequest
    );
    request.messages[3].tool_calls.as_mut().unwrap()[0]
        .function
        .arguments = "nope".into();
    assert_eq!(
        to_wire(call(&request)).unwrap_err().kind,
        ErrorKind::InvalidRequest
    );
}

#[test]
fn schema_cleaning_keeps_property_names_and_values() {
    let schema = json!({"type": "object", "$schema": "x", "additionalProperties": false,
        "properties": {"strict": {"type": ["null", "boolean"]},
            "list": {"type": "array", "items": {"type": "object", "additionalProperties": {}}},
            "mode": {"anyOf": [{"type": "string", "strict": true}], "default": {"strict": 1}}}});
    let want = json!({"type": "object",
        "properties": {"strict": {"type": "boolean", "nullable": true},
            "list": {"type": "array", "items": {"type": "object"}},
            "mode": {"anyOf": [{"type": "string"}], "default": {"strict": 1}}}});
    assert_eq!(clean_schema(&schema), want);
}

#[test]
fn from_wire_reads_text_thoughts_and_cache() {
    let r = from_wire(response("gemini_response_text.json"), None, "fallback").unwrap();
    assert_eq!(
        (r.id.as_str(), r.model.as_str()),
        ("abc123", "gemini-2.5-flash")
    );
    assert_eq!(r.message().unwrap().text(), "18C and cloudy.");
    assert_eq!(r.choices[0].finish_reason, FinishReason::Stop);
    let usage = Usage::new(1025, 6 + 120)
        .with_cache(1000, 0)
        .with_reasoning(120);
    assert_eq!(r.usage, usage);
}

#[test]
fn from_wire_reads_function_calls_and_the_json_answer() {
    let r = from_wire(
        response("gemini_response_tool.json"),
        None,
        "gemini-2.5-pro",
    )
    .unwrap();
    assert_eq!(r.model, "gemini-2.5-pro");
    assert!(r.id.starts_with("chatcmpl-"));
    assert_eq!(r.choices[0].finish_reason, FinishReason::ToolCalls);
    let calls = r.message().unwrap().tool_calls();
    assert_eq!(calls.len(), 2);
    assert!(calls[0].id.starts_with("call_") && calls[0].id != calls[1].id);
    assert_eq!(
        calls[0].function.arguments,
        r#"{"city":"Paris","unit":"c"}"#
    );
    assert_eq!(calls[1].id, "fc_2");
    assert!(r.message().unwrap().content.is_none());

    let r = from_wire(
        response("gemini_response_tool.json"),
        Some("get_weather"),
        "m",
    )
    .unwrap();
    assert_eq!(
        r.message().unwrap().text(),
        r#"{"city":"Paris","unit":"c"}"#
    );
    assert_eq!(r.message().unwrap().tool_calls().len(), 1);
}

#[test]
fn finish_reasons_and_blocked_prompts() {
    let blocked =
        r#"{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":9}}"#;
    let r = from_wire(serde_json::from_str(blocked).unwrap(), None, "m").unwrap();
    assert_eq!(r.choices[0].finish_reason, FinishReason::ContentFilter);
    assert_eq!(
        (r.message().unwrap().text(), r.usage),
        (String::new(), Usage::new(9, 0))
    );
    let empty = from_wire(serde_json::from_str("{}").unwrap(), None, "m");
    assert_eq!(empty.unwrap_err().kind, ErrorKind::MalformedResponse);
    let cases = [
        ("STOP", FinishReason::Stop),
        ("MAX_TOKENS", FinishReason::Length),
        ("SAFETY", FinishReason::ContentFilter),
        ("RECITATION", FinishReason::ContentFilter),
        ("BLOCKLIST", FinishReason::ContentFilter),
        ("PROHIBITED_CONTENT", FinishReason::ContentFilter),
        ("SPII", FinishReason::ContentFilter),
        ("IMAGE_SAFETY", FinishReason::ContentFilter),
        ("MALFORMED_FUNCTION_CALL", FinishReason::Stop),
        ("OTHER", FinishReason::Stop),
    ];
    for (reason, finish) in cases {
        assert_eq!(finish_reason(reason, false), finish, "{reason}");
    }
    assert_eq!(finish_reason("STOP", true), FinishReason::ToolCalls);
}

#[test]
fn error_table() {
    check_error_table("gemini_errors.json", map_error);
    let wrapped = r#"[{"error":{"code":404,"message":"gone","status":"NOT_FOUND"}}]"#;
    assert_eq!(
        map_error(404, &HeaderMap::new(), wrapped.as_bytes()).message,
        "gone"
    );
}

/// Cost golden: gemini-2.5-flash, by hand: 25 plain input × $0.30 + 1,000 cached × $0.03 +
/// (6 + 120 thinking) output × $2.50, per million tokens. Thinking tokens are billed as output.
#[test]
fn cost_golden_bills_thoughts_as_output_and_cache_at_its_price() {
    let r = from_wire(response("gemini_response_text.json"), None, "m").unwrap();
    let catalog = switchyard_routing::catalog::Catalog::builtin().unwrap();
    let entry = catalog.get("gemini-2.5-flash").unwrap();
    let want = 25 * 300_000 + 1_000 * 30_000 + 126 * 2_500_000;
    assert_eq!(entry.usage_cost_pico(&r.usage), want);
    assert_eq!(want, 352_500_000);
    // The streamed fixture ends with 25 in, 6 out.
    assert_eq!(
        entry.usage_cost_pico(&Usage::new(25, 6)),
        25 * 300_000 + 6 * 2_500_000
    );
}

#[test]
fn a_file_by_id_is_unsupported_and_named() {
    let request: ChatRequest = serde_json::from_value(json!({
        "model": "m",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": [
                {"type": "text", "text": "Summarise"},
                {"type": "file", "file": {"file_id": "file-1"}}
            ]}
        ]
    }))
    .unwrap();
    let err = to_wire(call(&request)).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unsupported);
    assert_eq!(err.param.as_deref(), Some("messages[2].content[1]"));
}
