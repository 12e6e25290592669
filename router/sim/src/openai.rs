//! OpenAI Chat Completions and its Ollama `/v1` dialect, in one file with a `Quirks` table:
//! validation, answers, SSE chunks, rate-limit headers and error bodies, as each server sends them.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::Sim;
use super::call::{Answer, AnswerKind, Reject, Shape, SimCall};
use super::openai_errors::{error, stream_error};
use super::playback::{Frame, Frames, Kind};
use super::profile::Fault;
use super::text::prompt_tokens;
use super::wire::{json_response, put, quoted, uint, wants_stream};

/// What differs between OpenAI and Ollama's OpenAI-compatible endpoint.
pub(super) struct Quirks {
    pub(super) ollama: bool,
    /// OpenAI reads `max_completion_tokens` (then `max_tokens`); Ollama only `max_tokens`.
    reads_max_completion_tokens: bool,
    /// Ollama ignores `tool_choice`.
    honors_tool_choice: bool,
    pub(super) requires_auth: bool,
    fingerprint: &'static str,
    pub(super) context_window: u64,
}

pub(super) const OPENAI: Quirks = Quirks {
    ollama: false,
    reads_max_completion_tokens: true,
    honors_tool_choice: true,
    requires_auth: true,
    fingerprint: "fp_sim0openai",
    context_window: 128_000,
};

pub(super) const OLLAMA: Quirks = Quirks {
    ollama: true,
    reads_max_completion_tokens: false,
    honors_tool_choice: false,
    requires_auth: false,
    fingerprint: "fp_ollama",
    context_window: 131_072,
};

const ROLES: [&str; 6] = [
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

pub(super) async fn chat_openai(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    chat(&sim, &OPENAI, &headers, &body).await
}

pub(super) async fn chat_ollama(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    chat(&sim, &OLLAMA, &headers, &body).await
}

pub(super) async fn models_openai(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Response {
    if !headers.contains_key(AUTHORIZATION) {
        return error(&OPENAI, &Reject::NoAuth, "", &sim.loose_id(), 0);
    }
    models(&sim, super::WireFormat::OpenAi, "system")
}

pub(super) async fn models_ollama(State(sim): State<Arc<Sim>>) -> Response {
    models(&sim, super::WireFormat::Ollama, "library")
}

fn models(sim: &Sim, format: super::WireFormat, owner: &str) -> Response {
    let data: Vec<Value> = sim
        .listed_models(format)
        .into_iter()
        .map(|id| json!({"id": id, "object": "model", "created": 1_721_172_741, "owned_by": owner}))
        .collect();
    let body = json!({"object": "list", "data": data}).to_string();
    json_response(StatusCode::OK, body, HeaderMap::new())
}

/// What every OpenAI-format endpoint checks first: the key (when the dialect needs one), a
/// JSON object body, and its `model`.
pub(super) fn admit(
    sim: &Sim,
    q: &Quirks,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Value, String), Box<Response>> {
    if q.requires_auth && !headers.contains_key(AUTHORIZATION) {
        return Err(Box::new(error(q, &Reject::NoAuth, "", &sim.loose_id(), 0)));
    }
    let req = match serde_json::from_slice::<Value>(body) {
        Ok(v) if v.is_object() => v,
        _ => {
            let refused = error(q, &Reject::invalid(bad_json(q)), "", &sim.loose_id(), 0);
            return Err(Box::new(refused));
        }
    };
    let Some(model) = req.get("model").and_then(Value::as_str).map(str::to_owned) else {
        let msg = if q.ollama {
            "model is required"
        } else {
            "you must provide a model parameter"
        };
        return Err(Box::new(error(
            q,
            &Reject::invalid(msg),
            "",
            &sim.loose_id(),
            0,
        )));
    };
    Ok((req, model))
}

/// Begin a call of `model` (faults, latency); a refusal is counted as rejected.
pub(super) fn begin(
    sim: &Sim,
    q: &Quirks,
    model: &str,
    headers: &HeaderMap,
) -> Result<SimCall, Box<Response>> {
    sim.begin(model, headers).map_err(|msg| {
        sim.count_rejected(model);
        Box::new(error(q, &Reject::invalid(msg), model, &sim.loose_id(), 0))
    })
}

async fn chat(sim: &Sim, q: &Quirks, headers: &HeaderMap, body: &[u8]) -> Response {
    let (req, model) = match admit(sim, q, headers, body) {
        Ok(r) => r,
        Err(refused) => return *refused,
    };
    let model = model.as_str();
    if let Err(r) = validate(q, &req) {
        sim.count_rejected(model);
        return error(q, &r, model, &sim.loose_id(), 0);
    }
    let mut ex = match begin(sim, q, model, headers) {
        Ok(ex) => ex,
        Err(refused) => return *refused,
    };
    let rid = format!("req_{}", ex.hex(32));
    let messages = req
        .get("messages")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let prompt = prompt_tokens(None, messages);
    let stream = wants_stream(&req);
    if let Some(f) = ex.fault.and_then(|f| f.http_error(stream)) {
        return error(q, &Reject::Fault(f), model, &rid, prompt);
    }
    if let Some(r) = ex.redirect(headers) {
        return r;
    }
    if ex.fault == Some(Fault::Hang) {
        ex.hang().await;
        return error(q, &Reject::Fault(Fault::Unavailable), model, &rid, prompt);
    }
    let max = if q.reads_max_completion_tokens {
        uint(req.get("max_completion_tokens")).or_else(|| uint(req.get("max_tokens")))
    } else {
        uint(req.get("max_tokens"))
    };
    let answer = ex.answer(shape(q, &req), max, "call_");
    let id = if q.ollama {
        format!(
            "chatcmpl-{}",
            u16::from_str_radix(&ex.hex(3), 16).unwrap_or(0)
        )
    } else {
        format!("chatcmpl-{}", ex.hex(29))
    };
    let cached = if q.ollama {
        0
    } else {
        let now = tokio::time::Instant::now();
        sim.prompt_cache
            .account_automatic(model, messages, prompt, now)
    };
    let c = Chat {
        q,
        id,
        model,
        created: ex.created,
        prompt,
        cached,
        answer,
    };
    let mut out = HeaderMap::new();
    if !q.ollama {
        let took = if stream {
            ex.ttft
        } else {
            ex.planned(c.answer.tokens)
        };
        success_headers(
            &mut out,
            &rid,
            took.as_millis(),
            u64::from(prompt) + u64::from(max.unwrap_or(4096)),
        );
    }
    if stream {
        let usage = req
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            == Some(true);
        let frames = c.frames(&ex, usage);
        let err = || Frame::new("data: ", &stream_error(q), "\n\n");
        ex.stream(frames, err, "text/event-stream; charset=utf-8", out)
    } else {
        let tokens = c.answer.tokens;
        let body = c.body().to_string();
        match ex.unary(body, tokens, out).await {
            Some(resp) => resp,
            None => error(q, &Reject::Fault(Fault::Unavailable), model, &rid, prompt),
        }
    }
}

pub(super) fn bad_json(q: &Quirks) -> &'static str {
    if q.ollama {
        "invalid request body: expected a JSON object"
    } else {
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't \
         using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was \
         sent was not valid JSON. If you have trouble figuring out how to fix this, please \
         contact us through our help center at help.openai.com.)"
    }
}

fn validate(q: &Quirks, req: &Value) -> Result<(), Reject> {
    let messages = match req.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        _ if q.ollama => return Err(Reject::invalid("[] is too short - 'messages'")),
        None | Some(Value::Null) => {
            return Err(Reject::param(
                "Missing required parameter: 'messages'.",
                "messages",
                "missing_required_parameter",
            ));
        }
        Some(Value::Array(_)) => {
            return Err(Reject::param(
                "Invalid 'messages': empty array. Expected an array with minimum length 1, but \
                 got an empty array instead.",
                "messages",
                "empty_array",
            ));
        }
        Some(_) => {
            return Err(Reject::param(
                "Invalid type for 'messages': expected an array of objects.",
                "messages",
                "invalid_type",
            ));
        }
    };
    if q.ollama {
        return Ok(());
    }
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if !ROLES.contains(&role) {
            return Err(Reject::param(
                format!(
                    "Invalid value: '{role}'. Supported values are: 'system', 'assistant', \
                     'user', 'function', 'tool', and 'developer'."
                ),
                format!("messages[{i}].role"),
                "invalid_value",
            ));
        }
        if role == "tool" && m.get("tool_call_id").is_none() {
            let p = format!("messages[{i}].tool_call_id");
            return Err(Reject::param(
                format!("Missing required parameter: '{p}'."),
                p,
                "missing_required_parameter",
            ));
        }
    }
    for key in ["max_completion_tokens", "max_tokens"] {
        if let Some(n) = req.get(key).and_then(Value::as_i64).filter(|n| *n < 1) {
            return Err(Reject::param(
                format!(
                    "Invalid '{key}': integer below minimum value. Expected a value >= 1, but \
                     got {n} instead."
                ),
                key,
                "integer_below_min_value",
            ));
        }
    }
    Ok(())
}

/// Tool call if tools are offered, not refused, and the last message is not a tool result;
/// else JSON per `response_format`; else text.
fn shape<'a>(q: &Quirks, req: &'a Value) -> Shape<'a> {
    let tools: Vec<&Value> = req
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.get("function"))
        .collect();
    let last_role = req
        .pointer("/messages")
        .and_then(Value::as_array)
        .and_then(|m| m.last())
        .and_then(|m| m.get("role"))
        .and_then(Value::as_str);
    let after_tool = matches!(last_role, Some("tool" | "function"));
    let choice = if q.honors_tool_choice {
        req.get("tool_choice")
    } else {
        None
    };
    if !tools.is_empty() && !after_tool && choice.and_then(Value::as_str) != Some("none") {
        let named = choice
            .and_then(|c| c.pointer("/function/name"))
            .and_then(Value::as_str);
        let tool = named
            .and_then(|n| {
                tools
                    .iter()
                    .find(|t| t.get("name").and_then(Value::as_str) == Some(n))
            })
            .or(tools.first());
        if let Some(name) = tool.and_then(|t| t.get("name")).and_then(Value::as_str) {
            return Shape::Tool {
                name,
                params: tool.and_then(|t| t.get("parameters")),
            };
        }
    }
    let format = req.get("response_format");
    match format.and_then(|f| f.get("type")).and_then(Value::as_str) {
        Some("json_object") => Shape::JsonObject,
        Some("json_schema") => match format.and_then(|f| f.pointer("/json_schema/schema")) {
            Some(schema) => Shape::JsonSchema(schema),
            None => Shape::JsonObject,
        },
        _ => Shape::Text,
    }
}

pub(super) fn success_headers(out: &mut HeaderMap, rid: &str, took_ms: u128, tokens_asked: u64) {
    put(out, "x-request-id", rid);
    put(out, "openai-processing-ms", took_ms.to_string());
    put(out, "openai-version", "2020-10-01");
    put(out, "x-ratelimit-limit-requests", "10000");
    put(out, "x-ratelimit-limit-tokens", "10000000");
    put(out, "x-ratelimit-remaining-requests", "9999");
    put(
        out,
        "x-ratelimit-remaining-tokens",
        10_000_000u64.saturating_sub(tokens_asked).to_string(),
    );
    put(out, "x-ratelimit-reset-requests", "6ms");
    put(out, "x-ratelimit-reset-tokens", "0s");
}

/// One chat completion being rendered.
struct Chat<'a> {
    q: &'a Quirks,
    id: String,
    model: &'a str,
    created: u64,
    prompt: u32,
    /// Prompt tokens read from the automatic prompt cache.
    cached: u32,
    answer: Answer,
}

impl Chat<'_> {
    fn finish(&self) -> &'static str {
        match self.answer.kind {
            AnswerKind::Tool { .. } => "tool_calls",
            _ if self.answer.truncated => "length",
            _ => "stop",
        }
    }

    fn usage(&self) -> Value {
        let (p, c) = (self.prompt, self.answer.tokens);
        let total = u64::from(p) + u64::from(c);
        if self.q.ollama {
            return json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": total});
        }
        json!({
            "prompt_tokens": p, "completion_tokens": c, "total_tokens": total,
            "prompt_tokens_details": {"cached_tokens": self.cached, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0
            }
        })
    }

    fn body(&self) -> Value {
        let mut message = match &self.answer.kind {
            AnswerKind::Tool { id, name, .. } => json!({
                "role": "assistant", "content": null,
                "tool_calls": [{"id": id, "type": "function",
                    "function": {"name": name, "arguments": self.answer.text}}]
            }),
            _ => json!({"role": "assistant", "content": self.answer.text}),
        };
        let mut choice = json!({"index": 0, "message": null, "finish_reason": self.finish()});
        let mut body = json!({
            "id": self.id, "object": "chat.completion", "created": self.created, "model": self.model
        });
        if !self.q.ollama {
            message["refusal"] = Value::Null;
            message["annotations"] = json!([]);
            choice["logprobs"] = Value::Null;
        }
        choice["message"] = message;
        body["choices"] = json!([choice]);
        body["usage"] = self.usage();
        if !self.q.ollama {
            body["service_tier"] = json!("default");
        }
        body["system_fingerprint"] = json!(self.q.fingerprint);
        body
    }

    fn frames(&self, ex: &SimCall, include_usage: bool) -> Frames {
        let ollama = self.q.ollama;
        let tier = if ollama {
            ""
        } else {
            "\"service_tier\":\"default\","
        };
        let head = format!(
            "{{\"id\":\"{}\",\"object\":\"chat.completion.chunk\",\"created\":{},\"model\":{},\
             {tier}\"system_fingerprint\":\"{}\",\"choices\":",
            self.id,
            self.created,
            quoted(self.model),
            self.q.fingerprint
        );
        let tail = if include_usage && !ollama {
            ",\"usage\":null}"
        } else {
            "}"
        };
        let logprobs = if ollama { "" } else { "\"logprobs\":null," };
        let chunk = |delta: &str, finish: &str| {
            format!(
                "{head}[{{\"index\":0,\"delta\":{delta},{logprobs}\
                 \"finish_reason\":{finish}}}]{tail}"
            )
        };
        let pieces = self.answer.pieces();
        let mut f = Frames::new(ex, pieces.len() + 5);
        let sse = |f: &mut Frames, kind, json: &str| f.push(kind, "data: ", json, "\n\n");
        if ex.fault == Some(Fault::ToolIndex) {
            let delta = r#"{"tool_calls":[{"index":4294967295,"id":"call_hostile","type":"function","function":{"name":"hostile","arguments":""}}]}"#;
            sse(&mut f, Kind::Content, &chunk(delta, "null"));
        }
        match &self.answer.kind {
            AnswerKind::Tool { id, name, .. } if ollama => {
                let function = json!({"name": name, "arguments": self.answer.text});
                let call =
                    json!([{"id": id, "index": 0, "type": "function", "function": function}]);
                let delta =
                    json!({"role": "assistant", "content": "", "tool_calls": call}).to_string();
                sse(&mut f, Kind::Content, &chunk(&delta, "null"));
            }
            AnswerKind::Tool { id, name, .. } => {
                let call = json!({"index": 0, "id": id, "type": "function",
                    "function": {"name": name, "arguments": ""}});
                let first = json!({"role": "assistant", "content": null, "tool_calls": [call],
                    "refusal": null});
                sse(&mut f, Kind::Meta, &chunk(&first.to_string(), "null"));
                for p in &pieces {
                    let delta = format!(
                        "{{\"tool_calls\":[{{\"index\":0,\"function\":{{\"arguments\":{}}}}}]}}",
                        quoted(p)
                    );
                    sse(&mut f, Kind::Content, &chunk(&delta, "null"));
                }
            }
            _ if ollama => {
                for p in &pieces {
                    let delta = format!("{{\"role\":\"assistant\",\"content\":{}}}", quoted(p));
                    sse(&mut f, Kind::Content, &chunk(&delta, "null"));
                }
            }
            _ => {
                sse(
                    &mut f,
                    Kind::Meta,
                    &chunk(
                        "{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null}",
                        "null",
                    ),
                );
                for p in &pieces {
                    sse(
                        &mut f,
                        Kind::Content,
                        &chunk(&format!("{{\"content\":{}}}", quoted(p)), "null"),
                    );
                }
            }
        }
        let last = if ollama {
            "{\"role\":\"assistant\",\"content\":\"\"}"
        } else {
            "{}"
        };
        sse(
            &mut f,
            Kind::Terminal,
            &chunk(last, &format!("\"{}\"", self.finish())),
        );
        if include_usage {
            let usage = format!("{head}[],\"usage\":{}}}", self.usage());
            sse(&mut f, Kind::Terminal, &usage);
        }
        sse(&mut f, Kind::Terminal, "[DONE]");
        f
    }
}
