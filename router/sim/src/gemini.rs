//! Gemini generateContent / streamGenerateContent (`/gemini/v1beta/models/{model}:{method}`):
//! key check, validation, answers (text, functionCall, JSON mode), `data:` frames ended by
//! `\r\n\r\n` with no `[DONE]` (or a JSON array without `alt=sse`), google.rpc.Status errors.
//! `:embedContent` and `:batchEmbedContents` on the same path are answered by `embeddings.rs`.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::Sim;
use super::call::{Answer, AnswerKind, Reject, Shape, SimCall};
use super::playback::{Frame, Frames, Kind};
use super::profile::Fault;
use super::text::prompt_tokens;
use super::wire::{json_response, uint};

const CONTEXT_WINDOW: u64 = 1_048_576;

/// How a stream is framed: SSE with `alt=sse`, else one JSON array delivered incrementally.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    Sse,
    Array,
}

impl Framing {
    fn head(self, first: bool) -> &'static str {
        match (self, first) {
            (Framing::Sse, _) => "data: ",
            (Framing::Array, true) => "[",
            (Framing::Array, false) => ",\r\n",
        }
    }

    fn tail(self) -> &'static str {
        match self {
            Framing::Sse => "\r\n\r\n",
            Framing::Array => "",
        }
    }
}

pub(super) fn query_param<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then_some(v)
    })
}

pub(super) async fn generate(
    State(sim): State<Arc<Sim>>,
    Path(rest): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (model, method) = rest.rsplit_once(':').unwrap_or((rest.as_str(), ""));
    if matches!(method, "embedContent" | "batchEmbedContents") {
        let q = query.as_deref();
        return super::embeddings::gemini(&sim, model, method, q, &headers, &body).await;
    }
    let framing = match method {
        "generateContent" => None,
        "streamGenerateContent" if query_param(query.as_deref(), "alt") == Some("sse") => {
            Some(Framing::Sse)
        }
        "streamGenerateContent" => Some(Framing::Array),
        _ => return error(&Reject::Fault(Fault::NotFound), model, 0),
    };
    if !headers.contains_key("x-goog-api-key") && query_param(query.as_deref(), "key").is_none() {
        return error(&Reject::NoAuth, model, 0);
    }
    let req = match serde_json::from_slice::<Value>(&body) {
        Ok(v) if v.is_object() => v,
        _ => {
            return error(
                &Reject::invalid("Invalid JSON payload received. Expected a JSON object."),
                model,
                0,
            );
        }
    };
    if let Err(r) = validate(&req) {
        sim.count_rejected(model);
        return error(&r, model, 0);
    }
    let mut ex = match sim.begin(model, &headers) {
        Ok(ex) => ex,
        Err(msg) => {
            sim.count_rejected(model);
            return error(&Reject::invalid(msg), model, 0);
        }
    };
    let contents = req
        .get("contents")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let prompt = prompt_tokens(req.get("systemInstruction"), contents);
    if let Some(f) = ex.fault.and_then(|f| f.http_error(framing.is_some())) {
        return error(&Reject::Fault(f), model, prompt);
    }
    if let Some(r) = ex.redirect(&headers) {
        return r;
    }
    if ex.fault == Some(Fault::Hang) {
        ex.hang().await;
        return error(&Reject::Fault(Fault::Unavailable), model, prompt);
    }
    let max = uint(req.pointer("/generationConfig/maxOutputTokens")).filter(|n| *n > 0);
    let answer = ex.answer(shape(&req, contents), max, "");
    let reply = Reply {
        id: ex.hex(22),
        model,
        prompt,
        answer,
    };
    match framing {
        Some(framing) => {
            let frames = reply.frames(&ex, framing);
            let err = || {
                let json =
                    json!({"error": {"code": 503, "message": OVERLOADED, "status": "UNAVAILABLE"}});
                Frame::new(framing.head(false), &json.to_string(), framing.tail())
            };
            let content_type = match framing {
                Framing::Sse => "text/event-stream",
                Framing::Array => "application/json; charset=UTF-8",
            };
            ex.stream(frames, err, content_type, HeaderMap::new())
        }
        None => {
            let tokens = reply.answer.tokens;
            let body = reply.body().to_string();
            match ex.unary(body, tokens, HeaderMap::new()).await {
                Some(resp) => resp,
                None => error(&Reject::Fault(Fault::Unavailable), model, prompt),
            }
        }
    }
}

fn validate(req: &Value) -> Result<(), Reject> {
    let contents = match req.get("contents") {
        Some(Value::Array(c)) if !c.is_empty() => c,
        _ => {
            return Err(Reject::invalid(
                "* GenerateContentRequest.contents: contents is not specified\n",
            ));
        }
    };
    for (i, c) in contents.iter().enumerate() {
        if let Some(role) = c.get("role").and_then(Value::as_str)
            && !matches!(role, "user" | "model" | "function")
        {
            return Err(Reject::invalid("Please use a valid role: user, model."));
        }
        if c.get("parts")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
        {
            return Err(Reject::invalid(format!(
                "* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.\n"
            )));
        }
    }
    Ok(())
}

/// functionCall when functions are declared, calling is not NONE and the last turn is not a
/// functionResponse; else JSON per `responseMimeType`; else text.
fn shape<'a>(req: &'a Value, contents: &[Value]) -> Shape<'a> {
    let decls: Vec<&Value> = req
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.get("functionDeclarations").and_then(Value::as_array))
        .flatten()
        .collect();
    let after_tool = contents
        .last()
        .and_then(|c| c.get("parts"))
        .and_then(Value::as_array)
        .is_some_and(|parts| parts.iter().any(|p| p.get("functionResponse").is_some()));
    let config = req.pointer("/toolConfig/functionCallingConfig");
    let mode = config
        .and_then(|c| c.get("mode"))
        .and_then(Value::as_str)
        .unwrap_or("AUTO");
    if !decls.is_empty() && !after_tool && !mode.eq_ignore_ascii_case("NONE") {
        let allowed = config
            .and_then(|c| c.get("allowedFunctionNames"))
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_str);
        let decl = allowed
            .and_then(|n| {
                decls
                    .iter()
                    .find(|d| d.get("name").and_then(Value::as_str) == Some(n))
            })
            .or(decls.first());
        if let Some(name) = decl.and_then(|d| d.get("name")).and_then(Value::as_str) {
            let params = decl.and_then(|d| {
                d.get("parameters")
                    .or_else(|| d.get("parametersJsonSchema"))
            });
            return Shape::Tool { name, params };
        }
    }
    let config = req.get("generationConfig");
    let mime = config
        .and_then(|c| c.get("responseMimeType"))
        .and_then(Value::as_str);
    if mime == Some("application/json") {
        let schema = config.and_then(|c| {
            c.get("responseSchema")
                .or_else(|| c.get("responseJsonSchema"))
        });
        return schema.map_or(Shape::JsonObject, Shape::JsonSchema);
    }
    Shape::Text
}

/// One response being rendered.
struct Reply<'a> {
    id: String,
    model: &'a str,
    prompt: u32,
    answer: Answer,
}

impl Reply<'_> {
    fn finish_reason(&self) -> &'static str {
        if self.answer.truncated {
            "MAX_TOKENS"
        } else {
            "STOP"
        }
    }

    /// Complete usage, or (mid-stream) the prompt part only.
    fn usage(&self, complete: bool) -> Value {
        let p = self.prompt;
        let details = json!([{"modality": "TEXT", "tokenCount": p}]);
        if !complete {
            return json!({
                "promptTokenCount": p, "totalTokenCount": p, "promptTokensDetails": details
            });
        }
        let c = self.answer.tokens;
        json!({
            "promptTokenCount": p, "candidatesTokenCount": c,
            "totalTokenCount": u64::from(p) + u64::from(c), "promptTokensDetails": details
        })
    }

    fn part(&self, text: &str) -> Value {
        match &self.answer.kind {
            AnswerKind::Tool { name, args, .. } => {
                json!({"functionCall": {"name": name, "args": args}})
            }
            _ => json!({"text": text}),
        }
    }

    fn response(&self, part: Value, last: bool) -> Value {
        let mut candidate = json!({"content": {"parts": [part], "role": "model"}});
        if last {
            candidate["finishReason"] = json!(self.finish_reason());
        }
        candidate["index"] = json!(0);
        json!({
            "candidates": [candidate], "usageMetadata": self.usage(last),
            "modelVersion": self.model, "responseId": self.id
        })
    }

    fn body(&self) -> Value {
        self.response(self.part(&self.answer.text), true)
    }

    fn frames(&self, ex: &SimCall, framing: Framing) -> Frames {
        let pieces = match self.answer.kind {
            AnswerKind::Tool { .. } => vec![""],
            _ => self.answer.pieces(),
        };
        let mut f = Frames::new(ex, pieces.len() + 2);
        // No index on Gemini's wire: the hostile stream makes more calls than any answer may.
        let hostile = ex.fault == Some(Fault::ToolIndex);
        if hostile {
            let call = json!({"functionCall": {"name": "hostile", "args": {}}});
            let parts = vec![call; 1024];
            let frame = json!({"candidates": [{"content": {"parts": parts, "role": "model"}}]});
            f.push(
                Kind::Content,
                framing.head(true),
                &frame.to_string(),
                framing.tail(),
            );
        }
        let n = pieces.len().max(1);
        for i in 0..n {
            let last = i + 1 == n;
            let json = self
                .response(self.part(pieces.get(i).copied().unwrap_or("")), last)
                .to_string();
            let kind = if last {
                Kind::ContentTerminal
            } else {
                Kind::Content
            };
            f.push(
                kind,
                framing.head(i == 0 && !hostile),
                &json,
                framing.tail(),
            );
        }
        if framing == Framing::Array {
            f.push(Kind::Terminal, "]", "", "");
        }
        f
    }
}

const OVERLOADED: &str = "The model is overloaded. Please try again later.";
const NO_KEY: &str = "Method doesn't allow unregistered callers (callers without established \
    identity). Please use API Key or other form of API consumer identity to call this API.";
const BAD_CREDENTIALS: &str = "Request had invalid authentication credentials. Expected OAuth 2 \
    access token, login cookie or other valid authentication credential. See \
    https://developers.google.com/identity/sign-in/web/devconsole-project.";
const QUOTA: &str = "You exceeded your current quota, please check your plan and billing \
    details. For more information on this error, head to: \
    https://ai.google.dev/gemini-api/docs/rate-limits.";
const INTERNAL: &str = "An internal error has occurred. Please retry or report in \
    https://developers.generativeai.google/guide/troubleshooting";

fn retry_info(secs: u32) -> Value {
    json!({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": format!("{secs}s")})
}

fn quota_failure(model: &str, quota_id: &str, metric: &str, value: &str) -> Value {
    json!({"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
        "quotaMetric": format!("generativelanguage.googleapis.com/{metric}"), "quotaId": quota_id,
        "quotaDimensions": {"location": "global", "model": model}, "quotaValue": value}]})
}

/// A google.rpc.Status error body: `{"error":{"code","message","status","details"}}`.
pub(super) fn error(r: &Reject, model: &str, prompt: u32) -> Response {
    let mut details = Vec::new();
    let (code, status, message): (u16, &str, String) = match r {
        Reject::Invalid { message, .. } => (400, "INVALID_ARGUMENT", message.clone()),
        Reject::NoAuth => (403, "PERMISSION_DENIED", NO_KEY.into()),
        Reject::Fault(f) => match f {
            Fault::BadRequest => (
                400,
                "INVALID_ARGUMENT",
                "Request contains an invalid argument.".into(),
            ),
            Fault::Unauthorized => (401, "UNAUTHENTICATED", BAD_CREDENTIALS.into()),
            Fault::Forbidden => (
                403,
                "PERMISSION_DENIED",
                "The caller does not have permission".into(),
            ),
            Fault::NotFound => {
                let message = format!(
                    "models/{model} is not found for API version v1beta, or is not supported for \
                     generateContent. Call ListModels to see the list of available models and \
                     their supported methods."
                );
                (404, "NOT_FOUND", message)
            }
            Fault::RateLimited { retry_after_secs } => {
                let id = "GenerateRequestsPerMinutePerProjectPerModel";
                details.push(quota_failure(
                    model,
                    id,
                    "generate_content_requests",
                    "2000",
                ));
                details.push(retry_info(*retry_after_secs));
                (
                    429,
                    "RESOURCE_EXHAUSTED",
                    "Resource has been exhausted (e.g. check quota).".into(),
                )
            }
            Fault::Quota => {
                let id = "GenerateRequestsPerDayPerProjectPerModel-FreeTier";
                details.push(quota_failure(
                    model,
                    id,
                    "generate_content_free_tier_requests",
                    "250",
                ));
                details.push(retry_info(22));
                (429, "RESOURCE_EXHAUSTED", QUOTA.into())
            }
            Fault::ContextLength => {
                let tokens = CONTEXT_WINDOW + u64::from(prompt);
                let message = format!(
                    "The input token count ({tokens}) exceeds the maximum number of tokens \
                     allowed ({CONTEXT_WINDOW})."
                );
                (400, "INVALID_ARGUMENT", message)
            }
            Fault::BadGateway => (502, "UNAVAILABLE", "Bad Gateway".into()),
            Fault::Unavailable | Fault::Overloaded => (503, "UNAVAILABLE", OVERLOADED.into()),
            Fault::GatewayTimeout => {
                let message = "Deadline expired before operation could complete.";
                (504, "DEADLINE_EXCEEDED", message.into())
            }
            _ => (500, "INTERNAL", INTERNAL.into()),
        },
    };
    let body =
        json!({"error": {"code": code, "message": message, "status": status, "details": details}});
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, body.to_string(), HeaderMap::new())
}
