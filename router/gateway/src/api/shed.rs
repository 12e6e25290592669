//! Load shedding and the end of shutdown, around every handler.
//!
//! `shed` runs first, before admission: at most `server.max_in_flight` requests at once, a
//! stream counting until its body ends. Beyond it the answer is 503 with `retry-after` at once:
//! nothing queues, and a refused request was never admitted, so it counts against no key's rate
//! limit or spend and leaves no log row (it is counted in `switchyard_requests_shed_total`).
//! Health and metrics are never shed: an overloaded gateway must still say how it is.
//!
//! `until_abort` runs last, inside admission: a request still running when shutdown's drain
//! time is over (`Gateway::abort`) is ended with 503 `server_shutdown`, which admission then
//! logs like any other answer. (Streams already answering end on the same token, in the
//! pipeline, with an error event.)

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use prometheus_client::metrics::counter::Counter;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::ApiError;
use crate::server::Draining;
use crate::state::Gateway;

/// What a shed client is told to wait: in-flight requests end in well under a second on average.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The in-flight count and its limit.
#[derive(Debug)]
pub struct Limit {
    in_flight: AtomicUsize,
    max: usize,
    shed: Counter,
    gauge: prometheus_client::metrics::gauge::Gauge,
}

impl Limit {
    pub fn new(gw: &Gateway) -> Arc<Limit> {
        Arc::new(Limit {
            in_flight: AtomicUsize::new(0),
            max: gw.config.server.max_in_flight,
            shed: gw.sinks.metrics.shed.clone(),
            gauge: gw.sinks.metrics.in_flight.clone(),
        })
    }

    fn try_take(self: &Arc<Self>) -> Option<Slot> {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| {
                self.gauge.inc();
                Slot(self.clone())
            })
    }
}

/// One request's place under the limit, given back when dropped.
struct Slot(Arc<Limit>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.gauge.dec();
    }
}

/// Paths that are never shed: liveness, readiness, metrics.
fn exempt(path: &str) -> bool {
    matches!(path, "/health" | "/health/ready" | "/metrics")
}

pub async fn shed(State(limit): State<Arc<Limit>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if exempt(path) {
        if path == "/health/ready"
            && req
                .extensions()
                .get::<Draining>()
                .is_some_and(Draining::is_draining)
        {
            return draining();
        }
        return next.run(req).await;
    }
    let Some(slot) = limit.try_take() else {
        limit.shed.inc();
        return overloaded().into_response();
    };
    let (parts, body) = next.run(req).await.into_parts();
    Response::from_parts(
        parts,
        Body::new(Held {
            inner: body,
            slot: Some(slot),
        }),
    )
}

fn overloaded() -> ApiError {
    ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        // The limit itself is not told: it is the gateway's capacity, not the caller's business.
        message: "The gateway is serving as many requests as it is configured to; retry shortly."
            .to_owned(),
        kind: "overloaded",
        param: None,
        code: Some("too_many_requests_in_flight"),
        retry_after: Some(RETRY_AFTER),
    }
}

/// Readiness while shutting down: not ready, so a balancer stops sending.
fn draining() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"status": "not_ready", "reason": "draining"})),
    )
        .into_response()
}

pub async fn until_abort(
    State(abort): State<CancellationToken>,
    req: Request,
    next: Next,
) -> Response {
    // The token first: once it has fired, the answer is this one, whatever the handler would
    // have made of the cancellation.
    tokio::select! {
        biased;
        () = abort.cancelled() => shutting_down().into_response(),
        response = next.run(req) => response,
    }
}

fn shutting_down() -> ApiError {
    ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: "The gateway is shutting down and ended this request before it completed; \
                  retry it."
            .to_owned(),
        kind: "api_error",
        param: None,
        code: Some("server_shutdown"),
        retry_after: Some(RETRY_AFTER),
    }
}

/// An answer's body holding its request's slot until it has been sent (or dropped).
struct Held {
    inner: Body,
    slot: Option<Slot>,
}

impl HttpBody for Held {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) {
            self.slot = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
