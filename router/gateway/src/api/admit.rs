//! Admission, around every handler: the request id (`x-request-id`, echoed or generated), the
//! caller (virtual key, or the admin key for the admin API), the key's request rate, and — for
//! the model-calling endpoints — the request's `Exchange`, finished (log row, metrics) when the
//! answer has been sent: at once for a complete answer, at the end of the body for a stream.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, BodyDataStream, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use tokio::time::Instant;

use super::{ApiError, guard};
use crate::error::Error;
use crate::exchange::{self, Exchange};
use crate::keys::{Auth, Caller, hash_secret};
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
    /// Health and the OpenAPI document: anyone.
    Public,
    /// `/metrics`: anyone, unless `[metrics]` asks for its token or the admin key.
    Metrics,
    /// The admin API: the admin key.
    Admin,
    /// Read-only views: a virtual key (or the admin key) in `keys` mode.
    Read,
    /// Model-calling endpoints: a key in `keys` mode, its RPM window, and an exchange.
    Model(&'static str),
}

fn classify(method: &Method, path: &str) -> Class {
    match (method, path) {
        (_, "/health" | "/health/ready" | "/openapi.json") => Class::Public,
        (_, "/metrics") => Class::Metrics,
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

/// A client's `x-request-id`, when it is short and printable. It is echoed and logged in a
/// column of its own; the row's id is always the server's.
fn client_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
}

pub async fn admit(State(gw): State<Arc<Gateway>>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let client = client_id(req.headers());
    let class = classify(req.method(), req.uri().path());
    let guarded = guard::check(&gw.config.server, req.method(), req.uri(), req.headers());
    let mut response = match (class, guarded) {
        (Class::Model(endpoint), guarded) => {
            model_call(&gw, req, next, endpoint, client.clone(), started, guarded).await
        }
        (_, Err(e)) => e.into_response(),
        (Class::Public, Ok(())) => next.run(req).await,
        (Class::Metrics, Ok(())) => match metrics_allowed(&gw, req.headers()) {
            Ok(()) => next.run(req).await,
            Err(e) => ApiError::from(e).into_response(),
        },
        (Class::Admin, Ok(())) => {
            let peer = req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip());
            match gw.keys.check_admin(presented(req.headers()), peer) {
                Ok(()) => next.run(req).await,
                Err(e) => ApiError::from(e).into_response(),
            }
        }
        (Class::Read, Ok(())) => {
            let key = presented(req.headers());
            let caller = if gw.keys.is_admin(key) {
                Ok(Caller::Admin)
            } else {
                gw.keys.authenticate(key).await.map(|_| Caller::Other)
            };
            match caller {
                Ok(caller) => {
                    req.extensions_mut().insert(caller);
                    next.run(req).await
                }
                Err(e) => ApiError::from(e).into_response(),
            }
        }
    };
    if !response.headers().contains_key(REQUEST_ID) {
        let id = client.unwrap_or_else(|| new_id("req_"));
        if let Ok(v) = HeaderValue::from_str(&id) {
            response.headers_mut().insert(REQUEST_ID, v);
        }
    }
    response
}

/// `/metrics` with `[metrics] token` or `require_admin`: the token or the admin key.
fn metrics_allowed(gw: &Gateway, headers: &HeaderMap) -> Result<(), Error> {
    let cfg = &gw.config.metrics;
    if cfg.token.is_none() && !cfg.require_admin {
        return Ok(());
    }
    let key = presented(headers);
    let token_ok = match (&cfg.token, key) {
        (Some(t), Some(k)) => hash_secret(t.expose()) == hash_secret(k),
        _ => false,
    };
    if token_ok || gw.keys.is_admin(key) {
        return Ok(());
    }
    Err(Error::unauthorized(
        "/metrics needs the scrape token ([metrics] token) or the admin key: \
         Authorization: Bearer <token>",
    ))
}

async fn model_call(
    gw: &Arc<Gateway>,
    mut req: Request,
    next: Next,
    endpoint: &'static str,
    client: Option<String>,
    started: Instant,
    guarded: Result<(), ApiError>,
) -> Response {
    let exchange = |key| Exchange::new(client.clone(), endpoint, key, gw.sinks.clone());
    if let Err(e) = guarded.and_then(|()| guard::json_body(req.headers())) {
        return refused(exchange(None), e);
    }
    let key = match gw.keys.authenticate(presented(req.headers())).await {
        Ok(Auth::Key(k)) => Some(k),
        Ok(Auth::Open) => None,
        Err(e) => return refused(exchange(None), e.into()),
    };
    if let Some(k) = &key
        && let Err(e) = k.admit(switchyard_types::clock::now_ms().div_euclid(1000))
    {
        return refused(exchange(key.clone()), e.into());
    }
    let ex = Arc::new(exchange(key));
    ex.stage(Stage::Admit, started.elapsed());
    req.extensions_mut().insert(ex.clone());
    let mut response = exchange::scope(ex.clone(), next.run(req)).await;
    let status = response.status().as_u16();
    if let Some(code) = response.extensions().get::<ErrorCode>() {
        ex.set_error(Some(code.0));
    }
    if let Ok(v) = HeaderValue::from_str(ex.public_id()) {
        response.headers_mut().insert(REQUEST_ID, v);
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
            ex,
            status,
        });
        Response::from_parts(parts, body)
    } else {
        ex.finish(status);
        response
    }
}

/// A request refused at admission still gets its log row.
fn refused(ex: Exchange, e: ApiError) -> Response {
    ex.set_error(e.code);
    ex.finish(e.status.as_u16());
    let mut response = e.into_response();
    if let Ok(v) = HeaderValue::from_str(ex.public_id()) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    response
}

/// A streamed body that finishes its exchange when it ends or is dropped.
struct Finishing {
    inner: Option<BodyDataStream>,
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
                this.ex.finish(this.status);
                Poll::Ready(None)
            }
            other => other,
        }
    }
}

impl Drop for Finishing {
    fn drop(&mut self) {
        // Dropped before its end: the client left mid-stream.
        if self.inner.is_some() {
            self.ex.cancelled();
        }
        // Drop the inner stream first: its end (the pipeline's tap) fills in the usage.
        self.inner = None;
        self.ex.finish(self.status);
    }
}
