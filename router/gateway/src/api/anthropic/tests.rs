use serde_json::{Value, json};

use super::render::{EventRenderer, error_body, message};
use super::request::parse;
use crate::api::ApiError;
use crate::api::sse::Render;
use crate::api::sse::testing::{named_frames as frames, render_all};
use switchyard_types::{
    ChatResponse, Content, ContentPart, FinishReason, Role, StreamAccumulator, StreamEvent, Usage,
};

fn body(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

fn param(e: ApiError) -> String {
    e.param.unwrap_or_default()
}

#[test]
fn a_full_request_translates_to_the_hub() {
    let raw = br#"{"model":"claude-sonnet-4-5","max_tokens":100,
        "system":[{"type":"text","text":"Be brief.","cache_control":{"type":"ephemeral"}}],
        "messages":[
          {"role":"user","content":"What is the weather?"},
          {"role":"assistant","content":[
             {"type":"thinking","thinking":"hmm","signature":"sig=="},
             {"type":"text","text":"Let me look."},
             {"type":"tool_use","id":"toolu_1","name":"weather","input":{"city":"Paris","unit":"c"}}]},
          {"role":"user","content":[
             {"type":"tool_result","tool_use_id":"toolu_1","content":"21C"},
             {"type":"text","text":"And tomorrow?"}]}],
        "tools":[{"name":"weather","description":"Weather","input_schema":{"type":"object"},
                  "cache_control":{"type":"ephemeral"}}],
        "tool_choice":{"type":"auto","disable_parallel_tool_use":true},
        "stop_sequences":["END"],"temperature":0.5,"top_k":5,
        "metadata":{"user_id":"u-1"},"stream":true}"#;
    let parsed = parse(raw, false).unwrap();
    assert!(parsed.stream);
    let hub = parsed.hub;
    let roles: Vec<Role> = hub.messages.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            Role::System,
            Role::User,
            Role::Assistant,
            Role::Tool,
            Role::User
        ]
    );
    assert_eq!(hub.messages[0].text(), "Be brief.");
    let call = &hub.messages[2].tool_calls()[0];
    assert_eq!(call.id, "toolu_1");
    assert_eq!(call.function.arguments, r#"{"city":"Paris","unit":"c"}"#);
    assert_eq!(hub.messages[2].text(), "Let me look.");
    assert_eq!(hub.messages[3].tool_call_id.as_deref(), Some("toolu_1"));
    assert_eq!(hub.messages[3].text(), "21C");
    assert_eq!(hub.max_tokens, Some(100));
    assert_eq!(hub.parallel_tool_calls, Some(false));
    assert_eq!(hub.user.as_deref(), Some("u-1"));
    assert_eq!(hub.tools.as_ref().unwrap()[0].function.name, "weather");
    let native = hub.native.as_ref().unwrap();
    // Nothing here is beyond the hub: other providers may serve it.
    assert_eq!(native.only_native, None);
    // The native body is the client's, member by member and byte for byte.
    assert_eq!(
        native.body.get("system").unwrap().get(),
        r#"[{"type":"text","text":"Be brief.","cache_control":{"type":"ephemeral"}}]"#
    );
    let names: Vec<&str> = native.body.0.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names[..4], ["model", "max_tokens", "system", "messages"]);
}

#[test]
fn content_only_anthropic_takes_keeps_the_request_on_anthropic() {
    let cases = [
        (
            json!([{"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}]),
            "messages[0].content[0].source",
        ),
        (
            json!([{"type": "search_result", "source": "s", "title": "t", "content": []}]),
            "messages[0].content[0].type",
        ),
        (
            json!([{"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "AA=="}, "citations": {"enabled": true}}]),
            "messages[0].content[0].citations",
        ),
    ];
    for (content, at) in cases {
        let raw = body(json!({"model": "m", "max_tokens": 5,
            "messages": [{"role": "user", "content": content}]}));
        let hub = parse(&raw, false).unwrap().hub;
        let (param, _) = hub.native.unwrap().only_native.clone().unwrap();
        assert_eq!(param, at);
    }
    let raw = body(json!({"model": "m", "max_tokens": 5,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "web_search_20250305", "name": "web_search"}]}));
    let hub = parse(&raw, false).unwrap().hub;
    assert_eq!(
        hub.native.unwrap().only_native.clone().unwrap().0,
        "tools[0].type"
    );
    assert!(hub.tools.is_none());
}

#[test]
fn bad_requests_name_the_field() {
    let ok_msgs = json!([{"role": "user", "content": "hi"}]);
    let cases = [
        (json!({"model": "m", "messages": ok_msgs}), "max_tokens"),
        (
            json!({"model": "m", "max_tokens": 0, "messages": ok_msgs}),
            "max_tokens",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": []}),
            "messages",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": ok_msgs, "temperature": 1.5}),
            "temperature",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "tool_use", "id": "a", "name": "n", "input": {}}]}]}),
            "messages[0].content[0].type",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "a", "name": "n", "input": [1]}]}]}),
            "messages[0].content[0].input",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": ok_msgs, "tools": [{"name": "bad name", "input_schema": {"type": "object"}}]}),
            "tools[0].name",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": ok_msgs, "tools": [{"name": "t"}]}),
            "tools[0].input_schema",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": ok_msgs, "tool_choice": {"type": "tool"}}),
            "tool_choice.name",
        ),
        (
            json!({"model": "m", "max_tokens": 5000, "messages": ok_msgs, "thinking": {"type": "enabled", "budget_tokens": 6000}}),
            "thinking.budget_tokens",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": ok_msgs, "system": [{"type": "image", "text": "x"}]}),
            "system[0].type",
        ),
    ];
    for (request, want) in cases {
        let e = parse(&body(request.clone()), false)
            .err()
            .unwrap_or_else(|| panic!("{request}"));
        assert_eq!(param(e), want, "{request}");
    }
    // count_tokens takes no max_tokens.
    assert!(parse(&body(json!({"model": "m", "messages": ok_msgs})), true).is_ok());
}

#[test]
fn images_and_documents_become_hub_parts() {
    let raw = body(
        json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}},
        {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}},
        {"type": "text", "text": "Describe"}]}]}),
    );
    let hub = parse(&raw, false).unwrap().hub;
    let Some(Content::Parts(parts)) = &hub.messages[0].content else {
        panic!("parts")
    };
    assert!(
        matches!(&parts[0], ContentPart::ImageUrl { image_url } if image_url.url == "data:image/png;base64,iVBO")
    );
    assert!(
        matches!(&parts[1], ContentPart::ImageUrl { image_url } if image_url.url == "https://x/y.png")
    );
    assert!(
        matches!(&parts[2], ContentPart::File { file } if file["file_data"] == "data:application/pdf;base64,JVBE")
    );
}

fn answer() -> ChatResponse {
    let mut acc = StreamAccumulator::default();
    for e in [
        StreamEvent::Content("Hello".into()),
        StreamEvent::ToolCall {
            index: 0,
            id: Some("call_1".into()),
            name: Some("weather".into()),
            arguments: r#"{"city":"Oslo"}"#.into(),
        },
        StreamEvent::Finish(FinishReason::ToolCalls),
        StreamEvent::Usage(Usage::new(100, 7).with_cache(60, 30)),
    ] {
        acc.push(e);
    }
    acc.into_response("x".into(), "m".into())
}

#[test]
fn a_complete_answer_renders_as_a_message_with_usage_split() {
    let v = message(&answer(), "msg_1", "claude-sonnet-4-5");
    assert_eq!(v["type"], "message");
    assert_eq!(v["content"][0], json!({"type": "text", "text": "Hello"}));
    assert_eq!(v["content"][1]["type"], "tool_use");
    assert_eq!(v["content"][1]["input"], json!({"city": "Oslo"}));
    assert_eq!(v["stop_reason"], "tool_use");
    // prompt 100 = 10 uncached + 60 read + 30 written.
    assert_eq!(
        v["usage"],
        json!({"input_tokens": 10, "output_tokens": 7,
               "cache_creation_input_tokens": 30, "cache_read_input_tokens": 60})
    );
}

#[test]
fn broken_tool_arguments_are_carried_not_replaced() {
    let mut r = answer();
    r.choices[0].message.tool_calls.as_mut().unwrap()[0]
        .function
        .arguments = "{\"city\": ".into();
    let v = message(&r, "msg_1", "m");
    assert_eq!(
        v["content"][1]["input"],
        json!({"_raw_arguments": "{\"city\": "})
    );
}

#[test]
fn a_stream_renders_as_anthropic_events() {
    let mut r = EventRenderer::new("msg_1".into(), "claude".into(), 42);
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
        StreamEvent::ToolCall {
            index: 1,
            id: Some("call_2".into()),
            name: Some("g".into()),
            arguments: "{}".into(),
        },
        StreamEvent::Finish(FinishReason::ToolCalls),
        StreamEvent::Usage(Usage::new(50, 9).with_cache(40, 0)),
    ];
    let f = frames(&render_all(&mut r, events));
    let names: Vec<&str> = f.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(f[0].1["message"]["usage"]["input_tokens"], 42);
    assert_eq!(f[6].1["content_block"]["id"], "call_1");
    assert_eq!(f[6].1["index"], 1);
    assert_eq!(f[10].1["index"], 2);
    assert_eq!(f[13].1["delta"]["stop_reason"], "tool_use");
    assert_eq!(f[13].1["usage"]["output_tokens"], 9);
    assert_eq!(f[13].1["usage"]["input_tokens"], 10);
    assert_eq!(f[13].1["usage"]["cache_read_input_tokens"], 40);
}

#[test]
fn errors_take_anthropics_shape() {
    let e = ApiError::invalid_param("messages[0].content", "is required");
    let v = error_body(&e);
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("messages[0].content")
    );
    let mut r = EventRenderer::new("msg_1".into(), "claude".into(), 1);
    let frame = r.error(&e);
    let f = frames(&frame);
    assert_eq!(f[0].0, "error");
}
