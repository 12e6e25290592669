use super::*;
use crate::fixtures::{assert_golden, fixture, run_sse};
use switchyard_types::{ChatRequest, ToolChoice, ToolChoiceMode};

/// The shared canonical request, plus fields only OpenAI-shaped upstreams receive: a
/// pass-through field Switchyard does not model, `user`, and `tool_choice`.
fn canonical() -> ChatRequest {
    let mut r: ChatRequest = serde_json::from_str(&fixture("canonical_request.json")).unwrap();
    r.extra
        .insert("metadata".into(), json!({"team": "weather"}));
    r.extra.insert("logprobs".into(), json!(false));
    r.user = Some("user-42".into());
    r.tool_choice = Some(ToolChoice::Mode(ToolChoiceMode::Auto));
    r
}

fn call<'a>(request: &'a ChatRequest, model: &'static str) -> Call<'a> {
    Call {
        request,
        upstream_model: model,
        default_max_tokens: 1024,
        traceparent: None,
    }
}

#[test]
fn canonical_request_matches_the_openai_golden_body() {
    let r = canonical();
    let quirks = Quirks::for_provider(ProviderKind::OpenAi, Dialect::Generic);
    assert_golden(
        "openai_request.json",
        &to_wire(call(&r, "gpt-4o-mini"), quirks, false),
    );
    assert_golden(
        "openai_request_stream.json",
        &to_wire(call(&r, "gpt-4o-mini"), quirks, true),
    );
}

#[test]
fn canonical_request_matches_the_ollama_golden_body() {
    let r = canonical();
    let quirks = Quirks::for_provider(ProviderKind::OpenAiCompatible, Dialect::Ollama);
    let wire = to_wire(call(&r, "llama3.2"), quirks, true);
    // Ollama reads only max_tokens and rejects tool_choice and user.
    assert_eq!(wire["max_tokens"], 256);
    assert!(wire.get("max_completion_tokens").is_none());
    assert!(wire.get("tool_choice").is_none() && wire.get("user").is_none());
    assert_golden("ollama_request_stream.json", &wire);
}

#[test]
fn a_clients_stream_options_are_kept_and_usage_is_always_asked_for() {
    let mut r = canonical();
    r.stream_options = Some(switchyard_types::StreamOptions {
        include_usage: Some(false),
        extra: [("include_obfuscation".to_owned(), json!(false))]
            .into_iter()
            .collect(),
    });
    let quirks = Quirks::for_provider(ProviderKind::OpenAi, Dialect::Generic);
    let wire = to_wire(call(&r, "gpt-4o-mini"), quirks, true);
    assert_eq!(
        wire["stream_options"],
        json!({"include_usage": true, "include_obfuscation": false})
    );
    let wire = to_wire(call(&r, "gpt-4o-mini"), quirks, false);
    assert!(wire.get("stream").is_none() && wire.get("stream_options").is_none());
}

#[test]
fn quota_429_is_not_a_rate_limit() {
    let body = br#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
    let err = map_error(429, &HeaderMap::new(), body);
    assert_eq!(err.kind, ErrorKind::QuotaExhausted);
    assert!(!err.retryable);
}

#[test]
fn ollama_usage_limits_are_quota() {
    let body = br#"{"error":{"message":"you have reached your weekly usage limit","type":"api_error","param":null,"code":null}}"#;
    let err = map_error(429, &HeaderMap::new(), body);
    assert_eq!(err.kind, ErrorKind::QuotaExhausted);
}

#[test]
fn rate_limit_keeps_retry_after() {
    let mut h = HeaderMap::new();
    h.insert("retry-after", "3".parse().unwrap());
    let body = br#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
    let err = map_error(429, &h, body);
    assert_eq!(err.kind, ErrorKind::RateLimited);
    assert!(err.retryable);
    assert_eq!(err.retry_after, Some(std::time::Duration::from_secs(3)));
}

#[test]
fn context_length_400_allows_fallback() {
    let body = br#"{"error":{"message":"This model's maximum context length is 128000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
    let err = map_error(400, &HeaderMap::new(), body);
    assert_eq!(err.kind, ErrorKind::ContextLength);
    assert!(err.kind.allows_fallback());
}

#[test]
fn old_vllm_and_ollama_error_shapes_parse() {
    let vllm = br#"{"object":"error","message":"bad model","type":"NotFoundError","param":null,"code":404}"#;
    assert_eq!(ErrorBody::parse(vllm).message, "bad model");
    assert_eq!(ErrorBody::parse(vllm).code.as_deref(), Some("404"));
    let ollama = br#"{"error":"model 'x' not found"}"#;
    assert_eq!(ErrorBody::parse(ollama).message, "model 'x' not found");
    let err = map_error(404, &HeaderMap::new(), ollama);
    assert_eq!(err.kind, ErrorKind::NotFound);
}

#[test]
fn x_should_retry_overrides() {
    let mut h = HeaderMap::new();
    h.insert("x-should-retry", "false".parse().unwrap());
    let err = map_error(500, &h, b"oops");
    assert_eq!(err.kind, ErrorKind::Server);
    assert!(!err.retryable);
}

fn sse(chunks: &[&str]) -> String {
    chunks.iter().map(|c| format!("data: {c}\n\n")).collect()
}

#[test]
fn chunk_parser_flags_a_cut_stream() {
    let text = sse(&[r#"{"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#]);
    let (events, error) = run_sse(&text, ChunkParser::default());
    assert_eq!(events, vec![StreamEvent::Content("Hi".into())]);
    assert_eq!(error.unwrap().kind, ErrorKind::StreamCut);
}

#[test]
fn chunk_parser_ends_at_done_and_ignores_what_follows() {
    let text = sse(&[
        r#"{"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":"stop"}]}"#,
        "[DONE]",
        "not json at all",
    ]);
    let (events, error) = run_sse(&text, ChunkParser::default());
    assert!(error.is_none(), "{error:?}");
    assert_eq!(
        events,
        vec![
            StreamEvent::Content("Hi".into()),
            StreamEvent::Finish(FinishReason::Stop)
        ]
    );
}

#[test]
fn chunk_parser_maps_in_stream_errors() {
    let text = sse(&[r#"{"error":{"message":"overloaded","type":"server_is_overloaded"}}"#]);
    let (_, error) = run_sse(&text, ChunkParser::default());
    assert_eq!(error.unwrap().kind, ErrorKind::Overloaded);
}

/// A hostile index (u32::MAX) is refused as a protocol error before anything is sized by it;
/// the last index below the cap is accepted.
#[test]
fn tool_call_indices_are_capped() {
    let chunk = |index: u64| {
        format!(
            r#"{{"choices":[{{"index":0,"delta":{{"tool_calls":[{{"index":{index},"id":"call_1","type":"function","function":{{"name":"f","arguments":""}}}}]}},"finish_reason":null}}]}}"#
        )
    };
    let huge = sse(&[&chunk(u64::from(u32::MAX))]);
    let (events, error) = run_sse(&huge, ChunkParser::default());
    assert!(events.is_empty());
    let error = error.unwrap();
    assert_eq!(error.kind, ErrorKind::MalformedResponse);
    assert!(!error.retryable && error.kind.allows_fallback());
    assert!(error.message.contains("4294967295"), "{}", error.message);

    let last = u64::from(crate::MAX_TOOL_CALLS - 1);
    let (events, _) = run_sse(&sse(&[&chunk(last)]), ChunkParser::default());
    assert!(matches!(events[0], StreamEvent::ToolCall { index, .. } if u64::from(index) == last));
    let (_, error) = run_sse(&sse(&[&chunk(last + 1)]), ChunkParser::default());
    assert_eq!(error.unwrap().kind, ErrorKind::MalformedResponse);
    // Beyond u32 is not a number this field can hold: malformed as well.
    let (_, error) = run_sse(&sse(&[&chunk(1 << 40)]), ChunkParser::default());
    assert_eq!(error.unwrap().kind, ErrorKind::MalformedResponse);
}

/// Cost golden: an o3-mini answer as OpenAI sends it (cached prompt tokens and reasoning
/// tokens in the details), priced by hand: 976 plain input × $1.10 + 1,024 cached × $0.55
/// + 500 output (300 of them reasoning, billed as output) × $4.40, per million tokens.
#[test]
fn cost_golden_prices_cached_input_and_reasoning() {
    let wire: ChatResponse = serde_json::from_value(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "o3-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 2000, "completion_tokens": 500, "total_tokens": 2500,
                  "prompt_tokens_details": {"cached_tokens": 1024},
                  "completion_tokens_details": {"reasoning_tokens": 300}}
    }))
    .unwrap();
    let r = from_wire(wire).unwrap();
    let catalog = switchyard_routing::catalog::Catalog::builtin().unwrap();
    let entry = catalog.get("o3-mini").unwrap();
    let want = 976 * 1_100_000 + 1_024 * 550_000 + 500 * 4_400_000;
    assert_eq!(entry.usage_cost_pico(&r.usage), want);
    assert_eq!(want, 3_836_800_000);
    // The float figure (headers, /ai/route's cost_usd) agrees.
    assert!((entry.usage_cost(&r.usage) - want as f64 / 1e12).abs() < 1e-15);
}
