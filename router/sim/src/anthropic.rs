//! Anthropic Messages (`POST /anthropic/v1/messages`): header and body validation, answers
//! (text or one tool_use block), named-event SSE, `anthropic-ratelimit-*` headers and the
//! `{"type":"error",...}` error bodies. Anthropic has no JSON mode: JSON asks get plain text.
//! Input tokens count the tools too, and are split by the prompt cache (`prompt_cache.rs`) into
//! plain input, cache writes and cache reads, in complete answers and in the stream's usage.
//! A request with `thinking: {"type": "enabled", "budget_tokens": B}` is answered with a
//! thinking block first (with its signature): `B / 8` thinking pieces (at least 1, at most
//! `MAX_THINKING_PIECES`), one stream `thinking_delta` each, then one `signature_delta`;
//! the pieces count as output tokens.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::Sim;
use super::call::{Answer, AnswerKind, Reject, Shape, SimCall};
use super::playback::{Frame, Frames, Kind};
use super::profile::Fault;
use super::prompt_cache::{CacheUse, tool_tokens};
use super::text::prompt_tokens;
use super::wire::{json_response, put, quoted, rfc3339, uint, unix_now, wants_stream};

const CONTEXT_WINDOW: u64 = 200_000;
const REQUESTS_PER_MINUTE: u32 = 4000;
/// The most thinking pieces one answer carries, whatever the budget.
const MAX_THINKING_PIECES: u32 = 4096;

pub(super) async fn messages(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !headers.contains_key("x-api-key") {
        return error(&Reject::NoAuth, "", &sim.loose_id(), 0);
    }
    if !headers.contains_key("anthropic-version") {
        let r = Reject::invalid("anthropic-version: header is required");
        return error(&r, "", &sim.loose_id(), 0);
    }
    let req = match serde_json::from_slice::<Value>(&body) {
        Ok(v) if v.is_object() => v,
        _ => {
            let r = Reject::invalid(
                "There was an error parsing the body of your request: expected a JSON object.",
            );
            return error(&r, "", &sim.loose_id(), 0);
        }
    };
    let Some(model) = req.get("model").and_then(Value::as_str) else {
        return error(
            &Reject::invalid("model: Field required"),
            "",
            &sim.loose_id(),
            0,
        );
    };
    if let Err(r) = validate(&req) {
        sim.count_rejected(model);
        return error(&r, model, &sim.loose_id(), 0);
    }
    let mut ex = match sim.begin(model, &headers) {
        Ok(ex) => ex,
        Err(msg) => {
            sim.count_rejected(model);
            return error(&Reject::invalid(msg), model, &sim.loose_id(), 0);
        }
    };
    let rid = format!("req_{}", ex.hex(24));
    let messages = req
        .get("messages")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let prompt = prompt_tokens(req.get("system"), messages).saturating_add(tool_tokens(&req));
    let stream = wants_stream(&req);
    if let Some(f) = ex.fault.and_then(|f| f.http_error(stream)) {
        return error(&Reject::Fault(f), model, &rid, prompt);
    }
    if let Some(r) = ex.redirect(&headers) {
        return r;
    }
    if ex.fault == Some(Fault::Hang) {
        ex.hang().await;
        return error(&Reject::Fault(Fault::Overloaded), model, &rid, prompt);
    }
    let answer = ex.answer(shape(&req, messages), uint(req.get("max_tokens")), "toolu_");
    let now = tokio::time::Instant::now();
    let cache = sim.prompt_cache.account(model, &req, prompt, now);
    let thinking = thinking_budget(&req).map(|budget| Thinking {
        pieces: (budget / 8).clamp(1, MAX_THINKING_PIECES),
        signature: format!("Eu{}+/Q==", ex.hex(40)),
    });
    let msg = Msg {
        id: format!("msg_{}", ex.hex(24)),
        model,
        prompt,
        cache,
        answer,
        thinking,
    };
    let mut out = HeaderMap::new();
    put(&mut out, "request-id", &rid);
    ratelimit_headers(&mut out, REQUESTS_PER_MINUTE - 1);
    if stream {
        let frames = msg.frames(&ex);
        let err = || {
            let json =
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
            Frame::new("event: error\ndata: ", json, "\n\n")
        };
        ex.stream(frames, err, "text/event-stream; charset=utf-8", out)
    } else {
        let tokens = msg.output_tokens();
        match ex.unary(msg.body().to_string(), tokens, out).await {
            Some(resp) => resp,
            None => error(&Reject::Fault(Fault::Overloaded), model, &rid, prompt),
        }
    }
}

fn validate(req: &Value) -> Result<(), Reject> {
    let messages = match req.get("messages") {
        None | Some(Value::Null) => return Err(Reject::invalid("messages: Field required")),
        Some(Value::Array(m)) => m,
        Some(_) => return Err(Reject::invalid("messages: Input should be a valid list")),
    };
    match req.get("max_tokens") {
        None | Some(Value::Null) => return Err(Reject::invalid("max_tokens: Field required")),
        Some(v) if v.as_i64().is_none_or(|n| n < 1) => {
            return Err(Reject::invalid(
                "max_tokens: Input should be greater than or equal to 1",
            ));
        }
        Some(_) => {}
    }
    if messages.is_empty() {
        return Err(Reject::invalid(
            "messages: at least one message is required",
        ));
    }
    for (i, m) in messages.iter().enumerate() {
        match m.get("role").and_then(Value::as_str) {
            Some("user" | "assistant") => {}
            _ => {
                let r = format!("messages.{i}.role: Input should be 'user' or 'assistant'");
                return Err(Reject::invalid(r));
            }
        }
        if m.get("content").is_none() {
            return Err(Reject::invalid(format!(
                "messages.{i}.content: Field required"
            )));
        }
    }
    Ok(())
}

/// `thinking.budget_tokens` when the request enables extended thinking.
fn thinking_budget(req: &Value) -> Option<u32> {
    let t = req.get("thinking")?;
    if t.get("type").and_then(Value::as_str) != Some("enabled") {
        return None;
    }
    Some(uint(t.get("budget_tokens")).unwrap_or(1024))
}

/// The thinking block an answer opens with.
struct Thinking {
    pieces: u32,
    signature: String,
}

impl Thinking {
    /// Piece `i` of the reasoning; the pieces end to end are the block's `thinking`.
    fn piece(i: u32) -> String {
        format!("step {i}; ")
    }

    fn text(&self) -> String {
        (0..self.pieces).map(Self::piece).collect()
    }
}

/// One tool_use block when custom tools are offered, `tool_choice` is not none and the last
/// message does not carry a tool_result; text otherwise.
fn shape<'a>(req: &'a Value, messages: &[Value]) -> Shape<'a> {
    let tools: Vec<&Value> = req
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|t| {
            t.get("type")
                .and_then(Value::as_str)
                .is_none_or(|ty| ty == "custom")
        })
        .collect();
    let after_tool = messages
        .last()
        .and_then(|m| m.get("content"))
        .and_then(Value::as_array)
        .is_some_and(|blocks| {
            blocks
                .iter()
                .any(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
        });
    let choice = req.get("tool_choice");
    let kind = choice.and_then(|c| c.get("type")).and_then(Value::as_str);
    if tools.is_empty() || after_tool || kind == Some("none") {
        return Shape::Text;
    }
    let named = choice
        .and_then(|c| c.get("name"))
        .and_then(Value::as_str)
        .filter(|_| kind == Some("tool"));
    let tool = named
        .and_then(|n| {
            tools
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some(n))
        })
        .or(tools.first());
    match tool.and_then(|t| t.get("name")).and_then(Value::as_str) {
        Some(name) => Shape::Tool {
            name,
            params: tool.and_then(|t| t.get("input_schema")),
        },
        None => Shape::Text,
    }
}

/// Token buckets reported next to the request one: limit, remaining and reset header, limit.
#[rustfmt::skip]
const TOKEN_BUCKETS: [(&str, &str, &str, u32); 3] = [
    ("anthropic-ratelimit-tokens-limit", "anthropic-ratelimit-tokens-remaining",
     "anthropic-ratelimit-tokens-reset", 480_000),
    ("anthropic-ratelimit-input-tokens-limit", "anthropic-ratelimit-input-tokens-remaining",
     "anthropic-ratelimit-input-tokens-reset", 400_000),
    ("anthropic-ratelimit-output-tokens-limit", "anthropic-ratelimit-output-tokens-remaining",
     "anthropic-ratelimit-output-tokens-reset", 80_000),
];

fn ratelimit_headers(out: &mut HeaderMap, remaining_requests: u32) {
    let reset = rfc3339(unix_now() + 1);
    put(
        out,
        "anthropic-ratelimit-requests-limit",
        REQUESTS_PER_MINUTE.to_string(),
    );
    put(
        out,
        "anthropic-ratelimit-requests-remaining",
        remaining_requests.to_string(),
    );
    put(out, "anthropic-ratelimit-requests-reset", &reset);
    for (limit, remaining, reset_name, value) in TOKEN_BUCKETS {
        put(out, limit, value.to_string());
        put(out, remaining, value.to_string());
        put(out, reset_name, &reset);
    }
}

/// One message being rendered.
struct Msg<'a> {
    id: String,
    model: &'a str,
    /// Every input token: plain, cache writes and cache reads.
    prompt: u32,
    cache: CacheUse,
    answer: Answer,
    thinking: Option<Thinking>,
}

impl Msg<'_> {
    fn stop_reason(&self) -> &'static str {
        match self.answer.kind {
            AnswerKind::Tool { .. } => "tool_use",
            _ if self.answer.truncated => "max_tokens",
            _ => "end_turn",
        }
    }

    /// The answer's tokens and the thinking's.
    fn output_tokens(&self) -> u32 {
        let thinking = self.thinking.as_ref().map_or(0, |t| t.pieces);
        self.answer.tokens.saturating_add(thinking)
    }

    /// `input_tokens` is the plain part: the prompt less what the cache wrote and read.
    fn usage(&self, output: u32) -> Value {
        let CacheUse { read, written } = self.cache;
        let input = self.prompt.saturating_sub(read).saturating_sub(written);
        json!({
            "input_tokens": input, "cache_creation_input_tokens": written,
            "cache_read_input_tokens": read, "output_tokens": output
        })
    }

    fn body(&self) -> Value {
        let block = match &self.answer.kind {
            AnswerKind::Tool { id, name, args } => {
                json!({"type": "tool_use", "id": id, "name": name, "input": args})
            }
            _ => json!({"type": "text", "text": self.answer.text}),
        };
        let mut content = Vec::with_capacity(2);
        if let Some(t) = &self.thinking {
            content.push(json!({"type": "thinking", "thinking": t.text(),
                                "signature": t.signature}));
        }
        content.push(block);
        json!({
            "id": self.id, "type": "message", "role": "assistant", "model": self.model,
            "content": content, "stop_reason": self.stop_reason(), "stop_sequence": null,
            "usage": self.usage(self.output_tokens())
        })
    }

    fn frames(&self, ex: &SimCall) -> Frames {
        let pieces = self.answer.pieces();
        let thinking = self.thinking.as_ref().map_or(0, |t| t.pieces as usize + 3);
        let mut f = Frames::new(ex, pieces.len() + thinking + 6);
        let mut event = |kind, name: &str, json: &str| {
            f.push(kind, &format!("event: {name}\ndata: "), json, "\n\n");
        };
        let start = json!({"type": "message_start", "message": {
            "id": self.id, "type": "message", "role": "assistant", "model": self.model,
            "content": [],
            "stop_reason": null, "stop_sequence": null, "usage": self.usage(1)}});
        event(Kind::Meta, "message_start", &start.to_string());
        if ex.fault == Some(Fault::ToolIndex) {
            let block = r#"{"type":"content_block_start","index":4294967295,"content_block":{"type":"tool_use","id":"toolu_hostile","name":"hostile","input":{}}}"#;
            event(Kind::Content, "content_block_start", block);
        }
        let mut index = 0;
        if let Some(t) = &self.thinking {
            event(
                Kind::Meta,
                "content_block_start",
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}"#,
            );
            for i in 0..t.pieces {
                let delta = format!(
                    "{{\"type\":\"content_block_delta\",\"index\":0,\
                     \"delta\":{{\"type\":\"thinking_delta\",\"thinking\":{}}}}}",
                    quoted(&Thinking::piece(i))
                );
                event(Kind::Content, "content_block_delta", &delta);
            }
            let signature = json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "signature_delta", "signature": t.signature}});
            event(Kind::Meta, "content_block_delta", &signature.to_string());
            event(
                Kind::Meta,
                "content_block_stop",
                r#"{"type":"content_block_stop","index":0}"#,
            );
            index = 1;
        }
        let (block, delta_kind, field) = match &self.answer.kind {
            AnswerKind::Tool { id, name, .. } => (
                json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                "input_json_delta",
                "partial_json",
            ),
            _ => (json!({"type": "text", "text": ""}), "text_delta", "text"),
        };
        let block = json!({"type": "content_block_start", "index": index, "content_block": block});
        event(Kind::Meta, "content_block_start", &block.to_string());
        event(Kind::Meta, "ping", r#"{"type": "ping"}"#);
        for p in &pieces {
            let delta = format!(
                "{{\"type\":\"content_block_delta\",\"index\":{index},\
                 \"delta\":{{\"type\":\"{delta_kind}\",\"{field}\":{}}}}}",
                quoted(p)
            );
            event(Kind::Content, "content_block_delta", &delta);
        }
        let stop = json!({"type": "content_block_stop", "index": index});
        event(Kind::Meta, "content_block_stop", &stop.to_string());
        // As the API does today, the final usage repeats the input counts.
        let delta = json!({"type": "message_delta",
            "delta": {"stop_reason": self.stop_reason(), "stop_sequence": null},
            "usage": self.usage(self.output_tokens())});
        event(Kind::Terminal, "message_delta", &delta.to_string());
        event(Kind::Terminal, "message_stop", r#"{"type":"message_stop"}"#);
        f
    }
}

fn error(r: &Reject, model: &str, rid: &str, prompt: u32) -> Response {
    let mut headers = HeaderMap::new();
    put(&mut headers, "request-id", rid);
    let mut details = None;
    let (status, ty, message): (u16, &str, String) = match r {
        Reject::Invalid { message, .. } => (400, "invalid_request_error", message.clone()),
        Reject::NoAuth => (
            401,
            "authentication_error",
            "x-api-key header is required".into(),
        ),
        Reject::Fault(f) => match f {
            Fault::BadRequest => (
                400,
                "invalid_request_error",
                "Invalid request (simulated).".into(),
            ),
            Fault::Unauthorized => (401, "authentication_error", "invalid x-api-key".into()),
            Fault::Forbidden => (
                403,
                "permission_error",
                "Your API key does not have permission to use the specified resource.".into(),
            ),
            Fault::NotFound => (404, "not_found_error", format!("model: {model}")),
            Fault::RateLimited { retry_after_secs } => {
                put(&mut headers, "retry-after", retry_after_secs.to_string());
                ratelimit_headers(&mut headers, 0);
                (
                    429,
                    "rate_limit_error",
                    format!(
                        "This request would exceed the rate limit for your organization of \
                         {REQUESTS_PER_MINUTE} requests per minute. For details, refer to: \
                         https://docs.claude.com/en/api/rate-limits. You can see the response \
                         headers for current usage. Please reduce the prompt length or the \
                         maximum tokens requested, or try again later."
                    ),
                )
            }
            Fault::Quota => {
                details = Some(json!({"error_code": "enforced_spend_limit_reached"}));
                let message = "You have reached your specified API usage limits. You will \
                    regain access on the first day of next month at 00:00 UTC.";
                (429, "rate_limit_error", message.into())
            }
            Fault::ContextLength => {
                let tokens = CONTEXT_WINDOW + u64::from(prompt);
                (
                    400,
                    "invalid_request_error",
                    format!("prompt is too long: {tokens} tokens > {CONTEXT_WINDOW} maximum"),
                )
            }
            Fault::BadGateway => (502, "api_error", "Bad gateway".into()),
            Fault::Unavailable => (503, "api_error", "Service unavailable".into()),
            Fault::GatewayTimeout => (504, "timeout_error", "Request timed out".into()),
            Fault::Overloaded => (529, "overloaded_error", "Overloaded".into()),
            _ => (500, "api_error", "Internal server error".into()),
        },
    };
    let mut err = json!({"type": ty, "message": message});
    if let Some(d) = details {
        err["details"] = d;
    }
    let body = json!({"type": "error", "error": err, "request_id": rid}).to_string();
    json_response(
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body,
        headers,
    )
}
