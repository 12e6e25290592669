use serde_json::{Value, json};

use super::render::{Envelope, EventRenderer};
use super::request::{Echo, parse};
use crate::api::sse::testing::{named_frames as frames, render_all};
use switchyard_types::{
    FinishReason, ResponseFormat, Role, StreamAccumulator, StreamEvent, ToolChoice, Usage,
};

fn body(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn input_items_translate_to_hub_turns() {
    let raw = body(json!({
        "model": "gpt-4o-mini",
        "instructions": "Be brief.",
        "input": [
            {"role": "user", "content": "Weather in Oslo?"},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": "{\"city\":\"Oslo\"}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "3C"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Thanks"}]}
        ],
        "tools": [{"type": "function", "name": "weather", "parameters": {"type": "object"}}],
        "tool_choice": "auto",
        "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}}},
        "max_output_tokens": 50,
        "reasoning": {"effort": "low"},
        "store": false
    }));
    let p = parse(&raw).unwrap();
    let hub = p.hub;
    let roles: Vec<Role> = hub.messages.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            Role::Developer,
            Role::User,
            Role::Assistant,
            Role::Tool,
            Role::User
        ]
    );
    assert_eq!(hub.messages[2].tool_calls()[0].id, "call_1");
    assert_eq!(hub.messages[3].tool_call_id.as_deref(), Some("call_1"));
    assert_eq!(hub.max_tokens, Some(50));
    assert!(matches!(hub.tool_choice, Some(ToolChoice::Mode(_))));
    assert!(matches!(
        hub.response_format,
        Some(ResponseFormat::JsonSchema { .. })
    ));
    assert_eq!(hub.extra["reasoning_effort"], "low");
    assert!(!p.stream);
}

#[test]
fn stateful_and_unsupported_requests_are_refused_by_name() {
    let cases = [
        (json!({"model": "m", "input": "x", "store": true}), "store"),
        (
            json!({"model": "m", "input": "x", "previous_response_id": "resp_1"}),
            "previous_response_id",
        ),
        (
            json!({"model": "m", "input": "x", "conversation": "c"}),
            "conversation",
        ),
        (
            json!({"model": "m", "input": "x", "background": true}),
            "background",
        ),
        (
            json!({"model": "m", "input": [{"type": "item_reference", "id": "x"}]}),
            "input[0]",
        ),
        (
            json!({"model": "m", "input": [{"type": "computer_call", "id": "x"}]}),
            "input[0].type",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}]}),
            "tools[0].type",
        ),
        (
            json!({"model": "m", "input": "x", "max_output_tokens": 0}),
            "max_output_tokens",
        ),
        (json!({"model": "m", "input": []}), "input"),
        (
            json!({"model": "m", "input": [{"type": "function_call_output", "output": "x"}]}),
            "input[0].call_id",
        ),
        (
            json!({"model": "m", "input": "x", "tool_choice": "sometimes"}),
            "tool_choice",
        ),
        (
            json!({"model": "m", "input": "x", "temperature": 3}),
            "temperature",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "function", "name": "bad name"}]}),
            "tools[0].name",
        ),
        (
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]}),
            "input[0].content[0].image_url",
        ),
    ];
    for (request, want) in cases {
        let e = parse(&body(request.clone()))
            .err()
            .unwrap_or_else(|| panic!("{request}"));
        assert_eq!(e.param.as_deref(), Some(want), "{request}");
        if want == "store" || want == "previous_response_id" {
            assert!(
                e.message.contains("stateful mode is not supported"),
                "{}",
                e.message
            );
        }
    }
}

fn env() -> Envelope {
    Envelope::new("gpt-4o-mini".into(), Echo::default())
}

#[test]
fn a_complete_answer_renders_as_a_response() {
    let mut acc = StreamAccumulator::default();
    acc.push(StreamEvent::Content("Hi".into()));
    acc.push(StreamEvent::ToolCall {
        index: 0,
        id: Some("call_9".into()),
        name: Some("f".into()),
        arguments: "{}".into(),
    });
    acc.push(StreamEvent::Finish(FinishReason::ToolCalls));
    acc.push(StreamEvent::Usage(Usage::new(10, 2).with_cache(4, 0)));
    let v = env().complete(&acc.into_response("x".into(), "m".into()));
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["output"][0]["type"], "message");
    assert_eq!(v["output"][0]["content"][0]["text"], "Hi");
    assert_eq!(v["output"][1]["type"], "function_call");
    assert_eq!(v["output"][1]["call_id"], "call_9");
    assert_eq!(v["usage"]["input_tokens"], 10);
    assert_eq!(v["usage"]["input_tokens_details"]["cached_tokens"], 4);
    assert_eq!(v["usage"]["total_tokens"], 12);
    assert!(v["id"].as_str().unwrap().starts_with("resp_"));
}

#[test]
fn a_stream_renders_as_numbered_responses_events() {
    let mut r = EventRenderer::new(env());
    let events = vec![
        StreamEvent::Content("Hel".into()),
        StreamEvent::Content("lo".into()),
        StreamEvent::ToolCall {
            index: 0,
            id: Some("call_1".into()),
            name: Some("f".into()),
            arguments: "{\"a\":".into(),
        },
        StreamEvent::ToolCall {
            index: 0,
            id: None,
            name: None,
            arguments: "1}".into(),
        },
        StreamEvent::Finish(FinishReason::Length),
        StreamEvent::Usage(Usage::new(5, 3)),
    ];
    let f = frames(&render_all(&mut r, events));
    let names: Vec<&str> = f.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.incomplete"
        ]
    );
    for (i, (_, d)) in f.iter().enumerate() {
        assert_eq!(d["sequence_number"], i as u64);
    }
    assert_eq!(f[6].1["text"], "Hello");
    assert_eq!(f[9].1["output_index"], 1);
    assert_eq!(f[12].1["arguments"], "{\"a\":1}");
    let last = &f[14].1["response"];
    assert_eq!(last["status"], "incomplete");
    assert_eq!(last["incomplete_details"]["reason"], "max_output_tokens");
    assert_eq!(last["output"].as_array().unwrap().len(), 2);
    assert_eq!(last["usage"]["output_tokens"], 3);
}
