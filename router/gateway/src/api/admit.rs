//! Admission, around every handler: the request id (`x-request-id`, echoed or generated), the
//! caller (virtual key, or the admin key for the admin API), the key's request rate, and — for
//! the model-calling endpoints — the request's `Exchange`, finished (log row, metrics) when the
//! answer has been sent: at once for a complete answer, at the end of the body for a stream.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, BodyDataStream, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use tokio::time::Instant;

use super::ApiError;
use crate::exchange::{self, Exchange};
use crate::keys::Auth;
use crate::state::Gateway;
use crate::telemetry::Stage;
use switchyard_types::new_id;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const OVERHEAD: HeaderName = HeaderName::from_static("x-switchyard-overhead-ms");

/// The error code of an error answer, for the log row (set by `ApiError::into_response`).
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

/// Who may call an endpoint.
enum Class {
    /// Health, metrics, the OpenAPI document: anyone.
    Public,
    /// The admin API: the admin key.
    Admin,
    /// Read-only views: a virtual key when auth is on.
    Read,
    /// Model-calling endpoints: a key when auth is on, its RPM, and an exchange.
    Model(&'static str),
}

fn classify(method: &Method, path: &str) -> Class {
    match (method, path) {
        (_, "/health" | "/health/ready" | "/metrics" | "/openapi.json") => Class::Public,
        (_, p) if p.starts_with("/admin/") || p == "/admin" => Class::Admin,
        (&Method::DELETE, "/ai/cache") | (&Method::POST, "/ai/policies/reload") => Class::Admin,
        (&Method::POST, "/v1/chat/completions") => Class::Model("/v1/chat/completions"),
        (&Method::POST, "/ai/route") => Class::Model("/ai/route"),
        (&Method::POST, "/ai/route/batch") => Class::Model("/ai/route/batch"),
        (&Method::POST, "/ai/analyze/market") => Class::Model("/ai/analyze/market"),
        (&Method::POST, "/ai/sentiment/news") => Class::Model("/ai/sentiment/news"),
        (&Method::POST, "/ai/optimize/portfolio") => Class::Model("/ai/optimize/portfolio"),
        _ => Class::Read,
    }
}

/// The key a request presents: `Authorization: Bearer …`, or `x-api-key` / `api-key`.
fn presented(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        let token = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .unwrap_or(v)
            .trim();
        return (!token.is_empty()).then_some(token);
    }
    ["x-api-key", "api-key"]
        .iter()
        .find_map(|h| headers.get(*h)?.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// A client's `x-request-id` is kept when it is short and printable; otherwise one is made.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| new_id("req_"), str::to_owned)
}

pub async fn admit(State(gw): State<Arc<Gateway>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id(req.headers());
    let mut response = match classify(req.method(), req.uri().path()) {
        Class::Public => next.run(req).await,
        Class::Admin => match gw.keys.check_admin(presented(req.headers())) {
            Ok(()) => next.run(req).await,
            Err(e) => ApiError::from(e).into_response(),
        },
        Class::Read => match gw.keys.authenticate(presented(req.headers())).await {
            Ok(_) => next.run(req).await,
            Err(e) => ApiError::from(e).into_response(),
        },
        Class::Model(endpoint) => model_call(&gw, req, next, endpoint, id.clone(), started).await,
    };
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    response
}

async fn model_call(
    gw: &Arc<Gateway>,
    mut req: Request,
    next: Next,
    endpoint: &'static str,
    id: String,
    started: Instant,
) -> Response {
    let key = match gw.keys.authenticate(presented(req.headers())).await {
        Ok(Auth::Key(k)) => Some(k),
        Ok(Auth::Open) => None,
        Err(e) => return refused(gw, Exchange::new(id, endpoint, None), e.into()),
    };
    if let Some(k) = &key
        && let Err(e) = k.admit(switchyard_types::clock::now_ms().div_euclid(1000))
    {
        return refused(gw, Exchange::new(id, endpoint, key.clone()), e.into());
    }
    let ex = Arc::new(Exchange::new(id, endpoint, key));
    ex.stage(Stage::Admit, started.elapsed());
    req.extensions_mut().insert(ex.clone());
    let mut response = exchange::scope(ex.clone(), next.run(req)).await;
    let status = response.status().as_u16();
    if let Some(code) = response.extensions().get::<ErrorCode>() {
        ex.set_error(Some(code.0));
    }
    let overhead = ex.overhead().as_secs_f64() * 1000.0;
    if let Ok(v) = HeaderValue::from_str(&format!("{overhead:.3}")) {
        response.headers_mut().insert(OVERHEAD, v);
    }
    let streaming = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if streaming {
        // The row is written when the stream ends (or the client leaves): usage comes last.
        let (parts, body) = response.into_parts();
        let body = Body::from_stream(Finishing {
            inner: Some(body.into_data_stream()),
            gw: gw.clone(),
            ex,
            status,
        });
        Response::from_parts(parts, body)
    } else {
        ex.finish(&gw.metrics, gw.writer.as_ref(), status);
        response
    }
}

/// A request refused at admission still gets its log row.
fn refused(gw: &Gateway, ex: Exchange, e: ApiError) -> Response {
    ex.set_error(e.code);
    ex.finish(&gw.metrics, gw.writer.as_ref(), e.status.as_u16());
    e.into_response()
}

/// A streamed body that finishes its exchange when it ends or is dropped.
struct Finishing {
    inner: Option<BodyDataStream>,
    gw: Arc<Gateway>,
    ex: Arc<Exchange>,
    status: u16,
}

impl Stream for Finishing {
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match inner.poll_next_unpin(cx) {
            Poll::Ready(None) => {
                this.inner = None;
                this.ex
                    .finish(&this.gw.metrics, this.gw.writer.as_ref(), this.status);
                Poll::Ready(None)
            }
            other => other,
        }
    }
}

impl Drop for Finishing {
    fn drop(&mut self) {
        // Drop the inner stream first: its end (the pipeline's tap) fills in the usage.
        self.inner = None;
        self.ex
            .finish(&self.gw.metrics, self.gw.writer.as_ref(), self.status);
    }
}
