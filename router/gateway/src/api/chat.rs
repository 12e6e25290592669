//! `POST /v1/chat/completions`: OpenAI's endpoint, for any OpenAI SDK unchanged.
//!
//! Admission happens here: read the body under the size limit (413), parse it naming the bad
//! field (400), validate (400). Then `pipeline` does the rest; this file only renders.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use serde_json::error::Category;

use super::{ApiError, routing_headers};
use crate::execute::Primed;
use crate::pipeline::{self, Routed, Target};
use crate::state::Gateway;
use switchyard_providers::EventStream;
use switchyard_types::{ChatRequest, ChunkRenderer, new_id, sse_json};

pub async fn chat_completions(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let gw = &*gw;
    let bytes = read_body(body, gw.config.server.max_body_bytes).await?;
    let request = parse_request(&bytes)?;
    // `model` names a model or a route (`auto`, `cheap`, …).
    let target = Target {
        name: Some(&request.model),
        headers: super::policy_headers(&headers),
        cache: request.cache,
        cache_control: cache_control(&headers),
        ..Target::default()
    };
    if request.stream {
        let routed = pipeline::stream(gw, &request, &target).await?;
        Ok(sse_answer(
            routed,
            request.include_usage(),
            None,
            gw.abort.clone(),
        ))
    } else {
        let mut routed = pipeline::complete(gw, &request, &target).await?;
        let cost = routed.cost_usd();
        // Clients see the model that answered (by its configured name), not the upstream id.
        routed.value.model = routed.model.to_string();
        let mut response = Json(&routed.value).into_response();
        routing_headers(response.headers_mut(), &routed, Some(cost));
        Ok(response)
    }
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
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| data_error(e, bytes))?;
    de.end().map_err(ApiError::invalid_json)?;
    Ok(value)
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

/// What a stream still answering when shutdown's drain time is over ends with (the same
/// `server_shutdown` code as a complete answer cut then).
fn shutting_down() -> ApiError {
    ApiError {
        status: axum::http::StatusCode::SERVICE_UNAVAILABLE,
        message: "The gateway is shutting down and ended this answer before it completed; \
                  retry it."
            .to_owned(),
        kind: "api_error",
        param: None,
        code: Some("server_shutdown"),
        retry_after: None,
    }
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

/// The SSE answer: `prelude` (if any), the primed head, then the rest of the upstream stream,
/// then `[DONE]` — or, if the upstream breaks, an error event and no `[DONE]`, so no client
/// mistakes a cut answer for a complete one. When `abort` fires (shutdown's drain time is
/// over) the answer ends with a `server_shutdown` error event.
pub(super) fn sse_answer(
    routed: Routed<Primed>,
    include_usage: bool,
    prelude: Option<Bytes>,
    abort: tokio_util::sync::CancellationToken,
) -> Response {
    let model = routed.model.to_string();
    let mut response = Response::new(Body::empty());
    routing_headers(response.headers_mut(), &routed, None);
    let Primed { head, tail } = routed.value;
    let renderer = ChunkRenderer::new(new_id("chatcmpl-"), model.clone(), include_usage);
    let events: EventStream = Box::pin(futures::stream::iter(head.into_iter().map(Ok)).chain(tail));
    let prelude = futures::stream::iter(prelude.map(Ok));
    *response.body_mut() =
        Body::from_stream(prelude.chain(render_sse(events, renderer, model, abort)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

fn render_sse(
    events: EventStream,
    renderer: ChunkRenderer,
    model: String,
    abort: tokio_util::sync::CancellationToken,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send {
    struct St {
        events: EventStream,
        renderer: ChunkRenderer,
        model: String,
        abort: tokio_util::sync::CancellationToken,
        ended: bool,
    }
    let st = St {
        events,
        renderer,
        model,
        abort,
        ended: false,
    };
    futures::stream::unfold(st, |mut st| async move {
        loop {
            if st.ended {
                return None;
            }
            let next = tokio::select! {
                biased;
                () = st.abort.cancelled() => {
                    st.ended = true;
                    // The stream's pump ends on the same token; waiting for it means the
                    // request's row has its usage before this body ends.
                    while st.events.next().await.is_some() {}
                    return Some((Ok(sse_json(&shutting_down().body())), st));
                }
                next = st.events.next() => next,
            };
            match next {
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
                    let err = ApiError::from(crate::error::Error::upstream(&st.model, &e));
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
