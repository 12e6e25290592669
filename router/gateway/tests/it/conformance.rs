//! Provider conformance: the same suite, instantiated by one macro for every provider, run
//! against the built-in simulator speaking that provider's real wire format.
//!
//! Each provider must: answer a simple chat with honest usage; carry the system prompt; stream
//! chunks that reassemble to the same text as the non-streamed answer (same seed) with usage;
//! round-trip a tool call; produce valid JSON in JSON mode; and map every error class to the
//! right `ProviderError`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use switchyard_providers::{
    Call, Dialect, ErrorKind, Provider, ProviderError, ProviderKind, ProviderSettings, http_client,
};
use switchyard_sim::{self as sim, SimHandle, WireFormat};
use switchyard_types::ids::{ProviderId, Secret};
use switchyard_types::{
    ChatRequest, ChatResponse, FinishReason, FunctionDef, JsonSchemaFormat, Message,
    ResponseFormat, Role, StreamAccumulator, StreamEvent, Tool,
};

async fn start_sim() -> SimHandle {
    sim::spawn(
        sim::SimConfig::default(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap()
}

fn provider(
    sim: &SimHandle,
    kind: ProviderKind,
    dialect: Dialect,
    wire: WireFormat,
    headers: &[(&str, &str)],
) -> Provider {
    let settings = ProviderSettings {
        id: ProviderId::new("under-test"),
        kind,
        dialect,
        base_url: sim.base_url(wire),
        api_key: Some(Secret::new("sim-key")),
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        limits: Default::default(),
        connection: Default::default(),
    };
    Provider::new(settings, http_client().unwrap())
}

fn request(text: &str) -> ChatRequest {
    let mut r = ChatRequest::new("ignored", vec![Message::new(Role::User, text)]);
    r.max_tokens = Some(12);
    r
}

async fn chat(p: &Provider, model: &str, r: &ChatRequest) -> Result<ChatResponse, ProviderError> {
    p.chat(Call {
        request: r,
        upstream_model: model,
        default_max_tokens: 64,
        traceparent: None,
    })
    .await
}

/// Collect a stream; the error, if it broke.
async fn stream(
    p: &Provider,
    model: &str,
    r: &ChatRequest,
) -> Result<(StreamAccumulator, Option<ProviderError>), ProviderError> {
    let mut s = p
        .chat_stream(Call {
            request: r,
            upstream_model: model,
            default_max_tokens: 64,
            traceparent: None,
        })
        .await?;
    let mut acc = StreamAccumulator::default();
    while let Some(item) = s.next().await {
        match item {
            Ok(ev) => acc.push(ev),
            Err(e) => return Ok((acc, Some(e))),
        }
    }
    Ok((acc, None))
}

fn weather_tool() -> Tool {
    Tool {
        kind: "function".into(),
        function: FunctionDef {
            name: "get_weather".into(),
            description: Some("Current weather".into()),
            parameters: Some(json!({
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["C", "F"]}},
                "required": ["city"]
            })),
            strict: None,
        },
    }
}

/// Which fault, and which kind it must map to. `None` = this provider's API has no such answer.
fn error_table(wire: WireFormat) -> Vec<(&'static str, ErrorKind)> {
    let mut t = vec![
        ("500", ErrorKind::Server),
        ("502", ErrorKind::Server),
        ("503", ErrorKind::Overloaded),
        ("504", ErrorKind::Timeout),
        ("529", ErrorKind::Overloaded),
        ("429:3", ErrorKind::RateLimited),
        ("quota", ErrorKind::QuotaExhausted),
        ("context", ErrorKind::ContextLength),
        ("400", ErrorKind::InvalidRequest),
        ("404", ErrorKind::NotFound),
        ("malformed", ErrorKind::MalformedResponse),
    ];
    t.push(("403", ErrorKind::PermissionDenied));
    if wire != WireFormat::Gemini {
        // Gemini answers a bad key with 400 INVALID_ARGUMENT / 403, not 401.
        t.push(("401", ErrorKind::Auth));
    }
    t
}

macro_rules! conformance {
    ($name:ident, $kind:expr, $dialect:expr, $wire:expr, $model:expr) => {
        mod $name {
            use super::*;

            const MODEL: &str = $model;

            fn make(sim: &SimHandle, headers: &[(&str, &str)]) -> Provider {
                provider(sim, $kind, $dialect, $wire, headers)
            }

            #[tokio::test]
            async fn simple_chat_with_honest_usage() {
                let sim = start_sim().await;
                let p = make(&sim, &[]);
                let r = chat(&p, MODEL, &request("Say hello.")).await.unwrap();
                let m = r.message().unwrap();
                assert_eq!(m.role, Role::Assistant);
                let text = m.text();
                assert!(!text.trim().is_empty());
                assert!(r.usage.prompt_tokens > 0);
                assert_eq!(r.usage.completion_tokens as usize, text.split_whitespace().count());
                assert_eq!(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
                assert_eq!(r.choices[0].finish_reason, FinishReason::Length);
                assert_eq!(sim.sim.stats().model(MODEL).requests, 1);
            }

            #[tokio::test]
            async fn the_system_prompt_reaches_the_upstream() {
                let sim = start_sim().await;
                let p = make(&sim, &[]);
                let plain = chat(&p, MODEL, &request("Hi")).await.unwrap();
                let mut with_system = request("Hi");
                with_system
                    .messages
                    .insert(0, Message::new(Role::System, "Be terse. ".repeat(40)));
                let sys = chat(&p, MODEL, &with_system).await.unwrap();
                // 400 characters of system prompt ≈ 100 more prompt tokens, counted upstream.
                assert!(
                    sys.usage.prompt_tokens >= plain.usage.prompt_tokens + 90,
                    "{} vs {}",
                    sys.usage.prompt_tokens,
                    plain.usage.prompt_tokens
                );
            }

            #[tokio::test]
            async fn streaming_reassembles_to_the_same_text() {
                let sim = start_sim().await;
                let p = make(&sim, &[("x-sim-seed", "42")]);
                let r = request("Tell me something.");
                let whole = chat(&p, MODEL, &r).await.unwrap();
                let (acc, err) = stream(&p, MODEL, &r).await.unwrap();
                assert!(err.is_none(), "{err:?}");
                assert_eq!(acc.text, whole.message().unwrap().text());
                assert_eq!(acc.finish, Some(FinishReason::Length));
                let usage = acc.usage.expect("usage at the end of the stream");
                assert_eq!(usage.completion_tokens, whole.usage.completion_tokens);
                assert_eq!(usage.prompt_tokens, whole.usage.prompt_tokens);
                assert_eq!(sim.sim.stats().model(MODEL).streams_completed, 1);
            }

            #[tokio::test]
            async fn tools_round_trip() {
                let sim = start_sim().await;
                let p = make(&sim, &[]);
                let mut r = request("Weather in Paris?");
                r.max_tokens = Some(64);
                r.tools = Some(vec![weather_tool()]);
                let first = chat(&p, MODEL, &r).await.unwrap();
                assert_eq!(first.choices[0].finish_reason, FinishReason::ToolCalls);
                let call = first.message().unwrap().tool_calls()[0].clone();
                assert_eq!(call.function.name, "get_weather");
                let args: Value = serde_json::from_str(&call.function.arguments).unwrap();
                assert!(args["city"].is_string(), "{args}");

                // Streamed, the same call arrives in fragments that reassemble.
                let (acc, err) = stream(&p, MODEL, &r).await.unwrap();
                assert!(err.is_none(), "{err:?}");
                assert_eq!(acc.finish, Some(FinishReason::ToolCalls));
                assert_eq!(acc.tool_calls[0].function.name, "get_weather");
                let streamed: Value =
                    serde_json::from_str(&acc.tool_calls[0].function.arguments).unwrap();
                assert!(streamed["city"].is_string());

                // The tool result goes back; the model answers in text.
                let mut assistant = first.message().unwrap().clone();
                assistant.content = None;
                let mut tool = Message::new(Role::Tool, "18C, cloudy");
                tool.tool_call_id = Some(call.id.clone());
                r.messages.push(assistant);
                r.messages.push(tool);
                let second = chat(&p, MODEL, &r).await.unwrap();
                assert!(second.message().unwrap().tool_calls().is_empty());
                assert!(!second.message().unwrap().text().trim().is_empty());
                assert_ne!(second.choices[0].finish_reason, FinishReason::ToolCalls);
            }

            #[tokio::test]
            async fn json_mode_gives_valid_json() {
                let sim = start_sim().await;
                let p = make(&sim, &[]);
                let mut r = request("Describe the weather as JSON.");
                r.max_tokens = Some(64);
                r.response_format = Some(ResponseFormat::JsonSchema {
                    json_schema: JsonSchemaFormat {
                        name: "weather".into(),
                        description: None,
                        schema: Some(json!({
                            "type": "object",
                            "properties": {"summary": {"type": "string"}, "celsius": {"type": "number"}},
                            "required": ["summary", "celsius"],
                            "additionalProperties": false
                        })),
                        strict: Some(true),
                    },
                });
                let answer = chat(&p, MODEL, &r).await.unwrap();
                let text = answer.message().unwrap().text();
                let v: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
                assert!(v["summary"].is_string() && v["celsius"].is_number(), "{v}");
                assert!(answer.message().unwrap().tool_calls().is_empty());

                let (acc, err) = stream(&p, MODEL, &r).await.unwrap();
                assert!(err.is_none(), "{err:?}");
                let v: Value = serde_json::from_str(&acc.text).unwrap();
                assert!(v["summary"].is_string(), "{v}");

                r.response_format = Some(ResponseFormat::JsonObject);
                let answer = chat(&p, MODEL, &r).await.unwrap();
                let v: Value = serde_json::from_str(&answer.message().unwrap().text()).unwrap();
                assert!(v.is_object());
            }

            #[tokio::test]
            async fn each_error_class_maps_to_its_kind() {
                let sim = start_sim().await;
                for (fault, kind) in error_table($wire) {
                    let p = make(&sim, &[("x-sim-fault", fault)]);
                    let err = chat(&p, MODEL, &request("Hi")).await.unwrap_err();
                    assert_eq!(err.kind, kind, "fault {fault}: {err:?}");
                    assert_eq!(err.retryable, kind.default_retryable(), "fault {fault}");
                    if fault == "429:3" {
                        assert_eq!(err.retry_after, Some(Duration::from_secs(3)), "{err:?}");
                    }
                    // Streaming requests fail the same way before any event.
                    if fault != "malformed" {
                        let err = stream(&p, MODEL, &request("Hi")).await.unwrap_err();
                        assert_eq!(err.kind, kind, "stream, fault {fault}: {err:?}");
                    }
                }
            }

            #[tokio::test]
            async fn broken_streams_are_never_a_clean_end() {
                let sim = start_sim().await;
                // Cut after two content chunks: the content arrives, then StreamCut.
                let p = make(&sim, &[("x-sim-fault", "cut:2")]);
                let (acc, err) = stream(&p, MODEL, &request("Hi")).await.unwrap();
                assert_eq!(err.as_ref().map(|e| e.kind), Some(ErrorKind::StreamCut), "{err:?}");
                assert!(!acc.text.is_empty());
                assert_eq!(acc.finish, None);

                // An in-stream error event after HTTP 200.
                let p = make(&sim, &[("x-sim-fault", "stream-error")]);
                let (_, err) = stream(&p, MODEL, &request("Hi")).await.unwrap();
                let kind = err.expect("an error").kind;
                assert!(
                    matches!(kind, ErrorKind::Overloaded | ErrorKind::Server),
                    "{kind:?}"
                );

                // Malformed first frame.
                let p = make(&sim, &[("x-sim-fault", "malformed")]);
                let result = stream(&p, MODEL, &request("Hi")).await;
                let kind = match result {
                    Ok((_, Some(e))) | Err(e) => e.kind,
                    Ok((_, None)) => panic!("a malformed stream ended cleanly"),
                };
                assert_eq!(kind, ErrorKind::MalformedResponse);

                // A reset connection.
                let p = make(&sim, &[("x-sim-fault", "reset")]);
                let kind = match stream(&p, MODEL, &request("Hi")).await {
                    Ok((_, Some(e))) | Err(e) => e.kind,
                    Ok((_, None)) => panic!("a reset stream ended cleanly"),
                };
                assert!(matches!(kind, ErrorKind::StreamCut | ErrorKind::Connect), "{kind:?}");
            }

            #[tokio::test]
            async fn a_dropped_stream_closes_the_upstream_exchange() {
                let sim = start_sim().await;
                let p = make(&sim, &[("x-sim-tpot-ms", "50")]);
                let mut r = request("Hi");
                r.max_tokens = Some(200);
                let mut s = p
                    .chat_stream(Call { request: &r, upstream_model: MODEL, default_max_tokens: 64, traceparent: None })
                    .await
                    .unwrap();
                let first = s.next().await.unwrap().unwrap();
                assert!(matches!(first, StreamEvent::Content(_) | StreamEvent::Usage(_)), "{first:?}");
                drop(s);
                let mut cancelled = 0;
                for _ in 0..100 {
                    cancelled = sim.sim.stats().model(MODEL).streams_cancelled;
                    if cancelled == 1 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                assert_eq!(cancelled, 1);
            }
        }
    };
}

conformance!(
    openai,
    ProviderKind::OpenAi,
    Dialect::Generic,
    WireFormat::OpenAi,
    "gpt-4o-mini"
);
conformance!(
    anthropic,
    ProviderKind::Anthropic,
    Dialect::Generic,
    WireFormat::Anthropic,
    "claude-3-5-haiku-20241022"
);
conformance!(
    gemini,
    ProviderKind::Gemini,
    Dialect::Generic,
    WireFormat::Gemini,
    "gemini-2.0-flash"
);
conformance!(
    ollama,
    ProviderKind::OpenAiCompatible,
    Dialect::Ollama,
    WireFormat::Ollama,
    "llama3.2"
);
