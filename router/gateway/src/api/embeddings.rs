//! `POST /v1/embeddings`: OpenAI's embeddings endpoint, routed among embedding models of one
//! vector length (`dimensions`, or the route's first model's), cached, budgeted and logged by
//! the one pipeline. Each input is one user message of the hub request; the providers call
//! OpenAI's, Gemini's (`batchEmbedContents`) or an OpenAI-compatible server's embeddings API.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiError;
use super::chat::read_body;
use crate::pipeline::{self};
use crate::state::Gateway;
use switchyard_types::{ChatRequest, EmbedSpec, Message, Role};

/// The most inputs one request may carry (OpenAI's limit).
pub const MAX_INPUTS: usize = 2048;

#[derive(Debug, Deserialize)]
struct EmbeddingsRequest {
    model: String,
    input: Value,
    #[serde(default)]
    dimensions: Option<u32>,
    #[serde(default)]
    encoding_format: Option<Encoding>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default, deserialize_with = "switchyard_types::strict::object")]
    cache: Option<switchyard_types::cache_control::CacheRequest>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Encoding {
    Float,
    Base64,
}

fn bad(param: impl Into<String>, message: impl std::fmt::Display) -> ApiError {
    ApiError::invalid_param(param, message)
}

/// The inputs as texts: a string, or 1..=2048 non-empty strings. Token-id arrays are refused:
/// they are ids of one provider's tokenizer, meaningless to the others a route may pick.
fn inputs(input: Value) -> Result<Vec<String>, ApiError> {
    let token_ids = || {
        bad(
            "input",
            "token-id inputs are not supported (token ids belong to one provider's tokenizer); \
             send the text",
        )
    };
    let texts = match input {
        Value::String(s) => vec![s],
        Value::Array(items) => {
            if items.is_empty() {
                return Err(bad("input", "must contain at least one input"));
            }
            if items.len() > MAX_INPUTS {
                return Err(bad(
                    "input",
                    format!("at most {MAX_INPUTS} inputs, got {}", items.len()),
                ));
            }
            let mut texts = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                match item {
                    Value::String(s) => texts.push(s),
                    Value::Number(_) | Value::Array(_) => return Err(token_ids()),
                    _ => return Err(bad(format!("input[{i}]"), "must be a string")),
                }
            }
            texts
        }
        _ => return Err(bad("input", "must be a string or an array of strings")),
    };
    if let Some(i) = texts.iter().position(|t| t.is_empty()) {
        let param = if texts.len() == 1 {
            "input".to_owned()
        } else {
            format!("input[{i}]")
        };
        return Err(bad(param, "must not be empty"));
    }
    Ok(texts)
}

pub async fn create(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let gw = &*gw;
    let bytes = read_body(body, gw.config.server.max_body_bytes).await?;
    let r: EmbeddingsRequest = super::chat::parse_json(&bytes)?;
    if r.model.trim().is_empty() {
        return Err(bad("model", "must not be empty"));
    }
    if let Some(d) = r.dimensions
        && !(1..=65_536).contains(&d)
    {
        return Err(bad("dimensions", format!("{d} is out of range [1, 65536]")));
    }
    let base64 = r.encoding_format == Some(Encoding::Base64);
    let messages = inputs(r.input)?
        .into_iter()
        .map(|t| Message::new(Role::User, t))
        .collect();
    // Without `dimensions`, the length is the named model's (a route: its first model's), and
    // every model asked outputs that length, whichever answers.
    let dimensions = r.dimensions.or_else(|| default_length(gw, &r.model));
    let mut hub = ChatRequest::new(r.model, messages);
    hub.user = r.user;
    hub.cache = r.cache;
    hub.embed = Some(EmbedSpec { dimensions, base64 });
    let target = super::door_target(&hub, &headers);
    let routed = pipeline::complete(gw, &hub, &target).await?;
    let vectors = routed.value.embeddings.as_deref().unwrap_or_default();
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(index, v)| {
            let embedding = if base64 { json!(encode(v)) } else { json!(v) };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let usage = &routed.value.usage;
    let body = json!({
        "object": "list",
        "data": data,
        "model": routed.model.as_str(),
        "usage": {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.prompt_tokens},
    });
    Ok(super::json_answer(body, &routed))
}

/// The default vector length of a model, or of a route's first embedding model.
fn default_length(gw: &Gateway, name: &str) -> Option<u32> {
    let first = |id: &str| {
        gw.model(id)
            .and_then(|m| m.entry.dimensions.first().copied())
    };
    match gw.config.routes.get(name) {
        Some(route) => route.models.iter().find_map(|m| first(m.as_str())),
        None => first(name),
    }
}

/// OpenAI's base64 encoding: the vector's little-endian f32 bytes.
fn encode(v: &[f32]) -> String {
    let mut bytes = Vec::with_capacity(v.len() * 4);
    for x in v {
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_texts_and_bounded() {
        assert_eq!(inputs(json!("a")).unwrap(), vec!["a"]);
        assert_eq!(inputs(json!(["a", "b"])).unwrap(), vec!["a", "b"]);
        for (input, param) in [
            (json!([]), "input"),
            (json!(""), "input"),
            (json!(["a", ""]), "input[1]"),
            (json!([1, 2, 3]), "input"),
            (json!([[1, 2]]), "input"),
            (json!([{"text": "a"}]), "input[0]"),
            (json!(7), "input"),
        ] {
            let e = inputs(input.clone()).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{input}");
        }
        let many: Vec<Value> = (0..=MAX_INPUTS).map(|_| json!("x")).collect();
        assert!(inputs(Value::Array(many)).is_err());
    }

    #[test]
    fn base64_is_little_endian_f32() {
        let text = encode(&[1.0, -2.5]);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap();
        assert_eq!(bytes.len(), 8);
        assert_eq!(f32::from_le_bytes(bytes[0..4].try_into().unwrap()), 1.0);
        assert_eq!(f32::from_le_bytes(bytes[4..8].try_into().unwrap()), -2.5);
    }
}
