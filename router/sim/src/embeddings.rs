//! Embeddings on the simulated wire formats: OpenAI's and Ollama's `/v1/embeddings` (one shape,
//! OpenAI's), Gemini's `:embedContent` and `:batchEmbedContents`. Each request is an exchange
//! like a chat one (`Sim::begin`): counted, its latency sampled (ttft; no output tokens) and
//! its faults drawn, so routes can fail over on embeddings too.
//!
//! Vectors are deterministic: seeded from the model and the input text only (not the sim's
//! seed), unit length, with the length asked for or the model's default (`default_length`).
//! A shorter vector is the longer one's prefix, renormalised, as Matryoshka models shorten.
//! Usage is the sim's own estimate of the inputs: ceil(chars / 4) per text input (at least 1),
//! one per token of a token-array input.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use base64::Engine as _;
use bytes::Bytes;
use http::HeaderMap;
use serde_json::Value;

use super::Sim;
use super::call::{Reject, SimCall};
use super::openai::{OLLAMA, OPENAI, Quirks, admit, begin, success_headers};
use super::openai_errors::error;
use super::profile::{Fault, SplitMix64, fnv1a, mix};
use super::text::count_u32;

/// OpenAI's limit on inputs per request.
const MAX_INPUTS: usize = 2048;
/// Gemini's limit on requests per `batchEmbedContents`.
const MAX_BATCH: usize = 100;
const INVALID_INPUT: &str = "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.";

/// The vector length `model` gives when none is asked for.
pub(crate) fn default_length(model: &str) -> u32 {
    let model = model.strip_prefix("models/").unwrap_or(model);
    match model {
        "text-embedding-3-large" => 3072,
        "text-embedding-3-small" | "text-embedding-ada-002" => 1536,
        "text-embedding-004" | "embedding-001" => 768,
        m if m.starts_with("gemini-embedding") => 3072,
        m if m.starts_with("nomic-embed-text") => 768,
        m if m.starts_with("mxbai-embed-large") => 1024,
        m if m.starts_with("all-minilm") => 384,
        _ => 1536,
    }
}

/// The unit vector of `text` under `model`, `length` long.
pub(crate) fn vector(model: &str, text: &str, length: u32) -> Vec<f32> {
    let mut rng = SplitMix64::new(mix(fnv1a(model) ^ mix(fnv1a(text))));
    let raw: Vec<f64> = (0..length).map(|_| rng.normal()).collect();
    let norm = raw.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm == 0.0 || !norm.is_finite() {
        let mut unit = vec![0.0; raw.len()];
        if let Some(first) = unit.first_mut() {
            *first = 1.0;
        }
        return unit;
    }
    raw.iter().map(|x| (x / norm) as f32).collect()
}

/// The sim's token estimate of one text input.
fn text_tokens(text: &str) -> u32 {
    count_u32(text.chars().count().div_ceil(4).max(1))
}

// ---------------------------------------------------------------------------------------------
// OpenAI and Ollama: POST /v1/embeddings

pub(super) async fn embeddings_openai(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    openai_format(&sim, &OPENAI, &headers, &body).await
}

pub(super) async fn embeddings_ollama(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    openai_format(&sim, &OLLAMA, &headers, &body).await
}

/// One input of an OpenAI embeddings request: text, or tokens (the JSON text of the array seeds
/// its vector).
struct Input {
    seed: String,
    tokens: u32,
}

fn openai_inputs(input: Option<&Value>) -> Result<Vec<Input>, Reject> {
    let invalid = || Reject::param(INVALID_INPUT, "input", "invalid_value");
    let text = |s: &str| {
        if s.is_empty() {
            Err(invalid())
        } else {
            Ok(Input {
                seed: s.to_owned(),
                tokens: text_tokens(s),
            })
        }
    };
    let tokens = |t: &[Value]| {
        if t.is_empty() || !t.iter().all(|n| n.as_u64().is_some()) {
            Err(invalid())
        } else {
            Ok(Input {
                seed: Value::Array(t.to_vec()).to_string(),
                tokens: count_u32(t.len()),
            })
        }
    };
    match input {
        None | Some(Value::Null) => Err(Reject::param(
            "'input' is a required property",
            "input",
            "missing_required_parameter",
        )),
        Some(Value::String(s)) => Ok(vec![text(s)?]),
        Some(Value::Array(items)) if items.is_empty() || items.len() > MAX_INPUTS => Err(invalid()),
        Some(Value::Array(items)) if items.iter().all(Value::is_number) => Ok(vec![tokens(items)?]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => text(s),
                Value::Array(t) => tokens(t),
                _ => Err(invalid()),
            })
            .collect(),
        Some(_) => Err(invalid()),
    }
}

/// The vector length asked for (`dimensions`), checked against the model.
fn openai_length(q: &Quirks, model: &str, req: &Value) -> Result<u32, Reject> {
    let default = default_length(model);
    let Some(asked) = req.get("dimensions").filter(|v| !v.is_null()) else {
        return Ok(default);
    };
    if !q.ollama && !model.starts_with("text-embedding-3") {
        return Err(Reject::param(
            "This model does not support specifying dimensions.",
            "dimensions",
            "invalid_value",
        ));
    }
    match asked.as_i64() {
        Some(n) if n < 1 => Err(Reject::param(
            format!(
                "Invalid 'dimensions': integer below minimum value. Expected a value >= 1, but \
                 got {n} instead."
            ),
            "dimensions",
            "integer_below_min_value",
        )),
        Some(n) if n > i64::from(default) => Err(Reject::param(
            format!(
                "Invalid 'dimensions': integer above maximum value. Expected a value <= \
                 {default}, but got {n} instead."
            ),
            "dimensions",
            "integer_above_max_value",
        )),
        Some(n) => Ok(u32::try_from(n).unwrap_or(default)),
        None => Err(Reject::param(
            "Invalid type for 'dimensions': expected an integer.",
            "dimensions",
            "invalid_type",
        )),
    }
}

fn base64_encoding(req: &Value) -> Result<bool, Reject> {
    match req.get("encoding_format") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::String(s)) if s == "float" => Ok(false),
        Some(Value::String(s)) if s == "base64" => Ok(true),
        Some(other) => Err(Reject::param(
            format!(
                "Invalid value: {other}. Supported values are: 'float' and 'base64'.",
                other = other
                    .as_str()
                    .map_or_else(|| other.to_string(), str::to_owned)
            ),
            "encoding_format",
            "invalid_value",
        )),
    }
}

fn base64_vector(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

async fn openai_format(sim: &Sim, q: &Quirks, headers: &HeaderMap, body: &[u8]) -> Response {
    let (req, model) = match admit(sim, q, headers, body) {
        Ok(r) => r,
        Err(refused) => return *refused,
    };
    let model = model.as_str();
    let checked = openai_inputs(req.get("input")).and_then(|inputs| {
        let length = openai_length(q, model, &req)?;
        Ok((inputs, length, base64_encoding(&req)?))
    });
    let (inputs, length, base64) = match checked {
        Ok(c) => c,
        Err(r) => {
            sim.count_rejected(model);
            return error(q, &r, model, &sim.loose_id(), 0);
        }
    };
    let mut ex = match begin(sim, q, model, headers) {
        Ok(ex) => ex,
        Err(refused) => return *refused,
    };
    let rid = format!("req_{}", ex.hex(32));
    let prompt = inputs.iter().fold(0u32, |n, i| n.saturating_add(i.tokens));
    let ex = match early(ex, headers).await {
        Ok(ex) => ex,
        Err(Early::Fault(f)) => return error(q, &Reject::Fault(f), model, &rid, prompt),
        Err(Early::Answered(r)) => return r,
    };
    let data: Vec<Item> = inputs
        .iter()
        .enumerate()
        .map(|(index, input)| {
            let v = vector(model, &input.seed, length);
            let embedding = if base64 {
                Embedding::Base64(base64_vector(&v))
            } else {
                Embedding::Floats(v)
            };
            Item {
                object: "embedding",
                index,
                embedding,
            }
        })
        .collect();
    let list = List {
        object: "list",
        data,
        model,
        usage: ListUsage {
            prompt_tokens: prompt,
            total_tokens: prompt,
        },
    };
    let body = serde_json::to_string(&list).unwrap_or_default();
    let mut out = HeaderMap::new();
    if !q.ollama {
        success_headers(&mut out, &rid, ex.ttft.as_millis(), u64::from(prompt));
    }
    match ex.unary(body, 0, out).await {
        Some(resp) => resp,
        None => error(q, &Reject::Fault(Fault::Unavailable), model, &rid, prompt),
    }
}

// Answers are serialised from these (not `json!`) so that floats print as f32s, as the APIs
// print them: `-0.0069292835`, not the f64 expansion of that f32.

#[derive(serde::Serialize)]
struct List<'a> {
    object: &'static str,
    data: Vec<Item>,
    model: &'a str,
    usage: ListUsage,
}

#[derive(serde::Serialize)]
struct Item {
    object: &'static str,
    index: usize,
    embedding: Embedding,
}

#[derive(serde::Serialize)]
#[serde(untagged)]
enum Embedding {
    Floats(Vec<f32>),
    Base64(String),
}

#[derive(serde::Serialize)]
struct ListUsage {
    prompt_tokens: u32,
    total_tokens: u32,
}

#[derive(serde::Serialize)]
struct Values {
    values: Vec<f32>,
}

#[derive(serde::Serialize)]
struct Batch {
    embeddings: Vec<Values>,
}

#[derive(serde::Serialize)]
struct Single {
    embedding: Option<Values>,
}

/// How an exchange ends before its answer is built.
enum Early {
    /// An HTTP-error fault, or `hang` ended by shutdown (answered 503).
    Fault(Fault),
    /// `redirect`.
    Answered(Response),
}

/// The faults that answer before any vector is computed: HTTP errors, `redirect`, `hang`. The
/// others (`reset`, `cut`, `malformed`, `endless`, `big-event`) shape the body in `unary`.
async fn early(ex: SimCall, headers: &HeaderMap) -> Result<SimCall, Early> {
    if let Some(f) = ex.fault.and_then(|f| f.http_error(false)) {
        return Err(Early::Fault(f));
    }
    if let Some(r) = ex.redirect(headers) {
        return Err(Early::Answered(r));
    }
    if ex.fault == Some(Fault::Hang) {
        ex.hang().await;
        return Err(Early::Fault(Fault::Unavailable));
    }
    Ok(ex)
}

// ---------------------------------------------------------------------------------------------
// Gemini: POST /gemini/v1beta/models/{model}:embedContent | :batchEmbedContents

/// The text of an `EmbedContentRequest`, and its vector length; `at` names it in errors.
fn gemini_request(model: &str, req: &Value, at: &str) -> Result<(String, u32), Reject> {
    let parts = req
        .pointer("/content/parts")
        .and_then(Value::as_array)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| Reject::invalid(format!("* {at}.content: content is not specified\n")))?;
    let text: String = parts
        .iter()
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect();
    if text.is_empty() {
        return Err(Reject::invalid(format!(
            "* {at}.content.parts[0].data: required oneof field 'data' must have one \
             initialized field\n"
        )));
    }
    let default = default_length(model);
    let length = match req.get("outputDimensionality") {
        None | Some(Value::Null) => default,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=u64::from(default)).contains(&n) => u32::try_from(n).unwrap_or(default),
            _ => {
                return Err(Reject::invalid(format!(
                    "* {at}.output_dimensionality: must be between 1 and {default}\n"
                )));
            }
        },
    };
    Ok((text, length))
}

pub(super) async fn gemini(
    sim: &Sim,
    model: &str,
    method: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    use super::gemini::{error, query_param};
    if !headers.contains_key("x-goog-api-key") && query_param(query, "key").is_none() {
        return error(&Reject::NoAuth, model, 0);
    }
    let req = match serde_json::from_slice::<Value>(body) {
        Ok(v) if v.is_object() => v,
        _ => {
            return error(
                &Reject::invalid("Invalid JSON payload received. Expected a JSON object."),
                model,
                0,
            );
        }
    };
    let batch = method == "batchEmbedContents";
    let checked = if batch {
        gemini_batch(model, &req)
    } else {
        gemini_request(model, &req, "EmbedContentRequest").map(|one| vec![one])
    };
    let inputs = match checked {
        Ok(inputs) => inputs,
        Err(r) => {
            sim.count_rejected(model);
            return error(&r, model, 0);
        }
    };
    let ex = match sim.begin(model, headers) {
        Ok(ex) => ex,
        Err(msg) => {
            sim.count_rejected(model);
            return error(&Reject::invalid(msg), model, 0);
        }
    };
    let prompt = inputs
        .iter()
        .fold(0u32, |n, (text, _)| n.saturating_add(text_tokens(text)));
    let ex = match early(ex, headers).await {
        Ok(ex) => ex,
        Err(Early::Fault(f)) => return error(&Reject::Fault(f), model, prompt),
        Err(Early::Answered(r)) => return r,
    };
    let values = |(text, length): &(String, u32)| Values {
        values: vector(model, text, *length),
    };
    let body = if batch {
        let embeddings: Vec<Values> = inputs.iter().map(values).collect();
        serde_json::to_string(&Batch { embeddings })
    } else {
        let embedding = inputs.first().map(values);
        serde_json::to_string(&Single { embedding })
    };
    match ex
        .unary(body.unwrap_or_default(), 0, HeaderMap::new())
        .await
    {
        Some(resp) => resp,
        None => error(&Reject::Fault(Fault::Unavailable), model, prompt),
    }
}

fn gemini_batch(model: &str, req: &Value) -> Result<Vec<(String, u32)>, Reject> {
    let requests = req
        .get("requests")
        .and_then(Value::as_array)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| {
            Reject::invalid("* BatchEmbedContentsRequest.requests: requests is not specified\n")
        })?;
    if requests.len() > MAX_BATCH {
        return Err(Reject::invalid(format!(
            "* BatchEmbedContentsRequest.requests: at most {MAX_BATCH} requests can be in one \
             batch\n"
        )));
    }
    let path_model = format!("models/{model}");
    requests
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let at = format!("BatchEmbedContentsRequest.requests[{i}]");
            match r.get("model").and_then(Value::as_str) {
                Some(m) if m == path_model => {}
                _ => {
                    return Err(Reject::invalid(format!(
                        "* {at}.model: the model of every request must be the model of the \
                         batch ({path_model})\n"
                    )));
                }
            }
            gemini_request(model, r, &at)
        })
        .collect()
}
