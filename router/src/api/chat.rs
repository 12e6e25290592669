//! `POST /v1/chat/completions`: OpenAI's endpoint, for any OpenAI SDK unchanged.
//!
//! Admission happens here: read the body under the size limit (413), parse it naming the bad
//! field (400), validate (400). Then `pipeline` does the rest; this file only renders.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use serde_json::error::Category;

use super::{ApiError, routing_headers};
use crate::execute::Primed;
use crate::pipeline::{self, Outcome};
use crate::providers::EventStream;
use crate::state::Gateway;
use crate::types::{ChatRequest, ChunkRenderer, new_id, sse_json};

pub async fn chat_completions(State(gw): State<Arc<Gateway>>, body: Body) -> Response {
    match handle(&gw, body).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn handle(gw: &Gateway, body: Body) -> Result<Response, ApiError> {
    let bytes = read_body(body, gw.config.server.max_body_bytes).await?;
    let request = parse_request(&bytes)?;
    if request.stream {
        let outcome = pipeline::stream(gw, &request).await?;
        Ok(sse_response(outcome, request.include_usage()))
    } else {
        let mut outcome = pipeline::complete(gw, &request).await?;
        // Clients see the model they asked for; the upstream id is in the logs.
        outcome.value.model = outcome.model.to_string();
        let mut response = Json(&outcome.value).into_response();
        routing_headers(
            response.headers_mut(),
            outcome.model.as_str(),
            outcome.provider.as_str(),
            outcome.attempts,
        );
        Ok(response)
    }
}

/// Read the whole body, refusing more than `limit` bytes.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    match axum::body::to_bytes(body, limit).await {
        Ok(b) => Ok(b),
        Err(e) => {
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

/// Parse and validate a chat request; errors name the offending parameter.
pub(crate) fn parse_request(bytes: &[u8]) -> Result<ChatRequest, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let mut request: ChatRequest =
        serde_path_to_error::deserialize(&mut de).map_err(|e| data_error(e, bytes))?;
    de.end().map_err(ApiError::invalid_json)?;
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

/// The SSE answer: the primed head, then the rest of the upstream stream, then `[DONE]` — or,
/// if the upstream breaks, an error event and no `[DONE]`, so no client mistakes a cut answer
/// for a complete one.
fn sse_response(outcome: Outcome<Primed>, include_usage: bool) -> Response {
    let Primed { head, tail } = outcome.value;
    let model = outcome.model.to_string();
    let renderer = ChunkRenderer::new(new_id("chatcmpl-"), model.clone(), include_usage);
    let events: EventStream = Box::pin(futures::stream::iter(head.into_iter().map(Ok)).chain(tail));
    let body = Body::from_stream(render_sse(events, renderer, model));
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    routing_headers(
        headers,
        outcome.model.as_str(),
        outcome.provider.as_str(),
        outcome.attempts,
    );
    response
}

fn render_sse(
    events: EventStream,
    renderer: ChunkRenderer,
    model: String,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send {
    struct St {
        events: EventStream,
        renderer: ChunkRenderer,
        model: String,
        ended: bool,
    }
    let st = St {
        events,
        renderer,
        model,
        ended: false,
    };
    futures::stream::unfold(st, |mut st| async move {
        loop {
            if st.ended {
                return None;
            }
            match st.events.next().await {
                Some(Ok(event)) => {
                    if let Some(frame) = st.renderer.render(&event) {
                        return Some((Ok(frame), st));
                    }
                }
                Some(Err(e)) => {
                    st.ended = true;
                    tracing::warn!(
                        model = %st.model,
                        kind = e.kind.label(),
                        upstream_message = %e.message,
                        "upstream stream broke after the first token"
                    );
                    let err = ApiError::upstream(&st.model, &e);
                    return Some((Ok(sse_json(&err.body())), st));
                }
                None => {
                    st.ended = true;
                    return Some((Ok(ChunkRenderer::done()), st));
                }
            }
        }
    })
}
