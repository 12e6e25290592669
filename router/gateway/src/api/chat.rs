//! `POST /v1/chat/completions`: OpenAI's endpoint, for any OpenAI SDK unchanged.
//!
//! Admission happens here: read the body under the size limit (413), parse it naming the bad
//! field (400), validate (400). Then `pipeline` does the rest; this file only renders.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::Response;
use serde_json::error::Category;

use super::ApiError;
use crate::pipeline::{self};
use crate::state::Gateway;
use switchyard_types::{ChatRequest, ChunkRenderer, new_id};

pub async fn chat_completions(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let gw = &*gw;
    let bytes = read_body(body, gw.config.server.max_body_bytes).await?;
    let request = parse_request(&bytes)?;
    // `model` names a model or a route (`auto`, `cheap`, …).
    let target = super::door_target(&request, &headers);
    if request.stream {
        let routed = pipeline::stream(gw, &request, &target).await?;
        Ok(sse_chunks(routed, request.include_usage(), None, gw))
    } else {
        let mut routed = pipeline::complete(gw, &request, &target).await?;
        // Clients see the model that answered (by its configured name), not the upstream id.
        routed.value.model = routed.model.to_string();
        Ok(super::json_answer(&routed.value, &routed))
    }
}

/// A primed stream as OpenAI chunks.
pub(super) fn sse_chunks(
    routed: pipeline::Routed<crate::execute::Primed>,
    include_usage: bool,
    prelude: Option<Bytes>,
    gw: &Gateway,
) -> Response {
    let model = routed.model.to_string();
    let renderer = ChunkRenderer::new(new_id("chatcmpl-"), model, include_usage);
    super::sse::answer(
        routed,
        super::sse::Chunks(renderer),
        prelude,
        gw.abort.clone(),
    )
}

/// The request's `Cache-Control` header.
pub(crate) fn cache_control(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Read the whole body, refusing more than `limit` bytes.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    match axum::body::to_bytes(body, limit).await {
        Ok(b) => Ok(b),
        Err(e) => {
            if let Some(timeout) = crate::server::BodyTimeout::find(&e) {
                return Err(timeout.answer());
            }
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                Err(ApiError::payload_too_large(limit))
            } else {
                Err(ApiError::invalid_json(format!(
                    "could not read the body: {e}"
                )))
            }
        }
    }
}

/// Read a JSON body under the configured size limit (413) and parse it, naming a bad field (400).
pub(crate) async fn body_json<T: serde::de::DeserializeOwned>(
    gw: &Gateway,
    body: Body,
) -> Result<T, ApiError> {
    let bytes = read_body(body, gw.config.server.max_body_bytes).await?;
    parse_json(&bytes)
}

/// Parse a JSON body into `T`; errors name the offending field.
///
/// The body is read as JSON values first and made to mean what JSON Schema says it means
/// (`super::json::normalise`): a whole number written `9.0` is the integer 9, and a `type` tag
/// is never a number. Then `T` is read from the values, naming the path of what is wrong.
///
/// Most bodies need neither rule: they are read straight into `T` (one pass, no tree of values)
/// when that succeeds, no `type` member holds a number, and no `\u` escape could spell `type`
/// another way. Anything else (a whole float where an integer goes, any error) takes the path
/// above, so every refusal is the one it was. One difference: a whole float inside a member
/// kept as raw JSON (`metadata`, unknown members passed through) stays as the client wrote it.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if !numeric_type_member(bytes)
        && !bytes.windows(2).any(|w| w == b"\\u")
        && let Ok(v) = serde_json::from_slice::<T>(bytes)
    {
        return Ok(v);
    }
    let mut value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(ApiError::invalid_json)?;
    super::json::normalise(&mut value, &mut String::new())
        .map_err(|(param, message)| ApiError::invalid_param(param, message))?;
    serde_path_to_error::deserialize(value).map_err(|e| data_error(e, bytes))
}

/// Whether the text has a `"type"` key whose value starts like a number (over-approximated:
/// also inside strings, which only sends such a body down the slower, exact path).
fn numeric_type_member(bytes: &[u8]) -> bool {
    const KEY: &[u8] = b"\"type\"";
    let mut rest = bytes;
    while let Some(at) = rest.windows(KEY.len()).position(|w| w == KEY) {
        rest = &rest[at + KEY.len()..];
        let mut after = rest.iter().skip_while(|b| b.is_ascii_whitespace()).copied();
        if after.next() == Some(b':')
            && after
                .find(|b| !b.is_ascii_whitespace())
                .is_some_and(|b| b == b'-' || b.is_ascii_digit())
        {
            return true;
        }
    }
    false
}

/// Parse and validate a chat request; errors name the offending parameter.
pub(crate) fn parse_request(bytes: &[u8]) -> Result<ChatRequest, ApiError> {
    let mut request: ChatRequest = parse_json(bytes)?;
    request.normalise();
    request
        .validate()
        .map_err(|(param, message)| ApiError::invalid_param(param, message))?;
    Ok(request)
}

fn data_error(e: serde_path_to_error::Error<serde_json::Error>, bytes: &[u8]) -> ApiError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    if inner.classify() != Category::Data {
        return ApiError::invalid_json(inner);
    }
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return ApiError::invalid_param("body", "must be a JSON object");
    }
    // serde_json appends " at line L column C": useful for syntax, noise for a named field.
    let text = inner.to_string();
    let text = text.split(" at line ").next().unwrap_or(&text).to_owned();
    let join = |name: &str| {
        if path == "." {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        }
    };
    if let Some(rest) = text.strip_prefix("missing field `") {
        let name = rest.trim_end_matches('`');
        return ApiError::invalid_param(join(name), "is required");
    }
    let message = if text.starts_with("data did not match any variant") {
        "has an unsupported shape".to_owned()
    } else {
        text
    };
    ApiError::invalid_param(if path == "." { "body".into() } else { path }, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_numeric_type_member_is_found_wherever_it_is() {
        assert!(numeric_type_member(br#"{"type":0}"#));
        assert!(numeric_type_member(br#"{"a":[{"type" :  -1}]}"#));
        assert!(numeric_type_member(b"{\"x\":1,\"type\"\n:\t7}"));
        assert!(!numeric_type_member(br#"{"type":"text","n":0}"#));
        assert!(!numeric_type_member(br#"{"types":0,"type_":1}"#));
    }

    #[test]
    fn the_one_pass_read_refuses_what_the_exact_path_refuses() {
        let ok = br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":9}"#;
        assert_eq!(parse_request(ok).unwrap().max_tokens, Some(9));
        // A whole float for an integer: the exact path makes it 9.
        let float =
            br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":9.0}"#;
        assert_eq!(parse_request(float).unwrap().max_tokens, Some(9));
        // A numeric `type`, plain or spelt with an escape, is refused naming it.
        for body in [
            &br#"{"model":"m","messages":[{"role":"user","content":[{"type":0,"text":"x"}]}]}"#[..],
            &br#"{"model":"m","messages":[{"role":"user","content":[{"\u0074ype":0,"text":"x"}]}]}"#[..],
        ] {
            let e = parse_request(body).unwrap_err();
            assert_eq!(e.param.as_deref(), Some("messages[0].content[0].type"), "{e:?}");
        }
    }
}
