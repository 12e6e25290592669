//! Streamed answers, whatever the door: the primed head, then the rest of the upstream stream,
//! each event rendered in the door's own wire format (`Render`). If the upstream breaks after
//! the first token, the stream ends with the door's error event and no clean end, so no client
//! mistakes a cut answer for a complete one. When `abort` fires (shutdown's drain time is over)
//! the answer ends with a `server_shutdown` error event.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use futures::{Stream, StreamExt};

use super::{ApiError, routing_headers};
use crate::execute::Primed;
use crate::pipeline::Routed;
use switchyard_providers::EventStream;
use switchyard_types::{ChunkRenderer, StreamEvent, sse_json};

/// One door's stream framing.
pub trait Render: Send + 'static {
    /// Frames before the first event (Anthropic's `message_start`).
    fn start(&mut self) -> Vec<Bytes> {
        Vec::new()
    }
    /// The frames for one event (none when the client did not ask for it).
    fn event(&mut self, event: &StreamEvent) -> Vec<Bytes>;
    /// The clean end of a complete answer.
    fn done(&mut self) -> Vec<Bytes>;
    /// The error event that ends a broken answer.
    fn error(&mut self, error: &ApiError) -> Bytes;
}

/// OpenAI `chat.completion.chunk` frames, ending with `[DONE]`.
pub struct Chunks(pub ChunkRenderer);

impl Render for Chunks {
    fn event(&mut self, event: &StreamEvent) -> Vec<Bytes> {
        self.0.render(event).into_iter().collect()
    }

    fn done(&mut self) -> Vec<Bytes> {
        vec![ChunkRenderer::done()]
    }

    fn error(&mut self, error: &ApiError) -> Bytes {
        sse_json(&error.body())
    }
}

/// The SSE answer for a primed stream: `prelude` (if any), the renderer's start, the events.
pub(super) fn answer<R: Render>(
    routed: Routed<Primed>,
    mut renderer: R,
    prelude: Option<Bytes>,
    abort: tokio_util::sync::CancellationToken,
) -> Response {
    let model = routed.model.to_string();
    let mut response = Response::new(Body::empty());
    routing_headers(response.headers_mut(), &routed, None);
    let Primed { head, tail } = routed.value;
    let events: EventStream = Box::pin(futures::stream::iter(head.into_iter().map(Ok)).chain(tail));
    let start: Vec<Bytes> = prelude.into_iter().chain(renderer.start()).collect();
    let start = futures::stream::iter(start.into_iter().map(Ok));
    *response.body_mut() = Body::from_stream(start.chain(render(events, renderer, model, abort)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
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

fn render<R: Render>(
    events: EventStream,
    renderer: R,
    model: String,
    abort: tokio_util::sync::CancellationToken,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send {
    struct St<R> {
        events: EventStream,
        renderer: R,
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
                    let frame = st.renderer.error(&shutting_down());
                    return Some((vec![frame], st));
                }
                next = st.events.next() => next,
            };
            match next {
                Some(Ok(event)) => {
                    let frames = st.renderer.event(&event);
                    if !frames.is_empty() {
                        return Some((frames, st));
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
                    let frame = st.renderer.error(&err);
                    return Some((vec![frame], st));
                }
                None => {
                    st.ended = true;
                    return Some((st.renderer.done(), st));
                }
            }
        }
    })
    .flat_map(|frames| futures::stream::iter(frames.into_iter().map(Ok)))
}

/// For the renderers' tests: what a renderer writes, and named frames read back.
#[cfg(test)]
pub(crate) mod testing {
    use super::Render;
    use serde_json::Value;
    use switchyard_types::StreamEvent;

    /// Every frame `r` writes for `events`, from its start to its clean end.
    pub fn render_all(r: &mut impl Render, events: Vec<StreamEvent>) -> Vec<u8> {
        let mut out = Vec::new();
        let frames = r
            .start()
            .into_iter()
            .chain(events.iter().flat_map(|e| r.event(e)).collect::<Vec<_>>())
            .chain(r.done());
        for f in frames {
            out.extend_from_slice(&f);
        }
        out
    }

    /// Named SSE frames as `(event, data)`; each data's `type` must be its event's name.
    #[allow(clippy::unwrap_used)]
    pub fn named_frames(bytes: &[u8]) -> Vec<(String, Value)> {
        let text = std::str::from_utf8(bytes).unwrap();
        text.split("\n\n")
            .filter(|f| !f.is_empty())
            .map(|f| {
                let (ev, data) = f.split_once('\n').unwrap();
                let ev = ev.strip_prefix("event: ").unwrap().to_owned();
                let data: Value =
                    serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
                assert_eq!(data["type"], ev.as_str());
                (ev, data)
            })
            .collect()
    }
}
